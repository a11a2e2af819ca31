//! Change runs: a replay's pass-end changes of a view, encoded in stored-key order, written
//! to a temporary file and read back once, by the merge of the view's last checkpoint.
//!
//! Why: at the end of a pass, a view whose records are final (partition-local) encodes
//! them ahead, so that its last checkpoint writes the whole history as one sorted ingestion
//! instead of one disk table per pass for the store to compact. Held in memory, those sets
//! were 60 MB of the heap at the peak of a 10M-event replay (heaptrack), and grew with
//! every pass: a replay in more, smaller passes held more of them, or checkpointed more
//! often (thirteen passes with a checkpoint at each: 25.9 s against 21.7 s). On disk they
//! cost a sequential write and a read, through the page cache, and no memory beyond a
//! buffer per run.
//!
//! ```text
//! change: key length u32 | record length u32 (u32::MAX: a deletion) | key | record
//! ```
//!
//! A view's runs of one kind share one file ([`RunFile`]), each run a stretch of it read at
//! its own offsets (`pread`), so a replay holds two descriptors a view however many passes
//! it makes (a file a run was 864 descriptors at 10M events, more than the 1,024 a process
//! may open by default). The file is unnamed (`tempfile::tempfile_in`): the system deletes
//! it once the last run that reads it is closed, also when the replay dies, so nothing is
//! left to clean. Nothing in it is synced: a replay that stops starts over.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use omnilog_views::ViewError;
use omnilog_views::state::{EncodedChange, EncodingInOrder, Run};

/// Buffer of a run's writer: one at a time.
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// What the buffers of the runs a checkpoint merges at once (its changes and its sums written
/// aside) weigh together, about: each run's reader gets its share, between
/// [`MIN_READ_BUFFER_BYTES`] and [`MAX_READ_BUFFER_BYTES`]. The four partition-local views
/// write their last checkpoints together. At 10M events, twelve partitions of thirteen passes are 156 runs a view: with
/// 32 KiB buffers each, the checkpoints held 24.6 MB of the replay's heap peak (heaptrack).
/// At 1M, thirteen runs a view: with 8 KiB buffers each, the journey's last merge read its
/// 108 MB of runs in 13,238 `pread`s (`strace -f omnilog replay`), on the thread that feeds
/// the replay's last ingestion, while the other views were done.
const READ_BUFFERS_BYTES: usize = 2 << 20;
const MIN_READ_BUFFER_BYTES: usize = 8 << 10;
const MAX_READ_BUFFER_BYTES: usize = 256 << 10;

/// The buffer of each of `runs` runs read at once.
fn read_buffer_bytes(runs: usize) -> usize {
    (READ_BUFFERS_BYTES / runs.max(1)).clamp(MIN_READ_BUFFER_BYTES, MAX_READ_BUFFER_BYTES)
}

/// The record length that marks a deletion.
const DELETED: u32 = u32::MAX;

/// A change's lengths, before its key: the key's, then the record's (both `u32`).
const HEAD_BYTES: usize = 8;

fn run_error(doing: &str, error: impl std::fmt::Display) -> ViewError {
    ViewError::Storage(format!("a replay's change run file: {doing}: {error}"))
}

/// A temporary file that runs are appended to, one after the other.
#[derive(Debug)]
pub(crate) struct RunFile {
    file: Arc<File>,
    /// Where the next run starts.
    end: u64,
}

impl RunFile {
    /// Creates an unnamed file in `dir`.
    pub(crate) fn create_in(dir: &Path) -> Result<Self, ViewError> {
        let file = tempfile::tempfile_in(dir)
            .map_err(|e| run_error(&format!("creating in {}", dir.display()), e))?;
        Ok(RunFile {
            file: Arc::new(file),
            end: 0,
        })
    }

    /// Appends a run of `changes` (in stored-key order, each key once), ending at the first
    /// error: the tests' way to write runs of changes they make up.
    #[cfg(test)]
    pub(crate) fn write_run(
        &mut self,
        changes: impl Iterator<Item = EncodedChange>,
    ) -> Result<ChangeRun, ViewError> {
        let mut writer = RunWriter::new(self);
        for change in changes {
            let (key, record) = change?;
            let head = writer.begin();
            writer.buffer.extend_from_slice(&key);
            if let Some(record) = &record {
                writer.buffer.extend_from_slice(record);
            }
            writer.end(head, key.len(), record.is_some())?;
        }
        self.finish(writer)
    }

