//! Issue 18 item 3, proactive engagement, through the real binary: `serve` with
//! `[[reactors]]` rules sends the notices of a hand-worked history (and none for a
//! back-filled trigger of three days ago), sends none twice after a restart on the same
//! data dir nor after its views are folded again from offset 0, and
//! `GET /v1/reports/engagement` equals the hand count, live, after each restart, and on the
//! views `omnilog replay` rebuilt from the log.
//!
//! The rules: `callback` (abandoned_callback, 10 minutes, 10 % held out: the holdout hash
//! puts `cy` in the control group and `ann` out of it), `outage` (segment_alert on
//! `segment`, by sms), `follow` (follow_up after 4 hours). Times are relative to the
//! test's start, T:
//!
//! | customer | history | decision |
//! |---|---|---|
//! | ann (segment retail) | calls at T−30m, abandons at T−25m | callback notice due T−15m (voice) |
//! | cy | calls at T−30m, abandons at T−24m | callback held out, due T−14m |
//! | old | abandoned three days ago | nothing: due long before the last hour |
//! | dee | emails at T−5h, agent at T−4h50m, writes again at T−4h30m | follow notice due T−30m |
//! | eve | profile: segment retail | — |
//! | (alert) | Alertmanager fires for segment retail at T−5m | outage notices to ann and eve, due T−5m (sms) |
//!
//! ann and cy wait for an agent since T−30m: their follow-ups fall due at T+3h30m, after
//! the test. Then ann calls back at T−10m and eve writes at T−1m. The report, by hand:
//! - callback: 1 notice, 1 customer, contacted within 24 h 1 (ann at T−10m after the
//!   notice at T−15m), rate 1.0; held out 1 (cy), contacted 0, rate 0.0; uplift 1.0.
//! - follow: 1 notice (dee), 1 customer, contacted 0; no holdout: uplift null.
//! - outage: 2 notices (ann, eve), 2 customers, contacted 1 (eve at T−1m; ann's call at
//!   T−10m came before the notice at T−5m), rate 0.5; uplift null.
//!
//! Five decisions in all: four `proactive_notice` events and one `customer_profile` (cy's
//! holdout), each once in the log.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use support::{Http, Server, run, wait_ready};

const RULES: &str = r#"
[[reactors]]
reason = "callback"
kind = "abandoned_callback"
after_minutes = 10
holdout_percent = 10

[[reactors]]
reason = "outage"
kind = "segment_alert"
channel = "sms"
text = "We know about the billing outage and are on it."

[[reactors]]
reason = "follow"
kind = "follow_up"
after_minutes = 240
"#;

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An event of `customer` on `interaction` at `at`.
fn event(
    customer: &str,
    at: DateTime<Utc>,
    interaction: &str,
    channel: &str,
    body: Value,
) -> Value {
    let mut value = json!({
        "source": "desk",
        "source_event_id": format!("{interaction}:{}:{}", body["type"].as_str().unwrap(), time(at)),
        "occurred_at": time(at),
        "customer": {"id": customer},
        "interaction_id": interaction,
        "channel": channel,
    });
    for (key, field) in body.as_object().unwrap() {
        value[key] = field.clone();
    }
    value
}

fn inbound() -> Value {
    json!({"type": "interaction_started", "direction": "inbound"})
}

fn queued() -> Value {
    json!({"type": "queued", "queue": "billing"})
}

fn abandoned() -> Value {
    json!({"type": "abandoned"})
}

