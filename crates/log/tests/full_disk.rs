//! A full disk never needs a restart: a frame whose write or sync fails is refused, what
//! part of it reached the file is cut off, and the next append once the disk has room
//! succeeds where the failed one would have gone; a segment that cannot be started leaves
//! the log writing into the active one and is started later; nothing of a failed append is
//! ever readable, and reopening finds exactly what was acknowledged.
//!
//! The failures are injected at the writer's disk operations
//! ([`EmbeddedLog::inject_disk_fault`]), each as the kernel's `ENOSPC`: no unprivileged test
//! can fill a disk at a chosen instant, and nothing short of a failing device makes
//! `fdatasync` fail. The end-to-end test against `omnilog serve` (`tests/hardening_disk.rs`)
//! adds a real kernel refusal: a file-size limit (`RLIMIT_FSIZE`) lowered on the running
//! server and raised again.

mod common;

use std::collections::HashMap;
use std::path::Path;

use omnilog_log::{
    AppendOutcome, AppendRecord, DiskFault, EmbeddedLog, EventLog, LogError, LogOptions,
    PartitionCounts, Topic,
};
use uuid::Uuid;

use common::{PARTITIONS, event_id, files_with, incompressible, read_partition, record};

/// Records named `{name}/{i}` for `i` in `range`.
fn named(name: &str, range: std::ops::Range<usize>) -> Vec<AppendRecord> {
    range
        .map(|i| {
            let label = format!("{name}/{i}");
            record(
                format!("customer-{}", i % 17),
                event_id(&label),
                format!("{label}|{}", incompressible(&label, 120)),
            )
        })
        .collect()
}

/// Appends records named `{name}/{i}` for `i` in `range`, as one request.
async fn append_named(
    log: &EmbeddedLog,
    name: &str,
    range: std::ops::Range<usize>,
) -> Result<Vec<AppendOutcome>, LogError> {
    log.append(named(name, range)).await
}

/// Every record of the interactions topic: event id → (partition, offset), each checked to
/// be whole, where its partition's offsets say, and stored once.
async fn stored(log: &dyn EventLog) -> HashMap<Uuid, (u32, u64)> {
    let mut found = HashMap::new();
    for partition in 0..PARTITIONS {
        for (offset, r) in read_partition(log, Topic::Interactions, partition, 1_000)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(r.offset, offset as u64);
            let text = std::str::from_utf8(&r.payload).expect("a payload of this test");
            let (label, _) = text.split_once('|').expect("a payload of this test");
            assert_eq!(r.event_id, event_id(label), "the record is not its own");
            assert!(found.insert(r.event_id, (partition, r.offset)).is_none());
        }
    }
    found
}

fn ids(name: &str, range: std::ops::Range<usize>) -> Vec<Uuid> {
    range.map(|i| event_id(&format!("{name}/{i}"))).collect()
}

fn segment_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .expect("listing the log")
        .map(|entry| entry.expect("an entry"))
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".seg"))
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.metadata().expect("its size").len(),
            )
        })
        .collect();
    files.sort();
    files
}

/// A log in `dir` whose segments roll every 4 KiB: a request of 40 events rolls one.
fn open_with_small_segments(dir: &Path) -> EmbeddedLog {
    let options = LogOptions {
        segment_bytes: 4 * 1024,
    };
    EmbeddedLog::open_with(dir, PartitionCounts::default(), options).unwrap()
}

