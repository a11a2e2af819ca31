//! The bytes of the embedded log: segment headers, group frames, partition batches and
//! records. Nothing here does IO; [`super::segments`] reads and writes these bytes.
//!
//! A segment file is a header followed by group frames. One frame is one group commit:
//! every record the writer made durable with one `fdatasync`, as one batch per partition
//! it touched. All numbers are little-endian.
//!
//! ```text
//! segment header (32 bytes): "OMNILOG\x02" | segment number u64 | first frame's sequence u64 | 0 u64
//! frame header (20 bytes):   magic u32 | body length u32 | sequence u64 | crc32c u32
//! frame body:                batch*
//! batch header (28 bytes):   topic u8 | codec u8 | 0 u16 | partition u32 | first offset u64
//!                            | record count u32 | records length u32 | crc32c u32
//! batch records, codec 0:    record*
//! batch records, codec 1:    length of the records u32 | LZ4 block of record*
//! record:                    length u32 | key length u16 | key | event id [16]
//!                            | header count u16 | (name length u16 | name | value length u32 | value)*
//!                            | payload
//! ```
//!
//! A batch's records are stored compressed (codec 1, an LZ4 block, as Kafka's and Redpanda's
//! batches can be) when that saves at least an eighth of their bytes; otherwise (a batch of
//! one small event, say) as they are (codec 0, the only codec of format 2). The records
//! length and the checksum are those of the stored bytes, so a damaged batch is caught before
//! it is decompressed. Why: this machine's disk reads 65 MB/s cold (`cat` of a 10M-event
//! history's log directory after `echo 3 > /proc/sys/vm/drop_caches`: 2.8 GB in 42.8 s), so a
//! replay that does not find the log in the page cache waits on the disk for most of its
//! time; LZ4 takes that history to about a third (`docs/log.md`) and decompresses at
//! gigabytes a second. LZ4 rather than zstd, whose smaller files cost more CPU on every read
//! and append of a two-core machine.
//!
//! The frame's checksum covers its length, its sequence and its whole body, so a frame is
//! kept or dropped whole: a group commit (and so every append request in it, whichever
//! partitions it spans) is all or nothing across a crash. Each batch has a checksum of its
//! own so a reader of one partition can check what it reads without reading the frame.
//! Sequences increase by one from frame to frame, across segments: a stale frame left
//! behind a cut tail can never be taken for a new one.

use bytes::Bytes;
use uuid::Uuid;

use crate::{AppendRecord, KeyShare, LogError, LogRecord, Topic};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"OMNILOG\x02";
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 32;
pub(crate) const FRAME_MAGIC: u32 = 0x314c_474f; // "OGL1" little-endian
pub(crate) const FRAME_HEADER_BYTES: usize = 20;
pub(crate) const BATCH_HEADER_BYTES: usize = 28;
/// The largest frame a reader accepts: anything longer is a damaged length field.
pub(crate) const MAX_FRAME_BYTES: u32 = 1 << 30;
pub(crate) const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// A batch's records stored as they are.
pub(crate) const CODEC_NONE: u8 = 0;
/// A batch's records stored as their length and an LZ4 block.
pub(crate) const CODEC_LZ4: u8 = 1;
/// Records that take fewer bytes are not worth compressing: LZ4 finds little to share in
/// one small event, and the attempt costs every single-event append.
const COMPRESS_MIN_BYTES: usize = 512;

pub(crate) fn topic_code(topic: Topic) -> u8 {
    match topic {
        Topic::Interactions => 0,
        Topic::Agents => 1,
        Topic::DeadLetter => 2,
    }
}

pub(crate) fn topic_of_code(code: u8) -> Option<Topic> {
    match code {
        0 => Some(Topic::Interactions),
        1 => Some(Topic::Agents),
        2 => Some(Topic::DeadLetter),
        _ => None,
    }
}

/// The header of a segment file.
pub(crate) fn segment_header(
    segment: u64,
    first_sequence: u64,
) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    header[0..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..16].copy_from_slice(&segment.to_le_bytes());
    header[16..24].copy_from_slice(&first_sequence.to_le_bytes());
    header
}

/// Reads a segment header: (segment number, first frame's sequence).
pub(crate) fn parse_segment_header(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < SEGMENT_HEADER_BYTES as usize || &bytes[0..8] != SEGMENT_MAGIC {
        return None;
    }
    Some((le_u64(&bytes[8..16]), le_u64(&bytes[16..24])))
}

fn le_u16(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[0], bytes[1]])
}

pub(crate) fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// What a batch stores of a record, whether it is being appended ([`AppendRecord`]) or was
/// read back ([`LogRecord`], which a spill file writes again).
pub(crate) struct RecordFields<'a> {
    key: &'a [u8],
    event_id: &'a Uuid,
    headers: &'a [(String, Vec<u8>)],
    payload: &'a [u8],
}

impl<'a> From<&'a AppendRecord> for RecordFields<'a> {
    fn from(record: &'a AppendRecord) -> Self {
        RecordFields {
            key: record.key.as_bytes(),
            event_id: &record.event_id,
            headers: &record.headers,
            payload: &record.payload,
        }
    }
}

impl<'a> From<&'a LogRecord> for RecordFields<'a> {
    fn from(record: &'a LogRecord) -> Self {
        RecordFields {
            key: &record.key,
            event_id: &record.event_id,
            headers: &record.headers,
            payload: &record.payload,
        }
    }
}

