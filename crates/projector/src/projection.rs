//! One version of one view: its state in memory, its table in the store, and how a batch
//! of the log folds into it (the task that folds it is in [`crate::group`]).
//!
//! The fold of a batch: records are decoded once ([`Decoded`]); the records the fold needs
//! that are not in memory are loaded from the store ([`View::missing`]); then, under the
//! state's write lock, each event is applied in place and the positions move on. What could
//! not be decoded or applied goes to the dead letter. Queries see the state as soon as the
//! lock is released, and read-your-writes tokens wait on these applied positions.
//!
//! A checkpoint (every epoch, bounded in events and in time, see [`ProjectorConfig`]; and
//! whenever the cached records weigh more than their budget) takes the changed records and
//! the positions they came from under the same lock, writes them in one atomic batch, syncs
//! the store, then lets clean cached records go until memory is back under budget. After a
//! crash the version restarts from its last checkpoint and folds the log from there:
//! exactly-once in effect. Dead letters are appended before the checkpoint that moves past
//! them, with an id derived from (view, partition, offset), so a re-fold writes the same
//! dead letter again and the log keeps it once.

use std::any::Any;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use omnilog_events::{Destination, Event};
use omnilog_log::{AppendRecord, LogRecord, Topic};
use omnilog_store::{Checkpoint, TableReader, ViewTable};
use omnilog_views::state::{Run, merge_runs, sum_runs};
use omnilog_views::{
    Changes, EncodedChange, LogPosition, RecordSource, View, ViewError, ViewState,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::change_runs::{ChangeRun, RunFile};
use crate::{ProjectorConfig, ProjectorError};

/// The log topic a view's destination is read from.
pub fn topic_of(destination: Destination) -> Topic {
    match destination {
        Destination::Interactions => Topic::Interactions,
        Destination::Agents => Topic::Agents,
    }
}

pub(crate) fn destination_of(topic: Topic) -> Destination {
    match topic {
        Topic::Agents => Destination::Agents,
        _ => Destination::Interactions,
    }
}

/// Moves a partition's position on to `end`, never back. A live fold reads each partition in
/// order, so its positions only grow anyway; a replay that reads a partition in several
/// passes, each of a share of its keys ([`crate::ReplayOptions::records_per_pass`]), folds
/// the last pass's records after the other shares' later ones, and its checkpoint named
/// the last pass's last record's position, short of the partition's end: a server on the
/// replayed views then said they stood before events they had folded.
fn move_on(
    positions: &mut std::collections::BTreeMap<(Destination, u32), u64>,
    partition: (Destination, u32),
    end: u64,
) {
    let position = positions.entry(partition).or_insert(end);
    *position = (*position).max(end);
}

/// A record read from the log and decoded once, for every view that folds it.
#[derive(Debug)]
pub struct Decoded {
    pub record: LogRecord,
    pub event: Result<Event, omnilog_events::EventError>,
}

/// Decodes records (what could not be decoded keeps its error for the dead letter).
pub fn decode_all(records: Vec<LogRecord>) -> Vec<Decoded> {
    let mut decoded = Vec::new();
    decode_all_into(records, &mut decoded);
    decoded
}

/// Decodes records after what `decoded` holds (a vector from [`SpareDecoded::take`]).
///
/// Each event is decoded in its place in `decoded` ([`omnilog_events::EventDecoder::decode_into`]):
/// built elsewhere and moved in, each was copied whole four times (`memcpy` from the decoder
/// and from here in `valgrind --tool=callgrind omnilog replay`), and the replay's decoder
/// thread spent more of its time in `memmove` than in decoding (`perf record`).
///
/// The customers' ids are numbered by the calling thread's numbering, kept from batch to
/// batch ([`omnilog_events::numbering`]): a decoding thread's customers keep their numbers
/// across its batches, so that each view finds a customer's records where it left them.
pub fn decode_all_into(records: Vec<LogRecord>, decoded: &mut Vec<Decoded>) {
    NUMBERING.with_borrow_mut(|numbering| {
        let mut decoder = omnilog_events::EventDecoder::with_numbering(std::mem::take(numbering));
        decoded.reserve(records.len());
        for record in records {
            decoded.push(Decoded {
                record,
                event: Err(omnilog_events::EventError::Decode(String::new())),
            });
            if let Some(slot) = decoded.last_mut() {
                decoder.decode_into(&slot.record.payload, &mut slot.event);
            }
        }
        *numbering = decoder.into_numbering();
    });
}

thread_local! {
    /// The numbering of the customers decoded on this thread (a replay's decoder, a
    /// projector group's): at most a few megabytes of ids.
    static NUMBERING: std::cell::RefCell<omnilog_events::CustomerNumbering> =
        std::cell::RefCell::new(omnilog_events::CustomerNumbering::new());
}

/// Emptied vectors of decoded records, kept for the next records to be decoded into.
///
/// A batch's vector is a block of megabytes (8,192 decoded events in a replay), which the
/// allocator returns to the system once it is freed: taken fresh for each batch, its pages
/// were faulted in afresh each time (a quarter of a 1M-event replay's page faults, `perf
/// record -e page-faults`; see docs/benchmarks-journal.md, "2026-12-03, morning").
#[derive(Debug)]
pub(crate) struct SpareDecoded {
    spare: Vec<Vec<Decoded>>,
    keep: usize,
}

impl SpareDecoded {
    /// Keeps at most `keep` vectors.
    pub(crate) fn new(keep: usize) -> Self {
        SpareDecoded {
            spare: Vec::new(),
            keep,
        }
    }

    /// An empty vector: a kept one, or a new one.
    pub(crate) fn take(&mut self) -> Vec<Decoded> {
        self.spare.pop().unwrap_or_default()
    }

    /// Empties `decoded` (its events are let go on the calling thread) and keeps it, unless
    /// `keep` are kept already.
    pub(crate) fn give_back(&mut self, mut decoded: Vec<Decoded>) {
        decoded.clear();
        if self.spare.len() < self.keep {
            self.spare.push(decoded);
        }
    }
}

/// What a projection is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// The last attempt failed; it retries with backoff.
    Failing(String),
    Stopped,
}

