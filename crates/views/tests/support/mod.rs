//! Builders the views' tests share.

use omnilog_events::Event;
use omnilog_events::json::event_from_value;
use serde_json::Value;

/// A validated event: `envelope` (its time, customer, interaction...) with `fields` laid
/// over it (its type and type-specific fields, which may replace the envelope's), with
/// `recorded_at` set as ingest would.
pub fn ingested(mut envelope: Value, fields: &Value) -> Event {
    for (field, value) in fields.as_object().expect("fields are an object") {
        envelope[field] = value.clone();
    }
    let mut event = event_from_value(envelope).expect("a valid event");
    event.recorded_at = Some(event.occurred_at);
    event
}