impl RecordFields<'_> {
    /// The bytes the record takes in a batch, its length field included.
    pub(crate) fn encoded_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| 6 + n.len() + v.len())
            .sum();
        4 + 2 + self.key.len() + 16 + 2 + headers + self.payload.len()
    }

    /// Checks the record before it is encoded, so a bad one fails alone: every length fits
    /// its field.
    pub(crate) fn check(&self) -> Result<(), LogError> {
        if self.key.len() > MAX_KEY_BYTES {
            return Err(LogError::InvalidRecord(format!(
                "a key of {} bytes is longer than {MAX_KEY_BYTES}",
                self.key.len()
            )));
        }
        if self.headers.len() > u16::MAX as usize
            || self
                .headers
                .iter()
                .any(|(n, v)| n.len() > u16::MAX as usize || v.len() > u32::MAX as usize)
        {
            return Err(LogError::InvalidRecord("headers too large".to_owned()));
        }
        if self.encoded_len() > MAX_FRAME_BYTES as usize / 2 {
            return Err(LogError::InvalidRecord(format!(
                "a record of {} bytes is larger than the log takes",
                self.encoded_len()
            )));
        }
        Ok(())
    }

    /// Appends the record as a batch holds it, its length first.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let len = self.encoded_len() - 4;
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.event_id.as_bytes());
        out.extend_from_slice(&(self.headers.len() as u16).to_le_bytes());
        for (name, value) in self.headers {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(self.payload);
    }
}

/// Checks a record before it is appended, so a bad one fails its request alone.
pub(crate) fn check_record(record: &AppendRecord) -> Result<(), LogError> {
    RecordFields::from(record).check()
}

/// The bytes a record takes in a batch, its length field included.
pub(crate) fn encoded_len(record: &AppendRecord) -> usize {
    RecordFields::from(record).encoded_len()
}

/// Where one batch landed inside an encoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchPlacement {
    pub(crate) topic: Topic,
    pub(crate) partition: u32,
    pub(crate) first_offset: u64,
    pub(crate) count: u32,
    /// From the start of the frame to the batch header.
    pub(crate) at: u32,
    /// Header and records.
    pub(crate) len: u32,
}

/// Builds one frame in a reusable buffer.
#[derive(Debug, Default)]
pub(crate) struct FrameBuilder {
    bytes: Vec<u8>,
    placements: Vec<BatchPlacement>,
    /// Where a batch's records are compressed before they replace the plain ones.
    compressed: Vec<u8>,
}

impl FrameBuilder {
    /// Starts a frame with the given sequence number.
    pub(crate) fn start(&mut self, sequence: u64) {
        self.bytes.clear();
        self.placements.clear();
        self.bytes.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        self.bytes.extend_from_slice(&sequence.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
    }

    /// Adds one partition's batch: `records` get the offsets from `first_offset` on.
    pub(crate) fn batch<'a>(
        &mut self,
        topic: Topic,
        partition: u32,
        first_offset: u64,
        records: impl ExactSizeIterator<Item = &'a AppendRecord>,
    ) {
        let at = self.bytes.len();
        let count = records.len() as u32;
        self.bytes.push(topic_code(topic));
        self.bytes.extend_from_slice(&[0, 0, 0]);
        self.bytes.extend_from_slice(&partition.to_le_bytes());
        self.bytes.extend_from_slice(&first_offset.to_le_bytes());
        self.bytes.extend_from_slice(&count.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        let records_start = self.bytes.len();
        for record in records {
            RecordFields::from(record).encode(&mut self.bytes);
        }
        self.bytes[at + 1] = self.compress_from(records_start);
        let records_len = (self.bytes.len() - records_start) as u32;
        let crc = crc32c::crc32c(&self.bytes[records_start..]);
        self.bytes[at + 20..at + 24].copy_from_slice(&records_len.to_le_bytes());
        self.bytes[at + 24..at + 28].copy_from_slice(&crc.to_le_bytes());
        self.placements.push(BatchPlacement {
            topic,
            partition,
            first_offset,
            count,
            at: at as u32,
            len: (self.bytes.len() - at) as u32,
        });
    }

    /// Replaces the records encoded from `start` on with their compressed form when that
    /// saves at least an eighth of them; returns the codec they are stored with.
    fn compress_from(&mut self, start: usize) -> u8 {
        let plain_len = self.bytes.len() - start;
        if plain_len < COMPRESS_MIN_BYTES {
            return CODEC_NONE;
        }
        let Ok(bound) = lz4::block::compress_bound(plain_len) else {
            return CODEC_NONE;
        };
        if self.compressed.len() < 4 + bound {
            self.compressed.resize(4 + bound, 0);
        }
        let Ok(written) = lz4::block::compress_to_buffer(
            &self.bytes[start..],
            None,
            false,
            &mut self.compressed[4..],
        ) else {
            return CODEC_NONE;
        };
        let stored_len = 4 + written;
        if stored_len > plain_len - plain_len / 8 {
            return CODEC_NONE;
        }
        self.compressed[..4].copy_from_slice(&(plain_len as u32).to_le_bytes());
        self.bytes.truncate(start);
        self.bytes.extend_from_slice(&self.compressed[..stored_len]);
        CODEC_LZ4
    }

    /// Seals the frame (length and checksum) and returns its bytes and batches.
    pub(crate) fn finish(&mut self) -> (&[u8], &[BatchPlacement]) {
        let body_len = (self.bytes.len() - FRAME_HEADER_BYTES) as u32;
        self.bytes[4..8].copy_from_slice(&body_len.to_le_bytes());
        let crc = frame_crc(&self.bytes[4..16], &self.bytes[FRAME_HEADER_BYTES..]);
        self.bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        (&self.bytes, &self.placements)
    }

    /// Bytes held by the buffer (so a huge group's buffer can be let go).
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity() + self.compressed.capacity()
    }

