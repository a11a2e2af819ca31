//! What characters an event's text may hold, checked at the door.
//!
//! An event is in the log for ever, so a value that could confuse a reader later must be
//! refused before it is acknowledged. Identifiers, names and codes (ids, handles, queues,
//! skills, topics, agent ids, reasons, attribute keys) must hold no control character
//! at all: a NUL or an escape in a queue name is never intended, and downstream stores
//! (PostgreSQL's `jsonb`, terminals, CSV readers) refuse or misread them. Free text
//! (a subject, a message, a note, an attribute's value) may hold tab, line feed and
//! carriage return, which real messages do, and no other control character.
//!
//! Every error names the field, as the rest of validation does.

use crate::error::EventError;
use crate::model::{Body, Event};

/// `text` without leading and trailing white space, as [`str::trim`] gives it. A value
/// whose first and last bytes are ASCII and no white space (nearly every one) comes back
/// as it is: any white space `str::trim` would take off, Unicode's included, starts or
/// ends the text with such a byte or one of a multi-byte character. The Unicode-aware
/// trim walked every value the door reads, about 1 % of a server's samples under batched
/// ingest (`perf record` of `benches/serve_load.py`).
pub(crate) fn trimmed(text: &str) -> &str {
    let plain = |byte: &u8| byte.is_ascii() && !byte.is_ascii_whitespace() && *byte != 0x0b;
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last)) if plain(first) && plain(last) => text,
        _ => text.trim(),
    }
}

/// Whether a value is an identifier or free text.
#[derive(Clone, Copy)]
enum Kind {
    Identifier,
    FreeText,
}

/// The first character of `value` that `kind` does not allow.
fn first_refused(value: &str, kind: Kind) -> Option<char> {
    // Every control character is below U+0020, U+007F, or U+0080..=U+009F (0xC2 then
    // 0x80..=0x9F in UTF-8): text without such a byte (nearly all of it) is let through on
    // a scan of its bytes, without decoding its characters.
    if !value.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
        return None;
    }
    value.chars().find(|&c| match kind {
        Kind::Identifier => c.is_control(),
        Kind::FreeText => c.is_control() && !matches!(c, '\t' | '\n' | '\r'),
    })
}

fn check(field: &str, value: &str, kind: Kind) -> Result<(), EventError> {
    check_named(|| field.to_owned(), value, kind)
}

/// [`check`] of a field whose name is built (an index, a key): only when it is refused.
fn check_named(field: impl FnOnce() -> String, value: &str, kind: Kind) -> Result<(), EventError> {
    match first_refused(value, kind) {
        None => Ok(()),
        Some(refused) => {
            let allowed = match kind {
                Kind::Identifier => "an identifier may hold no control character",
                Kind::FreeText => {
                    "text may hold tab, line feed and carriage return but no other control character"
                }
            };
            Err(EventError::invalid(
                &field(),
                format!(
                    "holds the control character U+{:04X}: {allowed}",
                    refused as u32
                ),
            ))
        }
    }
}

fn identifier(field: &str, value: &str) -> Result<(), EventError> {
    check(field, value, Kind::Identifier)
}

fn optional_identifier(field: &str, value: Option<&str>) -> Result<(), EventError> {
    value.map_or(Ok(()), |value| identifier(field, value))
}

fn free_text(field: &str, value: Option<&str>) -> Result<(), EventError> {
    value.map_or(Ok(()), |value| check(field, value, Kind::FreeText))
}

/// [`identifier`] of a field whose name is built: only when it is refused.
fn identifier_named(field: impl FnOnce() -> String, value: &str) -> Result<(), EventError> {
    check_named(field, value, Kind::Identifier)
}

fn identifiers(field: &str, values: &[String]) -> Result<(), EventError> {
    for (index, value) in values.iter().enumerate() {
        identifier_named(|| format!("{field}[{index}]"), value)?;
    }
    Ok(())
}

