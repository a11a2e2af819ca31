//! Self-service containment (issue 18 item 5) on a hand-worked fixture: the journeys
//! report's `self_service` figures and the summary's by channel equal the hand count, the
//! same after folding the log again from offset 0, and partials of two partitions merge
//! into the figures of the whole.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use omnilog_events::Event;
use omnilog_views::journey::{
    JourneyReport, JourneyReportPartial, JourneyState, JourneyView, SelfServiceCounts,
    SelfServiceFigures, journeys_report,
};
use omnilog_views::reporting::{GroupBy, ReportingState, ReportingView, SummaryPartial, summary};
use omnilog_views::{LogPosition, NoRecords, View, apply_in_memory};
use serde_json::{Value, json};

/// An event of `customer` at `at` (minutes after 2026-03-02T08:00:00Z).
fn event(customer: &str, minutes: i64, interaction: &str, channel: &str, body: Value) -> Event {
    let at = start() + chrono::TimeDelta::minutes(minutes);
    support::ingested(
        json!({
            "occurred_at": omnilog_events::format_time(&at),
            "customer": {"id": customer},
            "interaction_id": interaction,
            "channel": channel,
        }),
        &body,
    )
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn started() -> Value {
    json!({"type": "interaction_started", "direction": "inbound"})
}

fn ended() -> Value {
    json!({"type": "ended", "reason": "contained"})
}

/// An agent-handled voice call of `customer` starting `minutes` after the fixture's start.
fn call(customer: &str, minutes: i64, id: &str) -> Vec<Event> {
    vec![
        event(customer, minutes, id, "voice", started()),
        event(
            customer,
            minutes + 1,
            id,
            "voice",
            json!({"type": "queued", "queue": "billing"}),
        ),
        event(
            customer,
            minutes + 2,
            id,
            "voice",
            json!({"type": "assigned", "agent_id": "ann"}),
        ),
        event(customer, minutes + 9, id, "voice", ended()),
        event(
            customer,
            minutes + 10,
            id,
            "voice",
            json!({"type": "wrapped_up", "agent_id": "ann", "resolved": true}),
        ),
    ]
}

/// The fixture, one list of events per customer (each customer's in log order):
/// - amy: a chatbot session 08:00–08:05 that ends without a queue or agent: contained;
/// - bob: an IVR call 08:00 that goes to the billing queue and agent ann: escalated;
/// - cid: a chatbot session 08:00–08:05, contained, then a voice call at 11:05 (3 h
///   later): contained and came back;
/// - dee: an IVR session 08:00–08:03, contained, then a voice call 30 h later (the next
///   day 14:03, still in the same journey, which joins within 72 h): contained, did not
///   come back within 24 h;
/// - eve: a chatbot session still running: a session, neither contained nor escalated;
/// - fay: a chatbot session 08:00–08:04, contained, then a proactive notice from the desk
///   an hour later: the desk's doing is no contact, so it did not come back.
///
/// By hand: chatbot 4 sessions (amy cid eve fay), 3 contained (amy cid fay), 0
/// escalated, 1 came back (cid); ivr 2 sessions (bob dee), 1 contained (dee), 1 escalated
/// (bob), 0 came back. In all 6 sessions, 4 contained, 1 escalated, 1 came back.
fn fixture() -> Vec<Vec<Event>> {
    let amy = vec![
        event("amy", 0, "bot-a", "chatbot", started()),
        event(
            "amy",
            1,
            "bot-a",
            "chatbot",
            json!({"type": "message", "direction": "inbound", "author": "customer",
                "text": "where is my parcel"}),
        ),
        event("amy", 5, "bot-a", "chatbot", ended()),
    ];
    let bob = vec![
        event("bob", 0, "ivr-b", "ivr", started()),
        event(
            "bob",
            1,
            "ivr-b",
            "ivr",
            json!({"type": "queued", "queue": "billing"}),
        ),
        event(
            "bob",
            2,
            "ivr-b",
            "ivr",
            json!({"type": "assigned", "agent_id": "ann"}),
        ),
        event("bob", 8, "ivr-b", "ivr", json!({"type": "ended"})),
        event(
            "bob",
            9,
            "ivr-b",
            "ivr",
            json!({"type": "wrapped_up", "agent_id": "ann", "resolved": true}),
        ),
    ];
    let mut cid = vec![
        event("cid", 0, "bot-c", "chatbot", started()),
        event("cid", 5, "bot-c", "chatbot", ended()),
    ];
    cid.extend(call("cid", 3 * 60 + 5, "call-c"));
    let mut dee = vec![
        event("dee", 0, "ivr-d", "ivr", started()),
        event("dee", 3, "ivr-d", "ivr", ended()),
    ];
    dee.extend(call("dee", 30 * 60 + 3, "call-d"));
    let eve = vec![event("eve", 0, "bot-e", "chatbot", started())];
    let fay = vec![
        event("fay", 0, "bot-f", "chatbot", started()),
        event("fay", 4, "bot-f", "chatbot", ended()),
        event(
            "fay",
            64,
            "notice-f",
            "sms",
            json!({"type": "proactive_notice", "reason": "parcel_delayed"}),
        ),
    ];
    vec![amy, bob, cid, dee, eve, fay]
}

/// The fixture's log: customer `i`'s events in partition `i % partitions`.
fn log(partitions: u32) -> Vec<(Event, LogPosition)> {
    let mut next = vec![0u64; partitions as usize];
    let mut entries = Vec::new();
    for (index, events) in fixture().into_iter().enumerate() {
        let partition = index as u32 % partitions;
        for event in events {
            let offset = next[partition as usize];
            next[partition as usize] += 1;
            entries.push((event, LogPosition { partition, offset }));
        }
    }
    entries
}

/// Both views folded from offset 0 over the given entries.
fn fold<'a>(
    entries: impl Iterator<Item = &'a (Event, LogPosition)>,
) -> (JourneyState, ReportingState) {
    let (journey, reporting) = (JourneyView::default(), ReportingView::default());
    let (mut journeys, mut reports) = (journey.new_state(), reporting.new_state());
    for (event, position) in entries {
        apply_in_memory(&journey, &mut journeys, event, *position).unwrap();
        apply_in_memory(&reporting, &mut reports, event, *position).unwrap();
    }
    (journeys, reports)
}