    pub(crate) fn shrink(&mut self) {
        self.bytes = Vec::new();
        self.placements = Vec::new();
        self.compressed = Vec::new();
    }
}

fn frame_crc(length_and_sequence: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(length_and_sequence), body)
}

/// A frame header as read: its body length and sequence, not yet checked against the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) body_len: u32,
    pub(crate) sequence: u64,
    crc: u32,
}

impl FrameHeader {
    pub(crate) fn total_len(&self) -> u64 {
        FRAME_HEADER_BYTES as u64 + u64::from(self.body_len)
    }
}

/// Reads a frame header; `None` when the bytes are not one (zeros past the end of what was
/// written, or garbage).
pub(crate) fn parse_frame_header(bytes: &[u8]) -> Option<FrameHeader> {
    if bytes.len() < FRAME_HEADER_BYTES || le_u32(&bytes[0..4]) != FRAME_MAGIC {
        return None;
    }
    let body_len = le_u32(&bytes[4..8]);
    if body_len > MAX_FRAME_BYTES {
        return None;
    }
    Some(FrameHeader {
        body_len,
        sequence: le_u64(&bytes[8..16]),
        crc: le_u32(&bytes[16..20]),
    })
}

/// Whether a whole frame (header and body) is intact.
pub(crate) fn frame_is_intact(header: &FrameHeader, frame: &[u8]) -> bool {
    frame.len() as u64 == header.total_len()
        && frame_crc(&frame[4..16], &frame[FRAME_HEADER_BYTES..]) == header.crc
}

/// One batch as found in a frame body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) topic: Topic,
    /// How its records are stored: [`CODEC_NONE`] or [`CODEC_LZ4`].
    pub(crate) codec: u8,
    pub(crate) partition: u32,
    pub(crate) first_offset: u64,
    pub(crate) count: u32,
    pub(crate) records_len: u32,
    crc: u32,
}

impl BatchHeader {
    pub(crate) fn len(&self) -> u32 {
        BATCH_HEADER_BYTES as u32 + self.records_len
    }

    pub(crate) fn end_offset(&self) -> u64 {
        self.first_offset + u64::from(self.count)
    }
}

pub(crate) fn parse_batch_header(bytes: &[u8]) -> Option<BatchHeader> {
    if bytes.len() < BATCH_HEADER_BYTES {
        return None;
    }
    if bytes[1] != CODEC_NONE && bytes[1] != CODEC_LZ4 {
        return None;
    }
    Some(BatchHeader {
        topic: topic_of_code(bytes[0])?,
        codec: bytes[1],
        partition: le_u32(&bytes[4..8]),
        first_offset: le_u64(&bytes[8..16]),
        count: le_u32(&bytes[16..20]),
        records_len: le_u32(&bytes[20..24]),
        crc: le_u32(&bytes[24..28]),
    })
}

/// The batches of an intact frame body, in order; `None` if the body does not parse (which
/// a frame whose checksum matched can only do if this build wrote it wrongly).
pub(crate) fn batches_of(body: &[u8]) -> Option<Vec<(u32, BatchHeader)>> {
    let mut batches = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let header = parse_batch_header(&body[at..])?;
        let end = at.checked_add(header.len() as usize)?;
        if end > body.len() {
            return None;
        }
        batches.push((at as u32, header));
        at = end;
    }
    Some(batches)
}

/// Where the records of a compressed batch are decompressed to: buffers that records then
/// share (their payloads are slices of it), taken again once no record holds one.
pub(crate) trait PlainBuffers {
    /// A buffer of `len` bytes, whatever they hold (decompression overwrites them all).
    fn take(&self, len: usize) -> Vec<u8>;
    /// Shares a filled buffer, to be taken again once it is free.
    fn keep(&self, buffer: Vec<u8>) -> Bytes;
}

/// A new buffer each time: for a reader that decompresses little (tests, an id rescan).
#[derive(Debug, Default)]
pub(crate) struct FreshBuffers;

impl PlainBuffers for FreshBuffers {
    fn take(&self, len: usize) -> Vec<u8> {
        vec![0; len]
    }

    fn keep(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from(buffer)
    }
}

/// The stored records of a batch (`batch` = its header and what follows), as long as its
/// header says.
fn stored_records<'a>(batch: &'a [u8], header: &BatchHeader) -> Option<&'a [u8]> {
    batch.get(BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + header.records_len as usize)
}

/// Checks a batch (`bytes` = its header and stored records) against its checksum and
/// returns its header and its stored records (a read without the batch's place: tests).
#[cfg(test)]
fn checked_stored(bytes: &[u8]) -> Result<(BatchHeader, &[u8]), String> {
    let header = parse_batch_header(bytes).ok_or("the batch header is damaged")?;
    let stored = stored_of(bytes, &header)?;
    Ok((header, stored))
}

/// The stored records of a batch whose header is parsed, checked against its checksum.
fn stored_of<'a>(bytes: &'a [u8], header: &BatchHeader) -> Result<&'a [u8], String> {
    let stored =
        stored_records(bytes, header).ok_or("the batch is shorter than its header says")?;
    if crc32c::crc32c(stored) != header.crc {
        return Err(format!(
            "the batch of offsets {}..{} fails its checksum",
            header.first_offset,
            header.end_offset()
        ));
    }
    Ok(stored)
}

