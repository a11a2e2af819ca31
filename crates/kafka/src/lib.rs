//! The Kafka backend of the event log, on librdkafka (rdkafka).
//!
//! Writes go through one idempotent producer (`enable.idempotence=true`, `acks=all`): the
//! broker drops the copies a producer retry would make, and a batch answers only once
//! every record's delivery report came back. The partition is computed by our murmur2
//! partitioner and produced explicitly, because librdkafka's default partitioner
//! (consistent_random) is not Java's: the same key lands in the same partition here, in
//! the embedded log and in any Java client.
//!
//! Reads never use consumer-group offsets: a reader is a consumer with a manual
//! assignment, positioned where the caller asks (a projector's positions live in its own
//! store, atomically with its state). See [`reader`] for how a handful of consumers serve
//! readers at different positions.
//!
//! Unlike the embedded log, Kafka keeps no index of event ids: a record sent again is
//! stored again. Each ingest server keeps the ids it wrote or read (`omnilog-ingest`'s
//! recent ids), and when an append is refused without every delivery confirmed, this log
//! says where each record in doubt would be ([`omnilog_log::RecordFate`]), so that ingest
//! looks for it there before it appends a re-sent copy.

mod bare;
mod group;
mod ownership;
mod reader;

pub use bare::drain_with_bare_consumer;
pub use group::GroupMembership;
pub use ownership::{Claim, OWNERSHIP_TOPIC, OwnershipBoard, now_ms};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use omnilog_log::{
    AppendOutcome, AppendRecord, EventLog, LogError, LogRecord, PartitionCounts, Position,
    RecordFate, Topic, partition_for,
};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use reader::Readers;

/// The header carrying a record's event id (16 bytes, big-endian UUID).
pub const EVENT_ID_HEADER: &str = "omnilog-event-id";

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("topic {0} is still missing from the cluster's metadata after creating it")]
    TopicMissing(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<KafkaError> for LogError {
    fn from(error: KafkaError) -> Self {
        match error {
            KafkaError::Log(error) => error,
            other => LogError::Unavailable(other.to_string()),
        }
    }
}

/// How to reach the cluster and shape the topics.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// Partitions of each topic when this log creates it; an existing topic must match.
    pub partitions: PartitionCounts,
    /// Replication factor of topics this log creates.
    pub replication: i32,
    /// How long a record may wait for its delivery report before its batch is refused
    /// (`message.timeout.ms`): what a client waits before the 503 when brokers are down.
    pub delivery_timeout: Duration,
    /// How long metadata and watermark requests may take.
    pub request_timeout: Duration,
    /// Names this process to the brokers (`client.id`).
    pub client_id: String,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            partitions: PartitionCounts::default(),
            replication: 1,
            delivery_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            client_id: "omnilog".to_owned(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // librdkafka logs through its own channel; errors reach us as results.
            .set("log_level", "3");
        config
    }
}

/// The end offset last seen of every partition, shared by readers and waiters so an
/// empty read answers at once without asking the broker.
#[derive(Debug)]
struct KnownEnds {
    ends: Vec<Vec<AtomicU64>>,
}

