//! The projector runtime: folds the log into every view's state in memory, checkpoints each
//! view's changed records with the positions they came from in one atomic write, reports
//! lag, waits for read-your-writes tokens, rebuilds a view beside the live one
//! (blue/green), and replays history into a fresh store.
//!
//! A [`projection::Version`] is one version of one view: typed state in memory over its
//! table in the store. A [`Projection`] is the task folding the log into one version.
//! [`ViewRuntime`] holds the live version of every view, the rebuilds in progress, and what
//! queries need: the live version, taken once per query so an answer never mixes versions.
//! [`replay`] folds history into fresh versions of every view at once, reading and decoding
//! the log once for all of them.
//!
//! This crate holds no business rules: the views crate decides what an event means.

mod change_runs;
pub mod events;
pub mod group;
mod identity_parts;
mod job_thread;
pub mod metrics;
pub mod projection;
pub mod replay;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use omnilog_events::Destination;
use omnilog_log::{LogError, SharedLog};
use omnilog_store::{StoreError, TableReader, ViewStore, ViewTable};
use omnilog_views::{View, ViewError};

pub use events::LogEvents;
pub use group::Projection;
pub use metrics::ProjectorMetrics;
pub use projection::{
    AnyVersion, Decoded, InMemoryFold, Phase, Projectable, ProjectionStatus, Version, decode_all,
    topic_of,
};
pub use replay::{
    IDENTITY_PART_ENTRIES, IdentitySink, MIN_RECORDS_PER_PASS, ReplayOptions, ReplayProgress,
    ReplayedView, SPILLED_PASS_RECORDS, STATE_BYTES_PER_RECORD, SUM_RECORD_BYTES, SUMS_HELD_SHARE,
    replay,
};

/// What went wrong in the runtime.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("a projector task failed: {0}")]
    Task(String),
    #[error("no view named {0:?}")]
    UnknownView(String),
    #[error("{0} is already being rebuilt")]
    AlreadyRebuilding(String),
    #[error("timed out after {0:?} waiting for the view to apply the token")]
    Timeout(Duration),
    #[error("this instance serves a replayed store read-only: it has no log to fold")]
    ReadOnly,
    #[error("the view {view} is not a {wanted}")]
    WrongView { view: String, wanted: &'static str },
}

/// Records read per partition for one fold when busy.
pub const COMMIT_BATCH: usize = 4_096;

/// Tuning of the projectors.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// Records read per partition when the log is quiet (freshness first).
    pub min_batch: usize,
    /// Records read per partition when busy (throughput first).
    pub max_batch: usize,
    /// How long an idle projector waits for an append notification before looking anyway.
    pub idle_wait: Duration,
    /// How often to look when the log cannot notify.
    pub poll_interval: Duration,
    /// A checkpoint is written once this many events were folded since the last...
    pub checkpoint_events: u64,
    /// ...or this long after the last one, whichever comes first...
    pub checkpoint_interval: Duration,
    /// ...or once the log has been quiet this long with folds not yet written.
    pub quiet_checkpoint: Duration,
    /// What a version's cached records (those that grow with the history) may weigh in
    /// memory, about, in bytes: beyond it, a checkpoint writes them and the least recently
    /// used go.
    pub cache_bytes: usize,
    /// Write checkpoints as new disk tables (fjall's bulk ingestion) instead of through
    /// the store's journal: for a replay into a fresh store, where nothing reads the
    /// store while it is written and checkpoints are few and large.
    pub bulk: bool,
    /// How many nice values below the process's priority a live projection's threads run
    /// (its decoding, folds and checkpoints; 0: the same priority). A request is answered
    /// once the log synced its events, so under load the write path goes first and the
    /// folds take the CPU it leaves (see `job_thread`). Linux caps nice values at 19.
    pub background_nice: i32,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            min_batch: 64,
            max_batch: COMMIT_BATCH,
            idle_wait: Duration::from_millis(500),
            poll_interval: Duration::from_millis(20),
            checkpoint_events: 1_000_000,
            checkpoint_interval: Duration::from_secs(5),
            quiet_checkpoint: Duration::from_millis(100),
            cache_bytes: 128 * 1024 * 1024,
            bulk: false,
            background_nice: 10,
        }
    }
}

/// One position a reader waits for: the view must have applied `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AwaitedPosition {
    pub topic: Destination,
    pub partition: u32,
    pub offset: u64,
}

