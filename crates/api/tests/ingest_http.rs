//! The write side through HTTP: answers, identity resolution across requests and
//! channels, duplicates, access control, and a barrage of hostile requests that must all
//! be refused without touching the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use omnilog_api::{AccessControl, ApiConfig, AppState, Scope, router};
use omnilog_channels::{Registry, SignatureScheme, WebhookRequest};
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts, Topic};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Harness {
    app: Router,
    log: Arc<dyn EventLog>,
    _dir: tempfile::TempDir,
}

const TWILIO_SECRET: &str = "twilio-auth-token";

async fn harness(access: AccessControl, secrets: &[(&str, &str)]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(&dir.path().join("log"), PartitionCounts::default()).unwrap());
    let ingest = Ingest::start(log.clone(), IngestConfig::default())
        .await
        .unwrap();
    let config = ApiConfig {
        max_body_bytes: 64 * 1024,
        public_url: Some("https://desk.example.com".to_owned()),
        channel_secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        meta_verify_token: Some("meatyhamhock".to_owned()),
        body_timeout: std::time::Duration::from_millis(500),
        service_levels: Default::default(),
        ready_max_lag: ApiConfig::default().ready_max_lag,
    };
    let app = router(AppState::new(
        ingest,
        Arc::new(Registry::standard()),
        Arc::new(access),
        Arc::new(config),
    ));
    Harness {
        app,
        log,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn with_token(mut request: Request<Body>, token: &str) -> Request<Body> {
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    request
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

async fn post_events(app: &Router, events: Value) -> Answer {
    send(
        app,
        post("/v1/events", "application/json", events.to_string()),
    )
    .await
}

async fn log_size(log: &Arc<dyn EventLog>) -> u64 {
    let mut total = 0;
    for topic in [Topic::Interactions, Topic::Agents] {
        total += log.end_offsets(topic).await.unwrap().iter().sum::<u64>();
    }
    total
}

fn interaction(id: &str, handles: Value, event_type: &str, at: &str) -> Value {
    json!({
        "source": "test",
        "source_event_id": format!("{id}:{event_type}:{at}"),
        "occurred_at": at,
        "customer": {"handles": handles},
        "interaction_id": id,
        "channel": "chat",
        "type": event_type,
    })
}

async fn customer_of(app: &Router, kind: &str, value: &str) -> String {
    let answer = send(
        app,
        get(&format!(
            "/v1/customers/resolve?kind={kind}&value={}",
            value.replace('+', "%2B")
        )),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["customer_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn accepted_events_answer_202_with_positions_and_a_token_once_durable() {
    let h = harness(AccessControl::open(), &[]).await;
    let answer = post_events(
        &h.app,
        json!([
            interaction("c1", json!([{"kind": "email", "value": "a@example.com"}]), "hold", "2026-03-02T09:00:00Z"),
            {"occurred_at": "2026-03-02T09:00:00Z", "type": "agent_state", "agent_id": "ag1", "state": "available"},
        ]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 2);
    assert_eq!(answer.body["duplicates"], 0);
    let positions = answer.body["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 2);
    assert_eq!(positions[0]["topic"], "omnilog.interactions");
    assert_eq!(positions[1]["topic"], "omnilog.agents");
    let token = answer.body["token"].as_str().unwrap();
    assert!(token.contains('i') && token.contains('a'), "{token}");
    assert_eq!(log_size(&h.log).await, 2);
    // The identity queries take the token too (every query does): held at once here, as
    // the one writer folded the event before answering; a malformed token is a 400.
    let resolved = send(
        &h.app,
        get(&format!(
            "/v1/customers/resolve?kind=email&value=a@example.com&after={token}&wait_ms=0"
        )),
    )
    .await;
    assert_eq!(resolved.status, StatusCode::OK, "{:?}", resolved.body);
    let customer = resolved.body["customer_id"].as_str().unwrap();
    let read = send(
        &h.app,
        get(&format!("/v1/customers/{customer}?after={token}&wait_ms=0")),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    for path in [
        "/v1/customers/resolve?kind=email&value=a@example.com&after=garbage".to_owned(),
        format!("/v1/customers/{customer}?after=garbage"),
        format!("/v1/customers/{customer}?after={token}&wait_ms=soon"),
    ] {
        let refused = send(&h.app, get(&path)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(refused.content_type, "application/problem+json", "{path}");
    }
}

#[tokio::test]
async fn a_call_then_an_sms_from_the_same_number_is_one_customer() {
    let h = harness(AccessControl::open(), &[]).await;
    let call = "CallSid=CA100&AccountSid=AC1&From=%2B15551230001&To=%2B15559990000&Direction=inbound&CallStatus=ringing&Timestamp=Mon%2C%2002%20Mar%202026%2009%3A00%3A00%20%2B0000";
    let answer = send(
        &h.app,
        post(
            "/v1/channels/voice",
            "application/x-www-form-urlencoded",
            call,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let sms = "MessageSid=SM200&AccountSid=AC1&From=%2B1%20555%20123%200001&To=%2B15559990000&Body=still%20waiting";
    let answer = send(
        &h.app,
        post("/v1/channels/sms", "application/x-www-form-urlencoded", sms),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let customer = customer_of(&h.app, "phone", "+15551230001").await;
    let identity = send(&h.app, get(&format!("/v1/customers/{customer}"))).await;
    assert_eq!(
        identity.body["handles"],
        json!([{"kind": "phone", "value": "+15551230001"}])
    );
    // Both events are in the customer's partition, under one id.
    let partition = omnilog_log::partition_for(customer.as_bytes(), 12);
    let records = h
        .log
        .read(Topic::Interactions, partition, 0, 10)
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.key == customer.as_bytes()));
}

#[tokio::test]
async fn a_chat_visitor_who_gives_an_email_and_a_later_email_are_one_customer() {
    let h = harness(AccessControl::open(), &[]).await;
    let chat = json!({"session_id": "s-1", "visitor_id": "v-9", "email": "alice@example.com", "name": "Alice", "text": "my invoice is wrong", "sent_at": "2026-03-02T10:00:00Z"});
    let answer = send(
        &h.app,
        post("/v1/channels/chat", "application/json", chat.to_string()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let email = "From: Alice <Alice@Example.com>\r\nTo: support@desk.example.com\r\nSubject: invoice\r\nMessage-ID: <m1@example.com>\r\nDate: Mon, 02 Mar 2026 11:00:00 +0000\r\n\r\nStill wrong.\r\n";
    let answer = send(&h.app, post("/v1/channels/email", "message/rfc822", email)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let by_visitor = customer_of(&h.app, "visitor", "v-9").await;
    let by_email = customer_of(&h.app, "email", "ALICE@example.com").await;
    assert_eq!(by_visitor, by_email);
}

#[tokio::test]
async fn handles_of_two_customers_go_to_the_first_and_both_list_the_other() {
    let h = harness(AccessControl::open(), &[]).await;
    let phone = json!({"kind": "phone", "value": "+15550000001"});
    let email = json!({"kind": "email", "value": "bob@example.com"});
    for (id, handles) in [("a", json!([phone])), ("b", json!([email]))] {
        let answer = post_events(
            &h.app,
            json!([interaction(id, handles, "hold", "2026-03-02T09:00:00Z")]),
        )
        .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    let alice = customer_of(&h.app, "phone", "+15550000001").await;
    let bob = customer_of(&h.app, "email", "bob@example.com").await;
    assert_ne!(alice, bob);
    let answer = post_events(
        &h.app,
        json!([interaction(
            "c",
            json!([phone, email]),
            "hold",
            "2026-03-02T09:05:00Z"
        )]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let alice_identity = send(&h.app, get(&format!("/v1/customers/{alice}")))
        .await
        .body;
    let bob_identity = send(&h.app, get(&format!("/v1/customers/{bob}")))
        .await
        .body;
    assert_eq!(alice_identity["merge_candidates"], json!([bob]));
    assert_eq!(bob_identity["merge_candidates"], json!([alice]));
    // The event went to the first handle's customer.
    let partition = omnilog_log::partition_for(alice.as_bytes(), 12);
    let records = h
        .log
        .read(Topic::Interactions, partition, 0, 10)
        .await
        .unwrap();
    assert!(records.iter().any(|r| {
        let event = omnilog_events::decode(&r.payload).unwrap();
        event.interaction_id.as_deref() == Some("c") && event.customer_id() == Some(alice.as_str())
    }));
}

#[tokio::test]
async fn a_link_or_a_merge_is_honoured_by_the_next_request() {
    let h = harness(AccessControl::open(), &[]).await;
    let phone = json!({"kind": "phone", "value": "+15550000007"});
    post_events(
        &h.app,
        json!([interaction(
            "a",
            json!([phone]),
            "hold",
            "2026-03-02T09:00:00Z"
        )]),
    )
    .await;
    let link = json!([{
        "occurred_at": "2026-03-02T09:01:00Z", "type": "identity_linked",
        "customer": {"id": "crm-7", "handles": [phone]},
    }]);
    assert_eq!(post_events(&h.app, link).await.status, StatusCode::ACCEPTED);
    assert_eq!(customer_of(&h.app, "phone", "+15550000007").await, "crm-7");
    let email = json!({"kind": "email", "value": "seven@example.com"});
    post_events(
        &h.app,
        json!([interaction(
            "b",
            json!([email]),
            "hold",
            "2026-03-02T09:02:00Z"
        )]),
    )
    .await;
    let other = customer_of(&h.app, "email", "seven@example.com").await;
    let merge = json!([{
        "occurred_at": "2026-03-02T09:03:00Z", "type": "customers_merged",
        "from_customer": other, "into_customer": "crm-7",
    }]);
    assert_eq!(
        post_events(&h.app, merge).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        customer_of(&h.app, "email", "seven@example.com").await,
        "crm-7"
    );
    let merged = send(&h.app, get(&format!("/v1/customers/{other}")))
        .await
        .body;
    assert_eq!(merged["customer_id"], "crm-7");
    assert_eq!(merged["merged_from"], json!([other]));
}

#[tokio::test]
async fn the_same_webhook_twice_is_stored_once() {
    let h = harness(AccessControl::open(), &[]).await;
    let call = "CallSid=CA300&AccountSid=AC1&From=%2B15551230003&To=%2B15559990000&Direction=inbound&CallStatus=completed&CallDuration=42&Timestamp=Mon%2C%2002%20Mar%202026%2009%3A10%3A00%20%2B0000";
    let first = send(
        &h.app,
        post(
            "/v1/channels/voice",
            "application/x-www-form-urlencoded",
            call,
        ),
    )
    .await;
    assert_eq!(first.body["accepted"], 1, "{:?}", first.body);
    let second = send(
        &h.app,
        post(
            "/v1/channels/voice",
            "application/x-www-form-urlencoded",
            call,
        ),
    )
    .await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.body["accepted"], 0);
    assert_eq!(second.body["duplicates"], 1);
    assert_eq!(
        second.body["positions"],
        first.body["positions"][0]
            .clone()
            .as_object()
            .map(|p| {
                let mut p = p.clone();
                p.insert("duplicate".to_owned(), json!(true));
                json!([p])
            })
            .unwrap()
    );
    assert_eq!(log_size(&h.log).await, 1);
}

#[tokio::test]
async fn a_batch_with_one_bad_event_writes_nothing_and_names_it() {
    let h = harness(AccessControl::open(), &[]).await;
    let answer = post_events(
        &h.app,
        json!([
            interaction("c1", json!([{"kind": "email", "value": "a@example.com"}]), "hold", "2026-03-02T09:00:00Z"),
            {"occurred_at": "2026-03-02T09:00:00Z", "type": "queued", "channel": "chat", "interaction_id": "c2", "customer": {"id": "x"}},
        ]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.body["field"], "[1].queue");
    assert_eq!(answer.body["status"], 400);
    assert_eq!(log_size(&h.log).await, 0);
}

#[tokio::test]
async fn a_protobuf_batch_is_accepted_like_json() {
    let h = harness(AccessControl::open(), &[]).await;
    let events = omnilog_events::parse_batch(
        json!([interaction(
            "p1",
            json!([{"kind": "phone", "value": "+1 555 000 0100"}]),
            "hold",
            "2026-03-02T09:00:00Z"
        )])
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let answer = send(
        &h.app,
        post(
            "/v1/events",
            "application/x-protobuf",
            omnilog_events::encode_batch(&events),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    assert_eq!(customer_of(&h.app, "phone", "+15550000100").await.len(), 36);
}

#[tokio::test]
async fn tokens_guard_ingest_query_and_admin_routes() {
    let access = AccessControl::open()
        .with_token("writer", vec![Scope::Ingest])
        .with_token("reader", vec![Scope::Read])
        .with_token("scraper", vec![Scope::Metrics])
        .with_token("operator", vec![Scope::Admin]);
    let h = harness(access, &[]).await;
    let body = json!([interaction(
        "t1",
        json!([{"kind": "email", "value": "t@example.com"}]),
        "hold",
        "2026-03-02T09:00:00Z"
    )])
    .to_string();
    let ingest = || post("/v1/events", "application/json", body.clone());
    let query = || get("/v1/customers/resolve?kind=email&value=t@example.com");
    let admin = || get("/v1/admin/channels");
    let metrics = || get("/metrics");
    for (route, allowed) in [
        (&ingest as &dyn Fn() -> Request<Body>, "writer"),
        (&query, "reader"),
        (&metrics, "scraper"),
        (&admin, "operator"),
    ] {
        let missing = send(&h.app, route()).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert_eq!(missing.content_type, "application/problem+json");
        let wrong = if allowed == "reader" {
            "writer"
        } else {
            "reader"
        };
        assert_eq!(
            send(&h.app, with_token(route(), wrong)).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            send(&h.app, with_token(route(), "nonsense")).await.status,
            StatusCode::UNAUTHORIZED
        );
        let passed = send(&h.app, with_token(route(), allowed)).await;
        assert!(
            passed.status.is_success(),
            "{allowed}: {:?} {:?}",
            passed.status,
            passed.body
        );
        // Admin may do everything.
        assert!(
            send(&h.app, with_token(route(), "operator"))
                .await
                .status
                .is_success()
        );
    }
}

#[tokio::test]
async fn a_bad_platform_signature_is_401_and_writes_nothing() {
    let h = harness(AccessControl::open(), &[("voice", TWILIO_SECRET)]).await;
    let call = "CallSid=CA400&AccountSid=AC1&From=%2B15551230004&To=%2B15559990000&Direction=inbound&CallStatus=ringing";
    let unsigned = send(
        &h.app,
        post(
            "/v1/channels/voice",
            "application/x-www-form-urlencoded",
            call,
        ),
    )
    .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    let mut bad = post(
        "/v1/channels/voice",
        "application/x-www-form-urlencoded",
        call,
    );
    bad.headers_mut().insert(
        "x-twilio-signature",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".parse().unwrap(),
    );
    assert_eq!(send(&h.app, bad).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(log_size(&h.log).await, 0);
    let signature = SignatureScheme::Twilio
        .sign(
            &WebhookRequest {
                url: "https://desk.example.com/v1/channels/voice".to_owned(),
                content_type: Some("application/x-www-form-urlencoded".to_owned()),
                headers: BTreeMap::new(),
                body: call.as_bytes().to_vec(),
                received_at: chrono::Utc::now(),
            },
            TWILIO_SECRET,
        )
        .unwrap();
    let mut good = post(
        "/v1/channels/voice",
        "application/x-www-form-urlencoded",
        call,
    );
    good.headers_mut()
        .insert("x-twilio-signature", signature.parse().unwrap());
    let answer = send(&h.app, good).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    assert_eq!(log_size(&h.log).await, 1);
}

#[tokio::test]
async fn unknown_channels_wrong_content_types_and_huge_bodies_are_refused() {
    let h = harness(AccessControl::open(), &[]).await;
    let unknown = send(
        &h.app,
        post("/v1/channels/pigeon", "application/json", "{}"),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body["detail"].as_str().unwrap().contains("voice"));
    let wrong = send(&h.app, post("/v1/events", "text/csv", "a,b")).await;
    assert_eq!(wrong.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let wrong = send(&h.app, post("/v1/channels/voice", "application/json", "{}")).await;
    assert_eq!(wrong.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = send(
        &h.app,
        post("/v1/events", "application/json", vec![b' '; 65 * 1024]),
    )
    .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge.content_type, "application/problem+json");
    assert_eq!(log_size(&h.log).await, 0);
}

/// One kind of hostile request, varied by the seeded generator.
type Mutation<'a> = Box<dyn Fn(&mut fastrand::Rng) -> Request<Body> + 'a>;

/// Makes 1,000 malformed or hostile requests from a seed: truncations of valid bodies,
/// wrong types, unknown and stray fields, bad UTF-8, huge bodies, bad signatures, wrong
/// content types, unknown channels.
fn hostile_requests(seed: u64) -> Vec<Request<Body>> {
    let valid = json!([interaction(
        "h1",
        json!([{"kind": "phone", "value": "+15550001000"}]),
        "hold",
        "2026-03-02T09:00:00Z"
    )])
    .to_string();
    let chat = json!({"session_id": "s", "visitor_id": "v", "text": "hi", "sent_at": "2026-03-02T09:00:00Z"}).to_string();
    let meta = json!({"object": "page", "entry": []}).to_string();
    let mutations: Vec<Mutation<'_>> = vec![
        Box::new(|rng| {
            let cut = rng.usize(1..valid.len() - 1);
            post("/v1/events", "application/json", valid[..cut].to_owned())
        }),
        Box::new(|rng| {
            let cut = rng.usize(1..chat.len() - 1);
            post(
                "/v1/channels/chat",
                "application/json",
                chat[..cut].to_owned(),
            )
        }),
        Box::new(|rng| {
            let field = [
                "occurred_at",
                "type",
                "customer",
                "channel",
                "interaction_id",
            ][rng.usize(0..5)];
            let value = [
                json!(42),
                json!([]),
                json!({"x": 1}),
                json!(true),
                json!(""),
            ][rng.usize(0..5)]
            .clone();
            let mut event = interaction(
                "h2",
                json!([{"kind": "phone", "value": "+15550001000"}]),
                "hold",
                "2026-03-02T09:00:00Z",
            );
            event[field] = value;
            post("/v1/events", "application/json", json!([event]).to_string())
        }),
        Box::new(|rng| {
            let mut event = interaction(
                "h3",
                json!([{"kind": "phone", "value": "+15550001000"}]),
                "hold",
                "2026-03-02T09:00:00Z",
            );
            let stray = ["colour", "queue", "score", "agent_id", "capacity"][rng.usize(0..5)];
            event[stray] = json!("x");
            post("/v1/events", "application/json", json!([event]).to_string())
        }),
        Box::new(|rng| {
            let mut bytes = valid.clone().into_bytes();
            let at = rng.usize(0..bytes.len());
            bytes[at] = [0xff, 0xc3, 0x80, 0xfe][rng.usize(0..4)];
            post("/v1/events", "application/json", bytes)
        }),
        Box::new(|rng| {
            post(
                "/v1/events",
                "application/json",
                vec![b'['; 65 * 1024 + rng.usize(0..1024)],
            )
        }),
        Box::new(|rng| {
            let mut request = post("/v1/channels/messenger", "application/json", meta.clone());
            let signature = format!("sha256={:064x}", rng.u128(..));
            request
                .headers_mut()
                .insert("x-hub-signature-256", signature.parse().unwrap());
            request
        }),
        Box::new(|rng| {
            post(
                "/v1/events",
                ["text/plain", "application/xml", "multipart/form-data"][rng.usize(0..3)],
                valid.clone(),
            )
        }),
        Box::new(|rng| {
            post(
                &format!(
                    "/v1/channels/{}",
                    ["fax", "pigeon", "..", "voice%00"][rng.usize(0..4)]
                ),
                "application/json",
                "{}",
            )
        }),
        Box::new(|rng| {
            post(
                "/v1/events",
                "application/x-protobuf",
                (0..rng.usize(1..64))
                    .map(|_| rng.u8(..))
                    .collect::<Vec<_>>(),
            )
        }),
        Box::new(|rng| {
            let value = ["not a phone", "", "   "][rng.usize(0..3)];
            post(
                "/v1/events",
                "application/json",
                json!([interaction(
                    "h4",
                    json!([{"kind": "phone", "value": value}]),
                    "hold",
                    "2026-03-02T09:00:00Z"
                )])
                .to_string(),
            )
        }),
        Box::new(|rng| {
            let body = [
                "{\"object\":\"page\",\"entry\":[{\"messaging\":[{\"sender\":7}]}]}",
                "null",
                "[]x",
                "{\"version\":\"3\"}",
            ][rng.usize(0..4)];
            let channel = ["messenger", "whatsapp", "alert", "walk_in"][rng.usize(0..4)];
            post(&format!("/v1/channels/{channel}"), "application/json", body)
        }),
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..1000)
        .map(|i| mutations[i % mutations.len()](&mut rng))
        .collect()
}

#[tokio::test]
async fn a_thousand_hostile_requests_get_4xx_problems_and_leave_the_log_unchanged() {
    let h = harness(
        AccessControl::open(),
        &[("messenger", "meta-secret"), ("voice", TWILIO_SECRET)],
    )
    .await;
    let before = log_size(&h.log).await;
    for (index, request) in hostile_requests(7).into_iter().enumerate() {
        let description = format!("{} {}", request.method(), request.uri());
        let answer = send(&h.app, request).await;
        assert!(
            answer.status.is_client_error(),
            "request {index} ({description}) got {}: {:?}",
            answer.status,
            answer.body
        );
        assert_eq!(
            answer.content_type, "application/problem+json",
            "request {index} ({description})"
        );
        assert_eq!(answer.body["status"], answer.status.as_u16());
        assert!(
            answer.body["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    assert_eq!(log_size(&h.log).await, before);
    // The server is still up and writes what is valid.
    let answer = post_events(
        &h.app,
        json!([interaction(
            "ok",
            json!([{"kind": "phone", "value": "+15550001000"}]),
            "hold",
            "2026-03-02T09:00:00Z"
        )]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn meta_subscription_handshake_echoes_the_challenge_for_the_configured_token() {
    let h = harness(AccessControl::open(), &[]).await;
    let query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock";
    for channel in ["messenger", "whatsapp"] {
        let response = h
            .app
            .clone()
            .oneshot(get(&format!("/v1/channels/{channel}?{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{channel}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"1158201444");
    }
    let wrong = send(
        &h.app,
        get(&format!(
            "/v1/channels/messenger?{}",
            query.replace("meatyhamhock", "guess")
        )),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.content_type, "application/problem+json");
    let not_meta = send(&h.app, get(&format!("/v1/channels/voice?{query}"))).await;
    assert_eq!(not_meta.status, StatusCode::NOT_FOUND);
    let unknown = send(&h.app, get(&format!("/v1/channels/pigeon?{query}"))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let no_mode = send(
        &h.app,
        get("/v1/channels/whatsapp?hub.verify_token=meatyhamhock"),
    )
    .await;
    assert_eq!(no_mode.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_mode.body["field"], "hub.mode");
    assert_eq!(log_size(&h.log).await, 0, "a handshake writes nothing");
}

#[tokio::test]
async fn a_control_character_in_an_identifier_is_refused_in_json_and_protobuf_and_writes_nothing() {
    let h = harness(AccessControl::open(), &[]).await;
    let mut poisoned = interaction(
        "c0",
        json!([{"kind": "phone", "value": "+15550000001"}]),
        "queued",
        "2026-03-02T09:00:00Z",
    );
    poisoned["queue"] = json!("a\u{0}b");
    poisoned["skills"] = json!([]);
    let answer = post_events(&h.app, json!([poisoned])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.body["field"], "[0].queue");

    // The same event as protobuf: the wire type cannot be validated by JSON's parser, so
    // it is built unchecked and must still be refused at ingest.
    let mut event = omnilog_events::parse_event(
        interaction(
            "c0",
            json!([{"kind": "phone", "value": "+15550000001"}]),
            "hold",
            "2026-03-02T09:00:00Z",
        )
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    event.interaction_id = Some("c\u{0}0".into());
    let answer = send(
        &h.app,
        post(
            "/v1/events",
            "application/x-protobuf",
            omnilog_events::encode_batch(&[event]),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);
    assert_eq!(answer.body["field"], "[0].interaction_id");
    assert_eq!(log_size(&h.log).await, 0);
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let h = harness(AccessControl::open(), &[]).await;
    let made_up = |from: usize, to: usize| {
        let app = h.app.clone();
        async move {
            for n in from..to {
                let request = Request::builder()
                    .method(
                        axum::http::Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap(),
                    )
                    .uri("/v1/queues")
                    .body(Body::empty())
                    .unwrap();
                send(&app, request).await;
            }
        }
    };
    // The series of a route: the lines that name it.
    let series_of_queues = || async {
        let response = h.app.clone().oneshot(get("/metrics")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains("MADEUP"), "{text}");
        text.lines()
            .filter(|line| line.contains("route=\"/v1/queues\""))
            .count()
    };
    made_up(0, 5).await;
    let after_five = series_of_queues().await;
    made_up(5, 200).await;
    assert!(after_five > 0);
    assert_eq!(series_of_queues().await, after_five);
}

#[tokio::test]
async fn a_body_is_read_only_after_its_token_and_a_declared_length_over_the_limit_is_refused_at_once()
 {
    let access = AccessControl::open().with_token("writer", vec![Scope::Ingest]);
    let h = harness(access, &[]).await;
    // A body that never comes: answered anyway, so nothing waited for it.
    let never_ending = || {
        Body::from_stream(futures_util::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >())
    };
    let answered = |request: Request<Body>| {
        let app = h.app.clone();
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(10), send(&app, request))
                .await
                .expect("answered without reading the body")
        }
    };
    let never_ending_post = |path: &str| {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(never_ending())
            .unwrap()
    };
    for path in ["/v1/events", "/v1/channels/chat"] {
        let answer = answered(never_ending_post(path)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(answer.content_type, "application/problem+json");
    }
    let mut declared_huge = with_token(never_ending_post("/v1/events"), "writer");
    declared_huge.headers_mut().insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from_static("99999999999999"),
    );
    let answer = answered(declared_huge).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("99999999999999"),
        "{:?}",
        answer.body
    );
    // Allowed, but the body never comes: 408 once the body's time is up.
    let answer = answered(with_token(never_ending_post("/v1/events"), "writer")).await;
    assert_eq!(answer.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(log_size(&h.log).await, 0);
}

/// A query field given twice (`?kind=phone&kind=email`) was read as its last value on
/// every route that reads a query into a map: each of them refuses it, naming the field.
#[tokio::test]
async fn a_query_field_given_twice_is_refused_naming_it_on_every_route_that_takes_a_query() {
    let h = harness(AccessControl::open(), &[("x", "x-consumer-secret")]).await;
    let customer = "9b2f6c1e-0000-5000-8000-000000000000";
    for (path, field) in [
        (
            "/v1/customers/resolve?kind=phone&kind=email&value=1",
            "kind",
        ),
        (
            "/v1/customers/resolve?kind=phone&value=%2B1555&value=%2B1556",
            "value",
        ),
        (
            &format!("/v1/customers/{customer}?after=i0:1&after=i0:2") as &str,
            "after",
        ),
        (
            &format!("/v1/customers/{customer}/journey?wait_ms=1&wait_ms=2"),
            "wait_ms",
        ),
        ("/v1/interactions/chat-1?after=i0:1&after=i0:1", "after"),
        (
            "/v1/queues?now=2026-03-02T09:00:00Z&now=2026-03-02T10:00:00Z",
            "now",
        ),
        ("/v1/queues/billing?now=a&now=b", "now"),
        ("/v1/queues/stream?after=a&after=b", "after"),
        ("/v1/agents?wait_ms=1&wait_ms=1", "wait_ms"),
        ("/v1/agents/agent-1?after=a&after=b", "after"),
        (
            "/v1/reports/summary?group_by=queue&group_by=hour",
            "group_by",
        ),
        ("/v1/reports/journeys?from=a&to=b&from=c", "from"),
        ("/v1/reports/topics?to=a&to=b", "to"),
        ("/v1/reports/engagement?from=a&from=b", "from"),
        (
            "/v1/reports/channels?group_by=segment&group_by=tier",
            "group_by",
        ),
        (
            "/v1/internal/partials/queues?partitions=1&partitions=2",
            "partitions",
        ),
        (
            "/v1/channels/messenger?hub.mode=subscribe&hub.verify_token=meatyhamhock&hub.challenge=1&hub.challenge=2",
            "hub.challenge",
        ),
        ("/v1/channels/x?crc_token=a&crc_token=b", "crc_token"),
    ] {
        let answer = send(&h.app, get(path)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.body
        );
        assert_eq!(answer.content_type, "application/problem+json", "{path}");
        assert_eq!(answer.body["status"], 400, "{path}");
        assert_eq!(answer.body["field"], field, "{path}: {}", answer.body);
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("more than once"),
            "{path}: {}",
            answer.body
        );
    }
    // Given once, the same fields are read as before.
    let once = send(
        &h.app,
        get("/v1/customers/resolve?kind=phone&value=%2B15550000001"),
    )
    .await;
    assert_eq!(once.status, StatusCode::NOT_FOUND, "{}", once.body);
    let crc = send(&h.app, get("/v1/channels/x?crc_token=a")).await;
    assert_eq!(crc.status, StatusCode::OK, "{}", crc.body);
}

#[tokio::test]
async fn axum_s_own_refusals_are_problems_and_only_gzip_bodies_are_decoded() {
    let h = harness(AccessControl::open(), &[]).await;
    let request = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    };
    for (request, status) in [
        (
            request("DELETE", "/v1/views"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            request("OPTIONS", "/v1/queues"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            request("GET", "/v1/interactions/%ff"),
            StatusCode::BAD_REQUEST,
        ),
        (
            request("GET", "/v1/customers/resolve?kind=phone&kind=email"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let uri = request.uri().clone();
        let answer = send(&h.app, request).await;
        assert_eq!(answer.status, status, "{uri}");
        assert_eq!(answer.content_type, "application/problem+json", "{uri}");
        assert_eq!(answer.body["status"], status.as_u16(), "{uri}");
        assert!(!answer.body["detail"].as_str().unwrap().is_empty(), "{uri}");
    }
    let not_allowed = h
        .app
        .clone()
        .oneshot(request("DELETE", "/v1/views"))
        .await
        .unwrap();
    assert!(not_allowed.headers().contains_key(header::ALLOW));

    let body = json!([interaction(
        "z1",
        json!([{"kind": "phone", "value": "+15550000009"}]),
        "hold",
        "2026-03-02T09:00:00Z"
    )])
    .to_string();
    for encoding in ["br", "deflate", "x-unknown"] {
        let mut encoded = post("/v1/events", "application/json", body.clone());
        encoded.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static(encoding),
        );
        let answer = send(&h.app, encoded).await;
        assert_eq!(
            answer.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{encoding}"
        );
        assert!(answer.body["detail"].as_str().unwrap().contains(encoding));
    }
    assert_eq!(log_size(&h.log).await, 0);
    let mut identity = post("/v1/events", "application/json", body);
    identity.headers_mut().insert(
        header::CONTENT_ENCODING,
        header::HeaderValue::from_static("identity"),
    );
    assert_eq!(send(&h.app, identity).await.status, StatusCode::ACCEPTED);

    // gzip is read, within the same limit once decompressed.
    let gzip = |bytes: &[u8]| {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    };
    let gzipped = |bytes: Vec<u8>| {
        let mut request = post("/v1/events", "application/json", bytes);
        request.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
        request
    };
    let other = json!([interaction(
        "z2",
        json!([{"kind": "phone", "value": "+15550000010"}]),
        "hold",
        "2026-03-02T09:00:00Z"
    )])
    .to_string();
    let size = log_size(&h.log).await;
    let answer = send(&h.app, gzipped(gzip(other.as_bytes()))).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    assert_eq!(log_size(&h.log).await, size + 1);
    // A bomb: a small body that decompresses past the limit (64 KiB here).
    let bomb = gzip(&vec![b' '; 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let answer = send(&h.app, gzipped(bomb)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let answer = send(&h.app, gzipped(b"not gzip at all".to_vec())).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(log_size(&h.log).await, size + 1);
}

/// A channel fixture (a real payload shape) of the channels crate.
fn channel_fixture(channel: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../channels/fixtures/{channel}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const X_SECRET: &str = "x-consumer-secret";

#[tokio::test]
async fn x_challenge_response_check_answers_the_hmac_of_the_crc_token() {
    let h = harness(AccessControl::open(), &[("x", X_SECRET)]).await;
    let answer = send(&h.app, get("/v1/channels/x?crc_token=crc-7Hq2ZpW")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    // Computed outside omnilog: base64(HMAC-SHA256(key "x-consumer-secret", "crc-7Hq2ZpW")).
    assert_eq!(
        answer.body,
        json!({"response_token": "sha256=fBdpyBQtV9YN54ZIE1pjdxrampiVijD5nD/gc5rQy4o="})
    );
    let no_token = send(&h.app, get("/v1/channels/x?nonce=1")).await;
    assert_eq!(no_token.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_token.body["field"], "crc_token");
    // Instagram is Meta's: its URL answers Meta's handshake, not X's check.
    let meta = send(
        &h.app,
        get("/v1/channels/instagram?hub.mode=subscribe&hub.challenge=42&hub.verify_token=meatyhamhock"),
    )
    .await;
    assert_eq!(meta.status, StatusCode::OK);
    let crc_at_meta = send(&h.app, get("/v1/channels/instagram?crc_token=t")).await;
    assert_eq!(crc_at_meta.status, StatusCode::BAD_REQUEST);
    assert_eq!(crc_at_meta.body["field"], "hub.mode");
    let no_check = send(&h.app, get("/v1/channels/fax?crc_token=t")).await;
    assert_eq!(no_check.status, StatusCode::NOT_FOUND);
    assert_eq!(log_size(&h.log).await, 0, "a check writes nothing");

    // Without a consumer secret there is nothing to answer with: a clear refusal.
    let unconfigured = harness(AccessControl::open(), &[]).await;
    let answer = send(&unconfigured.app, get("/v1/channels/x?crc_token=t")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.content_type, "application/problem+json");
    assert!(
        answer.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("consumer secret")),
        "{:?}",
        answer.body
    );
}

/// An X delivery signed the way X signs it (or not at all).
fn x_delivery(body: Vec<u8>, secret: Option<&str>) -> Request<Body> {
    let mut request = post("/v1/channels/x", "application/json", body.clone());
    if let Some(secret) = secret {
        let signature = SignatureScheme::X
            .sign(
                &WebhookRequest {
                    url: "https://desk.example.com/v1/channels/x".to_owned(),
                    content_type: Some("application/json".to_owned()),
                    headers: BTreeMap::new(),
                    body,
                    received_at: chrono::Utc::now(),
                },
                secret,
            )
            .unwrap();
        request
            .headers_mut()
            .insert("x-twitter-webhooks-signature", signature.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn x_deliveries_are_checked_and_a_mention_and_a_dm_of_one_person_are_one_customer() {
    let h = harness(AccessControl::open(), &[("x", X_SECRET)]).await;
    let mention = channel_fixture("x", "mention.json");
    let unsigned = send(&h.app, x_delivery(mention.clone(), None)).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    let forged = send(&h.app, x_delivery(mention.clone(), Some("guess"))).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(log_size(&h.log).await, 0);

    let answer = send(&h.app, x_delivery(mention.clone(), Some(X_SECRET))).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 1);
    let again = send(&h.app, x_delivery(mention, Some(X_SECRET))).await;
    assert_eq!(again.body["duplicates"], 1, "{:?}", again.body);
    let by_mention = customer_of(&h.app, "x", "1461852037716221955").await;
    let dm = send(
        &h.app,
        x_delivery(channel_fixture("x", "direct-message.json"), Some(X_SECRET)),
    )
    .await;
    assert_eq!(dm.status, StatusCode::ACCEPTED, "{:?}", dm.body);
    assert_eq!(dm.body["accepted"], 1);
    assert_eq!(
        customer_of(&h.app, "x", "1461852037716221955").await,
        by_mention
    );

    // The desk's own tweets and DMs, retweets and likes: nothing to write, still 2xx, so
    // X does not redeliver them.
    let size = log_size(&h.log).await;
    let own = serde_json::to_vec(&json!({
        "for_user_id": "2244994945",
        "direct_message_events": [{
            "type": "message_create", "id": "9", "created_timestamp": "1772444300000",
            "message_create": {"target": {"recipient_id": "1461852037716221955"},
                "sender_id": "2244994945", "message_data": {"text": "We are on it."}}
        }]
    }))
    .unwrap();
    let answer = send(&h.app, x_delivery(own, Some(X_SECRET))).await;
    assert!(answer.status.is_success(), "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 0);
    assert_eq!(log_size(&h.log).await, size);
}

#[tokio::test]
async fn a_fax_a_call_and_an_app_request_of_one_number_are_one_customer() {
    let h = harness(AccessControl::open(), &[]).await;
    let fax = send(
        &h.app,
        post(
            "/v1/channels/fax",
            "application/json",
            channel_fixture("fax", "incoming-completed.json"),
        ),
    )
    .await;
    assert_eq!(fax.status, StatusCode::ACCEPTED, "{:?}", fax.body);
    assert_eq!(fax.body["accepted"], 2);
    let by_fax = customer_of(&h.app, "phone", "+15551230001").await;
    let call = send(
        &h.app,
        post(
            "/v1/channels/voice",
            "application/x-www-form-urlencoded",
            "CallSid=CA77&From=%2B1%20555%20123%200001&To=%2B15559990000&Direction=inbound&CallStatus=ringing",
        ),
    )
    .await;
    assert_eq!(call.status, StatusCode::ACCEPTED, "{:?}", call.body);
    let app = send(
        &h.app,
        post(
            "/v1/channels/mobile_app",
            "application/json",
            channel_fixture("mobile_app", "contact-me.json"),
        ),
    )
    .await;
    assert_eq!(app.status, StatusCode::ACCEPTED, "{:?}", app.body);
    assert_eq!(customer_of(&h.app, "phone", "+15551230001").await, by_fax);
    // The app's own identity now leads to the same customer.
    assert_eq!(customer_of(&h.app, "app_user", "u-77812").await, by_fax);
    // Sinch's default form, multipart, is the same fax: stored once.
    let mut multipart = post(
        "/v1/channels/fax",
        "multipart/form-data",
        channel_fixture("fax", "incoming-completed.multipart"),
    );
    multipart.headers_mut().insert(
        header::CONTENT_TYPE,
        "multipart/form-data; boundary=------------------------5c1fd3b2a7e04f18"
            .parse()
            .unwrap(),
    );
    let again = send(&h.app, multipart).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);
    assert_eq!(again.body["duplicates"], 2, "{:?}", again.body);
}
