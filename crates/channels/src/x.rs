//! `POST /v1/channels/x`: X (Twitter) Account Activity API webhooks, and the
//! challenge-response check X makes with `GET /v1/channels/x?crc_token=…`.
//!
//! A delivery is about one subscribed account, the desk's (`for_user_id`), and carries
//! arrays of activity. Two of them are conversation content, both on channel `social`:
//!
//! | activity | event |
//! |---|---|
//! | `tweet_create_events[]` that mention the desk (in `entities.user_mentions`, also those of `extended_tweet`) or reply to it (`in_reply_to_user_id_str`) | `message`, inbound, author customer, in the public thread `x:public:{desk}:{user}`, `source_event_id` = `tweet:{id_str}` |
//! | `direct_message_events[]` of type `message_create` | `message`, inbound, author customer, in the DM conversation `x:dm:{desk}:{user}`, `source_event_id` = `dm:{id}` |
//!
//! The customer's handle is kind `x` = the X user id (`user.id_str` of a tweet,
//! `message_create.sender_id` of a DM): the same id in both, so a public mention and a
//! later DM of the same person are one customer, in two interactions of one journey. The
//! id, not the `@screen_name`, because a screen name can change and be taken by someone
//! else; the screen name and display name are kept as attributes (`x_screen_name`, from the
//! tweet's `user` or the delivery's `users` map; `customer_name`).
//!
//! Not mapped (they map to nothing and are answered 2xx, so X does not redeliver them):
//! the desk's own tweets and DMs (author or sender = `for_user_id`; the desk logs its own
//! replies when it sends them), retweets (`retweeted_status`: no words to the desk),
//! tweets that neither mention nor reply to the desk (a quote without a mention), and the
//! other activity arrays (`favorite_events`, `follow_events`, typing and read indicators,
//! deletions, ...).
//!
//! Times: a tweet's `timestamp_ms`, else its `created_at` (`Mon Mar 02 09:05:10 +0000
//! 2026`); a DM's `created_timestamp` (milliseconds, as text). A batch is mapped whole or
//! refused whole, naming the field by its path (`direct_message_events[0].message_create.sender_id`).
//!
//! X signs each delivery with `x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256 of
//! the body under the app's consumer secret>` ([`SignatureScheme::X`]), and checks the
//! webhook URL on registration and hourly with a `GET ?crc_token=T`, to be answered with
//! `{"response_token": "sha256=<base64 HMAC-SHA256 of T under the consumer secret>"}`
//! ([`crc_response`]). The consumer secret is the channel secret of `x`.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::Mac as _;
use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use crate::mapping::{Interaction, attributes, handle, required, text, unix_millis};
use crate::signature::hmac_sha256;
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "social.x";

/// X's Account Activity API webhooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct XAccountActivity;

// Read leniently (unknown fields ignored): X's tweet and user objects carry dozens of
// fields, and new ones must not make us refuse a customer's message.

#[derive(Debug, Deserialize)]
struct Webhook {
    /// Optional here only so that its absence is named, not reported as the whole body's.
    for_user_id: Option<String>,
    #[serde(default)]
    tweet_create_events: Vec<Tweet>,
    #[serde(default)]
    direct_message_events: Vec<DirectMessage>,
    /// The users a delivery's DMs name, by id.
    #[serde(default)]
    users: BTreeMap<String, User>,
}

