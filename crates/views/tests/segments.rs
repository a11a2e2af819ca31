//! The segments view (issue 18, item 4): customers' attributes, the channels report by
//! segment and each customer's preferred channel, on a hand-worked history, folded in
//! memory in two partition orders.

// One module, so `cargo test -p omnilog-views segments` selects every test here.
mod support;

mod segments {
    use crate::support;
    use chrono::{DateTime, Utc};
    use omnilog_events::{Channel, Event};
    use omnilog_views::reporting::ReportingConfig;
    use omnilog_views::segments::{
        ChannelsAnswer, ChannelsPartial, ProfileAnswer, SegmentsState, SegmentsView,
        channels_report, customer_profile, parse_group_by,
    };
    use omnilog_views::{LogPosition, NoRecords, View, ViewError, ViewState, apply_in_memory};
    use serde_json::{Value, json};

    /// A validated event of `customer`; `fields` holds its type and type-specific fields
    /// (and may replace the envelope's, or add `customer.attributes`).
    fn event(customer: &str, at: &str, interaction: Option<(&str, &str)>, fields: Value) -> Event {
        let mut value = json!({"occurred_at": at, "customer": {"id": customer}});
        if let Some((id, channel)) = interaction {
            value["interaction_id"] = json!(id);
            value["channel"] = json!(channel);
        }
        support::ingested(value, &fields)
    }

    fn profile(customer: &str, at: &str, attributes: Value) -> Event {
        event(
            customer,
            at,
            None,
            json!({"type": "customer_profile", "attributes": attributes}),
        )
    }

    fn started(customer: &str, id: &str, channel: &str, at: &str) -> Event {
        event(
            customer,
            at,
            Some((id, channel)),
            json!({"type": "interaction_started", "direction": "inbound"}),
        )
    }

    fn queued(customer: &str, id: &str, channel: &str, at: &str) -> Event {
        event(
            customer,
            at,
            Some((id, channel)),
            json!({"type": "queued", "queue": "desk"}),
        )
    }

    fn assigned(customer: &str, id: &str, channel: &str, at: &str) -> Event {
        event(
            customer,
            at,
            Some((id, channel)),
            json!({"type": "assigned", "agent_id": "ann"}),
        )
    }

    fn resolved(customer: &str, id: &str, channel: &str, at: &str) -> Event {
        event(
            customer,
            at,
            Some((id, channel)),
            json!({"type": "wrapped_up", "agent_id": "ann", "resolved": true}),
        )
    }

    /// The hand-worked history, by partition (customers f1, f2 | s1, m1 | n1, r1), each
    /// partition in log order.
    fn history() -> Vec<Vec<Event>> {
        let finance = vec![
            profile("f1", "2026-03-01T08:00:00Z", json!({"segment": "finance"})),
            // A call answered in 10 s (voice: 20 s), resolved; the customer emails two days
            // later: a repeat contact of the call.
            started("f1", "CA1", "voice", "2026-03-02T09:00:00Z"),
            queued("f1", "CA1", "voice", "2026-03-02T09:00:00Z"),
            assigned("f1", "CA1", "voice", "2026-03-02T09:00:10Z"),
            resolved("f1", "CA1", "voice", "2026-03-02T09:05:00Z"),
            started("f1", "E1", "email", "2026-03-04T10:00:00Z"),
            queued("f1", "E1", "email", "2026-03-04T10:00:00Z"),
            // Two hours: over email's hour.
            assigned("f1", "E1", "email", "2026-03-04T12:00:00Z"),
            // f2's segment comes on an event's customer, not from a profile.
            event(
                "f2",
                "2026-03-03T09:00:00Z",
                Some(("E2", "email")),
                json!({"type": "interaction_started", "direction": "inbound",
                       "customer": {"id": "f2", "attributes": {"segment": "finance"}}}),
            ),
            queued("f2", "E2", "email", "2026-03-03T09:00:00Z"),
            assigned("f2", "E2", "email", "2026-03-03T09:10:00Z"),
            resolved("f2", "E2", "email", "2026-03-03T09:20:00Z"),
        ];
        let sales_and_medical = vec![
            profile("s1", "2026-03-01T08:00:00Z", json!({"segment": "sales"})),
            started("s1", "C1", "chat", "2026-03-02T10:00:00Z"),
            queued("s1", "C1", "chat", "2026-03-02T10:00:00Z"),
            assigned("s1", "C1", "chat", "2026-03-02T10:00:30Z"),
            // A chat first seen by the customer's message: inbound.
            event(
                "s1",
                "2026-03-05T10:00:00Z",
                Some(("C2", "chat")),
                json!({"type": "message", "direction": "inbound", "author": "customer", "text": "hi"}),
            ),
            // The desk's notice: outbound, no preference of the customer's.
            event(
                "s1",
                "2026-03-06T10:00:00Z",
                Some(("N1", "voice")),
                json!({"type": "proactive_notice", "reason": "outage"}),
            ),
            profile("m1", "2026-03-01T00:00:00Z", json!({"segment": "sales"})),
            profile("m1", "2026-03-02T00:00:00Z", json!({"segment": "medical"})),
            // Folded later but older: it does not replace the newer value.
            profile(
                "m1",
                "2026-03-01T12:00:00Z",
                json!({"segment": "development"}),
            ),
            started("m1", "V9", "voice", "2026-03-03T08:00:00Z"),
        ];
        let without = vec![
            started("n1", "S1", "sms", "2026-03-02T11:00:00Z"),
            profile("r1", "2026-03-01T00:00:00Z", json!({"segment": "finance"})),
            // An empty value removes the attribute.
            profile(
                "r1",
                "2026-03-02T00:00:00Z",
                json!({"segment": "", "department": "tax"}),
            ),
            started("r1", "C9", "chat", "2026-03-02T12:00:00Z"),
        ];
        vec![finance, sales_and_medical, without]
    }

