//! The engagement view (issue 18 item 3): its state does not depend on how partitions
//! interleave, partials of two partitions merge into the report of the whole, and its
//! index of open triggers lists a customer exactly while a trigger is open.

mod support;

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::Event;
use omnilog_views::engagement::{
    self, EngagementPartial, EngagementState, EngagementView, engagement_report, triggered,
};
use omnilog_views::{LogPosition, NoRecords, View, ViewState, apply_in_memory};
use serde_json::{Value, json};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// An event of `customer` at `minutes` after 08:00.
fn event(customer: &str, minutes: i64, interaction: &str, channel: &str, body: Value) -> Event {
    let at = start() + TimeDelta::minutes(minutes);
    let source = if body["type"] == "proactive_notice" {
        "omnilog.reactor"
    } else {
        "desk"
    };
    support::ingested(
        json!({
            "source": source,
            "source_event_id": format!("{interaction}:{minutes}:{}", body["type"]),
            "occurred_at": omnilog_events::format_time(&at),
            "customer": {"id": customer},
            "interaction_id": interaction,
            "channel": channel,
        }),
        &body,
    )
}

fn inbound() -> Value {
    json!({"type": "interaction_started", "direction": "inbound"})
}

/// Partition 0: ann abandons a call, gets a callback notice, calls back. Partition 1: bob
/// abandons and is held out; an alert fires.
fn partitions() -> [Vec<Event>; 2] {
    let notice = json!({"type": "proactive_notice", "reason": "callback",
        "attributes": {"trigger": "abandoned:V1"}});
    let mut alert = event(
        "billing-api",
        30,
        "alert:fp1",
        "alert",
        json!({"type": "interaction_started", "direction": "inbound"}),
    );
    alert
        .attributes
        .insert("segment".to_owned(), "retail".to_owned());
    [
        vec![
            event("ann", 0, "V1", "voice", inbound()),
            event("ann", 3, "V1", "voice", json!({"type": "abandoned"})),
            event("ann", 13, "notice-1", "voice", notice),
            event("ann", 60, "V2", "voice", inbound()),
            event(
                "ann",
                61,
                "V2",
                "voice",
                json!({"type": "assigned", "agent_id": "a1"}),
            ),
        ],
        vec![
            event("bob", 5, "V3", "voice", inbound()),
            event("bob", 6, "V3", "voice", json!({"type": "abandoned"})),
            support::ingested(
                json!({
                    "source": "omnilog.reactor", "source_event_id": "held",
                    "occurred_at": omnilog_events::format_time(&(start() + TimeDelta::minutes(16))),
                    "customer": {"id": "bob"},
                }),
                &json!({"type": "customer_profile", "attributes": {"holdout.callback": "abandoned:V3"}}),
            ),
            alert,
        ],
    ]
}

fn fold(order: &[(u32, usize)], parts: &[Vec<Event>; 2]) -> EngagementState {
    let mut state = EngagementView.new_state();
    for &(partition, index) in order {
        let event = &parts[partition as usize][index];
        let position = LogPosition {
            partition,
            offset: index as u64,
        };
        apply_in_memory(&EngagementView, &mut state, event, position).unwrap();
    }
    state
}

fn in_order(partition: u32, parts: &[Vec<Event>; 2]) -> Vec<(u32, usize)> {
    (0..parts[partition as usize].len())
        .map(|i| (partition, i))
        .collect()
}

