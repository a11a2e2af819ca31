//! `POST /v1/channels/fax`: an inbound fax, as Sinch's Fax API (v3) reports it with its
//! `INCOMING_FAX` webhook.
//!
//! Sinch sends the event either as `application/json` (the fax object, with the document as
//! base64 in `file`) or as `multipart/form-data` (its default: the fields `event`,
//! `eventTime` and `fax`, the last one a JSON text, and the PDF as the `file` part). Both
//! are accepted and read the same way; the document itself is not kept (it stays with
//! Sinch, and `fax.contentUrl` points at it).
//!
//! One fax is one interaction on channel `fax` (`interaction_id` = `fax:{fax.id}`). The
//! customer is the sending number `fax.from` as a `phone` handle, normalised like a call's
//! or an SMS's `From`, so a fax and a later call from the same number are one customer in
//! one journey.
//!
//! | `fax.status` | events |
//! |---|---|
//! | `COMPLETED` | `interaction_started` (inbound, subject `Fax of N pages`) at `createTime`, and `message` (inbound, author customer) at `completedTime`: the document, its pages, content URL and the desk's number (`to`) as attributes |
//! | `FAILURE` | `interaction_started` (subject `Fax (failed)`) and `ended` with reason `failed` at `completedTime`, with Sinch's `errorType`, `errorCode` and `errorMessage` |
//! | `QUEUED`, `IN_PROGRESS` | `interaction_started` only |
//!
//! A failed fax is recorded rather than refused: someone tried to reach the desk and could
//! not, which belongs in their journey (a callback may be due), as a failed call does; and
//! refusing would only make Sinch retry a webhook that can never succeed. Ids come from
//! the fax id (`{id}:started`, `{id}:document`, `{id}:failed`), so Sinch's retries are
//! stored once. Times missing from the fax fall back to `eventTime`, then to the time the
//! request arrived.
//!
//! Refused, naming the field: another `event` (`FAX_COMPLETED` reports the desk's own
//! outbound faxes: point those callbacks elsewhere), a `fax.direction` other than
//! `INBOUND`, and a fax without a usable `fax.from` (a sender that withholds its number
//! names no customer, as an anonymous call does).
//!
//! Sinch does not sign its fax webhooks. A secret configured for `fax` is checked as
//! `X-Omnilog-Signature` (our own scheme), which a relay in front of omnilog must add;
//! without a secret the bearer token applies, as on every channel.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::mapping::{Interaction, attributes, handle, required, rfc3339};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_at, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "fax.sinch";

/// Sinch Fax API incoming-fax webhooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SinchFax;

// Read leniently (unknown fields ignored): Sinch's fax object has many optional fields
// (bar codes, labels, cover pages, price) and grows.

/// The JSON form of the webhook.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonWebhook {
    event: String,
    event_time: Option<String>,
    fax: Fax,
    file_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fax {
    id: String,
    direction: String,
    from: Option<String>,
    to: Option<String>,
    number_of_pages: Option<u32>,
    status: String,
    create_time: Option<String>,
    completed_time: Option<String>,
    content_url: Option<ContentUrl>,
    has_file: Option<Value>,
    service_id: Option<String>,
    error_type: Option<String>,
    error_code: Option<Value>,
    error_message: Option<String>,
}

/// Sinch gives one URL or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ContentUrl {
    One(String),
    Many(Vec<String>),
}

/// What both forms of the webhook say.
struct Incoming {
    event: String,
    event_time: Option<String>,
    fax: Fax,
    file_type: Option<String>,
}

impl ChannelIngestor for SinchFax {
    fn name(&self) -> &'static str {
        "fax"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json", "multipart/form-data"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::OmnilogHmac
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let incoming = if request.content_type.as_deref() == Some("multipart/form-data") {
            from_multipart(request)?
        } else {
            let webhook: JsonWebhook = json_body(&request.body)?;
            Incoming {
                event: webhook.event,
                event_time: webhook.event_time,
                fax: webhook.fax,
                file_type: webhook.file_type,
            }
        };
        map_fax(&incoming, request.received_at)
    }
}

