//! `POST /v1/channels/messenger`: Meta Messenger Platform webhooks (`object: "page"`).
//!
//! A delivery batches `entry[]` (one per Page) of `messaging[]` items. Each conversation
//! is one customer (handle kind `messenger` = the page-scoped id, PSID) with one Page:
//! `interaction_id` = `messenger:{page id}:{psid}`, channel `messaging`. Like SMS, a
//! conversation has no sessions and is opened by its first message.
//!
//! | item | event |
//! |---|---|
//! | `message` | `message`, inbound, author customer, `source_event_id` = `message.mid` |
//! | `message` with `is_echo` | `message`, outbound, author agent: the Page's own reply (sent from Meta's inbox or another app), so the journey shows both sides; the customer is then the `recipient` |
//! | `postback` (a button tapped) | `message`, inbound, text = the button's title, its payload kept |
//! | `delivery`, `read`, `reaction`, `optin`, `referral`, ... | nothing: receipts and gestures, not conversation content |
//!
//! Times are `timestamp` (milliseconds). A batch is mapped whole or refused whole, with
//! the field named by its path (`entry[0].messaging[1].sender.id`).
//!
//! A Page's other subscribed fields arrive at the same URL as `entry[].changes[]`: its
//! `feed` (comments and visitor posts on the Page) gives channel `social`, mapped by
//! [`crate::meta_feed`]; the other fields map to nothing. Instagram DMs have the shape of
//! `messaging[]` items and are mapped by the same code, at `POST /v1/channels/instagram`.

use std::collections::BTreeMap;

use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::mapping::{Interaction, attributes, handle, required, text, unix_millis};
use crate::meta_feed::{self, Change};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "messaging.meta-messenger";

/// Meta Messenger Platform webhooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaMessenger;

/// Who a Messenger-shaped conversation is with: Messenger itself, or Instagram messaging,
/// whose `messaging[]` items have the same shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conversations {
    /// The events' `source`.
    pub source: &'static str,
    /// The customer's handle kind, also the first part of the `interaction_id`.
    pub kind: &'static str,
    /// The attribute that keeps the business account's id (the Page, the Instagram account).
    pub account_attribute: &'static str,
}

/// Messenger conversations with a Page.
const MESSENGER: Conversations = Conversations {
    source: SOURCE,
    kind: "messenger",
    account_attribute: "page_id",
};

// Platform payloads are read leniently (unknown fields ignored): Meta adds fields without
// notice, and a new field must not make us refuse a customer's message.

