//! Replay: folds views from offset 0 to the end the log has now, into fresh versions,
//! optionally as of a point in event time (`until`): what analysts run to rebuild views
//! offline or to ask what was true last March, and what `omnilog bench` measures.
//!
//! The log is read and decoded once for every view: one reader scans the partitions the
//! views fold, a batch or two ahead of one decoding thread ([`Feeder`]), which decodes each
//! batch once and hands it to one worker thread per view (and one for the identity view),
//! which fold it into their state in memory.
//!
//! The reader takes the history one partition at a time (each pass reads partition `p` of
//! the interactions and of the agents, in the order the log reads fastest). A customer's
//! events all lie in one partition, so once a pass is done nothing will touch its
//! customers' journeys again: each worker writes a checkpoint then and lets its cached
//! records go. A partition longer than the cache holds the state of is read in several
//! passes, each folding one share of its customers ([`ReplayOptions::records_per_pass`]),
//! so what the customers' views hold is bounded by the cache, not by the history, and each
//! customer's record is encoded and written once, however long the history. Given a spill
//! directory ([`ReplayOptions::spill_dir`]), the partition's first pass reads it from the
//! log and writes the other shares' records to spill files, which their passes read back:
//! the log's batches are read, checked and decompressed once, not once a pass. (Views do not
//! depend on how partitions interleave, so the order changes nothing of what is built.)
//! With a spill directory, the end of a pass writes nothing to the store either: each
//! partition-local view writes the pass's changes, encoded in key order, to a run file
//! ([`crate::change_runs`]), and, once they are many ([`SUMS_HELD_SHARE`]), takes its sums
//! (the reports' hourly figures, which every pass adds to) apart as deltas to another
//! ([`omnilog_views::ViewState::take_sums`]); the last checkpoint merges the runs and adds
//! the deltas up, streamed into the store. So a replay holds a pass's records and at most a
//! share of its budget in figures, and passes can be small
//! ([`SPILLED_PASS_RECORDS`]). The identity view, whose handles are no partition's, is
//! folded in parts set aside in the spill directory and made whole once the views are
//! written ([`crate::identity_parts`]): the one state a replay holds in proportion to the
//! history, and only at its end, alone. A pass whose records outgrow a view's budget checkpoints in
//! its middle too, and lets the least recently used records go. The views fold the same
//! records through the same code as a live projection, so a replayed view equals the live
//! one folded to the same positions.
//! The source log is only read: records that cannot be decoded or applied are counted
//! (`dead_letters`), not appended anywhere.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use omnilog_log::{
    KeyShare, LogRecord, PartitionRange, Scan, SharedLog, SpillReader, SpillWriter, Topic,
};
use omnilog_store::{Checkpoint, ViewStore};
use omnilog_views::IdentityView;

use crate::identity_parts::IdentityParts;
use crate::job_thread::{JobThread, Pending, short_name};
use crate::projection::{AnyVersion, Decoded, Phase, Projectable, SpareDecoded, decode_all_into};
use crate::{ProjectorConfig, ProjectorError, blocking};

/// How far a replay has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Records read (or folded, for a view) so far.
    pub read: u64,
    /// Records to read in all.
    pub total: u64,
}

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Leave out events that occurred after this time.
    pub until: Option<DateTime<Utc>>,
    /// Records read at once.
    pub batch: usize,
    /// Each view's budget for its cached records, about, in bytes.
    pub cache_bytes: usize,
    /// Records a pass reads, about: a partition holding more interaction records is read
    /// in as many passes as it takes, each folding the records of one share of its keys
    /// ([`KeyShare`]). 0: one pass a partition. `None`: as many as the cache holds the
    /// state of, at most [`SPILLED_PASS_RECORDS`] with a spill directory
    /// ([`ReplayOptions::records_per_pass`]).
    pub pass_records: Option<u64>,
    /// Also fold the identity view.
    pub identity: bool,
    /// What to do with the identity view as soon as it is folded (see [`IdentitySink`]);
    /// given one, [`replay`] returns no identity view.
    pub identity_sink: Option<IdentitySink>,
    /// Where a partition read in several passes spills the records of its later passes
    /// ([`SpillWriter`]), an existing directory; `None`: each pass reads the log again.
    /// The spill of a partition takes about its records' bytes uncompressed, less the first
    /// share's; each file is deleted once its pass has read it. The partition-local views
    /// also write each pass's changes and sums there ([`crate::change_runs`]), in unnamed
    /// files held until the last checkpoint has read them: about the encoded size of every
    /// record the replay writes (1.2 GB at 10M events, beside a store of 563 MB), and the
    /// identity view's parts ([`ReplayOptions::identity_part_entries`]).
    pub spill_dir: Option<PathBuf>,
    /// With a spill directory: the customers and handles the identity view folds before
    /// it is set aside there and a new part begun; the parts are absorbed into one view at
    /// the end ([`crate::identity_parts`]). 0: folded whole.
    pub identity_part_entries: usize,
}

/// Customers and handles of a part of a replay's identity view
/// ([`ReplayOptions::identity_part_entries`]): under 10 MB of its state (the whole view of
/// a 10M-event history, 231,495 customers and 462,990 handles, was 65.6 MB of heap before
/// its handles were packed). A history of 1M events in the bench's mix has about 70,000
/// (23,269 customers and 46,538 handles), and is folded whole; one of 10M, eight parts.
pub const IDENTITY_PART_ENTRIES: usize = 100_000;

/// Takes the replayed identity view on its worker's thread as soon as it is whole: `omnilog
/// replay` saves it there. A view folded whole (a history of up to about a million events)
/// is whole once its fold is done, and its encoding and sync overlap the views' last
/// checkpoints instead of following them; one folded in parts is made whole after them
/// (see [`crate::identity_parts`]). An error fails the replay. A replay that fails after
/// its last record was handed over (a view's last checkpoint, making the versions active)
/// may have called the sink already: keep what it saved out of use until [`replay`]
/// returns `Ok` (`omnilog replay` names its file `identity.bin` only then). The sink is
/// not called when the reading, the decoding or a fold failed before the log's end.
#[derive(Clone)]
pub struct IdentitySink(pub Arc<SaveIdentity>);

/// What an [`IdentitySink`] calls: `Err` names what failed.
pub type SaveIdentity = dyn Fn(&IdentityView) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for IdentitySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentitySink")
    }
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            until: None,
            batch: 8_192,
            cache_bytes: 128 * 1024 * 1024,
            pass_records: None,
            identity: true,
            identity_sink: None,
            spill_dir: None,
            identity_part_entries: IDENTITY_PART_ENTRIES,
        }
    }
}