/// The events of one incoming fax.
fn map_fax(incoming: &Incoming, received_at: DateTime<Utc>) -> Result<Vec<Event>, ChannelError> {
    if incoming.event.trim() != "INCOMING_FAX" {
        return Err(ChannelError::malformed(
            "event",
            format!(
                "{:?} is not INCOMING_FAX (only inbound faxes are mapped here)",
                incoming.event
            ),
        ));
    }
    let fax = &incoming.fax;
    let id = required("fax.id", &fax.id)?;
    if !fax.direction.trim().eq_ignore_ascii_case("INBOUND") {
        return Err(ChannelError::malformed(
            "fax.direction",
            format!("{:?} is not INBOUND", fax.direction),
        ));
    }
    let from = fax
        .from
        .as_deref()
        .ok_or_else(|| ChannelError::missing("fax.from"))?;
    let customer = handle("fax.from", "phone", from)?;
    let event_time = match incoming
        .event_time
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        Some(time) => rfc3339("eventTime", time)?,
        None => received_at,
    };
    let time = |field: &str, value: Option<&str>| match value.filter(|t| !t.trim().is_empty()) {
        Some(time) => rfc3339(field, time),
        None => Ok(event_time),
    };
    let created = time("fax.createTime", fax.create_time.as_deref())?;
    let completed = time("fax.completedTime", fax.completed_time.as_deref())?;
    let pages = fax.number_of_pages.map(|n| n.to_string());
    let urls = match &fax.content_url {
        Some(ContentUrl::One(url)) => url.trim().to_owned(),
        Some(ContentUrl::Many(urls)) => urls.join(" "),
        None => String::new(),
    };
    let has_file = fax.has_file.as_ref().map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let error_code = fax.error_code.as_ref().map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let kept = attributes([
        ("fax_id", Some(id)),
        ("fax_status", Some(fax.status.trim())),
        ("desk_number", fax.to.as_deref()),
        ("pages", pages.as_deref()),
        ("content_url", Some(urls.as_str())),
        ("has_file", has_file.as_deref()),
        ("file_type", incoming.file_type.as_deref()),
        ("service_id", fax.service_id.as_deref()),
        ("error_type", fax.error_type.as_deref()),
        ("error_code", error_code.as_deref()),
        ("error_message", fax.error_message.as_deref()),
    ]);
    let status = fax.status.trim().to_ascii_uppercase();
    let subject = match (status.as_str(), fax.number_of_pages) {
        ("FAILURE", _) => "Fax (failed)".to_owned(),
        (_, Some(1)) => "Fax of 1 page".to_owned(),
        (_, Some(n)) => format!("Fax of {n} pages"),
        (_, None) => "Fax".to_owned(),
    };
    let document = Interaction::new(SOURCE, Channel::Fax, format!("fax:{id}"), vec![customer]);
    let started = document.event(
        &format!("{id}:started"),
        &created,
        json!({"type": "interaction_started", "direction": "inbound", "subject": subject, "attributes": kept}),
    )?;
    let rest = match status.as_str() {
        "COMPLETED" => vec![document.event(
            &format!("{id}:document"),
            &completed,
            json!({"type": "message", "direction": "inbound", "author": "customer", "attributes": kept}),
        )?],
        "FAILURE" => vec![document.event(
            &format!("{id}:failed"),
            &completed,
            json!({"type": "ended", "reason": "failed", "attributes": kept}),
        )?],
        "QUEUED" | "IN_PROGRESS" => Vec::new(),
        _ => {
            return Err(ChannelError::malformed(
                "fax.status",
                format!(
                    "{:?} is not a Sinch fax status (QUEUED, IN_PROGRESS, COMPLETED, FAILURE)",
                    fax.status
                ),
            ));
        }
    };
    Ok(std::iter::once(started).chain(rest).collect())
}

/// Reads the multipart form: `event`, `eventTime` and `fax` (JSON text); `file` is the
/// document and is not read.
fn from_multipart(request: &WebhookRequest) -> Result<Incoming, ChannelError> {
    let fields = form_data(request.header("content-type").unwrap_or(""), &request.body)?;
    let text = |name: &str| -> Result<Option<String>, ChannelError> {
        fields
            .get(name)
            .map(|bytes| {
                String::from_utf8(bytes.clone())
                    .map_err(|_| ChannelError::malformed(name, "is not UTF-8 text"))
            })
            .transpose()
    };
    let event = text("event")?.ok_or_else(|| ChannelError::missing("event"))?;
    let fax_json = fields
        .get("fax")
        .ok_or_else(|| ChannelError::missing("fax"))?;
    Ok(Incoming {
        event,
        event_time: text("eventTime")?,
        fax: json_at(fax_json, "fax")?,
        file_type: None,
    })
}

