//! The state a view folds into: typed records in memory, in tables, updated in place by the
//! fold and read directly by queries.
//!
//! A table remembers which of its records changed since the last checkpoint; the runtime
//! takes those changes ([`ViewState::take_changes`]), encoded, and writes them to the view
//! store together with the log positions they came from, in one atomic write. Nothing here
//! does IO: the runtime reads and writes the store, and gives queries a [`RecordSource`] for
//! what is not in memory.
//!
//! Three kinds of table:
//! - [`Table`]: every record in memory; the whole table is read from the store when a view
//!   starts. For state that stays small whatever the history's length (what waits in
//!   queues now, the agents, hourly report figures). Its entries are in a B-tree (ordered,
//!   for ranges), a hash map ([`HashedTable`], looked up by key only) or both
//!   ([`IndexedTable`]: found by hash, ranged by a B-tree of the keys).
//! - [`CachedTable`]: records are brought into memory when the fold needs them (the runtime
//!   loads what [`crate::View::missing`] names before folding a batch, so the fold itself
//!   never waits on a disk) and let go, least recently used first, once they are written
//!   and memory is over its budget. For state that grows with the history (a customer's
//!   journeys). Queries read through to the store for a record not in memory. A record is
//!   weighed against the budget by an estimate of its size in memory: its map entry, and
//!   three bytes for each byte of its last encoding (`MEMORY_PER_ENCODED_BYTE`).
//! - [`BlindTable`]: records the fold writes and never reads (an index, a report's facts),
//!   kept as a list of writes until their checkpoint is written (`state/blind.rs`).
//!
//! Hash maps hash with foldhash, seeded at random so that ids chosen to collide cannot slow a
//! fold down; no result depends on a map's order (dumps and changes are sorted).
//!
//! Encoding: a stored key is the table's tag byte followed by the key in postcard, whose
//! strings are length-prefixed, so no two keys encode alike whatever bytes they hold (a NUL
//! in an id cannot make one record look like another). Values are postcard too:
//! deterministic for the same value, so a view rebuilt from offset 0 stores the same bytes as
//! the live one. Records hold no `HashMap` and no floats, whose bytes could depend on the
//! order of folding.

use hashbrown::hash_map::EntryRef;
use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ViewError;
use omnilog_events::CustomerNumber;

mod blind;
mod slots;

pub use blind::BlindTable;

/// Entries of a dump or a scan: (stored key, stored value), in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What a table's key must be.
pub trait Key:
    Serialize + DeserializeOwned + Ord + Hash + Clone + Debug + Send + Sync + 'static
{
}
impl<T: Serialize + DeserializeOwned + Ord + Hash + Clone + Debug + Send + Sync + 'static> Key
    for T
{
}

/// A table key made from the borrowed form it is looked up by: a record made by a
/// lookup that found none is kept under it.
pub trait OwnKey<Q: ?Sized>: Borrow<Q> {
    fn own(borrowed: &Q) -> Self;
}

impl<K: Clone> OwnKey<K> for K {
    fn own(borrowed: &K) -> K {
        borrowed.clone()
    }
}

impl OwnKey<str> for String {
    fn own(borrowed: &str) -> String {
        borrowed.to_owned()
    }
}

impl OwnKey<str> for Id {
    fn own(borrowed: &str) -> Id {
        Id::from(borrowed)
    }
}

/// A customer's or an interaction's id as a key of a view's maps: up to 36 bytes (a UUID's
/// text) are kept in the map's own memory, in 48 bytes, where a `String` takes 24 and an
/// allocation of its own (48 more with jemalloc, as with mimalloc before it), made and
/// freed for every key a fold inserts and a replay lets go. It hashes, compares and encodes
/// as the same text in a `String` does, so stored records and keys are unchanged. (The
/// replay's time moved within its noise, its peak a little: `docs/benchmarks-journal.md`,
/// "2026-12-02".)
///
/// A newtype for its `Clone`, which copies the bytes at once: `SmallString`'s clones them
/// one at a time (`smallvec` clones a slice element by element), about 130 instructions an
/// id, 69M of the reporting worker's and 34M of the journey's in `valgrind --tool=callgrind
/// --separate-threads=yes omnilog replay` of 1M events.
///
/// It compares as its text does (byte by byte), eight bytes at a time ([`IdKey`]).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Id(smallstr::SmallString<[u8; 36]>);

/// As its [`IdKey`] does: as `str` hashes, so as a `&str` lookup does.
impl Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Id {}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

/// An id borrowed for a lookup in a map keyed by [`Id`] (`map.get_mut(IdKey::new(text))`):
/// it compares as [`Id`] does, eight bytes at a time, where a lookup by `&str` compares as
/// `str` does, through a call to `memcmp` for every key it passes. A customer's
/// interactions and contacts are looked up by their ids at nearly every event, in maps of a
/// few to a few dozen ids that mostly share a long prefix (`chat-1-00000049`): those
/// comparisons were about 4 % of a replay's instructions (82M of 1,960M, `valgrind
/// --tool=callgrind --separate-threads=yes omnilog replay` of the 200k history; see
/// docs/benchmarks-journal.md).
#[derive(Debug, ref_cast::RefCast)]
#[repr(transparent)]
pub struct IdKey(str);

