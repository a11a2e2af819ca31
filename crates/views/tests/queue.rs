//! The queue view folded in memory: routing order, the life of an item (abandon, assign,
//! transfer, offers), agents' capacity and availability, mergeable partials, and
//! independence from how partitions interleave.

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::json::event_from_value;
use omnilog_events::{Channel, Event};
use omnilog_views::queue::QueueState;
use omnilog_views::queue::{
    self, AgentsPartial, QueueAnswer, QueueView, QueuesPartial, agent, available_agents, routable,
};
use omnilog_views::{LogPosition, ViewState, apply_in_memory};

type MemoryState = QueueState;
use serde_json::{Value, json};

/// 2026-03-01T09:00:00Z plus `seconds`.
fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .expect("a valid time")
        .with_timezone(&Utc)
        + TimeDelta::seconds(seconds)
}

fn text(time: DateTime<Utc>) -> String {
    omnilog_events::format_time(&time)
}

/// An interaction event of `customer` at `at` seconds.
fn ev(
    at: i64,
    customer: &str,
    interaction: &str,
    channel: &str,
    kind: &str,
    fields: Value,
) -> Event {
    let mut value = json!({
        "occurred_at": text(t(at)),
        "customer": {"id": customer},
        "interaction_id": interaction,
        "channel": channel,
        "type": kind,
    });
    if let (Some(object), Value::Object(fields)) = (value.as_object_mut(), fields) {
        object.extend(fields);
    }
    event_from_value(value).unwrap_or_else(|e| panic!("a valid event: {e}"))
}

fn agent_state(at: i64, agent_id: &str, state: &str, fields: Value) -> Event {
    let mut value = json!({
        "occurred_at": text(t(at)),
        "type": "agent_state",
        "agent_id": agent_id,
        "state": state,
    });
    if let (Some(object), Value::Object(fields)) = (value.as_object_mut(), fields) {
        object.extend(fields);
    }
    event_from_value(value).unwrap_or_else(|e| panic!("a valid event: {e}"))
}

fn queued(at: i64, customer: &str, id: &str, channel: &str, queue: &str, priority: i32) -> Event {
    ev(
        at,
        customer,
        id,
        channel,
        "queued",
        json!({"queue": queue, "priority": priority, "skills": [queue]}),
    )
}

fn with_agent(at: i64, customer: &str, id: &str, channel: &str, kind: &str, agent: &str) -> Event {
    ev(at, customer, id, channel, kind, json!({"agent_id": agent}))
}

fn fold(events: &[Event]) -> MemoryState {
    let mut state = QueueState::default();
    apply_all(&mut state, events);
    state
}

fn apply_all(state: &mut MemoryState, events: &[Event]) {
    for (offset, event) in events.iter().enumerate() {
        let position = LogPosition {
            partition: 0,
            offset: offset as u64,
        };
        apply_in_memory(&QueueView, state, event, position)
            .unwrap_or_else(|e| panic!("applies: {e}"));
    }
}

fn queue_at(state: &MemoryState, name: &str, now: i64) -> QueueAnswer {
    queue::queue(state, name, t(now))
        .expect("reads")
        .unwrap_or_else(|| panic!("queue {name} exists"))
}

fn item_ids(answer: &QueueAnswer) -> Vec<&str> {
    answer
        .items
        .iter()
        .map(|i| i.interaction_id.as_str())
        .collect()
}

#[test]
fn five_items_across_voice_chat_and_email_come_out_in_routing_order() {
    let state = fold(&[
        queued(0, "c1", "i1", "voice", "support", 0),
        queued(10, "c2", "i2", "chat", "support", 1),
        queued(5, "c3", "i3", "email", "support", 0),
        queued(20, "c4", "i4", "voice", "support", 1),
        queued(5, "c5", "i5", "chat", "support", 0),
    ]);
    let answer = queue_at(&state, "support", 100);
    // Priority 1 first (i2 queued before i4), then priority 0 by enqueue time, and i3
    // before i5 at the same time by id.
    assert_eq!(item_ids(&answer), ["i2", "i4", "i1", "i3", "i5"]);
    assert_eq!(answer.waiting, 5);
    // The longest wait is i1's (queued at 0, now 100), whatever its priority.
    assert_eq!(answer.longest_wait_seconds, 100);
    assert_eq!(answer.oldest_interaction_id.as_deref(), Some("i1"));
    let waits: Vec<u64> = answer.items.iter().map(|i| i.wait_seconds).collect();
    assert_eq!(waits, [90, 80, 100, 95, 95]);

    let json = serde_json::to_value(&answer).expect("serializes");
    assert_eq!(
        json["by_channel"],
        json!({"chat": 2, "email": 1, "voice": 2})
    );
    assert_eq!(
        json["agents"],
        json!({"available": 0, "busy": 0, "away": 0, "offline": 0})
    );
    assert_eq!(json["assigned"], json!(0));
    assert_eq!(
        json["items"][0],
        json!({
            "interaction_id": "i2",
            "customer_id": "c2",
            "channel": "chat",
            "priority": 1,
            "enqueued_at": "2026-03-01T09:00:10Z",
            "wait_seconds": 90,
            "total_wait_seconds": 90,
            "skills": ["support"],
        })
    );
}

