//! The log: the `EventLog` trait every backend implements, the partitioner shared by all of
//! them, and the embedded backend (segment files of its own, synced before it answers).
//!
//! The log knows no event type. A record is a key (the customer or agent id), an event id
//! (for deduplication), headers and opaque bytes. Invariants every backend keeps:
//! `append` answers only once the records are durable; a batch is all or nothing; an
//! event id is stored at most once per partition; offsets are contiguous per partition
//! from 0; a record is readable only once it is durable.

mod embedded;
mod partitioner;
mod spill;

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};

pub use embedded::{DiskFault, EmbeddedLog, LogOptions};
pub use partitioner::{KeyShare, murmur2, partition_for};
pub use spill::{SpillReader, SpillWriter};

/// The topics of CONTRACT §2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every interaction, message, routing, identity and outcome event, keyed by customer.
    Interactions,
    /// Agent state, skills and capacity, keyed by agent.
    Agents,
    /// What could not be decoded or applied, with the reason in a header.
    DeadLetter,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::Interactions, Topic::Agents, Topic::DeadLetter];

    /// The topic's name, in Kafka and in the embedded log alike.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Interactions => "omnilog.interactions",
            Topic::Agents => "omnilog.agents",
            Topic::DeadLetter => "omnilog.dead-letter",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A record to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRecord {
    pub topic: Topic,
    /// Chooses the partition (Kafka's partitioner on these bytes).
    pub key: String,
    /// Deduplicates within the partition.
    pub event_id: uuid::Uuid,
    pub payload: bytes::Bytes,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// What became of one appended record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored here.
    Appended(Position),
    /// Its event id was already stored in its partition: here is the first copy.
    Duplicate(Position),
}

impl AppendOutcome {
    pub fn position(&self) -> Position {
        match self {
            AppendOutcome::Appended(p) | AppendOutcome::Duplicate(p) => *p,
        }
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, AppendOutcome::Duplicate(_))
    }
}

/// What became of one record of an append the backend did not wholly confirm
/// ([`LogError::Unconfirmed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFate {
    /// Stored here: its delivery was confirmed.
    Stored(Position),
    /// Perhaps stored, perhaps not: if it was, it is in `partition` at `from` or after
    /// (where that partition was known to end before the record was sent).
    InDoubt { partition: u32, from: u64 },
}

/// A stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub topic: Topic,
    pub partition: u32,
    pub offset: u64,
    /// The key it was appended with, as bytes (a Kafka record's key is bytes), in the
    /// buffer the record was read into: a string of its own, checked as UTF-8, made and
    /// let go for every record read, was an allocation on a reading thread and a free on
    /// the decoding one (see docs/benchmarks-journal.md, "2026-12-05, day").
    pub key: bytes::Bytes,
    pub event_id: uuid::Uuid,
    pub payload: bytes::Bytes,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Partitions per topic, fixed when a log is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionCounts {
    pub interactions: u32,
    pub agents: u32,
    pub dead_letter: u32,
}

impl Default for PartitionCounts {
    fn default() -> Self {
        PartitionCounts {
            interactions: 12,
            agents: 12,
            dead_letter: 12,
        }
    }
}

impl PartitionCounts {
    /// The same count for every topic.
    pub fn uniform(partitions: u32) -> Self {
        PartitionCounts {
            interactions: partitions,
            agents: partitions,
            dead_letter: partitions,
        }
    }

    pub fn get(&self, topic: Topic) -> u32 {
        match topic {
            Topic::Interactions => self.interactions,
            Topic::Agents => self.agents,
            Topic::DeadLetter => self.dead_letter,
        }
    }
}

