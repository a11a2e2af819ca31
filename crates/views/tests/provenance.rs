//! The envelope as provenance in the journey view (issue 18, item 2): an identity link, a
//! merge or a profile made during an interaction is a line of that interaction's timeline,
//! the desk's doing rather than a contact; without an interaction it changes no journey.

// One module, so `cargo test -p omnilog-views provenance` selects every test here.
mod support;

mod provenance {
    use crate::support;
    use omnilog_events::Event;
    use omnilog_views::journey::{
        EventSource, JourneyAnswer, JourneyConfig, JourneyState, JourneyView, NoLog,
        customer_journey,
    };
    use omnilog_views::{LogPosition, NoRecords, View, ViewError, ViewState, apply_in_memory};
    use serde_json::{Value, json};

    /// A validated event; `fields` holds everything but the time.
    fn event(at: &str, fields: Value) -> Event {
        support::ingested(json!({"occurred_at": at}), &fields)
    }

    fn call(customer: &str, at: &str, kind: &str, extra: Value) -> Event {
        let mut fields = json!({"customer": {"id": customer}, "interaction_id": "CA1",
            "channel": "voice", "type": kind});
        for (field, value) in extra.as_object().unwrap() {
            fields[field] = value.clone();
        }
        event(at, fields)
    }

    /// The events folded into a journey view of each timeline form: whole lines (Kafka's)
    /// and positions read back from the log (the embedded log's), with the log they read.
    struct Folded {
        lines: JourneyState,
        positions: JourneyState,
        log: Vec<Event>,
    }

    impl EventSource for Folded {
        fn events(&self, _partition: u32, offsets: &[u64]) -> Result<Vec<Event>, ViewError> {
            offsets
                .iter()
                .map(|&offset| {
                    self.log
                        .get(offset as usize)
                        .cloned()
                        .ok_or_else(|| ViewError::Storage(format!("no event at {offset}")))
                })
                .collect()
        }
    }

    fn fold(events: &[Event]) -> Folded {
        let whole = JourneyView::default();
        let positions = JourneyView::new(JourneyConfig {
            timelines_from_log: true,
            ..JourneyConfig::default()
        });
        let mut folded = Folded {
            lines: whole.new_state(),
            positions: positions.new_state(),
            log: events.to_vec(),
        };
        for (offset, event) in events.iter().enumerate() {
            let position = LogPosition {
                partition: 0,
                offset: offset as u64,
            };
            apply_in_memory(&whole, &mut folded.lines, event, position).unwrap();
            apply_in_memory(&positions, &mut folded.positions, event, position).unwrap();
        }
        folded
    }

    /// The customer's journey, answered alike by both timeline forms.
    fn journey_of(folded: &Folded, customer: &str) -> JourneyAnswer {
        let answer = customer_journey(&folded.lines, &NoRecords, &NoLog, customer, &[], &[])
            .unwrap()
            .unwrap_or_else(|| panic!("no journey of {customer}"));
        let from_log = customer_journey(&folded.positions, &NoRecords, folded, customer, &[], &[])
            .unwrap()
            .unwrap_or_else(|| panic!("no journey of {customer} from the log"));
        assert_eq!(
            serde_json::to_value(&from_log).unwrap(),
            serde_json::to_value(&answer).unwrap()
        );
        answer
    }

