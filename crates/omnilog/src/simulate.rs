//! `omnilog simulate`: drives a running server through its public ingest API with a
//! seeded cross-channel history from the testkit (the same generator the tests and the
//! benchmarks use), at a steady offered rate.
//!
//! Events carry handles, not customer ids, so the server's identity resolution links a
//! customer's calls, chats and emails as it would for real traffic. The same seed sends the
//! same events (ids, customers, order); `--start` also pins their times, which otherwise
//! follow the wall clock so that queue ages look live. A request the server refuses for
//! load (503) is retried with the same body: event ids are stable, so a retry that had in
//! fact landed is stored once.
//!
//! `--backfill-hours H` starts the history H hours ago: the part already past is sent as
//! fast as the server takes it (a working day in seconds, through the same ingest API),
//! then the rest follows the wall clock, each event sent when its time comes. Because it
//! is one history, contacts that were waiting or with an agent at the switch carry on.
//!
//! `--routed` leaves routing to the server's router (`serve --route auto-accept`) from
//! the end of the back-fill on (the history decides the past's): a contact is sent up to
//! its `queued` event and then waits; the simulated desk learns from `GET /v1/agents`
//! (twice a second) whom the router gave it to, and sends what that agent and the
//! customer do from then on (messages, notes, now and then a transfer to another queue,
//! whose next agent carries on, the end, the wrap-up, a rating), each when due; a customer
//! nobody took within their patience hangs up (`abandoned`). The desk's
//! staffing is the generator's ([`omnilog_testkit::agents_for`]): the router keeps the
//! queues moving, and at the day's peaks they grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use omnilog_events::{Event, to_canonical_json};
use omnilog_testkit::{HistoryConfig, Item, RoutedContact, history};
use tokio::sync::{Semaphore, oneshot, watch};

/// Options of `omnilog simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "OMNILOG_TARGET")]
    pub target: String,
    /// Distinct customers.
    #[arg(long, env = "OMNILOG_CUSTOMERS")]
    pub customers: Option<u64>,
    /// Offered load in events per second.
    #[arg(long, default_value_t = 200.0, env = "OMNILOG_RATE")]
    pub rate: f64,
    /// Stop after this many seconds.
    #[arg(long, env = "OMNILOG_DURATION", conflicts_with = "events")]
    pub duration: Option<u64>,
    /// Stop after this many events [default: 10000 unless --duration].
    #[arg(long, env = "OMNILOG_EVENTS")]
    pub events: Option<u64>,
    /// Seed of the history.
    #[arg(long, default_value_t = 42, env = "OMNILOG_SEED")]
    pub seed: u64,
    /// Event time of the first event (RFC 3339) [default: now].
    #[arg(long, env = "OMNILOG_START")]
    pub start: Option<DateTime<Utc>>,
    /// Events per request.
    #[arg(long, default_value_t = 50, env = "OMNILOG_BATCH")]
    pub batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, env = "OMNILOG_CONCURRENCY")]
    pub concurrency: usize,
    /// A bearer token with the ingest scope.
    #[arg(long, env = "OMNILOG_TOKEN")]
    pub token: Option<String>,
    /// Print no progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Start the history this many hours ago and send what is already past at once, then
    /// go on in real time [default: 0, no back-fill]. Requests in flight together may land
    /// in either order: `--concurrency 1` keeps the history's order, as the demo does.
    #[arg(long, default_value_t = 0.0, env = "OMNILOG_BACKFILL_HOURS")]
    pub backfill_hours: f64,
    /// Leave routing to the server's router (`serve --route auto-accept`) from the end of
    /// the back-fill on: contacts wait in their queues until the router assigns them, and
    /// the simulated agents handle what they are given. Reads `GET /v1/agents`, so a token
    /// needs the read scope too. The router must not route while the back-fill is sent
    /// (`omnilog demo` starts it after).
    #[arg(long)]
    pub routed: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct SimulateReport {
    pub sent: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub requests: u64,
    pub retries: u64,
    pub elapsed: Duration,
    /// With `--routed`: contacts the router assigned, and customers who hung up waiting.
    pub routed_answered: u64,
    pub routed_abandoned: u64,
}

