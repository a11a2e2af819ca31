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
//! - `self_service`: the chatbot and IVR sessions (CONTRACT §3 channels `chatbot` and
//!   `ivr`; one interaction is one session) of those journeys, in total and `by_channel`
//!   (a key only for a channel with sessions):
//!   - `sessions`: every such interaction of the journeys;
//!   - `escalated`: sessions that reached a queue or an agent: a `queued`, an `offered`, an
//!     `assigned`, a `transferred` (to a queue or an agent), or an agent's message or
//!     wrap-up on the session itself. A later interaction on another channel is not an
//!     escalation of the session: it is a contact after it (below);
//!   - `contained`: sessions that ended (`ended` or `abandoned`) without escalating;
//!     sessions still running are neither contained nor escalated;
//!   - `contained_came_back`: contained sessions followed by another contact of the same
//!     customer: an interaction of the journey that is not the desk's doing (not outbound),
//!     starting after the session started (later in the journey's start order) and at
//!     most 24 h after the session's end, in event time. With the journey windows of at
//!     least 24 h (join 72 h, reopen 7 days) such a contact always joins the session's
//!     journey, so looking within the journey finds every one; a session lasting longer than
//!     the reopen window is the exception;
//!   - `containment_rate` = `contained / sessions`, `escalation_rate` =
//!     `escalated / sessions`, `came_back_rate` = `contained_came_back / contained`.
//!
//! Rates are 0.0 when their denominator is 0. A [`JourneyReportPartial`] holds integer
//! counts only, so partials of disjoint partitions merge exactly, in any order, into the
//! partial of all of them; [`JourneyReportPartial::finish`] divides at the end.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::JourneyState;
use super::records::{JourneyFacts, Time, channel_name};
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
    /// Self-service session counts by channel name (chatbot, ivr).
    #[serde(default)]
    pub self_service: BTreeMap<String, SelfServiceCounts>,
}

/// Counts of self-service sessions (see the module's rules). Integers only, so they add.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfServiceCounts {
    pub sessions: u64,
    pub contained: u64,
    pub escalated: u64,
    /// Contained sessions followed by another contact within 24 h of their end.
    pub came_back: u64,
}

impl SelfServiceCounts {
    /// Adds another's counts (of other sessions). Wrapping: a replay of the reporting view
    /// adds up deltas, of which some are below zero (`ViewState::take_sums`).
    pub fn add(&mut self, other: &SelfServiceCounts) {
        self.sessions = self.sessions.wrapping_add(other.sessions);
        self.contained = self.contained.wrapping_add(other.contained);
        self.escalated = self.escalated.wrapping_add(other.escalated);
        self.came_back = self.came_back.wrapping_add(other.came_back);
    }

    /// The figures: counts and rates.
    pub fn finish(&self) -> SelfServiceFigures {
        SelfServiceFigures {
            sessions: self.sessions,
            contained: self.contained,
            escalated: self.escalated,
            contained_came_back: self.came_back,
            containment_rate: ratio(self.contained, self.sessions),
            escalation_rate: ratio(self.escalated, self.sessions),
            came_back_rate: ratio(self.came_back, self.contained),
        }
    }
}

/// The self-service figures of the report, in total or of one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelfServiceFigures {
    pub sessions: u64,
    pub contained: u64,
    pub escalated: u64,
    pub contained_came_back: u64,
    pub containment_rate: f64,
    pub escalation_rate: f64,
    pub came_back_rate: f64,
}

/// The report's `self_service` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelfServiceReport {
    #[serde(flatten)]
    pub total: SelfServiceFigures,
    pub by_channel: BTreeMap<String, SelfServiceFigures>,
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
    pub self_service: SelfServiceReport,
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
        for (channel, counts) in &other.self_service {
            self.self_service
                .entry(channel.clone())
                .or_default()
                .add(counts);
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
        let mut total = SelfServiceCounts::default();
        for counts in self.self_service.values() {
            total.add(counts);
        }
        JourneyReport {
            journeys: self.journeys,
            resolved: self.resolved,
            multi_channel: self.multi_channel,
            channel_switch_rate: ratio(self.multi_channel, self.journeys),
            fcr_rate: ratio(self.first_contact_resolved, self.resolved),
            repeat_contact_rate: ratio(self.reopened, self.ever_resolved),
            top_paths: paths,
            self_service: SelfServiceReport {
                total: total.finish(),
                by_channel: self
                    .self_service
                    .iter()
                    .map(|(channel, counts)| (channel.clone(), counts.finish()))
                    .collect(),
            },
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
        for (code, counts) in &facts.self_service {
            self.self_service
                .entry(channel_name(*code)?.to_owned())
                .or_default()
                .add(counts);
        }
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
    for (_, facts) in state.all_facts(records)? {
        if from <= facts.opened && facts.opened < to {
            partial.add(&facts)?;
        }
    }
    Ok(partial)
}