    /// The timeline as (type, interaction, summary).
    fn lines(answer: &JourneyAnswer) -> Vec<(String, String, String)> {
        answer
            .journeys
            .iter()
            .flat_map(|journey| &journey.timeline)
            .map(|entry| {
                (
                    entry.event_type.clone(),
                    entry.interaction_id.clone(),
                    entry.summary.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn an_identity_link_made_during_a_call_is_on_the_calls_timeline_and_is_no_contact() {
        let events = [
            call(
                "c-1",
                "2026-03-02T09:00:00Z",
                "interaction_started",
                json!({"direction": "inbound"}),
            ),
            call(
                "c-1",
                "2026-03-02T09:00:30Z",
                "assigned",
                json!({"agent_id": "ann"}),
            ),
            // The agent links the email the caller gave, during the call.
            call(
                "c-1",
                "2026-03-02T09:02:00Z",
                "identity_linked",
                json!({"customer": {"id": "c-1", "handles": [{"kind": "email", "value": "a@x.com"}]}}),
            ),
            call(
                "c-1",
                "2026-03-02T09:03:00Z",
                "customer_profile",
                json!({"attributes": {"segment": "finance", "tier": ""}}),
            ),
        ];
        let answer = journey_of(&fold(&events), "c-1");
        assert_eq!(
            lines(&answer),
            [
                ("interaction_started", "CA1", "inbound voice started"),
                ("assigned", "CA1", "assigned to ann"),
                ("identity_linked", "CA1", "identity linked: email a@x.com"),
                (
                    "customer_profile",
                    "CA1",
                    "profile: segment finance, tier removed"
                ),
            ]
            .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
        );
        assert_eq!(answer.journeys.len(), 1);
        assert_eq!(answer.journeys[0].interactions.len(), 1);
        // The last contact is the assignment: the link and the profile are the desk's work.
        assert_eq!(
            answer.context.last_contact_at.as_deref(),
            Some("2026-03-02T09:00:30Z")
        );
    }

    #[test]
    fn a_link_to_another_customer_starts_the_call_there_without_reopening_its_case() {
        let resolved_case = [
            event(
                "2026-03-01T09:00:00Z",
                json!({"customer": {"id": "crm-42"}, "interaction_id": "M1", "channel": "email",
                       "type": "interaction_started", "direction": "inbound"}),
            ),
            event(
                "2026-03-01T10:00:00Z",
                json!({"customer": {"id": "crm-42"}, "interaction_id": "M1", "channel": "email",
                       "type": "wrapped_up", "agent_id": "bo", "resolved": true}),
            ),
        ];
        // The next day, during call CA1, the agent links the caller's phone to crm-42, and
        // the rest of the call is crm-42's.
        let mut events = resolved_case.to_vec();
        events.push(call(
            "crm-42",
            "2026-03-02T09:02:00Z",
            "identity_linked",
            json!({"customer": {"id": "crm-42", "handles": [{"kind": "phone", "value": "+15550001"}]}}),
        ));
        events.push(call("crm-42", "2026-03-02T09:05:00Z", "ended", json!({})));
        let answer = journey_of(&fold(&events), "crm-42");
        assert_eq!(answer.journeys.len(), 1);
        let journey = &answer.journeys[0];
        assert_eq!(journey.reopened_count, 0, "a link is no repeat contact");
        assert_eq!(
            journey
                .interactions
                .iter()
                .map(|i| (i.interaction_id.as_str(), i.channel.as_str()))
                .collect::<Vec<_>>(),
            [("M1", "email"), ("CA1", "voice")]
        );
        assert!(lines(&answer).contains(&(
            "identity_linked".to_owned(),
            "CA1".to_owned(),
            "identity linked: phone +15550001".to_owned()
        )));
    }

    #[test]
    fn a_merge_made_during_a_call_is_on_the_timeline_of_the_customer_merged_into() {
        let events = [
            call(
                "c-into",
                "2026-03-02T09:00:00Z",
                "interaction_started",
                json!({"direction": "inbound"}),
            ),
            // Ingest names the customer merged into on a merge that carries an interaction.
            call(
                "c-into",
                "2026-03-02T09:01:00Z",
                "customers_merged",
                json!({"from_customer": "c-old", "into_customer": "c-into"}),
            ),
        ];
        let answer = journey_of(&fold(&events), "c-into");
        assert_eq!(
            lines(&answer).last().unwrap(),
            &(
                "customers_merged".to_owned(),
                "CA1".to_owned(),
                "customers merged: c-old into c-into".to_owned()
            )
        );
    }

    #[test]
    fn links_merges_and_profiles_without_an_interaction_change_no_journey() {
        let events = [
            event(
                "2026-03-02T09:00:00Z",
                json!({"type": "identity_linked",
                       "customer": {"id": "c-1", "handles": [{"kind": "email", "value": "a@x.com"}]}}),
            ),
            event(
                "2026-03-02T09:00:00Z",
                json!({"type": "customers_merged", "from_customer": "c-2", "into_customer": "c-1"}),
            ),
            event(
                "2026-03-02T09:00:00Z",
                json!({"type": "customer_profile", "customer": {"id": "c-1"},
                       "attributes": {"segment": "sales"}}),
            ),
        ];
        let folded = fold(&events);
        assert!(folded.lines.dump().unwrap().is_empty());
        assert!(folded.positions.dump().unwrap().is_empty());
    }
}