/// What queries and operators see of a version.
#[derive(Debug)]
pub struct ProjectionStatus {
    pub view: &'static str,
    pub version: u32,
    pub topics: &'static [Destination],
    /// Where the state in memory stands: what queries see.
    applied: watch::Sender<Checkpoint>,
    /// The last checkpoint written to the store.
    committed: watch::Sender<Checkpoint>,
    phase: Mutex<Phase>,
}

impl ProjectionStatus {
    fn new(
        view: &'static str,
        version: u32,
        topics: &'static [Destination],
        checkpoint: Checkpoint,
        phase: Phase,
    ) -> Self {
        ProjectionStatus {
            view,
            version,
            topics,
            applied: watch::channel(checkpoint.clone()).0,
            committed: watch::channel(checkpoint).0,
            phase: Mutex::new(phase),
        }
    }

    /// Where the state queries read stands: positions folded and counters.
    pub fn checkpoint(&self) -> Checkpoint {
        self.applied.borrow().clone()
    }

    /// The last checkpoint written to the store.
    pub fn committed(&self) -> Checkpoint {
        self.committed.borrow().clone()
    }

    /// Follows the applied positions as batches are folded.
    pub fn subscribe(&self) -> watch::Receiver<Checkpoint> {
        self.applied.subscribe()
    }

    pub fn phase(&self) -> Phase {
        self.phase
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// Whether the state has folded `offset` of `topic`/`partition`.
    pub fn has_applied(&self, topic: Destination, partition: u32, offset: u64) -> bool {
        self.applied.borrow().next_offset(topic, partition) > offset
    }
}

/// Bookkeeping of the epoch in progress.
#[derive(Debug)]
struct Epoch {
    events: u64,
    started: Instant,
}

/// One version of a view: its state in memory, over its table in the store.
pub struct Version<V: View> {
    view: Arc<V>,
    table: ViewTable,
    state: RwLock<V::State>,
    status: Arc<ProjectionStatus>,
    config: ProjectorConfig,
    epoch: Mutex<Epoch>,
    /// Changes encoded ahead of the next checkpoint, which writes them first (a replay's
    /// records that are final: see [`AnyVersion::encode_ahead`]).
    encoded_ahead: Mutex<EncodedAhead>,
    /// Counts the times cached records were let go (under the state's write lock), so a
    /// fold knows whether what it loaded is still there when it applies (see `fold`).
    evictions: AtomicU64,
    /// Set (under the state's write lock) when a fold failed after applying part of its
    /// batch, until [`AnyVersion::reset`] reads the state back: no checkpoint is taken of
    /// it meanwhile. A checkpoint running beside the folds took the lock as the failed fold
    /// let it go, wrote the batch's first events' changes with the positions from before
    /// the batch, and the fold after the reset applied those events again (found by
    /// review).
    failed_halfway: AtomicBool,
    /// Set when a fold found a block of the version's store damaged: the next
    /// [`AnyVersion::reset`] clears the version and folds it again from offset 0, as an open
    /// that finds a record it cannot read does. Reading the block again fails again: the
    /// fold was retried for ever, with a growing backoff (found by review).
    store_damaged: AtomicBool,
}

/// Sets of changes encoded ahead of a checkpoint, oldest first, and what those held in
/// memory weigh.
#[derive(Debug, Default)]
struct EncodedAhead {
    sets: Vec<HeldChanges>,
    bytes: usize,
    /// Deltas of the state's sums, written aside by a replay's passes
    /// ([`omnilog_views::ViewState::take_sums`]), for its last checkpoint to add up.
    sums: Vec<ChangeRun>,
    /// The state's sums were taken apart: the last checkpoint takes what is left of them.
    sums_apart: bool,
    /// The files the runs of changes and of sums are written to, once there is one.
    change_file: Option<RunFile>,
    sums_file: Option<RunFile>,
}

/// A set of changes encoded ahead: in memory, or written to a run file.
#[derive(Debug)]
enum HeldChanges {
    InMemory(Changes),
    OnDisk(ChangeRun),
}

impl HeldChanges {
    fn len(&self) -> usize {
        match self {
            HeldChanges::InMemory(changes) => changes.len(),
            HeldChanges::OnDisk(run) => run.len(),
        }
    }

    /// Its changes as a run, read beside `read_together` runs in all.
    fn into_run(self, read_together: usize) -> Run {
        match self {
            HeldChanges::InMemory(changes) => changes.into_run(),
            HeldChanges::OnDisk(run) => run.into_run(read_together),
        }
    }

    /// The changes in memory (a run is read back whole).
    fn into_set(self) -> Result<Changes, ViewError> {
        match self {
            HeldChanges::InMemory(changes) => Ok(changes),
            HeldChanges::OnDisk(run) => {
                let len = run.len();
                Changes::from_run(run.into_run(1), len)
            }
        }
    }
}

impl<V: View> std::fmt::Debug for Version<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("view", &self.status.view)
            .field("version", &self.status.version)
            .finish_non_exhaustive()
    }
}

/// The mutex locked, its poison (a panic while it was held) cleared: for what is about to
/// be set anew whole.
fn recovered<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| {
        mutex.clear_poison();
        poisoned.into_inner()
    })
}

fn lock_error<T>(_: PoisonError<T>) -> ProjectorError {
    ProjectorError::Task("a view state's lock was poisoned by a panic".to_owned())
}

impl<V: View> Version<V> {
    /// The state and checkpoint stored in `table`; where a record cannot be read, the
    /// version cleared and a new state to fold from offset 0.
    fn load_or_clear(
        view: &Arc<V>,
        table: &ViewTable,
    ) -> Result<(V::State, Checkpoint), ProjectorError> {
        match Self::load(view, table) {
            Ok(loaded) => Ok(loaded),
            Err(ProjectorError::View(ViewError::Corrupt { key, reason })) => {
                Self::cleared(view, table, &key, &reason)
            }
            Err(error) => Err(error),
        }
    }

    /// Clears the version (a stored record or block named by `key` cannot be read) and
    /// gives a new state to fold from offset 0.
    fn cleared(
        view: &Arc<V>,
        table: &ViewTable,
        key: &str,
        reason: &str,
    ) -> Result<(V::State, Checkpoint), ProjectorError> {
        tracing::warn!(
            view = view.name(),
            version = table.version(),
            key,
            reason,
            "a stored record of the view cannot be read; the version is cleared and folded again from offset 0"
        );
        // In the view's layout, even where the stored one is what cannot be read.
        table.clear_to(Some(view.layout()))?;
        let mut state = view.new_state();
        // Cleared, the store holds nothing the fold need ask it for.
        state.starts_empty();
        Ok((state, Checkpoint::default()))
    }

