//! The task that folds the log into running versions: several at once, reading and
//! decoding each record once for all of them.
//!
//! The live views of a server fold the same records. Each reading and decoding them for
//! itself cost a live server three decodes of every event, more than the folds; so the
//! versions a runtime starts together fold as a group, the way `omnilog replay` does: one
//! read of each partition from the furthest-behind member's position, one decode, then
//! every member folds, in parallel, the records at or past its own position. A member that
//! fails goes back to its last checkpoint and sits out with a growing backoff while the
//! others go on; when it comes back, the group reads from its position again and the
//! others pass over what they already hold. A rebuild runs as a group of one until it
//! replaces the live version.
//!
//! Each member checkpoints on its own epoch, and whenever the log has been quiet a moment
//! with folds not yet written. A checkpoint is written beside the folds: the fold waits
//! only while the checkpoint takes the changed records (see `omnilog_views::Snapshot`),
//! not while they are encoded and synced. The decoding, the folds and the checkpoints run
//! on threads of the group's own, below the write path's priority (see `job_thread`).
//! Stopping a [`Projection`] takes its version out of the
//! group after the batch in progress, with a last checkpoint; the task ends with its last
//! member.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use omnilog_events::Destination;
use omnilog_log::{LogRecord, SharedLog};
use omnilog_store::Checkpoint;
use tokio::sync::{mpsc, oneshot, watch};

use crate::job_thread::{JobThread, Pending, short_name};
use crate::metrics::ProjectorMetrics;
use crate::projection::{
    AnyVersion, Decoded, Phase, SpareDecoded, decode_all_into, destination_of, topic_of,
};
use crate::{ProjectorConfig, ProjectorError, blocking};

/// One version being folded by a group's task. Stop it with [`Projection::stop`].
#[derive(Debug)]
pub struct Projection {
    version: Arc<dyn AnyVersion>,
    id: usize,
    /// Where to ask the group's task to let this version go.
    detach: mpsc::UnboundedSender<Detach>,
    /// Set once stopped, so a second stop returns at once.
    stopped: Mutex<bool>,
}

/// Asks the group's task to checkpoint a member and let it go; answered once done.
struct Detach {
    id: usize,
    done: oneshot::Sender<()>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const LAST_BACKOFF: Duration = Duration::from_secs(5);

impl Projection {
    /// Starts folding `log` into `version`, from where it stands.
    pub fn spawn(
        log: SharedLog,
        version: Arc<dyn AnyVersion>,
        config: ProjectorConfig,
        metrics: ProjectorMetrics,
    ) -> Self {
        let mut group = Self::spawn_group(log, vec![version], config, metrics);
        group.remove(0)
    }

    /// Starts folding `log` into every one of `versions`, each from where it stands, with
    /// one read and one decode of each record for all of them. One projection per version,
    /// in order.
    pub fn spawn_group(
        log: SharedLog,
        versions: Vec<Arc<dyn AnyVersion>>,
        config: ProjectorConfig,
        metrics: ProjectorMetrics,
    ) -> Vec<Self> {
        let (detach, requests) = mpsc::unbounded_channel();
        let mut members = Vec::with_capacity(versions.len());
        let mut projections = Vec::with_capacity(versions.len());
        let nice = config.background_nice;
        for (id, version) in versions.into_iter().enumerate() {
            version.status().set_phase(Phase::Running);
            let view = short_name(version.status().view);
            members.push(Member {
                id,
                version: version.clone(),
                backoff: FIRST_BACKOFF,
                retry_at: None,
                folder: JobThread::new(format!("fold-{view}"), nice),
                writer: JobThread::new(format!("write-{view}"), nice),
                writing: None,
            });
            projections.push(Projection {
                version,
                id,
                detach: detach.clone(),
                stopped: Mutex::new(false),
            });
        }
        let worker = Worker {
            log,
            config,
            metrics,
            members,
            requests,
            waiting: Vec::new(),
            quiet_polls: 0,
            // One vector for the step being folded, one for the step read ahead.
            spare_decoded: SpareDecoded::new(2),
            decoder: JobThread::new("fold-group".to_owned(), nice),
            ahead: None,
        };
        tokio::spawn(worker.run());
        projections
    }