/// A version of a view that queries read. Queries hold it for their duration, so its
/// state and table are not dropped under them after a swap.
#[derive(Debug)]
pub struct LiveVersion {
    version: Arc<dyn AnyVersion>,
    /// `None` for a frozen view (a replayed store served read-only).
    projection: Option<Projection>,
}

impl LiveVersion {
    fn projected(projection: Projection) -> Self {
        LiveVersion {
            version: projection.version().clone(),
            projection: Some(projection),
        }
    }

    /// The version with its view's state type, for a query.
    pub fn typed<V: View>(&self) -> Result<Arc<Version<V>>, ProjectorError> {
        let status = self.version.status();
        self.version
            .clone()
            .into_any()
            .downcast::<Version<V>>()
            .map_err(|_| ProjectorError::WrongView {
                view: status.view.to_owned(),
                wanted: std::any::type_name::<V>(),
            })
    }

    pub fn version(&self) -> &Arc<dyn AnyVersion> {
        &self.version
    }

    pub fn reader(&self) -> TableReader {
        self.version.table().reader()
    }

    pub fn table(&self) -> &ViewTable {
        self.version.table()
    }

    pub fn status(&self) -> &Arc<ProjectionStatus> {
        self.version.status()
    }

    async fn stop(&self) {
        if let Some(projection) = &self.projection {
            projection.stop().await;
        }
    }
}

/// How long a rebuild may take, once the live version stopped folding, to reach the live
/// version's positions before the swap is abandoned.
const SWAP_CATCH_UP: Duration = Duration::from_secs(60);

/// Where a view's rebuild stands.
#[derive(Debug)]
enum Rebuild {
    Idle,
    /// Reserved while the new version's projection starts, so two calls cannot both start.
    Starting,
    Running(Arc<LiveVersion>),
}

#[derive(Debug)]
struct ViewSlot {
    view: Arc<dyn Projectable>,
    live: RwLock<Arc<LiveVersion>>,
    rebuilding: Mutex<Rebuild>,
}

impl ViewSlot {
    fn live(&self) -> Arc<LiveVersion> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn rebuilding(&self) -> Option<Arc<LiveVersion>> {
        match &*self.rebuild_state() {
            Rebuild::Running(version) => Some(version.clone()),
            Rebuild::Idle | Rebuild::Starting => None,
        }
    }

    fn rebuild_state(&self) -> std::sync::MutexGuard<'_, Rebuild> {
        self.rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Per view and partition: how far the view has folded and how far the log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: Destination,
    pub partition: u32,
    pub position: u64,
    pub end: u64,
}

impl PartitionLag {
    pub fn lag(&self) -> u64 {
        self.end.saturating_sub(self.position)
    }
}

/// The state of one version of a view, for `GET /v1/views`.
#[derive(Clone, Debug)]
pub struct VersionReport {
    pub version: u32,
    pub phase: Phase,
    pub events_applied: u64,
    pub dead_letters: u64,
    pub partitions: Vec<PartitionLag>,
}

impl VersionReport {
    pub fn lag(&self) -> u64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }
}

/// A view's live version and the rebuild in progress, if any.
#[derive(Clone, Debug)]
pub struct ViewReport {
    pub view: &'static str,
    pub live: VersionReport,
    pub rebuilding: Option<VersionReport>,
}

/// Every view of a process, live and rebuilding.
#[derive(Debug)]
pub struct ViewRuntime {
    /// `None` when serving frozen views (see [`ViewRuntime::frozen`]).
    log: Option<SharedLog>,
    /// Where queries read events from (an interaction's events): the folded log, or the
    /// log a frozen store was replayed from.
    event_log: Option<SharedLog>,
    store: ViewStore,
    config: ProjectorConfig,
    metrics: ProjectorMetrics,
    slots: BTreeMap<&'static str, Arc<ViewSlot>>,
}

/// Runs blocking work (folds, store IO) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProjectorError> + Send + 'static,
) -> Result<T, ProjectorError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ProjectorError::Task(e.to_string()))?
}

