//! The write path. Validated events come in (from `POST /v1/events` or a channel); each
//! is stamped with `recorded_at`, given its customer by identity resolution (CONTRACT §4),
//! encoded and appended to the log; the answer comes back only once the log made the
//! events durable.
//!
//! One sequencer task owns the order of writes. It takes every request waiting, resolves
//! them in arrival order against the identity view, appends them all as one batch (so
//! concurrent requests share one durable write, and a request is never split), folds the
//! resolved events into the identity view, and answers each request. Because resolution
//! order is log order, a link accepted by one request is honoured by every request
//! accepted after it, and the identity view folded from the log later agrees with what
//! ingest decided.
//!
//! Resolution folds a request's events into the view before the append completes, so the
//! next event of the same batch (and the next request of the group) sees them. The view
//! records what those folds change meanwhile ([`IdentityView::mark`]): if the append fails,
//! nothing was written and exactly those changes are taken back, so no decision survives
//! that the log does not hold, at the cost of what the group changed. (Folding the view
//! again from the whole log would cost the whole history on every refused group, and a
//! full disk refuses every retry.)
//!
//! The groups are pipelined on a log that chains appends (the embedded log,
//! [`EventLog::append_in_chain`]): while one group is being made durable, the next is
//! resolved against it and handed over, so the log syncs group after group instead of
//! waiting between them for the sequencer. The chain makes that safe: when the log
//! refuses a group it refuses the one behind it too, and the sequencer takes both back.
//! Ingest of 1,000-event requests went from 130.7k to 147.9k events/s (`omnilog bench`,
//! stage d, medians of three alternated runs; docs/benchmarks-journal.md).
//!
//! A log that refuses a group without knowing what it stored (Kafka, deliveries not all
//! confirmed) says where each record is or would be; a re-send of one of those events is
//! looked for there before it is appended again ([`doubt`]), so that it is stored once.
//! With several ingest servers on one cluster, each follows the others' appends into its
//! identity view, and remembers the ids of their agent events; what it reads while a group
//! of its own is staged is parked and folded once the group is settled.

mod doubt;
mod recent;
mod snapshot;
pub mod token;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::{Body, Destination, Event, EventError};
use omnilog_log::{
    AppendOutcome, AppendRecord, Chain, EventLog, LogError, LogRecord, PendingAppend, Topic,
};
use omnilog_views::IdentityView;
use omnilog_views::identity::{CustomerIdText, CustomerIdentity, Mark};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::doubt::{Doubt, InDoubt, Known};
use crate::recent::{Learnt, RecentIds, Remembered};
use crate::snapshot::{FoldedTo, IdentitySnapshot};

pub use token::{BadToken, ReadToken};

/// Why a request was not written: nothing of it reached the log, but where
/// [`IngestError::Unconfirmed`] says some of it may have.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An event breaks the contract (→ 400, naming the field).
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// The log could not make the events durable, and nothing of them is stored (→ 503;
    /// safe to retry).
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// The log did not confirm every write of the request: some of its events may be
    /// stored (→ 503; safe to retry: an event already stored is answered as a duplicate,
    /// with its position).
    #[error("the log did not confirm every write: {0}")]
    Unconfirmed(String),
    /// The ingest service is shutting down (→ 503).
    #[error("ingest is shutting down")]
    ShuttingDown,
    /// The identity snapshot could not be written (see [`IngestConfig::identity_snapshot_file`]).
    #[error("the identity snapshot: {0}")]
    Snapshot(String),
}

impl IngestError {
    /// The same refusal, for another request of a refused group (an invalid event is one
    /// request's own, never a group's).
    fn same(&self) -> IngestError {
        match self {
            IngestError::Unconfirmed(message) => IngestError::Unconfirmed(message.clone()),
            IngestError::Unavailable(message) => IngestError::Unavailable(message.clone()),
            other => IngestError::Unavailable(other.to_string()),
        }
    }
}

impl From<LogError> for IngestError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Unconfirmed { message, .. } => IngestError::Unconfirmed(message),
            other => IngestError::Unavailable(other.to_string()),
        }
    }
}

/// Where one event of a request is in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPosition {
    pub topic: Topic,
    pub partition: u32,
    pub offset: u64,
    /// The event was already in the log: this is where the first copy is.
    pub duplicate: bool,
}

/// The answer to an accepted request, given once every event is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Events newly written.
    pub accepted: usize,
    /// Events that were already in the log (a redelivery): not written again.
    pub duplicates: usize,
    /// One per event of the request, in its order.
    pub positions: Vec<EventPosition>,
    /// Pass as `?after=` to a query to read this request's writes.
    pub token: ReadToken,
}

/// Tuning of the write path.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// The most events one group commit carries (requests are never split).
    pub max_group_events: usize,
    /// How many recent event ids remember their customer, so a redelivered event resolves
    /// to the customer it had the first time (and so to the same partition, where the log
    /// recognises it as a duplicate) even if identities changed in between. It also
    /// bounds the events held in doubt after a refused append (at most 100,000; see
    /// `doubt`), and 0 turns both off.
    pub remembered_event_ids: usize,
    /// Keep folding what other writers append (several ingest servers on one Kafka
    /// cluster), and remembering the ids of their agent events. Identity claims fold in any
    /// order to the same view, so folding this server's own events a second time changes
    /// nothing (nor does remembering its own ids again, at the same positions).
    pub follow_other_writers: bool,
    /// Where the identity view is saved with the log offsets it stands at
    /// ([`Ingest::save_identity_snapshot`]), and read at start to fold only what lies past
    /// them (see `snapshot.rs`). `None`: the start folds the whole log. Only for a server
    /// that is its log's one writer: with other writers followed, what this server folded
    /// and the log's ends are not the same offsets.
    pub identity_snapshot_file: Option<std::path::PathBuf>,
    /// A start that folds at least this many events past its snapshot (or without one)
    /// saves a new snapshot at once, so the next start, even after a crash, begins there.
    pub snapshot_after_folding: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_group_events: 20_000,
            remembered_event_ids: 1_000_000,
            follow_other_writers: false,
            identity_snapshot_file: None,
            snapshot_after_folding: SNAPSHOT_AFTER_FOLDING,
        }
    }
}

/// The default of [`IngestConfig::snapshot_after_folding`]: about a tenth of a second of
/// the start's fold on this machine (1M events in 1.3 s), about what a snapshot of a 10M
/// history's view costs to write.
pub const SNAPSHOT_AFTER_FOLDING: u64 = 200_000;

/// What becomes of one event of a request.
enum Prepared {
    /// Append it to `topic` under `key`.
    Append(Topic, String),
    /// The log already holds it there.
    Stored(EventPosition),
}

/// Where a staged group (or one request of it) can be taken back to.
#[derive(Clone, Copy, Debug)]
struct StagePoint {
    identity: Mark,
    recent: usize,
}