    /// Folds the partitions one after the other into `state`.
    fn fold_into(view: &SegmentsView, state: &mut SegmentsState, partitions: &[Vec<Event>]) {
        for (partition, events) in partitions.iter().enumerate() {
            for (offset, event) in events.iter().enumerate() {
                let position = LogPosition {
                    partition: partition as u32,
                    offset: offset as u64,
                };
                apply_in_memory(view, state, event, position).unwrap();
            }
        }
    }

    /// Folds the partitions one after the other, with the default thresholds.
    fn fold_in_sequence(partitions: &[Vec<Event>]) -> SegmentsState {
        let view = SegmentsView::default();
        let mut state = view.new_state();
        fold_into(&view, &mut state, partitions);
        state
    }

    /// Folds the partitions interleaved, the last partition first: each partition still in
    /// its own order, as a projector consuming them all at once would.
    fn fold_interleaved(partitions: &[Vec<Event>]) -> SegmentsState {
        let view = SegmentsView::default();
        let mut state = view.new_state();
        let longest = partitions.iter().map(Vec::len).max().unwrap_or(0);
        for offset in 0..longest {
            for (partition, events) in partitions.iter().enumerate().rev() {
                if let Some(event) = events.get(offset) {
                    let position = LogPosition {
                        partition: partition as u32,
                        offset: offset as u64,
                    };
                    apply_in_memory(&view, &mut state, event, position).unwrap();
                }
            }
        }
        state
    }

