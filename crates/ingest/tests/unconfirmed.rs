//! A refused append whose records may be stored all the same (on Kafka: deliveries that
//! were not all confirmed): the client's retry stores each event once. Found in the log, an
//! event is answered as a duplicate with the position of the copy found; not found, it is
//! appended. The log here keeps no index of event ids, as Kafka keeps none: without ingest
//! looking, a retry would store a second copy.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{LikeKafka, Refusal, sent_again_is_a_duplicate};
use omnilog_ingest::{Ingest, IngestConfig, IngestError};
use omnilog_log::EventLog;

fn event(n: usize) -> omnilog_events::Event {
    common::numbered_event(n)
}

async fn start(log: &Arc<LikeKafka>) -> Ingest {
    Ingest::start(log.clone() as Arc<dyn EventLog>, IngestConfig::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_of_events_stored_by_a_refused_append_is_answered_as_duplicates() {
    let log = Arc::new(LikeKafka::default());
    let ingest = start(&log).await;
    ingest.submit(vec![event(0)]).await.unwrap();
    log.refuse_next(Refusal::StoredUnconfirmed);
    let refused = ingest.submit(vec![event(1), event(2)]).await;
    assert!(
        matches!(refused, Err(IngestError::Unconfirmed(_))),
        "{refused:?}"
    );
    // Sent again, with one event more: the two found where the refused append put them.
    let again = ingest
        .submit(vec![event(1), event(2), event(3)])
        .await
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (1, 2), "{again:?}");
    assert!(again.positions[0].duplicate && again.positions[1].duplicate);
    let copies = log.copies();
    assert_eq!(copies.len(), 4);
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
    // Where the copy found is: the answer's position holds that event.
    let first = again.positions[0];
    let held = log
        .read(first.topic, first.partition, first.offset, 1)
        .await
        .unwrap();
    assert_eq!(held[0].event_id, event(1).event_id);
    // The claims the refusal took back are ingest's again: found, the events were folded.
    for phone in ["+15550000001", "+15550000002"] {
        assert!(ingest.resolve_handle("phone", phone).is_some(), "{phone}");
    }
    // A third send finds them among the ids ingest remembers, without looking again.
    let reads = log.reads.load(Ordering::SeqCst);
    let third = ingest.submit(vec![event(1), event(3)]).await.unwrap();
    assert_eq!((third.accepted, third.duplicates), (0, 2));
    assert_eq!(log.copies().len(), 4);
    assert_eq!(log.reads.load(Ordering::SeqCst), reads);
}

#[tokio::test]
async fn a_retry_of_events_a_refused_append_did_not_store_stores_them_once() {
    let log = Arc::new(LikeKafka::default());
    let ingest = start(&log).await;
    log.refuse_next(Refusal::NothingStored);
    let refused = ingest.submit(vec![event(1), event(2)]).await;
    assert!(
        matches!(refused, Err(IngestError::Unconfirmed(_))),
        "{refused:?}"
    );
    assert!(log.copies().is_empty());
    let again = ingest.submit(vec![event(1), event(2)]).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (2, 0), "{again:?}");
    let copies = log.copies();
    assert_eq!(copies.len(), 2);
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
}

#[tokio::test]
async fn events_refused_twice_are_looked_for_again_and_stored_once() {
    let log = Arc::new(LikeKafka::default());
    let ingest = start(&log).await;
    log.refuse_next(Refusal::NothingStored);
    assert!(ingest.submit(vec![event(1)]).await.is_err());
    log.refuse_next(Refusal::StoredUnconfirmed);
    assert!(ingest.submit(vec![event(1)]).await.is_err());
    sent_again_is_a_duplicate(&ingest, event(1), "an event refused twice").await;
    assert_eq!(log.copies().get(&event(1).event_id), Some(&1));
}

#[tokio::test]
async fn a_confirmed_record_of_a_refused_append_is_a_duplicate_when_sent_again() {
    let log = Arc::new(LikeKafka::default());
    let ingest = start(&log).await;
    log.refuse_next(Refusal::StoredFirstConfirmed);
    assert!(ingest.submit(vec![event(1), event(2)]).await.is_err());
    let again = ingest.submit(vec![event(2), event(1)]).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 2), "{again:?}");
    // The claims of both, the confirmed one's too, are ingest's again.
    for phone in ["+15550000001", "+15550000002"] {
        assert!(ingest.resolve_handle("phone", phone).is_some(), "{phone}");
    }
    let copies = log.copies();
    assert_eq!(copies.len(), 2);
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
}

#[tokio::test]
async fn nothing_in_doubt_nothing_is_read() {
    let log = Arc::new(LikeKafka::default());
    let ingest = start(&log).await;
    let reads = log.reads.load(Ordering::SeqCst);
    for n in 0..5 {
        ingest.submit(vec![event(n)]).await.unwrap();
    }
    assert_eq!(log.reads.load(Ordering::SeqCst), reads);
}

#[tokio::test]
async fn an_event_in_doubt_is_found_past_thousands_of_later_records() {
    let log = Arc::new(LikeKafka::default());
    let ingest = start(&log).await;
    // Its copy lands after the next ten appends' records.
    log.refuse_next(Refusal::StoredAfter(10));
    assert!(ingest.submit(vec![event(0)]).await.is_err());
    // Ten thousand events before it, over four partitions: its partition is read in
    // several reads before the copy is found.
    for chunk in 0..10 {
        let events = (1..=1_000).map(|n| event(chunk * 1_000 + n)).collect();
        let receipt = ingest.submit(events).await.unwrap();
        assert_eq!(receipt.accepted, 1_000);
    }
    let reads = log.reads.load(Ordering::SeqCst);
    let again = ingest.submit(vec![event(0)]).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1), "{again:?}");
    assert!(again.positions[0].offset > 2_000, "{again:?}");
    assert!(log.reads.load(Ordering::SeqCst) >= reads + 2);
    assert_eq!(log.copies().len(), 10_001);
    assert!(log.copies().values().all(|&n| n == 1));
}

#[tokio::test]
async fn a_log_that_cannot_be_read_refuses_only_the_requests_naming_events_in_doubt() {
    let log = Arc::new(LikeKafka::default());
    let ingest = Arc::new(start(&log).await);
    log.refuse_next(Refusal::StoredUnconfirmed);
    assert!(ingest.submit(vec![event(1)]).await.is_err());
    log.reads_fail.store(true, Ordering::SeqCst);
    let in_doubt = ingest.submit(vec![event(1)]).await;
    assert!(
        matches!(&in_doubt, Err(IngestError::Unconfirmed(message)) if message.contains("could not look")),
        "{in_doubt:?}"
    );
    // A request naming nothing in doubt goes on meanwhile.
    let other = ingest.submit(vec![event(2)]).await.unwrap();
    assert_eq!(other.accepted, 1);
    // Once the log reads again, the event is still in doubt, and found.
    log.reads_fail.store(false, Ordering::SeqCst);
    sent_again_is_a_duplicate(&ingest, event(1), "once the log reads again").await;
    assert!(log.copies().values().all(|&n| n == 1));
}
