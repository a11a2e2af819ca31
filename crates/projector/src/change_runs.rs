//! Change runs: a replay's pass-end changes of a view, encoded in stored-key order, written
//! to a temporary file and read back once, by the merge of the view's next checkpoint.
//!
//! Why: at the end of a pass, a view whose records are final (partition-local) encodes
//! them ahead, so that its last checkpoint writes the whole history as one sorted ingestion
//! instead of one disk table per pass for the store to compact. Held in memory, those sets
//! were 60 MB of the heap at the peak of a 10M-event replay (heaptrack), and grew with
//! every pass: a replay in more, smaller passes held more of them, or checkpointed more
//! often (thirteen passes with a checkpoint at each: 25.9 s against 21.7 s). On disk they
//! cost a sequential write and a sequential read, through the page cache, and no memory
//! beyond a buffer per run.
//!
//! ```text
//! change: key length u32 | record length u32 (u32::MAX: a deletion) | key | record
//! ```
//!
//! The file is unnamed (`tempfile::tempfile_in`): the system deletes it once it is closed,
//! also when the replay dies, so nothing is left to clean. Nothing in it is synced: a replay
//! that stops starts over.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use omnilog_views::ViewError;
use omnilog_views::state::{EncodedChange, Run};

/// Buffer of a run's writer: one at a time.
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// Buffer of each run's reader: a checkpoint merges every run of its view at once, and the
/// four partition-local views write their last checkpoints together. At 10M events, twelve
/// partitions of thirteen passes are 156 runs a view: with 32 KiB buffers, the checkpoints
/// held 24.6 MB of the replay's heap peak (heaptrack).
const READ_BUFFER_BYTES: usize = 8 << 10;

/// The record length that marks a deletion.
const DELETED: u32 = u32::MAX;

fn run_error(doing: &str, error: impl std::fmt::Display) -> ViewError {
    ViewError::Storage(format!("a replay's change run file: {doing}: {error}"))
}

/// Writes one run of changes, in stored-key order, to a new temporary file.
pub(crate) struct ChangeRunWriter {
    file: BufWriter<File>,
    changes: usize,
    bytes: u64,
}

impl ChangeRunWriter {
    /// Creates an unnamed file in `dir`.
    pub(crate) fn create_in(dir: &Path) -> Result<Self, ViewError> {
        let file = tempfile::tempfile_in(dir)
            .map_err(|e| run_error(&format!("creating in {}", dir.display()), e))?;
        Ok(ChangeRunWriter {
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            changes: 0,
            bytes: 0,
        })
    }

    /// Appends a change: the caller gives changes in stored-key order, each key once.
    pub(crate) fn write(&mut self, key: &[u8], record: Option<&[u8]>) -> Result<(), ViewError> {
        let too_long = |what: &str| run_error("writing", format!("a {what} of 4 GiB or more"));
        let key_len = u32::try_from(key.len()).map_err(|_| too_long("key"))?;
        let record_len = match record {
            Some(record) => u32::try_from(record.len())
                .ok()
                .filter(|&len| len != DELETED)
                .ok_or_else(|| too_long("record"))?,
            None => DELETED,
        };
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&key_len.to_le_bytes());
        head[4..].copy_from_slice(&record_len.to_le_bytes());
        let write = |file: &mut BufWriter<File>, bytes: &[u8]| {
            file.write_all(bytes).map_err(|e| run_error("writing", e))
        };
        write(&mut self.file, &head)?;
        write(&mut self.file, key)?;
        if let Some(record) = record {
            write(&mut self.file, record)?;
        }
        self.changes += 1;
        self.bytes += (head.len() + key.len() + record.map_or(0, <[u8]>::len)) as u64;
        Ok(())
    }

    /// Writes every change of `changes` (in stored-key order), ending at the first error.
    pub(crate) fn write_all(
        &mut self,
        changes: impl Iterator<Item = EncodedChange>,
    ) -> Result<(), ViewError> {
        for change in changes {
            let (key, record) = change?;
            self.write(&key, record.as_deref())?;
        }
        Ok(())
    }

    /// The run written, to read back.
    pub(crate) fn finish(self) -> Result<ChangeRun, ViewError> {
        let mut file = self
            .file
            .into_inner()
            .map_err(|e| run_error("writing", e.error()))?;
        file.rewind().map_err(|e| run_error("rewinding", e))?;
        Ok(ChangeRun {
            file,
            changes: self.changes,
            bytes: self.bytes,
        })
    }
}

