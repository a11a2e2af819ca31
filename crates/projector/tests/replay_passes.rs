//! A replay builds the same views however it reads the history: one pass a partition, a
//! partition in several passes that each read the log again, or in several passes whose
//! later ones read what the first spilled; and the spill files are gone when it returns.
//! A spilled replay also writes its views' changes of each pass to files of the spill
//! directory, and its identity view in parts: a few files, however many passes; its
//! reports' sums stay in memory, or go aside pass by pass once they are many.

use std::collections::BTreeMap;
use std::sync::Arc;

use omnilog_events::{Destination, Event};
use omnilog_log::{AppendRecord, EmbeddedLog, PartitionCounts, SharedLog, Topic};
use omnilog_projector::{
    Projectable, ReplayOptions, ReplayProgress, SUM_RECORD_BYTES, SUMS_HELD_SHARE, replay,
};
use omnilog_store::ViewStore;
use omnilog_testkit::{HistoryConfig, history};
use omnilog_views::IdentityView;
use omnilog_views::engagement::EngagementView;
use omnilog_views::journey::{JourneyConfig, JourneyView};
use omnilog_views::queue::QueueView;
use omnilog_views::reporting::{ReportingConfig, ReportingView};
use omnilog_views::segments::SegmentsView;
use omnilog_views::state::Entries;

/// The record ingest would append for `event` (its customer already named).
fn record_of(event: &Event) -> AppendRecord {
    omnilog_ingest::log_record(event).expect("an event with a partition key")
}

/// A log of four partitions in `dir` holding 8,000 events of the testkit's history `seed`
/// (customers named), appended `per_append` at a time.
async fn log_with_history(dir: &std::path::Path, seed: u64, per_append: usize) -> SharedLog {
    let log: SharedLog = Arc::new(EmbeddedLog::open(dir, PartitionCounts::uniform(4)).unwrap());
    let events: Vec<Event> =
        history(HistoryConfig::with_events(seed, 8_000).with_customer_ids()).collect();
    for chunk in events.chunks(per_append) {
        log.append(chunk.iter().map(record_of).collect())
            .await
            .unwrap();
    }
    log
}

fn views() -> Vec<Arc<dyn Projectable>> {
    vec![
        Arc::new(JourneyView::new(JourneyConfig::default())),
        Arc::new(QueueView),
        Arc::new(ReportingView::new(ReportingConfig::default())),
        Arc::new(SegmentsView::new(ReportingConfig::default())),
        Arc::new(EngagementView),
    ]
}