/// What the sequencer and the queries share.
#[derive(Debug)]
struct State {
    identity: IdentityView,
    recent: RecentIds,
    /// Events a refused append may have stored, looked for in the log before they are
    /// appended again (see [`doubt`]).
    in_doubt: InDoubt,
    /// The last `recorded_at` handed out: stamps never go backwards, so claims are
    /// ordered as ingest resolved them even if the wall clock steps back.
    last_recorded: DateTime<Utc>,
    /// Where the identity view has folded the log up to, per interactions partition
    /// (what a follower of other writers reads next).
    folded_to: Vec<u64>,
    /// Events the follower read while a group was staged, with their partitions and
    /// offsets: folded once nothing is staged (by the sequencer between groups, or by the
    /// follower). Dropped and read again, under a steady load they were never folded: on
    /// Kafka nearly every moment has a group staged, waiting for its deliveries.
    parked: Vec<(Event, u32, u64)>,
    /// Where the follower has read each agents partition up to: their events only serve
    /// to answer another server's redeliveries as duplicates, so only their ids are kept.
    /// Empty until the topic's ends are known (asked at start, or by the follower when
    /// the start could not).
    agents_followed_to: Vec<u64>,
    /// Ids of stored events (id, topic, partition, offset) read while a group was staged,
    /// to be remembered but not folded (agent events): remembered once nothing is staged,
    /// as `parked` is folded (a taken-back group takes back the ids remembered since it
    /// was staged).
    parked_ids: Vec<(Uuid, Topic, u32, u64)>,
    /// Whether the view may differ from a fold of the log: it folded an event the log
    /// answered as a duplicate (its id no longer among the recent ones), folded a second
    /// time with a later stamp, or an event was sent again while its first group was still
    /// being written (folded once here, but a log without exact deduplication, Kafka,
    /// stores both copies, and a fold of it sees two). A claim's key is its stamp, so such
    /// a view is not saved as a snapshot of the log ([`Ingest::save_identity_snapshot`]);
    /// the next start folds the log past the last snapshot instead.
    folded_twice: bool,
}

impl State {
    fn new(remembered_event_ids: usize) -> Self {
        State {
            identity: IdentityView::new(),
            recent: RecentIds::new(remembered_event_ids),
            in_doubt: InDoubt::new(remembered_event_ids),
            last_recorded: DateTime::UNIX_EPOCH,
            folded_to: Vec::new(),
            parked: Vec::new(),
            agents_followed_to: Vec::new(),
            parked_ids: Vec::new(),
            folded_twice: false,
        }
    }

    /// Starts recording the changes folds make (or notes where the record is), so they
    /// can be taken back to here: the sequencer stages each group, and each request of it,
    /// until the log has the group's events. `last_recorded` is not taken back: stamps
    /// only ever move forward, and a stamp handed to a refused event is simply unused.
    fn stage(&mut self) -> StagePoint {
        StagePoint {
            identity: self.identity.mark(),
            recent: self.recent.stage(),
        }
    }

    /// Whether a group is staged (its decisions are not in the log yet).
    fn is_staged(&self) -> bool {
        self.identity.is_marked()
    }

    /// Takes back every fold since `point`; staging goes on until [`Self::keep`].
    fn take_back_to(&mut self, point: StagePoint) {
        self.identity.rollback_to(point.identity);
        self.recent.rollback_to(point.recent);
    }

    /// Keeps what is staged (the log has it) and stops recording.
    fn keep(&mut self) {
        self.identity.commit();
        self.recent.keep();
    }

    /// Keeps what was staged before `point` (the log has that group) and goes on
    /// recording: a later group, staged at `point`, still waits for the log.
    fn keep_before(&mut self, point: StagePoint) {
        self.identity.commit_before(point.identity);
        self.recent.keep_before(point.recent);
    }

    /// Learns what a refused group's records became, from the log's refusal: where each is
    /// or would be. Each is in doubt until a re-send of it makes ingest look: the look finds
    /// it at its offset (a record whose delivery was confirmed) or after it, or not at all.
    fn note_fates(&mut self, written: &[(Uuid, Topic)], refusal: &LogError) {
        let LogError::Unconfirmed { fates, .. } = refusal else {
            return;
        };
        if fates.len() != written.len() {
            if !fates.is_empty() {
                tracing::warn!(
                    fates = fates.len(),
                    records = written.len(),
                    "the log's refusal names the fates of another count of records; none is noted"
                );
            }
            return;
        }
        let now = std::time::Instant::now();
        for (&(event_id, topic), &fate) in written.iter().zip(fates) {
            // A record stored at a known position is remembered there, and also looked for
            // there when it is sent again: the look folds what it finds into the identity
            // view, which the group's refusal took it out of.
            let (partition, from) = match fate {
                omnilog_log::RecordFate::Stored(position) => {
                    self.remember_stored(event_id, topic, position.partition, position.offset);
                    (position.partition, position.offset)
                }
                omnilog_log::RecordFate::InDoubt { partition, from } => (partition, from),
            };
            let doubt = Doubt {
                topic,
                partition,
                from,
            };
            self.in_doubt.note(event_id, Known::Doubt(doubt), now);
        }
    }

    fn fold(&mut self, event: &Event) {
        // Agent events are not the identity view's: the view folded from the log never
        // sees them (it reads the interactions topic), so the live one leaves them out too,
        // and counts the events it applied as that fold does.
        if matches!(event.destination(), Destination::Interactions) {
            self.identity.apply(event);
        }
        if let Some(customer) = event.customer_id() {
            self.recent
                .remember(event.event_id, Learnt::ResolvedTo(customer));
        }
    }

    /// Folds what the follower read while a group was staged; only while none is (taking a
    /// group back would take these folds back too).
    fn fold_parked(&mut self) {
        if self.is_staged() {
            return;
        }
        for (event, partition, offset) in std::mem::take(&mut self.parked) {
            self.fold_stored(&event, partition, offset);
        }
        for (event_id, topic, partition, offset) in std::mem::take(&mut self.parked_ids) {
            self.remember_stored(event_id, topic, partition, offset);
        }
    }

    /// Remembers that the log holds `event_id` at `topic`/`partition`/`offset`, so that a
    /// redelivery of it is answered as a duplicate there.
    fn remember_stored(&mut self, event_id: Uuid, topic: Topic, partition: u32, offset: u64) {
        let stored = EventPosition {
            topic,
            partition,
            offset,
            duplicate: true,
        };
        self.recent.remember_stored(event_id, stored);
    }

    /// Takes in an interaction event another writer stored (read by the follower, or found
    /// by a look for events in doubt): folded, or parked while a group is staged (taking
    /// the group back restores the states it changed as they were before it, which would
    /// take this fold back too).
    fn take_stored_claim(&mut self, event: Event, partition: u32, offset: u64) {
        if self.is_staged() {
            self.parked.push((event, partition, offset));
        } else {
            self.fold_stored(&event, partition, offset);
        }
    }

    /// Takes in the id of an event another writer stored that is not folded (an agent
    /// event): remembered, or parked while a group is staged, as [`Self::take_stored_claim`].
    fn take_stored_id(&mut self, event_id: Uuid, topic: Topic, partition: u32, offset: u64) {
        if self.is_staged() {
            self.parked_ids.push((event_id, topic, partition, offset));
        } else {
            self.remember_stored(event_id, topic, partition, offset);
        }
    }

    /// Folds an interaction event read from the log at `partition`/`offset`.
    fn fold_stored(&mut self, event: &Event, partition: u32, offset: u64) {
        self.fold_stored_remembering(event, partition, offset, true);
    }

    /// [`State::fold_stored`], remembering the event's id and position only if `remember`.
    fn fold_stored_remembering(
        &mut self,
        event: &Event,
        partition: u32,
        offset: u64,
        remember: bool,
    ) {
        self.identity.apply(event);
        if remember {
            self.remember_stored(event.event_id, Topic::Interactions, partition, offset);
        }
    }

