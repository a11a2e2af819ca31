//! Measures the candidate stores on omnilog's two storage workloads, on this machine:
//! the log (records appended in groups, each group synced; then read back in order) and
//! the view checkpoints (random keys written in large atomic batches; point reads of
//! present and absent keys). `docs/log.md` has the figures and what was decided from them.
//!
//! Not a member of the workspace (it builds sled, fjall and redb side by side):
//! `cargo run --release --manifest-path benches/store-comparison/Cargo.toml [log|checkpoint]`.
use std::time::Instant;

const RECORD: usize = 300;

fn log_key(partition: u32, offset: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&partition.to_be_bytes());
    k[4..].copy_from_slice(&offset.to_be_bytes());
    k
}

trait Store {
    fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], sync: bool);
    fn get(&self, key: &[u8]) -> Option<usize>;
    fn scan_all(&self) -> usize;
}

struct Sled(sled::Db);
impl Store for Sled {
    fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], sync: bool) {
        let mut b = sled::Batch::default();
        for (k, v) in items { b.insert(k.as_slice(), v.as_slice()); }
        self.0.apply_batch(b).unwrap();
        if sync { self.0.flush().unwrap(); }
    }
    fn get(&self, key: &[u8]) -> Option<usize> { self.0.get(key).unwrap().map(|v| v.len()) }
    fn scan_all(&self) -> usize { self.0.iter().map(|e| e.unwrap().1.len()).count() }
}

struct Fjall(fjall::Database, fjall::Keyspace);
impl Store for Fjall {
    fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], sync: bool) {
        let mut b = self.0.batch();
        for (k, v) in items { b.insert(&self.1, k.as_slice(), v.as_slice()); }
        b.commit().unwrap();
        if sync { self.0.persist(fjall::PersistMode::SyncAll).unwrap(); }
    }
    fn get(&self, key: &[u8]) -> Option<usize> { self.1.get(key).unwrap().map(|v| v.len()) }
    fn scan_all(&self) -> usize { self.1.iter().map(|e| e.into_inner().unwrap().1.len()).count() }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("t");
struct Redb(redb::Database);
impl Store for Redb {
    fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], sync: bool) {
        let mut tx = self.0.begin_write().unwrap();
        if !sync { tx.set_durability(redb::Durability::None); }
        { let mut t = tx.open_table(TABLE).unwrap();
          for (k, v) in items { t.insert(k.as_slice(), v.as_slice()).unwrap(); } }
        tx.commit().unwrap();
    }
    fn get(&self, key: &[u8]) -> Option<usize> {
        let tx = self.0.begin_read().unwrap();
        let t = match tx.open_table(TABLE) { Ok(t) => t, Err(_) => return None };
        t.get(key).unwrap().map(|v| v.value().len())
    }
    fn scan_all(&self) -> usize {
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        use redb::ReadableTable;
        t.iter().unwrap().map(|e| e.unwrap().1.value().len()).count()
    }
}

fn open(kind: &str, dir: &std::path::Path) -> Box<dyn Store> {
    match kind {
        "sled" => Box::new(Sled(sled::Config::new().path(dir).cache_capacity(256 << 20).open().unwrap())),
        "fjall" => {
            let db = fjall::Database::builder(dir).open().unwrap();
            let ks = db.keyspace("t", fjall::KeyspaceCreateOptions::default).unwrap();
            Box::new(Fjall(db, ks))
        }
        "redb" => Box::new(Redb(redb::Database::create(dir.join("db")).unwrap())),
        _ => unreachable!(),
    }
}

fn payload(i: u64) -> Vec<u8> { let mut v = vec![b'x'; RECORD]; v[..8].copy_from_slice(&i.to_le_bytes()); v }

/// The log workload on a key-value store: each record under (partition, offset), plus
/// its deduplication entry (event id -> offset), in groups of `group`, each synced.
fn log_kv(kind: &str, records: u64, group: u64) -> (f64, f64) {
    let dir = tempdir(kind);
    let mut s = open(kind, &dir);
    let mut next = [0u64; 12];
    let t = Instant::now();
    let mut i = 0;
    while i < records {
        let mut items = Vec::new();
        for _ in 0..group.min(records - i) {
            let p = (i % 12) as u32;
            items.push((log_key(p, next[p as usize]).to_vec(), payload(i)));
            let id = uuid::Uuid::new_v4().as_bytes().to_vec();
            assert!(s.get(&id).is_none()); // the deduplication lookup
            items.push((id, next[p as usize].to_be_bytes().to_vec()));
            next[p as usize] += 1; i += 1;
        }
        s.write_batch(&items, true);
    }
    let append = records as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let n = s.scan_all();
    assert!(n >= records as usize);
    let read = records as f64 / t.elapsed().as_secs_f64();
    drop(s); let _ = std::fs::remove_dir_all(&dir);
    (append, read)
}

