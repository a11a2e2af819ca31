//! `omnilog bench`: measures every stage of omnilog against its physical limit, in one run
//! on one seeded history, and prints a table (and writes it as JSON):
//!
//! - (a) the limit: read every record of the log and decode it, nothing else;
//! - (b) fold every view in memory (the pure folds alone);
//! - (c) the durable projection of every view into a fresh store (what `replay` does);
//! - (d) ingest over HTTP on loopback: batched, and one event a request, many clients;
//! - (e) ingest-to-visible latency at a steady offered rate (POST, then the journey query
//!   with the answer's read token), p50 and p99, on a server that has written the
//!   checkpoint of the stages before;
//! - (f) the peak resident memory of the whole run;
//! - (g) with `--kafka BROKERS` (an empty broker, e.g. tansu with memory storage): the same
//!   history on Kafka, read by a bare rdkafka consumer (the limit there), then consumed and
//!   folded by omnilog, in memory and durably; the shares are of the bare consumer.
//!
//! The machine is shared and noisy: compare the stages of one run (the ratios), not
//! absolute figures across runs.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use omnilog_events::{Destination, Event, to_canonical_json};
use omnilog_log::{EmbeddedLog, PartitionRange, Scan, SharedLog, Topic};
use omnilog_projector::{IDENTITY_PART_ENTRIES, InMemoryFold, Projectable, ReplayOptions, replay};
use omnilog_store::ViewStore;
use omnilog_testkit::{HistoryConfig, history};
use omnilog_views::{IdentityView, LogPosition};
use serde_json::json;

use crate::config::ServerArgs;
use crate::serve::{self, standard_views};

/// Options of `omnilog bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Events of the seeded history the log-side stages (a)–(c) run on. Stage (b) holds
    /// each view's whole state in memory (the journey view's is about 46 MB of keys and
    /// values per 100,000 events).
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Events sent through HTTP in the batched ingest stage (d).
    #[arg(long, default_value_t = 200_000)]
    ingest_events: u64,
    /// Requests of one event each in the single-event ingest stage (d).
    #[arg(long, default_value_t = 20_000)]
    single_requests: u64,
    /// Concurrent HTTP clients in stage (d).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Offered rate (events a second, one event a request) of the latency stage (e).
    #[arg(long, default_value_t = 500)]
    latency_rate: u64,
    /// Seconds of the latency stage (e).
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Records a replay reads at once in stage (c) (`replay --batch`).
    #[arg(long, default_value_t = 8_192)]
    replay_batch: usize,
    /// What each view's cached records may weigh in memory in stage (c), in MiB
    /// (`replay --cache-mb`).
    #[arg(long, default_value_t = 128)]
    cache_mb: usize,
    /// Seed of the history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also measure stage (g) on this Kafka cluster, whose omnilog topics must be empty
    /// (a fresh tansu: `tansu broker --storage-engine memory://tansu/ ...`).
    #[arg(long)]
    kafka: Option<String>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// Work in this directory and keep it (the history's log is DIR/log), instead of a
    /// temporary one: to profile `omnilog replay --data-dir DIR` or export the history.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Only write the history's log into the `--keep` directory, then stop.
    #[arg(long, requires = "keep")]
    log_only: bool,
    /// Also run this PostgreSQL peer script (`../shared/peer/postgres.sh`) on the same
    /// history (exported as canonical JSON lines), and load that history through omnilog's
    /// API for the side-by-side (stages d and p).
    #[arg(long)]
    peer: Option<PathBuf>,
}

/// What the PostgreSQL peer measured.
struct PeerFigures {
    events: u64,
    load_seconds: f64,
    project_seconds: f64,
}

/// Exports the history of the log in `data_dir` to `file` (canonical JSON lines), with this
/// binary in a child process, as an analyst would.
fn export_history(data_dir: &std::path::Path, file: &std::path::Path) -> anyhow::Result<u64> {
    let output =
        std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let written = output.try_clone()?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("export")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--topics", "all"])
        .env("RUST_LOG", "warn")
        .stdout(output)
        .status()
        .context("running omnilog export")?;
    anyhow::ensure!(status.success(), "omnilog export failed ({status})");
    // Synced now, not by the kernel 30 s later, in the middle of the ingest stages: another
    // file's writeback stalls the log's `fdatasync` (a probe of 4 KiB writes and syncs
    // peaked at 449 ms while 1.5 GB of another file were written out, 92 ms without), and
    // three of nine peer runs saw stage (e) stall for about a second.
    written
        .sync_all()
        .with_context(|| format!("syncing {}", file.display()))?;
    let lines =
        std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(file)?)).count();
    Ok(lines as u64)
}

