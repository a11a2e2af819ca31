//! The embedded log: one sled database, partitioned like Kafka, durable on return.
//!
//! Layout (one tree, prefixed keys, big-endian numbers so keys sort as numbers):
//! - `r` topic:u8 partition:u32 offset:u64 → the record (below);
//! - `d` topic:u8 partition:u32 event_id:16 → offset:u64, the deduplication index;
//! - `m` name → metadata: the format version and each topic's partition count.
//!
//! A record value is `key_len:u16 key event_id:16 header_count:u16
//! (name_len:u16 name value_len:u32 value)* payload`.
//!
//! Writes: every append goes to one writer thread (sled blocks; the async runtime must
//! not). The writer takes the first request waiting and every other one already queued,
//! assigns offsets, applies them all as one sled batch (atomic) and flushes once, so
//! concurrent appenders share one fsync (group commit). Only then are the new end offsets
//! published, which is what makes the records readable, and the appenders answered.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::{
    AppendOutcome, AppendRecord, EventLog, LogError, LogRecord, PartitionCounts, Position, Topic,
};

/// sled's page cache for a log that serves appends and projector reads.
const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;
const FORMAT_VERSION: &[u8] = b"1";
/// A group commit carries at most this many requests or bytes, so one huge burst cannot
/// delay the first appender's answer without bound.
const MAX_GROUP_REQUESTS: usize = 256;
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;
const MAX_KEY_BYTES: usize = u16::MAX as usize;

fn record_key(topic: Topic, partition: u32, offset: u64) -> [u8; 14] {
    let mut key = [0u8; 14];
    key[0] = b'r';
    key[1] = topic.index() as u8;
    key[2..6].copy_from_slice(&partition.to_be_bytes());
    key[6..14].copy_from_slice(&offset.to_be_bytes());
    key
}

fn partition_prefix(topic: Topic, partition: u32) -> [u8; 6] {
    let mut prefix = [0u8; 6];
    prefix[0] = b'r';
    prefix[1] = topic.index() as u8;
    prefix[2..6].copy_from_slice(&partition.to_be_bytes());
    prefix
}

fn dedup_key(topic: Topic, partition: u32, event_id: &Uuid) -> [u8; 22] {
    let mut key = [0u8; 22];
    key[0] = b'd';
    key[1] = topic.index() as u8;
    key[2..6].copy_from_slice(&partition.to_be_bytes());
    key[6..22].copy_from_slice(event_id.as_bytes());
    key
}

fn storage(error: sled::Error) -> LogError {
    LogError::Storage(error.to_string())
}

fn encode_record(record: &AppendRecord) -> Vec<u8> {
    let headers_len: usize = record
        .headers
        .iter()
        .map(|(n, v)| 6 + n.len() + v.len())
        .sum();
    let mut value =
        Vec::with_capacity(2 + record.key.len() + 16 + 2 + headers_len + record.payload.len());
    value.extend_from_slice(&(record.key.len() as u16).to_be_bytes());
    value.extend_from_slice(record.key.as_bytes());
    value.extend_from_slice(record.event_id.as_bytes());
    value.extend_from_slice(&(record.headers.len() as u16).to_be_bytes());
    for (name, header) in &record.headers {
        value.extend_from_slice(&(name.len() as u16).to_be_bytes());
        value.extend_from_slice(name.as_bytes());
        value.extend_from_slice(&(header.len() as u32).to_be_bytes());
        value.extend_from_slice(header);
    }
    value.extend_from_slice(&record.payload);
    value
}

/// Reads a record value back; `None` if it is not in the format above.
fn decode_record(topic: Topic, partition: u32, offset: u64, value: &[u8]) -> Option<LogRecord> {
    fn take<'a>(value: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if value.len() < n {
            return None;
        }
        let (head, rest) = value.split_at(n);
        *value = rest;
        Some(head)
    }
    let mut rest = value;
    let key_len = u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?) as usize;
    let key = String::from_utf8(take(&mut rest, key_len)?.to_vec()).ok()?;
    let event_id = Uuid::from_slice(take(&mut rest, 16)?).ok()?;
    let header_count = u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?);
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let name_len = u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?) as usize;
        let name = String::from_utf8(take(&mut rest, name_len)?.to_vec()).ok()?;
        let value_len = u32::from_be_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
        headers.push((name, take(&mut rest, value_len)?.to_vec()));
    }
    Some(LogRecord {
        topic,
        partition,
        offset,
        key,
        event_id,
        payload: Bytes::copy_from_slice(rest),
        headers,
    })
}

struct WriteRequest {
    batch: Vec<AppendRecord>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, LogError>>,
}