fn journeys_partial(state: &JourneyState) -> JourneyReportPartial {
    journeys_report(
        state,
        &NoRecords,
        start() - chrono::TimeDelta::days(1),
        start() + chrono::TimeDelta::days(7),
    )
    .unwrap()
}

fn by_channel(state: &ReportingState) -> SummaryPartial {
    summary(state, None, None, GroupBy::Channel).unwrap()
}

/// Figures from [sessions, contained, escalated, came back].
fn figures([sessions, contained, escalated, came_back]: [u64; 4]) -> SelfServiceFigures {
    SelfServiceCounts {
        sessions,
        contained,
        escalated,
        came_back,
    }
    .finish()
}

const CHATBOT: [u64; 4] = [4, 3, 0, 1];
const IVR: [u64; 4] = [2, 1, 1, 0];

fn assert_hand_count(journeys: &JourneyReport, summary: &SummaryPartial) {
    let total = &journeys.self_service.total;
    assert_eq!(*total, figures([6, 4, 1, 1]));
    assert_eq!(
        (
            total.containment_rate,
            total.escalation_rate,
            total.came_back_rate
        ),
        (4.0 / 6.0, 1.0 / 6.0, 1.0 / 4.0)
    );
    let expected: BTreeMap<String, SelfServiceFigures> = [
        ("chatbot".to_owned(), figures(CHATBOT)),
        ("ivr".to_owned(), figures(IVR)),
    ]
    .into();
    assert_eq!(journeys.self_service.by_channel, expected);

    let rows = summary.clone().finish().rows;
    let row = |key: &str| rows.iter().find(|row| row.key == key).unwrap();
    assert_eq!(row("chatbot").self_service, Some(figures(CHATBOT)));
    assert_eq!(row("ivr").self_service, Some(figures(IVR)));
    // bob's IVR call reached the billing queue: the ivr row counts it there too.
    assert_eq!((row("ivr").offered, row("ivr").answered), (1, 1));
    // Channels without self-service sessions carry no self-service figures.
    assert_eq!(row("voice").self_service, None);
    assert_eq!(row("voice").offered, 2);
}

