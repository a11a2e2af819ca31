//! Schema evolution: upcasters turn an event written under an older `schema_version`
//! into the current shape on read, in the live path and in replay alike.
//!
//! Two doors lead in, and each version step has one function per door:
//! - JSON (`POST /v1/events`, export files): [`upcast_json`] rewrites the JSON object before
//!   it is validated;
//! - protobuf (the log's payloads, `application/x-protobuf`): [`upcast_event`] rewrites the
//!   decoded event. This is the path every projector and every replay reads through.
//!
//! The versions:
//! - **1**: the first version (CONTRACT §3).
//! - **2**: topics (`tagged`, `wrapped_up`) are stored normalised: trimmed, lower-cased,
//!   inner whitespace as one `-` ([`crate::normalise_topic`]). Version 1 took them as
//!   given, so `"Billing"` and `"billing "` counted as two topics; upcast, a version 1
//!   event's topics read as version 2 would have stored them.
//!
//! Adding version N+1: bump [`CURRENT_SCHEMA_VERSION`], add one function to each registry.

use serde_json::{Map, Value};

use crate::error::EventError;
use crate::model::{Body, CURRENT_SCHEMA_VERSION, Event, normalise_topic};

/// Rewrites a JSON event of version `i + 1` into version `i + 2`.
type JsonUpcaster = fn(&mut Map<String, Value>) -> Result<(), EventError>;
/// Rewrites a decoded event of version `i + 1` into version `i + 2`.
type EventUpcaster = fn(&mut Event);

/// `JSON_UPCASTERS[i]` turns version `i + 1` into `i + 2`.
const JSON_UPCASTERS: &[JsonUpcaster] = &[topics_normalised_json];
/// `EVENT_UPCASTERS[i]` turns version `i + 1` into `i + 2`.
const EVENT_UPCASTERS: &[EventUpcaster] = &[topics_normalised];

// Every version below the current one has exactly one upcaster at each door.
const _: () = assert!(JSON_UPCASTERS.len() + 1 == CURRENT_SCHEMA_VERSION as usize);
const _: () = assert!(EVENT_UPCASTERS.len() + 1 == CURRENT_SCHEMA_VERSION as usize);

/// Brings a JSON event to the current schema version, in place. An absent version means
/// current; a version newer than this build is an error (never guess at the future).
pub fn upcast_json(event: &mut Map<String, Value>) -> Result<(), EventError> {
    let version = match event.get("schema_version") {
        None | Some(Value::Null) => return Ok(()),
        Some(value) => value.as_u64().ok_or_else(|| {
            EventError::invalid("schema_version", format!("{value} is not a version number"))
        })?,
    };
    let current = u64::from(CURRENT_SCHEMA_VERSION);
    if version == 0 || version > current {
        return Err(EventError::invalid(
            "schema_version",
            format!("version {version} is not supported (this build reads 1..={current})"),
        ));
    }
    for upcaster in &JSON_UPCASTERS[(version - 1) as usize..] {
        upcaster(event)?;
    }
    event.insert("schema_version".to_owned(), Value::from(current));
    Ok(())
}

/// Brings a decoded event (whose version the decoder checked: 1..=current) to the current
/// schema version, in place.
pub fn upcast_event(event: &mut Event) {
    let from = event.schema_version.clamp(1, CURRENT_SCHEMA_VERSION);
    for upcaster in &EVENT_UPCASTERS[(from - 1) as usize..] {
        upcaster(event);
    }
    event.schema_version = CURRENT_SCHEMA_VERSION;
}

/// 1 → 2 (JSON): normalise the `topics` list.
fn topics_normalised_json(event: &mut Map<String, Value>) -> Result<(), EventError> {
    if let Some(Value::Array(topics)) = event.get_mut("topics") {
        for topic in topics.iter_mut() {
            if let Value::String(text) = topic {
                *text = normalise_topic(text);
            }
        }
    }
    Ok(())
}

/// 1 → 2 (decoded): normalise the topics of `tagged` and `wrapped_up`.
fn topics_normalised(event: &mut Event) {
    if let Body::Tagged { topics } | Body::WrappedUp { topics, .. } = &mut event.body {
        for topic in topics.iter_mut() {
            *topic = normalise_topic(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_topics_read_normalised_through_both_doors() {
        let mut json: Map<String, Value> = serde_json::from_str(
            r#"{"schema_version": 1, "type": "tagged", "topics": [" Refund  Request", "BILLING"]}"#,
        )
        .unwrap();
        upcast_json(&mut json).unwrap();
        assert_eq!(
            json["topics"],
            serde_json::json!(["refund-request", "billing"])
        );
        assert_eq!(json["schema_version"], 2);
        assert_eq!(
            normalise_topic("refund-request"),
            "refund-request",
            "idempotent"
        );
    }

    #[test]
    fn versions_outside_the_known_ones_are_refused() {
        for version in [0, 3, 99] {
            let mut json: Map<String, Value> =
                serde_json::from_str(&format!(r#"{{"schema_version": {version}}}"#)).unwrap();
            assert!(upcast_json(&mut json).is_err(), "version {version}");
        }
    }
}
