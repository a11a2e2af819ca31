//! Group commit: many concurrent appenders share flushes. 64 tasks each appending 50
//! single-record batches cause far fewer flushes (fsyncs) than appends, and every append
//! still gets its own position.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts, Topic};

use common::{event_id, record};

const TASKS: usize = 64;
const APPENDS_PER_TASK: usize = 50;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appenders_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let before = log.flush_count();
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = log.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut positions = Vec::with_capacity(APPENDS_PER_TASK);
                for n in 0..APPENDS_PER_TASK {
                    let id = event_id(&format!("group/{task}/{n}"));
                    let outcome = log
                        .append(vec![record(format!("customer-{task}"), id, "x")])
                        .await
                        .unwrap();
                    assert!(!outcome[0].is_duplicate());
                    positions.push(outcome[0].position());
                }
                positions
            })
        })
        .collect();
    let mut positions = HashSet::new();
    for task in tasks {
        for position in task.await.unwrap() {
            assert!(positions.insert(position), "{position:?} given twice");
        }
    }
    let appends = (TASKS * APPENDS_PER_TASK) as u64;
    let flushes = log.flush_count() - before;
    eprintln!("{appends} appends, {flushes} flushes");
    assert_eq!(positions.len() as u64, appends);
    assert_eq!(
        log.end_offsets(Topic::Interactions)
            .await
            .unwrap()
            .iter()
            .sum::<u64>(),
        appends
    );
    assert!(
        flushes < appends / 4,
        "{appends} concurrent appends took {flushes} flushes: they are not grouped"
    );
}

/// A failed read of the deduplication index fails the group it was met in: every request of
/// it is answered with that error, and each chain of them is broken. Those after the one
/// being looked at were dropped unanswered, their appenders told the log had closed, and the
/// next append of their chains stored after them (found by review). Concurrent chained
/// appenders make groups of several requests; rounds go on until one such group failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_whose_id_lookup_fails_answers_every_request_of_it() {
    use omnilog_log::{DiskFault, LogError};
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let mut groups_failed_whole = 0;
    for round in 0..50 {
        log.inject_disk_fault(DiskFault::ReadIds, 1);
        let start = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let log = log.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    let chain = log.new_chain();
                    start.wait().await;
                    // Both handed over before either is answered, as ingest pipelines
                    // its groups.
                    let mut pending = Vec::new();
                    for n in 0..2 {
                        let id = event_id(&format!("lookup/{round}/{task}/{n}"));
                        let batch = vec![record(format!("customer-{task}"), id, "x")];
                        match log.append_in_chain(batch, chain) {
                            Ok(append) => pending.push(append),
                            Err(_) => panic!("the embedded log takes chained appends"),
                        }
                    }
                    let mut answers = Vec::new();
                    for append in pending {
                        answers.push(append.await.map(|_| ()));
                    }
                    answers
                })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            let answers = task.await.unwrap();
            for answer in &answers {
                match answer {
                    Ok(()) => {}
                    Err(LogError::Storage(message)) if message.contains("event ids") => {
                        refused += 1
                    }
                    // A later append of a chain whose earlier one was refused.
                    Err(LogError::Unavailable(message)) if message.contains("chain") => {}
                    Err(other) => panic!("round {round}: {other:?}"),
                }
            }
            // A chain stands or falls in order: never a refusal after a stored append.
            assert!(
                !(answers[0].is_err() && answers[1].is_ok()),
                "round {round}: {answers:?}"
            );
        }
        if refused > 1 {
            groups_failed_whole += 1;
            if groups_failed_whole >= 3 {
                return;
            }
        }
    }
    panic!("no group of several requests met the failed lookup in 50 rounds");
}

/// An append is written in one frame, which readers refuse past 1 GiB: an append of more
/// than half of that (each of its records within bounds) is refused whole, never written,
/// acknowledged and then lost at the next open; the log goes on.
#[tokio::test(flavor = "multi_thread")]
async fn an_append_larger_than_a_frame_holds_is_refused_and_the_log_goes_on() {
    use omnilog_log::{AppendRecord, LogError};
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    // Three records of 200 MiB (zeroed pages the test never touches).
    let huge: Vec<AppendRecord> = (0..3)
        .map(|n| {
            record(
                format!("customer-{n}"),
                event_id(&format!("huge/{n}")),
                vec![0u8; 200 << 20],
            )
        })
        .collect();
    match log.append(huge).await {
        Err(LogError::InvalidRecord(reason)) => {
            assert!(
                reason.contains("more than the log writes at once"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let stored = log
        .append(vec![record("customer-0", event_id("after"), "x")])
        .await
        .unwrap();
    assert_eq!(stored[0].position().offset, 0);
}
