//! The identity snapshot: a start from it folds only what the log holds past it and ends
//! with the view a fold of the whole log makes; a long start saves one; a snapshot of
//! another log, or one that cannot be read, is passed over and the whole log folded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnilog_events::Event;
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts, Topic};
use omnilog_testkit::{HistoryConfig, history};
use omnilog_views::IdentityView;
use serde_json::json;

fn snapshot_file(dir: &Path) -> PathBuf {
    dir.join("identity.snapshot")
}

fn keeping_a_snapshot(dir: &Path) -> IngestConfig {
    IngestConfig {
        identity_snapshot_file: Some(snapshot_file(dir)),
        ..IngestConfig::default()
    }
}

fn open_log(dir: &Path) -> Arc<dyn EventLog> {
    Arc::new(EmbeddedLog::open(&dir.join("log"), PartitionCounts::default()).unwrap())
}

/// `events` of the seeded history (customers known by their handles alone, so ingest
/// resolves them), in requests of 50.
async fn submit_history(ingest: &Ingest, seed: u64, events: u64) {
    let all: Vec<Event> = history(HistoryConfig::with_events(seed, events)).collect();
    for request in all.chunks(50) {
        ingest.submit(request.to_vec()).await.unwrap();
    }
}

/// Two customers of the history merged, and a handle linked to one by name: the claims a
/// snapshot must carry beyond handles first seen.
async fn submit_merge_and_link(ingest: &Ingest) {
    let customers: Vec<String> = (0..2)
        .map(|n| {
            ingest
                .resolve_handle("phone", &format!("+1555{:07}", n + 1))
                .unwrap_or_else(|| format!("customer-snapshot-{n}"))
        })
        .collect();
    let events = [
        json!({
            "source": "test", "source_event_id": "merge",
            "occurred_at": "2026-03-09T09:00:00Z",
            "type": "customers_merged",
            "from_customer": customers[1], "into_customer": customers[0],
        }),
        json!({
            "source": "test", "source_event_id": "link",
            "occurred_at": "2026-03-09T09:01:00Z",
            "customer": {"id": customers[0], "handles": [{"kind": "email", "value": "snapshot@example.com"}]},
            "type": "identity_linked",
        }),
    ];
    for event in events {
        let event = omnilog_events::parse_event(event.to_string().as_bytes()).expect("valid");
        ingest.submit(vec![event]).await.unwrap();
    }
}

/// The identity view a start without a snapshot folds from the whole log.
async fn folded_from_the_whole(log: &Arc<dyn EventLog>) -> IdentityView {
    let whole = Ingest::start(log.clone(), IngestConfig::default())
        .await
        .unwrap();
    assert_eq!(whole.started_from_snapshot(), 0);
    whole.identity_snapshot()
}

async fn interactions_in(log: &dyn EventLog) -> u64 {
    log.end_offsets(Topic::Interactions)
        .await
        .unwrap()
        .iter()
        .sum()
}

#[tokio::test]
async fn a_start_from_the_snapshot_folds_only_the_tail_and_ends_where_a_whole_fold_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let ingest = Ingest::start(log.clone(), keeping_a_snapshot(dir.path()))
        .await
        .unwrap();
    assert_eq!(ingest.started_from_snapshot(), 0, "no snapshot yet");
    submit_history(&ingest, 1, 1_500).await;
    submit_merge_and_link(&ingest).await;
    assert!(ingest.save_identity_snapshot().await.unwrap());
    let saved_at = interactions_in(&*log).await;
    // More after the snapshot: the tail the next start folds.
    submit_history(&ingest, 2, 500).await;
    let live = ingest.identity_snapshot();
    drop(ingest);

    let restarted = Ingest::start(log.clone(), keeping_a_snapshot(dir.path()))
        .await
        .unwrap();
    assert_eq!(restarted.started_from_snapshot(), saved_at);
    assert_eq!(
        restarted.identity_snapshot(),
        folded_from_the_whole(&log).await
    );
    assert_eq!(restarted.identity_snapshot(), live);
    assert!(
        restarted
            .resolve_handle("email", "snapshot@example.com")
            .is_some(),
        "the link made before the snapshot is known after it"
    );
    // And it goes on resolving as the whole fold does.
    submit_history(&restarted, 3, 300).await;
    assert_eq!(
        restarted.identity_snapshot(),
        folded_from_the_whole(&log).await
    );
}

