//! Proactive engagement (issue 18 item 3, seed 004: "businesses shouldn't wait for the
//! customer contact"): the reactors' rules and the pure decision of which notices are due.
//!
//! A rule watches the facts the engagement view folds from the log
//! ([`omnilog_views::engagement`]) and, when its trigger is met, decides a notice:
//!
//! - `abandoned_callback`: a customer abandoned a queue and has not contacted the desk on
//!   another interaction since; due `after_minutes` after the abandonment.
//! - `segment_alert`: an alert interaction fired for a segment (its `attribute`, by default
//!   `segment`, equals the customer's attribute of that key); due `after_minutes` after the
//!   alert, for every customer of the segment.
//! - `follow_up`: a customer's journey waits for an agent (customer activity and no agent
//!   activity since); due `after_minutes` after the wait began. The wait must fall due
//!   within the journey window (72 h), or the journey would no longer be open.
//!
//! [`decide`] is a pure function of the facts, the rules and a [`Window`] of time: it
//! reads no clock. A decision is an event ([`Decision::event`]) with source
//! [`REACTOR_SOURCE`], `occurred_at` = the due time (trigger time + `after_minutes`, not the
//! moment the reactor noticed), and `source_event_id` = `reason/customer/trigger`, so its
//! event id (uuid v5 of source and source event id) is the same whenever and however often
//! it is decided: a restarted reactor, or two rounds that both see the trigger, write one
//! event, which the log stores once.
//!
//! A rule's `holdout_percent` keeps that share of customers out of the rule (a hash of the
//! reason and the customer id, so a customer is always in or always out): their triggers
//! are recorded as held out (a `customer_profile` setting `holdout.<reason>`), not
//! notified, and are the comparable customers of the engagement report.

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::identity::{event_id_for_source, omnilog_uuid};
use omnilog_events::json::event_from_value;
use omnilog_events::{Channel, Event, format_time};
use omnilog_views::engagement::{
    self, AlertFact, CustomerFacts, EngagementState, HOLDOUT_PREFIX, REACTOR_SOURCE as VIEW_SOURCE,
    TRIGGER_ATTRIBUTE,
};
use omnilog_views::{RecordSource, ViewError};
use serde::Deserialize;
use serde_json::json;

/// The `source` of the reactors' events.
pub const REACTOR_SOURCE: &str = VIEW_SOURCE;

/// The journey window (CONTRACT §5): a follow-up must fall due within it.
pub const JOURNEY_WINDOW: TimeDelta = TimeDelta::hours(72);

/// The longest trigger kept as is; longer ones (a long interaction id) are hashed, so a
/// trigger always fits an attribute value.
const TRIGGER_LIMIT: usize = 200;

/// What went wrong with the reactors' rules or decisions.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReactorError {
    /// A rule of the configuration is invalid; `field` names it (`reactors[0].kind`).
    #[error("{field}: {message}")]
    Config { field: String, message: String },
    /// A decision did not make a valid event (a bug: the rules are checked before).
    #[error("the reactor made an event it cannot write: {0}")]
    Event(String),
    /// The engagement view could not be read.
    #[error("reading the engagement view: {0}")]
    View(#[from] ViewError),
}

fn config_error(field: String, message: impl Into<String>) -> ReactorError {
    ReactorError::Config {
        field,
        message: message.into(),
    }
}

/// The kinds of rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    AbandonedCallback,
    SegmentAlert,
    FollowUp,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::AbandonedCallback => "abandoned_callback",
            RuleKind::SegmentAlert => "segment_alert",
            RuleKind::FollowUp => "follow_up",
        }
    }
}

