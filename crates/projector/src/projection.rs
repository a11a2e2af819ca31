//! One projection: a task that folds the log into one version of one view.
//!
//! The loop: read every partition the view folds from the checkpoint's positions, fold
//! the records through the view into an overlay (on a blocking thread: sled blocks),
//! append what could not be decoded or applied to the dead letter, then commit the overlay
//! and the new checkpoint in one atomic batch, and publish the checkpoint to queries.
//!
//! Batches adapt to the load: when a read fills the batch the next one doubles (throughput
//! first when busy), when the log runs dry it halves back towards the minimum and the task
//! sleeps until the log says something was appended (freshness first when quiet).
//!
//! Exactly-once in effect: the state and the positions it came from are one write, so a
//! crash at any instant resumes from a consistent pair. Dead letters are appended before
//! the commit that moves past them, with an id derived from (view, partition, offset), so a
//! re-fold after a crash writes the same dead letter again and the log keeps it once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use omnilog_events::Destination;
use omnilog_log::{AppendRecord, LogRecord, SharedLog, Topic};
use omnilog_store::{Checkpoint, Overlay, ViewTable};
use omnilog_views::{LogPosition, View, ViewError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::metrics::ProjectorMetrics;
use crate::{ProjectorConfig, ProjectorError};

/// The log topic a view's destination is read from.
pub fn topic_of(destination: Destination) -> Topic {
    match destination {
        Destination::Interactions => Topic::Interactions,
        Destination::Agents => Topic::Agents,
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

/// What queries and operators see of a running projection.
#[derive(Debug)]
pub struct ProjectionStatus {
    pub view: &'static str,
    pub version: u32,
    pub topics: &'static [Destination],
    checkpoint: watch::Sender<Checkpoint>,
    phase: Mutex<Phase>,
}

impl ProjectionStatus {
    /// The status of a view that is served but not projected (a replayed store).
    pub fn frozen(
        view: &'static str,
        version: u32,
        topics: &'static [Destination],
        checkpoint: Checkpoint,
    ) -> Self {
        ProjectionStatus {
            view,
            version,
            topics,
            checkpoint: watch::channel(checkpoint).0,
            phase: Mutex::new(Phase::Stopped),
        }
    }

    /// The checkpoint of the last commit.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint.borrow().clone()
    }

    /// Follows the checkpoint as commits land.
    pub fn subscribe(&self) -> watch::Receiver<Checkpoint> {
        self.checkpoint.subscribe()
    }

    pub fn phase(&self) -> Phase {
        self.phase
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// Whether the state has folded `offset` of `topic`/`partition`.
    pub fn has_applied(&self, topic: Destination, partition: u32, offset: u64) -> bool {
        self.checkpoint.borrow().next_offset(topic, partition) > offset
    }
}

/// A running projection. Stop it with [`Projection::stop`].
#[derive(Debug)]
pub struct Projection {
    status: Arc<ProjectionStatus>,
    table: ViewTable,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Projection {
    /// Starts folding `log` into `table` through `view`, from the table's checkpoint.
    pub async fn spawn(
        log: SharedLog,
        table: ViewTable,
        view: Arc<dyn View>,
        config: ProjectorConfig,
        metrics: ProjectorMetrics,
    ) -> Result<Self, ProjectorError> {
        let reading = table.clone();
        let checkpoint = tokio::task::spawn_blocking(move || reading.checkpoint())
            .await
            .map_err(|e| ProjectorError::Task(e.to_string()))??;
        let status = Arc::new(ProjectionStatus {
            view: view.name(),
            version: table.version(),
            topics: view.topics(),
            checkpoint: watch::channel(checkpoint).0,
            phase: Mutex::new(Phase::Running),
        });
        let (stop, stopped) = watch::channel(false);
        let worker = Worker {
            log,
            table: table.clone(),
            view,
            config,
            metrics,
            status: status.clone(),
            stopped,
        };
        let task = tokio::spawn(worker.run());
        Ok(Projection {
            status,
            table,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    pub fn status(&self) -> &Arc<ProjectionStatus> {
        &self.status
    }

    pub fn table(&self) -> &ViewTable {
        &self.table
    }

    /// Stops after the batch in progress (which commits or is dropped whole).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(view = self.status.view, %error, "a projection task panicked");
        }
        self.status.set_phase(Phase::Stopped);
    }
}

/// What one fold of a batch produced, ready to commit.
pub(crate) struct Folded {
    pub(crate) overlay: Overlay,
    pub(crate) checkpoint: Checkpoint,
    pub(crate) dead_letters: Vec<AppendRecord>,
    pub(crate) events: usize,
}

struct Worker {
    log: SharedLog,
    table: ViewTable,
    view: Arc<dyn View>,
    config: ProjectorConfig,
    metrics: ProjectorMetrics,
    status: Arc<ProjectionStatus>,
    stopped: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self) {
        let mut batch = self.config.min_batch.max(1);
        let mut appended = self.log.appended();
        let mut backoff = Duration::from_millis(50);
        loop {
            if *self.stopped.borrow() {
                return;
            }
            // Taken before reading, so an append that lands during the read still wakes us.
            if let Some(receiver) = appended.as_mut() {
                receiver.borrow_and_update();
            }
            match self.step(batch).await {
                Ok(0) => {
                    backoff = Duration::from_millis(50);
                    batch = (batch / 2).max(self.config.min_batch.max(1));
                    self.idle(appended.as_mut()).await;
                }
                Ok(read) => {
                    backoff = Duration::from_millis(50);
                    if self.status.phase() != Phase::Running {
                        self.status.set_phase(Phase::Running);
                    }
                    // A batch that filled up means more is waiting: take more next time.
                    if read >= batch {
                        batch = (batch * 2).min(self.config.max_batch.max(1));
                    }
                }
                Err(error) => {
                    tracing::warn!(view = self.status.view, %error, retry_in = ?backoff, "projection step failed");
                    self.status.set_phase(Phase::Failing(error.to_string()));
                    // Whatever failed, the committed checkpoint is the truth to resume from.
                    let table = self.table.clone();
                    if let Ok(Ok(checkpoint)) =
                        tokio::task::spawn_blocking(move || table.checkpoint()).await
                    {
                        self.status.checkpoint.send_replace(checkpoint);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stopped.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Waits for new records, a stop, or the idle timeout.
    async fn idle(&mut self, appended: Option<&mut watch::Receiver<u64>>) {
        match appended {
            Some(receiver) => {
                tokio::select! {
                    _ = receiver.changed() => {}
                    _ = self.stopped.changed() => {}
                    _ = tokio::time::sleep(self.config.idle_wait) => {}
                }
            }
            None => {
                tokio::select! {
                    _ = self.stopped.changed() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
        }
    }

    /// Reads, folds and commits one batch; returns the largest read of one partition.
    async fn step(&mut self, batch: usize) -> Result<usize, ProjectorError> {
        let checkpoint = self.status.checkpoint();
        let mut records: Vec<LogRecord> = Vec::new();
        let mut largest_read = 0;
        for &destination in self.view.topics() {
            let topic = topic_of(destination);
            for partition in 0..self.log.partitions(topic) {
                let from = checkpoint.next_offset(destination, partition);
                let read = self.log.read(topic, partition, from, batch).await?;
                largest_read = largest_read.max(read.len());
                records.extend(read);
            }
        }
        if records.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let table = self.table.clone();
        let view = self.view.clone();
        let folded =
            tokio::task::spawn_blocking(move || fold(&table, &*view, checkpoint, records, None))
                .await
                .map_err(|e| ProjectorError::Task(e.to_string()))??;
        if !folded.dead_letters.is_empty() {
            let count = folded.dead_letters.len() as u64;
            self.log.append(folded.dead_letters).await?;
            self.metrics.dead_letter(self.status.view, count);
        }
        let table = self.table.clone();
        let checkpoint = folded.checkpoint.clone();
        let overlay = folded.overlay;
        tokio::task::spawn_blocking(move || table.commit(overlay, &checkpoint))
            .await
            .map_err(|e| ProjectorError::Task(e.to_string()))??;
        self.metrics
            .batch(self.status.view, folded.events, started.elapsed());
        self.status.checkpoint.send_replace(folded.checkpoint);
        Ok(largest_read)
    }
}

pub(crate) fn destination_of(topic: Topic) -> Destination {
    match topic {
        Topic::Agents => Destination::Agents,
        _ => Destination::Interactions,
    }
}

/// The id of the dead letter of one record for one view: the same on every re-fold.
fn dead_letter_id(view: &str, record: &LogRecord) -> Uuid {
    let name = format!(
        "dead-letter\0{view}\0{}\0{}\0{}",
        record.topic.name(),
        record.partition,
        record.offset
    );
    Uuid::new_v5(
        &omnilog_events::identity::OMNILOG_NAMESPACE,
        name.as_bytes(),
    )
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
        key: record.key.clone(),
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

/// Folds records into an overlay over the table (blocking: reads go to sled). With
/// `until`, events that occurred after it are passed over (their positions still advance):
/// the state is the view as of that point in event time.
pub(crate) fn fold(
    table: &ViewTable,
    view: &dyn View,
    mut checkpoint: Checkpoint,
    records: Vec<LogRecord>,
    until: Option<DateTime<Utc>>,
) -> Result<Folded, ViewError> {
    let mut overlay = table.begin();
    let mut dead_letters = Vec::new();
    let events = records.len();
    for record in &records {
        let destination = destination_of(record.topic);
        overlay.start_event();
        let reason = match omnilog_events::decode(&record.payload) {
            Err(error) => Some(format!("undecodable: {error}")),
            Ok(event) if until.is_some_and(|until| event.occurred_at > until) => {
                checkpoint
                    .positions
                    .insert((destination, record.partition), record.offset + 1);
                continue;
            }
            Ok(event) => {
                let position = LogPosition {
                    partition: record.partition,
                    offset: record.offset,
                };
                match view.apply(&mut overlay, &event, position) {
                    Ok(()) => None,
                    Err(ViewError::Unapplicable(reason)) => Some(reason),
                    Err(ViewError::BadQuery { parameter, message }) => {
                        Some(format!("{parameter}: {message}"))
                    }
                    // The store failed, not the event: the batch is retried whole.
                    Err(fatal @ (ViewError::Storage(_) | ViewError::Corrupt { .. })) => {
                        return Err(fatal);
                    }
                }
            }
        };
        if let Some(reason) = reason {
            overlay.undo_event();
            dead_letters.push(dead_letter(view.name(), record, &reason));
            checkpoint.dead_letters += 1;
        }
        checkpoint
            .positions
            .insert((destination, record.partition), record.offset + 1);
        checkpoint.events_applied += 1;
    }
    Ok(Folded {
        overlay,
        checkpoint,
        dead_letters,
        events,
    })
}