/// A checked batch's records as encoded: the stored bytes themselves (a slice of `bytes`),
/// or what they decompress to (in a buffer of `buffers`).
fn plain_records(
    bytes: &Bytes,
    header: &BatchHeader,
    stored: &[u8],
    buffers: &dyn PlainBuffers,
) -> Result<Bytes, String> {
    match header.codec {
        CODEC_LZ4 => decompress_into(stored, buffers).ok_or_else(|| {
            format!(
                "the batch of offsets {}..{} does not decompress",
                header.first_offset,
                header.end_offset()
            )
        }),
        _ => Ok(bytes.slice_ref(stored)),
    }
}

/// The first records of a codec-1 batch: its LZ4 block decompressed only until `wanted`
/// bytes (or all it holds, if fewer), the rest left compressed. A point read (the journey's
/// lines, an interaction's events: a record or a few of a batch of hundreds) stops there
/// instead of decompressing the whole batch, which was a third of a served journey query's
/// CPU (`perf record -a` of `benches/journey_answers.py`, docs/benchmarks-journal.md,
/// "2026-12-07, near midnight"). `None` if the block is malformed.
fn decompress_prefix(stored: &[u8], wanted: usize, buffers: &dyn PlainBuffers) -> Option<Bytes> {
    let plain_len = le_u32(stored.get(..4)?);
    if plain_len > MAX_FRAME_BYTES {
        return None;
    }
    let mut plain = buffers.take(wanted.min(plain_len as usize));
    let written = lz4_prefix::decompress(&stored[4..], &mut plain)?;
    plain.truncate(written);
    Some(buffers.keep(plain))
}

/// `LZ4_decompress_safe_partial` of the reference LZ4, which `lz4-sys` builds (it compiles
/// the whole of `lz4.c` into the binary) but does not declare, and the `lz4` crate does not
/// wrap.
#[allow(unsafe_code)]
mod lz4_prefix {
    use std::os::raw::{c_char, c_int};

    // The declaration `lz4.h` of LZ4 1.10 (which lz4-sys bundles) gives.
    unsafe extern "C" {
        fn LZ4_decompress_safe_partial(
            src: *const c_char,
            dst: *mut c_char,
            src_size: c_int,
            target_output_size: c_int,
            dst_capacity: c_int,
        ) -> c_int;
    }

    /// Decompresses the LZ4 block `block` (all of it, exactly: its stored bytes) into `out`
    /// until `out` is full or the block ends: the number of bytes written, `None` if the
    /// block is malformed.
    pub(super) fn decompress(block: &[u8], out: &mut [u8]) -> Option<usize> {
        let src_size = c_int::try_from(block.len()).ok()?;
        let target = c_int::try_from(out.len()).ok()?;
        // SAFETY: `block` is readable for `src_size` bytes and `out` writable for `target`
        // bytes, which is also the capacity given: the function reads within the source,
        // never writes past `dst_capacity` in any version (and since LZ4 1.8.3 stops exactly
        // at `target_output_size`), and refuses a malformed block with a negative result.
        // `src_size` is the block's exact size, which its documentation requires for a
        // target larger than what the block holds. The binary may link two copies of LZ4
        // under these names (lz4-sys' 1.10, and the 1.9.4 that rdkafka-sys builds into
        // librdkafka); both behave so. What it returns is checked against `out` below.
        let written = unsafe {
            LZ4_decompress_safe_partial(
                block.as_ptr().cast(),
                out.as_mut_ptr().cast(),
                src_size,
                target,
                target,
            )
        };
        usize::try_from(written).ok().filter(|&n| n <= out.len())
    }
}

/// The records a codec-1 batch stores: a length, then an LZ4 block that must decompress to
/// exactly that length (so no byte of the buffer is left as it was).
fn decompress_into(stored: &[u8], buffers: &dyn PlainBuffers) -> Option<Bytes> {
    let plain_len = le_u32(stored.get(..4)?);
    if plain_len > MAX_FRAME_BYTES {
        return None;
    }
    let mut plain = buffers.take(plain_len as usize);
    // At most 1 GiB (checked above): an `i32`, as the reference LZ4 takes lengths.
    let written =
        lz4::block::decompress_to_buffer(&stored[4..], Some(plain_len as i32), &mut plain).ok()?;
    (written == plain.len()).then(|| buffers.keep(plain))
}

/// Checks a batch's header (`bytes` = the batch as read) against where the index placed it:
/// its topic, partition, offsets and length. The batch's checksum covers its records, not
/// its header, and a segment opened from its index is not checked frame by frame again: a
/// flipped bit in a first offset or a count read back the records under other offsets, or
/// fewer of them, and readers moved past records they never returned.
pub(crate) fn check_batch_header(
    header: &BatchHeader,
    topic: Topic,
    partition: u32,
    entry: &super::segments::BatchEntry,
) -> Result<(), String> {
    let stored_len = BATCH_HEADER_BYTES as u64 + u64::from(header.records_len);
    if header.topic != topic
        || header.partition != partition
        || header.first_offset != entry.first_offset
        || header.count != entry.count
        || stored_len != u64::from(entry.len)
    {
        return Err(format!(
            "the batch header says {} partition {} offsets {}..{} in {stored_len} bytes, \
             where the index has {} partition {partition} offsets {}..{} in {} bytes",
            header.topic.name(),
            header.partition,
            header.first_offset,
            header.first_offset.saturating_add(u64::from(header.count)),
            topic.name(),
            entry.first_offset,
            entry.end_offset(),
            entry.len
        ));
    }
    Ok(())
}