#[test]
fn ages_at_a_now_before_the_enqueue_are_zero_not_negative() {
    let state = fold(&[queued(50, "c1", "i1", "voice", "support", 0)]);
    let answer = queue_at(&state, "support", 10);
    assert_eq!(answer.longest_wait_seconds, 0);
    assert_eq!(answer.items[0].wait_seconds, 0);
}

#[test]
fn an_abandoned_item_leaves_its_queue() {
    let state = fold(&[
        queued(0, "c1", "i1", "voice", "support", 0),
        queued(5, "c2", "i2", "voice", "support", 0),
        ev(30, "c1", "i1", "voice", "abandoned", json!({})),
    ]);
    let answer = queue_at(&state, "support", 60);
    assert_eq!(item_ids(&answer), ["i2"]);
    assert_eq!(answer.longest_wait_seconds, 55);
    assert_eq!(answer.oldest_interaction_id.as_deref(), Some("i2"));
}

#[test]
fn interactions_that_end_leave_nothing_behind_before_a_checkpoint() {
    let mut state = QueueState::default();
    let mut events = Vec::new();
    for n in 0..1_000 {
        let (customer, interaction) = (format!("c{n}"), format!("i{n}"));
        let at = n * 10;
        events.push(queued(at, &customer, &interaction, "chat", "support", 0));
        events.push(with_agent(
            at + 1,
            &customer,
            &interaction,
            "chat",
            "assigned",
            "a1",
        ));
        let ending = if n % 2 == 0 { "ended" } else { "abandoned" };
        events.push(ev(
            at + 5,
            &customer,
            &interaction,
            "chat",
            ending,
            json!({}),
        ));
    }
    events.push(queued(20_000, "c-open", "i-open", "chat", "support", 0));
    apply_all(&mut state, &events);
    // No checkpoint was taken: an ended interaction that the store never held must not
    // stay as an empty entry (a replay folds millions before its first checkpoint).
    assert_eq!(state.interactions_held(), 1);
}

#[test]
fn an_assigned_item_leaves_the_queue_and_loads_its_agent_until_it_ends() {
    let mut state = fold(&[
        agent_state(
            0,
            "a1",
            "available",
            json!({"skills": ["support"], "capacity": {"chat": 3}}),
        ),
        queued(10, "c1", "i1", "chat", "support", 0),
        queued(11, "c2", "i2", "chat", "support", 0),
        with_agent(40, "c1", "i1", "chat", "assigned", "a1"),
    ]);
    let answer = queue_at(&state, "support", 60);
    assert_eq!(item_ids(&answer), ["i2"]);
    assert_eq!(answer.assigned, 1);
    assert_eq!(answer.agents.available, 1);

    let a1 = agent(&state, "a1").expect("reads").expect("a1 is known");
    let json = serde_json::to_value(&a1).expect("serializes");
    assert_eq!(json["assignments"], json!(["i1"]));
    assert_eq!(json["load"], json!({"chat": 1}));
    assert_eq!(json["capacity"], json!({"chat": 3}));
    assert_eq!(json["state"], json!("available"));
    assert_eq!(json["skills"], json!(["support"]));

    apply_all(
        &mut state,
        &[ev(200, "c1", "i1", "chat", "ended", json!({}))],
    );
    let a1 = agent(&state, "a1").expect("reads").expect("a1 is known");
    assert!(a1.assignments.is_empty());
    assert!(a1.load.is_empty());
    assert_eq!(queue_at(&state, "support", 300).assigned, 0);
}

#[test]
fn a_wrap_up_by_the_holder_ends_the_assignment_and_one_by_another_agent_does_not() {
    let state = fold(&[
        queued(0, "c1", "i1", "email", "support", 0),
        with_agent(10, "c1", "i1", "email", "assigned", "a1"),
        ev(
            20,
            "c1",
            "i1",
            "email",
            "wrapped_up",
            json!({"agent_id": "a2", "resolved": true}),
        ),
    ]);
    let a1 = agent(&state, "a1").expect("reads").expect("known");
    assert_eq!(a1.assignments, ["i1"]);
    let state = fold(&[
        queued(0, "c1", "i1", "email", "support", 0),
        with_agent(10, "c1", "i1", "email", "assigned", "a1"),
        ev(
            20,
            "c1",
            "i1",
            "email",
            "wrapped_up",
            json!({"agent_id": "a1", "resolved": true}),
        ),
    ]);
    let a1 = agent(&state, "a1").expect("reads").expect("known");
    assert!(a1.assignments.is_empty());
    // Nothing of the interaction is left once it is neither waiting nor held.
    assert!(state.dump().unwrap().iter().all(|(k, _)| k[0] != b'i'));
}

