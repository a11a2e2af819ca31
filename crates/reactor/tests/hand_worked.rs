//! The reactors on a hand-worked history (issue 18 item 3): the engagement view folds the
//! history, [`decide`] yields the notices due in each round's window, the decisions are
//! folded back as the log would hold them, and the engagement report equals the hand
//! count. Every expected figure below is worked out by hand in the comments.
//!
//! The rules:
//! - `callback`: abandoned_callback, 10 minutes after, 10 % held out. The holdout hash puts
//!   `cy` in the control group (hash % 100 = 6 < 10) and `ann` out of it (96).
//! - `outage`: segment_alert on `segment`, at once, by sms.
//! - `follow`: follow_up, 4 hours after.
//!
//! The history (2026-03-02, UTC), in the rounds the reactor runs:
//!
//! | time | event |
//! |---|---|
//! | 07:00 | eve's profile: segment retail |
//! | 08:00 | ann (segment retail) calls, V1, queued |
//! | 08:03 | ann abandons V1 → callback due 08:13 |
//! | 08:05 | bob calls, V2, queued; 08:06 abandons → due 08:16, but... |
//! | 08:10 | bob opens chat C2 (contacts again: no callback); 08:11 assigned, 08:20 wrapped up |
//! | 08:18 | cy calls, V3, queued; 08:20 abandons → callback due 08:30, cy held out |
//! | round 1 at 08:31 (not before 07:31): callback ann 08:13 (voice, V1's channel); cy held out 08:30 |
//! | 09:00 | ann calls back, V5; 09:01 assigned (agent activity: ann no longer waits); 09:10 wrapped up |
//! | 09:00 | fay's chatbot session B8, contained at 09:05 (no wait for an agent: no follow-up) |
//! | 09:00 | dee emails, E4, queued; 09:05 assigned; 09:10 agent replies; 09:30 dee writes again (waits since 09:30) |
//! | 10:00 | the alert alert:fp1 fires for segment retail |
//! | round 2 at 10:01 (not before 09:01): outage ann and eve, 10:00, sms |
//! | 11:00 | eve writes through the web portal, W6 (waits since 11:00: follow-up due 15:00) |
//! | round 3 at 12:30 (not before 11:30): follow cy 12:18 (waiting since 08:18; voice) |
//! | round 4 at 14:00 (not before 13:00): follow dee 13:30 (waiting since 09:30; email) |
//! | 15:00 | dee opens chat C7 |
//!
//! ann waited since 08:00 too, but her agent at 09:01 ended the wait before 12:00; bob's
//! wait ended at 08:11. The alert's own service is no customer waiting (alerts are not
//! contacts).

use chrono::{DateTime, Utc};
use omnilog_events::Event;
use omnilog_events::json::event_from_value;
use omnilog_reactor::{Decision, Rule, RuleSpec, ViewFacts, Window, check_rules, decide, held_out};
use omnilog_views::engagement::{
    self, EngagementAnswer, EngagementRow, EngagementState, EngagementView,
};
use omnilog_views::{LogPosition, NoRecords, View, apply_in_memory};
use serde_json::{Value, json};

fn at(hh_mm: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2026-03-02T{hh_mm}:00Z"))
        .unwrap()
        .with_timezone(&Utc)
}

/// An event of `customer` on `interaction` at `hh_mm`.
fn event(customer: &str, hh_mm: &str, interaction: &str, channel: &str, body: Value) -> Event {
    let mut value = json!({
        "source": "desk",
        "source_event_id": format!("{interaction}:{hh_mm}:{}", body["type"].as_str().unwrap()),
        "occurred_at": omnilog_events::format_time(&at(hh_mm)),
        "customer": {"id": customer},
        "interaction_id": interaction,
        "channel": channel,
    });
    for (key, field) in body.as_object().unwrap() {
        value[key] = field.clone();
    }
    event_from_value(value).unwrap()
}

fn inbound() -> Value {
    json!({"type": "interaction_started", "direction": "inbound"})
}

fn queued() -> Value {
    json!({"type": "queued", "queue": "billing"})
}

fn assigned() -> Value {
    json!({"type": "assigned", "agent_id": "agent-1"})
}

fn wrapped() -> Value {
    json!({"type": "wrapped_up", "agent_id": "agent-1", "resolved": true})
}

fn rules() -> Vec<Rule> {
    let specs: Vec<RuleSpec> = serde_json::from_value(json!([
        {"reason": "callback", "kind": "abandoned_callback", "after_minutes": 10, "holdout_percent": 10},
        {"reason": "outage", "kind": "segment_alert", "channel": "sms", "text": "We know about the outage"},
        {"reason": "follow", "kind": "follow_up", "after_minutes": 240},
    ]))
    .unwrap();
    check_rules(&specs).unwrap()
}

/// The view's state and the log's next offset (one partition: the order is the log's).
struct Log {
    state: EngagementState,
    offset: u64,
    events: Vec<Event>,
}

impl Log {
    fn new() -> Self {
        Log {
            state: EngagementView.new_state(),
            offset: 0,
            events: Vec::new(),
        }
    }