    /// Appends a run of a snapshot's changes in stored-key order, each record encoded
    /// straight into the run's buffer ([`EncodingInOrder::next_into`]), ending at the first
    /// error.
    pub(crate) fn write_encoding(
        &mut self,
        mut changes: EncodingInOrder,
    ) -> Result<ChangeRun, ViewError> {
        let mut writer = RunWriter::new(self);
        loop {
            let head = writer.begin();
            let Some(next) = changes.next_into(&mut writer.buffer) else {
                writer.buffer.truncate(head);
                break;
            };
            let (key_len, put) = next?;
            writer.end(head, key_len, put)?;
        }
        self.finish(writer)
    }

    /// Writes what `writer` holds still and gives its run, the file's end moved past it.
    fn finish(&mut self, mut writer: RunWriter) -> Result<ChangeRun, ViewError> {
        if !writer.buffer.is_empty() {
            writer.write_buffer()?;
        }
        let run = ChangeRun {
            file: self.file.clone(),
            start: self.end,
            changes: writer.changes,
            bytes: writer.bytes,
        };
        self.end += writer.bytes;
        Ok(run)
    }
}

/// Reads a stretch of a shared file, from its start to its end.
struct PositionedReader {
    file: Arc<File>,
    at: u64,
    end: u64,
}

