//! `omnilog replay`: rebuilds views from the log into a fresh store, optionally as of a
//! point in event time (`--until`), for analysts; `omnilog serve --data-dir OUT
//! --read-only` then serves what it built.
//!
//! The output holds `views/` (a view store with version 1 of each view, active),
//! `identity.bin` (the identity view folded over the same events), which a read-only server
//! needs to answer customer lookups and merged journeys, and `source.json`, the log it was
//! replayed from, which a read-only server reads interactions' events from. The source
//! log is only read, and may be the log of a running server: the replay reads what was
//! durable when it started. The work itself is `omnilog_projector::replay`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use omnilog_log::{EmbeddedLog, SharedLog};
use omnilog_projector::{IDENTITY_PART_ENTRIES, IdentitySink, Projectable, ReplayOptions, replay};
use omnilog_store::ViewStore;
use omnilog_views::IdentityView;
use serde::{Deserialize, Serialize};

use crate::progress::Progress;
use crate::serve::views_with;

/// Options of `omnilog replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The data dir of the log to replay (its server may be running).
    #[arg(long, env = "OMNILOG_DATA_DIR", required_unless_present = "brokers")]
    pub data_dir: Option<PathBuf>,
    /// Replay the log on this Kafka cluster instead (HOST:PORT[,...]); nothing is written
    /// to it and running servers may go on.
    #[arg(long, env = "OMNILOG_BROKERS", conflicts_with = "data_dir")]
    pub brokers: Option<String>,
    /// Partitions of the Kafka topics (they must exist with this count) [default: 12].
    #[arg(long, env = "OMNILOG_PARTITIONS", requires = "brokers")]
    pub partitions: Option<u32>,
    /// Where to build the views (a new or empty directory).
    #[arg(long)]
    pub out: PathBuf,
    /// A view to build (repeatable) [default: every view].
    #[arg(long = "view")]
    pub views: Vec<String>,
    /// Build the views as of this point in event time (RFC 3339): events that occurred
    /// later are left out.
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// Records read at once.
    #[arg(long, default_value_t = 8_192)]
    pub batch: usize,
    /// What each view's records that grow with the history (a customer's journeys) may
    /// weigh in memory, in MiB, before the least recently used are written and let go.
    #[arg(long, default_value_t = 128)]
    pub cache_mb: usize,
    /// Records a pass reads, about: a partition holding more is read in several passes,
    /// each folding a share of its customers, so that memory holds one pass's customers
    /// whatever the history's length; the first pass spills the later passes' records to
    /// files under --out, deleted as they are read. 0: one pass a partition. Default:
    /// 98,304, or fewer if --cache-mb holds the state of fewer (at 512 bytes a record;
    /// never fewer than 65,536)
    #[arg(long)]
    pub pass_records: Option<u64>,
    /// A channel's service-level threshold, as CHANNEL=SECONDS (repeatable), as given to
    /// the server whose views this replay should equal.
    #[arg(
        long = "service-level",
        env = "OMNILOG_SERVICE_LEVELS",
        value_delimiter = ';'
    )]
    pub service_levels: Vec<String>,
}

/// The file of the identity view saved beside replayed views.
pub const IDENTITY_FILE: &str = "identity.bin";

/// Where a replay saves its identity view until the replay has succeeded.
const PARTIAL_IDENTITY_FILE: &str = "identity.bin.partial";
/// The file naming the log replayed views came from.
pub const SOURCE_FILE: &str = "source.json";

/// Where replayed views came from: what a read-only server reads interactions' events from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An embedded log: its directory.
    Embedded { log_dir: PathBuf },
    /// A Kafka cluster.
    Kafka { brokers: String, partitions: u32 },
}

impl Source {
    /// Whether the journey view folded from it keeps its timelines' lines as positions in
    /// the log (`JourneyConfig::timelines_from_log`): an embedded log's, read locally.
    pub fn timelines_from_log(&self) -> bool {
        matches!(self, Source::Embedded { .. })
    }
}

