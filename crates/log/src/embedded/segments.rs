//! Segment files: creating them, scanning them back on open (checking every frame and
//! cutting a torn tail), and the batch index kept beside a sealed segment (`NNNN.idx`), so
//! a restart does not read the whole log again, and beside a closed log's last segment, so
//! a reader does not read its frames' headers.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;

use super::dedup::{DedupKey, IdMap};
use super::format::{
    self, BATCH_HEADER_BYTES, BatchHeader, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
    parse_frame_header, parse_segment_header, topic_code, topic_of_code,
};
use super::meta::{DurableEnd, io_error, sync_dir};
use crate::{LogError, Topic};

/// Where one batch of one partition is: what the read index holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchEntry {
    pub(crate) first_offset: u64,
    pub(crate) segment: u64,
    /// From the start of the segment to the batch header.
    pub(crate) position: u64,
    /// Header and records.
    pub(crate) len: u32,
    pub(crate) count: u32,
}

impl BatchEntry {
    pub(crate) fn end_offset(&self) -> u64 {
        self.first_offset + u64::from(self.count)
    }
}

pub(crate) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:010}.seg"))
}

fn index_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:010}.idx"))
}

/// The segment numbers in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|error| io_error(format!("listing {}", dir.display()), error))?;
    for entry in entries {
        let entry = entry.map_err(|error| io_error(format!("listing {}", dir.display()), error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = name.strip_suffix(".seg")
            && let Ok(number) = number.parse::<u64>()
        {
            segments.push(number);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Creates a segment with its header, durably (the file, then its directory entry).
pub(crate) fn create_segment(
    dir: &Path,
    segment: u64,
    first_sequence: u64,
    faults: &super::faults::Faults,
) -> Result<File, LogError> {
    let path = segment_path(dir, segment);
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| io_error(format!("creating {}", path.display()), error))?;
    let written = file
        .write_all_at(&format::segment_header(segment, first_sequence), 0)
        .and_then(|()| {
            if faults.strikes(super::faults::DiskFault::SyncNewSegment) {
                Err(super::faults::no_space())
            } else {
                file.sync_all()
            }
        })
        .map_err(|error| io_error(format!("writing {}", path.display()), error))
        .and_then(|()| sync_dir(dir));
    if let Err(error) = written {
        // Not started: the frames go on into the active segment, past the first sequence
        // this header names. Left behind with its header whole (its sync failed), it made
        // the next open find a segment missing between the two (found by review).
        if std::fs::remove_file(&path).is_ok() {
            let _ = sync_dir(dir);
        }
        return Err(error);
    }
    Ok(file)
}

/// Whether the segment file at `path` starts with a whole header naming it `segment`.
pub(crate) fn header_names(path: &Path, segment: u64) -> std::io::Result<bool> {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    File::open(path)?.read_exact_at(&mut header, 0)?;
    Ok(parse_segment_header(&header).is_some_and(|(number, _)| number == segment))
}

/// What scanning a segment found.
#[derive(Debug, Default)]
pub(crate) struct ScannedSegment {
    pub(crate) batches: Vec<(Topic, u32, BatchEntry)>,
    /// Event ids with their offsets (only when asked for).
    pub(crate) ids: IdMap,
    /// Bytes of the segment that hold whole, checked frames.
    pub(crate) valid_len: u64,
    /// The file's length, which is more than `valid_len` when the tail is torn.
    pub(crate) file_len: u64,
    /// The sequence of the last whole frame, if any.
    pub(crate) last_sequence: Option<u64>,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) stopped: Option<String>,
}

/// The next offset of every partition, by topic code.
pub(crate) type NextOffsets = [Vec<u64>; 3];

/// Reads a segment from its start to `limit` (or its end), checking every frame: its
/// checksum, that its sequence follows the last one, and that each batch starts at its
/// partition's next offset (`next`, advanced as batches are found). Stops at the first frame
/// that fails, which is where a crash cut the log.
///
/// The frames that end within `trusted` (a writer's published durable end, its position
/// and the sequence of the frame that ends there: synced before it was published) are read
/// by their headers alone, unless `with_ids` asks for their records: a crash cannot have
/// torn them, and each batch's own checksum is checked when a reader reads it, as a sealed
/// segment's are (its index is trusted). Read whole, a replay's active segment of 94 MB (1M
/// events) was read and checked in about 30 ms before anything else could start, and a
/// full one (256 MiB) in about 0.1 s; by its headers, in a few thousand reads of 20 and 28
/// bytes. A published end where no frame of that sequence ends (a file copied from a live
/// log, say) is not trusted: the segment is read again, every frame checked.
pub(crate) fn scan_segment(
    dir: &Path,
    segment: u64,
    expected_sequence: Option<u64>,
    next: &mut NextOffsets,
    with_ids: bool,
    limit: Option<u64>,
    trusted: Option<DurableEnd>,
) -> Result<ScannedSegment, LogError> {
    const CHUNK: u64 = 8 << 20;
    let path = segment_path(dir, segment);
    let file = File::open(&path)
        .map_err(|error| io_error(format!("opening {}", path.display()), error))?;
    let file_len = file
        .metadata()
        .map_err(|error| io_error(format!("reading {}", path.display()), error))?
        .len();
    let end = limit.map_or(file_len, |limit| limit.min(file_len));
    let mut scanned = ScannedSegment {
        file_len,
        valid_len: SEGMENT_HEADER_BYTES,
        ..ScannedSegment::default()
    };
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    let read_header = file.read_exact_at(&mut header, 0);
    let first_sequence = match read_header
        .ok()
        .and_then(|()| parse_segment_header(&header))
    {
        Some((number, first_sequence)) if number == segment => first_sequence,
        _ => {
            return Err(LogError::Storage(format!(
                "{} is not a segment of this log (its header is damaged)",
                path.display()
            )));
        }
    };
    let mut expected = expected_sequence.unwrap_or(first_sequence);
    if expected != first_sequence {
        return Err(LogError::Storage(format!(
            "{} starts at frame {first_sequence}, but the segment before it ends before frame {expected}: a segment is missing",
            path.display()
        )));
    }
    let mut buffer: Vec<u8> = Vec::new();
    let mut buffer_at = SEGMENT_HEADER_BYTES;
    let mut at = SEGMENT_HEADER_BYTES;
    let trusted = trusted.filter(|end| !with_ids && end.segment == segment);
    let next_at_start = trusted.map(|_| next.clone());
    let (trusted_sequence, trusted) = trusted.map_or((0, 0), |end| (end.sequence, end.position));
    let read_error = |error| io_error(format!("reading {}", path.display()), error);
    loop {
        if at + FRAME_HEADER_BYTES as u64 > end {
            if at < end {
                scanned.stopped = Some(format!("{} bytes too few for a frame header", end - at));
            }
            break;
        }
        let in_trusted = at < trusted;
        let frame = if in_trusted {
            let mut header = [0u8; FRAME_HEADER_BYTES];
            file.read_exact_at(&mut header, at).map_err(read_error)?;
            parse_frame_header(&header)
        } else {
            // Make sure the frame header is in the buffer.
            let wanted_header = at + FRAME_HEADER_BYTES as u64;
            if at < buffer_at || wanted_header > buffer_at + buffer.len() as u64 {
                let len = CHUNK.min(end - at) as usize;
                buffer.resize(len, 0);
                file.read_exact_at(&mut buffer, at).map_err(read_error)?;
                buffer_at = at;
            }
            parse_frame_header(&buffer[(at - buffer_at) as usize..])
        };
        let Some(frame) = frame else {
            scanned.stopped = Some(format!("no frame at byte {at}"));
            break;
        };
        if frame.sequence != expected {
            scanned.stopped = Some(format!(
                "the frame at byte {at} has sequence {}, not {expected}",
                frame.sequence
            ));
            break;
        }
        let frame_end = at + frame.total_len();
        if frame_end > end {
            scanned.stopped = Some(format!(
                "the frame at byte {at} (sequence {}) is cut: {} of its {} bytes are there",
                frame.sequence,
                end - at,
                frame.total_len()
            ));
            break;
        }
        if in_trusted
            && (frame_end > trusted || frame_end == trusted && frame.sequence != trusted_sequence)
            && let Some(next_at_start) = next_at_start
        {
            tracing::warn!(
                segment,
                dir = %dir.display(),
                "the log's published durable end is not where a frame ends; reading the segment whole"
            );
            *next = next_at_start;
            return scan_segment(dir, segment, expected_sequence, next, with_ids, limit, None);
        }
        let body_at = at + FRAME_HEADER_BYTES as u64;
        let batches = if in_trusted {
            batch_headers(&file, body_at, frame.body_len).map_err(read_error)?
        } else {
            if at < buffer_at || frame_end > buffer_at + buffer.len() as u64 {
                let len = CHUNK.max(frame.total_len()).min(end - at) as usize;
                buffer.resize(len, 0);
                file.read_exact_at(&mut buffer, at).map_err(read_error)?;
                buffer_at = at;
            }
            let local = (at - buffer_at) as usize;
            let bytes = &buffer[local..local + frame.total_len() as usize];
            if !format::frame_is_intact(&frame, bytes) {
                scanned.stopped = Some(format!(
                    "the frame at byte {at} (sequence {}) fails its checksum",
                    frame.sequence
                ));
                break;
            }
            format::batches_of(&bytes[FRAME_HEADER_BYTES..])
        };
        let Some(batches) = batches else {
            scanned.stopped = Some(format!("the frame at byte {at} does not parse"));
            break;
        };
        // Check every batch against the offsets before taking any of them.
        let mut trial: Vec<(Topic, u32, u64)> = Vec::with_capacity(batches.len());
        let mut broken = None;
        for (_, batch) in &batches {
            let slot = next[topic_code(batch.topic) as usize].get(batch.partition as usize);
            let expected_offset = trial
                .iter()
                .rev()
                .find(|(t, p, _)| *t == batch.topic && *p == batch.partition)
                .map(|(_, _, end)| *end)
                .or(slot.copied());
            match expected_offset {
                Some(offset) if offset == batch.first_offset => {
                    trial.push((batch.topic, batch.partition, batch.end_offset()));
                }
                Some(offset) => {
                    broken = Some(format!(
                        "the frame at byte {at} has a batch of {}/{} at offset {}, not {offset}",
                        batch.topic.name(),
                        batch.partition,
                        batch.first_offset
                    ));
                    break;
                }
                None => {
                    broken = Some(format!(
                        "the frame at byte {at} has a batch of {}/{}, a partition this log does not have",
                        batch.topic.name(),
                        batch.partition
                    ));
                    break;
                }
            }
        }
        if let Some(broken) = broken {
            scanned.stopped = Some(broken);
            break;
        }
        for (inside, batch) in batches {
            let position = body_at + u64::from(inside);
            next[topic_code(batch.topic) as usize][batch.partition as usize] = batch.end_offset();
            scanned.batches.push((
                batch.topic,
                batch.partition,
                BatchEntry {
                    first_offset: batch.first_offset,
                    segment,
                    position,
                    len: batch.len(),
                    count: batch.count,
                },
            ));
            if with_ids {
                // Never a trusted frame's (see above): its body is in the buffer.
                let start = (body_at - buffer_at) as usize + inside as usize;
                let ids = format::event_ids_of_batch(&buffer[start..start + batch.len() as usize])
                    .ok_or_else(|| {
                        LogError::Storage(format!(
                            "a batch at byte {position} of {} does not parse",
                            path.display()
                        ))
                    })?;
                for (id, offset) in ids {
                    scanned
                        .ids
                        .insert(DedupKey::new(batch.topic, batch.partition, &id), offset);
                }
            }
        }
        scanned.last_sequence = Some(frame.sequence);
        expected = frame.sequence + 1;
        at = frame_end;
        scanned.valid_len = at;
    }
    Ok(scanned)
}

/// The batches of the frame body of `body_len` bytes at `body_at`, found by their headers
/// (each one's length leads to the next), as [`format::batches_of`] finds them in the whole
/// body; `Ok(None)` if they do not tile the body.
fn batch_headers(
    file: &File,
    body_at: u64,
    body_len: u32,
) -> std::io::Result<Option<Vec<(u32, BatchHeader)>>> {
    let mut batches = Vec::new();
    let mut inside: u32 = 0;
    while inside < body_len {
        if body_len - inside < BATCH_HEADER_BYTES as u32 {
            return Ok(None);
        }
        let mut header = [0u8; BATCH_HEADER_BYTES];
        file.read_exact_at(&mut header, body_at + u64::from(inside))?;
        let Some(batch) = format::parse_batch_header(&header) else {
            return Ok(None);
        };
        let Some(after) = inside
            .checked_add(batch.len())
            .filter(|&after| after <= body_len)
        else {
            return Ok(None);
        };
        batches.push((inside, batch));
        inside = after;
    }
    Ok(Some(batches))
}

const INDEX_MAGIC: &[u8; 8] = b"OMNIIDX1";
const INDEX_ENTRY_BYTES: usize = 32;

/// The batch index of a segment, as kept beside it (a sealed segment's, or a closed log's
/// last segment's).
#[derive(Debug)]
pub(crate) struct SegmentIndex {
    pub(crate) batches: Vec<(Topic, u32, BatchEntry)>,
    pub(crate) last_sequence: Option<u64>,
    pub(crate) len: u64,
}

/// Writes a segment's batch index beside it (a sealed segment's, or the last one's when its
/// writer closes; derived data: not synced, written aside and renamed so it is whole or
/// absent).
pub(crate) fn write_index(dir: &Path, segment: u64, index: &SegmentIndex) -> Result<(), LogError> {
    let path = index_path(dir, segment);
    let aside = path.with_extension("idx-tmp");
    let written = (|| -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&aside)?);
        let mut header = Vec::with_capacity(40);
        header.extend_from_slice(INDEX_MAGIC);
        header.extend_from_slice(&segment.to_le_bytes());
        header.extend_from_slice(&(index.batches.len() as u64).to_le_bytes());
        header.extend_from_slice(&index.last_sequence.map_or(u64::MAX, |s| s).to_le_bytes());
        header.extend_from_slice(&index.len.to_le_bytes());
        let mut crc = crc32c::crc32c(&header);
        out.write_all(&header)?;
        for (topic, partition, batch) in &index.batches {
            let mut entry = [0u8; INDEX_ENTRY_BYTES];
            entry[0] = topic_code(*topic);
            entry[4..8].copy_from_slice(&partition.to_le_bytes());
            entry[8..16].copy_from_slice(&batch.first_offset.to_le_bytes());
            entry[16..24].copy_from_slice(&batch.position.to_le_bytes());
            entry[24..28].copy_from_slice(&batch.len.to_le_bytes());
            entry[28..32].copy_from_slice(&batch.count.to_le_bytes());
            crc = crc32c::crc32c_append(crc, &entry);
            out.write_all(&entry)?;
        }
        out.write_all(&crc.to_le_bytes())?;
        out.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&aside, &path)
    })();
    written.map_err(|error| io_error(format!("writing {}", path.display()), error))
}