impl IdKey {
    pub fn new(text: &str) -> &IdKey {
        <IdKey as ref_cast::RefCast>::ref_cast(text)
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &IdKey) -> bool {
        same_bytes(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for IdKey {}

impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &IdKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdKey {
    fn cmp(&self, other: &IdKey) -> std::cmp::Ordering {
        compare_bytes(self.0.as_bytes(), other.0.as_bytes())
    }
}

/// As `str` hashes, so as [`Id`] does (a `Borrow` must hash as what it borrows from).
impl Hash for IdKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Borrow<IdKey> for Id {
    fn borrow(&self) -> &IdKey {
        self.key()
    }
}

/// Eight bytes of `bytes` from `at`, the first the most significant: two such words
/// compare as their bytes do, one after the other.
#[inline]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

/// `a` against `b` byte by byte, as `<[u8]>::cmp` orders them, eight bytes at a time: the
/// last word of the common part overlaps the one before it, whose bytes were equal, so
/// its first differing byte is still the first of the two texts'.
#[inline]
fn compare_bytes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let common = a.len().min(b.len());
    if common >= 8 {
        let mut at = 0;
        while at + 8 < common {
            let (x, y) = (word_at(a, at), word_at(b, at));
            if x != y {
                return x.cmp(&y);
            }
            at += 8;
        }
        let (x, y) = (word_at(a, common - 8), word_at(b, common - 8));
        if x != y {
            return x.cmp(&y);
        }
    } else {
        for at in 0..common {
            if a[at] != b[at] {
                return a[at].cmp(&b[at]);
            }
        }
    }
    a.len().cmp(&b.len())
}

/// Whether `a` and `b` are the same bytes, compared as [`compare_bytes`] does.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && compare_bytes(a, b) == std::cmp::Ordering::Equal
}

impl Id {
    /// The empty id: the least of all, where a range of keys starts.
    pub fn new() -> Id {
        Id(smallstr::SmallString::new())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The id as its lookup key, which compares and hashes for it.
    fn key(&self) -> &IdKey {
        IdKey::new(self.as_str())
    }

    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl Default for Id {
    fn default() -> Id {
        Id::new()
    }
}

impl Clone for Id {
    fn clone(&self) -> Id {
        Id::from(self.as_str())
    }
}

impl From<&str> for Id {
    fn from(text: &str) -> Id {
        Id(smallstr::SmallString::from_str(text))
    }
}

impl From<&String> for Id {
    fn from(text: &String) -> Id {
        Id::from(text.as_str())
    }
}

impl std::ops::Deref for Id {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Id {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

/// A map inside a record that holds a few entries (a customer's attributes, its contacts
/// by interaction): one sorted vector of exactly its entries. A `BTreeMap` allocates a node
/// of eleven slots for its first entry, so a customer's facts with three small maps took
/// kilobytes for a few dozen bytes of entries, and the cache's weight (estimated from the
/// encoded size) fell far short of the memory its records took. It encodes as a
/// `BTreeMap` does (a map, in key order), so stored records are unchanged. Insertion
/// moves the entries after the new one: for maps that stay small.
pub type SmallMap<K, V> = litemap::LiteMap<K, V>;

/// A mark a record carries in memory only (`#[serde(skip)]`): that something derived from
/// the record (another table's entries) is out of date until the state's changes are
/// taken. No part of what the record is, so two records that differ only in it are equal.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StaleMark(bool);

impl StaleMark {
    /// Marks the record stale; true when it was not yet, so that the caller lists it once.
    pub fn set(&mut self) -> bool {
        !std::mem::replace(&mut self.0, true)
    }

    /// Marks it in step again (its derived entries just written).
    pub fn clear(&mut self) {
        self.0 = false;
    }
}

impl PartialEq for StaleMark {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for StaleMark {}

/// What a table's record must be.
pub trait Record: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static> Record for T {}

/// The records to write and delete at a checkpoint: stored keys and values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub deletes: Vec<Vec<u8>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// About how many bytes the encoded changes take.
    pub fn weight(&self) -> usize {
        let puts: usize = self.puts.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
        let deletes: usize = self.deletes.iter().map(|k| k.len() + 24).sum();
        puts + deletes
    }

    /// Several sets of changes, oldest first, as one set in stored-key order: where two
    /// touch a key, the newer put or delete is the one kept.
    pub fn in_order(sets: Vec<Changes>) -> Changes {
        let mut sets: Vec<Changes> = sets.into_iter().filter(|set| !set.is_empty()).collect();
        if sets.len() <= 1 {
            return sets.pop().unwrap_or_default();
        }
        let mut entries: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            Vec::with_capacity(sets.iter().map(Changes::len).sum());
        for changes in sets {
            entries.extend(changes.puts.into_iter().map(|(k, v)| (k, Some(v))));
            entries.extend(changes.deletes.into_iter().map(|k| (k, None)));
        }
        // Stable (and quick over the sorted runs the sets are): of equal keys the newer
        // comes last, and is the one kept.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut merged = Changes::default();
        let mut entries = entries.into_iter().peekable();
        while let Some((key, value)) = entries.next() {
            if entries.peek().is_some_and(|(next, _)| *next == key) {
                continue;
            }
            match value {
                Some(value) => merged.puts.push((key, value)),
                None => merged.deletes.push(key),
            }
        }
        merged
    }
}

/// One change in stored-key order: its stored key and record (`None` for a deletion).
pub type EncodedChange = Result<(Vec<u8>, Option<Vec<u8>>), ViewError>;

impl Changes {
    /// The changes of a run in stored-key order (about `puts` of them puts), as a set:
    /// its first error, if any.
    pub fn from_run(
        run: impl Iterator<Item = EncodedChange>,
        puts: usize,
    ) -> Result<Changes, ViewError> {
        let mut changes = Changes::default();
        changes.puts.reserve(puts);
        for change in run {
            match change? {
                (key, Some(record)) => changes.puts.push((key, record)),
                (key, None) => changes.deletes.push(key),
            }
        }
        Ok(changes)
    }

    /// The changes as one run in stored-key order, given puts and deletes each in key
    /// order (as [`Snapshot::encode`] and [`Changes::in_order`] make them).
    pub fn into_run(self) -> Run {
        Box::new(self.into_pairs().map(Ok))
    }

    /// [`Changes::into_run`]'s changes.
    fn into_pairs(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> + Send {
        let mut puts = self.puts.into_iter().peekable();
        let mut deletes = self.deletes.into_iter().peekable();
        std::iter::from_fn(move || match (puts.peek(), deletes.peek()) {
            (Some((put, _)), Some(delete)) if delete < put => deletes.next().map(|k| (k, None)),
            (Some(_), _) => puts.next().map(|(k, v)| (k, Some(v))),
            (None, _) => deletes.next().map(|k| (k, None)),
        })
    }
}

/// Runs of changes, oldest first, each in stored-key order with each key once, as one run
/// in stored-key order, each key once: where several touch a key, the newest is kept (what
/// [`Changes::in_order`] gives, without building it). A replay's last checkpoint merges
/// the changes its passes encoded ahead (in memory or in run files) with its own, which are
/// encoded only as the merge reaches them ([`Snapshot::encode_in_order`]): merged whole, at
/// 10M events the reporting view's hourly figures were about 60 MB of encodings at the
/// replay's peak (`heaptrack`).
pub fn merge_runs(runs: Vec<Run>) -> MergeInOrder {
    merge_runs_by(runs, None)
}

/// Adds a delta (an encoded record) to a sum (an encoded record of the same key): see
/// [`ViewState::add_sum`].
pub type AddSum = fn(key: &[u8], sum: &mut Vec<u8>, delta: &[u8]) -> Result<(), ViewError>;

/// Runs of deltas of sums (no deletions), each in stored-key order with each key once, as
/// one run in stored-key order, each key once, with the deltas of a key added up by `add`:
/// what a replay that wrote its sums apart ([`ViewState::take_sums`]) writes last.
pub fn sum_runs(runs: Vec<Run>, add: AddSum) -> MergeInOrder {
    merge_runs_by(runs, Some(add))
}

fn merge_runs_by(runs: Vec<Run>, add: Option<AddSum>) -> MergeInOrder {
    let mut merge = MergeInOrder {
        values: vec![None; runs.len()],
        runs,
        heads: std::collections::BinaryHeap::new(),
        failed: None,
        add,
    };
    for run in 0..merge.runs.len() {
        merge.refill(run);
    }
    merge
}

/// A run of changes in stored-key order, each key once.
pub type Run = Box<dyn Iterator<Item = EncodedChange> + Send>;

/// The iterator of [`merge_runs`] and [`sum_runs`].
pub struct MergeInOrder {
    runs: Vec<Run>,
    /// The key at the head of each run, smallest first; of equal keys, the oldest run
    /// first.
    heads: std::collections::BinaryHeap<std::cmp::Reverse<(Vec<u8>, usize)>>,
    /// The record at the head of each run.
    values: Vec<Option<Vec<u8>>>,
    /// A run failed: the merge ends with its error.
    failed: Option<ViewError>,
    /// Adds the records of a key instead of keeping the newest ([`sum_runs`]).
    add: Option<AddSum>,
}

impl Debug for MergeInOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeInOrder")
            .field("runs", &self.runs.len())
            .finish()
    }
}

impl MergeInOrder {
    fn refill(&mut self, run: usize) {
        match self.runs[run].next() {
            Some(Ok((key, value))) => {
                self.values[run] = value;
                self.heads.push(std::cmp::Reverse((key, run)));
            }
            Some(Err(error)) => self.failed = Some(error),
            None => {}
        }
    }
}

impl Iterator for MergeInOrder {
    type Item = EncodedChange;

    fn next(&mut self) -> Option<EncodedChange> {
        if let Some(error) = self.failed.take() {
            self.heads.clear();
            return Some(Err(error));
        }
        let std::cmp::Reverse((key, mut newest)) = self.heads.pop()?;
        let mut value = self.values[newest].take();
        self.refill(newest);
        while self
            .heads
            .peek()
            .is_some_and(|std::cmp::Reverse((next, _))| *next == key)
        {
            let std::cmp::Reverse((_, run)) = self.heads.pop()?;
            let newer = self.values[run].take();
            if let Some(add) = self.add {
                let (Some(sum), Some(delta)) = (value.as_mut(), newer.as_deref()) else {
                    self.heads.clear();
                    return Some(Err(ViewError::Corrupt {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        reason: "a deletion among the deltas of a sum".to_owned(),
                    }));
                };
                if let Err(error) = add(&key, sum, delta) {
                    self.heads.clear();
                    return Some(Err(error));
                }
            } else if run > newest {
                (newest, value) = (run, newer);
            }
            self.refill(run);
        }
        // A run that failed while this key was gathered may have held more of it.
        if let Some(error) = self.failed.take() {
            self.heads.clear();
            return Some(Err(error));
        }
        Some(Ok((key, value)))
    }
}

/// The view store as a query or a load sees it: stored records by stored key.
pub trait RecordSource {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError>;

    /// Every stored entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Entries, ViewError>;

    /// Told of a stored record a query could not decode (damaged on disk, say). The query
    /// passes over it and answers with the rest: one bad record never fails every query
    /// that reads near it. The store behind a source logs it and counts it where operators
    /// look (`GET /v1/views`); the default forgets it.
    fn unreadable(&self, _key: &[u8], _error: &ViewError) {}
}

/// A source with nothing in it: for a state that is wholly in memory (tests, benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRecords;

impl RecordSource for NoRecords {
    fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(None)
    }

    fn scan(&self, _prefix: &[u8]) -> Result<Entries, ViewError> {
        Ok(Vec::new())
    }
}

fn encoding_failed(what: &str, error: postcard::Error) -> ViewError {
    ViewError::Corrupt {
        key: what.to_owned(),
        reason: format!("cannot encode: {error}"),
    }
}

/// The stored key of `key` in the table tagged `tag`.
pub fn stored_key<K: Serialize + ?Sized>(tag: u8, key: &K) -> Result<Vec<u8>, ViewError> {
    // Sized once: from one byte, the vector grew twice per key (for the length, then for
    // the id), 800 instructions a key in `valgrind --tool=callgrind omnilog replay`.
    let size =
        postcard::experimental::serialized_size(key).map_err(|e| encoding_failed("a key", e))?;
    let mut out = Vec::with_capacity(1 + size);
    out.push(tag);
    postcard::to_io(key, &mut out).map_err(|e| encoding_failed("a key", e))?;
    Ok(out)
}

pub(crate) fn encode_value<V: Serialize>(value: &V) -> Result<Vec<u8>, ViewError> {
    postcard::to_stdvec(value).map_err(|e| encoding_failed("a record", e))
}

/// Appends the postcard encoding of a record to `out`. Through `to_io` because postcard's
/// `Extend` flavor copies strings a byte at a time (a fifth of the checkpoints' CPU in `perf
/// record --call-graph dwarf omnilog replay` of 10M events); `io::Write` for a vector copies
/// slices.
fn encode_onto<V: Serialize>(value: &V, out: &mut Vec<u8>) -> Result<(), ViewError> {
    postcard::to_io(value, out).map_err(|e| encoding_failed("a record", e))?;
    Ok(())
}

/// The size of a record's encoding, found by a walk over it that copies nothing.
fn encoded_size<V: Serialize>(value: &V) -> Result<usize, ViewError> {
    postcard::experimental::serialized_size(value).map_err(|e| encoding_failed("a record", e))
}

fn decode_key<K: DeserializeOwned>(stored: &[u8]) -> Result<K, ViewError> {
    postcard::from_bytes(stored.get(1..).unwrap_or_default()).map_err(|e| ViewError::Corrupt {
        key: String::from_utf8_lossy(stored).into_owned(),
        reason: format!("the key does not decode: {e}"),
    })
}

/// Decodes a stored record (`key` names it in the error).
pub fn decode_value<V: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<V, ViewError> {
    postcard::from_bytes(bytes).map_err(|e| ViewError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// Sets a record's text to `value`, in place: a fold that sets the same value again (an
/// attribute two thirds of the events carry, in the segments and engagement views) makes
/// no new string.
pub(crate) fn set_text(current: &mut String, value: &str) {
    if current != value {
        current.clear();
        current.push_str(value);
    }
}

/// The hash map of cached tables (and of other state keyed by ids).
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The changes a checkpoint took under the state's lock, to encode after it is released.
///
/// A table holds its records behind `Arc`s, and a snapshot shares the changed ones instead
/// of encoding them in place: taking a checkpoint costs the fold (and the queries, which
/// wait on the same lock) a pass over the changed keys, not the encoding of every changed
/// record. A record the fold changes while its snapshot is being encoded is copied then
/// (`Arc::make_mut`), so the snapshot keeps the state as it was at the checkpoint's
/// positions.
#[derive(Default)]
pub struct Snapshot {
    parts: Vec<Box<dyn SnapshotPart>>,
}

impl Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("records", &self.len())
            .finish()
    }
}

impl Snapshot {
    /// Records written or deleted.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|part| part.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds another snapshot's changes (of other tables) to this one.
    pub fn merge(&mut self, other: Snapshot) {
        self.parts.extend(other.parts);
    }

    /// The changes, encoded, in stored-key order (cheaper for the store to write).
    pub fn encode(self) -> Result<Changes, ViewError> {
        let in_order = self.encode_in_order()?;
        let len = in_order.len();
        Changes::from_run(in_order, len)
    }

    /// The changes in stored-key order, each record encoded only as it is asked for: what a
    /// bulk checkpoint streams into the store's disk tables. Only the keys are encoded
    /// ahead (to sort them), so the checkpoint never holds the encoded copy of every
    /// changed record beside the records themselves: a 10M-event replay's checkpoints of
    /// the journey view take 100,000 to 150,000 customers' records at once.
    pub fn encode_in_order(self) -> Result<EncodingInOrder, ViewError> {
        let mut placed = Vec::with_capacity(self.len());
        for (at, part) in self.parts.iter().enumerate() {
            part.keys(at, &mut placed)?;
        }
        let order = Placed::sorted(&placed);
        Ok(EncodingInOrder {
            parts: self.parts,
            placed,
            order: order.into_iter(),
        })
    }
}

/// Where a stored key's change is in a [`Snapshot`]: which part, which of its items.
struct Placed {
    key: Vec<u8>,
    part: usize,
    item: usize,
}

/// A [`Placed`] key as it is sorted: its first sixteen bytes, zero-padded, as two
/// big-endian integers (integers compare as the byte strings they start; a shorter key
/// padded with zeros ties with a longer one only where the key itself breaks the tie), and
/// where the whole key is. Twenty-four bytes, where a `Placed` with its head was sixty-four:
/// a sort moves its elements many times over (the checkpoints' sorts of a 1M replay were
/// 180M instructions in `valgrind --tool=callgrind`).
#[derive(Clone, Copy)]
struct SortKey {
    high: u64,
    low: u64,
    at: u32,
}

impl Placed {
    fn new(key: Vec<u8>, part: usize, item: usize) -> Self {
        Placed { key, part, item }
    }

    fn sort_key(&self, at: usize) -> SortKey {
        let mut head = [0u8; 16];
        let len = self.key.len().min(head.len());
        head[..len].copy_from_slice(&self.key[..len]);
        let head = u128::from_be_bytes(head);
        SortKey {
            high: (head >> 64) as u64,
            low: head as u64,
            // A snapshot holds far fewer than 2^32 changes (a checkpoint's are bounded by
            // memory); `sorted` refuses more rather than wrap.
            at: at as u32,
        }
    }

    /// The indices of `placed` in stored-key order. Most keys differ within their first
    /// sixteen bytes (a tag, a length, the start of an id): compared as integers first,
    /// they are ordered without a call to `memcmp` each (the sorts of a 200k-event
    /// replay's checkpoints took 33.1M instructions instead of 42.7M in `valgrind
    /// --tool=callgrind omnilog replay`).
    fn sorted(placed: &[Placed]) -> Vec<usize> {
        assert!(
            u32::try_from(placed.len()).is_ok(),
            "a snapshot of more than 2^32 changes"
        );
        let mut order: Vec<SortKey> = placed
            .iter()
            .enumerate()
            .map(|(at, each)| each.sort_key(at))
            .collect();
        order.sort_unstable_by(|a, b| {
            (a.high, a.low)
                .cmp(&(b.high, b.low))
                .then_with(|| placed[a.at as usize].key.cmp(&placed[b.at as usize].key))
        });
        order.into_iter().map(|each| each.at as usize).collect()
    }
}

/// A snapshot's changes in stored-key order, encoded one at a time
/// ([`Snapshot::encode_in_order`]): stored keys, with the encoded record (`None` for a
/// deletion). A snapshot holds each key once (each table its own tag, each record once).
pub struct EncodingInOrder {
    parts: Vec<Box<dyn SnapshotPart>>,
    /// The changes as their parts gave them; each key is taken when its change is encoded.
    placed: Vec<Placed>,
    /// Indices into `placed`, in stored-key order.
    order: std::vec::IntoIter<usize>,
}

impl Debug for EncodingInOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodingInOrder")
            .field("left", &self.len())
            .finish()
    }
}

impl EncodingInOrder {
    /// Changes left.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next change's stored key (taken from its place), part and item.
    fn take_next(&mut self) -> Option<(Vec<u8>, usize, usize)> {
        let placed = &mut self.placed[self.order.next()?];
        Some((std::mem::take(&mut placed.key), placed.part, placed.item))
    }

    /// The next change appended to `out`: its stored key, then its record encoded right
    /// after it. Gives the key's length and whether a record follows it (none for a
    /// deletion); `None` at the end.
    ///
    /// For a writer that buffers what it writes (a replay's change runs): each record is
    /// encoded once, where it is written. Through [`Iterator::next`] it was measured by a
    /// walk over it, encoded into a vector of its own and copied into the writer's buffer:
    /// the four partition-local views' pass-end encoding took 166.0M instructions instead
    /// of 139.5M (`valgrind --tool=callgrind --separate-threads=yes omnilog replay` of the
    /// 200k history, `docs/benchmarks-journal.md`).
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Option<Result<(usize, bool), ViewError>> {
        let (key, part, item) = self.take_next()?;
        out.extend_from_slice(&key);
        Some(
            self.parts[part]
                .value_into(item, key.len(), out)
                .map(|put| (key.len(), put)),
        )
    }
}

impl Iterator for EncodingInOrder {
    type Item = Result<(Vec<u8>, Option<Vec<u8>>), ViewError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (key, part, item) = self.take_next()?;
        Some(
            self.parts[part]
                .value(item, key.len())
                .map(|value| (key, value)),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.order.size_hint()
    }
}

/// One table's part of a [`Snapshot`].
trait SnapshotPart: Send {
    fn len(&self) -> usize;

    /// The stored key of each change, placed as part `part`: its puts first, then its
    /// deletions.
    fn keys(&self, part: usize, into: &mut Vec<Placed>) -> Result<(), ViewError>;

    /// The encoded record of change `item` (`None` for a deletion); `key_len` is its
    /// stored key's length (the record's size in store is reported back with it).
    fn value(&self, item: usize, key_len: usize) -> Result<Option<Vec<u8>>, ViewError>;

