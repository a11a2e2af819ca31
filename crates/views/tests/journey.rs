//! The journey view's behaviour (CONTRACT §5 and §6), folded in memory.

// One module, so `cargo test -p omnilog-views journey` selects every test here.
mod support;

mod journey {
    use crate::support;
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::{DateTime, Utc};
    use omnilog_events::json::event_from_value;
    use omnilog_events::{Event, Handle, to_canonical_json};
    use omnilog_testkit::{HistoryConfig, history};
    use omnilog_views::journey::{
        EventSource, InteractionAnswer, JourneyAnswer, JourneyConfig, JourneyLimits,
        JourneyReportPartial, JourneyState, JourneyView,
    };
    use omnilog_views::{LogPosition, NoRecords, View, ViewError, ViewState, apply_in_memory};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Builds a validated event of `customer` from its type-specific fields, with `recorded_at`
    /// set as ingest would.
    fn event(customer: &str, at: &str, interaction: &str, channel: &str, body: Value) -> Event {
        support::ingested(
            json!({
                "occurred_at": at,
                "customer": {"id": customer},
                "interaction_id": interaction,
                "channel": channel,
            }),
            &body,
        )
    }

    /// Events with the positions they got in the log.
    type Entries = Vec<(Event, LogPosition)>;

    /// A state folded in memory, with the log it was folded from (the timelines are read
    /// from it).
    #[derive(Debug)]
    struct Folded {
        state: JourneyState,
        log: BTreeMap<(u32, u64), Event>,
    }

    impl Folded {
        fn new() -> Self {
            Folded::of(&JourneyView::default())
        }

        /// An empty state of `view` (whose configuration chooses how timelines are kept).
        fn of(view: &JourneyView) -> Self {
            Folded {
                state: view.new_state(),
                log: BTreeMap::new(),
            }
        }

        fn apply(
            &mut self,
            view: &JourneyView,
            event: &Event,
            position: LogPosition,
        ) -> Result<(), ViewError> {
            self.log
                .insert((position.partition, position.offset), event.clone());
            apply_in_memory(view, &mut self.state, event, position)
        }

        fn is_empty(&self) -> bool {
            self.state.dump().unwrap().is_empty()
        }
    }

    impl PartialEq for Folded {
        fn eq(&self, other: &Self) -> bool {
            self.state.dump().unwrap() == other.state.dump().unwrap()
        }
    }

    impl EventSource for Folded {
        fn events(&self, partition: u32, offsets: &[u64]) -> Result<Vec<Event>, ViewError> {
            offsets
                .iter()
                .map(|&offset| {
                    self.log.get(&(partition, offset)).cloned().ok_or_else(|| {
                        ViewError::Storage(format!("no event at {partition}/{offset}"))
                    })
                })
                .collect()
        }
    }

    fn customer_journey(
        folded: &Folded,
        customer: &str,
        merged_from: &[String],
        handles: &[Handle],
    ) -> Result<Option<JourneyAnswer>, ViewError> {
        omnilog_views::journey::customer_journey(
            &folded.state,
            &NoRecords,
            folded,
            customer,
            merged_from,
            handles,
        )
    }

    fn interaction(folded: &Folded, id: &str) -> Result<Option<InteractionAnswer>, ViewError> {
        omnilog_views::journey::interaction(&folded.state, &NoRecords, folded, id)
    }

    fn journeys_report(
        folded: &Folded,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<JourneyReportPartial, ViewError> {
        omnilog_views::journey::journeys_report(&folded.state, &NoRecords, from, to)
    }

    fn inbound_start() -> Value {
        json!({"type": "interaction_started", "direction": "inbound"})
    }

    fn customer_says(text: &str) -> Value {
        json!({"type": "message", "direction": "inbound", "author": "customer", "text": text})
    }

    fn note_by(agent: &str, text: &str) -> Value {
        json!({"type": "note", "agent_id": agent, "text": text})
    }

    /// A log: events with the positions they got, one offset counter per partition.
    #[derive(Default)]
    struct Log {
        entries: Entries,
        next: Vec<u64>,
    }

    impl Log {
        fn push(&mut self, partition: u32, event: Event) {
            let index = partition as usize;
            if self.next.len() <= index {
                self.next.resize(index + 1, 0);
            }
            let offset = self.next[index];
            self.next[index] += 1;
            self.entries
                .push((event, LogPosition { partition, offset }));
        }

        fn fold(&self) -> Folded {
            fold_all(self.entries.iter())
        }

        /// The log folded by a view that keeps its timelines as positions in the log (the
        /// embedded log's: `JourneyConfig::timelines_from_log`).
        fn fold_as_positions(&self) -> Folded {
            let view = JourneyView::new(JourneyConfig {
                timelines_from_log: true,
                ..JourneyConfig::default()
            });
            fold_with(&view, self.entries.iter())
        }
    }

    fn fold_all<'a>(entries: impl Iterator<Item = &'a (Event, LogPosition)>) -> Folded {
        fold_with(&JourneyView::default(), entries)
    }