/// The segment files once they satisfy `settled` (the writer rolls after it answered the
/// group that filled a segment, so a test waits for it), within five seconds.
fn segments_once(dir: &Path, settled: impl Fn(&[(String, u64)]) -> bool) -> Vec<(String, u64)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let files = segment_files(dir);
        if settled(&files) {
            return files;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the segments did not get there within 5 s: {files:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn assert_unavailable(outcome: Result<Vec<AppendOutcome>, LogError>) {
    match outcome {
        Err(LogError::Unavailable(message)) => {
            assert!(message.contains("No space left"), "{message}")
        }
        other => panic!("expected the log to refuse the append as unavailable, got {other:?}"),
    }
}

/// Opens the log again (a restart) and checks it holds exactly `expected`.
async fn reopened_holds_exactly(dir: &Path, expected: &[Uuid]) {
    let log = EmbeddedLog::open(dir, PartitionCounts::default()).expect("reopening the log");
    let found = stored(&log).await;
    assert_eq!(found.len(), expected.len(), "records after reopening");
    for id in expected {
        assert!(found.contains_key(id), "an acknowledged record was lost");
    }
}

#[tokio::test]
async fn a_failed_sync_is_refused_and_the_next_append_goes_where_it_would_have() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    append_named(&log, "before", 0..40).await.unwrap();
    let ends = log.end_offsets(Topic::Interactions).await.unwrap();
    let segment = segment_files(dir.path());

    log.inject_disk_fault(DiskFault::Sync, 1);
    assert_unavailable(append_named(&log, "failed", 0..25).await);
    // Nothing of it is readable, and the file is back to what was acknowledged.
    assert_eq!(log.end_offsets(Topic::Interactions).await.unwrap(), ends);
    assert_eq!(stored(&log).await.len(), 40);
    assert_eq!(segment_files(dir.path()), segment);

    // The disk has room again: the same records are appended (not taken for duplicates of
    // the refused ones) at the offsets the refused append would have had.
    let outcomes = append_named(&log, "failed", 0..25).await.unwrap();
    assert!(outcomes.iter().all(|o| !o.is_duplicate()));
    let mut next = ends.clone();
    for outcome in &outcomes {
        let position = outcome.position();
        assert_eq!(position.offset, next[position.partition as usize]);
        next[position.partition as usize] += 1;
    }
    let mut expected = ids("before", 0..40);
    expected.extend(ids("failed", 0..25));
    assert_eq!(stored(&log).await.len(), expected.len());
    log.close().unwrap();
    reopened_holds_exactly(dir.path(), &expected).await;
}

#[tokio::test]
async fn a_frame_half_written_when_the_disk_filled_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    append_named(&log, "before", 0..30).await.unwrap();
    let segment = segment_files(dir.path());

    log.inject_disk_fault(DiskFault::Write, 1);
    assert_unavailable(append_named(&log, "half", 0..30).await);
    assert_eq!(
        segment_files(dir.path()),
        segment,
        "the half frame was cut off"
    );
    // A reader in another process sees only what was acknowledged.
    let reader = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert_eq!(stored(&reader).await.len(), 30);
    drop(reader);

    append_named(&log, "after", 0..10).await.unwrap();
    let mut expected = ids("before", 0..30);
    expected.extend(ids("after", 0..10));
    assert_eq!(stored(&log).await.len(), expected.len());
    // Closed by its drop: what the next open finds is what was acknowledged.
    drop(log);
    reopened_holds_exactly(dir.path(), &expected).await;
}

#[tokio::test]
async fn a_cut_that_cannot_be_synced_yet_holds_writes_back_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    append_named(&log, "before", 0..10).await.unwrap();
    // The frame's sync fails, then the cut's sync, then the cut's sync again when the next
    // append tries it first.
    log.inject_disk_fault(DiskFault::Sync, 3);
    assert_unavailable(append_named(&log, "first", 0..5).await);
    assert_unavailable(append_named(&log, "second", 0..5).await);
    assert_eq!(stored(&log).await.len(), 10);
    // A request that only repeats stored records needs no write: it is answered.
    let repeated = append_named(&log, "before", 0..10).await.unwrap();
    assert!(repeated.iter().all(AppendOutcome::is_duplicate));

    let outcomes = append_named(&log, "third", 0..5).await.unwrap();
    assert!(outcomes.iter().all(|o| !o.is_duplicate()));
    let mut expected = ids("before", 0..10);
    expected.extend(ids("third", 0..5));
    assert_eq!(stored(&log).await.len(), expected.len());
    log.close().unwrap();
    reopened_holds_exactly(dir.path(), &expected).await;
}

