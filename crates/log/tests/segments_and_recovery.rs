//! The embedded log's files: segments roll and reopen (with or without their derived index
//! and id files); a tail cut or damaged by a crash is dropped back to the last whole frame on
//! open and every whole frame is kept; a reader takes the part a writer published as
//! durable by its frames' headers and checks the rest, or a closed log's last segment by the
//! index its writer left; a second writer is refused while readers in other
//! processes open the log read-only beside the writer; a scan returns every record once;
//! a data dir of the older format on sled is refused with the way to carry it over; and a log
//! of format 2 (every batch plain) is read as it is and raised to format 3 by its next writer.

mod common;

use std::collections::HashMap;
use std::path::Path;

use omnilog_log::{
    EmbeddedLog, EventLog, KeyShare, LogError, LogOptions, LogRecord, PartitionCounts,
    PartitionRange, Scan, Topic,
};
use uuid::Uuid;

use common::{PARTITIONS, event_id, files_with, incompressible, read_partition, record};

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes: 64 * 1024,
    }
}

/// A log in `dir` with [`small_segments`], of the default partitions.
fn open_small(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open_with(dir, PartitionCounts::default(), small_segments()).unwrap()
}

/// Appends `count` records named `{name}/{n}`, `per_append` at a time; returns where each is.
async fn append_named(
    log: &EmbeddedLog,
    name: &str,
    count: usize,
    per_append: usize,
) -> HashMap<Uuid, (u32, u64)> {
    let mut positions = HashMap::new();
    let mut n = 0;
    while n < count {
        let batch: Vec<_> = (n..(n + per_append).min(count))
            .map(|i| {
                let id = event_id(&format!("{name}/{i}"));
                record(
                    format!("customer-{}", i % 97),
                    id,
                    format!(
                        "{name}/{i}|{}",
                        incompressible(&format!("{name}/{i}"), i % 300)
                    ),
                )
            })
            .collect();
        n += batch.len();
        let ids: Vec<Uuid> = batch.iter().map(|r| r.event_id).collect();
        for (id, outcome) in ids.into_iter().zip(log.append(batch).await.unwrap()) {
            assert!(!outcome.is_duplicate());
            let position = outcome.position();
            positions.insert(id, (position.partition, position.offset));
        }
    }
    positions
}