/// Waits until the disk under `dir` has synced a 4 KiB write every 2 ms for 3 s, each in
/// under 5 ms (at most 30 s), and returns how long that took. Files deleted before the ingest stages
/// (the peer's PostgreSQL cluster, the views of stage c) are discarded by the kernel over
/// the next seconds on a file system mounted with `discard`, as this machine's root is,
/// and that stalls every `fdatasync` meanwhile: a probe syncing 4 KiB every 2 ms peaked at
/// 47 to 196 ms each second for 12 s after a 1.5 GB file was deleted, at 70 to 88 ms for
/// 11 s after the peer script ended, and under 5 ms otherwise (docs/benchmarks-journal.md). Stage
/// (e) measures omnilog's latency, not that aftermath.
fn wait_for_quiet_disk(dir: &std::path::Path) -> anyhow::Result<Duration> {
    use std::io::{Seek, Write};
    // The stalls come a second or two apart, with fast syncs between them: quiet means
    // none for a while, not a few fast ones.
    const SLOW: Duration = Duration::from_millis(5);
    const QUIET_FOR: Duration = Duration::from_secs(3);
    const AT_MOST: Duration = Duration::from_secs(30);
    let path = dir.join("disk-probe");
    let mut probe =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let started = Instant::now();
    let mut last_slow = started;
    while last_slow.elapsed() < QUIET_FOR && started.elapsed() < AT_MOST {
        let synced = Instant::now();
        probe.rewind()?;
        probe.write_all(&[0u8; 4096])?;
        probe.sync_data()?;
        if synced.elapsed() >= SLOW {
            last_slow = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(probe);
    std::fs::remove_file(&path).ok();
    Ok(started.elapsed())
}

/// Waits for a quiet disk ([`wait_for_quiet_disk`]) off the async threads (a server may run
/// on them), and says how long it took.
async fn quiet_disk(dir: &std::path::Path, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let dir = dir.to_owned();
    let waited = tokio::task::spawn_blocking(move || wait_for_quiet_disk(&dir)).await??;
    writeln!(out, "  disk quiet after {:.1} s", waited.as_secs_f64())?;
    Ok(())
}

/// Runs the peer script on `file` and reads its figures from its output ("load X s,
/// projection Y s, ..." and "postgres peer: N events, ...").
fn run_peer(script: &std::path::Path, file: &std::path::Path) -> anyhow::Result<PeerFigures> {
    let output = std::process::Command::new("bash")
        .arg(script)
        .arg(file)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({}): {stdout}{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let number_after = |text: &str, marker: &str| -> Option<f64> {
        text.split(marker)
            .nth(1)?
            .split_whitespace()
            .next()?
            .trim_end_matches(',')
            .parse()
            .ok()
    };
    let figures = (|| {
        Some(PeerFigures {
            events: number_after(&stdout, "postgres peer: ")? as u64,
            load_seconds: number_after(&stdout, "load ")?,
            project_seconds: number_after(&stdout, "projection ")?,
        })
    })();
    figures.with_context(|| format!("the peer's output is not as expected: {stdout}"))
}

/// One row of the table.
struct Row {
    stage: &'static str,
    what: String,
    count: u64,
    seconds: f64,
    /// The peak resident memory of the stage, in MB.
    peak_mb: Option<f64>,
}

/// Resets the process's peak resident memory to what it holds now (`/proc/self/clear_refs`,
/// Linux 4.0 and later), so the next reading is the peak of what runs in between.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A row with the peak memory of its stage (since the previous row), then a reset for the
/// next one. A row that already has a peak (a child process's) keeps it.
fn measured(mut row: Row) -> Row {
    if row.peak_mb.is_none() {
        row.peak_mb = crate::progress::peak_rss_mb();
    }
    reset_peak();
    row
}

impl Row {
    fn rate(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-9)
    }
}

/// Where every partition the stages read ends: (topic, partition) → end offset.
type Ends = std::collections::BTreeMap<(Topic, u32), u64>;

/// The ends the log reports for both topics the views read.
async fn ends_of(log: &SharedLog) -> anyhow::Result<Ends> {
    let mut ends = Ends::new();
    for topic in [Topic::Interactions, Topic::Agents] {
        for (partition, end) in log.end_offsets(topic).await?.into_iter().enumerate() {
            ends.insert((topic, partition as u32), end);
        }
    }
    Ok(ends)
}

/// Decodes every record of `topics` up to `ends`, in the order the log reads fastest,
/// handing each event with its position to `each`; returns how many there were. Reads up
/// to the given ends, not until a read comes back empty: a broker may report an end short
/// of what it holds (see docs/operations.md on tansu), and a slow fetch may come back empty before
/// the end.
async fn for_each_event(
    log: &SharedLog,
    ends: &Ends,
    topics: &[Topic],
    mut each: impl FnMut(Event, LogPosition) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let ranges = ends
        .iter()
        .filter(|((topic, _), _)| topics.contains(topic))
        .map(|(&(topic, partition), &end)| PartitionRange {
            topic,
            partition,
            from: 0,
            to: end,
        })
        .collect();
    // The next batch is read while this one is decoded, as a replay's reader does.
    let (batches, mut read) = tokio::sync::mpsc::channel(2);
    let reader_log = log.clone();
    let reader = tokio::spawn(async move {
        let mut scan = Scan::new(ranges);
        loop {
            let records = reader_log.scan_next(&mut scan, 8_192).await?;
            if records.is_empty() || batches.send(records).await.is_err() {
                return Ok::<_, omnilog_log::LogError>(());
            }
        }
    });
    let mut count = 0;
    while let Some(records) = read.recv().await {
        // As the projections decode: a batch's equal customers once.
        let mut decoder = omnilog_events::EventDecoder::new();
        for record in &records {
            let position = LogPosition {
                partition: record.partition,
                offset: record.offset,
            };
            each(decoder.decode(&record.payload)?, position)?;
            count += 1;
        }
    }
    reader.await??;
    Ok(count)
}

/// A server with its projectors, on loopback over a fresh data dir, and its base URL.
async fn loopback_server(data_dir: PathBuf) -> anyhow::Result<(serve::Server, String)> {
    let config = ServerArgs {
        data_dir: Some(data_dir),
        listen: Some("127.0.0.1:0".parse()?),
        ..ServerArgs::default()
    }
    .resolve()?;
    let server = serve::start(config).await?;
    let base = format!("http://{}", server.addr);
    Ok((server, base))
}

/// Request bodies of `per_request` canonical JSON events each (JSON arrays).
fn json_bodies(events: &[impl AsRef<str>], per_request: usize) -> Vec<Bytes> {
    events
        .chunks(per_request)
        .map(|chunk| {
            let events: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
            Bytes::from(format!("[{}]", events.join(",")))
        })
        .collect()
}

/// Folds one view in memory over the topics it reads, up to `ends`; returns the events
/// folded and the state (dropped by the caller, after its clock stops).
async fn fold_in_memory(
    log: &SharedLog,
    ends: &Ends,
    view: &Arc<dyn Projectable>,
) -> anyhow::Result<(u64, Box<dyn InMemoryFold>)> {
    let mut fold = view.clone().in_memory();
    let topics: Vec<Topic> = view
        .topics()
        .iter()
        .map(|&d| omnilog_projector::topic_of(d))
        .collect();
    let folded = for_each_event(log, ends, &topics, |event, position| {
        Ok(fold.apply(&event, position)?)
    })
    .await?;
    Ok((folded, fold))
}

/// (b): each of the served views ([`standard_views`]) folded in memory on its own; (name,
/// events, seconds) each, timed until its fold is done (its state is dropped after the
/// clock stops).
async fn fold_each_in_memory(
    log: &SharedLog,
    ends: &Ends,
) -> anyhow::Result<Vec<(&'static str, u64, f64)>> {
    let mut folds = Vec::new();
    for view in standard_views() {
        let started = Instant::now();
        let (count, state) = fold_in_memory(log, ends, &view).await?;
        let seconds = started.elapsed().as_secs_f64();
        drop(state);
        folds.push((view.name(), count, seconds));
    }
    Ok(folds)
}

/// (b) and (g): every served view and the identity view folded in memory in one read of
/// the log, each event decoded once and applied to each view in turn, on one thread: what
/// the views' folds cost without a store, a checkpoint or a second core. Two cores can do
/// the replay's work at most about twice as fast as one, so (c) can be at most about twice
/// this rate, whatever the store costs. Only about: this fold holds every record of the
/// history at once, where a replay holds one pass's, so on a long history its records miss
/// the processor's caches more often than a replay's do (at 1M events (c) reached 82 to
/// 94 % of twice this rate; docs/benchmarks-journal.md, "2026-12-06, late morning").
/// Returns the events folded and how many views (the identity view aside) folded them.
async fn fold_all_in_memory(log: &SharedLog, ends: &Ends) -> anyhow::Result<(u64, usize)> {
    let mut folds: Vec<Box<dyn InMemoryFold>> = standard_views()
        .into_iter()
        .map(Projectable::in_memory)
        .collect();
    let mut identity = IdentityView::new();
    let topics = [Topic::Interactions, Topic::Agents];
    let folded = for_each_event(log, ends, &topics, |event, position| {
        for fold in &mut folds {
            fold.apply(&event, position)?;
        }
        identity.apply(&event);
        Ok(())
    })
    .await?;
    Ok((folded, folds.len()))
}

/// The row of [`fold_all_in_memory`], timed: `source` is what the row's text starts with
/// ("" for the embedded log).
async fn fold_all_row(
    stage: &'static str,
    source: &str,
    log: &SharedLog,
    ends: &Ends,
) -> anyhow::Result<Row> {
    let started = Instant::now();
    let (folded, views) = fold_all_in_memory(log, ends).await?;
    Ok(measured(Row {
        stage,
        what: format!(
            "{source}fold all {views} views and the identity view in memory, each event decoded once, on one thread"
        ),
        count: folded,
        seconds: started.elapsed().as_secs_f64(),
        peak_mb: None,
    }))
}

/// Replays `views` into a fresh store in `dir`: the durable projection of (c) and (g).
async fn replay_into(
    log: &SharedLog,
    dir: &std::path::Path,
    views: Vec<Arc<dyn Projectable>>,
    identity: bool,
    args: &BenchArgs,
) -> anyhow::Result<u64> {
    let store = ViewStore::open_for_replay(dir)?;
    let spill = tempfile::Builder::new()
        .prefix("replay-spill-")
        .tempdir_in(dir.parent().unwrap_or(std::path::Path::new(".")))?;
    let options = ReplayOptions {
        until: None,
        batch: args.replay_batch,
        cache_bytes: args.cache_mb.saturating_mul(1024 * 1024),
        pass_records: None,
        identity,
        identity_sink: None,
        spill_dir: Some(spill.path().to_owned()),
        identity_part_entries: IDENTITY_PART_ENTRIES,
    };
    // The replay syncs the store as it marks the versions active: its checkpoints are
    // flushed when it returns.
    let (replayed, _) = replay(log.clone(), &store, views, options, |_, _| {}).await?;
    Ok(replayed
        .iter()
        .map(|view| view.checkpoint.events_applied)
        .max()
        .unwrap_or(0))
}

/// Stage (g): the history on Kafka, drained by a bare consumer, then consumed and folded
/// by omnilog (in memory, and durably as `replay --brokers` does).
async fn kafka_stages(brokers: &str, args: &BenchArgs, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut config = omnilog_kafka::KafkaConfig::new(brokers);
    config.client_id = format!("omnilog-bench-{}", std::process::id());
    let log: SharedLog = Arc::new(
        omnilog_kafka::KafkaLog::open(config.clone())
            .await
            .with_context(|| format!("opening the log on the Kafka cluster at {brokers}"))?,
    );
    let topics = [Topic::Interactions, Topic::Agents];
    for topic in topics {
        if log.end_offsets(topic).await?.iter().any(|&end| end > 0) {
            anyhow::bail!(
                "{} on {brokers} already holds records; stage (g) needs empty topics (a fresh broker)",
                topic.name()
            );
        }
    }
    // The ends of every partition, from the append answers (a broker's own report of
    // them may fall short: see docs/operations.md on tansu).
    let mut ends = Ends::new();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    let mut appended = 0u64;
    let events = history(HistoryConfig::with_events(args.seed, args.events).with_customer_ids());
    let mut events = events.peekable();
    while events.peek().is_some() {
        batch.extend(
            events
                .by_ref()
                .take(10_000)
                .filter_map(|event| omnilog_ingest::log_record(&event)),
        );
        let topics_of: Vec<Topic> = batch.iter().map(|r| r.topic).collect();
        for (outcome, topic) in log
            .append(std::mem::take(&mut batch))
            .await?
            .iter()
            .zip(topics_of)
        {
            let position = outcome.position();
            let end = ends.entry((topic, position.partition)).or_default();
            *end = (*end).max(position.offset + 1);
            appended += 1;
        }
    }
    rows.push(measured(Row {
        stage: "g",
        what: "append to Kafka (idempotent producer, acks=all, 10k a batch)".into(),
        count: appended,
        seconds: started.elapsed().as_secs_f64(),
        peak_mb: None,
    }));

    let (count, elapsed) = tokio::task::spawn_blocking(move || {
        omnilog_kafka::drain_with_bare_consumer(&config, &topics, appended, Duration::from_secs(2))
    })
    .await??;
    rows.push(measured(Row {
        stage: "g",
        what: "bare rdkafka consumer: read every record, nothing else (the Kafka limit)".into(),
        count,
        seconds: elapsed.as_secs_f64(),
        peak_mb: None,
    }));

    // The views as a server on Kafka folds them (each timeline line's summary in the view).
    let views = serve::views_with(omnilog_views::reporting::ReportingConfig::default(), false);
    let started = Instant::now();
    // Labelled with the folds made, not the views served: a label that counted the served
    // views once named five views over three folds.
    let folds = fold_each_in_memory(&log, &ends).await?;
    rows.push(measured(Row {
        stage: "g",
        what: format!(
            "consume from Kafka and fold all {} views in memory, one after the other",
            folds.len()
        ),
        // Per event of the log, as (b) counts: each view reads the topics it folds.
        count: appended,
        seconds: started.elapsed().as_secs_f64(),
        peak_mb: None,
    }));
    // As (b): every view and the identity view, each event read and decoded once, on one
    // thread. (A row of each view on a task of its own, with its own consumers, went: a
    // projector reads and decodes once for all its views, `omnilog_projector::group`.)
    rows.push(fold_all_row("g", "consume from Kafka and ", &log, &ends).await?);

    let scratch = tempfile::tempdir().context("creating a scratch dir")?;
    let started = Instant::now();
    replay_into(&log, scratch.path(), views, true, args).await?;
    rows.push(measured(Row {
        stage: "g",
        what: "consume from Kafka and project all views and the identity view durably (replay --brokers)".into(),
        count: appended,
        seconds: started.elapsed().as_secs_f64(),
        peak_mb: None,
    }));
    Ok(())
}

/// Where a run works: a temporary directory, or the one `--keep` names.
enum Scratch {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Scratch {
    fn path(&self) -> &std::path::Path {
        match self {
            Scratch::Temporary(dir) => dir.path(),
            Scratch::Kept(dir) => dir,
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    reset_peak();
    let scratch = match &args.keep {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                anyhow::bail!("--keep {}: the directory is not empty", dir.display());
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Scratch::Kept(dir.clone())
        }
        None => Scratch::Temporary(tempfile::tempdir().context("creating a scratch dir")?),
    };
    let mut rows = Vec::new();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "omnilog bench: {} events, seed {}",
        args.events, args.seed
    )?;

    // The log the log-side stages read.
    let log: SharedLog = Arc::new(EmbeddedLog::open(
        &scratch.path().join("log"),
        omnilog_log::PartitionCounts::default(),
    )?);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for event in history(HistoryConfig::with_events(args.seed, args.events).with_customer_ids()) {
        batch.push(
            omnilog_ingest::log_record(&event)
                .context("a generated event without a partition key")?,
        );
        if batch.len() == 10_000 {
            log.append(std::mem::take(&mut batch)).await?;
        }
    }
    log.append(batch).await?;
    let ends = ends_of(&log).await?;
    let total: u64 = ends.values().sum();
    rows.push(measured(Row {
        stage: "-",
        what: "generate and append to the embedded log (durable, 10k a batch)".into(),
        count: total,
        seconds: started.elapsed().as_secs_f64(),
        peak_mb: None,
    }));
    writeln!(out, "  log written: {total} events")?;
    if args.log_only {
        writeln!(
            out,
            "  the history's log is in {}",
            scratch.path().join("log").display()
        )?;
        return Ok(());
    }

    // (a) read and decode.
    let started = Instant::now();
    let decoded = for_each_event(
        &log,
        &ends,
        &[Topic::Interactions, Topic::Agents],
        |event, _| {
            std::hint::black_box(event);
            Ok(())
        },
    )
    .await?;
    rows.push(measured(Row {
        stage: "a",
        what: "read the log and decode every event (the limit)".into(),
        count: decoded,
        seconds: started.elapsed().as_secs_f64(),
        peak_mb: None,
    }));

    // (b) fold every view in memory, each view on its own so the table shows which costs.
    let mut fold_seconds = 0.0;
    let folds = fold_each_in_memory(&log, &ends).await?;
    let folded_views = folds.len();
    for (name, folded, seconds) in folds {
        fold_seconds += seconds;
        rows.push(measured(Row {
            stage: "b",
            what: format!("fold the {name} view in memory (decode included)"),
            count: folded,
            seconds,
            peak_mb: None,
        }));
    }
    rows.push(measured(Row {
        stage: "b",
        what: format!("fold all {folded_views} views in memory, one after the other"),
        count: total,
        seconds: fold_seconds,
        peak_mb: None,
    }));
    let one_thread = fold_all_row("b", "", &log, &ends).await?;
    // What bounds (c) below the store: the views' folds on one thread, doubled for two
    // cores (docs/benchmarks-journal.md, "2026-12-06, late morning").
    let one_thread_rate = one_thread.rate();
    rows.push(one_thread);

    // (c) the durable projection: each view on its own (which costs what), then every
    // view and the identity view at once into a fresh store, as `replay` does it. The
    // stores are deleted only after the last of these stages: this machine's root is
    // mounted with `discard`, and a deleted store is trimmed over the next seconds, which
    // stalls every `fsync` meanwhile (see [`wait_for_quiet_disk`]), the next stage's
    // included.
    let views = standard_views();
    let mut stores = Vec::new();
    for view in &views {
        let started = Instant::now();
        let dir = scratch.path().join(format!("views-{}", view.name()));
        let count = replay_into(&log, &dir, vec![view.clone()], false, &args).await?;
        rows.push(measured(Row {
            stage: "c",
            what: format!("durable projection of the {} view (replay)", view.name()),
            count,
            seconds: started.elapsed().as_secs_f64(),
            peak_mb: None,
        }));
        stores.push(dir);
    }
    let started = Instant::now();
    let dir = scratch.path().join("views-all");
    replay_into(&log, &dir, views.clone(), true, &args).await?;
    rows.push(measured(Row {
        stage: "c",
        what: "durable projection of all views and the identity view at once (replay), checkpoints flushed".into(),
        count: total,
        seconds: started.elapsed().as_secs_f64(),
        peak_mb: None,
    }));
    stores.push(dir);
    drop(log);
    let (seconds, replay_rss_mb) = replay_in_child(scratch.path())?;
    for store in stores {
        std::fs::remove_dir_all(store).ok();
    }
    rows.push(measured(Row {
        stage: "c",
        what: "`omnilog replay` of all views and the identity view (a child process)".into(),
        count: total,
        seconds,
        peak_mb: replay_rss_mb,
    }));
    writeln!(out, "  log-side stages done")?;
    let peer = match &args.peer {
        Some(script) => {
            let file = scratch.path().join("history.jsonl");
            let exported = export_history(scratch.path(), &file)?;
            // The peer gets the quiet disk omnilog's own stages get: the log-side stages
            // just deleted their stores, which a `discard` mount trims over the next
            // seconds, and the export wrote the history.
            quiet_disk(scratch.path(), &mut out).await?;
            let figures = run_peer(script, &file)?;
            for (what, seconds) in [
                (
                    "PostgreSQL peer: load the history (COPY into jsonb rows, indexed)",
                    figures.load_seconds,
                ),
                (
                    "PostgreSQL peer: the reporting view as one SQL statement",
                    figures.project_seconds,
                ),
                (
                    "PostgreSQL peer: load and report",
                    figures.load_seconds + figures.project_seconds,
                ),
            ] {
                // The peer runs in PostgreSQL's processes: no peak of ours to report.
                rows.push(Row {
                    stage: "p",
                    what: what.to_owned(),
                    count: figures.events,
                    seconds,
                    peak_mb: None,
                });
            }
            reset_peak();
            writeln!(out, "  peer done ({exported} events exported)")?;
            Some((file, figures))
        }
        None => None,
    };
    if let Some(brokers) = &args.kafka {
        kafka_stages(brokers, &args, &mut rows).await?;
        writeln!(out, "  kafka stages done")?;
    }

    // (d) and (e): a real server on loopback, once the disk is quiet again.
    quiet_disk(scratch.path(), &mut out).await?;
    let (server, base) = loopback_server(scratch.path().join("server")).await?;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    // Fresh histories (other seeds), so nothing is a duplicate of what came before.
    let batched: Vec<String> = history(HistoryConfig::with_events(
        args.seed + 1,
        args.ingest_events,
    ))
    .map(|e| to_canonical_json(&e))
    .collect();
    let bodies = json_bodies(&batched, 1_000);
    let (count, seconds) = post_all(&base, bodies, args.clients).await?;
    rows.push(measured(Row {
        stage: "d",
        what: format!(
            "ingest over HTTP, 1,000 events a request, {} clients",
            args.clients
        ),
        count,
        seconds,
        peak_mb: None,
    }));
    // The single-event stage starts with the projectors caught up, so it measures ingest,
    // not ingest beside the batched stage's backlog.
    server.wait_caught_up(Duration::from_secs(600)).await?;
    let single: Vec<Bytes> = history(HistoryConfig::with_events(
        args.seed + 2,
        args.single_requests,
    ))
    .map(|e| Bytes::from(format!("[{}]", to_canonical_json(&e))))
    .collect();
    let requests = single.len() as u64;
    let (_, seconds) = post_all(&base, single, args.clients).await?;
    rows.push(measured(Row {
        stage: "d",
        what: format!(
            "ingest over HTTP, 1 event a request, {} clients (requests)",
            args.clients
        ),
        count: requests,
        seconds,
        peak_mb: None,
    }));
    // Stage (e) offers 500 events a second to a settled server: the views' checkpoint of
    // the 220,000 events of (d) (tens of MB written and synced while the log syncs beside
    // it) is (d)'s aftermath, not the latency at that rate.
    server.wait_settled(Duration::from_secs(600)).await?;
    writeln!(out, "  ingest stages done")?;
    // The view store's compactions after (d) delete files, which a `discard` mount trims
    // over the next seconds, stalling every `fdatasync` meanwhile: p99 of 56 and 161 ms in
    // two of three runs without this wait (docs/benchmarks-journal.md, "2026-12-03, afternoon"),
    // from (d)'s aftermath, not from 500 events a second.
    quiet_disk(scratch.path(), &mut out).await?;

    let latencies = visible_latencies(&client, &base, &args).await?;
    server.stop().await?;

    // For the side-by-side with the peer: the same history through the API, on a fresh
    // server, until every view has folded it.
    if let Some((file, _)) = &peer {
        let (server, base) = loopback_server(scratch.path().join("peer-server")).await?;
        // The file's text (425 MB at 1M events) is let go before the load starts: this
        // row's peak RSS is the server's and the bodies not yet sent, not a second copy of
        // the history.
        let bodies = {
            let text = std::fs::read_to_string(file)?;
            let lines: Vec<&str> = text.lines().collect();
            json_bodies(&lines, 1_000)
        };
        let started = Instant::now();
        let (count, loaded) = post_all(&base, bodies, args.clients).await?;
        server.wait_caught_up(Duration::from_secs(3_600)).await?;
        // How the time splits: the load, then the views catching up with what the load
        // left them behind.
        let caught_up = started.elapsed().as_secs_f64() - loaded;
        rows.push(measured(Row {
            stage: "d",
            what: format!(
                "load the peer's history over HTTP (1,000 a request, {} clients) until every view has folded it ({loaded:.2} s loading, then {caught_up:.2} s catching up)",
                args.clients
            ),
            count,
            seconds: started.elapsed().as_secs_f64(),
            peak_mb: None,
        }));
        server.stop().await?;
    }

    // The peak of the whole run: the highest of its stages' (which reset the reading), the
    // replay child's aside.
    let peak_rss_mb = rows
        .iter()
        .filter(|r| !r.what.contains("child process"))
        .filter_map(|r| r.peak_mb)
        .chain(crate::progress::peak_rss_mb())
        .reduce(f64::max);
    let limit = rows
        .iter()
        .find(|r| r.stage == "a")
        .map(Row::rate)
        .unwrap_or(1.0);
    let kafka_limit = rows
        .iter()
        .find(|r| r.stage == "g" && r.what.starts_with("bare"))
        .map(Row::rate)
        .unwrap_or(1.0);
    writeln!(out)?;
    writeln!(
        out,
        "| stage | what | count | seconds | per second | share of (a) | peak RSS |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|")?;
    for row in &rows {
        let share = if (row.stage == "b" || row.stage == "c") && row.what.contains("all") {
            format!("{:.0} %", 100.0 * row.rate() / limit)
        } else if row.stage == "g" && row.what.starts_with("consume") {
            format!("{:.0} % of bare", 100.0 * row.rate() / kafka_limit)
        } else {
            "".to_owned()
        };
        writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.0} | {} | {} |",
            row.stage,
            row.what,
            row.count,
            row.seconds,
            row.rate(),
            share,
            row.peak_mb
                .map(|mb| format!("{mb:.0} MB"))
                .unwrap_or_default()
        )?;
    }
    writeln!(
        out,
        "| e | ingest-to-visible latency at {} events/s, 1 a request ({} samples) | p50 {:.1} ms | p99 {:.1} ms | | | |",
        args.latency_rate, latencies.samples, latencies.p50_ms, latencies.p99_ms
    )?;
    writeln!(
        out,
        "| e | of which the POST, until its durable answer | p50 {:.1} ms | p99 {:.1} ms | | | |",
        latencies.answered_p50_ms, latencies.answered_p99_ms
    )?;
    if let Some(mb) = replay_rss_mb {
        writeln!(
            out,
            "| f | peak RSS of `omnilog replay` of the {} events | {mb:.0} MB | | | | |",
            args.events
        )?;
    }
    if let Some(mb) = peak_rss_mb {
        writeln!(
            out,
            "| f | peak RSS of the whole run | {mb:.0} MB | | | | |"
        )?;
    }
    writeln!(
        out,
        "(c) can be at most about twice the views' folds on one thread: {:.0} events/s, {:.0} % of (a)",
        2.0 * one_thread_rate,
        200.0 * one_thread_rate / limit
    )?;
    if let Some((_, figures)) = &peer {
        let rate_of = |stage: &str, start: &str| {
            rows.iter()
                .find(|r| r.stage == stage && r.what.starts_with(start))
                .map(Row::rate)
        };
        let both = figures.events as f64 / (figures.load_seconds + figures.project_seconds);
        let report = figures.events as f64 / figures.project_seconds;
        if let Some(loaded) = rate_of("d", "load the peer's history") {
            writeln!(
                out,
                "load through the API until every view caught up: {loaded:.0} events/s against PostgreSQL's load and report {both:.0} events/s: {:.2}x",
                loaded / both
            )?;
        }
        // The target names `omnilog replay` itself: the child process's row, its start and
        // the identity view included, not the in-process projection beside it.
        if let Some(replayed) = rate_of("c", "`omnilog replay` of all views") {
            writeln!(
                out,
                "`omnilog replay` of all views: {replayed:.0} events/s against PostgreSQL's report SQL {report:.0} events/s: {:.2}x",
                replayed / report
            )?;
        }
    }
    let results = json!({
        "events": args.events,
        "seed": args.seed,
        "stages": rows.iter().map(|r| json!({
            "stage": r.stage,
            "what": r.what,
            "count": r.count,
            "seconds": r.seconds,
            "per_second": r.rate(),
            "peak_rss_mb": r.peak_mb,
        })).collect::<Vec<_>>(),
        "latency": {
            "rate": args.latency_rate,
            "samples": latencies.samples,
            "p50_ms": latencies.p50_ms,
            "p99_ms": latencies.p99_ms,
            "answered_p50_ms": latencies.answered_p50_ms,
            "answered_p99_ms": latencies.answered_p99_ms,
        },
        "peak_rss_mb": peak_rss_mb,
        "replay_peak_rss_mb": replay_rss_mb,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    writeln!(out, "results written to {}", args.out.display())?;
    Ok(())
}

/// Posts every body with `clients` requests in flight, in the order given (each client
/// takes the next); returns (events accepted, seconds).
///
/// In order, as a desk's channels send them: the clients took them from the back before,
/// so the single-event stage sent each customer's events newest first, and every one of
/// them reached the journey view as a late event, put back in its timeline in front of
/// all the others (`perf record` of that stage: a fifth of the journey fold in that path).
async fn post_all(base: &str, bodies: Vec<Bytes>, clients: usize) -> anyhow::Result<(u64, f64)> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let address = base.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (bodies, next, address) = (bodies.clone(), next.clone(), address.clone());
        tasks.spawn(async move {
            let mut connection = LoadConnection::open(&address).await?;
            let mut accepted = 0u64;
            while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                let answer = connection.post(body).await?;
                accepted += answer.accepted + answer.duplicates;
            }
            anyhow::Ok(accepted)
        });
    }
    let mut accepted = 0;
    while let Some(done) = tasks.join_next().await {
        accepted += done??;
    }
    Ok((accepted, started.elapsed().as_secs_f64()))
}