/// Records of the interactions topic from which a replay's versions store compressed
/// tables ([`ViewStore::for_long_replay`]): a 1M-event replay writes a few checkpoints of
/// each view, a 10M-event one 23 or 24 of the journey view's (the "checkpoint written" lines
/// of `RUST_LOG=omnilog_projector=debug omnilog replay --view journey`).
const LONG_REPLAY_RECORDS: u64 = 2_000_000;

/// What the state folded from one record of the interactions topic weighs in memory while
/// its pass lasts, about, in bytes: the unit by which a replay sizes its passes to its
/// cache ([`ReplayOptions::records_per_pass`]). Measured: in `heaptrack omnilog replay` of
/// a 10M-event history (twelve partitions of about 826,000 records, one pass each; a build
/// without mimalloc), the journey view's records held 404 MB of the heap at its peak, about
/// 490 bytes a record of the pass; the other partition-local views' tables add less than a
/// fifth of that.
pub const STATE_BYTES_PER_RECORD: u64 = 512;

/// The fewest records a pass sized to the cache reads: a tiny cache (`--cache-mb 0`, which
/// lets every record go as soon as it is written) would otherwise read each partition once
/// for every few records of it.
pub const MIN_RECORDS_PER_PASS: u64 = 65_536;

/// The most records a pass sized to the cache reads when the replay has a spill directory
/// ([`ReplayOptions::spill_dir`]). Then more passes cost little: the later passes read
/// their spill files, and a pass's changes and figures are written aside to run files
/// ([`crate::change_runs`]), not checkpointed. What the views hold is a pass's records,
/// so a smaller pass holds less: at 10M events (`omnilog replay --pass-records N`, one run
/// each unless two are given) 262,144 records a pass peaked at 343 MB in 19.6 s, 131,072 at
/// 270 and 276 MB in 19.2 and 19.3 s, 98,304 at 242 and 243 MB in 19.4 s, 65,536 at 198 to
/// 218 MB in 19.3 to 20.3 s (three runs of the default, on the build whose default it
/// was), 32,768 at 235 MB in 21.1 s. But a partition cut in two passes takes longer than
/// in one: its first pass reads the whole partition to fold half of it, while the views
/// wait. A 1M replay (partitions of about 83,000 records) took 1.50
/// to 1.71 s in passes of 65,536 records, against 1.33 to 1.42 s in one pass a partition
/// (docs/benchmarks-journal.md, "2026-12-04, evening"): by default a pass is not made smaller.
pub const SPILLED_PASS_RECORDS: u64 = 98_304;

impl ReplayOptions {
    /// Records a pass reads: [`ReplayOptions::pass_records`] if given, or else as many as
    /// the cache holds the state of ([`STATE_BYTES_PER_RECORD`], at least
    /// [`MIN_RECORDS_PER_PASS`]), so that the records the views hold grow with the cache,
    /// not with the history; with a spill directory, at most [`SPILLED_PASS_RECORDS`]. A
    /// shorter history than that per partition is read in one pass a partition; a longer
    /// one in more passes (whose records are spilled by the first, or read from the log
    /// again without a spill directory).
    pub fn records_per_pass(&self) -> u64 {
        self.pass_records.unwrap_or_else(|| {
            let by_cache =
                (self.cache_bytes as u64 / STATE_BYTES_PER_RECORD).max(MIN_RECORDS_PER_PASS);
            match self.spill_dir {
                Some(_) => by_cache.min(SPILLED_PASS_RECORDS),
                None => by_cache,
            }
        })
    }
}

/// What a replay built of one view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedView {
    pub view: &'static str,
    pub checkpoint: Checkpoint,
}

/// One batch of the log, decoded once for every worker (each folds the records of the
/// topics its view folds).
type Shared = Arc<Vec<Decoded>>;

/// What the feeder hands the workers, in the log's order.
#[derive(Clone)]
enum Feed {
    Batch(Shared),
    /// Every record of a group of partitions has been handed over.
    PassDone,
    /// What follows may be of any partition (records past the ends the passes read); sent
    /// only when there are such records.
    Beyond,
    /// Every record is handed over: the worker writes its last checkpoint. A channel that
    /// closes without it says the replay failed elsewhere (a read, another worker, the
    /// decoder): the worker then writes nothing more, and the identity view is not saved.
    End,
}

/// A view's replay worker: its name, how many records it folded, how many it will fold,
/// and its thread (which returns the last checkpoint, or `None` when the replay failed
/// elsewhere before every record was handed over: see [`Feed::End`]).
type Worker = (
    &'static str,
    Arc<AtomicU64>,
    u64,
    JoinHandle<Result<Option<Checkpoint>, ProjectorError>>,
);

