//! `POST /v1/channels/email`: a raw RFC 5322 message (`message/rfc822`), as a mail
//! relay or an inbound-mail service hands it over.
//!
//! The interaction is the thread, named by its root: the first id of `References`, else
//! `In-Reply-To`, else the message's own `Message-ID` (angle brackets and whitespace
//! removed). Each message gives two events:
//!
//! - `interaction_started` of the thread (`source_event_id` = `{root}:started`, `subject`
//!   without its `Re:`/`Fwd:` prefixes). Every message of a thread carries it, so the
//!   thread is opened whichever of its messages arrives first; the later copies share the
//!   id and are stored once.
//! - `message` (inbound, author customer, `source_event_id` = the `Message-ID`): the text
//!   of the `text/plain` part, or of the `text/html` part with its markup removed, with
//!   the quoted reply taken out (lines starting with `>`, the `On … wrote:` line that
//!   introduces them, and everything under Outlook's `-----Original Message-----`).
//!
//! The customer is the `From` address. A message without `From` or `Message-ID` is
//! refused naming the header: without them there is no customer or no stable event id.
//! An unreadable `Date` is not refused (relays mangle it, and refusing would bounce a
//! customer's mail): the time of arrival stands in.

use chrono::{DateTime, Utc};
use mail_parser::{HeaderValue, MessageParser};
use omnilog_events::{Channel, Event};
use serde_json::json;

use crate::mapping::{Interaction, attributes, handle, text};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "email.rfc5322";

/// Raw RFC 5322 messages.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rfc5322Email;

impl ChannelIngestor for Rfc5322Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["message/rfc822"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::OmnilogHmac
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let message = MessageParser::default()
            .parse(&request.body)
            .ok_or_else(|| ChannelError::malformed("body", "not an RFC 5322 message"))?;
        let message_id = message
            .message_id()
            .and_then(normalise_id)
            .ok_or_else(|| ChannelError::malformed("Message-ID", "header is required"))?;
        let from = message
            .from()
            .and_then(|from| from.first())
            .ok_or_else(|| ChannelError::malformed("From", "header is required"))?;
        let address = from
            .address()
            .ok_or_else(|| ChannelError::malformed("From", "header has no address"))?;
        let customer = handle("From", "email", address)?;
        let root = first_id(message.references())
            .or_else(|| first_id(message.in_reply_to()))
            .unwrap_or_else(|| message_id.clone());
        let occurred_at: DateTime<Utc> = message
            .date()
            .filter(|date| date.is_valid())
            .and_then(|date| DateTime::from_timestamp(date.to_timestamp(), 0))
            .unwrap_or(request.received_at);
        let subject = message.subject().map(str::trim).filter(|s| !s.is_empty());
        let body = message.body_text(0).map(|text| strip_quoted_reply(&text));
        let mailbox = message
            .to()
            .and_then(|to| to.first())
            .and_then(|to| to.address());
        let attachments = message.attachment_count();

        let thread = Interaction::new(SOURCE, Channel::Email, root.clone(), vec![customer]);
        let started = thread.event(
            &format!("{root}:started"),
            &occurred_at,
            json!({
                "type": "interaction_started",
                "direction": "inbound",
                "subject": subject.map(thread_subject),
                "attributes": attributes([("mailbox", mailbox)]),
            }),
        )?;
        let attachment_count = (attachments > 0).then(|| attachments.to_string());
        let message = thread.event(
            &message_id,
            &occurred_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": text(body.as_deref()),
                "attributes": attributes([
                    ("message_id", Some(message_id.as_str())),
                    ("subject", subject),
                    ("customer_name", from.name()),
                    ("mailbox", mailbox),
                    ("attachment_count", attachment_count.as_deref()),
                ]),
            }),
        )?;
        Ok(vec![started, message])
    }
}

/// A message id without its angle brackets and surrounding whitespace.
fn normalise_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The first message id of `References` or `In-Reply-To`, however the parser read it.
fn first_id(value: &HeaderValue<'_>) -> Option<String> {
    match value {
        HeaderValue::Text(text) => text.split_whitespace().find_map(normalise_id),
        HeaderValue::TextList(list) => list.iter().find_map(|id| normalise_id(id)),
        _ => None,
    }
}

/// A thread's subject: the reply and forward prefixes mail clients add are not part of it.
fn thread_subject(subject: &str) -> String {
    const PREFIXES: &[&str] = &["re:", "fw:", "fwd:", "aw:", "wg:", "sv:", "tr:"];
    let mut rest = subject.trim();
    loop {
        let lower = rest.to_ascii_lowercase();
        match PREFIXES.iter().find(|p| lower.starts_with(*p)) {
            Some(prefix) => rest = rest[prefix.len()..].trim_start(),
            None => break,
        }
    }
    if rest.is_empty() {
        subject.trim()
    } else {
        rest
    }
    .to_owned()
}

