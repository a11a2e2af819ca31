//! `POST /v1/channels/voice`: Twilio Voice status callbacks (form-encoded).
//!
//! Twilio calls once per call progress event the desk subscribed to, each time with the
//! call's current `CallStatus`. The call is the interaction (`interaction_id` = `CallSid`)
//! and the customer is the phone at the far end: `From` on an inbound call, `To` on an
//! outbound one.
//!
//! | `CallStatus` | event |
//! |---|---|
//! | `queued`, `initiated`, `ringing`, `in-progress` | `interaction_started` |
//! | `completed`, `busy`, `failed`, `no-answer`, `canceled` | `ended`, `reason` = the status |
//!
//! Every status that means "the call exists" maps to the *same* `interaction_started`
//! (`source_event_id` = `{CallSid}:started`): a desk may subscribe to any subset of
//! progress events, so whichever arrives first opens the call and the others are stored
//! once as duplicates. Ends keep Twilio's status in their id (`{CallSid}:completed`).
//! A final status does not repeat the start: a delivery is one event, so a retried final
//! callback is answered as one duplicate.
//!
//! Times come from `Timestamp` (RFC 2822); the call's first webhook has none and takes
//! the time the request arrived.

use chrono::{DateTime, Utc};
use omnilog_events::Channel;
use serde_json::json;

use crate::mapping::{Interaction, attributes, handle, rfc2822};
use crate::{
    ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, form_field, form_fields,
};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "voice.twilio";

/// Twilio Voice status callbacks.
#[derive(Clone, Copy, Debug, Default)]
pub struct TwilioVoice;

/// Twilio's fields worth keeping on the events, with the attribute names they get.
const KEPT_FIELDS: &[(&str, &str)] = &[
    ("CallStatus", "call_status"),
    ("Direction", "twilio_direction"),
    ("CallDuration", "call_duration_seconds"),
    ("AnsweredBy", "answered_by"),
    ("CallerName", "caller_name"),
    ("ForwardedFrom", "forwarded_from"),
    ("ParentCallSid", "parent_call_sid"),
    ("SipResponseCode", "sip_response_code"),
    ("AccountSid", "account_sid"),
];

impl ChannelIngestor for TwilioVoice {
    fn name(&self) -> &'static str {
        "voice"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/x-www-form-urlencoded"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::Twilio
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<omnilog_events::Event>, ChannelError> {
        let fields = form_fields(&request.body)?;
        let call_sid = form_field(&fields, "CallSid")?.trim();
        let status = form_field(&fields, "CallStatus")?.trim();
        let (direction, customer_field, desk_field) = match form_field(&fields, "Direction")?.trim()
        {
            "inbound" => ("inbound", "From", "To"),
            // outbound-api (placed through the REST API) and outbound-dial (a <Dial> leg).
            outbound if outbound.starts_with("outbound") => ("outbound", "To", "From"),
            other => {
                return Err(ChannelError::malformed(
                    "Direction",
                    format!("{other:?} is not inbound, outbound-api or outbound-dial"),
                ));
            }
        };
        let customer = handle(
            customer_field,
            "phone",
            form_field(&fields, customer_field)?,
        )?;
        let occurred_at: DateTime<Utc> =
            match fields.get("Timestamp").filter(|t| !t.trim().is_empty()) {
                Some(timestamp) => rfc2822("Timestamp", timestamp)?,
                None => request.received_at,
            };
        let call = Interaction::new(SOURCE, Channel::Voice, call_sid, vec![customer]);
        let kept = attributes(
            KEPT_FIELDS
                .iter()
                .map(|(field, name)| (*name, fields.get(*field)))
                .chain([("desk_number", fields.get(desk_field))]),
        );
        let event = match status {
            "queued" | "initiated" | "ringing" | "in-progress" => call.event(
                &format!("{call_sid}:started"),
                &occurred_at,
                json!({"type": "interaction_started", "direction": direction, "attributes": kept}),
            )?,
            "completed" | "busy" | "failed" | "no-answer" | "canceled" => call.event(
                &format!("{call_sid}:{status}"),
                &occurred_at,
                json!({"type": "ended", "reason": status, "attributes": kept}),
            )?,
            other => {
                return Err(ChannelError::malformed(
                    "CallStatus",
                    format!(
                        "{other:?} is not a Twilio call status (queued, initiated, ringing, \
                         in-progress, completed, busy, failed, no-answer, canceled)"
                    ),
                ));
            }
        };
        Ok(vec![event])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, ids, refused_field, request, types};

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn an_inbound_ringing_call_opens_an_interaction_for_the_caller() {
        let events = assert_fixture(&TwilioVoice, "inbound-ringing.form", FORM);
        assert_eq!(types(&events), ["interaction_started"]);
        let event = &events[0];
        assert_eq!(
            event.interaction_id.as_deref(),
            Some("CA5f3ad6b0a7b6e1a1c0e0f1d2c3b4a596")
        );
        assert_eq!(event.channel, Some(Channel::Voice));
        let customer = event.customer.as_ref().unwrap();
        assert_eq!(customer.handles[0].value, "+15551230001");
        // The first webhook of a call carries no Timestamp: the arrival time stands in.
        assert_eq!(event.occurred_at.to_rfc3339(), "2026-03-02T09:30:00+00:00");
    }

