//! Ingest over a log whose disk is full: the request is refused as unavailable (the API
//! answers 503 with `Retry-After`), no decision of the refused request survives in the
//! identity view, and the same request sent again once the disk has room is accepted, as
//! new, with nothing lost or doubled. The disk failure is injected at the embedded log's
//! sync (see `crates/log/tests/full_disk.rs` for why injected).

use std::sync::Arc;

use omnilog_events::Event;
use omnilog_ingest::{Ingest, IngestConfig, IngestError};
use omnilog_log::{DiskFault, EmbeddedLog, EventLog, PartitionCounts, Topic};
use serde_json::json;

fn event(source_event_id: &str, customer: serde_json::Value) -> Event {
    let text = json!({
        "source": "test",
        "source_event_id": source_event_id,
        "occurred_at": "2026-03-02T09:00:00Z",
        "customer": customer,
        "interaction_id": format!("chat-{source_event_id}"),
        "channel": "chat",
        "type": "interaction_started",
        "direction": "inbound",
    });
    omnilog_events::parse_event(text.to_string().as_bytes()).expect("a valid event")
}

async fn records_in_log(log: &EmbeddedLog) -> u64 {
    log.end_offsets(Topic::Interactions)
        .await
        .expect("end offsets")
        .iter()
        .sum()
}

#[tokio::test]
async fn a_request_refused_on_a_full_disk_leaves_no_trace_and_is_accepted_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let ingest = Ingest::start(log.clone() as Arc<dyn EventLog>, IngestConfig::default())
        .await
        .unwrap();
    let first = ingest
        .submit(vec![event(
            "first",
            json!({"handles": [{"kind": "phone", "value": "+15550000001"}]}),
        )])
        .await
        .unwrap();
    assert_eq!(first.accepted, 1);

    // A request that links a new handle to a named customer, refused by a full disk.
    let linking = || {
        vec![event(
            "link",
            json!({"id": "customer-7", "handles": [{"kind": "email", "value": "seven@example.com"}]}),
        )]
    };
    log.inject_disk_fault(DiskFault::Sync, 1);
    match ingest.submit(linking()).await {
        Err(IngestError::Unavailable(message)) => {
            assert!(message.contains("No space left"), "{message}")
        }
        other => panic!("expected the request to be refused as unavailable, got {other:?}"),
    }
    assert_eq!(
        records_in_log(&log).await,
        1,
        "nothing of it reached the log"
    );
    assert_eq!(
        ingest.resolve_handle("email", "seven@example.com"),
        None,
        "the refused link must not be honoured"
    );

    // The disk has room again: the same request is accepted as new, and its link holds.
    let again = ingest.submit(linking()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (1, 0));
    assert_eq!(
        ingest
            .resolve_handle("email", "seven@example.com")
            .as_deref(),
        Some("customer-7")
    );
    // Once more is a duplicate: it was stored once.
    let repeated = ingest.submit(linking()).await.unwrap();
    assert_eq!((repeated.accepted, repeated.duplicates), (0, 1));
    assert_eq!(records_in_log(&log).await, 2);
}
