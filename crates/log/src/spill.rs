//! Spill files: records read from the log (of any backend), written aside in the embedded
//! log's own record format and read back once, in the order they were written.
//!
//! What a replay uses to read a long partition once instead of once per pass: the first
//! pass folds one share of the partition's keys and writes the records of the other shares
//! to one spill file each, which their passes read back. A pass that read the log again
//! decompressed and checked every batch of the partition to keep a share of it
//! (`decompress_into` was 57 % of what five more passes cost a 10M-event replay, `perf`);
//! a spill file is plain records, written once and read once. The file is a temporary: it
//! is deleted when its reader (or a writer never finished) is dropped, and nothing in it is
//! synced, since a replay that stops starts over.
//!
//! ```text
//! block: length of its entries u32 | entry count u32 | entry*
//! entry: topic u8 | partition u32 | offset u64 | record (as in a batch: length u32 | ...)
//! ```
//!
//! Blocks of about [`BLOCK_BYTES`]: the reader reads a block at once into a buffer the
//! block's records then share, as a batch read from the log shares its buffer, and takes
//! the buffer again once no record holds it (the log's own [`SpanBuffers`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::embedded::format::{RecordFields, decode_record, le_u32, topic_code, topic_of_code};
use crate::embedded::segments::SpanBuffers;
use crate::{LogError, LogRecord};

/// The bytes before an entry's record: topic, partition, offset.
const ENTRY_HEAD_BYTES: usize = 1 + 4 + 8;

/// The bytes of a block's header: its length and its entry count.
const BLOCK_HEAD_BYTES: usize = 8;

/// A block is written once its entries reach this many bytes. Small, because a replay
/// fills a spill file for each share of a partition at once: with blocks of 2 MiB (and a
/// write buffer of as much), a 10M replay in thirteen passes a partition held 71 MB of
/// them (heaptrack).
pub const BLOCK_BYTES: usize = 256 << 10;

fn spill_error(path: &Path, doing: &str, error: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("spill file {}: {doing}: {error}", path.display()))
}

/// Writes records to a new spill file.
#[derive(Debug)]
pub struct SpillWriter {
    /// Written a block at a time (the block is the write buffer).
    file: Option<File>,
    path: PathBuf,
    records: u64,
    /// The block being filled: its entries, and how many.
    block: Vec<u8>,
    block_records: u32,
}

impl SpillWriter {
    /// Creates the file at `path` (replacing one left there).
    pub fn create(path: &Path) -> Result<Self, LogError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| spill_error(path, "creating", e))?;
        Ok(SpillWriter {
            file: Some(file),
            path: path.to_owned(),
            records: 0,
            block: Vec::new(),
            block_records: 0,
        })
    }

    /// Appends `record`; a record the format cannot hold (a key, a header or a payload
    /// longer than its length field, as another producer may have left on Kafka) is refused,
    /// as the log refuses it on append.
    pub fn write(&mut self, record: &LogRecord) -> Result<(), LogError> {
        let fields = RecordFields::from(record);
        fields.check().map_err(|error| {
            spill_error(
                &self.path,
                "writing",
                format!(
                    "record {} of partition {}: {error}",
                    record.offset, record.partition
                ),
            )
        })?;
        if self.block.is_empty() {
            // Room for the block's header, filled in as it is written.
            self.block.resize(BLOCK_HEAD_BYTES, 0);
        }
        self.block.push(topic_code(record.topic));
        self.block
            .extend_from_slice(&record.partition.to_le_bytes());
        self.block.extend_from_slice(&record.offset.to_le_bytes());
        fields.encode(&mut self.block);
        self.block_records += 1;
        self.records += 1;
        if self.block.len() >= BLOCK_HEAD_BYTES + BLOCK_BYTES {
            self.write_block()?;
        }
        Ok(())
    }

    fn write_block(&mut self) -> Result<(), LogError> {
        if self.block_records == 0 {
            return Ok(());
        }
        let file = self.file.as_mut().ok_or(LogError::Closed)?;
        let len = (self.block.len() - BLOCK_HEAD_BYTES) as u32;
        self.block[..4].copy_from_slice(&len.to_le_bytes());
        self.block[4..BLOCK_HEAD_BYTES].copy_from_slice(&self.block_records.to_le_bytes());
        file.write_all(&self.block)
            .map_err(|e| spill_error(&self.path, "writing", e))?;
        self.block.clear();
        self.block_records = 0;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Ends the writing; the reader reads the records back from the first.
    pub fn finish(mut self) -> Result<SpillReader, LogError> {
        self.write_block()?;
        let file = self.file.take().ok_or(LogError::Closed)?;
        Ok(SpillReader {
            file,
            path: std::mem::take(&mut self.path),
            position: 0,
            remaining: self.records,
            buffers: SpanBuffers::default(),
            block: Bytes::new(),
            block_at: 0,
            block_left: 0,
        })
    }
}

impl Drop for SpillWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads a finished spill file's records back, in the order they were written; deletes
/// the file when dropped.
#[derive(Debug)]
pub struct SpillReader {
    file: File,
    path: PathBuf,
    /// Where the next block starts.
    position: u64,
    remaining: u64,
    buffers: SpanBuffers,
    /// The block being read, where its next entry starts, and how many are left in it.
    block: Bytes,
    block_at: usize,
    block_left: u32,
}

