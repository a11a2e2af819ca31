//! Golden fixtures of the wire format, one folder per schema version under
//! `tests/golden/v{N}/`, written once by the build of that version and never rewritten:
//!
//! - `events.pb`: one protobuf `EventBatch` of a seeded history covering every event type,
//!   and `events.jsonl`, the same events as that version's canonical JSON;
//! - for older versions, `events.current.jsonl`: what they read as today, through the
//!   upcasters; it changes only with a new version, by review;
//! - `twin.pb`: a small desk history written by that version; the twins of all versions
//!   hold the same history, and must project to the same views;
//! - `added-{name}.pb` and `added-{name}.jsonl`: events of what was added to that version
//!   after its fixture was written (a new body type or an optional field is additive and
//!   makes no new version, see `proto/`), checked like `events.pb`.
//!
//! Missing files are written by `OMNILOG_BLESS=1 cargo nextest run -p omnilog --test golden`;
//! existing ones are never overwritten.

use std::collections::BTreeSet;
use std::path::PathBuf;

use omnilog_events::{
    Body, CURRENT_SCHEMA_VERSION, Event, EventType, decode_batch, encode_batch, parse_event,
    to_canonical_json,
};
use omnilog_testkit::{HistoryConfig, history};
use omnilog_views::journey::{JourneyConfig, JourneyView};
use omnilog_views::queue::QueueView;
use omnilog_views::reporting::{ReportingConfig, ReportingView};
use omnilog_views::{Entries, LogPosition, View, ViewState, apply_in_memory};

fn golden(version: u32, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(format!("v{version}"))
        .join(name)
}

fn blessing() -> bool {
    std::env::var_os("OMNILOG_BLESS").is_some()
}

