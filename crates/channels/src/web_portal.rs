//! `POST /v1/channels/web_portal`: a request submitted on the customer portal,
//! `{request_id, email, subject, body, submitted_at}`.
//!
//! A request is an interaction of its own (`interaction_id` = `portal:{request_id}`), opened
//! by `interaction_started` (inbound, with the subject) and carrying the request's text as
//! one `message` from the customer. The portal only serves signed-in customers, so the email
//! is required and identifies the customer. Ids come from the request id: a portal that
//! retries a submission writes nothing new.

use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::json;

use crate::mapping::{Interaction, handle, required, rfc3339};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "web_portal";

/// The customer portal's request form.
#[derive(Clone, Copy, Debug, Default)]
pub struct WebPortal;

/// The portal's payload is ours, so it is read strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalRequest {
    request_id: String,
    email: String,
    subject: String,
    body: String,
    submitted_at: String,
}

impl ChannelIngestor for WebPortal {
    fn name(&self) -> &'static str {
        "web_portal"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::OmnilogHmac
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let portal: PortalRequest = json_body(&request.body)?;
        let request_id = required("request_id", &portal.request_id)?;
        let customer = handle("email", "email", &portal.email)?;
        let subject = required("subject", &portal.subject)?;
        let text = required("body", &portal.body)?;
        let submitted_at = rfc3339("submitted_at", &portal.submitted_at)?;
        let ticket = Interaction::new(
            SOURCE,
            Channel::WebPortal,
            format!("portal:{request_id}"),
            vec![customer],
        );
        Ok(vec![
            ticket.event(
                &format!("{request_id}:submitted"),
                &submitted_at,
                json!({"type": "interaction_started", "direction": "inbound", "subject": subject}),
            )?,
            ticket.event(
                &format!("{request_id}:body"),
                &submitted_at,
                json!({"type": "message", "direction": "inbound", "author": "customer", "text": text}),
            )?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, refused_field, request, types};

    const JSON: &str = "application/json";

    #[test]
    fn a_request_opens_an_interaction_with_its_text() {
        let events = assert_fixture(&WebPortal, "request.json", JSON);
        assert_eq!(types(&events), ["interaction_started", "message"]);
        assert!(
            events
                .iter()
                .all(|e| e.interaction_id.as_deref() == Some("portal:REQ-20417"))
        );
        let handles = &events[0].customer.as_ref().unwrap().handles;
        assert_eq!(handles[0].value, "alice@example.com");
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let valid = json!({"request_id": "R1", "email": "a@example.com", "subject": "s", "body": "b", "submitted_at": "2026-03-02T10:00:00Z"});
        let parse = |field: &str, value: serde_json::Value| {
            let mut body = valid.clone();
            body[field] = value;
            WebPortal.parse(&request(JSON, body.to_string()))
        };
        assert!(parse("subject", json!("s")).is_ok());
        assert_eq!(refused_field(parse("email", json!("nobody"))), "email");
        assert_eq!(refused_field(parse("subject", json!(" "))), "subject");
        assert_eq!(refused_field(parse("body", json!(""))), "body");
        assert_eq!(
            refused_field(parse("submitted_at", json!("today"))),
            "submitted_at"
        );
        assert_eq!(refused_field(parse("request_id", json!(7))), "request_id");
    }
}