/// A log closed while the cut of a failed write is not yet synced leaves no index of its
/// last segment (the file may still hold bytes of that frame), and every reader and the next
/// writer find what was acknowledged.
#[tokio::test]
async fn a_log_closed_with_an_unsettled_tail_leaves_no_index_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    append_named(&log, "before", 0..10).await.unwrap();
    // The frame's sync fails, then the cut's.
    log.inject_disk_fault(DiskFault::Sync, 2);
    assert_unavailable(append_named(&log, "lost", 0..5).await);
    log.close().unwrap();
    assert_eq!(
        files_with(dir.path(), "idx"),
        Vec::<std::path::PathBuf>::new()
    );
    let reader = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert!(!reader.last_segment_from_index());
    assert_eq!(stored(&reader).await.len(), 10);
    drop(reader);
    reopened_holds_exactly(dir.path(), &ids("before", 0..10)).await;
}

#[tokio::test]
async fn a_segment_that_cannot_be_started_is_started_later_and_the_log_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_small_segments(dir.path());
    log.inject_disk_fault(DiskFault::CreateSegment, 1);
    // One request past the segment's size: the roll after it fails, leaving the new
    // segment's file empty, as a full disk does.
    append_named(&log, "first", 0..40).await.unwrap();
    let files = segments_once(dir.path(), |files| files.len() == 2);
    assert_eq!(files[1].1, 0, "the new segment was left empty: {files:?}");
    let first_len = files[0].1;
    // The log goes on writing into the active segment...
    append_named(&log, "second", 0..5).await.unwrap();
    // ...and starts the next segment after that group: the empty file is replaced by one
    // with a header.
    let files = segments_once(dir.path(), |files| files.len() == 2 && files[1].1 > 0);
    assert!(files[0].1 > first_len, "{files:?}");
    append_named(&log, "third", 0..40).await.unwrap();
    let mut expected = ids("first", 0..40);
    expected.extend(ids("second", 0..5));
    expected.extend(ids("third", 0..40));
    assert_eq!(stored(&log).await.len(), expected.len());
    log.close().unwrap();
    reopened_holds_exactly(dir.path(), &expected).await;
}

#[tokio::test]
async fn a_segment_left_empty_by_a_failed_roll_does_not_stop_the_log_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_small_segments(dir.path());
    log.inject_disk_fault(DiskFault::CreateSegment, 1);
    append_named(&log, "first", 0..40).await.unwrap();
    let files = segments_once(dir.path(), |files| files.len() == 2);
    assert_eq!(files[1].1, 0, "{files:?}");
    // Stopped right there, with the empty segment on disk.
    drop(log);

    // A reader passes over it and changes nothing...
    let reader = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert_eq!(stored(&reader).await.len(), 40);
    drop(reader);
    assert_eq!(segment_files(dir.path()), files);
    // ...and the writer removes it, then rolls as usual.
    let expected = ids("first", 0..40);
    reopened_holds_exactly(dir.path(), &expected).await;
    assert_eq!(segment_files(dir.path()).len(), 1);
}

/// A power cut while a roll wrote the new segment's header can leave a file of the header's
/// length whose bytes never reached the disk (zeros): it holds no frame, since frames go
/// into a new segment only once its header is synced, and the log opens without it. A
/// last segment with frames and a damaged header still stops the open.
#[tokio::test]
async fn a_last_segment_whose_header_never_reached_the_disk_does_not_stop_the_log_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_small_segments(dir.path());
    append_named(&log, "first", 0..40).await.unwrap();
    let files = segments_once(dir.path(), |files| files.len() == 2);
    log.close().unwrap();
    let header_len = files[1].1;
    let unwritten = dir.path().join(format!("{:010}.seg", files.len() + 1));
    std::fs::write(&unwritten, vec![0u8; header_len as usize]).unwrap();

    // A reader passes over it and changes nothing...
    let reader = EmbeddedLog::open_read_only(dir.path()).unwrap();
    assert_eq!(stored(&reader).await.len(), 40);
    drop(reader);
    assert!(unwritten.exists());
    // ...and the writer removes it, then goes on writing where the log ended.
    // (A segment holding no frame does not stop the open.)
    let log = open_with_small_segments(dir.path());
    assert!(!unwritten.exists());
    append_named(&log, "second", 0..5).await.unwrap();
    log.close().unwrap();
    let mut expected = ids("first", 0..40);
    expected.extend(ids("second", 0..5));
    reopened_holds_exactly(dir.path(), &expected).await;

    // Damage in the header of a segment that holds frames is not passed over.
    let last = segment_files(dir.path()).last().unwrap().0.clone();
    let last = dir.path().join(last);
    let mut bytes = std::fs::read(&last).unwrap();
    assert!(
        bytes.len() as u64 > header_len,
        "the last segment holds frames"
    );
    bytes[0] ^= 0xff;
    std::fs::write(&last, bytes).unwrap();
    assert!(EmbeddedLog::open(dir.path(), PartitionCounts::default()).is_err());
}