    pub fn version(&self) -> &Arc<dyn AnyVersion> {
        &self.version
    }

    /// Stops folding this version after the batch in progress, writing a last checkpoint.
    pub async fn stop(&self) {
        {
            let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
            if *stopped {
                return;
            }
            *stopped = true;
        }
        let (done, answer) = oneshot::channel();
        let asked = self.detach.send(Detach { id: self.id, done }).is_ok();
        if !asked || answer.await.is_err() {
            tracing::error!(
                view = self.version.status().view,
                "the projection task ended early (a panic?)"
            );
        }
        self.version.status().set_phase(Phase::Stopped);
    }
}

/// A version in a group, and how its failures are going.
struct Member {
    id: usize,
    version: Arc<dyn AnyVersion>,
    backoff: Duration,
    /// Failing: sits out until then.
    retry_at: Option<Instant>,
    /// Folds this member's part of a large read, beside the other members' threads.
    folder: JobThread,
    /// Writes this member's checkpoints, beside its folds.
    writer: JobThread,
    /// The checkpoint being written, if one is: it goes on beside the folds.
    writing: Option<Pending<()>>,
}

impl Member {
    fn view(&self) -> &'static str {
        self.version.status().view
    }

    /// Whether it folds now (not sitting out a failure).
    fn active(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| at <= now)
    }

    /// Starts writing a checkpoint beside the folds, unless one is being written.
    fn start_checkpoint(&mut self) -> Result<(), ProjectorError> {
        if self.writing.is_none() {
            let version = self.version.clone();
            self.writing = Some(self.writer.run(move || version.checkpoint())?);
        }
        Ok(())
    }

    /// Waits for the checkpoint being written, if any. One that lands starts the backoff
    /// over: the member makes durable progress again.
    async fn written(&mut self) -> Result<(), ProjectorError> {
        match self.writing.take() {
            Some(writing) => {
                writing.wait().await?;
                self.backoff = FIRST_BACKOFF;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The outcome of the checkpoint being written, if it is done, or once it is when the
    /// version's records outgrew it ([`AnyVersion::must_wait_for_checkpoint`]).
    async fn reap(&mut self) -> Result<(), ProjectorError> {
        if let Some(writing) = &mut self.writing
            && (writing.is_finished() || self.version.must_wait_for_checkpoint())
        {
            self.written().await
        } else {
            Ok(())
        }
    }

    /// Writes what was folded and not yet written, after the checkpoint in flight.
    async fn checkpoint_now(&mut self) -> Result<(), ProjectorError> {
        self.written().await?;
        if self.version.has_pending() {
            self.start_checkpoint()?;
            self.written().await?;
        }
        Ok(())
    }

    /// Goes back to the last checkpoint and sits out a while.
    async fn failed(&mut self, error: ProjectorError) {
        // The checkpoint in flight lands (or fails) before the state is read back.
        if let Err(error) = self.written().await {
            tracing::warn!(view = self.view(), %error, "a checkpoint failed");
        }
        let status = self.version.status();
        tracing::warn!(view = status.view, %error, retry_in = ?self.backoff, "projection step failed");
        status.set_phase(Phase::Failing(error.to_string()));
        // Whatever failed, the last checkpoint is the truth to go on from.
        let version = self.version.clone();
        if let Err(error) = blocking(move || version.reset()).await {
            tracing::warn!(view = status.view, %error, "could not go back to the last checkpoint");
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(LAST_BACKOFF);
    }

    /// A fold went through. The backoff is not started over here but once a checkpoint
    /// lands ([`Member::written`]): after a failure the member folds again from its last
    /// checkpoint, which goes through even when what fails is writing the next one (a
    /// view store whose disk is gone), and starting over here kept it re-folding everything
    /// since that checkpoint twenty times a second (1.4 cores of a server whose data dir
    /// was deleted).
    fn succeeded(&mut self) {
        self.retry_at = None;
        if self.version.status().phase() != Phase::Running {
            self.version.status().set_phase(Phase::Running);
        }
    }
}

struct Worker {
    log: SharedLog,
    config: ProjectorConfig,
    metrics: ProjectorMetrics,
    members: Vec<Member>,
    requests: mpsc::UnboundedReceiver<Detach>,
    /// Detach requests received while waiting, handled at the top of the loop.
    waiting: Vec<Detach>,
    /// Polls in a row that found nothing (for a log that cannot notify).
    quiet_polls: u32,
    /// The emptied vector of the last step's decoded records, refilled by the next step.
    spare_decoded: SpareDecoded,
    /// Decodes each step's records, and folds a few into every member (see
    /// [`INLINE_FOLD_RECORDS`]).
    decoder: JobThread,
    /// The next step's records, read and being decoded while the members fold this step's.
    ahead: Option<Ahead>,
}

/// A step's records: read by it, or read ahead by the step before and handed to the
/// decoding thread.
enum StepInput {
    Read(Vec<LogRecord>),
    Decoding(Pending<Vec<Decoded>>),
}

/// Where a step reads: each destination and partition from an offset.
type ReadPlan = Vec<(Destination, u32, u64)>;

/// Records read ahead: while the members fold one step's records (both cores busy with the
/// folds of five views), the worker reads the next step's and the decoder decodes them,
/// instead of leaving the folds idle while it reads and decodes, and the decoder idle
/// while they fold. Used only if the next step would read from the same places (every
/// member folded the step whole, none joined); otherwise dropped and read again.
struct Ahead {
    /// Where they were read from.
    plan: ReadPlan,
    /// Where the step after them reads from.
    next: ReadPlan,
    largest_read: usize,
    decoded: Pending<Vec<Decoded>>,
}

impl Worker {
    async fn run(mut self) {
        let mut batch = self.config.min_batch.max(1);
        let mut appended = self.log.appended();
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.detach_requested().await;
            if self.members.is_empty() {
                return;
            }
            // Taken before reading, so an append that lands during the read still wakes us.
            if let Some(receiver) = appended.as_mut() {
                receiver.borrow_and_update();
            }
            match self.step(batch).await {
                Ok(0) => {
                    backoff = FIRST_BACKOFF;
                    batch = (batch / 2).max(self.config.min_batch.max(1));
                    // Caught up. Once the log stays quiet a moment, whatever was folded is
                    // written, not a whole epoch later; under a steady stream the fold
                    // catches up many times a second, and a checkpoint each time would
                    // cost more than the folds.
                    let pending = self.members.iter().any(|m| m.version.has_pending());
                    let wait = if pending {
                        self.config.quiet_checkpoint
                    } else {
                        self.config.idle_wait
                    };
                    let woken = self.idle(appended.as_mut(), wait).await;
                    if pending && !woken {
                        self.checkpoint_pending().await;
                    }
                }
                Ok(read) => {
                    backoff = FIRST_BACKOFF;
                    self.quiet_polls = 0;
                    // A batch that filled up means more is waiting: take more next time.
                    if read >= batch {
                        batch = (batch * 2).min(self.config.max_batch.max(1));
                    }
                }
                // The log could not be read: every member waits.
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "reading the log failed");
                    for member in &self.members {
                        member
                            .version
                            .status()
                            .set_phase(Phase::Failing(error.to_string()));
                    }
                    let _ = self.idle(None, backoff).await;
                    backoff = (backoff * 2).min(LAST_BACKOFF);
                }
            }
        }
    }

    /// Lets go of the members whose projections were stopped, each after a last checkpoint.
    async fn detach_requested(&mut self) {
        while let Ok(request) = self.requests.try_recv() {
            self.waiting.push(request);
        }
        for request in std::mem::take(&mut self.waiting) {
            if let Some(index) = self.members.iter().position(|m| m.id == request.id) {
                let mut member = self.members.remove(index);
                if let Err(error) = member.checkpoint_now().await {
                    tracing::warn!(view = member.view(), %error, "the last checkpoint failed");
                }
            }
            let _ = request.done.send(());
        }
    }

    /// Writes a checkpoint of every member with folds not yet written, in parallel.
    async fn checkpoint_pending(&mut self) {
        let now = Instant::now();
        for member in &mut self.members {
            if member.active(now) && member.version.has_pending() {
                if let Err(error) = member.written().await {
                    member.failed(error).await;
                    continue;
                }
                if let Err(error) = member.start_checkpoint() {
                    member.failed(error).await;
                }
            }
        }
        for member in &mut self.members {
            if let Err(error) = member.written().await {
                member.failed(error).await;
            }
        }
    }

    /// Waits for new records, a stop, a member's retry, or `wait`; `true` when woken by an
    /// append or a stop (a log that cannot notify wakes after its poll interval, as if
    /// appended to, so the caller reads again before deciding the log is quiet).
    async fn idle(&mut self, appended: Option<&mut watch::Receiver<u64>>, wait: Duration) -> bool {
        let now = Instant::now();
        let retry = self
            .members
            .iter()
            .filter_map(|m| m.retry_at)
            .map(|at| at.saturating_duration_since(now))
            .min();
        let wait = retry.map_or(wait, |retry| retry.min(wait));
        match appended {
            Some(receiver) => {
                tokio::select! {
                    _ = receiver.changed() => true,
                    request = self.requests.recv() => {
                        self.waiting.extend(request);
                        true
                    }
                    _ = tokio::time::sleep(wait) => false,
                }
            }
            None => {
                let poll = self.config.poll_interval.min(wait);
                tokio::select! {
                    request = self.requests.recv() => {
                        self.waiting.extend(request);
                        true
                    }
                    _ = tokio::time::sleep(poll) => {
                        // Polling: quiet for good once a whole quiet period passed.
                        self.quiet_polls += 1;
                        poll * self.quiet_polls < wait
                    }
                }
            }
        }
    }

    /// Reads each partition once from the furthest-behind active member's position,
    /// decodes once, and folds into every active member what is at or past its position;
    /// checkpoints the members whose epoch is over. Returns the largest read of one
    /// partition.
    async fn step(&mut self, batch: usize) -> Result<usize, ProjectorError> {
        for member in &mut self.members {
            if let Err(error) = member.reap().await {
                member.failed(error).await;
            }
        }
        let now = Instant::now();
        let active: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].active(now))
            .collect();
        if active.is_empty() {
            return Ok(0);
        }
        let positions: Vec<_> = active
            .iter()
            .map(|&i| self.members[i].version.status().checkpoint())
            .collect();
        let mut destinations: Vec<_> = active
            .iter()
            .flat_map(|&i| self.members[i].version.status().topics.iter().copied())
            .collect();
        destinations.sort_unstable();
        destinations.dedup();
        let mut plan: ReadPlan = Vec::new();
        for destination in destinations {
            for partition in 0..self.log.partitions(topic_of(destination)) {
                let from = active
                    .iter()
                    .zip(&positions)
                    .filter(|(i, _)| {
                        self.members[**i]
                            .version
                            .status()
                            .topics
                            .contains(&destination)
                    })
                    .map(|(_, checkpoint)| checkpoint.next_offset(destination, partition))
                    .min()
                    .unwrap_or(0);
                plan.push((destination, partition, from));
            }
        }
        // Read ahead last step from where this one reads: taken, its records decoded or
        // being decoded. Otherwise read now.
        let (input, next, largest_read) = match self.ahead.take() {
            Some(ahead) if ahead.plan == plan => (
                StepInput::Decoding(ahead.decoded),
                ahead.next,
                ahead.largest_read,
            ),
            _ => {
                let read = read_plan(&self.log, &plan, batch).await?;
                if read.records.is_empty() {
                    return Ok(0);
                }
                (StepInput::Read(read.records), read.next, read.largest_read)
            }
        };
        let started = Instant::now();
        let members: Vec<(usize, Arc<dyn AnyVersion>, Checkpoint)> = active
            .iter()
            .zip(positions)
            .map(|(&index, checkpoint)| (index, self.members[index].version.clone(), checkpoint))
            .collect();
        let folding: Vec<(usize, FoldOutcome)> = match input {
            StepInput::Read(records) if records.len() <= INLINE_FOLD_RECORDS => {
                // A few records (a live server under single-event requests): decoding them and
                // folding them into every member on the decoding thread costs less than waking
                // a thread per member, which took more CPU than the folds themselves.
                let mut decoded = self.spare_decoded.take();
                let (outcomes, decoded) = self
                    .decoder
                    .run(move || {
                        decode_all_into(records, &mut decoded);
                        // Each member's fold caught on its own, as on its own thread: a
                        // panic in one member's fold took the whole job down with it, and
                        // the members folded before it lost their step's outcome (their
                        // dead letters never appended, their positions already moved:
                        // found by review).
                        let outcomes = members
                            .into_iter()
                            .map(|(index, version, checkpoint)| {
                                let folded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                    fold_member(&*version, &decoded, &checkpoint)
                                }))
                                .unwrap_or_else(|_| {
                                    Err(ProjectorError::Task(format!(
                                        "the fold of {} panicked",
                                        version.status().view
                                    )))
                                });
                                (index, folded)
                            })
                            .collect();
                        // Let go here, on the thread that decoded them: on the async thread,
                        // the frees took the allocator's cross-thread path beside the HTTP
                        // work (mimalloc's, the allocator until 2026-12-04; measured then).
                        decoded.clear();
                        Ok((outcomes, decoded))
                    })?
                    .wait()
                    .await?;
                self.spare_decoded.give_back(decoded);
                outcomes
            }
            input => {
                let decoding = match input {
                    StepInput::Decoding(decoding) => decoding,
                    StepInput::Read(records) => self.start_decoding(records)?,
                };
                let decoded = Arc::new(decoding.wait().await?);
                // Every member folds its part at once, each on its own thread.
                let mut tasks = Vec::with_capacity(members.len());
                for (index, version, checkpoint) in members {
                    let decoded = decoded.clone();
                    let folding = self.members[index]
                        .folder
                        .run(move || Ok(fold_member(&*version, &decoded, &checkpoint)));
                    tasks.push((index, folding));
                }
                // Meanwhile, the next step's records are read and decoded.
                self.read_ahead(next, batch).await;
                let mut outcomes = Vec::with_capacity(tasks.len());
                for (index, folding) in tasks {
                    let outcome = match folding {
                        Ok(folding) => folding.wait().await.and_then(|folded| folded),
                        Err(error) => Err(error),
                    };
                    outcomes.push((index, outcome));
                }
                // Every member's task is done with it: its vector serves the next step. (Its
                // events are let go here, on the async thread, as they were before the vector
                // was kept: a hop to the decoding thread would cost a wake-up per step.)
                if let Ok(decoded) = Arc::try_unwrap(decoded) {
                    self.spare_decoded.give_back(decoded);
                }
                outcomes
            }
        };
        for (index, outcome) in folding {
            let member = &mut self.members[index];
            let view = member.view();
            match outcome {
                Ok((events, dead_letters)) => {
                    if !dead_letters.is_empty() {
                        let count = dead_letters.len() as u64;
                        if let Err(error) = self.log.append(dead_letters).await {
                            member.failed(error.into()).await;
                            continue;
                        }
                        self.metrics.dead_letter(view, count);
                    }
                    self.metrics.batch(view, events, started.elapsed());
                    member.succeeded();
                    if member.version.checkpoint_due()
                        && let Err(error) = member.start_checkpoint()
                    {
                        member.failed(error).await;
                    }
                }
                Err(error) => member.failed(error).await,
            }
        }
        Ok(largest_read)
    }

    /// Hands `records` to the decoding thread, into a kept vector.
    fn start_decoding(
        &mut self,
        records: Vec<LogRecord>,
    ) -> Result<Pending<Vec<Decoded>>, ProjectorError> {
        let mut decoded = self.spare_decoded.take();
        self.decoder.run(move || {
            decode_all_into(records, &mut decoded);
            Ok(decoded)
        })
    }

    /// Reads the records of `plan` and hands them to the decoder, kept as [`Ahead`]. Only a
    /// busy log's: a few records are read again by the next step and folded inline (see
    /// [`INLINE_FOLD_RECORDS`]), and a failed read is left to the next step to meet.
    async fn read_ahead(&mut self, plan: ReadPlan, batch: usize) {
        let PlanRead {
            records,
            next,
            largest_read,
        } = match read_plan(&self.log, &plan, batch).await {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, "reading ahead failed; the next step reads again");
                return;
            }
        };
        if records.len() <= INLINE_FOLD_RECORDS {
            return;
        }
        let Ok(decoding) = self.start_decoding(records) else {
            return;
        };
        self.ahead = Some(Ahead {
            plan,
            next,
            largest_read,
            decoded: decoding,
        });
    }
}