    fn next_recorded_at(&mut self) -> DateTime<Utc> {
        let now = Utc::now().max(self.last_recorded + TimeDelta::microseconds(1));
        self.last_recorded = now;
        now
    }

    /// Stamps, resolves and folds one event; returns where it goes, or where the log
    /// already holds it.
    fn prepare(&mut self, event: &mut Event) -> Result<Prepared, IngestError> {
        // One probe for both what a redelivery needs: where the log holds it, or the
        // customer it was resolved to.
        let recalled = self.recent.get(&event.event_id);
        let remembered = match recalled {
            Some(Remembered::Stored(stored)) => return Ok(Prepared::Stored(*stored)),
            Some(Remembered::Resolved(customer)) => Some(customer.clone()),
            None => None,
        };
        // Resolved and not known stored: its first group is still on its way to the log,
        // which keeps one of the two, with the first stamp. The copy is handed to the log
        // (a log without exact deduplication stores it again, and its views then see it
        // twice, so no snapshot is saved of this view), but it is not folded again: folded
        // with a later stamp, its claims outranked those of the events between the two
        // copies in the live view, and not in the log's (found by review).
        let already_folded = remembered.is_some();
        if already_folded {
            self.folded_twice = true;
        }
        // Found in the log by a look for what a refused append may have stored.
        if !self.in_doubt.is_empty()
            && let Some(Known::Found(stored)) = self.in_doubt.get(&event.event_id)
        {
            return Ok(Prepared::Stored(stored));
        }
        event.recorded_at = Some(self.next_recorded_at());
        let placement = match &event.body {
            Body::AgentState { agent_id, .. } => (Topic::Agents, agent_id.clone()),
            Body::CustomersMerged { into_customer, .. } => {
                let key = self.identity.canonical(into_customer);
                // A merge made during an interaction is provenance on the timeline of the
                // customer merged into: the event names that customer, the one it is
                // keyed (and so partitioned) by, so the journey finds it there.
                if event.interaction_id.is_some() {
                    let customer = event.customer.get_or_insert_with(Default::default);
                    Arc::make_mut(customer).id = Some(key.as_str().into());
                }
                (Topic::Interactions, key)
            }
            _ => {
                // Not shared yet (parsed from a request): `make_mut` copies nothing.
                let customer = Arc::make_mut(
                    event
                        .customer
                        .as_mut()
                        .ok_or_else(|| EventError::missing("customer"))?,
                );
                let customer_id = match remembered {
                    Some(id) => id,
                    None => {
                        self.identity
                            .resolve(customer)
                            .ok_or_else(|| {
                                EventError::invalid(
                                    "customer",
                                    "needs an id or at least one handle".to_owned(),
                                )
                            })?
                            .customer_id
                    }
                };
                customer.id = Some(customer_id.as_str().into());
                (Topic::Interactions, customer_id)
            }
        };
        debug_assert_eq!(
            matches!(event.destination(), Destination::Agents),
            placement.0 == Topic::Agents
        );
        if !already_folded {
            self.fold(event);
        }
        Ok(Prepared::Append(placement.0, placement.1))
    }
}

/// The record of `event` in `topic` under `key`: the protobuf payload, no headers.
fn record(event: &Event, topic: Topic, key: String) -> AppendRecord {
    AppendRecord {
        topic,
        key,
        event_id: event.event_id,
        payload: omnilog_events::encode(event).into(),
        headers: Vec::new(),
    }
}

/// The record ingest appends for an event whose customer (or agent) is already named:
/// the topic of its destination, keyed by its partition key. `None` for an interaction
/// event without a customer id. For writers that bypass ingest's resolution (the
/// benchmarks, tests that lay out a log directly).
pub fn log_record(event: &Event) -> Option<AppendRecord> {
    let topic = match event.destination() {
        Destination::Interactions => Topic::Interactions,
        Destination::Agents => Topic::Agents,
    };
    Some(record(event, topic, event.partition_key()?.to_owned()))
}

struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Receipt, IngestError>>,
}

/// The write path: cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct Ingest {
    jobs: mpsc::Sender<Job>,
    state: Arc<Mutex<State>>,
    /// The log other writers append to, when this ingest follows them.
    followed: Option<Arc<dyn EventLog>>,
    /// The log, and where the identity view is saved ([`Ingest::save_identity_snapshot`]),
    /// when this ingest is its log's one writer and keeps a snapshot.
    snapshot: Option<(Arc<dyn EventLog>, std::path::PathBuf)>,
    /// Events of the log the start took from the snapshot instead of folding them.
    started_from_snapshot: u64,
    /// Told each time the follower folds further (waiters for a position look again), and
    /// asked of it by a waiter (the follower reads at once instead of after its pause).
    follower: Arc<FollowerSignals>,
    /// The partitions of the interactions topic (a token naming another is refused).
    interaction_partitions: u32,
}

/// How the follower of other writers and those waiting on it reach each other.
#[derive(Debug, Default)]
struct FollowerSignals {
    /// The follower folded further.
    moved: tokio::sync::Notify,
    /// Someone waits for a position: read now.
    wanted: tokio::sync::Notify,
}

/// How often a wait for the identity view to hold a token looks again without being woken.
const IDENTITY_LOOK_AGAIN: std::time::Duration = std::time::Duration::from_millis(5);

