//! `POST /v1/channels/whatsapp`: WhatsApp Cloud API webhooks
//! (`object: "whatsapp_business_account"`).
//!
//! A delivery batches `entry[].changes[].value`; each `value.messages[]` item is one
//! `message` event (inbound, author customer, `source_event_id` = the `wamid`), channel
//! `messaging`. WhatsApp ids are phone numbers, so the customer's handle is kind `phone`
//! (`from` normalised to `+digits`): a WhatsApp message and a call from the same number are
//! one customer. The conversation is that number with the business number
//! (`interaction_id` = `whatsapp:{+from}:{phone_number_id}`), opened by its first message.
//!
//! The text is `text.body`, a media message's `caption`, the title of a tapped button or
//! list row, or a location's name; the message `type` and media ids are kept as attributes,
//! and so is the sender's profile name from `value.contacts[]`.
//!
//! Not mapped: `value.statuses[]` (sent/delivered/read/failed receipts of the business's
//! own outbound messages: they carry no conversation content, and an outbound message is
//! logged when the desk sends it) and `reaction` messages (an emoji on an earlier message,
//! not a new message). Changes of other `field`s (template or quality updates) carry no
//! `messages` and map to nothing.

use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::json;

use crate::mapping::{Interaction, attributes, handle, required, text, unix_seconds};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "messaging.whatsapp-cloud";

/// WhatsApp Cloud API webhooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct WhatsAppCloud;

// Read leniently (unknown fields ignored): Meta adds fields and message types without
// notice, and a new one must not make us refuse a customer's message.

#[derive(Debug, Deserialize)]
struct Webhook {
    object: String,
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    value: ChangeValue,
}

#[derive(Debug, Deserialize)]
struct ChangeValue {
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    display_phone_number: Option<String>,
    phone_number_id: String,
}

#[derive(Debug, Deserialize)]
struct Contact {
    wa_id: Option<String>,
    profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    from: String,
    id: String,
    timestamp: String,
    #[serde(rename = "type")]
    kind: String,
    text: Option<Text>,
    image: Option<Media>,
    video: Option<Media>,
    audio: Option<Media>,
    document: Option<Media>,
    sticker: Option<Media>,
    location: Option<Location>,
    interactive: Option<Interactive>,
    button: Option<Button>,
    context: Option<Context>,
}

#[derive(Debug, Deserialize)]
struct Text {
    body: String,
}