/// The history before the reactor has anything to say about it.
fn history(t: DateTime<Utc>) -> Value {
    let minutes = TimeDelta::minutes;
    let mut ann_calls = event("ann", t - minutes(30), "V1", "voice", inbound());
    ann_calls["customer"]["attributes"] = json!({"segment": "retail"});
    json!([
        {
            "source": "crm", "source_event_id": "eve-profile", "occurred_at": time(t - TimeDelta::days(1)),
            "customer": {"id": "eve"}, "type": "customer_profile", "attributes": {"segment": "retail"},
        },
        ann_calls,
        event("ann", t - minutes(30), "V1", "voice", queued()),
        event("ann", t - minutes(25), "V1", "voice", abandoned()),
        event("cy", t - minutes(30), "V3", "voice", inbound()),
        event("cy", t - minutes(30), "V3", "voice", queued()),
        event("cy", t - minutes(24), "V3", "voice", abandoned()),
        event("old", t - TimeDelta::days(3), "V0", "voice", inbound()),
        event("old", t - TimeDelta::days(3), "V0", "voice", queued()),
        event("old", t - TimeDelta::days(3) + minutes(2), "V0", "voice", abandoned()),
        event("dee", t - minutes(300), "E4", "email", inbound()),
        event("dee", t - minutes(300), "E4", "email", queued()),
        event("dee", t - minutes(290), "E4", "email", json!({"type": "assigned", "agent_id": "agent-1"})),
        event("dee", t - minutes(270), "E4", "email",
            json!({"type": "message", "direction": "inbound", "author": "customer", "text": "Any news?"})),
    ])
}

/// Alertmanager's webhook: the billing API's alert for segment retail, firing at `at`.
fn alert(at: DateTime<Utc>) -> Value {
    json!({
        "version": "4",
        "status": "firing",
        "receiver": "service-desk",
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "BillingDown", "service": "billing-api", "segment": "retail"},
            "annotations": {"summary": "Billing is down"},
            "startsAt": time(at),
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "b111ab1e",
        }],
    })
}