    fn fold(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            // The log stores an event id once.
            if self.events.iter().any(|e| e.event_id == event.event_id) {
                continue;
            }
            let position = LogPosition {
                partition: 0,
                offset: self.offset,
            };
            apply_in_memory(&EngagementView, &mut self.state, &event, position).unwrap();
            self.offset += 1;
            self.events.push(event);
        }
    }

    fn decide(&self, now: &str, not_before: &str) -> Vec<Decision> {
        let facts = ViewFacts {
            state: &self.state,
            records: &NoRecords,
        };
        decide(
            &rules(),
            &facts,
            Window {
                now: at(now),
                not_before: at(not_before),
            },
        )
        .unwrap()
    }

    /// A round: decide, and fold the decisions as the log would hold them.
    fn round(&mut self, now: &str, not_before: &str) -> Vec<(String, String, String, bool)> {
        let decisions = self.decide(now, not_before);
        let seen = summary(&decisions);
        self.fold(decisions.iter().map(|d| d.event().unwrap()));
        seen
    }

    fn report(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> EngagementAnswer {
        engagement::engagement_report(&self.state, &NoRecords, from, to)
            .unwrap()
            .finish()
    }
}

/// (due, reason, customer, held out) of each decision, in order.
fn summary(decisions: &[Decision]) -> Vec<(String, String, String, bool)> {
    decisions
        .iter()
        .map(|d| {
            (
                d.due.format("%H:%M").to_string(),
                d.reason.clone(),
                d.customer.clone(),
                d.held_out,
            )
        })
        .collect()
}

fn expect(due: &str, reason: &str, customer: &str, held: bool) -> (String, String, String, bool) {
    (due.to_owned(), reason.to_owned(), customer.to_owned(), held)
}

fn morning() -> Vec<Event> {
    vec![
        event_from_value(json!({
            "source": "crm", "source_event_id": "eve-profile",
            "occurred_at": "2026-03-02T07:00:00Z", "customer": {"id": "eve"},
            "type": "customer_profile", "attributes": {"segment": "retail"},
        }))
        .unwrap(),
        {
            let mut started = event("ann", "08:00", "V1", "voice", inbound());
            std::sync::Arc::make_mut(started.customer.as_mut().unwrap())
                .attributes
                .insert("segment".to_owned(), "retail".to_owned());
            started
        },
        event("ann", "08:00", "V1", "voice", queued()),
        event("ann", "08:03", "V1", "voice", json!({"type": "abandoned"})),
        event("bob", "08:05", "V2", "voice", inbound()),
        event("bob", "08:05", "V2", "voice", queued()),
        event("bob", "08:06", "V2", "voice", json!({"type": "abandoned"})),
        event("bob", "08:10", "C2", "chat", inbound()),
        event("bob", "08:11", "C2", "chat", assigned()),
        event("bob", "08:20", "C2", "chat", wrapped()),
        event("cy", "08:18", "V3", "voice", inbound()),
        event("cy", "08:18", "V3", "voice", queued()),
        event("cy", "08:20", "V3", "voice", json!({"type": "abandoned"})),
    ]
}

fn late_morning() -> Vec<Event> {
    let message = |hh_mm: &str, author: &str, direction: &str| {
        event(
            "dee",
            hh_mm,
            "E4",
            "email",
            json!({"type": "message", "author": author, "direction": direction, "text": "about my bill"}),
        )
    };
    vec![
        event("ann", "09:00", "V5", "voice", inbound()),
        event("ann", "09:00", "V5", "voice", queued()),
        event("ann", "09:01", "V5", "voice", assigned()),
        event("ann", "09:10", "V5", "voice", wrapped()),
        // fay's chatbot session is contained: she waits for no agent, so no follow-up.
        event("fay", "09:00", "B8", "chatbot", inbound()),
        event(
            "fay",
            "09:05",
            "B8",
            "chatbot",
            json!({"type": "ended", "reason": "contained"}),
        ),
        event("dee", "09:00", "E4", "email", inbound()),
        event("dee", "09:00", "E4", "email", queued()),
        event("dee", "09:05", "E4", "email", assigned()),
        message("09:10", "agent", "outbound"),
        message("09:30", "customer", "inbound"),
        {
            let mut fired = event(
                "billing-api",
                "10:00",
                "alert:fp1",
                "alert",
                json!({"type": "interaction_started", "direction": "inbound", "subject": "Billing down"}),
            );
            fired
                .attributes
                .insert("segment".to_owned(), "retail".to_owned());
            fired
        },
    ]
}

#[test]
fn the_rules_holdout_hash_puts_cy_in_and_ann_out_of_the_control_group() {
    // The premise of the fixture's hand count.
    assert!(held_out("callback", "cy", 10));
    assert!(!held_out("callback", "ann", 10));
}

