//! The router: makes the queues route, not just list. In rounds, it reads the live queue
//! view, decides which waiting items to offer to which agents (the pure
//! [`omnilog_views::queue::plan_offers`]), and appends those decisions through the write
//! path as events: `offered`, followed by `assigned` when agents auto-accept. Offers an
//! agent neither accepts nor declines within the offer timeout get `offer_timed_out`, which
//! frees the item at its place in line.
//!
//! Because every decision is an event in the log, a replay or a rebuild of the queue view
//! sees exactly what the live router did. The router reads the view only after it has
//! applied the router's own previous writes (read-your-writes on the ingest token), so it
//! never offers an item twice on a stale view.
//!
//! Only one router acts on a log: in `serve` it is a task of the one process that owns the
//! embedded log (one process writes a log).
//!
//! A router can start held ([`RouterConfig::held`]) and route only once its
//! [`Gate`](crate::gate::Gate) opens: `omnilog demo` holds it while it back-fills past hours, whose
//! routing the history already holds (a router acts in the present, so it would answer a
//! call of 9 o'clock at noon).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use omnilog_events::json::event_from_value;
use omnilog_events::{Destination, Event, format_time};
use omnilog_ingest::Ingest;
use omnilog_log::Topic;
use omnilog_projector::{AwaitedPosition, ViewRuntime};
use omnilog_views::queue::{self, AgentsPartial, QueueView};
use serde_json::json;
use tokio::sync::watch;

use crate::gate::GatedTask;

/// The `source` of the router's events.
pub const SOURCE: &str = "omnilog.router";

/// How the router acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteMode {
    /// No router: agents (or another system) pick work by posting `assigned`.
    Off,
    /// Offer queue heads to agents; agents accept with `assigned` or decline.
    Offer,
    /// Offer and assign at once (agents accept every offer).
    AutoAccept,
}

/// The router's settings.
#[derive(Clone, Copy, Debug)]
pub struct RouterConfig {
    pub mode: RouteMode,
    /// How long an offer waits for an answer before it times out.
    pub offer_timeout: Duration,
    /// The longest pause between rounds (a round also starts when the queue view moves).
    pub interval: Duration,
    /// Start held: route only once its [`Gate`](crate::gate::Gate) opens.
    pub held: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            mode: RouteMode::Off,
            offer_timeout: Duration::from_secs(30),
            interval: Duration::from_millis(500),
            held: false,
        }
    }
}

/// Starts routing; `None` when the mode is `off`.
pub fn start(ingest: Ingest, views: Arc<ViewRuntime>, config: RouterConfig) -> Option<GatedTask> {
    if config.mode == RouteMode::Off {
        return None;
    }
    tracing::info!(mode = ?config.mode, held = config.held, "router started");
    Some(GatedTask::spawn(
        config.held,
        "the router routes from now on",
        move |_, stopped| run(ingest, views, config, stopped),
    ))
}

/// What one round saw and decided.
struct Round {
    /// The unreserved waiting items, in routing order.
    items: Vec<queue::RoutableItem>,
    /// The agents who can take work, longest idle first.
    candidates: Vec<queue::AgentCandidate>,
    /// Every interaction waiting in a queue.
    waiting: std::collections::BTreeSet<String>,
    /// Every open offer: (interaction, agent) → its customer and channel.
    open_offers: BTreeMap<(String, String), (Option<String>, omnilog_events::Channel)>,
}

