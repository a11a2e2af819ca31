//! What every channel's mapping shares: the envelope of one interaction's events, handle
//! normalisation that names the payload's field, and the time formats platforms use.
//!
//! Channels build events as canonical JSON and hand it to [`crate::canonical`], so the
//! helpers here only assemble JSON; the contract's rules are checked in one place.
//! Handles and times are checked here as well, before the event is built, because an
//! error about `customer.handles[0]` would not tell the platform which of *its* fields
//! was wrong (`From`, `entry[0].messaging[1].sender.id`).

use chrono::{DateTime, TimeZone, Utc};
use omnilog_events::identity::normalise_handle;
use omnilog_events::{Channel, Event, Handle, format_time};
use serde_json::{Map, Value, json};

use crate::{ChannelError, canonical};

/// The envelope shared by the events of one interaction: where they come from, on which
/// channel, in which conversation, about which customer.
#[derive(Clone, Debug)]
pub struct Interaction {
    /// The platform and integration, stable forever (`voice.twilio`): part of every
    /// event id this channel derives.
    pub source: &'static str,
    pub channel: Channel,
    pub interaction_id: String,
    /// The customer's handles, the one that should identify the customer first.
    pub handles: Vec<Handle>,
}

impl Interaction {
    /// The envelope of an interaction's events.
    pub fn new(
        source: &'static str,
        channel: Channel,
        interaction_id: impl Into<String>,
        handles: Vec<Handle>,
    ) -> Self {
        Interaction {
            source,
            channel,
            interaction_id: interaction_id.into(),
            handles,
        }
    }

    /// One event of this interaction, validated. `body` is a JSON object with `type`,
    /// the type's fields and optionally `attributes`; `source_event_id` must be derived
    /// from the platform's own ids, so a redelivery yields the same event id.
    pub fn event(
        &self,
        source_event_id: &str,
        occurred_at: &DateTime<Utc>,
        body: Value,
    ) -> Result<Event, ChannelError> {
        let handles: Vec<Value> = self
            .handles
            .iter()
            .map(|h| json!({"kind": h.kind, "value": h.value}))
            .collect();
        let mut object = Map::new();
        object.insert("source".to_owned(), json!(self.source));
        object.insert("source_event_id".to_owned(), json!(source_event_id));
        object.insert("occurred_at".to_owned(), json!(format_time(occurred_at)));
        object.insert("customer".to_owned(), json!({ "handles": handles }));
        object.insert("interaction_id".to_owned(), json!(self.interaction_id));
        object.insert("channel".to_owned(), json!(self.channel.as_str()));
        if let Value::Object(fields) = body {
            object.extend(fields);
        }
        canonical(Value::Object(object))
    }
}

/// A normalised handle; an unusable value is an error about the payload's `field`.
pub fn handle(field: &str, kind: &str, value: &str) -> Result<Handle, ChannelError> {
    normalise_handle(kind, value)
        .map_err(|problem| ChannelError::malformed(field, problem.to_string()))
}

/// A required text field of a JSON payload: present but blank is as bad as absent.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, ChannelError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Err(ChannelError::malformed(field, "must not be empty"))
    } else {
        Ok(trimmed)
    }
}

/// Text worth keeping: trimmed, and `None` when nothing is left.
pub fn text(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// An RFC 3339 time of a payload, in UTC.
pub fn rfc3339(field: &str, value: &str) -> Result<DateTime<Utc>, ChannelError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ChannelError::malformed(field, format!("not an RFC 3339 time ({e}): {value:?}"))
        })
}

/// An RFC 2822 time (Twilio's `Timestamp`, e-mail's `Date`), in UTC.
pub fn rfc2822(field: &str, value: &str) -> Result<DateTime<Utc>, ChannelError> {
    DateTime::parse_from_rfc2822(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ChannelError::malformed(field, format!("not an RFC 2822 time ({e}): {value:?}"))
        })
}

/// A Unix time in milliseconds (Meta's Messenger `timestamp`).
pub fn unix_millis(field: &str, millis: i64) -> Result<DateTime<Utc>, ChannelError> {
    Utc.timestamp_millis_opt(millis).single().ok_or_else(|| {
        ChannelError::malformed(field, format!("{millis} is not a time in milliseconds"))
    })
}

/// A Unix time in seconds given as text (WhatsApp's `timestamp`).
pub fn unix_seconds(field: &str, seconds: &str) -> Result<DateTime<Utc>, ChannelError> {
    seconds
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .ok_or_else(|| {
            ChannelError::malformed(field, format!("{seconds:?} is not a time in seconds"))
        })
}

/// An `attributes` object from the pairs that have a non-blank value, so optional
/// platform fields can be listed without a condition each.
pub fn attributes<'a, I, V>(pairs: I) -> Value
where
    I: IntoIterator<Item = (&'a str, Option<V>)>,
    V: AsRef<str>,
{
    let object: Map<String, Value> = pairs
        .into_iter()
        .filter_map(|(name, value)| {
            let value = value?;
            let value = value.as_ref().trim();
            (!value.is_empty()).then(|| (name.to_owned(), json!(value)))
        })
        .collect();
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_handle_names_the_payload_field() {
        let error = handle("From", "phone", "anonymous").unwrap_err();
        assert_eq!(
            error,
            ChannelError::malformed("From", "a phone handle needs digits")
        );
        assert_eq!(
            handle("From", "phone", "+1 555 123 0001").unwrap().value,
            "+15551230001"
        );
    }

    #[test]
    fn times_of_every_platform_format_read_as_utc() {
        let expected: DateTime<Utc> = "2026-03-02T09:00:05Z".parse().unwrap();
        assert_eq!(
            rfc2822("Timestamp", "Mon, 02 Mar 2026 10:00:05 +0100").unwrap(),
            expected
        );
        assert_eq!(
            rfc3339("sent_at", "2026-03-02T09:00:05Z").unwrap(),
            expected
        );
        assert_eq!(unix_seconds("timestamp", "1772442005").unwrap(), expected);
        assert_eq!(
            unix_millis("timestamp", 1_772_442_005_000).unwrap(),
            expected
        );
        let error = rfc3339("sent_at", "yesterday").unwrap_err();
        assert!(matches!(error, ChannelError::Malformed { field, .. } if field == "sent_at"));
        assert!(unix_seconds("timestamp", "soon").is_err());
    }

    #[test]
    fn attributes_keep_only_values_that_say_something() {
        let value = attributes([("a", Some("1")), ("b", None), ("c", Some("  "))]);
        assert_eq!(value, json!({"a": "1"}));
    }

    #[test]
    fn an_interaction_event_goes_through_the_canonical_door() {
        let call = Interaction::new(
            "voice.twilio",
            Channel::Voice,
            "CA1",
            vec![handle("From", "phone", "+15551230001").unwrap()],
        );
        let at: DateTime<Utc> = "2026-03-02T09:00:05Z".parse().unwrap();
        let event = call
            .event(
                "CA1:completed",
                &at,
                json!({"type": "ended", "reason": "completed"}),
            )
            .unwrap();
        assert_eq!(
            event.event_id,
            omnilog_events::identity::event_id_for_source(Some("voice.twilio"), "CA1:completed")
        );
        // A field the type does not have is refused by the same rules as POST /v1/events.
        let error = call
            .event("CA1:x", &at, json!({"type": "ended", "queue": "billing"}))
            .unwrap_err();
        assert!(matches!(error, ChannelError::Malformed { field, .. } if field == "event.queue"));
    }
}
