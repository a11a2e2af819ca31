//! Helpers shared by the embedded log's acceptance tests: building records, payload bytes
//! that do not compress, reading a partition to its end, the log's files of a kind, and a
//! small seeded random generator.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use omnilog_log::{AppendRecord, EventLog, LogRecord, Topic};
use uuid::Uuid;

/// The partition count of the default log.
pub const PARTITIONS: u32 = 12;

/// A record of the interactions topic.
pub fn record(key: impl Into<String>, event_id: Uuid, payload: impl Into<Bytes>) -> AppendRecord {
    AppendRecord {
        topic: Topic::Interactions,
        key: key.into(),
        event_id,
        payload: payload.into(),
        headers: Vec::new(),
    }
}

/// `len` lowercase letters that LZ4 cannot shrink, the same for the same `name`: the log
/// stores a batch compressed when that pays, so a test that needs segments to fill (or a
/// payload of a known size on disk) writes these rather than a repeated letter.
pub fn incompressible(name: &str, len: usize) -> String {
    // Seeded by the name's FNV-1a hash.
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = Rng::seeded(seed);
    (0..len)
        .map(|_| char::from(b'a' + (rng.next_u64() % 26) as u8))
        .collect()
}

/// A deterministic event id, as the ingest path derives them (uuid v5).
pub fn event_id(name: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// Every record of a partition, read `chunk` at a time until the published end.
pub async fn read_partition(
    log: &dyn EventLog,
    topic: Topic,
    partition: u32,
    chunk: usize,
) -> Vec<LogRecord> {
    let end = log.end_offsets(topic).await.expect("end offsets")[partition as usize];
    let mut records = Vec::with_capacity(end as usize);
    while (records.len() as u64) < end {
        let batch = log
            .read(topic, partition, records.len() as u64, chunk)
            .await
            .expect("read");
        assert!(
            !batch.is_empty(),
            "partition {partition} ends at {end} but reading from {} returned nothing",
            records.len()
        );
        records.extend(batch);
    }
    records
}

/// A small seeded generator (splitmix64). The seed comes from `OMNILOG_TEST_SEED` when set,
/// so a failing run can be replayed, and is random otherwise.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Self {
        let seed = std::env::var("OMNILOG_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            });
        eprintln!("random seed: {seed} (replay with OMNILOG_TEST_SEED={seed})");
        Rng(seed)
    }

    pub fn seeded(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (inclusive), close enough for tests.
    pub fn in_range(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        let span = range.end() - range.start() + 1;
        range.start() + self.next_u64() % span
    }
}

/// The files in `dir` whose extension is `extension` (`seg`, `idx`, `ids`), sorted.
pub fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}