impl KnownEnds {
    fn new(counts: &PartitionCounts) -> Self {
        KnownEnds {
            ends: Topic::ALL
                .iter()
                .map(|&topic| (0..counts.get(topic)).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    fn slot(&self, topic: Topic, partition: u32) -> &AtomicU64 {
        let index = Topic::ALL.iter().position(|&t| t == topic).unwrap_or(0);
        &self.ends[index][partition as usize]
    }

    fn get(&self, topic: Topic, partition: u32) -> u64 {
        self.slot(topic, partition).load(Ordering::Acquire)
    }

    fn raise(&self, topic: Topic, partition: u32, end: u64) {
        self.slot(topic, partition).fetch_max(end, Ordering::AcqRel);
    }
}

/// The event log on a Kafka cluster.
pub struct KafkaLog {
    config: KafkaConfig,
    partitions: PartitionCounts,
    producer: FutureProducer,
    /// Asks the brokers for metadata and watermarks; never consumes.
    metadata: Arc<BaseConsumer>,
    readers: Readers,
    known_ends: Arc<KnownEnds>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.config.brokers)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

/// The position a delivery report gives a record, or `None` when it gives none.
///
/// librdkafka's idempotent producer reports a record delivered without an offset (-1001)
/// when it infers rather than hears that the record was stored: a request failed with an
/// uncertain outcome (a timeout, `NOT_ENOUGH_REPLICAS_AFTER_APPEND`) and a later one of the
/// same partition succeeded ("implicit ack", `rd_kafka_dr_implicit_ack`), or the broker
/// answered `DUPLICATE_SEQUENCE_NUMBER`. Such a record is not acknowledged: its offset cast
/// to a position named offset 2^64 - 1001, which a receipt's token then waited for and
/// which raised the partition's known end past every real one; and the inference holds only
/// where the broker checks producer sequences (in a test on librdkafka's mock cluster, such
/// a record was not stored). The record is in doubt instead, and its append refused: the
/// client sends it again, and ingest looks for it in the log first.
fn delivered_position(partition: i32, offset: i64) -> Option<Position> {
    Some(Position {
        partition: u32::try_from(partition).ok()?,
        offset: u64::try_from(offset).ok()?,
    })
}

impl KafkaLog {
    /// Connects, creates the topics that are missing with the configured partition
    /// counts, and refuses topics whose partition count differs (keys would move).
    pub async fn open(config: KafkaConfig) -> Result<Self, KafkaError> {
        let metadata: BaseConsumer = config
            .client()
            .set("group.id", format!("{}-metadata", config.client_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted")
            .create()?;
        let metadata = Arc::new(metadata);
        ensure_topics(&config, &metadata).await?;
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            )
            .create()?;
        let partitions = config.partitions.clone();
        let known_ends = Arc::new(KnownEnds::new(&partitions));
        Ok(KafkaLog {
            readers: Readers::new(config.clone(), partitions.clone(), known_ends.clone()),
            config,
            partitions,
            producer,
            metadata,
            known_ends,
        })
    }

    fn check_partition(&self, topic: Topic, partition: u32) -> Result<(), LogError> {
        let partitions = self.partitions.get(topic);
        if partition < partitions {
            Ok(())
        } else {
            Err(LogError::UnknownPartition {
                topic: topic.name(),
                partition,
                partitions,
            })
        }
    }

    /// The high watermark of a partition, asked of the broker.
    async fn fetch_end(&self, topic: Topic, partition: u32) -> Result<u64, LogError> {
        let metadata = self.metadata.clone();
        let timeout = self.config.request_timeout;
        let (_, high) = tokio::task::spawn_blocking(move || {
            metadata.fetch_watermarks(topic.name(), partition as i32, timeout)
        })
        .await
        .map_err(|error| LogError::Unavailable(error.to_string()))?
        .map_err(|error| LogError::Unavailable(error.to_string()))?;
        // Some Kafka-compatible brokers (tansu 0.6) answer ListOffsets with less than the
        // end while the last batch is readable: what this process has read counts too.
        let end = u64::try_from(high).unwrap_or(0);
        self.known_ends.raise(topic, partition, end);
        Ok(self.known_ends.get(topic, partition))
    }
}

/// Creates the missing topics and checks the partition count of every topic.
async fn ensure_topics(
    config: &KafkaConfig,
    metadata: &Arc<BaseConsumer>,
) -> Result<(), KafkaError> {
    let existing = topic_partitions(metadata.clone(), config.request_timeout).await?;
    let missing: Vec<Topic> = Topic::ALL
        .into_iter()
        .filter(|topic| !existing.iter().any(|(name, _)| name == topic.name()))
        .collect();
    if !missing.is_empty() {
        let admin: AdminClient<DefaultClientContext> = config.client().create()?;
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|&topic| {
                NewTopic::new(
                    topic.name(),
                    config.partitions.get(topic) as i32,
                    TopicReplication::Fixed(config.replication),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(config.request_timeout))
            .request_timeout(Some(config.request_timeout));
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(name) => tracing::info!(topic = %name, "created topic"),
                // Another process created it first: the count check below decides.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaError::CreateTopic {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
    }
    // Metadata may lag the creation by a moment.
    let deadline = Instant::now() + config.request_timeout;
    loop {
        let existing = topic_partitions(metadata.clone(), config.request_timeout).await?;
        let mut absent = None;
        for topic in Topic::ALL {
            match existing.iter().find(|(name, _)| name == topic.name()) {
                Some((_, count)) if *count == config.partitions.get(topic) => {}
                Some((_, count)) if *count != 0 => {
                    return Err(LogError::PartitionMismatch {
                        topic: topic.name(),
                        stored: *count,
                        requested: config.partitions.get(topic),
                    }
                    .into());
                }
                _ => absent = Some(topic),
            }
        }
        match absent {
            None => return Ok(()),
            Some(topic) if Instant::now() >= deadline => {
                return Err(KafkaError::TopicMissing(topic.name().to_owned()));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Every topic of the cluster with its partition count.
async fn topic_partitions(
    metadata: Arc<BaseConsumer>,
    timeout: Duration,
) -> Result<Vec<(String, u32)>, KafkaError> {
    let topics = tokio::task::spawn_blocking(move || -> Result<_, KafkaError> {
        let metadata = metadata.fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| topic.error().is_none())
            .map(|topic| (topic.name().to_owned(), topic.partitions().len() as u32))
            .collect::<Vec<_>>())
    })
    .await
    .map_err(|error| LogError::Unavailable(error.to_string()))??;
    Ok(topics)
}

#[async_trait::async_trait]
impl EventLog for KafkaLog {
    fn partitions(&self, topic: Topic) -> u32 {
        self.partitions.get(topic)
    }

    /// Produces every record to its murmur2 partition and waits for every delivery
    /// report. Kafka cannot make a batch atomic without transactions: if one record
    /// fails, the batch is refused with each record's fate (stored at a position, or in
    /// doubt in a partition from an offset on), which a writer that sends the records
    /// again uses not to store twice those that did land.
    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError> {
        let mut deliveries = Vec::with_capacity(batch.len());
        // Where each record's partition was known to end before it was sent: if its
        // delivery is not confirmed, a stored copy can only be there or after.
        let mut sent_to = Vec::with_capacity(batch.len());
        for record in &batch {
            if record.key.is_empty() {
                return Err(LogError::InvalidRecord("a record needs a key".to_owned()));
            }
            let partition = partition_for(record.key.as_bytes(), self.partitions.get(record.topic));
            sent_to.push((partition, self.known_ends.get(record.topic, partition)));
            let mut headers =
                OwnedHeaders::new_with_capacity(record.headers.len() + 1).insert(Header {
                    key: EVENT_ID_HEADER,
                    value: Some(record.event_id.as_bytes().as_slice()),
                });
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_slice()),
                });
            }
            let produced = FutureRecord::to(record.topic.name())
                .partition(partition as i32)
                .key(record.key.as_bytes())
                .payload(record.payload.as_ref())
                .headers(headers);
            // The queue is bounded by librdkafka; a full queue is back-pressure, so wait
            // for room up to the delivery timeout rather than refusing at once.
            deliveries.push(self.producer.send(produced, self.config.delivery_timeout));
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut fates = Vec::with_capacity(batch.len());
        let mut failure = None;
        for ((record, delivery), (partition, from)) in
            batch.iter().zip(join_all(deliveries).await).zip(sent_to)
        {
            let in_doubt = RecordFate::InDoubt { partition, from };
            match delivery {
                Ok(delivery) => match delivered_position(delivery.partition, delivery.offset) {
                    Some(position) => {
                        self.known_ends.raise(
                            record.topic,
                            position.partition,
                            position.offset + 1,
                        );
                        outcomes.push(AppendOutcome::Appended(position));
                        fates.push(RecordFate::Stored(position));
                    }
                    None => {
                        fates.push(in_doubt);
                        failure.get_or_insert_with(|| {
                            format!(
                                "kafka reported a record of partition {} delivered without its offset (acknowledged by inference, not by the broker)",
                                delivery.partition
                            )
                        });
                    }
                },
                Err((error, _)) => {
                    fates.push(in_doubt);
                    failure.get_or_insert_with(|| {
                        format!("kafka did not confirm the delivery: {error}")
                    });
                }
            }
        }
        match failure {
            None => Ok(outcomes),
            // The records whose deliveries were confirmed are stored, and one reported by
            // inference (or not at all) may be: the outcome of the group is unknown, not
            // "nothing written". Each record's fate goes with the refusal, so that a writer
            // sending them again can look for those in doubt where they would be.
            Some(message) => Err(LogError::Unconfirmed { message, fates }),
        }
    }

    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.check_partition(topic, partition)?;
        self.readers.read(topic, partition, from, max).await
    }

    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError> {
        let mut ends = Vec::with_capacity(self.partitions.get(topic) as usize);
        for partition in 0..self.partitions.get(topic) {
            ends.push(self.fetch_end(topic, partition).await?);
        }
        Ok(ends)
    }

    async fn end_offsets_of(&self, topic: Topic, partition: u32) -> Result<u64, LogError> {
        self.check_partition(topic, partition)?;
        self.fetch_end(topic, partition).await
    }

    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        const LOOK_EVERY: Duration = Duration::from_millis(25);
        self.check_partition(topic, partition)?;
        let deadline = Instant::now() + timeout;
        loop {
            let known = self.known_ends.get(topic, partition);
            if known > offset {
                return Ok(known);
            }
            let end = self.fetch_end(topic, partition).await?;
            if end > offset || Instant::now() >= deadline {
                return Ok(end);
            }
            tokio::time::sleep(LOOK_EVERY.min(deadline - Instant::now())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_without_an_offset_names_no_position() {
        // RD_KAFKA_OFFSET_INVALID: what librdkafka reports for an implicitly acked record.
        assert_eq!(delivered_position(4, -1001), None);
        assert_eq!(delivered_position(-1, 7), None);
        assert_eq!(
            delivered_position(4, 7),
            Some(Position {
                partition: 4,
                offset: 7
            })
        );
        assert_eq!(
            delivered_position(0, 0),
            Some(Position {
                partition: 0,
                offset: 0
            })
        );
    }
}
