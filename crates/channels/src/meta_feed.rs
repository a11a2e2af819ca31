//! Meta's public feeds on channel `social`: comments and posts by people on the desk's
//! Facebook Page, and comments on the desk's Instagram media.
//!
//! Meta delivers every field of one object type to one callback URL, so these arrive at
//! the paths of their objects and are mapped here: a Page's `feed` changes at
//! `POST /v1/channels/messenger` (`object: "page"`, `entry[].changes[]` beside Messenger's
//! `entry[].messaging[]`), Instagram's `comments` and `live_comments` changes at
//! `POST /v1/channels/instagram` (`object: "instagram"`). Both are signed with Meta's
//! `X-Hub-Signature-256` like the rest of their deliveries.
//!
//! **Page feed** (`changes[].field == "feed"`):
//!
//! | `value.item`, `value.verb` | event |
//! |---|---|
//! | `comment`, `add` | `message`, inbound, author customer, `source_event_id` = `feed:{comment_id}` |
//! | `post` / `status` / `photo` / `video` / `share`, `add` (a visitor post on the Page) | the same, `source_event_id` = `feed:{post_id}` |
//! | either, `edited` | `message` with the new text and attribute `edited`, `source_event_id` = `feed:{id}:edited:{digest of the text}` (each distinct edit once; a redelivered edit is a duplicate) |
//! | `remove`, `hide`, `unhide`, `block`, ...; `reaction`, `like` and other items | nothing: no new words from the customer |
//!
//! The customer is `value.from.id` (handle kind `facebook`), the interaction their thread
//! under one post, `facebook:{post_id}:{from.id}` (one interaction per customer: the post
//! itself is shared by everyone who comments on it). Meta does not promise that this id is
//! the Messenger PSID of the same person, so a commenter who later writes on Messenger is a
//! second customer until an agent links them (`identity_linked`). Items of the Page itself
//! (`from.id` = `entry[].id`) are the desk's own replies, and items without `from` name no
//! one: both map to nothing. Times are `value.created_time` (Unix seconds; Graph's
//! `2026-03-02T09:05:10+0000` is read too).
//!
//! **Instagram comments** (`changes[].field` = `comments` or `live_comments`): each is a
//! `message`, inbound, author customer, `source_event_id` = `comment:{id}`, in the
//! commenter's thread under one media, `instagram:media:{media.id}:{from.id}`. The customer
//! is `from.id` (kind `instagram`, the Instagram-scoped id, which is also the sender id of
//! that person's Instagram DMs: a comment and a later DM are one customer). Comments of
//! the account itself (`from.id` = `entry[].id`) map to nothing. The value carries no time:
//! the entry's `time` is used (seconds; milliseconds are recognised by their size).
//!
//! A change's value is read only for the fields above, so the Page's other subscribed
//! fields (`ratings`, `mention`, ...) never make a delivery fail.

use chrono::{DateTime, TimeZone, Utc};
use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::mapping::{Interaction, attributes, handle, required, text};
use crate::{ChannelError, value_at};

/// The `source` of the Page feed's events.
pub const PAGE_FEED_SOURCE: &str = "social.meta-page-feed";

/// The `source` of Instagram comments' events.
pub const INSTAGRAM_COMMENTS_SOURCE: &str = "social.meta-instagram";

/// One `entry[].changes[]` item: its value is read once its `field` is known.
#[derive(Debug, Deserialize)]
pub(crate) struct Change {
    pub field: String,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Deserialize)]
