//! `POST /v1/channels/alert`: Prometheus Alertmanager webhooks (payload version 4).
//!
//! Each alert of a notification becomes an auto-logged interaction on the `alert` channel,
//! so an outage that makes customers call shows in the same history as their calls:
//!
//! - the alert is named by its `fingerprint` and `startsAt` (`interaction_id` =
//!   `alert:{fingerprint}:{startsAt}`): Alertmanager repeats a firing alert on every
//!   `repeat_interval`, and the repeats map to the same event ids, stored once;
//!   a new firing of the same alert after it resolved has a new `startsAt` and is a new
//!   interaction;
//! - firing: `interaction_started` (inbound, the `summary` annotation or the alert name as
//!   subject), a `message` from `system` with the description, and `tagged` with the alert
//!   name, so the reports' topics show what broke;
//! - resolved: the same three (a resolution may be the first we hear of it), then `ended`
//!   with reason `resolved` at `endsAt`.
//!
//! The "customer" of an alert is the service that raised it (handle kind `service`): the
//! `service` label, else `job`, else `instance`, else the alert name. A `segment` label is
//! kept in the `interaction_started`'s attributes: the alert fires for the customers of
//! that segment (the reactors' `segment_alert` rules notify them).

use std::collections::BTreeMap;

use omnilog_events::{Channel, Event};
use serde::Deserialize;
use serde_json::json;

use crate::mapping::{Interaction, attributes, handle, required, rfc3339};
use crate::{ChannelError, ChannelIngestor, SignatureScheme, WebhookRequest, json_body};

/// The `source` of every event of this channel.
pub const SOURCE: &str = "alert.alertmanager";

/// Prometheus Alertmanager's webhook receiver.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alertmanager;

/// Alertmanager's payload; fields we do not use (`groupKey`, `truncatedAlerts`, ...) are
/// ignored, as Alertmanager adds fields within a version.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    version: String,
    receiver: Option<String>,
    #[serde(rename = "externalURL")]
    external_url: Option<String>,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: String,
}