impl Read for PositionedReader {
    fn read(&mut self, into: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let wanted = into.len().min(left);
        if wanted == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut into[..wanted], self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

/// One run being written: its changes gathered in a buffer, written on at the run's end
/// (`pwrite`) each time the buffer holds [`WRITE_BUFFER_BYTES`] or more.
struct RunWriter {
    file: Arc<File>,
    /// Where the buffer goes in the file.
    at: u64,
    buffer: Vec<u8>,
    changes: usize,
    bytes: u64,
}

impl RunWriter {
    fn new(file: &RunFile) -> Self {
        RunWriter {
            file: file.file.clone(),
            at: file.end,
            // Room for a record beyond the threshold, so that most buffers never grow.
            buffer: Vec::with_capacity(2 * WRITE_BUFFER_BYTES),
            changes: 0,
            bytes: 0,
        }
    }

    /// Starts a change: room for its lengths, filled in by [`RunWriter::end`] once they are
    /// known; gives where they are. The change's key follows, then its record.
    fn begin(&mut self) -> usize {
        let head = self.buffer.len();
        self.buffer.extend_from_slice(&[0; HEAD_BYTES]);
        head
    }

    /// Ends the change begun at `head`, whose key is `key_len` bytes and whose record (with
    /// `put`; none for a deletion) runs from the key's end to the buffer's end.
    fn end(&mut self, head: usize, key_len: usize, put: bool) -> Result<(), ViewError> {
        let too_long = |what: &str| run_error("writing", format!("a {what} of 4 GiB or more"));
        let record_start = head + HEAD_BYTES + key_len;
        let key_len = u32::try_from(key_len).map_err(|_| too_long("key"))?;
        let record_len = if put {
            u32::try_from(self.buffer.len() - record_start)
                .ok()
                .filter(|&len| len != DELETED)
                .ok_or_else(|| too_long("record"))?
        } else {
            DELETED
        };
        self.buffer[head..head + 4].copy_from_slice(&key_len.to_le_bytes());
        self.buffer[head + 4..head + HEAD_BYTES].copy_from_slice(&record_len.to_le_bytes());
        self.changes += 1;
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer()?;
        }
        Ok(())
    }

    fn write_buffer(&mut self) -> Result<(), ViewError> {
        self.file
            .write_all_at(&self.buffer, self.at)
            .map_err(|e| run_error("writing", e))?;
        self.at += self.buffer.len() as u64;
        self.bytes += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}

/// A run of changes written to disk, not yet read.
#[derive(Debug)]
pub(crate) struct ChangeRun {
    file: Arc<File>,
    start: u64,
    changes: usize,
    bytes: u64,
}

impl ChangeRun {
    /// How many changes the run holds.
    pub(crate) fn len(&self) -> usize {
        self.changes
    }

    /// The bytes of its stretch of the file.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads the run back, change by change, in the order written, beside `read_together`
    /// runs in all (its buffer is its share); a cut or unreadable file ends it with an
    /// error.
    pub(crate) fn into_run(self, read_together: usize) -> Run {
        let mut file = BufReader::with_capacity(
            read_buffer_bytes(read_together),
            PositionedReader {
                file: self.file,
                at: self.start,
                end: self.start + self.bytes,
            },
        );
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

fn read_change(file: &mut impl BufRead) -> EncodedChange {
    let mut head = [0u8; HEAD_BYTES];
    let read = |file: &mut dyn Read, into: &mut [u8]| {
        file.read_exact(into).map_err(|e| run_error("reading", e))
    };
    read(file, &mut head)?;
    let [k0, k1, k2, k3, r0, r1, r2, r3] = head;
    let key_len = u32::from_le_bytes([k0, k1, k2, k3]) as usize;
    let record_len = u32::from_le_bytes([r0, r1, r2, r3]);
    let key = read_exactly(file, key_len)?;
    let record = if record_len == DELETED {
        None
    } else {
        Some(read_exactly(file, record_len as usize)?)
    };
    Ok((key, record))
}

/// The next `len` bytes of `file`, copied from its buffer into a vector of that capacity
/// without zeroing it first (`vec![0; len]` and `read_exact` zeroed every key and record of
/// a merge before copying it in: `memset` and `calloc` were 4 % of a 1M replay's last
/// checkpoint of the journey view, `perf record`). Fewer bytes than `len` is a cut run.
fn read_exactly(file: &mut impl BufRead, len: usize) -> Result<Vec<u8>, ViewError> {
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let buffered = file.fill_buf().map_err(|e| run_error("reading", e))?;
        if buffered.is_empty() {
            return Err(run_error(
                "reading",
                format!(
                    "the run ends {} bytes short of its change",
                    len - bytes.len()
                ),
            ));
        }
        let taken = buffered.len().min(len - bytes.len());
        bytes.extend_from_slice(&buffered[..taken]);
        file.consume(taken);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(from: u32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        (from..from + 10_000)
            .map(|i| {
                let key = format!("k{i:06}").into_bytes();
                let record = (i % 7 != 0).then(|| vec![(i % 251) as u8; (i % 97) as usize]);
                (key, record)
            })
            .collect()
    }

    fn ok(changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> impl Iterator<Item = EncodedChange> {
        changes.into_iter().map(Ok)
    }

    #[test]
    fn runs_read_together_share_the_buffers_within_bounds() {
        assert_eq!(read_buffer_bytes(1), MAX_READ_BUFFER_BYTES);
        assert_eq!(read_buffer_bytes(13), (2 << 20) / 13);
        // A 10M replay's 156 runs a view: about 2 MiB in all, as for thirteen.
        assert_eq!(read_buffer_bytes(156), (2 << 20) / 156);
        assert_eq!(read_buffer_bytes(10_000), MIN_READ_BUFFER_BYTES);
        assert_eq!(read_buffer_bytes(0), MAX_READ_BUFFER_BYTES);
    }

    #[test]
    fn a_run_read_beside_many_reads_back_the_same_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = RunFile::create_in(dir.path()).unwrap();
        let run = file.write_run(ok(changes(0))).unwrap();
        let read: Vec<_> = run.into_run(10_000).map(Result::unwrap).collect();
        assert_eq!(read, changes(0));
    }

    #[test]
    fn runs_of_one_file_read_back_what_was_written_deletions_and_empty_records_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = RunFile::create_in(dir.path()).unwrap();
        let first = file.write_run(ok(changes(0))).unwrap();
        let empty = file.write_run(ok(Vec::new())).unwrap();
        let second = file.write_run(ok(changes(50_000))).unwrap();
        assert_eq!(
            (first.len(), empty.len(), second.len()),
            (10_000, 0, 10_000)
        );
        assert!(first.bytes() > 10_000 * 8);
        // Read in any order, each its own stretch.
        let second: Vec<_> = second.into_run(1).map(Result::unwrap).collect();
        assert_eq!(second, changes(50_000));
        assert_eq!(empty.into_run(1).count(), 0);
        let first: Vec<_> = first.into_run(1).map(Result::unwrap).collect();
        assert_eq!(first, changes(0));
        // Unnamed: nothing of it is in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_cut_run_ends_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = RunFile::create_in(dir.path()).unwrap();
        let run = file.write_run(ok(changes(0))).unwrap();
        run.file.set_len(run.bytes() / 2).unwrap();
        let read: Vec<_> = run.into_run(1).collect();
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
        let mut file = RunFile::create_in(dir.path()).unwrap();
        let failing = vec![
            Ok((b"a".to_vec(), None)),
            Err(ViewError::Storage("cannot encode".into())),
        ];
        assert!(file.write_run(failing.into_iter()).is_err());
    }
}
