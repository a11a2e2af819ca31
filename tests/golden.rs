//! Golden fixtures of the wire format: events encoded by an earlier build, committed under
//! `tests/golden/v{N}/`, must keep decoding to the same canonical JSON, and encoding that
//! JSON must give the same bytes. A change that breaks either breaks every stored log.
//!
//! `events.pb` is one protobuf `EventBatch` of a seeded history covering every event type;
//! `events.jsonl` is its canonical JSON, one event a line. They are written once, by
//! `OMNILOG_BLESS=1 cargo nextest run -p omnilog --test golden`, and never rewritten for a
//! version that has shipped: an older version's files stay as they are, and its events
//! must decode through the upcasters to the current shape.

use std::collections::BTreeSet;
use std::path::PathBuf;

use omnilog_events::{Event, decode_batch, encode_batch, to_canonical_json};
use omnilog_testkit::{HistoryConfig, history};

fn golden(version: u32, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(format!("v{version}"))
        .join(name)
}

/// A short seeded history that holds every event type.
fn sample() -> Vec<Event> {
    let mut seen = BTreeSet::new();
    let mut events = Vec::new();
    for event in history(HistoryConfig::with_events(2026, 20_000)) {
        if seen.insert(event.event_type().as_str()) || events.len() < 400 {
            events.push(event);
        }
        if seen.len() == omnilog_events::EventType::ALL.len() && events.len() >= 400 {
            break;
        }
    }
    // Types a desk's traffic rarely shows: written by hand.
    let rare = serde_json::json!([
        {"source": "crm", "source_event_id": "link-1", "occurred_at": "2026-03-02T10:00:00Z",
         "customer": {"id": "c-alice", "handles": [{"kind": "email", "value": "alice@example.com"}]},
         "type": "identity_linked"},
        {"source": "crm", "source_event_id": "merge-1", "occurred_at": "2026-03-02T10:01:00Z",
         "customer": {"id": "c-alice"},
         "type": "customers_merged", "from_customer": "c-alice-old", "into_customer": "c-alice"},
        {"source": "outbound", "source_event_id": "notice-1", "occurred_at": "2026-03-02T10:02:00Z",
         "customer": {"id": "c-alice"}, "interaction_id": "notice-1", "channel": "sms",
         "type": "proactive_notice", "reason": "outage", "text": "Service is restored."}
    ]);
    for value in rare.as_array().unwrap() {
        let event = omnilog_events::json::event_from_value(value.clone()).expect("a valid event");
        if seen.insert(event.event_type().as_str()) {
            events.push(event);
        }
    }
    events
}

#[test]
fn version_1_fixtures_decode_to_their_canonical_json_and_encode_to_their_bytes() {
    let (pb, jsonl) = (golden(1, "events.pb"), golden(1, "events.jsonl"));
    if std::env::var_os("OMNILOG_BLESS").is_some() && !pb.exists() {
        let events = sample();
        std::fs::create_dir_all(pb.parent().unwrap()).unwrap();
        std::fs::write(&pb, encode_batch(&events)).unwrap();
        let lines: Vec<String> = events.iter().map(to_canonical_json).collect();
        std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    }
    let bytes = std::fs::read(&pb).unwrap_or_else(|e| panic!("{}: {e}", pb.display()));
    let text =
        std::fs::read_to_string(&jsonl).unwrap_or_else(|e| panic!("{}: {e}", jsonl.display()));
    let decoded = decode_batch(&bytes).expect("the golden batch decodes");
    let expected: Vec<&str> = text.lines().collect();
    assert_eq!(decoded.len(), expected.len());
    let types: BTreeSet<&str> = decoded.iter().map(|e| e.event_type().as_str()).collect();
    assert_eq!(
        types.len(),
        omnilog_events::EventType::ALL.len(),
        "every type is covered"
    );
    for (index, (event, line)) in decoded.iter().zip(&expected).enumerate() {
        assert_eq!(
            to_canonical_json(event),
            *line,
            "event {index} decodes differently"
        );
        let parsed =
            omnilog_events::json::parse_event(line.as_bytes()).expect("the golden JSON parses");
        assert_eq!(&parsed, event, "event {index}: JSON and protobuf disagree");
    }
    assert_eq!(
        encode_batch(&decoded),
        bytes,
        "the encoding of the golden events changed"
    );
}