#[test]
fn a_transfer_moves_the_item_restarting_its_time_in_queue_but_not_its_total_wait() {
    let state = fold(&[
        queued(0, "c1", "i1", "voice", "billing", 2),
        with_agent(30, "c1", "i1", "voice", "assigned", "a1"),
        ev(
            60,
            "c1",
            "i1",
            "voice",
            "transferred",
            json!({"to_queue": "tech"}),
        ),
        queued(10, "c2", "i2", "chat", "billing", 0),
    ]);
    let billing = queue_at(&state, "billing", 100);
    assert_eq!(item_ids(&billing), ["i2"]);
    assert_eq!(billing.assigned, 0);
    let tech = queue_at(&state, "tech", 100);
    assert_eq!(item_ids(&tech), ["i1"]);
    assert_eq!(tech.items[0].wait_seconds, 40);
    assert_eq!(tech.items[0].total_wait_seconds, 100);
    assert_eq!(tech.longest_wait_seconds, 40);
    // Priority and skills of the last `queued` carry over.
    assert_eq!(tech.items[0].priority, 2);
    assert_eq!(tech.items[0].skills, ["billing"]);
    // The transfer ended a1's assignment.
    let a1 = agent(&state, "a1").expect("reads").expect("known");
    assert!(a1.assignments.is_empty());
}

#[test]
fn a_transfer_while_waiting_moves_the_item_between_queues() {
    let mut state = fold(&[
        queued(0, "c1", "i1", "chat", "billing", 0),
        queued(5, "c2", "i2", "chat", "billing", 0),
    ]);
    assert_eq!(queue_at(&state, "billing", 50).waiting, 2);
    apply_all(
        &mut state,
        &[ev(
            20,
            "c1",
            "i1",
            "chat",
            "transferred",
            json!({"to_queue": "tech"}),
        )],
    );
    let billing = queue_at(&state, "billing", 50);
    assert_eq!(item_ids(&billing), ["i2"]);
    assert_eq!(billing.longest_wait_seconds, 45);
    let tech = queue_at(&state, "tech", 50);
    assert_eq!(tech.waiting, 1);
    assert_eq!(tech.longest_wait_seconds, 30);
    assert_eq!(tech.items[0].total_wait_seconds, 50);
    // Assigned from tech, the item counts as tech's.
    apply_all(
        &mut state,
        &[with_agent(60, "c1", "i1", "chat", "assigned", "a1")],
    );
    assert_eq!(queue_at(&state, "tech", 70).assigned, 1);
    assert_eq!(queue_at(&state, "billing", 70).assigned, 0);
}

#[test]
fn a_transfer_to_an_agent_only_hands_the_interaction_to_that_agent() {
    let state = fold(&[
        queued(0, "c1", "i1", "voice", "billing", 0),
        with_agent(10, "c1", "i1", "voice", "assigned", "a1"),
        ev(
            20,
            "c1",
            "i1",
            "voice",
            "transferred",
            json!({"to_agent": "a2"}),
        ),
    ]);
    assert!(
        agent(&state, "a1")
            .expect("reads")
            .expect("known")
            .assignments
            .is_empty()
    );
    assert_eq!(
        agent(&state, "a2")
            .expect("reads")
            .expect("known")
            .assignments,
        ["i1"]
    );
    assert_eq!(queue_at(&state, "billing", 30).waiting, 0);
}

#[test]
fn queued_again_for_the_same_queue_keeps_its_place_but_takes_the_new_priority() {
    let state = fold(&[
        queued(0, "c1", "i1", "voice", "support", 0),
        queued(5, "c2", "i2", "voice", "support", 0),
        queued(30, "c2", "i2", "voice", "support", 3),
    ]);
    let answer = queue_at(&state, "support", 40);
    assert_eq!(item_ids(&answer), ["i2", "i1"]);
    assert_eq!(answer.items[0].wait_seconds, 35);
    assert_eq!(answer.items[0].priority, 3);
    assert_eq!(answer.waiting, 2);
}

