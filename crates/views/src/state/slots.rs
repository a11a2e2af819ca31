//! A cached table's slots: a hash table of (key, slot) pairs whose places (bucket indices)
//! a fold may remember, and the memory of those places by the number the decoder gave an
//! event's customer ([`omnilog_events::CustomerNumber`]).
//!
//! Every view that keeps a record per customer found it by hashing the customer's id (36
//! bytes) and probing its map for each event: about 170 instructions a lookup (`valgrind
//! --tool=callgrind --separate-threads=yes omnilog replay` of the 200k history), for each
//! of the journey, segments and engagement views. A customer's events come many to a pass,
//! and the decoder numbers the customers it decodes, so a table remembers where the slot of
//! each number is and goes there directly. A remembered place is only a hint: a table whose
//! slots moved (grown, rehashed) or went (let go) holds another key there, or none, so the
//! key at the place is compared with the key looked up before the slot is used; a hint
//! that fails costs the lookup by key it would have spared, and the place found then is
//! remembered instead. Whatever the numbers, a lookup finds the key's own slot.
//!
//! Memory: a table remembers at most `omnilog_events::numbering::MOST_NUMBERED` places,
//! four bytes each (256 KiB), outside its budget, as a decoding thread's numbering (about
//! 7.5 MB of ids when full: `omnilog_events::numbering::MOST_NUMBERED` says how) is outside
//! every budget. What numbers saved: 1,758.8M to 1,736.8M instructions of the 200k replay,
//! about 2 % of a 1M replay's CPU and 1 % of its wall (docs/benchmarks-journal.md,
//! "2026-12-07, afternoon", with the commands).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::HashTable;
use omnilog_events::CustomerNumber;

/// The slots of a table: keys and their slots in one hash table.
#[derive(Clone, Debug)]
pub(super) struct SlotMap<K, S> {
    table: HashTable<(K, S)>,
    hasher: foldhash::fast::RandomState,
}

impl<K, S> Default for SlotMap<K, S> {
    fn default() -> Self {
        SlotMap {
            table: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<K: Hash + Eq, S> SlotMap<K, S> {
    pub(super) fn hasher(&self) -> &foldhash::fast::RandomState {
        &self.hasher
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(super) fn capacity(&self) -> usize {
        self.table.capacity()
    }

    pub(super) fn shrink_to_fit(&mut self) {
        let hasher = &self.hasher;
        self.table.shrink_to_fit(|(key, _)| hasher.hash_one(key));
    }

    fn hash_of<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(super) fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&S>
    where
        K: Borrow<Q>,
    {
        self.table
            .find(self.hash_of(key), |(k, _)| k.borrow() == key)
            .map(|(_, slot)| slot)
    }

    pub(super) fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut S>
    where
        K: Borrow<Q>,
    {
        let hash = self.hash_of(key);
        self.table
            .find_mut(hash, |(k, _)| k.borrow() == key)
            .map(|(_, slot)| slot)
    }

    pub(super) fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Puts a slot under a key the table does not hold (the caller knows it).
    pub(super) fn insert_new(&mut self, key: K, slot: S) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&key);
        self.table
            .insert_unique(hash, (key, slot), |(k, _)| hasher.hash_one(k));
    }

    /// The place of `key`'s slot, made by `make` (with the key it is kept under) if there is
    /// none: `None` when there is none and `make` makes none. Probes as a map's `get` does
    /// when the key is there (an entry would first make room for one more, and could grow
    /// the table for a key it holds).
    pub(super) fn find_or_make<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
        make: impl FnOnce() -> Option<(K, S)>,
    ) -> Option<usize>
    where
        K: Borrow<Q>,
    {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        match self.table.find_entry(hash, |(k, _)| k.borrow() == key) {
            Ok(found) => Some(found.bucket_index()),
            Err(absent) => Some(
                absent
                    .into_table()
                    .insert_unique(hash, make()?, |(k, _)| hasher.hash_one(k))
                    .bucket_index(),
            ),
        }
    }

    /// The slot of `key`, made by `make` if there is none.
    pub(super) fn find_or_insert(&mut self, key: K, make: impl FnOnce() -> S) -> &mut S {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&key);
        let entry = match self.table.find_entry(hash, |(k, _)| *k == key) {
            Ok(found) => found,
            Err(absent) => absent
                .into_table()
                .insert_unique(hash, (key, make()), |(k, _)| hasher.hash_one(k)),
        };
        &mut entry.into_mut().1
    }

    /// Whether the slot at `place` is `key`'s.
    pub(super) fn holds_at<Q: Eq + ?Sized>(&self, place: usize, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.table
            .get_bucket(place)
            .is_some_and(|(k, _)| k.borrow() == key)
    }

    /// The slot at `place`, if one is there.
    pub(super) fn at_mut(&mut self, place: usize) -> Option<&mut S> {
        self.table.get_bucket_mut(place).map(|(_, slot)| slot)
    }

    /// Takes `key`'s slot out if `remove` says so.
    pub(super) fn remove_if<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
        remove: impl FnOnce(&S) -> bool,
    ) -> Option<S>
    where
        K: Borrow<Q>,
    {
        let hash = self.hash_of(key);
        let entry = self
            .table
            .find_entry(hash, |(k, _)| k.borrow() == key)
            .ok()?;
        if !remove(&entry.get().1) {
            return None;
        }
        Some(entry.remove().0.1)
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&K, &mut S) -> bool) {
        self.table.retain(|(key, slot)| keep(key, slot));
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &S)> {
        self.table.iter().map(|(key, slot)| (key, slot))
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut S)> {
        self.table.iter_mut().map(|(key, slot)| (&*key, slot))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &S> {
        self.table.iter().map(|(_, slot)| slot)
    }
}

/// The places of slots by customer number, within one numbering at a time. A copy of a
/// table starts remembering nothing (its places would do, but a copy is rare and need not
/// be fast).
#[derive(Debug, Default)]
pub(super) struct Places {
    numbering: u32,
    /// By number: the place plus one (0: not known).
    places: Vec<u32>,
}

impl Clone for Places {
    fn clone(&self) -> Self {
        Places::default()
    }
}

impl Places {
    /// The place remembered for `number`.
    pub(super) fn of(&self, number: CustomerNumber) -> Option<usize> {
        let (numbering, number) = number.parts()?;
        if numbering != self.numbering {
            return None;
        }
        match self.places.get(number as usize) {
            Some(&place) if place > 0 => Some(place as usize - 1),
            _ => None,
        }
    }

    /// Remembers `place` for `number`; a number of another numbering first forgets the
    /// places of the one before.
    pub(super) fn remember(&mut self, number: CustomerNumber, place: usize) {
        let Some((numbering, number)) = number.parts() else {
            return;
        };
        let (number, Ok(place)) = (number as usize, u32::try_from(place + 1)) else {
            return;
        };
        if number >= omnilog_events::numbering::MOST_NUMBERED {
            return;
        }
        if numbering != self.numbering {
            self.numbering = numbering;
            self.places.clear();
        }
        if self.places.len() <= number {
            self.places.resize(number + 1, 0);
        }
        self.places[number] = place;
    }
}
