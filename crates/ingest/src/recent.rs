//! The event ids ingest remembers, first in, first out (a million by default,
//! `IngestConfig::remembered_event_ids`): a redelivery of one of them resolves to the same
//! customer, and, once its position is known, is answered as a duplicate without being
//! appended again (the embedded log would refuse the copy anyway, and Kafka would store it
//! twice).
//!
//! # Layout
//!
//! The ids are kept in a ring, in the order they came: id number `n` in slot
//! `n % capacity`, the newest overwriting the oldest. A hash table finds an id's slot; each
//! of its entries is 8 bytes, the slot and the high 32 bits of the id's hash, so a probe
//! reads the ring only for an entry whose bits match (nearly always the id itself) and the
//! table grows without reading the ring.
//!
//! It was one `HashMap<Uuid, Remembered>` and a queue of the ids in order: 40-byte entries in
//! 2^21 buckets for a million ids, 84 MB probed at random three times for every event (to
//! look the id up, to add it, to evict the oldest), the largest leaf of a 1M load's server
//! (`perf record` of `benches/serve_load.py`, docs/benchmarks-journal.md). The ring is written in
//! turn; the table's 16 MB (and 2 MB of control bytes) take the probes.
//!
//! # Staged groups
//!
//! While a group is staged ([`RecentIds::stage`]) every change is recorded so that it can
//! be taken back ([`RecentIds::rollback_to`]) if the log refuses the group. The record is a
//! deque kept between groups: a vector dropped at each group's end and drained from the
//! front by [`RecentIds::keep_before`] was grown again, page by page, for every group.
//!
//! What the log says of a group that settled while later ones are still staged (where each
//! of its events is stored) is true whatever becomes of those later groups, but the record
//! is taken back newest first, by position, so a rollback to a later group's stage point
//! takes those facts back with it. They are kept beside the record
//! ([`RecentIds::remember_stored`]) and learnt again after such a rollback: taken back for
//! good, a redelivery of a stored event was appended again (stored twice on Kafka) and
//! folded twice into the identity view (found by review).

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use omnilog_views::identity::CustomerIdText;
use uuid::Uuid;

use crate::EventPosition;

/// What ingest remembers of a recent event id: the customer it was resolved to while it
/// is on its way to the log, then only where the log holds it. A redelivery is answered
/// from its position once there is one, so the customer is needed only before: kept for
/// every id, the million remembered ids held a string each and entries of 64 bytes (a
/// fifth of a 1M load's server memory with the log's own id map, whose doublings and page
/// faults were 4 % of its samples, `perf record`); as one or the other, an entry is 40
/// bytes and the strings go once the log has answered.
#[derive(Clone, Debug)]
pub(crate) enum Remembered {
    /// Resolved to this customer, not yet known to be in the log.
    Resolved(CustomerIdText),
    /// Where the log holds it: appended here, or seen in the log by the rebuild or the
    /// follower of other writers.
    Stored(EventPosition),
}

/// What ingest learns of an event id: the customer it resolved it to, or where the log
/// holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Learnt<'a> {
    ResolvedTo(&'a str),
    StoredAt(EventPosition),
}

/// A change made while a group is staged, as it is taken back.
#[derive(Debug)]
enum RecentUndo {
    /// An id was added as the newest; the oldest made room for it, if given.
    Inserted(Option<(Uuid, Remembered)>),
    /// An id learnt where the log holds it; it had been resolved to this customer.
    Stored(Uuid, CustomerIdText),
}