    /// Opens a version from its table: the whole tables are read into memory and the
    /// positions from the checkpoint. A version whose records cannot be read is cleared and
    /// folded again from offset 0, with a warning. Blocks.
    pub fn open(
        view: Arc<V>,
        table: ViewTable,
        config: ProjectorConfig,
        phase: Phase,
    ) -> Result<Self, ProjectorError> {
        let (state, checkpoint) = Self::load_or_clear(&view, &table)?;
        Ok(Version {
            status: Arc::new(ProjectionStatus::new(
                view.name(),
                table.version(),
                view.topics(),
                checkpoint,
                phase,
            )),
            view,
            table,
            state: RwLock::new(state),
            config,
            epoch: Mutex::new(Epoch {
                events: 0,
                started: Instant::now(),
            }),
            encoded_ahead: Mutex::new(EncodedAhead::default()),
            evictions: AtomicU64::new(0),
            failed_halfway: AtomicBool::new(false),
            store_damaged: AtomicBool::new(false),
        })
    }

    fn load(view: &V, table: &ViewTable) -> Result<(V::State, Checkpoint), ProjectorError> {
        let checkpoint = table.checkpoint()?;
        let mut state = view.new_state();
        if table.holds_records()? {
            table.restore_whole(&mut state)?;
        } else {
            // A new version: the fold need not ask the store for what it does not hold.
            state.starts_empty();
        }
        Ok((state, checkpoint))
    }

    pub fn view(&self) -> &Arc<V> {
        &self.view
    }

    /// The state, for a query (held briefly: the fold waits while it is held).
    pub fn state(&self) -> RwLockReadGuard<'_, V::State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// What queries read through for records not in memory.
    pub fn reader(&self) -> TableReader {
        self.table.reader()
    }

    /// Runs a query over the state and the store behind it.
    pub fn read<T>(&self, query: impl FnOnce(&V::State, &TableReader) -> T) -> T {
        let reader = self.table.reader();
        let state = self.state();
        query(&state, &reader)
    }

    /// Writes a checkpoint ([`AnyVersion::checkpoint`]); with `evict`, lets clean records
    /// go after it, down to the budget.
    fn write_checkpoint(&self, evict: bool) -> Result<(), ProjectorError> {
        let taken = self.take_changes()?;
        self.write_taken(taken, evict)
    }

    /// Takes the changes for a checkpoint, and the positions they came from. Under the lock
    /// only the changed records are taken (shared, not copied); they are encoded after it is
    /// released, while the fold and the queries go on. What is folded from here on belongs
    /// to the next epoch.
    fn take_changes(&self) -> Result<TakenChanges, ProjectorError> {
        self.take_changes_by(V::State::take_changes, false)
    }

    /// [`Version::take_changes`], the state's changes taken by `take` (all of them, or a
    /// replay's pass-end share: [`ViewState::take_pass_changes`]).
    /// With `sums`, the state's sums too ([`ViewState::take_sums`]).
    fn take_changes_by(
        &self,
        take: impl FnOnce(&mut V::State) -> Result<omnilog_views::Snapshot, ViewError>,
        sums: bool,
    ) -> Result<TakenChanges, ProjectorError> {
        let mut state = self.state.write().map_err(lock_error)?;
        if self.failed_halfway.load(Ordering::Acquire) {
            return Err(ProjectorError::Task(
                "a fold failed halfway through its batch: nothing is checkpointed until the state is read back from the last checkpoint".to_owned(),
            ));
        }
        *self.epoch.lock().map_err(lock_error)? = Epoch {
            events: 0,
            started: Instant::now(),
        };
        Ok(TakenChanges {
            snapshot: take(&mut state)?,
            checkpoint: self.status.checkpoint(),
            sums: if sums { Some(state.take_sums()?) } else { None },
        })
    }

    /// Encodes and writes changes taken for a checkpoint (with those encoded ahead, and with
    /// the sums' deltas written aside if they are `taken.sums`: the replay's last
    /// checkpoint); with `evict`, lets clean records go after it, down to the budget.
    fn write_taken(&self, taken: TakenChanges, evict: bool) -> Result<(), ProjectorError> {
        let TakenChanges {
            snapshot,
            checkpoint,
            sums,
        } = taken;
        let started = Instant::now();
        let (held, sums, read_together) = {
            let mut ahead = self.encoded_ahead.lock().map_err(lock_error)?;
            let held = std::mem::take(&mut ahead.sets);
            ahead.bytes = 0;
            // The changes and the sums written aside are merged at once: their run readers
            // share one budget of buffers.
            let read_together = held.len() + if sums.is_some() { ahead.sums.len() } else { 0 };
            // Deltas are added up once, by the last checkpoint: written before it, a
            // sum would be overwritten by the sum of what came after.
            let sums = match sums {
                Some(last) => {
                    // The last checkpoint: once read, nothing more is written to the files,
                    // which go with their last run.
                    ahead.change_file = None;
                    ahead.sums_file = None;
                    let mut runs: Vec<Run> = std::mem::take(&mut ahead.sums)
                        .into_iter()
                        .map(|run| run.into_run(read_together))
                        .collect();
                    if !last.is_empty() {
                        runs.push(Box::new(last.encode_in_order()?));
                    }
                    // No sums: nothing to add up (nor a reason to ingest).
                    (!runs.is_empty()).then_some(runs)
                }
                None => None,
            };
            (held, sums, read_together)
        };
        let held_records = held.iter().map(HeldChanges::len).sum::<usize>();
        // Sums are a replay's (bulk), and written as its records are: ingested.
        let records = if sums.is_some() || self.ingests(snapshot.len() + held_records) {
            // Streamed into the store's disk tables: the newest changes are encoded only as
            // the merge with the sets encoded ahead (if any, read from their files as the
            // merge goes) reaches them, never a second encoded copy of them all, nor one
            // list of every change (see `merge_runs`).
            let written = std::sync::atomic::AtomicUsize::new(0);
            let mut runs: Vec<Run> = held
                .into_iter()
                .map(|set| set.into_run(read_together))
                .collect();
            runs.push(Box::new(snapshot.encode_in_order()?));
            if let Some(sums) = sums {
                runs.push(Box::new(sum_runs(sums, V::State::add_sum)));
            }
            let changes = merge_runs(runs).inspect(|_| {
                written.fetch_add(1, Ordering::Relaxed);
            });
            ingest_encoded_beside(&self.table, changes, &checkpoint)?;
            written.into_inner()
        } else {
            let mut sets = held
                .into_iter()
                .map(HeldChanges::into_set)
                .collect::<Result<Vec<_>, _>>()?;
            sets.push(snapshot.encode()?);
            let changes = Changes::in_order(sets);
            let records = changes.len();
            self.commit_encoded(changes, &checkpoint)?;
            records
        };
        self.status.committed.send_replace(checkpoint);
        // Written: clean records may go now, down to three quarters of the budget, so
        // that a full cache does not ask for a checkpoint again after the next batch
        // (each checkpoint re-encodes what changed and, in bulk, adds a disk table).
        if evict {
            self.let_go_to_budget()?;
        }
        tracing::debug!(
            view = self.status.view,
            version = self.status.version,
            records,
            cached_bytes = self.memory(),
            took_ms = started.elapsed().as_millis() as u64,
            "checkpoint written"
        );
        Ok(())
    }