    /// [`SnapshotPart::value`] appended to `out` instead: true when a record was appended,
    /// false for a deletion (nothing appended).
    fn value_into(&self, item: usize, key_len: usize, out: &mut Vec<u8>)
    -> Result<bool, ViewError>;
}

/// What a table's snapshot holds of a record: the record, or (for a cached table) the
/// record with the cell its encoded size is reported to.
trait Shared<V>: Send + Sync + 'static {
    fn value(&self) -> &V;

    fn encoded(&self, _size: usize) {}
}

impl<V: Record> Shared<V> for Arc<V> {
    fn value(&self) -> &V {
        self
    }
}

struct TableSnapshot<K, V, S> {
    tag: u8,
    puts: Vec<(K, S)>,
    deletes: Vec<K>,
    _record: std::marker::PhantomData<fn() -> V>,
}

impl<K: Key, V: Record, S: Shared<V>> SnapshotPart for TableSnapshot<K, V, S> {
    fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    fn keys(&self, part: usize, into: &mut Vec<Placed>) -> Result<(), ViewError> {
        let keys = self.puts.iter().map(|(key, _)| key).chain(&self.deletes);
        for (item, key) in keys.enumerate() {
            into.push(Placed::new(stored_key(self.tag, key)?, part, item));
        }
        Ok(())
    }

    /// Into a vector of the record's exact size, measured first: written into a warm scratch
    /// buffer and copied out, each byte was copied twice, and for the journey's customer
    /// records, whose timelines are long buffers, that copy was most of the checkpoints'
    /// encoding (`perf record -F 49 --call-graph dwarf,16384 omnilog replay` of 10M events:
    /// 3.6 % of the CPU in `memcpy` under the encoding).
    fn value(&self, item: usize, key_len: usize) -> Result<Option<Vec<u8>>, ViewError> {
        let Some((_, shared)) = self.puts.get(item) else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(encoded_size(shared.value())?);
        self.value_into(item, key_len, &mut bytes)?;
        Ok(Some(bytes))
    }

    fn value_into(
        &self,
        item: usize,
        key_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, ViewError> {
        let Some((_, shared)) = self.puts.get(item) else {
            return Ok(false);
        };
        let start = out.len();
        encode_onto(shared.value(), out)?;
        shared.encoded(key_len + out.len() - start);
        Ok(true)
    }
}

impl<K: Key, V: Record, S: Shared<V>> TableSnapshot<K, V, S> {
    fn new(tag: u8) -> Self {
        TableSnapshot {
            tag,
            puts: Vec::new(),
            deletes: Vec::new(),
            _record: std::marker::PhantomData,
        }
    }

    fn into_snapshot(self) -> Snapshot {
        if self.puts.is_empty() && self.deletes.is_empty() {
            return Snapshot::default();
        }
        Snapshot {
            parts: vec![Box::new(self)],
        }
    }
}

/// A record of a [`Table`] with its bookkeeping, kept beside it so a change costs no
/// second lookup: a deleted record stays as a tombstone (`value: None`) until the next
/// checkpoint writes the deletion.
#[derive(Clone, Debug)]
pub struct Entry<V> {
    value: Option<Arc<V>>,
    /// Written or deleted since the last checkpoint.
    changed: bool,
    /// The store holds a version of it (so a deletion must be written).
    stored: bool,
}

impl<V> Entry<V> {
    fn vacant() -> Self {
        Entry {
            value: None,
            changed: false,
            stored: false,
        }
    }
}

/// How a [`Table`] holds its entries: a `BTreeMap` (ordered, for tables that queries read
/// by range), a hash map ([`HashedTable`], for tables only looked up by key, where a
/// B-tree's key comparisons cost a fold several times what one hash does), or both
/// ([`IndexedTable`], for tables the fold looks up and queries range over).
pub trait RecordMap<K: Key, V: Record>: Default + Clone + Debug + Send + Sync + 'static {
    /// Entries in no particular order (in key order for an ordered map).
    type Iter<'a>: Iterator<Item = (&'a K, &'a Entry<V>)>
    where
        Self: 'a;

    fn find<Q: Ord + Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&Entry<V>>
    where
        K: Borrow<Q>;

    fn find_mut<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut Entry<V>>
    where
        K: Borrow<Q>;

    /// The entry of `key`, vacant if there was none.
    fn entry_of(&mut self, key: K) -> &mut Entry<V>;

    fn put(&mut self, key: K, entry: Entry<V>) -> Option<Entry<V>>;

    fn delete<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>;

    /// Takes the entry of `key` out, with its key.
    fn take_entry<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<(K, Entry<V>)>
    where
        K: Borrow<Q>;

    fn keep(&mut self, keep: impl FnMut(&K, &mut Entry<V>) -> bool);

    fn entries(&self) -> Self::Iter<'_>;
}

/// Implements [`RecordMap`] for a standard map whose methods have the same names.
macro_rules! record_map {
    ($map:ident, $iter:ty) => {
        impl<K: Key, V: Record> RecordMap<K, V> for $map<K, Entry<V>> {
            type Iter<'a> = $iter;

            fn find<Q: Ord + Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&Entry<V>>
            where
                K: Borrow<Q>,
            {
                self.get(key)
            }

            fn find_mut<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut Entry<V>>
            where
                K: Borrow<Q>,
            {
                self.get_mut(key)
            }

            fn entry_of(&mut self, key: K) -> &mut Entry<V> {
                self.entry(key).or_insert_with(Entry::vacant)
            }

            fn put(&mut self, key: K, entry: Entry<V>) -> Option<Entry<V>> {
                self.insert(key, entry)
            }

            fn delete<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q)
            where
                K: Borrow<Q>,
            {
                self.remove(key);
            }

            fn take_entry<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<(K, Entry<V>)>
            where
                K: Borrow<Q>,
            {
                self.remove_entry(key)
            }

            fn keep(&mut self, keep: impl FnMut(&K, &mut Entry<V>) -> bool) {
                self.retain(keep);
            }

            fn entries(&self) -> Self::Iter<'_> {
                self.iter()
            }
        }
    };
}

record_map!(BTreeMap, std::collections::btree_map::Iter<'a, K, Entry<V>>);
record_map!(HashedMap, hashbrown::hash_map::Iter<'a, K, Entry<V>>);

/// A [`HashedTable`]'s entries: hashbrown's map, for its `entry_ref`, which finds or makes
/// an entry by a borrowed key in one lookup ([`HashedTable::get_or_insert_with_borrowed`]).
pub type HashedMap<K, E> = hashbrown::HashMap<K, E, foldhash::fast::RandomState>;

/// A table wholly in memory, ordered by key unless it is a [`HashedTable`]. See the module
/// documentation.
#[derive(Clone, Debug)]
pub struct Table<K: Key, V: Record, M: RecordMap<K, V> = BTreeMap<K, Entry<V>>> {
    tag: u8,
    records: M,
    /// Records (live or deleted) changed since the last checkpoint.
    changed: usize,
    /// Live records.
    live: usize,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

/// A [`Table`] looked up by key only: no `range`, and `iter` in no particular order.
pub type HashedTable<K, V> = Table<K, V, HashedMap<K, Entry<V>>>;

impl<K: Key, V: Record> HashedTable<K, V> {
    /// The record, created with `make` if there is none, to change in place: one lookup,
    /// and the key is made from `key` only for a new record. The queue's fold took each
    /// interaction's record out of its table and put it back, two lookups and an `Arc` made
    /// and freed for every event it folds.
    pub fn get_or_insert_with_borrowed<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
        make: impl FnOnce() -> V,
    ) -> &mut V
    where
        K: OwnKey<Q>,
    {
        let entry = match self.records.entry_ref(key) {
            EntryRef::Occupied(entry) => entry.into_mut(),
            EntryRef::Vacant(vacant) => vacant.insert_with_key(K::own(key), Entry::vacant()),
        };
        Self::mark(&mut self.changed, entry);
        if entry.value.is_none() {
            self.live += 1;
        }
        Arc::make_mut(entry.value.get_or_insert_with(|| Arc::new(make())))
    }
}

/// A [`Table`] the fold looks up by key and queries read by range: its entries in a hash
/// map, and its keys in a B-tree as well. For the reports' hourly sums, which nearly every
/// event adds to and rarely makes anew: looked up in a B-tree of `(hour, channel, queue)`
/// keys, those additions were a third of the reporting worker's instructions
/// (`valgrind --tool=callgrind --separate-threads=yes omnilog replay` of 1M events).
pub type IndexedTable<K, V> = Table<K, V, IndexedMap<K, Entry<V>>>;

/// [`IndexedTable`]'s entries: found by hash, ordered by a B-tree of their keys, which
/// changes only when a key comes or goes.
#[derive(Clone, Debug)]
pub struct IndexedMap<K, E> {
    entries: FastMap<K, E>,
    order: std::collections::BTreeSet<K>,
}

impl<K, E> Default for IndexedMap<K, E> {
    fn default() -> Self {
        IndexedMap {
            entries: FastMap::default(),
            order: std::collections::BTreeSet::new(),
        }
    }
}

/// [`IndexedMap`]'s entries in key order.
#[derive(Debug)]
pub struct IndexedIter<'a, K, E> {
    keys: std::collections::btree_set::Iter<'a, K>,
    entries: &'a FastMap<K, E>,
}

impl<'a, K: Hash + Eq, E> Iterator for IndexedIter<'a, K, E> {
    type Item = (&'a K, &'a E);

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.keys.next()?;
        self.entries.get_key_value(key)
    }
}

impl<K: Key, V: Record> RecordMap<K, V> for IndexedMap<K, Entry<V>> {
    type Iter<'a> = IndexedIter<'a, K, Entry<V>>;

    fn find<Q: Ord + Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&Entry<V>>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key)
    }

    fn find_mut<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut Entry<V>>
    where
        K: Borrow<Q>,
    {
        self.entries.get_mut(key)
    }

    fn entry_of(&mut self, key: K) -> &mut Entry<V> {
        match self.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                self.order.insert(entry.key().clone());
                entry.insert(Entry::vacant())
            }
        }
    }

    fn put(&mut self, key: K, entry: Entry<V>) -> Option<Entry<V>> {
        match self.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut held) => {
                Some(std::mem::replace(held.get_mut(), entry))
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                self.order.insert(vacant.key().clone());
                vacant.insert(entry);
                None
            }
        }
    }

    fn delete<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if self.entries.remove(key).is_some() {
            self.order.remove(key);
        }
    }

    fn take_entry<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<(K, Entry<V>)>
    where
        K: Borrow<Q>,
    {
        let taken = self.entries.remove_entry(key)?;
        self.order.remove(key);
        Some(taken)
    }

    fn keep(&mut self, mut keep: impl FnMut(&K, &mut Entry<V>) -> bool) {
        let mut gone = Vec::new();
        self.entries.retain(|key, entry| {
            let kept = keep(key, entry);
            if !kept {
                gone.push(key.clone());
            }
            kept
        });
        for key in &gone {
            self.order.remove(key);
        }
    }

    fn entries(&self) -> Self::Iter<'_> {
        IndexedIter {
            keys: self.order.iter(),
            entries: &self.entries,
        }
    }
}

impl<K: Key, V: Record, M: RecordMap<K, V>> Table<K, V, M> {
    pub fn new(tag: u8) -> Self {
        Table {
            tag,
            records: M::default(),
            changed: 0,
            live: 0,
            _types: std::marker::PhantomData,
        }
    }

    pub fn tag(&self) -> u8 {
        self.tag
    }

    fn mark(changed: &mut usize, entry: &mut Entry<V>) {
        if !entry.changed {
            entry.changed = true;
            *changed += 1;
        }
    }

