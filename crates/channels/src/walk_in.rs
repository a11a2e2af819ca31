//! `POST /v1/channels/walk_in`: a front-desk check-in,
//! `{visit_id, name?, email?, phone?, reason, checked_in_at}`.
//!
//! A visit is an interaction (`interaction_id` = `walk_in:{visit_id}`): it starts when the
//! visitor checks in (`interaction_started`, inbound, the reason as subject) and the visitor
//! waits in the `front_desk` queue (`queued`) until someone at the desk takes them, so walk-ups
//! show in the one central queue beside calls and chats.
//!
//! The customer is the email, then the phone, whichever the desk captured. A visitor who
//! gives neither is still served and counted: they are known by the visit alone (handle kind
//! `visit`), a customer of one interaction, never merged with anyone on a guess.

use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::json;

use crate::mapping::{Interaction, attributes, handle, required, rfc3339};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "walk_in.front_desk";

/// The queue every walk-up waits in.
pub const QUEUE: &str = "front_desk";

/// The front desk's check-in terminal.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkIn;

/// The check-in payload is ours, so it is read strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckIn {
    visit_id: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    reason: String,
    checked_in_at: String,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

impl ChannelIngestor for WalkIn {
    fn name(&self) -> &'static str {
        "walk_in"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::OmnilogHmac
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let visit: CheckIn = json_body(&request.body)?;
        let visit_id = required("visit_id", &visit.visit_id)?;
        let reason = required("reason", &visit.reason)?;
        let checked_in_at = rfc3339("checked_in_at", &visit.checked_in_at)?;
        let mut handles = Vec::new();
        if let Some(email) = given(&visit.email) {
            handles.push(handle("email", "email", email)?);
        }
        if let Some(phone) = given(&visit.phone) {
            handles.push(handle("phone", "phone", phone)?);
        }
        if handles.is_empty() {
            handles.push(handle("visit_id", "visit", visit_id)?);
        }
        let desk = Interaction::new(
            SOURCE,
            Channel::WalkIn,
            format!("walk_in:{visit_id}"),
            handles,
        );
        Ok(vec![
            desk.event(
                &format!("{visit_id}:checked_in"),
                &checked_in_at,
                json!({
                    "type": "interaction_started",
                    "direction": "inbound",
                    "subject": reason,
                    "attributes": attributes([("customer_name", given(&visit.name))]),
                }),
            )?,
            desk.event(
                &format!("{visit_id}:queued"),
                &checked_in_at,
                json!({"type": "queued", "queue": QUEUE, "priority": 0, "skills": []}),
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
    fn a_check_in_starts_a_visit_waiting_at_the_front_desk() {
        let events = assert_fixture(&WalkIn, "check-in.json", JSON);
        assert_eq!(types(&events), ["interaction_started", "queued"]);
        let handles = &events[0].customer.as_ref().unwrap().handles;
        let kinds: Vec<_> = handles
            .iter()
            .map(|h| (h.kind.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("email", "alice@example.com"), ("phone", "+15551230001")]
        );
        assert_eq!(events[1].channel, Some(Channel::WalkIn));
    }

    #[test]
    fn an_anonymous_visitor_is_known_by_the_visit() {
        let events = assert_fixture(&WalkIn, "anonymous.json", JSON);
        let handles = &events[0].customer.as_ref().unwrap().handles;
        assert_eq!(handles.len(), 1);
        assert_eq!(
            (handles[0].kind.as_str(), handles[0].value.as_str()),
            ("visit", "V-0312")
        );
    }

    #[test]
    fn malformed_check_ins_name_the_field() {
        let valid =
            json!({"visit_id": "V1", "reason": "r", "checked_in_at": "2026-03-02T10:00:00Z"});
        let parse = |field: &str, value: serde_json::Value| {
            let mut body = valid.clone();
            body[field] = value;
            WalkIn.parse(&request(JSON, body.to_string()))
        };
        assert!(parse("name", json!("Bob")).is_ok());
        assert_eq!(refused_field(parse("phone", json!("ask at desk"))), "phone");
        assert_eq!(refused_field(parse("email", json!("bob"))), "email");
        assert_eq!(refused_field(parse("reason", json!(""))), "reason");
        assert_eq!(
            refused_field(parse("checked_in_at", json!("now"))),
            "checked_in_at"
        );
        assert_eq!(
            refused_field(WalkIn.parse(&request(JSON, "{\"version\":\"3\"}"))),
            "version"
        );
    }
}