/// What went wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage: {0}")]
    Storage(String),
    #[error("{topic} has {partitions} partitions; there is no partition {partition}")]
    UnknownPartition {
        topic: &'static str,
        partition: u32,
        partitions: u32,
    },
    #[error(
        "the log was created with {stored} partitions for {topic}, not {requested}: the partition count of a log cannot change (keys would move)"
    )]
    PartitionMismatch {
        topic: &'static str,
        stored: u32,
        requested: u32,
    },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("the log is closed")]
    Closed,
    #[error("this log was opened read-only: it takes no appends")]
    ReadOnly,
    #[error(
        "another process is writing the log in {dir}: one process writes a log at a time (readers such as `omnilog export` open it read-only)"
    )]
    Locked { dir: String },
    #[error(
        "{dir} holds a log in the format of omnilog builds before 2026-12 (on sled), which this build does not read. Carry it over: with the old build, `omnilog export --data-dir DATA --topics all > history.jsonl`; then, with this build, `omnilog import history.jsonl --data-dir NEW_DATA`"
    )]
    OlderFormat { dir: String },
    /// The backend cannot be reached now (brokers down, a delivery not confirmed): safe to
    /// retry.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// Records were handed to the backend, and it did not confirm every one of them (a
    /// delivery that timed out, or one Kafka's producer reports by inference): some may be
    /// stored, others not. Safe to retry too: a stored event sent again is answered as a
    /// duplicate where the writer deduplicates (ingest does, on the event id: it looks for
    /// the records in doubt in the log before it appends them again).
    #[error("the log did not confirm every write: {message}")]
    Unconfirmed {
        message: String,
        /// One per record of the append, in its order (empty when the backend cannot
        /// tell).
        fates: Vec<RecordFate>,
    },
}

/// Batches appended one after another that stand or fall in order (see
/// [`EventLog::append_in_chain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chain(pub u64);

/// The answer to an append handed over with [`EventLog::append_in_chain`].
pub type PendingAppend =
    std::pin::Pin<Box<dyn Future<Output = Result<Vec<AppendOutcome>, LogError>> + Send + 'static>>;

/// A partitioned, durable, append-only log.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug + 'static {
    /// Partition count of a topic.
    fn partitions(&self, topic: Topic) -> u32;

    /// Appends a batch, all or nothing, answering once every record is durable, with one
    /// outcome per record in order. A record whose event id is already stored in its
    /// partition (or earlier in the batch) is not stored again.
    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError>;

    /// Hands `batch` to the log at once, in order after every batch handed over before,
    /// and returns the answer to wait for: a caller may hand over its next batch before this
    /// one is durable, so the log writes one while the caller prepares the next (the
    /// ingest sequencer's pipeline). Batches of one `chain` stand or fall in order: once one
    /// fails, every later batch of the chain is refused too, so a refusal the caller learns
    /// of late has let nothing after it through. A caller starts a new chain
    /// ([`Self::new_chain`]) once it has heard of the failure and taken back what it had
    /// built on the refused batches. A backend that cannot hands the batch back, for
    /// [`Self::append`] (which a caller awaits before it appends the next).
    fn append_in_chain(
        &self,
        batch: Vec<AppendRecord>,
        chain: Chain,
    ) -> Result<PendingAppend, Vec<AppendRecord>> {
        let _ = chain;
        Err(batch)
    }

    /// Asks the log to bring what it holds into memory ahead of a read of all of it: a
    /// replay reads one partition after another, each from all over the log, which a cold
    /// page cache serves with scattered reads. A hint, acted on in the background; a
    /// backend where it means nothing ignores it.
    fn prefetch(&self) {}

    /// A chain no batch has been handed over in yet (see [`Self::append_in_chain`]).
    fn new_chain(&self) -> Chain {
        Chain(0)
    }

    /// Up to `max` records of a partition from offset `from`, in order; answers at once.
    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError>;

    /// The next records of a scan (see [`Scan`]): at most about `max`, from any of its
    /// partitions, each partition's in offset order; empty once every range is read. The
    /// default reads the partitions in turn; a backend that can read faster in another
    /// order (the embedded log: in the order records lie on disk) overrides it.
    async fn scan_next(&self, scan: &mut Scan, max: usize) -> Result<Vec<LogRecord>, LogError> {
        loop {
            let mut records = read_in_turn(self, scan, max).await?;
            let read_some = !records.is_empty();
            if let Some(share) = scan.share {
                records.retain(|r| share.holds(&r.key));
            }
            // A scan of a share of the keys reads on until some record is of it.
            if records.is_empty() && read_some {
                continue;
            }
            return Ok(records);
        }
    }

    /// The next offset to be written in each partition of the topic (index = partition).
    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError>;

    /// The next offset to be written in one partition. Backends that ask a remote broker
    /// per partition override it to ask only for this one.
    async fn end_offsets_of(&self, topic: Topic, partition: u32) -> Result<u64, LogError> {
        let ends = self.end_offsets(topic).await?;
        ends.get(partition as usize)
            .copied()
            .ok_or(LogError::UnknownPartition {
                topic: topic.name(),
                partition,
                partitions: ends.len() as u32,
            })
    }

    /// A counter that moves every time newly appended records become readable, for tailers
    /// of many partitions to wait on instead of polling. `None` when the backend cannot
    /// tell (readers then poll).
    fn appended(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Waits until the partition's end offset is greater than `offset` or `timeout`
    /// passes, and returns the end offset then.
    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError>;
}

