//! `omnilog serve`: everything in one process on the embedded log: the write side (ingest
//! API, channel webhooks, identity resolution), a projector for every view, the query API,
//! `/metrics`. Data lives under `--data-dir`: `log/` (the embedded log, the truth) and
//! `views/` (the view store, rebuildable from the log).
//!
//! Without tokens the API is open, so it listens on loopback only and says so; asking for
//! another address without tokens is refused before anything starts.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use omnilog_api::{ApiMetrics, AppState, FrozenIdentities, router};
use omnilog_channels::Registry;
use omnilog_ingest::{Ingest, IngestConfig};
use omnilog_kafka::{KafkaConfig, KafkaLog};
use omnilog_log::{EmbeddedLog, EventLog, PartitionCounts};
use omnilog_projector::{Projectable, ProjectorConfig, ProjectorMetrics, ViewRuntime};
use omnilog_store::ViewStore;
use omnilog_views::IdentityView;
use omnilog_views::engagement::EngagementView;
use omnilog_views::journey::{JourneyConfig, JourneyView};
use omnilog_views::queue::QueueView;
use omnilog_views::reporting::{ReportingConfig, ReportingView};
use omnilog_views::segments::SegmentsView;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{LogBackend, ServerArgs, ServerConfig};
use crate::gate::{Gate, GatedTask};
use crate::{reactor, router};

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Where it listens (the port is real even if 0 was asked for).
    pub addr: SocketAddr,
    views: Option<Arc<ViewRuntime>>,
    /// Opens the router when it was started held.
    routing: Option<Gate>,
    /// Opens the reactor when it was started held.
    reacting: Option<Gate>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Lets a router and a reactor started held act (`omnilog demo`, once its back-fill is
    /// in): the router routes from now on, the reactor acts on notices due from now on.
    pub fn open_routing(&self) {
        if let Some(gate) = &self.routing {
            gate.open();
        }
        if let Some(gate) = &self.reacting {
            gate.open();
        }
    }

    /// Waits until every view has folded the whole log.
    pub async fn wait_caught_up(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        let Some(views) = &self.views else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while !views.caught_up().await? {
            if tokio::time::Instant::now() >= deadline {
                bail!("the views did not catch up with the log within {timeout:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits until every view has folded the whole log and written what it folded to its
    /// store (`omnilog bench` measures latency on a server that is not still writing the
    /// checkpoint of the stage before).
    pub async fn wait_settled(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_caught_up(timeout).await?;
        let Some(views) = &self.views else {
            return Ok(());
        };
        while !views.settled() {
            if tokio::time::Instant::now() >= deadline {
                bail!("the views did not write their checkpoints within {timeout:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops accepting, finishes the requests in flight, and closes the log.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.context("the server task panicked")?
    }
}

/// Refuses an open API anywhere but on loopback.
pub fn check_exposure(config: &ServerConfig) -> anyhow::Result<()> {
    if config.access.is_enforced() {
        return Ok(());
    }
    if !config.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without access tokens: anyone who can reach it could write and read \
             everything. Configure tokens (--token TOKEN=ingest,read,admin) or listen on 127.0.0.1",
            config.listen
        );
    }
    tracing::warn!(
        listen = %config.listen,
        "no access tokens configured: the API is open to every process on this machine, so it listens on loopback only"
    );
    Ok(())
}

/// Opens the log, starts the write path and the HTTP API (or, read-only, serves a
/// replayed store).
pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
    check_exposure(&config)?;
    if config.read_only {
        return start_read_only(config).await;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let log = open_log(&config).await?;
    let ingest = start_ingest(&config, log.clone()).await?;
    let views_dir = config.data_dir.join("views");
    let store = ViewStore::open(&views_dir)
        .with_context(|| format!("opening the view store in {}", views_dir.display()))?;
    let projector_metrics = ProjectorMetrics::default();
    let metrics = Arc::new(ApiMetrics::new(projector_metrics.clone()));
    let views = ViewRuntime::start(
        log.clone(),
        store,
        views_with(config.reporting.clone(), timelines_from_log(&config.log)),
        ProjectorConfig::default(),
        projector_metrics,
    )
    .await
    .context("starting the projectors")?;
    let routing = router::start(ingest.clone(), views.clone(), config.router);
    let gate = routing.as_ref().map(GatedTask::gate);
    let reacting = reactor::start(ingest.clone(), views.clone(), config.reactor.clone());
    let reactor_gate = reacting.as_ref().map(GatedTask::gate);
    let saver = ingest.clone();
    let app = router(write_side(ingest, &config).with_views(views.clone(), metrics));
    let mut server = serve_app(
        config,
        app,
        Some(views),
        Some(log),
        Deciders {
            routing,
            reacting,
            snapshot: Some(saver),
        },
    )
    .await?;
    server.routing = gate;
    server.reacting = reactor_gate;
    Ok(server)
}

/// `omnilog ingest-server`: the write side only (ingest API, channel webhooks, identity
/// resolution) on Kafka. Stateless: its identity view is folded from the log at start and
/// follows every writer's appends, so any number of them can run behind a balancer.
pub async fn start_ingest_server(config: ServerConfig) -> anyhow::Result<Server> {
    check_exposure(&config)?;
    if !matches!(config.log, LogBackend::Kafka { .. }) {
        bail!("ingest-server runs on Kafka: give --brokers HOST:PORT");
    }
    let log = open_log(&config).await?;
    let ingest = start_ingest(&config, log.clone()).await?;
    let app = router(write_side(ingest, &config));
    serve_app(config, app, None, Some(log), Deciders::default()).await
}

/// The API's state for a server with a write path: every channel, the configured access
/// control and API settings.
pub fn write_side(ingest: Ingest, config: &ServerConfig) -> AppState {
    AppState::new(
        ingest,
        Arc::new(Registry::standard()),
        Arc::new(config.access.clone()),
        Arc::new(config.api.clone()),
    )
}

/// Whether the journey view keeps its timelines' lines as positions in `log`, read from it
/// by queries: on the embedded log, which reads an event by position locally (see
/// `JourneyConfig::timelines_from_log`).
pub fn timelines_from_log(log: &LogBackend) -> bool {
    matches!(log, LogBackend::Embedded)
}

/// Opens the configured log: the embedded one under the data dir, or Kafka.
pub async fn open_log(config: &ServerConfig) -> anyhow::Result<Arc<dyn EventLog>> {
    let counts = PartitionCounts::uniform(config.partitions);
    match &config.log {
        LogBackend::Embedded => {
            let log_dir = config.data_dir.join("log");
            Ok(Arc::new(EmbeddedLog::open(&log_dir, counts).with_context(
                || format!("opening the embedded log in {}", log_dir.display()),
            )?))
        }
        LogBackend::Kafka {
            brokers,
            replication,
            delivery_timeout,
        } => {
            let mut kafka = KafkaConfig::new(brokers.clone());
            kafka.partitions = counts;
            kafka.replication = *replication;
            kafka.delivery_timeout = *delivery_timeout;
            kafka.client_id = format!("omnilog-{}", std::process::id());
            Ok(Arc::new(KafkaLog::open(kafka).await.with_context(
                || format!("opening the log on the Kafka cluster at {brokers}"),
            )?))
        }
    }
}

/// Where a server on the embedded log keeps its identity view between runs (written at a
/// clean stop and after a long start; see `omnilog_ingest`'s `snapshot.rs`).
pub const IDENTITY_SNAPSHOT_FILE: &str = "identity.snapshot";

/// The write path over `log`; on Kafka it also follows the other ingest servers' writes.
pub async fn start_ingest(config: &ServerConfig, log: Arc<dyn EventLog>) -> anyhow::Result<Ingest> {
    let embedded = matches!(config.log, LogBackend::Embedded);
    let ingest_config = IngestConfig {
        follow_other_writers: !embedded,
        // The one writer of an embedded log saves its identity view where it stands.
        identity_snapshot_file: embedded.then(|| config.data_dir.join(IDENTITY_SNAPSHOT_FILE)),
        ..IngestConfig::default()
    };
    Ingest::start(log, ingest_config)
        .await
        .context("starting the write path")
}

/// The tasks that write decisions through a server's write path: the router and the
/// reactor (neither on an ingest server or a read-only one).
#[derive(Debug, Default)]
struct Deciders {
    routing: Option<GatedTask>,
    reacting: Option<GatedTask>,
    /// The write path whose identity view is saved once everything else has stopped.
    snapshot: Option<Ingest>,
}

/// Listens and serves `app` until stopped; then stops the router, the reactor and the
/// projectors and closes the log.
async fn serve_app(
    config: ServerConfig,
    app: axum::Router,
    views: Option<Arc<ViewRuntime>>,
    log: Option<Arc<dyn EventLog>>,
    deciders: Deciders,
) -> anyhow::Result<Server> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let running_views = views.clone();
    let limits = config.http;
    let task = tokio::spawn(async move {
        omnilog_api::serving::serve_with(listener, app, stopped, limits)
            .await
            .context("serving HTTP")?;
        // The router and the reactor stop before the write path they write through.
        if let Some(routing) = deciders.routing {
            routing.stop().await;
        }
        if let Some(reacting) = deciders.reacting {
            reacting.stop().await;
        }
        // Every acknowledged write is already durable; the projectors finish their batch
        // and flush, and dropping the last log handle stops the log's writer.
        if let Some(views) = views {
            views.stop().await.context("stopping the projectors")?;
        }
        // Nothing writes any more: the identity view and the log's ends agree. A snapshot
        // only saves the next start time, so failing to write one does not fail the stop.
        if let Some(ingest) = deciders.snapshot {
            match ingest.save_identity_snapshot().await {
                Ok(true) => tracing::info!("identity snapshot saved"),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not save the identity snapshot; the next start folds the log from the last one")
                }
            }
        }
        drop(log);
        Ok(())
    });
    Ok(Server {
        addr,
        views: running_views,
        routing: None,
        reacting: None,
        shutdown,
        task,
    })
}

/// Serves the views `omnilog replay` built in the data dir, with the identity view it saved.
async fn start_read_only(config: ServerConfig) -> anyhow::Result<Server> {
    let views_dir = config.data_dir.join("views");
    if !views_dir.exists() {
        bail!(
            "{} holds no view store; build one with omnilog replay --out {}",
            config.data_dir.display(),
            config.data_dir.display()
        );
    }
    let store = ViewStore::open(&views_dir)
        .with_context(|| format!("opening the view store in {}", views_dir.display()))?;
    let identity_file = config.data_dir.join(crate::replay::IDENTITY_FILE);
    let identity = IdentityView::from_saved_bytes(
        &std::fs::read(&identity_file)
            .with_context(|| format!("reading {}", identity_file.display()))?,
    )
    .with_context(|| format!("decoding {}", identity_file.display()))?;
    // The views as the replay folded them: their layout says how their timelines are kept,
    // which depends on the log they were folded from (the embedded log's unless recorded
    // otherwise).
    let recorded = crate::replay::read_source(&config.data_dir);
    let timelines_from_log = recorded
        .as_ref()
        .is_none_or(crate::replay::Source::timelines_from_log);
    let source = match &recorded {
        Some(recorded) => crate::replay::open_source(recorded).await,
        None => None,
    };
    let views = ViewRuntime::frozen(
        store,
        views_with(config.reporting.clone(), timelines_from_log),
        source,
    )
    .await?;
    let app = router(AppState::read_only(
        Arc::new(FrozenIdentities(identity)),
        Arc::new(config.access.clone()),
        Arc::new(config.api.clone()),
        views.clone(),
    ));
    serve_app(config, app, Some(views), None, Deciders::default()).await
}

/// Every projected view of the embedded log, with the contract's defaults.
pub fn standard_views() -> Vec<Arc<dyn Projectable>> {
    views_with(ReportingConfig::default(), true)
}

/// Every projected view, with the given service-level thresholds; `timelines_from_log` for
/// a log that reads an event by position locally (the embedded log's, not Kafka's: see
/// `JourneyConfig::timelines_from_log`).
pub fn views_with(
    reporting: ReportingConfig,
    timelines_from_log: bool,
) -> Vec<Arc<dyn Projectable>> {
    vec![
        Arc::new(JourneyView::new(JourneyConfig {
            timelines_from_log,
            ..JourneyConfig::default()
        })),
        Arc::new(QueueView),
        Arc::new(ReportingView::new(reporting.clone())),
        Arc::new(SegmentsView::new(reporting)),
        Arc::new(EngagementView),
    ]
}

/// SIGINT and SIGTERM, caught from the moment `listen` returns.
///
/// Made before a server says where it listens: a process manager (or a test) may send
/// SIGTERM as soon as it reads that line, and a signal that came before anything listened
/// for it would kill the process with the default action instead of stopping it cleanly.
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers now; a signal from here on is kept until `received`.
    pub fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for SIGINT or SIGTERM (returns at once for one that already came).
    pub async fn received(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `omnilog serve`.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    serve_until_signal(start(config.clone()).await?, &config).await
}

/// `omnilog ingest-server`.
pub async fn run_ingest_server(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    serve_until_signal(start_ingest_server(config.clone()).await?, &config).await
}

/// Says where the server listens, serves until SIGINT or SIGTERM, then stops it cleanly.
async fn serve_until_signal(server: Server, config: &ServerConfig) -> anyhow::Result<()> {
    let mut signal = ShutdownSignal::listen()?;
    announce(&server, config)?;
    signal.received().await;
    tracing::info!("shutting down: finishing requests in flight");
    server.stop().await
}

/// Prints where the server listens and where its log is.
fn announce(server: &Server, config: &ServerConfig) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    writeln!(out, "omnilog listening on http://{}", server.addr)?;
    match &config.log {
        LogBackend::Embedded => writeln!(out, "data dir: {}", config.data_dir.display())?,
        LogBackend::Kafka { brokers, .. } => writeln!(
            out,
            "log: kafka at {brokers}; view stores in {}",
            config.data_dir.display()
        )?,
    }
    Ok(())
}