/// The ids ingest remembers. See the module documentation.
#[derive(Debug)]
pub(crate) struct RecentIds {
    capacity: usize,
    /// Id number `n` (and what is remembered of it) is in slot `n % capacity`; grown to
    /// the capacity as ids come.
    ring: Vec<(Uuid, Remembered)>,
    /// The number the next id takes. The ids remembered are the last `capacity` numbers
    /// before it ([`RecentIds::len`]): a rollback takes ids back newest first, so it only
    /// ever takes `next` back to where it was.
    next: u64,
    /// Each remembered id's slot (low 32 bits) and its hash's high 32 bits (high 32 bits).
    index: HashTable<u64>,
    /// Seeded per process; foldhash rather than SipHash, which was a visible part of
    /// ingest's CPU.
    hasher: foldhash::fast::RandomState,
    /// While a group is staged: how to take back each change.
    undo: VecDeque<RecentUndo>,
    /// Whether a group is staged: changes are recorded in `undo`.
    recording: bool,
    /// Changes dropped from the front of `undo` once kept ([`RecentIds::keep_before`]): a
    /// stage point counts every change since staging started.
    kept: usize,
    /// Where the log holds events, learnt while a group is staged, each with where the
    /// record stood when it was learnt (oldest first): learnt again after a rollback to a
    /// point before it, dropped once no staged group's point is before it.
    log_facts: VecDeque<(usize, Uuid, EventPosition)>,
}

/// The index entry of `slot` for an id whose hash has `high` as its high 32 bits.
fn index_entry(high: u64, slot: usize) -> u64 {
    (high << 32) | slot as u64
}

/// The slot an index entry names.
fn slot_of(entry: u64) -> usize {
    (entry & 0xffff_ffff) as usize
}

/// The hash the table files an entry under, from the entry alone: the id's 32 bits in the
/// low half (which pick the bucket) and again in the high half (whose top 7 bits the table
/// keeps as its control byte), so that growing the table reads no id.
fn table_hash(high: u64) -> u64 {
    high | (high << 32)
}

