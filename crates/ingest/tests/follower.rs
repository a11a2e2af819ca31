//! The follower of other writers (several ingest servers on one Kafka cluster) under a
//! steady load: while a group of this server's is staged, what it reads is parked, not
//! dropped, and folded as soon as nothing is staged. Dropped and read again, it was folded
//! only in the moments between groups, which a steady load on Kafka (a group staged while
//! its deliveries come back) nearly never leaves.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Held, LikeKafka, agent_event, eventually, handed_over, sent_again_is_a_duplicate};
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

/// Ingest following other writers.
fn following() -> IngestConfig {
    IngestConfig {
        follow_other_writers: true,
        ..IngestConfig::default()
    }
}

/// A server following other writers over the embedded log, its appends' answers held.
async fn held() -> Held {
    common::held(following()).await
}

/// This server's event: a phone's claim.
fn ours() -> omnilog_events::Event {
    event(
        "ours",
        json!({"handles": [{"kind": "phone", "value": "+15552000001"}]}),
    )
}

/// Sends [`ours`] in a task of its own, and waits until its group is handed to the log
/// (staged until the gate lets the answer through).
async fn staged(
    held: &Held,
) -> tokio::task::JoinHandle<Result<omnilog_ingest::Receipt, omnilog_ingest::IngestError>> {
    let ingest = held.ingest.clone();
    let staged = tokio::spawn(async move { ingest.submit(vec![ours()]).await });
    handed_over(&held.log.handed_over, 1).await;
    staged
}

/// Another server appends its customer's claim on an email; waits until the follower has
/// read it and parked it (a group of this server's is staged).
async fn theirs_parked(held: &Held) {
    let theirs = event(
        "theirs",
        json!({"id": "customer-of-another-server",
               "handles": [{"kind": "email", "value": "theirs@example.com"}]}),
    );
    held.embedded
        .append(vec![omnilog_ingest::log_record(&theirs).unwrap()])
        .await
        .unwrap();
    eventually(
        "the follower parking the claim read while a group was staged",
        || held.ingest.parked_events() >= 1,
    )
    .await;
}

