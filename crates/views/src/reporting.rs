//! The reporting view (CONTRACT §5 "Reporting"): contact-centre figures per hour, channel
//! and queue, after Amazon Connect's and TaskRouter's definitions, plus topic counts.
//!
//! # What is counted where
//!
//! A *queue entry* starts at `queued`, or at a `transferred` with `to_queue` (a transfer to
//! another queue is a new entry in that queue, and counts one transfer in the bucket of the
//! entry it leaves). Its bucket is (the UTC hour of the entry's start, the interaction's
//! channel, the queue). In the entry's bucket:
//!
//! - `offered` +1 when it starts. A `queued` for the queue the interaction already waits in
//!   is the same entry (a re-sent or corrected event), not a new one.
//! - `answered` +1 when it reaches `assigned`; its wait (assigned − start) adds to the ASA
//!   sum, to the wait histogram, and to `answered_in_threshold` when it is at most the
//!   channel's threshold ([`ReportingConfig`]; changing thresholds needs a rebuild).
//! - `abandoned` +1 at `abandoned`, or at `ended` while still waiting (the contact left the
//!   queue unanswered, which is what abandonment measures); its wait adds to the histogram.
//!   An entry left by a transfer or a re-queue is neither answered nor abandoned.
//! - `transfers` +1 for every `transferred` while the entry is the interaction's latest.
//! - `handled` +1 at `wrapped_up` after an assignment: `wrapped_up − assigned` (the latest
//!   assignment) adds to the AHT sum. A transfer or a re-queue ends the agent's handling
//!   without a wrap-up, so only the agent who wraps up counts a handled contact.
//! - `csat`: one response per interaction, in the bucket of its latest entry when it was
//!   rated; a second rating replaces the first: the first leaves the bucket that counted
//!   it and the second counts in the bucket of the latest entry (the same bucket unless a
//!   transfer or a re-queue came between: then the response moves with the interaction).
//!
//! Work that never entered a queue (an assignment, transfer or rating of an interaction
//! without an entry) is counted under the queue [`NO_QUEUE`] in the hour of the event that
//! first needed a bucket, so that the totals by channel and hour include it.
//!
//! Waits and durations are integer milliseconds, clamped at zero when the events' clocks
//! disagree. The wait histogram counts whole seconds (floored) exactly up to an hour, by
//! the minute up to a day and by the hour beyond; percentiles are nearest-rank over the
//! waits of answered and abandoned entries, reported as the bucket's lower bound.
//!
//! Self-service (issue 18, the rules of the journeys report in `journey/report.rs`, counted
//! by the hour of the session's first event and its channel, under the queue [`NO_QUEUE`]):
//! a *session* is an interaction on channel `chatbot` or `ivr`, counted by its first event.
//! It is *escalated* by its first `queued`, `offered`, `assigned`, `transferred`, agent's
//! message or `wrapped_up`; *contained* at `ended` or `abandoned` when not escalated (an
//! escalation folded after that moves it from contained to escalated). A contained
//! session *came back* when the next contact of the same customer folded after its end
//! (an inbound `interaction_started`, an inbound customer message, or a `queued`, of another
//! interaction) occurred after the session's start and at most 24 h after its end; only a
//! customer's latest contained session waits for that contact.
//!
//! Topics (`GET /v1/reports/topics`): each distinct topic of a `tagged` or `wrapped_up`
//! event counts once in the UTC hour of that event.
//!
//! # State
//!
//! | tag | key | record | written by |
//! |---|---|---|---|
//! | `t` | interaction | `Tracked`: the latest entry, waiting since, assigned at | its customer's partition |
//! | `b` | hour, channel, queue | [`BucketCounts`]: integer counts and sums | every partition: sums |
//! | `w` | hour, channel, queue | [`WaitHistogram`]: waits by histogram bucket | every partition: sums |
//! | `p` | hour, topic | `u64`: topic count | every partition: sums |
//! | `s` | hour, channel | [`SelfServiceCounts`]: self-service sessions | every partition: sums |
//! | `v` | customer, interaction | `Session`: a self-service session's bucket and outcome | its customer's partition |
//! | `k` | customer | `Pending`: the customer's latest contained session awaiting a contact | its customer's partition |
//!
//! The figures (`b`, `w`, `p`, `s`) are whole tables in memory, ordered by hour, which the
//! range queries walk (a replay takes them apart pass by pass as deltas, and adds them up
//! in its last checkpoint: `ViewState::take_sums`). Shared records are only integer sums, so the state does not depend
//! on how partitions interleave. A `t` record lives while its interaction waits or awaits a
//! wrap-up (which often follows `ended`); after that it is deleted (an abandoned contact
//! leaves nothing), unless an agent took the interaction or it was rated: then it stays (a
//! few dozen bytes) so that a rating, which may come days later, lands in the interaction's
//! bucket and replaces rather than adds to an earlier one. Those grow with the history, so
//! `t` is a cached table: a record is brought into memory when its interaction's next event
//! comes. `v` records stay (a late event of a session must not count it again), a `k`
//! record goes at the customer's next contact (counted, or too late to count); both are
//! cached tables.
//!
//! Queries live in `query`.