/// A rule as the configuration file writes it (`[[reactors]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The rule's name and its notices' `reason`: unique among the rules.
    pub reason: String,
    pub kind: RuleKind,
    /// Minutes from the trigger to the notice [default: 0].
    pub after_minutes: Option<u64>,
    /// The notice's channel [default: the trigger's].
    pub channel: Option<String>,
    /// The notice's text [default: none].
    pub text: Option<String>,
    /// `segment_alert` only: the attribute that names the segment [default: `segment`].
    pub attribute: Option<String>,
    /// The share of customers kept out of the rule, to compare with [default: 0].
    pub holdout_percent: Option<u8>,
}

/// A checked rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub reason: String,
    pub kind: RuleKind,
    pub after: TimeDelta,
    pub channel: Option<Channel>,
    pub text: Option<String>,
    pub attribute: String,
    pub holdout_percent: u8,
}

/// A name as attribute keys are written (`segment`, `cost_centre`): lower-case ASCII
/// letters, digits, `_`, `-`, starting with a letter.
fn is_name(text: &str, limit: usize) -> bool {
    text.len() <= limit
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

impl RuleSpec {
    /// Checks the rule at `field` (e.g. `reactors[0]`).
    pub fn check(&self, field: &str) -> Result<Rule, ReactorError> {
        // `holdout.<reason>` must be an attribute key (at most 64 bytes).
        if !is_name(&self.reason, 64 - HOLDOUT_PREFIX.len()) {
            return Err(config_error(
                format!("{field}.reason"),
                format!(
                    "{:?} is not a reason: lower-case ASCII letters, digits, `_` and `-`, starting with a letter, at most 56 bytes",
                    self.reason
                ),
            ));
        }
        let minutes = self.after_minutes.unwrap_or(0);
        let after = i64::try_from(minutes)
            .ok()
            .and_then(TimeDelta::try_minutes)
            .filter(|after| *after <= TimeDelta::days(3650))
            .ok_or_else(|| {
                config_error(
                    format!("{field}.after_minutes"),
                    format!("{minutes} minutes is more than ten years"),
                )
            })?;
        if self.kind == RuleKind::FollowUp && (after.is_zero() || after >= JOURNEY_WINDOW) {
            return Err(config_error(
                format!("{field}.after_minutes"),
                format!(
                    "a follow_up falls due between 1 minute and the journey window of {} minutes (the journey is closed after), not {minutes}",
                    JOURNEY_WINDOW.num_minutes()
                ),
            ));
        }
        let channel = self
            .channel
            .as_deref()
            .map(|name| {
                Channel::parse(name).ok_or_else(|| {
                    config_error(
                        format!("{field}.channel"),
                        format!("{name:?} is not a channel; channels: {}", Channel::names()),
                    )
                })
            })
            .transpose()?;
        if self.attribute.is_some() && self.kind != RuleKind::SegmentAlert {
            return Err(config_error(
                format!("{field}.attribute"),
                "only a segment_alert names an attribute",
            ));
        }
        let attribute = self
            .attribute
            .clone()
            .unwrap_or_else(|| "segment".to_owned());
        let valid_attribute = attribute.len() <= 64
            && attribute.starts_with(|c: char| c.is_ascii_lowercase())
            && attribute.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            });
        if !valid_attribute {
            return Err(config_error(
                format!("{field}.attribute"),
                format!("{attribute:?} is not an attribute key (such as `segment`)"),
            ));
        }
        let holdout_percent = self.holdout_percent.unwrap_or(0);
        if holdout_percent > 100 {
            return Err(config_error(
                format!("{field}.holdout_percent"),
                format!("{holdout_percent} is not a percentage (0 to 100)"),
            ));
        }
        let text = self
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Rule {
            reason: self.reason.clone(),
            kind: self.kind,
            after,
            channel,
            text,
            attribute,
            holdout_percent,
        })
    }
}