#[test]
fn the_hand_worked_history_gives_the_notices_once_each_and_the_hand_counted_report() {
    let mut log = Log::new();
    log.fold(morning());
    // Round 1 at 08:31: ann's callback (V1 abandoned 08:03 + 10 min), cy held out (08:30).
    // bob contacted again at 08:10: no callback.
    let first = log.decide("08:31", "07:31");
    assert_eq!(
        summary(&first),
        [
            expect("08:13", "callback", "ann", false),
            expect("08:30", "callback", "cy", true),
        ]
    );
    assert_eq!(first[0].channel.as_str(), "voice");
    // A restarted reactor (or a second round before the view holds the first decisions)
    // decides the same events, with the same ids: the log keeps one of each.
    let again = log.decide("08:31", "07:31");
    let ids =
        |d: &[Decision]| -> Vec<_> { d.iter().map(|d| d.event().unwrap().event_id).collect() };
    assert_eq!(ids(&first), ids(&again));
    assert_eq!(log.round("08:31", "07:31").len(), 2);
    assert_eq!(log.offset, 13 + 2);
    // Once the view holds them, no round decides them again.
    assert!(log.decide("08:31", "07:31").is_empty());
    let notice = &log.events[13];
    assert_eq!(notice.source.as_deref(), Some("omnilog.reactor"));
    assert_eq!(notice.event_type().as_str(), "proactive_notice");
    assert_eq!(log.events[14].event_type().as_str(), "customer_profile");

    log.fold(late_morning());
    // Round 2 at 10:01: the alert of 10:00 for segment retail reaches ann and eve, by sms.
    assert_eq!(
        log.round("10:01", "09:01"),
        [
            expect("10:00", "outage", "ann", false),
            expect("10:00", "outage", "eve", false),
        ]
    );
    log.fold([event("eve", "11:00", "W6", "web_portal", inbound())]);
    // Round 3 at 12:30: cy waits since 08:18 with no agent: follow-up due 12:18.
    assert_eq!(
        log.round("12:30", "11:30"),
        [expect("12:18", "follow", "cy", false)]
    );
    // Round 4 at 14:00: dee waits since 09:30: follow-up due 13:30, by email. Nothing else:
    // ann's and bob's waits were ended by an agent, eve's falls due at 15:00.
    let fourth = log.decide("14:00", "13:00");
    assert_eq!(summary(&fourth), [expect("13:30", "follow", "dee", false)]);
    assert_eq!(fourth[0].channel.as_str(), "email");
    log.round("14:00", "13:00");
    log.fold([event("dee", "15:00", "C7", "chat", inbound())]);
    // A reactor started later with a window over the whole day decides nothing again;
    // only eve's follow-up (15:00) is new.
    assert_eq!(
        summary(&log.decide("15:30", "00:00")),
        [expect("15:00", "follow", "eve", false)]
    );
    // A back-filled history: the same day seen by a reactor that starts at 23:00 (not
    // before 22:00) sends nothing of it.
    let mut backfilled = Log::new();
    backfilled.fold(morning());
    backfilled.fold(late_morning());
    assert!(backfilled.decide("23:00", "22:00").is_empty());

    // The report, by hand:
    // callback: 1 notice (ann 08:13), 1 customer; ann called back at 09:00 (within 24 h):
    //   contacted 1, rate 1.0. Held out: cy (08:30), who never came back: 0, rate 0.0.
    //   uplift 1.0.
    // follow: 2 notices (cy 12:18, dee 13:30), 2 customers; dee opened C7 at 15:00 (a
    //   contact within 24 h; her 09:30 message was on E4, opened before): 1, rate 0.5. No
    //   holdout: uplift null.
    // outage: 2 notices (ann, eve at 10:00), 2 customers; eve wrote at 11:00, ann's last
    //   contact was 09:00: contacted 1, rate 0.5. No holdout.
    let row = |reason: &str,
               (notices, customers, contacted): (u64, u64, u64),
               (held, held_contacted): (u64, u64),
               uplift: Option<f64>| EngagementRow {
        reason: reason.to_owned(),
        notices,
        customers,
        contacted_within_24h: contacted,
        contact_rate: if notices == 0 {
            0.0
        } else {
            contacted as f64 / notices as f64
        },
        held_out: held,
        held_out_contacted_within_24h: held_contacted,
        held_out_contact_rate: if held == 0 {
            0.0
        } else {
            held_contacted as f64 / held as f64
        },
        uplift,
    };
    let whole_day = log.report(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    assert_eq!(
        whole_day.rows,
        [
            row("callback", (1, 1, 1), (1, 0), Some(1.0)),
            row("follow", (2, 2, 1), (0, 0), None),
            row("outage", (2, 2, 1), (0, 0), None),
        ]
    );
    // Over [10:00, 12:00): the outage notices only.
    assert_eq!(
        log.report(at("10:00"), at("12:00")).rows,
        [row("outage", (2, 2, 1), (0, 0), None)]
    );

    // A replay: the same log folded again from offset 0 is the same state and report.
    let mut replayed = Log::new();
    replayed.fold(log.events.clone());
    assert!(replayed.state == log.state);
    assert_eq!(
        replayed.report(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC),
        whole_day
    );
    // And a reactor over the replayed log decides nothing it already decided.
    assert!(replayed.decide("14:00", "00:00").is_empty());
}
