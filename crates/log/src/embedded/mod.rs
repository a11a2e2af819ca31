//! The embedded log: segment files of checksummed group frames, synced before `append`
//! answers.
//!
//! Why a format of our own: the log is the only truth of the product, and the store it sat
//! on before (sled 0.34) flushes with `sync_file_range`, which survives a killed process
//! but not a power cut (sled #1452). The layout is Kafka's and Redpanda's idea (append-only
//! segments, an offset index, checksummed batches) with one change: all partitions share
//! one file, as in KurrentDB's transaction log, because one `fdatasync` of one file is what
//! a group commit can afford (measured on this machine: 0.42 ms for one file, 1.39 ms for
//! twelve files synced in parallel). `docs/log.md` has the measurements and the comparison
//! with the embedded stores considered instead.
//!
//! Files in the log's directory:
//! - `log.json`: the format and each topic's partition count, written once, durably;
//! - `NNNNNNNNNN.seg`: segments (see [`format`]), the last one being written;
//! - `NNNNNNNNNN.idx` and `NNNNNNNNNN.ids`: the batch index and the sorted event ids of a
//!   sealed segment, derived from it and written again from it when missing or damaged; and
//!   the last segment's batch index, written when its writer closes and removed when a
//!   writer opens the log (see `last_index_holds`);
//! - `writer.lock`: held by the one process that writes;
//! - `durable`: where the synced part ends, for readers in other processes.
//!
//! Writes: every append goes to one writer thread. It takes the first request waiting and
//! every other one already queued, checks their event ids against the deduplication index
//! ([`dedup`]), assigns offsets, writes them as one frame, `fdatasync`s the segment, and
//! only then publishes the new ends (which makes the records readable) and answers: a group
//! commit, one sync shared by every request in it. A new segment is created (and its
//! directory entry synced) before a frame goes into it. Requests of a chain (ingest's
//! pipeline, [`EventLog::append_in_chain`]) stand or fall in order: once one is refused,
//! the writer refuses every later one of its chain.
//!
//! A full disk: a frame whose write or sync fails is answered with
//! [`LogError::Unavailable`], and whatever part of it reached the file is cut off (and the
//! cut synced) before another frame is written, at the same place; until the cut succeeds,
//! writes are refused. A segment that cannot be started leaves the active one taking frames,
//! and is tried again after the next group. Nothing latches: the first write after the disk
//! has room again succeeds, without a restart, and nothing of a failed frame is ever readable
//! (its records were never indexed nor their ends published).
//!
//! Opening: every frame of the last segment is checked; a torn or damaged tail (a crash in
//! the middle of a write) is cut back to the last whole frame, with a warning naming what
//! was dropped. Nothing cut was ever acknowledged: an answer waits for the sync, and a
//! synced frame is whole.
//!
//! Readers find a partition's batches through an in-memory index (one entry per batch)
//! and read them with positioned reads, checking each batch's checksum. Another process
//! (an `export` while the server runs) opens the log read-only: it holds no lock (it probes
//! the writer's for an instant to learn whether one runs), changes nothing, and reads up to the durable end the writer published when it opened. It indexes
//! the frames before the durable end a writer published (running or not) by their headers
//! alone, and reads and checks whole only the frames past it (`segments::scan_segment`); a
//! closed log's last segment, by the index its writer left (`last_index_holds`).

mod dedup;
mod faults;
pub(crate) mod format;
mod meta;
pub(crate) mod segments;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::{
    AppendOutcome, AppendRecord, Chain, EventLog, KeyShare, LogError, LogRecord, PartitionCounts,
    PendingAppend, Position, Scan, Topic,
};
use dedup::{DedupIndex, DedupKey, IdMap, SealedRun};
pub use faults::DiskFault;
use faults::Faults;
use format::{FrameBuilder, topic_code};
use meta::{DurableEnd, DurableEndWriter, WriterLock, io_error};
use segments::{BatchEntry, NextOffsets, SegmentIndex};

/// A group commit carries at most this many requests or bytes, so one huge burst cannot
/// delay the first appender's answer without bound.
const MAX_GROUP_REQUESTS: usize = 1_024;
const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// Batches closer than this in a segment are read with one positioned read.
const READ_GAP: u64 = 64 * 1024;
/// The most bytes one positioned read asks for.
const READ_SPAN: u64 = 8 * 1024 * 1024;
/// Reads up to this size run on the caller's thread (they come from the page cache in
/// microseconds); larger ones go to a blocking thread.
const INLINE_READ_BYTES: u64 = 256 * 1024;

/// Settings of an embedded log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 256 * 1024 * 1024,
        }
    }
}

type PartitionIndex = RwLock<Vec<BatchEntry>>;

/// What readers and the writer share.
struct Shared {
    dir: PathBuf,
    counts: PartitionCounts,
    /// Every batch of every partition, in offset order (index = topic code, partition).
    index: [Vec<PartitionIndex>; 3],
    /// Segment files, for positioned reads.
    files: RwLock<BTreeMap<u64, Arc<File>>>,
    /// End offset of every partition readers may read to: durable ones only.
    ends: [Vec<watch::Sender<u64>>; 3],
    /// Moves once per durable group: what tailers of many partitions wait on.
    appended: watch::Sender<u64>,
    flushes: AtomicU64,
    /// Disk failures a test asked for (none otherwise).
    faults: Faults,
    /// The buffers of the last reads, taken again once free.
    spans: segments::SpanBuffers,
}

impl Shared {
    fn end_sender(&self, topic: Topic, partition: u32) -> Result<&watch::Sender<u64>, LogError> {
        self.ends[topic_code(topic) as usize]
            .get(partition as usize)
            .ok_or(LogError::UnknownPartition {
                topic: topic.name(),
                partition,
                partitions: self.counts.get(topic),
            })
    }