/// Folds every view into version 1 of its table in `store` up to the log's current end,
/// and the identity view when asked (returned, unless [`ReplayOptions::identity_sink`]
/// took it); once every view is folded, marks the
/// versions active and syncs the store (a replay that fails leaves none active).
/// `on_progress` hears of the reading (`"log"`) and of each view's folding, by name.
pub async fn replay(
    log: SharedLog,
    store: &ViewStore,
    views: Vec<Arc<dyn Projectable>>,
    options: ReplayOptions,
    mut on_progress: impl FnMut(&str, ReplayProgress) + Send,
) -> Result<(Vec<ReplayedView>, Option<IdentityView>), ProjectorError> {
    // Every partition is read, each from all over the log: let the log read ahead.
    log.prefetch();
    let config = ProjectorConfig {
        // Checkpoints only when memory asks for one, and at the end.
        checkpoint_events: u64::MAX,
        checkpoint_interval: std::time::Duration::MAX,
        cache_bytes: options.cache_bytes,
        bulk: true,
        ..ProjectorConfig::default()
    };
    let reads_agents = views
        .iter()
        .any(|v| v.topics().contains(&omnilog_events::Destination::Agents));
    let mut topics = vec![Topic::Interactions];
    if reads_agents {
        topics.push(Topic::Agents);
    }
    let scan = Scan::to_ends(&*log, &topics).await?;
    let total = scan.remaining();
    // A long history's checkpoints are many: its versions store compressed tables.
    let store = if scan.remaining_in(Topic::Interactions) >= LONG_REPLAY_RECORDS {
        store.for_long_replay()
    } else {
        store.clone()
    };
    // The views' tables are made on a thread of their own while the workers fold: fjall
    // makes keyspaces one at a time, about twenty `fsync`s each, and the workers that
    // made their own waited 10 to 52 ms for one another at the start of a 200k-event
    // replay, the reader stopped behind them (`perf record -e sched:sched_switch`). A fold
    // writes nothing to its table before its last checkpoint (a pass's changes go to the
    // spill directory), which waits for it. The tables are marked active once every view
    // is folded.
    let specs: Vec<(&str, u32, u32)> = views
        .iter()
        .map(|view| (view.name(), 1, view.layout()))
        .collect();
    let mut tables = store.new_tables_in_background(&specs)?.into_iter();
    let mut feeds: Vec<mpsc::SyncSender<Feed>> = Vec::new();
    let mut workers: Vec<Worker> = Vec::new();
    let mut active: Vec<(&'static str, u32)> = Vec::new();
    // Each view's worker says here when its last checkpoint is written and its version let
    // go: the identity view absorbs its parts only then (see `crate::identity_parts`).
    let (fold_done, folds_done) = mpsc::channel::<()>();
    // Set once the replay has failed: its identity view is then not saved.
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let view_count = views.len();
    for view in views {
        let (feed, batches) = mpsc::sync_channel::<Feed>(4);
        let folded = Arc::new(AtomicU64::new(0));
        let name = view.name();
        let view_total = if view.topics().contains(&omnilog_events::Destination::Agents) {
            scan.remaining()
        } else {
            scan.remaining_in(Topic::Interactions)
        };
        let table = tables
            .next()
            .ok_or_else(|| ProjectorError::Task(format!("no table was made for {name}")))?;
        let version_config = config.clone();
        let counter = folded.clone();
        let until = options.until;
        let cache_bytes = options.cache_bytes;
        let runs_dir = options.spill_dir.clone();
        let fold_done = fold_done.clone();
        let replay_failed = failed.clone();
        let worker = std::thread::Builder::new()
            .name(format!("replay-{}", short_name(name)))
            // The worker owns its version: its state is let go on its own thread at the end.
            .spawn(move || {
                let folded = view
                    .open_version(table, version_config, Phase::Running)
                    .and_then(|version| {
                        fold_batches(
                            &version,
                            &batches,
                            until,
                            &counter,
                            cache_bytes,
                            runs_dir.as_deref(),
                        )
                        // The version is let go here, before the identity worker hears.
                    });
                // Said once the last checkpoint is written and the version let go (or the
                // fold failed): the identity view's parts are absorbed only then, so the
                // whole view and the last checkpoints' merges never add up (nobody may be
                // listening: no identity view, or one folded whole).
                if folded.is_err() {
                    // Before the identity worker hears of it: a failed replay saves no
                    // identity view.
                    replay_failed.store(true, Ordering::Relaxed);
                }
                let _ = fold_done.send(());
                folded
            })
            .map_err(|e| ProjectorError::Task(format!("starting a replay worker: {e}")))?;
        feeds.push(feed);
        workers.push((name, folded, view_total, worker));
        active.push((name, 1));
    }
    // Only the workers hold a sender now: if one fails, its sender goes with it.
    drop(fold_done);
    let identity_worker = if options.identity {
        let replay_failed = failed.clone();
        let (feed, batches) = mpsc::sync_channel::<Feed>(4);
        let until = options.until;
        let sink = options.identity_sink.clone();
        let mut parts = options
            .spill_dir
            .as_deref()
            .filter(|_| options.identity_part_entries > 0)
            .map(IdentityParts::new);
        let part_entries = options.identity_part_entries;
        let worker = std::thread::Builder::new()
            .name("replay-identity".to_owned())
            .spawn(move || -> Result<Option<IdentityView>, ProjectorError> {
                let mut identity = IdentityView::new();
                let mut handed_over = false;
                while let Ok(feed) = batches.recv() {
                    let batch = match feed {
                        Feed::Batch(batch) => batch,
                        Feed::End => {
                            handed_over = true;
                            break;
                        }
                        Feed::PassDone | Feed::Beyond => continue,
                    };
                    for decoded in batch.iter() {
                        if decoded.record.topic == Topic::Interactions
                            && let Ok(event) = &decoded.event
                            && until.is_none_or(|until| event.occurred_at <= until)
                        {
                            identity.apply(event);
                        }
                    }
                    if let Some(parts) = &mut parts
                        && identity.customer_count() + identity.handle_count() >= part_entries
                    {
                        parts.write(&identity)?;
                        identity = IdentityView::new();
                    }
                }
                // The replay failed before the log's end: nothing to save (the failure
                // is told by the reading or the worker that failed).
                if !handed_over {
                    return Ok(None);
                }
                if let Some(parts) = parts {
                    let count = parts.len();
                    if count > 0 {
                        // The whole view is built once the views are written and let
                        // go: not on top of their last pass, nor beside their last
                        // checkpoints, whose merges of the runs and ingestions held about
                        // 60 MB of a 10M replay's heap peak beside the whole view's 79 MB
                        // (heaptrack; docs/benchmarks-journal.md, "2026-12-07, late
                        // morning"). A history long enough to have parts pays the absorb
                        // after the views' writes rather than beside them.
                        for _ in 0..view_count {
                            if folds_done.recv().is_err() {
                                break;
                            }
                        }
                    }
                    parts.absorb_into(&mut identity)?;
                    if count > 0 {
                        tracing::debug!(
                            parts = count + 1,
                            customers = identity.customer_count(),
                            "identity view folded in parts"
                        );
                    }
                }
                if replay_failed.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                match sink {
                    // Let go here too, on the thread that made it: beside the views' last
                    // checkpoints for a view folded whole, after them for one made whole
                    // from its parts.
                    Some(sink) => sink.0(&identity)
                        .map(|()| None)
                        .map_err(ProjectorError::Task),
                    None => Ok(Some(identity)),
                }
            })
            .map_err(|e| ProjectorError::Task(format!("starting a replay worker: {e}")))?;
        feeds.push(feed);
        Some(worker)
    } else {
        None
    };

    on_progress("log", ReplayProgress { read: 0, total });
    // The feeder owns the workers' channels from here: they close when it is done.
    let reading = read_all(&log, scan, &options, feeds, &workers, &mut on_progress).await;
    if let Err(error) = reading {
        failed.store(true, Ordering::Relaxed);
        // A worker that failed closes its channel, and the feeder only sees that it
        // stopped: its own error is what to tell (the identity view's too, whose worker
        // may have stopped on a part it could not write).
        for (name, _, _, worker) in workers {
            if let Err(failed) = join_worker(worker, name).await {
                tracing::error!(view = name, error = %failed, "a replay worker failed");
                return Err(failed);
            }
        }
        if let Some(worker) = identity_worker
            && let Err(failed) = join_worker(worker, "the identity view").await
        {
            tracing::error!(error = %failed, "the identity view's replay failed");
            return Err(failed);
        }
        return Err(error);
    }
    let mut replayed = Vec::new();
    for (name, folded, _, worker) in workers {
        let checkpoint = match join_worker(worker, name).await {
            Ok(Some(checkpoint)) => checkpoint,
            // Every worker heard the end once the reading succeeded; one that did not
            // would have made the feeder fail.
            Ok(None) => {
                failed.store(true, Ordering::Relaxed);
                return Err(ProjectorError::Task(format!(
                    "the replay of {name} ended before the log's end"
                )));
            }
            Err(error) => {
                // The identity worker, left to end alone, saves nothing.
                failed.store(true, Ordering::Relaxed);
                return Err(error);
            }
        };
        let done = folded.load(Ordering::Relaxed);
        on_progress(
            name,
            ReplayProgress {
                read: done,
                total: done,
            },
        );
        tracing::info!(
            view = name,
            events_applied = checkpoint.events_applied,
            dead_letters = checkpoint.dead_letters,
            "view replayed"
        );
        replayed.push(ReplayedView {
            view: name,
            checkpoint,
        });
    }
    let identity = match identity_worker {
        Some(worker) => join_worker(worker, "the identity view").await?,
        None => None,
    };
    // Marking the versions active syncs the store, which makes the last checkpoints
    // durable with them.
    let activating = store.clone();
    blocking(move || Ok(activating.set_active_many(&active)?)).await?;
    Ok((replayed, identity))
}

/// Waits for the worker folding `what` (a view's name) and returns what it returned; its
/// panic is an error.
async fn join_worker<T: Send + 'static>(
    worker: JoinHandle<Result<T, ProjectorError>>,
    what: &str,
) -> Result<T, ProjectorError> {
    tokio::task::spawn_blocking(move || worker.join())
        .await
        .map_err(|e| ProjectorError::Task(e.to_string()))?
        .map_err(|_| ProjectorError::Task(format!("the replay of {what} panicked")))?
}

