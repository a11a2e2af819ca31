//! The reporting view folded in memory: every figure of a 29-interaction fixture worked
//! out by hand, whole-hour ranges, empty ranges, bad groupings, merged partials, topics, and
//! independence from how partitions interleave.

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::Event;
use omnilog_events::json::event_from_value;
use omnilog_views::reporting::ReportingState;
use omnilog_views::reporting::{
    GroupBy, ReportingConfig, ReportingView, SelfServiceCounts, SummaryPartial, SummaryRow,
    TopicsPartial, summary, topics,
};
use omnilog_views::{LogPosition, ViewError, ViewState, apply_in_memory};

type MemoryState = ReportingState;
use serde_json::{Value, json};

/// 2026-03-01T09:00:00Z plus `seconds`.
fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .expect("a valid time")
        .with_timezone(&Utc)
        + TimeDelta::seconds(seconds)
}

/// One interaction's events: (seconds after 09:00, type, fields).
struct Contact {
    customer: &'static str,
    id: &'static str,
    channel: &'static str,
    steps: Vec<(i64, &'static str, Value)>,
}

impl Contact {
    fn events(&self) -> Vec<Event> {
        self.steps
            .iter()
            .map(|(at, kind, fields)| {
                let mut value = json!({
                    "occurred_at": omnilog_events::format_time(&t(*at)),
                    "customer": {"id": self.customer},
                    "interaction_id": self.id,
                    "channel": self.channel,
                    "type": kind,
                });
                if let (Some(object), Value::Object(fields)) = (value.as_object_mut(), fields) {
                    object.extend(fields.clone());
                }
                event_from_value(value).unwrap_or_else(|e| panic!("a valid event: {e}"))
            })
            .collect()
    }
}

fn contact(
    customer: &'static str,
    id: &'static str,
    channel: &'static str,
    steps: Vec<(i64, &'static str, Value)>,
) -> Contact {
    Contact {
        customer,
        id,
        channel,
        steps,
    }
}

fn q(queue: &str) -> Value {
    json!({"queue": queue, "priority": 0, "skills": [queue]})
}
fn to_queue(queue: &str) -> Value {
    json!({"to_queue": queue})
}
fn agent(id: &str) -> Value {
    json!({"agent_id": id})
}
fn wrap(topics: &[&str]) -> Value {
    json!({"agent_id": "x", "resolved": true, "topics": topics})
}
fn score(n: u8) -> Value {
    json!({"score": n})
}
fn none() -> Value {
    json!({})
}

/// The fixture: 29 interactions on 09:00–10:59 of 2026-03-01. Seconds are after 09:00, so
/// 3600 is 10:00. Thresholds are the defaults: voice 20 s, chat 60 s, email 3600 s.
/// The figures each bucket must show are worked out beside it.
fn fixture() -> Vec<Contact> {
    vec![
        // ── Bucket A: 09h, voice, billing ─────────────────────────────────────────────
        // offered 8 (v1..v8; v8's second `queued` is the same entry)
        // answered 6 (v1 v2 v4 v5 v7 v8), abandoned 2 (v3; v6 ended while waiting)
        // within 20 s: v1 (10), v4 (20, the bound counts), v5 (5) → 3; SL 3/8 = 0.375
        // ASA (10+30+20+5+60+40)/6 = 165/6 = 27.5 s
        // handled 4 (v1 320, v2 300, v4 400, v7 300) → AHT 1320/4 = 330 s
        //   (v5 was transferred, v8 is still being handled: neither wrapped up)
        // transfers 1 (v5), CSAT v1 5 + v2 3 → 2 responses, avg 4.0
        // waits 5 10 20 30 30 40 45 60 (N 8): p50 = rank 4 = 30, p90 = rank ceil(7.2)=8 = 60
        contact(
            "k1",
            "v1",
            "voice",
            vec![
                (0, "queued", q("billing")),
                (10, "assigned", agent("a1")),
                (310, "ended", none()),
                (330, "wrapped_up", wrap(&["invoice"])),
                (400, "csat", score(5)),
            ],
        ),
        contact(
            "k2",
            "v2",
            "voice",
            vec![
                (60, "queued", q("billing")),
                (90, "assigned", agent("a2")),
                (390, "wrapped_up", wrap(&["invoice", "refund"])),
                (395, "ended", none()),
                (900, "csat", score(3)),
            ],
        ),
        contact(
            "k3",
            "v3",
            "voice",
            vec![
                (120, "queued", q("billing")),
                (165, "abandoned", none()),
                (166, "ended", none()),
            ],
        ),
        contact(
            "k4",
            "v4",
            "voice",
            vec![
                (180, "queued", q("billing")),
                (200, "assigned", agent("a1")),
                (600, "wrapped_up", wrap(&[])),
            ],
        ),
        // v5 is answered in A, then transferred at 10:01:40: a transfer in A and a new
        // entry in bucket D (10h, voice, tech).
        contact(
            "k5",
            "v5",
            "voice",
            vec![
                (240, "queued", q("billing")),
                (245, "assigned", agent("a3")),
                (3700, "transferred", to_queue("tech")),
                (3715, "assigned", agent("b1")),
                (3900, "ended", none()),
                (4000, "wrapped_up", wrap(&[])),
            ],
        ),
        contact(
            "k1",
            "v6",
            "voice",
            vec![(300, "queued", q("billing")), (330, "ended", none())],
        ),
        contact(
            "k2",
            "v7",
            "voice",
            vec![
                (400, "queued", q("billing")),
                (460, "assigned", agent("a2")),
                (760, "wrapped_up", wrap(&[])),
            ],
        ),
        contact(
            "k3",
            "v8",
            "voice",
            vec![
                (500, "queued", q("billing")),
                (520, "queued", q("billing")),
                (540, "assigned", agent("a4")),
            ],
        ),
        // ── Bucket B: 09h, chat, billing ──────────────────────────────────────────────
        // offered 6 (c1..c6), answered 4 (c1 c2 c4 c6), abandoned 1 (c3)
        // within 60 s: c1 (30), c4 (60) → 2; SL 2/6
        // ASA (30+90+60+120)/4 = 75 s; handled 3 (c1 630, c2 600, c4 600) → AHT 610 s
        // transfers 1 (c5, while waiting); CSAT c1 rated 4 then 2: 1 response, avg 2.0
        // waits 30 60 90 120 120 (N 5): p50 = rank 3 = 90, p90 = rank 5 = 120
        contact(
            "k4",
            "c1",
            "chat",
            vec![
                (100, "queued", q("billing")),
                (130, "assigned", agent("a5")),
                (700, "ended", none()),
                (760, "wrapped_up", wrap(&[])),
                (800, "csat", score(4)),
                (820, "csat", score(2)),
            ],
        ),
        contact(
            "k5",
            "c2",
            "chat",
            vec![
                (200, "queued", q("billing")),
                (290, "assigned", agent("a5")),
                (890, "wrapped_up", wrap(&["refund"])),
            ],
        ),
        contact(
            "k1",
            "c3",
            "chat",
            vec![(300, "queued", q("billing")), (420, "abandoned", none())],
        ),
        contact(
            "k2",
            "c4",
            "chat",
            vec![
                (400, "queued", q("billing")),
                (410, "offered", agent("a6")),
                (420, "offer_declined", agent("a6")),
                (460, "assigned", agent("a5")),
                (1060, "wrapped_up", wrap(&[])),
            ],
        ),
        // c5 leaves B by a transfer while waiting (neither answered nor abandoned there)
        // and enters bucket G (09h, chat, tech) at 530.
        contact(
            "k3",
            "c5",
            "chat",
            vec![
                (500, "queued", q("billing")),
                (530, "transferred", to_queue("tech")),
                (590, "assigned", agent("b2")),
                (1190, "wrapped_up", wrap(&[])),
            ],
        ),
        // Queued at 09:58:20 and answered after 10:00: still bucket 09h.
        contact(
            "k4",
            "c6",
            "chat",
            vec![
                (3500, "queued", q("billing")),
                (3620, "assigned", agent("a6")),
            ],
        ),
        // ── Bucket G: 09h, chat, tech (c5 transferred in) ────────────────────────────────
        // offered 1, answered 1 within 60 s (wait 60), ASA 60, handled 1 AHT 600,
        // waits [60]: p50 = p90 = 60
        // ── Bucket C: 09h, email, tech ────────────────────────────────────────────────
        // offered 5, answered 3 (e1 e2 e5), abandoned 1 (e3 ended while waiting), e4 waits
        // within 3600 s: e1 (1800), e5 (100) → 2; SL 2/5 = 0.4
        // ASA (1800+3700+100)/3 = 5600/3 = 1866.667 s (to the ms)
        // handled 3 (e1 1800, e2 600, e5 600) → AHT 1000 s; CSAT e5 1 → avg 1.0
        // waits 100 700 1800 3660 (3700 s is past an hour: kept by the minute, 3660)
        //   p50 = rank 2 = 700, p90 = rank ceil(3.6)=4 = 3660
        contact(
            "k5",
            "e1",
            "email",
            vec![
                (1000, "queued", q("tech")),
                (2800, "assigned", agent("b3")),
                (4600, "wrapped_up", wrap(&["api-error"])),
            ],
        ),
        contact(
            "k1",
            "e2",
            "email",
            vec![
                (1200, "queued", q("tech")),
                (4900, "assigned", agent("b3")),
                (5500, "wrapped_up", wrap(&[])),
            ],
        ),
        contact(
            "k2",
            "e3",
            "email",
            vec![(1300, "queued", q("tech")), (2000, "ended", none())],
        ),
        contact("k3", "e4", "email", vec![(1500, "queued", q("tech"))]),
        contact(
            "k4",
            "e5",
            "email",
            vec![
                (1600, "queued", q("tech")),
                (1700, "assigned", agent("b3")),
                (2000, "csat", score(1)),
                (2300, "wrapped_up", wrap(&[])),
            ],
        ),
        // ── Bucket D: 10h, voice, tech ────────────────────────────────────────────────
        // offered 6 (v5 transferred in at 3700, v9..v13), answered 4 (v5 v9 v11 v12),
        // abandoned 2 (v10, v13); within 20 s: v5 (15), v11 (12), v12 (3) → 3; SL 0.5
        // ASA (15+25+12+3)/4 = 55/4 = 13.75 s
        // handled 3 (v5 4000−3715 = 285, v9 300, v11 200 from the transfer to b5)
        //   → AHT 785/3 = 261.667 s; transfers 1 (v11 to an agent); CSAT v9 4
        // waits 3 10 12 15 25 60 (N 6): p50 = rank 3 = 12, p90 = rank ceil(5.4)=6 = 60
        contact(
            "k5",
            "v9",
            "voice",
            vec![
                (3600, "queued", q("tech")),
                (3625, "assigned", agent("b1")),
                (3925, "wrapped_up", wrap(&["invoice"])),
                (4000, "csat", score(4)),
            ],
        ),
        contact(
            "k1",
            "v10",
            "voice",
            vec![(3650, "queued", q("tech")), (3660, "abandoned", none())],
        ),
        contact(
            "k2",
            "v11",
            "voice",
            vec![
                (3800, "queued", q("tech")),
                (3812, "assigned", agent("b4")),
                (3900, "transferred", json!({"to_agent": "b5"})),
                (4100, "wrapped_up", wrap(&[])),
            ],
        ),
        contact(
            "k3",
            "v12",
            "voice",
            vec![
                (
                    4000,
                    "queued",
                    json!({"queue": "tech", "priority": 1, "skills": []}),
                ),
                (4003, "assigned", agent("b1")),
                (4200, "ended", none()),
            ],
        ),
        contact(
            "k4",
            "v13",
            "voice",
            vec![(4100, "queued", q("tech")), (4160, "abandoned", none())],
        ),
        // ── Bucket E: 10h, chat, tech ─────────────────────────────────────────────────
        // offered 3, answered 2 (c7 30 within, c9 100), abandoned 1 (c8 300); SL 1/3
        // ASA 130/2 = 65 s; handled 2 → AHT 600 s; CSAT c9 5
        // waits 30 100 300: p50 = rank 2 = 100, p90 = rank 3 = 300
        contact(
            "k5",
            "c7",
            "chat",
            vec![
                (4000, "queued", q("tech")),
                (4030, "assigned", agent("b2")),
                (4630, "wrapped_up", wrap(&[])),
            ],
        ),
        contact(
            "k1",
            "c8",
            "chat",
            vec![(4200, "queued", q("tech")), (4500, "abandoned", none())],
        ),
        contact(
            "k2",
            "c9",
            "chat",
            vec![
                (4300, "queued", q("tech")),
                (4400, "assigned", agent("b2")),
                (5000, "wrapped_up", wrap(&[])),
                (5100, "csat", score(5)),
            ],
        ),
        // ── Work without a queue: bucket (10h, email, "(none)") ──────────────────────────
        // o1 is assigned directly at 10:23:20: handled 1, AHT 600 s, nothing offered.
        contact(
            "k3",
            "o1",
            "email",
            vec![
                (5000, "assigned", agent("b3")),
                (5600, "wrapped_up", wrap(&[])),
            ],
        ),
        // s1 is self-service: a topic (counted once though given twice), no figures.
        contact(
            "k4",
            "s1",
            "ivr",
            vec![
                (
                    50,
                    "interaction_started",
                    json!({"direction": "inbound", "self_service": true}),
                ),
                (60, "tagged", json!({"topics": ["password", "password"]})),
                (90, "ended", json!({"reason": "contained"})),
            ],
        ),
    ]
}

/// The fixture's events in time order (each interaction's own order kept).
fn history() -> Vec<Event> {
    let mut events: Vec<Event> = fixture().iter().flat_map(Contact::events).collect();
    events.sort_by_key(|e| e.occurred_at);
    events
}

fn fold_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> MemoryState {
    let view = ReportingView::default();
    let mut state = ReportingState::default();
    for (offset, event) in events.into_iter().enumerate() {
        let position = LogPosition {
            partition: 0,
            offset: offset as u64,
        };
        apply_in_memory(&view, &mut state, event, position)
            .unwrap_or_else(|e| panic!("applies: {e}"));
    }
    state
}

fn report(state: &MemoryState, group_by: GroupBy) -> Vec<SummaryRow> {
    summary(state, None, None, group_by)
        .expect("reads")
        .finish()
        .rows
}

/// A row from its figures; the rates are given as fractions so the arithmetic shows.
#[allow(clippy::too_many_arguments)]
fn row(
    key: &str,
    [offered, answered, abandoned, in_threshold]: [u64; 4],
    asa: Option<f64>,
    [handled, transfers]: [u64; 2],
    aht: Option<f64>,
    (csat_avg, csat_responses): (Option<f64>, u64),
    (p50, p90): (Option<u32>, Option<u32>),
) -> SummaryRow {
    let rate = |part: u64| {
        if offered == 0 {
            0.0
        } else {
            part as f64 / offered as f64
        }
    };
    SummaryRow {
        key: key.to_owned(),
        offered,
        answered,
        abandoned,
        abandonment_rate: rate(abandoned),
        asa_seconds: asa,
        service_level: rate(in_threshold),
        answered_in_threshold: in_threshold,
        aht_seconds: aht,
        handled,
        transfers,
        csat_avg,
        csat_responses,
        wait_p50: p50,
        wait_p90: p90,
        self_service: None,
    }
}

/// `row` with the self-service figures of its sessions: [sessions, contained, escalated,
/// contained and came back].
fn with_sessions(
    mut row: SummaryRow,
    [sessions, contained, escalated, came_back]: [u64; 4],
) -> SummaryRow {
    row.self_service = Some(
        SelfServiceCounts {
            sessions,
            contained,
            escalated,
            came_back,
        }
        .finish(),
    );
    row
}

/// The fixture's one self-service session, s1 (k4's IVR call, 09:00:50–09:01:30): contained;
/// k4 contacts the desk again within 24 h (v13 queued at 10:08:20, among others), so it
/// came back.
const S1: [u64; 4] = [1, 1, 0, 1];

#[test]
fn the_fixture_has_about_thirty_interactions_over_three_channels_and_two_queues() {
    assert_eq!(fixture().len(), 29);
}

#[test]
fn every_figure_of_the_whole_fixture_matches_the_hand_count() {
    let state = fold_events(&history());
    // Sums of the buckets A B G C D E and (none):
    // offered 8+6+1+5+6+3 = 29; answered 6+4+1+3+4+2 = 20; abandoned 2+1+0+1+2+1 = 7
    // within threshold 3+2+1+2+3+1 = 12; ASA (165+300+60+5600+55+130)/20 = 6310/20 = 315.5
    // handled 4+3+1+3+3+2+1 = 17, AHT (1320+1830+600+3000+785+1200+600)/17 = 9335/17
    //   = 549.118 s (to the ms); transfers 1+1+1 = 3
    // CSAT 5+3 (A) 2 (B) 1 (C) 4 (D) 5 (E) = 20 over 6 responses
    // waits, N 27: 3 5 10 10 12 15 20 25 30 30 30 30 40 45 [60] 60 60 60 90 100 100 120
    //   120 300 [700] 1800 3660 → p50 = rank 14 = 45, p90 = rank ceil(24.3)=25 = 700
    assert_eq!(
        report(&state, GroupBy::None),
        [with_sessions(
            row(
                "all",
                [29, 20, 7, 12],
                Some(315.5),
                [17, 3],
                Some(549.118),
                (Some(20.0 / 6.0), 6),
                (Some(45), Some(700)),
            ),
            S1
        )]
    );
}

#[test]
fn figures_by_channel_match_the_hand_count() {
    let state = fold_events(&history());
    assert_eq!(
        report(&state, GroupBy::Channel),
        [
            // chat = B + G + E: offered 6+1+3, answered 4+1+2, abandoned 1+0+1,
            // within 2+1+1; ASA (300+60+130)/7 = 70; handled 3+1+2, AHT
            // (1830+600+1200)/6 = 605; transfers 1; CSAT 2 and 5 → 3.5
            // waits 30 30 60 60 [90] 100 120 120 [300]: p50 rank 5 = 90, p90 rank 9 = 300
            row(
                "chat",
                [10, 7, 2, 4],
                Some(70.0),
                [6, 1],
                Some(605.0),
                (Some(3.5), 2),
                (Some(90), Some(300))
            ),
            // email = C + (none): handled 3+1, AHT (3000+600)/4 = 900
            row(
                "email",
                [5, 3, 1, 2],
                Some(1866.667),
                [4, 0],
                Some(900.0),
                (Some(1.0), 1),
                (Some(700), Some(3660)),
            ),
            // ivr: no queue figures, only its self-service session s1.
            with_sessions(
                row("ivr", [0; 4], None, [0, 0], None, (None, 0), (None, None)),
                S1
            ),
            // voice = A + D: offered 14, answered 10, abandoned 4, within 6
            // ASA (165+55)/10 = 22; handled 4+3, AHT (1320+785)/7 = 300.714; transfers 2
            // CSAT 5 3 4 → 4.0; waits 3 5 10 10 12 15 [20] 25 30 30 40 45 [60] 60:
            // p50 rank 7 = 20, p90 rank ceil(12.6)=13 = 60
            row(
                "voice",
                [14, 10, 4, 6],
                Some(22.0),
                [7, 2],
                Some(300.714),
                (Some(4.0), 3),
                (Some(20), Some(60))
            ),
        ]
    );
}

#[test]
fn figures_by_queue_match_the_hand_count_and_unqueued_work_has_its_own_row() {
    let state = fold_events(&history());
    assert_eq!(
        report(&state, GroupBy::Queue),
        [
            // (none): o1 only. Nothing offered: rates 0, averages of nothing null. The
            // self-service session s1 counts here too.
            with_sessions(
                row(
                    "(none)",
                    [0, 0, 0, 0],
                    None,
                    [1, 0],
                    Some(600.0),
                    (None, 0),
                    (None, None)
                ),
                S1
            ),
            // billing = A + B: offered 14, answered 10, abandoned 3, within 5
            // ASA 465/10 = 46.5; handled 7, AHT 3150/7 = 450; transfers 2
            // CSAT 5 3 2 → 10/3; waits 5 10 20 30 30 30 [40] 45 60 60 90 [120] 120:
            // p50 rank 7 = 40, p90 rank ceil(11.7)=12 = 120
            row(
                "billing",
                [14, 10, 3, 5],
                Some(46.5),
                [7, 2],
                Some(450.0),
                (Some(10.0 / 3.0), 3),
                (Some(40), Some(120))
            ),
            // tech = G + C + D + E: offered 1+5+6+3, answered 1+3+4+2, abandoned 0+1+2+1,
            // within 1+2+3+1; ASA (60+5600+55+130)/10 = 584.5; handled 1+3+3+2 = 9,
            // AHT (600+3000+785+1200)/9 = 620.556; transfers 1 (v11); CSAT 1 4 5 → 10/3
            // waits 3 10 12 15 25 30 [60] 60 100 100 300 700 [1800] 3660:
            // p50 rank 7 = 60, p90 rank ceil(12.6)=13 = 1800
            row(
                "tech",
                [15, 10, 4, 7],
                Some(584.5),
                [9, 1],
                Some(620.556),
                (Some(10.0 / 3.0), 3),
                (Some(60), Some(1800))
            ),
        ]
    );
}

#[test]
fn figures_by_hour_and_day_match_the_hand_count() {
    let state = fold_events(&history());
    // 09h = A + B + G + C: offered 8+6+1+5, answered 6+4+1+3, abandoned 2+1+0+1,
    //   within 3+2+1+2; ASA (165+300+60+5600)/14 = 437.5; handled 4+3+1+3 = 11,
    //   AHT 6750/11 = 613.636; transfers 2 (v5 counts in A, its entry's hour)
    //   CSAT 5 3 2 1 → 2.75; waits (N 18) 5 10 20 30 30 30 40 45 [60] 60 60 90 100 120
    //   120 700 [1800] 3660 → p50 rank 9 = 60, p90 rank ceil(16.2)=17 = 1800
    // and s1, which started at 09:00:50.
    let nine = with_sessions(
        row(
            "2026-03-01T09:00:00Z",
            [20, 14, 4, 8],
            Some(437.5),
            [11, 2],
            Some(613.636),
            (Some(2.75), 4),
            (Some(60), Some(1800)),
        ),
        S1,
    );
    // 10h = D + E + (none): offered 6+3, answered 4+2, abandoned 2+1, within 3+1
    //   ASA (55+130)/6 = 30.833; handled 3+2+1 = 6, AHT (785+1200+600)/6 = 430.833
    //   transfers 1; CSAT 4 5 → 4.5; waits 3 10 12 15 [25] 30 60 100 [300]:
    //   p50 rank 5 = 25, p90 rank 9 = 300
    let ten = row(
        "2026-03-01T10:00:00Z",
        [9, 6, 3, 4],
        Some(30.833),
        [6, 1],
        Some(430.833),
        (Some(4.5), 2),
        (Some(25), Some(300)),
    );
    assert_eq!(report(&state, GroupBy::Hour), [nine.clone(), ten]);
    // One day: the same figures as the whole.
    let day = report(&state, GroupBy::Day);
    let mut all = report(&state, GroupBy::None);
    all[0].key = "2026-03-01".to_owned();
    assert_eq!(day, all);

    // `from` rounds down and `to` up to whole hours: 09:30–09:45 is the hour 09h.
    let within_nine = summary(&state, Some(t(1800)), Some(t(2700)), GroupBy::None)
        .expect("reads")
        .finish()
        .rows;
    let mut expected = nine;
    expected.key = "all".to_owned();
    assert_eq!(within_nine, [expected.clone()]);
    // `to` exactly on an hour excludes the hour it starts: 09:00–10:00 is 09h only.
    let to_ten = summary(&state, Some(t(0)), Some(t(3600)), GroupBy::None)
        .expect("reads")
        .finish()
        .rows;
    assert_eq!(to_ten, [expected]);
    // 10:00:01–10:00:02 is the hour 10h.
    let hours = summary(&state, Some(t(3601)), Some(t(3602)), GroupBy::Hour)
        .expect("reads")
        .finish()
        .rows;
    assert_eq!(hours.len(), 1);
    assert_eq!(hours[0].key, "2026-03-01T10:00:00Z");
}

#[test]
fn an_empty_range_answers_no_rows_or_a_zero_row_never_an_error() {
    let state = fold_events(&history());
    let later = DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
        .expect("a valid time")
        .with_timezone(&Utc);
    for group_by in [
        GroupBy::Channel,
        GroupBy::Queue,
        GroupBy::Hour,
        GroupBy::Day,
    ] {
        let rows = summary(&state, Some(later), None, group_by)
            .expect("reads")
            .finish()
            .rows;
        assert!(rows.is_empty(), "{group_by:?}");
    }
    let zero = row(
        "all",
        [0, 0, 0, 0],
        None,
        [0, 0],
        None,
        (None, 0),
        (None, None),
    );
    let rows = summary(&state, Some(later), None, GroupBy::None)
        .expect("reads")
        .finish()
        .rows;
    assert_eq!(rows, std::slice::from_ref(&zero));
    // `to` before `from`, and an empty state, are empty ranges too.
    let rows = summary(&state, Some(t(7200)), Some(t(0)), GroupBy::None)
        .expect("reads")
        .finish()
        .rows;
    assert_eq!(rows, std::slice::from_ref(&zero));
    let rows = report(&ReportingState::default(), GroupBy::None);
    assert_eq!(rows, [zero]);
    // Nulls, not NaN, in the JSON.
    let json = serde_json::to_value(
        summary(&ReportingState::default(), None, None, GroupBy::None)
            .expect("reads")
            .finish(),
    )
    .expect("serializes");
    assert_eq!(json["rows"][0]["asa_seconds"], Value::Null);
    assert_eq!(json["rows"][0]["abandonment_rate"], json!(0.0));
    assert_eq!(json["rows"][0]["wait_p90"], Value::Null);
}

#[test]
fn a_bad_group_by_is_an_error_naming_group_by() {
    let error = GroupBy::parse("week").expect_err("week is no grouping");
    match &error {
        ViewError::BadQuery { parameter, message } => {
            assert_eq!(parameter, "group_by");
            assert!(message.contains("week"), "{message}");
        }
        other => panic!("not a bad query: {other:?}"),
    }
    assert!(error.to_string().starts_with("group_by: "));
    for name in ["channel", "queue", "hour", "day", "none"] {
        assert_eq!(GroupBy::parse(name).expect("a grouping").as_str(), name);
    }
}

#[test]
fn the_json_of_a_row_has_the_contract_fields() {
    let state = fold_events(&history());
    let json = serde_json::to_value(
        summary(&state, None, None, GroupBy::Queue)
            .expect("reads")
            .finish(),
    )
    .expect("serializes");
    let billing = &json["rows"][1];
    for field in [
        "key",
        "offered",
        "answered",
        "abandoned",
        "abandonment_rate",
        "asa_seconds",
        "service_level",
        "aht_seconds",
        "handled",
        "transfers",
        "csat_avg",
        "csat_responses",
        "wait_p50",
        "wait_p90",
    ] {
        assert!(billing.get(field).is_some(), "no {field}");
    }
    assert_eq!(billing["key"], json!("billing"));
    assert_eq!(billing["asa_seconds"], json!(46.5));
}

#[test]
fn topics_count_tagged_and_wrapped_up_topics_by_the_hour_of_the_event() {
    let state = fold_events(&history());
    // invoice: v1 (09h), v2 (09h), v9 (10h); refund: v2, c2 (09h); api-error: e1 (10h);
    // password: s1 (09h), given twice in one event, counted once.
    let rows = topics(&state, None, None).expect("reads").finish().rows;
    let got: Vec<(&str, u64)> = rows.iter().map(|r| (r.topic.as_str(), r.count)).collect();
    assert_eq!(
        got,
        [
            ("invoice", 3),
            ("refund", 2),
            ("api-error", 1),
            ("password", 1)
        ]
    );
    let nine = topics(&state, Some(t(0)), Some(t(3600)))
        .expect("reads")
        .finish()
        .rows;
    let got: Vec<(&str, u64)> = nine.iter().map(|r| (r.topic.as_str(), r.count)).collect();
    assert_eq!(got, [("invoice", 2), ("refund", 2), ("password", 1)]);
    let json = serde_json::to_value(topics(&state, None, None).expect("reads").finish())
        .expect("serializes");
    assert_eq!(json["rows"][0], json!({"topic": "invoice", "count": 3}));
}

#[test]
fn thresholds_are_configurable() {
    let mut config = ReportingConfig::default();
    assert_eq!(config.threshold(omnilog_events::Channel::Voice), 20);
    assert_eq!(config.threshold(omnilog_events::Channel::Sms), 300);
    assert_eq!(config.threshold(omnilog_events::Channel::Fax), 3600);
    config.thresholds.insert(omnilog_events::Channel::Voice, 30);
    let view = ReportingView::new(config);
    let mut state = ReportingState::default();
    for (offset, event) in history().iter().enumerate() {
        apply_in_memory(
            &view,
            &mut state,
            event,
            LogPosition {
                partition: 0,
                offset: offset as u64,
            },
        )
        .expect("applies");
    }
    // Voice within 30 s: A adds v2 (30) to v1 v4 v5; D adds v9 (25) to v5 v11 v12 → 8.
    let voice = report(&state, GroupBy::Channel)
        .into_iter()
        .find(|r| r.key == "voice")
        .expect("a voice row");
    assert_eq!(voice.answered_in_threshold, 8);
}

#[test]
fn interaction_records_are_dropped_when_nothing_can_need_them() {
    let state = fold_events(&history());
    // Tracked records are under the tag `t`, the id after its one-byte length.
    let tracked: Vec<String> = state
        .dump()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k[0] == b't')
        .map(|(k, _)| String::from_utf8_lossy(&k[2..]).into_owned())
        .collect();
    // Kept: answered or rated (a later rating must land in their bucket), and what still
    // waits (e4). Dropped: what was abandoned (v3 c3 v10 v13 c8), ended while waiting
    // (v6 e3), or never queued (s1).
    for gone in ["v3", "c3", "v10", "v13", "c8", "v6", "e3", "s1"] {
        assert!(
            !tracked.iter().any(|id| id == gone),
            "{gone} is still tracked"
        );
    }
    for kept in ["v1", "v8", "c6", "e4", "o1"] {
        assert!(tracked.iter().any(|id| id == kept), "{kept} is not tracked");
    }
}

/// The fixture's events per partition, by customer: k1 k3 k5 in partition 0, k2 k4 in 1.
fn partitions() -> [Vec<Event>; 2] {
    let mut parts: [Vec<Event>; 2] = Default::default();
    for event in history() {
        let odd = matches!(event.customer_id(), Some("k1" | "k3" | "k5"));
        parts[usize::from(!odd)].push(event);
    }
    parts
}

#[test]
fn partials_of_two_halves_merge_into_the_report_of_the_whole() {
    let whole = fold_events(&history());
    let [first, second] = partitions();
    assert!(!first.is_empty() && !second.is_empty());
    let first = fold_events(&first);
    let second = fold_events(&second);
    for group_by in [
        GroupBy::Channel,
        GroupBy::Queue,
        GroupBy::Hour,
        GroupBy::Day,
        GroupBy::None,
    ] {
        let mut merged = summary(&first, None, None, group_by).expect("reads");
        merged.merge(summary(&second, None, None, group_by).expect("reads"));
        // Partials travel between instances as JSON.
        let text = serde_json::to_string(&merged).expect("serializes");
        let merged: SummaryPartial = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(
            merged.finish(),
            summary(&whole, None, None, group_by)
                .expect("reads")
                .finish(),
            "{group_by:?}"
        );
    }
    let mut merged: TopicsPartial = topics(&first, None, None).expect("reads");
    merged.merge(topics(&second, None, None).expect("reads"));
    assert_eq!(
        merged.finish(),
        topics(&whole, None, None).expect("reads").finish()
    );
}

#[test]
fn folding_partitions_interleaved_in_two_orders_gives_identical_state() {
    let [first, second] = partitions();
    let view = ReportingView::default();
    let fold = |order: Vec<(u32, usize, &Event)>| {
        let mut state = ReportingState::default();
        for (partition, offset, event) in order {
            apply_in_memory(
                &view,
                &mut state,
                event,
                LogPosition {
                    partition,
                    offset: offset as u64,
                },
            )
            .expect("applies");
        }
        state
    };
    let tagged = |p: u32, events: &[Event]| -> Vec<(u32, usize, Event)> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| (p, i, e.clone()))
            .collect()
    };
    let a = tagged(0, &first);
    let b = tagged(1, &second);
    let sequential: Vec<(u32, usize, &Event)> =
        a.iter().chain(&b).map(|(p, o, e)| (*p, *o, e)).collect();
    // Second partition first, then alternating.
    let mut alternating = Vec::new();
    for index in 0..a.len().max(b.len()) {
        for stream in [&b, &a] {
            if let Some((p, o, e)) = stream.get(index) {
                alternating.push((*p, *o, e));
            }
        }
    }
    let one = fold(sequential);
    let other = fold(alternating);
    assert_eq!(one, other);
    assert_eq!(one, fold_events(&history()));
}