impl SpillReader {
    /// Records not read yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next records, at most `max` (none once all are read). The records of a block
    /// share its buffer.
    pub fn read(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        let mut records = Vec::new();
        while records.len() < max.max(1) {
            if self.block_left == 0 {
                if self.remaining == 0 {
                    break;
                }
                self.read_block()?;
            }
            records.push(self.next_entry()?);
            self.remaining -= 1;
        }
        Ok(records)
    }

    /// Reads the block at `position` into a buffer.
    fn read_block(&mut self) -> Result<(), LogError> {
        let read = |len: usize, position: u64| {
            self.buffers
                .read(&self.file, 0, position, len)
                .map_err(|e| spill_error(&self.path, "reading", e))
        };
        let head = read(BLOCK_HEAD_BYTES, self.position)?;
        let (len, count) = (le_u32(&head[..4]) as usize, le_u32(&head[4..]));
        drop(head);
        self.block = read(len, self.position + BLOCK_HEAD_BYTES as u64)?;
        self.block_at = 0;
        self.block_left = count;
        self.position += (BLOCK_HEAD_BYTES + len) as u64;
        Ok(())
    }

    /// Decodes the block's next entry.
    fn next_entry(&mut self) -> Result<LogRecord, LogError> {
        let at = self.block_at;
        let damaged = || {
            spill_error(
                &self.path,
                "reading",
                format!("the entry at byte {at} of a block is damaged"),
            )
        };
        let head = self
            .block
            .get(at..at + ENTRY_HEAD_BYTES + 4)
            .ok_or_else(damaged)?;
        let partition = le_u32(&head[1..5]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&head[5..13]);
        let start = at + ENTRY_HEAD_BYTES + 4;
        let stop = start + le_u32(&head[13..]) as usize;
        let record = topic_of_code(head[0])
            .filter(|_| stop <= self.block.len())
            .and_then(|topic| {
                decode_record(
                    &self.block,
                    start,
                    stop,
                    topic,
                    partition,
                    u64::from_le_bytes(offset),
                )
            })
            .ok_or_else(damaged)?;
        self.block_at = stop;
        self.block_left -= 1;
        Ok(record)
    }
}

impl Drop for SpillReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topic;

    fn record(topic: Topic, offset: u64, headers: usize) -> LogRecord {
        LogRecord {
            topic,
            partition: 7,
            offset,
            key: format!("customer-{offset}").into(),
            event_id: uuid::Uuid::from_u128(u128::from(offset) + 1),
            payload: Bytes::from(vec![offset as u8; (offset % 300) as usize]),
            headers: (0..headers)
                .map(|n| (format!("h{n}"), vec![n as u8; n]))
                .collect(),
        }
    }

    #[test]
    fn records_read_back_as_written_in_batches_and_the_file_goes_with_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("share-1.spill");
        // About 8 MB: many blocks, and reads that end inside them.
        let written: Vec<LogRecord> = (0..40_000u64)
            .map(|n| {
                let topic = if n % 5 == 0 {
                    Topic::Agents
                } else {
                    Topic::Interactions
                };
                record(topic, n * 3, (n % 3) as usize)
            })
            .collect();
        let mut writer = SpillWriter::create(&path).unwrap();
        for record in &written {
            writer.write(record).unwrap();
        }
        assert_eq!(writer.records(), 40_000);
        let mut reader = writer.finish().unwrap();
        let mut read = Vec::new();
        let mut reads = 0;
        loop {
            let batch = reader.read(1_000).unwrap();
            if batch.is_empty() {
                break;
            }
            reads += 1;
            read.extend(batch);
            assert_eq!(reader.remaining(), 40_000 - read.len() as u64);
        }
        assert_eq!(reads, 40, "1,000 records a read");
        assert_eq!(read, written);
        assert_eq!(reader.remaining(), 0);
        assert!(path.exists());
        drop(reader);
        assert!(!path.exists(), "a spill file is deleted with its reader");
    }

    #[test]
    fn a_record_the_format_cannot_hold_is_refused_and_the_rest_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long-key.spill");
        let mut writer = SpillWriter::create(&path).unwrap();
        let mut long = record(Topic::Interactions, 4, 0);
        long.key = "k".repeat(usize::from(u16::MAX) + 1).into();
        let error = writer.write(&long).unwrap_err().to_string();
        assert!(error.contains("record 4 of partition 7"), "{error}");
        writer.write(&record(Topic::Interactions, 5, 1)).unwrap();
        let mut reader = writer.finish().unwrap();
        assert_eq!(
            reader.read(10).unwrap(),
            vec![record(Topic::Interactions, 5, 1)]
        );
    }

    #[test]
    fn a_writer_dropped_unfinished_deletes_its_file_and_a_cut_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.spill");
        let mut writer = SpillWriter::create(&path).unwrap();
        writer.write(&record(Topic::Interactions, 1, 1)).unwrap();
        drop(writer);
        assert!(!path.exists());

        let mut writer = SpillWriter::create(&path).unwrap();
        for n in 0..3 {
            writer.write(&record(Topic::Interactions, n, 0)).unwrap();
        }
        let mut reader = writer.finish().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 5);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let error = reader.read(10).unwrap_err().to_string();
        assert!(error.contains("cut.spill"), "{error}");
    }
}