impl ViewRuntime {
    /// Starts a projection of the active version of every view (creating version 1 of a
    /// new view). Versions left behind by an interrupted rebuild are removed: a rebuild
    /// starts again from offset 0 when asked.
    pub async fn start(
        log: SharedLog,
        store: ViewStore,
        views: Vec<Arc<dyn Projectable>>,
        config: ProjectorConfig,
        metrics: ProjectorMetrics,
    ) -> Result<Arc<Self>, ProjectorError> {
        let mut opened = Vec::new();
        for view in views {
            let name = view.name();
            let layout = view.layout();
            let opening = store.clone();
            let opened_view = view.clone();
            let version_config = config.clone();
            let version = blocking(move || {
                let version = match opening.active_version(name)? {
                    Some(version) => version,
                    None => {
                        let first = opening.versions(name).last().copied().unwrap_or(1);
                        opening.set_active(name, first)?;
                        first
                    }
                };
                for stale in opening.versions(name) {
                    if stale != version {
                        tracing::info!(
                            view = name,
                            version = stale,
                            "removing an unfinished rebuild"
                        );
                        opening.drop_table(name, stale)?;
                    }
                }
                let table = opening.table_with_layout(name, version, layout)?;
                opened_view.open_version(table, version_config, Phase::Running)
            })
            .await?;
            opened.push((view, version));
        }
        // The live views fold as one group: each record read and decoded once for all.
        let (views, versions): (Vec<_>, Vec<_>) = opened.into_iter().unzip();
        let projections =
            Projection::spawn_group(log.clone(), versions, config.clone(), metrics.clone());
        let mut slots = BTreeMap::new();
        for (view, projection) in views.into_iter().zip(projections) {
            slots.insert(
                view.name(),
                Arc::new(ViewSlot {
                    view,
                    live: RwLock::new(Arc::new(LiveVersion::projected(projection))),
                    rebuilding: Mutex::new(Rebuild::Idle),
                }),
            );
        }
        Ok(Arc::new(ViewRuntime {
            event_log: Some(log.clone()),
            log: Some(log),
            store,
            config,
            metrics,
            slots,
        }))
    }

    /// Serves the active version of every view in `store` as it stands, folding nothing
    /// (a store written by `omnilog replay`, for analysts). `source` is the log it was
    /// replayed from, which an interaction's events are read from.
    pub async fn frozen(
        store: ViewStore,
        views: Vec<Arc<dyn Projectable>>,
        source: Option<SharedLog>,
    ) -> Result<Arc<Self>, ProjectorError> {
        let mut slots = BTreeMap::new();
        for view in views {
            let name = view.name();
            let layout = view.layout();
            let opening = store.clone();
            let opened_view = view.clone();
            let opened = blocking(move || match opening.active_version(name)? {
                Some(version) => {
                    let table = opening.table(name, version)?;
                    let stored = table.layout()?;
                    if stored.is_some_and(|stored| stored != layout) {
                        tracing::warn!(
                            view = name,
                            stored,
                            layout,
                            "the store holds this view in another layout (an older build's \
                             replay); not served: replay it again with this build"
                        );
                        return Ok(None);
                    }
                    let version = opened_view.open_version(
                        table,
                        ProjectorConfig::default(),
                        Phase::Stopped,
                    )?;
                    Ok(Some(version))
                }
                None => Ok(None),
            })
            .await?;
            let Some(version) = opened else {
                tracing::warn!(
                    view = name,
                    "the store holds no version of this view; not served"
                );
                continue;
            };
            slots.insert(
                name,
                Arc::new(ViewSlot {
                    view,
                    live: RwLock::new(Arc::new(LiveVersion {
                        version,
                        projection: None,
                    })),
                    rebuilding: Mutex::new(Rebuild::Idle),
                }),
            );
        }
        Ok(Arc::new(ViewRuntime {
            log: None,
            event_log: source,
            store,
            config: ProjectorConfig::default(),
            metrics: ProjectorMetrics::default(),
            slots,
        }))
    }