async fn run(
    ingest: Ingest,
    views: Arc<ViewRuntime>,
    config: RouterConfig,
    mut stopped: watch::Receiver<bool>,
) {
    // When the router first saw each open offer: offers made before a restart are timed
    // from when this router first saw them.
    let mut offer_seen: BTreeMap<(String, String), tokio::time::Instant> = BTreeMap::new();
    // Offers that ended without an assignment (declined or timed out), and when: the item
    // is not offered to that agent again for one offer time-out, so it goes to another
    // agent if there is one instead of bouncing back to the one who let it go.
    let mut let_go: BTreeMap<(String, String), tokio::time::Instant> = BTreeMap::new();
    let mut awaited: Vec<AwaitedPosition> = Vec::new();
    loop {
        if *stopped.borrow() {
            return;
        }
        match round(&views, &awaited).await {
            Ok(round) => {
                let now = tokio::time::Instant::now();
                // An offer seen before that is gone while its item still waits was declined
                // or timed out: decided before planning, so this round already skips it.
                for key in offer_seen.keys() {
                    if !round.open_offers.contains_key(key) && round.waiting.contains(&key.0) {
                        let_go.insert(key.clone(), now);
                    }
                }
                let_go.retain(|_, at| now.duration_since(*at) < config.offer_timeout);
                let offers =
                    queue::plan_offers_with(&round.items, round.candidates, |item, agent| {
                        !let_go.contains_key(&(item.interaction_id.clone(), agent.agent_id.clone()))
                    });
                offer_seen.retain(|key, _| round.open_offers.contains_key(key));
                for key in round.open_offers.keys() {
                    offer_seen.entry(key.clone()).or_insert(now);
                }
                let expired: Vec<_> = round
                    .open_offers
                    .iter()
                    .filter(|(key, _)| {
                        offer_seen
                            .get(*key)
                            .is_some_and(|seen| now.duration_since(*seen) >= config.offer_timeout)
                    })
                    .collect();
                let at = Utc::now();
                let mut events = Vec::new();
                for ((interaction, agent), (customer, channel)) in expired {
                    if let Some(customer) = customer {
                        events.push(decision(
                            at,
                            customer,
                            interaction,
                            *channel,
                            "offer_timed_out",
                            agent,
                        ));
                    }
                }
                for offer in &offers {
                    let Some(customer) = offer.customer_id.as_deref() else {
                        continue;
                    };
                    events.push(decision(
                        at,
                        customer,
                        &offer.interaction_id,
                        offer.channel,
                        "offered",
                        &offer.agent_id,
                    ));
                    if config.mode == RouteMode::AutoAccept {
                        events.push(decision(
                            at,
                            customer,
                            &offer.interaction_id,
                            offer.channel,
                            "assigned",
                            &offer.agent_id,
                        ));
                    }
                }
                let events: Vec<Event> = events.into_iter().flatten().collect();
                if !events.is_empty() {
                    match ingest.submit(events).await {
                        Ok(receipt) => {
                            tracing::debug!(
                                offers = offers.len(),
                                accepted = receipt.accepted,
                                "routed"
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
                            // Decisions were made: look again at once (more may be routable).
                            continue;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "the router could not write its decisions; retrying")
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "routing round failed; retrying"),
        }
        // Sleep until the queue view moves or the interval passes.
        let changed = async {
            match views.live("queue") {
                Ok(live) => {
                    let mut checkpoints = live.status().subscribe();
                    checkpoints.borrow_and_update();
                    let _ = checkpoints.changed().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = stopped.changed() => return,
            () = changed => {}
            () = tokio::time::sleep(config.interval) => {}
        }
    }
}

/// Reads the live queue view (once it holds the router's last writes) and decides.
async fn round(views: &ViewRuntime, awaited: &[AwaitedPosition]) -> anyhow::Result<Round> {
    let live = views
        .live_after("queue", awaited, Duration::from_secs(10))
        .await?;
    let now = Utc::now();
    let version = live.typed::<QueueView>()?;
    let round = tokio::task::spawn_blocking(move || -> anyhow::Result<Round> {
        let state = version.state();
        let items = queue::routable(&state, now)?;
        let agents = AgentsPartial::from_state(&state)?;
        let candidates = agents.candidates();
        // An offer is a waiting item reserved for an agent.
        let mut open_offers = BTreeMap::new();
        let mut waiting = std::collections::BTreeSet::new();
        for answer in queue::queues(&state, now)? {
            for item in answer.items {
                waiting.insert(item.interaction_id.clone());
                if let Some(agent) = item.reserved_for {
                    open_offers.insert(
                        (item.interaction_id, agent),
                        (item.customer_id, item.channel),
                    );
                }
            }
        }
        Ok(Round {
            items,
            candidates,
            waiting,
            open_offers,
        })
    })
    .await??;
    Ok(round)
}

/// One routing decision as a canonical event.
fn decision(
    at: DateTime<Utc>,
    customer: &str,
    interaction: &str,
    channel: omnilog_events::Channel,
    kind: &str,
    agent: &str,
) -> Option<Event> {
    let value = json!({
        "source": SOURCE,
        "source_event_id": format!("{interaction}:{kind}:{agent}:{}", format_time(&at)),
        "occurred_at": format_time(&at),
        "customer": {"id": customer},
        "interaction_id": interaction,
        "channel": channel.as_str(),
        "type": kind,
        "agent_id": agent,
    });
    match event_from_value(value) {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::warn!(%error, interaction, "the router made an event it cannot write");
            None
        }
    }
}