/// Reads up to `batch` records of every partition of `plan` from its offset.
async fn read_plan(
    log: &SharedLog,
    plan: &ReadPlan,
    batch: usize,
) -> Result<PlanRead, ProjectorError> {
    let mut read = PlanRead {
        records: Vec::new(),
        next: Vec::with_capacity(plan.len()),
        largest_read: 0,
    };
    let mut parts = Vec::with_capacity(plan.len());
    for &(destination, partition, from) in plan {
        let records = log
            .read(topic_of(destination), partition, from, batch)
            .await?;
        read.largest_read = read.largest_read.max(records.len());
        let end = records
            .last()
            .map_or(from, |last| (last.offset + 1).max(from));
        read.next.push((destination, partition, end));
        parts.push(records);
    }
    // Joined into one vector sized once: grown from empty, a step's records (thousands a
    // partition under load) were copied at each doubling into fresh pages.
    read.records = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for records in parts {
        read.records.extend(records);
    }
    Ok(read)
}

/// What [`read_plan`] read.
struct PlanRead {
    records: Vec<LogRecord>,
    /// Where the step after it reads: past the last record of each partition read.
    next: ReadPlan,
    /// The most records one partition gave.
    largest_read: usize,
}

/// Records folded, and the dead letters to append, or why the fold failed.
type FoldOutcome = Result<(usize, Vec<omnilog_log::AppendRecord>), ProjectorError>;