    pub fn get<Q: Ord + Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.records
            .find(key)
            .and_then(|entry| entry.value.as_deref())
    }

    /// The record, to change in place: it is written at the next checkpoint.
    pub fn get_mut<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let entry = self.records.find_mut(key)?;
        entry.value.as_ref()?;
        Self::mark(&mut self.changed, entry);
        entry.value.as_mut().map(Arc::make_mut)
    }

    /// The record, created with `make` if there is none, to change in place.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let entry = self.records.entry_of(key);
        Self::mark(&mut self.changed, entry);
        if entry.value.is_none() {
            self.live += 1;
        }
        Arc::make_mut(entry.value.get_or_insert_with(|| Arc::new(make())))
    }

    pub fn insert(&mut self, key: K, value: V) {
        let entry = self.records.entry_of(key);
        Self::mark(&mut self.changed, entry);
        if entry.value.replace(Arc::new(value)).is_none() {
            self.live += 1;
        }
    }

    pub fn remove<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        // Taken out in one search (a lookup, then a removal, searched twice: the queue
        // view's `remove` took 1,380 instructions in `valgrind --tool=callgrind omnilog
        // replay`); put back only when something must stay.
        let (owned, mut entry) = self.records.take_entry(key)?;
        let Some(removed) = entry.value.take() else {
            // Already a tombstone: it stays as it was.
            self.records.put(owned, entry);
            return None;
        };
        self.live -= 1;
        if entry.stored {
            // A tombstone until the next checkpoint writes the deletion.
            Self::mark(&mut self.changed, &mut entry);
            self.records.put(owned, entry);
        } else if entry.changed {
            // Never written: nothing to delete in the store.
            self.changed -= 1;
        }
        Some(Arc::unwrap_or_clone(removed))
    }

    pub fn contains<Q: Ord + Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Takes a record out to change it (a copy only if a checkpoint is encoding it); it is
    /// deleted unless put back with [`Table::put_back`].
    pub fn take<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let entry = self.records.find_mut(key)?;
        let taken = entry.value.take()?;
        self.live -= 1;
        Self::mark(&mut self.changed, entry);
        Some(Arc::unwrap_or_clone(taken))
    }

    /// Ends a [`Table::take`] whose record is not put back: it is deleted (a record the
    /// store never held leaves nothing behind).
    pub fn discard<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if let Some(entry) = self.records.find(key)
            && entry.value.is_none()
            && !entry.stored
        {
            if entry.changed {
                self.changed -= 1;
            }
            self.records.delete(key);
        }
    }

    /// Puts a record back where [`Table::take`] took it from; `Err` (and nothing done) if
    /// the table never held the key, which the caller then inserts.
    pub fn put_back<Q: Ord + Hash + Eq + ?Sized>(&mut self, key: &Q, value: V) -> Result<(), V>
    where
        K: Borrow<Q>,
    {
        let Some(entry) = self.records.find_mut(key) else {
            return Err(value);
        };
        if entry.value.replace(Arc::new(value)).is_none() {
            self.live += 1;
        }
        Self::mark(&mut self.changed, entry);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.live
    }

    /// Entries in memory: the live records and the deletions awaiting a checkpoint (what
    /// the table weighs, which [`Table::len`] does not tell).
    pub fn held(&self) -> usize {
        self.records.entries().count()
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Live records, in key order for an ordered table.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.records
            .entries()
            .filter_map(|(key, entry)| entry.value.as_deref().map(|value| (key, value)))
    }

    /// Restores a stored record (when the view starts).
    pub fn restore(&mut self, stored: &[u8], value: &[u8]) -> Result<(), ViewError> {
        let key: K = decode_key(stored)?;
        let value: V = decode_value(stored, value)?;
        let previous = self.records.put(
            key,
            Entry {
                value: Some(Arc::new(value)),
                changed: false,
                stored: true,
            },
        );
        if previous.is_none_or(|p| p.value.is_none()) {
            self.live += 1;
        }
        Ok(())
    }

    /// Every live record, leaving the table empty (and nothing to write at a checkpoint):
    /// what a replay takes of a table of sums ([`ViewState::take_sums`]).
    pub fn take_all(&mut self) -> Snapshot {
        let mut snapshot: TableSnapshot<K, V, Arc<V>> = TableSnapshot::new(self.tag);
        let records = std::mem::take(&mut self.records);
        self.changed = 0;
        self.live = 0;
        snapshot.puts = records
            .entries()
            .filter_map(|(key, entry)| entry.value.clone().map(|value| (key.clone(), value)))
            .collect();
        snapshot.into_snapshot()
    }

    /// The changes since the last call, to encode (see [`Snapshot`]). Tombstones go; a
    /// record created and deleted between two checkpoints never reaches the store.
    pub fn take_changes(&mut self) -> Snapshot {
        let mut snapshot: TableSnapshot<K, V, Arc<V>> = TableSnapshot::new(self.tag);
        if self.changed == 0 {
            return Snapshot::default();
        }
        self.records.keep(|key, entry| {
            if !entry.changed {
                return true;
            }
            entry.changed = false;
            match &entry.value {
                Some(value) => {
                    snapshot.puts.push((key.clone(), value.clone()));
                    entry.stored = true;
                    true
                }
                None => {
                    if entry.stored {
                        snapshot.deletes.push(key.clone());
                    }
                    false
                }
            }
        });
        self.changed = 0;
        snapshot.into_snapshot()
    }

    /// Every record, encoded as stored (in no particular order: callers sort).
    pub fn dump(&self, out: &mut Entries) -> Result<(), ViewError> {
        for (key, value) in self.iter() {
            out.push((stored_key(self.tag, key)?, encode_value(value)?));
        }
        Ok(())
    }
}

impl<K: Key, V: Record> IndexedTable<K, V> {
    /// Live records whose keys are in `range`, in key order.
    pub fn range<R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.records.order.range(range).filter_map(|key| {
            let entry = self.records.entries.get(key)?;
            entry.value.as_deref().map(|value| (key, value))
        })
    }
}

impl<K: Key, V: Record> Table<K, V> {
    /// Live records whose keys are in `range`, in key order.
    pub fn range<R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.records
            .range(range)
            .filter_map(|(key, entry)| entry.value.as_deref().map(|value| (key, value)))
    }
}

fn not_loaded<Q: Debug + ?Sized>(tag: u8, key: &Q) -> ViewError {
    ViewError::Storage(format!(
        "record {key:?} of table {:?} was not loaded before the fold needed it",
        tag as char
    ))
}

/// A record of a [`CachedTable`], with its stored size (key and value) as last encoded (0
/// until first encoded), which a checkpoint's encoding reports back: what its weight in
/// memory is estimated from.
#[derive(Debug)]
struct Held<V> {
    value: V,
    weight: AtomicUsize,
}

impl<V: Clone> Clone for Held<V> {
    fn clone(&self) -> Self {
        Held {
            value: self.value.clone(),
            weight: AtomicUsize::new(self.weight.load(Ordering::Relaxed)),
        }
    }
}

impl<V> Held<V> {
    fn new(value: V, weight: usize) -> Arc<Self> {
        Arc::new(Held {
            value,
            weight: AtomicUsize::new(weight),
        })
    }
}

impl<V: Record> Shared<V> for Arc<Held<V>> {
    fn value(&self) -> &V {
        &self.value
    }

    fn encoded(&self, size: usize) {
        self.weight.store(size, Ordering::Relaxed);
    }
}

/// A record taken out of a [`CachedTable`] to be changed and put back. It keeps the
/// record's allocation: taking the value out of it and putting a new one back was a `free`
/// and a `malloc` for every event the reports folded, and those `malloc`s, served from cold
/// memory, were the reporting worker's top symbol in `perf record omnilog replay` (3.8 % of
/// all samples, ahead of the fold itself). Changing it copies the record only if a
/// checkpoint is encoding it.
#[derive(Debug)]
pub struct Taken<V: Record>(Arc<Held<V>>);

impl<V: Record> Taken<V> {
    /// A record that was not in the table, to put in.
    pub fn new(value: V) -> Self {
        Taken(Held::new(value, 0))
    }

    /// The record itself.
    pub fn into_inner(self) -> V {
        Arc::unwrap_or_clone(self.0).value
    }
}

impl<V: Record> std::ops::Deref for Taken<V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.0.value
    }
}

impl<V: Record> std::ops::DerefMut for Taken<V> {
    fn deref_mut(&mut self) -> &mut V {
        &mut Arc::make_mut(&mut self.0).value
    }
}

/// One record of a [`CachedTable`] in memory.
#[derive(Clone, Debug)]
struct Slot<V> {
    /// `None`: not stored, as far as this table knows (nothing to load).
    value: Option<Arc<Held<V>>>,
    /// Written or deleted since the last checkpoint: may not be let go.
    changed: bool,
    /// The store holds a version of it (so a deletion must be written).
    stored: bool,
    /// When it was last used, on the table's clock.
    used: u64,
}

/// What a record's encoded bytes become in memory, about: every string and vector of the
/// record is an allocation of its own, rounded up, with a 24-byte header in its parent,
/// where the encoding spends a byte of length. With weights that counted only the
/// encoded bytes, `heaptrack omnilog replay --view reporting` on 10M events (a build
/// without mimalloc) peaked at 533 MB of heap for a 128 MiB budget, about 90 MB of it the
/// identity view's. At 2, `/usr/bin/time omnilog replay` of every view on 10M events
/// peaked at 1,518 and 1,557 MB (two runs); at 3, at 1,323 to 1,481 MB (three runs).
const MEMORY_PER_ENCODED_BYTE: usize = 3;

/// The encoded size a changed record is taken to have before it is first encoded.
const UNENCODED_BYTES: usize = 192;

/// What the heap holds of a key that is not a record (an absent record's slot), about.
const KEY_HEAP_BYTES: usize = 32;

/// What a slot of a table of `K` to `V` weighs in memory, about: the map's entry (at its
/// load factor), and for a record its shared `Held` (with `Arc`'s two counts) and the heap
/// its encoded bytes stand for.
fn slot_weight<K, V>(slot: &Slot<V>) -> usize {
    match &slot.value {
        Some(held) => record_weight::<K, V>(match held.weight.load(Ordering::Relaxed) {
            0 => UNENCODED_BYTES,
            bytes => bytes,
        }),
        None => entry_weight::<K, V>() + KEY_HEAP_BYTES,
    }
}

/// A slot's share of the map, at its load factor.
fn entry_weight<K, V>() -> usize {
    (size_of::<K>() + size_of::<Slot<V>>() + 1) * 8 / 7
}

/// What a slot holding a record of `encoded` bytes weighs.
fn record_weight<K, V>(encoded: usize) -> usize {
    entry_weight::<K, V>()
        + size_of::<Held<V>>()
        + 2 * size_of::<usize>()
        + encoded * MEMORY_PER_ENCODED_BYTE
}

/// What a [`CachedTable`] knows of the records the store holds that are not in memory.
#[derive(Clone, Debug)]
enum StoreKnowledge {
    /// The store may hold any record: the table was opened over stored state.
    Anything,
    /// The table started over an empty store, so the store holds only records written and
    /// then let go from memory; their keys hash to these. A key not among them is absent
    /// from the store without asking it: a replay or a new version (whose records are
    /// nearly all new) reads nothing from the store for them.
    OnlyLetGo(std::collections::HashSet<u64, foldhash::fast::RandomState>),
}

impl StoreKnowledge {
    /// Notes that the record whose key hashes to `hash` was let go from memory (it stays
    /// in the store); past [`LET_GO_REMEMBERED`] keys, the store may hold anything.
    fn let_go(&mut self, hash: u64) {
        if let StoreKnowledge::OnlyLetGo(let_go) = self {
            let_go.insert(hash);
            if let_go.len() > LET_GO_REMEMBERED {
                *self = StoreKnowledge::Anything;
            }
        }
    }
}

/// Whether `store` knows the record of `key` to be absent (see [`StoreKnowledge`]).
fn known_absent<Q: Hash + ?Sized>(
    store: &StoreKnowledge,
    hasher: &foldhash::fast::RandomState,
    key: &Q,
) -> bool {
    match store {
        StoreKnowledge::Anything => false,
        // Nothing let go (a replay's first pass): absent without hashing the key.
        StoreKnowledge::OnlyLetGo(let_go) => {
            let_go.is_empty() || !let_go.contains(&hasher.hash_one(key))
        }
    }
}

/// Past this many keys let go, a table stops remembering them and asks the store (about
/// 16 bytes a key: 64 MiB at most).
const LET_GO_REMEMBERED: usize = 4_000_000;

/// A [`CachedTable`]'s slots (`state/slots.rs`): found or made by a borrowed key in one
/// lookup, and at a remembered place by a customer's number.
type SlotMap<K, V> = slots::SlotMap<K, Slot<V>>;

/// A table whose records come into memory when needed. See the module documentation.
#[derive(Clone, Debug)]
pub struct CachedTable<K: Key, V: Record> {
    tag: u8,
    slots: SlotMap<K, V>,
    store: StoreKnowledge,
    clock: u64,
    /// The slots' weight when last summed (after each checkpoint), plus what was loaded
    /// since.
    weight: usize,
    /// Slots changed since the last checkpoint.
    changed: usize,
    /// Where the slots of the customers numbered by the decoder are (see `state/slots.rs`).
    places: slots::Places,
}

/// A cached table, as [`evict_together`] and a replay's passes see it.
pub trait Evictable {
    fn weight(&self) -> usize;
    /// See [`CachedTable::holds_everything`].
    fn holds_everything(&self) -> bool;
    fn evict(&mut self, budget: usize);
    /// See [`CachedTable::partition_done`].
    fn partition_done(&mut self, let_go: bool);
    /// See [`CachedTable::store_may_hold_anything`].
    fn store_may_hold_anything(&mut self);
}

impl<K: Key, V: Record> Evictable for CachedTable<K, V> {
    fn weight(&self) -> usize {
        CachedTable::weight(self)
    }

    fn holds_everything(&self) -> bool {
        CachedTable::holds_everything(self)
    }

    fn evict(&mut self, budget: usize) {
        CachedTable::evict(self, budget);
    }

    fn partition_done(&mut self, let_go: bool) {
        CachedTable::partition_done(self, let_go);
    }

    fn store_may_hold_anything(&mut self) {
        CachedTable::store_may_hold_anything(self);
    }
}

/// Lets go of clean records of a view's cached tables until they weigh about `budget`
/// together, each keeping a share in proportion to its weight (a view's budget is the
/// view's, not each table's: three tables evicted to the whole budget each could hold
/// three times it, and stay over it, checkpointing every batch).
pub fn evict_together(budget: usize, tables: &mut [&mut dyn Evictable]) {
    let total: usize = tables.iter().map(|table| table.weight()).sum();
    if total <= budget {
        return;
    }
    for table in tables {
        let weight = table.weight();
        // u128: weights times a budget may not fit a usize on 32-bit targets.
        let share = (weight as u128 * budget as u128 / total.max(1) as u128) as usize;
        table.evict(share);
    }
}