proptest::proptest! {
    #[test]
    fn any_interleaving_of_the_partitions_gives_the_same_state(
        choices in proptest::collection::vec(proptest::bool::ANY, 1..64)
    ) {
        let [first, second] = partitions();
        let view = ReportingView::default();
        let mut state = ReportingState::default();
        let (mut a, mut b) = (0usize, 0usize);
        let mut choices = choices.iter().copied().cycle();
        while a < first.len() || b < second.len() {
            let take_first = b >= second.len() || (a < first.len() && choices.next().unwrap_or(true));
            let (partition, offset, event) = if take_first {
                a += 1;
                (0, a - 1, &first[a - 1])
            } else {
                b += 1;
                (1, b - 1, &second[b - 1])
            };
            apply_in_memory(&view, &mut state, event, LogPosition { partition, offset: offset as u64 })
                .expect("applies");
        }
        proptest::prop_assert_eq!(state, fold_events(&history()));
    }
}

/// Interaction r1: rated 5 in billing, transferred to support and rated 1 there.
fn rated_in_billing_then_again_in_support() -> Contact {
    contact(
        "k1",
        "r1",
        "voice",
        vec![
            (0, "queued", q("billing")),
            (10, "assigned", agent("a1")),
            (100, "csat", score(5)),
            (200, "transferred", to_queue("support")),
            (210, "assigned", agent("a2")),
            (300, "csat", score(1)),
        ],
    )
}

