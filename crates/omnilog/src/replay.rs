//! `omnilog replay`: rebuilds views from the log into a fresh store, optionally as of a
//! point in event time (`--until`), for analysts; `omnilog serve --data-dir OUT
//! --read-only` then serves what it built.
//!
//! The output holds `views/` (a view store with version 1 of each view, active) and
//! `identity.bin` (the identity view folded over the same events), which a read-only server
//! needs to answer customer lookups and merged journeys. The source log is only read; the
//! server that owns it must be stopped (sled admits one process per directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use omnilog_log::{EmbeddedLog, EventLog, SharedLog, Topic};
use omnilog_projector::replay;
use omnilog_store::{Checkpoint, ViewStore};
use omnilog_views::{IdentityView, View};

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
    /// Records read per partition and batch.
    #[arg(long, default_value_t = omnilog_projector::COMMIT_BATCH)]
    pub batch: usize,
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

/// Opens the embedded log of a data dir to read it, whether or not a server is writing it
/// (a running server's log is read up to what was durable when it opened).
pub fn open_log(data_dir: &Path) -> anyhow::Result<SharedLog> {
    let dir = data_dir.join("log");
    let log = EmbeddedLog::open_read_only(&dir)
        .with_context(|| format!("opening the log in {}", dir.display()))?;
    Ok(Arc::new(log))
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let log: SharedLog = match (&args.brokers, &args.data_dir) {
        (Some(brokers), _) => {
            let mut kafka = omnilog_kafka::KafkaConfig::new(brokers.clone());
            kafka.partitions = omnilog_log::PartitionCounts::uniform(args.partitions.unwrap_or(12));
            kafka.client_id = format!("omnilog-replay-{}", std::process::id());
            Arc::new(
                omnilog_kafka::KafkaLog::open(kafka)
                    .await
                    .with_context(|| {
                        format!("opening the log on the Kafka cluster at {brokers}")
                    })?,
            )
        }
        (None, Some(data_dir)) => open_log(data_dir)?,
        (None, None) => bail!("give --data-dir DIR (the embedded log) or --brokers HOST:PORT"),
    };
    let levels = args
        .service_levels
        .iter()
        .map(|entry| crate::config::parse_service_level(entry))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let all = views_with(crate::config::reporting_config(&levels)?);
    let chosen: Vec<Arc<dyn View>> = if args.views.is_empty() {
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
    let store = ViewStore::open(&views_dir)
        .with_context(|| format!("creating the view store in {}", views_dir.display()))?;
    let started = std::time::Instant::now();
    let progress = indicatif::MultiProgress::new();
    replay_views(&log, &store, chosen, args.until, args.batch, |name| {
        Some(Progress::in_group(&progress, name, 0))
    })
    .await?;
    let identity = fold_identity(&*log, args.until).await?;
    std::fs::write(
        args.out.join(IDENTITY_FILE),
        postcard::to_stdvec(&identity)?,
    )
    .context("saving the identity view")?;
    store.flush()?;
    use std::io::Write as _;
    writeln!(
        std::io::stdout(),
        "replayed into {} in {:.1} s{}{}; serve it with: omnilog serve --data-dir {} --read-only",
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

/// Replays every view into version 1 of its table in `store` (made active), all views at
/// once: each view folds on its own blocking threads, so the views share the cores instead
/// of waiting for each other (the journey view costs several times the others).
/// `progress` makes the progress report of one view, if it is to be reported. Returns
/// each view's final checkpoint.
pub async fn replay_views(
    log: &SharedLog,
    store: &ViewStore,
    views: Vec<Arc<dyn View>>,
    until: Option<DateTime<Utc>>,
    batch: usize,
    mut progress: impl FnMut(&str) -> Option<Progress>,
) -> anyhow::Result<Vec<(&'static str, Checkpoint)>> {
    let mut replays = tokio::task::JoinSet::new();
    for view in views {
        let name = view.name();
        let table = store.table_with_layout(name, 1, view.layout())?;
        store.set_active(name, 1)?;
        let mut progress = progress(name);
        let log = log.clone();
        replays.spawn(async move {
            let checkpoint = replay(log, table, view, until, batch, |step| {
                if let Some(progress) = progress.as_mut() {
                    progress.update(step.read, step.total)
                }
            })
            .await
            .with_context(|| format!("replaying the {name} view"))?;
            let total: u64 = checkpoint.positions.values().sum();
            if let Some(progress) = progress {
                progress.finish(total, total);
            }
            tracing::info!(
                view = name,
                events_applied = checkpoint.events_applied,
                dead_letters = checkpoint.dead_letters,
                "view replayed"
            );
            anyhow::Ok((name, checkpoint))
        });
    }
    let mut replayed = Vec::new();
    while let Some(done) = replays.join_next().await {
        replayed.push(done??);
    }
    Ok(replayed)
}

/// The identity view over every interaction event (that occurred by `until`).
async fn fold_identity(
    log: &dyn EventLog,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<IdentityView> {
    let mut identity = IdentityView::new();
    let ends = log.end_offsets(Topic::Interactions).await?;
    for (partition, &end) in ends.iter().enumerate() {
        let mut from = 0;
        // Past the reported end too, until a read comes back empty (see the projector's
        // replay: a broker may report an end short of what is readable).
        loop {
            let records = if from < end {
                omnilog_log::read_before_end(
                    log,
                    Topic::Interactions,
                    partition as u32,
                    from,
                    8_192,
                )
                .await?
            } else {
                log.read(Topic::Interactions, partition as u32, from, 8_192)
                    .await?
            };
            let Some(last) = records.last() else {
                break;
            };
            from = last.offset + 1;
            for record in &records {
                if let Ok(event) = omnilog_events::decode(&record.payload)
                    && until.is_none_or(|until| event.occurred_at <= until)
                {
                    identity.apply(&event);
                }
            }
        }
    }
    Ok(identity)
}
