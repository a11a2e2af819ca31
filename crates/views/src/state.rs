//! The state a view folds into: an ordered key-value map that the fold reads and writes
//! through [`StateStore`], and queries read through [`StateReader`].
//!
//! Why a key-value map and not in-memory structs: a view of a large desk (millions of
//! customers, years of history) does not fit in memory, and the projector must commit a
//! view's changes together with the log positions they came from in one atomic write. A
//! fold therefore touches a few small records per event, and the runtime (the `store` and
//! `projector` crates) decides where those records live: an overlay over sled while
//! projecting, a [`MemoryState`] in tests and benchmarks.
//!
//! Records are encoded with postcard (compact, deterministic for the same value), so a view
//! rebuilt from offset 0 holds the same bytes as the live one. Records must therefore not
//! contain `HashMap`s or floats whose value depends on the order of folding.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ViewError;

/// Entries of a scan: (key, encoded record), in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Read access to a view's state.
pub trait StateReader {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError>;

    /// Every entry whose key starts with `prefix`, in key order, at most `limit` of them.
    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, ViewError>;
}

/// Read and write access to a view's state, as the fold sees it. Reads see the fold's own
/// earlier writes.
pub trait StateStore: StateReader {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    fn delete(&mut self, key: &[u8]);
}

/// Reads a record and decodes it.
pub fn get_record<T: DeserializeOwned>(
    state: &(impl StateReader + ?Sized),
    key: &[u8],
) -> Result<Option<T>, ViewError> {
    match state.get(key)? {
        None => Ok(None),
        Some(bytes) => decode_record(key, &bytes).map(Some),
    }
}

/// Encodes a record and writes it.
pub fn put_record<T: Serialize>(
    state: &mut (impl StateStore + ?Sized),
    key: Vec<u8>,
    value: &T,
) -> Result<(), ViewError> {
    let bytes = postcard::to_stdvec(value).map_err(|e| ViewError::Corrupt {
        key: String::from_utf8_lossy(&key).into_owned(),
        reason: format!("cannot encode: {e}"),
    })?;
    state.put(key, bytes);
    Ok(())
}

/// Decodes a record read under `key` (named in the error).
pub fn decode_record<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, ViewError> {
    postcard::from_bytes(bytes).map_err(|e| ViewError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// Scans and decodes every record under `prefix`, in key order.
pub fn scan_records<T: DeserializeOwned>(
    state: &(impl StateReader + ?Sized),
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<(Vec<u8>, T)>, ViewError> {
    state
        .scan_prefix(prefix, limit)?
        .into_iter()
        .map(|(key, bytes)| {
            let record = decode_record(&key, &bytes)?;
            Ok((key, record))
        })
        .collect()
}

/// Builds a key from parts separated by `0x00`, which no part may contain (ids and names
/// are text). Numbers that must sort as numbers go in as big-endian bytes through
/// [`KeyBuilder::number`].
#[derive(Clone, Debug, Default)]
pub struct KeyBuilder(Vec<u8>);

impl KeyBuilder {
    /// A key starting with the table's tag.
    pub fn table(tag: &str) -> Self {
        KeyBuilder(tag.as_bytes().to_vec())
    }

    /// Appends a text part.
    pub fn text(mut self, part: &str) -> Self {
        self.0.push(0);
        self.0.extend_from_slice(part.as_bytes());
        self
    }

    /// Appends a number that sorts numerically.
    pub fn number(mut self, part: u64) -> Self {
        self.0.push(0);
        self.0.extend_from_slice(&part.to_be_bytes());
        self
    }

    /// Appends a signed number that sorts numerically (negative before positive).
    pub fn signed(self, part: i64) -> Self {
        self.number((part as u64) ^ (1 << 63))
    }

    /// The key as a prefix of longer keys: ends with the separator.
    pub fn prefix(mut self) -> Vec<u8> {
        self.0.push(0);
        self.0
    }

    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// A view's state in memory: for tests, for benchmarks of pure folding, and for comparing
/// a live view with a rebuilt one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryState {
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateReader for MemoryState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.entries.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, ViewError> {
        Ok(self
            .entries
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl StateStore for MemoryState {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.entries.insert(key, value);
    }

    fn delete(&mut self, key: &[u8]) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_their_parts() {
        let a = KeyBuilder::table("t").text("c1").number(2).build();
        let b = KeyBuilder::table("t").text("c1").number(10).build();
        let c = KeyBuilder::table("t").text("c2").number(0).build();
        assert!(a < b && b < c);
        let negative = KeyBuilder::table("t").signed(-5).build();
        let positive = KeyBuilder::table("t").signed(3).build();
        assert!(negative < positive);
    }

    #[test]
    fn memory_state_scans_only_its_prefix_in_order() {
        let mut state = MemoryState::new();
        put_record(&mut state, KeyBuilder::table("a").text("2").build(), &2u32).unwrap();
        put_record(&mut state, KeyBuilder::table("a").text("1").build(), &1u32).unwrap();
        put_record(&mut state, KeyBuilder::table("b").text("1").build(), &9u32).unwrap();
        let found: Vec<u32> = scan_records(&state, &KeyBuilder::table("a").prefix(), 10)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found, vec![1, 2]);
        state.delete(&KeyBuilder::table("a").text("1").build());
        assert_eq!(
            get_record::<u32>(&state, &KeyBuilder::table("a").text("1").build()).unwrap(),
            None
        );
    }
}