/// Whether the identity view has folded what a read-your-writes token names
/// ([`Ingest::identity_after`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityReach {
    /// It has: answers now include those writes.
    Reached,
    /// Not within the time allowed.
    TimedOut,
    /// The token names a partition of the interactions topic the log does not have.
    NoSuchPartition { partition: u32, partitions: u32 },
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is only mutated by complete folds; a panic elsewhere leaves it usable.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ingest {
    /// Folds the identity view from the log (from its snapshot on, when one belongs to
    /// the log: [`IngestConfig::identity_snapshot_file`]), then starts the sequencer.
    pub async fn start(log: Arc<dyn EventLog>, config: IngestConfig) -> Result<Self, IngestError> {
        let state = Arc::new(Mutex::new(State::new(config.remembered_event_ids)));
        // With other writers followed, the log's ends are not what this server folded.
        let snapshot_file = config
            .identity_snapshot_file
            .clone()
            .filter(|_| !config.follow_other_writers);
        let started_from_snapshot = rebuild(
            &*log,
            &state,
            snapshot_file.as_deref(),
            config.snapshot_after_folding,
        )
        .await?;
        let (jobs, receiver) = mpsc::channel(1024);
        let interaction_partitions = log.partitions(Topic::Interactions);
        let followed = config.follow_other_writers.then(|| log.clone());
        let follower = Arc::new(FollowerSignals::default());
        if let Some(log) = &followed {
            tokio::spawn(follow(log.clone(), state.clone(), follower.clone()));
        }
        let snapshot = snapshot_file.map(|file| (log.clone(), file));
        tokio::spawn(sequence(log, state.clone(), receiver, config));
        Ok(Ingest {
            jobs,
            state,
            followed,
            snapshot,
            started_from_snapshot,
            follower,
            interaction_partitions,
        })
    }

    /// How many of the log's events the start took from the identity snapshot instead of
    /// folding them (0: it folded the whole log).
    pub fn started_from_snapshot(&self) -> u64 {
        self.started_from_snapshot
    }

    /// Saves the identity view with the log offsets it stands at, so that the next start
    /// folds only what comes after them (see `snapshot.rs`); `Ok(false)` when this ingest
    /// keeps no snapshot. Call it once nothing more is submitted (a server's stop, after
    /// its HTTP and its router and reactor): a group still being written, or an append
    /// since the log's ends were asked, leaves the view and the offsets apart, and is
    /// refused.
    pub async fn save_identity_snapshot(&self) -> Result<bool, IngestError> {
        let Some((log, file)) = &self.snapshot else {
            return Ok(false);
        };
        let ends = log.end_offsets(Topic::Interactions).await?;
        let mut folded_to = Vec::with_capacity(ends.len());
        for (partition, &end) in ends.iter().enumerate() {
            let folded = if end == 0 {
                FoldedTo::START
            } else {
                let records = omnilog_log::read_before_end(
                    &**log,
                    Topic::Interactions,
                    partition as u32,
                    end - 1,
                    1,
                )
                .await?;
                records
                    .first()
                    .filter(|record| record.offset == end - 1)
                    .map(FoldedTo::past)
                    .ok_or_else(|| {
                        IngestError::Snapshot(format!(
                            "partition {partition} has no record before its end ({end})"
                        ))
                    })?
            };
            folded_to.push(folded);
        }
        let snapshot = {
            let state = lock(&self.state);
            if state.is_staged() {
                return Err(IngestError::Snapshot(
                    "a group is still being written".to_owned(),
                ));
            }
            if state.folded_twice {
                return Err(IngestError::Snapshot(
                    "the view may differ from a fold of the log: it folded an event the log \
                     answered as a duplicate a second time, or an event was sent again while \
                     its first write was under way (a log without exact deduplication holds \
                     both copies)"
                        .to_owned(),
                ));
            }
            IdentitySnapshot {
                view: state.identity.clone(),
                folded_to,
                last_recorded: state.last_recorded,
            }
        };
        // Nothing appended while the view was taken: the ends still bound what it folded.
        if log.end_offsets(Topic::Interactions).await? != ends {
            return Err(IngestError::Snapshot(
                "events were appended while the view was being saved".to_owned(),
            ));
        }
        let file = file.clone();
        tokio::task::spawn_blocking(move || snapshot.save(&file))
            .await
            .map_err(|e| IngestError::Snapshot(format!("the writing task failed: {e}")))??;
        Ok(true)
    }

    /// Writes a batch of validated events, all or nothing, and answers once durable.
    pub async fn submit(&self, events: Vec<Event>) -> Result<Receipt, IngestError> {
        if events.is_empty() {
            return Ok(Receipt {
                accepted: 0,
                duplicates: 0,
                positions: Vec::new(),
                token: ReadToken::default(),
            });
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { events, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Per interactions partition (by index), how far the identity view has folded the log
    /// and where the log ends: what other writers appended that it has not folded yet lies
    /// between. `None` when this ingest does not follow other writers (it is the only one,
    /// so its view is always current).
    pub async fn identity_progress(&self) -> Result<Option<Vec<(u64, u64)>>, IngestError> {
        let Some(log) = &self.followed else {
            return Ok(None);
        };
        let ends = log.end_offsets(Topic::Interactions).await?;
        let folded = {
            let state = lock(&self.state);
            let mut folded = state.folded_to.clone();
            // Read but parked (a group was staged): not folded yet.
            for (_, partition, offset) in &state.parked {
                if let Some(to) = folded.get_mut(*partition as usize) {
                    *to = (*to).min(*offset);
                }
            }
            folded
        };
        Ok(Some(
            ends.iter()
                .enumerate()
                .map(|(partition, &end)| (folded.get(partition).copied().unwrap_or(0), end))
                .collect(),
        ))
    }

    /// Events the follower of other writers read while a group of this server's was staged,
    /// waiting for it to settle before they are folded (interactions) or their ids
    /// remembered (agent events).
    pub fn parked_events(&self) -> usize {
        let state = lock(&self.state);
        state.parked.len() + state.parked_ids.len()
    }

    /// Whether ingest would answer a redelivery of `event_id` as a duplicate now, without
    /// looking in the log (its remembered ids): for tests and checks.
    pub fn remembers_stored(&self, event_id: &Uuid) -> bool {
        matches!(
            lock(&self.state).recent.get(event_id),
            Some(Remembered::Stored(_))
        )
    }

    /// Waits up to `wait` for the identity view to hold the interaction events at
    /// `positions` (partition and offset, from a read-your-writes token). A server that is
    /// its log's one writer folded every event it answered for before answering, so it holds
    /// them at once; one that follows other writers holds an event once its follower has
    /// read past it (it is asked to read at once). Either way an event read while a group of
    /// this server's was staged is parked, not folded, until the group settles: a position
    /// at or past a parked event of its partition is not held yet.
    pub async fn identity_after(
        &self,
        positions: &[(u32, u64)],
        wait: std::time::Duration,
    ) -> IdentityReach {
        if let Some(&(partition, _)) = positions
            .iter()
            .find(|(partition, _)| *partition >= self.interaction_partitions)
        {
            return IdentityReach::NoSuchPartition {
                partition,
                partitions: self.interaction_partitions,
            };
        }
        if positions.is_empty() {
            return IdentityReach::Reached;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Taken before looking, so a move between the look and the wait is not missed.
            let moved = self.follower.moved.notified();
            let reached = {
                let state = lock(&self.state);
                positions.iter().all(|&(partition, offset)| {
                    let read_to = if self.followed.is_some() {
                        state
                            .folded_to
                            .get(partition as usize)
                            .copied()
                            .unwrap_or(0)
                    } else {
                        u64::MAX
                    };
                    let parked_from = state
                        .parked
                        .iter()
                        .filter(|(_, parked, _)| *parked == partition)
                        .map(|(_, _, offset)| *offset)
                        .min()
                        .unwrap_or(u64::MAX);
                    read_to.min(parked_from) > offset
                })
            };
            if reached {
                return IdentityReach::Reached;
            }
            if tokio::time::Instant::now() >= deadline {
                return IdentityReach::TimedOut;
            }
            if self.followed.is_some() {
                self.follower.wanted.notify_one();
            }
            // Woken when the follower folds further; looked at again every few milliseconds
            // too, for parked events folded when a group settles.
            let look_again = (tokio::time::Instant::now() + IDENTITY_LOOK_AGAIN).min(deadline);
            let _ = tokio::time::timeout_at(look_again, moved).await;
        }
    }

    /// The customer a handle resolves to now (the handle is normalised first).
    pub fn resolve_handle(&self, kind: &str, value: &str) -> Option<CustomerIdText> {
        let handle = omnilog_events::identity::normalise_handle(kind, value).ok()?;
        lock(&self.state).identity.owner(&handle)
    }

    /// A customer's identity as ingest knows it.
    pub fn customer(&self, id: &str) -> Option<CustomerIdentity> {
        lock(&self.state).identity.customer(id)
    }

    /// A copy of the whole identity view as ingest holds it now (decisions of a group whose
    /// append is pending included), for checks and tools: it copies every customer and
    /// handle, so it is not for a request's path.
    pub fn identity_snapshot(&self) -> IdentityView {
        lock(&self.state).identity.clone()
    }
}

/// Folds every interaction already in the log into a fresh identity view (past the
/// offsets of `snapshot_file`'s view, when it holds one that belongs to the log), and
/// remembers the newest event ids of both topics.
async fn rebuild(
    log: &dyn EventLog,
    state: &Mutex<State>,
    snapshot_file: Option<&std::path::Path>,
    snapshot_after_folding: u64,
) -> Result<u64, IngestError> {
    const READ_BATCH: usize = 10_000;
    let mut fresh = State::new(lock(state).recent.capacity());
    let ends = log.end_offsets(Topic::Interactions).await?;
    let snapshot = match snapshot_file {
        Some(file) => IdentitySnapshot::load_checked(file, log, &ends).await,
        None => None,
    };
    // Per partition, where the fold starts (and then where it got to).
    let mut anchors: Vec<FoldedTo> = vec![FoldedTo::START; ends.len()];
    if let Some(snapshot) = snapshot {
        fresh.identity = snapshot.view;
        fresh.last_recorded = snapshot.last_recorded;
        anchors = snapshot.folded_to;
    }
    let fold_from: Vec<u64> = anchors.iter().map(|folded| folded.offset).collect();
    // The agents' ids only serve to answer redeliveries as duplicates: a topic that cannot
    // be read now costs that, not the start.
    let agent_ends = log
        .end_offsets(Topic::Agents)
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "could not ask where the agents topic ends; its ids are not remembered");
            Vec::new()
        });
    let total: u64 = ends
        .iter()
        .zip(&fold_from)
        .map(|(end, from)| end.saturating_sub(*from))
        .sum();
    let from_snapshot: u64 = fold_from.iter().sum();
    // The ids remembered are each interactions partition's newest, an equal share of them
    // each, and as many of each agents partition's, put in the ring oldest first (by
    // `recorded_at`): the ring keeps the newest of them all, and new ids push out the
    // oldest, whatever their partition. Read partition after partition and all remembered,
    // the ring kept the last partitions' ids and forgot the newest of the first ones (and
    // every agent event's), whose redeliveries a Kafka log would store again.
    let share = (fresh.recent.capacity() as u64).div_ceil(ends.len().max(1) as u64);
    let mut newest: Vec<(DateTime<Utc>, Topic, u32, u64, Uuid)> = Vec::new();
    let read = |topic, partition: usize, from| {
        omnilog_log::read_before_end(log, topic, partition as u32, from, READ_BATCH)
    };
    for (partition, &end) in ends.iter().enumerate() {
        let folded_from = fold_from[partition];
        // From the snapshot's offset, or earlier where the newest ids to remember lie
        // before it (read, not folded again).
        let mut from = folded_from.min(end.saturating_sub(share));
        while from < end {
            let records = read(Topic::Interactions, partition, from).await?;
            let Some(last) = records.last() else {
                break;
            };
            from = last.offset + 1;
            // Only forward: the records before the snapshot's offset are read for their ids.
            if from > anchors[partition].offset {
                anchors[partition] = FoldedTo::past(last);
            }
            let mut decoder = omnilog_events::EventDecoder::new();
            for record in &records {
                // Folded in the snapshot, read back for its id alone: without decoding its
                // handles, texts and body (the whole 1M history, at a million ids
                // remembered), where this build wrote it.
                let apart = (record.offset < folded_from)
                    .then(|| omnilog_events::remembered_parts(&record.payload))
                    .flatten();
                let parts = match apart {
                    Some(parts) => parts,
                    None => match decoder.decode(&record.payload) {
                        Ok(event) => {
                            if record.offset >= folded_from {
                                if let Some(at) = event.recorded_at {
                                    fresh.last_recorded = fresh.last_recorded.max(at);
                                }
                                fresh.fold_stored_remembering(
                                    &event,
                                    partition as u32,
                                    record.offset,
                                    false,
                                );
                            }
                            omnilog_events::RememberedParts::of(&event)
                        }
                        Err(error) => {
                            tracing::warn!(
                                partition,
                                offset = record.offset,
                                %error,
                                "skipping an undecodable record while folding identities"
                            );
                            continue;
                        }
                    },
                };
                // Every record's id, a merge's too: one made outside an interaction names
                // no customer, and it is keyed by what the customer it merges into stands
                // for now, which a later merge moves, so the log (deduplicating within a
                // partition, or not at all) would store it again (found by review).
                if record.offset + share >= end {
                    newest.push((
                        parts.stamp,
                        Topic::Interactions,
                        partition as u32,
                        record.offset,
                        parts.event_id,
                    ));
                }
            }
        }
    }
    // The agents topic is not folded (no identity in it): only its partitions' newest ids
    // are read. A follower goes on from where each read stopped: past the end asked when
    // the reads came back short of it (an end reported past what can be read), where a
    // read failed otherwise (the follower reads the rest).
    let mut agents_reached = agent_ends.clone();
    for (partition, &end) in agent_ends.iter().enumerate() {
        let mut from = end.saturating_sub(share);
        let mut decoder = omnilog_events::EventDecoder::new();
        let mut read_failed = false;
        while from < end {
            let records = match read(Topic::Agents, partition, from).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(%error, partition, "could not read the newest agent events; the follower of other writers reads them later, if it runs");
                    read_failed = true;
                    break;
                }
            };
            let Some(last) = records.last().map(|record| record.offset) else {
                break;
            };
            for record in &records {
                if let Ok(event) = decoder.decode(&record.payload) {
                    newest.push((
                        event.recorded_at.unwrap_or(event.occurred_at),
                        Topic::Agents,
                        partition as u32,
                        record.offset,
                        event.event_id,
                    ));
                }
            }
            from = last + 1;
        }
        agents_reached[partition] = if read_failed { from } else { from.max(end) };
    }
    newest.sort_unstable();
    // Those the ring would push out at once are not put in.
    let older = newest.len().saturating_sub(fresh.recent.capacity());
    for (_, topic, partition, offset, event_id) in newest.into_iter().skip(older) {
        fresh.remember_stored(event_id, topic, partition, offset);
    }
    tracing::info!(
        events = total,
        from_snapshot,
        customers = fresh.identity.customer_count(),
        "identity view folded from the log"
    );
    // Where the fold got to (its last record read, past a reported end when a read
    // returned more; or the snapshot's offset), so a follower goes on from there.
    fresh.folded_to = anchors.iter().map(|folded| folded.offset).collect();
    // A long fold is saved at once, so the next start (even after a crash) begins there.
    // Its offsets are what the fold reached, before anything is appended; written aside.
    if let Some(file) = snapshot_file
        && total >= snapshot_after_folding
    {
        let snapshot = IdentitySnapshot {
            view: fresh.identity.clone(),
            folded_to: anchors,
            last_recorded: fresh.last_recorded,
        };
        let file = file.to_owned();
        tokio::task::spawn_blocking(move || match snapshot.save(&file) {
            Ok(()) => {
                tracing::info!(path = %file.display(), "identity snapshot saved after the start's fold")
            }
            Err(error) => {
                tracing::warn!(%error, "could not save the identity snapshot after the start's fold")
            }
        });
    }
    fresh.agents_followed_to = agents_reached;
    *lock(state) = fresh;
    Ok(from_snapshot)
}