/// Removes a segment's batch index, if it has one, and syncs the directory when it did: the
/// last segment's, which a writer left when it closed and which stops describing the
/// segment at the next writer's first change.
pub(crate) fn remove_index(dir: &Path, segment: u64) -> Result<(), LogError> {
    let path = index_path(dir, segment);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(format!("removing {}", path.display()), error)),
    }
}

/// Reads a segment's batch index (a sealed segment's, or the last one's as its writer left
/// it at closing); `None` if it is missing, damaged, or does not describe the segment as it
/// is (the caller scans the segment instead).
pub(crate) fn load_index(dir: &Path, segment: u64) -> Option<SegmentIndex> {
    let bytes = std::fs::read(index_path(dir, segment)).ok()?;
    if bytes.len() < 44 || &bytes[0..8] != INDEX_MAGIC {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let count = usize::try_from(word(16)).ok()?;
    // Checked: a damaged count must not overflow (a panic in a debug build).
    let expected = count
        .checked_mul(INDEX_ENTRY_BYTES)
        .and_then(|entries| entries.checked_add(44))?;
    if bytes.len() != expected || word(8) != segment {
        return None;
    }
    let body = &bytes[..bytes.len() - 4];
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().ok()?);
    if crc32c::crc32c(body) != stored {
        return None;
    }
    let last_sequence = match word(24) {
        u64::MAX => None,
        sequence => Some(sequence),
    };
    let len = word(32);
    let segment_len = std::fs::metadata(segment_path(dir, segment)).ok()?.len();
    if segment_len != len {
        return None;
    }
    let mut batches = Vec::with_capacity(count);
    for entry in body[40..].chunks_exact(INDEX_ENTRY_BYTES) {
        let u32_at =
            |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().unwrap_or_default());
        let u64_at =
            |at: usize| u64::from_le_bytes(entry[at..at + 8].try_into().unwrap_or_default());
        batches.push((
            topic_of_code(entry[0])?,
            u32_at(4),
            BatchEntry {
                first_offset: u64_at(8),
                segment,
                position: u64_at(16),
                len: u32_at(24),
                count: u32_at(28),
            },
        ));
    }
    Some(SegmentIndex {
        batches,
        last_sequence,
        len,
    })
}

