//! Exact deduplication of event ids over the whole log, without a B-tree insert per event.
//!
//! The ids of the segment being written live in a hash map. When a segment is sealed its
//! ids are written once, sorted, to a run file beside it (`NNNN.ids`), and the map is let
//! go; in memory a sealed run keeps only a blocked Bloom filter (about 12 bits an id) and
//! every 128th id as a fence. A lookup asks the map, then each run whose filter admits the
//! id: one positioned read of 4 KiB between two fences, then a binary search. A new id (the
//! common case) costs a hash-map probe and one cache line per sealed run.
//!
//! A run file is derived data: if it is missing or damaged it is written again from its
//! segment on open. Run files are written aside and renamed into place, so a crash leaves
//! either none or a whole one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::format::topic_code;
use super::meta::io_error;
use crate::{LogError, Topic};

/// Stored ids by key, to the offset each is stored at. Hashed with foldhash rather than
/// std's SipHash: the writer probes and fills this map for every event it appends, and a
/// profile of `omnilog serve` under load put SipHash's probes and inserts at a third of
/// the writer's CPU. foldhash is seeded per process, so ids a client chooses cannot be
/// aimed at one bucket.
pub(crate) type IdMap = HashMap<DedupKey, u64, foldhash::fast::RandomState>;

/// What identifies a stored event for deduplication: its id within its topic's partition.
///
/// The id is kept as its high and low halves rather than a `u128`, whose 16-byte alignment
/// made the key 32 bytes and a map entry 48: the active segment's map holds every id the
/// segment stores (millions), and each of its doublings moved and faulted in the whole
/// table (5 % of the writer's samples in a 1M load, `perf record`). As halves, the key is
/// 24 bytes and an entry 32. Keys order as the id's big-endian bytes, then topic and
/// partition, as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct DedupKey {
    id: [u64; 2],
    topic: u8,
    partition: u32,
}

impl DedupKey {
    pub(crate) fn new(topic: Topic, partition: u32, id: &Uuid) -> Self {
        DedupKey::of_id(id.as_u128(), topic_code(topic), partition)
    }

    fn of_id(id: u128, topic: u8, partition: u32) -> Self {
        DedupKey {
            id: [(id >> 64) as u64, id as u64],
            topic,
            partition,
        }
    }

    fn id(&self) -> u128 {
        (u128::from(self.id[0]) << 64) | u128::from(self.id[1])
    }
}

const RUN_MAGIC: &[u8; 8] = b"OMNIIDS1";
const RUN_HEADER_BYTES: u64 = 24;
const ENTRY_BYTES: usize = 32;
/// Entries between two fences: one positioned read of 4 KiB per lookup.
const FENCE_STRIDE: usize = 128;
const BLOOM_BITS_PER_ID: usize = 12;
const BLOOM_HASHES: u32 = 7;

fn encode_entry(key: &DedupKey, offset: u64) -> [u8; ENTRY_BYTES] {
    let mut bytes = [0u8; ENTRY_BYTES];
    // Big-endian id first, so entries sort as bytes the way keys sort.
    bytes[0..16].copy_from_slice(&key.id().to_be_bytes());
    bytes[16] = key.topic;
    bytes[20..24].copy_from_slice(&key.partition.to_be_bytes());
    bytes[24..32].copy_from_slice(&offset.to_le_bytes());
    bytes
}

fn decode_entry(bytes: &[u8]) -> (DedupKey, u64) {
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[0..16]);
    let mut partition = [0u8; 4];
    partition.copy_from_slice(&bytes[20..24]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[24..32]);
    (
        DedupKey::of_id(
            u128::from_be_bytes(id),
            bytes[16],
            u32::from_be_bytes(partition),
        ),
        u64::from_le_bytes(offset),
    )
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A blocked Bloom filter over event ids: each id sets [`BLOOM_HASHES`] bits of one 512-bit
/// block, so a lookup touches one cache line. It lives only in memory (built when a run is
/// written or loaded), so its layout is free to change between builds.
#[derive(Debug)]
struct Bloom {
    blocks: Vec<[u64; 8]>,
}

