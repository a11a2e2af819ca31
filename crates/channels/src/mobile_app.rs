//! `POST /v1/channels/mobile_app`: in-app messages and "contact me" requests from the
//! desk's own mobile app, with what the user was doing in the app, so the agent who picks
//! them up starts where the user is instead of making them start over.
//!
//! The payload is ours (one JSON object per request, read strictly: an unknown field is
//! refused, not dropped):
//!
//! ```json
//! {
//!   "request_id": "the app's id of this submission, the same on every retry",
//!   "kind": "message | contact_me",
//!   "conversation_id": "the in-app conversation (required for a message; a contact_me may continue one)",
//!   "sent_at": "2026-03-02T11:40:00Z",
//!   "user": {"app_user_id": "u-77812", "name": "Alice Martin?", "phone": "+1 555 123 0001?", "email": "alice@example.com?"},
//!   "device": {"platform": "ios?", "os_version": "17.4?", "model": "iPhone15,2?"},
//!   "app": {"version": "4.12.0", "build": "4120?"},
//!   "context": {"screen": "orders/A-1009/refund", "last_actions": ["opened order A-1009", "tapped Request refund"]},
//!   "text": "what the user wrote (required for a message)",
//!   "topic": "refund? (the help topic the user picked)",
//!   "contact": {"channel": "voice | sms | email | in_app", "when": "today after 14:00?", "queue": "callback?"}
//! }
//! ```
//!
//! The customer's handles are the app user id (kind `app_user`) first, then the phone and
//! email the app knows: the signed-in account is the surest identity, and the phone and
//! email join the user to what they did on other channels (a fax or a call from that
//! number is the same customer, in the same journey).
//!
//! A `message` is a `message` event (inbound, author customer) in the in-app conversation
//! `mobile_app:{conversation_id}`, opened by its first message like a chat. A `contact_me`
//! is a request for the desk to get back on `contact.channel` (a phone is required for
//! `voice` and `sms`, an email for `email`): `interaction_started` (inbound, subject
//! `Contact me: call back`, ...), the user's `message` when they wrote one, and `queued` in
//! `contact.queue` (default `callback`) so an agent takes it up; it continues
//! `conversation_id` when given, else it is an interaction of its own,
//! `mobile_app:contact:{request_id}`.
//!
//! **The app's context reaches the journey's context.** Both kinds carry a `note`
//! (author `mobile_app`, the app itself, not a person) that says in words where the user
//! was: app version and build, platform, OS and device, the screen, the last actions (at
//! most the last 10, oldest first) and, for a contact request, how and when to get back.
//! Notes are what the journey view shows the next agent whole (`context.notes`, and the
//! timeline). A message's note is named by the conversation and the place (screen, app
//! and device), not by the request: a conversation written from one screen gets one note,
//! and a new note when the user writes from another screen or after an update. `topic`
//! becomes `tagged`, the journey's topics. Every event also keeps the context as
//! attributes (`screen`, `app_version`, `last_actions`, ...), for `GET /v1/interactions/{id}`.
//!
//! Ids come from `request_id`, so a retried submission writes nothing new. Signed with our
//! own `X-Omnilog-Signature` (HMAC-SHA256 of the body under the channel secret), like the
//! chat widget and the web portal.

use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::mapping::{Interaction, attributes, handle, required, rfc3339, text};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "mobile_app";

/// The author of the context notes: the app, not an agent.
pub const NOTE_AUTHOR: &str = "mobile_app";

/// Where contact requests wait when the app names no queue.
pub const DEFAULT_QUEUE: &str = "callback";

/// How many of the last actions a note keeps.
const KEPT_ACTIONS: usize = 10;

