//! [`BlindTable`]: a table the fold writes and never reads.
//!
//! Some of a view's records are derived for queries alone: the journey view's index from
//! an interaction id to its customers, and each journey's facts for the journeys report.
//! The fold writes them blind (nothing of theirs decides a fold), so nothing needs to find
//! one of them in memory by its key while folding. Held in a [`super::CachedTable`], each
//! write was a slot of a hash map (two ids hashed, a shared allocation for the record), each
//! checkpoint marked it clean, and letting it go hashed its key again into the set of keys
//! the store holds. The journey view's interaction index alone cost a 1M replay 7 % of its
//! CPU that way: an experiment that skipped its writes took 2,181 ms of CPU against
//! 2,342 ms, nine alternated rounds (docs/benchmarks-journal.md, "2026-12-06, evening").
//!
//! A blind table keeps its writes in a list, in the order written. A checkpoint takes the
//! list whole (one shared allocation for all of it); the table holds what checkpoints took
//! until the runtime lets clean records go, so that a query scanning between a checkpoint's
//! taking and the store's write still finds them (as a cached table keeps its clean slots).
//!
//! Each key is written once between two checkpoints: a snapshot holds each key once
//! ([`super::Snapshot::encode_in_order`]), and the store's ingestion refuses a key that
//! does not ascend. The journey
//! view writes an interaction's index entry when the customer's record first holds the
//! interaction, and a journey's facts once per checkpoint (its [`super::StaleMark`]); debug
//! builds check it at each checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    Entries, Evictable, KEY_HEAP_BYTES, Key, Placed, Record, RecordSource, Snapshot, SnapshotPart,
    decode_key, decode_value, encode_onto, encode_value, scan_over, stored_key,
};
use crate::ViewError;

/// A table of records the fold writes and never reads. See the module documentation.
#[derive(Clone, Debug)]
pub struct BlindTable<K: Key, V: Record> {
    tag: u8,
    /// Written since the last checkpoint, in the order written.
    written: Vec<(K, V)>,
    /// What checkpoints took, oldest first, until the runtime lets clean records go.
    taken: Vec<Arc<Vec<(K, V)>>>,
    /// Records read from a store or another node into a state assembled for a query: older
    /// than anything written here.
    restored: Vec<(K, V)>,
}

impl<K: Key, V: Record> BlindTable<K, V> {
    pub fn new(tag: u8) -> Self {
        BlindTable {
            tag,
            written: Vec::new(),
            taken: Vec::new(),
            restored: Vec::new(),
        }
    }

    /// Writes a record (see the module documentation: once per key between checkpoints).
    pub fn insert(&mut self, key: K, value: V) {
        self.written.push((key, value));
    }

    /// Puts a stored record in memory (a state assembled for a query); an absence is
    /// nothing to hold.
    pub fn restore(&mut self, stored: &[u8], value: Option<&[u8]>) -> Result<(), ViewError> {
        let Some(value) = value else {
            return Ok(());
        };
        let key: K = decode_key(stored)?;
        let value: V = decode_value(stored, value)?;
        self.restored.push((key, value));
        Ok(())
    }

    /// The records written since the last call, to encode (see [`Snapshot`]); they stay
    /// visible to queries until let go.
    pub fn take_changes(&mut self) -> Snapshot {
        if self.written.is_empty() {
            return Snapshot::default();
        }
        let taken = Arc::new(std::mem::take(&mut self.written));
        debug_assert!(
            {
                let mut keys: Vec<&K> = taken.iter().map(|(key, _)| key).collect();
                keys.sort();
                keys.windows(2).all(|pair| pair[0] != pair[1])
            },
            "a blind table's key was written twice between two checkpoints"
        );
        self.taken.push(Arc::clone(&taken));
        Snapshot {
            parts: vec![Box::new(BlindSnapshot {
                tag: self.tag,
                entries: taken,
            })],
        }
    }

    /// Records in memory (written, taken by a checkpoint and not let go, restored).
    pub fn len(&self) -> usize {
        self.written.len()
            + self.taken.iter().map(|taken| taken.len()).sum::<usize>()
            + self.restored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every record in memory, oldest first: restored, taken, written.
    fn in_memory(&self) -> impl Iterator<Item = &(K, V)> {
        self.restored
            .iter()
            .chain(self.taken.iter().flat_map(|taken| taken.iter()))
            .chain(&self.written)
    }

    /// Every record whose stored key starts with `prefix`, from the store and from memory,
    /// the newest of a key winning; in stored-key order.
    pub fn scan(&self, prefix: &[u8], source: &dyn RecordSource) -> Result<Vec<(K, V)>, ViewError> {
        let in_memory = self
            .in_memory()
            .map(|(key, value)| Ok((stored_key(self.tag, key)?, Some(value))));
        scan_over(prefix, source, in_memory)
    }

    /// Every record in memory, encoded as stored, each key once (the newest).
    pub fn dump(&self, out: &mut Entries) -> Result<(), ViewError> {
        let mut newest: BTreeMap<Vec<u8>, &V> = BTreeMap::new();
        for (key, value) in self.in_memory() {
            newest.insert(stored_key(self.tag, key)?, value);
        }
        for (stored, value) in newest {
            out.push((stored, encode_value(value)?));
        }
        Ok(())
    }

    /// Lets go of what checkpoints took (the store has it) and what was restored.
    fn let_go_clean(&mut self) {
        self.taken.clear();
        self.restored.clear();
    }
}

impl<K: Key, V: Record> Evictable for BlindTable<K, V> {
    /// Each record at its size in memory and the heap a key or record holds, about.
    fn weight(&self) -> usize {
        self.len() * (size_of::<(K, V)>() + KEY_HEAP_BYTES)
    }

