//! `omnilog projector --brokers B --view NAME --group G`: one instance of a scaled-out
//! projector group on Kafka.
//!
//! The instances of a group share the interactions partitions through a Kafka consumer
//! group. For each partition it owns, an instance runs a projector runtime in its own
//! store under `<data-dir>/partitions/<p>/`, folding that partition and the whole agents
//! topic (a global table). A partition that comes back to an instance resumes from the
//! position stored with its state; one it never had is folded from offset 0. A partition
//! it loses stops folding, and its store stays on disk for the next time.
//!
//! Ownership is published on `omnilog.ownership` (a claim per instance, every second), so
//! any instance answers any query (see `omnilog_api::cluster`). A partition is claimed as
//! ready once its projection has caught up with the log after the assignment.
//!
//! Each instance also runs the write path (identity lookups need it, and a client may
//! post to any instance).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use omnilog_api::cluster::{Cluster, Owner, exact_cover};
use omnilog_api::{ApiMetrics, router};
use omnilog_events::Destination;
use omnilog_kafka::{Claim, GroupMembership, KafkaConfig, OwnershipBoard};
use omnilog_log::{PartitionSlice, SharedLog, Topic, partition_for};
use omnilog_projector::{Projectable, ProjectorConfig, ProjectorMetrics, ViewRuntime};
use omnilog_store::ViewStore;
use serde_json::json;

use crate::config::{LogBackend, ServerArgs, ServerConfig};
use crate::serve::{self, check_exposure, open_log, start_ingest};

/// How often an instance republishes its claim and checks its partitions.
const TICK: Duration = Duration::from_secs(1);
/// A claim older than this belongs to a dead instance.
const CLAIM_LIFETIME: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct ProjectorArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// A view this instance projects: journey, queue, reporting (repeatable, or
    /// comma-separated) [default: all of them].
    #[arg(long = "view", env = "OMNILOG_VIEWS", value_delimiter = ',')]
    pub views: Vec<String>,
    /// The Kafka consumer group of the instances that share the partitions (required,
    /// here or as `group` in the TOML file).
    #[arg(long, env = "OMNILOG_GROUP")]
    pub group: Option<String>,
    /// The base URL other instances reach this one at [default: http://<listen address>].
    #[arg(long, env = "OMNILOG_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
}

/// A position to reach: topic, partition, offset.
type Target = (Destination, u32, u64);

/// One owned partition's projector.
#[derive(Debug)]
struct Owned {
    runtime: Arc<ViewRuntime>,
    /// Caught up with the log since it was assigned: answers for its partition.
    ready: bool,
    /// The ends of its interactions partition and of the agents topic when it was
    /// assigned: it is ready once every view has folded that far. (Waiting for zero lag
    /// instead would never end under steady traffic.)
    targets: Vec<Target>,
}

/// What the API asks of this instance.
#[derive(Debug)]
struct Instance {
    id: String,
    url: String,
    group: String,
    views: Vec<&'static str>,
    partitions: u32,
    owned: RwLock<BTreeMap<u32, Owned>>,
    board: OwnershipBoard,
}

impl Instance {
    fn ready_partitions(&self) -> Vec<u32> {
        ready_of(&read(&self.owned))
    }

    fn claim(&self, leaving: bool) -> Claim {
        // One read of `owned` for both lists: a second read taken while the first is held
        // waits behind a writer that waits for the first (std's lock lets writers go first),
        // and the claim is published from its own task, beside the loop that writes.
        let (assigned, ready) = {
            let owned = read(&self.owned);
            (owned.keys().copied().collect(), ready_of(&owned))
        };
        Claim {
            instance: self.id.clone(),
            url: self.url.clone(),
            group: self.group.clone(),
            views: self.views.iter().map(|v| (*v).to_owned()).collect(),
            assigned,
            ready,
            at_ms: omnilog_kafka::now_ms(),
            leaving,
        }
    }
}