/// A log shared by every part of a process.
pub type SharedLog = Arc<dyn EventLog>;

/// Offsets `from..to` of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionRange {
    pub topic: Topic,
    pub partition: u32,
    pub from: u64,
    pub to: u64,
}

impl PartitionRange {
    /// Records from `from` up to `to`.
    pub fn len(&self) -> u64 {
        self.to.saturating_sub(self.from)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reading many partitions, each up to an end, in whatever order the backend reads
/// fastest: what replay, export and the identity fold use to read the history. Every record
/// of every range is returned once, each partition's in offset order; how partitions
/// interleave is the backend's choice.
#[derive(Clone, Debug)]
pub struct Scan {
    ranges: Vec<PartitionRange>,
    /// Whose turn it is, for backends that read partitions in turn.
    turn: usize,
    /// Only the records of these keys are returned (see [`Scan::only_share`]).
    share: Option<KeyShare>,
}

impl Scan {
    pub fn new(ranges: Vec<PartitionRange>) -> Self {
        Scan {
            ranges,
            turn: 0,
            share: None,
        }
    }

    /// The same scan returning only the records whose keys are of `share`; the others are
    /// read and passed over. The embedded log passes over them before decoding their keys,
    /// headers or payloads.
    pub fn only_share(mut self, share: KeyShare) -> Self {
        self.share = Some(share);
        self
    }

    /// The share of keys the scan returns, if not all.
    pub fn share(&self) -> Option<KeyShare> {
        self.share
    }

    /// Every partition of `topics` from offset 0 to its end now.
    pub async fn to_ends(log: &dyn EventLog, topics: &[Topic]) -> Result<Self, LogError> {
        let mut ranges = Vec::new();
        for &topic in topics {
            for (partition, end) in log.end_offsets(topic).await?.into_iter().enumerate() {
                ranges.push(PartitionRange {
                    topic,
                    partition: partition as u32,
                    from: 0,
                    to: end,
                });
            }
        }
        Ok(Scan::new(ranges))
    }

    /// The ranges, each `from` moved past what was read.
    pub fn ranges(&self) -> &[PartitionRange] {
        &self.ranges
    }

    /// Records left to read.
    pub fn remaining(&self) -> u64 {
        self.ranges.iter().map(PartitionRange::len).sum()
    }

    /// Records left to read in `topic`.
    pub fn remaining_in(&self, topic: Topic) -> u64 {
        self.ranges
            .iter()
            .filter(|r| r.topic == topic)
            .map(PartitionRange::len)
            .sum()
    }

    /// Whether every range is read.
    pub fn is_done(&self) -> bool {
        self.remaining() == 0
    }
}

/// The default [`EventLog::scan_next`]'s step: the next records of the next range of `scan`
/// not yet read, in turn, and that range moved past them; empty once every range is read.
async fn read_in_turn(
    log: &(impl EventLog + ?Sized),
    scan: &mut Scan,
    max: usize,
) -> Result<Vec<LogRecord>, LogError> {
    let count = scan.ranges.len();
    for _ in 0..count {
        let at = scan.turn % count.max(1);
        scan.turn = scan.turn.wrapping_add(1);
        let range = scan.ranges[at];
        if range.is_empty() {
            continue;
        }
        let wanted = max.max(1).min(range.len().min(usize::MAX as u64) as usize);
        let mut records =
            read_before_end(log, range.topic, range.partition, range.from, wanted).await?;
        records.retain(|r| r.offset < range.to);
        if let Some(last) = records.last() {
            scan.ranges[at].from = last.offset + 1;
        }
        return Ok(records);
    }
    Ok(Vec::new())
}

/// How long [`read_before_end`] waits for records a partition's end says are there.
pub const DELIVERY_PATIENCE: Duration = Duration::from_secs(30);

/// Up to `max` records of a partition from `from`, which is below an end the log reported:
/// records are known to be there, so an empty answer (a remote log whose fetch has not
/// come back yet) is asked again, for up to [`DELIVERY_PATIENCE`]. Readers that fold "up
/// to the end" use it so that a slow fetch never ends their fold early.
pub async fn read_before_end(
    log: &(impl EventLog + ?Sized),
    topic: Topic,
    partition: u32,
    from: u64,
    max: usize,
) -> Result<Vec<LogRecord>, LogError> {
    let deadline = tokio::time::Instant::now() + DELIVERY_PATIENCE;
    loop {
        let records = log.read(topic, partition, from, max).await?;
        if !records.is_empty() {
            return Ok(records);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LogError::Unavailable(format!(
                "{} partition {partition} reported records from offset {from} but delivered none within {DELIVERY_PATIENCE:?}",
                topic.name()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tails a partition from `from` as a stream of records, reading `batch` at a time and
/// waiting for new ones at the end. It never ends by itself; an error ends it.
pub fn tail(
    log: SharedLog,
    topic: Topic,
    partition: u32,
    from: u64,
    batch: usize,
) -> BoxStream<'static, Result<LogRecord, LogError>> {
    const WAIT: Duration = Duration::from_secs(1);
    let batches = stream::unfold(Some(from), move |next| {
        let log = log.clone();
        async move {
            let mut next = next?;
            loop {
                match log.read(topic, partition, next, batch.max(1)).await {
                    Ok(records) if records.is_empty() => {
                        if let Err(error) = log.wait_beyond(topic, partition, next, WAIT).await {
                            return Some((vec![Err(error)], None));
                        }
                    }
                    Ok(records) => {
                        next = records.last().map_or(next, |r| r.offset + 1);
                        return Some((records.into_iter().map(Ok).collect(), Some(next)));
                    }
                    Err(error) => return Some((vec![Err(error)], None)),
                }
            }
        }
    });
    batches.flat_map(stream::iter).boxed()
}

/// One partition of the interactions topic, and the whole of the other topics: what a
/// projector instance that owns that partition folds (agents are a global table every
/// instance reads whole). The other interactions partitions look empty, so the projector
/// runtime needs no notion of ownership.
#[derive(Debug)]
pub struct PartitionSlice {
    inner: SharedLog,
    partition: u32,
}

impl PartitionSlice {
    pub fn new(inner: SharedLog, partition: u32) -> Self {
        PartitionSlice { inner, partition }
    }

    fn hides(&self, topic: Topic, partition: u32) -> bool {
        topic == Topic::Interactions && partition != self.partition
    }
}

#[async_trait::async_trait]
impl EventLog for PartitionSlice {
    fn partitions(&self, topic: Topic) -> u32 {
        self.inner.partitions(topic)
    }

    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError> {
        // Dead letters and any other write go to the whole log.
        self.inner.append(batch).await
    }

    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        if self.hides(topic, partition) {
            return Ok(Vec::new());
        }
        self.inner.read(topic, partition, from, max).await
    }

    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError> {
        if topic != Topic::Interactions {
            return self.inner.end_offsets(topic).await;
        }
        let mut ends = vec![0; self.inner.partitions(topic) as usize];
        let end = self.inner.end_offsets_of(topic, self.partition).await?;
        if let Some(slot) = ends.get_mut(self.partition as usize) {
            *slot = end;
        }
        Ok(ends)
    }

    fn appended(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.appended()
    }

    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        if self.hides(topic, partition) {
            tokio::time::sleep(timeout).await;
            return Ok(0);
        }
        self.inner
            .wait_beyond(topic, partition, offset, timeout)
            .await
    }
}