/// Checks every rule (`[[reactors]]` in the file, so fields are named `reactors[i].…`):
/// each valid, no reason twice.
pub fn check_rules(specs: &[RuleSpec]) -> Result<Vec<Rule>, ReactorError> {
    let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let field = format!("reactors[{index}]");
        let rule = spec.check(&field)?;
        if rules.iter().any(|r| r.reason == rule.reason) {
            return Err(config_error(
                format!("{field}.reason"),
                format!(
                    "{:?} is the reason of an earlier rule: each rule has its own",
                    rule.reason
                ),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// The span of due times a round acts on: notices due at most at `now`, and not before
/// `not_before` (older ones are too late to help, or lie in a back-filled past).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub now: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
}

impl Window {
    fn holds(&self, due: DateTime<Utc>) -> bool {
        due <= self.now && due >= self.not_before
    }
}

/// A decision on one trigger of one rule for one customer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decision {
    pub due: DateTime<Utc>,
    pub reason: String,
    pub customer: String,
    pub trigger: String,
    pub kind: RuleKind,
    /// The customer is in the rule's control group: recorded, not notified.
    pub held_out: bool,
    pub channel: Channel,
    pub text: Option<String>,
}

/// Whether `customer` is in the control group of rule `reason`: a hash of both, so the
/// same customer is always in or always out of a rule.
pub fn held_out(reason: &str, customer: &str, percent: u8) -> bool {
    if percent == 0 {
        return false;
    }
    let name = format!("holdout\0{reason}\0{customer}");
    let hash = omnilog_uuid(name.as_bytes()).as_u128();
    (hash % 100) < u128::from(percent)
}

/// A trigger as decisions name it: `raw` when short, else a hash of it.
pub fn trigger_key(raw: String) -> String {
    if raw.len() <= TRIGGER_LIMIT {
        raw
    } else {
        format!("h:{}", omnilog_uuid(format!("trigger\0{raw}").as_bytes()))
    }
}

fn at_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// What the rules decide on: the engagement view's facts.
pub trait Facts {
    /// The customers with an open trigger at a time in `[from, to]` (more may be given:
    /// each rule checks its own trigger's time).
    fn triggered(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, CustomerFacts)>, ReactorError>;
    /// Every customer (for the members of a segment).
    fn customers(&self) -> Result<Vec<(String, CustomerFacts)>, ReactorError>;
    /// Every alert that fired.
    fn alerts(&self) -> Vec<(String, AlertFact)>;
}

/// The facts of the engagement view's state (and its store, for records not in memory).
#[derive(Clone, Copy)]
pub struct ViewFacts<'a> {
    pub state: &'a EngagementState,
    pub records: &'a dyn RecordSource,
}

impl std::fmt::Debug for ViewFacts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewFacts").finish_non_exhaustive()
    }
}

impl Facts for ViewFacts<'_> {
    fn triggered(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, CustomerFacts)>, ReactorError> {
        Ok(engagement::triggered(self.state, self.records, from, to)?)
    }

    fn customers(&self) -> Result<Vec<(String, CustomerFacts)>, ReactorError> {
        Ok(engagement::customers(self.state, self.records)?)
    }

    fn alerts(&self) -> Vec<(String, AlertFact)> {
        engagement::alerts(self.state)
            .map(|(id, fact)| (id.clone(), fact.clone()))
            .collect()
    }
}

