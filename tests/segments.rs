//! Issue 18, items 2 and 4, through the real binary's HTTP API: a whole history in which
//! every event carries `channel` and `interaction_id` is accepted, a link by handles alone
//! joins the caller's email to the caller (and never takes another customer's handle), and
//! the identity link, merge and profile made during the call are on the call's timeline;
//! customer attributes and the channels report by segment equal a hand count, before and
//! after a rebuild of the view from the log.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Http, Server, interaction_event as event, wait_ready};

/// An event of the call CA7 (every event of this history carries the call's envelope).
fn on_call(at: &str, kind: &str, fields: Value) -> Value {
    let mut value = json!({
        "source": "desk", "source_event_id": format!("CA7:{kind}:{at}"), "occurred_at": at,
        "interaction_id": "CA7", "channel": "voice", "type": kind,
    });
    for (key, field) in fields.as_object().unwrap() {
        value[key] = field.clone();
    }
    value
}

async fn resolve(http: &Http, server: &Server, kind: &str, value: &str) -> String {
    let answer = http
        .get(&server.url(&format!(
            "/v1/customers/resolve?kind={kind}&value={}",
            value.replace('+', "%2B")
        )))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["customer_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_a_call_carries_the_envelope_and_its_links_are_on_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let phone = json!({"kind": "phone", "value": "+15557001"});
    // Another customer, known by an email, before the call.
    http.post_events(
        &server,
        &json!([event(
            "chat-x",
            "chat",
            ("email", "xavier@example.com"),
            "2026-03-02T08:00:00Z",
            "interaction_started",
            json!({"direction": "inbound"})
        )]),
    )
    .await;
    let history = json!([
        on_call(
            "2026-03-02T09:00:00Z",
            "interaction_started",
            json!({"customer": {"handles": [phone]}, "direction": "inbound"})
        ),
        on_call(
            "2026-03-02T09:00:01Z",
            "agent_state",
            json!({"agent_id": "ann", "state": "available", "capacity": {"voice": 1}})
        ),
        on_call(
            "2026-03-02T09:00:02Z",
            "queued",
            json!({"customer": {"handles": [phone]}, "queue": "billing"})
        ),
        on_call(
            "2026-03-02T09:00:10Z",
            "assigned",
            json!({"customer": {"handles": [phone]}, "agent_id": "ann"})
        ),
        // "These handles are one person": the caller's phone and the email they give.
        on_call(
            "2026-03-02T09:01:00Z",
            "identity_linked",
            json!({"customer": {"handles": [phone, {"kind": "email", "value": "Carol@Example.com"}]}})
        ),
        // A link by handles of two known customers never merges them.
        on_call(
            "2026-03-02T09:01:30Z",
            "identity_linked",
            json!({"customer": {"handles": [phone, {"kind": "email", "value": "xavier@example.com"}]}})
        ),
        on_call(
            "2026-03-02T09:02:00Z",
            "customer_profile",
            json!({"customer": {"handles": [phone]}, "attributes": {"segment": "development"}})
        ),
        on_call(
            "2026-03-02T09:04:00Z",
            "ended",
            json!({"customer": {"handles": [phone]}})
        ),
        on_call(
            "2026-03-02T09:05:00Z",
            "wrapped_up",
            json!({"customer": {"handles": [phone]}, "agent_id": "ann", "resolved": true})
        ),
    ]);
    http.post_events(&server, &history).await;
    let caller = resolve(&http, &server, "phone", "+15557001").await;
    assert_eq!(
        resolve(&http, &server, "email", "carol@example.com").await,
        caller
    );
    let xavier = resolve(&http, &server, "email", "xavier@example.com").await;
    assert_ne!(xavier, caller, "xavier keeps his email");
    // A merge made during the call, into the caller.
    let merged = http
        .post_events(
            &server,
            &json!([on_call(
                "2026-03-02T09:06:00Z",
                "customers_merged",
                json!({"from_customer": "crm-carol-old", "into_customer": caller})
            )]),
        )
        .await;
    let token = merged["token"].as_str().unwrap().to_owned();

    let customer = http
        .get(&server.url(&format!("/v1/customers/{caller}?after={token}")))
        .await;
    assert_eq!(customer.status, 200, "{:?}", customer.body);
    assert_eq!(customer.body["merge_candidates"], json!([xavier]));
    assert_eq!(
        customer.body["attributes"],
        json!({"segment": "development"})
    );
    assert_eq!(customer.body["preferred_channel"], "voice");

    let journey = http
        .get(&server.url(&format!("/v1/customers/{caller}/journey?after={token}")))
        .await;
    assert_eq!(journey.status, 200, "{:?}", journey.body);
    let body = &journey.body;
    assert_eq!(body["attributes"], json!({"segment": "development"}));
    assert_eq!(body["context"]["preferred_channel"], "voice");
    let journeys = body["journeys"].as_array().unwrap();
    assert_eq!(journeys.len(), 1, "{body}");
    assert_eq!(journeys[0]["interactions"].as_array().unwrap().len(), 1);
    let lines: Vec<(String, String)> = journeys[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|line| line["interaction_id"] == "CA7")
        .map(|line| {
            (
                line["type"].as_str().unwrap().to_owned(),
                line["summary"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        (
            "identity_linked",
            "handles linked as one customer: phone +15557001, email carol@example.com",
        ),
        ("customer_profile", "profile: segment development"),
        (
            "customers_merged",
            &format!("customers merged: crm-carol-old into {caller}"),
        ),
    ] {
        assert!(
            lines.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {lines:?}"
        );
    }
    let agent = http
        .get(&server.url(&format!("/v1/agents/ann?after={token}")))
        .await;
    assert_eq!(agent.status, 200, "{:?}", agent.body);

    // Handles nobody knows, linked as one person: one new customer holds both.
    http.post_events(
        &server,
        &json!([{"source": "crm", "source_event_id": "link-new", "occurred_at": "2026-03-02T10:00:00Z",
                 "type": "identity_linked",
                 "customer": {"handles": [{"kind": "phone", "value": "+15557999"},
                                          {"kind": "email", "value": "newcomer@example.com"}]}}]),
    )
    .await;
    let newcomer = resolve(&http, &server, "phone", "+15557999").await;
    assert_eq!(
        resolve(&http, &server, "email", "newcomer@example.com").await,
        newcomer
    );
    assert!(![caller.as_str(), xavier.as_str()].contains(&newcomer.as_str()));
    server.stop();
}

/// The report's groups as (key, customers, interactions, preferred, [(channel,
/// [interactions, inbound, offered, answered in threshold, resolved, repeat contacts])]).
fn groups(report: &Value) -> Vec<Value> {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| {
            let channels: Vec<Value> = group["channels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    json!([
                        c["channel"],
                        [
                            c["interactions"],
                            c["inbound"],
                            c["offered"],
                            c["answered_in_threshold"],
                            c["resolved"],
                            c["repeat_contacts"]
                        ]
                    ])
                })
                .collect();
            json!([
                group["key"],
                group["customers"],
                group["interactions"],
                group["preferred_channel"],
                channels
            ])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channels_report_by_segment_equals_the_hand_count_before_and_after_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let phone = ("phone", "+15550001");
    let email = ("email", "fay@example.com");
    let profile = |handle: (&str, &str), at: &str, segment: &str| {
        json!({"source": "crm", "source_event_id": format!("profile:{}:{at}", handle.1),
               "occurred_at": at, "type": "customer_profile",
               "customer": {"handles": [{"kind": handle.0, "value": handle.1}]},
               "attributes": {"segment": segment}})
    };
    let history = json!([
        // Fay (finance): a call answered in 10 s (voice: 20 s) and resolved; she gives her
        // email, and mails two days later (a repeat contact), answered after 2 h (email: 1 h).
        profile(phone, "2026-03-01T08:00:00Z", "finance"),
        event("CA1", "voice", phone, "2026-03-02T09:00:00Z", "interaction_started", json!({"direction": "inbound"})),
        event("CA1", "voice", phone, "2026-03-02T09:00:00Z", "queued", json!({"queue": "billing"})),
        event("CA1", "voice", phone, "2026-03-02T09:00:10Z", "assigned", json!({"agent_id": "ann"})),
        {"source": "desk", "source_event_id": "link-fay", "occurred_at": "2026-03-02T09:01:00Z",
         "type": "identity_linked", "interaction_id": "CA1", "channel": "voice",
         "customer": {"handles": [{"kind": "phone", "value": phone.1}, {"kind": "email", "value": email.1}]}},
        event("CA1", "voice", phone, "2026-03-02T09:05:00Z", "wrapped_up", json!({"agent_id": "ann", "resolved": true})),
        event("E1", "email", email, "2026-03-04T10:00:00Z", "interaction_started", json!({"direction": "inbound"})),
        event("E1", "email", email, "2026-03-04T10:00:00Z", "queued", json!({"queue": "billing"})),
        event("E1", "email", email, "2026-03-04T12:00:00Z", "assigned", json!({"agent_id": "bo"})),
        // Gus (finance, carried on his email's customer): answered in 10 min, resolved.
        {"source": "test", "source_event_id": "E2:start", "occurred_at": "2026-03-03T09:00:00Z",
         "type": "interaction_started", "direction": "inbound", "interaction_id": "E2", "channel": "email",
         "customer": {"handles": [{"kind": "email", "value": "gus@example.com"}], "attributes": {"segment": "finance"}}},
        event("E2", "email", ("email", "gus@example.com"), "2026-03-03T09:00:00Z", "queued", json!({"queue": "billing"})),
        event("E2", "email", ("email", "gus@example.com"), "2026-03-03T09:10:00Z", "assigned", json!({"agent_id": "bo"})),
        event("E2", "email", ("email", "gus@example.com"), "2026-03-03T09:20:00Z", "wrapped_up", json!({"agent_id": "bo", "resolved": true})),
        // Sam (sales): a chat answered in 30 s (chat: 60 s).
        profile(("visitor", "v-sam"), "2026-03-01T08:00:00Z", "sales"),
        event("C1", "chat", ("visitor", "v-sam"), "2026-03-02T10:00:00Z", "queued", json!({"queue": "sales"})),
        event("C1", "chat", ("visitor", "v-sam"), "2026-03-02T10:00:30Z", "assigned", json!({"agent_id": "cy"})),
        // Nia: no segment.
        event("S1", "sms", ("phone", "+15550009"), "2026-03-02T11:00:00Z", "message",
            json!({"direction": "inbound", "author": "customer", "text": "hello"})),
    ]);
    let answer = http.post_events(&server, &history).await;
    let token = answer["token"].as_str().unwrap().to_owned();
    let expected = json!([
        [
            "finance",
            2,
            3,
            "email",
            [["email", [2, 2, 2, 1, 1, 0]], ["voice", [1, 1, 1, 1, 1, 1]]]
        ],
        ["sales", 1, 1, "chat", [["chat", [1, 1, 1, 1, 0, 0]]]],
        [null, 1, 1, "sms", [["sms", [1, 1, 0, 0, 0, 0]]]]
    ]);
    let report = http
        .get(&server.url(&format!(
            "/v1/reports/channels?group_by=segment&after={token}"
        )))
        .await;
    assert_eq!(report.status, 200, "{:?}", report.body);
    assert_eq!(report.body["group_by"], "segment");
    assert_eq!(json!(groups(&report.body)), expected, "{}", report.body);
    let finance = &report.body["groups"][0];
    assert_eq!(finance["channels"][0]["service_level"], 0.5);
    assert_eq!(finance["channels"][1]["repeat_contact_rate"], 1.0);

    let bad = http
        .get(&server.url("/v1/reports/channels?group_by=Not%20A%20Key"))
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert!(bad.content_type.starts_with("application/problem+json"));
    assert_eq!(bad.body["field"], "group_by", "{:?}", bad.body);

    // The view folded again from offset 0 answers the same.
    let rebuild = http
        .send(
            "POST",
            &server.url("/v1/views/segments/rebuild"),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(rebuild.status, 202, "{:?}", rebuild.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let views = http.get(&server.url("/v1/views")).await.body;
        let segments = views["views"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["view"] == "segments")
            .cloned()
            .unwrap();
        if segments["version"] == 2 && segments["rebuilding"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild did not finish: {segments}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_ready(&http, &server).await;
    let rebuilt = http
        .get(&server.url(&format!(
            "/v1/reports/channels?group_by=segment&after={token}"
        )))
        .await;
    assert_eq!(rebuilt.status, 200, "{:?}", rebuilt.body);
    assert_eq!(rebuilt.body, report.body);
    server.stop();
}