#[tokio::test]
async fn an_ingest_that_keeps_no_snapshot_saves_none() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(open_log(dir.path()), IngestConfig::default())
        .await
        .unwrap();
    assert!(!ingest.save_identity_snapshot().await.unwrap());
    assert!(!snapshot_file(dir.path()).exists());
}

#[tokio::test]
async fn a_long_start_saves_a_snapshot_the_next_start_begins_from() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let filler = Ingest::start(log.clone(), IngestConfig::default())
        .await
        .unwrap();
    submit_history(&filler, 4, 400).await;
    drop(filler);
    let in_log = interactions_in(&*log).await;

    let config = IngestConfig {
        snapshot_after_folding: 100,
        ..keeping_a_snapshot(dir.path())
    };
    let first = Ingest::start(log.clone(), config.clone()).await.unwrap();
    assert_eq!(first.started_from_snapshot(), 0);
    // Written beside the start, not before it answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !snapshot_file(dir.path()).exists() {
        assert!(
            Instant::now() < deadline,
            "no snapshot after the long start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = Ingest::start(log.clone(), config).await.unwrap();
    assert_eq!(second.started_from_snapshot(), in_log);
    assert_eq!(second.identity_snapshot(), first.identity_snapshot());
}

#[tokio::test]
async fn a_snapshot_of_another_log_is_passed_over() {
    let (one, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first_log = open_log(one.path());
    let ingest = Ingest::start(first_log, keeping_a_snapshot(one.path()))
        .await
        .unwrap();
    submit_history(&ingest, 5, 600).await;
    assert!(ingest.save_identity_snapshot().await.unwrap());

    // Another desk's log, as long or longer in every partition, given this one's snapshot.
    let other_log = open_log(other.path());
    let writer = Ingest::start(other_log.clone(), IngestConfig::default())
        .await
        .unwrap();
    submit_history(&writer, 6, 1_200).await;
    drop(writer);
    std::fs::copy(snapshot_file(one.path()), snapshot_file(other.path())).unwrap();
    let started = Ingest::start(other_log.clone(), keeping_a_snapshot(other.path()))
        .await
        .unwrap();
    assert_eq!(
        started.started_from_snapshot(),
        0,
        "not this log's snapshot"
    );
    assert_eq!(
        started.identity_snapshot(),
        folded_from_the_whole(&other_log).await
    );
}

#[tokio::test]
async fn an_unreadable_snapshot_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let ingest = Ingest::start(log.clone(), keeping_a_snapshot(dir.path()))
        .await
        .unwrap();
    submit_history(&ingest, 7, 300).await;
    assert!(ingest.save_identity_snapshot().await.unwrap());
    drop(ingest);
    // A bit flipped in the middle: its checksum fails.
    let mut bytes = std::fs::read(snapshot_file(dir.path())).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(snapshot_file(dir.path()), &bytes).unwrap();
    let started = Ingest::start(log.clone(), keeping_a_snapshot(dir.path()))
        .await
        .unwrap();
    assert_eq!(started.started_from_snapshot(), 0);
    assert_eq!(
        started.identity_snapshot(),
        folded_from_the_whole(&log).await
    );
}

fn link(source_event_id: &str, event_id: &str, customer: &str, email: &str) -> Event {
    let text = json!({
        "event_id": event_id,
        "source": "test", "source_event_id": source_event_id,
        "occurred_at": "2026-03-09T09:00:00Z",
        "customer": {"id": customer, "handles": [{"kind": "email", "value": email}]},
        "type": "identity_linked",
    });
    omnilog_events::parse_event(text.to_string().as_bytes()).expect("valid")
}

