//! A timeline line's summary, kept compact: the fold writes what varies (a queue, an
//! agent, a text's excerpt) after a code for the sentence it goes into, and a query
//! renders the sentence ("queued in billing", "message from customer: Where is my
//! order?").
//!
//! Written as the sentence, a summary repeated its words on every line ("message from ",
//! "assigned to "): the lines were about half of the journey view's bytes, and every byte
//! of them was copied and written again by each checkpoint, run and table a replay writes
//! (a 1M replay without lines at all used 15 % less CPU; docs/benchmarks-journal.md, "2026-12-05,
//! late evening"). Only the fold writes summaries and only [`render`] reads them, so the
//! sentences are the same as before; the journey view's layout number changed with them,
//! so a store of the old lines is rebuilt, never misread.
//!
//! # Encoding
//!
//! One form byte, then the form's strings, each as postcard encodes one (its length's
//! varint, then its bytes), to the end of the summary (whose own length the line holds).
//! A form whose last string is an excerpt that came out empty leaves it out.

use omnilog_events::{Author, Body, Direction, Event};

use super::excerpt;
use super::records::{MAX_VARINT_BYTES, channel_name, write_varint};
use crate::ViewError;

/// The text as it is (a summary made of several values joined before their excerpt, and
/// what tests write).
const VERBATIM: u8 = 0;
/// `DIRECTION[ self-service] CHANNEL started[: SUBJECT]`: this plus the direction's
/// index in [`Direction::ALL`] times two, plus one when self-service.
const STARTED: u8 = 1;
/// `message from AUTHOR[: TEXT]`: this plus the author's index in [`Author::ALL`].
const MESSAGE_FROM_AUTHOR: u8 = 8;
/// `message from AGENT[: TEXT]`.
const MESSAGE_FROM_AGENT: u8 = 16;
/// `queued in QUEUE[ (priority PRIORITY)]`.
const QUEUED: u8 = 17;
/// `offered to AGENT`.
const OFFERED: u8 = 18;
/// `AGENT declined the offer`.
const OFFER_DECLINED: u8 = 19;
/// `offer to AGENT timed out`.
const OFFER_TIMED_OUT: u8 = 20;
/// `assigned to AGENT`.
const ASSIGNED: u8 = 21;
/// `transferred to AGENT in QUEUE`.
const TRANSFERRED_TO_AGENT_IN_QUEUE: u8 = 22;
/// `transferred to queue QUEUE`.
const TRANSFERRED_TO_QUEUE: u8 = 23;
/// `transferred to AGENT`.
const TRANSFERRED_TO_AGENT: u8 = 24;
/// `transferred`.
const TRANSFERRED: u8 = 25;
/// `put on hold`.
const HOLD: u8 = 26;
/// `resumed from hold`.
const RESUMED: u8 = 27;
/// `abandoned while queued`.
const ABANDONED: u8 = 28;
/// `ended[: REASON]`.
const ENDED: u8 = 29;
/// `wrapped up by AGENT: resolved[ (DISPOSITION)][, topics TOPIC, TOPIC...]`; the
/// disposition's string is always there (empty when it is not shown).
const WRAPPED_UP_RESOLVED: u8 = 30;
/// As [`WRAPPED_UP_RESOLVED`], `unresolved`.
const WRAPPED_UP_UNRESOLVED: u8 = 31;
/// `rated SCORE/5`.
const RATED: u8 = 32;
/// `note by AGENT: TEXT` (the separator even when the excerpt is empty).
const NOTE: u8 = 33;
/// `tagged TOPIC, TOPIC...`.
const TAGGED: u8 = 34;
/// `proactive notice (REASON)[: TEXT]`.
const PROACTIVE_NOTICE: u8 = 35;
/// `customers merged: FROM into INTO`.
const CUSTOMERS_MERGED: u8 = 36;