impl ChannelIngestor for Alertmanager {
    fn name(&self) -> &'static str {
        "alert"
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme::OmnilogHmac
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<Event>, ChannelError> {
        let notification: Notification = json_body(&request.body)?;
        if notification.version != "4" {
            return Err(ChannelError::malformed(
                "version",
                format!(
                    "{:?} is not an Alertmanager webhook version we read (4)",
                    notification.version
                ),
            ));
        }
        let mut events = Vec::new();
        for (i, alert) in notification.alerts.iter().enumerate() {
            let field = |name: &str| format!("alerts[{i}].{name}");
            let fingerprint = required(&field("fingerprint"), &alert.fingerprint)?;
            let starts_at = rfc3339(&field("startsAt"), &alert.starts_at)?;
            let alert_name = alert
                .labels
                .get("alertname")
                .map(String::as_str)
                .ok_or_else(|| ChannelError::missing(field("labels.alertname")))?;
            let alert_name = required(&field("labels.alertname"), alert_name)?;
            let resolved = match alert.status.as_str() {
                "firing" => false,
                "resolved" => true,
                other => {
                    return Err(ChannelError::malformed(
                        field("status"),
                        format!("{other:?} is neither firing nor resolved"),
                    ));
                }
            };
            let service = ["service", "job", "instance"]
                .iter()
                .find_map(|label| alert.labels.get(*label).filter(|v| !v.trim().is_empty()))
                .map_or(alert_name, String::as_str);
            let raised_by = handle(&field("labels"), "service", service)?;
            let key = format!("{fingerprint}:{}", omnilog_events::format_time(&starts_at));
            let incident = Interaction::new(
                SOURCE,
                Channel::Alert,
                format!("alert:{key}"),
                vec![raised_by],
            );
            let summary = alert
                .annotations
                .get("summary")
                .map(|s| s.trim())
                .filter(|s| !s.is_empty());
            let description = alert
                .annotations
                .get("description")
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .or(summary)
                .unwrap_or(alert_name);
            // `segment` names the customers the alert concerns (the reactors' segment
            // alerts notify them).
            let kept = attributes([
                ("segment", alert.labels.get("segment")),
                ("severity", alert.labels.get("severity")),
                ("generator_url", alert.generator_url.as_ref()),
                ("receiver", notification.receiver.as_ref()),
                ("external_url", notification.external_url.as_ref()),
            ]);
            events.push(incident.event(
                &format!("{key}:firing"),
                &starts_at,
                json!({
                    "type": "interaction_started",
                    "direction": "inbound",
                    "subject": summary.unwrap_or(alert_name),
                    "attributes": kept,
                }),
            )?);
            events.push(incident.event(
                &format!("{key}:details"),
                &starts_at,
                json!({"type": "message", "direction": "inbound", "author": "system", "text": description}),
            )?);
            events.push(incident.event(
                &format!("{key}:tagged"),
                &starts_at,
                json!({"type": "tagged", "topics": [alert_name]}),
            )?);
            if resolved {
                let ends_at = alert
                    .ends_at
                    .as_deref()
                    .ok_or_else(|| ChannelError::missing(field("endsAt")))?;
                let ends_at = rfc3339(&field("endsAt"), ends_at)?;
                events.push(incident.event(
                    &format!("{key}:resolved"),
                    &ends_at.max(starts_at),
                    json!({"type": "ended", "reason": "resolved"}),
                )?);
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_fixture, ids, refused_field, request, types};

    const JSON: &str = "application/json";

    #[test]
    fn a_firing_and_a_resolved_alert_become_two_interactions() {
        let events = assert_fixture(&Alertmanager, "firing-and-resolved.json", JSON);
        assert_eq!(
            types(&events),
            [
                "interaction_started",
                "message",
                "tagged",
                "interaction_started",
                "message",
                "tagged",
                "ended"
            ]
        );
        let services: Vec<_> = events
            .iter()
            .map(|e| e.customer.as_ref().unwrap().handles[0].value.as_str())
            .collect();
        assert_eq!(services[0], "checkout");
        assert_eq!(services[3], "node-exporter");
    }

    #[test]
    fn a_segment_label_is_kept_on_the_firing() {
        let mut body: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "alert",
            "firing-and-resolved.json",
        ))
        .unwrap();
        body["alerts"][0]["labels"]["segment"] = json!("retail");
        let events = Alertmanager
            .parse(&request(JSON, body.to_string()))
            .unwrap();
        assert_eq!(events[0].attributes["segment"], "retail");
        assert!(!events[3].attributes.contains_key("segment"));
    }

    #[test]
    fn a_repeated_notification_maps_to_the_same_events_and_its_resolution_adds_the_end() {
        let firing = Alertmanager
            .parse(&request(
                JSON,
                crate::testing::fixture("alert", "firing-and-resolved.json"),
            ))
            .unwrap();
        let mut body: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "alert",
            "firing-and-resolved.json",
        ))
        .unwrap();
        body["alerts"][0]["status"] = json!("resolved");
        body["alerts"][0]["endsAt"] = json!("2026-03-02T09:40:00Z");
        let resolved = Alertmanager
            .parse(&request(JSON, body.to_string()))
            .unwrap();
        assert_eq!(ids(&resolved)[..3], ids(&firing)[..3]);
        assert_eq!(types(&resolved)[3], "ended");
    }

    #[test]
    fn other_versions_and_malformed_alerts_name_the_field() {
        let body = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut body: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
                "alert",
                "firing-and-resolved.json",
            ))
            .unwrap();
            change(&mut body);
            Alertmanager.parse(&request(JSON, body.to_string()))
        };
        assert_eq!(
            refused_field(body(&|b| b["version"] = json!("3"))),
            "version"
        );
        assert_eq!(
            refused_field(body(&|b| b["alerts"][1]["endsAt"] = serde_json::Value::Null)),
            "alerts[1].endsAt"
        );
        assert_eq!(
            refused_field(body(&|b| b["alerts"][0]["startsAt"] = json!("soon"))),
            "alerts[0].startsAt"
        );
        assert_eq!(
            refused_field(body(&|b| b["alerts"][0]["status"] = json!("pending"))),
            "alerts[0].status"
        );
        assert_eq!(
            refused_field(body(&|b| {
                b["alerts"][0]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("alertname");
            })),
            "alerts[0].labels.alertname"
        );
        assert_eq!(
            refused_field(Alertmanager.parse(&request(JSON, "{\"version\":\"3\"}"))),
            "body"
        );
    }
}
