//! Logs for the ingest tests: the embedded log with counters, for the tests that check how
//! often ingest reads or appends; one that holds back its answers; and one like Kafka's,
//! which keeps no index of event ids and can refuse appends as unconfirmed.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omnilog_log::{
    AppendOutcome, AppendRecord, Chain, EmbeddedLog, EventLog, LogError, LogRecord, PendingAppend,
    Position, RecordFate, Topic, partition_for,
};

/// The embedded log, counting its appends (awaited or handed over in a chain) and its reads of the interactions topic (folding
/// the identity view from the log reads every partition of it, so a read count that does not
/// move shows that nothing was folded again).
#[derive(Debug)]
pub struct CountingLog {
    pub inner: Arc<EmbeddedLog>,
    pub interaction_reads: AtomicU64,
    pub appends: AtomicU64,
}

impl CountingLog {
    pub fn over(inner: Arc<EmbeddedLog>) -> Self {
        CountingLog {
            inner,
            interaction_reads: AtomicU64::new(0),
            appends: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl EventLog for CountingLog {
    fn partitions(&self, topic: Topic) -> u32 {
        self.inner.partitions(topic)
    }

    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError> {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.inner.append(batch).await
    }

    fn append_in_chain(
        &self,
        batch: Vec<AppendRecord>,
        chain: Chain,
    ) -> Result<PendingAppend, Vec<AppendRecord>> {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.inner.append_in_chain(batch, chain)
    }

    fn new_chain(&self) -> Chain {
        self.inner.new_chain()
    }

    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        if topic == Topic::Interactions {
            self.interaction_reads.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.read(topic, partition, from, max).await
    }

    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError> {
        self.inner.end_offsets(topic).await
    }

    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        self.inner
            .wait_beyond(topic, partition, offset, timeout)
            .await
    }
}

/// The embedded log, holding back the answers to chained appends until released: the
/// appends themselves reach the log at once, so a test can have two groups in flight.
#[derive(Debug)]
pub struct HeldAnswers {
    pub inner: Arc<EmbeddedLog>,
    pub handed_over: Arc<std::sync::atomic::AtomicUsize>,
    pub gate: Arc<tokio::sync::Semaphore>,
    /// Set: the next appends handed over never reach the log, and are answered (once the
    /// gate lets them through) as refused.
    pub refuse: Arc<AtomicBool>,
    /// The bytes of records (payloads and keys) of the largest append handed over.
    pub largest_append_bytes: Arc<AtomicU64>,
}

impl HeldAnswers {
    /// Over `inner`, every answer held until the gate lets it through.
    pub fn over(inner: Arc<EmbeddedLog>) -> Arc<Self> {
        Arc::new(HeldAnswers {
            inner,
            handed_over: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            refuse: Arc::new(AtomicBool::new(false)),
            largest_append_bytes: Arc::new(AtomicU64::new(0)),
        })
    }
}

#[async_trait::async_trait]
impl EventLog for HeldAnswers {
    fn partitions(&self, topic: Topic) -> u32 {
        self.inner.partitions(topic)
    }

    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError> {
        self.inner.append(batch).await
    }

    fn append_in_chain(
        &self,
        batch: Vec<AppendRecord>,
        chain: Chain,
    ) -> Result<PendingAppend, Vec<AppendRecord>> {
        let bytes: usize = batch.iter().map(|r| r.payload.len() + r.key.len()).sum();
        self.largest_append_bytes
            .fetch_max(bytes as u64, Ordering::SeqCst);
        let answer: PendingAppend = if self.refuse.load(Ordering::SeqCst) {
            Box::pin(async { Err(LogError::Unavailable("refused by the test".to_owned())) })
        } else {
            self.inner.append_in_chain(batch, chain)?
        };
        self.handed_over.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.clone();
        Ok(Box::pin(async move {
            let _pass = gate.acquire().await;
            answer.await
        }))
    }

    fn new_chain(&self) -> Chain {
        self.inner.new_chain()
    }

    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.inner.read(topic, partition, from, max).await
    }

    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError> {
        self.inner.end_offsets(topic).await
    }

    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        self.inner
            .wait_beyond(topic, partition, offset, timeout)
            .await
    }
}

