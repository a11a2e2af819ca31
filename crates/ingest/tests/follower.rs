//! The follower of other writers (several ingest servers on one Kafka cluster) under a
//! steady load: while a group of this server's is staged, what it reads is parked, not
//! dropped, and folded as soon as nothing is staged. Dropped and read again, it was folded
//! only in the moments between groups, which a steady load on Kafka (a group staged while
//! its deliveries come back) nearly never leaves.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{HeldAnswers, LikeKafka, agent_event, handed_over};
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts};
use serde_json::json;

fn event(source_event_id: &str, customer: serde_json::Value) -> omnilog_events::Event {
    omnilog_events::parse_event(
        json!({
            "source": "test", "source_event_id": source_event_id,
            "occurred_at": "2026-03-02T09:00:00Z",
            "customer": customer,
            "interaction_id": source_event_id, "channel": "chat",
            "type": "interaction_started", "direction": "inbound",
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// Waits (up to five seconds) until the follower has parked `count` events.
async fn parked(ingest: &Ingest, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ingest.parked_events() < count {
        assert!(
            Instant::now() < deadline,
            "the follower did not park {count} events within 5 s while a group was staged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writers_claim_read_while_a_group_is_staged_is_folded_once_it_settles() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let log = HeldAnswers::over(embedded.clone());
    let config = IngestConfig {
        follow_other_writers: true,
        ..IngestConfig::default()
    };
    let ingest = Arc::new(
        Ingest::start(log.clone() as Arc<dyn EventLog>, config)
            .await
            .unwrap(),
    );
    // A group of this server's, staged until the gate lets its answer through.
    let staged = tokio::spawn({
        let ingest = ingest.clone();
        async move {
            ingest
                .submit(vec![event(
                    "ours",
                    json!({"handles": [{"kind": "phone", "value": "+15552000001"}]}),
                )])
                .await
        }
    });
    handed_over(&log.handed_over, 1).await;
    // Meanwhile another server appends its customer's claim on an email.
    let theirs = event(
        "theirs",
        json!({"id": "customer-of-another-server",
               "handles": [{"kind": "email", "value": "theirs@example.com"}]}),
    );
    embedded
        .append(vec![omnilog_ingest::log_record(&theirs).unwrap()])
        .await
        .unwrap();
    // Read while the group is staged, and parked, not folded: folded now, a refusal of the
    // group would take it back with the group's own decisions. Not folded, it is not
    // counted as folded either (what `/readyz` asks).
    parked(&ingest, 1).await;
    assert_eq!(ingest.resolve_handle("email", "theirs@example.com"), None);
    let progress = ingest.identity_progress().await.unwrap().unwrap();
    assert!(
        progress.iter().any(|(folded, end)| folded < end),
        "{progress:?}"
    );
    // The group settles: the claim is folded with it, before the next group resolves.
    log.gate.add_permits(1);
    let receipt = staged.await.unwrap().unwrap();
    assert_eq!(receipt.accepted, 1);
    assert_eq!(
        ingest
            .resolve_handle("email", "theirs@example.com")
            .as_deref(),
        Some("customer-of-another-server")
    );
    assert_eq!(ingest.parked_events(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_parked_while_a_refused_group_was_staged_is_folded_and_the_groups_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let log = HeldAnswers::over(embedded.clone());
    let config = IngestConfig {
        follow_other_writers: true,
        ..IngestConfig::default()
    };
    let ingest = Arc::new(
        Ingest::start(log.clone() as Arc<dyn EventLog>, config)
            .await
            .unwrap(),
    );
    // A group of this server's that the log will refuse, staged until the gate lets the
    // refusal through.
    log.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let ours = || {
        event(
            "ours",
            json!({"handles": [{"kind": "phone", "value": "+15552000001"}]}),
        )
    };
    let staged = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.submit(vec![ours()]).await }
    });
    handed_over(&log.handed_over, 1).await;
    // Meanwhile another server appends its customer's claim on an email: parked.
    let theirs = event(
        "theirs",
        json!({"id": "customer-of-another-server",
               "handles": [{"kind": "email", "value": "theirs@example.com"}]}),
    );
    embedded
        .append(vec![omnilog_ingest::log_record(&theirs).unwrap()])
        .await
        .unwrap();
    parked(&ingest, 1).await;
    // The refusal takes the group's own claim back, not the parked one: that one is folded
    // as the refusal is answered.
    log.gate.add_permits(1);
    assert!(staged.await.unwrap().is_err(), "the log refused the group");
    assert_eq!(ingest.resolve_handle("phone", "+15552000001"), None);
    assert_eq!(
        ingest
            .resolve_handle("email", "theirs@example.com")
            .as_deref(),
        Some("customer-of-another-server")
    );
    assert_eq!(ingest.parked_events(), 0);
    let progress = ingest.identity_progress().await.unwrap().unwrap();
    assert!(
        progress.iter().all(|(folded, end)| folded >= end),
        "{progress:?}"
    );
    // The client's retry is appended, and its claim made.
    log.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    log.gate.add_permits(1);
    let receipt = ingest.submit(vec![ours()]).await.unwrap();
    assert_eq!(receipt.accepted, 1);
    assert!(ingest.resolve_handle("phone", "+15552000001").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_event_another_server_stored_is_a_duplicate_when_sent_here() {
    // Kafka keeps no index of event ids: a server answers a redelivery as a duplicate
    // only if it remembers the id, which for another server's agent events means it
    // followed the agents topic too.
    let log = Arc::new(LikeKafka::default());
    let config = IngestConfig {
        follow_other_writers: true,
        ..IngestConfig::default()
    };
    let here = Ingest::start(log.clone() as Arc<dyn EventLog>, config.clone())
        .await
        .unwrap();
    let there = Ingest::start(log.clone() as Arc<dyn EventLog>, config)
        .await
        .unwrap();
    let stored = there.submit(vec![agent_event(1)]).await.unwrap();
    assert_eq!(stored.accepted, 1);
    remembered(&here, 1).await;
    let again = here.submit(vec![agent_event(1)]).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1), "{again:?}");
    assert!(log.copies().values().all(|&copies| copies == 1));
}

/// Waits (up to five seconds) until `ingest` remembers agent event `n` as stored.
async fn remembered(ingest: &Ingest, n: usize) {
    let id = agent_event(n).event_id;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ingest.remembers_stored(&id) {
        assert!(
            Instant::now() < deadline,
            "the follower did not read agent event {n} within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_events_the_start_could_not_read_are_read_by_the_follower() {
    let log = Arc::new(LikeKafka::default());
    let there = Ingest::start(log.clone() as Arc<dyn EventLog>, IngestConfig::default())
        .await
        .unwrap();
    there.submit(vec![agent_event(2)]).await.unwrap();
    // This server starts while the agents topic cannot be read: its start remembers none
    // of their ids, and its follower reads them once it can.
    log.agent_reads_fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let config = IngestConfig {
        follow_other_writers: true,
        ..IngestConfig::default()
    };
    let here = Ingest::start(log.clone() as Arc<dyn EventLog>, config)
        .await
        .unwrap();
    assert!(!here.remembers_stored(&agent_event(2).event_id));
    log.agent_reads_fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    remembered(&here, 2).await;
    let again = here.submit(vec![agent_event(2)]).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1), "{again:?}");
}