#[derive(Debug, Deserialize)]
struct Tweet {
    id_str: String,
    text: Option<String>,
    full_text: Option<String>,
    extended_tweet: Option<ExtendedTweet>,
    user: User,
    created_at: Option<String>,
    timestamp_ms: Option<String>,
    in_reply_to_status_id_str: Option<String>,
    in_reply_to_user_id_str: Option<String>,
    entities: Option<Entities>,
    retweeted_status: Option<IgnoredAny>,
    lang: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ExtendedTweet {
    full_text: Option<String>,
    entities: Option<Entities>,
}

#[derive(Debug, Deserialize)]
struct Entities {
    #[serde(default)]
    user_mentions: Vec<Mention>,
}

#[derive(Debug, Deserialize)]
struct Mention {
    id_str: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    /// A tweet's author has `id_str`; the `users` map of a DM delivery has `id`.
    id_str: Option<String>,
    screen_name: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DirectMessage {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    created_timestamp: String,
    message_create: Option<MessageCreate>,
}

#[derive(Debug, Deserialize)]
struct MessageCreate {
    target: Target,
    sender_id: String,
    message_data: MessageData,
}

#[derive(Debug, Deserialize)]
struct Target {
    recipient_id: String,
}

#[derive(Debug, Deserialize)]
struct MessageData {
    text: Option<String>,
    attachment: Option<DmAttachment>,
}

#[derive(Debug, Deserialize)]
struct DmAttachment {
    media: Option<DmMedia>,
}

#[derive(Debug, Deserialize)]
struct DmMedia {
    #[serde(rename = "type")]
    kind: Option<String>,
    media_url_https: Option<String>,
}

impl ChannelIngestor for XAccountActivity {
    fn name(&self) -> &'static str {
        "x"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::X
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let webhook: Webhook = json_body(&request.body)?;
        let desk = webhook
            .for_user_id
            .as_deref()
            .ok_or_else(|| ChannelError::missing("for_user_id"))?;
        let desk = required("for_user_id", desk)?;
        let mut events = Vec::new();
        for (t, tweet) in webhook.tweet_create_events.iter().enumerate() {
            let at = format!("tweet_create_events[{t}]");
            events.extend(map_tweet(tweet, desk, &at)?);
        }
        for (d, message) in webhook.direct_message_events.iter().enumerate() {
            let at = format!("direct_message_events[{d}]");
            events.extend(map_direct_message(message, desk, &webhook.users, &at)?);
        }
        Ok(events)
    }
}

/// The event of a tweet that speaks to the desk (none for the others); `at` is its path.
fn map_tweet(tweet: &Tweet, desk: &str, at: &str) -> Result<Option<Event>, ChannelError> {
    let author_field = format!("{at}.user.id_str");
    let author = required(
        &author_field,
        tweet
            .user
            .id_str
            .as_deref()
            .ok_or_else(|| ChannelError::missing(&author_field))?,
    )?;
    let id = required(&format!("{at}.id_str"), &tweet.id_str)?;
    let occurred_at = tweet_time(tweet, at)?;
    if author == desk || tweet.retweeted_status.is_some() || !speaks_to(tweet, desk) {
        return Ok(None);
    }
    let customer = handle(&author_field, "x", author)?;
    let screen_name = tweet.user.screen_name.as_deref().map(str::trim);
    let url = screen_name
        .filter(|s| !s.is_empty())
        .map(|s| format!("https://x.com/{s}/status/{id}"));
    let words = tweet
        .extended_tweet
        .as_ref()
        .and_then(|e| e.full_text.as_deref())
        .or(tweet.full_text.as_deref())
        .or(tweet.text.as_deref());
    let thread = Interaction::new(
        SOURCE,
        Channel::Social,
        format!("x:public:{desk}:{}", customer.value),
        vec![customer],
    );
    thread
        .event(
            &format!("tweet:{id}"),
            &occurred_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": text(words),
                "attributes": attributes([
                    ("x_kind", Some("mention")),
                    ("tweet_id", Some(id)),
                    ("tweet_url", url.as_deref()),
                    ("in_reply_to_tweet_id", tweet.in_reply_to_status_id_str.as_deref()),
                    ("x_screen_name", screen_name),
                    ("customer_name", tweet.user.name.as_deref()),
                    ("lang", tweet.lang.as_deref()),
                    ("desk_user_id", Some(desk)),
                ]),
            }),
        )
        .map(Some)
}

/// Whether a tweet mentions the desk or replies to it.
fn speaks_to(tweet: &Tweet, desk: &str) -> bool {
    let mentions = |entities: Option<&Entities>| {
        entities.is_some_and(|e| {
            e.user_mentions
                .iter()
                .any(|m| m.id_str.as_deref().map(str::trim) == Some(desk))
        })
    };
    tweet.in_reply_to_user_id_str.as_deref().map(str::trim) == Some(desk)
        || mentions(tweet.entities.as_ref())
        || mentions(
            tweet
                .extended_tweet
                .as_ref()
                .and_then(|e| e.entities.as_ref()),
        )
}

/// A tweet's time: `timestamp_ms`, else `created_at` in X's own format.
fn tweet_time(tweet: &Tweet, at: &str) -> Result<DateTime<Utc>, ChannelError> {
    if let Some(millis) = tweet.timestamp_ms.as_deref() {
        return millis_text(&format!("{at}.timestamp_ms"), millis);
    }
    let field = format!("{at}.created_at");
    let created_at = tweet
        .created_at
        .as_deref()
        .ok_or_else(|| ChannelError::missing(&field))?;
    DateTime::parse_from_str(created_at.trim(), "%a %b %d %H:%M:%S %z %Y")
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ChannelError::malformed(
                field,
                format!(
                    "not an X time like \"Mon Mar 02 09:05:10 +0000 2026\" ({e}): {created_at:?}"
                ),
            )
        })
}

/// A Unix time in milliseconds given as text (X's `timestamp_ms`, `created_timestamp`).
fn millis_text(field: &str, millis: &str) -> Result<DateTime<Utc>, ChannelError> {
    let value: i64 = millis.trim().parse().map_err(|_| {
        ChannelError::malformed(field, format!("{millis:?} is not a time in milliseconds"))
    })?;
    unix_millis(field, value)
}