/// Appends `event`'s summary, compact (see the module documentation). The timeline
/// describes every event folded, so this is on the fold's hot path: the parts go straight
/// into the timeline's buffer, nothing formatted.
pub(crate) fn write_parts(event: &Event, out: &mut Vec<u8>) {
    match &event.body {
        Body::InteractionStarted {
            direction,
            subject,
            self_service,
        } => {
            // A named enum's values are numbered in the order of its `ALL`.
            let form = STARTED + 2 * (*direction as u8) + u8::from(*self_service == Some(true));
            out.push(form);
            push_excerpt(out, subject.as_deref());
        }
        Body::Message {
            author,
            agent_id,
            text,
            ..
        } => {
            match (author, agent_id) {
                (Author::Agent, Some(agent)) => {
                    out.push(MESSAGE_FROM_AGENT);
                    push_str(out, agent);
                }
                (author, _) => out.push(MESSAGE_FROM_AUTHOR + *author as u8),
            }
            push_excerpt(out, text.as_deref());
        }
        Body::Queued {
            queue, priority, ..
        } => {
            out.push(QUEUED);
            push_str(out, queue);
            if *priority != 0 {
                push_str(out, &priority.to_string());
            }
        }
        Body::Offered { agent_id } => push_form(out, OFFERED, &[agent_id]),
        Body::OfferDeclined { agent_id } => push_form(out, OFFER_DECLINED, &[agent_id]),
        Body::OfferTimedOut { agent_id } => push_form(out, OFFER_TIMED_OUT, &[agent_id]),
        Body::Assigned { agent_id } => push_form(out, ASSIGNED, &[agent_id]),
        Body::Transferred { to_queue, to_agent } => match (to_queue, to_agent) {
            (Some(queue), Some(agent)) => {
                push_form(out, TRANSFERRED_TO_AGENT_IN_QUEUE, &[agent, queue]);
            }
            (Some(queue), None) => push_form(out, TRANSFERRED_TO_QUEUE, &[queue]),
            (None, Some(agent)) => push_form(out, TRANSFERRED_TO_AGENT, &[agent]),
            (None, None) => out.push(TRANSFERRED),
        },
        Body::Hold => out.push(HOLD),
        Body::Resumed => out.push(RESUMED),
        Body::Abandoned => out.push(ABANDONED),
        Body::Ended { reason } => {
            out.push(ENDED);
            push_excerpt(out, reason.as_deref());
        }
        Body::WrappedUp {
            agent_id,
            resolved,
            disposition,
            topics,
        } => {
            out.push(if *resolved {
                WRAPPED_UP_RESOLVED
            } else {
                WRAPPED_UP_UNRESOLVED
            });
            push_str(out, agent_id);
            push_str(
                out,
                disposition.as_deref().map(excerpt).as_deref().unwrap_or(""),
            );
            for topic in topics {
                push_str(out, topic);
            }
        }
        Body::Csat { score } => push_form(out, RATED, &[&score.to_string()]),
        Body::Note { agent_id, text } => push_form(out, NOTE, &[agent_id, &excerpt(text)]),
        Body::Tagged { topics } => {
            out.push(TAGGED);
            for topic in topics {
                push_str(out, topic);
            }
        }
        Body::ProactiveNotice { reason, text } => {
            push_form(out, PROACTIVE_NOTICE, &[reason]);
            push_excerpt(out, text.as_deref());
        }
        Body::IdentityLinked { by_handles } => {
            push_form(out, VERBATIM, &[&linked_text(*by_handles, event)]);
        }
        Body::CustomersMerged {
            from_customer,
            into_customer,
        } => push_form(out, CUSTOMERS_MERGED, &[from_customer, into_customer]),
        Body::CustomerProfile => push_form(out, VERBATIM, &[&profile_text(event)]),
        Body::AgentState { .. } => push_form(out, VERBATIM, &[event.event_type().as_str()]),
    }
}

/// The line of an `identity_linked`: its handles, joined, then excerpted whole.
fn linked_text(by_handles: bool, event: &Event) -> String {
    let mut parts = vec![if by_handles {
        "handles linked as one customer: "
    } else {
        "identity linked: "
    }];
    let handles = event.customer.as_ref().map_or(&[][..], |c| &c.handles[..]);
    for (index, handle) in handles.iter().enumerate() {
        parts.extend([
            if index == 0 { "" } else { ", " },
            &handle.kind,
            " ",
            &handle.value,
        ]);
    }
    excerpt(&parts.concat()).into_owned()
}

