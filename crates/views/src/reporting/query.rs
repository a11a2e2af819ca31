//! Queries of the reporting view: `GET /v1/reports/summary` and `GET /v1/reports/topics`
//! (CONTRACT §6), as mergeable partials for distributed mode.
//!
//! # Ranges
//!
//! Figures are kept per UTC hour, so `from` and `to` select whole hours: `from` is rounded
//! down and `to` rounded up to the hour, and the hours `h` with `from ≤ h < to` count (the
//! hour starting exactly at `to` does not). Either bound may be absent (unbounded). An empty
//! range (`to` ≤ `from`, or no figures in it) is not an error: it answers no rows, or the
//! single zero row `all` when grouping by `none`.
//!
//! # Figures of a row
//!
//! - `abandonment_rate` = abandoned / offered and `service_level` = answered within the
//!   threshold / offered: 0 when nothing was offered (a rate of nothing is no rate, and 0
//!   keeps the JSON a number).
//! - `asa_seconds`, `aht_seconds`, `csat_avg`, `wait_p50`, `wait_p90`: `null` when their
//!   count is 0, since an average of nothing is unknown, not zero. ASA and AHT are rounded
//!   to the millisecond.
//! - Wait percentiles are nearest-rank (the smallest wait with at least p % of the waits at
//!   or below it) over the merged histogram, so merged partials give exactly the percentile
//!   of the whole.
//!
//! Partials hold only integers, so merging them in any order gives the same answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use omnilog_events::Channel;

use super::{BucketCounts, HOUR_MS, NO_QUEUE, ReportingState, hour_of};
use crate::ViewError;
use crate::journey::{SelfServiceCounts, SelfServiceFigures};
use crate::state::Id;

/// How summary rows are keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// By channel name.
    Channel,
    /// By queue name.
    Queue,
    /// By hour: `2026-03-01T09:00:00Z`.
    Hour,
    /// By UTC day: `2026-03-01`.
    Day,
    /// One row, `all`.
    None,
}

impl GroupBy {
    /// Every grouping, as the API names them.
    pub const ALL: [GroupBy; 5] = [
        GroupBy::Channel,
        GroupBy::Queue,
        GroupBy::Hour,
        GroupBy::Day,
        GroupBy::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Channel => "channel",
            GroupBy::Queue => "queue",
            GroupBy::Hour => "hour",
            GroupBy::Day => "day",
            GroupBy::None => "none",
        }
    }

    /// Reads the `group_by` parameter; anything else is a bad query naming it.
    pub fn parse(text: &str) -> Result<Self, ViewError> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.as_str() == text)
            .ok_or_else(|| ViewError::BadQuery {
                parameter: "group_by".to_owned(),
                message: format!("{text:?} is not one of channel, queue, hour, day, none"),
            })
    }

    fn key(self, hour: i64, channel: &str, queue: &str) -> String {
        match self {
            GroupBy::Channel => channel.to_owned(),
            GroupBy::Queue => queue.to_owned(),
            GroupBy::Hour => hour_start(hour).format("%Y-%m-%dT%H:00:00Z").to_string(),
            GroupBy::Day => hour_start(hour).format("%Y-%m-%d").to_string(),
            GroupBy::None => "all".to_owned(),
        }
    }
}

fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(hour.saturating_mul(HOUR_MS)).unwrap_or_default()
}

/// The hours a query covers: `[first, end)`.
#[derive(Clone, Copy, Debug)]
struct HourRange {
    first: i64,
    end: i64,
}