    fn file(&self, segment: u64) -> Result<Arc<File>, LogError> {
        self.files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&segment)
            .cloned()
            .ok_or_else(|| LogError::Storage(format!("segment {segment} is not open")))
    }

    /// What a read of up to `max` records of a partition from `from` reads: the batches that
    /// hold them, below the partition's published end (only what is durable is visible).
    fn wanted(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<WantedBatch>, LogError> {
        let end = *self.end_sender(topic, partition)?.borrow();
        if from >= end || max == 0 {
            return Ok(Vec::new());
        }
        let until = end.min(from.saturating_add(max as u64));
        Ok(self
            .batches(topic, partition, from, until)
            .into_iter()
            .map(|batch| WantedBatch {
                topic,
                partition,
                batch,
                from,
                until,
            })
            .collect())
    }

    /// The batches of a partition that hold offsets `from..until`.
    fn batches(&self, topic: Topic, partition: u32, from: u64, until: u64) -> Vec<BatchEntry> {
        let index = self.index[topic_code(topic) as usize][partition as usize]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = index.partition_point(|entry| entry.end_offset() <= from);
        index[start..]
            .iter()
            .take_while(|entry| entry.first_offset < until)
            .copied()
            .collect()
    }

    /// Reads batches (of one partition or many, in the order given) and decodes the records
    /// of each in its range `from..until`, only those whose keys are of `share` when given.
    fn read_batches(
        &self,
        wanted: &[WantedBatch],
        share: Option<KeyShare>,
    ) -> Result<Vec<LogRecord>, LogError> {
        // Sized once: grown as records came, the vector of a replay's 8,192 records was
        // copied as it doubled (`grow_one<LogRecord>`: 1.3 % of a 1M-event replay's samples
        // in `perf record`).
        let expected: u64 = wanted
            .iter()
            .map(|wanted| {
                let end = wanted.batch.end_offset().min(wanted.until);
                end.saturating_sub(wanted.batch.first_offset.max(wanted.from))
            })
            .sum();
        let mut records = Vec::with_capacity(expected.min(1 << 20) as usize);
        let mut at = 0;
        while at < wanted.len() {
            // One positioned read for a run of batches close together in one segment.
            let first = wanted[at].batch;
            let mut span_end = first.position + u64::from(first.len);
            let mut stop = at + 1;
            while stop < wanted.len() {
                let next = wanted[stop].batch;
                if next.segment != first.segment
                    || next.position < span_end
                    || next.position > span_end + READ_GAP
                    || next.position + u64::from(next.len) - first.position > READ_SPAN
                {
                    break;
                }
                span_end = next.position + u64::from(next.len);
                stop += 1;
            }
            let file = self.file(first.segment)?;
            let span = self.spans.read(
                &file,
                first.segment,
                first.position,
                (span_end - first.position) as usize,
            )?;
            for wanted in &wanted[at..stop] {
                let batch = wanted.batch;
                let start = (batch.position - first.position) as usize;
                let bytes = span.slice(start..start + batch.len as usize);
                format::decode_placed_batch(
                    &bytes,
                    wanted.topic,
                    wanted.partition,
                    &batch,
                    wanted.from,
                    wanted.until,
                    share,
                    &mut records,
                    &self.spans,
                )
                .map_err(|reason| {
                    LogError::Storage(format!(
                        "segment {} at byte {}: {reason}",
                        batch.segment, batch.position
                    ))
                })?;
            }
            at = stop;
        }
        Ok(records)
    }

    /// The next step of a scan: about `max` records across its ranges, read in the order
    /// they lie on disk, and the ranges moved past them; empty once every range is read. A
    /// scan of a share of the keys reads on until some record is of it.
    fn scan_step(&self, scan: &mut Scan, max: usize) -> Result<Vec<LogRecord>, LogError> {
        loop {
            let plan = self.plan_scan(scan, max);
            if plan.is_empty() {
                return Ok(Vec::new());
            }
            let wanted: Vec<WantedBatch> = plan
                .iter()
                .map(|&(range, batch, from, until)| WantedBatch {
                    topic: scan.ranges[range].topic,
                    partition: scan.ranges[range].partition,
                    batch,
                    from,
                    until,
                })
                .collect();
            let records = self.read_batches(&wanted, scan.share())?;
            advance_scan(scan, &plan);
            if !records.is_empty() || scan.share().is_none() {
                return Ok(records);
            }
        }
    }

    /// The batches the next step of a scan reads: across every range, in the order they lie
    /// in the segments, until about `max` records.
    fn plan_scan(&self, scan: &Scan, max: usize) -> Vec<(usize, BatchEntry, u64, u64)> {
        // Where each range stops: its end, or the partition's durable end if sooner.
        let untils: Vec<u64> = scan
            .ranges
            .iter()
            .map(|range| {
                let end = self
                    .end_sender(range.topic, range.partition)
                    .map_or(0, |end| *end.borrow());
                range.to.min(end)
            })
            .collect();
        let mut per_range: Vec<std::collections::VecDeque<BatchEntry>> = scan
            .ranges
            .iter()
            .zip(&untils)
            .map(|(range, &until)| {
                if range.from >= until {
                    return std::collections::VecDeque::new();
                }
                let batches = self.batches(range.topic, range.partition, range.from, until);
                // Enough batches per range for one step, no more.
                let mut taken = std::collections::VecDeque::new();
                let mut records = 0u64;
                for batch in batches {
                    records += u64::from(batch.count);
                    taken.push_back(batch);
                    if records >= max as u64 {
                        break;
                    }
                }
                taken
            })
            .collect();
        let mut plan = Vec::new();
        let mut records = 0usize;
        while records < max {
            // The range whose next batch lies first in the log.
            let Some(next) = per_range
                .iter()
                .enumerate()
                .filter_map(|(at, batches)| batches.front().map(|b| (at, (b.segment, b.position))))
                .min_by_key(|(_, location)| *location)
                .map(|(at, _)| at)
            else {
                break;
            };
            let Some(batch) = per_range[next].pop_front() else {
                break;
            };
            let from = scan.ranges[next].from.max(batch.first_offset);
            let until = untils[next].min(batch.end_offset());
            records += until.saturating_sub(from) as usize;
            plan.push((next, batch, scan.ranges[next].from, untils[next]));
        }
        plan
    }
}

/// A batch a read wants, where its index places it (its partition and its entry), and the
/// offsets of it wanted.
#[derive(Clone, Copy, Debug)]
struct WantedBatch {
    topic: Topic,
    partition: u32,
    batch: BatchEntry,
    from: u64,
    until: u64,
}

/// The embedded backend of [`EventLog`]. See the module documentation.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    /// `None` when opened read-only, or once closed.
    requests: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    _lock: Option<WriterLock>,
    /// The next chain handed out (see [`EventLog::append_in_chain`]).
    chains: AtomicU64,
    /// Opened read-only, with the last segment's batches taken from its index.
    last_from_index: bool,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.shared.dir)
            .field("partitions", &self.shared.counts)
            .field("read_only", &self.requests.is_none())
            .finish_non_exhaustive()
    }
}

/// What opening found, before the log is served.
struct Opened {
    index: [Vec<Vec<BatchEntry>>; 3],
    next: NextOffsets,
    files: BTreeMap<u64, Arc<File>>,
    /// The segment being written, its length and the sequence of its next frame.
    last_segment: u64,
    last_len: u64,
    next_sequence: u64,
    /// The last segment's batches and ids (the writer keeps adding to them).
    active_batches: Vec<(Topic, u32, BatchEntry)>,
    active_ids: IdMap,
    sealed_runs: Vec<SealedRun>,
    /// A reader took the last segment's batches from the index its writer left at closing.
    last_from_index: bool,
}

fn empty_next(counts: &PartitionCounts) -> NextOffsets {
    [
        vec![0; counts.get(Topic::Interactions) as usize],
        vec![0; counts.get(Topic::Agents) as usize],
        vec![0; counts.get(Topic::DeadLetter) as usize],
    ]
}

fn open_file(dir: &Path, segment: u64) -> Result<Arc<File>, LogError> {
    let path = segments::segment_path(dir, segment);
    File::open(&path)
        .map(Arc::new)
        .map_err(|error| io_error(format!("opening {}", path.display()), error))
}