mod query;

pub use crate::journey::{SelfServiceCounts, SelfServiceFigures};
pub use query::{
    GroupBy, RowPartial, SummaryAnswer, SummaryPartial, SummaryRow, TopicRow, TopicsAnswer,
    TopicsPartial, summary, topics,
};

use std::collections::BTreeMap;

use omnilog_events::{Author, Body, Channel, Destination, Direction, Event};
use serde::{Deserialize, Serialize};

use crate::queue::channel_name;
use crate::state::{
    CachedTable, Entries, Evictable, Id, IndexedTable, SmallMap, Snapshot, ViewState, changes_of,
    decode_value, encode_value, evict_together, sorted,
};
use crate::{LogPosition, View, ViewError};

/// The queue name of work that never entered a queue.
pub const NO_QUEUE: &str = "(none)";

const TRACKED: u8 = b't';
const BUCKET: u8 = b'b';
const WAITS: u8 = b'w';
const TOPIC: u8 = b'p';
const SELF_SERVICE: u8 = b's';
const SESSION: u8 = b'v';
const PENDING: u8 = b'k';

/// How long after a contained session's end a contact counts as coming back.
const CAME_BACK_MS: i64 = 24 * HOUR_MS;

const HOUR_MS: i64 = 3_600_000;

/// Service-level thresholds: an answer within this many seconds of the entry counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportingConfig {
    pub thresholds: BTreeMap<Channel, u32>,
}

impl ReportingConfig {
    /// Seconds for channels the map does not name.
    pub const FALLBACK_THRESHOLD: u32 = 3_600;

    /// The threshold of `channel`, in seconds.
    pub fn threshold(&self, channel: Channel) -> u32 {
        self.thresholds
            .get(&channel)
            .copied()
            .unwrap_or(Self::FALLBACK_THRESHOLD)
    }
}

impl Default for ReportingConfig {
    /// Voice 20 s, chat and messaging 60 s, SMS and social 300 s, others an hour.
    fn default() -> Self {
        let thresholds = Channel::ALL
            .iter()
            .map(|&channel| {
                let seconds = match channel {
                    Channel::Voice => 20,
                    Channel::Chat | Channel::Messaging => 60,
                    Channel::Sms | Channel::Social => 300,
                    _ => Self::FALLBACK_THRESHOLD,
                };
                (channel, seconds)
            })
            .collect();
        ReportingConfig { thresholds }
    }
}

/// A [`ReportingConfig`]'s thresholds in milliseconds, by channel, made once: the reports'
/// and the segments' folds read one for every answered or interaction event, where a lookup
/// in the configuration's map was a tree search each (the segments' worker spent 9 % fewer
/// instructions without it, `valgrind --tool=callgrind --separate-threads=yes omnilog
/// replay` of the 200k history).
#[derive(Clone, Debug)]
pub struct ThresholdsMs(Vec<i64>);

impl ThresholdsMs {
    pub fn of(config: &ReportingConfig) -> Self {
        let mut by_channel = vec![0; Channel::ALL.len()];
        for &channel in Channel::ALL {
            by_channel[channel as usize] = i64::from(config.threshold(channel)) * 1_000;
        }
        ThresholdsMs(by_channel)
    }

    /// The threshold of `channel`, in milliseconds.
    pub fn of_channel(&self, channel: Channel) -> i64 {
        self.0[channel as usize]
    }
}

/// The reporting view. See the module documentation.
#[derive(Clone, Debug)]
pub struct ReportingView {
    config: ReportingConfig,
    thresholds_ms: ThresholdsMs,
}

impl Default for ReportingView {
    fn default() -> Self {
        ReportingView::new(ReportingConfig::default())
    }
}

impl ReportingView {
    pub fn new(config: ReportingConfig) -> Self {
        let thresholds_ms = ThresholdsMs::of(&config);
        ReportingView {
            config,
            thresholds_ms,
        }
    }

    pub fn config(&self) -> &ReportingConfig {
        &self.config
    }
}

/// The key of a bucket: (hour, channel code, queue).
pub(crate) type BucketKey = (i64, u8, Id);