/// The event of a DM from a customer (none for the desk's own, or other event types).
fn map_direct_message(
    message: &DirectMessage,
    desk: &str,
    users: &BTreeMap<String, User>,
    at: &str,
) -> Result<Option<Event>, ChannelError> {
    if message.kind != "message_create" {
        return Ok(None);
    }
    let create = message
        .message_create
        .as_ref()
        .ok_or_else(|| ChannelError::missing(format!("{at}.message_create")))?;
    let sender_field = format!("{at}.message_create.sender_id");
    let sender = required(&sender_field, &create.sender_id)?;
    required(
        &format!("{at}.message_create.target.recipient_id"),
        &create.target.recipient_id,
    )?;
    let id = required(&format!("{at}.id"), &message.id)?;
    let occurred_at = millis_text(
        &format!("{at}.created_timestamp"),
        &message.created_timestamp,
    )?;
    if sender == desk {
        return Ok(None);
    }
    let customer = handle(&sender_field, "x", sender)?;
    let profile = users.get(sender);
    let media = create
        .message_data
        .attachment
        .as_ref()
        .and_then(|a| a.media.as_ref());
    let conversation = Interaction::new(
        SOURCE,
        Channel::Social,
        format!("x:dm:{desk}:{}", customer.value),
        vec![customer],
    );
    conversation
        .event(
            &format!("dm:{id}"),
            &occurred_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": text(create.message_data.text.as_deref()),
                "attributes": attributes([
                    ("x_kind", Some("direct_message")),
                    ("dm_id", Some(id)),
                    ("x_screen_name", profile.and_then(|u| u.screen_name.as_deref())),
                    ("customer_name", profile.and_then(|u| u.name.as_deref())),
                    ("media_type", media.and_then(|m| m.kind.as_deref())),
                    ("media_url", media.and_then(|m| m.media_url_https.as_deref())),
                    ("desk_user_id", Some(desk)),
                ]),
            }),
        )
        .map(Some)
}

/// The `response_token` of X's challenge-response check: `sha256=` + base64 of the
/// HMAC-SHA256 of `crc_token` under the consumer secret.
pub fn crc_response_token(crc_token: &str, consumer_secret: &str) -> Result<String, ChannelError> {
    let digest = hmac_sha256(consumer_secret, crc_token.as_bytes())?
        .finalize()
        .into_bytes();
    Ok(format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    ))
}