fn log_segments(records: u64, group: u64) -> (f64, f64) {
    use omnilog_log::{AppendRecord, EmbeddedLog, EventLog, PartitionCounts, Scan, Topic};
    let dir = tempdir("segments");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = EmbeddedLog::open(&dir, PartitionCounts::default()).unwrap();
        let t = Instant::now();
        let mut i = 0;
        while i < records {
            let batch: Vec<AppendRecord> = (i..(i + group).min(records)).map(|n| AppendRecord {
                topic: Topic::Interactions, key: format!("customer-{}", n % 5000),
                event_id: uuid::Uuid::new_v4(), payload: bytes::Bytes::from(payload(n)), headers: vec![] }).collect();
            i += batch.len() as u64;
            log.append(batch).await.unwrap();
        }
        let append = records as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut scan = Scan::to_ends(&log, &[Topic::Interactions]).await.unwrap();
        let mut n = 0;
        loop { let r = log.scan_next_blocking(&mut scan, 8192).unwrap(); if r.is_empty() { break; } n += r.len(); }
        assert_eq!(n as u64, records);
        let read = records as f64 / t.elapsed().as_secs_f64();
        drop(log); let _ = std::fs::remove_dir_all(&dir);
        (append, read)
    })
}

/// The checkpoint workload: `keys` distinct random 32-byte keys, 300-byte values, written
/// in atomic batches of `batch` (one sync per batch), then point reads: half present, half absent.
fn checkpoints(kind: &str, keys: u64, batch: u64) -> (f64, f64) {
    let dir = tempdir(kind);
    let mut s = open(kind, &dir);
    let mut rng = fastrand::Rng::with_seed(7);
    let all: Vec<Vec<u8>> = (0..keys).map(|_| { let mut k = vec![0u8; 32]; rng.fill(&mut k); k }).collect();
    let t = Instant::now();
    for chunk in all.chunks(batch as usize) {
        let items: Vec<(Vec<u8>, Vec<u8>)> = chunk.iter().enumerate().map(|(i, k)| (k.clone(), payload(i as u64))).collect();
        s.write_batch(&items, true);
    }
    let write = keys as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reads = 200_000u64;
    let mut found = 0;
    for n in 0..reads {
        if n % 2 == 0 { if s.get(&all[rng.usize(0..all.len())]).is_some() { found += 1; } }
        else { let mut k = vec![0u8; 32]; rng.fill(&mut k); if s.get(&k).is_some() { found += 1; } }
    }
    assert_eq!(found, reads / 2);
    let get = reads as f64 / t.elapsed().as_secs_f64();
    drop(s); let _ = std::fs::remove_dir_all(&dir);
    (write, get)
}

fn tempdir(kind: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("store-comparison-{kind}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d); std::fs::create_dir_all(&d).unwrap(); d
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let want = |w: &str| which.is_empty() || which.iter().any(|x| x == w);
    if want("log") {
        for group in [1u64, 32, 1000] {
            let records = if group == 1 { 5_000 } else if group == 32 { 100_000 } else { 500_000 };
            let (a, r) = log_segments(records, group);
            println!("log  group {group:>5}  {records:>7} records  omnilog segments : append {a:>10.0}/s  read {r:>10.0}/s");
            for kind in ["sled", "fjall", "redb"] {
                let (a, r) = log_kv(kind, records, group);
                println!("log  group {group:>5}  {records:>7} records  {kind:<17}: append {a:>10.0}/s  read {r:>10.0}/s");
            }
        }
    }
    if want("checkpoint") {
        for kind in ["sled", "fjall", "redb"] {
            let (w, g) = checkpoints(kind, 1_000_000, 50_000);
            println!("checkpoint 1,000,000 keys in batches of 50,000  {kind:<6}: write {w:>10.0} keys/s  get {g:>10.0}/s");
        }
    }
}
