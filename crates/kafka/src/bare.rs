//! A bare librdkafka consumer draining topics, doing nothing with the records: the limit
//! the benchmark compares omnilog's Kafka projection with (issue: consume-and-fold rate as
//! a share of a bare consumer reading the same topics).

use std::time::{Duration, Instant};

use omnilog_log::Topic;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::{KafkaConfig, KafkaError};

/// Reads every record of `topics` from the beginning with one consumer, touching only
/// payload lengths; stops once `idle` passes without a record after at least `at_least`
/// records. Returns the records and the time from the first poll to the last record.
/// Blocking: run it on a blocking thread.
pub fn drain_with_bare_consumer(
    config: &KafkaConfig,
    topics: &[Topic],
    at_least: u64,
    idle: Duration,
) -> Result<(u64, Duration), KafkaError> {
    let consumer: BaseConsumer = config
        .client()
        .set("group.id", format!("{}-bare", config.client_id))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    let mut list = TopicPartitionList::new();
    for &topic in topics {
        for partition in 0..config.partitions.get(topic) {
            list.add_partition_offset(topic.name(), partition as i32, Offset::Beginning)?;
        }
    }
    consumer.assign(&list)?;
    let started = Instant::now();
    let mut last_record = started;
    let mut count = 0u64;
    let mut bytes = 0usize;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                bytes += message.payload().map_or(0, <[u8]>::len);
                count += 1;
                last_record = Instant::now();
            }
            Some(Err(error)) => tracing::debug!(%error, "bare consumer"),
            None if count >= at_least && last_record.elapsed() >= idle => break,
            None if started.elapsed() > Duration::from_secs(600) => break,
            None => {}
        }
    }
    std::hint::black_box(bytes);
    Ok((count, last_record - started))
}
