//! Events that a refused append may have stored: "in doubt".
//!
//! A log that could not confirm every record of an append (Kafka: a delivery that timed
//! out, or one librdkafka reports by inference) refuses the whole group, and ingest takes
//! the group's decisions back and answers 503 `write-unconfirmed`. Some of its records may
//! be stored all the same. Kafka keeps no index of event ids, so a client's retry would
//! store those a second time, and every view would count them twice.
//!
//! The log says what became of each record ([`omnilog_log::RecordFate`]): stored at a
//! position, or in doubt, in a partition from an offset on (where that partition was known
//! to end before the record was sent). Ingest holds each here, in doubt from that offset
//! (a stored record's own). Before it stages a group naming an event in doubt, it reads the
//! partition where that event would be, from that offset to the partition's end now
//! ([`look_for`]), looking for every event in doubt there, not only the group's: those
//! found are folded into the identity view (the refusal took their claims back), known
//! here by their position ([`Known::Found`]) and answered as duplicates;
//! the group's events not found are appended like new ones; the others' doubt starts
//! at the end read, so that no part of a partition is read twice for them. The reads
//! happen only for events in doubt, so a desk that never sees a refusal never pays for
//! them.
//!
//! What it cannot see: a record librdkafka still delivers after it reported the delivery
//! failed and after the re-sent copy was looked for; a re-send to another ingest server,
//! or to this one after a restart (doubts live in memory) or after the doubt was
//! forgotten ([`DOUBT_KEPT`], or more than [`MOST_DOUBTS`] doubts since).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use omnilog_log::{EventLog, LogError, LogRecord, Topic};
use uuid::Uuid;

use crate::EventPosition;

/// How long an event stays in doubt (or known where it was found) after its refusal: a
/// client retries within seconds or minutes. Forgotten, the map is empty again, and the
/// sequencer's groups pay nothing for it.
pub(crate) const DOUBT_KEPT: Duration = Duration::from_secs(3600);

/// The most events held in doubt (about 100 bytes each): a long outage's refusals beyond
/// that forget the oldest.
pub(crate) const MOST_DOUBTS: usize = 100_000;

/// Where an event in doubt would be, if it was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Doubt {
    pub topic: Topic,
    pub partition: u32,
    /// Not stored below this offset.
    pub from: u64,
}

/// What is known of an event a refused append may have stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// Not looked for yet (or not found up to `from`).
    Doubt(Doubt),
    /// Found in the log there: a re-send is a duplicate.
    Found(EventPosition),
}

/// The events in doubt, forgotten after [`DOUBT_KEPT`] and, past the capacity, oldest
/// first.
#[derive(Debug)]
pub(crate) struct InDoubt {
    capacity: usize,
    /// What is known of each id, and the number it was noted under (its place in `order`).
    by_id: HashMap<Uuid, (Known, u64), foldhash::fast::RandomState>,
    /// Ids in the order they were noted, with their numbers and when: an id removed or
    /// noted again leaves its old entry here, passed over when it comes up.
    order: VecDeque<(Uuid, u64, Instant)>,
    noted: u64,
}

impl InDoubt {
    /// Holds at most `capacity` events (at most [`MOST_DOUBTS`]; 0: none).
    pub(crate) fn new(capacity: usize) -> Self {
        InDoubt {
            capacity: capacity.min(MOST_DOUBTS),
            by_id: HashMap::default(),
            order: VecDeque::new(),
            noted: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<Known> {
        self.by_id.get(id).map(|(known, _)| *known)
    }

    /// Notes what is known of `id` (again: the latest counts, and is kept from now).
    pub(crate) fn note(&mut self, id: Uuid, known: Known, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        self.noted += 1;
        self.by_id.insert(id, (known, self.noted));
        self.order.push_back((id, self.noted, now));
        while self.by_id.len() > self.capacity {
            if !self.forget_oldest() {
                break;
            }
        }
        // Entries left behind by removals are dropped once they outnumber the live ones.
        if self.order.len() > 2 * self.by_id.len() + 1024 {
            let by_id = &self.by_id;
            self.order
                .retain(|(id, number, _)| by_id.get(id).is_some_and(|(_, noted)| noted == number));
        }
    }

    /// Forgets what was noted more than [`DOUBT_KEPT`] before `now`.
    pub(crate) fn forget_old(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, _, at)| now.duration_since(*at) > DOUBT_KEPT)
        {
            self.forget_oldest();
        }
    }

    /// Forgets the oldest entry of `order` (its id too, unless noted again since).
    fn forget_oldest(&mut self) -> bool {
        let Some((oldest, number, _)) = self.order.pop_front() else {
            return false;
        };
        if self
            .by_id
            .get(&oldest)
            .is_some_and(|(_, noted)| *noted == number)
        {
            self.by_id.remove(&oldest);
        }
        true
    }

    /// No longer in doubt (about to be appended).
    pub(crate) fn remove(&mut self, id: &Uuid) {
        self.by_id.remove(id);
    }

    /// The events in doubt in each of `partitions`, with the lowest offset any of them could
    /// be at: what [`look_for`] reads.
    pub(crate) fn wanted_in(&self, partitions: &HashSet<(Topic, u32)>) -> Wanted {
        let mut wanted = Wanted::new();
        for (id, (known, _)) in &self.by_id {
            let Known::Doubt(doubt) = known else {
                continue;
            };
            if !partitions.contains(&(doubt.topic, doubt.partition)) {
                continue;
            }
            let partition = wanted
                .entry((doubt.topic, doubt.partition))
                .or_insert_with(|| (doubt.from, HashSet::new()));
            partition.0 = partition.0.min(doubt.from);
            partition.1.insert(*id);
        }
        wanted
    }

