//! The small files beside the segments: the log's description (`log.json`: format and
//! partition counts), the writer's lock, and the durable end a writer publishes for readers
//! in other processes (`durable`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{LogError, PartitionCounts, Topic};

pub(crate) const META_FILE: &str = "log.json";
const LOCK_FILE: &str = "writer.lock";
const DURABLE_FILE: &str = "durable";
/// The format this build writes: 3 may store a batch's records compressed.
pub(crate) const FORMAT: u32 = 3;
/// The format before, which this build reads as it is: its batches are all stored plain. A
/// writer that opens such a log marks it format 3 before its first write, so that a build
/// that knows only format 2 refuses it rather than misreading a compressed batch.
pub(crate) const PLAIN_FORMAT: u32 = 2;

pub(crate) fn io_error(what: impl std::fmt::Display, error: std::io::Error) -> LogError {
    LogError::Storage(format!("{what}: {error}"))
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    format: u32,
    partitions: PartitionsFile,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartitionsFile {
    #[serde(rename = "omnilog.interactions")]
    interactions: u32,
    #[serde(rename = "omnilog.agents")]
    agents: u32,
    #[serde(rename = "omnilog.dead-letter")]
    dead_letter: u32,
}

/// Whether `dir` holds a log of the format before this one (sled's files): such a log is
/// refused with the way to carry it over, never read wrongly or overwritten.
pub(crate) fn refuse_older_format(dir: &Path) -> Result<(), LogError> {
    if dir.join("conf").exists() || dir.join("db").exists() {
        return Err(LogError::OlderFormat {
            dir: dir.display().to_string(),
        });
    }
    Ok(())
}

/// Reads the format and partition counts of the log in `dir`, `None` if it has no
/// description yet.
pub(crate) fn read_meta(dir: &Path) -> Result<Option<(u32, PartitionCounts)>, LogError> {
    refuse_older_format(dir)?;
    let path = dir.join(META_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(format!("reading {}", path.display()), error)),
    };
    let meta: MetaFile = serde_json::from_str(&text).map_err(|error| {
        LogError::Storage(format!(
            "{} is not an omnilog log description: {error}",
            path.display()
        ))
    })?;
    if meta.format != FORMAT && meta.format != PLAIN_FORMAT {
        return Err(LogError::Storage(format!(
            "the log in {} has format {}; this build reads formats {PLAIN_FORMAT} and {FORMAT}",
            dir.display(),
            meta.format
        )));
    }
    Ok(Some((
        meta.format,
        PartitionCounts {
            interactions: meta.partitions.interactions,
            agents: meta.partitions.agents,
            dead_letter: meta.partitions.dead_letter,
        },
    )))
}

/// Writes the description of a log in this build's format, durably (written aside, synced,
/// renamed into place, directory synced).
pub(crate) fn write_meta(dir: &Path, counts: &PartitionCounts) -> Result<(), LogError> {
    let meta = MetaFile {
        format: FORMAT,
        partitions: PartitionsFile {
            interactions: counts.get(Topic::Interactions),
            agents: counts.get(Topic::Agents),
            dead_letter: counts.get(Topic::DeadLetter),
        },
    };
    let text = serde_json::to_string_pretty(&meta)
        .map_err(|error| LogError::Storage(format!("encoding the log description: {error}")))?;
    write_durably(&dir.join(META_FILE), text.as_bytes())
}

/// Writes a whole file so that after a crash it is either absent or complete.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let aside = path.with_extension("tmp");
    let mut file = File::create(&aside)
        .map_err(|error| io_error(format!("creating {}", aside.display()), error))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| io_error(format!("writing {}", aside.display()), error))?;
    std::fs::rename(&aside, path)
        .map_err(|error| io_error(format!("renaming {}", aside.display()), error))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a directory's entries (files created, renamed) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|error| io_error(format!("syncing the directory {}", dir.display()), error))
}

/// The writer's exclusive lock on a log directory, held while the log is open for writing.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