    /// Whether a checkpoint of `records` changes is written by bulk ingestion (disk tables)
    /// rather than through the store's journal.
    fn ingests(&self, records: usize) -> bool {
        self.config.bulk && records >= BULK_INGEST_MIN_RECORDS
    }

    /// Commits encoded changes with the positions they lead to through the store's journal
    /// (too few to ingest: [`Version::ingests`]).
    fn commit_encoded(
        &self,
        changes: Changes,
        checkpoint: &Checkpoint,
    ) -> Result<(), ProjectorError> {
        self.table.commit(changes, checkpoint)?;
        // A bulk checkpoint of a few records is one write to the store's journal, which the
        // replay syncs once at its end. An ingestion makes a disk table and a new version of
        // the store, each synced, and ingestions go one at a time: a replay's five last
        // checkpoints took about 6 ms each however few their records (the "checkpoint
        // written" lines of `RUST_LOG=omnilog_projector=debug omnilog replay` of 100 events).
        if !self.config.bulk {
            self.table.flush()?;
        }
        Ok(())
    }

    /// Lets clean cached records go until they weigh about `budget`, and counts it (under
    /// the write lock) for folds to see.
    fn evict_to(&self, budget: usize) -> Result<(), ProjectorError> {
        let mut state = self.state.write().map_err(lock_error)?;
        state.evict(budget);
        self.evictions.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The state's records in memory, encoded, in key order (a state wholly in memory
    /// compares by it).
    pub fn dump_memory(&self) -> Result<omnilog_views::Entries, ProjectorError> {
        Ok(self.state().dump()?)
    }
}

/// Below this many records, a bulk checkpoint (a replay's) is committed through the store's
/// journal instead of ingested as a disk table of its own.
const BULK_INGEST_MIN_RECORDS: usize = 4_096;

/// Changes a thread encodes at once for an ingestion that writes them on another.
const ENCODED_CHUNK: usize = 256;

/// Ingests `changes` in order as [`ViewTable::ingest_in_order`] does, with the records
/// encoded on a thread of their own while the ingestion writes the ones before. A large
/// checkpoint was one thread's work, encoding then writing: the reports' last checkpoint
/// of a 1M replay ran alone for about a tenth of a second, every other worker done
/// (`perf record omnilog replay`, samples by thread and time).
fn ingest_encoded_beside(
    table: &ViewTable,
    changes: impl Iterator<Item = EncodedChange> + Send,
    checkpoint: &Checkpoint,
) -> Result<(), ProjectorError> {
    std::thread::scope(|scope| {
        // Chunks of encoded changes, then `None` once every change is sent: a channel that
        // ends without it (the encoder panicked) fails the ingestion, which would otherwise
        // end short and write a checkpoint whose positions claim changes it lacks.
        let (chunks, encoded) = std::sync::mpsc::sync_channel::<Option<Vec<EncodedChange>>>(4);
        std::thread::Builder::new()
            .name("checkpoint-encode".to_owned())
            .spawn_scoped(scope, move || {
                let mut chunk = Vec::with_capacity(ENCODED_CHUNK);
                for change in changes {
                    let failed = change.is_err();
                    chunk.push(change);
                    // An error ends the encoding: the ingestion fails on it.
                    if chunk.len() == ENCODED_CHUNK || failed {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(ENCODED_CHUNK));
                        // The ingestion gone (it failed): nothing more to encode.
                        if chunks.send(Some(full)).is_err() || failed {
                            return;
                        }
                    }
                }
                if !chunk.is_empty() && chunks.send(Some(chunk)).is_err() {
                    return;
                }
                let _ = chunks.send(None);
            })
            .map_err(|e| ProjectorError::Task(format!("starting a checkpoint's encoder: {e}")))?;
        table.ingest_in_order(received_until_the_end(encoded), checkpoint)?;
        Ok(())
    })
}

/// The changes an encoder sends as chunks, ended by its `None`; a channel that closes before
/// that gives an error as its last change.
fn received_until_the_end(
    encoded: std::sync::mpsc::Receiver<Option<Vec<EncodedChange>>>,
) -> impl Iterator<Item = EncodedChange> {
    let mut chunk = Vec::new().into_iter();
    let mut ended = false;
    std::iter::from_fn(move || {
        loop {
            if let Some(change) = chunk.next() {
                return Some(change);
            }
            if ended {
                return None;
            }
            match encoded.recv() {
                Ok(Some(next)) => chunk = next.into_iter(),
                Ok(None) => ended = true,
                Err(_) => {
                    ended = true;
                    return Some(Err(ViewError::Storage(
                        "a checkpoint's encoding stopped before its end".to_owned(),
                    )));
                }
            }
        }
    })
}