#[test]
fn offers_reserve_an_item_and_declines_or_timeouts_by_that_agent_free_it() {
    let mut state = fold(&[
        agent_state(0, "a1", "available", json!({"capacity": {"chat": 1}})),
        queued(0, "c1", "i1", "chat", "support", 0),
        with_agent(10, "c1", "i1", "chat", "offered", "a1"),
    ]);
    let answer = queue_at(&state, "support", 20);
    assert_eq!(answer.waiting, 1, "a reserved item stays in its queue");
    assert_eq!(answer.reserved, 1);
    assert_eq!(answer.items[0].reserved_for.as_deref(), Some("a1"));
    let json = serde_json::to_value(&answer).expect("serializes");
    assert_eq!(json["items"][0]["reserved_for"], json!("a1"));
    assert!(routable(&state, t(20)).expect("reads").is_empty());
    // The offer uses a1's only chat slot.
    assert_eq!(
        agent(&state, "a1").expect("reads").expect("known").offers,
        ["i1"]
    );
    assert!(available_agents(&state).expect("reads").is_empty());

    // A decline by another agent is stale.
    apply_all(
        &mut state,
        &[with_agent(15, "c1", "i1", "chat", "offer_declined", "a2")],
    );
    assert_eq!(queue_at(&state, "support", 20).reserved, 1);

    apply_all(
        &mut state,
        &[with_agent(16, "c1", "i1", "chat", "offer_declined", "a1")],
    );
    let answer = queue_at(&state, "support", 20);
    assert_eq!(answer.reserved, 0);
    assert_eq!(answer.items[0].reserved_for, None);
    assert!(
        serde_json::to_value(&answer).expect("serializes")["items"][0]
            .get("reserved_for")
            .is_none()
    );
    let free = routable(&state, t(20)).expect("reads");
    assert_eq!(free.len(), 1);
    assert_eq!(free[0].interaction_id, "i1");
    assert_eq!(free[0].channel, Channel::Chat);
    assert_eq!(free[0].skills, ["support"]);

    apply_all(
        &mut state,
        &[
            with_agent(17, "c1", "i1", "chat", "offered", "a2"),
            with_agent(30, "c1", "i1", "chat", "offer_timed_out", "a2"),
        ],
    );
    assert_eq!(queue_at(&state, "support", 40).reserved, 0);
    assert_eq!(
        queue_at(&state, "support", 40).items[0].wait_seconds,
        40,
        "an offer keeps the place in line"
    );
}

#[test]
fn routable_lists_unreserved_items_of_every_queue_by_priority_then_wait() {
    let state = fold(&[
        queued(0, "c1", "i1", "voice", "billing", 0),
        queued(5, "c2", "i2", "chat", "tech", 1),
        queued(3, "c3", "i3", "email", "tech", 0),
        queued(1, "c4", "i4", "chat", "billing", 0),
        with_agent(6, "c4", "i4", "chat", "offered", "a9"),
    ]);
    let items = routable(&state, t(10)).expect("reads");
    let ids: Vec<&str> = items.iter().map(|i| i.interaction_id.as_str()).collect();
    assert_eq!(ids, ["i2", "i1", "i3"]);
    assert_eq!(items[0].queue, "tech");
    assert_eq!(items[1].wait_seconds, 10);
}

#[test]
fn a_chat_agent_with_three_open_chats_is_not_available_for_chat() {
    let mut events = vec![agent_state(
        0,
        "a1",
        "available",
        json!({"capacity": {"chat": 3, "email": 1}}),
    )];
    for n in 1..=3 {
        let id = format!("chat{n}");
        let customer = format!("c{n}");
        events.push(queued(n, &customer, &id, "chat", "support", 0));
        events.push(with_agent(10 + n, &customer, &id, "chat", "assigned", "a1"));
    }
    let mut state = fold(&events);
    let candidates = available_agents(&state).expect("reads");
    assert_eq!(candidates.len(), 1);
    // Full on chat; its one email slot is free.
    assert_eq!(candidates[0].spare, [(Channel::Email, 1)].into());
    let a1 = agent(&state, "a1").expect("reads").expect("known");
    assert_eq!(a1.load, [(Channel::Chat, 3)].into());

    // Two chats now: one chat slot is free again.
    apply_all(
        &mut state,
        &[ev(100, "c1", "chat1", "chat", "ended", json!({}))],
    );
    let candidates = available_agents(&state).expect("reads");
    assert_eq!(
        candidates[0].spare,
        [(Channel::Chat, 1), (Channel::Email, 1)].into()
    );
}

#[test]
fn a_chat_only_agent_at_capacity_is_no_candidate_at_all() {
    let mut events = vec![agent_state(
        0,
        "a1",
        "available",
        json!({"capacity": {"chat": 3}}),
    )];
    for n in 1..=3 {
        let id = format!("chat{n}");
        events.push(queued(n, "c1", &id, "chat", "support", 0));
        events.push(with_agent(10 + n, "c1", &id, "chat", "assigned", "a1"));
    }
    assert!(available_agents(&fold(&events)).expect("reads").is_empty());
}