/// Ingest over the embedded log in a directory of its own, the log's answers held back
/// ([`HeldAnswers`]); the directory lives as long as the value.
pub struct Held {
    pub _dir: tempfile::TempDir,
    pub embedded: Arc<EmbeddedLog>,
    pub log: Arc<HeldAnswers>,
    pub ingest: Arc<omnilog_ingest::Ingest>,
}

/// [`Held`], ingest started with `config`.
pub async fn held(config: omnilog_ingest::IngestConfig) -> Held {
    let dir = tempfile::tempdir().unwrap();
    let embedded =
        Arc::new(EmbeddedLog::open(dir.path(), omnilog_log::PartitionCounts::default()).unwrap());
    let log = HeldAnswers::over(embedded.clone());
    let ingest = Arc::new(
        omnilog_ingest::Ingest::start(log.clone() as Arc<dyn EventLog>, config)
            .await
            .unwrap(),
    );
    Held {
        _dir: dir,
        embedded,
        log,
        ingest,
    }
}

/// Waits (up to five seconds) until `count` appends were handed over.
pub async fn handed_over(counter: &std::sync::atomic::AtomicUsize, count: usize) {
    eventually(&format!("ingest handing over append {count}"), || {
        counter.load(Ordering::SeqCst) >= count
    })
    .await;
}

/// Waits (up to five seconds, looking every 2 ms) until `done` says so; fails naming `what`.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 5 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends `event` to `ingest` again and checks that it is answered as a duplicate, not
/// appended (`context` says which, when it is not).
pub async fn sent_again_is_a_duplicate(
    ingest: &omnilog_ingest::Ingest,
    event: omnilog_events::Event,
    context: &str,
) {
    let again = ingest.submit(vec![event]).await.unwrap();
    assert_eq!(
        (again.accepted, again.duplicates),
        (0, 1),
        "{context}: {again:?}"
    );
}

/// The partitions of each topic of [`LikeKafka`].
pub const LIKE_KAFKA_PARTITIONS: u32 = 4;

/// How the next append is refused.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// Every record stored, none confirmed.
    StoredUnconfirmed,
    /// Nothing stored, and nothing confirmed either.
    NothingStored,
    /// Every record stored, the first one confirmed.
    StoredFirstConfirmed,
    /// Every record stored late: after the records of this many appends more.
    StoredAfter(usize),
}

/// A log like Kafka's: an appended record is stored, a second copy too; the next appends
/// can be refused as unconfirmed, each record in doubt from where its partition ended
/// before the append; and reads can be made to fail.
#[derive(Debug, Default)]
pub struct LikeKafka {
    pub partitions: Mutex<HashMap<(Topic, u32), Vec<LogRecord>>>,
    pub refusals: Mutex<VecDeque<Refusal>>,
    /// Records to store after this many appends more.
    pub late: Mutex<Vec<(usize, Vec<LogRecord>)>>,
    pub reads: AtomicU64,
    pub reads_fail: AtomicBool,
    /// Reads of the agents topic fail.
    pub agent_reads_fail: AtomicBool,
}

impl LikeKafka {
    pub fn refuse_next(&self, refusal: Refusal) {
        self.refusals.lock().unwrap().push_back(refusal);
    }

    /// How many copies of each event id the log holds.
    pub fn copies(&self) -> HashMap<uuid::Uuid, usize> {
        let mut copies = HashMap::new();
        for records in self.partitions.lock().unwrap().values() {
            for record in records {
                *copies.entry(record.event_id).or_insert(0) += 1;
            }
        }
        copies
    }
}