/// A new segment whose header was written but whose sync failed is removed, not left for
/// the next open: the frames went on into the active segment, past the first sequence the
/// header names, and the open found a segment missing between the two (found by review).
#[tokio::test]
async fn a_segment_whose_header_did_not_sync_is_removed_and_the_log_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_small_segments(dir.path());
    log.inject_disk_fault(DiskFault::SyncNewSegment, 1);
    append_named(&log, "first", 0..40).await.unwrap();
    // The roll after it failed: its file is gone, so a crash now leaves no segment whose
    // header names frames the active one then takes.
    // (The writer rolls right after it answers: once it met the failure.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while log.disk_faults_left(DiskFault::SyncNewSegment) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the roll was never tried"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Removed right after the failure (left, this waits out its 5 s and fails).
    segments_once(dir.path(), |files| files.len() == 1);
    // The frames go on into the active segment, and the next roll starts the segment.
    append_named(&log, "second", 0..5).await.unwrap();
    drop(log);
    let mut expected = ids("first", 0..40);
    expected.extend(ids("second", 0..5));
    reopened_holds_exactly(dir.path(), &expected).await;
}

/// Ingest hands its next batch to the log before the previous one is durable. Batches of one
/// chain stand or fall in order: once one is refused (here a sync that fails, then a record
/// the log does not take), every later batch of its chain is refused with it, whether it
/// went into the same frame or came after; appends outside the chain, and a new chain, go
/// on as usual.
#[tokio::test]
async fn a_batch_handed_over_behind_a_refused_one_of_its_chain_is_refused_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), PartitionCounts::default()).unwrap();
    let chain = log.new_chain();
    log.inject_disk_fault(DiskFault::Sync, 1);
    let first = log
        .append_in_chain(named("first", 0..10), chain)
        .expect("the embedded log takes chained appends");
    let second = log
        .append_in_chain(named("second", 0..10), chain)
        .expect("the embedded log takes chained appends");
    assert_unavailable(first.await);
    assert!(
        matches!(second.await, Err(LogError::Unavailable(_))),
        "a batch behind a refused one of its chain must be refused"
    );
    assert_eq!(stored(&log).await.len(), 0);

    // A record the log does not take refuses its batch alone, before anything is written;
    // the batch behind it in its chain falls with it, an append outside the chain does not.
    let chain = log.new_chain();
    let mut invalid = named("invalid", 0..3);
    invalid[1].key = "k".repeat(1 << 20);
    let invalid = log.append_in_chain(invalid, chain).unwrap();
    let behind = log.append_in_chain(named("behind", 0..10), chain).unwrap();
    let (invalid, behind, outside) =
        tokio::join!(invalid, behind, append_named(&log, "outside", 0..10));
    assert!(matches!(invalid, Err(LogError::InvalidRecord(_))));
    assert!(matches!(behind, Err(LogError::Unavailable(_))));
    outside.expect("an append outside the chain");
    let mut expected = ids("outside", 0..10);
    assert_eq!(stored(&log).await.len(), expected.len());

    // A new chain is taken as usual.
    let fresh = log.new_chain();
    assert_ne!(fresh, chain);
    log.append_in_chain(named("behind", 0..10), fresh)
        .unwrap()
        .await
        .expect("a new chain's append");
    expected.extend(ids("behind", 0..10));
    drop(log);
    reopened_holds_exactly(dir.path(), &expected).await;
}