/// Answers X's challenge-response check for the query of `GET /v1/channels/x?crc_token=T`:
/// the `response_token` for `T`, or an error naming `crc_token` when it is absent.
pub fn crc_response(query: &str, consumer_secret: &str) -> Result<String, ChannelError> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ChannelError::malformed("query", format!("not a query string: {e}")))?;
    let token = fields
        .iter()
        .rev()
        .find(|(name, _)| name == "crc_token")
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ChannelError::missing("crc_token"))?;
    crc_response_token(token, consumer_secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, ids, refused_field, request, types};
    use omnilog_events::Body;

    const JSON: &str = "application/json";

    fn handle_of(event: &Event) -> (String, String) {
        let handle = &event.customer.as_ref().unwrap().handles[0];
        (handle.kind.clone(), handle.value.clone())
    }

    #[test]
    fn a_mention_is_a_customer_message_in_the_public_thread() {
        let events = assert_fixture(&XAccountActivity, "mention.json", JSON);
        assert_eq!(types(&events), ["message"]);
        let event = &events[0];
        assert_eq!(event.channel, Some(Channel::Social));
        assert_eq!(
            event.interaction_id.as_deref(),
            Some("x:public:2244994945:1461852037716221955")
        );
        assert_eq!(
            handle_of(event),
            ("x".to_owned(), "1461852037716221955".to_owned())
        );
        assert_eq!(
            event.source_event_id.as_deref(),
            Some("tweet:1896196281546494210")
        );
        assert_eq!(event.occurred_at.to_rfc3339(), "2026-03-02T09:05:10+00:00");
        assert_eq!(event.attributes["x_screen_name"], "alice_martin");
        match &event.body {
            Body::Message { text, .. } => assert!(
                text.as_deref()
                    .is_some_and(|t| t.ends_with("order 88123 still has not arrived."))
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_dm_is_a_customer_message_in_the_dm_conversation() {
        let events = assert_fixture(&XAccountActivity, "direct-message.json", JSON);
        assert_eq!(types(&events), ["message"]);
        let event = &events[0];
        assert_eq!(event.channel, Some(Channel::Social));
        assert_eq!(
            event.interaction_id.as_deref(),
            Some("x:dm:2244994945:1461852037716221955")
        );
        assert_eq!(event.attributes["customer_name"], "Alice Martin");
        assert_eq!(
            event.occurred_at.to_rfc3339(),
            "2026-03-02T09:20:03.557+00:00"
        );
    }

    #[test]
    fn a_mention_and_a_later_dm_of_one_person_share_the_handle() {
        let mention = assert_fixture(&XAccountActivity, "mention.json", JSON);
        let dm = assert_fixture(&XAccountActivity, "direct-message.json", JSON);
        assert_eq!(handle_of(&mention[0]), handle_of(&dm[0]));
        assert_ne!(mention[0].interaction_id, dm[0].interaction_id);
    }

    #[test]
    fn the_desk_s_own_tweets_and_dms_retweets_and_other_activity_map_to_nothing() {
        let events = assert_fixture(&XAccountActivity, "desk-own-and-noise.json", JSON);
        // Of the batch, only the reply in extended-tweet form speaks to the desk.
        assert_eq!(types(&events), ["message"]);
        assert_eq!(
            events[0].source_event_id.as_deref(),
            Some("tweet:1896199911102287873")
        );
    }

    #[test]
    fn a_redelivery_gives_the_same_ids() {
        let body = crate::testing::fixture("x", "mention.json");
        let first = XAccountActivity
            .parse(&request(JSON, body.clone()))
            .unwrap();
        let again = XAccountActivity.parse(&request(JSON, body)).unwrap();
        assert_eq!(ids(&first), ids(&again));
    }

    #[test]
    fn malformed_webhooks_name_the_field() {
        let parse =
            |body: serde_json::Value| XAccountActivity.parse(&request(JSON, body.to_string()));
        let dm = |sender: serde_json::Value, created: &str| {
            json!({
                "for_user_id": "2244994945",
                "direct_message_events": [{
                    "type": "message_create", "id": "1", "created_timestamp": created,
                    "message_create": {"target": {"recipient_id": "2244994945"}, "sender_id": sender, "message_data": {"text": "hi"}}
                }]
            })
        };
        assert!(parse(dm(json!("42"), "1772442003557")).is_ok());
        assert_eq!(
            refused_field(parse(dm(json!(" "), "1772442003557"))),
            "direct_message_events[0].message_create.sender_id"
        );
        assert_eq!(
            refused_field(parse(dm(json!(42), "1772442003557"))),
            "direct_message_events[0].message_create.sender_id"
        );
        assert_eq!(
            refused_field(parse(dm(json!("42"), "yesterday"))),
            "direct_message_events[0].created_timestamp"
        );
        let tweet = |created_at: &str| {
            json!({
                "for_user_id": "2244994945",
                "tweet_create_events": [{
                    "id_str": "7", "text": "@AcmeSupport hi", "created_at": created_at,
                    "user": {"id_str": "42", "screen_name": "a"},
                    "entities": {"user_mentions": [{"id_str": "2244994945"}]}
                }]
            })
        };
        assert!(parse(tweet("Mon Mar 02 09:05:10 +0000 2026")).is_ok());
        assert_eq!(
            refused_field(parse(tweet("2026-03-02"))),
            "tweet_create_events[0].created_at"
        );
        let mut without_user = tweet("Mon Mar 02 09:05:10 +0000 2026");
        without_user["tweet_create_events"][0]["user"] = json!({"screen_name": "a"});
        assert_eq!(
            refused_field(parse(without_user)),
            "tweet_create_events[0].user.id_str"
        );
        assert_eq!(
            refused_field(parse(json!({"tweet_create_events": []}))),
            "for_user_id"
        );
        assert_eq!(
            refused_field(parse(json!({"for_user_id": ""}))),
            "for_user_id"
        );
        assert_eq!(
            refused_field(XAccountActivity.parse(&request(JSON, "{\"for_user_id\""))),
            "body"
        );
    }

    #[test]
    fn the_crc_response_is_the_base64_hmac_of_the_token() {
        // Computed independently of the module: HMAC-SHA256 of the token, base64.
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"consumer-secret").unwrap();
        mac.update(b"challenge-token-123");
        let expected = format!(
            "sha256={}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            crc_response("crc_token=challenge-token-123", "consumer-secret").unwrap(),
            expected
        );
        // A known vector (RFC 4231 test case 2: key "Jefe"), in X's base64 form.
        assert_eq!(
            crc_response_token("what do ya want for nothing?", "Jefe").unwrap(),
            "sha256=W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
        assert!(matches!(
            crc_response("nonce=1", "consumer-secret"),
            Err(ChannelError::Malformed { field, .. }) if field == "crc_token"
        ));
        assert!(matches!(
            crc_response("crc_token=", "consumer-secret"),
            Err(ChannelError::Malformed { field, .. }) if field == "crc_token"
        ));
    }
}