    /// `entries` folded by `view`.
    fn fold_with<'a>(
        view: &JourneyView,
        entries: impl Iterator<Item = &'a (Event, LogPosition)>,
    ) -> Folded {
        let mut state = Folded::of(view);
        for (event, position) in entries {
            state.apply(view, event, *position).unwrap();
        }
        state
    }

    fn journey_of(state: &Folded, customer: &str) -> JourneyAnswer {
        customer_journey(state, customer, &[], &[])
            .unwrap()
            .unwrap()
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The voice call of the first scenario: queued, handled by agent-7 who notes the
    /// problem, wrapped up unresolved.
    fn unresolved_call(log: &mut Log, customer: &str) {
        let call = |at: &str, body: Value| event(customer, at, "call-1", "voice", body);
        log.push(0, call("2026-03-01T09:00:00Z", inbound_start()));
        log.push(
            0,
            call(
                "2026-03-01T09:00:05Z",
                json!({"type": "queued", "queue": "billing"}),
            ),
        );
        log.push(
            0,
            call(
                "2026-03-01T09:01:00Z",
                json!({"type": "assigned", "agent_id": "agent-7"}),
            ),
        );
        let note = note_by("agent-7", "Disputes invoice 42; promised a callback.");
        log.push(0, call("2026-03-01T09:04:00Z", note));
        log.push(0, call("2026-03-01T09:06:00Z", json!({"type": "ended"})));
        let wrap_up = json!({
            "type": "wrapped_up", "agent_id": "agent-7", "resolved": false, "topics": ["invoice"]
        });
        log.push(0, call("2026-03-01T09:08:00Z", wrap_up));
    }

    #[test]
    fn a_call_then_a_chat_then_an_email_are_one_open_journey_with_two_channel_switches() {
        let mut log = Log::default();
        unresolved_call(&mut log, "alice");
        let chat = |at: &str, body: Value| event("alice", at, "chat-1", "chat", body);
        log.push(0, chat("2026-03-01T10:05:00Z", inbound_start()));
        let waiting = customer_says("Still waiting for that callback about invoice 42");
        log.push(0, chat("2026-03-01T10:05:10Z", waiting));
        log.push(0, chat("2026-03-01T10:09:00Z", json!({"type": "ended"})));
        let email = |at: &str, body: Value| event("alice", at, "mail-1", "email", body);
        let start =
            json!({"type": "interaction_started", "direction": "inbound", "subject": "Invoice 42"});
        log.push(0, email("2026-03-01T11:00:00Z", start));
        log.push(
            0,
            email("2026-03-01T11:00:00Z", customer_says("Please call me.")),
        );
        let state = log.fold();

        let handles = [Handle::new("phone", "+15551230001")];
        let answer = customer_journey(&state, "alice", &[], &handles)
            .unwrap()
            .unwrap();
        assert_eq!(answer.journeys.len(), 1);
        let journey = &answer.journeys[0];
        assert_eq!(serde_json::to_value(journey.status).unwrap(), "open");
        let channels: Vec<&str> = journey
            .interactions
            .iter()
            .map(|i| i.channel.as_str())
            .collect();
        assert_eq!(channels, ["voice", "chat", "email"]);
        assert_eq!(journey.channels, ["voice", "chat", "email"]);
        assert_eq!(journey.channel_switches, 2);
        assert_eq!(journey.opened_at, "2026-03-01T09:00:00Z");
        assert_eq!(journey.topics, ["invoice"]);
        assert_eq!(journey.timeline.len(), 11);

        let call = &journey.interactions[0];
        assert_eq!(call.agents, ["agent-7"]);
        assert_eq!(call.queue.as_deref(), Some("billing"));
        assert_eq!(call.ended_at.as_deref(), Some("2026-03-01T09:06:00Z"));
        let call_json = serde_json::to_value(call).unwrap();
        assert_eq!(call_json["status"], "wrapped_up");
        assert_eq!(call_json["outcome"], "unresolved");
        assert_eq!(journey.interactions[1].messages, 1);
        assert_eq!(
            serde_json::to_value(&journey.interactions[2]).unwrap()["outcome"],
            Value::Null
        );

        let context = &answer.context;
        assert_eq!(
            context.open_journey_id.as_deref(),
            Some(journey.journey_id.as_str())
        );
        assert_eq!(context.last_agent.as_deref(), Some("agent-7"));
        assert_eq!(context.last_channel.as_deref(), Some("email"));
        assert_eq!(
            context.last_contact_at.as_deref(),
            Some("2026-03-01T11:00:00Z")
        );
        assert_eq!(context.topics, ["invoice"]);
        assert_eq!(context.notes.len(), 1);
        assert_eq!(context.notes[0].agent, "agent-7");
        assert_eq!(
            context.notes[0].text,
            "Disputes invoice 42; promised a callback."
        );
        assert_eq!(context.notes[0].at, "2026-03-01T09:04:00Z");

        let summaries: Vec<&str> = journey
            .timeline
            .iter()
            .map(|t| t.summary.as_str())
            .collect();
        assert_eq!(summaries[1], "queued in billing");
        assert_eq!(summaries[2], "assigned to agent-7");
        assert_eq!(
            summaries[3],
            "note by agent-7: Disputes invoice 42; promised a callback."
        );
        assert_eq!(
            summaries[7],
            "message from customer: Still waiting for that callback about invoice 42"
        );
    }

    #[test]
    fn the_journey_answer_has_exactly_the_fields_of_the_contract() {
        let mut log = Log::default();
        unresolved_call(&mut log, "alice");
        let state = log.fold();
        let handles = [Handle::new("phone", "+15551230001")];
        let answer = customer_journey(&state, "alice", &[], &handles)
            .unwrap()
            .unwrap();
        let json = serde_json::to_value(&answer).unwrap();
        let keys = |value: &Value| -> Vec<String> {
            let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(
            keys(&json),
            ["context", "customer_id", "handles", "journeys"]
        );
        assert_eq!(
            json["handles"],
            json!([{"kind": "phone", "value": "+15551230001"}])
        );
        assert_eq!(
            keys(&json["context"]),
            [
                "last_agent",
                "last_channel",
                "last_contact_at",
                "notes",
                "open_journey_id",
                "topics"
            ]
        );
        assert_eq!(keys(&json["context"]["notes"][0]), ["agent", "at", "text"]);
        let journey = &json["journeys"][0];
        assert_eq!(
            keys(journey),
            [
                "channel_switches",
                "channels",
                "interactions",
                "journey_id",
                "opened_at",
                "reopened_count",
                "resolved_at",
                "status",
                "timeline",
                "topics"
            ]
        );
        assert_eq!(
            keys(&journey["interactions"][0]),
            [
                "agents",
                "channel",
                "ended_at",
                "interaction_id",
                "messages",
                "outcome",
                "queue",
                "started_at",
                "status"
            ]
        );
        assert_eq!(
            keys(&journey["timeline"][0]),
            ["at", "channel", "interaction_id", "summary", "type"]
        );
        assert_eq!(journey["timeline"][0]["type"], "interaction_started");
        assert_eq!(journey["resolved_at"], Value::Null);
    }

    /// A chat handled by `agent` and wrapped up.
    fn handled(
        log: &mut Log,
        customer: &str,
        id: &str,
        channel: &str,
        at: DateTime<Utc>,
        resolved: bool,
    ) {
        let stamp = |minutes: i64| (at + chrono::TimeDelta::minutes(minutes)).to_rfc3339();
        let e = |minutes: i64, body: Value| event(customer, &stamp(minutes), id, channel, body);
        log.push(0, e(0, inbound_start()));
        log.push(0, e(1, json!({"type": "assigned", "agent_id": "agent-1"})));
        log.push(0, e(5, json!({"type": "ended"})));
        log.push(
            0,
            e(
                6,
                json!({"type": "wrapped_up", "agent_id": "agent-1", "resolved": resolved}),
            ),
        );
    }

    #[test]
    fn a_resolved_journey_contacted_again_within_seven_days_is_reopened() {
        let mut log = Log::default();
        let day0 = time("2026-03-01T10:00:00Z");
        handled(&mut log, "bob", "chat-1", "chat", day0, true);
        // Six days later: a repeat contact.
        handled(
            &mut log,
            "bob",
            "call-1",
            "voice",
            day0 + chrono::TimeDelta::days(6),
            false,
        );
        let answer = journey_of(&log.fold(), "bob");
        assert_eq!(answer.journeys.len(), 1);
        let journey = &answer.journeys[0];
        assert_eq!(journey.reopened_count, 1);
        assert_eq!(serde_json::to_value(journey.status).unwrap(), "open");
        assert_eq!(journey.resolved_at, None);
        assert_eq!(journey.interactions.len(), 2);
        assert_eq!(
            answer.context.open_journey_id.as_deref(),
            Some(journey.journey_id.as_str())
        );
    }

    #[test]
    fn a_contact_more_than_seven_days_after_a_resolution_opens_a_new_journey() {
        let mut log = Log::default();
        let day0 = time("2026-03-01T10:00:00Z");
        handled(&mut log, "bob", "chat-1", "chat", day0, true);
        handled(
            &mut log,
            "bob",
            "call-1",
            "voice",
            day0 + chrono::TimeDelta::days(8),
            false,
        );
        let answer = journey_of(&log.fold(), "bob");
        assert_eq!(answer.journeys.len(), 2);
        let first = serde_json::to_value(&answer.journeys[0]).unwrap();
        assert_eq!(first["status"], "resolved");
        assert_eq!(first["reopened_count"], 0);
        assert_eq!(first["resolved_at"], "2026-03-01T10:06:00Z");
        assert_eq!(answer.journeys[1].reopened_count, 0);
        assert_ne!(answer.journeys[0].journey_id, answer.journeys[1].journey_id);
        assert_eq!(
            answer.context.open_journey_id.as_ref(),
            Some(&answer.journeys[1].journey_id)
        );
    }

    #[test]
    fn an_unresolved_journey_quiet_for_more_than_72_hours_is_not_joined() {
        let mut log = Log::default();
        let day0 = time("2026-03-01T10:00:00Z");
        handled(&mut log, "carol", "chat-1", "chat", day0, false);
        // 71 hours after the last activity (the wrap-up): joins.
        handled(
            &mut log,
            "carol",
            "chat-2",
            "chat",
            day0 + chrono::TimeDelta::minutes(6 + 71 * 60),
            false,
        );
        // 73 hours after that one's last activity: a new journey.
        handled(
            &mut log,
            "carol",
            "call-3",
            "voice",
            day0 + chrono::TimeDelta::minutes(12 + 144 * 60),
            false,
        );
        let answer = journey_of(&log.fold(), "carol");
        assert_eq!(answer.journeys.len(), 2);
        assert_eq!(answer.journeys[0].interactions.len(), 2);
        assert_eq!(answer.journeys[0].channel_switches, 0);
        assert_eq!(answer.journeys[1].interactions[0].interaction_id, "call-3");
        // The older one was never resolved: still open, but no longer the one to join.
        assert_eq!(
            serde_json::to_value(answer.journeys[0].status).unwrap(),
            "open"
        );
        assert_eq!(
            answer.context.open_journey_id.as_ref(),
            Some(&answer.journeys[1].journey_id)
        );
    }

    #[test]
    fn a_proactive_notice_after_a_resolution_joins_without_counting_a_repeat_contact() {
        let mut log = Log::default();
        let day0 = time("2026-03-01T10:00:00Z");
        handled(&mut log, "dan", "chat-1", "chat", day0, true);
        log.push(
            0,
            event(
                "dan",
                "2026-03-03T10:00:00Z",
                "notice-1",
                "sms",
                json!({
                    "type": "proactive_notice", "reason": "refund_sent",
                    "text": "Your refund is on its way."
                }),
            ),
        );
        let answer = journey_of(&log.fold(), "dan");
        assert_eq!(answer.journeys.len(), 1);
        let journey = &answer.journeys[0];
        assert_eq!(journey.reopened_count, 0);
        assert_eq!(serde_json::to_value(journey.status).unwrap(), "resolved");
        assert_eq!(journey.channels, ["chat", "sms"]);
        assert_eq!(
            journey.timeline.last().unwrap().summary,
            "proactive notice (refund_sent): Your refund is on its way."
        );
    }

    #[test]
    fn the_timeline_orders_by_occurred_at_then_log_position_whatever_the_arrival_order() {
        let mut log = Log::default();
        let chat = |at: &str, body: Value| event("erin", at, "chat-1", "chat", body);
        // The message reached the log before the session's start, and a note written
        // afterwards carries the same time as the message.
        log.push(0, chat("2026-03-01T09:00:05Z", customer_says("hello")));
        log.push(0, chat("2026-03-01T09:00:00Z", inbound_start()));
        log.push(0, chat("2026-03-01T09:03:00Z", json!({"type": "ended"})));
        log.push(
            0,
            chat(
                "2026-03-01T09:00:05Z",
                json!({"type": "note", "agent_id": "agent-2", "text": "greeted"}),
            ),
        );
        log.push(
            0,
            chat(
                "2026-03-01T09:01:00Z",
                json!({"type": "queued", "queue": "support"}),
            ),
        );
        let answer = journey_of(&log.fold(), "erin");
        let journey = &answer.journeys[0];
        let order: Vec<(&str, &str)> = journey
            .timeline
            .iter()
            .map(|t| (t.at.as_str(), t.event_type.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("2026-03-01T09:00:00Z", "interaction_started"),
                ("2026-03-01T09:00:05Z", "message"),
                ("2026-03-01T09:00:05Z", "note"),
                ("2026-03-01T09:01:00Z", "queued"),
                ("2026-03-01T09:03:00Z", "ended"),
            ]
        );
        // The interaction starts at its earliest event, whichever came first.
        assert_eq!(journey.interactions[0].started_at, "2026-03-01T09:00:00Z");
        assert_eq!(journey.opened_at, "2026-03-01T09:00:00Z");
        // A finished interaction stays finished when a late `queued` arrives.
        assert_eq!(
            serde_json::to_value(journey.interactions[0].status).unwrap(),
            "ended"
        );
    }

    #[test]
    fn a_late_interaction_takes_its_place_in_the_journey_by_start_time() {
        let mut log = Log::default();
        let start =
            |id: &str, channel: &str, at: &str| event("fay", at, id, channel, inbound_start());
        log.push(0, start("call-1", "voice", "2026-03-01T09:00:00Z"));
        log.push(0, start("mail-1", "email", "2026-03-01T12:00:00Z"));
        // The chat happened between the two but reached the log last.
        log.push(0, start("chat-1", "chat", "2026-03-01T10:00:00Z"));
        let journey = &journey_of(&log.fold(), "fay").journeys[0];
        let ids: Vec<&str> = journey
            .interactions
            .iter()
            .map(|i| i.interaction_id.as_str())
            .collect();
        assert_eq!(ids, ["call-1", "chat-1", "mail-1"]);
        assert_eq!(journey.channels, ["voice", "chat", "email"]);
        assert_eq!(journey.channel_switches, 2);
    }

    #[test]
    fn merged_customers_are_answered_with_both_histories_in_one_response() {
        let mut log = Log::default();
        // Two ids of one person, on different partitions, before anyone merged them.
        handled(
            &mut log,
            "gus-phone",
            "call-1",
            "voice",
            time("2026-03-01T09:00:00Z"),
            true,
        );
        let chat = |at: &str, body: Value| event("gus-email", at, "chat-9", "chat", body);
        log.entries.extend([
            (
                chat("2026-03-20T09:00:00Z", inbound_start()),
                LogPosition {
                    partition: 5,
                    offset: 0,
                },
            ),
            (
                chat(
                    "2026-03-20T09:00:30Z",
                    json!({"type": "assigned", "agent_id": "agent-4"}),
                ),
                LogPosition {
                    partition: 5,
                    offset: 1,
                },
            ),
        ]);
        let merge = event_from_value(json!({
            "occurred_at": "2026-03-21T00:00:00Z",
            "type": "customers_merged",
            "from_customer": "gus-email",
            "into_customer": "gus-phone",
        }))
        .unwrap();
        log.entries.push((
            merge,
            LogPosition {
                partition: 0,
                offset: 99,
            },
        ));
        let state = log.fold();

        let merged = customer_journey(&state, "gus-phone", &["gus-email".to_owned()], &[])
            .unwrap()
            .unwrap();
        assert_eq!(merged.customer_id, "gus-phone");
        assert_eq!(merged.journeys.len(), 2);
        assert_eq!(merged.journeys[0].interactions[0].interaction_id, "call-1");
        assert_eq!(merged.journeys[1].interactions[0].interaction_id, "chat-9");
        // The context spans both: the open journey and the latest agent come from the chat.
        assert_eq!(
            merged.context.open_journey_id.as_ref(),
            Some(&merged.journeys[1].journey_id)
        );
        assert_eq!(merged.context.last_agent.as_deref(), Some("agent-4"));
        assert_eq!(merged.context.last_channel.as_deref(), Some("chat"));
        // Alone, each id still has only its own history.
        assert_eq!(journey_of(&state, "gus-phone").journeys.len(), 1);
        assert_eq!(customer_journey(&state, "nobody", &[], &[]).unwrap(), None);
        // Timelines kept as positions answer alike: each journey's lines read from its own
        // customer's partition.
        let positions = log.fold_as_positions();
        assert_eq!(
            serde_json::to_value(
                customer_journey(&positions, "gus-phone", &["gus-email".to_owned()], &[])
                    .unwrap()
                    .unwrap()
            )
            .unwrap(),
            serde_json::to_value(&merged).unwrap()
        );
    }

    #[test]
    fn an_interaction_is_answered_with_its_summary_and_its_events_in_log_order() {
        let mut log = Log::default();
        unresolved_call(&mut log, "alice");
        let state = log.fold();
        let answer = interaction(&state, "call-1").unwrap().unwrap();
        assert_eq!(answer.customer_id, "alice");
        assert_eq!(answer.interaction.agents, ["agent-7"]);
        assert_eq!(answer.events.len(), 6);
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["interaction_id"], "call-1");
        assert_eq!(json["status"], "wrapped_up");
        assert_eq!(
            json["journey_id"],
            Value::String(journey_of(&state, "alice").journeys[0].journey_id.clone())
        );
        for ((event, _), shown) in log.entries.iter().zip(json["events"].as_array().unwrap()) {
            let canonical: Value = serde_json::from_str(&to_canonical_json(event)).unwrap();
            assert_eq!(*shown, canonical);
        }
        assert_eq!(interaction(&state, "call-404").unwrap(), None);
    }

    #[test]
    fn events_without_a_journey_change_nothing_and_an_unresolved_customer_is_refused() {
        let view = JourneyView::default();
        let mut state = Folded::new();
        let agent = event_from_value(json!({
            "occurred_at": "2026-03-01T09:00:00Z", "type": "agent_state",
            "agent_id": "agent-1", "state": "available",
        }))
        .unwrap();
        state
            .apply(
                &view,
                &agent,
                LogPosition {
                    partition: 0,
                    offset: 0,
                },
            )
            .unwrap();
        assert!(state.is_empty());

        let mut anonymous = event(
            "x",
            "2026-03-01T09:00:00Z",
            "chat-1",
            "chat",
            json!({"type": "hold"}),
        );
        std::sync::Arc::make_mut(anonymous.customer.as_mut().unwrap()).id = None;
        let refused = state.apply(
            &view,
            &anonymous,
            LogPosition {
                partition: 0,
                offset: 1,
            },
        );
        assert!(matches!(refused, Err(ViewError::Unapplicable(_))));
        assert!(state.is_empty());
    }

    /// A small desk over two partitions: several customers, including two that share an
    /// interaction id on different partitions.
    fn two_partitions() -> (Entries, Entries) {
        let mut log = Log::default();
        unresolved_call(&mut log, "alice");
        handled(
            &mut log,
            "bob",
            "chat-1",
            "chat",
            time("2026-03-01T10:00:00Z"),
            true,
        );
        handled(
            &mut log,
            "bob",
            "call-2",
            "voice",
            time("2026-03-03T10:00:00Z"),
            true,
        );
        let p0 = std::mem::take(&mut log.entries);
        handled(
            &mut log,
            "carol",
            "chat-1",
            "chat",
            time("2026-03-01T09:30:00Z"),
            false,
        );
        handled(
            &mut log,
            "carol",
            "mail-5",
            "email",
            time("2026-03-01T11:30:00Z"),
            true,
        );
        unresolved_call(&mut log, "dave");
        let p1 = log
            .entries
            .into_iter()
            .map(|(event, position)| {
                (
                    event,
                    LogPosition {
                        partition: 1,
                        ..position
                    },
                )
            })
            .collect();
        (p0, p1)
    }

    /// Lines kept as their events' positions, the events read from the log
    /// (`JourneyConfig::timelines_from_log`, the embedded log's), answer as whole lines in
    /// the view: every customer's journey and interactions of a generated history (late
    /// events among them). The two keep different records, so they are different layouts.
    #[test]
    fn summaries_read_from_the_log_answer_as_summaries_in_the_view() {
        let events: Vec<Event> =
            history(HistoryConfig::with_events(7, 3_000).with_customer_ids()).collect();
        both_timeline_forms_answer_alike(&events);
    }

    /// The same, when the log's order is not the events' time order: every fifth event is
    /// appended before the one it follows in time, so a timeline kept as positions (in log
    /// order) must be put in time order when it is read, as whole lines are when folded.
    #[test]
    fn timelines_kept_as_positions_answer_in_time_order_whatever_the_log_order() {
        let mut events: Vec<Event> =
            history(HistoryConfig::with_events(11, 3_000).with_customer_ids()).collect();
        for later in (5..events.len()).step_by(5) {
            events.swap(later - 1, later);
        }
        // Late lines there must be: a customer's event now before one of its own that
        // happened earlier (else the test would compare two forms of in-order timelines).
        let late = (5..events.len())
            .step_by(5)
            .filter(|&later| {
                let (first, second) = (&events[later - 1], &events[later]);
                first.customer_id() == second.customer_id()
                    && first.occurred_at > second.occurred_at
            })
            .count();
        assert!(late >= 10, "only {late} events made late");
        both_timeline_forms_answer_alike(&events);
    }

    /// A journey whose messages arrive newest first (every line but the first late) keeps
    /// each late line's time, so a query that shows five lines reads the events of the first
    /// five lines that are not late and of the late lines it shows: at most ten, however
    /// long the journey.
    #[test]
    fn a_journey_of_late_lines_reads_no_more_events_than_twice_what_it_shows() {
        let mut log = Log::default();
        log.push(
            0,
            event(
                "pat",
                "2026-03-02T12:00:00Z",
                "chat-1",
                "chat",
                inbound_start(),
            ),
        );
        for minute in (0..60).rev() {
            let at = format!("2026-03-02T11:{minute:02}:00Z");
            log.push(
                0,
                event("pat", &at, "chat-1", "chat", customer_says("again")),
            );
        }
        let (whole, positions) = (log.fold(), log.fold_as_positions());
        let limits = JourneyLimits {
            timeline: 5,
            ..JourneyLimits::default()
        };
        struct Counted<'a>(&'a Folded, std::cell::Cell<usize>);
        impl EventSource for Counted<'_> {
            fn events(&self, partition: u32, offsets: &[u64]) -> Result<Vec<Event>, ViewError> {
                self.1.set(self.1.get() + offsets.len());
                self.0.events(partition, offsets)
            }
        }
        let counted = Counted(&positions, std::cell::Cell::new(0));
        let answer_of = |folded: &Folded, events: &dyn EventSource| {
            omnilog_views::journey::customer_journey_with(
                &folded.state,
                &NoRecords,
                events,
                "pat",
                &[],
                &[],
                limits,
            )
            .unwrap()
            .unwrap()
        };
        let answer = answer_of(&positions, &counted);
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::to_value(answer_of(&whole, &whole)).unwrap()
        );
        let shown: Vec<&str> = answer.journeys[0]
            .timeline
            .iter()
            .map(|line| line.at.as_str())
            .collect();
        assert_eq!(shown[0], "2026-03-02T11:00:00Z");
        assert_eq!(shown.len(), 5);
        assert!(counted.1.get() <= 10, "{} events read", counted.1.get());
    }

    /// Late lines tied in time with lines that are not, and times of a fraction of a
    /// second, answer in the same order in both forms, whatever the limit.
    #[test]
    fn late_lines_tied_in_time_or_a_fraction_of_a_second_apart_answer_alike() {
        let mut log = Log::default();
        let times = [
            "2026-03-02T12:00:00.5Z",
            "2026-03-02T12:00:00.25Z",
            "2026-03-02T12:00:00.5Z",
            "2026-03-02T11:59:59.999999999Z",
            "2026-03-02T12:00:00.25Z",
            "2026-03-02T12:00:01Z",
            "2026-03-02T12:00:00.5Z",
        ];
        log.push(0, event("lee", times[0], "chat-2", "chat", inbound_start()));
        for at in &times[1..] {
            log.push(0, event("lee", at, "chat-2", "chat", customer_says("hm")));
        }
        let (whole, positions) = (log.fold(), log.fold_as_positions());
        for timeline in 1..=times.len() {
            let limits = JourneyLimits {
                timeline,
                ..JourneyLimits::default()
            };
            let answer_of = |folded: &Folded| {
                let answer = omnilog_views::journey::customer_journey_with(
                    &folded.state,
                    &NoRecords,
                    folded,
                    "lee",
                    &[],
                    &[],
                    limits,
                )
                .unwrap()
                .unwrap();
                serde_json::to_value(answer).unwrap()
            };
            assert_eq!(answer_of(&positions), answer_of(&whole), "{timeline} lines");
        }
    }

    /// Folds `events` (in their order, one partition) into a view keeping whole lines and
    /// one keeping positions, and checks that every customer's journey (whole, and cut to a
    /// few lines a journey) and every interaction answer alike.
    fn both_timeline_forms_answer_alike(events: &[Event]) {
        let in_view = JourneyView::default();
        let from_log = JourneyView::new(JourneyConfig {
            timelines_from_log: true,
            ..JourneyConfig::default()
        });
        assert_ne!(in_view.layout(), from_log.layout());
        let (mut kept, mut read) = (Folded::of(&in_view), Folded::of(&from_log));
        for (offset, event) in events.iter().enumerate() {
            let position = LogPosition {
                partition: 0,
                offset: offset as u64,
            };
            kept.apply(&in_view, event, position).unwrap();
            read.apply(&from_log, event, position).unwrap();
        }
        assert_ne!(
            kept.state.dump().unwrap(),
            read.state.dump().unwrap(),
            "the summaries are not stored"
        );
        let customers: BTreeSet<&str> = events.iter().filter_map(Event::customer_id).collect();
        let interactions: BTreeSet<&str> = events
            .iter()
            .filter_map(|event| event.interaction_id.as_deref())
            .collect();
        assert!(customers.len() > 50 && interactions.len() > 100);
        let few_lines = JourneyLimits {
            timeline: 3,
            ..JourneyLimits::default()
        };
        let mut lines = 0;
        for customer in customers {
            for limits in [JourneyLimits::default(), few_lines] {
                let answer_of = |folded: &Folded| {
                    omnilog_views::journey::customer_journey_with(
                        &folded.state,
                        &NoRecords,
                        folded,
                        customer,
                        &[],
                        &[],
                        limits,
                    )
                    .unwrap()
                    .unwrap()
                };
                let (expected, answer) = (answer_of(&kept), answer_of(&read));
                if limits == few_lines {
                    assert!(answer.journeys.iter().all(|j| j.timeline.len() <= 3));
                } else {
                    lines += answer
                        .journeys
                        .iter()
                        .map(|j| j.timeline.len())
                        .sum::<usize>();
                }
                assert_eq!(
                    serde_json::to_value(&answer).unwrap(),
                    serde_json::to_value(&expected).unwrap(),
                    "{customer}"
                );
            }
        }
        assert!(lines > 1_000, "{lines} timeline lines compared");
        for id in interactions {
            assert_eq!(
                serde_json::to_value(interaction(&read, id).unwrap()).unwrap(),
                serde_json::to_value(interaction(&kept, id).unwrap()).unwrap(),
                "{id}"
            );
        }
    }

    #[test]
    fn folding_again_from_scratch_gives_the_same_state_byte_for_byte() {
        let (p0, p1) = two_partitions();
        let all: Vec<_> = p0.iter().chain(&p1).cloned().collect();
        assert_eq!(fold_all(all.iter()), fold_all(all.iter()));
    }

    proptest! {
        #[test]
        fn the_state_does_not_depend_on_how_partitions_interleave(
            picks in proptest::collection::vec(any::<bool>(), 0..64),
        ) {
            let (p0, p1) = two_partitions();
            let sequential: Vec<_> = p0.iter().chain(&p1).cloned().collect();
            let mut interleaved = Vec::new();
            let (mut a, mut b) = (p0.iter().peekable(), p1.iter().peekable());
            let mut picks = picks.into_iter();
            while a.peek().is_some() || b.peek().is_some() {
                let take_a = match (a.peek(), b.peek()) {
                    (Some(_), Some(_)) => picks.next().unwrap_or(true),
                    (Some(_), None) => true,
                    _ => false,
                };
                let next = if take_a { a.next() } else { b.next() };
                interleaved.push(next.unwrap().clone());
            }
            prop_assert_eq!(fold_all(sequential.iter()), fold_all(interleaved.iter()));
        }
    }

    /// The report's worked example, one customer's events per partition:
    /// - ann: voice, resolved by its agent: resolved, first contact resolution, `voice`;
    /// - ben: chat unresolved, then email resolved: resolved, not FCR, `chat>email`;
    /// - cat: voice resolved, chat two days later: reopened and open, `voice>chat`;
    /// - deb: an IVR session contained by self-service: open, `ivr`;
    /// - ann again ten days later: a new open journey, `voice`.
    fn report_example() -> Entries {
        let day0 = time("2026-03-02T08:00:00Z");
        let mut log = Log::default();
        handled(&mut log, "ann", "ann-call", "voice", day0, true);
        handled(
            &mut log,
            "ann",
            "ann-call-2",
            "voice",
            day0 + chrono::TimeDelta::days(10),
            false,
        );
        let ann: Vec<_> = std::mem::take(&mut log.entries);
        handled(&mut log, "ben", "ben-chat", "chat", day0, false);
        handled(
            &mut log,
            "ben",
            "ben-mail",
            "email",
            day0 + chrono::TimeDelta::hours(2),
            true,
        );
        let ben = std::mem::take(&mut log.entries);
        handled(&mut log, "cat", "cat-call", "voice", day0, true);
        handled(
            &mut log,
            "cat",
            "cat-chat",
            "chat",
            day0 + chrono::TimeDelta::days(2),
            false,
        );
        let cat = std::mem::take(&mut log.entries);
        let ivr = |at: &str, body: Value| event("deb", at, "deb-ivr", "ivr", body);
        log.push(
        0,
        ivr(
            "2026-03-02T08:00:00Z",
            json!({"type": "interaction_started", "direction": "inbound", "self_service": true}),
        ),
    );
        log.push(
            0,
            ivr(
                "2026-03-02T08:02:00Z",
                json!({"type": "ended", "reason": "contained"}),
            ),
        );
        let deb = std::mem::take(&mut log.entries);
        [ann, ben, cat, deb]
            .into_iter()
            .enumerate()
            .flat_map(|(partition, entries)| {
                entries.into_iter().map(move |(event, position)| {
                    (
                        event,
                        LogPosition {
                            partition: partition as u32,
                            ..position
                        },
                    )
                })
            })
            .collect()
    }

    #[test]
    fn the_journeys_report_counts_the_worked_example() {
        let state = fold_all(report_example().iter());
        let report = journeys_report(
            &state,
            time("2026-03-01T00:00:00Z"),
            time("2026-04-01T00:00:00Z"),
        )
        .unwrap()
        .finish();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            json!({
                "journeys": 5,
                "resolved": 2,
                "multi_channel": 2,
                "channel_switch_rate": 0.4,
                "fcr_rate": 0.5,
                "repeat_contact_rate": 1.0 / 3.0,
                "top_paths": [
                    {"path": "voice", "count": 2},
                    {"path": "chat>email", "count": 1},
                    {"path": "ivr", "count": 1},
                    {"path": "voice>chat", "count": 1},
                ],
                // deb's IVR session: contained, and deb did not come back.
                "self_service": {
                    "sessions": 1, "contained": 1, "escalated": 0, "contained_came_back": 0,
                    "containment_rate": 1.0, "escalation_rate": 0.0, "came_back_rate": 0.0,
                    "by_channel": {"ivr": {
                        "sessions": 1, "contained": 1, "escalated": 0, "contained_came_back": 0,
                        "containment_rate": 1.0, "escalation_rate": 0.0, "came_back_rate": 0.0,
                    }},
                },
            })
        );
        let ivr = &journey_of(&state, "deb").journeys[0].interactions[0];
        assert_eq!(serde_json::to_value(ivr.outcome).unwrap(), "contained");

        // Journeys count where they opened: the range [from, to) leaves ann's second one out.
        let early = journeys_report(
            &state,
            time("2026-03-01T00:00:00Z"),
            time("2026-03-12T08:00:00Z"),
        )
        .unwrap()
        .finish();
        assert_eq!(early.journeys, 4);
        assert_eq!(early.top_paths[0].path, "chat>email");
    }

    #[test]
    fn an_empty_report_has_zero_rates_and_a_reversed_range_is_a_bad_query() {
        let state = Folded::new();
        let report = journeys_report(
            &state,
            time("2026-03-01T00:00:00Z"),
            time("2026-03-02T00:00:00Z"),
        )
        .unwrap()
        .finish();
        assert_eq!(report.journeys, 0);
        assert_eq!(
            (
                report.channel_switch_rate,
                report.fcr_rate,
                report.repeat_contact_rate
            ),
            (0.0, 0.0, 0.0)
        );
        let reversed = journeys_report(
            &state,
            time("2026-03-02T00:00:00Z"),
            time("2026-03-01T00:00:00Z"),
        );
        assert!(matches!(reversed, Err(ViewError::BadQuery { .. })));
    }

    #[test]
    fn report_partials_of_different_customers_merge_into_the_partial_of_all() {
        let example = report_example();
        let (from, to) = (time("2026-03-01T00:00:00Z"), time("2026-04-01T00:00:00Z"));
        // Instance A owns partitions 0 and 2, instance B owns 1 and 3.
        let a = fold_all(example.iter().filter(|(_, p)| p.partition % 2 == 0));
        let b = fold_all(example.iter().filter(|(_, p)| p.partition % 2 == 1));
        let all = fold_all(example.iter());
        let mut merged: JourneyReportPartial = journeys_report(&a, from, to).unwrap();
        merged.merge(&journeys_report(&b, from, to).unwrap());
        assert_eq!(merged, journeys_report(&all, from, to).unwrap());
        let mut other_order = journeys_report(&b, from, to).unwrap();
        other_order.merge(&journeys_report(&a, from, to).unwrap());
        assert_eq!(other_order, merged);
        assert_eq!(
            merged.finish(),
            journeys_report(&all, from, to).unwrap().finish()
        );
    }

    /// What an instance that owns neither customer's partition gets: each member's
    /// entries, loaded side by side, answer the merged journey as the whole state does.
    #[test]
    fn the_entries_of_merged_customers_answer_their_journey_as_the_whole_state_does() {
        let mut log = Log::default();
        unresolved_call(&mut log, "c-alice");
        let chat = |at: &str, body: Value| event("c-alice-old", at, "chat-9", "chat", body);
        log.push(1, chat("2026-03-01T10:00:00Z", inbound_start()));
        log.push(
            1,
            chat("2026-03-01T10:01:00Z", customer_says("Still no callback.")),
        );
        let other = |at: &str, body: Value| event("c-bob", at, "chat-3", "chat", body);
        log.push(1, other("2026-03-01T11:00:00Z", inbound_start()));
        let whole = log.fold();
        let merged_from = vec!["c-alice-old".to_owned()];
        let expected = customer_journey(&whole, "c-alice", &merged_from, &[]).unwrap();

        let mut parts = Folded::new();
        for member in ["c-alice", "c-alice-old"] {
            for (key, value) in
                omnilog_views::journey::customer_entries(&whole.state, &NoRecords, member).unwrap()
            {
                parts.state.restore(&key, Some(&value)).unwrap();
            }
        }
        let answer = customer_journey(&parts, "c-alice", &merged_from, &[]).unwrap();
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::to_value(&expected).unwrap()
        );
        assert!(expected.unwrap().journeys.len() >= 2);
        // Records whose lines are positions in this instance's log are not handed over:
        // another instance could not read those positions.
        let positions = log.fold_as_positions();
        assert!(
            omnilog_views::journey::customer_entries(&positions.state, &NoRecords, "c-alice")
                .is_err()
        );
    }
}