/// Decodes the records of one batch (`bytes` = its header and stored records), keeping those
/// at or after `from` and before `until` (and whose keys are of `share`, when given: the
/// others are passed over on their key alone). Payloads share one buffer: `bytes`', or that
/// of the decompressed records (one of `buffers`). Reads go through [`decode_placed_batch`];
/// this is the same without the batch's place, for tests.
#[cfg(test)]
pub(crate) fn decode_batch(
    bytes: &Bytes,
    from: u64,
    until: u64,
    share: Option<KeyShare>,
    out: &mut Vec<LogRecord>,
    buffers: &dyn PlainBuffers,
) -> Result<(), String> {
    let (header, stored) = checked_stored(bytes)?;
    decode_checked(bytes, &header, stored, from, until, share, out, buffers)
}

/// Decodes the records of one batch (`bytes` = its header and stored records) read where the
/// index placed it (`topic`, `partition`, `entry`), keeping those at or after `from` and
/// before `until` (and whose keys are of `share`, when given: the others are passed over on
/// their key alone). The header is parsed once and checked against that place
/// ([`check_batch_header`]), the stored records against their checksum once. Payloads share
/// one buffer: `bytes`', or that of the decompressed records (one of `buffers`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_placed_batch(
    bytes: &Bytes,
    topic: Topic,
    partition: u32,
    entry: &super::segments::BatchEntry,
    from: u64,
    until: u64,
    share: Option<KeyShare>,
    out: &mut Vec<LogRecord>,
    buffers: &dyn PlainBuffers,
) -> Result<(), String> {
    let header = parse_batch_header(bytes).ok_or("the batch header is damaged")?;
    check_batch_header(&header, topic, partition, entry)?;
    let stored = stored_of(bytes, &header)?;
    decode_checked(bytes, &header, stored, from, until, share, out, buffers)
}

/// [`decode_placed_batch`] of a batch checked against its checksum: a point read's first records
/// only ([`decode_first_records`]) when that pays, else every record.
#[allow(clippy::too_many_arguments)]
fn decode_checked(
    bytes: &Bytes,
    header: &BatchHeader,
    stored: &[u8],
    from: u64,
    until: u64,
    share: Option<KeyShare>,
    out: &mut Vec<LogRecord>,
    buffers: &dyn PlainBuffers,
) -> Result<(), String> {
    if share.is_none() && decode_first_records(header, stored, from, until, out, buffers)? {
        return Ok(());
    }
    let records = plain_records(bytes, header, stored, buffers)?;
    match decode_records(&records, header, from, until, share, out)? {
        Walked::Whole => Ok(()),
        Walked::FellShort(offset) => Err(format!("record {offset} runs past its batch")),
    }
}

/// [`decode_placed_batch`] of a range that ends well before its compressed batch does (a point
/// read), the batch already checked against its checksum: decompressed only about as far as
/// the range's records go, estimated from their share of the batch's records with a margin.
/// `Ok(false)` (nothing pushed) when that does not pay or the estimate fell short of a record
/// of the range: the caller decompresses the whole batch, as for any other read.
fn decode_first_records(
    header: &BatchHeader,
    stored: &[u8],
    from: u64,
    until: u64,
    out: &mut Vec<LogRecord>,
    buffers: &dyn PlainBuffers,
) -> Result<bool, String> {
    if header.codec != CODEC_LZ4 || until >= header.end_offset() || header.count == 0 {
        return Ok(false);
    }
    let Some(plain_len) = stored.get(..4).map(|len| le_u32(len) as usize) else {
        return Ok(false);
    };
    // The records up to the range's end, by their share of the batch, and a quarter more
    // and a kilobyte for records longer than the batch's mean.
    let records_wanted = until.saturating_sub(header.first_offset) as usize;
    let by_mean = plain_len / header.count as usize * records_wanted;
    let wanted = by_mean + by_mean / 4 + 1024;
    if wanted >= plain_len / 4 * 3 {
        return Ok(false);
    }
    let Some(records) = decompress_prefix(stored, wanted, buffers) else {
        return Ok(false);
    };
    let before = out.len();
    match decode_records(&records, header, from, until, None, out)? {
        Walked::Whole => Ok(true),
        Walked::FellShort(_) => {
            out.truncate(before);
            Ok(false)
        }
    }
}

/// How far [`decode_records`] went.
enum Walked {
    /// Every record it was asked for.
    Whole,
    /// Not past the record at this offset, which runs past the records given.
    FellShort(u64),
}

/// Decodes the records `from..until` of a batch's encoded records (all of them, or the first
/// part of them a point read decompressed), those whose keys are of `share` when given.
fn decode_records(
    records: &Bytes,
    header: &BatchHeader,
    from: u64,
    until: u64,
    share: Option<KeyShare>,
    out: &mut Vec<LogRecord>,
) -> Result<Walked, String> {
    let mut at = 0;
    let end = records.len();
    for index in 0..u64::from(header.count) {
        let offset = header.first_offset + index;
        if offset >= until {
            break;
        }
        if at + 4 > end {
            return Ok(Walked::FellShort(offset));
        }
        let len = le_u32(&records[at..at + 4]) as usize;
        let start = at + 4;
        let stop = start + len;
        if stop > end {
            return Ok(Walked::FellShort(offset));
        }
        at = stop;
        if offset < from {
            continue;
        }
        if let Some(share) = share
            && let Some(key) = key_of(&records[start..stop])
            && !share.holds(key)
        {
            continue;
        }
        out.push(
            decode_record(records, start, stop, header.topic, header.partition, offset)
                .ok_or_else(|| format!("record {offset} is damaged"))?,
        );
    }
    Ok(Walked::Whole)
}