#[test]
fn the_self_service_figures_equal_the_hand_count() {
    let entries = log(1);
    let (journeys, reports) = fold(entries.iter());
    let report = journeys_partial(&journeys).finish();
    assert_eq!(report.journeys, 6);
    assert_hand_count(&report, &by_channel(&reports));

    // The JSON of the journeys report: a `self_service` object with its rates flattened in.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["self_service"]["sessions"], 6);
    assert_eq!(json["self_service"]["contained_came_back"], 1);
    assert_eq!(
        json["self_service"]["by_channel"]["ivr"]["escalation_rate"],
        0.5
    );
    // And of a summary row.
    let rows = serde_json::to_value(by_channel(&reports).finish()).unwrap();
    let chatbot = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == "chatbot")
        .unwrap()
        .clone();
    assert_eq!(chatbot["self_service"]["containment_rate"], 0.75);
    let voice = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == "voice")
        .unwrap()
        .clone();
    assert!(voice.get("self_service").is_none(), "{voice}");
}

#[test]
fn a_replay_from_offset_zero_gives_the_same_state_and_figures() {
    let entries = log(3);
    let (journeys, reports) = fold(entries.iter());
    let (again_journeys, again_reports) = fold(entries.iter());
    assert!(journeys == again_journeys);
    assert!(reports == again_reports);
    let report = journeys_partial(&again_journeys).finish();
    assert_eq!(report, journeys_partial(&journeys).finish());
    assert_hand_count(&report, &by_channel(&again_reports));
}

#[test]
fn partials_of_two_partitions_merge_into_the_figures_of_the_whole() {
    let entries = log(2);
    let (first_j, first_r) = fold(entries.iter().filter(|(_, p)| p.partition == 0));
    let (second_j, second_r) = fold(entries.iter().filter(|(_, p)| p.partition == 1));
    let mut journeys = journeys_partial(&first_j);
    journeys.merge(&journeys_partial(&second_j));
    // Partials travel between instances as JSON.
    let journeys: JourneyReportPartial =
        serde_json::from_str(&serde_json::to_string(&journeys).unwrap()).unwrap();
    let mut summary = by_channel(&first_r);
    summary.merge(by_channel(&second_r));
    let summary: SummaryPartial =
        serde_json::from_str(&serde_json::to_string(&summary).unwrap()).unwrap();
    assert_hand_count(&journeys.finish(), &summary);
    // Each half holds only its own customers' sessions.
    let first = journeys_partial(&first_j).finish();
    assert!(first.self_service.total.sessions < 6);
}

#[test]
fn an_escalation_folded_after_the_end_moves_a_session_from_contained_to_escalated() {
    // A late `queued` of a session already ended: the journey view's escalation ignores
    // the order, so the summary's counts move too.
    let events = [
        event("gus", 0, "bot-g", "chatbot", started()),
        event("gus", 5, "bot-g", "chatbot", ended()),
        event("gus", 60, "call-g", "voice", started()),
        event(
            "gus",
            4,
            "bot-g",
            "chatbot",
            json!({"type": "queued", "queue": "billing"}),
        ),
    ];
    let entries: Vec<_> = events
        .into_iter()
        .enumerate()
        .map(|(offset, event)| {
            (
                event,
                LogPosition {
                    partition: 0,
                    offset: offset as u64,
                },
            )
        })
        .collect();
    let (journeys, reports) = fold(entries.iter());
    let expected = figures([1, 0, 1, 0]);
    assert_eq!(
        journeys_partial(&journeys).finish().self_service.total,
        expected
    );
    let rows = by_channel(&reports).finish().rows;
    let chatbot = rows.iter().find(|row| row.key == "chatbot").unwrap();
    assert_eq!(chatbot.self_service, Some(expected));
}