/// The changes of a checkpoint, taken from a version's state, and the positions they came
/// from: what [`AnyVersion::write_taken`] writes.
#[derive(Debug)]
pub struct TakenChanges {
    snapshot: omnilog_views::Snapshot,
    checkpoint: Checkpoint,
    /// The state's sums, taken apart ([`omnilog_views::ViewState::take_sums`]).
    sums: Option<omnilog_views::Snapshot>,
}

/// The id of the dead letter of one record for one view: the same on every re-fold.
/// How many times a fold asks for the records it needs: each round may find records that
/// name others (see [`View::missing`]).
const MISSING_ROUNDS: usize = 3;

fn dead_letter_id(view: &str, record: &LogRecord) -> Uuid {
    let name = format!(
        "dead-letter\0{view}\0{}\0{}\0{}",
        record.topic.name(),
        record.partition,
        record.offset
    );
    omnilog_events::identity::omnilog_uuid(name.as_bytes())
}

fn dead_letter(view: &str, record: &LogRecord, reason: &str) -> AppendRecord {
    tracing::warn!(
        view,
        topic = record.topic.name(),
        partition = record.partition,
        offset = record.offset,
        reason,
        "event sent to the dead letter"
    );
    AppendRecord {
        topic: Topic::DeadLetter,
        key: String::from_utf8_lossy(&record.key).into_owned(),
        event_id: dead_letter_id(view, record),
        payload: record.payload.clone(),
        headers: vec![
            ("reason".to_owned(), reason.as_bytes().to_vec()),
            ("view".to_owned(), view.as_bytes().to_vec()),
            ("topic".to_owned(), record.topic.name().as_bytes().to_vec()),
            (
                "partition".to_owned(),
                record.partition.to_string().into_bytes(),
            ),
            ("offset".to_owned(), record.offset.to_string().into_bytes()),
        ],
    }
}