/// The notices (and hold-outs) due in `window` that the log does not hold yet, in order of
/// due time, then reason, customer and trigger. Pure: the same facts, rules and window
/// give the same decisions. Reads only the customers whose trigger can fall due in the
/// window, and every customer only when a segment's alert is due.
pub fn decide(
    rules: &[Rule],
    facts: &dyn Facts,
    window: Window,
) -> Result<Vec<Decision>, ReactorError> {
    let mut decisions = Vec::new();
    let alerts = facts.alerts();
    let mut everyone: Option<Vec<(String, CustomerFacts)>> = None;
    for rule in rules {
        // A trigger at t is due at t + after: in the window when t is in this span.
        let before = |t: DateTime<Utc>| t.checked_sub_signed(rule.after).unwrap_or(t);
        let (from, to) = (before(window.not_before), before(window.now));
        let mut push = |customer: &str,
                        facts: &CustomerFacts,
                        trigger: String,
                        due: DateTime<Utc>,
                        channel: Option<&str>| {
            if !window.holds(due) || facts.decided(&rule.reason, &trigger) {
                return;
            }
            let channel = rule
                .channel
                .or_else(|| channel.and_then(Channel::parse))
                .unwrap_or(Channel::Email);
            decisions.push(Decision {
                due,
                reason: rule.reason.clone(),
                customer: customer.to_owned(),
                trigger,
                kind: rule.kind,
                held_out: held_out(&rule.reason, customer, rule.holdout_percent),
                channel,
                text: rule.text.clone(),
            });
        };
        match rule.kind {
            RuleKind::AbandonedCallback => {
                for (customer, facts) in &facts.triggered(from, to)? {
                    for (interaction, abandonment) in facts.abandonments() {
                        let Some(due) =
                            at_ms(abandonment.at_ms).and_then(|t| t.checked_add_signed(rule.after))
                        else {
                            continue;
                        };
                        if facts.contacted_after(abandonment.at_ms, interaction) {
                            continue;
                        }
                        push(
                            customer,
                            facts,
                            trigger_key(format!("abandoned:{interaction}")),
                            due,
                            abandonment.channel.as_deref(),
                        );
                    }
                }
            }
            RuleKind::FollowUp => {
                for (customer, facts) in &facts.triggered(from, to)? {
                    let Some(since) = facts.waiting_since().and_then(at_ms) else {
                        continue;
                    };
                    let Some(due) = since.checked_add_signed(rule.after) else {
                        continue;
                    };
                    push(
                        customer,
                        facts,
                        format!("waiting:{}", format_time(&since)),
                        due,
                        facts.last_channel(),
                    );
                }
            }
            RuleKind::SegmentAlert => {
                for (alert, fact) in &alerts {
                    let Some(segment) = fact.attributes.get(&rule.attribute) else {
                        continue;
                    };
                    let Some(due) =
                        at_ms(fact.at_ms).and_then(|t| t.checked_add_signed(rule.after))
                    else {
                        continue;
                    };
                    // Most rounds see no alert due: only then are the customers looked at.
                    if !window.holds(due) {
                        continue;
                    }
                    let customers = match &everyone {
                        Some(customers) => customers,
                        None => everyone.insert(facts.customers()?),
                    };
                    for (customer, facts) in customers.iter() {
                        if facts.attribute(&rule.attribute) == Some(segment.as_str()) {
                            push(
                                customer,
                                facts,
                                trigger_key(format!("fired:{alert}")),
                                due,
                                facts.last_channel(),
                            );
                        }
                    }
                }
            }
        }
    }
    decisions.sort();
    Ok(decisions)
}

impl Decision {
    /// The `source_event_id` of the decision: its rule, customer and trigger.
    pub fn source_event_id(&self) -> String {
        let id = format!("{}/{}/{}", self.reason, self.customer, self.trigger);
        if self.held_out {
            format!("{id}/held-out")
        } else {
            id
        }
    }

