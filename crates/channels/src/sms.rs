//! `POST /v1/channels/sms`: Twilio Messaging webhooks for incoming SMS and MMS
//! (form-encoded).
//!
//! Each incoming message is one `message` event (inbound, author customer, `source_event_id`
//! = `MessageSid`). SMS has no sessions, so the conversation is the pair of numbers:
//! `interaction_id` = `sms:{customer}:{desk}`, both normalised to `+digits`, so the
//! same customer texting the same desk number is one ongoing interaction. A delivery is
//! that one event and nothing else: the interaction is opened by its first message (the
//! contract asks for no `interaction_started` before a message), and a call and a text
//! from one number land as two events of one customer.
//!
//! Twilio sends no time with a message, so the event time is when the webhook arrived;
//! a redelivery arrives later but keeps the event id, so the first arrival's copy stands.
//!
//! A desk may point an outbound message's status callback at the same URL. Those carry a
//! `MessageStatus` other than `received` and no conversation content: they map to no
//! event (answered 202 with nothing accepted), so Twilio does not retry them.

use omnilog_events::{Channel, Event};
use serde_json::json;

use crate::mapping::{Interaction, attributes, handle, text};
use crate::{
    ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, form_field, form_fields,
};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "sms.twilio";

/// The most media one Twilio message carries (an MMS has at most 10).
pub const MAX_MEDIA: usize = 10;

/// Twilio Messaging webhooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct TwilioSms;

impl ChannelIngestor for TwilioSms {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/x-www-form-urlencoded"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::Twilio
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let fields = form_fields(&request.body)?;
        let status = fields
            .get("MessageStatus")
            .or_else(|| fields.get("SmsStatus"))
            .map(|s| s.trim());
        if status.is_some_and(|s| s != "received" && s != "receiving") {
            return Ok(Vec::new());
        }
        let message_sid = form_field(&fields, "MessageSid")?.trim();
        let customer = handle("From", "phone", form_field(&fields, "From")?)?;
        let desk = handle("To", "phone", form_field(&fields, "To")?)?;
        let body = fields
            .get("Body")
            .ok_or_else(|| ChannelError::missing("Body"))?;
        let media_count: usize = match fields.get("NumMedia").map(|n| n.trim()) {
            None | Some("") => 0,
            Some(n) => n.parse().map_err(|_| {
                ChannelError::malformed("NumMedia", format!("{n:?} is not a count"))
            })?,
        };
        // The count drives the loop below: an unchecked one (found by the fuzzer:
        // `NumMedia=9990000`) made a small form cost seconds and a gigabyte.
        if media_count > MAX_MEDIA {
            return Err(ChannelError::malformed(
                "NumMedia",
                format!(
                    "{media_count} is more than the {MAX_MEDIA} media a Twilio message carries"
                ),
            ));
        }
        if body.trim().is_empty() && media_count == 0 {
            return Err(ChannelError::malformed(
                "Body",
                "is empty and the message carries no media",
            ));
        }
        let media = (0..media_count).flat_map(|i| {
            [
                (
                    format!("media_url_{i}"),
                    fields.get(&format!("MediaUrl{i}")),
                ),
                (
                    format!("media_content_type_{i}"),
                    fields.get(&format!("MediaContentType{i}")),
                ),
            ]
        });
        let media: Vec<(String, Option<&String>)> = media.collect();
        let kept = attributes(
            [
                ("desk_number", Some(&desk.value)),
                ("num_media", fields.get("NumMedia")),
                ("num_segments", fields.get("NumSegments")),
                ("account_sid", fields.get("AccountSid")),
                ("messaging_service_sid", fields.get("MessagingServiceSid")),
                ("customer_name", fields.get("ProfileName")),
            ]
            .into_iter()
            .chain(media.iter().map(|(name, value)| (name.as_str(), *value))),
        );
        let conversation = Interaction::new(
            SOURCE,
            Channel::Sms,
            format!("sms:{}:{}", customer.value, desk.value),
            vec![customer],
        );
        let message = conversation.event(
            message_sid,
            &request.received_at,
            json!({
                "type": "message",
                "direction": "inbound",
                "author": "customer",
                "text": text(Some(body)),
                "attributes": kept,
            }),
        )?;
        Ok(vec![message])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, refused_field, request, types};

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn an_incoming_text_is_one_customer_message_in_the_numbers_conversation() {
        let events = assert_fixture(&TwilioSms, "incoming.form", FORM);
        assert_eq!(types(&events), ["message"]);
        let event = &events[0];
        assert_eq!(
            event.interaction_id.as_deref(),
            Some("sms:+15551230001:+15559990000")
        );
        assert_eq!(
            event.source_event_id.as_deref(),
            Some("SM1f0e2d3c4b5a69788796a5b4c3d2e1f0")
        );
        assert_eq!(event.channel, Some(Channel::Sms));
        assert_eq!(
            event.customer.as_ref().unwrap().handles[0].value,
            "+15551230001"
        );
        assert_eq!(event.occurred_at.to_rfc3339(), "2026-03-02T09:30:00+00:00");
    }

    #[test]
    fn an_mms_keeps_its_media_and_may_have_no_text() {
        let events = assert_fixture(&TwilioSms, "incoming-mms.form", FORM);
        assert_eq!(types(&events), ["message"]);
        assert_eq!(events[0].attributes["media_content_type_0"], "image/jpeg");
        assert!(matches!(
            &events[0].body,
            omnilog_events::Body::Message { text: None, .. }
        ));
    }

    #[test]
    fn a_delivery_receipt_of_an_outbound_message_is_no_event() {
        let receipt = "MessageSid=SM9&MessageStatus=delivered&From=%2B15559990000&To=%2B15551230001&AccountSid=AC1";
        assert!(TwilioSms.parse(&request(FORM, receipt)).unwrap().is_empty());
    }

    #[test]
    fn malformed_messages_name_the_field() {
        let base = "MessageSid=SM1&From=%2B15551230001&To=%2B15559990000&Body=hello";
        let parse = |body: String| TwilioSms.parse(&request(FORM, body));
        assert_eq!(
            refused_field(parse(base.replace("MessageSid=SM1&", ""))),
            "MessageSid"
        );
        assert_eq!(
            refused_field(parse(base.replace("&Body=hello", ""))),
            "Body"
        );
        assert_eq!(refused_field(parse(base.replace("hello", "+"))), "Body");
        assert_eq!(
            refused_field(parse(base.replace("%2B15559990000", "desk"))),
            "To"
        );
        assert_eq!(
            refused_field(parse(format!("{base}&NumMedia=many"))),
            "NumMedia"
        );
    }

    #[test]
    fn a_media_count_past_twilio_s_ten_is_refused_before_any_media_is_looked_up() {
        let base = "MessageSid=SM1&From=%2B15551230001&To=%2B15559990000&Body=hello";
        let parse = |body: String| TwilioSms.parse(&request(FORM, body));
        let ten = parse(format!("{base}&NumMedia=10")).unwrap();
        assert_eq!(ten.len(), 1);
        for count in ["11", "9990000", "18446744073709551615"] {
            assert_eq!(
                refused_field(parse(format!("{base}&NumMedia={count}"))),
                "NumMedia",
                "{count}"
            );
        }
    }
}
