//! The reactor: runs the proactive-engagement rules (`[[reactors]]` in the configuration)
//! over the log. In rounds, it reads the engagement view, asks the pure
//! [`omnilog_reactor::decide`] which notices are due now, and appends them through the
//! write path as events of source `omnilog.reactor`.
//!
//! Time: a notice is due at its trigger's time + the rule's `after_minutes`, and carries
//! that time as its `occurred_at`; the reactor writes it once the wall clock has passed it.
//! Its event id derives from (rule, customer, trigger), so a restarted reactor, or a
//! second round that sees the same trigger before the view holds the first decision,
//! writes the same event, which the log stores once. A round acts only on notices due
//! within the last `max_late` (a notice that late no longer helps, and a back-filled
//! history of long-past triggers must not spray notices when the reactor starts); notices
//! that fell due while the reactor was stopped are still sent when it starts within that
//! time. A reactor started held ([`ReactorConfig::held`], `omnilog demo` while it
//! back-fills) acts once opened, and never on a notice due before it was opened.
//!
//! Like the router, it reads the view only after it applied the reactor's own previous
//! writes (read-your-writes on the ingest token), and only one reactor acts on a log: it
//! is a task of the `serve` process that owns the write path (`--reactor off` on the
//! others when several `serve` share a Kafka cluster).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use omnilog_events::{Destination, Event};
use omnilog_ingest::Ingest;
use omnilog_log::Topic;
use omnilog_projector::{AwaitedPosition, ViewRuntime};
use omnilog_reactor::{Decision, Rule, ViewFacts, Window, decide};
use omnilog_views::engagement::EngagementView;
use tokio::sync::watch;

use crate::gate::GatedTask;

/// The view the reactor reads.
const VIEW: &str = "engagement";

/// Whether this process runs the reactor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReactorMode {
    /// Run the configured rules (nothing to run without any).
    On,
    /// Never: another process runs them.
    Off,
}

/// The reactor's settings.
#[derive(Clone, Debug)]
pub struct ReactorConfig {
    pub mode: ReactorMode,
    pub rules: Vec<Rule>,
    /// The latest a notice is still sent after it fell due.
    pub max_late: TimeDelta,
    /// The pause between rounds.
    pub interval: Duration,
    /// Start held: act only once its [`Gate`](crate::gate::Gate) opens.
    pub held: bool,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            mode: ReactorMode::On,
            rules: Vec::new(),
            max_late: TimeDelta::hours(1),
            interval: Duration::from_secs(1),
            held: false,
        }
    }
}

/// Starts the reactor; `None` when it is off or has no rule. Not held, it is open from
/// the start, with no lower bound but `max_late`.
pub fn start(ingest: Ingest, views: Arc<ViewRuntime>, config: ReactorConfig) -> Option<GatedTask> {
    if config.mode == ReactorMode::Off || config.rules.is_empty() {
        return None;
    }
    let rules: Vec<&str> = config.rules.iter().map(|r| r.reason.as_str()).collect();
    tracing::info!(?rules, held = config.held, "reactor started");
    Some(GatedTask::spawn(
        config.held,
        "the reactor acts from now on",
        move |opened, stopped| run(ingest, views, config, opened, stopped),
    ))
}

async fn run(
    ingest: Ingest,
    views: Arc<ViewRuntime>,
    config: ReactorConfig,
    opened: DateTime<Utc>,
    mut stopped: watch::Receiver<bool>,
) {
    let rules = Arc::new(config.rules);
    // The first round waits until the view holds the whole log as it was at the start: a
    // view still catching up after a restart lacks the decisions already made (which the
    // log would refuse again) and, worse, the contacts that made a trigger moot.
    let mut awaited = log_end(&views).await;
    loop {
        if *stopped.borrow() {
            return;
        }
        let now = Utc::now();
        let window = Window {
            now,
            not_before: (now - config.max_late).max(opened),
        };
        match round(&views, &awaited, rules.clone(), window).await {
            Ok(decisions) if !decisions.is_empty() => {
                let events: Vec<Event> = decisions
                    .iter()
                    .filter_map(|decision| match decision.event() {
                        Ok(event) => Some(event),
                        Err(error) => {
                            tracing::warn!(%error, "a decision of the reactor is dropped");
                            None
                        }
                    })
                    .collect();
                match ingest.submit(events).await {
                    Ok(receipt) => {
                        let held_out = decisions.iter().filter(|d| d.held_out).count();
                        tracing::info!(
                            notices = decisions.len() - held_out,
                            held_out,
                            duplicates = receipt.duplicates,
                            "the reactor decided"
                        );
                        awaited = receipt
                            .positions
                            .iter()
                            .filter(|p| p.topic == Topic::Interactions)
                            .map(|p| AwaitedPosition {
                                topic: Destination::Interactions,
                                partition: p.partition,
                                offset: p.offset,
                            })
                            .collect();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the reactor could not write its decisions; retrying")
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reactor round failed; retrying"),
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(config.interval) => {}
        }
    }
}

/// The last record of each partition of the interactions topic now.
async fn log_end(views: &ViewRuntime) -> Vec<AwaitedPosition> {
    let Some(log) = views.log() else {
        return Vec::new();
    };
    match log.end_offsets(Topic::Interactions).await {
        Ok(ends) => ends
            .into_iter()
            .enumerate()
            .filter(|(_, end)| *end > 0)
            .map(|(partition, end)| AwaitedPosition {
                topic: Destination::Interactions,
                partition: partition as u32,
                offset: end - 1,
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "the reactor cannot read the log's end; it starts on the view as it is");
            Vec::new()
        }
    }
}

/// Reads the engagement view (once it holds the reactor's last writes) and decides.
async fn round(
    views: &ViewRuntime,
    awaited: &[AwaitedPosition],
    rules: Arc<Vec<Rule>>,
    window: Window,
) -> anyhow::Result<Vec<Decision>> {
    let live = views
        .live_after(VIEW, awaited, Duration::from_secs(10))
        .await?;
    let version = live.typed::<EngagementView>()?;
    let decisions = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Decision>> {
        let _held = live;
        version.read(|state, records| Ok(decide(&rules, &ViewFacts { state, records }, window)?))
    })
    .await??;
    Ok(decisions)
}
