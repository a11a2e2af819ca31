//! Ingest over a log whose disk is full: the request is refused as unavailable (the API
//! answers 503 with `Retry-After`), no decision of the refused request survives in the
//! identity view, and the same request sent again once the disk has room is accepted, as
//! new, with nothing lost or doubled. The disk failure is injected at the embedded log's
//! sync (see `crates/log/tests/full_disk.rs` for why injected). A refused append takes back
//! exactly its own decisions, without reading the log again. With two groups in flight
//! (answers held back): a refusal of the later takes back nothing the log said of the
//! earlier, and a redelivery while its first copy is in flight is folded once.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{CountingLog, handed_over};
use omnilog_events::Event;
use omnilog_ingest::{Ingest, IngestConfig, IngestError};
use omnilog_log::{DiskFault, EmbeddedLog, EventLog, PartitionCounts, Topic};
use serde_json::{Value, json};

fn event(source_event_id: &str, customer: Value) -> Event {
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

/// A canonical event of `kind` from the CRM, with `fields` beside the envelope.
fn crm_event(source_event_id: &str, customer: Value, kind: &str, fields: Value) -> Event {
    let mut text = json!({
        "source": "crm",
        "source_event_id": source_event_id,
        "occurred_at": "2026-03-02T09:00:00Z",
        "customer": customer,
        "type": kind,
    });
    for (name, value) in fields.as_object().unwrap() {
        text[name] = value.clone();
    }
    omnilog_events::parse_event(text.to_string().as_bytes()).expect("a valid event")
}

#[tokio::test]
async fn a_refused_append_takes_back_exactly_its_decisions_without_folding_the_log_again() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap());
    let log = Arc::new(CountingLog::over(embedded.clone()));
    let ingest = Ingest::start(log.clone() as Arc<dyn EventLog>, IngestConfig::default())
        .await
        .unwrap();
    // A history with two customers sharing nothing yet, one of them linked by the CRM.
    let history = vec![
        event(
            "h1",
            json!({"handles": [{"kind": "phone", "value": "+15550000011"}]}),
        ),
        event(
            "h2",
            json!({"handles": [{"kind": "phone", "value": "+15550000022"}]}),
        ),
        crm_event(
            "h3",
            json!({"id": "crm-3", "handles": [{"kind": "email", "value": "three@example.com"}]}),
            "identity_linked",
            json!({}),
        ),
    ];
    let written = ingest.submit(history).await.unwrap();
    assert_eq!(written.accepted, 3);
    let first_phone = ingest.resolve_handle("phone", "+15550000011").unwrap();
    let second_phone = ingest.resolve_handle("phone", "+15550000022").unwrap();
    let before = ingest.identity_snapshot();
    let reads_before = log.interaction_reads.load(Ordering::Relaxed);

    // One request whose decisions touch what the view already holds: the first phone's
    // customer claims the second phone (two claimants: merge candidates), the CRM links
    // the email elsewhere and merges two customers, a new customer arrives with a handle
    // kind the view has not seen. The disk refuses its append.
    let refused = || {
        vec![
            event(
                "r1",
                json!({"handles": [
                    {"kind": "phone", "value": "+15550000011"},
                    {"kind": "phone", "value": "+15550000022"},
                ]}),
            ),
            crm_event(
                "r2",
                json!({"id": first_phone, "handles": [{"kind": "email", "value": "three@example.com"}]}),
                "identity_linked",
                json!({}),
            ),
            crm_event(
                "r3",
                json!({"id": first_phone, "handles": []}),
                "customers_merged",
                json!({"from_customer": second_phone, "into_customer": first_phone}),
            ),
            event(
                "r4",
                json!({"handles": [{"kind": "fax", "value": "+15550000044"}]}),
            ),
        ]
    };
    embedded.inject_disk_fault(DiskFault::Sync, 1);
    match ingest.submit(refused()).await {
        Err(IngestError::Unavailable(_)) => {}
        other => panic!("expected the request to be refused as unavailable, got {other:?}"),
    }
    assert_eq!(
        ingest.identity_snapshot(),
        before,
        "the identity view is exactly what it was before the refused request"
    );
    assert_eq!(
        log.interaction_reads.load(Ordering::Relaxed),
        reads_before,
        "the refusal was taken back without reading the log again"
    );
    assert_eq!(ingest.resolve_handle("fax", "+15550000044"), None);
    assert_eq!(
        ingest
            .resolve_handle("email", "three@example.com")
            .as_deref(),
        Some("crm-3")
    );
    assert!(
        ingest
            .customer(&second_phone)
            .unwrap()
            .merged_from
            .is_empty()
    );

    // Once the disk has room, the same request is written, and the view ingest holds is the
    // one a fold of the whole log gives.
    let again = ingest.submit(refused()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (4, 0));
    assert_eq!(
        ingest.resolve_handle("phone", "+15550000022").as_deref(),
        Some(first_phone.as_str())
    );
    let refolded = Ingest::start(
        embedded.clone() as Arc<dyn EventLog>,
        IngestConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(ingest.identity_snapshot(), refolded.identity_snapshot());
}

