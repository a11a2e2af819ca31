//! The journeys report (`GET /v1/reports/journeys`): cross-channel figures over the
//! journeys opened in a time range.
//!
//! Definitions (CONTRACT §5, after Amazon Connect):
//! - `journeys`: journeys opened in `[from, to)` (a journey opens at its earliest
//!   interaction's start); `resolved`: those resolved now; `multi_channel`: those using two
//!   or more channels.
//! - `channel_switch_rate` = `multi_channel / journeys`.
//! - `fcr_rate` = journeys resolved on their first agent-handled interaction and never
//!   reopened / resolved journeys.
//! - `repeat_contact_rate` = journeys reopened at least once / journeys resolved at least
//!   once (resolved now, or reopened, since only a resolved journey can be reopened): the
//!   share of resolutions the customer came back on, never above 1.
//! - `top_paths`: the channel sequences of journeys (interactions in start order,
//!   consecutive repeats collapsed: `voice>chat>email`; longer than 12 channels ends in
//!   `>…`), the 10 most common by count, then path.
//!
//! Rates are 0.0 when their denominator is 0. A [`JourneyReportPartial`] holds integer
//! counts only, so partials of disjoint partitions merge exactly, in any order, into the
//! partial of all of them; [`JourneyReportPartial::finish`] divides at the end.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::{JourneyFacts, Time, channel_name};
use super::{FACTS, JourneyState};
use crate::ViewError;
use crate::state::RecordSource;

/// The report's counts over some journeys: what one instance answers for the partitions
/// it owns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyReportPartial {
    pub journeys: u64,
    pub resolved: u64,
    pub ever_resolved: u64,
    pub reopened: u64,
    pub multi_channel: u64,
    pub first_contact_resolved: u64,
    /// Journeys per channel path.
    pub paths: BTreeMap<String, u64>,
}

/// `GET /v1/reports/journeys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JourneyReport {
    pub journeys: u64,
    pub resolved: u64,
    pub multi_channel: u64,
    pub channel_switch_rate: f64,
    pub fcr_rate: f64,
    pub repeat_contact_rate: f64,
    pub top_paths: Vec<PathCount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathCount {
    pub path: String,
    pub count: u64,
}

/// How many paths the report lists.
const TOP_PATHS: usize = 10;

impl JourneyReportPartial {
    /// Adds another partial's counts (of other journeys) to this one.
    pub fn merge(&mut self, other: &JourneyReportPartial) {
        self.journeys += other.journeys;
        self.resolved += other.resolved;
        self.ever_resolved += other.ever_resolved;
        self.reopened += other.reopened;
        self.multi_channel += other.multi_channel;
        self.first_contact_resolved += other.first_contact_resolved;
        for (path, count) in &other.paths {
            *self.paths.entry(path.clone()).or_default() += count;
        }
    }

    /// The report: the rates and the top paths.
    pub fn finish(&self) -> JourneyReport {
        let mut paths: Vec<PathCount> = self
            .paths
            .iter()
            .map(|(path, count)| PathCount {
                path: path.clone(),
                count: *count,
            })
            .collect();
        paths.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)));
        paths.truncate(TOP_PATHS);
        JourneyReport {
            journeys: self.journeys,
            resolved: self.resolved,
            multi_channel: self.multi_channel,
            channel_switch_rate: ratio(self.multi_channel, self.journeys),
            fcr_rate: ratio(self.first_contact_resolved, self.resolved),
            repeat_contact_rate: ratio(self.reopened, self.ever_resolved),
            top_paths: paths,
        }
    }

    fn add(&mut self, facts: &JourneyFacts) -> Result<(), ViewError> {
        self.journeys += 1;
        self.resolved += u64::from(facts.resolved);
        self.ever_resolved += u64::from(facts.resolved || facts.reopened);
        self.reopened += u64::from(facts.reopened);
        self.multi_channel += u64::from(facts.channel_count >= 2);
        self.first_contact_resolved += u64::from(facts.first_contact_resolution);
        let mut path = String::new();
        for code in &facts.path {
            if !path.is_empty() {
                path.push('>');
            }
            path.push_str(channel_name(*code)?);
        }
        if facts.path_truncated {
            path.push_str(">…");
        }
        *self.paths.entry(path).or_default() += 1;
        Ok(())
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The partial report over the journeys in `state` opened in `[from, to)`. Reads every
/// journey's facts record (a few bytes each, in their own table).
pub fn journeys_report(
    state: &JourneyState,
    records: &dyn RecordSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<JourneyReportPartial, ViewError> {
    if to < from {
        return Err(ViewError::BadQuery {
            parameter: "to".to_owned(),
            message: "must not be before `from`".to_owned(),
        });
    }
    let (from, to) = (Time::of(&from), Time::of(&to));
    let mut partial = JourneyReportPartial::default();
    for (_, facts) in state.facts.scan(&[FACTS], records)? {
        if from <= facts.opened && facts.opened < to {
            partial.add(&facts)?;
        }
    }
    Ok(partial)
}
