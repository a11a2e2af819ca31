//! `POST /v1/channels/instagram`: Meta's Instagram webhooks (`object: "instagram"`).
//!
//! Meta sends every subscribed field of the desk's Instagram professional account to this
//! one URL, batched in `entry[]` (one per account, `entry[].id`):
//!
//! - `entry[].messaging[]`: Instagram DMs, in the shape of Messenger's items and mapped by
//!   the same code ([`crate::messenger`]): a `message` on channel `messaging`, the customer
//!   by the Instagram-scoped id (handle kind `instagram`), the conversation
//!   `instagram:{account id}:{igsid}`, `source_event_id` = `message.mid`; echoes of the
//!   account's own replies are outbound agent messages, receipts and reactions nothing.
//! - `entry[].changes[]` with field `comments` or `live_comments`: comments on the
//!   account's media, on channel `social`, mapped by [`crate::meta_feed`].
//! - Other fields (`mentions`, `story_insights`, ...) map to nothing.
//!
//! Both use the same `instagram` handle, so a person who comments and then writes a DM is
//! one customer. Signed with Meta's `X-Hub-Signature-256` (the app secret), and Meta's
//! subscription handshake (`GET ?hub.mode=subscribe…`) is answered as for Messenger.

use omnilog_events::Event;
use serde::Deserialize;
use serde_json::Value;

use crate::mapping::required;
use crate::messenger::{Conversations, Messaging, map_item};
use crate::meta_feed::{self, Change};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of Instagram DMs' events (comments are [`meta_feed::INSTAGRAM_COMMENTS_SOURCE`]).
pub const SOURCE: &str = "messaging.meta-instagram";

/// Meta's Instagram webhooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaInstagram;

/// Instagram DMs with the desk's account.
const DIRECT_MESSAGES: Conversations = Conversations {
    source: SOURCE,
    kind: "instagram",
    account_attribute: "instagram_account_id",
};

// Read leniently, like Meta's other webhooks.

#[derive(Debug, Deserialize)]
struct Webhook {
    object: String,
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    /// The Instagram account's id.
    id: Option<String>,
    /// When the change happened (Unix seconds for `changes`).
    time: Option<Value>,
    #[serde(default)]
    messaging: Vec<Messaging>,
    #[serde(default)]
    changes: Vec<Change>,
}

impl ChannelIngestor for MetaInstagram {
    fn name(&self) -> &'static str {
        "instagram"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::Meta
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let webhook: Webhook = json_body(&request.body)?;
        crate::meta::expect_object(&webhook.object, "instagram", "an Instagram")?;
        let mut events = Vec::new();
        for (e, entry) in webhook.entry.iter().enumerate() {
            for (m, item) in entry.messaging.iter().enumerate() {
                let at = format!("entry[{e}].messaging[{m}]");
                events.extend(map_item(&DIRECT_MESSAGES, item, &at)?);
            }
            for (c, change) in entry.changes.iter().enumerate() {
                if !matches!(change.field.as_str(), "comments" | "live_comments") {
                    continue;
                }
                let account_field = format!("entry[{e}].id");
                let account = entry
                    .id
                    .as_deref()
                    .ok_or_else(|| ChannelError::missing(&account_field))?;
                let account = required(&account_field, account)?;
                let time_field = format!("entry[{e}].time");
                events.extend(meta_feed::instagram_comment(
                    &change.value,
                    account,
                    (&time_field, entry.time.as_ref()),
                    &format!("entry[{e}].changes[{c}]"),
                )?);
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, refused_field, request, types};
    use omnilog_events::Channel;
    use serde_json::json;

    const JSON: &str = "application/json";

    fn handle_of(event: &Event) -> (&str, &str) {
        let handle = &event.customer.as_ref().unwrap().handles[0];
        (handle.kind.as_str(), handle.value.as_str())
    }

    #[test]
    fn a_comment_is_a_social_message_in_the_commenter_s_thread_under_the_media() {
        let events = assert_fixture(&MetaInstagram, "comment.json", JSON);
        assert_eq!(types(&events), ["message"]);
        let event = &events[0];
        assert_eq!(event.channel, Some(Channel::Social));
        assert_eq!(
            event.interaction_id.as_deref(),
            Some("instagram:media:18044326453139571:6841529638210471")
        );
        assert_eq!(handle_of(event), ("instagram", "6841529638210471"));
        assert_eq!(event.occurred_at.to_rfc3339(), "2026-03-02T09:12:40+00:00");
        assert_eq!(event.attributes["instagram_username"], "alice.martin");
        assert_eq!(
            event.source_event_id.as_deref(),
            Some("comment:17958305113888652")
        );
    }

    #[test]
    fn a_dm_is_a_messaging_message_of_the_same_customer_as_the_comment() {
        let comment = assert_fixture(&MetaInstagram, "comment.json", JSON);
        let events = assert_fixture(&MetaInstagram, "direct-message.json", JSON);
        assert_eq!(types(&events), ["message", "message"]);
        assert!(events.iter().all(|e| e.channel == Some(Channel::Messaging)));
        assert_eq!(
            events[0].interaction_id.as_deref(),
            Some("instagram:17841405822304914:6841529638210471")
        );
        assert_eq!(handle_of(&events[0]), handle_of(&comment[0]));
        // The echo of the account's reply is the agent's side of the same conversation.
        assert_eq!(events[1].interaction_id, events[0].interaction_id);
        assert_eq!(events[1].customer, events[0].customer);
        assert_eq!(
            events[0].attributes["instagram_account_id"],
            "17841405822304914"
        );
    }

    #[test]
    fn the_account_s_own_comments_mentions_and_other_fields_map_to_nothing() {
        assert!(assert_fixture(&MetaInstagram, "own-reply-and-mention.json", JSON).is_empty());
    }

    #[test]
    fn malformed_webhooks_name_the_field() {
        let parse = |body: Value| MetaInstagram.parse(&request(JSON, body.to_string()));
        let comment = |value: Value, time: Value| {
            json!({"object": "instagram", "entry": [{"id": "1784", "time": time, "changes": [
                {"field": "comments", "value": value}
            ]}]})
        };
        let valid = json!({"id": "c1", "text": "hi", "from": {"id": "42", "username": "a"}, "media": {"id": "m1"}});
        assert!(parse(comment(valid.clone(), json!(1_772_442_760))).is_ok());
        assert_eq!(
            refused_field(parse(comment(valid.clone(), json!("later")))),
            "entry[0].time"
        );
        assert_eq!(
            refused_field(parse(comment(valid.clone(), json!(null)))),
            "entry[0].time"
        );
        let mut no_media = valid.clone();
        no_media.as_object_mut().unwrap().remove("media");
        assert_eq!(
            refused_field(parse(comment(no_media, json!(1_772_442_760)))),
            "entry[0].changes[0].value.media"
        );
        let mut bad_from = valid.clone();
        bad_from["from"] = json!({"id": 42});
        assert_eq!(
            refused_field(parse(comment(bad_from, json!(1_772_442_760)))),
            "entry[0].changes[0].value.from.id"
        );
        let mut blank_id = valid;
        blank_id["id"] = json!(" ");
        assert_eq!(
            refused_field(parse(comment(blank_id, json!(1_772_442_760)))),
            "entry[0].changes[0].value.id"
        );
        assert_eq!(
            refused_field(parse(
                json!({"object": "instagram", "entry": [{"messaging": [{"sender": {"id": "1"}}]}]})
            )),
            "entry[0].messaging[0]"
        );
        assert_eq!(
            refused_field(parse(json!({"object": "page", "entry": []}))),
            "object"
        );
    }
}
