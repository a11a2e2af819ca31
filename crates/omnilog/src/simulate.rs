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
use omnilog_testkit::{HistoryConfig, history};
use tokio::sync::Semaphore;

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
/// About how long one contact keeps an agent of the generated desk busy, waits included.
const AGENT_SECONDS_PER_CONTACT: f64 = 900.0;

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
    // implies, and the desk has the agents such a pace needs (each contact holds an agent
    // for about AGENT_SECONDS_PER_CONTACT), so queues stay as short as a real desk's.
    let arrival_gap_seconds = EVENTS_PER_CONTACT / args.rate;
    let mut config = HistoryConfig::with_events(args.seed, events_wanted).with_customers(
        args.customers
            .unwrap_or((events_wanted / 30).clamp(1_000, 1_000_000)),
    );
    config.agents = (AGENT_SECONDS_PER_CONTACT / arrival_gap_seconds).clamp(8.0, 2_000.0) as u32;
    config.start = args.start.unwrap_or_else(|| Utc::now() - backfill(args));
    config.mean_arrival_gap =
        TimeDelta::microseconds((arrival_gap_seconds * 1_000_000.0).max(1.0) as i64);
    config
}

/// Runs the simulation to its end.
pub async fn run(args: SimulateArgs) -> anyhow::Result<SimulateReport> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number of events per second");
    }
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    if !(args.backfill_hours >= 0.0 && args.backfill_hours <= 24.0 * 31.0) {
        bail!("--backfill-hours must be between 0 and 744 (a month)");
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
    // With a back-fill, event time decides when an event is sent: at once while it is
    // past, at its time once the history has caught up with the wall clock.
    let by_event_time = args.backfill_hours > 0.0;
    let mut caught_up_logged = false;
    let mut generated = history(config).peekable();
    loop {
        let next = generated.next();
        if let Some(event) = &next {
            batch.push(omnilog_events::to_canonical_json(event));
        }
        let end = next.is_none() || deadline.is_some_and(|d| Instant::now() >= d);
        // In real time, the batch goes as soon as the next event is not due yet.
        let next_wait = if by_event_time {
            generated
                .peek()
                .map(|event| {
                    (event.occurred_at - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or_default()
        } else {
            Duration::ZERO
        };
        if batch.len() < args.batch && !end && next_wait.is_zero() {
            continue;
        }
        if by_event_time && !next_wait.is_zero() && !caught_up_logged {
            caught_up_logged = true;
            tracing::info!(
                sent = queued + batch.len() as u64,
                seconds = started.elapsed().as_secs_f64(),
                "back-fill sent; the history goes on in real time"
            );
        }
        if !batch.is_empty() {
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
        if !args.quiet && last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            progress(&counters, started, events_wanted);
        }
        if end {
            break;
        }
        if !next_wait.is_zero() {
            tokio::time::sleep(next_wait).await;
        }
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
    };
    if !args.quiet {
        progress(&counters, started, events_wanted);
    }
    Ok(report)
}

fn progress(counters: &Counters, started: Instant, wanted: u64) {
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