/// Folds what every writer appends into the identity view, from where the last rebuild
/// stopped: another ingest server's claims become known here within moments, and so do
/// the ids of its agent events (whose redeliveries here are then duplicates).
async fn follow(log: Arc<dyn EventLog>, state: Arc<Mutex<State>>, signals: Arc<FollowerSignals>) {
    const READ_BATCH: usize = 2_000;
    const IDLE: std::time::Duration = std::time::Duration::from_millis(50);
    // The agents topic is looked at less often while it is quiet: its ids only answer a
    // client's re-send, which comes after a timeout, not within a quarter of a second.
    // An idle `omnilog ingest-server` on tansu (`benches/idle_ingest_cpu.sh`) took 56 and
    // 57 ticks of CPU in 20 s with the
    // agents looked at every turn, 46 and 47 at this pace, 42 not following them (tansu
    // itself 40 or so either way, against 27: its consumer fetches the agents partitions
    // once they are assigned).
    const AGENTS_IDLE: std::time::Duration = std::time::Duration::from_millis(250);
    let mut agents_due = std::time::Instant::now();
    loop {
        let mut folded_any = match follow_topic(
            &*log,
            &state,
            Topic::Interactions,
            READ_BATCH,
            |state| &mut state.folded_to,
            take_claims,
        )
        .await
        {
            Ok(folded_any) => folded_any,
            Err(_closed) => return,
        };
        if folded_any {
            signals.moved.notify_waiters();
        }
        // After the interactions: their claims matter more than the agents' ids (the two
        // are parked apart, each with its own bound).
        if std::time::Instant::now() >= agents_due {
            match follow_agents(&*log, &state, READ_BATCH).await {
                // Read again at the next turn while there is something to read.
                Ok(true) => folded_any = true,
                Err(LogError::Closed) => return,
                Ok(false) | Err(_) => agents_due = std::time::Instant::now() + AGENTS_IDLE,
            }
        }
        if !folded_any {
            // A reader waiting on a position cuts the pause short.
            let _ = tokio::time::timeout(IDLE, signals.wanted.notified()).await;
        }
        if Arc::strong_count(&state) == 1 {
            return;
        }
    }
}