/// Opens the embedded log of a data dir to read it, whether or not a server is writing it
/// (a running server's log is read up to what was durable when it opened).
pub fn open_log(data_dir: &Path) -> anyhow::Result<SharedLog> {
    let dir = data_dir.join("log");
    let log = EmbeddedLog::open_read_only(&dir)
        .with_context(|| format!("opening the log in {}", dir.display()))?;
    Ok(Arc::new(log))
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let (log, source): (SharedLog, Source) =
        match (&args.brokers, &args.data_dir) {
            (Some(brokers), _) => {
                let partitions = args.partitions.unwrap_or(12);
                let mut kafka = omnilog_kafka::KafkaConfig::new(brokers.clone());
                kafka.partitions = omnilog_log::PartitionCounts::uniform(partitions);
                kafka.client_id = format!("omnilog-replay-{}", std::process::id());
                let log = Arc::new(omnilog_kafka::KafkaLog::open(kafka).await.with_context(
                    || format!("opening the log on the Kafka cluster at {brokers}"),
                )?);
                let source = Source::Kafka {
                    brokers: brokers.clone(),
                    partitions,
                };
                (log, source)
            }
            (None, Some(data_dir)) => {
                let log_dir = std::path::absolute(data_dir.join("log"))
                    .with_context(|| format!("resolving {}", data_dir.display()))?;
                (open_log(data_dir)?, Source::Embedded { log_dir })
            }
            (None, None) => bail!("give --data-dir DIR (the embedded log) or --brokers HOST:PORT"),
        };
    let levels = args
        .service_levels
        .iter()
        .map(|entry| crate::config::parse_service_level(entry))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let all = views_with(
        crate::config::reporting_config(&levels)?,
        source.timelines_from_log(),
    );
    let chosen: Vec<Arc<dyn Projectable>> = if args.views.is_empty() {
        all
    } else {
        let mut chosen = Vec::new();
        for name in &args.views {
            let view = all.iter().find(|v| v.name() == name).with_context(|| {
                format!(
                    "no view {name:?}; views: {}",
                    all.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
                )
            })?;
            chosen.push(view.clone());
        }
        chosen
    };
    let views_dir = args.out.join("views");
    if views_dir.exists() && std::fs::read_dir(&views_dir)?.next().is_some() {
        bail!(
            "{} already holds a view store; replay builds into a fresh directory",
            views_dir.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let store = ViewStore::open_for_replay(&views_dir)
        .with_context(|| format!("creating the view store in {}", views_dir.display()))?;
    let started = std::time::Instant::now();
    let group = indicatif::MultiProgress::new();
    // Per name: the bar and where it last stood.
    let mut bars: Vec<(String, Progress, u64, u64)> = Vec::new();
    // The identity view is saved on its replay thread as soon as it is whole: beside the
    // views' last checkpoints when folded whole, after them when made whole from its parts
    // (a long history). Streamed to the file rather than encoded whole first: at 10M
    // events the encoding alone is about 90 MB. Saved under a name of its own, and named
    // `identity.bin` only once the replay has succeeded: a view can still fail its last
    // checkpoint after the identity view is saved, and a failed replay leaves none.
    let identity_path = args.out.join(IDENTITY_FILE);
    let partial_identity = args.out.join(PARTIAL_IDENTITY_FILE);
    let saving_to = partial_identity.clone();
    let save_identity = move |identity: &IdentityView| -> Result<(), String> {
        let save = || -> anyhow::Result<()> {
            let file = std::fs::File::create(&saving_to)?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            postcard::to_io(identity, &mut writer)?;
            writer
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            Ok(())
        };
        save().map_err(|error| format!("saving the identity view: {error:#}"))
    };
    // Where a partition read in several passes keeps its later passes' records; removed
    // when the replay ends, whichever way.
    let spill = tempfile::Builder::new()
        .prefix("spill-")
        .tempdir_in(&args.out)
        .with_context(|| format!("creating a spill directory in {}", args.out.display()))?;
    let options = ReplayOptions {
        until: args.until,
        batch: args.batch,
        cache_bytes: args.cache_mb.saturating_mul(1024 * 1024),
        pass_records: args.pass_records,
        identity: true,
        identity_sink: Some(IdentitySink(Arc::new(save_identity))),
        spill_dir: Some(spill.path().to_owned()),
        identity_part_entries: IDENTITY_PART_ENTRIES,
    };
    let replayed = replay(log, &store, chosen, options, |name, step| {
        let at = match bars.iter().position(|(n, ..)| n == name) {
            Some(at) => at,
            None => {
                let bar = Progress::in_group(&group, name, step.total);
                bars.push((name.to_owned(), bar, 0, 0));
                bars.len() - 1
            }
        };
        let (_, bar, done, total) = &mut bars[at];
        bar.update(step.read, step.total);
        (*done, *total) = (step.read, step.total);
    })
    .await;
    if let Err(error) = replayed {
        // Whatever the identity worker saved of a replay that failed is no view to serve.
        if let Err(removing) = std::fs::remove_file(&partial_identity)
            && removing.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %partial_identity.display(), error = %removing, "could not remove the identity view of a failed replay");
        }
        return Err(error.into());
    }
    std::fs::rename(&partial_identity, &identity_path)
        .with_context(|| format!("naming the identity view {}", identity_path.display()))?;
    std::fs::File::open(&args.out)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", args.out.display()))?;
    for (_, bar, done, total) in bars {
        bar.finish(done, total);
    }
    std::fs::write(
        args.out.join(SOURCE_FILE),
        serde_json::to_vec_pretty(&source)?,
    )
    .context("saving where the replay came from")?;
    use std::io::Write as _;
    writeln!(
        std::io::stdout(),
        "replayed into {} in {:.2} s{}{}; serve it with: omnilog serve --data-dir {} --read-only",
        args.out.display(),
        started.elapsed().as_secs_f64(),
        args.until
            .map(|t| format!(" (as of {})", omnilog_events::format_time(&t)))
            .unwrap_or_default(),
        crate::progress::peak_rss_mb()
            .map(|mb| format!(", peak memory {mb:.0} MB"))
            .unwrap_or_default(),
        args.out.display()
    )?;
    Ok(())
}