impl Bloom {
    fn with_capacity(ids: usize) -> Self {
        let blocks = (ids * BLOOM_BITS_PER_ID).div_ceil(512).max(1);
        Bloom {
            blocks: vec![[0u64; 8]; blocks],
        }
    }

    fn probes(&self, key: &DedupKey) -> (usize, u64) {
        let hash = splitmix(key.id[1] ^ splitmix(key.id[0]));
        let block = ((u128::from(hash) * self.blocks.len() as u128) >> 64) as usize;
        (block, splitmix(hash))
    }

    fn insert(&mut self, key: &DedupKey) {
        let (block, mut bits) = self.probes(key);
        for _ in 0..BLOOM_HASHES {
            let bit = (bits & 511) as usize;
            self.blocks[block][bit / 64] |= 1 << (bit % 64);
            bits >>= 9;
        }
    }

    fn may_contain(&self, key: &DedupKey) -> bool {
        let (block, mut bits) = self.probes(key);
        for _ in 0..BLOOM_HASHES {
            let bit = (bits & 511) as usize;
            if self.blocks[block][bit / 64] & (1 << (bit % 64)) == 0 {
                return false;
            }
            bits >>= 9;
        }
        true
    }
}

/// The ids of one sealed segment: a sorted file, with a filter and fences in memory.
#[derive(Debug)]
pub(crate) struct SealedRun {
    segment: u64,
    file: File,
    count: usize,
    bloom: Bloom,
    /// The key of every [`FENCE_STRIDE`]th entry.
    fences: Vec<DedupKey>,
}

impl SealedRun {
    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    fn get(&self, key: &DedupKey) -> Result<Option<u64>, LogError> {
        if self.count == 0 || !self.bloom.may_contain(key) {
            return Ok(None);
        }
        // The block whose first entry is the last one not above the key.
        let block = match self.fences.binary_search(key) {
            Ok(at) => at,
            Err(0) => return Ok(None),
            Err(at) => at - 1,
        };
        let first = block * FENCE_STRIDE;
        let entries = FENCE_STRIDE.min(self.count - first);
        let mut bytes = vec![0u8; entries * ENTRY_BYTES];
        self.file
            .read_exact_at(&mut bytes, RUN_HEADER_BYTES + (first * ENTRY_BYTES) as u64)
            .map_err(|error| {
                io_error(
                    format!("reading the ids of segment {}", self.segment),
                    error,
                )
            })?;
        let found = bytes
            .chunks_exact(ENTRY_BYTES)
            .map(decode_entry)
            .collect::<Vec<_>>()
            .binary_search_by(|(entry, _)| entry.cmp(key))
            .ok()
            .map(|at| decode_entry(&bytes[at * ENTRY_BYTES..(at + 1) * ENTRY_BYTES]).1);
        Ok(found)
    }
}

/// The path of a segment's run file.
pub(crate) fn run_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:010}.ids"))
}