/// The partitions of `owned` caught up since they were assigned: the ones answered for.
fn ready_of(owned: &BTreeMap<u32, Owned>) -> Vec<u32> {
    owned
        .iter()
        .filter(|(_, owned)| owned.ready)
        .map(|(&p, _)| p)
        .collect()
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Cluster for Instance {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn local(&self) -> BTreeMap<u32, Arc<ViewRuntime>> {
        read(&self.owned)
            .iter()
            .filter(|(_, owned)| owned.ready)
            .map(|(&p, owned)| (p, owned.runtime.clone()))
            .collect()
    }

    fn owners(&self, view: &str) -> Option<Vec<Owner>> {
        let claims = self.board.live_claims(CLAIM_LIFETIME);
        // Groups serving the view, this instance's own first: any one that covers every
        // partition exactly once answers.
        let mut groups: BTreeMap<(bool, String), Vec<Owner>> = BTreeMap::new();
        if self.views.contains(&view) {
            groups
                .entry((false, self.group.clone()))
                .or_default()
                .push(Owner {
                    url: self.url.clone(),
                    partitions: self.ready_partitions(),
                    local: true,
                });
        }
        for claim in claims {
            if claim.instance == self.id || !claim.views.iter().any(|v| v == view) {
                continue;
            }
            let own_group = claim.group == self.group && self.views.contains(&view);
            groups
                .entry((!own_group, claim.group.clone()))
                .or_default()
                .push(Owner {
                    url: claim.url,
                    partitions: claim.ready,
                    local: false,
                });
        }
        groups.into_values().find_map(|mut owners| {
            owners.retain(|owner| !owner.partitions.is_empty());
            exact_cover(self.partitions, &owners).then_some(owners)
        })
    }

    fn partition_of(&self, customer_id: &str) -> u32 {
        partition_for(customer_id.as_bytes(), self.partitions)
    }

    fn describe(&self) -> serde_json::Value {
        let claims = self.board.live_claims(CLAIM_LIFETIME);
        json!({
            "instance": self.id,
            "group": self.group,
            "instances": claims.iter().map(|claim| json!({
                "instance": claim.instance,
                "url": claim.url,
                "group": claim.group,
                "views": claim.views,
                "assigned": claim.assigned,
                "ready": claim.ready,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The views named by `--view`, checked.
fn chosen_views(
    all: Vec<Arc<dyn Projectable>>,
    names: &[String],
) -> anyhow::Result<Vec<Arc<dyn Projectable>>> {
    if names.is_empty() {
        return Ok(all);
    }
    let known: Vec<&'static str> = all.iter().map(|v| v.name()).collect();
    for name in names {
        if !known.contains(&name.as_str()) {
            bail!("--view {name:?}: no such view; views: {}", known.join(", "));
        }
    }
    Ok(all
        .into_iter()
        .filter(|view| names.iter().any(|name| name == view.name()))
        .collect())
}

fn kafka_config(config: &ServerConfig, instance: &str) -> anyhow::Result<KafkaConfig> {
    let LogBackend::Kafka {
        brokers,
        replication,
        delivery_timeout,
    } = &config.log
    else {
        bail!("projector runs on Kafka: give --brokers HOST:PORT");
    };
    let mut kafka = KafkaConfig::new(brokers.clone());
    kafka.partitions = omnilog_log::PartitionCounts::uniform(config.partitions);
    kafka.replication = *replication;
    kafka.delivery_timeout = *delivery_timeout;
    kafka.client_id = instance.to_owned();
    Ok(kafka)
}

/// Starts or stops partitions' projectors to match the group's assignment.
async fn follow_assignment(
    instance: &Instance,
    log: &SharedLog,
    data_dir: &std::path::Path,
    views: &[Arc<dyn Projectable>],
    metrics: &ProjectorMetrics,
    assigned: &BTreeSet<u32>,
) -> anyhow::Result<()> {
    let current: BTreeSet<u32> = read(&instance.owned).keys().copied().collect();
    for &lost in current.difference(assigned) {
        let owned = write(&instance.owned).remove(&lost);
        if let Some(owned) = owned {
            tracing::info!(
                partition = lost,
                "partition moved away: stopping its projector"
            );
            owned
                .runtime
                .stop()
                .await
                .context("stopping a partition's projector")?;
        }
    }
    for &gained in assigned.difference(&current) {
        let dir = data_dir.join("partitions").join(gained.to_string());
        let store = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || ViewStore::open(&dir)
        })
        .await?
        .with_context(|| {
            format!(
                "opening the store of partition {gained} in {}",
                dir.display()
            )
        })?;
        let slice: SharedLog = Arc::new(PartitionSlice::new(log.clone(), gained));
        let runtime = ViewRuntime::start(
            slice,
            store,
            views.to_vec(),
            ProjectorConfig {
                poll_interval: Duration::from_millis(50),
                ..ProjectorConfig::default()
            },
            metrics.clone(),
        )
        .await
        .with_context(|| format!("starting the projector of partition {gained}"))?;
        let mut targets = vec![(
            Destination::Interactions,
            gained,
            log.end_offsets_of(Topic::Interactions, gained).await?,
        )];
        for (partition, end) in log
            .end_offsets(Topic::Agents)
            .await?
            .into_iter()
            .enumerate()
        {
            targets.push((Destination::Agents, partition as u32, end));
        }
        tracing::info!(
            partition = gained,
            "partition assigned: projecting it from its stored position"
        );
        write(&instance.owned).insert(
            gained,
            Owned {
                runtime,
                ready: false,
                targets,
            },
        );
    }
    Ok(())
}

/// Marks partitions ready once every view folded up to the ends seen at assignment;
/// returns their positions for the group. Reads only the projections' checkpoints (no
/// broker round trip): it runs every second for every owned partition.
fn check_progress(instance: &Instance) -> Vec<(u32, u64)> {
    let mut owned = write(&instance.owned);
    let mut positions = Vec::new();
    for (&partition, owned) in owned.iter_mut() {
        let checkpoints: Vec<_> = owned
            .runtime
            .names()
            .filter_map(|view| owned.runtime.live(view).ok())
            .map(|live| (live.status().topics, live.status().checkpoint()))
            .collect();
        if let Some(slowest) = checkpoints
            .iter()
            .map(|(_, checkpoint)| checkpoint.next_offset(Destination::Interactions, partition))
            .min()
        {
            positions.push((partition, slowest));
        }
        let reached = checkpoints.iter().all(|(topics, checkpoint)| {
            owned
                .targets
                .iter()
                .filter(|(topic, _, _)| topics.contains(topic))
                .all(|&(topic, p, end)| checkpoint.next_offset(topic, p) >= end)
        });
        if !owned.ready && reached {
            tracing::info!(partition, "partition caught up: answering for it");
            owned.ready = true;
        }
    }
    positions
}

/// `omnilog projector`.
pub async fn run(args: ProjectorArgs) -> anyhow::Result<()> {
    let config = args.server.clone().resolve()?;
    check_exposure(&config)?;
    let file = config.projector_file.clone();
    let view_names = if args.views.is_empty() {
        file.views
    } else {
        args.views.clone()
    };
    let views = chosen_views(
        serve::views_with(
            config.reporting.clone(),
            serve::timelines_from_log(&config.log),
        ),
        &view_names,
    )?;
    let group = args
        .group
        .clone()
        .or(file.group)
        .filter(|group| !group.trim().is_empty())
        .context("--group must name the consumer group the instances share")?;
    let advertise_url = args.advertise_url.clone().or(file.advertise_url);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let log = open_log(&config).await?;
    let ingest = start_ingest(&config, log.clone()).await?;
    let projector_metrics = ProjectorMetrics::default();
    let metrics = Arc::new(ApiMetrics::new(projector_metrics.clone()));

    // Listen first: the claim names the real port.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = advertise_url.unwrap_or_else(|| format!("http://{addr}"));
    let id = format!("{url}#{}-{}", std::process::id(), omnilog_kafka::now_ms());
    let kafka = kafka_config(
        &config,
        &format!("omnilog-projector-{}", std::process::id()),
    )?;
    let board = OwnershipBoard::open(&kafka)
        .await
        .context("opening the ownership topic")?;
    let instance = Arc::new(Instance {
        id: id.clone(),
        url: url.clone(),
        group: group.clone(),
        views: views.iter().map(|v| v.name()).collect(),
        partitions: log.partitions(Topic::Interactions),
        owned: RwLock::new(BTreeMap::new()),
        board,
    });
    let membership = GroupMembership::join(&kafka, &group, &id).context("joining the group")?;

    let app = router(serve::write_side(ingest, &config).with_cluster(instance.clone(), metrics));
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = config.http;
    let http = tokio::spawn(async move {
        omnilog_api::serving::serve_with(listener, app, stopped, limits).await
    });
    let mut signal = serve::ShutdownSignal::listen()?;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "omnilog listening on {url}")?;
        writeln!(out, "projector instance {id} of group {group}")?;
    }

    let mut assignment = membership.owned();
    let mut tick = tokio::time::interval(TICK);
    let claim_changed = Arc::new(tokio::sync::Notify::new());
    let publisher = spawn_publisher(instance.clone(), claim_changed.clone());
    // The group's latest assignment, and whether every partition of it was started.
    let mut wanted = BTreeSet::new();
    let mut following = true;
    loop {
        tokio::select! {
            () = signal.received() => break,
            changed = assignment.changed() => {
                if changed.is_err() {
                    bail!("the group membership stopped");
                }
                let assigned = assignment.borrow_and_update().clone();
                if let Some(assigned) = assigned {
                    wanted = assigned;
                    following = follow(&instance, &log, &config.data_dir, &views, &projector_metrics, &wanted).await;
                    claim_changed.notify_one();
                }
            }
            _ = tick.tick() => {
                if !following {
                    // A partition that could not be started is tried again each tick.
                    following = follow(&instance, &log, &config.data_dir, &views, &projector_metrics, &wanted).await;
                }
                let positions = check_progress(&instance);
                membership.report_progress(positions);
                claim_changed.notify_one();
            }
        }
    }
    tracing::info!("shutting down: leaving the group");
    publisher.abort();
    publish(&instance, true).await;
    // Leaving the group, draining the HTTP server and writing each partition's last
    // checkpoints go on at once: one after the other, an instance with several partitions
    // took longer to stop than an orchestrator waits on a loaded machine.
    let leaving = tokio::task::spawn_blocking(move || membership.leave());
    let _ = shutdown.send(());
    let owned: Vec<Owned> = std::mem::take(&mut *write(&instance.owned))
        .into_values()
        .collect();
    let stops = futures_util::future::join_all(owned.iter().map(|owned| owned.runtime.stop()));
    let (served, stopped) = tokio::join!(http, stops);
    served.context("the HTTP task panicked")??;
    for stopped in stopped {
        stopped?;
    }
    leaving.await.context("leaving the group panicked")?;
    Ok(())
}

/// Starts or stops partitions' projectors to match `assigned`; false (logged) when one
/// could not be started or stopped, to be tried again. The instance keeps serving what it
/// holds meanwhile: a store that cannot open now (one being let go, a full disk) must not
/// take the whole instance down.
async fn follow(
    instance: &Instance,
    log: &SharedLog,
    data_dir: &std::path::Path,
    views: &[Arc<dyn Projectable>],
    metrics: &ProjectorMetrics,
    assigned: &BTreeSet<u32>,
) -> bool {
    match follow_assignment(instance, log, data_dir, views, metrics, assigned).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "could not follow the group's assignment; trying again in a second"
            );
            false
        }
    }
}

/// Publishes this instance's claim every [`TICK`] and whenever `changed` is notified, on a
/// task of its own: a broker slow to confirm never holds the loop that follows the group.
fn spawn_publisher(
    instance: Arc<Instance>,
    changed: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            publish(&instance, false).await;
            let _ = tokio::time::timeout(TICK, changed.notified()).await;
        }
    })
}

async fn publish(instance: &Instance, leaving: bool) {
    if let Err(error) = instance.board.publish(&instance.claim(leaving)).await {
        tracing::warn!(%error, "could not publish this instance's claim");
    }
}