async fn report(http: &Http, server: &Server, after: Option<&str>) -> Value {
    let path = match after {
        Some(token) => format!("/v1/reports/engagement?after={token}"),
        None => "/v1/reports/engagement".to_owned(),
    };
    let answer = http.get(&server.url(&path)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

/// `(reason, notices, held_out)` of each row.
fn decided(report: &Value) -> Vec<(String, u64, u64)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["reason"].as_str().unwrap().to_owned(),
                row["notices"].as_u64().unwrap(),
                row["held_out"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn expected_decisions() -> Vec<(String, u64, u64)> {
    vec![
        ("callback".to_owned(), 1, 1),
        ("follow".to_owned(), 1, 0),
        ("outage".to_owned(), 2, 0),
    ]
}

/// Waits (bounded) until the reactor's decisions are all in the report.
async fn wait_for_decisions(http: &Http, server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = report(http, server, None).await;
        if decided(&report) == expected_decisions() {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "the reactor did not decide within 60 s: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hand_count() -> Value {
    json!({"rows": [
        {"reason": "callback", "notices": 1, "customers": 1, "contacted_within_24h": 1, "contact_rate": 1.0,
         "held_out": 1, "held_out_contacted_within_24h": 0, "held_out_contact_rate": 0.0, "uplift": 1.0},
        {"reason": "follow", "notices": 1, "customers": 1, "contacted_within_24h": 0, "contact_rate": 0.0,
         "held_out": 0, "held_out_contacted_within_24h": 0, "held_out_contact_rate": 0.0, "uplift": null},
        {"reason": "outage", "notices": 2, "customers": 2, "contacted_within_24h": 1, "contact_rate": 0.5,
         "held_out": 0, "held_out_contacted_within_24h": 0, "held_out_contact_rate": 0.0, "uplift": null},
    ]})
}

/// The reactor's events in an export of the log: (type, customer, reason or holdout).
fn reactor_events(exported: &str) -> Vec<Value> {
    exported
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| event["source"] == "omnilog.reactor")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reactor_notifies_once_across_a_restart_and_its_report_equals_the_hand_count_after_a_replay()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("omnilog.toml");
    std::fs::write(&config, RULES).unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let http = Http::default();
    let t = Utc::now();

    let server = Server::start(&data, &["--config", &config_arg]);
    http.post_events(&server, &history(t)).await;
    let fired = http
        .send(
            "POST",
            &server.url("/v1/channels/alert"),
            "application/json",
            alert(t - TimeDelta::minutes(5)).to_string().into_bytes(),
        )
        .await;
    assert_eq!(fired.status, 202, "{:?}", fired.body);
    wait_for_decisions(&http, &server).await;

    // The customers answer: ann calls back after her callback notice, eve writes after the
    // outage notice.
    let answered = http
        .post_events(
            &server,
            &json!([
                event("ann", t - TimeDelta::minutes(10), "V5", "voice", inbound()),
                event(
                    "eve",
                    t - TimeDelta::minutes(1),
                    "W6",
                    "web_portal",
                    inbound()
                ),
            ]),
        )
        .await;
    let token = answered["token"].as_str().unwrap().to_owned();
    let live = report(&http, &server, Some(&token)).await;
    assert_eq!(live, hand_count());
    // A range: the outage notices alone fell due in the last 10 minutes.
    let recent = http
        .get(&server.url(&format!(
            "/v1/reports/engagement?from={}",
            time(t - TimeDelta::minutes(10))
        )))
        .await;
    assert_eq!(decided(&recent.body), [("outage".to_owned(), 2, 0)]);
    for (query, field) in [
        ("from=yesterday", "from"),
        ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "to"),
    ] {
        let bad = http
            .get(&server.url(&format!("/v1/reports/engagement?{query}")))
            .await;
        assert_eq!(bad.status, 400, "{query}: {:?}", bad.body);
        assert!(bad.content_type.starts_with("application/problem+json"));
        assert_eq!(bad.body["field"], field, "{query}: {:?}", bad.body);
    }
    // The notices are on the customers' timelines: ann got the callback and the outage. Read
    // with the token of ann's later call, which lies after both notices in her partition: the
    // journey view folds apart from the reports, and may not have reached them yet.
    let journey = http
        .get(&server.url(&format!("/v1/customers/ann/journey?after={token}")))
        .await;
    assert_eq!(journey.status, 200, "{:?}", journey.body);
    let notices: Vec<&Value> = journey.body["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| j["timeline"].as_array().unwrap())
        .filter(|entry| entry["type"] == "proactive_notice")
        .collect();
    assert_eq!(notices.len(), 2, "{:?}", journey.body);
    server.stop();

    // A restart on the same data dir: the reactor runs its rounds again and sends nothing
    // twice (its view holds its decisions; the same decision would be the same event id).
    let server = Server::start(&data, &["--config", &config_arg]);
    wait_ready(&http, &server).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_ready(&http, &server).await;
    assert_eq!(report(&http, &server, None).await, hand_count());
    server.stop();

    // The views folded again from offset 0 (the view store deleted): the reactor waits for
    // its view to hold the log as it was at start, so it finds its decisions there and
    // sends nothing again.
    std::fs::remove_dir_all(data.join("views")).unwrap();
    let server = Server::start(&data, &["--config", &config_arg]);
    wait_ready(&http, &server).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_ready(&http, &server).await;
    assert_eq!(report(&http, &server, None).await, hand_count());
    server.stop();

    let data_arg = data.to_str().unwrap().to_owned();
    let exported = tokio::task::spawn_blocking(move || run(&["export", "--data-dir", &data_arg]))
        .await
        .unwrap();
    let decisions = reactor_events(&exported);
    let mut summary: Vec<(String, String, String)> = decisions
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap().to_owned(),
                event["customer"]["id"].as_str().unwrap().to_owned(),
                event["reason"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| event["attributes"].to_string()),
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            (
                "customer_profile",
                "cy",
                r#"{"holdout.callback":"abandoned:V3"}"#
            ),
            ("proactive_notice", "ann", "callback"),
            ("proactive_notice", "ann", "outage"),
            ("proactive_notice", "dee", "follow"),
            ("proactive_notice", "eve", "outage"),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())),
        "{exported}"
    );
    let mut ids: Vec<&str> = decisions
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5);

    // A replay: the views rebuilt from the log answer the same report.
    let out = dir.path().join("replayed");
    let (data_arg, out_arg) = (
        data.to_str().unwrap().to_owned(),
        out.to_str().unwrap().to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        run(&["replay", "--data-dir", &data_arg, "--out", &out_arg])
    })
    .await
    .unwrap();
    let analyst = Server::start(&out, &["--read-only"]);
    assert_eq!(report(&http, &analyst, None).await, hand_count());
    analyst.stop();
}