    fn report(
        state: &SegmentsState,
        group_by: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> ChannelsAnswer {
        let time = |text: Option<&str>, default: DateTime<Utc>| {
            text.map_or(default, |t| t.parse::<DateTime<Utc>>().unwrap())
        };
        channels_report(
            state,
            &NoRecords,
            group_by,
            time(from, DateTime::<Utc>::MIN_UTC),
            time(to, DateTime::<Utc>::MAX_UTC),
        )
        .unwrap()
        .finish()
    }

    /// A group of the answer as `(key, customers, interactions, preferred, [(channel,
    /// interactions, inbound, offered, answered in threshold, resolved, repeats)])`.
    type Row = (
        Option<String>,
        u64,
        u64,
        Option<String>,
        Vec<(String, [u64; 6])>,
    );

    /// A row written by hand.
    fn row(
        key: Option<&str>,
        customers: u64,
        interactions: u64,
        preferred: Option<&str>,
        channels: &[(&str, [u64; 6])],
    ) -> Row {
        (
            key.map(str::to_owned),
            customers,
            interactions,
            preferred.map(str::to_owned),
            channels
                .iter()
                .map(|(channel, counts)| (channel.to_string(), *counts))
                .collect(),
        )
    }

    fn rows(answer: &ChannelsAnswer) -> Vec<Row> {
        answer
            .groups
            .iter()
            .map(|group| {
                (
                    group.key.clone(),
                    group.customers,
                    group.interactions,
                    group.preferred_channel.clone(),
                    group
                        .channels
                        .iter()
                        .map(|c| {
                            (
                                c.channel.clone(),
                                [
                                    c.interactions,
                                    c.inbound,
                                    c.offered,
                                    c.answered_in_threshold,
                                    c.resolved,
                                    c.repeat_contacts,
                                ],
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_channels_report_by_segment_equals_the_hand_count() {
        let state = fold_in_sequence(&history());
        let answer = report(&state, "segment", None, None);
        assert_eq!(answer.group_by, "segment");
        assert_eq!(
            rows(&answer),
            vec![
                row(
                    Some("finance"),
                    2,
                    3,
                    Some("email"),
                    &[("email", [2, 2, 2, 1, 1, 0]), ("voice", [1, 1, 1, 1, 1, 1])],
                ),
                row(
                    Some("medical"),
                    1,
                    1,
                    Some("voice"),
                    &[("voice", [1, 1, 0, 0, 0, 0])],
                ),
                row(
                    Some("sales"),
                    1,
                    3,
                    Some("chat"),
                    &[("chat", [2, 2, 1, 1, 0, 0]), ("voice", [1, 0, 0, 0, 0, 0])],
                ),
                // n1 never had a segment; r1's was removed. A tie of preference goes to
                // the name first in order.
                row(
                    None,
                    2,
                    2,
                    Some("chat"),
                    &[("chat", [1, 1, 0, 0, 0, 0]), ("sms", [1, 1, 0, 0, 0, 0])],
                ),
            ]
        );
        let finance = &answer.groups[0];
        let email = &finance.channels[0];
        assert_eq!(email.service_level, 0.5);
        assert_eq!(email.repeat_contact_rate, 0.0);
        assert!((email.share - 2.0 / 3.0).abs() < 1e-12);
        let voice = &finance.channels[1];
        assert_eq!(voice.service_level, 1.0);
        assert_eq!(voice.repeat_contact_rate, 1.0);
        // Any attribute groups: r1's department.
        let by_department = report(&state, "department", None, None);
        assert_eq!(
            by_department
                .groups
                .iter()
                .map(|g| (g.key.clone(), g.customers))
                .collect::<Vec<_>>(),
            vec![(Some("tax".to_owned()), 1), (None, 5)]
        );
    }

    #[test]
    fn the_report_counts_the_interactions_started_in_the_range() {
        let state = fold_in_sequence(&history());
        let answer = report(
            &state,
            "segment",
            Some("2026-03-03T00:00:00Z"),
            Some("2026-03-05T00:00:00Z"),
        );
        assert_eq!(
            rows(&answer),
            vec![
                row(
                    Some("finance"),
                    2,
                    2,
                    Some("email"),
                    &[("email", [2, 2, 2, 1, 1, 0])],
                ),
                row(
                    Some("medical"),
                    1,
                    1,
                    Some("voice"),
                    &[("voice", [1, 1, 0, 0, 0, 0])],
                ),
            ]
        );
        let error = channels_report(
            &state,
            &NoRecords,
            "segment",
            "2026-03-05T00:00:00Z".parse().unwrap(),
            "2026-03-03T00:00:00Z".parse().unwrap(),
        )
        .unwrap_err();
        assert!(matches!(error, ViewError::BadQuery { ref parameter, .. } if parameter == "to"));
    }

    #[test]
    fn a_customers_profile_holds_its_latest_attributes_and_its_preferred_channel() {
        let state = fold_in_sequence(&history());
        let profile_of = |members: &[&str]| {
            let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
            customer_profile(&state, &NoRecords, &members).unwrap()
        };
        let answer = |attributes: &[(&str, &str)], preferred: &str| {
            Some(ProfileAnswer {
                attributes: attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                preferred_channel: Some(preferred.to_owned()),
            })
        };
        // One call and one email: a tie, won by the channel used last.
        assert_eq!(
            profile_of(&["f1"]),
            answer(&[("segment", "finance")], "email")
        );
        // The outbound notice is the desk's choice, not the customer's.
        assert_eq!(profile_of(&["s1"]), answer(&[("segment", "sales")], "chat"));
        assert_eq!(
            profile_of(&["m1"]),
            answer(&[("segment", "medical")], "voice")
        );
        assert_eq!(
            profile_of(&["r1"]),
            answer(&[("department", "tax")], "chat")
        );
        // Merged ids: the latest value of each key, and the contacts of both.
        assert_eq!(
            profile_of(&["f1", "m1"]),
            answer(&[("segment", "medical")], "voice")
        );
        assert_eq!(profile_of(&["nobody"]), None);
    }

    #[test]
    fn the_preferred_channel_looks_at_the_last_ninety_days_of_contacts() {
        let mut events = Vec::new();
        for (n, day) in ["2026-01-01", "2026-01-02", "2026-01-03"]
            .iter()
            .enumerate()
        {
            events.push(started(
                "k",
                &format!("old-{n}"),
                "voice",
                &format!("{day}T09:00:00Z"),
            ));
        }
        // Six months later: two chats. The calls are too old to count.
        events.push(started("k", "new-1", "chat", "2026-07-01T09:00:00Z"));
        events.push(started("k", "new-2", "chat", "2026-07-02T09:00:00Z"));
        let state = fold_in_sequence(&[events]);
        let profile = customer_profile(&state, &NoRecords, &["k".to_owned()])
            .unwrap()
            .unwrap();
        assert_eq!(profile.preferred_channel.as_deref(), Some("chat"));
    }

    #[test]
    fn a_configured_threshold_decides_what_was_answered_within_it() {
        // Voice answered after 15 s and chat after 90 s: within the defaults (20 s and
        // 60 s) for voice only; with voice at 10 s, neither; a channel the configuration
        // does not name falls back to an hour.
        let events = [
            started("c1", "V1", "voice", "2026-03-02T09:00:00Z"),
            queued("c1", "V1", "voice", "2026-03-02T09:00:00Z"),
            assigned("c1", "V1", "voice", "2026-03-02T09:00:15Z"),
            started("c1", "C1", "chat", "2026-03-02T10:00:00Z"),
            queued("c1", "C1", "chat", "2026-03-02T10:00:00Z"),
            assigned("c1", "C1", "chat", "2026-03-02T10:01:30Z"),
        ];
        let service_levels = |view: &SegmentsView| {
            let mut state = view.new_state();
            fold_into(view, &mut state, &[events.to_vec()]);
            let answer = report(&state, "segment", None, None);
            let mut levels: Vec<(String, f64)> = answer.groups[0]
                .channels
                .iter()
                .map(|channel| (channel.channel.clone(), channel.service_level))
                .collect();
            levels.sort_by(|a, b| a.0.cmp(&b.0));
            levels
        };
        assert_eq!(
            service_levels(&SegmentsView::default()),
            [("chat".to_owned(), 0.0), ("voice".to_owned(), 1.0)]
        );
        let voice_at_ten = ReportingConfig {
            thresholds: [(Channel::Voice, 10)].into_iter().collect(),
        };
        assert_eq!(
            service_levels(&SegmentsView::new(voice_at_ten)),
            [("chat".to_owned(), 1.0), ("voice".to_owned(), 0.0)]
        );
    }

    #[test]
    fn the_state_and_report_do_not_depend_on_how_partitions_interleave() {
        let partitions = history();
        let sequence = fold_in_sequence(&partitions);
        let interleaved = fold_interleaved(&partitions);
        assert_eq!(sequence.dump().unwrap(), interleaved.dump().unwrap());
        assert_eq!(
            report(&sequence, "segment", None, None),
            report(&interleaved, "segment", None, None)
        );
        // Folded again (a redelivery of every event): nothing changes.
        let view = SegmentsView::default();
        let mut twice = fold_in_sequence(&partitions);
        fold_into(&view, &mut twice, &partitions);
        assert_eq!(twice.dump().unwrap(), sequence.dump().unwrap());
    }

    #[test]
    fn partials_of_disjoint_partitions_merge_into_the_whole_report() {
        let partitions = history();
        let whole = report(&fold_in_sequence(&partitions), "segment", None, None);
        let mut merged = ChannelsPartial::default();
        for partition in &partitions {
            let state = fold_in_sequence(std::slice::from_ref(partition));
            merged.merge(
                channels_report(
                    &state,
                    &NoRecords,
                    "segment",
                    DateTime::<Utc>::MIN_UTC,
                    DateTime::<Utc>::MAX_UTC,
                )
                .unwrap(),
            );
        }
        assert_eq!(merged.finish(), whole);
    }

    #[test]
    fn group_by_names_an_attribute_key() {
        assert_eq!(parse_group_by(None).unwrap(), "segment");
        assert_eq!(parse_group_by(Some("crm.tier")).unwrap(), "crm.tier");
        for bad in ["", "Segment", "seg ment", "1st"] {
            let error = parse_group_by(Some(bad)).unwrap_err();
            assert!(
                matches!(error, ViewError::BadQuery { ref parameter, .. } if parameter == "group_by"),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn an_interaction_event_without_a_resolved_customer_is_refused_before_any_change() {
        let view = SegmentsView::default();
        let mut state = view.new_state();
        let mut unresolved = started("k", "CA1", "voice", "2026-03-02T09:00:00Z");
        std::sync::Arc::make_mut(unresolved.customer.as_mut().unwrap()).id = None;
        let error = apply_in_memory(
            &view,
            &mut state,
            &unresolved,
            LogPosition {
                partition: 0,
                offset: 0,
            },
        )
        .unwrap_err();
        assert!(matches!(error, ViewError::Unapplicable(_)), "{error}");
        assert!(state.dump().unwrap().is_empty());
    }
}