/// Reads every segment back. `writing`: this process is the writer (it may cut a torn
/// tail and write missing derived files); otherwise nothing is changed, and reading stops
/// at `limit` (the writer's published durable end) when given. What lies before `trusted`
/// (the durable end a writer published, running or not) is read by its frames' headers
/// alone (see [`segments::scan_segment`]).
fn load(
    dir: &Path,
    counts: &PartitionCounts,
    writing: bool,
    limit: Option<DurableEnd>,
    trusted: Option<DurableEnd>,
) -> Result<Opened, LogError> {
    let mut segment_numbers = segments::list_segments(dir)?;
    if let Some(limit) = limit {
        segment_numbers.retain(|&segment| segment <= limit.segment);
    }
    // A last segment too short for its header, or no longer than its header and with a
    // header that does not read back, was being created when the disk filled up or the
    // machine stopped (a file's length can reach the disk before its bytes do): no frame
    // was ever written to it, since a roll starts writing frames only once the new header
    // is synced. The writer removes it (and creates it again when it rolls); a reader
    // passes over it.
    if let Some(&last) = segment_numbers.last() {
        let path = segments::segment_path(dir, last);
        let len = std::fs::metadata(&path)
            .map_err(|error| io_error(format!("reading {}", path.display()), error))?
            .len();
        if len < format::SEGMENT_HEADER_BYTES
            || (len == format::SEGMENT_HEADER_BYTES
                && !segments::header_names(&path, last)
                    .map_err(|error| io_error(format!("reading {}", path.display()), error))?)
        {
            if writing {
                tracing::warn!(path = %path.display(), bytes = len, "removing a segment whose creation never finished (it holds no frame)");
                std::fs::remove_file(&path)
                    .map_err(|error| io_error(format!("removing {}", path.display()), error))?;
                meta::sync_dir(dir)?;
            }
            segment_numbers.pop();
        }
    }
    if segment_numbers.is_empty() {
        if !writing {
            return Err(LogError::Storage(format!(
                "{} holds no segments",
                dir.display()
            )));
        }
        segments::create_segment(dir, 1, 0, &Faults::default())?;
        segment_numbers.push(1);
    }
    let mut next = empty_next(counts);
    let mut index: [Vec<Vec<BatchEntry>>; 3] = [
        vec![Vec::new(); counts.get(Topic::Interactions) as usize],
        vec![Vec::new(); counts.get(Topic::Agents) as usize],
        vec![Vec::new(); counts.get(Topic::DeadLetter) as usize],
    ];
    let mut files = BTreeMap::new();
    let mut sealed_runs = Vec::new();
    let mut expected_sequence: Option<u64> = None;
    let last = *segment_numbers.last().unwrap_or(&1);
    let mut opened_last = None;
    let mut last_from_index = false;
    for &segment in &segment_numbers {
        files.insert(segment, open_file(dir, segment)?);
        let is_last = segment == last;
        let add = |index: &mut [Vec<Vec<BatchEntry>>; 3], batches: &[(Topic, u32, BatchEntry)]| {
            for (topic, partition, entry) in batches {
                if let Some(partition) =
                    index[topic_code(*topic) as usize].get_mut(*partition as usize)
                {
                    partition.push(*entry);
                }
            }
        };
        // A sealed segment's index, or, for a reader, the last segment's as its writer left
        // it when it closed (see [`last_index_holds`]); either only where it follows on from
        // the segments before ([`offsets_after_index`]).
        let loaded = (!(is_last && writing))
            .then(|| segments::load_index(dir, segment))
            .flatten()
            .filter(|loaded| !is_last || last_index_holds(loaded, segment, limit, trusted))
            .and_then(|loaded| {
                offsets_after_index(&files[&segment], segment, expected_sequence, &next, &loaded)
                    .map(|after| (loaded, after))
            });
        if let Some((loaded, after)) = loaded {
            // Trusted: it was written from a checked scan, or by the writer from the frames
            // it had synced.
            next = after;
            add(&mut index, &loaded.batches);
            if let Some(sequence) = loaded.last_sequence {
                expected_sequence = Some(sequence + 1);
            }
            if is_last {
                last_from_index = true;
                opened_last = Some((
                    segment,
                    loaded.len,
                    expected_sequence.unwrap_or_default(),
                    loaded.batches,
                    IdMap::default(),
                ));
                continue;
            }
            if writing {
                let run = match dedup::load_run(dir, segment) {
                    Some(run) => run,
                    // The ids must come from the records: scan the segment for them.
                    None => dedup::write_run(
                        dir,
                        segment,
                        &rescan_for_ids(dir, segment, &loaded, counts)?,
                    )?,
                };
                sealed_runs.push(run);
            }
            continue;
        }
        let segment_limit = match limit {
            Some(limit) if limit.segment == segment => Some(limit.position),
            _ => None,
        };
        let scanned = segments::scan_segment(
            dir,
            segment,
            expected_sequence,
            &mut next,
            writing,
            segment_limit,
            trusted,
        )?;
        if let Some(sequence) = scanned.last_sequence {
            expected_sequence = Some(sequence + 1);
        }
        add(&mut index, &scanned.batches);
        if !is_last {
            if let Some(stopped) = &scanned.stopped {
                return Err(LogError::Storage(format!(
                    "segment {segment} of {} is damaged before its end ({stopped}); later segments follow it, so the log cannot be cut back there",
                    dir.display()
                )));
            }
            if writing {
                segments::write_index(
                    dir,
                    segment,
                    &SegmentIndex {
                        batches: scanned.batches.clone(),
                        last_sequence: scanned.last_sequence,
                        len: scanned.file_len,
                    },
                )?;
                sealed_runs.push(dedup::write_run(dir, segment, &scanned.ids)?);
            }
            continue;
        }
        if writing && scanned.valid_len < scanned.file_len {
            let path = segments::segment_path(dir, segment);
            // What the last writer published as synced (and so acknowledged): a cut below it
            // is no torn tail but damage to frames already answered (a bad block, a bit
            // flipped on the disk). The log still opens (what follows the damage cannot be
            // read in order), but it says so, and keeps the bytes it cuts beside the segment
            // for whoever can mend them, where it said nothing acknowledged was dropped and
            // dropped them (found by review).
            let acknowledged = meta::read_durable_end(dir)
                .filter(|end| end.segment == segment && end.position > scanned.valid_len);
            match acknowledged {
                Some(end) => {
                    let kept = keep_cut_bytes(&path, scanned.valid_len, scanned.file_len)?;
                    tracing::error!(
                        segment,
                        dir = %dir.display(),
                        damaged_at = scanned.valid_len,
                        synced_to = end.position,
                        cut_bytes = scanned.file_len - scanned.valid_len,
                        kept_in = %kept.display(),
                        reason = scanned.stopped.as_deref().unwrap_or(""),
                        "the log's last segment is damaged before the end its writer had synced: acknowledged events past the damage are cut off; the cut bytes are kept aside"
                    );
                }
                None => tracing::warn!(
                    segment,
                    dir = %dir.display(),
                    kept_bytes = scanned.valid_len,
                    dropped_bytes = scanned.file_len - scanned.valid_len,
                    reason = scanned.stopped.as_deref().unwrap_or(""),
                    "the log's tail was cut by a crash; dropping it back to the last whole frame (nothing dropped was acknowledged)"
                ),
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|error| io_error(format!("opening {}", path.display()), error))?;
            file.set_len(scanned.valid_len)
                .and_then(|()| file.sync_all())
                .map_err(|error| io_error(format!("cutting {}", path.display()), error))?;
        }
        let header_sequence = {
            let mut header = [0u8; format::SEGMENT_HEADER_BYTES as usize];
            use std::os::unix::fs::FileExt;
            files[&segment]
                .read_exact_at(&mut header, 0)
                .ok()
                .and_then(|()| format::parse_segment_header(&header))
                .map_or(0, |(_, first)| first)
        };
        opened_last = Some((
            segment,
            scanned.valid_len,
            expected_sequence.unwrap_or(header_sequence),
            scanned.batches,
            scanned.ids,
        ));
    }
    let (last_segment, last_len, next_sequence, active_batches, active_ids) =
        opened_last.ok_or_else(|| LogError::Storage("the log has no last segment".to_owned()))?;
    Ok(Opened {
        index,
        next,
        files,
        last_segment,
        last_len,
        next_sequence,
        active_batches,
        active_ids,
        sealed_runs,
        last_from_index,
    })
}

