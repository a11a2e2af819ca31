//! Early write-back of the disk tables a bulk ingestion writes.
//!
//! fjall's ingestion writes a table through the page cache and syncs it whole when it is
//! complete (`sync_all` when the table is cut at 64 MiB, and at the end). The sync then
//! waits for every byte of it to reach the disk: a replay of 1M events waited 97 ms and
//! 33 ms for its journey view's two tables (`strace -T -e fsync omnilog replay`), at the
//! very end of the replay, with the other core idle. This disk writes about 750 MB/s and
//! the ingestion produces about half that, so asking the kernel to start writing each
//! chunk as soon as it is written (`posix_fadvise(POSIX_FADV_DONTNEED)`, which queues the
//! dirty pages for write-back without waiting, then drops the clean ones) leaves the final
//! sync less to wait for: 60 to 67 ms and 15 to 20 ms for the same tables (the disk still
//! writes behind the ingestion). RocksDB's `bytes_per_sync` does the same with
//! `sync_file_range`, which rustix does not offer (and this workspace allows no `unsafe`).
//!
//! Only tables that appear after the ingestion started are touched (its own; a compaction
//! of the same tree writing meanwhile would have its table advised too, which changes no
//! byte of it): the tables present before keep their cached pages. A failure to advise is
//! no failure of the ingestion (the final sync still makes every byte durable): it is
//! logged at debug level and ignored.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use rustix::fs::{Advice, fadvise};

/// Bytes written between two requests for write-back. A MiB rather than 8: the last
/// checkpoint of a 200k-event replay writes the journey view's 17 MB or so in its last 30
/// ms, and its final sync waited on the disk for the last 8 MiB with both cores idle
/// (`perf record -e sched:sched_switch`, `benches/sched_timeline.py`); fifteen alternated
/// `omnilog replay` runs of the 200k history (`benches/alternate_replays.py`): median 340 ms
/// at 8 MiB, 332 ms at 1 MiB (docs/benchmarks-journal.md, "2026-12-05, afternoon").
const WRITEBACK_STEP: u64 = 1024 * 1024;

/// Asks the kernel to write an ingestion's new tables back as they grow.
pub(crate) struct EarlyWriteback {
    tables: PathBuf,
    existing: HashSet<OsString>,
    /// Each new table's length when it was last advised: the next advice starts there, so
    /// the kernel walks each page of a table once, not the whole table every step (it drops
    /// the pages already written back as it walks them).
    advised: HashMap<OsString, u64>,
    written: u64,
    next: u64,
}

impl EarlyWriteback {
    /// Before an ingestion into the tree at `tree_dir` starts: notes the tables it holds.
    pub(crate) fn new(tree_dir: &Path) -> Self {
        let tables = tree_dir.join("tables");
        let existing = file_names(&tables).collect();
        EarlyWriteback {
            tables,
            existing,
            advised: HashMap::new(),
            written: 0,
            next: WRITEBACK_STEP,
        }
    }

    /// After `bytes` more were handed to the ingestion.
    pub(crate) fn wrote(&mut self, bytes: usize) {
        self.written += bytes as u64;
        if self.written >= self.next {
            self.next = self.written + WRITEBACK_STEP;
            self.start_writeback();
        }
    }

    /// The tables the ingestion made (those that appeared after it started), by name and path.
    fn new_tables(&self) -> impl Iterator<Item = (OsString, PathBuf)> + '_ {
        file_names(&self.tables)
            .filter(|name| !self.existing.contains(name))
            .map(|name| {
                let path = self.tables.join(&name);
                (name, path)
            })
    }

    fn start_writeback(&mut self) {
        let new: Vec<(OsString, PathBuf)> = self.new_tables().collect();
        for (name, path) in new {
            let from = self.advised.get(&name).copied().unwrap_or(0);
            let advised = File::open(&path).and_then(|file| {
                let length = file.metadata()?.len();
                if let Some(range) = NonZeroU64::new(length.saturating_sub(from)) {
                    fadvise(&file, from, Some(range), Advice::DontNeed)?;
                }
                Ok(length)
            });
            match advised {
                Ok(length) => {
                    self.advised.insert(name, length);
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "early write-back not started");
                }
            }
        }
    }

    /// Before the ingestion is finished: waits until what its new tables hold so far is on
    /// the disk (`fdatasync`). fjall finishes an ingestion holding the database's journal
    /// lock, and its `fsync` of the tables waited there for their data: the views' last
    /// checkpoints of a replay, finished at about the same time, each waited for the others'
    /// data in turn (`perf record -e sched:sched_switch`: a view's ingestion asleep 17 ms
    /// while another's `fsync` waited on the disk). Synced here, their data reach the disk
    /// side by side, and the syncs under the lock have the tables' last blocks and metadata
    /// left to wait for. A failure is logged and ignored, as an advice's: the sync under the
    /// lock still makes every byte durable, or fails the ingestion.
    pub(crate) fn sync_new_tables(&self) {
        for (_, path) in self.new_tables() {
            if let Err(error) = File::open(&path).and_then(|file| file.sync_data()) {
                tracing::debug!(path = %path.display(), %error, "a new table not synced ahead");
            }
        }
    }
}

/// The names of the files in `dir` (none if it cannot be read).
fn file_names(dir: &Path) -> impl Iterator<Item = OsString> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.file_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tables_made_after_it_started_are_written_back() {
        let dir = tempfile::tempdir().unwrap();
        let tables = dir.path().join("tables");
        std::fs::create_dir(&tables).unwrap();
        std::fs::write(tables.join("0"), b"an older table").unwrap();
        let mut writeback = EarlyWriteback::new(dir.path());
        assert!(writeback.existing.contains(&OsString::from("0")));
        std::fs::write(tables.join("1"), vec![7u8; 4096]).unwrap();
        // Under a step: nothing asked yet; past it: the next request is a step further on.
        writeback.wrote(1024);
        assert_eq!(writeback.next, WRITEBACK_STEP);
        writeback.wrote(WRITEBACK_STEP as usize);
        assert_eq!(writeback.next, WRITEBACK_STEP + 1024 + WRITEBACK_STEP);
        // The new table was advised up to its length, the older one not at all.
        assert_eq!(writeback.advised.get(&OsString::from("1")), Some(&4096));
        assert!(!writeback.advised.contains_key(&OsString::from("0")));
        // Grown since: the next advice covers what was added.
        std::fs::write(tables.join("1"), vec![7u8; 8192]).unwrap();
        writeback.wrote(WRITEBACK_STEP as usize);
        assert_eq!(writeback.advised.get(&OsString::from("1")), Some(&8192));
        // Advice changes no byte of either file.
        assert_eq!(std::fs::read(tables.join("0")).unwrap(), b"an older table");
        assert_eq!(std::fs::read(tables.join("1")).unwrap(), vec![7u8; 8192]);
    }

    #[test]
    fn a_tree_without_a_tables_folder_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut writeback = EarlyWriteback::new(dir.path());
        writeback.wrote(2 * WRITEBACK_STEP as usize);
    }
}