/// Writes the run file of a sealed segment from its ids and opens it.
pub(crate) fn write_run(dir: &Path, segment: u64, ids: &IdMap) -> Result<SealedRun, LogError> {
    let mut entries: Vec<(DedupKey, u64)> = ids.iter().map(|(k, v)| (*k, *v)).collect();
    entries.sort_unstable();
    let path = run_path(dir, segment);
    let aside = path.with_extension("ids-tmp");
    let written = (|| -> std::io::Result<()> {
        let file = File::create(&aside)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut crc = 0u32;
        let mut header = [0u8; RUN_HEADER_BYTES as usize];
        header[0..8].copy_from_slice(RUN_MAGIC);
        header[8..16].copy_from_slice(&segment.to_le_bytes());
        header[16..24].copy_from_slice(&(entries.len() as u64).to_le_bytes());
        crc = crc32c::crc32c_append(crc, &header);
        out.write_all(&header)?;
        for (key, offset) in &entries {
            let entry = encode_entry(key, *offset);
            crc = crc32c::crc32c_append(crc, &entry);
            out.write_all(&entry)?;
        }
        out.write_all(&crc.to_le_bytes())?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        // Not synced: the file is derived, and a torn one is written again on open. The
        // rename only makes a half-written file impossible to mistake for a whole one.
        drop(file);
        std::fs::rename(&aside, &path)
    })();
    written.map_err(|error| io_error(format!("writing {}", path.display()), error))?;
    let mut bloom = Bloom::with_capacity(entries.len());
    let mut fences = Vec::with_capacity(entries.len() / FENCE_STRIDE + 1);
    for (index, (key, _)) in entries.iter().enumerate() {
        bloom.insert(key);
        if index % FENCE_STRIDE == 0 {
            fences.push(*key);
        }
    }
    let file = File::open(&path)
        .map_err(|error| io_error(format!("opening {}", path.display()), error))?;
    Ok(SealedRun {
        segment,
        file,
        count: entries.len(),
        bloom,
        fences,
    })
}

/// Opens a sealed segment's run file; `None` if it is missing or damaged (the caller
/// writes it again from the segment).
pub(crate) fn load_run(dir: &Path, segment: u64) -> Option<SealedRun> {
    let path = run_path(dir, segment);
    let file = File::open(&path).ok()?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &file);
    let mut header = [0u8; RUN_HEADER_BYTES as usize];
    reader.read_exact(&mut header).ok()?;
    if &header[0..8] != RUN_MAGIC || u64::from_le_bytes(header[8..16].try_into().ok()?) != segment {
        return None;
    }
    let count = usize::try_from(u64::from_le_bytes(header[16..24].try_into().ok()?)).ok()?;
    // Checked: a damaged count must not overflow (a panic in a debug build).
    let expected_len = u64::try_from(count.checked_mul(ENTRY_BYTES)?)
        .ok()?
        .checked_add(RUN_HEADER_BYTES + 4)?;
    if file.metadata().ok()?.len() != expected_len {
        return None;
    }
    let mut crc = crc32c::crc32c(&header);
    let mut bloom = Bloom::with_capacity(count);
    let mut fences = Vec::with_capacity(count / FENCE_STRIDE + 1);
    let mut entry = [0u8; ENTRY_BYTES];
    let mut previous: Option<DedupKey> = None;
    for index in 0..count {
        reader.read_exact(&mut entry).ok()?;
        crc = crc32c::crc32c_append(crc, &entry);
        let (key, _) = decode_entry(&entry);
        if previous.is_some_and(|previous| previous >= key) {
            return None;
        }
        previous = Some(key);
        bloom.insert(&key);
        if index % FENCE_STRIDE == 0 {
            fences.push(key);
        }
    }
    let mut stored = [0u8; 4];
    reader.read_exact(&mut stored).ok()?;
    if u32::from_le_bytes(stored) != crc {
        return None;
    }
    drop(reader);
    Some(SealedRun {
        segment,
        file,
        count,
        bloom,
        fences,
    })
}

/// Every stored event id: the writer's deduplication index.
#[derive(Debug, Default)]
pub(crate) struct DedupIndex {
    /// Ids of the segment being written.
    active: IdMap,
    /// Ids of sealed segments whose run file is being written in the background.
    sealing: Vec<(u64, std::sync::Arc<IdMap>)>,
    sealed: Vec<SealedRun>,
}

impl DedupIndex {
    pub(crate) fn new(sealed: Vec<SealedRun>, active: IdMap) -> Self {
        DedupIndex {
            active,
            sealing: Vec::new(),
            sealed,
        }
    }