    /// The fold never needs one of its records.
    fn holds_everything(&self) -> bool {
        true
    }

    /// Lets every clean record go: the fold never reads them, whatever the budget.
    fn evict(&mut self, _budget: usize) {
        self.let_go_clean();
    }

    fn partition_done(&mut self, let_go: bool) {
        if let_go {
            self.let_go_clean();
        }
    }

    /// Nothing to ask the store for: the fold never reads this table.
    fn store_may_hold_anything(&mut self) {}
}

/// A [`BlindTable`]'s part of a [`Snapshot`]: the records a checkpoint took, shared with
/// the table until it lets them go.
struct BlindSnapshot<K, V> {
    tag: u8,
    entries: Arc<Vec<(K, V)>>,
}

impl<K: Key, V: Record> SnapshotPart for BlindSnapshot<K, V> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn keys(&self, part: usize, into: &mut Vec<Placed>) -> Result<(), ViewError> {
        for (item, (key, _)) in self.entries.iter().enumerate() {
            into.push(Placed::new(stored_key(self.tag, key)?, part, item));
        }
        Ok(())
    }

    fn value(&self, item: usize, _key_len: usize) -> Result<Option<Vec<u8>>, ViewError> {
        self.entries
            .get(item)
            .map(|(_, value)| encode_value(value))
            .transpose()
    }

    fn value_into(
        &self,
        item: usize,
        _key_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, ViewError> {
        let Some((_, value)) = self.entries.get(item) else {
            return Ok(false);
        };
        encode_onto(value, out)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Id, NoRecords};

    fn table() -> BlindTable<(Id, Id), u32> {
        BlindTable::new(b'x')
    }

    fn key(interaction: &str, customer: &str) -> (Id, Id) {
        (Id::from(interaction), Id::from(customer))
    }

    #[test]
    fn a_checkpoint_takes_what_was_written_in_key_order_and_queries_see_it_until_let_go() {
        let mut table = table();
        table.insert(key("i-2", "c-1"), 2);
        table.insert(key("i-1", "c-9"), 1);
        let changes = table.take_changes().encode().unwrap();
        let expected = vec![
            (
                stored_key(b'x', &key("i-1", "c-9")).unwrap(),
                encode_value(&1u32).unwrap(),
            ),
            (
                stored_key(b'x', &key("i-2", "c-1")).unwrap(),
                encode_value(&2u32).unwrap(),
            ),
        ];
        assert_eq!(changes.puts, expected);
        assert!(changes.deletes.is_empty());
        // Taken, not yet let go: a scan still finds it, and the next checkpoint has nothing.
        let prefix = stored_key(b'x', &"i-1".to_owned()).unwrap();
        assert_eq!(
            table.scan(&prefix, &NoRecords).unwrap(),
            vec![(key("i-1", "c-9"), 1)]
        );
        assert!(table.take_changes().is_empty());
        table.evict(usize::MAX);
        assert!(table.scan(&prefix, &NoRecords).unwrap().is_empty());
        assert!(table.is_empty());
    }

    #[test]
    fn the_newest_of_a_key_wins_in_scans_and_dumps() {
        let mut table = table();
        let mut stored = Vec::new();
        let mut old = table.clone();
        old.insert(key("i-1", "c-1"), 1);
        old.dump(&mut stored).unwrap();
        table.restore(&stored[0].0, Some(&stored[0].1)).unwrap();
        table.insert(key("i-1", "c-1"), 2);
        let _ = table.take_changes();
        table.insert(key("i-1", "c-1"), 3);
        let mut dumped = Vec::new();
        table.dump(&mut dumped).unwrap();
        assert_eq!(
            dumped,
            vec![(stored[0].0.clone(), encode_value(&3u32).unwrap())]
        );
        assert_eq!(
            table.scan(b"x", &NoRecords).unwrap(),
            vec![(key("i-1", "c-1"), 3)]
        );
    }

    #[test]
    fn records_written_since_the_last_checkpoint_stay_when_clean_ones_go() {
        let mut table = table();
        table.insert(key("i-1", "c-1"), 1);
        let _ = table.take_changes();
        table.insert(key("i-2", "c-1"), 2);
        table.partition_done(true);
        assert_eq!(table.len(), 1);
        assert!(table.weight() > 0);
        assert!(table.holds_everything());
        let changes = table.take_changes().encode().unwrap();
        assert_eq!(changes.puts.len(), 1);
    }
}
