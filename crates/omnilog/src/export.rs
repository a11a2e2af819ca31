//! `omnilog export`: streams the history for analysts, as canonical JSON lines (the event
//! exactly as `POST /v1/events` takes it) or CSV, filtered by customer, channel and event
//! time.
//!
//! Order: the order ingest accepted the events in (`recorded_at`, which ingest stamps
//! monotonically), merged across partitions; within a partition, log order. Memory stays
//! bounded: one batch per partition is held at a time, whatever the size of the history.
//! A customer filter reads only that customer's partition.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use omnilog_events::{Body, Channel, Event};
use omnilog_log::{LogRecord, SharedLog, Topic, partition_for};

use crate::replay::open_log;

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One canonical JSON event per line.
    Jsonl,
    /// One row per event, the canonical JSON in the last column.
    Csv,
}

/// Which topics to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Topics {
    Interactions,
    Agents,
    All,
}

/// Options of `omnilog export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The data dir of the log (its server may be running: the export holds what was
    /// durable when it started).
    #[arg(long, env = "OMNILOG_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Only this customer's events.
    #[arg(long)]
    pub customer: Option<String>,
    /// Only events of this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only events that occurred at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// Only events that occurred before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<DateTime<Utc>>,
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Which topics [default: interactions; agents with `all` or `agents`].
    #[arg(long, value_enum, default_value_t = Topics::Interactions)]
    pub topics: Topics,
}

struct Filter {
    customer: Option<String>,
    channel: Option<Channel>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Filter {
    fn keeps(&self, event: &Event) -> bool {
        self.customer
            .as_deref()
            .is_none_or(|c| event.customer_id() == Some(c))
            && self.channel.is_none_or(|c| event.channel == Some(c))
            && self.from.is_none_or(|from| event.occurred_at >= from)
            && self.to.is_none_or(|to| event.occurred_at < to)
    }
}

/// One partition being read, a batch at a time.
struct Cursor {
    topic: Topic,
    partition: u32,
    next: u64,
    end: u64,
    batch: std::collections::VecDeque<(Event, LogRecord)>,
}

const READ_BATCH: usize = 256;

impl Cursor {
    /// Refills the batch if empty; `false` when the partition is exhausted.
    async fn fill(&mut self, log: &SharedLog, undecodable: &mut u64) -> anyhow::Result<bool> {
        while self.batch.is_empty() && self.next < self.end {
            let records = log
                .read(self.topic, self.partition, self.next, READ_BATCH)
                .await?;
            let Some(last) = records.last() else {
                return Ok(false);
            };
            self.next = last.offset + 1;
            let mut decoder = omnilog_events::EventDecoder::new();
            for record in records {
                match decoder.decode(&record.payload) {
                    Ok(event) => self.batch.push_back((event, record)),
                    Err(error) => {
                        *undecodable += 1;
                        tracing::warn!(
                            topic = record.topic.name(),
                            partition = record.partition,
                            offset = record.offset,
                            %error,
                            "skipping an undecodable record"
                        );
                    }
                }
            }
        }
        Ok(!self.batch.is_empty())
    }

    /// The merge key of the head: when ingest accepted it, then where it is.
    fn head_key(&self) -> Option<(DateTime<Utc>, u8, u32, u64)> {
        self.batch.front().map(|(event, record)| {
            (
                event.recorded_at.unwrap_or(event.occurred_at),
                record.topic as u8,
                record.partition,
                record.offset,
            )
        })
    }
}

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && to < from
    {
        bail!("--to must not be before --from");
    }
    let channel = args
        .channel
        .as_deref()
        .map(|c| {
            Channel::parse(c)
                .with_context(|| format!("--channel {c:?} is not one of {}", Channel::names()))
        })
        .transpose()?;
    let filter = Filter {
        customer: args.customer.clone(),
        channel,
        from: args.from,
        to: args.to,
    };
    // Export reads every record once, in order: a small page cache keeps memory bounded
    // whatever the size of the history.
    let log = open_log(&args.data_dir)?;
    let topics: &[Topic] = match args.topics {
        Topics::Interactions => &[Topic::Interactions],
        Topics::Agents => &[Topic::Agents],
        Topics::All => &[Topic::Interactions, Topic::Agents],
    };
    let mut cursors = Vec::new();
    for &topic in topics {
        let ends = log.end_offsets(topic).await?;
        let only = match (&args.customer, topic) {
            (Some(customer), Topic::Interactions) => Some(partition_for(
                customer.as_bytes(),
                log.partitions(Topic::Interactions),
            )),
            _ => None,
        };
        for (partition, end) in ends.into_iter().enumerate() {
            let partition = partition as u32;
            if only.is_some_and(|p| p != partition) {
                continue;
            }
            cursors.push(Cursor {
                topic,
                partition,
                next: 0,
                end,
                batch: Default::default(),
            });
        }
    }