/// A run of changes written to disk, not yet read.
#[derive(Debug)]
pub(crate) struct ChangeRun {
    file: File,
    changes: usize,
    bytes: u64,
}

impl ChangeRun {
    /// How many changes the run holds.
    pub(crate) fn len(&self) -> usize {
        self.changes
    }

    /// The bytes of its file.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads the run back, change by change, in the order written; a cut or unreadable
    /// file ends it with an error.
    pub(crate) fn into_changes(self) -> Run {
        let mut file = BufReader::with_capacity(READ_BUFFER_BYTES, self.file);
        let mut left = self.changes;
        Box::new(std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let change = read_change(&mut file);
            if change.is_err() {
                // Nothing after an error.
                left = 0;
            }
            Some(change)
        }))
    }
}

fn read_change(file: &mut impl Read) -> EncodedChange {
    let mut head = [0u8; 8];
    let read = |file: &mut dyn Read, into: &mut [u8]| {
        file.read_exact(into).map_err(|e| run_error("reading", e))
    };
    read(file, &mut head)?;
    let [k0, k1, k2, k3, r0, r1, r2, r3] = head;
    let key_len = u32::from_le_bytes([k0, k1, k2, k3]) as usize;
    let record_len = u32::from_le_bytes([r0, r1, r2, r3]);
    let mut key = vec![0; key_len];
    read(file, &mut key)?;
    let record = if record_len == DELETED {
        None
    } else {
        let mut record = vec![0; record_len as usize];
        read(file, &mut record)?;
        Some(record)
    };
    Ok((key, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes() -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        (0..10_000u32)
            .map(|i| {
                let key = format!("k{i:06}").into_bytes();
                let record = (i % 7 != 0).then(|| vec![(i % 251) as u8; (i % 97) as usize]);
                (key, record)
            })
            .collect()
    }

    #[test]
    fn a_run_reads_back_what_was_written_deletions_and_empty_records_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ChangeRunWriter::create_in(dir.path()).unwrap();
        writer
            .write_all(changes().into_iter().map(Ok))
            .expect("written");
        let run = writer.finish().unwrap();
        assert_eq!(run.len(), 10_000);
        assert!(run.bytes() > 10_000 * 8);
        let read: Vec<_> = run.into_changes().map(Result::unwrap).collect();
        assert_eq!(read, changes());
        // Unnamed: nothing of it is in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_cut_run_ends_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ChangeRunWriter::create_in(dir.path()).unwrap();
        writer.write_all(changes().into_iter().map(Ok)).unwrap();
        let run = writer.finish().unwrap();
        run.file.set_len(run.bytes() / 2).unwrap();
        let read: Vec<_> = run.into_changes().collect();
        assert!(read.len() < 10_000);
        let last = read.last().expect("some changes");
        assert!(
            matches!(last, Err(ViewError::Storage(message)) if message.contains("reading")),
            "{last:?}"
        );
        assert!(read[..read.len() - 1].iter().all(Result::is_ok));
    }

    #[test]
    fn a_failed_encoding_fails_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ChangeRunWriter::create_in(dir.path()).unwrap();
        let failing = vec![
            Ok((b"a".to_vec(), None)),
            Err(ViewError::Storage("cannot encode".into())),
        ];
        assert!(writer.write_all(failing.into_iter()).is_err());
    }
}
