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