/// Writes `bytes` to a golden file that does not exist yet, when blessing.
fn bless_new(path: &PathBuf, bytes: impl AsRef<[u8]>) {
    if blessing() && !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lines(events: &[Event]) -> String {
    events
        .iter()
        .map(to_canonical_json)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A short seeded history that holds every event type.
fn sample() -> Vec<Event> {
    let mut seen = BTreeSet::new();
    let mut events = Vec::new();
    for event in history(HistoryConfig::with_events(2026, 20_000)) {
        if seen.insert(event.event_type().as_str()) || events.len() < 400 {
            events.push(event);
        }
        if seen.len() == EventType::ALL.len() && events.len() >= 400 {
            break;
        }
    }
    for value in rare_events() {
        let event = omnilog_events::json::event_from_value(value).expect("a valid event");
        if seen.insert(event.event_type().as_str()) {
            events.push(event);
        }
    }
    events
}

/// Types a desk's traffic rarely shows: written by hand.
fn rare_events() -> Vec<serde_json::Value> {
    serde_json::json!([
        {"source": "crm", "source_event_id": "link-1", "occurred_at": "2026-03-02T10:00:00Z",
         "customer": {"id": "c-alice", "handles": [{"kind": "email", "value": "alice@example.com"}]},
         "type": "identity_linked"},
        {"source": "crm", "source_event_id": "merge-1", "occurred_at": "2026-03-02T10:01:00Z",
         "customer": {"id": "c-alice"},
         "type": "customers_merged", "from_customer": "c-alice-old", "into_customer": "c-alice"},
        {"source": "outbound", "source_event_id": "notice-1", "occurred_at": "2026-03-02T10:02:00Z",
         "customer": {"id": "c-alice"}, "interaction_id": "notice-1", "channel": "sms",
         "type": "proactive_notice", "reason": "outage", "text": "Service is restored."}
    ])
    .as_array()
    .unwrap()
    .clone()
}

/// What was added to a schema version after its fixture was written: its own fixture, the
/// types it adds and the events it holds.
struct Addition {
    version: u32,
    name: &'static str,
    adds: &'static [EventType],
    events: fn() -> Vec<serde_json::Value>,
}

fn additions() -> Vec<Addition> {
    vec![Addition {
        version: 2,
        name: "customer-profile",
        // Also: the envelope (`interaction_id`, `channel`) on every type, an
        // `identity_linked` by handles alone, and `customer.attributes` on any event.
        adds: &[EventType::CustomerProfile],
        events: || {
            serde_json::json!([
                {"source": "crm", "source_event_id": "profile-1", "occurred_at": "2026-03-02T10:00:00Z",
                 "customer": {"id": "c-alice"}, "interaction_id": "CA1", "channel": "voice",
                 "type": "customer_profile", "attributes": {"segment": "finance", "tier": ""}},
                {"source": "desk", "source_event_id": "link-2", "occurred_at": "2026-03-02T10:01:00Z",
                 "customer": {"id": "c-alice", "handles": [{"kind": "email", "value": "alice@example.com"}],
                              "attributes": {"department": "billing"}},
                 "interaction_id": "CA1", "channel": "voice",
                 "type": "identity_linked", "by_handles": true},
                {"source": "desk", "source_event_id": "merge-2", "occurred_at": "2026-03-02T10:02:00Z",
                 "customer": {"id": "c-alice"}, "interaction_id": "CA1", "channel": "voice",
                 "type": "customers_merged", "from_customer": "c-alice-old", "into_customer": "c-alice"},
                {"source": "voice.twilio", "source_event_id": "CA2:queued", "occurred_at": "2026-03-02T10:03:00Z",
                 "customer": {"id": "c-bob", "handles": [{"kind": "phone", "value": "+15550002"}],
                              "attributes": {"segment": "medical"}},
                 "interaction_id": "CA2", "channel": "voice", "type": "queued", "queue": "billing"},
                {"source": "desk", "source_event_id": "ann-busy", "occurred_at": "2026-03-02T10:04:00Z",
                 "interaction_id": "CA2", "channel": "voice",
                 "type": "agent_state", "agent_id": "ann", "state": "busy"}
            ])
            .as_array()
            .unwrap()
            .clone()
        },
    }]
}

#[test]
fn every_addition_decodes_to_its_committed_canonical_json() {
    for addition in additions() {
        let pb = golden(addition.version, &format!("added-{}.pb", addition.name));
        let jsonl = golden(addition.version, &format!("added-{}.jsonl", addition.name));
        if addition.version == CURRENT_SCHEMA_VERSION {
            let events: Vec<Event> = (addition.events)()
                .into_iter()
                .map(|value| omnilog_events::json::event_from_value(value).expect("a valid event"))
                .collect();
            bless_new(&pb, encode_batch(&events));
            bless_new(&jsonl, lines(&events));
        }
        let bytes = read(&pb);
        let decoded = decode_batch(&bytes).expect("the golden batch decodes");
        for added in addition.adds {
            assert!(
                decoded.iter().any(|e| e.event_type() == *added),
                "{}: {added} is in its fixture",
                addition.name
            );
        }
        let written = String::from_utf8(read(&jsonl)).unwrap();
        assert_eq!(decoded.len(), written.lines().count());
        for (index, (event, line)) in decoded.iter().zip(written.lines()).enumerate() {
            assert_eq!(
                to_canonical_json(event),
                line,
                "{} event {index} reads differently",
                addition.name
            );
            let parsed = parse_event(line.as_bytes()).expect("the golden JSON parses");
            assert_eq!(
                &parsed, event,
                "{} event {index}: JSON and protobuf disagree",
                addition.name
            );
        }
        if addition.version == CURRENT_SCHEMA_VERSION {
            assert_eq!(
                encode_batch(&decoded),
                bytes,
                "the encoding of {} changed",
                addition.name
            );
        }
    }
}

#[test]
fn every_version_decodes_to_its_committed_canonical_json() {
    for version in 1..=CURRENT_SCHEMA_VERSION {
        let (pb, jsonl) = (
            golden(version, "events.pb"),
            golden(version, "events.jsonl"),
        );
        if version == CURRENT_SCHEMA_VERSION {
            let events = sample();
            bless_new(&pb, encode_batch(&events));
            bless_new(&jsonl, lines(&events));
        }
        let bytes = read(&pb);
        let decoded = decode_batch(&bytes).expect("the golden batch decodes");
        // Every type is in the fixture, or was added to this version or a later one after
        // it was written (and is in that addition's fixture).
        let mut types: BTreeSet<&str> = decoded.iter().map(|e| e.event_type().as_str()).collect();
        for addition in additions().iter().filter(|a| a.version >= version) {
            types.extend(addition.adds.iter().map(|t| t.as_str()));
        }
        assert_eq!(
            types.len(),
            EventType::ALL.len(),
            "v{version}: every type is covered"
        );
        assert!(
            decoded
                .iter()
                .all(|e| e.schema_version == CURRENT_SCHEMA_VERSION)
        );
        let expected_path = if version == CURRENT_SCHEMA_VERSION {
            jsonl.clone()
        } else {
            let current = golden(version, "events.current.jsonl");
            bless_new(&current, lines(&decoded));
            current
        };
        let expected = String::from_utf8(read(&expected_path)).unwrap();
        let written = String::from_utf8(read(&jsonl)).unwrap();
        assert_eq!(decoded.len(), expected.lines().count());
        for (index, ((event, line), original)) in decoded
            .iter()
            .zip(expected.lines())
            .zip(written.lines())
            .enumerate()
        {
            assert_eq!(
                to_canonical_json(event),
                line,
                "v{version} event {index} reads differently"
            );
            // The JSON that version wrote reads, through the JSON door, as the same event.
            let parsed = parse_event(original.as_bytes()).expect("the golden JSON parses");
            assert_eq!(
                &parsed, event,
                "v{version} event {index}: JSON and protobuf disagree"
            );
        }
        if version == CURRENT_SCHEMA_VERSION {
            assert_eq!(
                encode_batch(&decoded),
                bytes,
                "the encoding of the current version changed"
            );
        }
    }
}

/// A small desk history with topics written the way people type them.
fn twin_history() -> Vec<Event> {
    let contact = |id: &str, at: &str, kind: &str, extra: serde_json::Value| {
        let mut value = serde_json::json!({
            "source": "twin", "source_event_id": format!("{id}:{kind}:{at}"), "occurred_at": at,
            "customer": {"id": "customer-1"}, "interaction_id": id, "channel": "chat", "type": kind,
        });
        value
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        omnilog_events::json::event_from_value(value).expect("a valid event")
    };
    vec![
        contact(
            "chat-1",
            "2026-03-02T09:00:00Z",
            "interaction_started",
            serde_json::json!({"direction": "inbound"}),
        ),
        contact(
            "chat-1",
            "2026-03-02T09:00:10Z",
            "queued",
            serde_json::json!({"queue": "billing", "skills": ["billing"]}),
        ),
        contact(
            "chat-1",
            "2026-03-02T09:00:40Z",
            "assigned",
            serde_json::json!({"agent_id": "a1"}),
        ),
        contact(
            "chat-1",
            "2026-03-02T09:02:00Z",
            "tagged",
            serde_json::json!({"topics": ["x"]}),
        ),
        contact(
            "chat-1",
            "2026-03-02T09:05:00Z",
            "wrapped_up",
            serde_json::json!({"agent_id": "a1", "resolved": true, "topics": ["x"]}),
        ),
        contact(
            "chat-2",
            "2026-03-03T09:00:00Z",
            "interaction_started",
            serde_json::json!({"direction": "inbound"}),
        ),
        contact(
            "chat-2",
            "2026-03-03T09:01:00Z",
            "tagged",
            serde_json::json!({"topics": ["x"]}),
        ),
    ]
}

/// The twin as version `version` wrote it: version 1 kept topics as typed.
fn twin_as(version: u32) -> Vec<Event> {
    let typed: [&[&str]; 3] = [
        &["Billing", " Refund  Request "],
        &["billing", "REFUND request"],
        &["Refund Request"],
    ];
    let mut typed = typed.iter();
    twin_history()
        .into_iter()
        .map(|mut event| {
            if let Body::Tagged { topics } | Body::WrappedUp { topics, .. } = &mut event.body {
                let raw: Vec<String> = typed
                    .next()
                    .unwrap()
                    .iter()
                    .map(|t| t.to_string())
                    .collect();
                *topics = if version == 1 {
                    raw
                } else {
                    raw.iter()
                        .map(|t| omnilog_events::normalise_topic(t))
                        .collect()
                };
            }
            event.schema_version = version;
            event
        })
        .collect()
}

/// One view folded in memory: its canonical dump.
fn fold<V: View>(view: &V, events: &[Event]) -> Entries {
    let mut state = view.new_state();
    for (offset, event) in events.iter().enumerate() {
        let position = LogPosition {
            partition: 0,
            offset: offset as u64,
        };
        apply_in_memory(view, &mut state, event, position).expect("applies");
    }
    state.dump().expect("dumps")
}

fn fold_all(events: &[Event]) -> Vec<Entries> {
    vec![
        fold(&JourneyView::new(JourneyConfig::default()), events),
        fold(&QueueView, events),
        fold(&ReportingView::new(ReportingConfig::default()), events),
    ]
}

#[test]
fn an_old_version_twin_projects_to_the_same_views_as_its_current_twin() {
    for version in 1..=CURRENT_SCHEMA_VERSION {
        bless_new(&golden(version, "twin.pb"), encode_batch(&twin_as(version)));
    }
    let current = decode_batch(&read(&golden(CURRENT_SCHEMA_VERSION, "twin.pb"))).unwrap();
    let topics = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Tagged { topics } | Body::WrappedUp { topics, .. } => Some(topics.join(",")),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        topics(&current),
        [
            "billing,refund-request",
            "billing,refund-request",
            "refund-request"
        ]
    );
    for version in 1..CURRENT_SCHEMA_VERSION {
        let old = decode_batch(&read(&golden(version, "twin.pb"))).unwrap();
        assert_eq!(old, current, "v{version} twin reads as the current twin");
        assert_eq!(
            fold_all(&old),
            fold_all(&current),
            "v{version} twin projects differently"
        );
    }
}
