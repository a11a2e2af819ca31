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

use common::CountingLog;
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