/// Reads the log pass by pass (then a look beyond each end) and hands each batch to the
/// [`Feeder`], which decodes it once and hands it to every worker.
async fn read_all(
    log: &SharedLog,
    scan: Scan,
    options: &ReplayOptions,
    feeds: Vec<mpsc::SyncSender<Feed>>,
    workers: &[Worker],
    on_progress: &mut (impl FnMut(&str, ReplayProgress) + Send),
) -> Result<(), ProjectorError> {
    let feeder = Feeder::start(feeds)?;
    let mut reading = read_into(log, scan, options, &feeder, workers, on_progress).await;
    if reading.is_ok() {
        reading = feeder.feed(FeederJob::Mark(Feed::End)).await;
    }
    // The feeder's own failure (a worker gone) is what made the reading fail, if it did.
    let feeding = feeder.finish().await;
    feeding.and(reading)
}

/// The reading of [`read_all`]: the feeder takes each batch in order, the ends of passes
/// between them.
async fn read_into(
    log: &SharedLog,
    scan: Scan,
    options: &ReplayOptions,
    feeder: &Feeder,
    workers: &[Worker],
    on_progress: &mut (impl FnMut(&str, ReplayProgress) + Send),
) -> Result<(), ProjectorError> {
    let total = scan.remaining();
    let mut read = 0u64;
    // The spill files of the partition being read, one per share still to fold.
    let mut spilled: VecDeque<SpillReader> = VecDeque::new();
    let mut passes = passes(&scan, options.records_per_pass()).into_iter();
    let mut source = passes
        .next()
        .map(|pass| pass_source(pass, options, &mut spilled))
        .transpose()?;
    while let Some(current) = source.as_mut() {
        let records = current.next(log, options.batch.max(1)).await?;
        if records.is_empty() {
            if let Some(PassSource::Splitting { spills, .. }) = source.take() {
                for spill in spills {
                    spilled.push_back(spill.finish()?);
                }
            }
            feeder.feed(FeederJob::Mark(Feed::PassDone)).await?;
            source = passes
                .next()
                .map(|pass| pass_source(pass, options, &mut spilled))
                .transpose()?;
            continue;
        }
        read += records.len() as u64;
        feeder.feed(FeederJob::Records(records)).await?;
        report(on_progress, read, total, workers);
    }
    // Once the ends are reached, one more look beyond each: a broker may report an end
    // short of what is readable (tansu's ListOffsets leaves out the last batch), and a
    // replay must not stop before what a live projection has already folded.
    let mut beyond = scan;
    for round in 0..16 {
        let records = read_beyond(log, &mut beyond, options.batch).await?;
        if records.is_empty() {
            break;
        }
        if round == 0 {
            feeder.feed(FeederJob::Mark(Feed::Beyond)).await?;
        }
        read += records.len() as u64;
        feeder.feed(FeederJob::Records(records)).await?;
        report(on_progress, read, total, workers);
    }
    Ok(())
}

/// The passes of a replay: one per partition number, each reading that partition of every
/// topic; a partition of more than `pass_records` interaction records is read in several
/// passes, each folding a share of its keys ([`KeyShare`]). A view's records are a key's
/// (a customer's, an agent's) and a key's records lie in one share, so a partition-local
/// view's records are final once a pass is done, as after a whole partition: memory holds
/// one pass's customers, whatever the history's length, for the price of reading the
/// partition again (from spill files, [`PassSource`], or from the log, whose records
/// outside the share are passed over, not decoded).
fn passes(scan: &Scan, pass_records: u64) -> Vec<Scan> {
    let mut partitions: Vec<u32> = scan.ranges().iter().map(|r| r.partition).collect();
    partitions.sort_unstable();
    partitions.dedup();
    let partition_count = partitions.last().map_or(1, |last| last + 1);
    let mut passes = Vec::new();
    for partition in partitions {
        let ranges: Vec<PartitionRange> = scan
            .ranges()
            .iter()
            .filter(|r| r.partition == partition)
            .copied()
            .collect();
        let interactions: u64 = ranges
            .iter()
            .filter(|r| r.topic == Topic::Interactions)
            .map(PartitionRange::len)
            .sum();
        let shares = if pass_records == 0 {
            1
        } else {
            interactions.div_ceil(pass_records).clamp(1, 256) as u32
        };
        for index in 0..shares {
            let pass = Scan::new(ranges.clone());
            passes.push(match KeyShare::new(index, shares, partition_count) {
                Some(share) if shares > 1 => pass.only_share(share),
                _ => pass,
            });
        }
    }
    passes
}

/// Where `pass`'s records come from: the log, or, for a partition read in several
/// passes with a spill directory, the log split into spill files by its first pass and
/// those files by the others.
fn pass_source(
    pass: Scan,
    options: &ReplayOptions,
    spilled: &mut VecDeque<SpillReader>,
) -> Result<PassSource, ProjectorError> {
    Ok(match (pass.share(), options.spill_dir.as_deref()) {
        (Some(share), Some(dir)) if share.index() == 0 => PassSource::splitting(pass, share, dir)?,
        (Some(share), Some(_)) => PassSource::Spilled {
            spill: spilled.pop_front().ok_or_else(|| {
                ProjectorError::Task("a replay pass found no spill file to read".to_owned())
            })?,
            shares: share.of(),
        },
        _ => PassSource::Log(pass),
    })
}