/// Where a replay's views were folded from (its `source.json`); `None`, with a warning, when
/// that is not recorded or not readable (what the views read from the log is then not
/// served).
pub fn read_source(out: &Path) -> Option<Source> {
    let path = out.join(SOURCE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(source) => Some(source),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read where the views were replayed from; what they read from the log (interactions' events, journeys' timelines) is not served");
                None
            }
        },
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "no record of where the views were replayed from; what they read from the log (interactions' events, journeys' timelines) is not served");
            None
        }
    }
}

/// Opens the log a replay's `source.json` names ([`read_source`]), to read it; `None` (with
/// a warning) when it cannot be opened: the views are served, what they read from the log
/// (interactions' events, the timelines of journeys folded from an embedded log) is not.
pub async fn open_source(source: &Source) -> Option<SharedLog> {
    let opened: anyhow::Result<SharedLog> = match source {
        Source::Embedded { log_dir } => EmbeddedLog::open_read_only(log_dir)
            .map(|log| Arc::new(log) as SharedLog)
            .map_err(anyhow::Error::from),
        Source::Kafka {
            brokers,
            partitions,
        } => {
            let mut kafka = omnilog_kafka::KafkaConfig::new(brokers.clone());
            kafka.partitions = omnilog_log::PartitionCounts::uniform(*partitions);
            kafka.client_id = format!("omnilog-read-only-{}", std::process::id());
            omnilog_kafka::KafkaLog::open(kafka)
                .await
                .map(|log| Arc::new(log) as SharedLog)
                .map_err(anyhow::Error::from)
        }
    };
    match opened {
        Ok(log) => Some(log),
        Err(error) => {
            tracing::warn!(?source, %error, "cannot open the log the views were replayed from; what they read from it (interactions' events, journeys' timelines) is not served");
            None
        }
    }
}