/// A rating given in one queue and changed after a transfer to another: the response moves
/// with the interaction, out of the first queue's bucket (before, the first bucket kept the
/// first score and the second subtracted it from whatever it held, stopping at zero).
#[test]
fn a_second_rating_after_a_transfer_leaves_the_bucket_that_counted_the_first() {
    let rated_twice = rated_in_billing_then_again_in_support();
    let rated_once = contact(
        "k2",
        "r2",
        "voice",
        vec![
            (0, "queued", q("billing")),
            (5, "assigned", agent("a3")),
            (50, "csat", score(4)),
        ],
    );
    let mut events: Vec<Event> = [rated_twice, rated_once]
        .iter()
        .flat_map(Contact::events)
        .collect();
    events.sort_by_key(|e| e.occurred_at);
    let rows = report(&fold_events(&events), GroupBy::Queue);
    let csat = |queue: &str| {
        let row = rows.iter().find(|r| r.key == queue).expect("a row");
        (row.csat_avg, row.csat_responses)
    };
    assert_eq!(csat("billing"), (Some(4.0), 1), "{rows:?}");
    assert_eq!(csat("support"), (Some(1.0), 1), "{rows:?}");
}

/// A replay takes the figures apart after each pass ([`ViewState::take_sums`]) and adds the
/// deltas up in its last checkpoint ([`ViewState::add_sum`]). Taken after every event here,
/// the deltas still add up to the figures of one fold: a second rating after a transfer
/// and a self-service session escalated after it was contained take out, in a delta that
/// never counted it, what an earlier delta counted.
#[test]
fn figures_taken_apart_after_every_event_add_up_to_the_figures_of_one_fold() {
    let rated_twice = rated_in_billing_then_again_in_support();
    let escalated_late = contact(
        "k2",
        "bot1",
        "chatbot",
        vec![
            (0, "interaction_started", json!({"direction": "inbound"})),
            (60, "ended", none()),
            (90, "queued", q("billing")),
        ],
    );
    let mut events = history();
    events.extend(rated_twice.events());
    events.extend(escalated_late.events());
    let figures = |entries: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
        entries
            .into_iter()
            .filter(|(key, _)| matches!(key.first(), Some(b'b' | b'w' | b'p' | b's')))
            .collect()
    };
    let whole = figures(fold_events(&events).dump().expect("dumps"));

    let view = ReportingView::default();
    let mut state = ReportingState::default();
    let mut sums: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    let mut wrapped = false;
    for (offset, event) in events.iter().enumerate() {
        let position = LogPosition {
            partition: 0,
            offset: offset as u64,
        };
        apply_in_memory(&view, &mut state, event, position).expect("applies");
        let delta = state.take_sums().expect("taken").encode().expect("encodes");
        assert!(delta.deletes.is_empty(), "sums are never deleted");
        for (key, record) in delta.puts {
            // A delta below zero wraps: its encoding of u64::MAX - n is ten bytes long.
            wrapped |= record.len() >= 10 && key.first() == Some(&b'b');
            match sums.entry(key) {
                std::collections::btree_map::Entry::Vacant(vacant) => {
                    vacant.insert(record);
                }
                std::collections::btree_map::Entry::Occupied(mut sum) => {
                    let key = sum.key().clone();
                    ReportingState::add_sum(&key, sum.get_mut(), &record).expect("adds");
                }
            }
        }
    }
    assert!(wrapped, "a delta took out what an earlier one counted");
    assert_eq!(sums.into_iter().collect::<Vec<_>>(), whole);
    // Taken apart, the figures are no checkpoint's changes.
    assert!(figures(state.dump().expect("dumps")).is_empty());
    let changes = state
        .take_changes()
        .expect("taken")
        .encode()
        .expect("encodes");
    assert!(figures(changes.puts).is_empty());
}