/// Where a pass's records come from.
enum PassSource {
    /// The log: a whole partition, or one share of its keys.
    Log(Scan),
    /// The log, whole, for the first share of a partition read in several passes: the
    /// records of the first share are folded, each other share's are written to its spill
    /// file (`spills[i]` holds share `i + 1`'s), which its pass reads instead of the log.
    Splitting {
        scan: Scan,
        first: KeyShare,
        spills: Vec<SpillWriter>,
    },
    /// A share's records, spilled by the partition's first pass (of `shares`).
    Spilled { spill: SpillReader, shares: u32 },
}

impl PassSource {
    /// The spill files of `pass` (the first of its partition's shares) are made in `dir`.
    fn splitting(pass: Scan, first: KeyShare, dir: &Path) -> Result<Self, ProjectorError> {
        let partition = pass.ranges().first().map_or(0, |r| r.partition);
        let spills = (1..first.of())
            .map(|index| {
                SpillWriter::create(&dir.join(format!("partition-{partition}-share-{index}.spill")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PassSource::Splitting {
            scan: Scan::new(pass.ranges().to_vec()),
            first,
            spills,
        })
    }

    /// The next records of the pass, about `max` (none at its end).
    async fn next(
        &mut self,
        log: &SharedLog,
        max: usize,
    ) -> Result<Vec<LogRecord>, ProjectorError> {
        match self {
            PassSource::Log(scan) => Ok(log.scan_next(scan, max).await?),
            PassSource::Splitting {
                scan,
                first,
                spills,
            } => {
                let mut kept = Vec::new();
                // Reads on until something is kept, not until a batch's worth is: what is
                // kept holds on to the whole of each batch it was read from (its payloads
                // share the batch's buffer), and a fuller batch kept that many more alive
                // (a 10M replay in four passes peaked at 582 and 603 MB against 477 and
                // 481 MB without spilling: docs/benchmarks-journal.md, "2026-12-04, afternoon").
                while kept.is_empty() {
                    let records = log.scan_next(scan, max).await?;
                    if records.is_empty() {
                        break;
                    }
                    for record in records {
                        match first.index_of(&record.key) {
                            0 => kept.push(record),
                            // The page cache takes these writes: no disk wait here.
                            share => spills[share as usize - 1].write(&record)?,
                        }
                    }
                }
                Ok(kept)
            }
            // As many a batch as a read of the log gave the first share (a share of it):
            // decoded, a batch weighs several times its records, and each view's channel
            // holds a few (full batches of 8,192 took a 10M replay in four passes from 477
            // and 491 MB to 561 and 568 MB: docs/benchmarks-journal.md, "2026-12-04, afternoon").
            PassSource::Spilled { spill, shares } => {
                Ok(spill.read(max.div_ceil(*shares as usize))?)
            }
        }
    }
}

/// Emptied vectors of decoded batches (of those every worker is done with) the feeder
/// keeps for the next batches, at most.
const SPARE_BATCHES: usize = 4;

/// Batches read and waiting for the feeder, at most: the reader runs this far ahead of the
/// decoding, so that a read (a few preads, checks and decompressions on the async threads)
/// never leaves the decoder and, behind it, the workers waiting.
const READ_AHEAD: usize = 2;

/// What the reader hands the [`Feeder`], in the log's order.
enum FeederJob {
    /// Records to decode and hand to every worker.
    Records(Vec<LogRecord>),
    /// A mark to hand to every worker as it is, after the batches before it.
    Mark(Feed),
}

/// The replay's decoder and feeder: one thread of its own, which decodes each batch the
/// reader sends and hands it to every worker's channel itself.
///
/// Until 2026-12-07 the async reader awaited each decoding and handed the batch over
/// through tokio's blocking pool, one channel after the other: every batch took a dozen
/// wake-ups across four threads, each waiting for a core behind the folds, and in a
/// scheduler trace of the 200k replay the workers slept 48 to 132 ms of its 247 ms waiting
/// for their next batch (`perf record -e sched:sched_switch -e sched:sched_wakeup`;
/// docs/benchmarks-journal.md, "2026-12-07, evening"). Now a decoded batch goes straight to
/// each worker with room for it, then to those that had none, waiting on this thread; the
/// reader only waits for room among the [`READ_AHEAD`] batches.
///
/// The events are allocated and (once every worker is done with them) freed on this one
/// thread, which the allocator serves from its own heap: decoded on whichever thread of
/// the blocking pool came, they were freed across threads (`mi_free_block_mt` and its kin:
/// 1.49 % of a 1M replay's samples in `perf`, 0.53 % with a thread of its own). Letting
/// batches go here, not on the workers, keeps their thousands of small frees off the
/// slowest worker.
struct Feeder {
    jobs: tokio::sync::mpsc::Sender<FeederJob>,
    thread: JoinHandle<Result<(), ProjectorError>>,
}

impl Feeder {
    /// Starts the thread, which owns `feeds`: the workers' channels close when it ends.
    fn start(feeds: Vec<mpsc::SyncSender<Feed>>) -> Result<Self, ProjectorError> {
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<FeederJob>(READ_AHEAD);
        let thread = std::thread::Builder::new()
            .name("replay-decode".to_owned())
            .spawn(move || {
                let mut spare = SpareDecoded::new(SPARE_BATCHES);
                // Batches handed over that some worker may still hold.
                let mut handed: Vec<Shared> = Vec::new();
                while let Some(job) = queue.blocking_recv() {
                    let feed = match job {
                        FeederJob::Mark(feed) => feed,
                        FeederJob::Records(records) => {
                            for batch in std::mem::take(&mut handed) {
                                match Arc::try_unwrap(batch) {
                                    Ok(done) => spare.give_back(done),
                                    Err(batch) => handed.push(batch),
                                }
                            }
                            let mut decoded = spare.take();
                            decode_all_into(records, &mut decoded);
                            let batch = Arc::new(decoded);
                            handed.push(batch.clone());
                            Feed::Batch(batch)
                        }
                    };
                    hand_over(&feeds, feed)?;
                }
                Ok(())
            })
            .map_err(|e| ProjectorError::Task(format!("starting the replay's decoder: {e}")))?;
        Ok(Feeder { jobs, thread })
    }

    /// Hands `job` to the thread, once it has room for it. An error says the thread
    /// stopped: [`Feeder::finish`] tells why.
    async fn feed(&self, job: FeederJob) -> Result<(), ProjectorError> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| ProjectorError::Task("the replay's decoder stopped".to_owned()))
    }

    /// Waits until every job is handed over (or the thread failed), then lets the workers'
    /// channels go.
    async fn finish(self) -> Result<(), ProjectorError> {
        let Feeder { jobs, thread } = self;
        drop(jobs);
        join_worker(thread, "the log's decoding").await
    }
}

/// Hands the same feed to every worker: first to each with room for it, then, waiting, to
/// the others, in order. A full channel waits for its worker: reading never runs far ahead
/// of folding.
fn hand_over(feeds: &[mpsc::SyncSender<Feed>], feed: Feed) -> Result<(), ProjectorError> {
    let stopped = || ProjectorError::Task("a replay worker stopped early".to_owned());
    let mut waiting = Vec::new();
    for channel in feeds {
        match channel.try_send(feed.clone()) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(feed)) => waiting.push((channel, feed)),
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
        }
    }
    for (channel, feed) in waiting {
        channel.send(feed).map_err(|_| stopped())?;
    }
    Ok(())
}