#[derive(Debug, Deserialize)]
struct Webhook {
    object: String,
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    /// The Page's id.
    id: Option<String>,
    #[serde(default)]
    messaging: Vec<Messaging>,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Messaging {
    sender: Party,
    recipient: Party,
    timestamp: i64,
    message: Option<Message>,
    postback: Option<Postback>,
}

#[derive(Debug, Deserialize)]
struct Party {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Message {
    mid: String,
    text: Option<String>,
    #[serde(default)]
    is_echo: bool,
    app_id: Option<Value>,
    quick_reply: Option<QuickReply>,
    reply_to: Option<ReplyTo>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

#[derive(Debug, Deserialize)]
struct QuickReply {
    payload: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReplyTo {
    mid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Attachment {
    #[serde(rename = "type")]
    kind: String,
    payload: Option<AttachmentPayload>,
}

#[derive(Debug, Deserialize)]
struct AttachmentPayload {
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Postback {
    mid: Option<String>,
    title: Option<String>,
    payload: Option<String>,
}

impl ChannelIngestor for MetaMessenger {
    fn name(&self) -> &'static str {
        "messenger"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::Meta
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let webhook: Webhook = json_body(&request.body)?;
        crate::meta::expect_object(&webhook.object, "page", "a Messenger")?;
        let mut events = Vec::new();
        for (e, entry) in webhook.entry.iter().enumerate() {
            for (m, item) in entry.messaging.iter().enumerate() {
                let at = format!("entry[{e}].messaging[{m}]");
                events.extend(map_item(&MESSENGER, item, &at)?);
            }
            for (c, change) in entry.changes.iter().enumerate() {
                if change.field != "feed" {
                    continue;
                }
                let page_field = format!("entry[{e}].id");
                let page = entry
                    .id
                    .as_deref()
                    .ok_or_else(|| ChannelError::missing(&page_field))?;
                let page = required(&page_field, page)?;
                let at = format!("entry[{e}].changes[{c}]");
                events.extend(meta_feed::page_feed(&change.value, page, &at)?);
            }
        }
        Ok(events)
    }
}

/// The events of one `messaging[]` item of `platform`; `at` is its path, for errors.
pub(crate) fn map_item(
    platform: &Conversations,
    item: &Messaging,
    at: &str,
) -> Result<Vec<Event>, ChannelError> {
    let sender = required(&format!("{at}.sender.id"), &item.sender.id)?;
    let recipient = required(&format!("{at}.recipient.id"), &item.recipient.id)?;
    let occurred_at = unix_millis(&format!("{at}.timestamp"), item.timestamp)?;
    let echo = item.message.as_ref().is_some_and(|m| m.is_echo);
    // An echo is the Page speaking: the customer is the one it wrote to.
    let (psid, psid_field, page) = if echo {
        (recipient, "recipient.id", sender)
    } else {
        (sender, "sender.id", recipient)
    };
    let customer = handle(&format!("{at}.{psid_field}"), platform.kind, psid)?;
    let conversation = Interaction::new(
        platform.source,
        Channel::Messaging,
        format!("{}:{page}:{psid}", platform.kind),
        vec![customer],
    );
    if let Some(message) = &item.message {
        let mid = required(&format!("{at}.message.mid"), &message.mid)?;
        let attachment_types: Vec<&str> = message
            .attachments
            .iter()
            .map(|a| a.kind.as_str())
            .collect();
        let attachment_urls: BTreeMap<String, &str> = message
            .attachments
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let url = a.payload.as_ref()?.url.as_deref()?;
                Some((format!("attachment_url_{i}"), url))
            })
            .collect();
        let app_id = message.app_id.as_ref().map(|id| match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let types_joined = attachment_types.join(",");
        let kept = attributes(
            [
                (platform.account_attribute, Some(page)),
                ("attachment_types", Some(types_joined.as_str())),
                (
                    "quick_reply_payload",
                    message
                        .quick_reply
                        .as_ref()
                        .and_then(|q| q.payload.as_deref()),
                ),
                (
                    "reply_to_mid",
                    message.reply_to.as_ref().and_then(|r| r.mid.as_deref()),
                ),
                ("app_id", app_id.as_deref()),
            ]
            .into_iter()
            .chain(
                attachment_urls
                    .iter()
                    .map(|(name, url)| (name.as_str(), Some(*url))),
            ),
        );
        let (direction, author) = if echo {
            ("outbound", "agent")
        } else {
            ("inbound", "customer")
        };
        return Ok(vec![conversation.event(
            mid,
            &occurred_at,
            json!({
                "type": "message",
                "direction": direction,
                "author": author,
                "text": text(message.text.as_deref()),
                "attributes": kept,
            }),
        )?]);
    }
    if let Some(postback) = &item.postback {
        // Older API versions send postbacks without a mid; sender and time then name it.
        let source_event_id = match postback
            .mid
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            Some(mid) => mid.to_owned(),
            None => format!("{psid}:{}:postback", item.timestamp),
        };
        return Ok(vec![conversation.event(
            &source_event_id,
            &occurred_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": text(postback.title.as_deref()),
                "attributes": attributes([
                    (platform.account_attribute, Some(page)),
                    ("postback_payload", postback.payload.as_deref()),
                ]),
            }),
        )?]);
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, ids, refused_field, request, types};

    const JSON: &str = "application/json";

    #[test]
    fn a_text_message_is_a_customer_message_in_the_page_conversation() {
        let events = assert_fixture(&MetaMessenger, "text-message.json", JSON);
        assert_eq!(types(&events), ["message"]);
        let event = &events[0];
        assert_eq!(event.channel, Some(Channel::Messaging));
        assert_eq!(
            event.interaction_id.as_deref(),
            Some("messenger:106540352242922:6783421956712345")
        );
        assert_eq!(
            event.customer.as_ref().unwrap().handles[0].kind,
            "messenger"
        );
        assert_eq!(
            event.customer.as_ref().unwrap().handles[0].value,
            "6783421956712345"
        );
        assert_eq!(
            event.source_event_id.as_deref(),
            Some(
                "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"
            )
        );
        assert_eq!(
            event.occurred_at.to_rfc3339(),
            "2026-03-02T09:00:05.123+00:00"
        );
    }