#[test]
fn a_voice_only_agent_is_never_a_candidate_for_email_and_away_agents_are_none() {
    let state = fold(&[
        agent_state(0, "voice", "available", json!({"capacity": {"voice": 1}})),
        agent_state(
            0,
            "blended",
            "available",
            json!({"capacity": {"voice": 1, "email": 5}}),
        ),
        agent_state(
            0,
            "away",
            "available",
            json!({"capacity": {"voice": 1, "email": 5}}),
        ),
        agent_state(5, "away", "away", json!({})),
        agent_state(0, "busy", "busy", json!({"capacity": {"email": 5}})),
    ]);
    let candidates = available_agents(&state).expect("reads");
    let for_email: Vec<&str> = candidates
        .iter()
        .filter(|c| c.spare.contains_key(&Channel::Email))
        .map(|c| c.agent_id.as_str())
        .collect();
    assert_eq!(for_email, ["blended"]);
    let all: Vec<&str> = candidates.iter().map(|c| c.agent_id.as_str()).collect();
    assert_eq!(all, ["blended", "voice"]);
}

#[test]
fn an_agent_without_declared_capacity_takes_one_of_each_channel() {
    let state = fold(&[
        agent_state(0, "a1", "available", json!({})),
        queued(1, "c1", "i1", "sms", "support", 0),
        with_agent(2, "c1", "i1", "sms", "assigned", "a1"),
    ]);
    let candidates = available_agents(&state).expect("reads");
    assert!(!candidates[0].spare.contains_key(&Channel::Sms));
    assert_eq!(candidates[0].spare.get(&Channel::Voice), Some(&1));
}

#[test]
fn candidates_come_longest_idle_first_counting_the_end_of_the_last_assignment() {
    let state = fold(&[
        agent_state(0, "a1", "available", json!({"capacity": {"voice": 1}})),
        agent_state(10, "a2", "available", json!({"capacity": {"voice": 1}})),
        agent_state(20, "a3", "available", json!({"capacity": {"voice": 1}})),
        // A re-announcement without a change of state does not reset idle time.
        agent_state(25, "a2", "available", json!({"skills": ["support"]})),
        queued(1, "c1", "i1", "voice", "support", 0),
        with_agent(2, "c1", "i1", "voice", "assigned", "a1"),
        ev(30, "c1", "i1", "voice", "ended", json!({})),
    ]);
    let candidates = available_agents(&state).expect("reads");
    let order: Vec<(&str, String)> = candidates
        .iter()
        .map(|c| (c.agent_id.as_str(), text(c.idle_since)))
        .collect();
    assert_eq!(
        order,
        [
            ("a2", text(t(10))),
            ("a3", text(t(20))),
            ("a1", text(t(30))),
        ]
    );
    let a1 = agent(&state, "a1").expect("reads").expect("known");
    assert_eq!(a1.idle_since, Some(text(t(30))));
}

#[test]
fn a_queue_counts_the_agents_skilled_for_it_by_presence() {
    let state = fold(&[
        agent_state(0, "a1", "available", json!({"skills": ["billing"]})),
        agent_state(0, "a2", "busy", json!({"skills": ["billing", "tech"]})),
        agent_state(0, "a3", "away", json!({"skills": ["tech"]})),
        agent_state(0, "a4", "offline", json!({"skills": ["billing"]})),
        queued(1, "c1", "i1", "voice", "billing", 0),
        queued(1, "c2", "i2", "voice", "tech", 0),
    ]);
    let billing = queue_at(&state, "billing", 5);
    assert_eq!(
        (
            billing.agents.available,
            billing.agents.busy,
            billing.agents.away,
            billing.agents.offline
        ),
        (1, 1, 0, 1)
    );
    let tech = queue_at(&state, "tech", 5);
    assert_eq!(
        (
            tech.agents.available,
            tech.agents.busy,
            tech.agents.away,
            tech.agents.offline
        ),
        (0, 1, 1, 0)
    );
}

#[test]
fn when_no_agent_declares_skills_every_agent_counts_for_every_queue() {
    let state = fold(&[
        agent_state(0, "a1", "available", json!({})),
        agent_state(0, "a2", "away", json!({})),
        queued(1, "c1", "i1", "voice", "billing", 0),
    ]);
    let billing = queue_at(&state, "billing", 5);
    assert_eq!((billing.agents.available, billing.agents.away), (1, 1));
}