/// At most this many records read at once are decoded and folded into every member on one
/// thread; more are folded by each member on its own thread.
const INLINE_FOLD_RECORDS: usize = 64;

/// Folds into `version` the records of its topics at or past its position.
fn fold_member(
    version: &dyn AnyVersion,
    decoded: &[Decoded],
    checkpoint: &Checkpoint,
) -> FoldOutcome {
    let topics = version.status().topics;
    // The member's position in a partition, looked up when the records move to another
    // partition: a step's records come partition after partition, and a lookup in the
    // checkpoint's map for every record and member was 2.2 % of a server's CPU under
    // batched ingest (`perf record` of `benches/serve_load.py`, `fold_member` itself).
    let mut position: Option<((Destination, u32), u64)> = None;
    let mine: Vec<&Decoded> = decoded
        .iter()
        .filter(|d| {
            let destination = destination_of(d.record.topic);
            if !topics.contains(&destination) {
                return false;
            }
            let partition = (destination, d.record.partition);
            let from = match position {
                Some((current, from)) if current == partition => from,
                _ => {
                    let from = checkpoint.next_offset(destination, d.record.partition);
                    position = Some((partition, from));
                    from
                }
            };
            d.record.offset >= from
        })
        .collect();
    let dead_letters = version.fold(&mine, None)?;
    Ok((mine.len(), dead_letters))
}