#[async_trait::async_trait]
impl EventLog for LikeKafka {
    fn partitions(&self, _topic: Topic) -> u32 {
        LIKE_KAFKA_PARTITIONS
    }

    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError> {
        let refusal = self.refusals.lock().unwrap().pop_front();
        let mut partitions = self.partitions.lock().unwrap();
        let ends_before: HashMap<(Topic, u32), u64> = partitions
            .iter()
            .map(|(at, records)| (*at, records.len() as u64))
            .collect();
        let mut outcomes = Vec::new();
        let mut fates = Vec::new();
        for record in batch {
            let partition = partition_for(record.key.as_bytes(), LIKE_KAFKA_PARTITIONS);
            let stored = partitions.entry((record.topic, partition)).or_default();
            let offset = stored.len() as u64;
            fates.push(match refusal {
                Some(Refusal::StoredFirstConfirmed) if fates.is_empty() => {
                    RecordFate::Stored(Position { partition, offset })
                }
                _ => RecordFate::InDoubt {
                    partition,
                    from: ends_before
                        .get(&(record.topic, partition))
                        .copied()
                        .unwrap_or(0),
                },
            });
            outcomes.push(AppendOutcome::Appended(Position { partition, offset }));
            let stored_record = LogRecord {
                topic: record.topic,
                partition,
                offset,
                key: record.key.into_bytes().into(),
                event_id: record.event_id,
                payload: record.payload,
                headers: record.headers,
            };
            match refusal {
                Some(Refusal::NothingStored) => {}
                Some(Refusal::StoredAfter(appends)) => {
                    let mut late = self.late.lock().unwrap();
                    match late.iter_mut().find(|(after, _)| *after == appends) {
                        Some((_, records)) => records.push(stored_record),
                        None => late.push((appends, vec![stored_record])),
                    }
                }
                _ => stored.push(stored_record),
            }
        }
        // Records delivered late land after this append's.
        if !matches!(refusal, Some(Refusal::StoredAfter(_))) {
            let mut late = self.late.lock().unwrap();
            for (after, records) in late.iter_mut() {
                *after -= 1;
                if *after == 0 {
                    for mut record in records.drain(..) {
                        let stored = partitions
                            .entry((record.topic, record.partition))
                            .or_default();
                        record.offset = stored.len() as u64;
                        stored.push(record);
                    }
                }
            }
            late.retain(|(after, _)| *after > 0);
        }
        match refusal {
            None => Ok(outcomes),
            Some(_) => Err(LogError::Unconfirmed {
                message: "deliveries not confirmed (a test's refusal)".to_owned(),
                fates,
            }),
        }
    }

    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.reads_fail.load(Ordering::SeqCst)
            || (topic == Topic::Agents && self.agent_reads_fail.load(Ordering::SeqCst))
        {
            return Err(LogError::Unavailable("reads fail (a test's)".to_owned()));
        }
        let partitions = self.partitions.lock().unwrap();
        let records = partitions
            .get(&(topic, partition))
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(records
            .iter()
            .skip(from as usize)
            .take(max)
            .cloned()
            .collect())
    }

    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError> {
        let partitions = self.partitions.lock().unwrap();
        Ok((0..LIKE_KAFKA_PARTITIONS)
            .map(|p| partitions.get(&(topic, p)).map_or(0, |r| r.len() as u64))
            .collect())
    }

    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        _offset: u64,
        _timeout: Duration,
    ) -> Result<u64, LogError> {
        self.end_offsets_of(topic, partition).await
    }
}

/// Event `n` of the tests on the Kafka-like log: an inbound chat of its own customer, known
/// by the phone +1555000nnnn.
pub fn numbered_event(n: usize) -> omnilog_events::Event {
    omnilog_events::parse_event(
        serde_json::json!({
            "source": "test", "source_event_id": format!("e{n}"),
            "occurred_at": "2026-03-02T09:00:00Z",
            "customer": {"handles": [{"kind": "phone", "value": format!("+1555000{n:04}")}]},
            "interaction_id": format!("chat-{n}"), "channel": "chat",
            "type": "interaction_started", "direction": "inbound",
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// The `n`th agent event of a test: agent `n % 3` available (its id is derived from its
/// source event id, so the same `n` is the same event).
pub fn agent_event(n: usize) -> omnilog_events::Event {
    omnilog_events::parse_event(
        serde_json::json!({
            "source": "test", "source_event_id": format!("agent-state-{n}"),
            "occurred_at": "2026-03-02T09:00:00Z",
            "type": "agent_state", "agent_id": format!("agent-{}", n % 3),
            "state": "available",
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}