    /// The decision as the event the reactor appends: a `proactive_notice` on a new
    /// outbound interaction of its own, or, held out, a `customer_profile` that records the
    /// customer in the rule's control group.
    pub fn event(&self) -> Result<Event, ReactorError> {
        let source_event_id = self.source_event_id();
        let at = format_time(&self.due);
        let value = if self.held_out {
            json!({
                "source": REACTOR_SOURCE,
                "source_event_id": source_event_id,
                "occurred_at": at,
                "customer": {"id": self.customer},
                "type": "customer_profile",
                "attributes": {format!("{HOLDOUT_PREFIX}{}", self.reason): self.trigger},
            })
        } else {
            let interaction = format!(
                "notice-{}",
                event_id_for_source(Some(REACTOR_SOURCE), &source_event_id)
            );
            json!({
                "source": REACTOR_SOURCE,
                "source_event_id": source_event_id,
                "occurred_at": at,
                "customer": {"id": self.customer},
                "interaction_id": interaction,
                "channel": self.channel.as_str(),
                "type": "proactive_notice",
                "reason": self.reason,
                "text": self.text,
                "attributes": {TRIGGER_ATTRIBUTE: self.trigger, "rule_kind": self.kind.as_str()},
            })
        };
        event_from_value(value).map_err(|e| ReactorError::Event(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<Vec<Rule>, ReactorError> {
        #[derive(Deserialize)]
        struct File {
            reactors: Vec<RuleSpec>,
        }
        let file: File = toml::from_str(text).expect("valid toml");
        check_rules(&file.reactors)
    }

    #[test]
    fn rules_are_read_with_their_defaults() {
        let rules = spec(
            "[[reactors]]\nreason = \"callback\"\nkind = \"abandoned_callback\"\nafter_minutes = 10\nholdout_percent = 20\n\
             [[reactors]]\nreason = \"outage\"\nkind = \"segment_alert\"\nchannel = \"sms\"\ntext = \"We know\"\n",
        )
        .unwrap();
        assert_eq!(rules[0].after, TimeDelta::minutes(10));
        assert_eq!(rules[0].holdout_percent, 20);
        assert_eq!(rules[0].channel, None);
        assert_eq!(rules[1].attribute, "segment");
        assert_eq!(rules[1].channel, Some(Channel::Sms));
        assert_eq!(rules[1].text.as_deref(), Some("We know"));
        assert_eq!(rules[1].after, TimeDelta::zero());
    }

    #[test]
    fn a_bad_rule_is_refused_naming_its_field() {
        for (text, field) in [
            (
                "[[reactors]]\nreason = \"Call Back\"\nkind = \"abandoned_callback\"\n",
                "reactors[0].reason",
            ),
            (
                "[[reactors]]\nreason = \"a\"\nkind = \"follow_up\"\nafter_minutes = 4320\n",
                "reactors[0].after_minutes",
            ),
            (
                "[[reactors]]\nreason = \"a\"\nkind = \"follow_up\"\n",
                "reactors[0].after_minutes",
            ),
            (
                "[[reactors]]\nreason = \"a\"\nkind = \"abandoned_callback\"\nchannel = \"pigeon\"\n",
                "reactors[0].channel",
            ),
            (
                "[[reactors]]\nreason = \"a\"\nkind = \"abandoned_callback\"\nholdout_percent = 101\n",
                "reactors[0].holdout_percent",
            ),
            (
                "[[reactors]]\nreason = \"a\"\nkind = \"follow_up\"\nafter_minutes = 60\nattribute = \"segment\"\n",
                "reactors[0].attribute",
            ),
            (
                "[[reactors]]\nreason = \"a\"\nkind = \"abandoned_callback\"\n[[reactors]]\nreason = \"a\"\nkind = \"segment_alert\"\n",
                "reactors[1].reason",
            ),
        ] {
            match spec(text) {
                Err(ReactorError::Config { field: named, .. }) => {
                    assert_eq!(named, field, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn holdout_is_a_stable_share_of_customers() {
        let out = (0..10_000)
            .filter(|i| held_out("callback", &format!("c{i}"), 10))
            .count();
        assert!(
            (850..1150).contains(&out),
            "{out} of 10000 held out at 10 %"
        );
        assert!(!held_out("callback", "c1", 0));
        assert!(held_out("callback", "c1", 100));
        assert_eq!(
            held_out("callback", "c42", 50),
            held_out("callback", "c42", 50)
        );
    }

    #[test]
    fn long_triggers_are_hashed_to_fit_an_attribute() {
        let long = trigger_key(format!("abandoned:{}", "x".repeat(300)));
        assert!(long.starts_with("h:") && long.len() < 64);
        assert_eq!(trigger_key("abandoned:i1".to_owned()), "abandoned:i1");
    }
}
