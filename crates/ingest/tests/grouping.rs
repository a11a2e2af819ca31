//! Group commit: requests that arrive together share appends (each append is an
//! `fdatasync`), rather than each waiting for one of its own: an append a request fails
//! the test. It does not tell the sequencer's gathering of ready requests (`GATHER_TURNS`)
//! from the plain group commit: here both take 2 appends for the 12 requests, and a test
//! cannot hold the runtime's timing still enough to show the difference. What the
//! gathering saves under real load is measured by `omnilog bench` (stage d, one event a
//! request) under `strace -c`: see docs/benchmarks-journal.md.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{CountingLog, handed_over};
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts};

#[tokio::test]
async fn requests_that_arrive_together_share_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(CountingLog::over(Arc::new(
        EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap(),
    )));
    let ingest = Arc::new(
        Ingest::start(log.clone() as Arc<dyn EventLog>, IngestConfig::default())
            .await
            .unwrap(),
    );
    let requests: Vec<_> = (0..12)
        .map(|n| {
            let ingest = ingest.clone();
            tokio::spawn(async move {
                // Some requests take a turn or two longer to be ready (parsing, say).
                for _ in 0..n % 3 {
                    tokio::task::yield_now().await;
                }
                let event = common::numbered_event(n);
                ingest.submit(vec![event]).await.unwrap().accepted
            })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 1);
    }
    // Ready over three turns of the runtime: a few groups, not one append a request.
    let appends = log.appends.load(Ordering::Relaxed);
    assert!(appends <= 3, "12 requests took {appends} appends");
}

/// Requests that wait while groups are in flight are gathered into one group, but a group
/// takes requests only up to 64 MiB of records: the rest make the next group, each request
/// whole. Gathered whole, sixty-four requests of 8 MiB made one append the log refuses
/// (over 512 MiB), and every one of them was refused with it (found by review); here
/// seventy requests of a 1 MiB message each, which one group took whole before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_takes_requests_up_to_its_size_and_leaves_the_rest_for_the_next() {
    let held = common::held(IngestConfig::default()).await;
    let (embedded, log, ingest) = (&held.embedded, &held.log, &held.ingest);
    let text = "m".repeat(1 << 20);
    let large = |n: usize| {
        omnilog_events::parse_event(
            serde_json::json!({
                "source": "test", "source_event_id": format!("large-{n}"),
                "occurred_at": "2026-03-02T09:00:00Z",
                "customer": {"handles": [{"kind": "phone", "value": format!("+1555100{n:04}")}]},
                "interaction_id": format!("chat-large-{n}"), "channel": "chat",
                "type": "message", "direction": "inbound", "author": "customer",
                "text": text,
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    };
    let submit = |event: omnilog_events::Event| {
        let ingest = ingest.clone();
        tokio::spawn(async move { ingest.submit(vec![event]).await.unwrap().accepted })
    };
    // Two groups in flight, held: the requests after them wait together.
    let mut requests = vec![submit(common::numbered_event(1))];
    handed_over(&log.handed_over, 1).await;
    requests.push(submit(common::numbered_event(2)));
    handed_over(&log.handed_over, 2).await;
    for n in 0..70 {
        requests.push(submit(large(n)));
    }
    // Let them all reach the sequencer's channel before the first answer frees it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    log.gate.add_permits(1_000);
    for request in requests {
        assert_eq!(request.await.unwrap(), 1);
    }
    let largest = log.largest_append_bytes.load(Ordering::SeqCst);
    assert!(
        largest > 60 << 20,
        "the waiting requests were gathered: {largest} bytes"
    );
    assert!(
        largest <= (64 << 20) + (2 << 20),
        "a group stops at 64 MiB of records and one request: {largest} bytes"
    );
    let stored: u64 = embedded
        .end_offsets(omnilog_log::Topic::Interactions)
        .await
        .unwrap()
        .iter()
        .sum();
    assert_eq!(stored, 72);
}