/// Every record of the interactions topic, by event id.
async fn stored(log: &dyn EventLog) -> HashMap<Uuid, (u32, u64)> {
    let mut found = HashMap::new();
    for partition in 0..PARTITIONS {
        for (offset, r) in read_partition(log, Topic::Interactions, partition, 777)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(r.offset, offset as u64);
            let (name, _) = std::str::from_utf8(&r.payload)
                .unwrap()
                .split_once('|')
                .unwrap();
            assert_eq!(
                r.event_id,
                event_id(name),
                "the record at {partition}/{offset} is not its own"
            );
            assert!(found.insert(r.event_id, (partition, r.offset)).is_none());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_roll_and_reopen_with_or_without_their_derived_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let appended = append_named(&log, "roll", 3_000, 50).await;
    log.close().unwrap();
    let segments = files_with(dir.path(), "seg");
    assert!(
        segments.len() > 5,
        "only {} segments for 3,000 records",
        segments.len()
    );
    // Every segment that holds a frame has its index (the last one's written at closing);
    // the sealed ones their ids.
    assert_eq!(
        files_with(dir.path(), "idx").len(),
        segments_with_frames(dir.path())
    );
    assert_eq!(files_with(dir.path(), "ids").len(), segments.len() - 1);

    // Reopened with its derived files, then without them (they are written again), then
    // with damaged ones: the same records, and every one of them still a duplicate.
    for round in 0..3 {
        match round {
            1 => {
                for file in files_with(dir.path(), "idx")
                    .iter()
                    .chain(&files_with(dir.path(), "ids"))
                {
                    std::fs::remove_file(file).unwrap();
                }
            }
            2 => {
                for file in files_with(dir.path(), "ids") {
                    let mut bytes = std::fs::read(&file).unwrap();
                    let middle = bytes.len() / 2;
                    bytes[middle] ^= 0xff;
                    std::fs::write(&file, bytes).unwrap();
                }
                std::fs::write(&files_with(dir.path(), "idx")[0], b"damaged").unwrap();
            }
            _ => {}
        }
        let log = open_small(dir.path());
        assert_eq!(stored(&log).await, appended, "round {round}");
        for n in (0..3_000).step_by(7) {
            let id = event_id(&format!("roll/{n}"));
            let again = record(format!("customer-{}", n % 97), id, "again");
            let outcome = log.append(vec![again]).await.unwrap()[0];
            assert!(
                outcome.is_duplicate(),
                "round {round}: roll/{n} was stored again"
            );
            assert_eq!(
                (outcome.position().partition, outcome.position().offset),
                appended[&id]
            );
        }
        log.close().unwrap();
        assert_eq!(
            files_with(dir.path(), "idx").len(),
            segments_with_frames(dir.path())
        );
    }
}

/// The segments in `dir` that hold a frame (more than their 32-byte header): each has an
/// index once the log is closed, but a last segment a roll has just started.
fn segments_with_frames(dir: &Path) -> usize {
    files_with(dir, "seg")
        .iter()
        .filter(|segment| std::fs::metadata(segment).unwrap().len() > 32)
        .count()
}

/// A writer that closes leaves its last segment's batch index beside it, and a reader of the
/// closed log takes it instead of reading the segment's frame headers; a writer removes it
/// when it opens the log, before it appends, and a reader never takes an index that no
/// longer describes the segment (one put back from an earlier close, or one whose end is
/// not the published durable end).
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_log_is_read_from_its_last_segments_index_which_a_writer_removes() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    let first = append_named(&log, "first", 500, 25).await;
    let beside = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert!(!beside.last_segment_from_index(), "a writer runs");
    assert_eq!(stored(&beside).await, first);
    drop(beside);
    log.close().unwrap();
    let index = files_with(dir.path(), "idx");
    assert_eq!(
        index.len(),
        1,
        "the last segment's index, written at closing"
    );
    let reader = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert!(reader.last_segment_from_index());
    assert_eq!(stored(&reader).await, first);
    drop(reader);
    let of_the_first_close = std::fs::read(&index[0]).unwrap();

    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    assert!(
        files_with(dir.path(), "idx").is_empty(),
        "removed before the first append"
    );
    let second = append_named(&log, "second", 300, 25).await;
    let mut all = first.clone();
    all.extend(second);
    let beside = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert!(!beside.last_segment_from_index());
    assert_eq!(stored(&beside).await, all);
    drop(beside);
    log.close().unwrap();
    let reader = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert!(reader.last_segment_from_index());
    assert_eq!(stored(&reader).await, all);
    drop(reader);

    // The first close's index put back beside a running writer, then after its close:
    // shorter than the segment now, so not taken.
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    std::fs::write(&index[0], &of_the_first_close).unwrap();
    let beside = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert!(!beside.last_segment_from_index());
    assert_eq!(stored(&beside).await, all);
    drop(beside);
    std::fs::remove_file(&index[0]).unwrap();
    log.close().unwrap();
    let scratch = copied_log(dir.path());
    std::fs::write(
        scratch.path().join(index[0].file_name().unwrap()),
        &of_the_first_close,
    )
    .unwrap();
    let reader = EmbeddedLog::open_read_only(scratch.path()).unwrap();
    assert!(!reader.last_segment_from_index());
    assert_eq!(stored(&reader).await, all);
    drop(reader);

    // No published durable end (a log copied without it), or one whose last frame is not
    // the index's: the headers are read.
    let scratch = copied_log(dir.path());
    std::fs::remove_file(scratch.path().join("durable")).unwrap();
    let reader = EmbeddedLog::open_read_only(scratch.path()).unwrap();
    assert!(!reader.last_segment_from_index());
    assert_eq!(stored(&reader).await, all);
    drop(reader);
    let scratch = copied_log(dir.path());
    let mut end = std::fs::read(scratch.path().join("durable")).unwrap();
    let sequence = u64::from_le_bytes(end[16..24].try_into().unwrap());
    end[16..24].copy_from_slice(&(sequence + 1).to_le_bytes());
    let crc = crc32c::crc32c(&end[0..24]);
    end[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(scratch.path().join("durable"), &end).unwrap();
    let reader = EmbeddedLog::open_read_only(scratch.path()).unwrap();
    assert!(!reader.last_segment_from_index());
    assert_eq!(stored(&reader).await, all);
}

/// A closed log with a segment missing is refused, by a reader and by a writer, as when
/// the segment after the gap is scanned: no segment's index (a sealed one's, or the last
/// one's its writer left) is taken when the segment's header does not follow on from the
/// segments before it.
#[tokio::test(flavor = "multi_thread")]
async fn no_index_is_taken_past_a_missing_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_named(&log, "gap", 2_000, 50).await;
    log.close().unwrap();
    let segments = files_with(dir.path(), "seg");
    assert!(segments.len() >= 4, "{} segments", segments.len());
    // Before the last segment (its index written at closing), then before a sealed one;
    // the first with the last segment's index and without it.
    let gaps = [
        (segments.len() - 2, true),
        (segments.len() - 2, false),
        (1, true),
    ];
    for (missing, with_last_index) in gaps {
        let scratch = copied_log(dir.path());
        for extension in ["seg", "idx", "ids"] {
            let file = segments[missing].with_extension(extension);
            std::fs::remove_file(scratch.path().join(file.file_name().unwrap())).unwrap();
        }
        if !with_last_index {
            let last = segments.last().unwrap().with_extension("idx");
            std::fs::remove_file(scratch.path().join(last.file_name().unwrap())).unwrap();
        }
        let error = EmbeddedLog::open_read_only(scratch.path()).unwrap_err();
        assert!(
            error.to_string().contains("a segment is missing"),
            "segment {missing} missing, the last index {with_last_index}: {error}"
        );
        let error = EmbeddedLog::open(scratch.path(), PartitionCounts::default()).unwrap_err();
        assert!(
            error.to_string().contains("a segment is missing"),
            "a writer, segment {missing} missing: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tail_cut_mid_frame_is_dropped_back_to_the_last_whole_frame() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    let kept = append_named(&log, "kept", 500, 25).await;
    log.close().unwrap();
    let segment = files_with(dir.path(), "seg").pop().unwrap();
    let whole = std::fs::metadata(&segment).unwrap().len();

    // A crash in the middle of the next group's write: part of a frame, then nothing.
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    append_named(&log, "torn", 40, 40).await;
    log.close().unwrap();
    let with_torn = std::fs::metadata(&segment).unwrap().len();
    for cut in [
        whole + 3,
        whole + 20,
        (whole + with_torn) / 2,
        with_torn - 1,
    ] {
        let bytes = std::fs::read(&segment).unwrap();
        let scratch = copied_log(dir.path());
        let copy = scratch.path().join(segment.file_name().unwrap());
        std::fs::write(&copy, &bytes[..cut as usize]).unwrap();
        let log = EmbeddedLog::open(scratch.path(), PartitionCounts::default()).unwrap();
        assert_eq!(stored(&log).await, kept, "cut at byte {cut}");
        assert_eq!(
            std::fs::metadata(&copy).unwrap().len(),
            whole,
            "the torn tail is cut off"
        );
        // The log goes on from there: the lost group can be written again.
        let again = append_named(&log, "torn", 40, 40).await;
        assert_eq!(again.len(), 40);
        log.close().unwrap();
    }

    // Garbage instead of zeros after the last whole frame (a frame half overwritten).
    let mut bytes = std::fs::read(&segment).unwrap();
    let cut = bytes.len() - 100;
    for byte in &mut bytes[cut..] {
        *byte = byte.wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(&segment, &bytes).unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    assert_eq!(stored(&log).await, kept);
}

/// A reader takes what a writer published as durable by its frames' headers alone (each
/// batch is checked as it is read) and checks every frame past it: a torn tail after the
/// published end is left out, a published end where no frame ends is not trusted (the
/// segment is read whole), and a damaged batch before the published end is an error when
/// it is read, not a log silently cut short.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_takes_the_published_durable_part_by_its_headers_and_checks_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    let kept = append_named(&log, "kept", 500, 25).await;
    log.close().unwrap();
    let segment = files_with(dir.path(), "seg").pop().unwrap();
    let segment_name = segment.file_name().unwrap().to_owned();
    let whole = std::fs::metadata(&segment).unwrap().len();
    let published = std::fs::read(dir.path().join("durable")).unwrap();
    assert_eq!(read_only(dir.path()).await, kept);

    // The next group torn by a crash before its sync, so never published.
    let scratch = copied_log(dir.path());
    let log = EmbeddedLog::open(scratch.path(), PartitionCounts::default()).unwrap();
    append_named(&log, "torn", 40, 40).await;
    log.close().unwrap();
    std::fs::write(scratch.path().join("durable"), &published).unwrap();
    let copy = scratch.path().join(&segment_name);
    let bytes = std::fs::read(&copy).unwrap();
    std::fs::write(&copy, &bytes[..(whole as usize + bytes.len()) / 2]).unwrap();
    assert_eq!(
        read_only(scratch.path()).await,
        kept,
        "a torn tail past the published end"
    );

    // A published end one byte short of the last frame's end.
    let scratch = copied_log(dir.path());
    let mut end = published.clone();
    let position = u64::from_le_bytes(end[8..16].try_into().unwrap());
    assert_eq!(position, whole, "the published end is the segment's end");
    end[8..16].copy_from_slice(&(position - 1).to_le_bytes());
    let crc = crc32c::crc32c(&end[0..24]);
    end[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(scratch.path().join("durable"), &end).unwrap();
    assert_eq!(
        read_only(scratch.path()).await,
        kept,
        "a published end where no frame ends"
    );

    // A byte of the first batch's records damaged (segment header 32 bytes, frame header
    // 20, batch header 28): the log opens whole, and reading that batch fails, whether the
    // batches come from the index the writer left at closing or from the frames' headers.
    for with_index in [true, false] {
        let scratch = copied_log(dir.path());
        let copy = scratch.path().join(&segment_name);
        let mut bytes = std::fs::read(&copy).unwrap();
        bytes[32 + 20 + 28 + 10] ^= 0x5a;
        std::fs::write(&copy, &bytes).unwrap();
        if !with_index {
            for index in files_with(scratch.path(), "idx") {
                std::fs::remove_file(index).unwrap();
            }
        }
        a_damaged_batch_fails_its_read(scratch.path(), kept.len(), with_index).await;
    }

    // The first batch's header damaged where its checksum does not reach (its first offset,
    // its count), in a segment opened from its index: the read fails naming what the header
    // says against the index, where it returned the records under other offsets, or fewer.
    for (field, flip) in [("first offset", 8), ("count", 16)] {
        let scratch = copied_log(dir.path());
        let copy = scratch.path().join(&segment_name);
        let mut bytes = std::fs::read(&copy).unwrap();
        bytes[32 + 20 + flip] ^= 0x04;
        std::fs::write(&copy, &bytes).unwrap();
        let reader = EmbeddedLog::open_read_only(scratch.path()).unwrap();
        assert!(reader.last_segment_from_index(), "{field}");
        let (_, failed) = read_every_partition(&reader).await;
        assert_eq!(failed.len(), 1, "{field}: {failed:?}");
        assert!(
            failed[0].contains("where the index has"),
            "{field}: {failed:?}"
        );
    }
}

/// Opens the log in `dir` read-only, whose first batch is damaged, and reads every
/// partition: one read fails on its checksum, the others read.
async fn a_damaged_batch_fails_its_read(dir: &Path, kept: usize, with_index: bool) {
    let reader = EmbeddedLog::open_read_only(dir).unwrap();
    assert_eq!(reader.last_segment_from_index(), with_index);
    let ends = reader.end_offsets(Topic::Interactions).await.unwrap();
    let (read, failed) = read_every_partition(&reader).await;
    assert_eq!(
        ends.iter().sum::<u64>() as usize,
        kept,
        "every batch indexed"
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("checksum"), "{failed:?}");
    assert!(read > 0 && read < kept);
}

/// Reads every interactions partition of `reader` whole, each in one read: how many records
/// the reads that succeeded returned, and the errors of those that failed.
async fn read_every_partition(reader: &EmbeddedLog) -> (usize, Vec<String>) {
    let ends = reader.end_offsets(Topic::Interactions).await.unwrap();
    let mut read = 0;
    let mut failed = Vec::new();
    for partition in 0..PARTITIONS {
        match reader
            .read(
                Topic::Interactions,
                partition,
                0,
                ends[partition as usize] as usize,
            )
            .await
        {
            Ok(records) => read += records.len(),
            Err(error) => failed.push(error.to_string()),
        }
    }
    (read, failed)
}

/// Every record a reader of the log in `dir` finds (as [`stored`] gives them).
async fn read_only(dir: &Path) -> HashMap<Uuid, (u32, u64)> {
    stored(&EmbeddedLog::open_read_only(dir).unwrap()).await
}

/// A copy of the log's files in `from`, in a directory of its own.
fn copied_log(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    to
}

#[tokio::test(flavor = "multi_thread")]
async fn one_writer_at_a_time_and_readers_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open_small(dir.path());
    let first = append_named(&writer, "before", 1_000, 100).await;
    assert!(matches!(
        EmbeddedLog::open(dir.path(), PartitionCounts::default()),
        Err(LogError::Locked { .. })
    ));
    assert!(EmbeddedLog::writer_running(dir.path()));

    // A reader sees what was durable when it opened, and nothing it may not.
    let files_before: Vec<_> = files_with(dir.path(), "seg")
        .into_iter()
        .map(|p| (p.clone(), std::fs::metadata(&p).unwrap().len()))
        .collect();
    let reader = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert_eq!(stored(&reader).await, first);
    assert!(matches!(
        reader
            .append(vec![record("c", event_id("refused"), "x")])
            .await,
        Err(LogError::ReadOnly)
    ));
    // The writer goes on meanwhile; the reader keeps its view.
    let second = append_named(&writer, "after", 1_000, 100).await;
    assert_eq!(stored(&reader).await.len(), first.len());
    for (path, len) in files_before {
        assert!(
            std::fs::metadata(&path).unwrap().len() >= len,
            "the reader changed {path:?}"
        );
    }
    drop(reader);
    let later = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert_eq!(stored(&later).await.len(), first.len() + second.len());
    writer.close().unwrap();
    assert!(!EmbeddedLog::writer_running(dir.path()));
    let after_stop = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert_eq!(stored(&after_stop).await.len(), first.len() + second.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_returns_every_record_once_each_partition_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let appended = append_named(&log, "scan", 2_500, 60).await;
    let agents: Vec<_> = (0..30)
        .map(|n| omnilog_log::AppendRecord {
            topic: Topic::Agents,
            ..record(
                format!("agent-{n}"),
                event_id(&format!("agent/{n}")),
                "state",
            )
        })
        .collect();
    log.append(agents).await.unwrap();
    for max in [1, 100, 10_000] {
        let mut scan = Scan::to_ends(&log, &[Topic::Interactions, Topic::Agents])
            .await
            .unwrap();
        assert_eq!(scan.remaining(), 2_530);
        let mut next: HashMap<(Topic, u32), u64> = HashMap::new();
        let mut seen = 0;
        loop {
            let records = log.scan_next(&mut scan, max).await.unwrap();
            if records.is_empty() {
                break;
            }
            for r in records {
                let expected = next.entry((r.topic, r.partition)).or_default();
                assert_eq!(
                    r.offset,
                    *expected,
                    "{}/{} out of order",
                    r.topic.name(),
                    r.partition
                );
                *expected += 1;
                if r.topic == Topic::Interactions {
                    assert_eq!(appended[&r.event_id], (r.partition, r.offset));
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 2_530, "max {max}");
        assert!(scan.is_done());
    }
    // A range ends where it says, and starts where it says.
    let mut scan = Scan::new(vec![PartitionRange {
        topic: Topic::Interactions,
        partition: 3,
        from: 5,
        to: 9,
    }]);
    let records = log.scan_next(&mut scan, 100).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![5, 6, 7, 8]
    );
    assert!(log.scan_next(&mut scan, 100).await.unwrap().is_empty());
}

/// Every record a scan of `share` returns, read `max` at a time to its end: each of the
/// share, and each partition's in offset order.
async fn read_share(log: &dyn EventLog, scan: Scan, share: KeyShare, max: usize) -> Vec<LogRecord> {
    let mut scan = scan.only_share(share);
    let mut next: HashMap<u32, u64> = HashMap::new();
    let mut read = Vec::new();
    loop {
        let records = log.scan_next(&mut scan, max).await.unwrap();
        if records.is_empty() {
            break;
        }
        for r in records {
            assert!(share.holds(&r.key), "{:?} is not of {share:?}", r.key);
            let after = next.entry(r.partition).or_default();
            assert!(r.offset >= *after, "partition {} out of order", r.partition);
            *after = r.offset + 1;
            read.push(r);
        }
    }
    assert!(scan.is_done());
    read
}

#[tokio::test(flavor = "multi_thread")]
async fn scans_of_the_shares_of_the_keys_return_each_record_once_in_order_and_only_its_shares() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let appended = append_named(&log, "share", 2_000, 50).await;
    let shares = 3;
    for max in [1, 7, 10_000] {
        let mut seen: HashMap<Uuid, u32> = HashMap::new();
        for index in 0..shares {
            let share = KeyShare::new(index, shares, 12).unwrap();
            let scan = Scan::to_ends(&log, &[Topic::Interactions]).await.unwrap();
            for r in read_share(&log, scan, share, max).await {
                assert_eq!(appended[&r.event_id], (r.partition, r.offset));
                assert!(seen.insert(r.event_id, index).is_none(), "read twice");
            }
        }
        assert_eq!(seen.len(), appended.len(), "max {max}");
        let per_share: Vec<usize> = (0..shares)
            .map(|index| seen.values().filter(|&&s| s == index).count())
            .collect();
        assert!(per_share.iter().all(|&n| n > 400), "{per_share:?}");
    }
}

/// The same through the trait's own `scan_next` (the Kafka backend's), which reads each
/// partition in turn and filters what it read: a projector's slice of one partition uses it.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_scan_of_a_share_returns_each_record_of_it_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let appended = append_named(&log, "slice", 1_500, 50).await;
    let shared: omnilog_log::SharedLog = std::sync::Arc::new(log);
    let partition = 4;
    let slice = omnilog_log::PartitionSlice::new(shared, partition);
    let in_partition = appended.values().filter(|(p, _)| *p == partition).count();
    assert!(in_partition > 50, "{in_partition}");
    for max in [1, 9, 10_000] {
        let mut seen: HashMap<Uuid, u32> = HashMap::new();
        for index in 0..2 {
            let share = KeyShare::new(index, 2, 12).unwrap();
            let scan = Scan::to_ends(&slice, &[Topic::Interactions]).await.unwrap();
            for r in read_share(&slice, scan, share, max).await {
                assert_eq!(r.partition, partition);
                assert!(seen.insert(r.event_id, index).is_none(), "read twice");
            }
        }
        assert_eq!(seen.len(), in_partition, "max {max}");
    }
}

#[test]
fn a_log_of_the_older_format_is_refused_with_the_way_to_carry_it_over() {
    let dir = tempfile::tempdir().unwrap();
    // sled's files, as the older format left them.
    std::fs::write(dir.path().join("conf"), b"segment_size: 524288\n").unwrap();
    std::fs::write(dir.path().join("db"), b"").unwrap();
    for opened in [
        EmbeddedLog::open(dir.path(), PartitionCounts::default()).map(drop),
        EmbeddedLog::open_existing(dir.path()).map(drop),
        EmbeddedLog::open_read_only(dir.path()).map(drop),
    ] {
        let error = opened.unwrap_err();
        assert!(matches!(error, LogError::OlderFormat { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("omnilog export") && message.contains("omnilog import"),
            "{message}"
        );
    }
    // Nothing was written beside the old files.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_of_format_2_is_read_as_it_is_and_raised_to_format_3_before_its_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let meta_path = dir.path().join("log.json");
    // Single small appends: each batch is stored plain, as format 2 stored every batch.
    let mut expected = {
        let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
        let positions = append_named(&log, "plain", 40, 1).await;
        log.close().unwrap();
        positions
    };
    let described = std::fs::read_to_string(&meta_path).unwrap();
    assert!(described.contains("\"format\": 3"), "{described}");
    std::fs::write(
        &meta_path,
        described.replace("\"format\": 3", "\"format\": 2"),
    )
    .unwrap();
    let plain_bytes: u64 = files_with(dir.path(), "seg")
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    // Read as it is, and left as it is by a reader.
    {
        let reader = EmbeddedLog::open_read_only(dir.path()).unwrap();
        assert_eq!(stored(&reader).await, expected);
    }
    assert!(
        std::fs::read_to_string(&meta_path)
            .unwrap()
            .contains("\"format\": 2")
    );
    // A writer raises it first, then stores large batches compressed beside the plain ones.
    let log = EmbeddedLog::open_existing(dir.path()).unwrap();
    assert!(
        std::fs::read_to_string(&meta_path)
            .unwrap()
            .contains("\"format\": 3")
    );
    // Records that share most of their bytes, as events of one channel do.
    // What the records take plain: length, key, event id, header count, payload.
    let mut plain_record_bytes = 0;
    for chunk in 0..4 {
        let batch: Vec<_> = (chunk * 500..(chunk + 1) * 500)
            .map(|i| {
                let name = format!("grouped/{i}");
                let payload = format!("{name}|{{\"type\":\"message\",\"channel\":\"chat\"}}");
                let key = format!("customer-{}", i % 97);
                plain_record_bytes += 4 + 2 + key.len() + 16 + 2 + payload.len();
                record(key, event_id(&name), payload)
            })
            .collect();
        let ids: Vec<Uuid> = batch.iter().map(|r| r.event_id).collect();
        for (id, outcome) in ids.into_iter().zip(log.append(batch).await.unwrap()) {
            assert!(!outcome.is_duplicate());
            let position = outcome.position();
            expected.insert(id, (position.partition, position.offset));
        }
    }
    assert_eq!(stored(&log).await, expected);
    log.close().unwrap();
    let all_bytes: u64 = files_with(dir.path(), "seg")
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert!(
        ((all_bytes - plain_bytes) as usize) < plain_record_bytes / 2,
        "{} bytes stored for {plain_record_bytes} bytes of plain records",
        all_bytes - plain_bytes
    );
    // And it reopens with every record where it was.
    let reopened = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert_eq!(stored(&reopened).await, expected);
}

/// A sealed segment whose index survived but whose run of ids did not has its ids listed
/// again from its frames when a writer opens it. A damaged frame in it stopped that scan,
/// and the ids before the damage were saved as the segment's whole run, so every id past
/// it would have been taken as new and stored again (found by review): the open is refused
/// instead, naming the segment, as it is when no index is left either.
#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_segment_whose_ids_cannot_all_be_listed_again_is_not_opened_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_named(&log, "ids", 3_000, 50).await;
    log.close().unwrap();
    let segments = files_with(dir.path(), "seg");
    assert!(segments.len() > 2, "{segments:?}");
    let segment = segments[1].clone();
    let ids = segment.with_extension("ids");
    assert!(
        ids.exists() && segment.with_extension("idx").exists(),
        "{:?}",
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    std::fs::remove_file(&ids).unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let refused = EmbeddedLog::open_with(dir.path(), PartitionCounts::default(), small_segments())
        .map(|_| "opened")
        .expect_err("the open is refused")
        .to_string();
    assert!(refused.contains("event ids cannot be listed"), "{refused}");
    assert!(!ids.exists(), "no partial run of ids is saved");
}

/// A frame damaged before the end the last writer had synced (a bad block, a flipped bit) is
/// no torn tail: its events were acknowledged. The writer still opens the log, back to the
/// last whole frame before the damage (what follows cannot be read in order), but keeps the
/// bytes it cuts beside the segment, synced, and says so, where it cut them saying nothing
/// acknowledged was dropped (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn a_frame_damaged_before_the_synced_end_is_cut_with_its_bytes_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    let first = append_named(&log, "first", 100, 25).await;
    append_named(&log, "second", 100, 25).await;
    log.close().unwrap();
    let segment = files_with(dir.path(), "seg").pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let whole = bytes.len();
    let at = whole * 7 / 8;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    let kept = stored(&log).await;
    assert!(
        first.iter().all(|(id, place)| kept.get(id) == Some(place)),
        "the frames before the damage are kept"
    );
    assert!(kept.len() < 200, "the damaged frame is cut");
    log.close().unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains(".seg.cut-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let cut = std::fs::read(&aside[0]).unwrap();
    let left = std::fs::metadata(&segment).unwrap().len() as usize;
    assert!(left < at, "cut back before the damage");
    assert_eq!(cut, bytes[left..whole], "the cut bytes, as they were");
}