/// The desk's mobile app.
#[derive(Clone, Copy, Debug, Default)]
pub struct MobileApp;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRequest {
    request_id: String,
    kind: Kind,
    conversation_id: Option<String>,
    sent_at: String,
    user: AppUser,
    device: Option<Device>,
    app: App,
    context: AppContext,
    text: Option<String>,
    topic: Option<String>,
    contact: Option<ContactRequest>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Message,
    ContactMe,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppUser {
    app_user_id: String,
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Device {
    platform: Option<String>,
    os_version: Option<String>,
    model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct App {
    version: String,
    build: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppContext {
    screen: String,
    #[serde(default)]
    last_actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactRequest {
    channel: PreferredChannel,
    when: Option<String>,
    queue: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PreferredChannel {
    Voice,
    Sms,
    Email,
    InApp,
}

impl PreferredChannel {
    fn as_str(self) -> &'static str {
        match self {
            PreferredChannel::Voice => "voice",
            PreferredChannel::Sms => "sms",
            PreferredChannel::Email => "email",
            PreferredChannel::InApp => "in_app",
        }
    }

    /// How the subject and the note say it.
    fn wording(self) -> &'static str {
        match self {
            PreferredChannel::Voice => "call back",
            PreferredChannel::Sms => "by SMS",
            PreferredChannel::Email => "by email",
            PreferredChannel::InApp => "in the app",
        }
    }
}

/// Refuses a value holding a control character, naming the payload's field (the event's
/// own check would name the event's field instead).
fn plain<'a>(field: &str, value: &'a str) -> Result<&'a str, ChannelError> {
    if value.chars().any(char::is_control) {
        return Err(ChannelError::malformed(
            field,
            "must be one line without control characters",
        ));
    }
    Ok(value.trim())
}

impl ChannelIngestor for MobileApp {
    fn name(&self) -> &'static str {
        "mobile_app"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::OmnilogHmac
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let app: AppRequest = json_body(&request.body)?;
        let request_id = plain("request_id", required("request_id", &app.request_id)?)?;
        let sent_at = rfc3339("sent_at", &app.sent_at)?;
        let conversation = match app.conversation_id.as_deref() {
            Some(id) => Some(plain("conversation_id", required("conversation_id", id)?)?),
            None => None,
        };
        let version = plain("app.version", required("app.version", &app.app.version)?)?;
        let screen = plain(
            "context.screen",
            required("context.screen", &app.context.screen)?,
        )?;
        let mut actions = Vec::new();
        for (i, action) in app.context.last_actions.iter().enumerate() {
            let action = plain(&format!("context.last_actions[{i}]"), action)?;
            if !action.is_empty() {
                actions.push(action);
            }
        }
        let actions = &actions[actions.len().saturating_sub(KEPT_ACTIONS)..];
        let topic = match app.topic.as_deref() {
            Some(topic) => Some(plain("topic", required("topic", topic)?)?),
            None => None,
        };
        let words = text(app.text.as_deref());
        let user = &app.user;
        let mut handles = vec![handle("user.app_user_id", "app_user", &user.app_user_id)?];
        let phone = match user.phone.as_deref().filter(|p| !p.trim().is_empty()) {
            Some(phone) => Some(handle("user.phone", "phone", phone)?),
            None => None,
        };
        let email = match user.email.as_deref().filter(|e| !e.trim().is_empty()) {
            Some(email) => Some(handle("user.email", "email", email)?),
            None => None,
        };
        handles.extend(phone.iter().cloned());
        handles.extend(email.iter().cloned());

        let contact = match (app.kind, &app.contact) {
            (Kind::ContactMe, Some(contact)) => {
                let needed = match contact.channel {
                    PreferredChannel::Voice | PreferredChannel::Sms => {
                        phone.is_none().then_some("user.phone")
                    }
                    PreferredChannel::Email => email.is_none().then_some("user.email"),
                    PreferredChannel::InApp => None,
                };
                if let Some(field) = needed {
                    return Err(ChannelError::malformed(
                        field,
                        format!(
                            "is required when contact.channel is {}",
                            contact.channel.as_str()
                        ),
                    ));
                }
                Some(contact)
            }
            (Kind::ContactMe, None) => return Err(ChannelError::missing("contact")),
            (Kind::Message, Some(_)) => {
                return Err(ChannelError::malformed(
                    "contact",
                    "belongs to a contact_me request, not a message",
                ));
            }
            (Kind::Message, None) => None,
        };
        let when = match contact.and_then(|c| c.when.as_deref()) {
            Some(when) => Some(plain("contact.when", when)?).filter(|w| !w.is_empty()),
            None => None,
        };
        let device = app.device.as_ref();
        let platform = device.and_then(|d| d.platform.as_deref());
        let os_version = device.and_then(|d| d.os_version.as_deref());
        let model = device.and_then(|d| d.model.as_deref());
        let build = app.app.build.as_deref();

        let note = context_note(
            version,
            build,
            [platform, os_version, model],
            screen,
            actions,
            contact.map(|c| (c.channel, when)),
        );
        let actions_joined = actions.join(" | ");
        let kept = attributes([
            (
                "request_kind",
                Some(match app.kind {
                    Kind::Message => "message",
                    Kind::ContactMe => "contact_me",
                }),
            ),
            ("app_user_id", Some(user.app_user_id.trim())),
            ("customer_name", user.name.as_deref()),
            ("app_version", Some(version)),
            ("app_build", build),
            ("platform", platform),
            ("os_version", os_version),
            ("device_model", model),
            ("screen", Some(screen)),
            ("last_actions", Some(actions_joined.as_str())),
            ("contact_channel", contact.map(|c| c.channel.as_str())),
            ("contact_when", when),
        ]);

        let mut events = Vec::new();
        match (app.kind, contact) {
            (Kind::Message, _) => {
                let conversation =
                    conversation.ok_or_else(|| ChannelError::missing("conversation_id"))?;
                let words = words.ok_or_else(|| ChannelError::missing("text"))?;
                let thread = Interaction::new(
                    SOURCE,
                    Channel::MobileApp,
                    format!("mobile_app:{conversation}"),
                    handles,
                );
                events.push(thread.event(
                    &format!("{request_id}:message"),
                    &sent_at,
                    json!({"type": "message", "direction": "inbound", "author": "customer", "text": words, "attributes": kept}),
                )?);
                // One note per conversation and place: named by what places the user,
                // not by the request (see the module's doc).
                let place = [
                    screen,
                    version,
                    build.unwrap_or(""),
                    platform.unwrap_or(""),
                    os_version.unwrap_or(""),
                    model.unwrap_or(""),
                ]
                .join("\u{1f}");
                let digest = Sha256::digest(place.as_bytes());
                events.push(thread.event(
                    &format!("{conversation}:context:{}", hex::encode(&digest[..8])),
                    &sent_at,
                    json!({"type": "note", "agent_id": NOTE_AUTHOR, "text": note, "attributes": kept}),
                )?);
                if let Some(topic) = topic {
                    events.push(thread.event(
                        &format!("{conversation}:topic:{topic}"),
                        &sent_at,
                        json!({"type": "tagged", "topics": [topic]}),
                    )?);
                }
            }
            (Kind::ContactMe, Some(contact)) => {
                let interaction_id = match conversation {
                    Some(conversation) => format!("mobile_app:{conversation}"),
                    None => format!("mobile_app:contact:{request_id}"),
                };
                let queue = match contact.queue.as_deref() {
                    Some(queue) => plain("contact.queue", required("contact.queue", queue)?)?,
                    None => DEFAULT_QUEUE,
                };
                let request = Interaction::new(SOURCE, Channel::MobileApp, interaction_id, handles);
                let subject = match topic {
                    Some(topic) => format!("Contact me: {} ({topic})", contact.channel.wording()),
                    None => format!("Contact me: {}", contact.channel.wording()),
                };
                events.push(request.event(
                    &format!("{request_id}:started"),
                    &sent_at,
                    json!({"type": "interaction_started", "direction": "inbound", "subject": subject, "attributes": kept}),
                )?);
                if let Some(words) = words {
                    events.push(request.event(
                        &format!("{request_id}:message"),
                        &sent_at,
                        json!({"type": "message", "direction": "inbound", "author": "customer", "text": words, "attributes": kept}),
                    )?);
                }
                events.push(request.event(
                    &format!("{request_id}:context"),
                    &sent_at,
                    json!({"type": "note", "agent_id": NOTE_AUTHOR, "text": note, "attributes": kept}),
                )?);
                if let Some(topic) = topic {
                    events.push(request.event(
                        &format!("{request_id}:topic"),
                        &sent_at,
                        json!({"type": "tagged", "topics": [topic]}),
                    )?);
                }
                events.push(request.event(
                    &format!("{request_id}:queued"),
                    &sent_at,
                    json!({"type": "queued", "queue": queue, "priority": 0, "skills": []}),
                )?);
            }
            (Kind::ContactMe, None) => return Err(ChannelError::missing("contact")),
        }
        Ok(events)
    }
}

/// The note that tells the next agent where the user was in the app, in words.
fn context_note(
    version: &str,
    build: Option<&str>,
    device: [Option<&str>; 3],
    screen: &str,
    actions: &[&str],
    contact: Option<(PreferredChannel, Option<&str>)>,
) -> String {
    let mut details: Vec<String> = Vec::new();
    if let Some(build) = build.map(str::trim).filter(|b| !b.is_empty()) {
        details.push(format!("build {build}"));
    }
    let device: Vec<&str> = device
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if !device.is_empty() {
        details.push(device.join(" "));
    }
    let mut note = format!("In the mobile app {version}");
    if !details.is_empty() {
        note.push_str(&format!(" ({})", details.join(", ")));
    }
    note.push_str(&format!(", on screen {screen}."));
    if !actions.is_empty() {
        note.push_str(&format!("\nLast actions: {}.", actions.join(" → ")));
    }
    if let Some((channel, when)) = contact {
        note.push_str(&format!("\nAsked to be contacted: {}", channel.wording()));
        if let Some(when) = when {
            note.push_str(&format!(", {when}"));
        }
        note.push('.');
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, fixture, ids, refused_field, request, types};
    use omnilog_events::Body;
    use serde_json::Value;

    const JSON: &str = "application/json";

    fn handles_of(event: &Event) -> Vec<(&str, &str)> {
        event
            .customer
            .as_ref()
            .unwrap()
            .handles
            .iter()
            .map(|h| (h.kind.as_str(), h.value.as_str()))
            .collect()
    }

    #[test]
    fn a_contact_request_is_queued_with_the_app_context_as_a_note() {
        let events = assert_fixture(&MobileApp, "contact-me.json", JSON);
        assert_eq!(
            types(&events),
            ["interaction_started", "message", "note", "tagged", "queued"]
        );
        assert!(events.iter().all(|e| e.channel == Some(Channel::MobileApp)));
        assert!(events.iter().all(|e| e.interaction_id.as_deref()
            == Some("mobile_app:contact:7d1e4f0a-3b9c-4c55-9f1e-2a6b8c0d4e11")));
        assert_eq!(
            handles_of(&events[0]),
            [
                ("app_user", "u-77812"),
                ("phone", "+15551230001"),
                ("email", "alice@example.com")
            ]
        );
        match &events[2].body {
            Body::Note { agent_id, text } => {
                assert_eq!(agent_id, NOTE_AUTHOR);
                assert!(text.contains("on screen orders/A-1009/refund"), "{text}");
                assert!(
                    text.starts_with(
                        "In the mobile app 4.12.0 (build 4120, ios 17.4 iPhone15,2), on screen"
                    ),
                    "{text}"
                );
                assert!(
                    text.contains("tapped Request refund → saw error REFUND_WINDOW_CLOSED"),
                    "{text}"
                );
                assert!(
                    text.contains("Asked to be contacted: call back, today after 14:00"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &events[4].body,
            Body::Queued { queue, .. } if queue == DEFAULT_QUEUE
        ));
        assert_eq!(events[0].attributes["screen"], "orders/A-1009/refund");
    }

    #[test]
    fn a_message_is_in_its_conversation_with_one_context_note_per_place() {
        let events = assert_fixture(&MobileApp, "message.json", JSON);
        assert_eq!(types(&events), ["message", "note"]);
        assert_eq!(
            events[0].interaction_id.as_deref(),
            Some("mobile_app:conv-u-77812-0042")
        );
        assert_eq!(handles_of(&events[0]), [("app_user", "u-77812")]);
        // A second message from the same screen: a new message, the same note (stored once).
        let mut next: Value =
            serde_json::from_slice(&fixture("mobile_app", "message.json")).unwrap();
        next["request_id"] = json!("b2c4e6f8-0000-4000-8000-000000000002");
        next["text"] = json!("Also, the invoice shows the wrong address.");
        next["context"]["last_actions"] = json!(["opened invoice"]);
        let again = MobileApp.parse(&request(JSON, next.to_string())).unwrap();
        assert_ne!(again[0].event_id, events[0].event_id);
        assert_eq!(again[1].event_id, events[1].event_id);
        // From another screen: another note.
        next["context"]["screen"] = json!("account/addresses");
        let elsewhere = MobileApp.parse(&request(JSON, next.to_string())).unwrap();
        assert_ne!(elsewhere[1].event_id, events[1].event_id);
    }

    #[test]
    fn a_retried_submission_has_the_same_ids() {
        let body = fixture("mobile_app", "contact-me.json");
        let first = MobileApp.parse(&request(JSON, body.clone())).unwrap();
        assert_eq!(
            ids(&MobileApp.parse(&request(JSON, body)).unwrap()),
            ids(&first)
        );
    }

    #[test]
    fn only_the_last_ten_actions_are_kept() {
        let mut body: Value =
            serde_json::from_slice(&fixture("mobile_app", "message.json")).unwrap();
        let actions: Vec<String> = (1..=12).map(|i| format!("step {i}")).collect();
        body["context"]["last_actions"] = json!(actions);
        let events = MobileApp.parse(&request(JSON, body.to_string())).unwrap();
        let Body::Note { text, .. } = &events[1].body else {
            panic!("{:?}", events[1].body)
        };
        assert!(text.contains("Last actions: step 3 → step 4"), "{text}");
        assert!(!text.contains("step 2 "), "{text}");
        assert!(text.contains("step 12."), "{text}");
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let valid: Value =
            serde_json::from_slice(&fixture("mobile_app", "contact-me.json")).unwrap();
        let parse = |path: &[&str], value: Value| {
            let mut body = valid.clone();
            let mut target = &mut body;
            for key in &path[..path.len() - 1] {
                target = &mut target[*key];
            }
            if value.is_null() {
                target.as_object_mut().unwrap().remove(path[path.len() - 1]);
            } else {
                target[path[path.len() - 1]] = value;
            }
            MobileApp.parse(&request(JSON, body.to_string()))
        };
        assert!(parse(&["topic"], json!("billing")).is_ok());
        assert_eq!(
            refused_field(parse(&["request_id"], json!(" "))),
            "request_id"
        );
        assert_eq!(refused_field(parse(&["kind"], json!("complaint"))), "kind");
        assert_eq!(refused_field(parse(&["sent_at"], json!("now"))), "sent_at");
        assert_eq!(
            refused_field(parse(&["user", "app_user_id"], json!(""))),
            "user.app_user_id"
        );
        assert_eq!(
            refused_field(parse(&["user", "phone"], json!("call me"))),
            "user.phone"
        );
        assert_eq!(
            refused_field(parse(&["user", "phone"], Value::Null)),
            "user.phone"
        );
        assert_eq!(
            refused_field(parse(&["user", "email"], json!("nobody"))),
            "user.email"
        );
        assert_eq!(
            refused_field(parse(&["app", "version"], json!(""))),
            "app.version"
        );
        assert_eq!(
            refused_field(parse(&["context", "screen"], json!("a\u{1b}b"))),
            "context.screen"
        );
        assert_eq!(
            refused_field(parse(
                &["context", "last_actions"],
                json!(["ok", "bad\u{7}"])
            )),
            "context.last_actions[1]"
        );
        assert_eq!(
            refused_field(parse(&["contact", "channel"], json!("fax"))),
            "contact.channel"
        );
        assert_eq!(refused_field(parse(&["contact"], Value::Null)), "contact");
        assert_eq!(
            refused_field(parse(&["device", "battery"], json!("12%"))),
            "device.battery"
        );
        assert_eq!(refused_field(parse(&["kind"], json!("message"))), "contact");
        let mut message: Value =
            serde_json::from_slice(&fixture("mobile_app", "message.json")).unwrap();
        message.as_object_mut().unwrap().remove("conversation_id");
        assert_eq!(
            refused_field(MobileApp.parse(&request(JSON, message.to_string()))),
            "conversation_id"
        );
        let mut email_wanted = valid.clone();
        email_wanted["contact"]["channel"] = json!("email");
        email_wanted["user"]
            .as_object_mut()
            .unwrap()
            .remove("email");
        assert_eq!(
            refused_field(MobileApp.parse(&request(JSON, email_wanted.to_string()))),
            "user.email"
        );
    }
}