impl HourRange {
    fn new(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Self {
        HourRange {
            first: from.map_or(i64::MIN, |t| hour_of(t.timestamp_millis())),
            // Rounded up: the hour containing `to` counts unless `to` starts it.
            end: to.map_or(i64::MAX, |t| {
                let ms = t.timestamp_millis();
                hour_of(ms) + i64::from(ms.rem_euclid(HOUR_MS) != 0)
            }),
        }
    }

    fn contains(self, hour: i64) -> bool {
        self.first <= hour && hour < self.end
    }
}

fn channel_of(code: u8) -> Result<&'static str, ViewError> {
    Channel::ALL
        .get(usize::from(code))
        .map(|c| c.as_str())
        .ok_or_else(|| ViewError::Corrupt {
            key: "reporting bucket".to_owned(),
            reason: format!("unknown channel code {code}"),
        })
}

/// One row's figures before they become rates and averages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowPartial {
    pub counts: BucketCounts,
    /// Wait histogram: bucket seconds → entries.
    pub waits: BTreeMap<u32, u64>,
    /// Self-service sessions (chatbot and IVR). Absent from a partial of an older
    /// instance, which had none.
    #[serde(default)]
    pub self_service: SelfServiceCounts,
}

impl RowPartial {
    fn merge(&mut self, other: &RowPartial) {
        self.counts.add(&other.counts);
        for (bucket, n) in &other.waits {
            *self.waits.entry(*bucket).or_insert(0) += n;
        }
        self.self_service.add(&other.self_service);
    }

    fn finish(&self, key: String) -> SummaryRow {
        let c = &self.counts;
        SummaryRow {
            key,
            offered: c.offered,
            answered: c.answered,
            abandoned: c.abandoned,
            abandonment_rate: rate(c.abandoned, c.offered),
            asa_seconds: mean_seconds(c.answer_wait_ms, c.answered),
            service_level: rate(c.answered_in_threshold, c.offered),
            answered_in_threshold: c.answered_in_threshold,
            aht_seconds: mean_seconds(c.handle_ms, c.handled),
            handled: c.handled,
            transfers: c.transfers,
            csat_avg: (c.csat_responses > 0).then(|| c.csat_sum as f64 / c.csat_responses as f64),
            csat_responses: c.csat_responses,
            wait_p50: percentile(&self.waits, 50),
            wait_p90: percentile(&self.waits, 90),
            self_service: (self.self_service.sessions > 0).then(|| self.self_service.finish()),
        }
    }
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Mean of a millisecond sum in seconds, rounded to the millisecond; `None` for no count.
fn mean_seconds(sum_ms: u64, count: u64) -> Option<f64> {
    (count > 0).then(|| {
        // Integer rounding to the nearest millisecond keeps the answer free of the
        // representation noise of dividing twice.
        let mean_ms = (sum_ms + count / 2) / count;
        mean_ms as f64 / 1000.0
    })
}

/// Nearest-rank percentile of the histogram, in seconds; `None` when it is empty.
fn percentile(waits: &BTreeMap<u32, u64>, p: u64) -> Option<u32> {
    let total: u64 = waits.values().sum();
    if total == 0 {
        return None;
    }
    // ceil(p/100 × total), at least 1.
    let rank = (p * total).div_ceil(100).max(1);
    let mut seen = 0;
    for (bucket, n) in waits {
        seen += n;
        if seen >= rank {
            return Some(*bucket);
        }
    }
    waits.keys().next_back().copied()
}

/// A summary as one instance sees it: rows by key. [`SummaryPartial::merge`] the
/// instances' (all of the same grouping), then [`SummaryPartial::finish`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryPartial {
    pub group_by: GroupBy,
    pub rows: BTreeMap<String, RowPartial>,
}

impl SummaryPartial {
    /// No figures yet.
    pub fn empty(group_by: GroupBy) -> Self {
        SummaryPartial {
            group_by,
            rows: BTreeMap::new(),
        }
    }

    /// Adds another instance's rows; both must group alike.
    pub fn merge(&mut self, other: SummaryPartial) {
        debug_assert_eq!(self.group_by, other.group_by, "merging unlike groupings");
        for (key, row) in other.rows {
            self.rows.entry(key).or_default().merge(&row);
        }
    }