/// Reads every agents partition from where the follower stands and remembers the ids of
/// the events read ([`take_agent_ids`]); returns whether any was read. Where the start
/// could not ask the topic's ends, asks them first and follows from there. Fails only when
/// the log is closed.
async fn follow_agents(
    log: &dyn EventLog,
    state: &Mutex<State>,
    batch: usize,
) -> Result<bool, LogError> {
    let positions = lock(state).agents_followed_to.clone();
    if positions.is_empty() {
        match log.end_offsets(Topic::Agents).await {
            Ok(ends) => {
                let mut state = lock(state);
                if state.agents_followed_to.is_empty() {
                    state.agents_followed_to = ends;
                }
            }
            Err(LogError::Closed) => return Err(LogError::Closed),
            Err(error) => {
                tracing::warn!(%error, "identity follower could not ask where the agents topic ends; retrying");
            }
        }
        return Ok(false);
    }
    follow_topic(
        log,
        state,
        Topic::Agents,
        batch,
        |state| &mut state.agents_followed_to,
        take_agent_ids,
    )
    .await
}

/// Reads each partition of `topic` from where the follower stands in it (`positions` of
/// the state), and hands each read to `take` under the state's lock: it takes the records
/// in (and the follower moves past them), or leaves them to be read again later (false).
/// Returns whether any was taken. A partition that cannot be read is tried again next
/// time; fails only when the log is closed.
async fn follow_topic(
    log: &dyn EventLog,
    state: &Mutex<State>,
    topic: Topic,
    batch: usize,
    positions: fn(&mut State) -> &mut Vec<u64>,
    take: fn(&mut State, &[LogRecord]) -> bool,
) -> Result<bool, LogError> {
    let from_each = positions(&mut lock(state)).clone();
    let mut taken_any = false;
    for (partition, &from) in from_each.iter().enumerate() {
        let records = match log.read(topic, partition as u32, from, batch).await {
            Ok(records) => records,
            Err(LogError::Closed) => return Err(LogError::Closed),
            Err(error) => {
                tracing::warn!(%error, ?topic, partition, "identity follower could not read; retrying");
                continue;
            }
        };
        let Some(last) = records.last().map(|r| r.offset) else {
            continue;
        };
        let mut state = lock(state);
        // A rebuild in between replaced the state and its positions: read again.
        if positions(&mut state).get(partition) != Some(&from) || !take(&mut state, &records) {
            continue;
        }
        positions(&mut state)[partition] = last + 1;
        taken_any = true;
    }
    Ok(taken_any)
}

/// Folds other writers' interaction events into the identity view. While a group of this
/// server's is staged, the events are parked, not folded: taking the group back restores
/// the states it changed as they were before it, which would take these folds back too.
/// Too many parked: left to be read again later.
fn take_claims(state: &mut State, records: &[LogRecord]) -> bool {
    if state.is_staged() && state.parked.len() + records.len() > PARKED_MOST {
        return false;
    }
    state.fold_parked();
    let mut decoder = omnilog_events::EventDecoder::new();
    for record in records {
        if let Ok(event) = decoder.decode(&record.payload) {
            state.take_stored_claim(event, record.partition, record.offset);
        }
    }
    true
}

/// Remembers the ids of agent events read from the log (parked while a group is staged,
/// as [`take_claims`] parks claims). Nothing is decoded: only the records' ids and places
/// are needed.
fn take_agent_ids(state: &mut State, records: &[LogRecord]) -> bool {
    if state.is_staged() && state.parked_ids.len() + records.len() > PARKED_IDS_MOST {
        return false;
    }
    state.fold_parked();
    for record in records {
        // A record without its id (a Kafka record whose header was lost) names nothing
        // to remember.
        if !record.event_id.is_nil() {
            state.take_stored_id(
                record.event_id,
                record.topic,
                record.partition,
                record.offset,
            );
        }
    }
    true
}

/// The most events the follower parks while groups are staged (see `State::parked`).
const PARKED_MOST: usize = 20_000;

/// The most agent event ids the follower parks while groups are staged (see
/// `State::parked_ids`): about 30 bytes each, where a parked event takes hundreds.
const PARKED_IDS_MOST: usize = 100_000;

/// How many times the sequencer lets ready requests run before it takes a group. Under
/// one-event requests from 32 clients, a group was three requests, each group paying its
/// own `fdatasync`, writer wake-up and projector step: letting them gather cut the
/// `fdatasync`s five times (4,044 to 759 under `strace -c` of the same bench) and the
/// system CPU by a quarter. Throughput stayed where it was (the clients wait on the disk).
const GATHER_TURNS: usize = 4;

/// A group this large is taken at once: requests of many events fill a group by
/// themselves, and waiting for more cost batched ingest an eighth of its throughput
/// (`omnilog bench`, stage d, 1,000 events a request, three alternated runs).
const GATHER_BELOW_EVENTS: usize = 256;