/// The line of a `customer_profile`: its attributes, joined, then excerpted whole.
fn profile_text(event: &Event) -> String {
    let mut parts = vec!["profile:"];
    for (index, (key, value)) in event.attributes.iter().enumerate() {
        parts.extend([if index == 0 { " " } else { ", " }, key]);
        if value.is_empty() {
            parts.push(" removed");
        } else {
            parts.extend([" ", value]);
        }
    }
    excerpt(&parts.concat()).into_owned()
}

/// Appends `text` as a summary of the [`VERBATIM`] form (tests write lines this way).
#[cfg(test)]
pub(crate) fn write_verbatim(out: &mut Vec<u8>, text: &str) {
    push_form(out, VERBATIM, &[text]);
}

/// The sentence of `event`'s timeline line on the channel coded `channel`: what
/// [`render`] makes of the parts [`write_parts`] writes, for a line made from its event read
/// from the log.
pub(crate) fn render_event(event: &Event, channel: u8) -> Result<String, ViewError> {
    let mut parts = Vec::new();
    write_parts(event, &mut parts);
    render(&parts, channel)
}

/// The sentence of a summary [`write_parts`] wrote, for a line on the channel whose code
/// is `channel`.
pub(crate) fn render(parts: &[u8], channel: u8) -> Result<String, ViewError> {
    let (&form, mut rest) = parts
        .split_first()
        .ok_or_else(|| corrupt("an empty summary".to_owned()))?;
    let mut strings = Vec::new();
    while !rest.is_empty() {
        strings.push(take_str(&mut rest)?);
    }
    let nth = |at: usize| {
        strings
            .get(at)
            .copied()
            .ok_or_else(|| corrupt(format!("form {form} without its string {at}")))
    };
    let optional = |at: usize| strings.get(at).copied().filter(|text| !text.is_empty());
    let mut out = String::new();
    let with_text = |out: &mut String, text: Option<&str>| {
        if let Some(text) = text {
            out.push_str(": ");
            out.push_str(text);
        }
    };
    match form {
        VERBATIM => out.push_str(nth(0)?),
        STARTED..MESSAGE_FROM_AUTHOR => {
            let code = form - STARTED;
            let direction = Direction::ALL
                .get(usize::from(code / 2))
                .ok_or_else(|| corrupt(format!("unknown form {form}")))?;
            out.push_str(direction.as_str());
            if code % 2 == 1 {
                out.push_str(" self-service");
            }
            out.push(' ');
            out.push_str(channel_name(channel)?);
            out.push_str(" started");
            with_text(&mut out, optional(0));
        }
        MESSAGE_FROM_AUTHOR..MESSAGE_FROM_AGENT => {
            let author = Author::ALL
                .get(usize::from(form - MESSAGE_FROM_AUTHOR))
                .ok_or_else(|| corrupt(format!("unknown form {form}")))?;
            out.push_str("message from ");
            out.push_str(author.as_str());
            with_text(&mut out, optional(0));
        }
        MESSAGE_FROM_AGENT => {
            out.push_str("message from ");
            out.push_str(nth(0)?);
            with_text(&mut out, optional(1));
        }
        QUEUED => {
            out.push_str("queued in ");
            out.push_str(nth(0)?);
            if let Some(priority) = optional(1) {
                out.push_str(" (priority ");
                out.push_str(priority);
                out.push(')');
            }
        }
        OFFERED => join(&mut out, &["offered to ", nth(0)?]),
        OFFER_DECLINED => join(&mut out, &[nth(0)?, " declined the offer"]),
        OFFER_TIMED_OUT => join(&mut out, &["offer to ", nth(0)?, " timed out"]),
        ASSIGNED => join(&mut out, &["assigned to ", nth(0)?]),
        TRANSFERRED_TO_AGENT_IN_QUEUE => {
            join(&mut out, &["transferred to ", nth(0)?, " in ", nth(1)?]);
        }
        TRANSFERRED_TO_QUEUE => join(&mut out, &["transferred to queue ", nth(0)?]),
        TRANSFERRED_TO_AGENT => join(&mut out, &["transferred to ", nth(0)?]),
        TRANSFERRED => out.push_str("transferred"),
        HOLD => out.push_str("put on hold"),
        RESUMED => out.push_str("resumed from hold"),
        ABANDONED => out.push_str("abandoned while queued"),
        ENDED => {
            out.push_str("ended");
            with_text(&mut out, optional(0));
        }
        WRAPPED_UP_RESOLVED | WRAPPED_UP_UNRESOLVED => {
            let outcome = if form == WRAPPED_UP_RESOLVED {
                "resolved"
            } else {
                "unresolved"
            };
            join(&mut out, &["wrapped up by ", nth(0)?, ": ", outcome]);
            if let Some(disposition) = optional(1) {
                join(&mut out, &[" (", disposition, ")"]);
            }
            for (index, topic) in strings.iter().skip(2).enumerate() {
                out.push_str(if index == 0 { ", topics " } else { ", " });
                out.push_str(topic);
            }
        }
        RATED => join(&mut out, &["rated ", nth(0)?, "/5"]),
        NOTE => join(&mut out, &["note by ", nth(0)?, ": ", nth(1)?]),
        TAGGED => {
            out.push_str("tagged ");
            out.push_str(&strings.join(", "));
        }
        PROACTIVE_NOTICE => {
            join(&mut out, &["proactive notice (", nth(0)?, ")"]);
            with_text(&mut out, optional(1));
        }
        CUSTOMERS_MERGED => {
            join(
                &mut out,
                &["customers merged: ", nth(0)?, " into ", nth(1)?],
            );
        }
        unknown => return Err(corrupt(format!("unknown form {unknown}"))),
    }
    Ok(out)
}