/// The new text of a reply: quoted lines, their attribution and a forwarded original
/// are what the thread already holds.
fn strip_quoted_reply(text: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('>') {
            continue;
        }
        if trimmed.eq_ignore_ascii_case("-----Original Message-----") {
            break;
        }
        if trimmed.ends_with("wrote:") {
            if trimmed.starts_with("On ") {
                continue;
            }
            // Mail clients wrap a long attribution: "On Mon, 2 Mar 2026, Alice <" and
            // "alice@example.com> wrote:" on the next line.
            if kept
                .last()
                .is_some_and(|previous| previous.trim().starts_with("On "))
            {
                kept.pop();
                continue;
            }
        }
        kept.push(line);
    }
    kept.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, fixture, refused_field, request, types};

    const RFC822: &str = "message/rfc822";

    #[test]
    fn a_new_message_opens_its_own_thread() {
        let events = assert_fixture(&Rfc5322Email, "new-thread.eml", RFC822);
        assert_eq!(types(&events), ["interaction_started", "message"]);
        let root = "CAH3x9Yw4q1@mail.example.com";
        assert_eq!(events[0].interaction_id.as_deref(), Some(root));
        assert_eq!(
            events[0].source_event_id.as_deref(),
            Some("CAH3x9Yw4q1@mail.example.com:started")
        );
        assert_eq!(events[1].source_event_id.as_deref(), Some(root));
        assert_eq!(
            events[1].customer.as_ref().unwrap().handles[0].value,
            "alice@example.com"
        );
        assert_eq!(
            events[1].occurred_at.to_rfc3339(),
            "2026-03-02T08:15:00+00:00"
        );
        assert_eq!(events[1].channel, Some(Channel::Email));
    }

    #[test]
    fn a_reply_joins_the_thread_of_its_first_reference_without_the_quote() {
        let first = assert_fixture(&Rfc5322Email, "new-thread.eml", RFC822);
        let reply = assert_fixture(&Rfc5322Email, "reply.eml", RFC822);
        assert_eq!(reply[1].interaction_id, first[1].interaction_id);
        // Both carry the thread's start under one id: stored once, whichever came first.
        assert_eq!(reply[0].event_id, first[0].event_id);
        let omnilog_events::Body::Message {
            text: Some(text), ..
        } = &reply[1].body
        else {
            panic!("a reply has text");
        };
        assert_eq!(
            text,
            "Thanks, but the second charge is still there.\n\nAlice"
        );
        let omnilog_events::Body::InteractionStarted { subject, .. } = &reply[0].body else {
            panic!("first comes the start");
        };
        assert_eq!(subject.as_deref(), Some("Charged twice for order 1042"));
    }

    #[test]
    fn an_html_only_message_gives_its_text_without_markup() {
        let events = assert_fixture(&Rfc5322Email, "html-only.eml", RFC822);
        let omnilog_events::Body::Message {
            text: Some(text), ..
        } = &events[1].body
        else {
            panic!("the html part gives text");
        };
        assert!(text.contains("My parcel never arrived"), "{text}");
        assert!(!text.contains('<'), "{text}");
        // Only In-Reply-To is set: it names the thread.
        assert_eq!(
            events[0].interaction_id.as_deref(),
            Some("portal-ticket-77@desk.example.com")
        );
    }

    #[test]
    fn a_multipart_message_prefers_its_plain_text_part() {
        let events = assert_fixture(&Rfc5322Email, "multipart-alternative.eml", RFC822);
        let omnilog_events::Body::Message {
            text: Some(text), ..
        } = &events[1].body
        else {
            panic!("the plain part gives text");
        };
        assert_eq!(text, "Could you send me the invoice as a PDF?");
        assert_eq!(events[1].attributes["attachment_count"], "1");
    }

    #[test]
    fn messages_without_from_or_message_id_are_refused_naming_the_header() {
        let whole = String::from_utf8(fixture("email", "new-thread.eml")).unwrap();
        let without = |header: &str| {
            whole
                .split("\r\n")
                .filter(|line| !line.starts_with(header))
                .collect::<Vec<_>>()
                .join("\r\n")
        };
        let parse = |body: String| Rfc5322Email.parse(&request(RFC822, body));
        assert_eq!(refused_field(parse(without("Message-ID:"))), "Message-ID");
        assert_eq!(refused_field(parse(without("From:"))), "From");
        assert_eq!(
            refused_field(parse(whole.replace("<Alice@Example.com>", "<Alice>"))),
            "From"
        );
    }

    #[test]
    fn quoted_replies_are_taken_out_of_the_text() {
        let text = "Yes, please.\r\n\r\nOn Mon, 2 Mar 2026 at 09:00, Desk <\r\nsupport@desk.example.com> wrote:\r\n> Shall we refund?\r\n>\r\n";
        assert_eq!(strip_quoted_reply(text), "Yes, please.");
        let outlook = "Fine.\n\n-----Original Message-----\nFrom: Desk\nSubject: refund";
        assert_eq!(strip_quoted_reply(outlook), "Fine.");
    }

    #[test]
    fn thread_subjects_lose_reply_prefixes() {
        assert_eq!(thread_subject("Re: RE: Fwd: invoice"), "invoice");
        assert_eq!(thread_subject("Re:"), "Re:");
        assert_eq!(thread_subject("Regarding my order"), "Regarding my order");
    }
}