async fn sequence(
    log: Arc<dyn EventLog>,
    state: Arc<Mutex<State>>,
    mut receiver: mpsc::Receiver<Job>,
    config: IngestConfig,
) {
    // Groups handed to the log and not answered yet, oldest first. While one is being
    // made durable the next is resolved and handed over, so the log syncs one group after
    // another instead of waiting between them for the sequencer to resolve the next. A
    // follower of other writers needs every group settled before it folds theirs, so it
    // gets one group at a time, as does a log that cannot chain appends.
    let mut depth = if config.follow_other_writers {
        1
    } else {
        PIPELINE_DEPTH
    };
    let mut chain = log.new_chain();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut open = true;
    // Requests a group left for the next one (see `stage_group`): they came before any
    // still waiting in the channel, so they go first.
    let mut left_for_next: Vec<Job> = Vec::new();
    loop {
        let jobs = if !left_for_next.is_empty() && in_flight.len() < depth {
            std::mem::take(&mut left_for_next)
        } else {
            let first = if open && in_flight.len() < depth {
                match in_flight.front_mut() {
                    None => receiver.recv().await,
                    // Either the oldest group's answer or a new request, whichever comes first.
                    Some(oldest) => tokio::select! {
                        biased;
                        outcome = &mut oldest.answer => {
                            let oldest = in_flight.pop_front().expect("the oldest group is in flight");
                            settle(&state, oldest.staged, outcome, &mut in_flight, &log, &mut chain).await;
                            continue;
                        }
                        job = receiver.recv() => job,
                    },
                }
            } else if let Some(oldest) = in_flight.pop_front() {
                let outcome = oldest.answer.await;
                settle(
                    &state,
                    oldest.staged,
                    outcome,
                    &mut in_flight,
                    &log,
                    &mut chain,
                )
                .await;
                continue;
            } else {
                return;
            };
            let Some(first) = first else {
                // Every sender is gone: answer what is in flight, then stop.
                open = false;
                continue;
            };
            gather(first, &mut receiver, &config).await
        };
        let Some(jobs) = settle_doubts(&*log, &state, jobs).await else {
            continue;
        };
        let (staged, records, left) = stage_group(&state, jobs);
        left_for_next = left;
        let answer: PendingAppend = if records.is_empty() {
            Box::pin(async { Ok(Vec::new()) })
        } else {
            match log.append_in_chain(records, chain) {
                Ok(pending) => pending,
                Err(records) => {
                    depth = 1;
                    let log = log.clone();
                    Box::pin(async move { log.append(records).await })
                }
            }
        };
        in_flight.push_back(InFlight { staged, answer });
    }
}

/// Looks in the log for the events of `jobs` that a refused append may have stored (see
/// [`doubt`]), so that staging answers those found as duplicates and appends the others.
/// Nothing in doubt (nearly always), it costs a look at an empty map. The group waits for
/// the look (the sequencer resolves one group at a time). A log that cannot be read now
/// refuses the requests naming an event in doubt as unconfirmed (their events stay in
/// doubt for the next try); the others go on once the read has failed.
async fn settle_doubts(
    log: &dyn EventLog,
    state: &Mutex<State>,
    jobs: Vec<Job>,
) -> Option<Vec<Job>> {
    let wanted = {
        let mut state = lock(state);
        state.in_doubt.forget_old(std::time::Instant::now());
        if state.in_doubt.is_empty() {
            return Some(jobs);
        }
        let partitions: std::collections::HashSet<(Topic, u32)> = jobs
            .iter()
            .flat_map(|job| &job.events)
            .filter_map(|event| match state.in_doubt.get(&event.event_id) {
                Some(Known::Doubt(doubt)) => Some((doubt.topic, doubt.partition)),
                _ => None,
            })
            .collect();
        if partitions.is_empty() {
            return Some(jobs);
        }
        state.in_doubt.wanted_in(&partitions)
    };
    let wanted_count: usize = wanted.values().map(|(_, ids)| ids.len()).sum();
    match doubt::look_for(log, wanted).await {
        Ok(looked) => {
            tracing::info!(
                in_doubt = wanted_count,
                found = looked.found.len(),
                "looked in the log for events a refused append may have stored"
            );
            let mut state = lock(state);
            state.in_doubt.learn(&looked);
            // Not found up to the end read, this group's events in doubt are appended now.
            for event in jobs.iter().flat_map(|job| &job.events) {
                if let Some(Known::Doubt(doubt)) = state.in_doubt.get(&event.event_id)
                    && looked.ends.contains_key(&(doubt.topic, doubt.partition))
                {
                    state.in_doubt.remove(&event.event_id);
                }
            }
            // Those found are taken in as the follower takes in what other writers stored:
            // an interaction folded into the identity view (the refusal of its group took
            // its claims back) and its id remembered among the recent ids (which outlive the
            // doubts); any other (an agent event, or one that does not decode) its id
            // remembered. While a group is staged, parked until nothing is (taking the group
            // back would take them back too), and known here as found meanwhile.
            let mut decoder = omnilog_events::EventDecoder::new();
            for (&id, record) in &looked.found {
                match decoder.decode(&record.payload) {
                    Ok(event) if record.topic == Topic::Interactions => {
                        state.take_stored_claim(event, record.partition, record.offset);
                    }
                    _ => state.take_stored_id(id, record.topic, record.partition, record.offset),
                }
            }
            Some(jobs)
        }
        Err(error) => {
            tracing::warn!(%error, "could not look in the log for events in doubt; the requests naming them are refused");
            let why = IngestError::Unconfirmed(format!(
                "could not look in the log for events a refused write may have stored: {error}"
            ));
            let (refused, going_on): (Vec<Job>, Vec<Job>) = {
                let state = lock(state);
                jobs.into_iter().partition(|job| {
                    job.events.iter().any(|event| {
                        matches!(state.in_doubt.get(&event.event_id), Some(Known::Doubt(_)))
                    })
                })
            };
            for job in refused {
                let _ = job.reply.send(Err(why.same()));
            }
            (!going_on.is_empty()).then_some(going_on)
        }
    }
}

/// How many groups may be handed to the log before the oldest is answered: two keep the
/// log busy (one being synced, the next waiting in its queue); more would only lengthen
/// what a refusal takes back.
const PIPELINE_DEPTH: usize = 2;