/// Tells how far the reading and each view's folding have come.
fn report(
    on_progress: &mut impl FnMut(&str, ReplayProgress),
    read: u64,
    total: u64,
    workers: &[Worker],
) {
    on_progress(
        "log",
        ReplayProgress {
            read,
            total: total.max(read),
        },
    );
    for (name, folded, view_total, _) in workers {
        on_progress(
            name,
            ReplayProgress {
                read: folded.load(Ordering::Relaxed),
                total: *view_total,
            },
        );
    }
}

/// What part of a view's budget its records may weigh, with the passes' encoded ahead,
/// before the end of a pass writes them instead of encoding them for a later checkpoint
/// (a replay without a spill directory: with one, they are written to run files). The
/// budget counts the encoded sets (their bytes and a word or so of each vector's), and a
/// long replay's passes fill them up to this share before anything is written: at 10M
/// events (four passes a partition, five views, no run files yet), a sixteenth peaked at
/// 425 to 437 MB where a quarter peaked at 473 to 488 MB,
/// in the same time (four alternated pairs of `/usr/bin/time omnilog replay`: 17.96 to
/// 18.45 s against 17.54 to 18.69 s); the 1M replay, whose passes are a partition each,
/// moved within its noise (201 to 252 MB against 221 to 280 MB).
const ENCODED_AHEAD_SHARE: usize = 16;

/// A replay's sums ([`omnilog_views::ViewState::take_sums`]) stay in memory across passes
/// while they weigh at most a `SUMS_HELD_SHARE`th of a view's budget (at
/// [`SUM_RECORD_BYTES`] a record); beyond it, the end of a pass takes them apart, as deltas
/// written aside that the last checkpoint adds up. Taken apart at every pass's end, the
/// same hourly figures were encoded, sorted, written and read back once a pass and added
/// up record by record at the end: in `valgrind --tool=callgrind --separate-threads=yes
/// omnilog replay` of 1M events (twelve passes), 6 % of the instructions, most of it in
/// the reports' last checkpoint, after every fold was done (docs/benchmarks-journal.md,
/// "2026-12-05, night"). An eighth, not a quarter: the reports' hourly figures grow with
/// the hours a history spans, and at 10M events (about 105,000 records before they went
/// aside) a quarter of the default budget let them make the 10M replay's peak a quarter
/// above the 1M replay's, whose figures stay held (alternated `/usr/bin/time omnilog
/// replay` runs and their figures in docs/benchmarks-journal.md, "2026-12-07, midday").
pub const SUMS_HELD_SHARE: usize = 8;

/// What a record of sums weighs in memory, about: its key twice (in the indexed table's
/// hash map and in its B-tree of keys: 64 bytes for an hour, a channel and an inline id,
/// the B-tree's nodes about half full as hours are appended), the map's entry (16 bytes)
/// and its figures behind an `Arc` (`BucketCounts`: 80 bytes, 96 with the counts). About
/// 90 + 115 + 96 bytes; 256 while the sums were in a B-tree alone.
pub const SUM_RECORD_BYTES: usize = 320;

/// How many records of sums a replay's view holds across passes, given its budget.
fn sums_held_limit(cache_bytes: usize) -> usize {
    cache_bytes / SUMS_HELD_SHARE / SUM_RECORD_BYTES
}

