//! The view store: where projected views keep their checkpoints, on fjall (an LSM tree).
//!
//! One fjall database per data directory holds every view. Each version of a view is its
//! own keyspace (`view-{name}-v{version}`), so a rebuild folds a new version beside the live
//! one and the swap is one write to the `meta` keyspace. Inside a version's keyspace, the
//! view's records (keys that start with a table's tag byte, see `omnilog_views::state`) sit
//! beside two reserved keys: the checkpoint (the next log offset of every partition the state
//! has folded, and counters) and the layout of the state.
//!
//! The invariant that makes projection exactly-once in effect: a checkpoint's changed
//! records and the positions they lead to are written in ONE fjall write batch
//! ([`ViewTable::commit`]), which fjall applies atomically, also across a crash. After a crash
//! the view restarts from its last checkpoint and folds the log again from there: nothing
//! lost, nothing counted twice. The runtime syncs the store ([`ViewTable::flush`]: fjall's
//! journal, `fdatasync`) after every checkpoint. A replay into a fresh store writes its
//! large checkpoints with [`ViewTable::ingest_in_order`] instead (records streamed in key
//! order as they are encoded): straight into new disk tables, joined to the store in one
//! step, bypassing the journal.
//!
//! Why fjall and not sled (the store before it): `benches/store-comparison` writes random
//! keys in atomic batches of 50,000 and reads them back, the checkpoint workload. One run
//! (see `docs/log.md`): fjall 283,403 keys/s and 158,379 point reads/s, sled 0.34.7 44,336
//! keys/s and 23,003 reads/s. An LSM tree writes a checkpoint sequentially; sled copied a
//! B-tree node for every key.
//!
//! A store that cannot be opened (damaged by a power cut, or written by an older build on
//! sled) is set aside beside itself (`views.unreadable-<time>`) and a new one created: the
//! views are folded again from the log, with a warning. A server never refuses to start
//! because of its view store.
//!
//! A store can also be opened only to read it ([`ViewStore::open_read_only`], for `omnilog
//! inspect`): nothing is written in its directory, so a read-only or full disk is no
//! obstacle.
//!
//! fjall calls block: callers on an async runtime run them on blocking threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use omnilog_events::Destination;
use omnilog_views::state::Entries;
use omnilog_views::{Changes, RecordSource, ViewError, ViewState};
use serde::{Deserialize, Serialize};

mod deferred;
mod writeback;

use deferred::{Deferred, KeyspaceSlot};
use writeback::EarlyWriteback;

/// The reserved key of a view's checkpoint. Table tags are ASCII letters, so a key starting
/// with 0xFF cannot collide with a record (and sorts after them all).
const CHECKPOINT_KEY: &[u8] = b"\xffcheckpoint";
/// The reserved key of the layout of a version's state.
const LAYOUT_KEY: &[u8] = b"\xfflayout";
const RESERVED_PREFIX: u8 = 0xff;
const META: &str = "meta";

/// fjall's block cache: what stays of the store in memory once read.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// fjall's memtable of each version: writes held in memory until flushed to a disk table.
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// Disk tables a first level gathers before fjall compacts them into the next, in a store a
/// replay builds (see [`ViewStore::open_for_replay`]); a server's store keeps fjall's 4.
///
/// A replay writes each pass of the log as one large sorted table set, and reads nothing
/// back. A replay of 10M events writes about fourteen such sets into the journey view's
/// version, which overlap in key range (customer ids hash across partitions): at 4, fjall
/// merged them three times over while the replay ran (a fifth of its CPU in `perf`); at 16,
/// not at all. Three alternated pairs of `/usr/bin/time omnilog replay` on 10M events: 38.2
/// s median (62 to 67 s of CPU) at 4, 35.5 s (55 s) at 16 (alternated, one hour). A live
/// server is another matter: it reads records back from disk (a customer not in memory),
/// and more tables to look in cost it more than the compactions saved (alternated runs of
/// `omnilog bench --events 2000 --ingest-events 200000 --single-requests 20000
/// --latency-seconds 10`: one event a request 14.7k and 13.8k req/s at 16 against 16.5k and
/// 17.5k at 4, p99 latency 11.8 and 7.8 ms against 3.3 and 4.9 ms). fjall stores a
/// keyspace's options with it, so a replayed store keeps its threshold when served
/// (read-only).
///
/// Later, cached records were weighed by their size in memory rather than their encoded
/// size, and a 10M replay writes about thirty checkpoints of the journey view, so 16 let
/// fjall compact again: 28 took 34.9, 35.0 and 35.8 s (54.6 to 58.6 s of CPU) against
/// 36.3, 36.6 and 38.7 s (56.9 to 62.1 s) at 16, three alternated pairs. Kept below 30,
/// where fjall halts writes that are not ingestions until it has compacted (from 20 it
/// slows them a little: a replay writes by ingestion, and a replayed store is served
/// read-only).
const REPLAY_FIRST_LEVEL_TABLES: u8 = 28;

fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
}

/// The size of the disk tables fjall's compactions write in a replay's versions (fjall's
/// default: 64 MiB). A compaction holds about one output table's worth of the blocks it
/// read: the index of the table it writes keeps each data block's last key, and a key read
/// from a disk table is a view into that table's decompressed block, so the block stays in
/// memory until the output table is done (lsm-tree 3.1's table writer, `register_data_block`
/// of `last.key.user_key.clone()`). In `heaptrack omnilog replay` of 10M events (four passes
/// a partition), the blocks held by a compaction were 70 MB of the heap's 380 MB peak. Peak
/// RSS of `/usr/bin/time omnilog replay` on the same history, alternated runs: 465, 482
/// and 489 MB at 16 MiB, 519 and 530 MB at 32 MiB, 556 and 558 MB at 64 MiB, in 16.8 to
/// 17.9 s each (docs/benchmarks-journal.md, "2026-12-04, morning").
const REPLAY_TABLE_BYTES: u64 = 16 * 1024 * 1024;

fn replay_keyspace_options() -> KeyspaceCreateOptions {
    keyspace_options().compaction_strategy(std::sync::Arc::new(
        fjall::compaction::Leveled::default()
            .with_l0_threshold(REPLAY_FIRST_LEVEL_TABLES)
            .with_table_target_size(REPLAY_TABLE_BYTES),
    ))
}

/// The versions of a long replay also store their disk tables LZ4-compressed (fjall
/// compresses only its deeper levels by default, and an ingested table lands in the first).
/// An ingestion cuts its tables at 64 MiB, and fjall counts tables, not ingestions, against
/// [`REPLAY_FIRST_LEVEL_TABLES`]: uncompressed, the journey view's checkpoints of a 10M
/// replay made about thirty tables, and fjall compacted the whole view (900 MB) as the
/// replay closed, which waited for it. Compressed, the view is about 500 MB in fewer
/// tables than the threshold: two alternated pairs of `/usr/bin/time omnilog replay --view
/// journey` on 10M events took 25.6 and 23.4 s of wall (20.3 and 18.9 s until the replay
/// said it was done: the rest was the compaction) uncompressed, against 22.7 and 18.4 s (no
/// wait) compressed, with 39.5 and 37.1 s of CPU against 37.5 and 30.1 s. A short replay
/// never comes near the threshold, and compressing would only cost it: 13 % of the
/// instructions of a 200k-event replay (`valgrind --tool=callgrind omnilog replay`).
fn long_replay_keyspace_options() -> KeyspaceCreateOptions {
    replay_keyspace_options().data_block_compression_policy(fjall::config::CompressionPolicy::all(
        fjall::CompressionType::Lz4,
    ))
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("view store: {0}")]
    Storage(String),
    #[error("view store record {key:?} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("a view wrote the reserved key {0:?}")]
    ReservedKey(String),
    #[error(
        "the view store in {0} is held by another process (an omnilog server running on this data dir)"
    )]
    Locked(String),
}