/// How far back a back-fill starts.
fn backfill(args: &SimulateArgs) -> TimeDelta {
    TimeDelta::milliseconds((args.backfill_hours.max(0.0) * 3_600_000.0) as i64)
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// About how many events one contact of the generated history makes: used to pace event
/// time with the offered rate, so that generated times stay close to the wall clock.
const EVENTS_PER_CONTACT: f64 = 11.0;
/// How often a routed run asks the server which agent holds what.
const ASSIGNMENT_POLL: Duration = Duration::from_millis(500);
/// How long after a transfer is sent an agent holding the contact is taken for the next
/// one (before, the answer may still show the agent who transferred it).
const TRANSFER_SETTLE: TimeDelta = TimeDelta::seconds(2);

/// How many events a run sends.
fn events_wanted(args: &SimulateArgs) -> u64 {
    match (args.events, args.duration) {
        (Some(events), _) => events,
        (None, Some(seconds)) => (args.rate * seconds as f64).ceil() as u64,
        (None, None) => 10_000,
    }
}

/// The history a run sends: the same arguments give the same customers, contacts and
/// event ids (only the times follow the wall clock, unless `--start` pins them).
pub fn history_config(args: &SimulateArgs) -> HistoryConfig {
    let events_wanted = events_wanted(args);
    // Event time runs with the wall clock: contacts arrive at the pace the offered rate
    // implies, and the desk has the agents such a pace needs (the generator staffs it for
    // its average load), so queues stay as short as a real desk's but for its peaks.
    let arrival_gap_seconds = EVENTS_PER_CONTACT / args.rate;
    let mut config = HistoryConfig::with_events(args.seed, events_wanted)
        .with_customers(
            args.customers
                .unwrap_or((events_wanted / 30).clamp(1_000, 1_000_000)),
        )
        .with_arrival_gap(TimeDelta::microseconds(
            (arrival_gap_seconds * 1_000_000.0).max(1.0) as i64,
        ));
    config.start = args.start.unwrap_or_else(|| Utc::now() - backfill(args));
    if args.routed {
        let live_from = config.start + backfill(args);
        config = config.routed_from(live_from);
    }
    config
}

/// The simulated desk of a routed run: contacts waiting for the router, and the events of
/// those it assigned, each sent when due (see the module documentation).
#[derive(Debug, Default)]
struct Desk {
    /// Waiting for an agent, by interaction.
    waiting: std::collections::HashMap<String, RoutedContact>,
    /// Transferred by their first agent, waiting for the next: by interaction, with when.
    transferred: std::collections::HashMap<String, (RoutedContact, DateTime<Utc>)>,
    /// When each waiting customer hangs up: (time, interaction).
    deadlines: std::collections::BTreeSet<(DateTime<Utc>, String)>,
    /// Events to send later, by (time, arrival).
    due: std::collections::BTreeMap<(DateTime<Utc>, u64), Event>,
    arrivals: u64,
    answered: u64,
    abandoned: u64,
}

impl Desk {
    fn wait(&mut self, contact: RoutedContact) {
        self.deadlines.insert((
            contact.queued_at + contact.patience,
            contact.interaction_id.clone(),
        ));
        self.waiting.insert(contact.interaction_id.clone(), contact);
    }

    /// `agent` holds `interaction` in an answer asked for at `asked` (seen at `at`): when
    /// that is the router's assignment of a contact waiting for one, what follows is
    /// scheduled.
    fn held(&mut self, interaction: &str, agent: &str, asked: DateTime<Utc>, at: DateTime<Utc>) {
        if let Some(contact) = self.waiting.remove(interaction) {
            self.deadlines.remove(&(
                contact.queued_at + contact.patience,
                contact.interaction_id.clone(),
            ));
            self.answered += 1;
            match contact.transferred_after(at) {
                Some(transfer) => {
                    let when = transfer.occurred_at;
                    self.schedule(transfer);
                    self.deadlines
                        .insert((when + contact.patience, contact.interaction_id.clone()));
                    self.transferred
                        .insert(contact.interaction_id.clone(), (contact, when));
                }
                None => {
                    for event in contact.handled_by(agent, at) {
                        self.schedule(event);
                    }
                }
            }
        } else if let Some((_, when)) = self.transferred.get(interaction)
            && asked > *when + TRANSFER_SETTLE
            && let Some((contact, when)) = self.transferred.remove(interaction)
        {
            self.deadlines
                .remove(&(when + contact.patience, contact.interaction_id.clone()));
            for event in contact.handled_by(agent, at) {
                self.schedule(event);
            }
        }
    }

    fn schedule(&mut self, event: Event) {
        self.arrivals += 1;
        self.due.insert((event.occurred_at, self.arrivals), event);
    }

    /// Everything due by `now`: customers out of patience hang up, the agents' events go.
    fn take_due(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        while let Some((deadline, interaction)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let left = self
                .waiting
                .remove(&interaction)
                .or_else(|| self.transferred.remove(&interaction).map(|(c, _)| c));
            if let Some(contact) = left {
                self.abandoned += 1;
                for event in contact.abandoned_at(deadline) {
                    self.schedule(event);
                }
            }
        }
        let mut events = Vec::new();
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            events.push(entry.remove());
        }
        events
    }

    /// When the desk next has something to do.
    fn next_due(&self) -> Option<DateTime<Utc>> {
        let due = self.due.keys().next().map(|(at, _)| *at);
        let deadline = self.deadlines.first().map(|(at, _)| *at);
        due.into_iter().chain(deadline).min()
    }
}