impl WriterLock {
    pub(crate) fn take(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| io_error(format!("opening {}", path.display()), error))?;
        // A reader asking whether a writer runs ([`writer_is_running`]) holds the same lock
        // for an instant: a writer starting then was refused as if another one ran (found
        // by review). A writer that runs holds it for good, so a few tries over a fifth of
        // a second tell the two apart.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(WriterLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LogError::Locked {
                        dir: dir.display().to_string(),
                    });
                }
                Err(std::fs::TryLockError::Error(error)) => {
                    return Err(io_error(format!("locking {}", path.display()), error));
                }
            }
        }
    }
}

/// How many more times a writer tries the lock before it takes another writer to hold it,
/// and how long it waits between tries.
const LOCK_TRIES: u32 = 20;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Where the durable part of the log ends: what a writer has synced, published for readers
/// in other processes, who read no further (a frame past it may still be unsynced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DurableEnd {
    pub(crate) segment: u64,
    /// Bytes of the segment that are durable.
    pub(crate) position: u64,
    /// The sequence of the last durable frame.
    pub(crate) sequence: u64,
}

const DURABLE_BYTES: usize = 28;

impl DurableEnd {
    fn encode(&self) -> [u8; DURABLE_BYTES] {
        let mut bytes = [0u8; DURABLE_BYTES];
        bytes[0..8].copy_from_slice(&self.segment.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.position.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[0..24]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8; DURABLE_BYTES]) -> Option<Self> {
        let crc = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
        if crc32c::crc32c(&bytes[0..24]) != crc {
            return None;
        }
        Some(DurableEnd {
            segment: u64::from_le_bytes(bytes[0..8].try_into().ok()?),
            position: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
            sequence: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
        })
    }
}

/// The writer's side of the durable end: rewritten in place after every sync (not synced
/// itself: after a crash the writer reopens from the segments, and readers only need it
/// while the writer runs).
#[derive(Debug)]
pub(crate) struct DurableEndWriter {
    file: File,
    path: PathBuf,
}

impl DurableEndWriter {
    pub(crate) fn create(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(DURABLE_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| io_error(format!("opening {}", path.display()), error))?;
        Ok(DurableEndWriter { file, path })
    }

    pub(crate) fn publish(&self, end: DurableEnd) {
        if let Err(error) = self.file.write_all_at(&end.encode(), 0) {
            // Readers in other processes then read to the last end they can check; the
            // writer itself does not depend on this file.
            tracing::warn!(path = %self.path.display(), %error, "could not publish the durable end");
        }
    }
}

/// Reads the durable end a running writer published, if there is one to read.
pub(crate) fn read_durable_end(dir: &Path) -> Option<DurableEnd> {
    let file = File::open(dir.join(DURABLE_FILE)).ok()?;
    // A read racing the writer's rewrite can see half of each: read until it checks.
    for _ in 0..100 {
        let mut bytes = [0u8; DURABLE_BYTES];
        if file.read_exact_at(&mut bytes, 0).is_err() {
            return None;
        }
        if let Some(end) = DurableEnd::decode(&bytes) {
            return Some(end);
        }
        std::thread::yield_now();
    }
    None
}

/// Whether another process holds the writer's lock now. The lock file is opened for
/// reading only (a lock needs no more), so a reader that may not write the directory, or a
/// read-only disk, still sees a running writer and reads no further than what it synced.
pub(crate) fn writer_is_running(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    /// A reader's probe holds the writer's lock for an instant; a writer starting then waits
    /// it out instead of refusing to start. A writer that holds the lock is still refused.
    #[test]
    fn a_writer_waits_out_a_readers_probe_of_its_lock_but_not_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, b"").unwrap();
        let probe = File::open(&path).unwrap();
        probe.try_lock().unwrap();
        let released = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            probe.unlock().unwrap();
        });
        let writer = WriterLock::take(dir.path()).expect("taken once the probe let go");
        released.join().unwrap();
        assert!(writer_is_running(dir.path()));
        assert!(matches!(
            WriterLock::take(dir.path()),
            Err(LogError::Locked { .. })
        ));
        drop(writer);
        assert!(!writer_is_running(dir.path()));
    }
}
