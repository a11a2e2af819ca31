//! `POST /v1/channels/chat`: a visitor's message from the web chat widget,
//! `{session_id, visitor_id, email?, name?, text, sent_at, message_id?}`.
//!
//! Each message is one `message` event (inbound, author customer) in the chat session
//! (`interaction_id` = `session_id`), opened by its first message. The customer's handles
//! are the email, when the visitor gave one, then the widget's visitor id (kind `visitor`):
//! the email comes first so that it decides the customer, and a visitor who gives the email
//! of a known customer joins that customer's journey instead of starting a new one.
//!
//! The widget's payload is ours, so it is read strictly: an unknown field is refused
//! rather than dropped. `message_id` is optional; without it a message's id is derived
//! from the session, the time and the text, which is the same for a redelivery.

use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::mapping::{Interaction, attributes, handle, required, rfc3339};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "chat.widget";

/// The web chat widget.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChatWidget;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatMessage {
    session_id: String,
    visitor_id: String,
    email: Option<String>,
    name: Option<String>,
    text: String,
    sent_at: String,
    message_id: Option<String>,
}

impl ChannelIngestor for ChatWidget {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::OmnilogHmac
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let chat: ChatMessage = json_body(&request.body)?;
        let session_id = required("session_id", &chat.session_id)?;
        let text = required("text", &chat.text)?;
        let sent_at = rfc3339("sent_at", &chat.sent_at)?;
        let mut handles = Vec::new();
        if let Some(email) = chat.email.as_deref().filter(|e| !e.trim().is_empty()) {
            handles.push(handle("email", "email", email)?);
        }
        handles.push(handle("visitor_id", "visitor", &chat.visitor_id)?);
        let source_event_id = match chat.message_id.as_deref() {
            Some(id) => format!("{session_id}:{}", required("message_id", id)?),
            None => {
                let digest = Sha256::digest(text.as_bytes());
                format!(
                    "{session_id}:{}:{}",
                    omnilog_events::format_time(&sent_at),
                    hex::encode(&digest[..8])
                )
            }
        };
        let session = Interaction::new(SOURCE, Channel::Chat, session_id, handles);
        let message = session.event(
            &source_event_id,
            &sent_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": text,
                "attributes": attributes([("customer_name", chat.name.as_deref())]),
            }),
        )?;
        Ok(vec![message])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, ids, refused_field, request, types};

    const JSON: &str = "application/json";

    #[test]
    fn a_message_with_an_email_is_identified_by_the_email_first() {
        let events = assert_fixture(&ChatWidget, "with-email.json", JSON);
        assert_eq!(types(&events), ["message"]);
        let event = &events[0];
        assert_eq!(
            event.interaction_id.as_deref(),
            Some("4b1f7e2a-93c1-4d5e-8f60-0a1b2c3d4e5f")
        );
        assert_eq!(event.channel, Some(Channel::Chat));
        let kinds: Vec<_> = event
            .customer
            .as_ref()
            .unwrap()
            .handles
            .iter()
            .map(|h| (h.kind.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("email", "alice@example.com"), ("visitor", "v_93f2c1")]
        );
        assert_eq!(
            event.occurred_at.to_rfc3339(),
            "2026-03-02T10:00:00.250+00:00"
        );
    }

    #[test]
    fn an_anonymous_visitor_is_known_by_the_visitor_id() {
        let events = assert_fixture(&ChatWidget, "anonymous.json", JSON);
        let handles = &events[0].customer.as_ref().unwrap().handles;
        assert_eq!(handles.len(), 1);
        assert_eq!(handles[0].kind, "visitor");
        assert_eq!(
            events[0].source_event_id.as_deref(),
            Some("4b1f7e2a-93c1-4d5e-8f60-0a1b2c3d4e5f:msg-0007")
        );
    }

    #[test]
    fn without_a_message_id_the_same_message_gets_the_same_id_and_another_text_another() {
        let body = |text: &str| {
            json!({"session_id": "s1", "visitor_id": "v1", "text": text, "sent_at": "2026-03-02T10:00:00Z"}).to_string()
        };
        let parse = |text: &str| ChatWidget.parse(&request(JSON, body(text))).unwrap();
        assert_eq!(ids(&parse("hello")), ids(&parse("hello")));
        assert_ne!(ids(&parse("hello")), ids(&parse("hello?")));
    }

    #[test]
    fn malformed_messages_name_the_field() {
        let valid = json!({"session_id": "s1", "visitor_id": "v1", "text": "hi", "sent_at": "2026-03-02T10:00:00Z"});
        let parse = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut body = valid.clone();
            change(&mut body);
            ChatWidget.parse(&request(JSON, body.to_string()))
        };
        assert!(parse(&|_| {}).is_ok());
        assert_eq!(
            refused_field(parse(&|b| b["sent_at"] = json!("soon"))),
            "sent_at"
        );
        assert_eq!(refused_field(parse(&|b| b["text"] = json!("  "))), "text");
        assert_eq!(
            refused_field(parse(&|b| b["email"] = json!("not-an-email"))),
            "email"
        );
        assert_eq!(
            refused_field(parse(&|b| b["visitor_id"] = json!(""))),
            "visitor_id"
        );
        assert_eq!(
            refused_field(parse(&|b| b["colour"] = json!("blue"))),
            "colour"
        );
        assert_eq!(
            refused_field(parse(&|b| {
                b.as_object_mut().unwrap().remove("session_id");
            })),
            "body"
        );
        assert_eq!(refused_field(parse(&|b| b["text"] = json!(42))), "text");
    }
}