    #[test]
    fn a_batch_maps_messages_echoes_and_postbacks_and_skips_receipts() {
        let events = assert_fixture(&MetaMessenger, "batch.json", JSON);
        assert_eq!(types(&events), ["message", "message", "message"]);
        let directions: Vec<_> = events
            .iter()
            .map(|e| match &e.body {
                omnilog_events::Body::Message {
                    direction, author, ..
                } => (direction.as_str(), author.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            directions,
            [
                ("inbound", "customer"),
                ("outbound", "agent"),
                ("inbound", "customer")
            ]
        );
        // The echo is in the same conversation, about the same customer.
        assert_eq!(events[1].interaction_id, events[0].interaction_id);
        assert_eq!(events[1].customer, events[0].customer);
        assert_eq!(events[2].attributes["postback_payload"], "TRACK_ORDER");
    }

    #[test]
    fn page_feed_comments_and_visitor_posts_are_social_messages() {
        let events = assert_fixture(&MetaMessenger, "page-feed.json", JSON);
        // Alice's comment and its edit, Bob's visitor post; the Page's own reply, a
        // reaction, a removal and a rating carry no customer's new words.
        assert_eq!(types(&events), ["message", "message", "message"]);
        assert!(events.iter().all(|e| e.channel == Some(Channel::Social)));
        assert_eq!(
            events[0].interaction_id.as_deref(),
            Some("facebook:106540352242922_987654321012345:24680135792468013")
        );
        let handle = &events[0].customer.as_ref().unwrap().handles[0];
        assert_eq!(
            (handle.kind.as_str(), handle.value.as_str()),
            ("facebook", "24680135792468013")
        );
        assert_eq!(
            events[0].source_event_id.as_deref(),
            Some("feed:987654321012345_1122334455667788")
        );
        assert_eq!(
            events[0].occurred_at.to_rfc3339(),
            "2026-03-02T09:14:58+00:00"
        );
        // The edit is the same thread, kept as a new version of the text.
        assert_eq!(events[1].interaction_id, events[0].interaction_id);
        assert_eq!(events[1].attributes["edited"], "true");
        assert!(
            events[1]
                .source_event_id
                .as_deref()
                .is_some_and(|id| id.starts_with("feed:987654321012345_1122334455667788:edited:"))
        );
        assert_eq!(
            events[2].interaction_id.as_deref(),
            Some("facebook:106540352242922_987650000000001:13579246801357924")
        );
        assert_eq!(events[2].attributes["facebook_item"], "status");
    }

    #[test]
    fn a_second_edit_is_a_new_event_and_a_redelivered_edit_is_not() {
        let edit = |message: &str| {
            json!({"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed", "value": {
                "from": {"id": "2"}, "item": "comment", "verb": "edited", "post_id": "1_3",
                "comment_id": "3_4", "created_time": 1772442962, "message": message
            }}]}]})
            .to_string()
        };
        let parse = |body: String| MetaMessenger.parse(&request(JSON, body)).unwrap();
        assert_eq!(ids(&parse(edit("first"))), ids(&parse(edit("first"))));
        assert_ne!(ids(&parse(edit("first"))), ids(&parse(edit("second"))));
    }

    #[test]
    fn malformed_feed_changes_name_the_field() {
        let feed = |value: Value| {
            let body = json!({"object": "page", "entry": [{"id": "1", "changes": [
                {"field": "feed", "value": value}
            ]}]});
            MetaMessenger.parse(&request(JSON, body.to_string()))
        };
        let valid = json!({"from": {"id": "2", "name": "A"}, "item": "comment", "verb": "add",
            "post_id": "1_3", "comment_id": "3_4", "created_time": 1772442898, "message": "hi"});
        assert!(feed(valid.clone()).is_ok());
        let without = |field: &str| {
            let mut value = valid.clone();
            value.as_object_mut().unwrap().remove(field);
            value
        };
        assert_eq!(
            refused_field(feed(without("comment_id"))),
            "entry[0].changes[0].value.comment_id"
        );
        assert_eq!(
            refused_field(feed(without("post_id"))),
            "entry[0].changes[0].value.post_id"
        );
        assert_eq!(
            refused_field(feed(without("created_time"))),
            "entry[0].changes[0].value.created_time"
        );
        assert_eq!(
            refused_field(feed(without("verb"))),
            "entry[0].changes[0].value"
        );
        let mut bad_time = valid.clone();
        bad_time["created_time"] = json!("noon");
        assert_eq!(
            refused_field(feed(bad_time)),
            "entry[0].changes[0].value.created_time"
        );
        let mut blank_from = valid.clone();
        blank_from["from"] = json!({"id": ""});
        assert_eq!(
            refused_field(feed(blank_from)),
            "entry[0].changes[0].value.from.id"
        );
        let without_page =
            json!({"object": "page", "entry": [{"changes": [{"field": "feed", "value": valid}]}]});
        assert_eq!(
            refused_field(MetaMessenger.parse(&request(JSON, without_page.to_string()))),
            "entry[0].id"
        );
    }

    #[test]
    fn malformed_webhooks_name_the_field() {
        let parse = |body: &str| MetaMessenger.parse(&request(JSON, body));
        assert_eq!(
            refused_field(parse(
                r#"{"object":"page","entry":[{"messaging":[{"sender":7}]}]}"#
            )),
            "entry[0].messaging[0].sender"
        );
        let item = |sender: &str| {
            format!(
                r#"{{"object":"page","entry":[{{"messaging":[{{"sender":{{"id":"1"}},"recipient":{{"id":"2"}},"timestamp":1,"message":{{"mid":"m1","text":"a"}}}},{{"sender":{{"id":"{sender}"}},"recipient":{{"id":"2"}},"timestamp":1,"message":{{"mid":"m2"}}}}]}}]}}"#
            )
        };
        assert!(parse(&item("3")).is_ok());
        assert_eq!(
            refused_field(parse(&item(" "))),
            "entry[0].messaging[1].sender.id"
        );
        assert_eq!(
            refused_field(parse(r#"{"object":"instagram","entry":[]}"#)),
            "object"
        );
        assert_eq!(refused_field(parse(r#"{"object":"page"}"#)), "body");
        assert_eq!(refused_field(parse("null")), "body");
    }
}