fn join(out: &mut String, parts: &[&str]) {
    for part in parts {
        out.push_str(part);
    }
}

/// Appends a form and its strings.
fn push_form(out: &mut Vec<u8>, form: u8, strings: &[&str]) {
    out.push(form);
    for string in strings {
        push_str(out, string);
    }
}

/// Appends the excerpt of `text` when it is not empty (the last string of a form).
fn push_excerpt(out: &mut Vec<u8>, text: Option<&str>) {
    if let Some(text) = text.map(excerpt)
        && !text.is_empty()
    {
        push_str(out, &text);
    }
}

/// Appends a string as postcard encodes one: its length's varint, then its bytes.
fn push_str(out: &mut Vec<u8>, text: &str) {
    // A length under 128 (nearly every id, queue, topic and excerpt) is one byte, pushed:
    // appended as a slice of the varint's buffer, it was a call to `memcpy` for one byte.
    if let Ok(short) = u8::try_from(text.len())
        && short < 0x80
    {
        out.push(short);
    } else {
        let mut length = [0u8; MAX_VARINT_BYTES];
        let written = write_varint(&mut length, text.len() as u64);
        out.extend_from_slice(&length[..written]);
    }
    out.extend_from_slice(text.as_bytes());
}

/// Reads a string [`push_str`] wrote from the front of `rest`.
fn take_str<'a>(rest: &mut &'a [u8]) -> Result<&'a str, ViewError> {
    let (text, after) = postcard::take_from_bytes::<&str>(rest)
        .map_err(|e| corrupt(format!("a string that cannot be read: {e}")))?;
    *rest = after;
    Ok(text)
}