impl<K: Key, V: Record> CachedTable<K, V> {
    pub fn new(tag: u8) -> Self {
        CachedTable {
            tag,
            slots: SlotMap::default(),
            store: StoreKnowledge::Anything,
            clock: 0,
            weight: 0,
            changed: 0,
            places: slots::Places::default(),
        }
    }

    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// Declares that the store holds no record of this table (a new version): records
    /// not in memory are then known to be absent until some are written and let go.
    pub fn starts_empty(&mut self) {
        if self.slots.is_empty() {
            self.store = StoreKnowledge::OnlyLetGo(Default::default());
        }
    }

    /// Whether the store is known not to hold the record of `key`.
    fn known_absent<Q: Hash + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        known_absent(&self.store, self.slots.hasher(), key)
    }

    /// Whether the record is in memory (or known to be absent from the store).
    pub fn is_loaded<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        // Nothing let go: whatever is not in memory is absent, without probing the map (a
        // replay asks this of every event, for each view, before folding it).
        if self.holds_everything() {
            return true;
        }
        self.slots.contains_key(key) || self.known_absent(key)
    }

    /// Whether every record of the table is in memory or known absent: it let nothing go
    /// since it was told the store holds none of its records.
    pub fn holds_everything(&self) -> bool {
        matches!(&self.store, StoreKnowledge::OnlyLetGo(let_go) if let_go.is_empty())
    }

    /// The slot of a loaded record, marked used now; for a record known to be absent from
    /// the store, an empty slot made now. With it, the count of changed slots, for the
    /// caller to keep (the slot borrows the table).
    fn touched_slot<Q: Hash + Eq + Debug + ?Sized>(
        &mut self,
        key: &Q,
    ) -> Result<(&mut Slot<V>, &mut usize), ViewError>
    where
        K: OwnKey<Q>,
    {
        self.touched_slot_numbered(key, CustomerNumber::NONE)
    }

    /// [`CachedTable::touched_slot`] for the event's customer, with the number the decoder
    /// gave it: the slot at the place remembered for that number when it is the key's (the
    /// key compared, so that no number can lead to another key's slot), else the key's slot
    /// found by hashing the key, its place remembered for the number.
    fn touched_slot_numbered<Q: Hash + Eq + Debug + ?Sized>(
        &mut self,
        key: &Q,
        number: CustomerNumber,
    ) -> Result<(&mut Slot<V>, &mut usize), ViewError>
    where
        K: OwnKey<Q>,
    {
        let used = self.tick();
        let remembered = self
            .places
            .of(number)
            .filter(|&place| self.slots.holds_at(place, key));
        let place = match remembered {
            Some(place) => place,
            None => {
                // One lookup whether the slot is there or not (the fold's hottest path:
                // every event looks up a record of each view).
                let hasher = self.slots.hasher().clone();
                let store = &self.store;
                let mut made_weight = 0;
                let place = self.slots.find_or_make(key, || {
                    if !known_absent(store, &hasher, key) {
                        return None;
                    }
                    let slot = Slot {
                        value: None,
                        changed: false,
                        stored: false,
                        used: 0,
                    };
                    made_weight = slot_weight::<K, V>(&slot);
                    Some((K::own(key), slot))
                });
                let Some(place) = place else {
                    return Err(not_loaded(self.tag, key));
                };
                // Counted now: a table that only ever finds records absent must still see
                // its slots' weight grow, or nothing would make it let them go.
                self.weight += made_weight;
                self.places.remember(number, place);
                place
            }
        };
        // The slot was found or made at `place` just above, and nothing ran since.
        let slot = self.slots.at_mut(place).ok_or_else(|| {
            ViewError::Storage(format!("the slot of {key:?} went while it was looked up"))
        })?;
        slot.used = used;
        Ok((slot, &mut self.changed))
    }

    /// The record if it is in memory, without counting a use: for [`crate::View::missing`],
    /// which decides from records already loaded what else a fold needs.
    pub fn peek<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.slots
            .get(key)
            .and_then(|slot| slot.value.as_deref().map(|held| &held.value))
    }

    /// The stored key of `key`, for the runtime to load it. A borrowed key (a `str` for an
    /// [`Id`] or a `String`) encodes as its owned form does.
    pub fn stored_key<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Vec<u8>, ViewError>
    where
        K: Borrow<Q>,
    {
        stored_key(self.tag, key)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Marks a slot changed, keeping the count.
    fn mark(changed: &mut usize, slot: &mut Slot<V>) {
        if !slot.changed {
            slot.changed = true;
            *changed += 1;
        }
    }

    /// Puts a record read from the store (or its absence) in memory, unless the table
    /// already has it (a newer version may have been written meanwhile).
    pub fn restore(&mut self, stored: &[u8], value: Option<&[u8]>) -> Result<(), ViewError> {
        let key: K = decode_key(stored)?;
        if self.slots.contains_key(&key) {
            return Ok(());
        }
        let encoded = stored.len() + value.map_or(0, <[u8]>::len);
        let value: Option<V> = value.map(|v| decode_value(stored, v)).transpose()?;
        let used = self.tick();
        let slot = Slot {
            stored: value.is_some(),
            value: value.map(|value| Held::new(value, encoded)),
            changed: false,
            used,
        };
        self.weight += slot_weight::<K, V>(&slot);
        self.slots.insert_new(key, slot);
        Ok(())
    }

    /// A record the fold needs (it must have been loaded).
    pub fn get<Q: Hash + Eq + Debug + ?Sized>(&mut self, key: &Q) -> Result<Option<&V>, ViewError>
    where
        K: OwnKey<Q>,
    {
        let (slot, _) = self.touched_slot(key)?;
        Ok(slot.value.as_deref().map(|held| &held.value))
    }

    /// A record the fold changes in place (it must have been loaded).
    pub fn get_mut<Q: Hash + Eq + Debug + ?Sized>(
        &mut self,
        key: &Q,
    ) -> Result<Option<&mut V>, ViewError>
    where
        K: OwnKey<Q>,
    {
        let (slot, changed) = self.touched_slot(key)?;
        if slot.value.is_some() {
            Self::mark(changed, slot);
        }
        Ok(slot
            .value
            .as_mut()
            .map(|held| &mut Arc::make_mut(held).value))
    }

    /// The record, created with `make` if there is none (it must have been loaded).
    pub fn get_or_insert_with<Q: Hash + Eq + Debug + ?Sized>(
        &mut self,
        key: &Q,
        make: impl FnOnce() -> V,
    ) -> Result<&mut V, ViewError>
    where
        K: OwnKey<Q>,
    {
        self.get_or_insert_numbered(key, CustomerNumber::NONE, make)
    }

    /// [`CachedTable::get_or_insert_with`] for the event's customer, found through the
    /// number the decoder gave it ([`omnilog_events::Event::customer_number`]): at the place
    /// remembered for the number if the slot there is `key`'s, else by `key`. The number
    /// only spares the lookup when it is the one given to `key`; any number finds `key`'s
    /// record.
    pub fn get_or_insert_numbered<Q: Hash + Eq + Debug + ?Sized>(
        &mut self,
        key: &Q,
        number: CustomerNumber,
        make: impl FnOnce() -> V,
    ) -> Result<&mut V, ViewError>
    where
        K: OwnKey<Q>,
    {
        let (slot, changed) = self.touched_slot_numbered(key, number)?;
        Self::mark(changed, slot);
        let held = slot.value.get_or_insert_with(|| Held::new(make(), 0));
        Ok(&mut Arc::make_mut(held).value)
    }

    /// Writes a record without reading it first (a blind write: nothing to load).
    pub fn insert(&mut self, key: K, value: V) {
        let used = self.tick();
        let slot = self.slots.find_or_insert(key, || Slot {
            value: None,
            changed: false,
            stored: false,
            used,
        });
        slot.value = Some(Held::new(value, 0));
        slot.used = used;
        Self::mark(&mut self.changed, slot);
    }

    /// Takes a loaded record out to change it; it is deleted unless put back with
    /// [`CachedTable::put_back`].
    pub fn take<Q: Hash + Eq + Debug + ?Sized>(
        &mut self,
        key: &Q,
    ) -> Result<Option<Taken<V>>, ViewError>
    where
        K: OwnKey<Q>,
    {
        let (slot, changed) = self.touched_slot(key)?;
        let taken = slot.value.take();
        Self::settle(changed, slot);
        Ok(taken.map(Taken))
    }

    /// After a deletion: a record the store never held needs no write (and may be let go).
    fn settle(changed: &mut usize, slot: &mut Slot<V>) {
        if slot.value.is_some() {
            return;
        }
        if slot.stored {
            Self::mark(changed, slot);
        } else if slot.changed {
            slot.changed = false;
            *changed -= 1;
        }
    }

    /// Ends a [`CachedTable::take`] whose record is not put back. The record is deleted
    /// (the take did that); its empty slot goes too when the table knows the store holds
    /// nothing of it, since the slot would only say what the table knows anyway: a replay
    /// ends a record of most interactions it folds, and kept their slots until its budget
    /// was full.
    pub fn discard<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if !self.known_absent(key) {
            return;
        }
        let unused = |slot: &Slot<V>| slot.value.is_none() && !slot.stored && !slot.changed;
        if let Some(removed) = self.slots.remove_if(key, unused) {
            self.weight = self.weight.saturating_sub(slot_weight::<K, V>(&removed));
        }
    }

    /// Puts a record back where [`CachedTable::take`] took it from (or writes it, if the
    /// table has no slot for it).
    pub fn put_back<Q: Hash + Eq + Debug + ?Sized>(&mut self, key: &Q, taken: Taken<V>)
    where
        K: OwnKey<Q>,
    {
        match self.slots.get_mut(key) {
            Some(slot) => {
                // Weighed again when it is next encoded, as a record put in is.
                taken.0.weight.store(0, Ordering::Relaxed);
                slot.value = Some(taken.0);
                Self::mark(&mut self.changed, slot);
            }
            None => self.insert(K::own(key), taken.into_inner()),
        }
    }

    /// Deletes a record (blind: nothing to load first).
    pub fn remove<Q: Hash + Eq + Debug + ?Sized>(&mut self, key: &Q)
    where
        K: OwnKey<Q>,
    {
        let used = self.tick();
        // One probe of the map: asked first whether the slot was there, then for it, the
        // engagement view's removals of its trigger index hashed each key twice (4 % of its
        // worker's instructions in `valgrind --tool=callgrind --separate-threads=yes
        // omnilog replay` of 1M events).
        if let Some(slot) = self.slots.get_mut(key) {
            slot.used = used;
            slot.value = None;
            Self::settle(&mut self.changed, slot);
            return;
        }
        if self.known_absent(key) {
            // Neither in memory nor in the store: nothing to delete.
            return;
        }
        // Not in memory: the store may hold it.
        self.slots.insert_new(
            K::own(key),
            Slot {
                value: None,
                changed: true,
                stored: true,
                used,
            },
        );
        self.changed += 1;
    }

    /// Reads a record for a query: from memory, or from the store.
    pub fn read<'a, Q: Serialize + Hash + Eq + ?Sized>(
        &'a self,
        key: &Q,
        source: &dyn RecordSource,
    ) -> Result<Option<Cow<'a, V>>, ViewError>
    where
        K: Borrow<Q>,
    {
        if let Some(slot) = self.slots.get(key) {
            return Ok(slot.value.as_deref().map(|held| Cow::Borrowed(&held.value)));
        }
        if self.known_absent(key) {
            return Ok(None);
        }
        let stored = self.stored_key(key)?;
        match source.get(&stored)? {
            Some(bytes) => match decode_value(&stored, &bytes) {
                Ok(value) => Ok(Some(Cow::Owned(value))),
                // Passed over as if absent (see [`RecordSource::unreadable`]).
                Err(error) => {
                    source.unreadable(&stored, &error);
                    Ok(None)
                }
            },
            None => Ok(None),
        }
    }

    /// Every record whose stored key starts with `prefix` (the tag, then a prefix of the
    /// encoded key), from the store and from memory, memory winning; in stored-key order.
    pub fn scan(&self, prefix: &[u8], source: &dyn RecordSource) -> Result<Vec<(K, V)>, ViewError> {
        // Every slot in memory wins, clean ones too: a checkpoint marks its records clean
        // before the store has them, and a query may scan in between.
        let in_memory = self.slots.iter().map(|(key, slot)| {
            let held = slot.value.as_deref().map(|held| &held.value);
            Ok((self.stored_key(key)?, held))
        });
        scan_over(prefix, source, in_memory)
    }

    /// The changes since the last call, to encode (see [`Snapshot`]); the slots become
    /// clean (and so may be let go once written).
    pub fn take_changes(&mut self) -> Snapshot {
        if self.changed == 0 {
            return Snapshot::default();
        }
        let mut snapshot: TableSnapshot<K, V, Arc<Held<V>>> = TableSnapshot::new(self.tag);
        snapshot.puts.reserve(self.changed);
        for (key, slot) in self.slots.iter_mut() {
            if !slot.changed {
                continue;
            }
            slot.changed = false;
            match &slot.value {
                Some(held) => {
                    slot.stored = true;
                    snapshot.puts.push((key.clone(), held.clone()));
                }
                None => {
                    if slot.stored {
                        slot.stored = false;
                        snapshot.deletes.push(key.clone());
                    }
                }
            }
        }
        self.changed = 0;
        snapshot.into_snapshot()
    }

    /// Lets go of clean records, least recently used first, until the table weighs at most
    /// `budget` bytes (records changed since the last checkpoint stay). The weight is
    /// summed again first, with the sizes the last checkpoint's encoding reported.
    pub fn evict(&mut self, budget: usize) {
        if budget == 0 {
            self.let_go_all_clean(true);
            self.give_memory_back();
            return;
        }
        self.weight = self.slots.values().map(slot_weight::<K, V>).sum();
        if self.weight() <= budget {
            return;
        }
        // The clean slots' last uses and weights, oldest first, give the last use that
        // must go; one pass over the map then lets go of every clean slot used no later.
        // (Collecting the keys instead copied every clean key at the moment memory is
        // fullest: 46 MB of the peak of `heaptrack omnilog replay --view reporting` on 10M
        // events, a build without mimalloc.)
        let mut clean: Vec<(u64, usize)> = self
            .slots
            .values()
            .filter(|slot| !slot.changed)
            .map(|slot| (slot.used, slot_weight::<K, V>(slot)))
            .collect();
        clean.sort_unstable_by_key(|(used, _)| *used);
        let mut excess = self.weight() - budget;
        let mut last_to_go = None;
        for (used, weight) in clean {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(weight);
            last_to_go = Some(used);
        }
        let Some(last_to_go) = last_to_go else {
            return;
        };
        let hasher = self.slots.hasher().clone();
        let store = &mut self.store;
        let mut weight = self.weight;
        self.slots.retain(|key, slot| {
            if slot.changed || slot.used > last_to_go {
                return true;
            }
            weight -= slot_weight::<K, V>(slot);
            if slot.stored {
                store.let_go(hasher.hash_one(key));
            }
            false
        });
        self.weight = weight;
        self.give_memory_back();
    }

    /// A table emptied of most of its records gives its memory back.
    fn give_memory_back(&mut self) {
        if self.slots.capacity() > 4 * self.slots.len().max(1024) {
            self.slots.shrink_to_fit();
        }
    }

    /// For a replay of a view whose records are each touched by one partition only, once
    /// a partition is folded and its changes taken for a checkpoint: nothing will ask for
    /// the records of that partition again, so the keys let go while it was folded need
    /// not be remembered, and with `let_go` its clean records go too, unremembered. The
    /// keys a table remembers are then those of one partition, not of the history (the
    /// let-go sets of a 10M-event replay took about 49 MB, heaptrack). Only while nothing
    /// of a new partition has been written: its records are then all changed, and stay.
    ///
    /// The map keeps its capacity: the next partition's records take about as many slots,
    /// and a map shrunk at each pass grew back through every doubling in the next (the
    /// rehashes were 6 % of the journey worker's page faults in a 1M replay, `perf record
    /// -e page-faults`; see docs/benchmarks-journal.md).
    pub fn partition_done(&mut self, let_go: bool) {
        if let_go {
            self.let_go_all_clean(false);
        }
        if let StoreKnowledge::OnlyLetGo(remembered) = &mut self.store {
            *remembered = Default::default();
        }
    }

    /// From now on, asks the store for any record not in memory: for records that may
    /// belong to a partition whose let-go keys were forgotten ([`CachedTable::partition_done`]).
    pub fn store_may_hold_anything(&mut self) {
        self.store = StoreKnowledge::Anything;
    }

    /// [`CachedTable::evict`] to nothing: every clean record goes, so no order is needed and
    /// no key is copied (a pass of a replay lets go of hundreds of thousands at once). The
    /// keys of records the store holds are remembered when `remember`.
    fn let_go_all_clean(&mut self, remember: bool) {
        let hasher = self.slots.hasher().clone();
        let mut weight = 0;
        let store = &mut self.store;
        self.slots.retain(|key, slot| {
            if slot.changed {
                weight += slot_weight::<K, V>(slot);
                return true;
            }
            if slot.stored && remember {
                store.let_go(hasher.hash_one(key));
            }
            false
        });
        self.weight = weight;
    }

    /// About how many bytes the records in memory take: from their size as last encoded,
    /// and an estimate for records changed since.
    pub fn weight(&self) -> usize {
        self.weight + self.changed * record_weight::<K, V>(UNENCODED_BYTES)
    }

    /// Records in memory.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every record in memory, encoded as stored (for states held wholly in memory: tests
    /// and benchmarks compare states by it).
    pub fn dump(&self, out: &mut Entries) -> Result<(), ViewError> {
        for (key, slot) in self.slots.iter() {
            if let Some(held) = &slot.value {
                out.push((stored_key(self.tag, key)?, encode_value(&held.value)?));
            }
        }
        Ok(())
    }
}