/// A version whatever its view's state: what the runtime drives.
pub trait AnyVersion: Send + Sync + std::fmt::Debug + 'static {
    fn status(&self) -> &Arc<ProjectionStatus>;

    fn table(&self) -> &ViewTable;

    /// Folds a batch of decoded records (each partition's in order, starting where the
    /// version stands; records of topics the view does not fold are passed over); returns
    /// the dead letters to append. With `until`, events that occurred later are passed over
    /// (their positions still move). Blocks (it may read the store). A checkpoint written
    /// meanwhile on another thread may let records go that the fold loaded: it loads them
    /// again before it applies anything.
    fn fold(
        &self,
        batch: &[&Decoded],
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<AppendRecord>, ProjectorError>;

    /// Whether the epoch is over: enough events or time since the last checkpoint, or
    /// cached records over their budget.
    fn checkpoint_due(&self) -> bool;

    /// Whether the cached records weigh more than twice their budget: a fold then waits
    /// for the checkpoint being written before it goes on. Folds go on beside a
    /// checkpoint, and one that the store held back (fjall stops writes that are not
    /// ingestions while 30 runs wait in its first level) let them run on without bound:
    /// `omnilog replay --view journey --cache-mb 32` of 10M events peaked at 731 MB, and
    /// at 507 MB with the wait (docs/benchmarks-journal.md, "2026-12-02, evening").
    fn must_wait_for_checkpoint(&self) -> bool;

    /// Whether anything was folded since the last checkpoint.
    fn has_pending(&self) -> bool;

    /// Writes the changes since the last checkpoint and the positions they came from,
    /// syncs the store, and lets clean cached records go. Blocks. Folds may go on
    /// meanwhile (they wait only while the changes are taken); the caller never runs two
    /// checkpoints of a version at once.
    fn checkpoint(&self) -> Result<(), ProjectorError>;

    /// Writes a checkpoint as [`AnyVersion::checkpoint`] does, and lets no record go: the
    /// last checkpoint of a version about to be let go whole (the end of a replay), or one
    /// whose caller lets records go itself ([`AnyVersion::let_go_to_budget`]).
    fn checkpoint_keeping(&self) -> Result<(), ProjectorError>;

    /// The first half of [`AnyVersion::checkpoint_keeping`]: takes the changes (quickly,
    /// under the lock), for [`AnyVersion::write_taken`] to write, on another thread if
    /// need be. A replay takes them on its worker at the end of a pass, so that the
    /// checkpoint holds that pass's changes and nothing of the next one.
    fn take_checkpoint(&self) -> Result<TakenChanges, ProjectorError>;

    /// [`AnyVersion::take_checkpoint`] at the end of a replay's pass: the changes of
    /// [`omnilog_views::ViewState::take_pass_changes`]. Positions written with them may be
    /// ahead of what is written (a replay's version is only made active once its last
    /// checkpoint, which takes every change, is written).
    ///
    /// With `sums`, takes the state's sums apart too ([`ViewState::take_sums`]), for
    /// [`AnyVersion::encode_ahead`] to write aside and [`AnyVersion::last_checkpoint`] to
    /// add up: the replay then holds a pass's sums, not the history's.
    fn take_pass_checkpoint(&self, sums: bool) -> Result<TakenChanges, ProjectorError>;

    /// A replay's last checkpoint: [`AnyVersion::checkpoint_keeping`], with the sums'
    /// deltas written aside, if any, added up and written.
    fn last_checkpoint(&self) -> Result<(), ProjectorError>;

    /// The second half of [`AnyVersion::checkpoint_keeping`]: encodes and writes changes
    /// taken by [`AnyVersion::take_checkpoint`], and lets no record go.
    fn write_taken(&self, taken: TakenChanges) -> Result<(), ProjectorError>;

    /// Lets clean cached records go, least recently used first, down to three quarters of
    /// the budget.
    fn let_go_to_budget(&self) -> Result<(), ProjectorError>;

    /// Whether the view's records are each touched by one partition only
    /// ([`omnilog_views::View::partition_local`]).
    fn partition_local(&self) -> bool;

    /// For a replay of a partition-local view, once the changes of a folded partition were
    /// taken for a checkpoint (and, with `let_go`, written): forgets the keys that partition
    /// let go, and with `let_go` lets its clean records go unremembered
    /// ([`omnilog_views::Evictable::partition_done`]).
    fn partition_done(&self, let_go: bool) -> Result<(), ProjectorError>;

    /// Makes the cached tables ask the store for any record not in memory again (after
    /// [`AnyVersion::partition_done`], before folding records of any partition).
    fn store_may_hold_anything(&self) -> Result<(), ProjectorError>;

    /// Encodes changes taken by [`AnyVersion::take_checkpoint`] now, for the next
    /// checkpoint to write with the positions: a replay does it once a partition is
    /// folded, while the next one folds, so the last checkpoint does not encode the whole
    /// history after the fold. The encoded records are what the checkpoint writes: their
    /// clean records in memory may go. Given `runs_dir`, they are written there to a run
    /// file (see [`crate::change_runs`]) instead of held in memory; so are the sums'
    /// deltas, if taken (which needs `runs_dir`). Blocks; never runs beside a checkpoint of
    /// the same version.
    fn encode_ahead(
        &self,
        taken: TakenChanges,
        runs_dir: Option<&Path>,
    ) -> Result<(), ProjectorError>;

    /// Goes back to the last checkpoint (after a failure in the middle of a fold, the state
    /// in memory may hold part of a batch); where a fold found the version's store damaged,
    /// or a record of it cannot be read, clears the version to fold from offset 0. Blocks.
    fn reset(&self) -> Result<(), ProjectorError>;

    /// The cached records' weight in memory (about, in bytes).
    fn memory(&self) -> usize;

    /// How many records the state's whole tables of sums hold
    /// ([`omnilog_views::ViewState::sums_len`]).
    fn sums_held(&self) -> usize;

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<V: View> AnyVersion for Version<V> {
    fn status(&self) -> &Arc<ProjectionStatus> {
        &self.status
    }

    fn table(&self) -> &ViewTable {
        &self.table
    }

    fn fold(
        &self,
        batch: &[&Decoded],
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<AppendRecord>, ProjectorError> {
        // Bring what the fold needs into memory first, so the fold itself never waits on
        // the disk and holds the write lock only for in-memory work.
        let topics = self.status.topics;
        let folds = |decoded: &Decoded| topics.contains(&destination_of(decoded.record.topic));
        // A checkpoint written beside the fold (on another thread) may let clean records go
        // between their loading and the fold's write lock: the fold then loads again, so it
        // never applies an event to a record that is neither in memory nor known absent.
        let mut state = loop {
            let evictions = self.evictions.load(Ordering::Acquire);
            // A record loaded in one round may name another the fold needs (the reports'
            // pending self-service session names its session): ask again after each load.
            for _round in 0..MISSING_ROUNDS {
                let mut missing = Vec::new();
                {
                    let state = self.state.read().map_err(lock_error)?;
                    // Nothing let go since the state started from an empty store (a
                    // replay's first pass, or all of a short one): nothing to ask for.
                    if state.holds_everything() {
                        break;
                    }
                    for decoded in batch.iter().filter(|d| folds(d)) {
                        if let Ok(event) = &decoded.event {
                            self.view.missing(&state, event, &mut missing)?;
                        }
                    }
                }
                if missing.is_empty() {
                    break;
                }
                missing.sort_unstable();
                missing.dedup();
                let loaded = match self.table.get_many(missing) {
                    Ok(loaded) => loaded,
                    Err(damage @ ViewError::Corrupt { .. }) => {
                        self.store_damaged.store(true, Ordering::Release);
                        return Err(damage.into());
                    }
                    Err(error) => return Err(error.into()),
                };
                let mut state = self.state.write().map_err(lock_error)?;
                for (key, value) in loaded {
                    match state.restore(&key, value.as_deref()) {
                        Ok(()) => {}
                        // A stored record that cannot be read (damaged on disk): failing the
                        // fold would fold the same batch again, and fail again, for ever. It is
                        // passed over as absent, as queries pass over it: counted where
                        // operators look (`GET /v1/views`) and logged once, and the fold
                        // starts that record afresh (a rebuild brings its history back).
                        Err(error @ ViewError::Corrupt { .. }) => {
                            self.table.reader().unreadable(&key, &error);
                            state.restore(&key, None)?;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }
            let state = self.state.write().map_err(lock_error)?;
            if self.evictions.load(Ordering::Acquire) == evictions {
                break state;
            }
        };
        let name = self.view.name();
        let mut dead_letters = Vec::new();
        let mut checkpoint = self.status.checkpoint();
        let mut folded = 0;
        // The position reached in the partition being folded, written to the checkpoint's
        // map when the batch moves to another partition or ends: a map insert per event
        // and view was 3.6 % of a replay's instructions (`valgrind --tool=callgrind omnilog
        // replay` of the 200k history), and a batch is mostly one partition's records.
        let mut reached: Option<((Destination, u32), u64)> = None;
        for decoded in batch.iter().filter(|d| folds(d)) {
            folded += 1;
            let record = &decoded.record;
            let destination = destination_of(record.topic);
            // Passed over (a replay as of `until`): its position moves on, but it is not
            // counted as folded, as `Checkpoint::events_applied` says (found by review).
            let mut passed_over = false;
            let reason = match &decoded.event {
                Err(error) => Some(format!("undecodable: {error}")),
                Ok(event) if until.is_some_and(|until| event.occurred_at > until) => {
                    passed_over = true;
                    None
                }
                Ok(event) => {
                    let position = LogPosition {
                        partition: record.partition,
                        offset: record.offset,
                    };
                    match self.view.apply(&mut state, event, position) {
                        Ok(()) => None,
                        Err(ViewError::Unapplicable(reason)) => Some(reason),
                        Err(ViewError::BadQuery { parameter, message }) => {
                            Some(format!("{parameter}: {message}"))
                        }
                        // The store or the runtime failed, not the event: the caller goes
                        // back to the last checkpoint and folds again. What the batch's
                        // events before it changed stays in the state until then, and must
                        // not be checkpointed (the lock is still held here).
                        Err(fatal @ (ViewError::Storage(_) | ViewError::Corrupt { .. })) => {
                            self.failed_halfway.store(true, Ordering::Release);
                            return Err(fatal.into());
                        }
                    }
                }
            };
            if let Some(reason) = reason {
                dead_letters.push(dead_letter(name, record, &reason));
                checkpoint.dead_letters += 1;
            }
            let partition = (destination, record.partition);
            match &mut reached {
                Some((current, end)) if *current == partition => *end = record.offset + 1,
                _ => {
                    if let Some((left, end)) = reached.replace((partition, record.offset + 1)) {
                        move_on(&mut checkpoint.positions, left, end);
                    }
                }
            }
            if !passed_over {
                checkpoint.events_applied += 1;
            }
        }
        if let Some((partition, end)) = reached {
            move_on(&mut checkpoint.positions, partition, end);
        }
        self.status.applied.send_replace(checkpoint);
        // Counted under the state's lock, so a checkpoint taken meanwhile sees both or neither.
        self.epoch.lock().map_err(lock_error)?.events += folded;
        drop(state);
        Ok(dead_letters)
    }

    fn checkpoint_due(&self) -> bool {
        let epoch = self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
        if epoch.events == 0 {
            return false;
        }
        epoch.events >= self.config.checkpoint_events
            || epoch.started.elapsed() >= self.config.checkpoint_interval
            || self.memory() > self.config.cache_bytes
    }

    fn must_wait_for_checkpoint(&self) -> bool {
        self.memory() > self.config.cache_bytes.saturating_mul(2)
    }

    fn has_pending(&self) -> bool {
        self.epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            > 0
    }

    fn checkpoint(&self) -> Result<(), ProjectorError> {
        self.write_checkpoint(true)
    }

    fn checkpoint_keeping(&self) -> Result<(), ProjectorError> {
        self.write_checkpoint(false)
    }

    fn take_checkpoint(&self) -> Result<TakenChanges, ProjectorError> {
        self.take_changes()
    }

    fn take_pass_checkpoint(&self, sums: bool) -> Result<TakenChanges, ProjectorError> {
        self.take_changes_by(V::State::take_pass_changes, sums)
    }

    fn last_checkpoint(&self) -> Result<(), ProjectorError> {
        let sums_apart = self.encoded_ahead.lock().map_err(lock_error)?.sums_apart;
        let taken = self.take_changes_by(V::State::take_changes, sums_apart)?;
        Version::write_taken(self, taken, false)
    }

    fn write_taken(&self, taken: TakenChanges) -> Result<(), ProjectorError> {
        Version::write_taken(self, taken, false)
    }

    fn let_go_to_budget(&self) -> Result<(), ProjectorError> {
        self.evict_to(self.config.cache_bytes / 4 * 3)
    }

    fn partition_local(&self) -> bool {
        self.view.partition_local()
    }

    fn partition_done(&self, let_go: bool) -> Result<(), ProjectorError> {
        let mut state = self.state.write().map_err(lock_error)?;
        let tables = state.partition_tables();
        if tables.is_empty() {
            // A partition-local view that does not list its tables: its clean records
            // still go, remembered as any eviction's.
            drop(tables);
            if let_go {
                state.evict(0);
            }
        } else {
            for table in tables {
                table.partition_done(let_go);
            }
        }
        self.evictions.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn store_may_hold_anything(&self) -> Result<(), ProjectorError> {
        let mut state = self.state.write().map_err(lock_error)?;
        for table in state.partition_tables() {
            table.store_may_hold_anything();
        }
        Ok(())
    }

    fn encode_ahead(
        &self,
        taken: TakenChanges,
        runs_dir: Option<&Path>,
    ) -> Result<(), ProjectorError> {
        // Written with the files taken out of the lock, which the fold's thread takes to
        // weigh what is held (`memory`).
        let (mut change_file, mut sums_file) = {
            let mut ahead = self.encoded_ahead.lock().map_err(lock_error)?;
            (ahead.change_file.take(), ahead.sums_file.take())
        };
        let write_run = |file: &mut Option<RunFile>,
                         dir: &Path,
                         snapshot: omnilog_views::Snapshot,
                         what: &str| {
            let file = match file {
                Some(file) => file,
                None => file.insert(RunFile::create_in(dir)?),
            };
            let run = file.write_encoding(snapshot.encode_in_order()?)?;
            tracing::debug!(
                view = self.status.view,
                changes = run.len(),
                bytes = run.bytes(),
                what,
                "changes written aside"
            );
            Ok::<_, ProjectorError>(run)
        };
        let held = match runs_dir {
            Some(dir) => {
                HeldChanges::OnDisk(write_run(&mut change_file, dir, taken.snapshot, "changes")?)
            }
            None => HeldChanges::InMemory(taken.snapshot.encode()?),
        };
        // A state without sums takes none: no run for them.
        let sums_taken = taken.sums.is_some();
        let sums = match (taken.sums.filter(|sums| !sums.is_empty()), runs_dir) {
            (Some(sums), Some(dir)) => Some(write_run(&mut sums_file, dir, sums, "sums")?),
            (Some(_), None) => {
                return Err(ProjectorError::Task(
                    "a replay took sums apart with nowhere to write them".to_owned(),
                ));
            }
            (None, _) => None,
        };
        let mut ahead = self.encoded_ahead.lock().map_err(lock_error)?;
        ahead.change_file = change_file;
        ahead.sums_file = sums_file;
        if let HeldChanges::InMemory(changes) = &held {
            ahead.bytes += changes.weight();
        }
        ahead.sets.push(held);
        ahead.sums.extend(sums);
        ahead.sums_apart |= sums_taken;
        Ok(())
    }

    fn reset(&self) -> Result<(), ProjectorError> {
        let (state, checkpoint) = if self.store_damaged.swap(false, Ordering::AcqRel) {
            Self::cleared(
                &self.view,
                &self.table,
                "a block of the view store",
                "a fold found it damaged",
            )
            .inspect_err(|_| {
                // Not cleared (its disk failing now, say): the next reset tries again.
                self.store_damaged.store(true, Ordering::Release);
            })?
        } else {
            Self::load_or_clear(&self.view, &self.table)?
        };
        // Replaced whole, so a state a panic poisoned (a fold that panicked halfway through
        // an event) is good again: refused as poisoned, every later fold and reset failed
        // and the version never folded again (found by review).
        let mut held = self.state.write().unwrap_or_else(|poisoned| {
            self.state.clear_poison();
            poisoned.into_inner()
        });
        *held = state;
        self.failed_halfway.store(false, Ordering::Release);
        drop(held);
        *recovered(&self.encoded_ahead) = EncodedAhead::default();
        self.status.applied.send_replace(checkpoint.clone());
        self.status.committed.send_replace(checkpoint);
        *recovered(&self.epoch) = Epoch {
            events: 0,
            started: Instant::now(),
        };
        Ok(())
    }

    fn memory(&self) -> usize {
        let ahead = self
            .encoded_ahead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes;
        self.state().cached_weight() + ahead
    }

    fn sums_held(&self) -> usize {
        self.state().sums_len()
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// A view whatever its state: what the runtime is given.
pub trait Projectable: Send + Sync + std::fmt::Debug + 'static {
    fn name(&self) -> &'static str;

    fn topics(&self) -> &'static [Destination];

    fn layout(&self) -> u32;

    /// Opens a version of this view over `table`. Blocks.
    fn open_version(
        self: Arc<Self>,
        table: ViewTable,
        config: ProjectorConfig,
        phase: Phase,
    ) -> Result<Arc<dyn AnyVersion>, ProjectorError>;

    /// A fresh state of this view held wholly in memory, to fold events into one by one:
    /// the views' folds alone, without a store (`omnilog bench`'s stage (b)).
    fn in_memory(self: Arc<Self>) -> Box<dyn InMemoryFold>;
}

/// A view and its state held wholly in memory ([`Projectable::in_memory`]).
pub trait InMemoryFold: Send {
    fn name(&self) -> &'static str;

    /// Folds `event` as [`omnilog_views::apply_in_memory`] does, if it is of a topic the
    /// view reads; passes over it otherwise.
    fn apply(&mut self, event: &Event, position: LogPosition) -> Result<(), ViewError>;
}

struct MemoryFold<V: View> {
    view: Arc<V>,
    state: V::State,
}

impl<V: View> InMemoryFold for MemoryFold<V> {
    fn name(&self) -> &'static str {
        self.view.name()
    }

    fn apply(&mut self, event: &Event, position: LogPosition) -> Result<(), ViewError> {
        if !self.view.topics().contains(&event.destination()) {
            return Ok(());
        }
        omnilog_views::apply_in_memory(&*self.view, &mut self.state, event, position)
    }
}

impl<V: View> Projectable for V {
    fn name(&self) -> &'static str {
        View::name(self)
    }

    fn topics(&self) -> &'static [Destination] {
        View::topics(self)
    }

    fn layout(&self) -> u32 {
        View::layout(self)
    }

    fn open_version(
        self: Arc<Self>,
        table: ViewTable,
        config: ProjectorConfig,
        phase: Phase,
    ) -> Result<Arc<dyn AnyVersion>, ProjectorError> {
        Ok(Arc::new(Version::open(self, table, config, phase)?))
    }

    fn in_memory(self: Arc<Self>) -> Box<dyn InMemoryFold> {
        let state = self.new_state();
        Box::new(MemoryFold { view: self, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(offsets: std::ops::Range<u64>) -> Vec<LogRecord> {
        offsets
            .map(|offset| LogRecord {
                topic: Topic::Interactions,
                partition: 0,
                offset,
                key: Default::default(),
                event_id: Uuid::nil(),
                payload: bytes::Bytes::from_static(b"not an event"),
                headers: Vec::new(),
            })
            .collect()
    }

    fn change(index: usize) -> EncodedChange {
        Ok((
            format!("k{index:06}").into_bytes(),
            Some(index.to_le_bytes().to_vec()),
        ))
    }

    #[test]
    fn changes_encoded_beside_an_ingestion_are_all_written_and_an_encoding_error_writes_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = omnilog_store::ViewStore::open_for_replay(dir.path()).unwrap();
        let checkpoint = Checkpoint {
            events_applied: 7,
            ..Checkpoint::default()
        };
        // More than a few chunks, and a last one not full.
        let written = store.table_with_layout("written", 1, 1).unwrap();
        ingest_encoded_beside(&written, (0..1_000).map(change), &checkpoint).unwrap();
        assert_eq!(written.checkpoint().unwrap(), checkpoint);
        let reader = written.reader();
        for index in [0_usize, 255, 256, 999] {
            let key = format!("k{index:06}").into_bytes();
            assert_eq!(
                reader.get(&key).unwrap(),
                Some(index.to_le_bytes().to_vec()),
                "change {index}"
            );
        }
        let failed = store.table_with_layout("failed", 1, 1).unwrap();
        let changes = (0..1_000).map(|index| {
            if index == 600 {
                Err(ViewError::Storage("cannot encode".to_owned()))
            } else {
                change(index)
            }
        });
        assert!(ingest_encoded_beside(&failed, changes, &checkpoint).is_err());
        assert!(!failed.holds_records().unwrap(), "nothing of it is written");
        assert_eq!(failed.checkpoint().unwrap(), Checkpoint::default());

        // An encoder that panics half-way: its channel ends early, which must not read as
        // the end of the changes (a checkpoint short of them, its positions past them).
        let panicked = store.table_with_layout("panicked", 1, 1).unwrap();
        let changes = (0..1_000).map(|index| {
            assert!(index != 600, "an encoder that panics");
            change(index)
        });
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ingest_encoded_beside(&panicked, changes, &checkpoint)
        }));
        assert!(!matches!(outcome, Ok(Ok(()))), "{outcome:?}");
        assert!(
            !panicked.holds_records().unwrap(),
            "nothing of it is written"
        );
        assert_eq!(panicked.checkpoint().unwrap(), Checkpoint::default());
    }

    #[test]
    fn a_vector_given_back_comes_back_empty_with_its_room_and_no_more_are_kept_than_asked() {
        let mut spare = SpareDecoded::new(1);
        let mut first = spare.take();
        decode_all_into(records(0..100), &mut first);
        assert_eq!(first.len(), 100);
        assert!(first[0].event.is_err(), "the payload is not an event");
        let room = first.capacity();
        let mut second = spare.take();
        decode_all_into(records(0..3), &mut second);
        spare.give_back(first);
        spare.give_back(second);

        let again = spare.take();
        assert!(again.is_empty());
        assert_eq!(
            again.capacity(),
            room,
            "the first vector given back was kept"
        );
        assert_eq!(
            spare.take().capacity(),
            0,
            "the second was not: one is kept"
        );

        // Decoded into, a kept vector holds the new records only.
        let mut again = again;
        decode_all_into(records(5..7), &mut again);
        let offsets: Vec<u64> = again.iter().map(|d| d.record.offset).collect();
        assert_eq!(offsets, [5, 6]);
    }
}