    /// Learns what a look found: where the events found are; the others were not stored
    /// below the ends read, so their doubt starts there.
    pub(crate) fn learn(&mut self, looked: &Looked) {
        for (id, (known, _)) in self.by_id.iter_mut() {
            match known {
                Known::Doubt(doubt) => {
                    if let Some(record) = looked.found.get(id) {
                        *known = Known::Found(stored_at(record));
                    } else if let Some(&end) = looked.ends.get(&(doubt.topic, doubt.partition)) {
                        doubt.from = doubt.from.max(end);
                    }
                }
                Known::Found(_) => {}
            }
        }
    }
}

/// Per partition: the lowest offset to read from, and the events to look for.
pub(crate) type Wanted = HashMap<(Topic, u32), (u64, HashSet<Uuid>)>;

/// What a look found: the record of each event found (the first copy), and each
/// partition's end read to.
#[derive(Debug, Default)]
pub(crate) struct Looked {
    pub found: HashMap<Uuid, LogRecord>,
    pub ends: HashMap<(Topic, u32), u64>,
}

/// Where the log holds `record`, as a duplicate of it is answered.
fn stored_at(record: &LogRecord) -> EventPosition {
    EventPosition {
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        duplicate: true,
    }
}

/// Records read at once while looking.
const LOOK_BATCH: usize = 2_000;

/// Reads each partition of `wanted` from its offset to its end now, and returns where the
/// events it names are (the first copy of each) and the ends read to.
pub(crate) async fn look_for(log: &dyn EventLog, wanted: Wanted) -> Result<Looked, LogError> {
    let mut looked = Looked::default();
    for ((topic, partition), (from, ids)) in wanted {
        let end = log.end_offsets_of(topic, partition).await?;
        let mut from = from;
        let mut found_here = 0;
        // Until the end, or until every event wanted here is found.
        while from < end && found_here < ids.len() {
            let records =
                omnilog_log::read_before_end(log, topic, partition, from, LOOK_BATCH).await?;
            let Some(last) = records.last().map(|record| record.offset) else {
                break;
            };
            for record in records {
                if ids.contains(&record.event_id) && !looked.found.contains_key(&record.event_id) {
                    found_here += 1;
                    looked.found.insert(record.event_id, record);
                }
            }
            from = last + 1;
        }
        // Read to `end`, or stopped early with every event found: either way none is
        // left to look for below `end`.
        looked.ends.insert((topic, partition), end);
    }
    Ok(looked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doubt(from: u64) -> Known {
        Known::Doubt(Doubt {
            topic: Topic::Interactions,
            partition: 1,
            from,
        })
    }

    #[test]
    fn past_its_capacity_the_oldest_doubt_is_forgotten() {
        let now = Instant::now();
        let mut in_doubt = InDoubt::new(2);
        let ids: Vec<Uuid> = (1..=3).map(Uuid::from_u128).collect();
        in_doubt.note(ids[0], doubt(1), now);
        in_doubt.note(ids[1], doubt(2), now);
        // Noted again: now the newest, so the other one goes first.
        in_doubt.note(ids[0], doubt(5), now);
        in_doubt.note(ids[2], doubt(3), now);
        assert_eq!(in_doubt.get(&ids[1]), None);
        assert_eq!(in_doubt.get(&ids[0]), Some(doubt(5)));
        assert_eq!(in_doubt.get(&ids[2]), Some(doubt(3)));
        in_doubt.remove(&ids[0]);
        assert_eq!(in_doubt.by_id.len(), 1);
    }

    #[test]
    fn doubts_are_forgotten_once_kept_their_time() {
        let start = Instant::now();
        let mut in_doubt = InDoubt::new(10);
        in_doubt.note(Uuid::from_u128(1), doubt(1), start);
        in_doubt.note(Uuid::from_u128(2), doubt(1), start + DOUBT_KEPT / 2);
        in_doubt.forget_old(start + DOUBT_KEPT);
        assert!(!in_doubt.is_empty());
        in_doubt.forget_old(start + DOUBT_KEPT + Duration::from_secs(1));
        assert_eq!(in_doubt.get(&Uuid::from_u128(1)), None);
        assert_eq!(in_doubt.get(&Uuid::from_u128(2)), Some(doubt(1)));
        in_doubt.forget_old(start + 2 * DOUBT_KEPT);
        assert!(in_doubt.is_empty());
    }

    #[test]
    fn a_look_finds_some_and_moves_the_others_doubt_to_the_end_read() {
        let now = Instant::now();
        let mut in_doubt = InDoubt::new(10);
        let (found, absent) = (Uuid::from_u128(1), Uuid::from_u128(2));
        in_doubt.note(found, doubt(3), now);
        in_doubt.note(absent, doubt(4), now);
        let wanted = in_doubt.wanted_in(&HashSet::from([(Topic::Interactions, 1)]));
        assert_eq!(
            wanted.get(&(Topic::Interactions, 1)),
            Some(&(3, HashSet::from([found, absent])))
        );
        let record = LogRecord {
            topic: Topic::Interactions,
            partition: 1,
            offset: 6,
            key: bytes::Bytes::new(),
            event_id: found,
            payload: bytes::Bytes::new(),
            headers: Vec::new(),
        };
        let position = stored_at(&record);
        in_doubt.learn(&Looked {
            found: HashMap::from([(found, record)]),
            ends: HashMap::from([((Topic::Interactions, 1), 9)]),
        });
        assert_eq!(in_doubt.get(&found), Some(Known::Found(position)));
        assert_eq!(in_doubt.get(&absent), Some(doubt(9)));
    }
}