fn corrupt(reason: String) -> ViewError {
    ViewError::Corrupt {
        key: "journey timeline summary".to_owned(),
        reason,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Appends the parts.
    fn push_parts(out: &mut Vec<u8>, parts: &[&str]) {
        for part in parts {
            out.extend_from_slice(part.as_bytes());
        }
    }

    /// `parts`, then `: text` when the text's excerpt is not empty.
    fn push_with_text(out: &mut Vec<u8>, parts: &[&str], text: Option<&str>) {
        push_parts(out, parts);
        if let Some(text) = text.map(excerpt)
            && !text.is_empty()
        {
            push_parts(out, &[": ", &text]);
        }
    }

    /// The sentence an event's line said when summaries were stored as sentences: what
    /// [`render`] must give back.
    fn describe_into(event: &Event, out: &mut Vec<u8>) {
        match &event.body {
            Body::InteractionStarted {
                direction,
                subject,
                self_service,
            } => {
                let channel = event.channel.map_or("", |c| c.as_str());
                let kind = if *self_service == Some(true) {
                    " self-service"
                } else {
                    ""
                };
                push_with_text(
                    out,
                    &[direction.as_str(), kind, " ", channel, " started"],
                    subject.as_deref(),
                )
            }
            Body::Message {
                author,
                agent_id,
                text,
                ..
            } => {
                let who = match (author, agent_id) {
                    (Author::Agent, Some(agent)) => agent.as_str(),
                    (author, _) => author.as_str(),
                };
                push_with_text(out, &["message from ", who], text.as_deref())
            }
            Body::Queued {
                queue, priority, ..
            } => match priority {
                0 => push_parts(out, &["queued in ", queue]),
                priority => push_parts(
                    out,
                    &[
                        "queued in ",
                        queue,
                        " (priority ",
                        &priority.to_string(),
                        ")",
                    ],
                ),
            },
            Body::Offered { agent_id } => push_parts(out, &["offered to ", agent_id]),
            Body::OfferDeclined { agent_id } => push_parts(out, &[agent_id, " declined the offer"]),
            Body::OfferTimedOut { agent_id } => {
                push_parts(out, &["offer to ", agent_id, " timed out"])
            }
            Body::Assigned { agent_id } => push_parts(out, &["assigned to ", agent_id]),
            Body::Transferred { to_queue, to_agent } => match (to_queue, to_agent) {
                (Some(queue), Some(agent)) => {
                    push_parts(out, &["transferred to ", agent, " in ", queue])
                }
                (Some(queue), None) => push_parts(out, &["transferred to queue ", queue]),
                (None, Some(agent)) => push_parts(out, &["transferred to ", agent]),
                (None, None) => push_parts(out, &["transferred"]),
            },
            Body::Hold => push_parts(out, &["put on hold"]),
            Body::Resumed => push_parts(out, &["resumed from hold"]),
            Body::Abandoned => push_parts(out, &["abandoned while queued"]),
            Body::Ended { reason } => push_with_text(out, &["ended"], reason.as_deref()),
            Body::WrappedUp {
                agent_id,
                resolved,
                disposition,
                topics,
            } => {
                let outcome = if *resolved { "resolved" } else { "unresolved" };
                push_parts(out, &["wrapped up by ", agent_id, ": ", outcome]);
                let disposition = disposition.as_deref().map(excerpt);
                if let Some(disposition) = disposition.as_deref()
                    && !disposition.is_empty()
                {
                    push_parts(out, &[" (", disposition, ")"]);
                }
                for (index, topic) in topics.iter().enumerate() {
                    push_parts(out, &[if index == 0 { ", topics " } else { ", " }, topic]);
                }
            }
            Body::Csat { score } => push_parts(out, &["rated ", &score.to_string(), "/5"]),
            Body::Note { agent_id, text } => {
                push_parts(out, &["note by ", agent_id, ": ", &excerpt(text)])
            }
            Body::Tagged { topics } => {
                push_parts(out, &["tagged "]);
                for (index, topic) in topics.iter().enumerate() {
                    push_parts(out, &[if index == 0 { "" } else { ", " }, topic]);
                }
            }
            Body::ProactiveNotice { reason, text } => {
                push_with_text(out, &["proactive notice (", reason, ")"], text.as_deref())
            }
            Body::IdentityLinked { by_handles } => {
                push_parts(out, &[&linked_text(*by_handles, event)])
            }
            Body::CustomersMerged {
                from_customer,
                into_customer,
            } => push_parts(
                out,
                &["customers merged: ", from_customer, " into ", into_customer],
            ),
            Body::CustomerProfile => push_parts(out, &[&profile_text(event)]),
            Body::AgentState { .. } => push_parts(out, &[event.event_type().as_str()]),
        }
    }

    fn sentence_of(event: &Event) -> String {
        let mut out = Vec::new();
        describe_into(event, &mut out);
        String::from_utf8(out).expect("a sentence is made of strings")
    }

    /// An event of customer `k`, interaction `c1` on `channel`, with `body`'s fields.
    pub(in crate::journey) fn test_event(
        channel: &str,
        body: serde_json::Value,
    ) -> Result<Event, omnilog_events::EventError> {
        let mut value = serde_json::json!({
            "occurred_at": "2026-03-02T09:00:00Z", "customer": {"id": "k"},
            "interaction_id": "c1", "channel": channel,
        });
        value
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        omnilog_events::json::event_from_value(value)
    }

    /// The sentence a query shows for `event`'s line.
    pub(in crate::journey) fn rendered(event: &Event) -> String {
        let mut parts = Vec::new();
        write_parts(event, &mut parts);
        let channel = event.channel.map_or(0, |c| c as u8);
        render(&parts, channel).unwrap()
    }

    /// Every event of a generated history (every type the generator makes, texts long and
    /// short, empty and absent) renders as the sentence it was stored as before.
    #[test]
    fn a_rendered_summary_is_the_sentence_the_event_was_described_by() {
        let mut seen = std::collections::BTreeSet::new();
        for event in
            omnilog_testkit::history(omnilog_testkit::HistoryConfig::with_events(7, 20_000))
        {
            if event.channel.is_none() {
                continue;
            }
            seen.insert(event.event_type().as_str());
            assert_eq!(rendered(&event), sentence_of(&event), "{event:?}");
        }
        assert!(seen.len() >= 10, "the history made only {seen:?}");
    }

    /// The forms the history may not make, one by one.
    #[test]
    fn each_form_renders_its_sentence() {
        let event = |body: serde_json::Value| test_event("chatbot", body);
        let long = "word ".repeat(60);
        let bodies = [
            serde_json::json!({"type": "interaction_started", "direction": "inbound", "self_service": true, "subject": long}),
            serde_json::json!({"type": "interaction_started", "direction": "outbound", "self_service": true}),
            serde_json::json!({"type": "interaction_started", "direction": "outbound", "subject": "  "}),
            serde_json::json!({"type": "message", "direction": "inbound", "author": "bot", "text": "hi"}),
            serde_json::json!({"type": "message", "direction": "inbound", "author": "system"}),
            serde_json::json!({"type": "message", "direction": "outbound", "author": "agent", "text": "x"}),
            serde_json::json!({"type": "message", "direction": "outbound", "author": "agent", "agent_id": "ann", "text": long}),
            serde_json::json!({"type": "queued", "queue": "billing", "priority": -2}),
            serde_json::json!({"type": "queued", "queue": "é".repeat(100)}),
            serde_json::json!({"type": "offer_declined", "agent_id": "bo"}),
            serde_json::json!({"type": "offer_timed_out", "agent_id": "bo"}),
            serde_json::json!({"type": "transferred", "to_queue": "tech"}),
            serde_json::json!({"type": "transferred", "to_agent": "bo"}),
            serde_json::json!({"type": "transferred"}),
            serde_json::json!({"type": "hold"}),
            serde_json::json!({"type": "resumed"}),
            serde_json::json!({"type": "abandoned"}),
            serde_json::json!({"type": "ended"}),
            serde_json::json!({"type": "ended", "reason": "  line   dropped "}),
            serde_json::json!({"type": "wrapped_up", "agent_id": "ann", "resolved": false, "disposition": "  ", "topics": ["a", "b"]}),
            serde_json::json!({"type": "wrapped_up", "agent_id": "ann", "resolved": true, "disposition": "fixed"}),
            serde_json::json!({"type": "csat", "score": 5}),
            serde_json::json!({"type": "note", "agent_id": "ann", "text": "  a   note "}),
            serde_json::json!({"type": "tagged", "topics": ["refund", "late"]}),
            serde_json::json!({"type": "proactive_notice", "reason": "outage", "text": "We are on it"}),
            serde_json::json!({"type": "proactive_notice", "reason": "outage"}),
            serde_json::json!({"type": "customers_merged", "from_customer": "a", "into_customer": "b"}),
        ];
        let mut compared = 0;
        for body in bodies {
            // A body the contract refuses (a transfer to nowhere) never reaches a fold.
            let Ok(event) = event(body.clone()) else {
                continue;
            };
            assert_eq!(rendered(&event), sentence_of(&event), "{body}");
            compared += 1;
        }
        assert_eq!(compared, 26, "bodies that are not events");
    }

    #[test]
    fn a_damaged_summary_is_an_error_not_a_panic() {
        for parts in [
            &[][..],
            &[200],
            &[QUEUED],
            &[QUEUED, 5, b'a'],
            &[VERBATIM, 1, 0xff],
            &[STARTED + 6],
        ] {
            assert!(render(parts, 0).is_err(), "{parts:?}");
        }
    }
}