#[test]
fn unknown_queues_and_agents_answer_none_and_known_ones_are_listed() {
    let state = fold(&[
        agent_state(0, "a1", "available", json!({})),
        queued(1, "c1", "i1", "voice", "billing", 0),
        with_agent(2, "c1", "i1", "voice", "assigned", "ghost"),
    ]);
    assert!(
        queue::queue(&state, "nowhere", t(5))
            .expect("reads")
            .is_none()
    );
    assert!(agent(&state, "nobody").expect("reads").is_none());
    // `a1` is a prefix of no other id here, but scans must not confuse `a1` and `a10`.
    assert!(agent(&state, "a").expect("reads").is_none());
    // An agent seen only through an assignment is listed, offline.
    let all = queue::agents(&state).expect("reads");
    let ids: Vec<&str> = all.iter().map(|a| a.agent_id.as_str()).collect();
    assert_eq!(ids, ["a1", "ghost"]);
    assert_eq!(all[1].assignments, ["i1"]);
    let names: Vec<String> = queue::queues(&state, t(5))
        .expect("reads")
        .into_iter()
        .map(|q| q.queue)
        .collect();
    assert_eq!(names, ["billing"]);
}

/// A desk's events, per customer partition (0 and 1) and the agents topic.
fn desk() -> (Vec<Event>, Vec<Event>, Vec<Event>) {
    let agents = vec![
        agent_state(
            0,
            "a1",
            "available",
            json!({"skills": ["billing"], "capacity": {"voice": 1, "chat": 2}}),
        ),
        agent_state(
            0,
            "a2",
            "available",
            json!({"skills": ["tech"], "capacity": {"chat": 3, "email": 2}}),
        ),
        agent_state(50, "a1", "away", json!({})),
        agent_state(90, "a1", "available", json!({})),
    ];
    let p0 = vec![
        queued(1, "c1", "i1", "voice", "billing", 0),
        with_agent(5, "c1", "i1", "voice", "offered", "a1"),
        with_agent(8, "c1", "i1", "voice", "assigned", "a1"),
        ev(
            40,
            "c1",
            "i1",
            "voice",
            "transferred",
            json!({"to_queue": "tech"}),
        ),
        queued(12, "c3", "i3", "email", "tech", 1),
        queued(20, "c3", "i4", "chat", "billing", 0),
        with_agent(25, "c3", "i4", "chat", "assigned", "a2"),
        ev(70, "c3", "i4", "chat", "ended", json!({})),
    ];
    let p1 = vec![
        queued(2, "c2", "i2", "chat", "billing", 2),
        with_agent(9, "c2", "i2", "chat", "assigned", "a1"),
        queued(15, "c4", "i5", "chat", "tech", 0),
        with_agent(16, "c4", "i5", "chat", "offered", "a2"),
        queued(30, "c5", "i6", "voice", "billing", 0),
        ev(45, "c5", "i6", "voice", "abandoned", json!({})),
        ev(46, "c5", "i6", "voice", "ended", json!({})),
    ];
    (agents, p0, p1)
}

fn fold_partitions(order: &[(u32, &Event)]) -> MemoryState {
    let mut state = QueueState::default();
    let mut offsets = [0u64; 3];
    for (partition, event) in order {
        let offset = &mut offsets[*partition as usize];
        apply_in_memory(
            &QueueView,
            &mut state,
            event,
            LogPosition {
                partition: *partition,
                offset: *offset,
            },
        )
        .expect("applies");
        *offset += 1;
    }
    state
}

#[test]
fn partials_of_two_instances_merge_into_the_answers_of_the_whole() {
    let (agents, p0, p1) = desk();
    let whole: Vec<Event> = agents.iter().chain(&p0).chain(&p1).cloned().collect();
    let whole = fold(&whole);
    // Each instance folds the whole agents topic and its own partition.
    let first = fold(&agents.iter().chain(&p0).cloned().collect::<Vec<_>>());
    let second = fold(&agents.iter().chain(&p1).cloned().collect::<Vec<_>>());

    let now = t(100);
    let mut merged = QueuesPartial::from_state(&first).expect("reads");
    merged.merge(QueuesPartial::from_state(&second).expect("reads"));
    let expected = queue::queues(&whole, now).expect("reads");
    assert_eq!(merged.finish(now), expected);
    // The desk is not trivial: both queues have waiting and assigned work.
    let tech = &expected[1];
    // i3 has priority 1; i5 (queued at 15) waits longer in tech than i1 (transferred in at 40).
    assert_eq!(item_ids(tech), ["i3", "i5", "i1"]);
    assert_eq!(expected[0].assigned, 1);

    let mut agents_merged = AgentsPartial::from_state(&first).expect("reads");
    agents_merged.merge(AgentsPartial::from_state(&second).expect("reads"));
    assert_eq!(
        agents_merged.answers(),
        queue::agents(&whole).expect("reads")
    );
    assert_eq!(
        agents_merged.candidates(),
        available_agents(&whole).expect("reads")
    );
}