/// A table's scan of `prefix`: the records the source holds under it, then those held in
/// memory (stored key, and the record or `None` for one deleted there) under it, a later
/// one of a key winning over an earlier; in stored-key order, their keys decoded. A stored
/// record or key that does not decode is passed over (see [`RecordSource::unreadable`]).
fn scan_over<'a, K: Key, V: Record>(
    prefix: &[u8],
    source: &dyn RecordSource,
    in_memory: impl Iterator<Item = Result<(Vec<u8>, Option<&'a V>), ViewError>>,
) -> Result<Vec<(K, V)>, ViewError> {
    let mut found: BTreeMap<Vec<u8>, Option<V>> = BTreeMap::new();
    for (stored, bytes) in source.scan(prefix)? {
        match decode_value(&stored, &bytes) {
            Ok(value) => {
                found.insert(stored, Some(value));
            }
            Err(error) => source.unreadable(&stored, &error),
        }
    }
    for held in in_memory {
        let (stored, value) = held?;
        if stored.starts_with(prefix) {
            found.insert(stored, value.cloned());
        }
    }
    Ok(found
        .into_iter()
        .filter_map(|(stored, value)| value.map(|v| (stored, v)))
        .filter_map(|(stored, value)| match decode_key(&stored) {
            Ok(key) => Some((key, value)),
            Err(error) => {
                source.unreadable(&stored, &error);
                None
            }
        })
        .collect())
}

/// What the runtime needs of a view's state.
pub trait ViewState: Send + Sync + 'static {
    /// The tags of the tables read whole from the store when the view starts.
    fn whole_tags(&self) -> Vec<u8>;

    /// Puts a stored record (or, for a cached table, its absence) in memory.
    fn restore(&mut self, stored: &[u8], value: Option<&[u8]>) -> Result<(), ViewError>;

    /// The changes since the last call, to encode once the state's lock is released.
    fn take_changes(&mut self) -> Result<Snapshot, ViewError>;

    /// The changes a replay writes (or encodes ahead) at the end of a pass, once a
    /// partition's records are final: by default every change since the last call. A state
    /// whose whole tables every pass adds to (the reports' hourly figures) takes only its
    /// partition tables' changes here, and leaves the others to the replay's last
    /// checkpoint, which takes them all: written at each pass's end, the same figures were
    /// encoded and written once a pass.
    fn take_pass_changes(&mut self) -> Result<Snapshot, ViewError> {
        self.take_changes()
    }

    /// The whole tables of sums (integer figures that every partition adds to, such as the
    /// reports' hourly figures) taken whole, leaving them empty: each a delta, what was
    /// added since the last call. A replay writes these deltas aside, pass by pass, and adds
    /// them up ([`ViewState::add_sum`]) in its last checkpoint, so that its memory holds a
    /// pass's figures, not the whole history's. Once called, [`ViewState::take_changes`]
    /// and [`ViewState::take_pass_changes`] leave the sums out: they leave only by this.
    /// Deltas may be "negative" (a rating that replaces another takes the first out of its
    /// bucket): sums wrap, so the deltas add up to the total. By default, no sums.
    fn take_sums(&mut self) -> Result<Snapshot, ViewError> {
        Ok(Snapshot::default())
    }

    /// How many records the whole tables of sums ([`ViewState::take_sums`]) hold now: a
    /// replay takes them apart at the end of a pass only once they are many (see
    /// `omnilog_projector::SUMS_HELD_SHARE`). By default, no sums.
    fn sums_len(&self) -> usize {
        0
    }

    /// Adds `delta`, an encoded delta of the sum stored under `key`, to `sum`, encoded as
    /// stored ([`ViewState::take_sums`]). By default, no key is a sum's.
    fn add_sum(key: &[u8], _sum: &mut Vec<u8>, _delta: &[u8]) -> Result<(), ViewError>
    where
        Self: Sized,
    {
        Err(ViewError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "not the key of a sum".to_owned(),
        })
    }

    /// Lets go of clean cached records until the cached tables weigh at most `budget`.
    fn evict(&mut self, _budget: usize) {}

    /// Told when the state is opened over a store that holds none of its records (a new
    /// version), so that cached tables need not ask the store for records they lack.
    fn starts_empty(&mut self) {}

    /// The cached tables of a view whose records are each touched by one partition only
    /// ([`crate::View::partition_local`]), for a replay to tell them when a partition is
    /// done ([`CachedTable::partition_done`]).
    fn partition_tables(&mut self) -> Vec<&mut dyn Evictable> {
        Vec::new()
    }

    /// Every cached table of the state (those whose records may be let go and loaded
    /// again): what its weight and [`ViewState::holds_everything`] are derived from.
    fn cached_tables(&self) -> Vec<&dyn Evictable> {
        Vec::new()
    }

    /// About how many bytes the cached records in memory take.
    fn cached_weight(&self) -> usize {
        self.cached_tables()
            .iter()
            .map(|table| table.weight())
            .sum()
    }

    /// Whether every record a fold could need is in memory or known absent: each cached
    /// table let nothing go since it was told the store holds none of its records (a state
    /// without cached tables holds everything in memory). The runtime then asks for no
    /// missing records.
    fn holds_everything(&self) -> bool {
        self.cached_tables()
            .iter()
            .all(|table| table.holds_everything())
    }

    /// Every record in memory, encoded as stored, in key order: the canonical form two
    /// states are compared by (for a state wholly in memory, its whole content).
    fn dump(&self) -> Result<Entries, ViewError>;
}

/// Takes the changes of several tables at once.
pub fn changes_of(tables: impl IntoIterator<Item = Snapshot>) -> Snapshot {
    let mut all = Snapshot::default();
    for snapshot in tables {
        all.merge(snapshot);
    }
    all
}