/// Whether the index found beside the last segment describes it as it is, for a reader: the
/// writer writes that index when it closes, from the frames it had synced, and removes it
/// (durably) when it opens the log, before it appends anything. A writer's open may first
/// cut a damaged tail: that leaves the segment shorter than the index says, and a crash
/// before the removal leaves an index no reader takes. So an index whose length is the
/// segment's (`load_index` checks) and whose end is the durable end the last writer
/// published (its position and its last frame's sequence) is the segment's, and the reader
/// takes it instead of reading the frames' headers: 2,441 `pread`s of 20 and 28 bytes for
/// the 94 MB segment of a 1M-event history, each waiting on the disk when the host has taken
/// the file's pages back (about 40 ms before a replay could start; docs/log.md). A reader
/// beside a running writer finds no such index (the writer removed it), or one that no
/// longer matches the segment's length or the writer's published end.
fn last_index_holds(
    index: &SegmentIndex,
    segment: u64,
    limit: Option<DurableEnd>,
    trusted: Option<DurableEnd>,
) -> bool {
    let ends_at = |end: DurableEnd| {
        end.segment == segment
            && end.position == index.len
            && index.last_sequence == Some(end.sequence)
    };
    trusted.is_some_and(ends_at) && limit.is_none_or(ends_at)
}

/// Each partition's next offset after a segment's index, when the index follows on from
/// the segments before it as a scan of the segment checks: the segment's header names it
/// and the frame sequence the segment before it ended at (a segment missing between them
/// is found, not passed over), and each partition's batches start at the offset the
/// segments before ended at and follow each other. One read of the segment's 32-byte
/// header; the rest in memory. `None` for an index that does not follow: the segment is
/// scanned instead, which names what is wrong (or, for a writer, writes the index again).
fn offsets_after_index(
    file: &File,
    segment: u64,
    expected_sequence: Option<u64>,
    next: &NextOffsets,
    index: &SegmentIndex,
) -> Option<NextOffsets> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; format::SEGMENT_HEADER_BYTES as usize];
    file.read_exact_at(&mut header, 0).ok()?;
    let (number, first_sequence) = format::parse_segment_header(&header)?;
    if number != segment || expected_sequence.is_some_and(|expected| expected != first_sequence) {
        return None;
    }
    let mut next = next.clone();
    for (topic, partition, entry) in &index.batches {
        let slot = next[topic_code(*topic) as usize].get_mut(*partition as usize)?;
        if *slot != entry.first_offset {
            return None;
        }
        *slot = entry.end_offset();
    }
    Some(next)
}

/// Copies the bytes `from..to` of the segment at `path` beside it, synced, before they are
/// cut off: `NNNN.seg.cut-<offset>`. Returns where.
fn keep_cut_bytes(path: &Path, from: u64, to: u64) -> Result<PathBuf, LogError> {
    use std::io::{Read, Seek, SeekFrom};
    let aside = path.with_extension(format!("seg.cut-{from}"));
    let copied = (|| -> std::io::Result<()> {
        let mut source = File::open(path)?;
        source.seek(SeekFrom::Start(from))?;
        let mut target = File::create(&aside)?;
        std::io::copy(&mut source.take(to - from), &mut target)?;
        target.sync_all()
    })();
    copied.map_err(|error| {
        io_error(
            format!("keeping the cut bytes in {}", aside.display()),
            error,
        )
    })?;
    if let Some(dir) = path.parent() {
        meta::sync_dir(dir)?;
    }
    Ok(aside)
}

/// The ids of a sealed segment whose index survived but whose run file did not.
fn rescan_for_ids(
    dir: &Path,
    segment: u64,
    loaded: &SegmentIndex,
    counts: &PartitionCounts,
) -> Result<IdMap, LogError> {
    // Start every partition at the offset its first batch in this segment has, so the scan's
    // offset checks hold without the segments before it.
    let mut scratch = empty_next(counts);
    let mut seen = std::collections::HashSet::new();
    for (topic, partition, entry) in &loaded.batches {
        if seen.insert((topic_code(*topic), *partition))
            && let Some(slot) = scratch[topic_code(*topic) as usize].get_mut(*partition as usize)
        {
            *slot = entry.first_offset;
        }
    }
    let scanned = segments::scan_segment(dir, segment, None, &mut scratch, true, None, None)?;
    // A scan that stopped short of the frames the index holds (a damaged frame) would save
    // the ids before the damage as the segment's whole run: every id past it would then be
    // taken as new and stored again (found by review). Refused, as the same damage is when
    // no index is left.
    if scanned.valid_len != loaded.len {
        return Err(LogError::Storage(format!(
            "segment {segment} reads to byte {} where its index ends at {}{}, so its event ids cannot be listed",
            scanned.valid_len,
            loaded.len,
            scanned
                .stopped
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default()
        )));
    }
    Ok(scanned.ids)
}

impl EmbeddedLog {
    /// Opens the log in `dir` for writing, creating it with `partitions` if it does not
    /// exist. A log keeps the partition counts it was created with; asking for others is an
    /// error. One process writes a log at a time.
    pub fn open(dir: &Path, partitions: PartitionCounts) -> Result<Self, LogError> {
        Self::open_with(dir, partitions, LogOptions::default())
    }

