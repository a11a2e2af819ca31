//! Positioned reads over Kafka consumers.
//!
//! `EventLog::read(topic, partition, from, max)` asks for records at any position, and a
//! process has several readers tailing the same partitions at different positions (one per
//! view, plus ingest's identity follower). A consumer per (reader, partition) would mean
//! dozens of librdkafka clients, each with its own threads and connections. Instead a
//! topic has a few *slots*: a consumer with a manual assignment, a cursor per partition
//! and a buffer per partition. A read goes to the slot whose cursor for that partition is
//! already at `from` (a tailer keeps finding its own slot), else to a slot that has not
//! assigned the partition yet, else to a new slot, else it moves the least recently used
//! slot's cursor (unassign and assign again at `from`: no seek, whose state rules are
//! fragile right after an assignment).
//!
//! Polling a slot's consumer yields records of all its partitions; those of other
//! partitions wait in their buffers, and a partition whose buffer is full is paused so
//! memory stays bounded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use omnilog_log::{LogError, LogRecord, PartitionCounts, Topic};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use uuid::Uuid;

use crate::{EVENT_ID_HEADER, KafkaConfig, KnownEnds};

/// Consumers per topic: enough for every view plus the identity follower to keep its own,
/// and in a projector group for every owned partition's queue view to keep its own cursor
/// on the agents topic.
const SLOTS_PER_TOPIC: usize = 16;
/// Records a partition may hold in a slot's buffer before it is paused.
const BUFFER_CAP: usize = 20_000;
/// The most records a partition is fetched from before a position. A broker that needs a
/// margin (see `Slot::margin`) needs one record batch's worth, and a producer's batch for one
/// partition holds a few thousand records at most (a megabyte); a read that merely found
/// nothing yet on a slow broker also widens the margin, and must not grow it to a refetch of
/// millions.
const MAX_MARGIN: u64 = 1 << 16;
/// How long a read waits for the first record when records are known to be there (or the
/// partition was just assigned and the fetch has not come back yet).
const FIRST_RECORD_WAIT: Duration = Duration::from_millis(200);
/// How long a partition's fetch may bring nothing, where records are known to be, before
/// it is fetched again from further back. Fetching again restarts the fetch: on a loaded
/// broker whose answer takes longer than [`FIRST_RECORD_WAIT`], doing it after every empty
/// read meant no fetch ever came back (a server's identity fold from offset 0 gave up
/// after 30 s in `tests/kafka_cluster.rs`, twice in three runs).
const EMPTY_FETCH_PATIENCE: Duration = Duration::from_secs(2);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a slot's cursors are, kept beside the slot so a read can choose one without
/// waiting for slots busy polling.
struct SlotIndex {
    cursors: Vec<Option<u64>>,
    last_used: Instant,
    slot: Arc<Mutex<Slot>>,
}

/// The slots of every topic.
#[allow(missing_debug_implementations)]
pub(crate) struct Readers {
    config: KafkaConfig,
    partitions: PartitionCounts,
    known_ends: Arc<KnownEnds>,
    slots: Vec<Mutex<Vec<SlotIndex>>>,
}

impl Readers {
    pub(crate) fn new(
        config: KafkaConfig,
        partitions: PartitionCounts,
        known_ends: Arc<KnownEnds>,
    ) -> Self {
        Readers {
            config,
            partitions,
            known_ends,
            slots: Topic::ALL.iter().map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    fn topic_slots(&self, topic: Topic) -> &Mutex<Vec<SlotIndex>> {
        let index = Topic::ALL.iter().position(|&t| t == topic).unwrap_or(0);
        &self.slots[index]
    }

    /// The slot that should serve a read of `partition` at `from`, and its index.
    fn choose(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
    ) -> Result<(usize, Arc<Mutex<Slot>>), LogError> {
        let mut slots = lock(self.topic_slots(topic));
        let p = partition as usize;
        let chosen = slots
            .iter()
            .position(|s| s.cursors[p] == Some(from))
            .or_else(|| slots.iter().position(|s| s.cursors[p].is_none()));
        let index = match chosen {
            Some(index) => index,
            None if slots.len() < SLOTS_PER_TOPIC => {
                let slot = Slot::new(&self.config, topic, self.partitions.get(topic), slots.len())?;
                slots.push(SlotIndex {
                    cursors: vec![None; self.partitions.get(topic) as usize],
                    last_used: Instant::now(),
                    slot: Arc::new(Mutex::new(slot)),
                });
                slots.len() - 1
            }
            None => slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(index, _)| index)
                .unwrap_or(0),
        };
        let entry = &mut slots[index];
        entry.last_used = Instant::now();
        // Claimed for this read: another reader at the same position will not pick it.
        entry.cursors[p] = Some(u64::MAX);
        Ok((index, entry.slot.clone()))
    }

    pub(crate) async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let (index, slot) = self.choose(topic, partition, from)?;
        let known_end = self.known_ends.get(topic, partition);
        let (records, cursors) = tokio::task::spawn_blocking(move || {
            let mut slot = lock(&slot);
            let records = slot.read(partition, from, max.max(1), known_end);
            (records, slot.cursors.clone())
        })
        .await
        .map_err(|error| LogError::Unavailable(error.to_string()))?;
        let mut slots = lock(self.topic_slots(topic));
        if let Some(entry) = slots.get_mut(index) {
            // All of them: a read from 0 may have started the other partitions too.
            entry.cursors = cursors;
        }
        drop(slots);
        let records = records?;
        if let Some(last) = records.last() {
            self.known_ends.raise(topic, partition, last.offset + 1);
        }
        Ok(records)
    }
}