/// One connection of a load-generating client: HTTP/1.1 written and read on the socket
/// itself, one request at a time, as `wrk` does. The client shares the machine's two cores
/// with the server it loads, so what it costs is taken from the server's figure: through
/// hyper's pooled client, its checkout and bookkeeping took about a quarter of the load
/// generator's CPU under one-event requests, and through hyper's own connection (a task of
/// its own that each request was handed to, its answer handed back) the load generator
/// still took a tenth of all samples in user space (`perf record` of stage d, see
/// docs/benchmarks-journal.md).
struct LoadConnection {
    stream: tokio::net::TcpStream,
    address: String,
    /// The request being written, kept for the next.
    request: Vec<u8>,
    /// The answer being read, kept for the next.
    answer: Vec<u8>,
}

/// Bodies up to this size go out in one write with their request's head.
const ONE_WRITE_BODY: usize = 64 * 1024;

impl LoadConnection {
    async fn open(address: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(LoadConnection {
            stream,
            address: address.to_owned(),
            request: Vec::with_capacity(1024),
            answer: Vec::with_capacity(4096),
        })
    }

    /// Posts one body of events and reads the answer: a 202 with its counts, or an error
    /// naming what came instead.
    async fn post(&mut self, body: &[u8]) -> anyhow::Result<IngestAnswer> {
        use tokio::io::AsyncWriteExt as _;
        self.request.clear();
        write!(
            self.request,
            "POST /v1/events HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.address,
            body.len()
        )?;
        if body.len() <= ONE_WRITE_BODY {
            self.request.extend_from_slice(body);
            self.stream.write_all(&self.request).await?;
        } else {
            self.stream.write_all(&self.request).await?;
            self.stream.write_all(body).await?;
        }
        self.answer.clear();
        let head = loop {
            if let Some(head) = answer_head(&self.answer)? {
                break head;
            }
            self.read_more(4096, "before answering").await?;
        };
        let end = head.len + head.content_length;
        while self.answer.len() < end {
            self.read_more(end - self.answer.len(), "mid-answer")
                .await?;
        }
        anyhow::ensure!(
            self.answer.len() == end,
            "the server sent bytes past its answer"
        );
        let answer = receipt(head.status, &self.answer[head.len..])?;
        anyhow::ensure!(
            !head.closes,
            "the server closes the connection after its answer"
        );
        Ok(answer)
    }