/// The buffers of positioned reads and of decompressed batches, each taken again once no
/// record read from it is held any more. A replay reads a few megabytes a batch; a new
/// buffer each time was zeroed twice (by `vec![0; len]`, and by the kernel faulting its
/// pages in: `memset` was 1.3 % of the instructions of `valgrind --tool=callgrind omnilog
/// replay` of the 200k history, and the page faults a few per cent of its samples in `perf
/// record`), and freed on whichever thread let the last record go.
///
/// A buffer handed out owns its allocation through [`Bytes::from_owner`]: when the last
/// record (or slice) of it is let go, it comes back to the free list by itself. Until
/// 2026-12-05 the last 128 buffers handed out were kept in a list, held or not, and the
/// oldest left it when a new one came: a replay holds more than that at once (each view's
/// channel four batches of 8,192 records, a batch about twenty reads and decompressions),
/// so the buffers that left were the ones already free, and the reads that followed got
/// new memory: decompression into pages faulted in for the first time was 46 % of a 1M
/// replay's page faults (`perf record -e page-faults --call-graph dwarf omnilog replay`).
#[derive(Debug, Default)]
pub(crate) struct SpanBuffers {
    free: Arc<Mutex<FreeBuffers>>,
}

/// The buffers nothing reads from, and their capacities' sum.
#[derive(Debug, Default)]
struct FreeBuffers {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

/// Free buffers kept for the next reads, at most: more than a replay lets go of between
/// two of its reads.
const FREE_BUFFERS: usize = 256;
/// What the free buffers may weigh together: a server that served one large read (an
/// export) keeps no more than this of it.
const FREE_BUFFER_BYTES: usize = 32 << 20;

/// A filled buffer, shared as [`Bytes`]; back to its free list once nothing holds it.
struct PooledBuffer {
    buffer: Vec<u8>,
    free: Weak<Mutex<FreeBuffers>>,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let Some(free) = self.free.upgrade() else {
            return;
        };
        let buffer = std::mem::take(&mut self.buffer);
        let capacity = buffer.capacity();
        let mut free = free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.buffers.len() < FREE_BUFFERS && free.bytes + capacity <= FREE_BUFFER_BYTES {
            free.bytes += capacity;
            free.buffers.push(buffer);
        }
    }
}