/// Sorts dump entries into key order.
pub fn sorted(mut entries: Entries) -> Entries {
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_set_to_what_it_holds_keeps_its_buffer_and_another_value_replaces_it() {
        let mut text = String::with_capacity(64);
        text.push_str("sales");
        let buffer = text.as_ptr();
        set_text(&mut text, "sales");
        assert_eq!((text.as_str(), text.as_ptr()), ("sales", buffer));
        set_text(&mut text, "support");
        assert_eq!(text, "support");
        set_text(&mut text, "");
        assert_eq!(text, "");
    }

    #[test]
    fn no_two_keys_encode_alike_whatever_bytes_they_hold() {
        let a = stored_key(b't', &("a\0b".to_owned(), "c".to_owned())).unwrap();
        let b = stored_key(b't', &("a".to_owned(), "b\0c".to_owned())).unwrap();
        assert_ne!(a, b);
        let decoded: (String, String) = decode_key(&a).unwrap();
        assert_eq!(decoded, ("a\0b".to_owned(), "c".to_owned()));
    }

    #[test]
    fn changes_in_order_keep_the_newest_put_or_delete_of_each_key() {
        let put = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        let oldest = Changes {
            puts: vec![put("a", "1"), put("c", "1"), put("d", "1")],
            deletes: vec![b"b".to_vec()],
        };
        let middle = Changes {
            puts: vec![put("b", "2"), put("c", "2")],
            deletes: vec![b"d".to_vec()],
        };
        let newest = Changes {
            puts: vec![put("c", "3"), put("e", "3")],
            deletes: vec![],
        };
        let merged = Changes::in_order(vec![oldest, Changes::default(), middle, newest]);
        assert_eq!(
            merged,
            Changes {
                puts: vec![put("a", "1"), put("b", "2"), put("c", "3"), put("e", "3")],
                deletes: vec![b"d".to_vec()],
            }
        );
        let single = Changes {
            puts: vec![put("x", "1")],
            deletes: vec![],
        };
        assert_eq!(Changes::in_order(vec![single.clone()]), single);
    }

    #[test]
    fn a_scan_between_a_checkpoints_take_and_its_write_sees_every_record() {
        let mut table: CachedTable<String, u32> = CachedTable::new(b'c');
        table.insert("a".into(), 1);
        table.insert("b".into(), 2);
        // The checkpoint took the changes; the store (here: empty) has not written them yet.
        assert_eq!(table.take_changes().encode().unwrap().puts.len(), 2);
        let seen = table.scan(b"c", &NoRecords).unwrap();
        assert_eq!(seen, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
    }

    #[test]
    fn a_table_gives_its_changes_once_and_deletions_as_deletions() {
        let mut table: Table<String, u32> = Table::new(b't');
        table.insert("a".into(), 1);
        table.insert("b".into(), 2);
        *table.get_mut(&"a".to_owned()).unwrap() += 10;
        let changes = table.take_changes().encode().unwrap();
        assert_eq!(changes.puts.len(), 2);
        assert!(table.take_changes().encode().unwrap().is_empty());
        table.remove(&"b".to_owned());
        let changes = table.take_changes().encode().unwrap();
        assert_eq!(
            changes.deletes,
            vec![stored_key(b't', &"b".to_owned()).unwrap()]
        );
        let mut restored: Table<String, u32> = Table::new(b't');
        let mut dump = Vec::new();
        table.dump(&mut dump).unwrap();
        for (key, value) in &dump {
            restored.restore(key, value).unwrap();
        }
        assert_eq!(restored.get(&"a".to_owned()), Some(&11));
        assert!(restored.take_changes().encode().unwrap().is_empty());
    }

    #[test]
    fn an_indexed_table_ranges_in_key_order_and_writes_what_an_ordered_one_writes() {
        let mut indexed: IndexedTable<(i64, String), u32> = IndexedTable::new(b's');
        let mut ordered: Table<(i64, String), u32> = Table::new(b's');
        // Keys made out of order, changed, removed (one after a checkpoint wrote it).
        for (hour, name, add) in [(3, "b", 1), (1, "z", 2), (3, "a", 3), (2, "m", 4)] {
            *indexed.get_or_insert_with((hour, name.to_owned()), || 0) += add;
            *ordered.get_or_insert_with((hour, name.to_owned()), || 0) += add;
        }
        assert_eq!(
            indexed.take_changes().encode().unwrap(),
            ordered.take_changes().encode().unwrap()
        );
        indexed.remove(&(1, "z".to_owned()));
        ordered.remove(&(1, "z".to_owned()));
        indexed.remove(&(9, "never".to_owned()));
        *indexed.get_mut(&(3, "a".to_owned())).unwrap() += 10;
        *ordered.get_mut(&(3, "a".to_owned())).unwrap() += 10;
        // The deletion stays as a tombstone until written: not in a range, nor in `iter`.
        let ranged: Vec<_> = indexed
            .range((2, String::new())..)
            .map(|((hour, name), n)| (*hour, name.clone(), *n))
            .collect();
        assert_eq!(
            ranged,
            vec![(2, "m".into(), 4), (3, "a".into(), 13), (3, "b".into(), 1)]
        );
        let all: Vec<_> = indexed.iter().map(|(key, n)| (key.clone(), *n)).collect();
        let expected: Vec<_> = ordered.iter().map(|(key, n)| (key.clone(), *n)).collect();
        assert_eq!(all, expected);
        assert_eq!(
            indexed.take_changes().encode().unwrap(),
            ordered.take_changes().encode().unwrap()
        );
        assert_eq!(indexed.held(), 3);
        assert_eq!(indexed.range(..).count(), 3);
    }

    #[test]
    fn a_record_created_and_deleted_between_checkpoints_never_reaches_the_store() {
        let mut table: Table<String, u32> = Table::new(b't');
        table.insert("new".into(), 1);
        assert_eq!(table.take("new"), Some(1));
        table.discard("new");
        table.insert("gone".into(), 2);
        table.remove("gone");
        assert!(table.take_changes().encode().unwrap().is_empty());
        assert!(table.is_empty());
        // A stored record taken and not put back is deleted; one put back is written.
        table.insert("kept".into(), 3);
        table.insert("deleted".into(), 4);
        assert_eq!(table.take_changes().encode().unwrap().puts.len(), 2);
        let kept = table.take("kept").unwrap();
        table.put_back("kept", kept + 1).unwrap();
        table.take("deleted").unwrap();
        table.discard("deleted");
        let changes = table.take_changes().encode().unwrap();
        assert_eq!(changes.puts.len(), 1);
        assert_eq!(
            changes.deletes,
            vec![stored_key(b't', &"deleted".to_owned()).unwrap()]
        );

        let mut cached: CachedTable<String, u32> = CachedTable::new(b'c');
        cached.insert("new".into(), 1);
        assert_eq!(cached.take("new").unwrap().map(Taken::into_inner), Some(1));
        assert!(cached.take_changes().encode().unwrap().is_empty());
        cached
            .restore(&stored_key(b'c', &"old".to_owned()).unwrap(), Some(&[5]))
            .unwrap();
        assert_eq!(cached.take("old").unwrap().map(Taken::into_inner), Some(5));
        assert_eq!(cached.take_changes().encode().unwrap().deletes.len(), 1);
    }

    #[test]
    fn a_query_passes_over_a_stored_record_that_does_not_decode_and_says_so() {
        struct Damaged {
            records: BTreeMap<Vec<u8>, Vec<u8>>,
            told: std::sync::Mutex<Vec<Vec<u8>>>,
        }
        impl RecordSource for Damaged {
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
                Ok(self.records.get(key).cloned())
            }
            fn scan(&self, prefix: &[u8]) -> Result<Entries, ViewError> {
                Ok(self
                    .records
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect())
            }
            fn unreadable(&self, key: &[u8], _error: &ViewError) {
                self.told.lock().unwrap().push(key.to_vec());
            }
        }
        let table: CachedTable<String, (u64, String)> = CachedTable::new(b'c');
        let key = |name: &str| table.stored_key(&name.to_owned()).unwrap();
        let value = |n: u64| encode_value(&(n, "fine".to_owned())).unwrap();
        let mut records = BTreeMap::new();
        records.insert(key("a"), value(1));
        // A length prefix that runs past the end: postcard cannot decode it.
        records.insert(key("b"), vec![7, 0xff, 0xff]);
        records.insert(key("c"), value(3));
        let source = Damaged {
            records,
            told: Default::default(),
        };
        let found = table.scan(b"c", &source).unwrap();
        assert_eq!(
            found.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(table.read(&"b".to_owned(), &source).unwrap(), None);
        assert_eq!(
            table.read(&"c".to_owned(), &source).unwrap().as_deref(),
            Some(&(3, "fine".to_owned()))
        );
        assert_eq!(*source.told.lock().unwrap(), vec![key("b"), key("b")]);
    }

    #[test]
    fn a_customer_found_by_its_number_is_its_own_after_the_table_grows() {
        let mut numbering = omnilog_events::CustomerNumbering::new();
        let mut table: CachedTable<Id, u64> = CachedTable::new(b'n');
        table.starts_empty();
        let ids: Vec<String> = (0..3_000).map(|i| format!("customer-{i:05}")).collect();
        // The first round remembers each customer's place as the table grows through
        // every doubling, which moves the slots: most places remembered early then hold
        // another customer's slot, or none.
        for round in 1..=3u64 {
            for id in &ids {
                let number = numbering.number(id);
                *table
                    .get_or_insert_numbered(id.as_str(), number, || 0)
                    .unwrap() += round;
            }
        }
        for id in &ids {
            assert_eq!(table.get(id.as_str()).unwrap(), Some(&6), "{id}");
            // Once the table stopped growing, each customer is found at the place its
            // number remembers: the numbers are used, not only harmless.
            let place = table.places.of(numbering.number(id));
            assert!(
                place.is_some_and(|place| table.slots.holds_at(place, id.as_str())),
                "{id} is not at the place remembered for its number"
            );
        }
        // Another customer's number (an id changed after it was numbered, say) still finds
        // the key's own record.
        let wrong = numbering.number("customer-00002");
        *table
            .get_or_insert_numbered("customer-00001", wrong, || 0)
            .unwrap() += 1;
        assert_eq!(table.get("customer-00001").unwrap(), Some(&7));
        assert_eq!(table.get("customer-00002").unwrap(), Some(&6));
    }

    #[test]
    fn a_customer_let_go_is_not_found_at_its_old_place() {
        let mut numbering = omnilog_events::CustomerNumbering::new();
        let mut table: CachedTable<Id, u64> = CachedTable::new(b'n');
        table.starts_empty();
        let gone = numbering.number("customer-gone");
        *table
            .get_or_insert_numbered("customer-gone", gone, || 0)
            .unwrap() = 1;
        table.take_changes();
        table.evict(0);
        assert!(table.is_empty());
        // Others take the slots; the one let go must be loaded again, not found elsewhere.
        for i in 0..64 {
            let id = format!("customer-{i}");
            *table
                .get_or_insert_numbered(id.as_str(), numbering.number(&id), || 0)
                .unwrap() = 2;
        }
        assert!(
            table
                .get_or_insert_numbered("customer-gone", gone, || 0)
                .is_err(),
            "let go: not in memory, and the store may hold it"
        );
        // A number for no customer of this table, and no number, find by the key.
        let other = omnilog_events::CustomerNumbering::new().number("customer-7");
        assert_eq!(
            *table
                .get_or_insert_numbered("customer-7", other, || 0)
                .unwrap(),
            2
        );
        assert_eq!(
            *table
                .get_or_insert_numbered("customer-8", CustomerNumber::NONE, || 0)
                .unwrap(),
            2
        );
    }

    #[test]
    fn a_cached_table_needs_its_records_loaded_and_lets_clean_ones_go() {
        let mut table: CachedTable<String, Vec<u8>> = CachedTable::new(b'c');
        let key = "customer".to_owned();
        assert!(table.get(&key).is_err(), "not loaded yet");
        table
            .restore(&table.stored_key(&key).unwrap(), None)
            .unwrap();
        assert_eq!(table.get(&key).unwrap(), None);
        table.get_or_insert_with(&key, Vec::new).unwrap().push(7);
        table.insert("other".into(), vec![1, 2, 3]);
        // Changed records stay whatever the budget.
        table.evict(0);
        assert_eq!(table.len(), 2);
        let changes = table.take_changes().encode().unwrap();
        assert_eq!(changes.puts.len(), 2);
        table.evict(0);
        assert!(table.is_empty());
        // A query reads through to the store for what memory let go.
        let stored: BTreeMap<Vec<u8>, Vec<u8>> = changes.puts.into_iter().collect();
        struct Map(BTreeMap<Vec<u8>, Vec<u8>>);
        impl RecordSource for Map {
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
                Ok(self.0.get(key).cloned())
            }
            fn scan(&self, prefix: &[u8]) -> Result<Entries, ViewError> {
                Ok(self
                    .0
                    .range(prefix.to_vec()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect())
            }
        }
        let source = Map(stored);
        assert_eq!(
            table.read(&key, &source).unwrap().as_deref(),
            Some(&vec![7])
        );
        assert_eq!(table.scan(b"c", &source).unwrap().len(), 2);
    }

    #[test]
    fn a_table_that_starts_empty_asks_the_store_only_for_records_it_let_go() {
        let mut table: CachedTable<String, u32> = CachedTable::new(b'c');
        let (written, never) = ("written".to_owned(), "never".to_owned());
        // Over stored state, nothing is known: every record must be loaded first.
        assert!(!table.is_loaded(&written));
        assert!(table.get(&written).is_err());
        table.starts_empty();
        // Over an empty store, a record not in memory is absent: no load needed.
        assert!(table.is_loaded(&written));
        assert_eq!(table.get(&never).unwrap(), None);
        *table.get_or_insert_with(&written, || 0).unwrap() += 5;
        assert_eq!(table.take_changes().encode().unwrap().puts.len(), 1);
        // Written, then let go: now only the store has it, so it must be loaded again;
        // a key never written is still known to be absent.
        table.evict(0);
        assert!(table.is_empty());
        assert!(!table.is_loaded(&written));
        assert!(table.get(&written).is_err());
        assert!(table.is_loaded(&never));
        // Deleting what neither memory nor the store holds writes nothing.
        table.remove(&never);
        assert!(table.take_changes().encode().unwrap().is_empty());
        // A query does not read through for a record known to be absent.
        struct Refuses;
        impl RecordSource for Refuses {
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
                panic!("asked the store for {key:?}")
            }
            fn scan(&self, _prefix: &[u8]) -> Result<Entries, ViewError> {
                Ok(Vec::new())
            }
        }
        assert_eq!(table.read(&never, &Refuses).unwrap(), None);
    }

    #[test]
    fn a_done_partition_forgets_the_keys_it_let_go_until_the_store_may_hold_anything() {
        let mut table: CachedTable<Id, u32> = CachedTable::new(b'c');
        table.starts_empty();
        let (done, kept) = ("of the done partition", "of the next partition");
        *table.get_or_insert_with(done, || 0).unwrap() += 1;
        assert_eq!(table.take_changes().encode().unwrap().puts.len(), 1);
        // Let go in the middle of its partition: remembered, to be loaded again.
        table.evict(0);
        assert!(!table.is_loaded(done));
        // Its partition done: nothing will ask for it again, so it is forgotten.
        table.partition_done(false);
        assert!(table.is_loaded(done));
        // The next partition's records, written and done with: let go unremembered.
        *table.get_or_insert_with(kept, || 0).unwrap() += 1;
        assert_eq!(table.take_changes().encode().unwrap().puts.len(), 1);
        table.partition_done(true);
        assert!(table.is_empty());
        assert!(table.is_loaded(kept));
        // A changed record stays whatever partition is done.
        *table.get_or_insert_with(kept, || 0).unwrap() += 1;
        table.partition_done(true);
        assert_eq!(table.get(kept).unwrap(), Some(&1));
        // Records of any partition may follow: whatever is not in memory is asked for.
        table.store_may_hold_anything();
        assert!(!table.is_loaded(done));
        assert!(table.is_loaded(kept));
    }

    #[test]
    fn a_taken_record_keeps_its_allocation_and_never_changes_a_checkpoint_being_encoded() {
        let mut table: CachedTable<String, u32> = CachedTable::new(b'c');
        table.starts_empty();
        table.insert("k".into(), 1);
        let first = table.take("k").unwrap().unwrap();
        let at = std::ptr::from_ref::<u32>(&first);
        table.put_back("k", first);
        let mut again = table.take("k").unwrap().unwrap();
        assert!(
            std::ptr::eq(at, &*again),
            "put back and taken again, not copied"
        );
        table.put_back("k", again);

        // A checkpoint holds the record while it is encoded: a change made meanwhile goes
        // to a copy, and the checkpoint writes the value it took.
        let encoding = table.take_changes();
        again = table.take("k").unwrap().unwrap();
        *again += 1;
        table.put_back("k", again);
        let written = encoding.encode().unwrap();
        assert_eq!(written.puts.len(), 1);
        assert_eq!(written.puts[0].1, encode_value(&1u32).unwrap());
        assert_eq!(table.take("k").unwrap().map(Taken::into_inner), Some(2));
    }

    /// A snapshot of two tables' changes: records written (in no order) and a stored
    /// record deleted.
    fn two_tables_changed() -> Snapshot {
        let mut customers: CachedTable<String, Vec<u32>> = CachedTable::new(b'c');
        let mut counts: Table<(i64, String), u64> = Table::new(b'b');
        customers.starts_empty();
        counts.insert((-6, "q0".to_owned()), 1);
        counts.take_changes();
        for n in (0..300u32).rev() {
            customers.insert(format!("customer-{n}"), vec![n; (n % 7) as usize]);
            counts.insert((i64::from(n % 13) - 5, format!("q{}", n % 5)), u64::from(n));
        }
        counts.remove(&(-6, "q0".to_owned()));
        changes_of([customers.take_changes(), counts.take_changes()])
    }

    /// A key's byte: zeros and ones often (a zero-padded head ties with them), any other.
    fn key_byte() -> impl proptest::strategy::Strategy<Value = u8> {
        use proptest::strategy::Just;
        proptest::prop_oneof![Just(0u8), Just(1u8), proptest::num::u8::ANY]
    }

    proptest::proptest! {
        /// Ids compare as their bytes do, eight at a time or fewer, whatever their lengths
        /// and shared beginnings; equal ones hash alike whether owned or borrowed.
        #[test]
        fn ids_compare_as_their_text(
            head in proptest::collection::vec(proptest::char::range('0', 'z'), 0..20),
            a in proptest::collection::vec(proptest::char::range('0', 'z'), 0..20),
            b in proptest::collection::vec(proptest::char::range('0', 'z'), 0..20),
        ) {
            let head: String = head.into_iter().collect();
            let a = format!("{head}{}", a.into_iter().collect::<String>());
            let b = format!("{head}{}", b.into_iter().collect::<String>());
            let (id_a, id_b) = (Id::from(a.as_str()), Id::from(b.as_str()));
            proptest::prop_assert_eq!(id_a.cmp(&id_b), a.cmp(&b));
            proptest::prop_assert_eq!(IdKey::new(&a).cmp(IdKey::new(&b)), a.cmp(&b));
            proptest::prop_assert_eq!(id_a == id_b, a == b);
            let hasher = foldhash::fast::FixedState::with_seed(7);
            proptest::prop_assert_eq!(hasher.hash_one(&id_a), hasher.hash_one(IdKey::new(&a)));
            proptest::prop_assert_eq!(hasher.hash_one(&id_a), hasher.hash_one(a.as_str()));
        }

        /// Keys placed for a checkpoint sort as their bytes do, whatever their length, zero
        /// bytes and shared beginnings (the integer head must never decide against them).
        #[test]
        fn placed_keys_sort_as_their_bytes(
            keys in proptest::collection::vec(proptest::collection::vec(key_byte(), 0..24), 0..64)
        ) {
            let placed: Vec<Placed> =
                keys.iter().enumerate().map(|(at, key)| Placed::new(key.clone(), 0, at)).collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            let sorted: Vec<Vec<u8>> =
                Placed::sorted(&placed).into_iter().map(|at| placed[at].key.clone()).collect();
            proptest::prop_assert_eq!(sorted, expected);
        }
    }

    #[test]
    fn changes_encoded_in_order_are_the_encoded_changes_each_record_as_it_is_asked_for() {
        // Built from the records themselves, not through a snapshot.
        let mut expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for n in 0..300u32 {
            expected.push((
                stored_key(b'c', &format!("customer-{n}")).unwrap(),
                Some(encode_value(&vec![n; (n % 7) as usize]).unwrap()),
            ));
        }
        // The last count written to each (hour, queue) is the one kept.
        let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
        for n in (0..300u32).rev() {
            counts.insert((i64::from(n % 13) - 5, format!("q{}", n % 5)), u64::from(n));
        }
        for (key, count) in &counts {
            expected.push((
                stored_key(b'b', key).unwrap(),
                Some(encode_value(count).unwrap()),
            ));
        }
        expected.push((stored_key(b'b', &(-6i64, "q0".to_owned())).unwrap(), None));
        expected.sort();
        let encoded = two_tables_changed().encode().unwrap();
        assert!(encoded.puts.is_sorted() && encoded.deletes.is_sorted());
        assert_eq!(
            encoded.puts.len() + encoded.deletes.len(),
            expected.len(),
            "encode: every change once"
        );
        for (key, value) in expected.iter() {
            match value {
                Some(value) => assert!(encoded.puts.contains(&(key.clone(), value.clone()))),
                None => assert!(encoded.deletes.contains(key)),
            }
        }
        let in_order = two_tables_changed().encode_in_order().unwrap();
        assert_eq!(in_order.len(), expected.len());
        let streamed: Vec<_> = in_order.map(Result::unwrap).collect();
        assert_eq!(streamed, expected);
        assert!(
            streamed.iter().any(|(_, value)| value.is_none()),
            "a deletion"
        );
    }

    #[test]
    fn changes_encoded_into_a_buffer_are_the_changes_streamed_in_order() {
        let expected: Vec<_> = two_tables_changed()
            .encode_in_order()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut in_order = two_tables_changed().encode_in_order().unwrap();
        // Something before, as a writer's buffer holds: what each change appends is read
        // back from where it says.
        let mut out = b"before".to_vec();
        let mut written = Vec::new();
        loop {
            let key_at = out.len();
            let Some(next) = in_order.next_into(&mut out) else {
                break;
            };
            let (key_len, put) = next.unwrap();
            let key_end = key_at + key_len;
            let key = out[key_at..key_end].to_vec();
            assert!(
                put || key_end == out.len(),
                "a deletion appends its key alone"
            );
            written.push((key, put.then(|| out[key_end..].to_vec())));
        }
        assert_eq!(written, expected);
        assert!(out.starts_with(b"before"));
    }

    #[test]
    fn merged_runs_stream_what_changes_in_order_would_hold() {
        let newest = two_tables_changed().encode().unwrap();
        // An older set that touches some of the newest keys (which must win), deletes one
        // the newest puts and puts one it deletes, and holds keys of its own.
        let mut older = Changes::default();
        for (at, (key, value)) in newest.puts.iter().enumerate().step_by(3) {
            if at % 2 == 0 {
                older.deletes.push(key.clone());
            } else {
                older
                    .puts
                    .push((key.clone(), [value.as_slice(), b"old"].concat()));
            }
        }
        for key in &newest.deletes {
            older
                .puts
                .push((key.clone(), b"put before its deletion".to_vec()));
        }
        for n in 0..50u32 {
            older.puts.push((stored_key(b'z', &n).unwrap(), vec![1]));
            older.deletes.push(stored_key(b'a', &n).unwrap());
        }
        older.puts.sort();
        older.deletes.sort();
        let oldest = Changes {
            puts: vec![(stored_key(b'a', &3u32).unwrap(), vec![9])],
            deletes: vec![stored_key(b'z', &4u32).unwrap()],
        };
        let sets = vec![oldest, Changes::default(), older];
        let mut all = sets.clone();
        all.push(newest);
        let expected = Changes::in_order(all);
        let mut runs: Vec<Run> = sets.into_iter().map(Changes::into_run).collect();
        runs.push(Box::new(two_tables_changed().encode_in_order().unwrap()));
        let merged: Vec<_> = merge_runs(runs).map(Result::unwrap).collect();
        assert!(
            merged.is_sorted_by(|a, b| a.0 < b.0),
            "ascending, each key once"
        );
        let puts: Vec<_> = merged
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        let deletes: Vec<_> = merged
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(Changes { puts, deletes }, expected);
        // The newest alone comes through as it is.
        let alone: Vec<_> = merge_runs(vec![Box::new(
            two_tables_changed().encode_in_order().unwrap(),
        )])
        .map(Result::unwrap)
        .collect();
        let streamed: Vec<_> = two_tables_changed()
            .encode_in_order()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(alone, streamed);
    }

    /// Adds two records that are each a little-endian u64 (wrapping).
    fn add_u64(_key: &[u8], sum: &mut Vec<u8>, delta: &[u8]) -> Result<(), ViewError> {
        let number = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        *sum = number(sum)
            .wrapping_add(number(delta))
            .to_le_bytes()
            .to_vec();
        Ok(())
    }

    fn deltas(pairs: &[(&str, u64)]) -> Run {
        let changes: Vec<EncodedChange> = pairs
            .iter()
            .map(|(key, n)| Ok((key.as_bytes().to_vec(), Some(n.to_le_bytes().to_vec()))))
            .collect();
        Box::new(changes.into_iter())
    }

    #[test]
    fn sum_runs_adds_the_deltas_of_a_key_in_key_order_below_zero_too() {
        let runs = vec![
            deltas(&[("a", 1), ("c", 5)]),
            deltas(&[("b", 2), ("c", 0u64.wrapping_sub(3))]),
            deltas(&[("a", 10), ("d", 7)]),
        ];
        let summed: Vec<(String, u64)> = sum_runs(runs, add_u64)
            .map(|change| {
                let (key, record) = change.expect("summed");
                let record = record.expect("no deletion");
                let number = u64::from_le_bytes(record.as_slice().try_into().unwrap());
                (String::from_utf8(key).unwrap(), number)
            })
            .collect();
        let expected = [("a", 11), ("b", 2), ("c", 2), ("d", 7)];
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        assert_eq!(summed, expected);
    }

    #[test]
    fn a_deletion_among_the_deltas_of_a_sum_is_an_error() {
        let deletion: Run = Box::new(std::iter::once(Ok((b"a".to_vec(), None))));
        let runs = vec![deltas(&[("a", 1)]), deletion];
        let outcome: Vec<EncodedChange> = sum_runs(runs, add_u64).collect();
        assert!(
            matches!(outcome.last(), Some(Err(ViewError::Corrupt { reason, .. })) if reason.contains("deletion")),
            "{outcome:?}"
        );
    }

    #[test]
    fn an_ended_record_of_a_table_over_an_empty_store_leaves_no_slot() {
        let mut table: CachedTable<String, u32> = CachedTable::new(b'c');
        table.starts_empty();
        for n in 0..100 {
            let key = format!("k{n}");
            assert!(table.take(key.as_str()).unwrap().is_none());
            table.put_back(key.as_str(), Taken::new(n));
            assert!(table.weight() > 0, "a record held weighs something");
            assert_eq!(
                table.take(key.as_str()).unwrap().map(Taken::into_inner),
                Some(n)
            );
            table.discard(key.as_str());
            assert_eq!(table.weight(), 0, "a discarded slot weighs nothing");
        }
        assert_eq!(table.len(), 0);
        assert!(table.take_changes().encode().unwrap().is_empty());
        // Weighed while they were held, and no more once gone.
        table.evict(usize::MAX);
        assert_eq!(table.weight(), 0);
    }

    #[test]
    fn a_views_tables_are_evicted_to_its_budget_together() {
        let mut big: CachedTable<String, String> = CachedTable::new(b'b');
        let mut small: CachedTable<String, String> = CachedTable::new(b's');
        for n in 0..3_000 {
            big.insert(format!("big{n}"), "x".repeat(100));
            if n % 3 == 0 {
                small.insert(format!("small{n}"), "y".repeat(100));
            }
        }
        // Encoded by a checkpoint, so clean and weighed by their size.
        big.take_changes().encode().unwrap();
        small.take_changes().encode().unwrap();
        let budget = (big.weight() + small.weight()) / 4;
        evict_together(budget, &mut [&mut big, &mut small]);
        assert!(big.weight() + small.weight() <= budget);
        assert!(big.len() > small.len() && !small.is_empty());
    }
}