    /// Reads what the socket has (room for `room` more bytes at least) after the answer so
    /// far; a closed connection is an error, `when` saying at which point.
    async fn read_more(&mut self, room: usize, when: &str) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt as _;
        self.answer.reserve(room);
        let read = self.stream.read_buf(&mut self.answer).await?;
        anyhow::ensure!(read > 0, "the server closed the connection {when}");
        Ok(())
    }
}

/// What the load generator needs of an answer's head.
struct AnswerHead {
    status: u16,
    /// The head's length in bytes, up to and with its blank line.
    len: usize,
    content_length: usize,
    /// Whether it says `Connection: close`.
    closes: bool,
}

/// The head of the answer at the start of `bytes`, once all of it is there (`httparse`).
fn answer_head(bytes: &[u8]) -> anyhow::Result<Option<AnswerHead>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = response
        .parse(bytes)
        .context("the server's answer is not HTTP/1.1")?
    else {
        return Ok(None);
    };
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    };
    let content_length = header("content-length")
        .and_then(|value| std::str::from_utf8(value).ok()?.trim().parse().ok())
        .context("an answer without a content-length")?;
    let closes = header("connection").is_some_and(|value| value.eq_ignore_ascii_case(b"close"));
    Ok(Some(AnswerHead {
        status: response.code.unwrap_or_default(),
        len,
        content_length,
        closes,
    }))
}