/// Ingest hands a group to the log while the one before it is being made durable, the
/// second resolved against the decisions of the first. When the log refuses the first,
/// the second is refused with it (the log's chain), and ingest takes back both: each
/// request is answered as unavailable, no decision of either survives, and the same
/// requests sent again are accepted as new.
#[tokio::test]
async fn a_refused_group_takes_the_group_resolved_behind_it_down_with_it() {
    let held = common::held(IngestConfig::default()).await;
    let (embedded, log, ingest) = (&held.embedded, &held.log, &held.ingest);
    // Both requests claim the shared email; the second also claims the first's phone, so
    // its resolution builds on the first's decisions.
    let first_request = || {
        vec![event(
            "first",
            json!({"handles": [
                {"kind": "phone", "value": "+15551000001"},
                {"kind": "email", "value": "shared@example.com"},
            ]}),
        )]
    };
    let second_request = || {
        vec![event(
            "second",
            json!({"handles": [
                {"kind": "phone", "value": "+15551000001"},
                {"kind": "fax", "value": "+15551000002"},
                {"kind": "email", "value": "shared@example.com"},
            ]}),
        )]
    };
    let before = ingest.identity_snapshot();
    embedded.inject_disk_fault(DiskFault::Sync, 1);
    let first = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.submit(first_request()).await }
    });
    handed_over(&log.handed_over, 1).await;
    let second = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.submit(second_request()).await }
    });
    // The second group is in the log's hands before the first's refusal is heard of.
    handed_over(&log.handed_over, 2).await;
    log.gate.add_permits(1_000);
    for (name, outcome) in [
        ("first", first.await.unwrap()),
        ("second", second.await.unwrap()),
    ] {
        match outcome {
            Err(IngestError::Unavailable(_)) => {}
            other => panic!("expected the {name} request to be refused, got {other:?}"),
        }
    }
    assert_eq!(records_in_log(embedded).await, 0, "nothing reached the log");
    assert_eq!(
        ingest.identity_snapshot(),
        before,
        "the identity view is exactly what it was before both groups"
    );
    assert_eq!(ingest.resolve_handle("fax", "+15551000002"), None);

    // Sent again (a new chain), both are accepted, as new, and their decisions hold.
    let again = ingest.submit(first_request()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (1, 0));
    let again = ingest.submit(second_request()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (1, 0));
    assert_eq!(records_in_log(embedded).await, 2);
    assert_eq!(
        ingest.resolve_handle("fax", "+15551000002"),
        ingest.resolve_handle("phone", "+15551000001")
    );
    // What ingest decided is what the log holds: a fresh fold of the log agrees.
    let refolded = Ingest::start(
        embedded.clone() as Arc<dyn EventLog>,
        IngestConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(refolded.identity_snapshot(), ingest.identity_snapshot());
}

/// A group that the log stores while a later one is in flight, and the later one refused:
/// the refusal takes back the later group's decisions, not what the log said of the first
/// (where its events are), so a redelivery of the first's event is answered from memory as
/// a duplicate (taken back, it was appended and folded again; found by review).
#[tokio::test]
async fn a_group_refused_after_the_one_before_it_was_stored_leaves_that_one_remembered() {
    let held = common::held(IngestConfig::default()).await;
    let (embedded, log, ingest) = (&held.embedded, &held.log, &held.ingest);
    let first_event = event(
        "first",
        json!({"handles": [{"kind": "phone", "value": "+15552000001"}]}),
    );
    let first_id = first_event.event_id;
    let first = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.submit(vec![first_event]).await }
    });
    handed_over(&log.handed_over, 1).await;
    log.refuse.store(true, Ordering::SeqCst);
    let second = tokio::spawn({
        let ingest = ingest.clone();
        async move {
            ingest
                .submit(vec![event(
                    "second",
                    json!({"handles": [{"kind": "phone", "value": "+15552000002"}]}),
                )])
                .await
        }
    });
    handed_over(&log.handed_over, 2).await;
    // The first is stored and answered while the second waits...
    log.gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().accepted, 1);
    assert!(ingest.remembers_stored(&first_id));
    // ...then the second is refused.
    log.gate.add_permits(1);
    assert!(matches!(
        second.await.unwrap(),
        Err(IngestError::Unavailable(_))
    ));
    assert!(
        ingest.remembers_stored(&first_id),
        "where the first event is stored outlives the second's refusal"
    );
    log.refuse.store(false, Ordering::SeqCst);
    log.gate.add_permits(1_000);
    let handed = log.handed_over.load(Ordering::SeqCst);
    let again = ingest
        .submit(vec![event(
            "first",
            json!({"handles": [{"kind": "phone", "value": "+15552000001"}]}),
        )])
        .await
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1));
    assert_eq!(
        log.handed_over.load(Ordering::SeqCst),
        handed,
        "answered from memory, not appended again"
    );
    assert_eq!(records_in_log(embedded).await, 1);
}

/// An event sent again while its first copy's group is still on its way to the log is
/// answered as the duplicate it is, and is not folded into the identity view a second time:
/// the live view stays what a fold of the log gives (found by review).
#[tokio::test]
async fn a_redelivery_while_the_first_copy_is_in_flight_is_folded_once() {
    let held = common::held(IngestConfig::default()).await;
    let (embedded, log, ingest) = (&held.embedded, &held.log, &held.ingest);
    let request = || {
        vec![event(
            "once",
            json!({"handles": [{"kind": "phone", "value": "+15553000001"}]}),
        )]
    };
    let first = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.submit(request()).await }
    });
    handed_over(&log.handed_over, 1).await;
    let folded_once = ingest.identity_snapshot();
    let again = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.submit(request()).await }
    });
    handed_over(&log.handed_over, 2).await;
    assert_eq!(
        ingest.identity_snapshot(),
        folded_once,
        "the copy in flight is not folded again"
    );
    log.gate.add_permits(1_000);
    assert_eq!(first.await.unwrap().unwrap().accepted, 1);
    let again = again.await.unwrap().unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1));
    assert_eq!(records_in_log(embedded).await, 1);
    assert_eq!(ingest.identity_snapshot(), folded_once);
}
