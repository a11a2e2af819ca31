//! The embedded log's fixed partition counts and its read side: a log keeps the partition
//! counts it was created with (reopening with others is `PartitionMismatch`); `read` at or
//! beyond a partition's end returns nothing and honours `max`; `wait_beyond` wakes when a
//! record arrives and times out otherwise; `tail` streams what is there, then what comes.

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use omnilog_log::{
    EmbeddedLog, EventLog, LogError, PartitionCounts, SharedLog, Topic, partition_for, tail,
};

use common::{PARTITIONS, event_id, read_partition, record};

/// A key of partition `partition` (of 12).
fn key_in(partition: u32) -> String {
    (0..)
        .map(|n| format!("customer-{n}"))
        .find(|k| partition_for(k.as_bytes(), PARTITIONS) == partition)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reopening_with_another_partition_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
        log.append(vec![record("customer-1", event_id("fixed/1"), "x")])
            .await
            .unwrap();
    }
    let other = EmbeddedLog::open(dir.path(), PartitionCounts::uniform(8)).unwrap_err();
    assert!(
        matches!(
            other,
            LogError::PartitionMismatch {
                topic: "omnilog.interactions",
                stored: 12,
                requested: 8
            }
        ),
        "{other:?}"
    );
    // One topic differing is enough.
    let agents = PartitionCounts {
        agents: 24,
        ..PartitionCounts::default()
    };
    let other = EmbeddedLog::open(dir.path(), agents).unwrap_err();
    assert!(
        matches!(
            other,
            LogError::PartitionMismatch {
                topic: "omnilog.agents",
                stored: 12,
                requested: 24
            }
        ),
        "{other:?}"
    );
    // The refused opens changed nothing.
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    assert_eq!(log.partitions(Topic::Agents), 12);
    let ends = log.end_offsets(Topic::Interactions).await.unwrap();
    assert_eq!(ends.len(), 12);
    assert_eq!(ends.iter().sum::<u64>(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_keeps_the_partition_counts_it_was_created_with() {
    let dir = tempfile::tempdir().unwrap();
    let counts = PartitionCounts {
        interactions: 3,
        agents: 1,
        dead_letter: 2,
    };
    {
        let log = EmbeddedLog::open(dir.path(), counts.clone()).unwrap();
        assert_eq!(log.partitions(Topic::Interactions), 3);
        let outcome = log
            .append(vec![record("customer-1", event_id("three/1"), "x")])
            .await
            .unwrap();
        assert_eq!(
            outcome[0].position().partition,
            partition_for(b"customer-1", 3)
        );
    }
    let log = EmbeddedLog::open(dir.path(), counts).unwrap();
    assert_eq!(log.end_offsets(Topic::Interactions).await.unwrap().len(), 3);
    assert_eq!(log.end_offsets(Topic::Agents).await.unwrap(), vec![0]);
    assert_eq!(
        log.end_offsets(Topic::DeadLetter).await.unwrap(),
        vec![0, 0]
    );
    drop(log);
    assert!(matches!(
        EmbeddedLog::open(dir.path(), PartitionCounts::default()),
        Err(LogError::PartitionMismatch { stored: 3, .. })
    ));
}

#[tokio::test]
async fn a_topic_without_partitions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let counts = PartitionCounts {
        dead_letter: 0,
        ..PartitionCounts::default()
    };
    assert!(matches!(
        EmbeddedLog::open(dir.path(), counts),
        Err(LogError::InvalidRecord(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_at_or_beyond_the_end_returns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    let key = key_in(5);
    let batch = (0..10)
        .map(|n| record(key.clone(), event_id(&format!("read/{n}")), format!("{n}")))
        .collect();
    log.append(batch).await.unwrap();

    let read = |from, max| log.read(Topic::Interactions, 5, from, max);
    assert!(read(10, 100).await.unwrap().is_empty(), "at the end");
    assert!(read(11, 100).await.unwrap().is_empty(), "beyond the end");
    assert!(
        read(u64::MAX, usize::MAX).await.unwrap().is_empty(),
        "far beyond"
    );
    assert!(read(0, 0).await.unwrap().is_empty(), "max 0");
    assert!(
        log.read(Topic::Interactions, 4, 0, 100)
            .await
            .unwrap()
            .is_empty(),
        "an empty partition"
    );
    // `max` bounds a read, and a read near the end stops at the end.
    let offsets = |records: Vec<omnilog_log::LogRecord>| -> Vec<u64> {
        records.iter().map(|r| r.offset).collect()
    };
    assert_eq!(offsets(read(2, 3).await.unwrap()), vec![2, 3, 4]);
    assert_eq!(offsets(read(8, 100).await.unwrap()), vec![8, 9]);
    assert_eq!(offsets(read(9, usize::MAX).await.unwrap()), vec![9]);
    assert_eq!(
        read_partition(&log, Topic::Interactions, 5, 4).await.len(),
        10
    );
    // A partition that does not exist is an error, not an empty answer.
    assert!(matches!(
        log.read(Topic::Interactions, 12, 0, 10).await,
        Err(LogError::UnknownPartition {
            partition: 12,
            partitions: 12,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_beyond_wakes_when_a_record_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let log: SharedLog =
        std::sync::Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let key = key_in(7);
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let end = log
                .wait_beyond(Topic::Interactions, 7, 0, Duration::from_secs(60))
                .await
                .unwrap();
            (end, started.elapsed())
        })
    };
    // Nothing has arrived, so the waiter is still waiting (a check, not a synchronisation:
    // had it not started waiting yet, it would still see the record below).
    let mut waiter = waiter;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut waiter)
            .await
            .is_err(),
        "wait_beyond answered before anything arrived"
    );
    // A record in another partition does not wake it with a wrong answer.
    log.append(vec![record(key_in(3), event_id("wait/other"), "x")])
        .await
        .unwrap();
    log.append(vec![record(key.clone(), event_id("wait/1"), "x")])
        .await
        .unwrap();
    let (end, waited) = waiter.await.unwrap();
    assert_eq!(end, 1);
    assert!(waited < Duration::from_secs(30), "woken late: {waited:?}");

    // Already beyond: answers at once.
    let end = log
        .wait_beyond(Topic::Interactions, 7, 0, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(end, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_beyond_times_out_with_the_current_end_when_nothing_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    log.append(vec![record(key_in(2), event_id("timeout/1"), "x")])
        .await
        .unwrap();
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let end = log
        .wait_beyond(Topic::Interactions, 2, 1, timeout)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(end, 1, "the end as it is");
    assert!(
        waited >= timeout,
        "answered after {waited:?}, before the timeout"
    );
    assert!(
        waited < Duration::from_secs(20),
        "answered after {waited:?}"
    );
    let empty = log
        .wait_beyond(Topic::Interactions, 3, 0, timeout)
        .await
        .unwrap();
    assert_eq!(empty, 0);
    assert!(matches!(
        log.wait_beyond(Topic::Interactions, 99, 0, timeout).await,
        Err(LogError::UnknownPartition { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_streams_the_stored_records_then_new_ones_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log: SharedLog =
        std::sync::Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let key = key_in(0);
    let append = |from: u32, to: u32| {
        let batch = (from..to)
            .map(|n| record(key.clone(), event_id(&format!("tail/{n}")), format!("{n}")))
            .collect();
        log.append(batch)
    };
    append(0, 5).await.unwrap();
    let mut stream = tail(log.clone(), Topic::Interactions, 0, 2, 2);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(stream.next().await.unwrap().unwrap());
    }
    append(5, 8).await.unwrap();
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("tail delivers a new record")
            .unwrap()
            .unwrap();
        seen.push(next);
    }
    let seen: Vec<_> = seen.iter().map(|r| (r.offset, r.payload.clone())).collect();
    let expected: Vec<_> = (2..8u64).map(|n| (n, n.to_string().into())).collect();
    assert_eq!(seen, expected);
}