#[derive(Debug, Deserialize)]
struct Media {
    id: Option<String>,
    mime_type: Option<String>,
    caption: Option<String>,
    filename: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
    name: Option<String>,
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Interactive {
    button_reply: Option<Reply>,
    list_reply: Option<Reply>,
}

#[derive(Debug, Deserialize)]
struct Reply {
    id: Option<String>,
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Button {
    text: Option<String>,
    payload: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Context {
    id: Option<String>,
}

impl ChannelIngestor for WhatsAppCloud {
    fn name(&self) -> &'static str {
        "whatsapp"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::Meta
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let webhook: Webhook = json_body(&request.body)?;
        crate::meta::expect_object(&webhook.object, "whatsapp_business_account", "a WhatsApp")?;
        let mut events = Vec::new();
        for (e, entry) in webhook.entry.iter().enumerate() {
            for (c, change) in entry.changes.iter().enumerate() {
                let at = format!("entry[{e}].changes[{c}].value");
                let value = &change.value;
                if value.messages.is_empty() {
                    continue;
                }
                let metadata = value
                    .metadata
                    .as_ref()
                    .ok_or_else(|| ChannelError::missing(format!("{at}.metadata")))?;
                let business = required(
                    &format!("{at}.metadata.phone_number_id"),
                    &metadata.phone_number_id,
                )?;
                for (m, message) in value.messages.iter().enumerate() {
                    let at = format!("{at}.messages[{m}]");
                    if let Some(event) = map_message(message, value, metadata, business, &at)? {
                        events.push(event);
                    }
                }
            }
        }
        Ok(events)
    }
}

/// The event of one `messages[]` item (none for a reaction); `at` is its path, for errors.
fn map_message(
    message: &Message,
    value: &ChangeValue,
    metadata: &Metadata,
    business: &str,
    at: &str,
) -> Result<Option<Event>, ChannelError> {
    let customer = handle(&format!("{at}.from"), "phone", &message.from)?;
    let wamid = required(&format!("{at}.id"), &message.id)?;
    let occurred_at = unix_seconds(&format!("{at}.timestamp"), &message.timestamp)?;
    if message.kind == "reaction" {
        return Ok(None);
    }
    let media = [
        &message.image,
        &message.video,
        &message.audio,
        &message.document,
        &message.sticker,
    ]
    .into_iter()
    .find_map(Option::as_ref);
    let reply = message
        .interactive
        .as_ref()
        .and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()));
    let location = message.location.as_ref();
    let body = message
        .text
        .as_ref()
        .map(|t| t.body.as_str())
        .or_else(|| media.and_then(|m| m.caption.as_deref()))
        .or_else(|| reply.and_then(|r| r.title.as_deref()))
        .or_else(|| message.button.as_ref().and_then(|b| b.text.as_deref()))
        .or_else(|| location.and_then(|l| l.name.as_deref().or(l.address.as_deref())));
    let sender_digits = &customer.value[1..];
    let profile_name = value
        .contacts
        .iter()
        .find(|c| c.wa_id.as_deref().map(|id| id.trim_start_matches('+')) == Some(sender_digits))
        .or_else(|| value.contacts.first())
        .and_then(|c| c.profile.as_ref())
        .and_then(|p| p.name.as_deref());
    let coordinates = location.and_then(|l| Some(format!("{},{}", l.latitude?, l.longitude?)));
    let kept = attributes([
        ("whatsapp_type", Some(message.kind.as_str())),
        ("customer_name", profile_name),
        ("business_number", metadata.display_phone_number.as_deref()),
        ("media_id", media.and_then(|m| m.id.as_deref())),
        (
            "media_mime_type",
            media.and_then(|m| m.mime_type.as_deref()),
        ),
        ("media_filename", media.and_then(|m| m.filename.as_deref())),
        ("reply_id", reply.and_then(|r| r.id.as_deref())),
        (
            "button_payload",
            message.button.as_ref().and_then(|b| b.payload.as_deref()),
        ),
        ("location", coordinates.as_deref()),
        (
            "in_reply_to",
            message.context.as_ref().and_then(|c| c.id.as_deref()),
        ),
    ]);
    let conversation = Interaction::new(
        SOURCE,
        Channel::Messaging,
        format!("whatsapp:{}:{business}", customer.value),
        vec![customer],
    );
    conversation
        .event(
            wamid,
            &occurred_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": text(body),
                "attributes": kept,
            }),
        )
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, refused_field, request, types};

    const JSON: &str = "application/json";

    #[test]
    fn a_text_message_is_a_customer_message_from_a_phone() {
        let events = assert_fixture(&WhatsAppCloud, "text-message.json", JSON);
        assert_eq!(types(&events), ["message"]);
        let event = &events[0];
        assert_eq!(event.channel, Some(Channel::Messaging));
        let handle = &event.customer.as_ref().unwrap().handles[0];
        assert_eq!(
            (handle.kind.as_str(), handle.value.as_str()),
            ("phone", "+15551230001")
        );
        assert_eq!(
            event.interaction_id.as_deref(),
            Some("whatsapp:+15551230001:106540352242922")
        );
        assert_eq!(event.occurred_at.to_rfc3339(), "2026-03-02T09:00:05+00:00");
        assert_eq!(event.attributes["customer_name"], "Alice Martin");
    }

    #[test]
    fn media_buttons_and_locations_give_text_and_receipts_and_reactions_nothing() {
        let events = assert_fixture(&WhatsAppCloud, "mixed.json", JSON);
        assert_eq!(types(&events), ["message", "message", "message"]);
        let texts: Vec<_> = events
            .iter()
            .map(|e| match &e.body {
                omnilog_events::Body::Message { text, .. } => text.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            texts,
            [
                Some("Here is the damaged box".to_owned()),
                Some("Talk to an agent".to_owned()),
                Some("Central Station".to_owned()),
            ]
        );
        assert_eq!(events[0].attributes["media_mime_type"], "image/jpeg");
    }

    #[test]
    fn only_statuses_map_to_nothing() {
        assert!(assert_fixture(&WhatsAppCloud, "statuses-only.json", JSON).is_empty());
    }

    #[test]
    fn malformed_webhooks_name_the_field() {
        let parse = |body: String| WhatsAppCloud.parse(&request(JSON, body));
        let message = |from: &str, timestamp: &str| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"106540352242922"}},"messages":[{{"from":"{from}","id":"wamid.1","timestamp":"{timestamp}","type":"text","text":{{"body":"hi"}}}}]}}}}]}}]}}"#
            )
        };
        assert!(parse(message("15551230001", "1772442005")).is_ok());
        assert_eq!(
            refused_field(parse(message("nobody", "1772442005"))),
            "entry[0].changes[0].value.messages[0].from"
        );
        assert_eq!(
            refused_field(parse(message("15551230001", "noon"))),
            "entry[0].changes[0].value.messages[0].timestamp"
        );
        let without_metadata = message("15551230001", "1772442005")
            .replace(r#""metadata":{"phone_number_id":"106540352242922"},"#, "");
        assert_eq!(
            refused_field(parse(without_metadata)),
            "entry[0].changes[0].value.metadata"
        );
        let numeric_time =
            message("15551230001", "1772442005").replace(r#""1772442005""#, "1772442005");
        assert_eq!(
            refused_field(parse(numeric_time)),
            "entry[0].changes[0].value.messages[0].timestamp"
        );
        assert_eq!(
            refused_field(parse(r#"{"object":"page","entry":[]}"#.to_owned())),
            "object"
        );
    }
}