    /// The names of every view.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.slots.keys().copied()
    }

    fn slot(&self, view: &str) -> Result<&Arc<ViewSlot>, ProjectorError> {
        self.slots
            .get(view)
            .ok_or_else(|| ProjectorError::UnknownView(view.to_owned()))
    }

    /// The live version of a view, for one query.
    pub fn live(&self, view: &str) -> Result<Arc<LiveVersion>, ProjectorError> {
        Ok(self.slot(view)?.live())
    }

    /// Waits until the live version of `view` applied every awaited position of the topics
    /// it folds (positions of other topics are ignored), then returns that version.
    pub async fn live_after(
        &self,
        view: &str,
        awaited: &[AwaitedPosition],
        timeout: Duration,
    ) -> Result<Arc<LiveVersion>, ProjectorError> {
        let slot = self.slot(view)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let live = slot.live();
            let status = live.status().clone();
            let relevant: Vec<&AwaitedPosition> = awaited
                .iter()
                .filter(|p| status.topics.contains(&p.topic))
                .collect();
            let mut checkpoints = status.subscribe();
            let done = |checkpoint: &omnilog_store::Checkpoint| {
                relevant
                    .iter()
                    .all(|p| checkpoint.next_offset(p.topic, p.partition) > p.offset)
            };
            if done(&checkpoints.borrow_and_update()) {
                return Ok(live);
            }
            // Wake on the next commit, or re-check after a while in case a swap replaced
            // the version being watched.
            let wake = tokio::time::Instant::now() + Duration::from_millis(200);
            match tokio::time::timeout_at(deadline.min(wake), checkpoints.changed()).await {
                Ok(_) => {}
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(ProjectorError::Timeout(timeout));
                }
                Err(_) => {}
            }
        }
    }

    async fn version_report(&self, live: &LiveVersion) -> Result<VersionReport, ProjectorError> {
        let status = live.status();
        let checkpoint = status.checkpoint();
        let mut partitions = Vec::new();
        for &topic in status.topics {
            let ends = match &self.log {
                Some(log) => log.end_offsets(topic_of(topic)).await?,
                // A frozen view is complete by definition: its end is where it stands.
                None => {
                    let mut ends = Vec::new();
                    for (&(of, partition), &next) in &checkpoint.positions {
                        if of == topic {
                            let index = partition as usize;
                            if ends.len() <= index {
                                ends.resize(index + 1, 0);
                            }
                            ends[index] = next;
                        }
                    }
                    ends
                }
            };
            for (partition, end) in ends.into_iter().enumerate() {
                partitions.push(PartitionLag {
                    topic,
                    partition: partition as u32,
                    position: checkpoint.next_offset(topic, partition as u32),
                    end,
                });
            }
        }
        Ok(VersionReport {
            version: status.version,
            phase: status.phase(),
            events_applied: checkpoint.events_applied,
            dead_letters: checkpoint.dead_letters,
            partitions,
        })
    }

    /// Position, end and lag of every view and partition.
    pub async fn reports(&self) -> Result<Vec<ViewReport>, ProjectorError> {
        let mut reports = Vec::new();
        for (name, slot) in &self.slots {
            let live = self.version_report(&slot.live()).await?;
            let rebuilding = match slot.rebuilding() {
                Some(version) => Some(self.version_report(&version).await?),
                None => None,
            };
            reports.push(ViewReport {
                view: name,
                live,
                rebuilding,
            });
        }
        Ok(reports)
    }

    /// Whether every live view has caught up with the log.
    pub async fn caught_up(&self) -> Result<bool, ProjectorError> {
        for slot in self.slots.values() {
            if self.version_report(&slot.live()).await?.lag() > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether every live view has written all it folded: its last checkpoint stands where
    /// its state in memory does (a burst's checkpoint is behind it).
    pub fn settled(&self) -> bool {
        self.slots.values().all(|slot| {
            let live = slot.live();
            let status = live.status();
            status.committed() == status.checkpoint()
        })
    }

    /// Starts folding the next version of `view` from offset 0 beside the live one; once
    /// it has caught up it becomes the live version and the old one is removed. Returns
    /// the new version number at once.
    pub async fn rebuild(self: &Arc<Self>, view: &str) -> Result<u32, ProjectorError> {
        let slot = self.slot(view)?.clone();
        let name = slot.view.name();
        if self.log.is_none() {
            return Err(ProjectorError::ReadOnly);
        }
        {
            let mut state = slot.rebuild_state();
            if !matches!(*state, Rebuild::Idle) {
                return Err(ProjectorError::AlreadyRebuilding(name.to_owned()));
            }
            *state = Rebuild::Starting;
        }
        let next = slot.live().status().version + 1;
        let started = self.start_version(&slot, next).await;
        let mut state = slot.rebuild_state();
        match started {
            Ok(projection) => {
                *state = Rebuild::Running(Arc::new(LiveVersion::projected(projection)));
                drop(state);
                let runtime = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = runtime.finish_rebuild(&slot).await {
                        tracing::error!(view = slot.view.name(), %error, "the rebuild failed");
                    }
                });
                Ok(next)
            }
            Err(error) => {
                *state = Rebuild::Idle;
                Err(error)
            }
        }
    }

    /// Starts a projection of a fresh, empty `version` of a slot's view.
    async fn start_version(
        &self,
        slot: &ViewSlot,
        version: u32,
    ) -> Result<Projection, ProjectorError> {
        let name = slot.view.name();
        let layout = slot.view.layout();
        let store = self.store.clone();
        let view = slot.view.clone();
        let config = self.config.clone();
        let opened = blocking(move || {
            // A leftover version of this number (from an older crash) must not leak in.
            store.drop_table(name, version)?;
            let table = store.table_with_layout(name, version, layout)?;
            view.open_version(table, config, Phase::Running)
        })
        .await?;
        let log = self.log.clone().ok_or(ProjectorError::ReadOnly)?;
        Ok(Projection::spawn(
            log,
            opened,
            self.config.clone(),
            self.metrics.clone(),
        ))
    }

    /// Waits for the rebuild of `slot` to catch up, swaps it in, retires the old version.
    async fn finish_rebuild(&self, slot: &Arc<ViewSlot>) -> Result<(), ProjectorError> {
        let name = slot.view.name();
        let Some(fresh) = slot.rebuilding() else {
            return Ok(());
        };
        loop {
            let report = self.version_report(&fresh).await?;
            if report.lag() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Freeze the live version (it keeps answering, it just stops folding), then let the
        // fresh one reach at least every position the live one had folded: otherwise a
        // write the live version folded between the check above and the swap would vanish
        // from answers for a moment after the swap, and counts would go backwards.
        let current = slot.live();
        current.stop().await;
        let target = current.status().checkpoint();
        let current_version = current.version().clone();
        drop(current);
        let deadline = tokio::time::Instant::now() + SWAP_CATCH_UP;
        loop {
            let reached = fresh.status().checkpoint();
            if target
                .positions
                .iter()
                .all(|(&(topic, partition), &next)| reached.next_offset(topic, partition) >= next)
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                // The new version stalled right before the swap: the live version must not
                // stay frozen. It resumes folding from its own checkpoint and the rebuild is
                // abandoned (its tree dropped); an operator can ask again.
                let log = self.log.clone().ok_or(ProjectorError::ReadOnly)?;
                let resumed = Projection::spawn(
                    log,
                    current_version,
                    self.config.clone(),
                    self.metrics.clone(),
                );
                *slot.live.write().unwrap_or_else(PoisonError::into_inner) =
                    Arc::new(LiveVersion::projected(resumed));
                *slot.rebuild_state() = Rebuild::Idle;
                fresh.stop().await;
                let abandoned = fresh.status().version;
                drop(fresh);
                let store = self.store.clone();
                blocking(move || Ok(store.drop_table(name, abandoned)?)).await?;
                return Err(ProjectorError::Task(format!(
                    "the rebuild of {name} did not reach the live version's positions within {SWAP_CATCH_UP:?}; the live version resumed"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let version = fresh.status().version;
        let store = self.store.clone();
        blocking(move || Ok(store.set_active(name, version)?)).await?;
        let old = {
            let mut live = slot.live.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *live, fresh)
        };
        *slot.rebuild_state() = Rebuild::Idle;
        old.stop().await;
        // Queries that took the old version before the swap finish on it; its tree goes
        // once the last of them lets go (bounded, so a stuck client cannot pin it forever).
        for _ in 0..600 {
            if Arc::strong_count(&old) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let retired = old.status().version;
        drop(old);
        let store = self.store.clone();
        blocking(move || Ok(store.drop_table(name, retired)?)).await?;
        tracing::info!(view = name, version, retired, "rebuild swapped in");
        Ok(())
    }

    /// Stops every projection after its batch in progress (each writes a last checkpoint)
    /// and flushes the store.
    pub async fn stop(&self) -> Result<(), ProjectorError> {
        for slot in self.slots.values() {
            if let Some(rebuilding) = slot.rebuilding() {
                rebuilding.stop().await;
            }
            slot.live().stop().await;
        }
        let store = self.store.clone();
        blocking(move || Ok(store.flush()?)).await
    }

    /// The log the runtime folds (`None` when serving frozen views).
    pub fn log(&self) -> Option<&SharedLog> {
        self.log.as_ref()
    }

    /// The log as the journey queries read it, for use on a blocking thread of the
    /// current tokio runtime; `None` when there is no log to read.
    pub fn events(&self) -> Option<LogEvents> {
        self.event_log.clone().map(LogEvents::new)
    }

    pub fn store(&self) -> &ViewStore {
        &self.store
    }
}