struct FeedValue {
    item: String,
    verb: String,
    from: Option<Author>,
    post_id: Option<String>,
    comment_id: Option<String>,
    parent_id: Option<String>,
    message: Option<String>,
    created_time: Option<Value>,
    post: Option<PostInfo>,
    link: Option<String>,
    photo_id: Option<String>,
    video_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Author {
    id: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PostInfo {
    permalink_url: Option<String>,
    status_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InstagramComment {
    id: String,
    text: Option<String>,
    from: Option<InstagramUser>,
    media: Option<InstagramMedia>,
    parent_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InstagramUser {
    id: String,
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InstagramMedia {
    id: String,
    media_product_type: Option<String>,
}

/// A Meta time: Unix seconds (a number or digits; milliseconds when the value is too large
/// to be seconds), or Graph's `2026-03-02T09:05:10+0000`.
pub(crate) fn meta_time(field: &str, value: &Value) -> Result<DateTime<Utc>, ChannelError> {
    let from_number = |n: i64| {
        // Seconds stay below 10^11 until the year 5138; Meta's millisecond times are above.
        let single = if n.abs() >= 100_000_000_000 {
            Utc.timestamp_millis_opt(n).single()
        } else {
            Utc.timestamp_opt(n, 0).single()
        };
        single.ok_or_else(|| ChannelError::malformed(field, format!("{n} is not a time")))
    };
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| ChannelError::malformed(field, format!("{n} is not a time")))
            .and_then(from_number),
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(n) => from_number(n),
            Err(_) => DateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%z")
                .or_else(|_| DateTime::parse_from_rfc3339(s.trim()))
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ChannelError::malformed(field, format!("not a time ({e}): {s:?}"))),
        },
        Value::Null => Err(ChannelError::missing(field)),
        other => Err(ChannelError::malformed(
            field,
            format!("{other} is not a time"),
        )),
    }
}

/// The event of one Page `feed` change (none for what carries no customer's words); `page`
/// is the entry's Page id, `at` the change's path.
pub(crate) fn page_feed(
    value: &Value,
    page: &str,
    at: &str,
) -> Result<Option<Event>, ChannelError> {
    let at = format!("{at}.value");
    let feed: FeedValue = value_at(value, &at)?;
    let edited = match feed.verb.as_str() {
        "add" => false,
        "edited" => true,
        _ => return Ok(None),
    };
    let post_field = format!("{at}.post_id");
    let post_id = || {
        feed.post_id
            .as_deref()
            .ok_or_else(|| ChannelError::missing(&post_field))
            .and_then(|id| required(&post_field, id))
    };
    let (post_id, item_id) = match feed.item.as_str() {
        "comment" => {
            let comment_field = format!("{at}.comment_id");
            let comment_id = feed
                .comment_id
                .as_deref()
                .ok_or_else(|| ChannelError::missing(&comment_field))?;
            (post_id()?, required(&comment_field, comment_id)?)
        }
        "post" | "status" | "photo" | "video" | "share" => {
            let post = post_id()?;
            (post, post)
        }
        _ => return Ok(None),
    };
    let Some(from) = &feed.from else {
        return Ok(None);
    };
    let from_field = format!("{at}.from.id");
    let author = required(&from_field, &from.id)?;
    let occurred_at = meta_time(
        &format!("{at}.created_time"),
        feed.created_time.as_ref().unwrap_or(&Value::Null),
    )?;
    if author == page {
        return Ok(None);
    }
    let customer = handle(&from_field, "facebook", author)?;
    let words = text(feed.message.as_deref());
    let source_event_id = if edited {
        let digest = Sha256::digest(words.as_deref().unwrap_or("").as_bytes());
        format!("feed:{item_id}:edited:{}", hex::encode(&digest[..8]))
    } else {
        format!("feed:{item_id}")
    };
    let thread = Interaction::new(
        PAGE_FEED_SOURCE,
        Channel::Social,
        format!("facebook:{post_id}:{}", customer.value),
        vec![customer],
    );
    let post = feed.post.as_ref();
    thread
        .event(
            &source_event_id,
            &occurred_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": words,
                "attributes": attributes([
                    ("facebook_item", Some(feed.item.as_str())),
                    ("edited", edited.then_some("true")),
                    ("page_id", Some(page)),
                    ("post_id", Some(post_id)),
                    ("comment_id", feed.comment_id.as_deref()),
                    ("parent_id", feed.parent_id.as_deref()),
                    ("customer_name", from.name.as_deref()),
                    ("permalink_url", post.and_then(|p| p.permalink_url.as_deref())),
                    ("status_type", post.and_then(|p| p.status_type.as_deref())),
                    ("link", feed.link.as_deref()),
                    ("photo_id", feed.photo_id.as_deref()),
                    ("video_id", feed.video_id.as_deref()),
                ]),
            }),
        )
        .map(Some)
}

/// The event of one Instagram `comments` or `live_comments` change (none for the account's
/// own comments); `account` is the entry's Instagram account id, `time` the entry's time.
pub(crate) fn instagram_comment(
    value: &Value,
    account: &str,
    time: (&str, Option<&Value>),
    at: &str,
) -> Result<Option<Event>, ChannelError> {
    let at = format!("{at}.value");
    let comment: InstagramComment = value_at(value, &at)?;
    let id = required(&format!("{at}.id"), &comment.id)?;
    let Some(from) = &comment.from else {
        return Ok(None);
    };
    let from_field = format!("{at}.from.id");
    let author = required(&from_field, &from.id)?;
    let media = comment
        .media
        .as_ref()
        .ok_or_else(|| ChannelError::missing(format!("{at}.media")))?;
    let media_id = required(&format!("{at}.media.id"), &media.id)?;
    let occurred_at = meta_time(time.0, time.1.unwrap_or(&Value::Null))?;
    if author == account {
        return Ok(None);
    }
    let customer = handle(&from_field, "instagram", author)?;
    let thread = Interaction::new(
        INSTAGRAM_COMMENTS_SOURCE,
        Channel::Social,
        format!("instagram:media:{media_id}:{}", customer.value),
        vec![customer],
    );
    thread
        .event(
            &format!("comment:{id}"),
            &occurred_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": text(comment.text.as_deref()),
                "attributes": attributes([
                    ("instagram_account_id", Some(account)),
                    ("comment_id", Some(id)),
                    ("parent_id", comment.parent_id.as_deref()),
                    ("media_id", Some(media_id)),
                    ("media_product_type", media.media_product_type.as_deref()),
                    ("instagram_username", from.username.as_deref()),
                ]),
            }),
        )
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_times_in_every_form_read_as_utc() {
        let expected: DateTime<Utc> = "2026-03-02T09:05:10Z".parse().unwrap();
        for value in [
            json!(1_772_442_310),
            json!("1772442310"),
            json!(1_772_442_310_000_i64),
            json!("2026-03-02T09:05:10+0000"),
            json!("2026-03-02T10:05:10+01:00"),
        ] {
            assert_eq!(meta_time("t", &value).unwrap(), expected, "{value}");
        }
        for value in [json!("soon"), json!(true), json!(1.5)] {
            assert!(matches!(
                meta_time("t", &value),
                Err(ChannelError::Malformed { field, .. }) if field == "t"
            ));
        }
        assert!(matches!(
            meta_time("t", &Value::Null),
            Err(ChannelError::Malformed { message, .. }) if message == "is required"
        ));
    }
}