/// Folds batches into one version until the feeder hands over the end ([`Feed::End`]), then
/// writes the last checkpoint and returns it; `None` when the channel closed without the
/// end (the replay failed elsewhere: nothing more is written).
///
/// At the end of a pass, a view whose records are final once their partition is folded
/// ([`AnyVersion::partition_local`]) writes the pass's changes to a run file (given
/// `runs_dir`: [`AnyVersion::encode_ahead`]) and takes its sums apart to another, and lets
/// the records go: nothing of the next passes touches them, and the last checkpoint merges
/// the runs. Without `runs_dir`, it writes them and lets them go once they weigh more than
/// a sixteenth of the budget ([`ENCODED_AHEAD_SHARE`]). (Below that they stay: a short
/// history is then written once, in one disk table, rather than in a table per partition
/// that the store would have to compact.) That checkpoint is written on a thread of its own
/// while the next pass folds (the fold takes the changes without copying them,
/// and goes on); its records are let go once written, so a fold that did reach back for
/// one reads it from memory or from the store, never a gap. Below the sixteenth, it encodes
/// them on that thread instead, so the last checkpoint writes them without encoding the
/// whole history after the fold.
///
/// A view whose budget is full checkpoints in the middle of a pass, on such a thread too,
/// while the fold goes on. Written on the worker's own thread, it stopped the fold, the
/// feeding waited on the worker's full channel, and every other view with it (the reports'
/// view alone writes twelve of them in a 10M-event replay, 4.2 s in all). Once it is
/// written, the worker itself lets clean records go down to three quarters of the budget,
/// between two batches: the records are freed on the thread that made them (freed on the
/// writer's thread, they took the allocator's cross-thread path: under mimalloc, the
/// allocator until 2026-12-04, `mi_free_block_mt` was 4 % of the samples of `perf record -F
/// 49 --call-graph dwarf,16384 omnilog replay` of 10M events), and no fold is under way to
/// have loaded one of them.
fn fold_batches(
    version: &Arc<dyn AnyVersion>,
    batches: &mpsc::Receiver<Feed>,
    until: Option<DateTime<Utc>>,
    folded: &AtomicU64,
    cache_bytes: usize,
    runs_dir: Option<&Path>,
) -> Result<Option<Checkpoint>, ProjectorError> {
    // A thread of its own for the whole replay, not one per job: see `job_thread`.
    let mut writer = JobThread::new(format!("write-{}", short_name(version.status().view)), 0);
    let mut writing: Option<Background> = None;
    // Waits for the background job (if any); once a checkpoint is written, lets its records
    // go (encoded-ahead records stay until a checkpoint writes them).
    let written = |writing: &mut Option<Background>| match writing.take() {
        Some(background) => {
            let job = background.job;
            background.join()?;
            match job {
                Job::Checkpoint => version.partition_done(true),
                Job::BudgetCheckpoint => version.let_go_to_budget(),
                // Encoded, the pass's records are held as the last checkpoint will write
                // them: those in memory may go.
                Job::EncodeAhead => version.partition_done(true),
            }
        }
        None => Ok(()),
    };
    let mut handed_over = false;
    while let Ok(feed) = batches.recv() {
        let batch = match feed {
            Feed::Batch(batch) => batch,
            Feed::End => {
                handed_over = true;
                break;
            }
            Feed::Beyond => {
                // A partition-local view forgot the keys of done partitions and let go of
                // records encoded ahead: from here on, a record not in memory may be in
                // the store, so the store must hold every record.
                written(&mut writing)?;
                if version.partition_local() {
                    version.checkpoint_keeping()?;
                }
                version.store_may_hold_anything()?;
                continue;
            }
            Feed::PassDone => {
                // A table that could not be made (or the store it is in) fails the replay
                // now, not once every pass is folded (it is made while the views fold).
                version.table().failed_to_make()?;
                // Only a view whose records are final once their partition is folded gains
                // from a checkpoint here. Another (the reports' hourly figures) finds the
                // same records again in the next pass: letting them go would read them back
                // and write them once a pass (at 10M events, 3.1M reporting records written
                // in 13 checkpoints before, 2.7M in 6 after: the "checkpoint written" lines
                // of `RUST_LOG=omnilog_projector=debug omnilog replay`). It checkpoints when its
                // budget is full, as a live projection does.
                if !version.partition_local() {
                    continue;
                }
                // Encoded ahead to a run file, the pass's records take no memory: written
                // once, by the last checkpoint. Held in memory, they are written once they
                // weigh a share of the budget.
                let job =
                    if runs_dir.is_none() && version.memory() > cache_bytes / ENCODED_AHEAD_SHARE {
                        Job::Checkpoint
                    } else {
                        Job::EncodeAhead
                    };
                // The sums go aside only once they are many: held, they are encoded and
                // written once, by the last checkpoint.
                let sums_aside =
                    runs_dir.is_some() && version.sums_held() > sums_held_limit(cache_bytes);
                written(&mut writing)?;
                writing = Some(Background::start(
                    &mut writer,
                    version,
                    job,
                    runs_dir,
                    sums_aside,
                )?);
                continue;
            }
        };
        // Dead letters of a replay are counted in the checkpoint, not appended: the
        // source log is only read. The fold passes over records of other topics.
        let records: Vec<&Decoded> = batch.iter().collect();
        version.fold(&records, until)?;
        folded.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Some(background) = &mut writing
            && (background.done.is_finished() || version.must_wait_for_checkpoint())
        {
            written(&mut writing)?;
        }
        // Never two checkpoints of a version at once: while one is being written, the
        // fold goes on over budget (by what it folds meanwhile) until it is done.
        if writing.is_none() && version.checkpoint_due() {
            writing = Some(Background::start(
                &mut writer,
                version,
                Job::BudgetCheckpoint,
                runs_dir,
                false,
            )?);
        }
    }
    written(&mut writing)?;
    writer.stop();
    // Without the end, the replay failed elsewhere: its versions are never made active,
    // so a last checkpoint would only be work thrown away.
    if !handed_over {
        return Ok(None);
    }
    version.last_checkpoint()?;
    Ok(Some(version.status().checkpoint()))
}

/// What a replay worker's background thread does at the end of a pass.
#[derive(Clone, Copy, Debug)]
enum Job {
    /// Writes a checkpoint at the end of a pass; once it is done, the records it wrote
    /// are let go, and the keys the pass let go forgotten ([`AnyVersion::partition_done`]).
    Checkpoint,
    /// Writes a checkpoint because the budget is full; once it is done, the worker lets
    /// clean records go down to three quarters of the budget.
    BudgetCheckpoint,
    /// Encodes the pass's changes for the next checkpoint; once it is done, the records
    /// they were encoded from are let go, and the keys the pass let go forgotten.
    EncodeAhead,
}

/// A job on a replay worker's background thread, and how it ends.
struct Background {
    job: Job,
    done: Pending<()>,
}

impl Background {
    /// Runs `job` for `version` on the worker's writer thread. A checkpoint's thread only
    /// writes: the worker lets records go once it is done (see [`fold_batches`]). With
    /// `sums_aside` (which needs `runs_dir`), an [`Job::EncodeAhead`] takes the state's
    /// sums apart too, to write their deltas aside.
    fn start(
        writer: &mut JobThread,
        version: &Arc<dyn AnyVersion>,
        job: Job,
        runs_dir: Option<&Path>,
        sums_aside: bool,
    ) -> Result<Self, ProjectorError> {
        let version = version.clone();
        let runs_dir = runs_dir.map(Path::to_owned);
        // A pass's checkpoint takes its changes here, before the next pass folds anything:
        // once written, every clean record is of a done partition, and may go unremembered.
        let taken = match job {
            Job::Checkpoint => Some(version.take_pass_checkpoint(false)?),
            Job::EncodeAhead => Some(version.take_pass_checkpoint(sums_aside)?),
            Job::BudgetCheckpoint => None,
        };
        let done = writer.run(move || match (taken, job) {
            (Some(taken), Job::EncodeAhead) => version.encode_ahead(taken, runs_dir.as_deref()),
            (Some(taken), _) => version.write_taken(taken),
            (None, _) => version.checkpoint_keeping(),
        })?;
        Ok(Background { job, done })
    }

    /// Waits for the job to end; its outcome.
    fn join(self) -> Result<(), ProjectorError> {
        self.done.join()
    }
}