/// What readers and the writer share.
struct Shared {
    db: sled::Db,
    counts: PartitionCounts,
    /// Durable end offset of every partition, per topic (index = `Topic::index`).
    ends: [Vec<watch::Sender<u64>>; 3],
    /// Moves once per durable group: what tailers of many partitions wait on.
    appended: watch::Sender<u64>,
    flushes: AtomicU64,
}

impl Shared {
    fn end_sender(&self, topic: Topic, partition: u32) -> Result<&watch::Sender<u64>, LogError> {
        self.ends[topic.index()]
            .get(partition as usize)
            .ok_or(LogError::UnknownPartition {
                topic: topic.name(),
                partition,
                partitions: self.counts.get(topic),
            })
    }

    /// The next offset of each partition, as stored.
    fn stored_ends(&self) -> Result<[Vec<u64>; 3], LogError> {
        let mut ends: [Vec<u64>; 3] = Default::default();
        for topic in Topic::ALL {
            for partition in 0..self.counts.get(topic) {
                let last = self
                    .db
                    .scan_prefix(partition_prefix(topic, partition))
                    .keys()
                    .next_back()
                    .transpose()
                    .map_err(storage)?;
                let next = match last {
                    Some(key) => {
                        u64::from_be_bytes(key[6..14].try_into().map_err(|_| {
                            LogError::Storage("a record key is not 14 bytes".to_owned())
                        })?) + 1
                    }
                    None => 0,
                };
                ends[topic.index()].push(next);
            }
        }
        Ok(ends)
    }
}

/// The embedded backend of [`EventLog`] on sled. See the module documentation.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("partitions", &self.shared.counts)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens the log in `dir`, creating it with `partitions` if it does not exist. A log
    /// keeps the partition counts it was created with; asking for others is an error.
    pub fn open(dir: &Path, partitions: PartitionCounts) -> Result<Self, LogError> {
        Self::open_with_cache(dir, partitions, DEFAULT_CACHE_BYTES)
    }

    /// [`EmbeddedLog::open`] with sled's page cache bounded to `cache_bytes`: a reader that
    /// streams the log once (export) gains nothing from a large cache and should not
    /// hold a quarter gigabyte for it.
    pub fn open_with_cache(
        dir: &Path,
        partitions: PartitionCounts,
        cache_bytes: u64,
    ) -> Result<Self, LogError> {
        for topic in Topic::ALL {
            if partitions.get(topic) == 0 {
                return Err(LogError::InvalidRecord(format!(
                    "{} needs at least one partition",
                    topic.name()
                )));
            }
        }
        let db = open_sled(&sled::Config::new().path(dir).cache_capacity(cache_bytes))?;
        match db.get(b"mformat").map_err(storage)? {
            Some(version) if version.as_ref() != FORMAT_VERSION => {
                return Err(LogError::Storage(format!(
                    "the log in {} has format {:?}; this build reads {:?}",
                    dir.display(),
                    String::from_utf8_lossy(&version),
                    String::from_utf8_lossy(FORMAT_VERSION)
                )));
            }
            Some(_) => {
                for topic in Topic::ALL {
                    let key = format!("mpartitions/{}", topic.name());
                    let stored = db
                        .get(key.as_bytes())
                        .map_err(storage)?
                        .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
                        .ok_or_else(|| {
                            LogError::Storage(format!("the log lacks {key}: not an omnilog log"))
                        })?;
                    if stored != partitions.get(topic) {
                        return Err(LogError::PartitionMismatch {
                            topic: topic.name(),
                            stored,
                            requested: partitions.get(topic),
                        });
                    }
                }
            }
            None => {
                let mut meta = sled::Batch::default();
                meta.insert(b"mformat".as_slice(), FORMAT_VERSION);
                for topic in Topic::ALL {
                    let key = format!("mpartitions/{}", topic.name());
                    meta.insert(key.as_bytes(), &partitions.get(topic).to_be_bytes());
                }
                db.apply_batch(meta).map_err(storage)?;
                db.flush().map_err(storage)?;
            }
        }
        let mut shared = Shared {
            db,
            counts: partitions,
            ends: Default::default(),
            appended: watch::channel(0).0,
            flushes: AtomicU64::new(0),
        };
        let stored = shared.stored_ends()?;
        for topic in Topic::ALL {
            shared.ends[topic.index()] = stored[topic.index()]
                .iter()
                .map(|&end| watch::channel(end).0)
                .collect();
        }
        let shared = Arc::new(shared);
        let (requests, receiver) = mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("omnilog-log-writer".to_owned())
            .spawn(move || write_loop(&writer_shared, stored, &receiver))
            .map_err(|e| LogError::Storage(format!("starting the writer thread: {e}")))?;
        tracing::debug!(dir = %dir.display(), "embedded log open");
        Ok(EmbeddedLog {
            shared,
            requests: Some(requests),
            writer: Some(writer),
        })
    }

    /// Opens an existing log with the partition counts it was created with; an error if
    /// `dir` holds no omnilog log (nothing is created).
    pub fn open_existing(dir: &Path) -> Result<Self, LogError> {
        Self::open_existing_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`EmbeddedLog::open_existing`] with a bounded page cache (see
    /// [`EmbeddedLog::open_with_cache`]).
    pub fn open_existing_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, LogError> {
        if !dir.join("conf").exists() {
            return Err(LogError::Storage(format!(
                "{} holds no omnilog log",
                dir.display()
            )));
        }
        let counts = {
            let db = open_sled(&sled::Config::new().path(dir).cache_capacity(cache_bytes))?;
            let mut counts = PartitionCounts::default();
            for topic in Topic::ALL {
                let key = format!("mpartitions/{}", topic.name());
                let stored = db
                    .get(key.as_bytes())
                    .map_err(storage)?
                    .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
                    .ok_or_else(|| {
                        LogError::Storage(format!(
                            "{} lacks {key}: not an omnilog log",
                            dir.display()
                        ))
                    })?;
                match topic {
                    Topic::Interactions => counts.interactions = stored,
                    Topic::Agents => counts.agents = stored,
                    Topic::DeadLetter => counts.dead_letter = stored,
                }
            }
            counts
        };
        Self::open_with_cache(dir, counts, cache_bytes)
    }

    /// Stops the writer after the appends already queued and flushes.
    pub fn close(mut self) -> Result<(), LogError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LogError> {
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            writer
                .join()
                .map_err(|_| LogError::Storage("the writer thread panicked".to_owned()))?;
        }
        self.shared.db.flush().map_err(storage)?;
        Ok(())
    }

    /// How many times the writer flushed (for tests of group commit).
    #[doc(hidden)]
    pub fn flush_count(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "closing the embedded log");
        }
    }
}