/// The reporting view's state. See the module documentation.
#[derive(Clone, Debug)]
pub struct ReportingState {
    tracked: CachedTable<Id, Tracked>,
    buckets: IndexedTable<BucketKey, BucketCounts>,
    /// (hour, channel code, queue) → its waits by bucket.
    waits: IndexedTable<(i64, u8, Id), WaitHistogram>,
    /// (hour, topic) → count.
    topics: IndexedTable<(i64, Id), u64>,
    /// (hour, channel code) → self-service sessions.
    self_service: IndexedTable<(i64, u8), SelfServiceCounts>,
    /// (customer, interaction) → a self-service session.
    sessions: CachedTable<(Id, Id), Session>,
    /// customer → the latest contained session awaiting a contact.
    pending: CachedTable<Id, Pending>,
    /// The figures leave only by [`ViewState::take_sums`] (a replay took them apart).
    sums_apart: bool,
}

impl Default for ReportingState {
    fn default() -> Self {
        ReportingState {
            tracked: CachedTable::new(TRACKED),
            buckets: IndexedTable::new(BUCKET),
            waits: IndexedTable::new(WAITS),
            topics: IndexedTable::new(TOPIC),
            self_service: IndexedTable::new(SELF_SERVICE),
            sessions: CachedTable::new(SESSION),
            pending: CachedTable::new(PENDING),
            sums_apart: false,
        }
    }
}

/// Two states are equal when they hold the same records (their canonical dumps).
impl PartialEq for ReportingState {
    fn eq(&self, other: &Self) -> bool {
        matches!((self.dump(), other.dump()), (Ok(a), Ok(b)) if a == b)
    }
}

impl ViewState for ReportingState {
    fn whole_tags(&self) -> Vec<u8> {
        vec![BUCKET, WAITS, TOPIC, SELF_SERVICE]
    }

    fn restore(&mut self, stored: &[u8], value: Option<&[u8]>) -> Result<(), ViewError> {
        match stored.first() {
            Some(&TRACKED) => return self.tracked.restore(stored, value),
            Some(&SESSION) => return self.sessions.restore(stored, value),
            Some(&PENDING) => return self.pending.restore(stored, value),
            _ => {}
        }
        let value = value
            .ok_or_else(|| ViewError::Storage("a whole table's record without a value".into()))?;
        match stored.first() {
            Some(&BUCKET) => self.buckets.restore(stored, value),
            Some(&WAITS) => self.waits.restore(stored, value),
            Some(&TOPIC) => self.topics.restore(stored, value),
            Some(&SELF_SERVICE) => self.self_service.restore(stored, value),
            _ => Err(ViewError::Corrupt {
                key: String::from_utf8_lossy(stored).into_owned(),
                reason: "not a key of the reporting view".to_owned(),
            }),
        }
    }

    fn take_changes(&mut self) -> Result<Snapshot, ViewError> {
        if self.sums_apart {
            return self.take_pass_changes();
        }
        Ok(changes_of([
            self.tracked.take_changes(),
            self.buckets.take_changes(),
            self.waits.take_changes(),
            self.topics.take_changes(),
            self.self_service.take_changes(),
            self.sessions.take_changes(),
            self.pending.take_changes(),
        ]))
    }

    /// The interactions', sessions' and pending contacts' changes; the hourly figures, which
    /// every pass adds to, wait for the replay's last checkpoint (at 10M events each pass's
    /// checkpoint wrote about 239,000 records, the figures of nearly every hour among them).
    fn take_pass_changes(&mut self) -> Result<Snapshot, ViewError> {
        Ok(changes_of([
            self.tracked.take_changes(),
            self.sessions.take_changes(),
            self.pending.take_changes(),
        ]))
    }

    /// The figures (`b`, `w`, `p`, `s`): whole tables of sums.
    fn take_sums(&mut self) -> Result<Snapshot, ViewError> {
        self.sums_apart = true;
        Ok(changes_of([
            self.buckets.take_all(),
            self.waits.take_all(),
            self.topics.take_all(),
            self.self_service.take_all(),
        ]))
    }

    fn sums_len(&self) -> usize {
        self.buckets.len() + self.waits.len() + self.topics.len() + self.self_service.len()
    }

