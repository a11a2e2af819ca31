//! `POST /v1/channels/chatbot` and `POST /v1/channels/ivr`: a finished self-service session,
//! `{session_id, handles, intents[], outcome: contained|escalated, queue?, ended_at}`, and
//! optionally `started_at`, `priority` and `skills` for the escalation.
//!
//! The session is an interaction on its channel (`interaction_id` = `{channel}:{session_id}`):
//!
//! - `interaction_started` (inbound, `self_service: true`) at `started_at`, else `ended_at`;
//! - `tagged` with the intents the bot recognised, when it recognised any: they become the
//!   journey's topics, so the agent who takes an escalation sees what the customer asked;
//! - `contained`: `ended` with reason `contained` (the bot answered, no agent needed);
//! - `escalated`: `queued` in `queue` (required then) with the given priority and skills,
//!   so the same interaction continues with an agent, and its wait starts at `ended_at`.
//!
//! Chatbot and IVR share the payload and the mapping: one module, two registrations.

use chrono::{DateTime, Utc};
use omnilog_events::{Channel, Event, Handle};
use serde::Deserialize;
use serde_json::json;

use crate::mapping::{Interaction, handle, required, rfc3339};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// A self-service platform: a chatbot or an IVR.
#[derive(Clone, Copy, Debug)]
pub struct SelfService {
    name: &'static str,
    source: &'static str,
    channel: Channel,
}

impl SelfService {
    /// The chatbot, at `/v1/channels/chatbot`.
    pub const CHATBOT: SelfService = SelfService {
        name: "chatbot",
        source: "chatbot.session",
        channel: Channel::Chatbot,
    };
    /// The IVR, at `/v1/channels/ivr`.
    pub const IVR: SelfService = SelfService {
        name: "ivr",
        source: "ivr.session",
        channel: Channel::Ivr,
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionHandle {
    kind: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Contained,
    Escalated,
}

/// The session payload is ours, so it is read strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Session {
    session_id: String,
    handles: Vec<SessionHandle>,
    #[serde(default)]
    intents: Vec<String>,
    outcome: Outcome,
    queue: Option<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    skills: Vec<String>,
    started_at: Option<String>,
    ended_at: String,
}

impl ChannelIngestor for SelfService {
    fn name(&self) -> &'static str {
        self.name
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::OmnilogHmac
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let session: Session = json_body(&request.body)?;
        let session_id = required("session_id", &session.session_id)?;
        let ended_at = rfc3339("ended_at", &session.ended_at)?;
        let started_at: DateTime<Utc> = match session.started_at.as_deref() {
            Some(at) => rfc3339("started_at", at)?,
            None => ended_at,
        };
        if started_at > ended_at {
            return Err(ChannelError::malformed("started_at", "is after ended_at"));
        }
        let handles = session
            .handles
            .iter()
            .enumerate()
            .map(|(i, h)| handle(&format!("handles[{i}]"), &h.kind, &h.value))
            .collect::<Result<Vec<Handle>, _>>()?;
        if handles.is_empty() {
            return Err(ChannelError::malformed(
                "handles",
                "needs at least one handle to know the customer",
            ));
        }
        let mut topics = Vec::new();
        for (i, intent) in session.intents.iter().enumerate() {
            let intent = required(&format!("intents[{i}]"), intent)?;
            if !topics.iter().any(|t| t == intent) {
                topics.push(intent.to_owned());
            }
        }
        let interaction = Interaction::new(
            self.source,
            self.channel,
            format!("{}:{session_id}", self.name),
            handles,
        );
        let mut events = vec![interaction.event(
            &format!("{session_id}:started"),
            &started_at,
            json!({"type": "interaction_started", "direction": "inbound", "self_service": true}),
        )?];
        if !topics.is_empty() {
            events.push(interaction.event(
                &format!("{session_id}:intents"),
                &ended_at,
                json!({"type": "tagged", "topics": topics}),
            )?);
        }
        events.push(match session.outcome {
            Outcome::Contained => interaction.event(
                &format!("{session_id}:contained"),
                &ended_at,
                json!({"type": "ended", "reason": "contained"}),
            )?,
            Outcome::Escalated => {
                let queue = session
                    .queue
                    .as_deref()
                    .ok_or_else(|| ChannelError::malformed("queue", "is required when the outcome is escalated"))?;
                let queue = required("queue", queue)?;
                interaction.event(
                    &format!("{session_id}:escalated"),
                    &ended_at,
                    json!({"type": "queued", "queue": queue, "priority": session.priority, "skills": session.skills}),
                )?
            }
        });
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, refused_field, request, types};

    const JSON: &str = "application/json";

    #[test]
    fn a_contained_chatbot_session_ends_without_an_agent() {
        let events = assert_fixture(&SelfService::CHATBOT, "contained.json", JSON);
        assert_eq!(types(&events), ["interaction_started", "tagged", "ended"]);
        assert!(events.iter().all(|e| e.channel == Some(Channel::Chatbot)));
        assert_eq!(
            events[0].interaction_id.as_deref(),
            Some("chatbot:bot-77f1")
        );
    }

    #[test]
    fn an_escalated_ivr_session_waits_in_its_queue() {
        let events = assert_fixture(&SelfService::IVR, "escalated.json", JSON);
        assert_eq!(types(&events), ["interaction_started", "tagged", "queued"]);
        assert!(events.iter().all(|e| e.channel == Some(Channel::Ivr)));
        let handles = &events[0].customer.as_ref().unwrap().handles;
        assert_eq!(handles[0].value, "+15551230001");
    }

    #[test]
    fn malformed_sessions_name_the_field() {
        let valid = json!({"session_id": "s", "handles": [{"kind": "phone", "value": "+1555"}], "intents": ["billing"], "outcome": "escalated", "queue": "billing", "ended_at": "2026-03-02T10:00:00Z"});
        let parse = |field: &str, value: serde_json::Value| {
            let mut body = valid.clone();
            body[field] = value;
            SelfService::IVR.parse(&request(JSON, body.to_string()))
        };
        assert!(parse("priority", json!(2)).is_ok());
        assert_eq!(
            refused_field(parse("queue", serde_json::Value::Null)),
            "queue"
        );
        assert_eq!(
            refused_field(parse("outcome", json!("transferred"))),
            "outcome"
        );
        assert_eq!(refused_field(parse("handles", json!([]))), "handles");
        assert_eq!(
            refused_field(parse("handles", json!([{"kind": "phone", "value": "n/a"}]))),
            "handles[0]"
        );
        assert_eq!(
            refused_field(parse("intents", json!(["ok", " "]))),
            "intents[1]"
        );
        assert_eq!(
            refused_field(parse("started_at", json!("2026-03-02T11:00:00Z"))),
            "started_at"
        );
        assert_eq!(refused_field(parse("ended_at", json!("later"))), "ended_at");
    }
}