/// Who holds what, as `GET /v1/agents` answered when asked at the time it names:
/// (agent, interaction) pairs.
type Holdings = Arc<(DateTime<Utc>, Vec<(String, String)>)>;

/// Asks the server twice a second which agent holds which interaction, until the receiver
/// is gone.
async fn follow_assignments(
    client: Client<HttpConnector, Full<Bytes>>,
    target: String,
    token: Option<String>,
    holdings: watch::Sender<Holdings>,
) {
    let Ok(url) = format!("{target}/v1/agents").parse::<hyper::Uri>() else {
        return;
    };
    let mut last_problem = String::new();
    while !holdings.is_closed() {
        let asked = Utc::now();
        let mut request = hyper::Request::get(url.clone());
        if let Some(token) = &token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let answer = match request.body(Full::new(Bytes::new())) {
            Ok(request) => match client.request(request).await {
                Ok(response) if response.status().is_success() => response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|body| {
                        serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
                            .map_err(|e| e.to_string())
                    }),
                Ok(response) => Err(format!("GET /v1/agents answered {}", response.status())),
                Err(error) => Err(error.to_string()),
            },
            Err(error) => Err(error.to_string()),
        };
        match answer {
            Ok(answer) => {
                last_problem.clear();
                let pairs = answer["agents"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|agent| {
                        let id = agent["agent_id"].as_str().unwrap_or_default().to_owned();
                        agent["assignments"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|i| i.as_str())
                            .map(move |i| (id.clone(), i.to_owned()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                holdings.send_replace(Arc::new((asked, pairs)));
            }
            Err(problem) => {
                // Said once per kind of problem, not twice a second.
                if problem != last_problem {
                    tracing::warn!(%problem, "the simulated desk cannot see the router's assignments");
                    last_problem = problem;
                }
            }
        }
        tokio::time::sleep(ASSIGNMENT_POLL).await;
    }
}

/// Runs the simulation to its end.
pub async fn run(args: SimulateArgs) -> anyhow::Result<SimulateReport> {
    run_with(args, None).await
}

/// [`run`], saying on `live` when the back-fill is sent and the history goes on in real
/// time (at once without a back-fill).
pub async fn run_with(
    args: SimulateArgs,
    live: Option<oneshot::Sender<()>>,
) -> anyhow::Result<SimulateReport> {
    let mut live = live;
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number of events per second");
    }
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    if !(args.backfill_hours >= 0.0 && args.backfill_hours <= 24.0 * 31.0) {
        bail!("--backfill-hours must be between 0 and 744 (a month)");
    }
    if args.routed && args.start.is_some() {
        bail!("--routed follows the wall clock, as the router does: drop --start");
    }
    let target = args.target.trim_end_matches('/').to_owned();
    let url: hyper::Uri = format!("{target}/v1/events")
        .parse()
        .with_context(|| format!("--target {:?} is not a URL", args.target))?;
    if url.scheme_str() != Some("http") {
        bail!("--target must be an http:// URL (put TLS in front of omnilog, not in it)");
    }
    let events_wanted = events_wanted(&args);
    let config = history_config(&args);

    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let counters = Arc::new(Counters::default());
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let deadline = args.duration.map(|s| started + Duration::from_secs(s));
    let mut tasks = tokio::task::JoinSet::new();
    let mut batch: Vec<String> = Vec::with_capacity(args.batch);
    let mut queued: u64 = 0;
    let mut last_report = Instant::now();
    // With a back-fill (and always when routed), event time decides when an event is
    // sent: at once while it is past, at its time once the history has caught up with the
    // wall clock.
    let by_event_time = args.backfill_hours > 0.0 || args.routed;
    let mut caught_up_logged = false;
    let mut generated = history(config);
    let mut desk = Desk::default();
    // With --routed, once live: who holds what, from the server.
    let mut holdings: Option<watch::Receiver<Holdings>> = None;
    let mut follower: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let now = Utc::now();
        if let Some(holdings) = &mut holdings
            && holdings.has_changed().unwrap_or(false)
        {
            let answer = holdings.borrow_and_update().clone();
            let (asked, pairs) = &*answer;
            for (agent, interaction) in pairs {
                desk.held(interaction, agent, *asked, now);
            }
        }
        batch.extend(desk.take_due(now).iter().map(to_canonical_json));
        let mut end = deadline.is_some_and(|d| Instant::now() >= d);
        // In real time, the batch goes as soon as the next event is not due yet.
        let mut next_wait = Duration::ZERO;
        while !end && batch.len() < args.batch {
            match generated.peek_time() {
                None => end = true,
                Some(at) if by_event_time && at > now => {
                    next_wait = (at - now).to_std().unwrap_or_default();
                    break;
                }
                Some(_) => match generated.next_item() {
                    Some(Item::Event(event)) => batch.push(to_canonical_json(&event)),
                    Some(Item::Routed(contact)) => desk.wait(contact),
                    None => end = true,
                },
            }
        }
        if let Some(at) = desk.next_due()
            && !next_wait.is_zero()
        {
            next_wait = next_wait.min((at - now).to_std().unwrap_or_default());
        }
        // The back-fill's last events are in `batch` now: they are posted below, and the
        // back-fill ends once every request of it is answered.
        let backfill_ends = by_event_time && !next_wait.is_zero() && !caught_up_logged;
        if !batch.is_empty() && (batch.len() >= args.batch || end || !next_wait.is_zero()) {
            queued += batch.len() as u64;
            if !by_event_time {
                // Pace: the batch is due when the offered rate reaches it.
                let due = started + Duration::from_secs_f64(queued as f64 / args.rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let body = Bytes::from(format!("[{}]", batch.join(",")));
            let count = batch.len() as u64;
            batch.clear();
            let permit = permits.clone().acquire_owned().await?;
            let (client, url, token, counters) = (
                client.clone(),
                url.clone(),
                args.token.clone(),
                counters.clone(),
            );
            tasks.spawn(async move {
                let result = post(&client, &url, token.as_deref(), body, count, &counters).await;
                drop(permit);
                result
            });
            while let Some(done) = tasks.try_join_next() {
                done??;
            }
        }
        if backfill_ends {
            caught_up_logged = true;
            // Answered, not just sent: whoever takes over at the live moment (the demo's
            // router) sees a log that holds the whole back-filled past. Signalled while
            // the last back-filled request was in flight, the demo's router assigned a
            // contact that request had given to an agent.
            while let Some(done) = tasks.join_next().await {
                done??;
            }
            tracing::info!(
                sent = queued,
                seconds = started.elapsed().as_secs_f64(),
                "back-fill sent; the history goes on in real time"
            );
            if let Some(live) = live.take() {
                let _ = live.send(());
            }
            if args.routed {
                let (sender, receiver) =
                    watch::channel(Holdings::new((DateTime::<Utc>::MIN_UTC, Vec::new())));
                follower = Some(tokio::spawn(follow_assignments(
                    client.clone(),
                    target.clone(),
                    args.token.clone(),
                    sender,
                )));
                holdings = Some(receiver);
            }
        }
        if !args.quiet && last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            progress(
                &counters,
                started,
                events_wanted,
                args.routed.then_some(&desk),
            );
        }
        if end {
            break;
        }
        if !next_wait.is_zero() {
            // Asleep until the next event is due, or the router assigned something.
            match &mut holdings {
                Some(holdings) => {
                    tokio::select! {
                        () = tokio::time::sleep(next_wait) => {}
                        _ = holdings.changed() => {}
                    }
                }
                None => tokio::time::sleep(next_wait).await,
            }
        }
    }
    if let Some(follower) = follower {
        follower.abort();
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let report = SimulateReport {
        sent: counters.sent.load(Ordering::Relaxed),
        accepted: counters.accepted.load(Ordering::Relaxed),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        requests: counters.requests.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        routed_answered: desk.answered,
        routed_abandoned: desk.abandoned,
    };
    if !args.quiet {
        progress(
            &counters,
            started,
            events_wanted,
            args.routed.then_some(&desk),
        );
    }
    Ok(report)
}

fn progress(counters: &Counters, started: Instant, wanted: u64, desk: Option<&Desk>) {
    let sent = counters.sent.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    // A run without an end (the demo) has no total worth printing.
    let of = if wanted >= u64::MAX / 4 {
        "unbounded".to_owned()
    } else {
        wanted.to_string()
    };
    tracing::info!(
        sent,
        of,
        accepted = counters.accepted.load(Ordering::Relaxed),
        duplicates = counters.duplicates.load(Ordering::Relaxed),
        retries = counters.retries.load(Ordering::Relaxed),
        rate = format!("{:.0} events/s", sent as f64 / seconds),
        waiting_for_the_router = desk.map(|d| d.waiting.len() + d.transferred.len()),
        routed_answered = desk.map(|d| d.answered),
        routed_abandoned = desk.map(|d| d.abandoned),
        "simulating"
    );
}

/// Posts one batch, retrying while the server says it is unavailable.
async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &hyper::Uri,
    token: Option<&str>,
    body: Bytes,
    count: u64,
    counters: &Counters,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(100);
    for attempt in 0..20 {
        let mut request = hyper::Request::post(url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body.clone()))?;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let outcome = client.request(request).await;
        let retry = match outcome {
            Ok(response) => {
                let status = response.status();
                let answer = response.into_body().collect().await?.to_bytes();
                if status == hyper::StatusCode::ACCEPTED {
                    let receipt: serde_json::Value = serde_json::from_slice(&answer)
                        .context("the server's 202 answer is not JSON")?;
                    let number = |field: &str| receipt.get(field).and_then(|v| v.as_u64());
                    counters
                        .accepted
                        .fetch_add(number("accepted").unwrap_or(0), Ordering::Relaxed);
                    counters
                        .duplicates
                        .fetch_add(number("duplicates").unwrap_or(0), Ordering::Relaxed);
                    counters.sent.fetch_add(count, Ordering::Relaxed);
                    return Ok(());
                }
                if status.is_server_error() {
                    format!("{status}")
                } else {
                    bail!(
                        "the server refused a batch with {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
            }
            Err(error) => error.to_string(),
        };
        counters.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(attempt, reason = %retry, "retrying a batch");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    bail!("gave up on a batch after 20 attempts")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests a slow server received, and those it answered.
    #[derive(Default)]
    struct Seen {
        received: AtomicU64,
        answered: AtomicU64,
    }

    /// When the back-fill is signalled as over, the server has answered every request of
    /// it: against a server that holds each request 200 ms, a signal sent with the last
    /// back-filled requests still in flight finds fewer answered than received.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_back_fill_ends_once_every_request_of_it_is_answered() {
        let seen = Arc::new(Seen::default());
        let app = axum::Router::new().route(
            "/v1/events",
            axum::routing::post({
                let seen = seen.clone();
                move |body: Bytes| {
                    let seen = seen.clone();
                    async move {
                        seen.received.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let events = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
                            .map_or(0, |events| events.len());
                        seen.answered.fetch_add(1, Ordering::SeqCst);
                        (
                            axum::http::StatusCode::ACCEPTED,
                            axum::Json(serde_json::json!({"accepted": events, "duplicates": 0})),
                        )
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let args = SimulateArgs {
            target: format!("http://{addr}"),
            customers: Some(100),
            rate: 20.0,
            duration: None,
            events: Some(100_000),
            seed: 7,
            start: None,
            batch: 200,
            concurrency: 4,
            token: None,
            quiet: true,
            // Six minutes of history at 20 events a second: a few thousand events, in
            // more requests than may be in flight at once.
            backfill_hours: 0.1,
            routed: false,
        };
        let (live, gone_live) = oneshot::channel();
        let simulation = tokio::spawn(run_with(args, Some(live)));
        tokio::time::timeout(Duration::from_secs(60), gone_live)
            .await
            .expect("the back-fill ended within a minute")
            .expect("the simulation signalled the end of its back-fill");
        let (received, answered) = (
            seen.received.load(Ordering::SeqCst),
            seen.answered.load(Ordering::SeqCst),
        );
        simulation.abort();
        server.abort();
        assert!(received > 4, "the back-fill took {received} requests");
        assert_eq!(
            answered, received,
            "the back-fill was signalled over with requests unanswered"
        );
    }
}
