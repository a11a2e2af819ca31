//! `omnilog import FILE|-`: loads a history of canonical JSON lines (what `omnilog export`
//! writes, from this build or an older one, or another system's events in the contract's
//! form) into a log, through the write path the API uses: the same validation, the same
//! identity resolution, the same group commit.
//!
//! Events go in batches (`--batch`, 10,000 by default), each all or nothing. A line that
//! is not a valid event stops the import before its batch is written, naming the line and
//! the field; the batches before it stay. Importing again is safe: every event keeps its
//! `event_id`, and the log stores an event id once, so a second run (after a stop, a crash,
//! or a fixed line) stores only what the first did not.
//!
//! This is how a data dir of the format before segment files is carried over: export it
//! with the build that wrote it, import the file with this one.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use omnilog_events::Event;
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_log::{EmbeddedLog, PartitionCounts, SharedLog};

use crate::progress::Progress;

/// Options of `omnilog import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The canonical JSON lines to load, one event a line (`omnilog export` writes them);
    /// `-` reads standard input.
    pub file: PathBuf,
    /// The data dir whose embedded log takes the events (created if it does not exist; its
    /// server must be stopped: one process writes a log).
    #[arg(long, env = "OMNILOG_DATA_DIR", required_unless_present = "brokers")]
    pub data_dir: Option<PathBuf>,
    /// Load into the log on this Kafka cluster instead (HOST:PORT[,...]).
    #[arg(long, env = "OMNILOG_BROKERS", conflicts_with = "data_dir")]
    pub brokers: Option<String>,
    /// Partitions of the topics (a new embedded log is created with this many; an
    /// existing one keeps its own, and Kafka's topics must have this many).
    #[arg(long, env = "OMNILOG_PARTITIONS", default_value_t = 12)]
    pub partitions: u32,
    /// Events per batch, each written all or nothing.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
}

async fn open_log(args: &ImportArgs) -> anyhow::Result<SharedLog> {
    match (&args.brokers, &args.data_dir) {
        (Some(brokers), _) => {
            let mut kafka = omnilog_kafka::KafkaConfig::new(brokers.clone());
            kafka.partitions = PartitionCounts::uniform(args.partitions);
            kafka.client_id = format!("omnilog-import-{}", std::process::id());
            Ok(Arc::new(
                omnilog_kafka::KafkaLog::open(kafka)
                    .await
                    .with_context(|| {
                        format!("opening the log on the Kafka cluster at {brokers}")
                    })?,
            ))
        }
        (None, Some(data_dir)) => {
            let dir = data_dir.join("log");
            let existing = dir.join("log.json").exists();
            let log = if existing {
                EmbeddedLog::open_existing(&dir)
            } else {
                EmbeddedLog::open(&dir, PartitionCounts::uniform(args.partitions))
            };
            Ok(Arc::new(log.with_context(|| {
                format!("opening the log in {}", dir.display())
            })?))
        }
        (None, None) => bail!("give --data-dir DIR (the embedded log) or --brokers HOST:PORT"),
    }
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let started = Instant::now();
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("opening {}", args.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let log = open_log(&args).await?;
    let ingest = Ingest::start(log, IngestConfig::default())
        .await
        .context("starting the write path")?;
    let imported = import(input, size, &ingest, args.batch).await?;
    use std::io::Write as _;
    writeln!(
        std::io::stdout(),
        "imported {} events from {} in {:.1} s: {} new, {} already in the log",
        imported.lines,
        args.file.display(),
        started.elapsed().as_secs_f64(),
        imported.accepted,
        imported.duplicates
    )?;
    Ok(())
}

/// Reads events a line at a time and submits them in batches; see the module notes.
async fn import(
    input: Box<dyn Read + Send>,
    size: Option<u64>,
    ingest: &Ingest,
    batch_size: usize,
) -> anyhow::Result<Imported> {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut progress = Progress::bytes("import", size.unwrap_or(0));
    let mut imported = Imported::default();
    let mut batch: Vec<Event> = Vec::with_capacity(batch_size);
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut read_bytes = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .context("reading the history")?;
        if read == 0 {
            break;
        }
        number += 1;
        read_bytes += read as u64;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let event = match omnilog_events::parse_event(text) {
            Ok(event) => event,
            Err(error) => bail!(
                "line {number}: {error}. Nothing of its batch was written; the {} events before it were. \
                 Fix the line and import again: events already in the log are recognised by their event_id and not stored twice",
                imported.lines
            ),
        };
        batch.push(event);
        if batch.len() == batch_size {
            submit(ingest, &mut batch, &mut imported).await?;
            progress.update(read_bytes, size.unwrap_or(read_bytes));
        }
    }
    submit(ingest, &mut batch, &mut imported).await?;
    progress.finish(read_bytes, size.unwrap_or(read_bytes));
    Ok(imported)
}

async fn submit(
    ingest: &Ingest,
    batch: &mut Vec<Event>,
    imported: &mut Imported,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let count = batch.len() as u64;
    let receipt = ingest
        .submit(std::mem::take(batch))
        .await
        .with_context(|| {
            format!(
                "writing events {}..{} (that batch was not written; import again to go on)",
                imported.lines + 1,
                imported.lines + count
            )
        })?;
    imported.lines += count;
    imported.accepted += receipt.accepted as u64;
    imported.duplicates += receipt.duplicates as u64;
    Ok(())
}