/// Opens sled, waiting a little for a lock that a just-closed log of this process still
/// holds: dropping a sled database does not wait for its background flusher, which keeps
/// the directory's lock for a moment after the last handle is gone. Another process's lock
/// is refused after the wait, as before.
fn open_sled(config: &sled::Config) -> Result<sled::Db, LogError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match config.open() {
            // sled reports a held lock as an `Other` I/O error with this text.
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(db) => return Ok(db),
            Err(error) => return Err(storage(error)),
        }
    }
}

/// The writer thread: group commits until every sender is gone.
fn write_loop(
    shared: &Shared,
    mut next_offsets: [Vec<u64>; 3],
    receiver: &mpsc::Receiver<WriteRequest>,
) {
    while let Ok(first) = receiver.recv() {
        let mut group_bytes: usize = first.batch.iter().map(|r| r.payload.len()).sum();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_REQUESTS && group_bytes < MAX_GROUP_BYTES {
            match receiver.try_recv() {
                Ok(request) => {
                    group_bytes += request.batch.iter().map(|r| r.payload.len()).sum::<usize>();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        commit(shared, &mut next_offsets, group);
    }
}

/// Checks a request on its own, so a bad one fails alone.
fn validate(shared: &Shared, batch: &[AppendRecord]) -> Result<(), LogError> {
    for record in batch {
        if record.key.len() > MAX_KEY_BYTES {
            return Err(LogError::InvalidRecord(format!(
                "a key of {} bytes is longer than {MAX_KEY_BYTES}",
                record.key.len()
            )));
        }
        if record.headers.len() > u16::MAX as usize
            || record
                .headers
                .iter()
                .any(|(n, v)| n.len() > u16::MAX as usize || v.len() > u32::MAX as usize)
        {
            return Err(LogError::InvalidRecord("headers too large".to_owned()));
        }
        shared.end_sender(record.topic, 0)?;
    }
    Ok(())
}

fn commit(shared: &Shared, next_offsets: &mut [Vec<u64>; 3], group: Vec<WriteRequest>) {
    let before = next_offsets.clone();
    let mut batch = sled::Batch::default();
    // Event ids stored by this group so far, so a duplicate inside the group is caught.
    let mut pending: HashMap<(Topic, u32, Uuid), u64> = HashMap::new();
    type Reply = oneshot::Sender<Result<Vec<AppendOutcome>, LogError>>;
    let mut answers: Vec<(Reply, Vec<AppendOutcome>)> = Vec::with_capacity(group.len());
    for request in group {
        if let Err(error) = validate(shared, &request.batch) {
            let _ = request.reply.send(Err(error));
            continue;
        }
        let mut outcomes = Vec::with_capacity(request.batch.len());
        let mut failed = None;
        for record in &request.batch {
            let partition =
                crate::partition_for(record.key.as_bytes(), shared.counts.get(record.topic));
            let id = (record.topic, partition, record.event_id);
            let existing = match pending.get(&id) {
                Some(&offset) => Some(offset),
                None => match shared
                    .db
                    .get(dedup_key(record.topic, partition, &record.event_id))
                {
                    Ok(found) => {
                        found.and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
                    }
                    Err(error) => {
                        failed = Some(storage(error));
                        break;
                    }
                },
            };
            match existing {
                Some(offset) => {
                    outcomes.push(AppendOutcome::Duplicate(Position { partition, offset }))
                }
                None => {
                    let next = &mut next_offsets[record.topic.index()][partition as usize];
                    let offset = *next;
                    *next += 1;
                    batch.insert(
                        record_key(record.topic, partition, offset).as_slice(),
                        encode_record(record),
                    );
                    batch.insert(
                        dedup_key(record.topic, partition, &record.event_id).as_slice(),
                        &offset.to_be_bytes(),
                    );
                    pending.insert(id, offset);
                    outcomes.push(AppendOutcome::Appended(Position { partition, offset }));
                }
            }
        }
        match failed {
            // A failed read poisons the whole group: its offsets were already interleaved.
            Some(error) => {
                let message = error.to_string();
                let _ = request.reply.send(Err(error));
                for (reply, _) in answers.drain(..) {
                    let _ = reply.send(Err(LogError::Storage(message.clone())));
                }
                *next_offsets = before;
                return;
            }
            None => answers.push((request.reply, outcomes)),
        }
    }
    let written = shared
        .db
        .apply_batch(batch)
        .and_then(|()| shared.db.flush().map(|_| ()));
    shared.flushes.fetch_add(1, Ordering::Relaxed);
    match written {
        Ok(()) => {
            for topic in Topic::ALL {
                for (partition, &end) in next_offsets[topic.index()].iter().enumerate() {
                    if end != before[topic.index()][partition] {
                        shared.ends[topic.index()][partition].send_replace(end);
                    }
                }
            }
            shared.appended.send_modify(|groups| *groups += 1);
            for (reply, outcomes) in answers {
                let _ = reply.send(Ok(outcomes));
            }
        }
        Err(error) => {
            tracing::error!(%error, "the embedded log could not write a group");
            // What is on disk now is the truth: offsets restart from it.
            match shared.stored_ends() {
                Ok(stored) => *next_offsets = stored,
                Err(_) => *next_offsets = before,
            }
            let message = error.to_string();
            for (reply, _) in answers {
                let _ = reply.send(Err(LogError::Storage(message.clone())));
            }
        }
    }
}

#[async_trait::async_trait]
impl EventLog for EmbeddedLog {
    fn partitions(&self, topic: Topic) -> u32 {
        self.shared.counts.get(topic)
    }

    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let requests = self.requests.as_ref().ok_or(LogError::Closed)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(WriteRequest { batch, reply })
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        // Only what is durable is visible: the published end, not what sled holds.
        let end = *self.shared.end_sender(topic, partition)?.borrow();
        if from >= end || max == 0 {
            return Ok(Vec::new());
        }
        let until = end.min(from.saturating_add(max as u64));
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared
                .db
                .range(record_key(topic, partition, from)..record_key(topic, partition, until))
                .map(|entry| {
                    let (key, value) = entry.map_err(storage)?;
                    let offset = u64::from_be_bytes(key[6..14].try_into().map_err(|_| {
                        LogError::Storage("a record key is not 14 bytes".to_owned())
                    })?);
                    decode_record(topic, partition, offset, &value).ok_or_else(|| {
                        LogError::Storage(format!(
                            "the record at {}/{partition}@{offset} is corrupt",
                            topic.name()
                        ))
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| LogError::Storage(format!("a read task failed: {e}")))?
    }

    fn appended(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.appended.subscribe())
    }

    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError> {
        Ok(self.shared.ends[topic.index()]
            .iter()
            .map(|end| *end.borrow())
            .collect())
    }

    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        let mut end = self.shared.end_sender(topic, partition)?.subscribe();
        let reached = tokio::time::timeout(timeout, end.wait_for(|&e| e > offset))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|value| *value);
        // Timed out, or the log closed: answer with what is there.
        Ok(reached.unwrap_or_else(|| *end.borrow()))
    }
}