/// One consumer with a manual assignment and a buffer per partition.
#[allow(missing_debug_implementations)]
struct Slot {
    topic: Topic,
    consumer: BaseConsumer,
    /// The next offset this slot hands out, per assigned partition.
    cursors: Vec<Option<u64>>,
    /// The next offset expected from the consumer, per partition: anything below it is a
    /// leftover of an earlier assignment.
    expected: Vec<u64>,
    /// A record past `expected` came for the partition: the broker skipped records.
    gapped: Vec<bool>,
    /// How far before a position the partition is fetched from. Some brokers (tansu 0.6)
    /// answer a fetch at an offset inside a record batch with the batches after it, so the
    /// rest of that batch never comes; fetching from an earlier offset and dropping what
    /// precedes the position gets it. Zero until a gap shows the broker needs it, then
    /// doubled at each gap, up to [`MAX_MARGIN`].
    margin: Vec<u64>,
    buffers: Vec<VecDeque<LogRecord>>,
    paused: Vec<bool>,
    /// When each partition was last assigned (its fetch started).
    assigned_at: Vec<Instant>,
}

impl Slot {
    fn new(
        config: &KafkaConfig,
        topic: Topic,
        partitions: u32,
        number: usize,
    ) -> Result<Self, LogError> {
        let consumer: BaseConsumer = config
            .client()
            // A group id is required by the consumer API; it is never joined (no
            // subscribe) and nothing is committed under it.
            .set("group.id", format!("{}-reader", config.client_id))
            .set(
                "client.id",
                format!("{}-reader-{}-{number}", config.client_id, topic.name()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // The broker answers a fetch as soon as one byte is there; bound the wait
            // for brokers that hold it to the maximum instead.
            .set("fetch.wait.max.ms", "50")
            .set("queued.max.messages.kbytes", "16384")
            .create()
            .map_err(|error| LogError::Unavailable(error.to_string()))?;
        let partitions = partitions as usize;
        Ok(Slot {
            topic,
            consumer,
            cursors: vec![None; partitions],
            expected: vec![0; partitions],
            gapped: vec![false; partitions],
            margin: vec![0; partitions],
            buffers: (0..partitions).map(|_| VecDeque::new()).collect(),
            paused: vec![false; partitions],
            assigned_at: vec![Instant::now(); partitions],
        })
    }

    fn one(&self, partition: u32, offset: Option<u64>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        let offset = offset.map_or(Offset::Invalid, |o| Offset::Offset(o as i64));
        // Adding a partition with an offset cannot fail for a valid partition number.
        let _ = list.add_partition_offset(self.topic.name(), partition as i32, offset);
        list
    }

    /// Moves the partition's cursor to `from`; true when it had to (re)assign.
    fn position(&mut self, partition: u32, from: u64) -> Result<bool, LogError> {
        let p = partition as usize;
        let unavailable =
            |error: rdkafka::error::KafkaError| LogError::Unavailable(error.to_string());
        match self.cursors[p] {
            Some(cursor) if cursor == from && !self.gapped[p] => return Ok(false),
            Some(_) => {
                self.consumer
                    .incremental_unassign(&self.one(partition, None))
                    .map_err(unavailable)?;
            }
            None => {}
        }
        self.buffers[p].clear();
        self.paused[p] = false;
        if self.gapped[p] {
            self.margin[p] = (self.margin[p] * 2).clamp(256, MAX_MARGIN);
            tracing::debug!(
                topic = self.topic.name(),
                partition,
                from,
                margin = self.margin[p],
                "the broker skipped records; fetching from further back"
            );
            self.gapped[p] = false;
        }
        let mut assign = self.one(partition, Some(from.saturating_sub(self.margin[p])));
        // A read from offset 0 on a new cursor is a fold from the start (a replay, a new
        // projection, the identity rebuild), which goes on to every other partition from 0
        // too: fetch those at once, so their first records are here when asked for. A
        // reader that wants another offset moves the cursor, dropping what was fetched.
        if from == 0 {
            for (other, cursor) in self.cursors.iter_mut().enumerate() {
                if cursor.is_none() && other != p {
                    let _ = assign.add_partition_offset(
                        self.topic.name(),
                        other as i32,
                        Offset::Offset(0),
                    );
                    *cursor = Some(0);
                    self.expected[other] = 0;
                    self.assigned_at[other] = Instant::now();
                }
            }
        }
        self.consumer
            .incremental_assign(&assign)
            .map_err(unavailable)?;
        self.cursors[p] = Some(from);
        self.expected[p] = from;
        self.assigned_at[p] = Instant::now();
        Ok(true)
    }

    fn read(
        &mut self,
        partition: u32,
        from: u64,
        max: usize,
        known_end: u64,
    ) -> Result<Vec<LogRecord>, LogError> {
        let p = partition as usize;
        // A gapped partition is fetched again here: `position` never keeps a gapped cursor.
        let fresh = self.position(partition, from)?;
        if self.buffers[p].is_empty() {
            let wait = if fresh || known_end > from {
                FIRST_RECORD_WAIT
            } else {
                Duration::ZERO
            };
            self.fill(p, max, wait);
            // Offset 0 starts the partition's first batch (nothing to fetch before it),
            // and a fetch gets its time to come back before it is started again.
            if self.buffers[p].is_empty()
                && known_end > from
                && from > 0
                && self.assigned_at[p].elapsed() >= EMPTY_FETCH_PATIENCE
            {
                // Records are there, yet none came. A broker that answers a fetch inside a
                // record batch with the batches after it (see `margin`) answers one inside
                // the partition's last batch with nothing, so no later record shows the
                // gap: fetch from further back at the next read. (Stage (g) of `omnilog
                // bench` against tansu 0.6 stopped in three of ten runs with "reported
                // records from offset 16384 but delivered none within 30s".)
                self.gapped[p] = true;
            }
        }
        let take = self.buffers[p].len().min(max);
        let records: Vec<LogRecord> = self.buffers[p].drain(..take).collect();
        let contiguous = records
            .iter()
            .enumerate()
            .all(|(index, record)| record.offset == from + index as u64);
        if !contiguous {
            // Never hand out a gap or an overlap: our topics have neither, so this is a
            // leftover of an earlier assignment. Start the partition again from `from`.
            tracing::warn!(
                topic = self.topic.name(),
                partition,
                from,
                first = records.first().map(|r| r.offset),
                "a read was not contiguous from its position; fetching the partition again"
            );
            self.buffers[p].clear();
            self.cursors[p] = Some(u64::MAX);
            return Ok(Vec::new());
        }
        if let Some(last) = records.last() {
            self.cursors[p] = Some(last.offset + 1);
        }
        if self.paused[p] && self.buffers[p].len() < BUFFER_CAP / 2 {
            if let Err(error) = self.consumer.resume(&self.one(partition, None)) {
                tracing::warn!(%error, partition, "could not resume a partition");
            } else {
                self.paused[p] = false;
            }
        }
        Ok(records)
    }

    /// Polls until the partition's buffer holds `max` records, nothing more is fetched,
    /// or (while it is still empty) `wait` has passed.
    fn fill(&mut self, p: usize, max: usize, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let timeout = if self.buffers[p].is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let message = match self.consumer.poll(timeout) {
                None => {
                    if self.buffers[p].is_empty() && Instant::now() < deadline {
                        continue;
                    }
                    return;
                }
                Some(Err(error)) => {
                    // Broker trouble surfaces here; librdkafka reconnects by itself, so
                    // the reader answers with what it has and is asked again.
                    tracing::warn!(%error, topic = self.topic.name(), "kafka fetch error");
                    return;
                }
                Some(Ok(message)) => message,
            };
            let q = message.partition() as usize;
            let offset = message.offset() as u64;
            if q >= self.buffers.len() || self.cursors[q].is_none() || offset < self.expected[q] {
                continue;
            }
            if offset > self.expected[q] {
                // Records were skipped (see `margin`): drop what comes until the partition
                // is fetched again from further back, at its next read.
                self.gapped[q] = true;
                continue;
            }
            self.expected[q] = offset + 1;
            let record = to_record(self.topic, &message);
            self.buffers[q].push_back(record);
            if q != p && !self.paused[q] && self.buffers[q].len() >= BUFFER_CAP {
                match self.consumer.pause(&self.one(q as u32, None)) {
                    Ok(()) => self.paused[q] = true,
                    Err(error) => {
                        tracing::warn!(%error, partition = q, "could not pause a partition")
                    }
                }
            }
            if self.buffers[p].len() >= max {
                return;
            }
        }
    }
}

/// A consumed message as a log record: the event id from its header, the other headers
/// as they were appended.
fn to_record(topic: Topic, message: &BorrowedMessage<'_>) -> LogRecord {
    let mut event_id = Uuid::nil();
    let mut headers = Vec::new();
    if let Some(all) = message.headers() {
        for header in all.iter() {
            let value = header.value.unwrap_or_default();
            if header.key == EVENT_ID_HEADER {
                event_id = Uuid::from_slice(value).unwrap_or_default();
            } else {
                headers.push((header.key.to_owned(), value.to_vec()));
            }
        }
    }
    LogRecord {
        topic,
        partition: message.partition() as u32,
        offset: message.offset() as u64,
        key: bytes::Bytes::copy_from_slice(message.key().unwrap_or_default()),
        event_id,
        payload: bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        headers,
    }
}