/// The key of an encoded record (`record` = what follows its length); `None` when it runs
/// past the record (which [`decode_record`] then reports as damaged).
fn key_of(record: &[u8]) -> Option<&[u8]> {
    let key_len = le_u16(record.get(..2)?) as usize;
    record.get(2..2 + key_len)
}

pub(crate) fn decode_record(
    bytes: &Bytes,
    start: usize,
    stop: usize,
    topic: Topic,
    partition: u32,
    offset: u64,
) -> Option<LogRecord> {
    let mut at = start;
    let mut take = |n: usize| -> Option<std::ops::Range<usize>> {
        if at + n > stop {
            return None;
        }
        let range = at..at + n;
        at += n;
        Some(range)
    };
    let key_len = le_u16(&bytes[take(2)?]) as usize;
    let key = bytes.slice(take(key_len)?);
    let event_id = Uuid::from_slice(&bytes[take(16)?]).ok()?;
    let header_count = le_u16(&bytes[take(2)?]);
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let name_len = le_u16(&bytes[take(2)?]) as usize;
        let name = std::str::from_utf8(&bytes[take(name_len)?])
            .ok()?
            .to_owned();
        let value_len = le_u32(&bytes[take(4)?]) as usize;
        headers.push((name, bytes[take(value_len)?].to_vec()));
    }
    Some(LogRecord {
        topic,
        partition,
        offset,
        key,
        event_id,
        payload: bytes.slice(at..stop),
        headers,
    })
}