/// The named parts of a `multipart/form-data` body (RFC 7578): name → content. A form is
/// a MIME multipart body, so the MIME parser the email channel uses reads it: the body goes
/// in behind its `Content-Type` header (which carries the boundary) as a message of its own.
fn form_data(content_type: &str, body: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, ChannelError> {
    let broken =
        |why: &str| ChannelError::malformed("body", format!("not a multipart form: {why}"));
    let has_boundary = content_type.split(';').skip(1).any(|parameter| {
        parameter.split_once('=').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("boundary") && !value.trim().is_empty()
        })
    });
    if !has_boundary {
        return Err(ChannelError::malformed(
            "content-type",
            "a multipart body needs its boundary",
        ));
    }
    let mut message = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    message.extend_from_slice(body);
    let parsed = MessageParser::default()
        .parse(&message)
        .ok_or_else(|| broken("it does not parse"))?;
    let parts = parsed
        .parts
        .first()
        .and_then(|root| root.sub_parts())
        .filter(|parts| !parts.is_empty())
        .ok_or_else(|| broken("no part between its boundaries"))?;
    Ok(parts
        .iter()
        .filter_map(|id| parsed.part(*id))
        .filter_map(|part| {
            let name = part.content_disposition()?.attribute("name")?;
            Some((name.to_owned(), part.contents().to_vec()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, fixture, ids, refused_field, request, types};
    use omnilog_events::Body;

    const JSON: &str = "application/json";
    const MULTIPART: &str = "multipart/form-data";

    /// The multipart fixture as the API hands it over: the boundary is in the header.
    fn multipart_request(body: Vec<u8>) -> WebhookRequest {
        let mut request = request(MULTIPART, body);
        request.headers.insert(
            "content-type".to_owned(),
            "multipart/form-data; boundary=------------------------5c1fd3b2a7e04f18".to_owned(),
        );
        request
    }

    #[test]
    fn a_received_fax_opens_an_interaction_with_its_document_from_the_sender_s_phone() {
        let events = assert_fixture(&SinchFax, "incoming-completed.json", JSON);
        assert_eq!(types(&events), ["interaction_started", "message"]);
        assert!(events.iter().all(|e| e.channel == Some(Channel::Fax)));
        assert!(
            events
                .iter()
                .all(|e| e.interaction_id.as_deref() == Some("fax:01JNB4RZ6Q5V0TQ8E3W1K9D2HX"))
        );
        let handle = &events[0].customer.as_ref().unwrap().handles[0];
        // Sinch's E.164, normalised as voice normalises Twilio's From.
        assert_eq!(
            (handle.kind.as_str(), handle.value.as_str()),
            ("phone", "+15551230001")
        );
        assert!(matches!(
            &events[0].body,
            Body::InteractionStarted { subject: Some(s), .. } if s == "Fax of 3 pages"
        ));
        assert_eq!(
            events[0].occurred_at.to_rfc3339(),
            "2026-03-02T10:01:12+00:00"
        );
        assert_eq!(
            events[1].occurred_at.to_rfc3339(),
            "2026-03-02T10:02:40+00:00"
        );
        assert!(events[1].attributes["content_url"].starts_with("https://"));
        // The document is not copied into the log.
        assert!(
            events
                .iter()
                .all(|e| e.attributes.values().all(|v| v.len() < 200))
        );
    }

    #[test]
    fn the_multipart_form_maps_like_the_json() {
        let json = SinchFax
            .parse(&request(JSON, fixture("fax", "incoming-completed.json")))
            .unwrap();
        let body = fixture("fax", "incoming-completed.multipart");
        let events = SinchFax.parse(&multipart_request(body.clone())).unwrap();
        assert_eq!(ids(&events), ids(&json));
        assert_eq!(
            ids(&SinchFax.parse(&multipart_request(body)).unwrap()),
            ids(&events)
        );
    }

    #[test]
    fn a_failed_fax_is_recorded_as_an_attempt_that_ended_failed() {
        let events = assert_fixture(&SinchFax, "incoming-failed.json", JSON);
        assert_eq!(types(&events), ["interaction_started", "ended"]);
        assert!(matches!(
            &events[1].body,
            Body::Ended { reason: Some(r) } if r == "failed"
        ));
        assert_eq!(events[1].attributes["error_type"], "LINE_ERROR");
    }

    #[test]
    fn malformed_webhooks_name_the_field() {
        let valid = serde_json::json!({
            "event": "INCOMING_FAX",
            "eventTime": "2026-03-02T10:02:41Z",
            "fax": {"id": "F1", "direction": "INBOUND", "from": "+15551230001", "to": "+15559990100",
                    "numberOfPages": 1, "status": "COMPLETED", "createTime": "2026-03-02T10:01:12Z",
                    "completedTime": "2026-03-02T10:02:40Z"}
        });
        let parse = |path: &[&str], value: Value| {
            let mut body = valid.clone();
            let mut target = &mut body;
            for key in &path[..path.len() - 1] {
                target = &mut target[*key];
            }
            target[path[path.len() - 1]] = value;
            SinchFax.parse(&request(JSON, body.to_string()))
        };
        assert!(parse(&["fax", "id"], json!("F2")).is_ok());
        assert_eq!(
            refused_field(parse(&["event"], json!("FAX_COMPLETED"))),
            "event"
        );
        assert_eq!(
            refused_field(parse(&["fax", "direction"], json!("OUTBOUND"))),
            "fax.direction"
        );
        assert_eq!(
            refused_field(parse(&["fax", "from"], json!("anonymous"))),
            "fax.from"
        );
        assert_eq!(
            refused_field(parse(&["fax", "from"], Value::Null)),
            "fax.from"
        );
        assert_eq!(refused_field(parse(&["fax", "id"], json!(""))), "fax.id");
        assert_eq!(
            refused_field(parse(&["fax", "status"], json!("LOST"))),
            "fax.status"
        );
        assert_eq!(
            refused_field(parse(&["fax", "createTime"], json!("today"))),
            "fax.createTime"
        );
        assert_eq!(
            refused_field(parse(&["eventTime"], json!("today"))),
            "eventTime"
        );
        assert_eq!(
            refused_field(parse(&["fax", "numberOfPages"], json!(-1))),
            "fax.numberOfPages"
        );
        assert_eq!(
            refused_field(parse(&["fax"], json!("not an object"))),
            "fax"
        );
        // Multipart: the fax's JSON text is read with the same field names.
        let form = |fax: &str| {
            format!(
                "--B\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\nINCOMING_FAX\r\n\
                 --B\r\nContent-Disposition: form-data; name=\"fax\"\r\nContent-Type: application/json\r\n\r\n{fax}\r\n--B--\r\n"
            )
        };
        let multipart = |body: String, content_type: &str| {
            let mut request = request(MULTIPART, body);
            request
                .headers
                .insert("content-type".to_owned(), content_type.to_owned());
            SinchFax.parse(&request)
        };
        let fax = valid["fax"].to_string();
        assert!(multipart(form(&fax), "multipart/form-data; boundary=B").is_ok());
        assert_eq!(
            refused_field(multipart(
                form(&fax.replace("+15551230001", "x")),
                "multipart/form-data; boundary=B"
            )),
            "fax.from"
        );
        assert_eq!(
            refused_field(multipart(
                form(r#"{"id": 7}"#),
                "multipart/form-data; boundary=B"
            )),
            "fax.id"
        );
        assert_eq!(
            refused_field(multipart(form(&fax), "multipart/form-data")),
            "content-type"
        );
        // A body with no part between boundaries of the one declared is not a form.
        assert_eq!(
            refused_field(multipart(form(&fax), "multipart/form-data; boundary=C")),
            "body"
        );
        let without_fax = "--B\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\nINCOMING_FAX\r\n--B--\r\n";
        assert_eq!(
            refused_field(multipart(
                without_fax.to_owned(),
                "multipart/form-data; boundary=B"
            )),
            "fax"
        );
    }
}
