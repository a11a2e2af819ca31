//! Logs for the ingest tests: the embedded log with counters, for the tests that check how
//! often ingest reads or appends, and one that holds back its answers.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use omnilog_log::{
    AppendOutcome, AppendRecord, Chain, EmbeddedLog, EventLog, LogError, LogRecord, PendingAppend,
    Topic,
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
        let answer = self.inner.append_in_chain(batch, chain)?;
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

/// Waits (up to five seconds) until `count` appends were handed over.
pub async fn handed_over(counter: &std::sync::atomic::AtomicUsize, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counter.load(Ordering::SeqCst) < count {
        assert!(
            std::time::Instant::now() < deadline,
            "ingest did not hand over append {count} within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