    let out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut sink = match args.format {
        Format::Jsonl => Sink::Jsonl(out),
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(CSV_HEADER)?;
            Sink::Csv(Box::new(writer))
        }
    };
    let mut undecodable = 0u64;
    let mut written = 0u64;
    // A k-way merge over the partitions' heads, one batch each in memory.
    let mut heads: BTreeMap<(DateTime<Utc>, u8, u32, u64), usize> = BTreeMap::new();
    for (index, cursor) in cursors.iter_mut().enumerate() {
        if cursor.fill(&log, &mut undecodable).await?
            && let Some(key) = cursor.head_key()
        {
            heads.insert(key, index);
        }
    }
    while let Some((_, index)) = heads.pop_first() {
        let cursor = &mut cursors[index];
        let Some((event, record)) = cursor.batch.pop_front() else {
            continue;
        };
        if filter.keeps(&event) {
            match sink.write(&event, &record) {
                Ok(()) => written += 1,
                // A closed pipe (`| head`) ends the export quietly.
                Err(error) if is_broken_pipe(&error) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        if cursor.fill(&log, &mut undecodable).await?
            && let Some(key) = cursor.head_key()
        {
            heads.insert(key, index);
        }
    }
    match sink.flush() {
        Err(error) if is_broken_pipe(&error) => return Ok(()),
        other => other?,
    }
    tracing::info!(written, undecodable, "export finished");
    Ok(())
}

const CSV_HEADER: [&str; 15] = [
    "event_id",
    "recorded_at",
    "occurred_at",
    "type",
    "channel",
    "customer_id",
    "interaction_id",
    "queue",
    "agent_id",
    "source",
    "source_event_id",
    "topic",
    "partition",
    "offset",
    "event",
];

type Stdout = std::io::BufWriter<std::io::StdoutLock<'static>>;

/// Where exported events go.
enum Sink {
    Jsonl(Stdout),
    Csv(Box<csv::Writer<Stdout>>),
}

impl Sink {
    fn write(&mut self, event: &Event, record: &LogRecord) -> anyhow::Result<()> {
        let json = omnilog_events::to_canonical_json(event);
        match self {
            Sink::Jsonl(out) => writeln!(out, "{json}")?,
            Sink::Csv(writer) => write_csv_row(writer, event, record, &json)?,
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(out) => out.flush()?,
            Sink::Csv(writer) => writer.flush()?,
        }
        Ok(())
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.downcast_ref::<csv::Error>().is_some_and(|e| {
                matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

fn write_csv_row(
    writer: &mut csv::Writer<Stdout>,
    event: &Event,
    record: &LogRecord,
    json: &str,
) -> anyhow::Result<()> {
    let (queue, agent) = match &event.body {
        Body::Queued { queue, .. } => (Some(queue.as_str()), None),
        Body::Transferred { to_queue, to_agent } => (to_queue.as_deref(), to_agent.as_deref()),
        Body::Offered { agent_id }
        | Body::OfferDeclined { agent_id }
        | Body::OfferTimedOut { agent_id }
        | Body::Assigned { agent_id }
        | Body::WrappedUp { agent_id, .. }
        | Body::Note { agent_id, .. }
        | Body::AgentState { agent_id, .. } => (None, Some(agent_id.as_str())),
        Body::Message { agent_id, .. } => (None, agent_id.as_deref()),
        _ => (None, None),
    };
    let time = |t: Option<&DateTime<Utc>>| t.map(omnilog_events::format_time).unwrap_or_default();
    writer.write_record([
        event.event_id.to_string().as_str(),
        time(event.recorded_at.as_ref()).as_str(),
        time(Some(&event.occurred_at)).as_str(),
        event.event_type().as_str(),
        event.channel.map(|c| c.as_str()).unwrap_or(""),
        event.customer_id().unwrap_or(""),
        event.interaction_id.as_deref().unwrap_or(""),
        queue.unwrap_or(""),
        agent.unwrap_or(""),
        event.source.as_deref().unwrap_or(""),
        event.source_event_id.as_deref().unwrap_or(""),
        record.topic.name(),
        record.partition.to_string().as_str(),
        record.offset.to_string().as_str(),
        json,
    ])?;
    Ok(())
}