impl SpanBuffers {
    /// Reads `len` bytes of a segment at `position` into a shareable buffer.
    pub(crate) fn read(
        &self,
        file: &File,
        segment: u64,
        position: u64,
        len: usize,
    ) -> Result<Bytes, LogError> {
        let mut buffer = self.free_buffer(len);
        file.read_exact_at(&mut buffer, position).map_err(|error| {
            io_error(
                format!("reading segment {segment} at byte {position}"),
                error,
            )
        })?;
        Ok(self.shared(buffer))
    }

    /// Shares a filled buffer; it comes back here once nothing reads from it.
    fn shared(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(PooledBuffer {
            buffer,
            free: Arc::downgrade(&self.free),
        })
    }

    /// A buffer of `len` bytes: the smallest free one whose allocation is at most twice
    /// what is read (records keep their read's whole allocation alive), or a new one. Its
    /// bytes are whatever they were (the read overwrites them all).
    fn free_buffer(&self, len: usize) -> Vec<u8> {
        let fits = |capacity: usize| capacity >= len && capacity <= len.saturating_mul(2);
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            let at = free
                .buffers
                .iter()
                .enumerate()
                .filter(|(_, buffer)| fits(buffer.capacity()))
                .min_by_key(|(_, buffer)| buffer.capacity())
                .map(|(at, _)| at);
            at.map(|at| {
                let buffer = free.buffers.swap_remove(at);
                free.bytes -= buffer.capacity();
                buffer
            })
        };
        match reused {
            Some(mut buffer) => {
                // Its last read may have been shorter than this one: only the bytes beyond
                // it are zeroed (no allocation, `fits`).
                buffer.resize(len, 0);
                buffer
            }
            None => vec![0; len],
        }
    }
}