impl RecentIds {
    /// Remembers up to `capacity` ids (0: none; at most 2^32 - 1, as a slot is 32 bits).
    pub(crate) fn new(capacity: usize) -> Self {
        RecentIds {
            capacity: capacity.min(u32::MAX as usize),
            ring: Vec::new(),
            next: 0,
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            undo: VecDeque::new(),
            recording: false,
            kept: 0,
            log_facts: VecDeque::new(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ids remembered: the numbers `next - len` to `next - 1`.
    fn len(&self) -> usize {
        self.next.min(self.capacity as u64) as usize
    }

    /// The high 32 bits of `id`'s hash.
    fn high_bits(&self, id: &Uuid) -> u64 {
        self.hasher.hash_one(id) >> 32
    }

    /// The slot of `id`, if remembered.
    fn slot(&self, id: &Uuid, high: u64) -> Option<usize> {
        let ring = &self.ring;
        self.index
            .find(table_hash(high), |&entry| {
                entry >> 32 == high && ring[slot_of(entry)].0 == *id
            })
            .map(|&entry| slot_of(entry))
    }

    /// What is remembered of `id`.
    pub(crate) fn get(&self, id: &Uuid) -> Option<&Remembered> {
        if self.capacity == 0 {
            return None;
        }
        self.slot(id, self.high_bits(id))
            .map(|slot| &self.ring[slot].1)
    }

    fn index_slot(&mut self, high: u64, slot: usize) {
        self.index
            .insert_unique(table_hash(high), index_entry(high, slot), |&entry| {
                table_hash(entry >> 32)
            });
    }

    fn unindex_slot(&mut self, id: &Uuid, slot: usize) {
        let high = self.high_bits(id);
        let found = self
            .index
            .find_entry(table_hash(high), |&entry| slot_of(entry) == slot);
        debug_assert!(found.is_ok(), "every remembered id's slot is in the index");
        if let Ok(entry) = found {
            entry.remove();
        }
    }

    /// Learns of `event_id`: a new id is added as the newest (the oldest making room); a
    /// remembered one resolved and now stored keeps its position (the first copy's, which a
    /// duplicate answers with).
    pub(crate) fn remember(&mut self, event_id: Uuid, learnt: Learnt<'_>) {
        if self.capacity == 0 {
            return;
        }
        let high = self.high_bits(&event_id);
        if let Some(slot) = self.slot(&event_id, high) {
            let remembered = &mut self.ring[slot].1;
            if let (Remembered::Resolved(_), Learnt::StoredAt(stored)) = (&*remembered, learnt) {
                let Remembered::Resolved(resolved) =
                    std::mem::replace(remembered, Remembered::Stored(stored))
                else {
                    unreachable!("matched as resolved above")
                };
                if self.recording {
                    self.undo.push_back(RecentUndo::Stored(event_id, resolved));
                }
            }
            return;
        }
        let remembered = match learnt {
            Learnt::StoredAt(stored) => Remembered::Stored(stored),
            Learnt::ResolvedTo(customer) => Remembered::Resolved(customer.to_owned()),
        };
        let slot = (self.next % self.capacity as u64) as usize;
        // The slot holds the oldest id when every slot is taken; otherwise nothing, or what
        // a rollback left behind.
        let evicted = if self.len() == self.capacity {
            let oldest = std::mem::replace(&mut self.ring[slot], (event_id, remembered));
            self.unindex_slot(&oldest.0, slot);
            Some(oldest)
        } else {
            if slot < self.ring.len() {
                self.ring[slot] = (event_id, remembered);
            } else {
                self.ring.push((event_id, remembered));
            }
            None
        };
        self.index_slot(high, slot);
        self.next += 1;
        if self.recording {
            self.undo.push_back(RecentUndo::Inserted(evicted));
        }
    }

    /// Learns that the log holds `event_id` at `stored`: a fact no rollback takes back.
    pub(crate) fn remember_stored(&mut self, event_id: Uuid, stored: EventPosition) {
        if self.capacity == 0 {
            return;
        }
        if self.recording {
            self.log_facts
                .push_back((self.kept + self.undo.len(), event_id, stored));
        }
        self.remember(event_id, Learnt::StoredAt(stored));
    }

    /// Starts recording changes (or goes on recording); returns where the record stands.
    pub(crate) fn stage(&mut self) -> usize {
        self.recording = true;
        self.kept + self.undo.len()
    }

    /// Keeps every change and stops recording.
    pub(crate) fn keep(&mut self) {
        self.recording = false;
        self.undo.clear();
        self.kept = 0;
        self.log_facts.clear();
    }

    /// Keeps the changes made before `point` (a [`RecentIds::stage`] point) and goes on
    /// recording.
    pub(crate) fn keep_before(&mut self, point: usize) {
        if self.recording {
            let settled = point.saturating_sub(self.kept).min(self.undo.len());
            self.undo.drain(..settled);
            self.kept = self.kept.max(point);
            while self
                .log_facts
                .front()
                .is_some_and(|&(learnt_at, ..)| learnt_at < point)
            {
                self.log_facts.pop_front();
            }
        }
    }

    /// Takes back the changes recorded since the record held `to` of them, newest first.
    pub(crate) fn rollback_to(&mut self, to: usize) {
        if !self.recording {
            return;
        }
        while self.kept + self.undo.len() > to {
            match self.undo.pop_back() {
                Some(RecentUndo::Inserted(evicted)) => {
                    self.next -= 1;
                    let slot = (self.next % self.capacity as u64) as usize;
                    let newest = self.ring[slot].0;
                    self.unindex_slot(&newest, slot);
                    // Without an id evicted, the slot is no id's now; the next id
                    // overwrites it.
                    if let Some((oldest, remembered)) = evicted {
                        let high = self.high_bits(&oldest);
                        self.ring[slot] = (oldest, remembered);
                        self.index_slot(high, slot);
                    }
                }
                Some(RecentUndo::Stored(id, resolved)) => {
                    if let Some(slot) = self.slot(&id, self.high_bits(&id)) {
                        self.ring[slot].1 = Remembered::Resolved(resolved);
                    }
                }
                None => break,
            }
        }
        let taken_back = self
            .log_facts
            .iter()
            .position(|&(learnt_at, ..)| learnt_at >= to)
            .unwrap_or(self.log_facts.len());
        let facts: Vec<_> = self.log_facts.drain(taken_back..).collect();
        for (_, event_id, stored) in facts {
            self.remember_stored(event_id, stored);
        }
    }

    /// The remembered ids, oldest first.
    #[cfg(test)]
    fn ids(&self) -> Vec<Uuid> {
        let capacity = self.capacity as u64;
        (self.next - self.len() as u64..self.next)
            .map(|number| self.ring[(number % capacity) as usize].0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Learnt, RecentIds, Remembered};
    use crate::EventPosition;
    use omnilog_log::Topic;
    use uuid::Uuid;

    fn position(offset: u64) -> EventPosition {
        EventPosition {
            topic: Topic::Interactions,
            partition: 3,
            offset,
            duplicate: true,
        }
    }

    fn resolved_to<'a>(recent: &'a RecentIds, id: &Uuid) -> Option<&'a str> {
        match recent.get(id) {
            Some(Remembered::Resolved(customer)) => Some(customer),
            _ => None,
        }
    }

    fn stored_at(recent: &RecentIds, id: &Uuid) -> Option<EventPosition> {
        match recent.get(id) {
            Some(Remembered::Stored(position)) => Some(*position),
            _ => None,
        }
    }

    #[test]
    fn a_remembered_id_is_forty_bytes_and_keeps_its_customer_only_until_stored() {
        assert_eq!(size_of::<(Uuid, Remembered)>(), 40);
        let mut recent = RecentIds::new(2);
        let (first, second, third) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        recent.remember(first, Learnt::ResolvedTo("c1"));
        assert_eq!(resolved_to(&recent, &first), Some("c1"));
        recent.remember(first, Learnt::StoredAt(position(7)));
        assert_eq!(stored_at(&recent, &first), Some(position(7)));
        recent.remember(first, Learnt::StoredAt(position(9)));
        assert_eq!(
            stored_at(&recent, &first),
            Some(position(7)),
            "the first copy's position stays"
        );

        // Staged changes are taken back: a position learnt, an id added, one evicted.
        recent.remember(second, Learnt::ResolvedTo("c2"));
        assert_eq!(recent.stage(), 0);
        recent.remember(second, Learnt::StoredAt(position(8)));
        recent.remember(third, Learnt::ResolvedTo("c3"));
        assert!(recent.get(&first).is_none(), "the oldest made room");
        assert_eq!(recent.ids(), [second, third]);
        recent.rollback_to(0);
        assert_eq!(resolved_to(&recent, &second), Some("c2"));
        assert_eq!(stored_at(&recent, &first), Some(position(7)));
        assert!(recent.get(&third).is_none());
        assert_eq!(recent.ids(), [first, second]);
    }

    /// A group that settles while a later one is staged learns where the log holds its
    /// events; the later group's refusal takes its own changes back, not those facts (they
    /// were taken back with it, newest first, found by review).
    #[test]
    fn where_a_settled_group_is_stored_outlives_a_later_groups_rollback() {
        let mut recent = RecentIds::new(3);
        let (settled, agent, later) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        recent.stage();
        recent.remember(settled, Learnt::ResolvedTo("c1"));
        let later_group = recent.stage();
        recent.remember(later, Learnt::ResolvedTo("c3"));
        // The first group settles: its id is stored, and an agent event (remembered only
        // once stored) is added.
        recent.keep_before(later_group);
        recent.remember_stored(settled, position(4));
        recent.remember_stored(agent, position(5));
        assert_eq!(recent.ids(), [settled, later, agent]);
        // The later group is refused.
        recent.rollback_to(later_group);
        assert_eq!(stored_at(&recent, &settled), Some(position(4)));
        assert_eq!(stored_at(&recent, &agent), Some(position(5)));
        assert!(recent.get(&later).is_none());
        assert_eq!(recent.ids(), [settled, agent]);
        recent.keep();
        assert!(recent.log_facts.is_empty());
    }

    /// Against a plain model (a queue of ids and what each is remembered as), through adds
    /// (resolved or stored), resolutions learnt stored, evictions, stages, partial and whole
    /// keeps and rollbacks: many short runs from empty (rollbacks before the ring is full,
    /// slots left behind by them) and long ones (around the ring many times).
    #[test]
    fn the_ring_remembers_what_a_queue_and_a_map_would() {
        use std::collections::{HashMap, VecDeque};
        #[derive(Clone, Debug, PartialEq)]
        enum Known {
            Resolved(String),
            Stored(u64),
        }
        type Model = (VecDeque<Uuid>, HashMap<Uuid, Known>);
        let mut seed = 7u64;
        let mut random = move |below: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % below
        };
        let (mut rollbacks, mut partial_keeps) = (0, 0);
        for run in 0..300u64 {
            let capacity = 1 + random(6) as usize;
            let steps = if run % 10 == 0 { 500 } else { 12 };
            let mut recent = RecentIds::new(capacity);
            let mut model: Model = (VecDeque::new(), HashMap::new());
            // The model at each stage point not yet kept, to roll back to.
            let mut points: Vec<(usize, Model)> = Vec::new();
            for step in 0..steps {
                match random(12) {
                    0 | 1 => {
                        let point = recent.stage();
                        points.push((point, model.clone()));
                    }
                    2 if !points.is_empty() => {
                        let pick = random(points.len() as u64) as usize;
                        let (point, earlier) = points.swap_remove(pick);
                        points.retain(|(other, _)| *other < point);
                        recent.rollback_to(point);
                        model = earlier;
                        rollbacks += 1;
                    }
                    3 if !points.is_empty() => {
                        let point = points[random(points.len() as u64) as usize].0;
                        recent.keep_before(point);
                        points.retain(|(other, _)| *other >= point);
                        partial_keeps += 1;
                    }
                    4 => {
                        recent.keep();
                        points.clear();
                    }
                    choice => {
                        // Ids from a small range, so that some come again.
                        let id = Uuid::from_u128(u128::from(random(10)));
                        let learnt = if choice % 2 == 0 {
                            Learnt::StoredAt(position(step))
                        } else {
                            Learnt::ResolvedTo("c")
                        };
                        recent.remember(id, learnt);
                        let (order, known) = &mut model;
                        match known.get_mut(&id) {
                            Some(was @ Known::Resolved(_)) => {
                                if let Learnt::StoredAt(stored) = learnt {
                                    *was = Known::Stored(stored.offset);
                                }
                            }
                            Some(Known::Stored(_)) => {}
                            None => {
                                if order.len() == capacity {
                                    let oldest = order.pop_front().expect("full");
                                    known.remove(&oldest);
                                }
                                order.push_back(id);
                                let remembered = match learnt {
                                    Learnt::StoredAt(stored) => Known::Stored(stored.offset),
                                    Learnt::ResolvedTo(customer) => {
                                        Known::Resolved(customer.to_owned())
                                    }
                                };
                                known.insert(id, remembered);
                            }
                        }
                    }
                }
                let (order, known) = &model;
                let at = format!("run {run}, step {step}");
                assert_eq!(recent.ids(), Vec::from(order.clone()), "{at}");
                assert_eq!(recent.index.len(), order.len(), "{at}");
                for id in 0..10u128 {
                    let id = Uuid::from_u128(id);
                    let remembered = recent.get(&id).map(|remembered| match remembered {
                        Remembered::Resolved(customer) => Known::Resolved(customer.clone()),
                        Remembered::Stored(position) => Known::Stored(position.offset),
                    });
                    assert_eq!(remembered.as_ref(), known.get(&id), "{at}");
                }
            }
        }
        assert!(
            rollbacks > 100 && partial_keeps > 100,
            "{rollbacks} rollbacks, {partial_keeps} partial keeps"
        );
    }
}
