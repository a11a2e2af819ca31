//! A million events through the embedded log, appended in batches of 1,000 by several
//! concurrent appenders through the `EventLog` trait, read back intact: every partition
//! holds exactly the records its appends' outcomes named, in that order, at offsets
//! contiguous from 0, each in the partition Kafka's partitioner gives its key; and a reopened
//! log has the same contents and end offsets.

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use omnilog_log::{
    AppendOutcome, AppendRecord, EmbeddedLog, EventLog, PartitionCounts, Topic, partition_for,
};

use common::{PARTITIONS, read_partition};

const EVENTS: u32 = 1_000_000;
const BATCH: u32 = 1_000;
const APPENDERS: u32 = 4;
const READ_CHUNK: usize = 10_000;

/// Record `i`, derived from `i` alone so the test keeps only indexes in memory.
fn nth_record(i: u32) -> AppendRecord {
    let mut payload = Vec::with_capacity(64);
    payload.extend_from_slice(b"interaction ");
    payload.extend_from_slice(i.to_string().as_bytes());
    payload.push(b' ');
    // A body that differs per record, so a payload swapped between records is caught.
    payload.extend(i.to_be_bytes().iter().cycle().take(40));
    AppendRecord {
        topic: Topic::Interactions,
        key: format!("customer-{i:07}"),
        event_id: common::event_id(&format!("million/{i}")),
        payload: Bytes::from(payload),
        headers: vec![("schema_version".to_owned(), vec![b'0' + (i % 3) as u8])],
    }
}

/// Checks every partition against `expected` (record index per offset, per partition).
async fn assert_log_holds(log: &dyn EventLog, expected: &[Vec<u32>]) {
    let ends = log.end_offsets(Topic::Interactions).await.unwrap();
    let expected_ends: Vec<u64> = expected.iter().map(|p| p.len() as u64).collect();
    assert_eq!(ends, expected_ends, "end offsets");
    for (partition, indexes) in expected.iter().enumerate() {
        let partition = partition as u32;
        let records = read_partition(log, Topic::Interactions, partition, READ_CHUNK).await;
        assert_eq!(
            records.len(),
            indexes.len(),
            "records in partition {partition}"
        );
        for (offset, (stored, &i)) in records.iter().zip(indexes).enumerate() {
            let wanted = nth_record(i);
            assert_eq!(
                stored.offset, offset as u64,
                "offsets of partition {partition}"
            );
            assert_eq!(stored.partition, partition);
            assert_eq!(stored.topic, Topic::Interactions);
            assert_eq!(
                stored.event_id, wanted.event_id,
                "event id at {partition}@{offset}"
            );
            assert_eq!(
                stored.key,
                wanted.key.as_bytes(),
                "key at {partition}@{offset}"
            );
            assert_eq!(
                stored.payload, wanted.payload,
                "payload at {partition}@{offset}"
            );
            assert_eq!(
                stored.headers, wanted.headers,
                "headers at {partition}@{offset}"
            );
            assert_eq!(
                partition_for(&stored.key, PARTITIONS),
                partition,
                "{:?} is in the wrong partition",
                stored.key
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_events_read_back_in_append_order_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    assert_eq!(log.partitions(Topic::Interactions), PARTITIONS);

    let started = Instant::now();
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|appender| {
            let log: Arc<dyn EventLog> = log.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for batch in (appender..EVENTS / BATCH).step_by(APPENDERS as usize) {
                    let first = batch * BATCH;
                    let records = (first..first + BATCH).map(nth_record).collect();
                    let answer = log.append(records).await.expect("append");
                    assert_eq!(answer.len(), BATCH as usize, "one outcome per record");
                    outcomes.extend((first..).zip(answer));
                }
                outcomes
            })
        })
        .collect();
    // expected[partition][offset] = index of the record the append put there.
    let mut expected: Vec<Vec<u32>> = vec![Vec::new(); PARTITIONS as usize];
    let mut placed = 0u64;
    for appender in appenders {
        for (i, outcome) in appender.await.unwrap() {
            let AppendOutcome::Appended(position) = outcome else {
                panic!("record {i} has a distinct event id but was answered {outcome:?}");
            };
            let key = format!("customer-{i:07}");
            assert_eq!(
                position.partition,
                partition_for(key.as_bytes(), PARTITIONS),
                "record {i} was placed in the wrong partition"
            );
            let slots = &mut expected[position.partition as usize];
            let offset = position.offset as usize;
            if slots.len() <= offset {
                slots.resize(offset + 1, u32::MAX);
            }
            assert_eq!(
                slots[offset],
                u32::MAX,
                "two records were given {position:?}"
            );
            slots[offset] = i;
            placed += 1;
        }
    }
    let appended = started.elapsed();
    assert_eq!(placed, u64::from(EVENTS));
    for (partition, slots) in expected.iter().enumerate() {
        assert!(
            !slots.contains(&u32::MAX),
            "partition {partition} has a gap in the offsets the appends were given"
        );
    }
    let flushes = log.flush_count();

    let reading = Instant::now();
    assert_log_holds(log.as_ref(), &expected).await;
    let read = reading.elapsed();

    let closing = Instant::now();
    drop(Arc::into_inner(log).expect("the appenders are done"));
    let closed = closing.elapsed();
    let opening = Instant::now();
    let reopened = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    let opened = opening.elapsed();
    let rereading = Instant::now();
    assert_log_holds(&reopened, &expected).await;
    let reread = rereading.elapsed();
    eprintln!(
        "append {appended:?} ({flushes} flushes), read {read:?}, close {closed:?}, \
         reopen {opened:?}, read again {reread:?}"
    );
}
