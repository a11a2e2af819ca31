//! The customer journey through the real binary's HTTP API: a customer calls, hangs up,
//! continues on chat an hour later and then emails; one open journey shows all three in
//! order with the agent context. A resolved journey is reopened by a contact within 7
//! days; after 7 days a new one opens. Every read uses the ingest answer's token, so it
//! sees its writes.

mod support;

use serde_json::{Value, json};
use support::{Http, Server, interaction_event as event};

async fn journey(http: &Http, server: &Server, customer: &str, token: &str) -> Value {
    let answer = http
        .get(&server.url(&format!("/v1/customers/{customer}/journey?after={token}")))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

/// The journeys of the customer a handle resolves to (asserted found), once the write
/// behind `token` is folded.
async fn journey_by_handle(http: &Http, server: &Server, query: &str, token: &str) -> Value {
    let resolved = http
        .get(&server.url(&format!("/v1/customers/resolve?{query}")))
        .await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    let customer = resolved.body["customer_id"].as_str().unwrap().to_owned();
    journey(http, server, &customer, token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_then_a_chat_then_an_email_make_one_journey_with_context() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let phone = ("phone", "+1 555 123 0001");
    let email = ("email", "Alice@Example.com");
    // The call: queued, assigned, a note, ended without resolution (the customer hung up).
    let call = json!([
        event(
            "CA1",
            "voice",
            phone,
            "2026-03-02T09:00:00Z",
            "interaction_started",
            json!({"direction": "inbound"})
        ),
        event(
            "CA1",
            "voice",
            phone,
            "2026-03-02T09:00:05Z",
            "queued",
            json!({"queue": "billing", "skills": ["billing"]})
        ),
        event(
            "CA1",
            "voice",
            phone,
            "2026-03-02T09:01:00Z",
            "assigned",
            json!({"agent_id": "agent-7"})
        ),
        event(
            "CA1",
            "voice",
            phone,
            "2026-03-02T09:04:00Z",
            "note",
            json!({"agent_id": "agent-7", "text": "Double charge on the March invoice; refund pending"})
        ),
        event(
            "CA1",
            "voice",
            phone,
            "2026-03-02T09:05:00Z",
            "ended",
            json!({"reason": "hangup"})
        ),
        event(
            "CA1",
            "voice",
            phone,
            "2026-03-02T09:06:00Z",
            "wrapped_up",
            json!({"agent_id": "agent-7", "resolved": false, "topics": ["invoice"]})
        ),
    ]);
    http.post_events(&server, &call).await;
    // An hour later, a chat that gives both the phone and the email (linking them).
    let chat = json!([
        {
            "source": "test", "source_event_id": "chat-1:start",
            "occurred_at": "2026-03-02T10:05:00Z",
            "customer": {"handles": [{"kind": "phone", "value": "+15551230001"}, {"kind": "email", "value": "alice@example.com"}]},
            "interaction_id": "chat-1", "channel": "chat", "type": "interaction_started", "direction": "inbound"
        },
        event("chat-1", "chat", email, "2026-03-02T10:05:10Z", "message", json!({"direction": "inbound", "author": "customer", "text": "Following up on my call"})),
    ]);
    http.post_events(&server, &chat).await;
    // Then an email.
    let mail = json!([event(
        "mail-1",
        "email",
        email,
        "2026-03-02T15:00:00Z",
        "interaction_started",
        json!({"direction": "inbound", "subject": "Refund?"})
    ),]);
    let receipt = http.post_events(&server, &mail).await;
    let token = receipt["token"].as_str().unwrap().to_owned();

    let answer =
        journey_by_handle(&http, &server, "kind=email&value=ALICE@example.com", &token).await;

    let journeys = answer["journeys"].as_array().unwrap();
    assert_eq!(journeys.len(), 1, "{answer:#}");
    let only = &journeys[0];
    assert_eq!(only["status"], "open");
    let channels: Vec<&str> = only["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["voice", "chat", "email"]);
    assert_eq!(only["channel_switches"], 2);
    assert_eq!(answer["context"]["open_journey_id"], only["journey_id"]);
    assert_eq!(answer["context"]["last_agent"], "agent-7");
    assert_eq!(answer["context"]["last_channel"], "email");
    let notes = answer["context"]["notes"].to_string();
    assert!(notes.contains("Double charge"), "{notes}");
    // The timeline runs across the channels in event time.
    let timeline = only["timeline"].as_array().unwrap();
    let times: Vec<&str> = timeline.iter().map(|t| t["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    assert_eq!(timeline.len(), 9);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_within_seven_days_of_a_resolution_reopens_and_later_opens_anew() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let phone = ("phone", "+15550009999");
    let resolved_call = |id: &str, day: u32| {
        json!([
            event(
                id,
                "voice",
                phone,
                &format!("2026-03-{day:02}T09:00:00Z"),
                "interaction_started",
                json!({"direction": "inbound"})
            ),
            event(
                id,
                "voice",
                phone,
                &format!("2026-03-{day:02}T09:01:00Z"),
                "assigned",
                json!({"agent_id": "agent-1"})
            ),
            event(
                id,
                "voice",
                phone,
                &format!("2026-03-{day:02}T09:05:00Z"),
                "ended",
                json!({})
            ),
            event(
                id,
                "voice",
                phone,
                &format!("2026-03-{day:02}T09:06:00Z"),
                "wrapped_up",
                json!({"agent_id": "agent-1", "resolved": true, "topics": ["login"]})
            ),
        ])
    };
    http.post_events(&server, &resolved_call("c1", 2)).await;
    // Four days later: reopens the resolved journey.
    http.post_events(&server, &resolved_call("c2", 6)).await;
    // Ten days after that resolution: a new journey.
    let receipt = http.post_events(&server, &resolved_call("c3", 16)).await;
    let token = receipt["token"].as_str().unwrap().to_owned();
    let customer = http
        .get(&server.url("/v1/customers/resolve?kind=phone&value=%2B15550009999"))
        .await
        .body["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = journey(&http, &server, &customer, &token).await;
    let journeys = answer["journeys"].as_array().unwrap();
    assert_eq!(journeys.len(), 2, "{answer:#}");
    assert_eq!(journeys[0]["reopened_count"], 1);
    assert_eq!(journeys[0]["interactions"].as_array().unwrap().len(), 2);
    assert_eq!(journeys[1]["reopened_count"], 0);
    assert_eq!(journeys[1]["status"], "resolved");

    let report = http
        .get(&server.url(&format!("/v1/reports/journeys?after={token}")))
        .await;
    assert_eq!(report.status, 200);
    assert_eq!(report.body["journeys"], 2);
    assert_eq!(report.body["resolved"], 2);
    server.stop();
}

/// A channel fixture (a real payload shape) of the channels crate.
fn channel_fixture(channel: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../channels/fixtures/{channel}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fax_a_call_and_a_mobile_app_request_of_one_person_meet_in_one_journey() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        let http = http.clone();
        let url = server.url(path);
        let content_type = content_type.to_owned();
        async move {
            let answer = http.send("POST", &url, &content_type, body).await;
            assert_eq!(answer.status, 202, "{url}: {:?}", answer.body);
            answer.body
        }
    };
    // 10:01, a 3-page fax from +1 555 123 0001 (Sinch's multipart form, its default).
    post(
        "/v1/channels/fax",
        "multipart/form-data; boundary=------------------------5c1fd3b2a7e04f18",
        channel_fixture("fax", "incoming-completed.multipart"),
    )
    .await;
    // 10:30, a call from the same number, written differently.
    for status in [
        "ringing&Timestamp=Mon%2C%2002%20Mar%202026%2010%3A30%3A00%20%2B0000",
        "completed&CallDuration=95&Timestamp=Mon%2C%2002%20Mar%202026%2010%3A32%3A00%20%2B0000",
    ] {
        post(
            "/v1/channels/voice",
            "application/x-www-form-urlencoded",
            format!("CallSid=CAfax1&From=%2B1%20(555)%20123-0001&To=%2B15559990000&Direction=inbound&CallStatus={status}")
                .into_bytes(),
        )
        .await;
    }
    // 11:40, a "contact me" from the mobile app, with the phone in the user's profile.
    let receipt = post(
        "/v1/channels/mobile_app",
        "application/json",
        channel_fixture("mobile_app", "contact-me.json"),
    )
    .await;
    let token = receipt["token"].as_str().unwrap().to_owned();

    let answer = journey_by_handle(&http, &server, "kind=app_user&value=u-77812", &token).await;
    let journeys = answer["journeys"].as_array().unwrap();
    assert_eq!(journeys.len(), 1, "{answer:#}");
    let only = &journeys[0];
    let channels: Vec<&str> = only["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["fax", "voice", "mobile_app"], "{answer:#}");
    assert_eq!(only["channels"], json!(["fax", "voice", "mobile_app"]));
    // What the app knew reaches the next agent: the screen, the last actions and how to
    // get back, in the context's notes; the topic the user picked, in its topics.
    let context = &answer["context"];
    assert_eq!(context["open_journey_id"], only["journey_id"]);
    assert_eq!(context["last_channel"], "mobile_app");
    let notes = context["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{context:#}");
    assert_eq!(notes[0]["agent"], "mobile_app");
    let note = notes[0]["text"].as_str().unwrap();
    assert!(note.contains("on screen orders/A-1009/refund"), "{note}");
    assert!(note.contains("saw error REFUND_WINDOW_CLOSED"), "{note}");
    assert!(note.contains("call back, today after 14:00"), "{note}");
    assert_eq!(context["topics"], json!(["refund"]));
    // The request waits in the callback queue for an agent.
    let queue = http
        .get(&server.url(&format!("/v1/queues/callback?after={token}")))
        .await;
    assert_eq!(queue.status, 200, "{:?}", queue.body);
    assert_eq!(queue.body["waiting"], 1, "{:?}", queue.body);
    assert_eq!(
        queue.body["items"][0]["interaction_id"],
        "mobile_app:contact:7d1e4f0a-3b9c-4c55-9f1e-2a6b8c0d4e11"
    );
    server.stop();
}

/// `GET /v1/interactions/{id}`.
async fn interaction(http: &Http, server: &Server, id: &str) -> support::Answer {
    http.get(&server.url(&format!("/v1/interactions/{id}")))
        .await
}

/// The interaction index is written blind (`BlindTable`): an interaction is found by its id
/// from memory before its checkpoint, from the store after a restart, and one written after
/// the restart beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interaction_is_found_by_its_id_before_its_checkpoint_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let http = Http::default();
    let phone = ("phone", "+1 555 123 0009");
    let call =
        |id: &str, at: &str, kind: &str, extra: Value| event(id, "voice", phone, at, kind, extra);
    let server = Server::start(dir.path(), &[]);
    http.post_events(
        &server,
        &json!([
            call(
                "CB1",
                "2026-03-02T09:00:00Z",
                "interaction_started",
                json!({"direction": "inbound"})
            ),
            call("CB1", "2026-03-02T09:04:00Z", "ended", json!({})),
        ]),
    )
    .await;
    support::wait_ready(&http, &server).await;
    let before = interaction(&http, &server, "CB1").await;
    assert_eq!(before.status, 200, "{:?}", before.body);
    assert_eq!(
        before.body["events"].as_array().unwrap().len(),
        2,
        "{}",
        before.body
    );
    server.stop();

    let server = Server::start(dir.path(), &[]);
    support::wait_ready(&http, &server).await;
    let after = interaction(&http, &server, "CB1").await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(after.body["customer_id"], before.body["customer_id"]);
    assert_eq!(after.body["events"], before.body["events"]);
    http.post_events(
        &server,
        &json!([call(
            "CB2",
            "2026-03-02T10:00:00Z",
            "interaction_started",
            json!({"direction": "inbound"})
        )]),
    )
    .await;
    support::wait_ready(&http, &server).await;
    let later = interaction(&http, &server, "CB2").await;
    assert_eq!(later.status, 200, "{:?}", later.body);
    assert_eq!(later.body["customer_id"], before.body["customer_id"]);
    assert_eq!(interaction(&http, &server, "CB1").await.status, 200);
    assert_eq!(interaction(&http, &server, "CB3").await.status, 404);
    server.stop();
}

/// A clean stop saves the identity view beside the log (`identity.snapshot`), and the next
/// start resolves from it: a handle claimed by a named customer and an email linked to them
/// before the stop resolve to that customer after it, for a new interaction as for the old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_saves_the_identity_view_and_the_next_start_resolves_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let http = Http::default();
    let phone = ("phone", "+1 555 123 0042");
    let named = json!({"customer": {"id": "customer-42", "handles": [{"kind": "phone", "value": phone.1}]}});
    let mut started = event(
        "SN1",
        "voice",
        phone,
        "2026-03-02T09:00:00Z",
        "interaction_started",
        json!({"direction": "inbound"}),
    );
    started["customer"] = named["customer"].clone();
    let mut link = event(
        "SN1",
        "voice",
        phone,
        "2026-03-02T09:01:00Z",
        "identity_linked",
        json!({}),
    );
    link["customer"] = json!({"id": "customer-42", "handles": [{"kind": "email", "value": "fortytwo@example.com"}]});
    let server = Server::start(dir.path(), &[]);
    http.post_events(&server, &json!([started, link])).await;
    support::wait_ready(&http, &server).await;
    server.stop();
    let snapshot = dir.path().join("identity.snapshot");
    assert!(snapshot.is_file(), "a clean stop saves the identity view");
    let saved = std::fs::read(&snapshot).unwrap();

    let server = Server::start(dir.path(), &[]);
    let email = ("email", "FortyTwo@Example.com");
    http.post_events(
        &server,
        &json!([
            event(
                "SN2",
                "email",
                email,
                "2026-03-02T10:00:00Z",
                "interaction_started",
                json!({"direction": "inbound"})
            ),
            event(
                "SN3",
                "voice",
                phone,
                "2026-03-02T11:00:00Z",
                "interaction_started",
                json!({"direction": "inbound"})
            ),
        ]),
    )
    .await;
    support::wait_ready(&http, &server).await;
    for id in ["SN1", "SN2", "SN3"] {
        let found = interaction(&http, &server, id).await;
        assert_eq!(found.status, 200, "{id}: {:?}", found.body);
        assert_eq!(
            found.body["customer_id"], "customer-42",
            "{id}: {}",
            found.body
        );
    }
    server.stop();
    assert_ne!(
        std::fs::read(&snapshot).unwrap(),
        saved,
        "saved again at the second stop, past the events since"
    );
}