#[test]
fn folding_partitions_interleaved_in_two_orders_gives_identical_state() {
    let (agents, p0, p1) = desk();
    let tagged = |p: u32, events: &[Event]| -> Vec<(u32, Event)> {
        events.iter().map(|e| (p, e.clone())).collect()
    };
    let streams = [tagged(2, &agents), tagged(1, &p1), tagged(0, &p0)];

    // One partition after the other, agents last.
    let sequential: Vec<(u32, &Event)> = streams
        .iter()
        .rev()
        .flatten()
        .map(|(p, e)| (*p, e))
        .collect();
    // Round robin, agents first, then partition 1, then partition 0.
    let mut round_robin = Vec::new();
    let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
    for index in 0..longest {
        for stream in &streams {
            if let Some((p, e)) = stream.get(index) {
                round_robin.push((*p, e));
            }
        }
    }
    assert_eq!(round_robin.len(), sequential.len());
    let a = fold_partitions(&sequential);
    let b = fold_partitions(&round_robin);
    assert_eq!(a, b);
    assert!(!a.dump().unwrap().is_empty());
}

/// Interleaves `streams` (each kept in order) by `choices`: each choice picks among the
/// streams that still have events.
fn interleave<'a>(streams: &'a [Vec<(u32, Event)>], choices: &[u8]) -> Vec<(u32, &'a Event)> {
    let mut next = vec![0usize; streams.len()];
    let mut order = Vec::new();
    let mut choices = choices.iter().copied().cycle();
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|&s| next[s] < streams[s].len())
            .collect();
        if open.is_empty() {
            return order;
        }
        let pick = open[usize::from(choices.next().unwrap_or(0)) % open.len()];
        let (partition, event) = &streams[pick][next[pick]];
        order.push((*partition, event));
        next[pick] += 1;
    }
}

