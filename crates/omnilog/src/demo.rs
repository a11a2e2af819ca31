//! `omnilog demo`: a first look without installing anything. It generates a seeded
//! cross-channel history with the testkit, appends it to a fresh embedded log (durably,
//! in batches, through the same `EventLog` trait every backend implements), reads every
//! partition back, decodes every event and prints what the log holds.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use omnilog_events::{Destination, EventType};
use omnilog_log::{AppendRecord, EmbeddedLog, EventLog, PartitionCounts, Topic};
use omnilog_testkit::{HistoryConfig, history};

/// Options of `omnilog demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the log here instead of a temporary directory.
    #[arg(long, env = "OMNILOG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Number of events to generate.
    #[arg(long, default_value_t = 50_000, env = "OMNILOG_EVENTS")]
    events: u64,
    /// Seed of the generated history.
    #[arg(long, default_value_t = 42, env = "OMNILOG_SEED")]
    seed: u64,
}

const APPEND_BATCH: usize = 500;

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temporary = tempfile::tempdir().context("creating a temporary data dir")?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let log_dir = data_dir.join("log");
    let log: Arc<dyn EventLog> = Arc::new(
        EmbeddedLog::open(&log_dir, PartitionCounts::default())
            .with_context(|| format!("opening the embedded log in {}", log_dir.display()))?,
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "omnilog demo: embedded log in {}", log_dir.display())?;

    let started = Instant::now();
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    let (mut appended, mut duplicates) = (0u64, 0u64);
    for event in history(HistoryConfig::with_events(args.seed, args.events).with_customer_ids()) {
        let topic = match event.destination() {
            Destination::Interactions => Topic::Interactions,
            Destination::Agents => Topic::Agents,
        };
        let key = event
            .partition_key()
            .context("generated event without a partition key")?
            .to_owned();
        batch.push(AppendRecord {
            topic,
            key,
            event_id: event.event_id,
            payload: omnilog_events::encode(&event).into(),
            headers: Vec::new(),
        });
        if batch.len() == APPEND_BATCH {
            let outcomes = log.append(std::mem::take(&mut batch)).await?;
            duplicates += outcomes.iter().filter(|o| o.is_duplicate()).count() as u64;
            appended += outcomes.len() as u64;
        }
    }
    if !batch.is_empty() {
        let outcomes = log.append(batch).await?;
        duplicates += outcomes.iter().filter(|o| o.is_duplicate()).count() as u64;
        appended += outcomes.len() as u64;
    }
    let append_secs = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "appended {appended} events ({duplicates} duplicates) durably in {append_secs:.2} s ({:.0} events/s)",
        appended as f64 / append_secs
    )?;

    let started = Instant::now();
    let mut by_type: BTreeMap<EventType, u64> = BTreeMap::new();
    let mut by_channel: BTreeMap<String, u64> = BTreeMap::new();
    for topic in [Topic::Interactions, Topic::Agents] {
        writeln!(out, "\n{}:", topic.name())?;
        let ends = log.end_offsets(topic).await?;
        for (partition, end) in ends.iter().enumerate() {
            let mut from = 0;
            while from < *end {
                let records = log.read(topic, partition as u32, from, 4096).await?;
                if records.is_empty() {
                    break;
                }
                for record in &records {
                    let event = omnilog_events::decode(&record.payload).with_context(|| {
                        format!("decoding {topic:?}/{partition}@{}", record.offset)
                    })?;
                    *by_type.entry(event.event_type()).or_default() += 1;
                    if let Some(channel) = event.channel {
                        *by_channel.entry(channel.to_string()).or_default() += 1;
                    }
                }
                from = records.last().map_or(*end, |r| r.offset + 1);
            }
            writeln!(out, "  partition {partition:>2}: {end:>7} events")?;
        }
    }
    let read_secs = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "\nread back and decoded every event in {read_secs:.2} s"
    )?;
    writeln!(out, "\nevents by type:")?;
    for (event_type, count) in &by_type {
        writeln!(out, "  {:<20} {count:>7}", event_type.as_str())?;
    }
    writeln!(out, "\nevents by channel:")?;
    for (channel, count) in &by_channel {
        writeln!(out, "  {channel:<20} {count:>7}")?;
    }
    Ok(())
}