    /// The answer: rows by key; grouping by `none` always gives the one row `all`.
    pub fn finish(self) -> SummaryAnswer {
        let mut rows = self.rows;
        if self.group_by == GroupBy::None {
            rows.entry(GroupBy::None.key(0, "", "")).or_default();
        }
        SummaryAnswer {
            rows: rows.into_iter().map(|(key, row)| row.finish(key)).collect(),
        }
    }
}

/// `GET /v1/reports/summary`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SummaryAnswer {
    pub rows: Vec<SummaryRow>,
}

/// One row of a [`SummaryAnswer`]. See the module notes for zeros and nulls.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SummaryRow {
    pub key: String,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub abandonment_rate: f64,
    pub asa_seconds: Option<f64>,
    pub service_level: f64,
    /// The numerator of `service_level`, for clients that re-aggregate.
    pub answered_in_threshold: u64,
    pub aht_seconds: Option<f64>,
    pub handled: u64,
    pub transfers: u64,
    pub csat_avg: Option<f64>,
    pub csat_responses: u64,
    pub wait_p50: Option<u32>,
    pub wait_p90: Option<u32>,
    /// The row's chatbot and IVR sessions (see the view's notes); absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_service: Option<SelfServiceFigures>,
}

/// This instance's summary of the whole hours in `[from, to)` (see the module notes).
pub fn summary(
    state: &ReportingState,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    group_by: GroupBy,
) -> Result<SummaryPartial, ViewError> {
    let range = HourRange::new(from, to);
    let mut partial = SummaryPartial::empty(group_by);
    let start = (range.first, 0u8, Id::new());
    for ((hour, channel, queue), counts) in state.buckets.range(start..) {
        if !range.contains(*hour) {
            break;
        }
        let row = partial
            .rows
            .entry(group_by.key(*hour, channel_of(*channel)?, queue))
            .or_default();
        row.counts.add(counts);
    }
    let start = (range.first, 0u8, Id::new());
    for ((hour, channel, queue), histogram) in state.waits.range(start..) {
        if !range.contains(*hour) {
            break;
        }
        let row = partial
            .rows
            .entry(group_by.key(*hour, channel_of(*channel)?, queue))
            .or_default();
        for (bucket, count) in histogram.iter() {
            *row.waits.entry(*bucket).or_insert(0) += count;
        }
    }
    for ((hour, channel), counts) in state.self_service.range((range.first, 0u8)..) {
        if !range.contains(*hour) {
            break;
        }
        let row = partial
            .rows
            .entry(group_by.key(*hour, channel_of(*channel)?, NO_QUEUE))
            .or_default();
        row.self_service.add(counts);
    }
    Ok(partial)
}

/// Topic counts as one instance sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicsPartial {
    pub counts: BTreeMap<String, u64>,
}

impl TopicsPartial {
    pub fn merge(&mut self, other: TopicsPartial) {
        for (topic, n) in other.counts {
            *self.counts.entry(topic).or_insert(0) += n;
        }
    }

    /// Rows by count descending, then topic.
    pub fn finish(self) -> TopicsAnswer {
        let mut rows: Vec<TopicRow> = self
            .counts
            .into_iter()
            .map(|(topic, count)| TopicRow { topic, count })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.topic.cmp(&b.topic)));
        TopicsAnswer { rows }
    }
}

/// `GET /v1/reports/topics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicsAnswer {
    pub rows: Vec<TopicRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicRow {
    pub topic: String,
    pub count: u64,
}

/// This instance's topic counts over the whole hours in `[from, to)`.
pub fn topics(
    state: &ReportingState,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<TopicsPartial, ViewError> {
    let range = HourRange::new(from, to);
    let mut partial = TopicsPartial::default();
    for ((hour, topic), count) in state.topics.range((range.first, Id::new())..) {
        if !range.contains(*hour) {
            break;
        }
        *partial.counts.entry(topic.to_string()).or_insert(0) += count;
    }
    Ok(partial)
}