/// Takes the requests waiting after `first` into one group (see [`GATHER_TURNS`]).
async fn gather(first: Job, receiver: &mut mpsc::Receiver<Job>, config: &IngestConfig) -> Vec<Job> {
    let mut group_events = first.events.len();
    let mut jobs = vec![first];
    // Requests whose tasks are ready to run (received, being parsed) join this group:
    // the sequencer lets them run before it takes the group, as long as each turn
    // brings more, while the group is small. Nothing else ready (a quiet desk), it
    // commits after one turn.
    for turn in 0..GATHER_TURNS {
        let before = jobs.len();
        while group_events < config.max_group_events {
            match receiver.try_recv() {
                Ok(job) => {
                    group_events += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if group_events >= GATHER_BELOW_EVENTS || (turn > 0 && jobs.len() == before) {
            break;
        }
        tokio::task::yield_now().await;
    }
    jobs
}

/// Where one event of a request ends up.
enum Slot {
    /// Appended as `records[index]`.
    Appended(usize),
    /// A copy of `records[index]` earlier in the same group: not appended twice.
    Repeat(usize),
    /// Already in the log.
    Stored(EventPosition),
}

type Reply = oneshot::Sender<Result<Receipt, IngestError>>;

/// A group resolved (its folds staged in the state) and handed to the log.
struct Staged {
    /// Where the state goes back to if the log refuses the group.
    point: StagePoint,
    /// Each request still to be answered, and where its events end up.
    jobs: Vec<(Reply, Vec<Slot>)>,
    /// Each appended record's event id and topic.
    written: Vec<(Uuid, Topic)>,
}

/// A staged group and the log's answer to wait for.
struct InFlight {
    staged: Staged,
    answer: PendingAppend,
}

/// Resolves a group of requests in arrival order, folding their events into the state
/// (staged), and returns the records to append. A request that cannot be resolved is
/// refused alone, its folds taken back before the next request resolves.
///
/// A group stops taking requests once its records weigh [`GROUP_BYTES_MOST`]: the requests
/// after that are returned, untouched, to make the next group (each request stays whole).
fn stage_group(state: &Mutex<State>, jobs: Vec<Job>) -> (Staged, Vec<AppendRecord>, Vec<Job>) {
    // Sized for the whole group at once: grown by doubling, a group of 20,000 events
    // moved its records a dozen times.
    let group_events = jobs.iter().map(|job| job.events.len()).sum();
    let mut records: Vec<AppendRecord> = Vec::with_capacity(group_events);
    // foldhash, as for the recent ids: SipHash over every event id of a group was about
    // half a percent of a server's CPU under batched ingest (`perf record` of
    // `benches/serve_load.py`).
    let mut pending: HashMap<Uuid, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(group_events, Default::default());
    let mut accepted_jobs = Vec::with_capacity(jobs.len());
    let mut state = lock(state);
    // Between groups: what the follower parked is folded before this group resolves.
    state.fold_parked();
    let point = state.stage();
    let mut record_bytes = 0;
    let mut left_for_next = Vec::new();
    let mut jobs = jobs.into_iter();
    while let Some(mut job) = jobs.next() {
        if record_bytes >= GROUP_BYTES_MOST {
            left_for_next.push(job);
            left_for_next.extend(jobs);
            break;
        }
        let mut slots = Vec::with_capacity(job.events.len());
        let first_record = records.len();
        let job_start = state.stage();
        let mut failure = None;
        for (index, event) in job.events.iter_mut().enumerate() {
            // The same event again within the group: appended once, so folded once. Folded
            // again with a later stamp, its claims could outrank what came between, as the
            // log's one copy does not (a link, another link, the first link again).
            if let Some(&first) = pending.get(&event.event_id) {
                slots.push(Slot::Repeat(first));
                continue;
            }
            match state.prepare(event) {
                Ok(Prepared::Append(topic, key)) => {
                    pending.insert(event.event_id, records.len());
                    slots.push(Slot::Appended(records.len()));
                    records.push(record(event, topic, key));
                }
                Ok(Prepared::Stored(position)) => slots.push(Slot::Stored(position)),
                Err(IngestError::Invalid(error)) => {
                    failure = Some(IngestError::Invalid(error.within(&format!("[{index}]"))));
                    break;
                }
                Err(other) => {
                    failure = Some(other);
                    break;
                }
            }
        }
        match failure {
            // Validation upstream makes this unreachable in practice; if it happens the
            // events already folded for this job are taken back before the next job
            // resolves, so the jobs after it resolve as if it had never come.
            Some(error) => {
                state.take_back_to(job_start);
                for dropped in records.drain(first_record..) {
                    pending.remove(&dropped.event_id);
                }
                let _ = job.reply.send(Err(error));
            }
            None => {
                record_bytes += records[first_record..]
                    .iter()
                    .map(|record| record.payload.len() + record.key.len())
                    .sum::<usize>();
                accepted_jobs.push((job.reply, slots));
            }
        }
    }
    let written = records.iter().map(|r| (r.event_id, r.topic)).collect();
    let staged = Staged {
        point,
        jobs: accepted_jobs,
        written,
    };
    (staged, records, left_for_next)
}

/// The most bytes of records one group takes (it is one frame of the embedded log, and
/// one append): past it, the group's later requests make the next group. The log refuses
/// an append over 512 MiB whole, and sixty-four requests of 8 MiB gathered into one group
/// were all refused with it (503), though each alone was fine (found by review).
const GROUP_BYTES_MOST: usize = 64 << 20;

/// Answers the requests of the oldest group once the log has answered it. Durable, its
/// folds are kept (those of the groups staged after it stay staged). Refused, they are
/// taken back, and with them those of every later group in flight: the chain refuses
/// those too, and they are answered with the same refusal; the next group starts a new
/// chain.
async fn settle(
    state: &Mutex<State>,
    staged: Staged,
    outcome: Result<Vec<AppendOutcome>, LogError>,
    in_flight: &mut VecDeque<InFlight>,
    log: &Arc<dyn EventLog>,
    chain: &mut Chain,
) {
    let outcomes = match outcome {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::warn!(%error, "append failed; every request of the group, and of the groups after it, is refused");
            // Taken back before anyone hears of the refusal, so a retry resolves against
            // the view as it was before the group. (On Kafka a refused append may still
            // have landed in part: the follower of the log folds whatever did, as it folds
            // any other writer's records.)
            lock(state).take_back_to(staged.point);
            // Each group is told what is known of it: nothing stored, or perhaps some of
            // it (a Kafka group whose deliveries were not all confirmed).
            let mut refused = vec![(staged, error)];
            while let Some(later) = in_flight.pop_front() {
                let why = match later.answer.await {
                    Err(error) => error,
                    Ok(outcomes) => {
                        // The chain rules this out: a later group is refused with the first.
                        tracing::error!(
                            "the log stored a group handed over after a refused one of the same chain"
                        );
                        LogError::Unconfirmed {
                            message:
                                "a group after a refused one was stored; it is refused with it"
                                    .to_owned(),
                            fates: outcomes
                                .iter()
                                .map(|outcome| omnilog_log::RecordFate::Stored(outcome.position()))
                                .collect(),
                        }
                    }
                };
                refused.push((later.staged, why));
            }
            {
                let mut state = lock(state);
                state.keep();
                // Kept, not staged: what the refusals say of each record outlives the
                // groups taken back.
                for (group, why) in &refused {
                    state.note_fates(&group.written, why);
                }
                state.fold_parked();
            }
            *chain = log.new_chain();
            for (group, why) in refused {
                let why = IngestError::from(why);
                for (reply, _) in group.jobs {
                    let _ = reply.send(Err(why.same()));
                }
            }
            return;
        }
    };
    let positions: Vec<EventPosition> = outcomes
        .iter()
        .zip(&staged.written)
        .map(|(outcome, (_, topic))| EventPosition {
            topic: *topic,
            partition: outcome.position().partition,
            offset: outcome.position().offset,
            duplicate: outcome.is_duplicate(),
        })
        .collect();
    {
        let mut state = lock(state);
        match in_flight.front() {
            Some(later) => state.keep_before(later.staged.point),
            None => {
                state.keep();
                state.fold_parked();
            }
        }
        if positions.iter().any(|position| position.duplicate) {
            state.folded_twice = true;
        }
        for (position, (event_id, _)) in positions.iter().zip(&staged.written) {
            state.remember_stored(
                *event_id,
                position.topic,
                position.partition,
                position.offset,
            );
        }
    }
    for (reply, slots) in staged.jobs {
        let mut receipt = Receipt {
            accepted: 0,
            duplicates: 0,
            positions: Vec::with_capacity(slots.len()),
            token: ReadToken::default(),
        };
        for slot in slots {
            let position = match slot {
                Slot::Appended(index) => positions[index],
                Slot::Repeat(index) => EventPosition {
                    duplicate: true,
                    ..positions[index]
                },
                Slot::Stored(position) => position,
            };
            if position.duplicate {
                receipt.duplicates += 1;
            } else {
                receipt.accepted += 1;
            }
            receipt
                .token
                .include(position.topic, position.partition, position.offset);
            receipt.positions.push(position);
        }
        let _ = reply.send(Ok(receipt));
    }
}
