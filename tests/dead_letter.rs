//! A poison message in the log, through the real binary: every view sends it to
//! `omnilog.dead-letter` with the reason, `/metrics` counts it, and the events around it
//! are applied as if it were not there.

mod support;

use std::time::{Duration, Instant};

use omnilog_log::{AppendRecord, EmbeddedLog, EventLog, PartitionCounts, Topic};
use serde_json::json;
use support::{Http, Server};

/// The count a Prometheus text line gives for `series` (summed over label sets).
fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dead_letter_is_counted_and_the_rest_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    // The log as `serve` lays it out, with one record that is not an event at all.
    {
        let log = EmbeddedLog::open(&dir.path().join("log"), PartitionCounts::default()).unwrap();
        log.append(vec![AppendRecord {
            topic: Topic::Interactions,
            key: "poison".to_owned(),
            event_id: uuid::Uuid::from_u128(0xbad),
            payload: bytes::Bytes::from_static(b"\xff\xff not protobuf"),
            headers: Vec::new(),
        }])
        .await
        .unwrap();
    }
    let server = Server::start(dir.path(), &[]);
    let http = Http::default();
    let answer = http
        .post_events(
            &server,
            &json!([{
                "source": "test",
                "source_event_id": "after-the-poison",
                "occurred_at": "2026-03-02T09:00:00Z",
                "customer": {"handles": [{"kind": "email", "value": "alice@example.com"}]},
                "interaction_id": "chat-1",
                "channel": "chat",
                "type": "interaction_started",
                "direction": "inbound"
            }]),
        )
        .await;
    let token = answer["token"].as_str().unwrap();
    let customer = http
        .get(&server.url("/v1/customers/resolve?kind=email&value=alice@example.com"))
        .await;
    let customer = customer.body["customer_id"].as_str().unwrap().to_owned();
    let journey = http
        .get(&server.url(&format!("/v1/customers/{customer}/journey?after={token}")))
        .await;
    assert_eq!(journey.status, 200, "{:?}", journey.body);
    assert_eq!(
        journey.body["journeys"][0]["interactions"][0]["interaction_id"],
        "chat-1"
    );

    // Every view folds the interactions topic, so each counts the poison once.
    let views = http.get(&server.url("/v1/views")).await;
    let view_count = views.body["views"]
        .as_array()
        .or(views.body.as_array())
        .map(Vec::len)
        .expect("GET /v1/views lists the views");
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead_letters = loop {
        let metrics = http.get(&server.url("/metrics")).await;
        let text = metrics.body.as_str().unwrap_or_default().to_owned();
        let count = metric_sum(&text, "omnilog_projector_dead_letters_total");
        if count >= view_count as f64 || Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(view_count >= 2);
    assert_eq!(dead_letters, view_count as f64, "one dead letter per view");
    server.stop();

    // The dead letters hold the record and say why.
    let log = EmbeddedLog::open_existing(&dir.path().join("log")).unwrap();
    let mut letters = Vec::new();
    for partition in 0..log.partitions(Topic::DeadLetter) {
        letters.extend(
            log.read(Topic::DeadLetter, partition, 0, 100)
                .await
                .unwrap(),
        );
    }
    assert_eq!(letters.len(), view_count);
    for letter in &letters {
        assert_eq!(&letter.payload[..], b"\xff\xff not protobuf");
        let reason = letter.headers.iter().find(|(name, _)| name == "reason");
        let reason = String::from_utf8_lossy(&reason.expect("a reason header").1).into_owned();
        assert!(!reason.is_empty());
    }
}
