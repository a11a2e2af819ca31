//! A refused append whose records may be stored all the same (on Kafka: deliveries that
//! were not all confirmed): the client's retry stores each event once. Found in the log, an
//! event is answered as a duplicate with the position of the copy found; not found, it is
//! appended. The log here keeps no index of event ids, as Kafka keeps none: without ingest
//! looking, a retry would store a second copy.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omnilog_ingest::{Ingest, IngestConfig, IngestError};
use omnilog_log::{
    AppendOutcome, AppendRecord, EventLog, LogError, LogRecord, Position, RecordFate, Topic,
    partition_for,
};
use serde_json::json;

const PARTITIONS: u32 = 4;

/// How the next append is refused.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// Every record stored, none confirmed.
    StoredUnconfirmed,
    /// Nothing stored, and nothing confirmed either.
    NothingStored,
    /// Every record stored, the first one confirmed.
    StoredFirstConfirmed,
    /// Every record stored late: after the records of this many appends more.
    StoredAfter(usize),
}

/// A log like Kafka's: an appended record is stored, a second copy too; the next appends
/// can be refused as unconfirmed, each record in doubt from where its partition ended
/// before the append; and reads can be made to fail.
#[derive(Debug, Default)]
struct LikeKafka {
    partitions: Mutex<HashMap<(Topic, u32), Vec<LogRecord>>>,
    refusals: Mutex<VecDeque<Refusal>>,
    /// Records to store after this many appends more.
    late: Mutex<Vec<(usize, Vec<LogRecord>)>>,
    reads: AtomicU64,
    reads_fail: AtomicBool,
}

impl LikeKafka {
    fn refuse_next(&self, refusal: Refusal) {
        self.refusals.lock().unwrap().push_back(refusal);
    }

    /// How many copies of each event id the log holds.
    fn copies(&self) -> HashMap<uuid::Uuid, usize> {
        let mut copies = HashMap::new();
        for records in self.partitions.lock().unwrap().values() {
            for record in records {
                *copies.entry(record.event_id).or_insert(0) += 1;
            }
        }
        copies
    }
}

#[async_trait::async_trait]
impl EventLog for LikeKafka {
    fn partitions(&self, _topic: Topic) -> u32 {
        PARTITIONS
    }

    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError> {
        let refusal = self.refusals.lock().unwrap().pop_front();
        let mut partitions = self.partitions.lock().unwrap();
        let ends_before: HashMap<(Topic, u32), u64> = partitions
            .iter()
            .map(|(at, records)| (*at, records.len() as u64))
            .collect();
        let mut outcomes = Vec::new();
        let mut fates = Vec::new();
        for record in batch {
            let partition = partition_for(record.key.as_bytes(), PARTITIONS);
            let stored = partitions.entry((record.topic, partition)).or_default();
            let offset = stored.len() as u64;
            fates.push(match refusal {
                Some(Refusal::StoredFirstConfirmed) if fates.is_empty() => {
                    RecordFate::Stored(Position { partition, offset })
                }
                _ => RecordFate::InDoubt {
                    partition,
                    from: ends_before
                        .get(&(record.topic, partition))
                        .copied()
                        .unwrap_or(0),
                },
            });
            outcomes.push(AppendOutcome::Appended(Position { partition, offset }));
            let stored_record = LogRecord {
                topic: record.topic,
                partition,
                offset,
                key: record.key.into_bytes().into(),
                event_id: record.event_id,
                payload: record.payload,
                headers: record.headers,
            };
            match refusal {
                Some(Refusal::NothingStored) => {}
                Some(Refusal::StoredAfter(appends)) => {
                    let mut late = self.late.lock().unwrap();
                    match late.iter_mut().find(|(after, _)| *after == appends) {
                        Some((_, records)) => records.push(stored_record),
                        None => late.push((appends, vec![stored_record])),
                    }
                }
                _ => stored.push(stored_record),
            }
        }
        // Records delivered late land after this append's.
        if !matches!(refusal, Some(Refusal::StoredAfter(_))) {
            let mut late = self.late.lock().unwrap();
            for (after, records) in late.iter_mut() {
                *after -= 1;
                if *after == 0 {
                    for mut record in records.drain(..) {
                        let stored = partitions
                            .entry((record.topic, record.partition))
                            .or_default();
                        record.offset = stored.len() as u64;
                        stored.push(record);
                    }
                }
            }
            late.retain(|(after, _)| *after > 0);
        }
        match refusal {
            None => Ok(outcomes),
            Some(_) => Err(LogError::Unconfirmed {
                message: "deliveries not confirmed (a test's refusal)".to_owned(),
                fates,
            }),
        }
    }

    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.reads_fail.load(Ordering::SeqCst) {
            return Err(LogError::Unavailable("reads fail (a test's)".to_owned()));
        }
        let partitions = self.partitions.lock().unwrap();
        let records = partitions
            .get(&(topic, partition))
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(records
            .iter()
            .skip(from as usize)
            .take(max)
            .cloned()
            .collect())
    }

    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError> {
        let partitions = self.partitions.lock().unwrap();
        Ok((0..PARTITIONS)
            .map(|p| partitions.get(&(topic, p)).map_or(0, |r| r.len() as u64))
            .collect())
    }

    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        _offset: u64,
        _timeout: Duration,
    ) -> Result<u64, LogError> {
        self.end_offsets_of(topic, partition).await
    }
}

fn event(n: usize) -> omnilog_events::Event {
    omnilog_events::parse_event(
        json!({
            "source": "test", "source_event_id": format!("e{n}"),
            "occurred_at": "2026-03-02T09:00:00Z",
            "customer": {"handles": [{"kind": "phone", "value": format!("+1555000{n:04}")}]},
            "interaction_id": format!("chat-{n}"), "channel": "chat",
            "type": "interaction_started", "direction": "inbound",
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
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
    let again = ingest.submit(vec![event(1)]).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1), "{again:?}");
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
    let again = ingest.submit(vec![event(1)]).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1), "{again:?}");
    assert!(log.copies().values().all(|&n| n == 1));
}