/// Refuses an event whose text holds a character its field does not allow.
pub fn check_event_text(event: &Event) -> Result<(), EventError> {
    optional_identifier("source", event.source.as_deref())?;
    optional_identifier("source_event_id", event.source_event_id.as_deref())?;
    optional_identifier("interaction_id", event.interaction_id.as_deref())?;
    if let Some(customer) = &event.customer {
        optional_identifier("customer.id", customer.id.as_deref())?;
        for (index, handle) in customer.handles.iter().enumerate() {
            identifier_named(|| format!("customer.handles[{index}].kind"), &handle.kind)?;
            identifier_named(|| format!("customer.handles[{index}].value"), &handle.value)?;
        }
        // A customer's attributes are names and values to group by: no control character.
        for (key, value) in &customer.attributes {
            identifier("customer.attributes", key)?;
            identifier_named(|| format!("customer.attributes.{key}"), value)?;
        }
    }
    for (key, value) in &event.attributes {
        identifier("attributes", key)?;
        check_named(|| format!("attributes.{key}"), value, Kind::FreeText)?;
    }
    match &event.body {
        Body::InteractionStarted { subject, .. } => free_text("subject", subject.as_deref()),
        Body::Message { agent_id, text, .. } => {
            optional_identifier("agent_id", agent_id.as_deref())?;
            free_text("text", text.as_deref())
        }
        Body::Queued { queue, skills, .. } => {
            identifier("queue", queue)?;
            identifiers("skills", skills)
        }
        Body::Offered { agent_id }
        | Body::OfferDeclined { agent_id }
        | Body::OfferTimedOut { agent_id }
        | Body::Assigned { agent_id } => identifier("agent_id", agent_id),
        Body::Transferred { to_queue, to_agent } => {
            optional_identifier("to_queue", to_queue.as_deref())?;
            optional_identifier("to_agent", to_agent.as_deref())
        }
        Body::Ended { reason } => optional_identifier("reason", reason.as_deref()),
        Body::WrappedUp {
            agent_id,
            disposition,
            topics,
            ..
        } => {
            identifier("agent_id", agent_id)?;
            optional_identifier("disposition", disposition.as_deref())?;
            identifiers("topics", topics)
        }
        Body::Note { agent_id, text } => {
            identifier("agent_id", agent_id)?;
            free_text("text", Some(text.as_str()))
        }
        Body::Tagged { topics } => identifiers("topics", topics),
        Body::CustomersMerged {
            from_customer,
            into_customer,
        } => {
            identifier("from_customer", from_customer)?;
            identifier("into_customer", into_customer)
        }
        Body::ProactiveNotice { reason, text } => {
            identifier("reason", reason)?;
            free_text("text", text.as_deref())
        }
        Body::AgentState {
            agent_id, skills, ..
        } => {
            identifier("agent_id", agent_id)?;
            identifiers("skills", skills.as_deref().unwrap_or_default())
        }
        // A profile's attributes are its envelope's, checked above as free text; a value
        // to group by holds no control character either.
        Body::CustomerProfile => {
            for (key, value) in &event.attributes {
                identifier_named(|| format!("attributes.{key}"), value)?;
            }
            Ok(())
        }
        Body::Hold
        | Body::Resumed
        | Body::Abandoned
        | Body::Csat { .. }
        | Body::IdentityLinked { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_is_what_str_trim_gives() {
        // Every character alone, at either end of a value, and amid one: the short cut
        // agrees with `str::trim` whichever white space (Unicode's included) is there.
        let mut values = vec![String::new(), "x".to_owned(), "ab".to_owned()];
        for c in (0..=0x3000u32)
            .chain([0x2028, 0x2029, 0x205f, 0xfeff])
            .filter_map(char::from_u32)
        {
            values.push(c.to_string());
            values.push(format!("{c}x"));
            values.push(format!("x{c}"));
            values.push(format!("x{c}y"));
        }
        for value in &values {
            assert_eq!(trimmed(value), value.trim(), "{value:?}");
        }
    }

    #[test]
    fn the_byte_scan_lets_through_only_characters_that_are_not_control_characters() {
        // Every character, alone and amid text: refused exactly when it is a control
        // character (and, as free text, not a tab or a line break).
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let text = format!("a{c}\u{e9}");
            let identifier = c.is_control().then_some(c);
            let free = (c.is_control() && !matches!(c, '\t' | '\n' | '\r')).then_some(c);
            assert_eq!(first_refused(&text, Kind::Identifier), identifier, "{c:?}");
            assert_eq!(first_refused(&text, Kind::FreeText), free, "{c:?}");
        }
    }

    #[test]
    fn identifiers_refuse_every_control_character_and_text_keeps_line_breaks() {
        assert_eq!(first_refused("billing", Kind::Identifier), None);
        assert_eq!(first_refused("a\0b", Kind::Identifier), Some('\0'));
        assert_eq!(first_refused("a\tb", Kind::Identifier), Some('\t'));
        assert_eq!(first_refused("a\u{85}b", Kind::Identifier), Some('\u{85}'));
        assert_eq!(first_refused("Grüße, 東京", Kind::Identifier), None);
        assert_eq!(first_refused("line\r\nnext\tcol", Kind::FreeText), None);
        assert_eq!(first_refused("bell\u{7}", Kind::FreeText), Some('\u{7}'));
        assert_eq!(first_refused("nul\0", Kind::FreeText), Some('\0'));
    }
}