    /// [`EmbeddedLog::open`] with settings.
    pub fn open_with(
        dir: &Path,
        partitions: PartitionCounts,
        options: LogOptions,
    ) -> Result<Self, LogError> {
        for topic in Topic::ALL {
            if partitions.get(topic) == 0 {
                return Err(LogError::InvalidRecord(format!(
                    "{} needs at least one partition",
                    topic.name()
                )));
            }
        }
        std::fs::create_dir_all(dir)
            .map_err(|error| io_error(format!("creating {}", dir.display()), error))?;
        meta::refuse_older_format(dir)?;
        let lock = WriterLock::take(dir)?;
        match meta::read_meta(dir)? {
            Some((format, stored)) => {
                for topic in Topic::ALL {
                    if stored.get(topic) != partitions.get(topic) {
                        return Err(LogError::PartitionMismatch {
                            topic: topic.name(),
                            stored: stored.get(topic),
                            requested: partitions.get(topic),
                        });
                    }
                }
                if format != meta::FORMAT {
                    tracing::info!(
                        dir = %dir.display(),
                        from = format,
                        to = meta::FORMAT,
                        "the log's format is raised before its first write: its batches may now be stored compressed"
                    );
                    meta::write_meta(dir, &partitions)?;
                }
            }
            None => meta::write_meta(dir, &partitions)?,
        }
        let opened = load(dir, &partitions, true, None, None)?;
        // The index the last writer left beside the last segment stops describing it at
        // this writer's first append: gone before it, and durably, so that a reader never
        // takes it for the segment (see [`last_index_holds`]; a cut of a damaged tail in
        // `load` leaves the segment shorter than the index says, which no reader takes).
        segments::remove_index(dir, opened.last_segment)?;
        let shared = Arc::new(shared_of(dir, partitions, &opened));
        let durable = DurableEndWriter::create(dir)?;
        durable.publish(DurableEnd {
            segment: opened.last_segment,
            position: opened.last_len,
            sequence: opened.next_sequence.saturating_sub(1),
        });
        let active = std::fs::OpenOptions::new()
            .write(true)
            .open(segments::segment_path(dir, opened.last_segment))
            .map_err(|error| io_error("opening the last segment for writing", error))?;
        let writer_state = Writer {
            shared: shared.clone(),
            options,
            active,
            active_segment: opened.last_segment,
            active_len: opened.last_len,
            active_batches: opened.active_batches,
            next_sequence: opened.next_sequence,
            next: opened.next,
            dedup: DedupIndex::new(opened.sealed_runs, opened.active_ids),
            frame: FrameBuilder::default(),
            durable,
            sealers: Vec::new(),
            sealed: mpsc::channel(),
            unsettled: None,
            broken_chains: std::collections::HashSet::new(),
        };
        let (requests, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("omnilog-log-writer".to_owned())
            .spawn(move || writer_state.run(&receiver))
            .map_err(|e| LogError::Storage(format!("starting the writer thread: {e}")))?;
        tracing::debug!(dir = %dir.display(), "embedded log open");
        Ok(EmbeddedLog {
            shared,
            requests: Some(requests),
            writer: Some(writer),
            _lock: Some(lock),
            chains: AtomicU64::new(0),
            last_from_index: false,
        })
    }

    /// Opens an existing log for writing with the partition counts it was created with; an
    /// error if `dir` holds no omnilog log (nothing is created).
    pub fn open_existing(dir: &Path) -> Result<Self, LogError> {
        meta::refuse_older_format(dir)?;
        let (_, counts) = meta::read_meta(dir)?
            .ok_or_else(|| LogError::Storage(format!("{} holds no omnilog log", dir.display())))?;
        Self::open(dir, counts)
    }

    /// Opens a log to read it while another process may be writing it (an export or a
    /// replay beside a running server): nothing is locked or changed, and what is readable
    /// is what was durable when it opened. Appends are refused.
    pub fn open_read_only(dir: &Path) -> Result<Self, LogError> {
        meta::refuse_older_format(dir)?;
        let (_, counts) = meta::read_meta(dir)?
            .ok_or_else(|| LogError::Storage(format!("{} holds no omnilog log", dir.display())))?;
        // With a writer running, read what it has made durable; without one, every whole
        // frame (the next writer keeps them all). What a writer published as durable was
        // synced before: its frames need not be read to be checked, only their headers to
        // be indexed (each batch is checked as it is read).
        let published = meta::read_durable_end(dir);
        let limit = if meta::writer_is_running(dir) {
            published
        } else {
            None
        };
        let opened = load(dir, &counts, false, limit, published)?;
        let shared = Arc::new(shared_of(dir, counts, &opened));
        Ok(EmbeddedLog {
            shared,
            requests: None,
            writer: None,
            _lock: None,
            chains: AtomicU64::new(0),
            last_from_index: opened.last_from_index,
        })
    }

    /// Whether this read-only log took its last segment's batches from the index its writer
    /// left when it closed, reading none of the segment's frame headers (for tests).
    #[doc(hidden)]
    pub fn last_segment_from_index(&self) -> bool {
        self.last_from_index
    }

    /// Whether a process holds the log in `dir` open for writing now.
    pub fn writer_running(dir: &Path) -> bool {
        meta::writer_is_running(dir)
    }

    /// Stops the writer after the appends already queued.
    pub fn close(mut self) -> Result<(), LogError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LogError> {
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            writer
                .join()
                .map_err(|_| LogError::Storage("the writer thread panicked".to_owned()))?;
        }
        Ok(())
    }

    /// Makes the writer's next `times` disk operations of one kind fail as on a full disk
    /// (see [`DiskFault`]), for tests of what the log does then.
    #[doc(hidden)]
    pub fn inject_disk_fault(&self, fault: DiskFault, times: u32) {
        self.shared.faults.inject(fault, times);
    }

    /// How many injected failures of one kind are still to strike (for tests that wait for
    /// the writer to meet one).
    #[doc(hidden)]
    pub fn disk_faults_left(&self, fault: DiskFault) -> u32 {
        self.shared.faults.left(fault)
    }

    /// How many times the writer synced (for tests of group commit).
    #[doc(hidden)]
    pub fn flush_count(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// [`EventLog::read`] without an async runtime (for folds on blocking threads).
    pub fn read_blocking(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let wanted = self.shared.wanted(topic, partition, from, max)?;
        self.shared.read_batches(&wanted, None)
    }

    fn scan_blocking(&self, scan: &mut Scan, max: usize) -> Result<Vec<LogRecord>, LogError> {
        self.shared.scan_step(scan, max)
    }
}

/// Moves each range of a scan past the batches just read.
fn advance_scan(scan: &mut Scan, plan: &[(usize, BatchEntry, u64, u64)]) {
    for &(range, batch, _, until) in plan {
        let range = &mut scan.ranges[range];
        range.from = range.from.max(batch.end_offset().min(until));
    }
}

fn shared_of(dir: &Path, counts: PartitionCounts, opened: &Opened) -> Shared {
    let index = opened
        .index
        .clone()
        .map(|partitions| partitions.into_iter().map(RwLock::new).collect());
    let ends = opened.next.clone().map(|partitions| {
        partitions
            .into_iter()
            .map(|end| watch::channel(end).0)
            .collect()
    });
    Shared {
        dir: dir.to_path_buf(),
        counts,
        index,
        files: RwLock::new(opened.files.clone()),
        ends,
        appended: watch::channel(0).0,
        flushes: AtomicU64::new(0),
        faults: Faults::default(),
        spans: segments::SpanBuffers::default(),
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "closing the embedded log");
        }
    }
}

struct WriteRequest {
    batch: Vec<AppendRecord>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, LogError>>,
    /// The chain it stands or falls with (see [`EventLog::append_in_chain`]).
    chain: Option<Chain>,
}

