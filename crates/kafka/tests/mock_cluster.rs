//! The Kafka log against librdkafka's in-process mock cluster: placement, positioned
//! reads, watermarks, and the partition parity with the embedded log.

use std::time::Duration;

use omnilog_kafka::{KafkaConfig, KafkaLog};
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts, Topic, partition_for};
use rdkafka::mocking::MockCluster;

/// A mock cluster with the topics made (its brokers do not implement CreateTopics).
fn cluster(
    interactions_partitions: i32,
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(Topic::Interactions.name(), interactions_partitions, 1)
        .expect("create topic");
    for topic in [Topic::Agents, Topic::DeadLetter] {
        cluster
            .create_topic(topic.name(), 6, 1)
            .expect("create topic");
    }
    cluster
}

fn config(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> KafkaConfig {
    let mut config = KafkaConfig::new(cluster.bootstrap_servers());
    config.partitions = PartitionCounts::uniform(6);
    config.delivery_timeout = Duration::from_secs(5);
    config
}

fn history(events: u64) -> Vec<omnilog_log::AppendRecord> {
    omnilog_testkit::history(
        omnilog_testkit::HistoryConfig::with_events(7, events).with_customer_ids(),
    )
    .filter_map(|event| omnilog_ingest::log_record(&event))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_lands_in_the_same_partitions_as_in_the_embedded_log_and_reads_back() {
    let cluster = cluster(6);
    let kafka = KafkaLog::open(config(&cluster))
        .await
        .expect("open kafka log");
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded =
        EmbeddedLog::open(dir.path(), PartitionCounts::uniform(6)).expect("open embedded");

    let records = history(2_000);
    let mut on_kafka = Vec::new();
    for chunk in records.chunks(250) {
        on_kafka.extend(kafka.append(chunk.to_vec()).await.expect("append to kafka"));
    }
    let on_embedded = embedded
        .append(records.clone())
        .await
        .expect("append embedded");
    assert_eq!(on_kafka.len(), records.len());
    for ((record, kafka), embedded) in records.iter().zip(&on_kafka).zip(&on_embedded) {
        assert!(!kafka.is_duplicate());
        assert_eq!(kafka.position(), embedded.position(), "{}", record.key);
        assert_eq!(
            kafka.position().partition,
            partition_for(record.key.as_bytes(), 6)
        );
    }

    for topic in [Topic::Interactions, Topic::Agents] {
        let kafka_ends = kafka.end_offsets(topic).await.expect("kafka ends");
        let embedded_ends = embedded.end_offsets(topic).await.expect("embedded ends");
        assert_eq!(kafka_ends, embedded_ends, "{topic:?}");
        for (partition, &end) in kafka_ends.iter().enumerate() {
            let partition = partition as u32;
            // Two readers at different positions of the same partition, interleaved.
            let mut whole = Vec::new();
            let mut from = 0;
            let mut middle = end / 2;
            let mut second_half = Vec::new();
            while from < end || middle < end {
                if from < end {
                    let batch = kafka.read(topic, partition, from, 97).await.expect("read");
                    if let Some(last) = batch.last() {
                        from = last.offset + 1;
                    }
                    whole.extend(batch);
                }
                if middle < end {
                    let batch = kafka
                        .read(topic, partition, middle, 61)
                        .await
                        .expect("read");
                    if let Some(last) = batch.last() {
                        middle = last.offset + 1;
                    }
                    second_half.extend(batch);
                }
            }
            let expected = embedded
                .read(topic, partition, 0, usize::MAX)
                .await
                .expect("embedded read");
            assert_eq!(whole, expected, "{topic:?} partition {partition}");
            assert_eq!(second_half, expected[(end / 2) as usize..].to_vec());
        }
    }
    // Moving a reader back re-reads the same records. A read answers with what has been
    // fetched (up to `max`), so the five may come in more than one read: each brings one
    // at least (`read_before_end` asks again while a fetch is on its way).
    let mut again = Vec::new();
    while again.len() < 5 {
        let from = 3 + again.len() as u64;
        let batch =
            omnilog_log::read_before_end(&kafka, Topic::Interactions, 0, from, 5 - again.len())
                .await
                .expect("re-read");
        again.extend(batch);
    }
    let expected = embedded
        .read(Topic::Interactions, 0, 3, 5)
        .await
        .expect("embedded");
    assert_eq!(again, expected);
    // Waiting beyond the end times out with the end; beyond an earlier offset it answers.
    let end = kafka.end_offsets(Topic::Interactions).await.expect("ends")[0];
    let waited = kafka
        .wait_beyond(Topic::Interactions, 0, end, Duration::from_millis(200))
        .await
        .expect("wait");
    assert_eq!(waited, end);
    let waited = kafka
        .wait_beyond(Topic::Interactions, 0, end - 1, Duration::from_secs(5))
        .await
        .expect("wait");
    assert_eq!(waited, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_topic_with_another_partition_count_is_refused() {
    let cluster = cluster(3);
    let error = KafkaLog::open(config(&cluster))
        .await
        .expect_err("mismatch must be refused");
    assert!(error.to_string().contains("3 partitions"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_readers_at_random_positions_read_exactly_what_is_there() {
    let cluster = cluster(6);
    let kafka = std::sync::Arc::new(
        KafkaLog::open(config(&cluster))
            .await
            .expect("open kafka log"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = std::sync::Arc::new(
        EmbeddedLog::open(dir.path(), PartitionCounts::uniform(6)).expect("open embedded"),
    );
    let records = history(3_000);
    for chunk in records.chunks(500) {
        kafka.append(chunk.to_vec()).await.expect("append to kafka");
    }
    embedded.append(records).await.expect("append embedded");
    let ends = embedded
        .end_offsets(Topic::Interactions)
        .await
        .expect("ends");
    // Readers that tail from 0, readers that jump about, all at once: more readers than a
    // topic has consumers, so cursors move back and forth.
    let mut tasks = Vec::new();
    for reader in 0..40u64 {
        let (kafka, embedded, ends) = (kafka.clone(), embedded.clone(), ends.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(reader);
            for _ in 0..30 {
                let partition = rng.u32(0..6);
                let end = ends[partition as usize];
                let from = if reader % 3 == 0 {
                    0
                } else {
                    rng.u64(0..end.max(1))
                };
                let max = rng.usize(1..400);
                let expected = embedded
                    .read(Topic::Interactions, partition, from, max)
                    .await
                    .expect("embedded read");
                let mut got = Vec::new();
                let mut next = from;
                while got.len() < expected.len() {
                    let batch = omnilog_log::read_before_end(
                        &*kafka,
                        Topic::Interactions,
                        partition,
                        next,
                        max - got.len(),
                    )
                    .await
                    .expect("kafka read");
                    next = batch.last().map_or(next, |r| r.offset + 1);
                    got.extend(batch);
                }
                assert_eq!(
                    got, expected,
                    "reader {reader}: partition {partition} from {from}"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("reader task");
    }
}