impl From<fjall::Error> for StoreError {
    fn from(error: fjall::Error) -> Self {
        StoreError::Storage(error.to_string())
    }
}

impl From<StoreError> for ViewError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt { key, reason } => ViewError::Corrupt { key, reason },
            other => ViewError::Storage(other.to_string()),
        }
    }
}

/// A fjall error as a view sees it: damaged bytes ([`is_damage`]) as a record that cannot
/// be read, so that the version is cleared and folded again rather than failing the same
/// read for ever; anything else as the store failing.
fn storage(error: fjall::Error) -> ViewError {
    if is_damage(&error) {
        ViewError::Corrupt {
            key: "a block of the view store".to_owned(),
            reason: error.to_string(),
        }
    } else {
        ViewError::Storage(error.to_string())
    }
}

/// Whether `error` says bytes the store wrote do not read back (a block whose checksum
/// fails, that does not decompress or does not parse): damage on the disk, which reading
/// again cannot mend, as opposed to a disk or machine that fails now.
fn is_damage(error: &fjall::Error) -> bool {
    use fjall::LsmError;
    match error {
        fjall::Error::Storage(inner) => match inner {
            LsmError::Io(io) => is_damaged_file(io),
            LsmError::Decompress(_)
            | LsmError::InvalidVersion(_)
            | LsmError::Unrecoverable
            | LsmError::ChecksumMismatch { .. }
            | LsmError::InvalidTag(_)
            | LsmError::InvalidTrailer
            | LsmError::InvalidHeader(_)
            | LsmError::Utf8(_) => true,
            _ => false,
        },
        fjall::Error::Io(io) => is_damaged_file(io),
        fjall::Error::Decompress(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_)
        | fjall::Error::InvalidVersion(_)
        | fjall::Error::Unrecoverable => true,
        _ => false,
    }
}

/// A file shorter than what it says it holds, or bytes that are not what they should be.
fn is_damaged_file(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
    )
}

fn view_storage(error: StoreError) -> ViewError {
    ViewError::Storage(error.to_string())
}

/// How far a view's state has folded the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The next offset to fold, per (topic, partition). Absent means 0.
    pub positions: BTreeMap<(Destination, u32), u64>,
    /// Events folded into the state (dead letters included).
    pub events_applied: u64,
    /// Events that could not be decoded or applied and went to the dead letter.
    pub dead_letters: u64,
}

impl Checkpoint {
    /// The next offset to fold in a partition.
    pub fn next_offset(&self, topic: Destination, partition: u32) -> u64 {
        self.positions
            .get(&(topic, partition))
            .copied()
            .unwrap_or(0)
    }
}

/// Every view's state in one data directory.
#[derive(Clone)]
pub struct ViewStore {
    /// The database, or, for a replay's new store, the promise of it (see
    /// [`ViewStore::open_for_replay`]).
    db: Deferred<Database>,
    meta: Deferred<Keyspace>,
    dir: PathBuf,
    /// The options of the keyspaces this store creates.
    options: fn() -> KeyspaceCreateOptions,
    /// For a store opened read-only: the lock and mirror it reads through (dropped after
    /// the database above it).
    hold: Option<std::sync::Arc<ReadOnlyHold>>,
}

impl std::fmt::Debug for ViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn keyspace_name(view: &str, version: u32) -> String {
    format!("view-{view}-v{version}")
}

fn active_key(view: &str) -> String {
    format!("active/{view}")
}

fn open_database(dir: &Path) -> Result<Database, fjall::Error> {
    // The journal is not compressed: a checkpoint's records go to the journal once and to
    // a disk table (compressed there) once; compressing the journal too cost a fifth of a
    // replay's checkpoint (perf of `omnilog replay`, 200,000 events).
    Database::builder(dir)
        .cache_size(CACHE_BYTES)
        .journal_compression(fjall::CompressionType::None)
        .open()
}

/// Whether `dir` holds anything (a store of this build or another's): a directory that
/// does not exist or is empty holds none.
fn holds_a_store(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Whether `dir` holds sled's files: a store of the builds before fjall, which this build
/// cannot read.
fn holds_sled_store(dir: &Path) -> bool {
    dir.join("conf").exists() || dir.join("db").exists()
}

/// Whether an open failed because another process holds the store (fjall's own answer,
/// not a guess from an error's words: a full or read-only disk is not a running server).
fn is_locked(error: &fjall::Error) -> bool {
    matches!(error, fjall::Error::Locked)
}

/// Whether an error opening the store says the machine lacks something now (space, file
/// handles, memory, permission) rather than that the store is damaged: the store is then
/// left as it is and the error returned, for the operator to free what is missing. Set
/// aside on a full disk, a store was renamed away, its views were folded again from offset
/// 0 after the restart, and a copy sat beside the new one on the disk that was full (found
/// by review).
fn lacks_resources(error: &fjall::Error) -> bool {
    let io = match error {
        fjall::Error::Io(io) => io,
        fjall::Error::Storage(fjall::LsmError::Io(io)) => io,
        _ => return false,
    };
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    const ENOMEM: i32 = 12;
    const EROFS: i32 = 30;
    matches!(
        io.kind(),
        std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::QuotaExceeded
            | std::io::ErrorKind::ReadOnlyFilesystem
    ) || matches!(
        io.raw_os_error(),
        Some(EMFILE | ENFILE | ENOSPC | EDQUOT | ENOMEM | EROFS)
    )
}

/// fjall's lock file in a store's directory.
const LOCK_FILE: &str = "lock";

/// What a store opened with [`ViewStore::open_read_only`] stands on: the source directory's
/// lock, held so that no server starts on it and compacts away the tables being read, and
/// the private directory fjall opens instead of the source (removed when the store goes).
struct ReadOnlyHold {
    _lock: std::fs::File,
    _scratch: tempfile::TempDir,
}

/// Fills `to` with what fjall needs to open the store in `from` without writing there:
/// table and blob files (immutable once written) as links to the originals, everything else
/// (journals, version files, the lock) copied.
fn mirror(from: &Path, to: &Path) -> std::io::Result<()> {
    let immutable = matches!(
        from.file_name().and_then(|n| n.to_str()),
        Some("tables" | "blobs")
    );
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            mirror(&source, &target)?;
        } else if immutable {
            std::os::unix::fs::symlink(std::path::absolute(&source)?, &target)?;
        } else {
            copy_sparse(&source, &target)?;
        }
    }
    Ok(())
}