/// A request of the group being committed, and what became of its records.
struct Taken {
    batch: Vec<AppendRecord>,
    reply: Reply,
    chain: Option<Chain>,
    outcomes: Vec<AppendOutcome>,
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    options: LogOptions,
    active: File,
    active_segment: u64,
    active_len: u64,
    active_batches: Vec<(Topic, u32, BatchEntry)>,
    next_sequence: u64,
    next: NextOffsets,
    dedup: DedupIndex,
    frame: FrameBuilder,
    durable: DurableEndWriter,
    /// Threads writing the derived files of sealed segments.
    sealers: Vec<JoinHandle<()>>,
    sealed: (mpsc::Sender<SealedOutcome>, mpsc::Receiver<SealedOutcome>),
    /// Set when a write or a sync of a frame failed (a full disk): the active segment may
    /// hold bytes of that frame past this position, none of which counts. Nothing more is
    /// written until the file is cut back here and that cut is synced (see
    /// [`Writer::settle`]); then the log takes writes again, without a restart.
    unsettled: Option<u64>,
    /// Chains one of whose appends was refused: their later appends are refused too.
    broken_chains: std::collections::HashSet<Chain>,
}

type Reply = oneshot::Sender<Result<Vec<AppendOutcome>, LogError>>;
/// What a sealer thread hands back: the sealed segment's run of ids, once written.
type SealedOutcome = Result<SealedRun, LogError>;