    #[test]
    fn a_completed_call_ends_with_its_duration_kept() {
        let events = assert_fixture(&TwilioVoice, "inbound-completed.form", FORM);
        assert_eq!(types(&events), ["ended"]);
        assert_eq!(
            events[0].source_event_id.as_deref(),
            Some("CA5f3ad6b0a7b6e1a1c0e0f1d2c3b4a596:completed")
        );
        assert_eq!(events[0].attributes["call_duration_seconds"], "137");
        assert_eq!(
            events[0].occurred_at.to_rfc3339(),
            "2026-03-02T09:02:21+00:00"
        );
    }

    #[test]
    fn every_status_that_means_the_call_exists_is_the_same_start() {
        let ringing = TwilioVoice
            .parse(&request(
                FORM,
                crate::testing::fixture("voice", "inbound-ringing.form"),
            ))
            .unwrap();
        let answered = assert_fixture(&TwilioVoice, "inbound-in-progress.form", FORM);
        assert_eq!(types(&answered), ["interaction_started"]);
        assert_eq!(ids(&answered), ids(&ringing));
    }

    #[test]
    fn an_outbound_call_is_about_the_number_dialled() {
        let events = assert_fixture(&TwilioVoice, "outbound-no-answer.form", FORM);
        assert_eq!(types(&events), ["ended"]);
        let customer = events[0].customer.as_ref().unwrap();
        assert_eq!(customer.handles[0].value, "+15551230002");
        assert_eq!(events[0].attributes["desk_number"], "+15559990000");
    }

    #[test]
    fn malformed_callbacks_name_the_field() {
        let base = "CallSid=CA1&From=%2B15551230001&To=%2B15559990000&Direction=inbound&CallStatus=ringing";
        let parse = |body: String| TwilioVoice.parse(&request(FORM, body));
        assert_eq!(
            refused_field(parse(base.replace("CallSid=CA1&", ""))),
            "CallSid"
        );
        assert_eq!(
            refused_field(parse(base.replace("ringing", "exploded"))),
            "CallStatus"
        );
        assert_eq!(
            refused_field(parse(base.replace("inbound", "sideways"))),
            "Direction"
        );
        assert_eq!(
            refused_field(parse(base.replace("%2B15551230001", "anonymous"))),
            "From"
        );
        assert_eq!(
            refused_field(parse(format!("{base}&Timestamp=yesterday"))),
            "Timestamp"
        );
        // Garbage is read as a form without the fields Twilio always sends.
        assert_eq!(refused_field(parse("%%%".to_owned())), "CallSid");
    }
}