/// A compressed batch's records are decompressed into the same buffers as reads: a new
/// buffer for each was zeroed by the allocator (`memset` from `decompress`: 1.9 % of the
/// instructions of `valgrind --tool=callgrind omnilog replay` of the 200k history).
impl format::PlainBuffers for SpanBuffers {
    fn take(&self, len: usize) -> Vec<u8> {
        self.free_buffer(len)
    }

    fn keep(&self, buffer: Vec<u8>) -> Bytes {
        self.shared(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_buffer_is_taken_again_once_nothing_holds_it_and_never_while_something_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("span");
        let content: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        let spans = SpanBuffers::default();

        let first = spans.read(&file, 1, 0, 1000).unwrap();
        assert_eq!(&first[..], &content[..1000]);
        let first_at = first.as_ptr();
        // Held: the next read gets a buffer of its own.
        let second = spans.read(&file, 1, 100, 800).unwrap();
        assert_eq!(&second[..], &content[100..900]);
        assert_ne!(second.as_ptr(), first_at);
        assert_eq!(
            &first[..],
            &content[..1000],
            "a held span is never overwritten"
        );

        // Let go (a slice of it too): the next read that fits takes it again.
        let slice = first.slice(10..20);
        drop(first);
        drop(slice);
        let third = spans.read(&file, 1, 2000, 900).unwrap();
        assert_eq!(third.as_ptr(), first_at);
        assert_eq!(&third[..], &content[2000..2900]);
        assert_eq!(&second[..], &content[100..900]);

        // A read longer than a free buffer's last read, within its allocation, takes it
        // and reads every byte it asked for.
        let third_at = third.as_ptr();
        drop(third);
        let longer = spans.read(&file, 1, 3000, 1000).unwrap();
        assert_eq!(longer.as_ptr(), third_at);
        assert_eq!(&longer[..], &content[3000..4000]);
        drop(longer);
        let third = spans.read(&file, 1, 2000, 900).unwrap();
        assert_eq!(third.as_ptr(), third_at);

        // A read of less than half a free buffer's allocation gets a buffer of its size,
        // even when the buffer's last read was shorter than its allocation (the 900 bytes
        // just read into the 1,000 of the first).
        let third_at = third.as_ptr();
        drop(third);
        let small = spans.read(&file, 1, 3000, 460).unwrap();
        assert_ne!(small.as_ptr(), third_at);
        assert_eq!(&small[..], &content[3000..3460]);
    }
}