impl Writer {
    fn run(mut self, receiver: &mpsc::Receiver<WriteRequest>) {
        while let Ok(first) = receiver.recv() {
            let mut group_bytes: usize = first.batch.iter().map(format::encoded_len).sum();
            let mut group = vec![first];
            while group.len() < MAX_GROUP_REQUESTS && group_bytes < MAX_GROUP_BYTES {
                match receiver.try_recv() {
                    Ok(request) => {
                        group_bytes += request.batch.iter().map(format::encoded_len).sum::<usize>();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.take_sealed_runs();
            self.commit(group);
            if self.frame.capacity() > 4 * MAX_GROUP_BYTES {
                self.frame.shrink();
            }
            // A segment whose tail is unsettled is not sealed: its index would not describe
            // the file. A roll that fails (a full disk) is tried again after the next group;
            // meanwhile frames go on into the active segment, which only grows past its
            // target size.
            if self.active_len >= self.options.segment_bytes
                && self.unsettled.is_none()
                && let Err(error) = self.roll()
            {
                tracing::warn!(%error, "could not start a new segment; the active one takes the next writes and the roll is tried again after them");
            }
        }
        for sealer in self.sealers.drain(..) {
            let _ = sealer.join();
        }
        self.take_sealed_runs();
        self.index_the_last_segment();
    }

    /// At a clean close, writes the active segment's batch index beside it, as a sealed
    /// segment's is written, so that readers opening the closed log take it instead of
    /// reading the segment's frame headers (see [`last_index_holds`]). Every frame of the
    /// segment was synced before its append was answered; a segment whose tail is unsettled
    /// (a failed write) gets none.
    fn index_the_last_segment(&mut self) {
        if self.unsettled.is_some() || self.active_batches.is_empty() {
            return;
        }
        let index = SegmentIndex {
            batches: std::mem::take(&mut self.active_batches),
            last_sequence: self.next_sequence.checked_sub(1),
            len: self.active_len,
        };
        if let Err(error) = segments::write_index(&self.shared.dir, self.active_segment, &index) {
            // Derived data: readers read the segment's frame headers instead.
            tracing::warn!(%error, segment = self.active_segment, "could not write the last segment's index at closing");
        }
    }

    fn take_sealed_runs(&mut self) {
        while let Ok(sealed) = self.sealed.1.try_recv() {
            match sealed {
                Ok(run) => self.dedup.sealed(run),
                // The ids stay in memory (in `sealing`) and are written on the next open.
                Err(error) => tracing::warn!(%error, "could not write a sealed segment's ids"),
            }
        }
        self.sealers.retain(|sealer| !sealer.is_finished());
    }

    /// Seals the active segment and starts the next one.
    fn roll(&mut self) -> Result<(), LogError> {
        let sealed = self.active_segment;
        let segment = sealed + 1;
        let dir = &self.shared.dir;
        let path = segments::segment_path(dir, segment);
        // A file of this number can only be what an earlier roll that failed left (this
        // writer holds the lock, and the active segment is the last): no frame was ever
        // written to it.
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a segment a failed roll left empty")
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(format!("removing {}", path.display()), error)),
        }
        let file = if self.shared.faults.strikes(DiskFault::CreateSegment) {
            File::create_new(&path)
                .map_err(|error| io_error(format!("creating {}", path.display()), error))?;
            return Err(io_error(
                format!("writing {}", path.display()),
                faults::no_space(),
            ));
        } else {
            segments::create_segment(dir, segment, self.next_sequence, &self.shared.faults)?
        };
        let reader = match file.try_clone() {
            Ok(reader) => reader,
            Err(error) => {
                // Not started: the frames go on into the active segment, whose sequence
                // would no longer follow on from this one's header.
                let _ = std::fs::remove_file(&path);
                return Err(io_error("opening the new segment for reading", error));
            }
        };
        self.shared
            .files
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(segment, Arc::new(reader));
        self.active = file;
        self.active_segment = segment;
        let sealed_len = self.active_len;
        self.active_len = format::SEGMENT_HEADER_BYTES;
        let index = SegmentIndex {
            batches: std::mem::take(&mut self.active_batches),
            last_sequence: self.next_sequence.checked_sub(1),
            len: sealed_len,
        };
        let ids = self.dedup.seal(sealed);
        let dir = self.shared.dir.clone();
        let done = self.sealed.0.clone();
        let sealer = std::thread::Builder::new()
            .name("omnilog-log-sealer".to_owned())
            .spawn(move || {
                let run = segments::write_index(&dir, sealed, &index)
                    .and_then(|()| dedup::write_run(&dir, sealed, &ids));
                let _ = done.send(run);
            });
        match sealer {
            Ok(sealer) => self.sealers.push(sealer),
            // The segment is sealed all the same: its ids stay in memory (in `sealing`), and
            // the next open writes its derived files from the segment.
            Err(error) => {
                tracing::warn!(%error, sealed, "could not start a thread to write a sealed segment's index")
            }
        }
        self.durable.publish(DurableEnd {
            segment,
            position: self.active_len,
            sequence: self.next_sequence.saturating_sub(1),
        });
        tracing::debug!(sealed, segment, "log segment sealed");
        Ok(())
    }

    /// Where the log holds an event id already, if it does ([`DedupIndex::get`], or an
    /// injected read failure).
    fn look_up_id(&self, key: &DedupKey) -> Result<Option<u64>, LogError> {
        if self.shared.faults.strikes(DiskFault::ReadIds) {
            return Err(io_error(
                "reading a sealed segment's event ids".to_owned(),
                faults::io_failure(),
            ));
        }
        self.dedup.get(key)
    }

    fn commit(&mut self, group: Vec<WriteRequest>) {
        let before = self.next.clone();
        // Event ids stored by this group so far, so a duplicate inside the group is caught.
        // Sized once: grown from empty, a group of thousands of events rehashed it a dozen
        // times.
        let mut pending = IdMap::with_capacity_and_hasher(
            group.iter().map(|request| request.batch.len()).sum(),
            Default::default(),
        );
        // Where each stored record goes: (topic, partition) → (request, record) in order.
        let mut placements: BTreeMap<(u8, u32), Vec<(usize, usize)>> = BTreeMap::new();
        let mut requests: Vec<Taken> = Vec::with_capacity(group.len());
        let mut group = group.into_iter();
        while let Some(request) = group.next() {
            if let Some(chain) = request.chain
                && self.broken_chains.contains(&chain)
            {
                let _ = request.reply.send(Err(LogError::Unavailable(
                    "an earlier append of the same chain was refused".to_owned(),
                )));
                continue;
            }
            if let Err(error) = self.validate(&request.batch) {
                self.break_chain(request.chain);
                let _ = request.reply.send(Err(error));
                continue;
            }
            let at = requests.len();
            let mut outcomes = Vec::with_capacity(request.batch.len());
            for (index, record) in request.batch.iter().enumerate() {
                let partition = crate::partition_for(
                    record.key.as_bytes(),
                    self.shared.counts.get(record.topic),
                );
                let key = DedupKey::new(record.topic, partition, &record.event_id);
                let existing = match pending.get(&key) {
                    Some(&offset) => Some(offset),
                    None => match self.look_up_id(&key) {
                        Ok(found) => found,
                        Err(error) => {
                            // A failed index read fails the whole group: offsets were
                            // already interleaved with other requests'.
                            let message = error.to_string();
                            self.break_chain(request.chain);
                            let _ = request.reply.send(Err(error));
                            self.refuse(requests, || LogError::Storage(message.clone()));
                            // And the group's requests not looked at yet, each answered and
                            // its chain broken: dropped unanswered, they were told the log
                            // had closed, and the next append of their chains was stored
                            // after them (found by review).
                            for rest in group {
                                self.break_chain(rest.chain);
                                let _ = rest.reply.send(Err(LogError::Storage(message.clone())));
                            }
                            self.next = before;
                            return;
                        }
                    },
                };
                match existing {
                    Some(offset) => {
                        outcomes.push(AppendOutcome::Duplicate(Position { partition, offset }))
                    }
                    None => {
                        let next =
                            &mut self.next[topic_code(record.topic) as usize][partition as usize];
                        let offset = *next;
                        *next += 1;
                        pending.insert(key, offset);
                        placements
                            .entry((topic_code(record.topic), partition))
                            .or_default()
                            .push((at, index));
                        outcomes.push(AppendOutcome::Appended(Position { partition, offset }));
                    }
                }
            }
            requests.push(Taken {
                batch: request.batch,
                reply: request.reply,
                chain: request.chain,
                outcomes,
            });
        }
        if placements.is_empty() {
            // Nothing new (all duplicates): nothing to write or wait for.
            for taken in requests {
                let _ = taken.reply.send(Ok(taken.outcomes));
            }
            return;
        }
        if let Err(error) = self.settle() {
            let message = format!(
                "a write failed earlier and what it left in the log could not be cut off yet: {error}"
            );
            tracing::warn!(error = %message, "the embedded log refuses a group until it can cut its tail back");
            self.next = before;
            self.refuse(requests, || LogError::Unavailable(message.clone()));
            return;
        }
        let sequence = self.next_sequence;
        self.frame.start(sequence);
        for (&(topic, partition), records) in &placements {
            let topic = format::topic_of_code(topic).unwrap_or(Topic::Interactions);
            let first_offset = before[topic_code(topic) as usize][partition as usize];
            self.frame.batch(
                topic,
                partition,
                first_offset,
                records
                    .iter()
                    .map(|&(request, index)| &requests[request].batch[index]),
            );
        }
        let (bytes, batches) = self.frame.finish();
        let frame_len = bytes.len() as u64;
        let position = self.active_len;
        let written = write_frame(&self.active, &self.shared.faults, bytes, position);
        self.shared.flushes.fetch_add(1, Ordering::Relaxed);
        if let Err((what, error)) = written {
            let message = format!("{what} the log: {error}");
            tracing::error!(error = %message, "the embedded log could not write a group");
            // Nothing of the frame counts, whatever part of it reached the file (or the disk:
            // after a failed sync, which pages did is unknown). Cut it off now; if that fails
            // too, before the next frame. The next frame goes where this one should have,
            // once the disk has room again.
            self.unsettled = Some(position);
            if let Err(cut) = self.settle() {
                tracing::warn!(error = %cut, "could not cut the failed write off yet; tried again before the next write");
            }
            self.next = before;
            self.refuse(requests, || LogError::Unavailable(message.clone()));
            return;
        }
        // Durable: index the batches, publish the ends, answer.
        for placement in batches {
            let entry = BatchEntry {
                first_offset: placement.first_offset,
                segment: self.active_segment,
                position: position + u64::from(placement.at),
                len: placement.len,
                count: placement.count,
            };
            self.active_batches
                .push((placement.topic, placement.partition, entry));
            self.shared.index[topic_code(placement.topic) as usize][placement.partition as usize]
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(entry);
        }
        for (key, offset) in pending {
            self.dedup.insert(key, offset);
        }
        self.active_len = position + frame_len;
        self.next_sequence = sequence + 1;
        self.durable.publish(DurableEnd {
            segment: self.active_segment,
            position: self.active_len,
            sequence,
        });
        for (topic, partitions) in self.next.iter().enumerate() {
            for (partition, &end) in partitions.iter().enumerate() {
                if end != before[topic][partition] {
                    self.shared.ends[topic][partition].send_replace(end);
                }
            }
        }
        self.shared.appended.send_modify(|groups| *groups += 1);
        for taken in requests {
            let _ = taken.reply.send(Ok(taken.outcomes));
        }
    }

    /// Refuses every request of a group that could not be written, and the chains they
    /// belong to.
    fn refuse(&mut self, requests: Vec<Taken>, error: impl Fn() -> LogError) {
        for taken in requests {
            self.break_chain(taken.chain);
            let _ = taken.reply.send(Err(error()));
        }
    }

    /// Refuses every later append of `chain`: one of its appends was refused.
    fn break_chain(&mut self, chain: Option<Chain>) {
        if let Some(chain) = chain {
            self.broken_chains.insert(chain);
        }
    }

    /// Cuts the active segment back to the end of its last durable frame, if a failed write
    /// left bytes past it, and syncs the cut. Afterwards the file holds exactly the frames
    /// acknowledged, as on disk: every one of them was synced before it was acknowledged, and
    /// whatever the failed sync did or did not write lies past the cut.
    fn settle(&mut self) -> std::io::Result<()> {
        let Some(position) = self.unsettled else {
            return Ok(());
        };
        self.active.set_len(position)?;
        if self.shared.faults.strikes(DiskFault::Sync) {
            return Err(faults::no_space());
        }
        self.active.sync_all()?;
        self.unsettled = None;
        tracing::info!(
            segment = self.active_segment,
            position,
            "the failed write is cut off the log; it takes writes again"
        );
        Ok(())
    }

    /// Checks a request on its own, so a bad one fails alone.
    fn validate(&self, batch: &[AppendRecord]) -> Result<(), LogError> {
        let mut bytes = 0usize;
        for record in batch {
            format::check_record(record)?;
            self.shared.end_sender(record.topic, 0)?;
            bytes = bytes.saturating_add(format::encoded_len(record));
        }
        // A request is written in one frame (with the requests grouped after it, up to
        // `MAX_GROUP_BYTES` more), which readers refuse past `MAX_FRAME_BYTES`: a frame
        // beyond it was written, synced and acknowledged, then cut as a torn tail or left
        // unreadable at the next open (found by review). Each record alone was checked;
        // together they are checked here.
        if bytes > format::MAX_FRAME_BYTES as usize / 2 {
            return Err(LogError::InvalidRecord(format!(
                "{} records of {bytes} bytes in one append are more than the log writes at once ({} bytes)",
                batch.len(),
                format::MAX_FRAME_BYTES / 2
            )));
        }
        Ok(())
    }
}

/// The memory available for new use, in bytes, from the text of `/proc/meminfo`.
fn available_memory(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line
        .trim_start_matches("MemAvailable:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Writes a frame at `position` of the active segment and syncs it; on failure, which of
/// the two failed.
fn write_frame(
    file: &File,
    faults: &Faults,
    bytes: &[u8],
    position: u64,
) -> Result<(), (&'static str, std::io::Error)> {
    use std::os::unix::fs::FileExt;
    if faults.strikes(DiskFault::Write) {
        // What a disk that fills up in the middle of a frame leaves: part of it in the file.
        let _ = file.write_all_at(&bytes[..bytes.len() / 2], position);
        return Err(("writing", faults::no_space()));
    }
    file.write_all_at(bytes, position)
        .map_err(|error| ("writing", error))?;
    if faults.strikes(DiskFault::Sync) {
        return Err(("syncing", faults::no_space()));
    }
    file.sync_data().map_err(|error| ("syncing", error))
}

#[async_trait::async_trait]
impl EventLog for EmbeddedLog {
    fn partitions(&self, topic: Topic) -> u32 {
        self.shared.counts.get(topic)
    }

    async fn append(&self, batch: Vec<AppendRecord>) -> Result<Vec<AppendOutcome>, LogError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let Some(requests) = self.requests.as_ref() else {
            return Err(LogError::ReadOnly);
        };
        let (reply, answer) = oneshot::channel();
        requests
            .send(WriteRequest {
                batch,
                reply,
                chain: None,
            })
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    fn append_in_chain(
        &self,
        batch: Vec<AppendRecord>,
        chain: Chain,
    ) -> Result<PendingAppend, Vec<AppendRecord>> {
        let Some(requests) = self.requests.as_ref() else {
            return Ok(Box::pin(async { Err(LogError::ReadOnly) }));
        };
        let (reply, answer) = oneshot::channel();
        let sent = requests.send(WriteRequest {
            batch,
            reply,
            chain: Some(chain),
        });
        Ok(Box::pin(async move {
            sent.map_err(|_| LogError::Closed)?;
            answer.await.map_err(|_| LogError::Closed)?
        }))
    }

    fn new_chain(&self) -> Chain {
        Chain(self.chains.fetch_add(1, Ordering::Relaxed))
    }

    /// Asks the kernel to read every segment into the page cache (`posix_fadvise`
    /// `WILLNEED`), from a thread of its own, when the segments take at most half the
    /// memory available: the disk reads them in order, at its sequential rate, while a
    /// replay's first pass starts. A log larger than that is left alone, since reading it
    /// all in would only push out what the replay needs next. At 10M events (901 MB of
    /// segments, which `cat` reads cold in 1.2 s), replays with the page cache dropped
    /// first took 31.2 and 32.0 s with it, 32.4 and 33.4 s without (docs/benchmarks-journal.md).
    fn prefetch(&self) {
        let files: Vec<Arc<File>> = self
            .shared
            .files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let bytes: u64 = files
            .iter()
            .filter_map(|file| file.metadata().ok())
            .map(|metadata| metadata.len())
            .sum();
        let available = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| available_memory(&text));
        if available.is_none_or(|available| bytes > available / 2) {
            tracing::debug!(
                bytes,
                ?available,
                "the log is not prefetched: it may not fit in memory"
            );
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("omnilog-log-prefetch".to_owned())
            .spawn(move || {
                for file in files {
                    if let Err(error) =
                        rustix::fs::fadvise(&*file, 0, None, rustix::fs::Advice::WillNeed)
                    {
                        tracing::debug!(%error, "could not ask for a segment to be read ahead");
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::debug!(%error, "could not start the log's prefetch");
        }
    }

    async fn read(
        &self,
        topic: Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let wanted = self.shared.wanted(topic, partition, from, max)?;
        let bytes: u64 = wanted.iter().map(|w| u64::from(w.batch.len)).sum();
        if bytes <= INLINE_READ_BYTES {
            return self.shared.read_batches(&wanted, None);
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.read_batches(&wanted, None))
            .await
            .map_err(|e| LogError::Storage(format!("a read task failed: {e}")))?
    }

    async fn scan_next(&self, scan: &mut Scan, max: usize) -> Result<Vec<LogRecord>, LogError> {
        // The step reads from disk: off the async threads, the scan moved in and back.
        let shared = self.shared.clone();
        let mut moved = std::mem::replace(scan, Scan::new(Vec::new()));
        let (moved, records) = tokio::task::spawn_blocking(move || {
            let records = shared.scan_step(&mut moved, max.max(1));
            (moved, records)
        })
        .await
        .map_err(|e| LogError::Storage(format!("a read task failed: {e}")))?;
        *scan = moved;
        records
    }

    fn appended(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.appended.subscribe())
    }

    async fn end_offsets(&self, topic: Topic) -> Result<Vec<u64>, LogError> {
        Ok(self.shared.ends[topic_code(topic) as usize]
            .iter()
            .map(|end| *end.borrow())
            .collect())
    }

    async fn wait_beyond(
        &self,
        topic: Topic,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        let mut end = self.shared.end_sender(topic, partition)?.subscribe();
        let reached = tokio::time::timeout(timeout, end.wait_for(|&e| e > offset))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|value| *value);
        // Timed out, or the log closed: answer with what is there.
        Ok(reached.unwrap_or_else(|| *end.borrow()))
    }
}

impl EmbeddedLog {
    /// [`EventLog::scan_next`] without an async runtime.
    pub fn scan_next_blocking(
        &self,
        scan: &mut Scan,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.scan_blocking(scan, max.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::available_memory;

    #[test]
    fn available_memory_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24579036 kB\nMemFree:         1180412 kB\nMemAvailable:   20961672 kB\nBuffers:          263416 kB\n";
        assert_eq!(available_memory(meminfo), Some(20_961_672 * 1024));
        assert_eq!(available_memory("MemTotal: 1 kB\n"), None);
        assert_eq!(available_memory("MemAvailable: many kB\n"), None);
    }
}
