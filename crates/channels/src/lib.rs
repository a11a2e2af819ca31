//! Channel ingestors: each platform's own webhook payload turned into canonical omnilog
//! events, plus the platform's way of signing its webhooks.
//!
//! A channel is one module implementing [`ChannelIngestor`], its fixtures (real payload
//! shapes) under `fixtures/<channel>/`, its tests, and one registration line in
//! [`Registry::standard`]. Ingestors never touch the log: they only map bytes to events,
//! and every event they make passes the same validation as `POST /v1/events`
//! ([`canonical`]), so a channel cannot write what the contract forbids.
//!
//! Every event gets a stable `source_event_id` derived from the platform's own ids, so a
//! redelivered webhook maps to the same event ids and is stored once.

pub mod alert;
pub mod chat;
pub mod email;
pub mod fax;
pub mod instagram;
pub mod mapping;
pub mod messenger;
pub mod meta;
pub mod meta_feed;
pub mod mobile_app;
pub mod self_service;
pub mod signature;
pub mod sms;
pub mod voice;
pub mod walk_in;
pub mod web_portal;
pub mod whatsapp;
pub mod x;

#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnilog_events::{Event, EventError};

pub use signature::SignatureScheme;

/// A webhook as it reached `POST /v1/channels/{channel}`.
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    /// The full URL the platform called (Twilio signs it).
    pub url: String,
    /// The `Content-Type` without parameters, lower-cased.
    pub content_type: Option<String>,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// When the server received it: the event time of payloads that carry none.
    pub received_at: DateTime<Utc>,
}

impl WebhookRequest {
    /// A header by its lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Why a webhook was refused. Nothing of a refused webhook is written.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The payload lacks a field or has a value we cannot map (→ 400/422).
    #[error("{field}: {message}")]
    Malformed { field: String, message: String },
    /// The payload is not of a content type the platform sends (→ 415).
    #[error("content type {got:?} is not accepted here; expected one of {expected:?}")]
    UnsupportedMediaType {
        expected: &'static [&'static str],
        got: Option<String>,
    },
    /// The platform's signature is missing or wrong (→ 401).
    #[error("signature: {0}")]
    BadSignature(String),
}

impl ChannelError {
    /// A payload field that is missing or cannot be mapped.
    pub fn malformed(field: impl Into<String>, message: impl Into<String>) -> Self {
        ChannelError::Malformed {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A required payload field that is absent.
    pub fn missing(field: impl Into<String>) -> Self {
        ChannelError::malformed(field, "is required")
    }
}

impl From<EventError> for ChannelError {
    fn from(error: EventError) -> Self {
        match error {
            EventError::Invalid { field, message } => ChannelError::Malformed {
                field: format!("event.{field}"),
                message,
            },
            EventError::Decode(message) => ChannelError::malformed("body", message),
        }
    }
}

/// One platform's webhook: its path, its content types, its signature and its mapping.
pub trait ChannelIngestor: Send + Sync + std::fmt::Debug + 'static {
    /// The path segment under `/v1/channels/` (`voice`, `messenger`, ...).
    fn name(&self) -> &'static str;
    /// The content types the platform sends; anything else is 415.
    fn content_types(&self) -> &'static [&'static str];
    /// How the platform signs its webhooks when a secret is configured.
    fn signature(&self) -> SignatureScheme;
    /// Maps one webhook to canonical events, in the order they happened.
    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError>;
}

/// Builds a validated event from its canonical JSON: the one door every channel's events
/// go through, the same rules as `POST /v1/events`.
pub fn canonical(json: serde_json::Value) -> Result<Event, ChannelError> {
    Ok(omnilog_events::json::event_from_value(json)?)
}

/// Decodes an `application/x-www-form-urlencoded` body into its fields (the last value
/// of a repeated field wins, as in Twilio's own libraries).
pub fn form_fields(body: &[u8]) -> Result<BTreeMap<String, String>, ChannelError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| ChannelError::malformed("body", format!("not a form body: {e}")))?;
    Ok(pairs.into_iter().collect())
}

/// A required form field.
pub fn form_field<'a>(
    fields: &'a BTreeMap<String, String>,
    name: &str,
) -> Result<&'a str, ChannelError> {
    fields
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ChannelError::missing(name))
}

/// Reads a JSON body into `T`, naming the field of the first error.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ChannelError> {
    json_at(body, "")
}

/// Reads JSON text found at `prefix` of a payload (a form field holding JSON, say) into
/// `T`, naming the field of the first error under `prefix`.
pub fn json_at<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    prefix: &str,
) -> Result<T, ChannelError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| field_error(prefix, e))
}

/// Reads a JSON value found at `prefix` of a payload into `T`, naming the field of the
/// first error under `prefix`.
pub fn value_at<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    prefix: &str,
) -> Result<T, ChannelError> {
    serde_path_to_error::deserialize(value).map_err(|e| field_error(prefix, e))
}

/// A deserialisation error as a malformed field: its path under `prefix` (the whole
/// body is `body`).
fn field_error(prefix: &str, error: serde_path_to_error::Error<serde_json::Error>) -> ChannelError {
    let path = error.path().to_string();
    let field = match (prefix, path.as_str()) {
        ("", ".") => "body".to_owned(),
        ("", _) => path,
        (_, ".") => prefix.to_owned(),
        _ => format!("{prefix}.{path}"),
    };
    ChannelError::malformed(field, error.into_inner().to_string())
}

/// The channels this build knows, by path.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    by_name: BTreeMap<&'static str, Arc<dyn ChannelIngestor>>,
}

impl Registry {
    /// Every channel of CONTRACT §7: one line each.
    pub fn standard() -> Self {
        Registry::default()
            .register(voice::TwilioVoice)
            .register(sms::TwilioSms)
            .register(email::Rfc5322Email)
            .register(messenger::MetaMessenger)
            .register(whatsapp::WhatsAppCloud)
            .register(chat::ChatWidget)
            .register(web_portal::WebPortal)
            .register(walk_in::WalkIn)
            .register(self_service::SelfService::CHATBOT)
            .register(self_service::SelfService::IVR)
            .register(alert::Alertmanager)
            .register(x::XAccountActivity)
            .register(instagram::MetaInstagram)
            .register(fax::SinchFax)
            .register(mobile_app::MobileApp)
    }

    /// Adds (or replaces) a channel.
    pub fn register(mut self, ingestor: impl ChannelIngestor) -> Self {
        self.by_name.insert(ingestor.name(), Arc::new(ingestor));
        self
    }

    /// The channel served at `/v1/channels/{name}`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ChannelIngestor>> {
        self.by_name.get(name)
    }

    /// The paths of every registered channel.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}