proptest::proptest! {
    #[test]
    fn any_interleaving_of_the_partitions_gives_the_same_state(
        choices in proptest::collection::vec(proptest::num::u8::ANY, 1..64)
    ) {
        let (agents, p0, p1) = desk();
        let tagged = |p: u32, events: Vec<Event>| -> Vec<(u32, Event)> {
            events.into_iter().map(|e| (p, e)).collect()
        };
        let streams = [tagged(0, p0), tagged(1, p1), tagged(2, agents)];
        let sequential: Vec<(u32, &Event)> =
            streams.iter().flatten().map(|(p, e)| (*p, e)).collect();
        proptest::prop_assert_eq!(
            fold_partitions(&interleave(&streams, &choices)),
            fold_partitions(&sequential)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Routing: the router's decisions (`plan_offers`) acted on as the router acts on them.

/// One round of the router at `now`: who gets offered what.
fn route(state: &MemoryState, now: i64) -> Vec<queue::Offer> {
    queue::plan_offers(
        &routable(state, t(now)).expect("reads"),
        available_agents(state).expect("reads"),
    )
}

/// What the router appends for its offers when agents auto-accept.
fn accept_all(state: &mut MemoryState, offers: &[queue::Offer], at: i64) {
    let events: Vec<Event> = offers
        .iter()
        .flat_map(|offer| {
            let customer = offer.customer_id.as_deref().expect("a customer");
            let channel = offer.channel.as_str();
            [
                with_agent(
                    at,
                    customer,
                    &offer.interaction_id,
                    channel,
                    "offered",
                    &offer.agent_id,
                ),
                with_agent(
                    at,
                    customer,
                    &offer.interaction_id,
                    channel,
                    "assigned",
                    &offer.agent_id,
                ),
            ]
        })
        .collect();
    apply_all(state, &events);
}

fn offered(offers: &[queue::Offer]) -> Vec<(&str, &str)> {
    offers
        .iter()
        .map(|o| (o.interaction_id.as_str(), o.agent_id.as_str()))
        .collect()
}

#[test]
fn the_router_gives_a_chat_agent_with_capacity_three_three_chats_and_not_a_fourth() {
    let mut events = vec![agent_state(
        0,
        "a1",
        "available",
        json!({"skills": ["support"], "capacity": {"chat": 3}}),
    )];
    for n in 1..=4 {
        events.push(queued(
            n,
            &format!("c{n}"),
            &format!("chat{n}"),
            "chat",
            "support",
            0,
        ));
    }
    let mut state = fold(&events);
    let offers = route(&state, 10);
    assert_eq!(
        offered(&offers),
        [("chat1", "a1"), ("chat2", "a1"), ("chat3", "a1")]
    );
    accept_all(&mut state, &offers, 10);
    assert!(route(&state, 11).is_empty(), "a fourth chat is not offered");
    assert_eq!(item_ids(&queue_at(&state, "support", 11)), ["chat4"]);
    // One chat ends: the fourth is offered.
    apply_all(
        &mut state,
        &[ev(20, "c1", "chat1", "chat", "ended", json!({}))],
    );
    assert_eq!(offered(&route(&state, 21)), [("chat4", "a1")]);
}

#[test]
fn the_router_never_offers_an_email_to_a_voice_only_agent() {
    let mut state = fold(&[
        agent_state(
            0,
            "v1",
            "available",
            json!({"skills": ["support"], "capacity": {"voice": 1}}),
        ),
        queued(1, "c1", "mail1", "email", "support", 5),
    ]);
    assert!(route(&state, 10).is_empty());
    apply_all(
        &mut state,
        &[queued(2, "c2", "call1", "voice", "support", 0)],
    );
    // The higher-priority email waits at the head; the call behind it is routed.
    assert_eq!(offered(&route(&state, 10)), [("call1", "v1")]);
}

#[test]
fn the_router_offers_nothing_to_an_away_agent_and_needs_every_skill() {
    let mut state = fold(&[
        agent_state(0, "a1", "away", json!({"skills": ["support"]})),
        queued(1, "c1", "chat1", "chat", "support", 0),
    ]);
    assert!(route(&state, 10).is_empty());
    apply_all(
        &mut state,
        &[agent_state(
            11,
            "a1",
            "available",
            json!({"skills": ["billing"]}),
        )],
    );
    assert!(route(&state, 12).is_empty(), "a1 lacks the support skill");
    apply_all(
        &mut state,
        &[agent_state(
            13,
            "a1",
            "available",
            json!({"skills": ["billing", "support"]}),
        )],
    );
    assert_eq!(offered(&route(&state, 14)), [("chat1", "a1")]);
}

#[test]
fn the_router_spreads_work_longest_idle_first_and_a_declined_offer_keeps_its_place() {
    let mut state = fold(&[
        agent_state(
            0,
            "late",
            "available",
            json!({"skills": ["support"], "capacity": {"chat": 3}}),
        ),
        agent_state(
            -60,
            "early",
            "available",
            json!({"skills": ["support"], "capacity": {"chat": 3}}),
        ),
        queued(1, "c1", "chat1", "chat", "support", 0),
        queued(2, "c2", "chat2", "chat", "support", 0),
    ]);
    let offers = route(&state, 10);
    assert_eq!(offered(&offers), [("chat1", "early"), ("chat2", "late")]);
    // The offers reserve the items: a second round offers nothing more.
    apply_all(
        &mut state,
        &[
            with_agent(10, "c1", "chat1", "chat", "offered", "early"),
            with_agent(10, "c2", "chat2", "chat", "offered", "late"),
        ],
    );
    assert!(route(&state, 11).is_empty());
    // `early` declines: chat1 is free again, still at the head of its queue.
    apply_all(
        &mut state,
        &[with_agent(
            12,
            "c1",
            "chat1",
            "chat",
            "offer_declined",
            "early",
        )],
    );
    assert_eq!(
        item_ids(&queue_at(&state, "support", 12)),
        ["chat1", "chat2"]
    );
    assert_eq!(
        routable(&state, t(12)).expect("reads")[0].interaction_id,
        "chat1"
    );
    assert_eq!(route(&state, 12).len(), 1);
    // A timed-out offer frees the item the same way.
    apply_all(
        &mut state,
        &[with_agent(
            13,
            "c2",
            "chat2",
            "chat",
            "offer_timed_out",
            "late",
        )],
    );
    assert_eq!(route(&state, 13).len(), 2);
}

#[test]
fn the_router_can_keep_an_item_from_the_agent_who_let_it_go() {
    let state = fold(&[
        agent_state(-60, "early", "available", json!({"skills": ["support"]})),
        agent_state(0, "late", "available", json!({"skills": ["support"]})),
        queued(1, "c1", "chat1", "chat", "support", 0),
    ]);
    let items = routable(&state, t(10)).expect("reads");
    let candidates = available_agents(&state).expect("reads");
    let everyone = queue::plan_offers(&items, candidates.clone());
    assert_eq!(offered(&everyone), [("chat1", "early")]);
    let not_early = queue::plan_offers_with(&items, candidates, |item, agent| {
        !(item.interaction_id == "chat1" && agent.agent_id == "early")
    });
    assert_eq!(offered(&not_early), [("chat1", "late")]);
}