#[test]
fn the_state_does_not_depend_on_how_partitions_interleave_and_partials_merge() {
    let parts = partitions();
    let first_then_second: Vec<_> = in_order(0, &parts)
        .into_iter()
        .chain(in_order(1, &parts))
        .collect();
    let second_then_first: Vec<_> = in_order(1, &parts)
        .into_iter()
        .chain(in_order(0, &parts))
        .collect();
    let zipped: Vec<_> = in_order(0, &parts)
        .into_iter()
        .zip(in_order(1, &parts))
        .flat_map(|(a, b)| [b, a])
        .chain(in_order(0, &parts).into_iter().skip(parts[1].len()))
        .collect();
    let whole = fold(&first_then_second, &parts);
    assert_eq!(
        whole.dump().unwrap(),
        fold(&second_then_first, &parts).dump().unwrap()
    );
    assert_eq!(whole.dump().unwrap(), fold(&zipped, &parts).dump().unwrap());

    // By hand: callback has ann's notice at 08:13, answered by her call at 09:00 (within
    // 24 h); bob held out at 08:16, never back.
    let all = |state: &EngagementState| {
        engagement_report(
            state,
            &NoRecords,
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        )
        .unwrap()
    };
    let answer = all(&whole).finish();
    assert_eq!(answer.rows.len(), 1);
    let row = &answer.rows[0];
    assert_eq!(
        (
            row.reason.as_str(),
            row.notices,
            row.customers,
            row.contacted_within_24h
        ),
        ("callback", 1, 1, 1)
    );
    assert_eq!((row.held_out, row.held_out_contacted_within_24h), (1, 0));
    assert_eq!(row.uplift, Some(1.0));
    let mut merged = EngagementPartial::default();
    merged.merge(all(&fold(&in_order(1, &parts), &parts)));
    merged.merge(all(&fold(&in_order(0, &parts), &parts)));
    assert_eq!(merged, all(&whole));
    // The alert is recorded with its segment.
    let alerts: Vec<_> = engagement::alerts(&whole).collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].1.attributes["segment"], "retail");
}

#[test]
fn the_trigger_index_lists_a_customer_while_a_trigger_is_open() {
    let parts = partitions();
    let hour = |h: u32| start() + TimeDelta::hours(i64::from(h) - 8);
    // After ann's abandonment (08:03) and before she calls back: listed under hour 8 (her
    // wait since 08:00 and her abandonment).
    let early = fold(&[(0, 0), (0, 1)], &parts);
    let listed = |state: &EngagementState, from: u32, to: u32| -> Vec<String> {
        triggered(state, &NoRecords, hour(from), hour(to))
            .unwrap()
            .into_iter()
            .map(|(customer, _)| customer)
            .collect()
    };
    assert_eq!(listed(&early, 8, 8), ["ann"]);
    assert!(listed(&early, 9, 12).is_empty());
    // Her call at 09:00 closes the abandonment and an agent at 09:01 ends her wait: she is
    // no longer listed anywhere.
    let whole = fold(&in_order(0, &parts), &parts);
    assert!(listed(&whole, 0, 23).is_empty());
    assert!(
        !whole.dump().unwrap().iter().any(|(key, _)| key[0] == b'd'),
        "no index entry is left"
    );
    // bob (no agent, never back) stays listed under hour 8.
    let bob = fold(&in_order(1, &parts), &parts);
    assert_eq!(listed(&bob, 7, 9), ["bob"]);
}

#[test]
fn the_trigger_index_answers_alike_before_and_after_the_changes_are_taken() {
    let parts = partitions();
    let hour = |h: u32| start() + TimeDelta::hours(i64::from(h) - 8);
    let listed = |state: &EngagementState| -> Vec<String> {
        triggered(state, &NoRecords, hour(0), hour(23))
            .unwrap()
            .into_iter()
            .map(|(customer, _)| customer)
            .collect()
    };
    // Folded in memory, the moved triggers are brought in step when the changes are taken:
    // until then queries and dumps see them as they are now.
    for mut state in [
        fold(&[(0, 0), (0, 1)], &parts),
        fold(&in_order(0, &parts), &parts),
        fold(&in_order(1, &parts), &parts),
    ] {
        let (answer, dump) = (listed(&state), state.dump().unwrap());
        state.take_changes().unwrap();
        assert_eq!(listed(&state), answer);
        assert_eq!(state.dump().unwrap(), dump);
    }
}