/// An event repeated within a request is appended once, so it is folded once: folded again
/// with a later stamp, the first link would outrank the second, as the log's one copy of
/// it does not, and the live view would not be the log's.
#[tokio::test]
async fn an_event_repeated_within_a_group_is_folded_once_as_the_log_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let ingest = Ingest::start(log.clone(), keeping_a_snapshot(dir.path()))
        .await
        .unwrap();
    let to_a = link(
        "a",
        "0b7c1a52-4a51-4d1e-9a53-6f1f2b0c0001",
        "customer-a",
        "e@example.com",
    );
    let to_b = link(
        "b",
        "0b7c1a52-4a51-4d1e-9a53-6f1f2b0c0002",
        "customer-b",
        "e@example.com",
    );
    let receipt = ingest.submit(vec![to_a.clone(), to_b, to_a]).await.unwrap();
    assert_eq!(receipt.accepted, 2, "{receipt:?}");
    assert_eq!(
        ingest.resolve_handle("email", "e@example.com").as_deref(),
        Some("customer-b"),
        "the later link wins, as in the log"
    );
    assert_eq!(
        ingest.identity_snapshot(),
        folded_from_the_whole(&log).await
    );
    assert!(ingest.save_identity_snapshot().await.unwrap());
}

/// An event the log answers as a duplicate (its id no longer among the recent ones) was
/// folded again with a later stamp: the view is not saved as the log's, and the next start
/// folds the log instead.
#[tokio::test]
async fn a_view_that_folded_a_duplicate_again_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let config = IngestConfig {
        // No recent ids: a redelivery is known as one only by the log.
        remembered_event_ids: 0,
        ..keeping_a_snapshot(dir.path())
    };
    let ingest = Ingest::start(log.clone(), config.clone()).await.unwrap();
    let to_a = link(
        "a",
        "0b7c1a52-4a51-4d1e-9a53-6f1f2b0c0003",
        "customer-a",
        "f@example.com",
    );
    let to_b = link(
        "b",
        "0b7c1a52-4a51-4d1e-9a53-6f1f2b0c0004",
        "customer-b",
        "f@example.com",
    );
    ingest.submit(vec![to_a.clone()]).await.unwrap();
    ingest.submit(vec![to_b]).await.unwrap();
    assert!(ingest.save_identity_snapshot().await.unwrap());
    let again = ingest.submit(vec![to_a]).await.unwrap();
    assert_eq!(again.duplicates, 1, "{again:?}");
    let refused = ingest.save_identity_snapshot().await.unwrap_err();
    assert!(refused.to_string().contains("a second time"), "{refused}");
    drop(ingest);
    let restarted = Ingest::start(log.clone(), config).await.unwrap();
    assert_eq!(
        restarted.identity_snapshot(),
        folded_from_the_whole(&log).await
    );
    assert_eq!(
        restarted
            .resolve_handle("email", "f@example.com")
            .as_deref(),
        Some("customer-b")
    );
}

/// The ids a start reads back to answer redeliveries are the same from a snapshot (read
/// apart from the rest of their records) as from a whole fold.
#[tokio::test]
async fn a_start_from_the_snapshot_remembers_the_newest_ids_as_a_whole_fold_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let ingest = Ingest::start(log.clone(), keeping_a_snapshot(dir.path()))
        .await
        .unwrap();
    let events: Vec<Event> = history(HistoryConfig::with_events(8, 400)).collect();
    for request in events.chunks(50) {
        ingest.submit(request.to_vec()).await.unwrap();
    }
    assert!(ingest.save_identity_snapshot().await.unwrap());
    drop(ingest);
    let config = IngestConfig {
        // Room for fewer ids than the start reads back (five of each of the twelve
        // interactions partitions, 60, and the agents partitions' newest): which of them
        // are let go depends on their stamps.
        remembered_event_ids: 50,
        ..keeping_a_snapshot(dir.path())
    };
    let restarted = Ingest::start(log.clone(), config.clone()).await.unwrap();
    assert!(restarted.started_from_snapshot() > 0);
    let whole = Ingest::start(
        log,
        IngestConfig {
            identity_snapshot_file: None,
            ..config
        },
    )
    .await
    .unwrap();
    let remembered: Vec<bool> = events
        .iter()
        .map(|event| restarted.remembers_stored(&event.event_id))
        .collect();
    assert!(remembered.iter().any(|&known| known));
    assert!(remembered.iter().any(|&known| !known));
    for (event, known) in events.iter().zip(remembered) {
        assert_eq!(
            known,
            whole.remembers_stored(&event.event_id),
            "{}",
            event.event_id
        );
    }
}