    fn add_sum(key: &[u8], sum: &mut Vec<u8>, delta: &[u8]) -> Result<(), ViewError> {
        fn add<V: Serialize + serde::de::DeserializeOwned>(
            key: &[u8],
            sum: &mut Vec<u8>,
            delta: &[u8],
            add: impl FnOnce(&mut V, V),
        ) -> Result<(), ViewError> {
            let mut total: V = decode_value(key, sum)?;
            add(&mut total, decode_value(key, delta)?);
            *sum = encode_value(&total)?;
            Ok(())
        }
        match key.first() {
            Some(&BUCKET) => add(key, sum, delta, |t: &mut BucketCounts, d| t.add(&d)),
            Some(&WAITS) => add(
                key,
                sum,
                delta,
                |t: &mut WaitHistogram, d: WaitHistogram| {
                    for (bucket, count) in d {
                        let at = t.entry(bucket).or_insert(0);
                        *at = at.wrapping_add(count);
                    }
                },
            ),
            Some(&TOPIC) => add(key, sum, delta, |t: &mut u64, d: u64| {
                *t = t.wrapping_add(d)
            }),
            Some(&SELF_SERVICE) => add(key, sum, delta, |t: &mut SelfServiceCounts, d| t.add(&d)),
            _ => Err(ViewError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: "not the key of a figure of the reporting view".to_owned(),
            }),
        }
    }

    fn evict(&mut self, budget: usize) {
        evict_together(
            budget,
            &mut [&mut self.tracked, &mut self.sessions, &mut self.pending],
        );
    }

    fn cached_tables(&self) -> Vec<&dyn Evictable> {
        vec![&self.tracked, &self.sessions, &self.pending]
    }

    fn partition_tables(&mut self) -> Vec<&mut dyn Evictable> {
        vec![&mut self.tracked, &mut self.sessions, &mut self.pending]
    }

    fn starts_empty(&mut self) {
        self.tracked.starts_empty();
        self.sessions.starts_empty();
        self.pending.starts_empty();
    }

    fn dump(&self) -> Result<Entries, ViewError> {
        let mut entries = Vec::new();
        self.tracked.dump(&mut entries)?;
        self.buckets.dump(&mut entries)?;
        self.waits.dump(&mut entries)?;
        self.topics.dump(&mut entries)?;
        self.self_service.dump(&mut entries)?;
        self.sessions.dump(&mut entries)?;
        self.pending.dump(&mut entries)?;
        Ok(sorted(entries))
    }
}

/// An interaction's reporting state: `t interaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tracked {
    #[serde(with = "channel_name")]
    channel: Channel,
    /// The bucket of the latest entry (or of the work without one).
    hour: i64,
    /// Inline ([`Id`]): the buckets' keys copy it for every event counted.
    queue: Id,
    /// Start of the entry, while it still waits.
    waiting_since_ms: Option<i64>,
    /// Start of the current agent's handling, until the wrap-up.
    assigned_ms: Option<i64>,
    /// Keep the record once nothing is pending (an agent took it, or it was rated).
    keep: bool,
    /// The rating counted for this interaction.
    csat: Option<u8>,
    /// The bucket (hour, queue) that counted the rating, once a new entry moved the
    /// interaction to another: a second rating takes the first out of it. Boxed: few
    /// interactions are rated and then queued again, and every record carries the field.
    csat_counted_in: Option<Box<(i64, Id)>>,
}

/// The waits of one (hour, channel, queue): `w hour channel queue`, the number of waits in
/// each bucket ([`wait_bucket`]), by bucket; no zero count. Integers only, so partitions
/// add to it in any order.
///
/// One record for the (hour, channel, queue), not one per bucket: keyed by the bucket, each
/// wait second of each queue of each hour was a map entry with its own copy of the queue's
/// name, and at 10M events (about 5,500 hours) the reports' whole tables held about 97 MB
/// (heaptrack of `omnilog replay`).
pub type WaitHistogram = SmallMap<u32, u64>;

/// The figures of one (hour, channel, queue): `b hour channel queue`. Integers only,
/// so partitions add to it in any order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketCounts {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Answered within the channel's threshold.
    pub answered_in_threshold: u64,
    /// Sum of waits of answered entries (ASA's numerator; `answered` is its count).
    pub answer_wait_ms: u64,
    pub handled: u64,
    /// Sum of handle times (AHT's numerator; `handled` is its count).
    pub handle_ms: u64,
    pub transfers: u64,
    pub csat_sum: u64,
    pub csat_responses: u64,
}

impl BucketCounts {
    /// Adds another bucket's figures. Wrapping: a replay adds up deltas
    /// ([`ViewState::take_sums`]), of which some are below zero.
    pub fn add(&mut self, other: &BucketCounts) {
        self.offered = self.offered.wrapping_add(other.offered);
        self.answered = self.answered.wrapping_add(other.answered);
        self.abandoned = self.abandoned.wrapping_add(other.abandoned);
        self.answered_in_threshold = self
            .answered_in_threshold
            .wrapping_add(other.answered_in_threshold);
        self.answer_wait_ms = self.answer_wait_ms.wrapping_add(other.answer_wait_ms);
        self.handled = self.handled.wrapping_add(other.handled);
        self.handle_ms = self.handle_ms.wrapping_add(other.handle_ms);
        self.transfers = self.transfers.wrapping_add(other.transfers);
        self.csat_sum = self.csat_sum.wrapping_add(other.csat_sum);
        self.csat_responses = self.csat_responses.wrapping_add(other.csat_responses);
    }
}

fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS)
}

/// The histogram bucket of a wait: exact seconds up to an hour, minutes up to a day,
/// hours beyond.
fn wait_bucket(wait_ms: u64) -> u32 {
    let seconds = wait_ms / 1000;
    let bucket = match seconds {
        0..=3_600 => seconds,
        3_601..=86_400 => seconds / 60 * 60,
        _ => seconds / 3_600 * 3_600,
    };
    u32::try_from(bucket).unwrap_or(u32::MAX)
}

fn channel_code(channel: Channel) -> u8 {
    channel as u8
}

fn elapsed_ms(from: i64, to: i64) -> u64 {
    u64::try_from(to.saturating_sub(from)).unwrap_or(0)
}

impl View for ReportingView {
    type State = ReportingState;

    fn name(&self) -> &'static str {
        "reporting"
    }

    fn topics(&self) -> &'static [Destination] {
        &[Destination::Interactions]
    }

    /// An interaction's `t` record, a customer's `k` and `v` records are folded from
    /// events of one partition (see the module's table): a replay lets them go once their
    /// partition is folded. The figures, which every partition adds to, stay in memory
    /// (whole tables) and are written as they change.
    fn partition_local(&self) -> bool {
        true
    }

    /// 2: typed tables (layout 1 was a key-value state). 3: self-service sessions. 4: an
    /// (hour, channel, queue)'s waits in one histogram record. 5: a second rating takes the
    /// first out of the bucket that counted it (an interaction's record remembers it).
    fn layout(&self) -> u32 {
        5
    }

    fn new_state(&self) -> ReportingState {
        ReportingState::default()
    }

    fn missing(
        &self,
        state: &ReportingState,
        event: &Event,
        missing: &mut Vec<Vec<u8>>,
    ) -> Result<(), ViewError> {
        let tracks = matches!(
            event.body,
            Body::WrappedUp { .. }
                | Body::Queued { .. }
                | Body::Assigned { .. }
                | Body::Abandoned
                | Body::Ended { .. }
                | Body::Transferred { .. }
                | Body::Csat { .. }
        );
        if tracks
            && let Some(interaction) = event.interaction_id.as_deref()
            && !state.tracked.is_loaded(interaction)
        {
            missing.push(state.tracked.stored_key(interaction)?);
        }
        if let (Some(customer), Some(interaction)) =
            (event.customer_id(), event.interaction_id.as_deref())
        {
            if event.channel.is_some_and(is_self_service) {
                let key = (Id::from(customer), Id::from(interaction));
                if !state.sessions.is_loaded(&key) {
                    missing.push(state.sessions.stored_key(&key)?);
                }
            }
            if is_self_service_contact(event) {
                if !state.pending.is_loaded(customer) {
                    missing.push(state.pending.stored_key(customer)?);
                } else if let Some(pending) = state.pending.peek(customer)
                    && pending.interaction != interaction
                {
                    // A contact marks the pending session as come back: its record too
                    // (asked for in the runtime's next round once `pending` is loaded).
                    let key = (Id::from(customer), Id::from(pending.interaction.as_str()));
                    if !state.sessions.is_loaded(&key) {
                        missing.push(state.sessions.stored_key(&key)?);
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(
        &self,
        state: &mut ReportingState,
        event: &Event,
        _position: LogPosition,
    ) -> Result<(), ViewError> {
        let at = crate::epoch::millis(&event.occurred_at);
        count_self_service(state, event)?;
        let over = match &event.body {
            Body::Tagged { topics } => {
                count_topics(state, topics, at);
                return Ok(());
            }
            Body::WrappedUp { topics, .. } => {
                let mut fold = Fold::open(state, event, false)?;
                fold.wrapped_up();
                let over = fold.finish();
                count_topics(state, topics, at);
                over
            }
            Body::Queued { queue, .. } => {
                let mut fold = Fold::open(state, event, true)?;
                fold.queued(queue);
                fold.finish()
            }
            Body::Assigned { .. } => {
                let mut fold = Fold::open(state, event, true)?;
                fold.assigned(&self.thresholds_ms);
                fold.finish()
            }
            Body::Abandoned => {
                let mut fold = Fold::open(state, event, false)?;
                fold.abandoned();
                fold.finish()
            }
            Body::Ended { .. } => {
                // Ending while waiting is abandoning; ending while held leaves the
                // handling open until the wrap-up, which often follows the end.
                let mut fold = Fold::open(state, event, false)?;
                fold.abandoned();
                fold.finish()
            }
            Body::Transferred { to_queue, to_agent } => {
                let mut fold = Fold::open(state, event, true)?;
                fold.transferred(to_queue.as_deref(), to_agent.is_some());
                fold.finish()
            }
            Body::Csat { score } => {
                let mut fold = Fold::open(state, event, true)?;
                fold.rated(*score);
                fold.finish()
            }
            _ => return Ok(()),
        };
        if over {
            forget(state, event);
        }
        Ok(())
    }
}

/// A self-service session: `v customer interaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Its bucket: the hour of its first event, its channel code.
    hour: i64,
    channel: u8,
    /// The `occurred_at` of its first event folded.
    started_ms: i64,
    escalated: bool,
    /// When it ended contained (while not escalated).
    contained_ms: Option<i64>,
    /// Whether its coming back was counted.
    came_back: bool,
}

/// A customer's latest contained session, awaiting a contact: `k customer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    interaction: String,
    started_ms: i64,
    ended_ms: i64,
}

fn is_self_service(channel: Channel) -> bool {
    matches!(channel, Channel::Chatbot | Channel::Ivr)
}

/// Whether an event escalates a self-service session to a queue or an agent.
fn escalates(body: &Body) -> bool {
    matches!(
        body,
        Body::Queued { .. }
            | Body::Offered { .. }
            | Body::Assigned { .. }
            | Body::Transferred { .. }
            | Body::WrappedUp { .. }
            | Body::Message {
                author: Author::Agent,
                ..
            }
    )
}

/// Whether an event is the customer contacting the desk, for "contained but came back".
fn is_contact(body: &Body) -> bool {
    match body {
        Body::InteractionStarted { direction, .. } => *direction == Direction::Inbound,
        Body::Message {
            direction, author, ..
        } => *direction == Direction::Inbound && *author == Author::Customer,
        Body::Queued { .. } => true,
        _ => false,
    }
}

/// Whether the fold of `event` needs its customer's pending record.
fn is_self_service_contact(event: &Event) -> bool {
    is_contact(&event.body)
        || (event.channel.is_some_and(is_self_service) && escalates(&event.body))
}

/// Counts what `event` changes of self-service sessions (see the module notes). Changes
/// nothing for an event without a customer, an interaction or a channel.
fn count_self_service(state: &mut ReportingState, event: &Event) -> Result<(), ViewError> {
    let (Some(customer), Some(interaction), Some(channel)) = (
        event.customer_id(),
        event.interaction_id.as_deref(),
        event.channel,
    ) else {
        return Ok(());
    };
    let at = crate::epoch::millis(&event.occurred_at);
    // A contact of another interaction answers the customer's pending contained session.
    if is_contact(&event.body)
        && let Some(pending) = state.pending.get(customer)?
        && pending.interaction != interaction
    {
        let pending = pending.clone();
        if at > pending.started_ms && at <= pending.ended_ms.saturating_add(CAME_BACK_MS) {
            let key = (Id::from(customer), Id::from(pending.interaction.as_str()));
            if let Some(session) = state.sessions.get_mut(&key)? {
                session.came_back = true;
                let bucket = (session.hour, session.channel);
                let counts = state
                    .self_service
                    .get_or_insert_with(bucket, SelfServiceCounts::default);
                counts.came_back = counts.came_back.wrapping_add(1);
            }
            state.pending.remove(customer);
        } else if at > pending.ended_ms.saturating_add(CAME_BACK_MS) {
            // Too late to ever count: nothing awaits a contact any more.
            state.pending.remove(customer);
        }
    }
    if !is_self_service(channel) {
        return Ok(());
    }
    let key = (Id::from(customer), Id::from(interaction));
    let mut change = SelfServiceCounts::default();
    if state.sessions.get(&key)?.is_none() {
        change.sessions = 1;
    }
    let session = state.sessions.get_or_insert_with(&key, || Session {
        hour: hour_of(at),
        channel: channel_code(channel),
        started_ms: at,
        escalated: false,
        contained_ms: None,
        came_back: false,
    })?;
    let bucket = (session.hour, session.channel);
    let mut uncount = SelfServiceCounts::default();
    let mut pending = None;
    let mut unpend = false;
    if escalates(&event.body) && !session.escalated {
        session.escalated = true;
        change.escalated = 1;
        if session.contained_ms.take().is_some() {
            // Escalated after all: no longer contained, nor came back.
            uncount.contained = 1;
            uncount.came_back = u64::from(std::mem::take(&mut session.came_back));
            unpend = true;
        }
    } else if matches!(event.body, Body::Ended { .. } | Body::Abandoned)
        && !session.escalated
        && session.contained_ms.is_none()
    {
        session.contained_ms = Some(at);
        change.contained = 1;
        pending = Some(Pending {
            interaction: interaction.to_owned(),
            started_ms: session.started_ms,
            ended_ms: at,
        });
    }
    let counts = state
        .self_service
        .get_or_insert_with(bucket, SelfServiceCounts::default);
    counts.sessions += change.sessions;
    counts.escalated += change.escalated;
    // Wrapping: what is taken out was counted in this bucket, which holds at least that
    // much, but a replay's delta of it may not (`take_sums`).
    counts.contained = counts
        .contained
        .wrapping_add(change.contained)
        .wrapping_sub(uncount.contained);
    counts.came_back = counts.came_back.wrapping_sub(uncount.came_back);
    if let Some(pending) = pending {
        state.pending.insert(Id::from(customer), pending);
    } else if unpend
        && state
            .pending
            .get(customer)?
            .is_some_and(|p| p.interaction == interaction)
    {
        state.pending.remove(customer);
    }
    Ok(())
}

fn count_topics(state: &mut ReportingState, topics: &[String], at: i64) {
    if topics.is_empty() {
        return;
    }
    let hour = hour_of(at);
    // One topic (most taggings and wrap-ups name one) needs no list of the distinct ones.
    if let [topic] = topics {
        *state
            .topics
            .get_or_insert_with((hour, Id::from(topic.as_str())), || 0) += 1;
        return;
    }
    let mut distinct: Vec<&str> = topics.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    for topic in distinct {
        *state
            .topics
            .get_or_insert_with((hour, Id::from(topic)), || 0) += 1;
    }
}

/// One interaction event being folded: its tracked record, changed in place in its table
/// (found once), and the sums it adds to. [`Fold::finish`], which every event that opens a
/// fold calls, says whether the record is to be forgotten.
struct Fold<'a> {
    buckets: &'a mut IndexedTable<BucketKey, BucketCounts>,
    waits: &'a mut IndexedTable<(i64, u8, Id), WaitHistogram>,
    at: i64,
    /// `None` when the event found no record and must not start one.
    tracked: Option<&'a mut Tracked>,
}

impl<'a> Fold<'a> {
    /// Checks the event and loads its interaction's record: an event that cannot be applied
    /// is refused here, before anything changes.
    fn open(
        state: &'a mut ReportingState,
        event: &'a Event,
        create: bool,
    ) -> Result<Self, ViewError> {
        let interaction = event.interaction_id.as_deref().ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without interaction_id".into())
        })?;
        let channel = event.channel.ok_or_else(|| {
            ViewError::Unapplicable("an interaction event without channel".into())
        })?;
        let at = crate::epoch::millis(&event.occurred_at);
        let ReportingState {
            tracked,
            buckets,
            waits,
            ..
        } = state;
        let tracked = if create {
            // Work without a queue entry is counted under NO_QUEUE in this event's hour,
            // unless the event itself starts an entry (which sets the bucket).
            Some(tracked.get_or_insert_with(interaction, || Tracked {
                channel,
                hour: hour_of(at),
                queue: Id::from(NO_QUEUE),
                waiting_since_ms: None,
                assigned_ms: None,
                keep: false,
                csat: None,
                csat_counted_in: None,
            })?)
        } else {
            tracked.get_mut(interaction)?
        };
        Ok(Fold {
            buckets,
            waits,
            at,
            tracked,
        })
    }

    /// Adds to the bucket of the tracked interaction's latest entry.
    fn count(&mut self, change: impl FnOnce(&mut BucketCounts)) {
        let Some(tracked) = self.tracked.as_deref() else {
            return;
        };
        let key = (
            tracked.hour,
            channel_code(tracked.channel),
            tracked.queue.clone(),
        );
        change(self.buckets.get_or_insert_with(key, BucketCounts::default));
    }

    fn count_wait(&mut self, wait_ms: u64) {
        let Some(tracked) = self.tracked.as_deref() else {
            return;
        };
        let key = (
            tracked.hour,
            channel_code(tracked.channel),
            tracked.queue.clone(),
        );
        *self
            .waits
            .get_or_insert_with(key, WaitHistogram::default)
            .entry(wait_bucket(wait_ms))
            .or_insert(0) += 1;
    }

    /// Starts a new entry in `queue` now.
    fn enter(&mut self, queue: &str) {
        let at = self.at;
        if let Some(tracked) = self.tracked.as_deref_mut() {
            if tracked.csat.is_some() && tracked.csat_counted_in.is_none() {
                tracked.csat_counted_in = Some(Box::new((tracked.hour, tracked.queue.clone())));
            }
            tracked.hour = hour_of(at);
            tracked.queue = Id::from(queue);
            tracked.waiting_since_ms = Some(at);
            tracked.assigned_ms = None;
        }
        self.count(|c| c.offered += 1);
    }

    fn queued(&mut self, queue: &str) {
        let already_waiting_there = self
            .tracked
            .as_deref()
            .is_some_and(|t| t.waiting_since_ms.is_some() && t.queue == queue);
        if !already_waiting_there {
            self.enter(queue);
        }
    }

    fn assigned(&mut self, thresholds_ms: &ThresholdsMs) {
        let at = self.at;
        let Some(tracked) = self.tracked.as_deref_mut() else {
            return;
        };
        let waited = tracked
            .waiting_since_ms
            .take()
            .map(|since| elapsed_ms(since, at));
        tracked.assigned_ms = Some(at);
        tracked.keep = true;
        let threshold_ms = u64::try_from(thresholds_ms.of_channel(tracked.channel)).unwrap_or(0);
        // A direct assignment, or a new agent without a new entry: nothing to count until
        // the wrap-up.
        if let Some(wait) = waited {
            self.count(|c| {
                c.answered += 1;
                c.answer_wait_ms += wait;
                if wait <= threshold_ms {
                    c.answered_in_threshold += 1;
                }
            });
            self.count_wait(wait);
        }
    }

    /// Closes a waiting entry as abandoned (at `abandoned`, or `ended` while waiting).
    fn abandoned(&mut self) {
        let at = self.at;
        let Some(since) = self
            .tracked
            .as_mut()
            .and_then(|t| t.waiting_since_ms.take())
        else {
            return;
        };
        let wait = elapsed_ms(since, at);
        self.count(|c| c.abandoned += 1);
        self.count_wait(wait);
    }

    fn transferred(&mut self, to_queue: Option<&str>, to_agent: bool) {
        self.count(|c| c.transfers += 1);
        let at = self.at;
        if let Some(tracked) = self.tracked.as_deref_mut() {
            // The entry it leaves is neither answered nor abandoned; the agent's handling
            // ends without a wrap-up.
            tracked.waiting_since_ms = None;
            tracked.assigned_ms = None;
            if to_queue.is_none() && to_agent {
                tracked.assigned_ms = Some(at);
                tracked.keep = true;
            }
        }
        if let Some(queue) = to_queue {
            self.enter(queue);
        }
    }

    fn wrapped_up(&mut self) {
        let at = self.at;
        let Some(assigned) = self
            .tracked
            .as_deref_mut()
            .and_then(|t| t.assigned_ms.take())
        else {
            return;
        };
        let handle = elapsed_ms(assigned, at);
        self.count(|c| {
            c.handled += 1;
            c.handle_ms += handle;
        });
    }

    fn rated(&mut self, score: u8) {
        let Some(tracked) = self.tracked.as_deref_mut() else {
            return;
        };
        let previous = tracked.csat.replace(score);
        tracked.keep = true;
        // The first rating leaves the bucket that counted it: the bucket of the entry it
        // was given in, which a later entry may have left behind.
        let counted_in = tracked.csat_counted_in.take();
        if let Some(previous) = previous {
            let (hour, queue) = match counted_in {
                Some(bucket) => *bucket,
                None => (tracked.hour, tracked.queue.clone()),
            };
            let counted = self.buckets.get_or_insert_with(
                (hour, channel_code(tracked.channel), queue),
                BucketCounts::default,
            );
            // It counted this rating, so neither goes below zero; but a replay's delta of
            // the bucket may (`take_sums`): wrapping, the deltas add up to the total.
            counted.csat_sum = counted.csat_sum.wrapping_sub(u64::from(previous));
            counted.csat_responses = counted.csat_responses.wrapping_sub(1);
        }
        self.count(|c| {
            c.csat_responses = c.csat_responses.wrapping_add(1);
            c.csat_sum = c.csat_sum.wrapping_add(u64::from(score));
        });
    }

    /// Ends the fold: whether the record is to be forgotten, nothing being able to need it
    /// any more (not waiting, not awaiting a wrap-up, never taken by an agent nor rated:
    /// an abandoned contact, a transfer without a target), or there being none. The caller
    /// forgets it ([`forget`]) once the fold no longer holds it.
    fn finish(self) -> bool {
        !self.tracked.is_some_and(|tracked| {
            tracked.waiting_since_ms.is_some() || tracked.assigned_ms.is_some() || tracked.keep
        })
    }
}

/// Forgets the tracked record of the event's interaction (see [`Fold::finish`]), and the
/// empty slot a record found absent leaves: a replay ends most interactions it folds.
fn forget(state: &mut ReportingState, event: &Event) {
    if let Some(interaction) = event.interaction_id.as_deref() {
        state.tracked.remove(interaction);
        state.tracked.discard(interaction);
    }
}