/// Records past the ends a scan started with (see the look beyond in [`replay`]); moves the
/// scan's ranges past them.
async fn read_beyond(
    log: &SharedLog,
    scan: &mut Scan,
    batch: usize,
) -> Result<Vec<LogRecord>, ProjectorError> {
    let mut found = Vec::new();
    let mut ranges: Vec<PartitionRange> = scan.ranges().to_vec();
    for range in &mut ranges {
        let from = range.from.max(range.to);
        let records = log.read(range.topic, range.partition, from, batch).await?;
        if let Some(last) = records.last() {
            range.from = last.offset + 1;
            range.to = range.from;
        }
        found.extend(records);
    }
    *scan = Scan::new(ranges);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(topic: Topic, partition: u32, to: u64) -> PartitionRange {
        PartitionRange {
            topic,
            partition,
            from: 0,
            to,
        }
    }

    /// A pass as the test sees it: the topics and partitions it reads, and its share.
    type PassShape = (Vec<(Topic, u32)>, Option<KeyShare>);

    #[test]
    fn passes_are_sized_to_the_cache_unless_told() {
        let options = ReplayOptions::default();
        // 128 MiB at 512 bytes a record.
        assert_eq!(options.records_per_pass(), 262_144);
        let small = ReplayOptions {
            cache_bytes: 1024 * 1024,
            ..ReplayOptions::default()
        };
        assert_eq!(small.records_per_pass(), MIN_RECORDS_PER_PASS);
        let large = ReplayOptions {
            cache_bytes: 1024 * 1024 * 1024,
            ..ReplayOptions::default()
        };
        assert_eq!(large.records_per_pass(), 2_097_152);
        for told in [0, 60] {
            let options = ReplayOptions {
                pass_records: Some(told),
                ..ReplayOptions::default()
            };
            assert_eq!(options.records_per_pass(), told);
        }
        let spilled = ReplayOptions {
            spill_dir: Some(PathBuf::from("spill")),
            ..large
        };
        assert_eq!(spilled.records_per_pass(), SPILLED_PASS_RECORDS);
    }

    #[test]
    fn a_partition_longer_than_a_pass_is_read_once_per_share_of_its_keys() {
        let scan = Scan::new(vec![
            range(Topic::Interactions, 0, 250),
            range(Topic::Interactions, 1, 50),
            range(Topic::Agents, 0, 400),
            range(Topic::Agents, 1, 10),
        ]);
        let passes_of = |pass_records| -> Vec<PassShape> {
            passes(&scan, pass_records)
                .iter()
                .map(|pass| {
                    let ranges = pass.ranges().iter().map(|r| (r.topic, r.partition));
                    (ranges.collect(), pass.share())
                })
                .collect()
        };
        let partition = |p| vec![(Topic::Interactions, p), (Topic::Agents, p)];
        // Agents' records do not count: partition 0 holds 250 interaction records.
        let mut expected: Vec<_> = (0..5)
            .map(|index| (partition(0), KeyShare::new(index, 5, 2)))
            .collect();
        expected.push((partition(1), None));
        assert_eq!(passes_of(60), expected);
        assert_eq!(
            passes_of(0),
            vec![(partition(0), None), (partition(1), None)]
        );
        assert_eq!(
            passes_of(250),
            vec![(partition(0), None), (partition(1), None)]
        );
    }

    /// A record of the interactions topic whose key the partitioner puts in `partition` of
    /// three (its payload decodes to nothing: a dead letter, still handed over).
    fn record_in(partition: u32, index: u32) -> omnilog_log::AppendRecord {
        let key = (0u32..)
            .map(|candidate| format!("customer-{candidate}"))
            .find(|key| omnilog_log::partition_for(key.as_bytes(), 3) == partition)
            .expect("some key of the partition");
        omnilog_log::AppendRecord {
            topic: Topic::Interactions,
            key,
            event_id: uuid::Uuid::from_u128(u128::from(partition) << 32 | u128::from(index)),
            payload: bytes::Bytes::from_static(b"not an event"),
            headers: Vec::new(),
        }
    }

    /// A log of three partitions in `dir`, empty.
    fn log_of_three(dir: &Path) -> SharedLog {
        Arc::new(
            omnilog_log::EmbeddedLog::open(
                &dir.join("log"),
                omnilog_log::PartitionCounts::uniform(3),
            )
            .unwrap(),
        )
    }

    /// One pass a partition, read four records at a time.
    fn batches_of_four() -> ReplayOptions {
        ReplayOptions {
            batch: 4,
            pass_records: Some(0),
            ..ReplayOptions::default()
        }
    }

    #[tokio::test]
    async fn every_worker_hears_each_pass_end_after_its_batches_and_the_end_after_all() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of_three(dir.path());
        // Five records in partition 0 (a pass of two batches of at most four), none in
        // partition 1 (an empty pass), two in partition 2 (a pass shorter than a batch);
        // one append each, so that a batch is cut at four records exactly.
        for (partition, count) in [(0, 5), (2, 2)] {
            for index in 0..count {
                log.append(vec![record_in(partition, index)]).await.unwrap();
            }
        }
        let scan = Scan::to_ends(&*log, &[Topic::Interactions]).await.unwrap();
        // Appended once the ends are known: read beyond them.
        for index in 2..5 {
            log.append(vec![record_in(2, index)]).await.unwrap();
        }
        let options = batches_of_four();
        let (first, first_heard) = mpsc::sync_channel::<Feed>(64);
        let (second, second_heard) = mpsc::sync_channel::<Feed>(64);
        read_all(
            &log,
            scan,
            &options,
            vec![first, second],
            &[],
            &mut |_, _| {},
        )
        .await
        .unwrap();
        let told = |heard: mpsc::Receiver<Feed>| -> Vec<String> {
            heard
                .try_iter()
                .map(|feed| match feed {
                    Feed::Batch(batch) => format!("{} records", batch.len()),
                    Feed::PassDone => "pass done".to_owned(),
                    Feed::Beyond => "beyond".to_owned(),
                    Feed::End => "end".to_owned(),
                })
                .collect()
        };
        let expected = [
            "4 records",
            "1 records",
            "pass done",
            "pass done",
            "2 records",
            "pass done",
            "beyond",
            "3 records",
            "end",
        ];
        assert_eq!(told(first_heard), expected);
        assert_eq!(told(second_heard), expected);
    }

    #[tokio::test]
    async fn a_worker_gone_fails_the_feeding() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of_three(dir.path());
        for index in 0..40 {
            log.append(vec![record_in(0, index)]).await.unwrap();
        }
        let scan = Scan::to_ends(&*log, &[Topic::Interactions]).await.unwrap();
        let options = batches_of_four();
        let (kept, kept_heard) = mpsc::sync_channel::<Feed>(64);
        let (gone, gone_heard) = mpsc::sync_channel::<Feed>(1);
        drop(gone_heard);
        let failed = read_all(&log, scan, &options, vec![kept, gone], &[], &mut |_, _| {})
            .await
            .unwrap_err();
        assert!(
            failed.to_string().contains("a replay worker stopped early"),
            "{failed}"
        );
        // The worker with room heard the batches handed over before the other was found
        // gone, and no end (which, with the feeder stopped, could not come anyway: the
        // reading's own failure is tested by `a_replay_whose_log_cannot_be_read_to_its_end_…`
        // in tests/replay_passes.rs).
        let heard: Vec<Feed> = kept_heard.try_iter().collect();
        assert!(
            !heard.is_empty(),
            "the worker with room heard the first batch"
        );
        assert!(!heard.iter().any(|feed| matches!(feed, Feed::End)));
    }
}
