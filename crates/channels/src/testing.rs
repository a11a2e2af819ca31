//! The fixed test shape every channel follows: its fixtures (real payload shapes, under
//! `fixtures/<channel>/`) mapped to canonical events and compared with the expected
//! events beside them (`<fixture>.events.json`), a redelivery giving the same event ids,
//! and malformed payloads giving an error that names the field.
//!
//! The expected files are reviewed by hand like code. After a deliberate change to a
//! mapping, `OMNILOG_BLESS=1 cargo test -p omnilog-channels` rewrites them; the diff is
//! then the change to review.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use omnilog_events::{Event, to_canonical_json};
use serde_json::Value;

use crate::{ChannelError, ChannelIngestor, WebhookRequest};

/// When the test server "received" every request: the event time of payloads without one.
pub const RECEIVED_AT: &str = "2026-03-02T09:30:00Z";

fn fixture_path(channel: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(channel)
        .join(name)
}

/// The bytes of `fixtures/<channel>/<name>`.
pub fn fixture(channel: &str, name: &str) -> Vec<u8> {
    let path = fixture_path(channel, name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A webhook request as the API would hand it over.
pub fn request(content_type: &str, body: impl Into<Vec<u8>>) -> WebhookRequest {
    WebhookRequest {
        url: "https://desk.example.com/v1/channels/test".to_owned(),
        content_type: Some(content_type.to_owned()),
        headers: BTreeMap::new(),
        body: body.into(),
        received_at: RECEIVED_AT.parse::<DateTime<Utc>>().unwrap(),
    }
}

/// The events' canonical JSON, as they would be exported.
pub fn canonical_json(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::from_str(&to_canonical_json(e)).unwrap())
        .collect()
}

/// Maps `fixtures/<channel>/<name>` and checks the result against
/// `fixtures/<channel>/<name>.events.json`; returns the events for further checks.
/// A second delivery of the same bytes must give the same events (and so the same ids).
pub fn assert_fixture(
    ingestor: &dyn ChannelIngestor,
    name: &str,
    content_type: &str,
) -> Vec<Event> {
    let channel = ingestor.name();
    let body = fixture(channel, name);
    let events = ingestor
        .parse(&request(content_type, body.clone()))
        .unwrap_or_else(|e| panic!("{channel}/{name}: {e}"));
    let actual = Value::Array(canonical_json(&events));
    let expected_path = fixture_path(channel, &format!("{name}.events.json"));
    if std::env::var_os("OMNILOG_BLESS").is_some() {
        let mut text = serde_json::to_string_pretty(&actual).unwrap();
        text.push('\n');
        std::fs::write(&expected_path, text).unwrap();
    }
    let expected: Value = serde_json::from_slice(
        &std::fs::read(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
    )
    .unwrap();
    assert_eq!(
        actual,
        expected,
        "{channel}/{name} maps to other events than {}",
        expected_path.display()
    );
    let again = ingestor.parse(&request(content_type, body)).unwrap();
    assert_eq!(
        ids(&again),
        ids(&events),
        "{channel}/{name}: a redelivery changed ids"
    );
    events
}

/// The event ids, in order.
pub fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.event_id.to_string()).collect()
}

/// The types, in order.
pub fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.event_type().as_str()).collect()
}

/// The field a refusal names (panics if the payload was accepted).
pub fn refused_field(result: Result<Vec<Event>, ChannelError>) -> String {
    match result {
        Ok(events) => panic!("accepted: {:?}", canonical_json(&events)),
        Err(ChannelError::Malformed { field, .. }) => field,
        Err(other) => panic!("refused, but not as malformed: {other}"),
    }
}