/// Whether the other server's claim is folded into this server's identity view.
fn theirs_folded(ingest: &Ingest) -> bool {
    ingest
        .resolve_handle("email", "theirs@example.com")
        .as_deref()
        == Some("customer-of-another-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writers_claim_read_while_a_group_is_staged_is_folded_once_it_settles() {
    let held = held().await;
    let ingest = &held.ingest;
    let staged = staged(&held).await;
    // Read while the group is staged, and parked, not folded: folded now, a refusal of the
    // group would take it back with the group's own decisions. Not folded, it is not
    // counted as folded either (what `/readyz` asks).
    theirs_parked(&held).await;
    assert_eq!(ingest.resolve_handle("email", "theirs@example.com"), None);
    let progress = ingest.identity_progress().await.unwrap().unwrap();
    assert!(
        progress.iter().any(|(folded, end)| folded < end),
        "{progress:?}"
    );
    // The group settles: the claim is folded with it, before the next group resolves.
    held.log.gate.add_permits(1);
    let receipt = staged.await.unwrap().unwrap();
    assert_eq!(receipt.accepted, 1);
    assert!(theirs_folded(ingest));
    assert_eq!(ingest.parked_events(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_parked_while_a_refused_group_was_staged_is_folded_and_the_groups_taken_back() {
    let held = held().await;
    let ingest = &held.ingest;
    // A group of this server's that the log will refuse.
    held.log.refuse.store(true, Ordering::SeqCst);
    let staged = staged(&held).await;
    theirs_parked(&held).await;
    // The refusal takes the group's own claim back, not the parked one: that one is folded
    // as the refusal is answered.
    held.log.gate.add_permits(1);
    assert!(staged.await.unwrap().is_err(), "the log refused the group");
    assert_eq!(ingest.resolve_handle("phone", "+15552000001"), None);
    assert!(theirs_folded(ingest));
    assert_eq!(ingest.parked_events(), 0);
    let progress = ingest.identity_progress().await.unwrap().unwrap();
    assert!(
        progress.iter().all(|(folded, end)| folded >= end),
        "{progress:?}"
    );
    // The client's retry is appended, and its claim made.
    held.log.refuse.store(false, Ordering::SeqCst);
    held.log.gate.add_permits(1);
    let receipt = ingest.submit(vec![ours()]).await.unwrap();
    assert_eq!(receipt.accepted, 1);
    assert!(ingest.resolve_handle("phone", "+15552000001").is_some());
}

/// Waits until `ingest` remembers agent event `n` as stored.
async fn remembered(ingest: &Ingest, n: usize) {
    let id = agent_event(n).event_id;
    eventually(&format!("the follower reading agent event {n}"), || {
        ingest.remembers_stored(&id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_event_another_server_stored_is_a_duplicate_when_sent_here() {
    // Kafka keeps no index of event ids: a server answers a redelivery as a duplicate
    // only if it remembers the id, which for another server's agent events means it
    // followed the agents topic too.
    let log = Arc::new(LikeKafka::default());
    let here = Ingest::start(log.clone() as Arc<dyn EventLog>, following())
        .await
        .unwrap();
    let there = Ingest::start(log.clone() as Arc<dyn EventLog>, following())
        .await
        .unwrap();
    let stored = there.submit(vec![agent_event(1)]).await.unwrap();
    assert_eq!(stored.accepted, 1);
    remembered(&here, 1).await;
    sent_again_is_a_duplicate(&here, agent_event(1), "another server's agent event").await;
    assert!(log.copies().values().all(|&copies| copies == 1));
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
    log.agent_reads_fail.store(true, Ordering::SeqCst);
    let here = Ingest::start(log.clone() as Arc<dyn EventLog>, following())
        .await
        .unwrap();
    assert!(!here.remembers_stored(&agent_event(2).event_id));
    log.agent_reads_fail.store(false, Ordering::SeqCst);
    remembered(&here, 2).await;
    sent_again_is_a_duplicate(
        &here,
        agent_event(2),
        "an agent event the start could not read",
    )
    .await;
}

/// Read-your-writes across servers: a token from one server's answer is held by another
/// server's identity view once that view's follower has read past the token's positions
/// (the waiter asks it to read at once); a position past the log's end is waited for until
/// the time allowed runs out; a partition the log does not have is named. A server that is
/// its log's one writer holds every token at once (it folded each event before answering).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_another_server_is_held_once_this_ones_follower_has_read_past_it() {
    use omnilog_ingest::IdentityReach;
    use omnilog_log::Topic;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let writer = Ingest::start(log.clone(), following()).await.unwrap();
    let reader = Ingest::start(log.clone(), following()).await.unwrap();
    for n in 0..20 {
        let receipt = writer
            .submit(vec![event(
                &format!("written-{n}"),
                json!({"handles": [{"kind": "email", "value": format!("n{n}@example.com")}]}),
            )])
            .await
            .unwrap();
        let positions: Vec<(u32, u64)> = receipt
            .token
            .positions()
            .filter(|(topic, ..)| *topic == Topic::Interactions)
            .map(|(_, partition, offset)| (partition, offset))
            .collect();
        assert_eq!(positions.len(), 1);
        assert_eq!(
            reader
                .identity_after(&positions, Duration::from_secs(5))
                .await,
            IdentityReach::Reached
        );
        let email = format!("n{n}@example.com");
        assert!(
            reader.resolve_handle("email", &email).is_some(),
            "the reader's view holds the write its token names"
        );
        assert_eq!(
            reader.resolve_handle("email", &email),
            writer.resolve_handle("email", &email)
        );
    }
    let past_the_end = [(0, 1_000_000)];
    let started = std::time::Instant::now();
    assert_eq!(
        reader
            .identity_after(&past_the_end, Duration::from_millis(100))
            .await,
        IdentityReach::TimedOut
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    let partitions = log.partitions(Topic::Interactions);
    assert_eq!(
        reader
            .identity_after(&[(partitions, 0)], Duration::from_secs(5))
            .await,
        IdentityReach::NoSuchPartition {
            partition: partitions,
            partitions
        }
    );
    let one_writer = Ingest::start(log, IngestConfig::default()).await.unwrap();
    assert_eq!(
        one_writer
            .identity_after(&past_the_end, Duration::from_secs(5))
            .await,
        IdentityReach::Reached
    );
    assert_eq!(
        one_writer
            .identity_after(&[(partitions, 0)], Duration::from_secs(5))
            .await,
        IdentityReach::NoSuchPartition {
            partition: partitions,
            partitions
        }
    );
}

/// Another server's event read while a group of this server's is staged is parked, not
/// folded: a token naming it is not held until the group settles and the event is folded
/// (the follower had read past it, and the token was taken as held while the view lacked
/// it: found by review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_naming_a_parked_event_is_held_only_once_the_event_is_folded() {
    use omnilog_ingest::IdentityReach;
    use std::time::Duration;
    let held = held().await;
    let staged = staged(&held).await;
    let theirs = event(
        "theirs",
        json!({"id": "customer-of-another-server",
               "handles": [{"kind": "email", "value": "theirs@example.com"}]}),
    );
    let outcome = held
        .embedded
        .append(vec![omnilog_ingest::log_record(&theirs).unwrap()])
        .await
        .unwrap();
    let position = outcome[0].position();
    let token = [(position.partition, position.offset)];
    eventually("the follower parking the other server's claim", || {
        held.ingest.parked_events() >= 1
    })
    .await;
    assert_eq!(
        held.ingest
            .identity_after(&token, Duration::from_millis(50))
            .await,
        IdentityReach::TimedOut,
        "read past, but parked: the view does not hold it"
    );
    assert!(!theirs_folded(&held.ingest));
    held.log.gate.add_permits(1);
    assert_eq!(staged.await.unwrap().unwrap().accepted, 1);
    assert_eq!(
        held.ingest
            .identity_after(&token, Duration::from_secs(5))
            .await,
        IdentityReach::Reached
    );
    assert!(theirs_folded(&held.ingest));
}