/// Copies a file, leaving its runs of zeros as holes: a journal is allocated whole (64 MiB)
/// and mostly empty, which a plain copy would write out in full.
fn copy_sparse(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 1 << 20;
    let source = std::fs::File::open(from)?;
    let len = source.metadata()?.len();
    let target = std::fs::File::create_new(to)?;
    let mut buffer = vec![0u8; CHUNK.min(len) as usize];
    let mut at = 0;
    while at < len {
        let n = CHUNK.min(len - at) as usize;
        source.read_exact_at(&mut buffer[..n], at)?;
        if buffer[..n].iter().any(|&byte| byte != 0) {
            target.write_all_at(&buffer[..n], at)?;
        }
        at += n as u64;
    }
    target.set_len(len)
}

impl ViewStore {
    /// Opens (or creates) the store in `dir`. A store that cannot be opened is set aside
    /// and a new one created (see the module documentation).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Storage(format!("creating {}: {e}", dir.display())))?;
        let older = holds_sled_store(dir);
        let db = if older {
            Err(None)
        } else {
            open_database(dir).map_err(Some)
        };
        let db = match db {
            Ok(db) => db,
            Err(Some(error)) if is_locked(&error) => {
                return Err(StoreError::Locked(dir.display().to_string()));
            }
            Err(Some(error)) if lacks_resources(&error) => {
                return Err(StoreError::Storage(format!(
                    "opening the view store in {}: {error} (the store is left as it is: free what is missing and start again)",
                    dir.display()
                )));
            }
            Err(error) => {
                let aside = set_aside(dir)?;
                tracing::warn!(
                    dir = %dir.display(),
                    set_aside = %aside.display(),
                    error = error.map_or_else(|| "a store of an older format (sled)".to_owned(), |e| e.to_string()),
                    "the view store cannot be opened; it is set aside and every view is folded again from the log"
                );
                open_database(dir)?
            }
        };
        Self::over(db, dir)
    }

    /// Creates a store for a replay to build (in `dir`, which holds no store yet): its
    /// versions defer compaction (see [`REPLAY_FIRST_LEVEL_TABLES`]).
    ///
    /// A directory without a store yet (what `omnilog replay` builds into) gets its store
    /// created on a thread of its own while the replay starts folding: fjall's database, its
    /// journal and the store's meta keyspace took 27 `fsync`s (6 to 10 ms on this machine's
    /// disk, `perf record -e sched:sched_switch` of `omnilog bench`) before a worker started.
    /// The first use that needs the database waits for it (a replay's first is making its
    /// tables, on a thread of its own too), and a failure to create it is that use's error.
    pub fn open_for_replay(dir: &Path) -> Result<Self, StoreError> {
        if !holds_a_store(dir) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Storage(format!("creating {}: {e}", dir.display())))?;
            let what = format!("the view store in {}", dir.display());
            let (db, db_maker) = Deferred::in_the_making(what.clone());
            let (meta, meta_maker) =
                Deferred::in_the_making(format!("the meta keyspace of {what}"));
            let path = dir.to_path_buf();
            std::thread::Builder::new()
                .name("open-store".to_owned())
                .spawn(move || {
                    let opened = open_database(&path).map_err(|e| e.to_string());
                    let meta = match &opened {
                        Ok(db) => db
                            .keyspace(META, keyspace_options)
                            .map_err(|e| e.to_string()),
                        Err(reason) => Err(reason.clone()),
                    };
                    // Nobody waiting any more (the replay failed first) is no error.
                    let _ = db_maker.send(opened);
                    let _ = meta_maker.send(meta);
                })
                .map_err(|e| StoreError::Storage(format!("starting the store's opener: {e}")))?;
            return Ok(ViewStore {
                db,
                meta,
                dir: dir.to_path_buf(),
                options: replay_keyspace_options,
                hold: None,
            });
        }
        let mut store = Self::open(dir)?;
        store.options = replay_keyspace_options;
        Ok(store)
    }

    /// This replay store, with versions created from it storing compressed tables: for a
    /// replay of a history long enough to write many checkpoints (see
    /// [`long_replay_keyspace_options`]).
    pub fn for_long_replay(&self) -> Self {
        let mut store = self.clone();
        store.options = long_replay_keyspace_options;
        store
    }

    /// Opens an existing store to read it, without writing anything in `dir`: it works on
    /// a read-only or full disk, and leaves the store as it was. fjall writes whenever it
    /// opens a database (its lock, its journal), so it opens a private mirror in the
    /// temporary directory instead: the store's disk tables are linked, not copied (they are
    /// never changed once written), and its journals and small files copied (journals
    /// sparsely). While the returned store lives it holds the store's lock, so no server
    /// starts on `dir` and compacts the linked tables away; a store a running server holds
    /// is [`StoreError::Locked`]. Writes to the returned store go to the mirror and are
    /// dropped with it.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        if holds_sled_store(dir) {
            return Err(StoreError::Storage(format!(
                "{} holds a view store of an older build (on sled); a server of this build sets it aside and folds the views again",
                dir.display()
            )));
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::File::open(&lock_path).map_err(|e| {
            StoreError::Storage(format!("{} holds no view store: {e}", dir.display()))
        })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Storage(format!(
                    "locking {}: {e}",
                    lock_path.display()
                )));
            }
        }
        let scratch = tempfile::Builder::new()
            .prefix("omnilog-views-")
            .tempdir()
            .map_err(|e| StoreError::Storage(format!("creating a temporary directory: {e}")))?;
        mirror(dir, scratch.path()).map_err(|e| {
            StoreError::Storage(format!(
                "mirroring {} into {}: {e}",
                dir.display(),
                scratch.path().display()
            ))
        })?;
        let db = open_database(scratch.path())?;
        let mut store = Self::over(db, dir)?;
        store.hold = Some(std::sync::Arc::new(ReadOnlyHold {
            _lock: lock,
            _scratch: scratch,
        }));
        Ok(store)
    }

    /// The store over an opened database.
    fn over(db: Database, dir: &Path) -> Result<Self, StoreError> {
        let meta = db.keyspace(META, keyspace_options)?;
        let what = format!("the view store in {}", dir.display());
        Ok(ViewStore {
            db: Deferred::made(what.clone(), db),
            meta: Deferred::made(format!("the meta keyspace of {what}"), meta),
            dir: dir.to_path_buf(),
            options: keyspace_options,
            hold: None,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The version of `view` queries read, if one was activated.
    pub fn active_version(&self, view: &str) -> Result<Option<u32>, StoreError> {
        Ok(self
            .meta
            .get()?
            .get(active_key(view))?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes)))
    }

    /// Makes `version` the one queries read, durably.
    pub fn set_active(&self, view: &str, version: u32) -> Result<(), StoreError> {
        self.set_active_many(&[(view, version)])
    }

    /// [`ViewStore::set_active`] for several views, synced once (each sync is a write of
    /// the store's journal and an `fsync`: a replay marks five views at once).
    pub fn set_active_many(&self, versions: &[(&str, u32)]) -> Result<(), StoreError> {
        for (view, version) in versions {
            self.meta
                .get()?
                .insert(active_key(view), version.to_be_bytes().to_vec())?;
        }
        self.flush()
    }

    /// Every version of `view` that has a keyspace, ascending.
    pub fn versions(&self, view: &str) -> Vec<u32> {
        let prefix = format!("view-{view}-v");
        let Ok(db) = self.db.get() else {
            // A replay's store that could not be created holds no version.
            return Vec::new();
        };
        let mut versions: Vec<u32> = db
            .list_keyspace_names()
            .into_iter()
            .filter_map(|name| name.as_ref().strip_prefix(&prefix)?.parse().ok())
            .collect();
        versions.sort_unstable();
        versions
    }

    /// One version of a view (created empty if new).
    pub fn table(&self, view: &str, version: u32) -> Result<ViewTable, StoreError> {
        let name = keyspace_name(view, version);
        let keyspace = self.db.get()?.keyspace(&name, self.options)?;
        Ok(self.table_over(
            KeyspaceSlot::made(format!("the keyspace {name}"), keyspace),
            name,
            version,
            None,
        ))
    }

    /// The table of the keyspace in `slot`, named `name`.
    fn table_over(
        &self,
        slot: KeyspaceSlot,
        name: String,
        version: u32,
        layout_to_write: Option<u32>,
    ) -> ViewTable {
        ViewTable {
            db: self.db.clone(),
            keyspace: slot,
            version,
            layout_to_write,
            unreadable: std::sync::Arc::new(Unreadable::new(name)),
            damaged_for_tests: Default::default(),
        }
    }

    /// New versions' tables for a replay to fold into, as `(view, version, layout)`: they
    /// are made one after another on a thread of their own while the replay folds (see
    /// `deferred.rs`: fjall makes keyspaces one at a time, each with about twenty
    /// `fsync`s). A table answers as new and empty until then, and its first use that needs
    /// the store waits for it (a replay's first is its last checkpoint). Its layout is
    /// written with each of its checkpoints instead of when it is made: a write before an
    /// ingestion goes to fjall's journal and memtable, which the ingestion must then flush
    /// into a disk table (and a version of the tree) of its own. A version that already
    /// has a keyspace is opened here, as [`ViewStore::table_with_layout`] does.
    pub fn new_tables_in_background(
        &self,
        tables: &[(&str, u32, u32)],
    ) -> Result<Vec<ViewTable>, StoreError> {
        let mut opened = Vec::with_capacity(tables.len());
        let mut to_make = Vec::new();
        for &(view, version, layout) in tables {
            let name = keyspace_name(view, version);
            // A replay's new store whose database is still being created holds no
            // keyspace yet: asking would wait for it. (A store opened otherwise holds its
            // database from the start.)
            let unknown_yet = self.db.is_new_and_untouched();
            if !unknown_yet && self.db.get()?.keyspace_exists(&name) {
                opened.push(self.table_with_layout(view, version, layout)?);
                continue;
            }
            let (slot, maker) = KeyspaceSlot::in_the_making(format!("the keyspace {name}"));
            opened.push(self.table_over(slot, name.clone(), version, Some(layout)));
            to_make.push((name, maker));
        }
        if !to_make.is_empty() {
            let db = self.db.clone();
            let options = self.options;
            std::thread::Builder::new()
                .name("make-tables".to_owned())
                .spawn(move || {
                    for (name, maker) in to_make {
                        // A replay's new store: its database is waited for here.
                        let made = db
                            .get()
                            .map_err(|e| e.to_string())
                            .and_then(|db| db.keyspace(&name, options).map_err(|e| e.to_string()));
                        // A table nobody waits for any more (its replay failed) is no error.
                        let _ = maker.send(made);
                    }
                })
                .map_err(|e| StoreError::Storage(format!("starting the table maker: {e}")))?;
        }
        Ok(opened)
    }

    /// One version of a view, to fold state of `layout` into (the view's
    /// [`omnilog_views::View::layout`]). A version holding state of another layout (written
    /// by a build whose view kept other records) is cleared, checkpoint and all, so the view
    /// folds again from offset 0: new code reading old records would answer wrongly, or fail.
    pub fn table_with_layout(
        &self,
        view: &str,
        version: u32,
        layout: u32,
    ) -> Result<ViewTable, StoreError> {
        let table = self.table(view, version)?;
        let stored = table.layout()?;
        let cleared = stored.is_some_and(|stored| stored != layout);
        if cleared {
            tracing::warn!(
                view,
                version,
                stored,
                layout,
                "the stored view state has another layout; folding it again from offset 0"
            );
            table.clear()?;
        }
        if cleared || stored.is_none() {
            table
                .keyspace
                .get()?
                .insert(LAYOUT_KEY, layout.to_be_bytes().to_vec())?;
        }
        Ok(table)
    }

    /// Removes a version and everything in it.
    pub fn drop_table(&self, view: &str, version: u32) -> Result<(), StoreError> {
        let name = keyspace_name(view, version);
        let db = self.db.get()?;
        if db.keyspace_exists(&name) {
            let keyspace = db.keyspace(&name, keyspace_options)?;
            db.delete_keyspace(keyspace)?;
        }
        Ok(())
    }

    /// Makes every commit so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.get()?.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db
            .get()
            .ok()
            .and_then(|db| db.disk_space().ok())
            .unwrap_or(0)
    }
}