/// A view's checkpoint positions: where it stands in each partition.
type Positions = Vec<(&'static str, BTreeMap<(Destination, u32), u64>)>;

/// Each view's replayed records, by view, and the identity view; `on_progress` hears the
/// replay's progress. Asserts that every view's checkpoint stands at the log's ends.
async fn replayed(
    log: &SharedLog,
    dir: &std::path::Path,
    options: ReplayOptions,
    on_progress: impl FnMut(&str, ReplayProgress) + Send,
) -> (Vec<(&'static str, Entries)>, IdentityView) {
    let store = ViewStore::open_for_replay(dir).unwrap();
    let (replayed, identity) = replay(log.clone(), &store, views(), options, on_progress)
        .await
        .unwrap();
    let positions: Positions = replayed
        .iter()
        .map(|view| (view.view, view.checkpoint.positions.clone()))
        .collect();
    let ends = log.end_offsets(Topic::Interactions).await.unwrap();
    for (view, at) in &positions {
        for (partition, end) in ends.iter().enumerate() {
            assert_eq!(
                at.get(&(Destination::Interactions, partition as u32)),
                Some(end),
                "{view}: where its checkpoint stands in interactions partition {partition} ({dir:?})"
            );
        }
    }
    let views = replayed
        .iter()
        .map(|view| {
            let layout = views()
                .iter()
                .find(|v| v.name() == view.view)
                .unwrap()
                .layout();
            let table = store.table_with_layout(view.view, 1, layout).unwrap();
            (view.view, table.dump().unwrap())
        })
        .collect();
    (views, identity.expect("the identity view is returned"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_that_read_the_log_again_or_a_spill_build_the_views_of_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_history(&dir.path().join("log"), 21, 1_000).await;
    let (one_pass, whole_identity) = replayed(
        &log,
        &dir.path().join("one-pass"),
        ReplayOptions {
            pass_records: Some(0),
            ..ReplayOptions::default()
        },
        |_, _| {},
    )
    .await;
    assert_eq!(one_pass.len(), 5);
    assert!(one_pass.iter().all(|(_, entries)| !entries.is_empty()));
    // 200 customers and their handles: folded whole.
    assert!(whole_identity.customer_count() > 100);

    // About 2,000 records a partition, in passes of 300: seven shares of its customers.
    let spill_dir = dir.path().join("spill");
    std::fs::create_dir(&spill_dir).unwrap();
    // The reports' sums stay in memory across passes while they are few for the budget,
    // and go aside as deltas at each pass's end once they are many; either way the same
    // views. A budget of 64 KiB holds a few dozen of them (`sums_held_by_small_budget`),
    // and the reports' hourly figures (keys `b`, `w`, `p`, `s`) are many times that, so
    // that replay takes them apart.
    let small_budget = 64 * 1024;
    let sums_held_by_small_budget = small_budget / SUMS_HELD_SHARE / SUM_RECORD_BYTES;
    let (_, reports) = one_pass
        .iter()
        .find(|(view, _)| *view == "reporting")
        .unwrap();
    let sums = reports
        .iter()
        .filter(|(key, _)| matches!(key.first(), Some(b'b' | b'w' | b'p' | b's')))
        .count();
    assert!(
        sums > 4 * sums_held_by_small_budget,
        "{sums} sums, {sums_held_by_small_budget} held"
    );
    let default_budget = ReplayOptions::default().cache_bytes;
    assert!(sums <= default_budget / SUMS_HELD_SHARE / SUM_RECORD_BYTES);
    for (name, spill, cache_bytes) in [
        ("log-again", None, default_budget),
        ("spilled", Some(spill_dir.clone()), default_budget),
        ("spilled-sums-aside", Some(spill_dir.clone()), small_budget),
    ] {
        let spills = spill.is_some();
        let options = ReplayOptions {
            pass_records: Some(300),
            batch: 250,
            spill_dir: spill,
            cache_bytes,
            // About a dozen parts of the identity view, absorbed at the end.
            identity_part_entries: 50,
            ..ReplayOptions::default()
        };
        // The most spill files seen at once while the replay read, and the most files of
        // the spill directory this process held open (the unnamed ones too).
        let mut most_files = 0;
        let mut most_open = 0;
        let (views, identity) = replayed(&log, &dir.path().join(name), options, |_, _| {
            most_files = most_files.max(std::fs::read_dir(&spill_dir).unwrap().count());
            most_open = most_open.max(open_files_in(&spill_dir));
        })
        .await;
        assert_eq!(views, one_pass, "{name}");
        assert!(identity == whole_identity, "{name}: the identity view");
        assert_eq!(
            identity.events_applied(),
            whole_identity.events_applied(),
            "{name}"
        );
        if spills {
            // Seven shares a partition: six spill files after each first pass.
            assert!(most_files > 0, "the later passes read spill files");
            // Six spill files, two files of runs for each of the four views whose records
            // are a partition's (not a file a pass: 28 passes, 224 files), and one of
            // the identity view's parts.
            assert!(most_open > 0, "the passes' changes were written aside");
            assert!(most_open <= 6 + 2 * 4 + 1, "{most_open} files open at once");
        } else {
            assert_eq!(most_files, 0, "no spill without a spill directory");
            assert_eq!(
                most_open, 0,
                "nothing written aside without a spill directory"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(&spill_dir).unwrap().count(),
        0,
        "every spill file is deleted once read"
    );
}

/// How many of this process's open files are (or were, unnamed or deleted) in `dir`.
fn open_files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.starts_with(dir))
                .count()
        })
        .unwrap_or(0)
}

/// A replay that cannot read its log to the end fails with the read's error, and saves no
/// identity view: its workers hear no end of the log, so none writes a last checkpoint and
/// the identity worker hands nothing to its sink (before, every view wrote its last
/// checkpoint, and the sink could save a view of part of the history while the replay
/// failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_whose_log_cannot_be_read_to_its_end_fails_and_saves_no_identity_view() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    drop(log_with_history(&log_dir, 23, 500).await);
    // Bytes in the middle of the segment damaged once the log is open: its batches'
    // places are known, and the damaged one fails its checksum when the replay reads it.
    let log: SharedLog = Arc::new(EmbeddedLog::open_read_only(&log_dir).unwrap());
    let segment = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 64] {
        *byte ^= 0x5a;
    }
    std::fs::write(&segment, &bytes).unwrap();
    let saved = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = saved.clone();
    let options = ReplayOptions {
        identity: true,
        identity_sink: Some(omnilog_projector::IdentitySink(Arc::new(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }))),
        batch: 500,
        ..ReplayOptions::default()
    };
    let store = ViewStore::open_for_replay(&dir.path().join("out")).unwrap();
    let failed = replay(log, &store, views(), options, |_, _| {})
        .await
        .map(|_| ())
        .expect_err("a damaged batch fails the replay");
    assert!(
        failed.to_string().contains("fails its checksum"),
        "{failed}"
    );
    // No view wrote its last checkpoint: they heard no end of the log (a short history's
    // passes are written by the last checkpoint only).
    for view in views() {
        let table = store
            .table_with_layout(view.name(), 1, view.layout())
            .unwrap();
        assert_eq!(
            table.dump().unwrap(),
            Vec::new(),
            "{} wrote records of a failed replay",
            view.name()
        );
    }
    assert_eq!(
        saved.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no identity view is saved by a failed replay"
    );
}