    /// The offset an id is stored at in its partition, if it is.
    pub(crate) fn get(&self, key: &DedupKey) -> Result<Option<u64>, LogError> {
        if let Some(&offset) = self.active.get(key) {
            return Ok(Some(offset));
        }
        for (_, ids) in &self.sealing {
            if let Some(&offset) = ids.get(key) {
                return Ok(Some(offset));
            }
        }
        for run in self.sealed.iter().rev() {
            if let Some(offset) = run.get(key)? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    pub(crate) fn insert(&mut self, key: DedupKey, offset: u64) {
        self.active.insert(key, offset);
    }

    /// The active segment was sealed as `segment`: its ids move aside until their run file
    /// is written; returns them for the writer of that file.
    pub(crate) fn seal(&mut self, segment: u64) -> std::sync::Arc<IdMap> {
        let ids = std::sync::Arc::new(std::mem::take(&mut self.active));
        self.sealing.push((segment, ids.clone()));
        ids
    }

    /// A run file was written: lookups use it from now on.
    pub(crate) fn sealed(&mut self, run: SealedRun) {
        self.sealing
            .retain(|(segment, _)| *segment != run.segment());
        self.sealed.push(run);
        self.sealed.sort_by_key(SealedRun::segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128, partition: u32) -> DedupKey {
        DedupKey::of_id(
            n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834),
            0,
            partition,
        )
    }

    #[test]
    fn a_key_is_24_bytes_and_orders_as_its_ids_bytes() {
        assert_eq!(size_of::<DedupKey>(), 24);
        assert_eq!(size_of::<(DedupKey, u64)>(), 32);
        let (low, high) = (key(1, 0), key(2, 0));
        assert_eq!(
            low.cmp(&high),
            encode_entry(&low, 0).cmp(&encode_entry(&high, 0)),
            "keys sort as their entries' bytes"
        );
        let id = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(DedupKey::of_id(id, 1, 7).id(), id);
        assert_eq!(
            decode_entry(&encode_entry(&DedupKey::of_id(id, 1, 7), 9)),
            (DedupKey::of_id(id, 1, 7), 9)
        );
    }

    #[test]
    fn a_sealed_run_finds_every_id_it_holds_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let ids: IdMap = (0..10_000u128)
            .map(|n| (key(n, (n % 12) as u32), n as u64))
            .collect();
        let written = write_run(dir.path(), 3, &ids).unwrap();
        let loaded = load_run(dir.path(), 3).expect("the run file loads");
        for run in [&written, &loaded] {
            for n in 0..10_000u128 {
                assert_eq!(run.get(&key(n, (n % 12) as u32)).unwrap(), Some(n as u64));
                // The same id in another partition is another event.
                assert_eq!(run.get(&key(n, (n % 12) as u32 + 1)).unwrap(), None);
            }
            for n in 10_000..20_000u128 {
                assert_eq!(run.get(&key(n, 0)).unwrap(), None);
            }
        }
    }

    #[test]
    fn a_damaged_run_file_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let ids: IdMap = (0..500u128).map(|n| (key(n, 0), n as u64)).collect();
        write_run(dir.path(), 1, &ids).unwrap();
        let path = run_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load_run(dir.path(), 1).is_none());
        assert!(load_run(dir.path(), 2).is_none());
        // A count so large its bytes overflow: refused, not a panic.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(load_run(dir.path(), 1).is_none());
    }

    #[test]
    fn the_index_looks_in_the_active_map_then_the_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = DedupIndex::default();
        index.insert(key(1, 0), 10);
        let sealing = index.seal(1);
        assert_eq!(index.get(&key(1, 0)).unwrap(), Some(10));
        index.insert(key(2, 0), 11);
        let run = write_run(dir.path(), 1, &sealing).unwrap();
        index.sealed(run);
        assert_eq!(index.get(&key(1, 0)).unwrap(), Some(10));
        assert_eq!(index.get(&key(2, 0)).unwrap(), Some(11));
        assert_eq!(index.get(&key(3, 0)).unwrap(), None);
    }
}