/// The event ids of one batch's records with their offsets, for the deduplication index.
/// The batch's checksum is the caller's to have checked (it checked its frame's).
pub(crate) fn event_ids_of_batch(batch: &[u8]) -> Option<Vec<(Uuid, u64)>> {
    let header = parse_batch_header(batch)?;
    let stored = stored_records(batch, &header)?;
    let decompressed;
    let records = if header.codec == CODEC_LZ4 {
        decompressed = decompress_into(stored, &FreshBuffers)?;
        &decompressed[..]
    } else {
        stored
    };
    let mut ids = Vec::with_capacity(header.count as usize);
    let mut at = 0;
    let end = records.len();
    for index in 0..u64::from(header.count) {
        if at + 6 > end {
            return None;
        }
        let len = le_u32(&records[at..at + 4]) as usize;
        let key_len = le_u16(&records[at + 4..at + 6]) as usize;
        let id_at = at + 6 + key_len;
        if id_at + 16 > end || at + 4 + len > end {
            return None;
        }
        ids.push((
            Uuid::from_slice(&records[id_at..id_at + 16]).ok()?,
            header.first_offset + index,
        ));
        at += 4 + len;
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, id: u128, payload: &str, headers: Vec<(String, Vec<u8>)>) -> AppendRecord {
        AppendRecord {
            topic: Topic::Interactions,
            key: key.to_owned(),
            event_id: Uuid::from_u128(id),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            headers,
        }
    }

    #[test]
    fn a_frame_reads_back_batch_by_batch_and_record_by_record() {
        let first = [
            record("c1", 1, "one", vec![]),
            record("c1", 2, "two", vec![("reason".into(), b"x".to_vec())]),
        ];
        let second = [record("agent", 3, "", vec![])];
        let mut builder = FrameBuilder::default();
        builder.start(7);
        builder.batch(Topic::Interactions, 4, 10, first.iter());
        builder.batch(Topic::Agents, 0, 0, second.iter());
        let (frame, placements) = builder.finish();
        let frame = frame.to_vec();
        let placements = placements.to_vec();
        let header = parse_frame_header(&frame).unwrap();
        assert_eq!(header.sequence, 7);
        assert!(frame_is_intact(&header, &frame));
        let batches = batches_of(&frame[FRAME_HEADER_BYTES..]).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(
            placements[0].at as usize,
            FRAME_HEADER_BYTES + batches[0].0 as usize
        );
        let first_batch = Bytes::copy_from_slice(
            &frame[placements[0].at as usize..(placements[0].at + placements[0].len) as usize],
        );
        let mut out = Vec::new();
        decode_batch(&first_batch, 11, u64::MAX, None, &mut out, &FreshBuffers).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offset, 11);
        assert_eq!(out[0].partition, 4);
        assert_eq!(&out[0].payload[..], b"two");
        assert_eq!(out[0].headers, vec![("reason".to_owned(), b"x".to_vec())]);
        assert_eq!(
            event_ids_of_batch(&first_batch).unwrap(),
            vec![(Uuid::from_u128(1), 10), (Uuid::from_u128(2), 11)]
        );
    }

    /// One batch of `records` as a frame's bytes would hold it (header and stored records).
    fn one_batch(records: &[AppendRecord]) -> (Bytes, BatchHeader) {
        let mut builder = FrameBuilder::default();
        builder.start(1);
        builder.batch(Topic::Interactions, 2, 40, records.iter());
        let (frame, placements) = builder.finish();
        let placement = placements[0];
        let bytes = Bytes::copy_from_slice(
            &frame[placement.at as usize..(placement.at + placement.len) as usize],
        );
        let header = parse_batch_header(&bytes).unwrap();
        (bytes, header)
    }

    /// Every record of a batch, read as a reader of the log reads it.
    fn read_batch(bytes: &[u8]) -> Result<Vec<LogRecord>, String> {
        let mut out = Vec::new();
        decode_batch(
            &Bytes::copy_from_slice(bytes),
            0,
            u64::MAX,
            None,
            &mut out,
            &FreshBuffers,
        )?;
        Ok(out)
    }

    /// A batch with its checksum made to match its (damaged) stored records: damage that only
    /// decompression can catch.
    fn with_matching_checksum(mut batch: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&batch[BATCH_HEADER_BYTES..]);
        batch[24..28].copy_from_slice(&crc.to_le_bytes());
        batch
    }

    #[test]
    fn a_batch_that_compresses_is_stored_compressed_and_reads_back_the_same() {
        let records: Vec<_> = (0..200u128)
            .map(|n| {
                record(
                    &format!("customer-{}", n % 7),
                    n,
                    &format!("{{\"type\":\"message\",\"text\":\"hello number {n}\"}}"),
                    vec![("trace".into(), b"same header".to_vec())],
                )
            })
            .collect();
        let plain: usize = records.iter().map(encoded_len).sum();
        let (bytes, header) = one_batch(&records);
        assert_eq!(header.codec, CODEC_LZ4);
        assert!(
            (header.records_len as usize) < plain / 2,
            "{} stored bytes for {plain} plain ones",
            header.records_len
        );
        let out = read_batch(&bytes).unwrap();
        assert_eq!(out.len(), records.len());
        for (read, written) in out.iter().zip(&records) {
            assert_eq!(read.key, written.key);
            assert_eq!(read.event_id, written.event_id);
            assert_eq!(read.payload, written.payload);
            assert_eq!(read.headers, written.headers);
            assert_eq!(read.partition, 2);
        }
        assert_eq!(out[0].offset, 40);
        // A range inside the batch, and its ids.
        let mut some = Vec::new();
        decode_batch(&bytes, 45, 47, None, &mut some, &FreshBuffers).unwrap();
        assert_eq!(some.iter().map(|r| r.offset).collect::<Vec<_>>(), [45, 46]);
        let ids = event_ids_of_batch(&bytes).unwrap();
        assert_eq!(ids.len(), 200);
        assert_eq!(ids[5], (Uuid::from_u128(5), 45));
    }

    /// [`decode_first_records`] of a batch as read: `Ok(false)` for one that fails its
    /// checksum (the whole read reports that).
    fn first_records(
        bytes: &Bytes,
        from: u64,
        until: u64,
        out: &mut Vec<LogRecord>,
    ) -> Result<bool, String> {
        match checked_stored(bytes) {
            Ok((header, stored)) => {
                decode_first_records(&header, stored, from, until, out, &FreshBuffers)
            }
            Err(_) => Ok(false),
        }
    }

    #[test]
    fn a_point_read_decompresses_only_the_first_records_and_reads_what_a_whole_read_does() {
        // Records of about one length but six long ones in the middle: ranges before them
        // are read from the batch's first bytes, ranges just past them outrun the estimate
        // from the mean length and are read whole.
        let records: Vec<_> = (0..300u128)
            .map(|n| {
                let words = if (100..106).contains(&n) {
                    400
                } else {
                    (n % 13) as usize + 1
                };
                record(
                    &format!("customer-{}", n % 11),
                    n,
                    &format!(
                        "{{\"type\":\"note\",\"text\":\"{}\"}}",
                        "word ".repeat(words)
                    ),
                    vec![],
                )
            })
            .collect();
        let (bytes, header) = one_batch(&records);
        assert_eq!(header.codec, CODEC_LZ4);
        let whole = read_batch(&bytes).unwrap();
        assert_eq!(whole.len(), records.len());
        let first = header.first_offset;
        let same = |read: &[LogRecord], from: u64, until: u64| {
            let expected: Vec<_> = whole
                .iter()
                .filter(|r| r.offset >= from && r.offset < until)
                .collect();
            assert_eq!(read.len(), expected.len(), "{from}..{until}");
            for (got, want) in read.iter().zip(expected) {
                assert_eq!(got.offset, want.offset);
                assert_eq!(got.key, want.key);
                assert_eq!(got.event_id, want.event_id);
                assert_eq!(got.payload, want.payload);
            }
        };
        let mut partial_reads = 0;
        for from in (first..first + 300).step_by(7) {
            for len in [1, 2, 5, 40] {
                let until = from + len;
                let mut probe = Vec::new();
                if first_records(&bytes, from, until, &mut probe).unwrap() {
                    partial_reads += 1;
                    same(&probe, from, until);
                } else {
                    assert!(probe.is_empty(), "{from}..{until}");
                }
                let mut read = Vec::new();
                decode_batch(&bytes, from, until, None, &mut read, &FreshBuffers).unwrap();
                same(&read, from, until);
            }
        }
        assert!(
            partial_reads > 30,
            "only {partial_reads} reads stopped early"
        );
        // Past the long records, the estimate falls short: the batch is read whole.
        let mut probe = Vec::new();
        assert!(!first_records(&bytes, first + 103, first + 106, &mut probe).unwrap());
        assert!(probe.is_empty());
        // A damaged batch is reported by the whole read, never read in part.
        let mut damaged = bytes.to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let damaged = Bytes::from(damaged);
        let mut none = Vec::new();
        assert!(!first_records(&damaged, first, first + 1, &mut none).unwrap());
        assert!(decode_batch(&damaged, first, first + 1, None, &mut none, &FreshBuffers).is_err());
    }

    #[test]
    fn a_batch_that_lz4_flex_compressed_reads_back_the_same() {
        // Logs written before 2026-12-05 compressed their batches with lz4_flex; the same
        // LZ4 block format, which the reference LZ4 reads.
        let records: Vec<_> = (0..200u128)
            .map(|n| {
                record(
                    "c1",
                    n,
                    &format!("message number {} of many", n % 9),
                    vec![],
                )
            })
            .collect();
        let (bytes, header) = one_batch(&records);
        assert_eq!(header.codec, CODEC_LZ4);
        let stored = stored_records(&bytes, &header).unwrap();
        let plain = decompress_into(stored, &FreshBuffers).unwrap();
        let mut flex = (plain.len() as u32).to_le_bytes().to_vec();
        flex.extend_from_slice(&lz4_flex::block::compress(&plain));
        let mut batch = bytes[..BATCH_HEADER_BYTES].to_vec();
        batch[20..24].copy_from_slice(&(flex.len() as u32).to_le_bytes());
        batch.extend_from_slice(&flex);
        let batch = with_matching_checksum(batch);
        let out = read_batch(&batch).unwrap();
        assert_eq!(out.len(), records.len());
        for (read, written) in out.iter().zip(&records) {
            assert_eq!(read.payload, written.payload);
            assert_eq!(read.event_id, written.event_id);
        }
    }

    #[test]
    fn a_small_or_incompressible_batch_is_stored_plain() {
        let (_, header) = one_batch(&[record("c1", 1, "one small event", vec![])]);
        assert_eq!(header.codec, CODEC_NONE);
        // Bytes with nothing to share: a stream of a simple generator's bytes.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: String = (0..4_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'!' + (state % 90) as u8)
            })
            .collect();
        let records = [record("c1", 1, &noise, vec![])];
        let (bytes, header) = one_batch(&records);
        assert_eq!(header.codec, CODEC_NONE);
        assert_eq!(read_batch(&bytes).unwrap()[0].payload, records[0].payload);
    }

    #[test]
    fn a_compressed_batch_that_does_not_decompress_is_an_error_not_a_panic() {
        let records: Vec<_> = (0..100u128)
            .map(|n| record("c1", n, &"repeated text ".repeat(20), vec![]))
            .collect();
        let (bytes, header) = one_batch(&records);
        assert_eq!(header.codec, CODEC_LZ4);
        // The length it claims, under a checksum made to match: the block no longer
        // decompresses to exactly that. (Damage inside the block: the next test.)
        let mut damaged = bytes.to_vec();
        damaged[BATCH_HEADER_BYTES] ^= 0x5a;
        let damaged = with_matching_checksum(damaged);
        let error = read_batch(&damaged).unwrap_err();
        assert!(error.contains("does not decompress"), "{error}");
        assert_eq!(event_ids_of_batch(&damaged), None);
        // A codec this build does not know is a damaged header.
        let mut unknown = bytes.to_vec();
        unknown[1] = 7;
        assert_eq!(parse_batch_header(&unknown), None);
    }

    #[test]
    fn a_compressed_batch_damaged_anywhere_under_a_matching_checksum_never_panics() {
        let records: Vec<_> = (0..64u128)
            .map(|n| {
                record(
                    &format!("c{}", n % 5),
                    n,
                    &format!("event {n} ").repeat(12),
                    vec![],
                )
            })
            .collect();
        let (bytes, header) = one_batch(&records);
        assert_eq!(header.codec, CODEC_LZ4);
        // A seeded generator (xorshift): damage a few bytes of the stored records, make the
        // checksum match, and read: an error or records, never a panic nor more records
        // than the header counts.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut failed = 0;
        for _ in 0..2_000 {
            let mut damaged = bytes.to_vec();
            for _ in 0..1 + next() % 4 {
                let at =
                    BATCH_HEADER_BYTES + (next() as usize) % (damaged.len() - BATCH_HEADER_BYTES);
                damaged[at] = next() as u8;
            }
            let damaged = with_matching_checksum(damaged);
            match read_batch(&damaged) {
                Ok(out) => assert!(out.len() <= records.len()),
                Err(_) => failed += 1,
            }
            if let Some(ids) = event_ids_of_batch(&damaged) {
                assert!(ids.len() <= records.len());
            }
            // Point reads too, which decompress only the block's first bytes (through
            // `LZ4_decompress_safe_partial`): an error or at most the records asked for.
            let damaged = Bytes::from(damaged);
            let first = header.first_offset;
            for (from, until) in [(first, first + 1), (first + 3, first + 6)] {
                let mut out = Vec::new();
                if first_records(&damaged, from, until, &mut out).is_ok() {
                    assert!(out.len() as u64 <= until - from);
                }
                let mut out = Vec::new();
                if decode_batch(&damaged, from, until, None, &mut out, &FreshBuffers).is_ok() {
                    assert!(out.len() as u64 <= until - from);
                }
            }
        }
        // Most damage is caught (a block that no longer decompresses to its length).
        assert!(
            failed > 1_000,
            "only {failed} of 2,000 damaged batches were refused"
        );
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_the_frame_checksum() {
        let records = [record("c1", 1, "payload", vec![])];
        let mut builder = FrameBuilder::default();
        builder.start(1);
        builder.batch(Topic::Interactions, 0, 0, records.iter());
        let frame = builder.finish().0.to_vec();
        for at in 4..frame.len() {
            let mut damaged = frame.clone();
            damaged[at] ^= 0x10;
            let intact = parse_frame_header(&damaged)
                .is_some_and(|header| frame_is_intact(&header, &damaged));
            assert!(!intact, "a flipped bit at byte {at} went unnoticed");
        }
    }

    #[test]
    fn zeros_are_not_a_frame() {
        assert_eq!(parse_frame_header(&[0u8; 64]), None);
        assert_eq!(parse_segment_header(&[0u8; 64]), None);
        assert_eq!(parse_segment_header(&segment_header(3, 99)), Some((3, 99)));
    }
}