/// Moves a store that cannot be opened out of the way: `{dir}.unreadable-{seconds}`.
fn set_aside(dir: &Path) -> Result<PathBuf, StoreError> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = dir
        .file_name()
        .map_or_else(|| "views".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut aside = dir.with_file_name(format!("{name}.unreadable-{seconds}"));
    let mut attempt = 1;
    while aside.exists() {
        attempt += 1;
        aside = dir.with_file_name(format!("{name}.unreadable-{seconds}-{attempt}"));
    }
    std::fs::rename(dir, &aside)
        .map_err(|e| StoreError::Storage(format!("setting {} aside: {e}", dir.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Storage(format!("creating {}: {e}", dir.display())))?;
    Ok(aside)
}

/// A record asked for by key: the key, and its value if stored.
pub type Found = (Vec<u8>, Option<Vec<u8>>);

/// One version of one view.
#[derive(Clone)]
pub struct ViewTable {
    db: Deferred<Database>,
    keyspace: KeyspaceSlot,
    version: u32,
    /// The layout a new replay table writes with each checkpoint (see
    /// [`ViewStore::new_tables_in_background`]); `None`: written when the table was opened.
    layout_to_write: Option<u32>,
    /// Records queries found undecodable, shared with every reader of this table.
    unreadable: std::sync::Arc<Unreadable>,
    /// Set by [`ViewTable::inject_damaged_block`]: reads of records fail as a damaged
    /// block's do, until the version is cleared.
    damaged_for_tests: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The stored records of one version that queries could not decode, by key: each is
/// logged once, and counted for `GET /v1/views`. A view folds again from the log when
/// rebuilt, which writes every record anew.
#[derive(Debug)]
struct Unreadable {
    /// The keyspace, to name in the log.
    name: String,
    keys: std::sync::Mutex<std::collections::BTreeSet<Vec<u8>>>,
    /// Keys seen beyond the ones remembered.
    more: std::sync::atomic::AtomicU64,
}

/// How many unreadable keys a version remembers (beyond it they are only counted).
const UNREADABLE_KEYS_KEPT: usize = 1_000;

impl Unreadable {
    fn new(name: String) -> Self {
        Unreadable {
            name,
            keys: Default::default(),
            more: Default::default(),
        }
    }

    fn note(&self, key: &[u8], error: &ViewError) {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.contains(key) {
            return;
        }
        if keys.len() < UNREADABLE_KEYS_KEPT {
            keys.insert(key.to_vec());
        } else {
            self.more.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::error!(
            keyspace = %self.name,
            %error,
            "a stored record of a view cannot be decoded; queries pass over it until the view is rebuilt (POST /v1/views/VIEW/rebuild)"
        );
    }

    fn count(&self) -> u64 {
        let kept = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len() as u64;
        kept + self.more.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn forget(&self) {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.more.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ViewTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewTable")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Puts and deletes as one list in key order, each key once (a bulk ingestion takes keys in
/// order). The sort is stable and merges sorted runs in one pass: a checkpoint's changes
/// come as two sorted lists, which cost it a linear merge, not a sort.
fn in_key_order(changes: Changes) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let Changes { puts, deletes } = changes;
    let mut entries: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        Vec::with_capacity(puts.len() + deletes.len());
    entries.extend(puts.into_iter().map(|(k, v)| (k, Some(v))));
    entries.extend(deletes.into_iter().map(|k| (k, None)));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|later, earlier| later.0 == earlier.0);
    entries
}

impl ViewTable {
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Where the state stands. A new table stands at the start of the log.
    pub fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        if self.keyspace.is_new_and_untouched() {
            return Ok(Checkpoint::default());
        }
        match self.keyspace.get()?.get(CHECKPOINT_KEY)? {
            None => Ok(Checkpoint::default()),
            Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
                key: "checkpoint".to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// The layout of the state this version holds: `None` when it holds none (a new one).
    pub fn layout(&self) -> Result<Option<u32>, StoreError> {
        if self.keyspace.is_new_and_untouched() {
            return Ok(None);
        }
        let Some(bytes) = self.keyspace.get()?.get(LAYOUT_KEY)? else {
            return Ok(None);
        };
        let bytes: [u8; 4] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            key: "layout".to_owned(),
            reason: format!("{} bytes, not 4", bytes.len()),
        })?;
        Ok(Some(u32::from_be_bytes(bytes)))
    }

    /// Writes a checkpoint's changes and the positions they lead to, atomically.
    pub fn commit(&self, changes: Changes, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let keyspace = self.keyspace.get()?;
        let mut batch = self.db.get()?.batch();
        for (key, value) in changes.puts {
            if key.first() == Some(&RESERVED_PREFIX) {
                return Err(StoreError::ReservedKey(
                    String::from_utf8_lossy(&key).into_owned(),
                ));
            }
            batch.insert(keyspace, key, value);
        }
        for key in changes.deletes {
            if key.first() == Some(&RESERVED_PREFIX) {
                return Err(StoreError::ReservedKey(
                    String::from_utf8_lossy(&key).into_owned(),
                ));
            }
            batch.remove(keyspace, key);
        }
        let encoded = postcard::to_stdvec(checkpoint).map_err(|e| StoreError::Corrupt {
            key: "checkpoint".to_owned(),
            reason: e.to_string(),
        })?;
        batch.insert(keyspace, CHECKPOINT_KEY, encoded);
        if let Some(layout) = self.layout_to_write {
            batch.insert(keyspace, LAYOUT_KEY, layout.to_be_bytes().to_vec());
        }
        batch.commit()?;
        Ok(())
    }

    /// Writes a checkpoint's changes and the positions they lead to straight into new disk
    /// tables (fjall's bulk ingestion: no journal, no memtable), for replays into a fresh
    /// store. All or nothing as well: the tables join the store in one step when complete.
    pub fn ingest(&self, changes: Changes, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.ingest_in_order(in_key_order(changes).into_iter().map(Ok), checkpoint)
    }

    /// [`ViewTable::ingest`] of changes given in stored-key order, each key once, as they
    /// are encoded ([`omnilog_views::Snapshot::encode_in_order`]): a large checkpoint is
    /// streamed into the disk tables without its encoded records all in memory at once.
    /// Keys out of order fail it, and nothing is written.
    pub fn ingest_in_order(
        &self,
        changes: impl Iterator<Item = Result<(Vec<u8>, Option<Vec<u8>>), ViewError>>,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let keyspace = self.keyspace.get()?;
        let mut writeback = EarlyWriteback::new(keyspace.path());
        let mut ingestion = keyspace.start_ingestion()?;
        // The key before, in a buffer kept for the whole ingestion.
        let mut previous: Vec<u8> = Vec::new();
        for (index, change) in changes.enumerate() {
            let (key, value) = change.map_err(|e| StoreError::Storage(e.to_string()))?;
            if key.first() == Some(&RESERVED_PREFIX) {
                return Err(StoreError::ReservedKey(
                    String::from_utf8_lossy(&key).into_owned(),
                ));
            }
            if index > 0 && previous >= key {
                return Err(StoreError::Storage(format!(
                    "an ingestion's keys must ascend: {:?} came after {:?}",
                    String::from_utf8_lossy(&key),
                    String::from_utf8_lossy(&previous),
                )));
            }
            previous.clear();
            previous.extend_from_slice(&key);
            writeback.wrote(key.len() + value.as_ref().map_or(0, Vec::len));
            match value {
                Some(value) => ingestion.write(key, value)?,
                None => ingestion.write_tombstone(key)?,
            }
        }
        let encoded = postcard::to_stdvec(checkpoint).map_err(|e| StoreError::Corrupt {
            key: "checkpoint".to_owned(),
            reason: e.to_string(),
        })?;
        ingestion.write(CHECKPOINT_KEY, encoded)?;
        // After the checkpoint: the reserved keys ascend too ("\xffcheckpoint" < "\xfflayout").
        if let Some(layout) = self.layout_to_write {
            ingestion.write(LAYOUT_KEY, layout.to_be_bytes().to_vec())?;
        }
        writeback.sync_new_tables();
        ingestion.finish()?;
        Ok(())
    }

    /// Without waiting for a table still being made (see
    /// [`ViewStore::new_tables_in_background`]): the error if making it (or the replay's
    /// store it is in) failed.
    pub fn failed_to_make(&self) -> Result<(), StoreError> {
        self.keyspace.failed()
    }

    /// Makes every commit so far durable (the whole store's journal).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.get()?.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Whether this version holds any record of a state (its checkpoint and layout aside).
    pub fn holds_records(&self) -> Result<bool, StoreError> {
        if self.keyspace.is_new_and_untouched() {
            return Ok(false);
        }
        match self.keyspace.get()?.first_key_value() {
            None => Ok(false),
            Some(entry) => {
                let key = entry.key()?;
                Ok(key.first() != Some(&RESERVED_PREFIX))
            }
        }
    }

    /// Reads the whole tables of a state into it (when a view starts).
    pub fn restore_whole(&self, state: &mut dyn ViewState) -> Result<(), ViewError> {
        for tag in state.whole_tags() {
            for entry in self.keyspace.get().map_err(view_storage)?.prefix([tag]) {
                let (key, value) = entry.into_inner().map_err(storage)?;
                state.restore(&key, Some(&value))?;
            }
        }
        Ok(())
    }

    /// Reads records the fold needs into the state (absent ones as absent).
    pub fn load_into(&self, keys: &[Vec<u8>], state: &mut dyn ViewState) -> Result<(), ViewError> {
        let keyspace = self.keyspace.get().map_err(view_storage)?;
        for key in keys {
            let value = keyspace.get(key).map_err(storage)?;
            state.restore(key, value.as_deref())?;
        }
        Ok(())
    }

    /// Reads records by key: (key, value if stored), in the order asked.
    pub fn get_many(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Found>, ViewError> {
        if self
            .damaged_for_tests
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(storage(fjall::Error::Storage(
                fjall::LsmError::InvalidHeader("a block damaged by a test"),
            )));
        }
        let keyspace = self.keyspace.get().map_err(view_storage)?;
        keys.into_iter()
            .map(|key| {
                let value = keyspace.get(&key).map_err(storage)?;
                Ok((key, value.map(|v| v.to_vec())))
            })
            .collect()
    }

    /// Read access for queries.
    pub fn reader(&self) -> TableReader {
        TableReader {
            keyspace: self.keyspace.clone(),
            unreadable: self.unreadable.clone(),
        }
    }

    /// How many stored records of this version queries found they could not decode (and
    /// passed over) since it was opened or cleared.
    pub fn unreadable_records(&self) -> u64 {
        self.unreadable.count()
    }

    /// Every record (the reserved keys excluded), in key order: the canonical dump two
    /// builds of a view are compared by.
    pub fn dump(&self) -> Result<Entries, StoreError> {
        let mut entries = Vec::new();
        for entry in self.keyspace.get()?.iter() {
            let (key, value) = entry.into_inner()?;
            if key.first() != Some(&RESERVED_PREFIX) {
                entries.push((key.to_vec(), value.to_vec()));
            }
        }
        Ok(entries)
    }

    /// Makes reads of records fail as they do when a block of the store's files is damaged
    /// (its checksum fails), until the version is cleared: for tests of what the projector
    /// does then (`crates/store/src/lib.rs` damages a real block).
    pub fn inject_damaged_block(&self) {
        self.damaged_for_tests
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Forgets the state and the checkpoint.
    pub fn clear(&self) -> Result<(), StoreError> {
        // The layout stays: the records are cleared, not what layout the next ones are in.
        // Cleared with it (a damaged version folded again), a later build of another layout
        // found none, took the version for new and kept its records (found by review).
        self.clear_to(self.layout().ok().flatten())
    }

    /// [`ViewTable::clear`], the layout set to `layout` (the one the caller will write
    /// in): a version whose stored layout itself cannot be read keeps the right one.
    pub fn clear_to(&self, layout: Option<u32>) -> Result<(), StoreError> {
        let keyspace = self.keyspace.get()?;
        keyspace.clear()?;
        if let Some(layout) = layout {
            keyspace.insert(LAYOUT_KEY, layout.to_be_bytes().to_vec())?;
        }
        self.unreadable.forget();
        self.damaged_for_tests
            .store(false, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

/// Read access to one version of a view: the [`RecordSource`] queries read through.
#[derive(Clone)]
pub struct TableReader {
    keyspace: KeyspaceSlot,
    unreadable: std::sync::Arc<Unreadable>,
}

impl std::fmt::Debug for TableReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableReader").finish_non_exhaustive()
    }
}

impl RecordSource for TableReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        let keyspace = self.keyspace.get().map_err(view_storage)?;
        Ok(keyspace.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &[u8]) -> Result<Entries, ViewError> {
        self.keyspace
            .get()
            .map_err(view_storage)?
            .prefix(prefix)
            .map(|entry| {
                let (key, value) = entry.into_inner().map_err(storage)?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    fn unreadable(&self, key: &[u8], error: &ViewError) {
        self.unreadable.note(key, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(puts: &[(&[u8], &[u8])], deletes: &[&[u8]]) -> Changes {
        Changes {
            puts: puts.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
            deletes: deletes.iter().map(|k| k.to_vec()).collect(),
        }
    }

    #[test]
    fn changes_reach_the_ingestion_in_key_order_each_key_once_however_they_come() {
        let expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), None),
            (b"c".to_vec(), Some(b"3".to_vec())),
            (b"d".to_vec(), None),
        ];
        let sorted = changes(&[(b"a", b"1"), (b"c", b"3")], &[b"b", b"d"]);
        assert_eq!(in_key_order(sorted), expected);
        let unsorted = changes(&[(b"c", b"3"), (b"a", b"1")], &[b"d", b"b"]);
        assert_eq!(in_key_order(unsorted), expected);
        let repeated = changes(&[(b"a", b"1"), (b"a", b"1")], &[]);
        assert_eq!(in_key_order(repeated), expected[..1].to_vec());
    }

    #[test]
    fn an_ingestion_in_order_refuses_keys_out_of_order_and_writes_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open_for_replay(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        let checkpoint = Checkpoint {
            events_applied: 3,
            ..Checkpoint::default()
        };
        let entry = |k: &[u8], v: Option<&[u8]>| Ok((k.to_vec(), v.map(<[u8]>::to_vec)));
        let refused = table.ingest_in_order(
            [
                entry(b"a", Some(b"1")),
                entry(b"c", Some(b"3")),
                entry(b"b", None),
            ]
            .into_iter(),
            &checkpoint,
        );
        assert!(
            matches!(&refused, Err(StoreError::Storage(m)) if m.contains("must ascend")),
            "{refused:?}"
        );
        let twice = table.ingest_in_order(
            [entry(b"a", Some(b"1")), entry(b"a", Some(b"2"))].into_iter(),
            &checkpoint,
        );
        assert!(twice.is_err(), "a key given twice");
        assert!(
            !table.holds_records().unwrap(),
            "nothing of them was written"
        );
        assert_eq!(table.checkpoint().unwrap(), Checkpoint::default());

        table
            .ingest_in_order(
                [
                    entry(b"a", Some(b"1")),
                    entry(b"b", None),
                    entry(b"c", Some(b"3")),
                ]
                .into_iter(),
                &checkpoint,
            )
            .unwrap();
        assert_eq!(table.checkpoint().unwrap(), checkpoint);
        assert_eq!(
            table.keyspace.get().unwrap().get(b"c").unwrap().as_deref(),
            Some(&b"3"[..])
        );
        assert_eq!(table.keyspace.get().unwrap().get(b"b").unwrap(), None);
    }

    #[test]
    fn a_commit_writes_changes_and_checkpoint_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        assert_eq!(table.checkpoint().unwrap(), Checkpoint::default());
        let mut checkpoint = Checkpoint::default();
        checkpoint
            .positions
            .insert((Destination::Interactions, 3), 17);
        checkpoint.events_applied = 17;
        table
            .commit(
                changes(&[(b"a1", b"one"), (b"a2", b"two")], &[]),
                &checkpoint,
            )
            .unwrap();
        table.commit(changes(&[], &[b"a2"]), &checkpoint).unwrap();
        store.flush().unwrap();
        drop(table);
        drop(store);

        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        assert_eq!(table.checkpoint().unwrap(), checkpoint);
        assert_eq!(
            table.dump().unwrap(),
            vec![(b"a1".to_vec(), b"one".to_vec())]
        );
        assert_eq!(table.reader().scan(b"a").unwrap().len(), 1);
        assert_eq!(table.reader().get(b"a2").unwrap(), None);
    }

    #[test]
    fn a_long_replays_compressed_tables_are_smaller_and_read_back_after_a_reopen() {
        // Records that share most of their bytes, as a customer's timeline lines do.
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..20_000u32)
            .map(|n| {
                let key = format!("c{n:08}").into_bytes();
                let value = format!("message from customer {n}: where is my parcel? ").repeat(4);
                (key, value.into_bytes())
            })
            .collect();
        let checkpoint = Checkpoint {
            events_applied: 20_000,
            ..Checkpoint::default()
        };
        let mut sizes = Vec::new();
        for long in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let opened = ViewStore::open_for_replay(dir.path()).unwrap();
            let store = if long {
                let long_replay = opened.for_long_replay();
                drop(opened);
                long_replay
            } else {
                opened
            };
            let table = store.table("journey", 1).unwrap();
            let puts = Changes {
                puts: records.clone(),
                deletes: Vec::new(),
            };
            table.ingest(puts, &checkpoint).unwrap();
            store.flush().unwrap();
            drop(table);
            drop(store);
            sizes.push(table_bytes(dir.path()));
            let store = ViewStore::open(dir.path()).unwrap();
            let table = store.table("journey", 1).unwrap();
            assert_eq!(table.checkpoint().unwrap(), checkpoint);
            assert_eq!(table.dump().unwrap(), records, "long: {long}");
        }
        assert!(sizes[1] * 2 < sizes[0], "{sizes:?} bytes");
    }

    /// The bytes of the disk tables under `dir` (files in a `tables` directory; fjall's
    /// journal is preallocated, whatever it holds).
    fn table_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if meta.is_dir() {
                    table_bytes(&entry.path())
                } else if dir.file_name().is_some_and(|name| name == "tables") {
                    meta.len()
                } else {
                    0
                }
            })
            .sum()
    }

    #[test]
    fn versions_live_side_by_side_and_the_active_one_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        assert_eq!(store.active_version("journey").unwrap(), None);
        store.table("journey", 1).unwrap();
        store.table("journey", 2).unwrap();
        store.table("queue", 1).unwrap();
        assert_eq!(store.versions("journey"), vec![1, 2]);
        store.set_active("journey", 2).unwrap();
        store.drop_table("journey", 1).unwrap();
        assert_eq!(store.versions("journey"), vec![2]);
        assert_eq!(store.active_version("journey").unwrap(), Some(2));
    }

    #[test]
    fn state_of_another_layout_is_cleared_and_the_same_layout_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table_with_layout("journey", 1, 2).unwrap();
        let checkpoint = Checkpoint {
            events_applied: 1,
            ..Checkpoint::default()
        };
        table
            .commit(changes(&[(b"c1", b"old")], &[]), &checkpoint)
            .unwrap();
        let kept = store.table_with_layout("journey", 1, 2).unwrap();
        assert_eq!(kept.checkpoint().unwrap(), checkpoint);
        let cleared = store.table_with_layout("journey", 1, 3).unwrap();
        assert_eq!(cleared.checkpoint().unwrap(), Checkpoint::default());
        assert!(cleared.dump().unwrap().is_empty());
        assert_eq!(cleared.layout().unwrap(), Some(3));
    }

    #[test]
    fn a_replays_new_store_is_created_beside_its_first_uses_which_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views");
        let checkpoint = Checkpoint {
            events_applied: 3,
            ..Checkpoint::default()
        };
        {
            let store = ViewStore::open_for_replay(&path).unwrap();
            assert!(store.db.is_new_and_untouched());
            // Asked for before its database may exist: nothing to ask the database yet.
            let tables = store
                .new_tables_in_background(&[("journey", 1, 4)])
                .unwrap();
            let [journey] = <[ViewTable; 1]>::try_from(tables).unwrap();
            assert_eq!(journey.checkpoint().unwrap(), Checkpoint::default());
            let entry = |k: &[u8], v: &[u8]| Ok((k.to_vec(), Some(v.to_vec())));
            journey
                .ingest_in_order([entry(b"c1", b"one")].into_iter(), &checkpoint)
                .unwrap();
            store.set_active_many(&[("journey", 1)]).unwrap();
            assert_eq!(store.versions("journey"), vec![1]);
        }
        // Reopened, it is a store like any other.
        let store = ViewStore::open(&path).unwrap();
        assert!(!store.db.is_new_and_untouched());
        assert_eq!(store.active_version("journey").unwrap(), Some(1));
        let journey = store.table_with_layout("journey", 1, 4).unwrap();
        assert_eq!(journey.checkpoint().unwrap(), checkpoint);
        drop((journey, store));
        // A directory that holds a store is opened as it is, not created again.
        let again = ViewStore::open_for_replay(&path).unwrap();
        assert!(!again.db.is_new_and_untouched());
        assert_eq!(again.active_version("journey").unwrap(), Some(1));
    }

    #[test]
    fn tables_made_in_the_background_answer_as_new_and_write_their_layout_with_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Checkpoint {
            events_applied: 2,
            ..Checkpoint::default()
        };
        {
            let store = ViewStore::open_for_replay(dir.path()).unwrap();
            // An existing version is opened as `table_with_layout` opens it.
            store.table_with_layout("queue", 1, 7).unwrap();
            let tables = store
                .new_tables_in_background(&[("journey", 1, 4), ("queue", 1, 7), ("segments", 1, 5)])
                .unwrap();
            let [journey, queue, segments] = <[ViewTable; 3]>::try_from(tables).unwrap();
            // Whether made yet or not, a new table answers as new and empty, without its layout.
            assert_eq!(journey.checkpoint().unwrap(), Checkpoint::default());
            assert!(!journey.holds_records().unwrap());
            assert_eq!(journey.layout().unwrap(), None);
            assert_eq!(queue.layout().unwrap(), Some(7));
            // Its checkpoints write the layout: by ingestion, and by commit.
            let entry = |k: &[u8], v: &[u8]| Ok((k.to_vec(), Some(v.to_vec())));
            journey
                .ingest_in_order([entry(b"c1", b"one")].into_iter(), &checkpoint)
                .unwrap();
            segments
                .commit(changes(&[(b"p1", b"two")], &[]), &checkpoint)
                .unwrap();
            assert_eq!(journey.layout().unwrap(), Some(4));
            assert_eq!(segments.layout().unwrap(), Some(5));
            store.flush().unwrap();
        }
        // Reopened, the versions hold what was written, under their layouts: a server keeps them.
        let store = ViewStore::open(dir.path()).unwrap();
        let journey = store.table_with_layout("journey", 1, 4).unwrap();
        assert_eq!(journey.checkpoint().unwrap(), checkpoint);
        assert_eq!(
            journey.dump().unwrap(),
            vec![(b"c1".to_vec(), b"one".to_vec())]
        );
        let segments = store.table_with_layout("segments", 1, 5).unwrap();
        assert_eq!(
            segments.dump().unwrap(),
            vec![(b"p1".to_vec(), b"two".to_vec())]
        );
    }

    #[test]
    fn a_view_cannot_overwrite_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        assert!(matches!(
            table.commit(
                changes(&[(CHECKPOINT_KEY, b"x")], &[]),
                &Checkpoint::default()
            ),
            Err(StoreError::ReservedKey(_))
        ));
    }

    /// A store that cannot be opened for want of space, file handles, memory or permission
    /// is left as it is (the open fails, naming why); one whose files do not read is set
    /// aside.
    #[test]
    fn only_a_damaged_store_is_set_aside_not_one_the_machine_lacks_something_for() {
        let os = |code: i32| fjall::Error::Io(std::io::Error::from_raw_os_error(code));
        for code in [28, 24, 23, 12, 13, 30, 122] {
            assert!(lacks_resources(&os(code)), "errno {code}");
        }
        assert!(lacks_resources(&fjall::Error::Storage(
            fjall::LsmError::Io(std::io::Error::from_raw_os_error(28))
        )));
        assert!(!lacks_resources(&os(2)), "a file missing is damage");
        assert!(!lacks_resources(&os(5)), "EIO: the files do not read");
        assert!(!lacks_resources(&fjall::Error::Decompress(
            fjall::CompressionType::Lz4
        )));
        assert!(!lacks_resources(&fjall::Error::InvalidTrailer));
    }

    /// A block of a disk table damaged after the store was opened reads as a damaged
    /// record ([`ViewError::Corrupt`], which the projector answers by clearing the version
    /// and folding it again), not as a store that fails (retried for ever: found by review);
    /// the error kinds of a machine that fails stay failures.
    #[test]
    fn a_damaged_block_reads_as_a_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..20_000u32)
            .map(|n| {
                let key = format!("c{n:08}").into_bytes();
                (key, format!("record {n} of the customer").into_bytes())
            })
            .collect();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        let puts = Changes {
            puts: records.clone(),
            deletes: Vec::new(),
        };
        table.ingest(puts, &Checkpoint::default()).unwrap();
        store.flush().unwrap();
        drop(table);
        drop(store);
        // The largest disk table holds the records (the store's own keyspace has small
        // ones).
        let largest = walk(dir.path())
            .into_iter()
            .filter(|path| path.parent().and_then(Path::file_name) == Some("tables".as_ref()))
            .max_by_key(|path| std::fs::metadata(path).unwrap().len())
            .expect("the records are in a disk table");
        let mut bytes = std::fs::read(&largest).unwrap();
        // Within the data blocks, which come first.
        let at = bytes.len() / 10;
        for byte in &mut bytes[at..at + 16] {
            *byte ^= 0x5a;
        }
        std::fs::write(&largest, bytes).unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table("journey", 1).unwrap();
        let keys: Vec<Vec<u8>> = records.iter().map(|(key, _)| key.clone()).collect();
        match table.get_many(keys) {
            Err(ViewError::Corrupt { reason, .. }) => assert!(!reason.is_empty()),
            other => panic!(
                "expected the damaged block to read as damaged, got {:?}",
                other.map(|found| found.len())
            ),
        }
        let os = |code: i32| fjall::Error::Io(std::io::Error::from_raw_os_error(code));
        for failure in [os(5), os(28), os(2)] {
            assert!(!is_damage(&failure), "{failure}");
        }
        assert!(is_damage(&fjall::Error::Decompress(
            fjall::CompressionType::Lz4
        )));
    }

    /// A version cleared (its records damaged, folded again) keeps its layout, so a build of
    /// another layout still clears what this one writes next.
    #[test]
    fn a_cleared_version_keeps_its_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let table = store.table_with_layout("queue", 1, 7).unwrap();
        let mut changes = Changes::default();
        changes.puts.push((b"q1".to_vec(), b"v".to_vec()));
        table.commit(changes, &Checkpoint::default()).unwrap();
        table.clear().unwrap();
        assert_eq!(table.layout().unwrap(), Some(7));
        // A layout that cannot be read is replaced by the one the caller names.
        table
            .keyspace
            .get()
            .unwrap()
            .insert(LAYOUT_KEY, b"bad".to_vec())
            .unwrap();
        assert!(table.layout().is_err());
        table.clear_to(Some(7)).unwrap();
        assert_eq!(table.layout().unwrap(), Some(7));
        assert_eq!(table.checkpoint().unwrap(), Checkpoint::default());
        // Another layout then clears it, as it would have the records.
        let again = store.table_with_layout("queue", 1, 8).unwrap();
        assert_eq!(again.layout().unwrap(), Some(8));
    }

    #[test]
    fn an_unreadable_store_is_set_aside_and_a_new_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let views = dir.path().join("views");
        // What sled left: the format before this one.
        std::fs::create_dir_all(&views).unwrap();
        std::fs::write(views.join("conf"), b"segment_size: 524288\n").unwrap();
        std::fs::write(views.join("db"), b"sled").unwrap();
        let store = ViewStore::open(&views).unwrap();
        assert_eq!(store.active_version("journey").unwrap(), None);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("views.unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        drop(store);
        // Damaged fjall files: set aside too.
        let store = ViewStore::open(&views).unwrap();
        store.table("queue", 1).unwrap();
        store.flush().unwrap();
        drop(store);
        for entry in walk(&views) {
            if entry.is_file() && std::fs::metadata(&entry).unwrap().len() > 0 {
                std::fs::write(&entry, b"\x00garbage\xff").unwrap();
            }
        }
        let store = ViewStore::open(&views).unwrap();
        assert_eq!(store.versions("queue"), Vec::<u32>::new());
    }

    /// Every file under `dir` with its length, modification time and bytes: what "nothing
    /// was written" is checked against.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime, Vec<u8>)> {
        let mut files: Vec<_> = walk(dir)
            .into_iter()
            .map(|path| {
                let metadata = std::fs::metadata(&path).unwrap();
                let bytes = std::fs::read(&path).unwrap();
                (path, metadata.len(), metadata.modified().unwrap(), bytes)
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    #[test]
    fn a_store_opened_read_only_is_read_whole_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let views = dir.path().join("views");
        let store = ViewStore::open(&views).unwrap();
        let table = store.table("journey", 1).unwrap();
        let checkpoint = Checkpoint {
            events_applied: 3,
            ..Checkpoint::default()
        };
        table
            .commit(
                changes(&[(b"a1", b"one"), (b"a2", b"two"), (b"b1", b"three")], &[]),
                &checkpoint,
            )
            .unwrap();
        store.set_active("journey", 1).unwrap();
        store.flush().unwrap();
        // Held by a writer (a running server): said so, and nothing else is tried.
        assert!(matches!(
            ViewStore::open_read_only(&views),
            Err(StoreError::Locked(_))
        ));
        drop(table);
        drop(store);

        let before = snapshot(&views);
        let store = ViewStore::open_read_only(&views).unwrap();
        // While it is read, no server can start on it and compact its tables away.
        assert!(matches!(
            ViewStore::open(&views),
            Err(StoreError::Locked(_))
        ));
        assert_eq!(store.active_version("journey").unwrap(), Some(1));
        let table = store.table("journey", 1).unwrap();
        assert_eq!(table.checkpoint().unwrap(), checkpoint);
        assert_eq!(table.dump().unwrap().len(), 3);
        drop(table);
        drop(store);
        assert_eq!(snapshot(&views), before, "the store's files were changed");
        // And a writer opens it afterwards as before.
        let store = ViewStore::open(&views).unwrap();
        assert_eq!(store.table("journey", 1).unwrap().dump().unwrap().len(), 3);
    }

    #[test]
    fn a_directory_without_a_store_is_not_taken_for_a_locked_one() {
        let dir = tempfile::tempdir().unwrap();
        match ViewStore::open_read_only(dir.path()) {
            Err(StoreError::Storage(message)) => {
                assert!(message.contains("holds no view store"), "{message}")
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
        found
    }
}
