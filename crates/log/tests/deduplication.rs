//! The embedded log stores an event id at most once per partition: a second append of the
//! same event — in a later request, later in the same batch, in another request of the same
//! group commit, or after the log was closed and reopened — stores nothing and answers
//! `Duplicate` with the position of the first copy. Also: a batch is all or nothing.

mod common;

use std::sync::Arc;

use omnilog_log::{
    AppendOutcome, EmbeddedLog, EventLog, LogError, PartitionCounts, Position, Topic, partition_for,
};

use common::{PARTITIONS, event_id, read_partition, record};

fn open(dir: &tempfile::TempDir) -> EmbeddedLog {
    EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap()
}

async fn total_records(log: &dyn EventLog) -> u64 {
    log.end_offsets(Topic::Interactions)
        .await
        .unwrap()
        .iter()
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn appending_an_event_again_in_a_later_request_stores_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let id = event_id("again/1");

    let first = log
        .append(vec![record("customer-a", id, "first copy")])
        .await
        .unwrap();
    let AppendOutcome::Appended(position) = first[0] else {
        panic!("a new event was answered {:?}", first[0]);
    };
    assert_eq!(position.partition, partition_for(b"customer-a", PARTITIONS));

    // The same event again, even with another payload: the first copy stands.
    let second = log
        .append(vec![record("customer-a", id, "second copy")])
        .await
        .unwrap();
    assert_eq!(second, vec![AppendOutcome::Duplicate(position)]);
    assert!(second[0].is_duplicate());
    assert_eq!(second[0].position(), position);

    // And again in a batch with a new event, which is appended behind the first copy.
    let other = event_id("again/2");
    let third = log
        .append(vec![
            record("customer-a", other, "another event"),
            record("customer-a", id, "third copy"),
        ])
        .await
        .unwrap();
    assert_eq!(
        third,
        vec![
            AppendOutcome::Appended(Position {
                partition: position.partition,
                offset: position.offset + 1
            }),
            AppendOutcome::Duplicate(position),
        ]
    );

    assert_eq!(total_records(&log).await, 2);
    let stored = read_partition(&log, Topic::Interactions, position.partition, 100).await;
    let ids: Vec<_> = stored.iter().map(|r| r.event_id).collect();
    assert_eq!(ids, vec![id, other]);
    assert_eq!(stored[0].payload, "first copy");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_twice_in_one_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let (a, b) = (event_id("batch/a"), event_id("batch/b"));

    let outcomes = log
        .append(vec![
            record("customer-b", a, "a"),
            record("customer-b", a, "a again"),
            record("customer-b", b, "b"),
            record("customer-b", a, "a once more"),
            record("customer-b", b, "b again"),
        ])
        .await
        .unwrap();
    let partition = partition_for(b"customer-b", PARTITIONS);
    let at = |offset| Position { partition, offset };
    assert_eq!(
        outcomes,
        vec![
            AppendOutcome::Appended(at(0)),
            AppendOutcome::Duplicate(at(0)),
            AppendOutcome::Appended(at(1)),
            AppendOutcome::Duplicate(at(0)),
            AppendOutcome::Duplicate(at(1)),
        ]
    );
    let stored = read_partition(&log, Topic::Interactions, partition, 100).await;
    let stored: Vec<_> = stored
        .iter()
        .map(|r| (r.event_id, r.payload.clone()))
        .collect();
    assert_eq!(stored, vec![(a, "a".into()), (b, "b".into())]);
    assert_eq!(total_records(&log).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_of_one_event_store_it_once() {
    // Requests that land in the same group commit see each other's event ids.
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&dir));
    let id = event_id("concurrent/1");
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let appenders: Vec<_> = (0..32)
        .map(|n| {
            let log = log.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                log.append(vec![record("customer-c", id, format!("copy {n}"))])
                    .await
                    .unwrap()[0]
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for appender in appenders {
        outcomes.push(appender.await.unwrap());
    }
    let first = Position {
        partition: partition_for(b"customer-c", PARTITIONS),
        offset: 0,
    };
    assert_eq!(
        outcomes.iter().filter(|o| !o.is_duplicate()).count(),
        1,
        "exactly one appender stores the event: {outcomes:?}"
    );
    assert!(
        outcomes.iter().all(|o| o.position() == first),
        "{outcomes:?}"
    );
    assert_eq!(total_records(log.as_ref()).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_appended_again_after_reopening_is_a_duplicate_of_the_first_copy() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<_> = (0..100).map(|n| event_id(&format!("reopen/{n}"))).collect();
    let batch = || -> Vec<_> {
        ids.iter()
            .enumerate()
            .map(|(n, &id)| record(format!("customer-{}", n % 7), id, format!("event {n}")))
            .collect()
    };
    let first: Vec<Position> = {
        let log = open(&dir);
        let outcomes = log.append(batch()).await.unwrap();
        assert!(outcomes.iter().all(|o| !o.is_duplicate()));
        log.close().unwrap();
        outcomes.iter().map(AppendOutcome::position).collect()
    };

    let log = open(&dir);
    let ends = log.end_offsets(Topic::Interactions).await.unwrap();
    let again = log.append(batch()).await.unwrap();
    let expected: Vec<_> = first
        .iter()
        .copied()
        .map(AppendOutcome::Duplicate)
        .collect();
    assert_eq!(again, expected);
    assert_eq!(log.end_offsets(Topic::Interactions).await.unwrap(), ends);
    assert_eq!(total_records(&log).await, 100);

    // A new event after the reopen continues its partition's offsets.
    let key = "customer-3";
    let partition = partition_for(key.as_bytes(), PARTITIONS);
    let next = log
        .append(vec![record(key, event_id("reopen/new"), "new")])
        .await
        .unwrap();
    assert_eq!(
        next,
        vec![AppendOutcome::Appended(Position {
            partition,
            offset: ends[partition as usize]
        })]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deduplication_is_per_partition_and_per_topic() {
    // CONTRACT §2: the log deduplicates on event_id within a partition. Ids are derived
    // from the source event, so one id under two keys is two records (as in Kafka).
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let id = event_id("per-partition");
    let k1 = "customer-0".to_owned();
    let k2 = (1..)
        .map(|n| format!("customer-{n}"))
        .find(|k| {
            partition_for(k.as_bytes(), PARTITIONS) != partition_for(b"customer-0", PARTITIONS)
        })
        .unwrap();
    let mut agent = record("agent-1", id, "agent state");
    agent.topic = Topic::Agents;
    let outcomes = log
        .append(vec![record(k1, id, "one"), record(k2, id, "two"), agent])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| !o.is_duplicate()), "{outcomes:?}");
    assert_eq!(total_records(&log).await, 2);
    assert_eq!(
        log.end_offsets(Topic::Agents)
            .await
            .unwrap()
            .iter()
            .sum::<u64>(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_record_fails_its_whole_batch_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&dir));
    let too_long = "k".repeat(usize::from(u16::MAX) + 1);
    let good = event_id("valid/1");
    // Sent together, so both requests are likely to share a group commit.
    let (bad, fine) = tokio::join!(
        log.append(vec![
            record("customer-d", event_id("invalid/1"), "fine on its own"),
            record(too_long, event_id("invalid/2"), "key too long"),
        ]),
        log.append(vec![record("customer-e", good, "valid")]),
    );
    assert!(
        matches!(bad, Err(LogError::InvalidRecord(_))),
        "an over-long key is refused: {bad:?}"
    );
    let fine = fine.unwrap();
    assert!(!fine[0].is_duplicate());
    assert_eq!(
        total_records(log.as_ref()).await,
        1,
        "nothing of the bad batch is stored"
    );
    // Its valid record was not remembered either: it can still be appended.
    let retry = log
        .append(vec![record(
            "customer-d",
            event_id("invalid/1"),
            "fine on its own",
        )])
        .await
        .unwrap();
    assert!(!retry[0].is_duplicate());
}
