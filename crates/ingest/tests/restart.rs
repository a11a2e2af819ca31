//! After a restart, ingest remembers the newest event ids of every partition of both
//! topics, oldest first, so that a redelivery of a recent event is answered as a duplicate
//! on a log that keeps no index of event ids (Kafka), and new ids push out the oldest
//! remembered, whatever their partition. Folding the log partition after partition and
//! remembering every id in that order, it kept the last partitions' ids, new ids pushed out
//! the first partitions', and no agent event's id was remembered.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{
    LIKE_KAFKA_PARTITIONS, LikeKafka, agent_event, numbered_event, sent_again_is_a_duplicate,
};
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::EventLog;

#[tokio::test]
async fn after_a_restart_the_newest_events_of_every_partition_are_known_oldest_first() {
    let log = Arc::new(LikeKafka::default());
    // Room for two ids of each partition.
    let share = 2;
    let config = IngestConfig {
        remembered_event_ids: share * LIKE_KAFKA_PARTITIONS as usize,
        ..IngestConfig::default()
    };
    let ingest = Ingest::start(log.clone() as Arc<dyn EventLog>, config.clone())
        .await
        .unwrap();
    // One after the other: each event is recorded after the one before.
    let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for n in 0..40 {
        let receipt = ingest.submit(vec![numbered_event(n)]).await.unwrap();
        by_partition
            .entry(receipt.positions[0].partition)
            .or_default()
            .push(n);
    }
    assert_eq!(by_partition.len(), LIKE_KAFKA_PARTITIONS as usize);
    drop(ingest);
    let restarted = Ingest::start(log.clone() as Arc<dyn EventLog>, config)
        .await
        .unwrap();
    // The identity view is folded from the whole log, not only from what is remembered.
    assert!(restarted.resolve_handle("phone", "+15550000000").is_some());
    // Remembered: each partition's two newest, oldest first. Two new events push out the
    // two oldest of them.
    let mut kept: Vec<(usize, u32)> = by_partition
        .iter()
        .flat_map(|(&partition, events)| {
            events[events.len() - share..]
                .iter()
                .map(move |&n| (n, partition))
        })
        .collect();
    kept.sort_unstable();
    for n in 100..102 {
        let receipt = restarted.submit(vec![numbered_event(n)]).await.unwrap();
        assert_eq!(receipt.accepted, 1);
    }
    let still = &kept[2..];
    // Remembered in partition order, the first partition's would have gone first.
    let first = *by_partition.keys().next().unwrap();
    assert!(
        still.iter().any(|&(_, partition)| partition == first),
        "the history has none of the first partition's newest among the newest remembered: {kept:?}"
    );
    for &(n, partition) in still {
        sent_again_is_a_duplicate(
            &restarted,
            numbered_event(n),
            &format!(
                "event {n} of partition {partition}, sent again after a restart and two new events"
            ),
        )
        .await;
    }
    assert!(log.copies().values().all(|&copies| copies == 1));
}

#[tokio::test]
async fn after_a_restart_an_agent_event_sent_again_is_a_duplicate() {
    let log = Arc::new(LikeKafka::default());
    let config = IngestConfig::default();
    let ingest = Ingest::start(log.clone() as Arc<dyn EventLog>, config.clone())
        .await
        .unwrap();
    for n in 0..6 {
        ingest.submit(vec![agent_event(n)]).await.unwrap();
        ingest.submit(vec![numbered_event(n)]).await.unwrap();
    }
    drop(ingest);
    let restarted = Ingest::start(log.clone() as Arc<dyn EventLog>, config)
        .await
        .unwrap();
    sent_again_is_a_duplicate(&restarted, agent_event(5), "an agent event after a restart").await;
    assert!(log.copies().values().all(|&copies| copies == 1));
}

#[tokio::test]
async fn an_agents_topic_that_cannot_be_read_does_not_stop_a_restart() {
    let log = Arc::new(LikeKafka::default());
    let ingest = Ingest::start(log.clone() as Arc<dyn EventLog>, IngestConfig::default())
        .await
        .unwrap();
    ingest.submit(vec![agent_event(0)]).await.unwrap();
    drop(ingest);
    log.agent_reads_fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let restarted = Ingest::start(log.clone() as Arc<dyn EventLog>, IngestConfig::default())
        .await
        .unwrap();
    let receipt = restarted.submit(vec![numbered_event(1)]).await.unwrap();
    assert_eq!(receipt.accepted, 1);
}

/// A merge of `from` into `into` (no interaction: it names no customer of its own).
fn merge(source_event_id: &str, from: &str, into: &str) -> omnilog_events::Event {
    omnilog_events::parse_event(
        serde_json::json!({
            "source": "crm", "source_event_id": source_event_id,
            "occurred_at": "2026-03-02T09:00:00Z",
            "type": "customers_merged", "from_customer": from, "into_customer": into,
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// A merge is keyed by what the customer it merges into stands for now, which a later
/// merge changes: sent again after a restart, it would go to another partition, where a
/// log deduplicating within a partition (or none, as Kafka) stores it again. A start
/// remembered the newest ids of the records that name a customer only, which a merge made
/// outside an interaction does not (found by review).
#[tokio::test]
async fn after_a_restart_a_merge_sent_again_is_a_duplicate_though_its_key_moved() {
    let log = Arc::new(LikeKafka::default());
    let config = IngestConfig::default();
    let ingest = Ingest::start(log.clone() as Arc<dyn EventLog>, config.clone())
        .await
        .unwrap();
    // Customers whose ids put "b" and "c" in different partitions of the four.
    assert_ne!(
        omnilog_log::partition_for(b"b", LIKE_KAFKA_PARTITIONS),
        omnilog_log::partition_for(b"c", LIKE_KAFKA_PARTITIONS)
    );
    let first = merge("m1", "a", "b");
    ingest.submit(vec![first.clone()]).await.unwrap();
    ingest.submit(vec![merge("m2", "b", "c")]).await.unwrap();
    sent_again_is_a_duplicate(&ingest, first.clone(), "a merge before a restart").await;
    drop(ingest);
    let restarted = Ingest::start(log.clone() as Arc<dyn EventLog>, config)
        .await
        .unwrap();
    sent_again_is_a_duplicate(&restarted, first, "a merge after a restart").await;
    assert!(log.copies().values().all(|&copies| copies == 1));
}