/// What the load generator reads of an ingest answer: typed, so that an answer without these
/// fields is an error rather than a count of zero, and the positions of an answer (1,000 for
/// a request of 1,000 events) are skipped as they are parsed instead of built into maps.
#[derive(serde::Deserialize)]
struct IngestAnswer {
    accepted: u64,
    duplicates: u64,
    token: String,
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    body: Bytes,
) -> anyhow::Result<IngestAnswer> {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    ingest_answer(client.request(request).await?).await
}

/// Reads an ingest answer: a 202 with its counts, or an error naming what came instead.
async fn ingest_answer(
    response: hyper::Response<hyper::body::Incoming>,
) -> anyhow::Result<IngestAnswer> {
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    receipt(status, &bytes)
}

/// An ingest answer's counts, from a 202; another status is an error naming what came.
fn receipt(status: u16, body: &[u8]) -> anyhow::Result<IngestAnswer> {
    anyhow::ensure!(
        status == 202,
        "ingest answered {status}: {}",
        String::from_utf8_lossy(body)
    );
    Ok(serde_json::from_slice(body)?)
}

async fn get(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> anyhow::Result<u16> {
    let request = hyper::Request::get(url).body(Full::new(Bytes::new()))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

struct Latencies {
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    /// The same of the POST alone, until its durable answer: what of a slow sample the log's
    /// group commit took, the rest being the view's fold and the query.
    answered_p50_ms: f64,
    answered_p99_ms: f64,
}

/// (e): one event a request at a steady rate; each is timed from the POST until the
/// journey query with its read token answers (it waits until the view applied it).
async fn visible_latencies(
    client: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
    args: &BenchArgs,
) -> anyhow::Result<Latencies> {
    let wanted = args.latency_rate * args.latency_seconds;
    let events: Vec<Event> =
        history(HistoryConfig::with_events(args.seed + 3, wanted).with_customer_ids())
            .filter(|e| e.destination() == Destination::Interactions)
            .collect();
    let gap = Duration::from_secs_f64(1.0 / args.latency_rate.max(1) as f64);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, event) in events.into_iter().enumerate() {
        tokio::time::sleep_until((started + gap * index as u32).into()).await;
        let client = client.clone();
        let base = base.to_owned();
        tasks.spawn(async move {
            let customer = event.customer_id().unwrap_or_default().to_owned();
            let body = Bytes::from(format!("[{}]", to_canonical_json(&event)));
            let sent = Instant::now();
            let answer = post(&client, &format!("{base}/v1/events"), body).await?;
            let answered = sent.elapsed();
            let token = answer.token;
            let status = get(
                &client,
                &format!("{base}/v1/customers/{customer}/journey?after={token}&wait_ms=10000"),
            )
            .await?;
            anyhow::ensure!(
                status == 200 || status == 404,
                "the journey query answered {status}"
            );
            let total = sent.elapsed();
            anyhow::Ok((total, answered))
        });
    }
    let (mut samples, mut answered) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (visible, posted) = done??;
        samples.push(visible);
        answered.push(posted);
    }
    samples.sort();
    answered.sort();
    let at = |sorted: &[Duration], q: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Latencies {
        samples: samples.len(),
        p50_ms: at(&samples, 0.5),
        p99_ms: at(&samples, 0.99),
        answered_p50_ms: at(&answered, 0.5),
        answered_p99_ms: at(&answered, 0.99),
    })
}

/// `omnilog replay` of the bench's log, as an analyst runs it: this binary in a child
/// process, so its peak memory is the replay's own. Returns (seconds, peak MB).
fn replay_in_child(scratch: &std::path::Path) -> anyhow::Result<(f64, Option<f64>)> {
    let started = Instant::now();
    let output = std::process::Command::new(std::env::current_exe()?)
        .arg("replay")
        .arg("--data-dir")
        .arg(scratch)
        .arg("--out")
        .arg(scratch.join("replayed"))
        .env("RUST_LOG", "warn")
        .output()
        .context("running omnilog replay")?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "omnilog replay failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let peak_mb = stdout
        .split("peak memory ")
        .nth(1)
        .and_then(|rest| rest.split(" MB").next())
        .and_then(|mb| mb.parse().ok());
    Ok((seconds, peak_mb))
}
