//! `omnilog demo`: a first look without installing anything. It runs `serve` on a fresh
//! data directory, prints the console's URL, and drives it with the built-in simulator
//! (realistic cross-channel journeys, agents, queues) through the public ingest API.
//!
//! The desk shows at once: the simulator first back-fills a working day of history (sent
//! as fast as the server takes it, through the same ingest path as live traffic), then goes
//! on in real time from where that day left off, so queues already hold waiting items,
//! agents already hold work, reports have rows and customers have journeys across
//! channels. The customer the demo names is one whose journey spans two channels early in
//! the day, and it is named only once its journey answers. It runs until Ctrl-C, or with
//! `--exit` stops once the simulated events are projected.
//!
//! The back-filled day carries its own routing (the generator's desk answered it, see
//! `omnilog_testkit`); from the present on the server's router routes (`auto-accept`),
//! started once the back-fill is in, and the simulated agents handle what it gives them
//! (`omnilog simulate --routed`). The desk is staffed for its average load, so the queues
//! move, most contacts are answered within their service level, and the day's peaks
//! breach it and lose some callers.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use omnilog_events::{Channel, Handle};

use crate::config::ServerArgs;
use crate::router::RouteMode;
use crate::serve;
use crate::simulate::{self, SimulateArgs};
use omnilog_events::identity::customer_id_for_handle;
use omnilog_testkit::{HistoryConfig, history};

/// Options of `omnilog demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "OMNILOG_LISTEN")]
    listen: SocketAddr,
    /// Keep the data here instead of a temporary directory.
    #[arg(long, env = "OMNILOG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Simulated events per second: about two contacts a second, a large desk's day (some
    /// 500 agents). The back-fill of 8 hours at this rate is about 550,000 events.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Hours of history back-filled before going live (0: start from an empty desk).
    #[arg(long, default_value_t = 8.0)]
    backfill_hours: f64,
    /// Stop simulating after this many events [default: run until Ctrl-C].
    #[arg(long)]
    events: Option<u64>,
    /// Seed of the simulated history.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Distinct customers of the simulated desk: over a back-filled day, few enough that
    /// many come back and switch channels, enough that most journeys stay short.
    #[arg(long, default_value_t = 20_000)]
    customers: u64,
    /// Exit once the simulated events are sent and projected (for scripts and tests).
    #[arg(long, requires = "events")]
    exit: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temporary = tempfile::tempdir().context("creating a temporary data dir")?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let mut config = ServerArgs {
        data_dir: Some(data_dir.clone()),
        listen: Some(args.listen),
        ..ServerArgs::default()
    }
    .resolve()?;
    // The router answers the present; the back-filled past carries its own routing, so
    // the router is held until the back-fill is in.
    config.router.mode = RouteMode::AutoAccept;
    config.router.held = args.backfill_hours > 0.0;
    // Likewise a reactor acts only on notices due once the demo is live, never on the
    // back-filled day's triggers. Unless a config file gives rules, the demo's desk calls
    // back customers who gave up waiting (one in five held out, for the engagement
    // report's comparison).
    config.reactor.held = args.backfill_hours > 0.0;
    if config.reactor.rules.is_empty() {
        config.reactor.rules = vec![demo_callback_rule()?];
    }
    let server = serve::start(config).await?;
    let mut signal = serve::ShutdownSignal::listen()?;
    let base = format!("http://{}", server.addr);
    let simulation_args = SimulateArgs {
        target: base.clone(),
        customers: Some(args.customers.max(1)),
        rate: args.rate,
        duration: None,
        events: Some(args.events.unwrap_or(u64::MAX / 2)),
        seed: args.seed,
        start: None,
        // Large requests while back-filling; live, a request goes as soon as the next
        // event is not due yet, so live requests stay small. One request at a time (the
        // next batch is generated while it is in flight): requests in flight together may
        // land in either order, and a call's `abandoned` folded before its `queued` would
        // leave it waiting for ever.
        batch: 2_000,
        concurrency: 1,
        token: None,
        quiet: true,
        backfill_hours: args.backfill_hours,
        routed: true,
    };
    writeln!(
        std::io::stdout(),
        "omnilog demo: open the console at {base}/ (data in {})",
        data_dir.display()
    )?;
    let config = simulate::history_config(&simulation_args);
    let live_from =
        config.start + TimeDelta::milliseconds((args.backfill_hours * 3_600_000.0) as i64);
    // With a back-fill, a customer the simulation sends early whose journey spans two
    // channels: the demo names a journey worth opening instead of asking the user to find
    // a customer id. Without one, the first customer, whose journey exists at once.
    let featured = if args.backfill_hours > 0.0 {
        featured_customer(config, live_from)
    } else {
        history(config).find_map(|event| {
            event
                .customer
                .as_ref()?
                .handles
                .iter()
                .find(|h| h.kind == "phone")
                .cloned()
        })
    };
    let (live, gone_live) = tokio::sync::oneshot::channel();
    let simulation = tokio::spawn(simulate::run_with(simulation_args, Some(live)));
    if let Some(phone) = &featured
        && args.backfill_hours > 0.0
    {
        let id = customer_id_for_handle(phone);
        wait_for_journey(&base, &id, Duration::from_secs(60)).await;
    }
    {
        let mut out = std::io::stdout().lock();
        if args.backfill_hours > 0.0 {
            writeln!(
                out,
                "back-filling {} h of a service desk's day (in seconds; the console fills as it goes), then {} events/s live, routed by the router (auto-accept); look at:",
                args.backfill_hours, args.rate
            )?;
        } else {
            writeln!(
                out,
                "simulating a service desk at {} events/s, routed by the router (auto-accept); look at:",
                args.rate
            )?;
        }
        writeln!(out, "  {:<36} {base}/#/wallboard", "the console: wallboard")?;
        for (what, path) in [
            ("queues, items in routing order", "/v1/queues"),
            ("agents, their load and state", "/v1/agents"),
            ("report by channel", "/v1/reports/summary?group_by=channel"),
            ("journey figures and channel paths", "/v1/reports/journeys"),
            ("trending topics", "/v1/reports/topics"),
            ("projector positions and lag", "/v1/views"),
            ("live queue stats (SSE)", "/v1/queues/stream"),
            ("Prometheus metrics", "/metrics"),
        ] {
            writeln!(out, "  {what:<36} curl -s '{base}{path}'")?;
        }
        if let Some(phone) = &featured {
            let encoded = phone.value.replace('+', "%2B");
            let id = customer_id_for_handle(phone);
            writeln!(
                out,
                "  {:<36} {base}/#/customer/{id}",
                "the console: a customer's journey"
            )?;
            writeln!(
                out,
                "  {:<36} curl -s '{base}/v1/customers/resolve?kind=phone&value={encoded}'",
                "that customer, by phone"
            )?;
            writeln!(
                out,
                "  {:<36} curl -s '{base}/v1/customers/{id}/journey'",
                "their journey across channels"
            )?;
        }
        writeln!(out, "Ctrl-C stops it.")?;
    }
    let stop_simulation = simulation.abort_handle();
    let simulation = async move { simulation.await.context("the simulation task")? };
    tokio::pin!(simulation);
    let mut gone_live = Some(gone_live);
    loop {
        tokio::select! {
            outcome = &mut simulation => {
                let report = outcome?;
                if args.exit {
                    server.wait_caught_up(Duration::from_secs(120)).await?;
                    writeln!(
                        std::io::stdout(),
                        "sent {} events ({} accepted, {} duplicates) in {:.1} s; live, the router assigned {} contacts and {} customers hung up waiting; every view caught up",
                        report.sent,
                        report.accepted,
                        report.duplicates,
                        report.elapsed.as_secs_f64(),
                        report.routed_answered,
                        report.routed_abandoned,
                    )?;
                } else {
                    tracing::info!(sent = report.sent, "the simulation finished; still serving");
                    signal.received().await;
                }
                break;
            }
            Ok(()) = async { gone_live.as_mut().expect("guarded").await }, if gone_live.is_some() => {
                gone_live = None;
                go_live(&server, args.backfill_hours).await?;
            }
            () = signal.received(), if !args.exit => break,
        }
    }
    // Nothing is sent to a server that is stopping.
    stop_simulation.abort();
    server.stop().await
}

/// The back-fill is sent: once the views hold it, the router takes over from the
/// generator's desk.
async fn go_live(server: &serve::Server, backfill_hours: f64) -> anyhow::Result<()> {
    if backfill_hours > 0.0 {
        // Bounded: live traffic keeps arriving meanwhile, so the views may never be
        // exactly caught up; the router then starts anyway.
        if let Err(error) = server.wait_caught_up(Duration::from_secs(60)).await {
            tracing::warn!(%error, "starting the router before the views caught up");
        }
    }
    server.open_routing();
    writeln!(
        std::io::stdout(),
        "live: the router assigns waiting contacts (auto-accept) and the simulated agents handle them"
    )?;
    Ok(())
}

/// Among the events of the history before `until`, the first customer to use a second
/// channel (within a day, so within one journey): the phone handle its id comes from.
fn featured_customer(config: HistoryConfig, until: DateTime<Utc>) -> Option<Handle> {
    // The same history with the resolved ids written on every event (they are the phone
    // handles' ids), so this scan needs no identity resolution of its own.
    let mut channels: HashMap<String, (Channel, Option<Handle>)> = HashMap::new();
    for event in history(config.with_customer_ids())
        .take(2_000_000)
        .take_while(|event| event.occurred_at <= until)
    {
        let (Some(customer), Some(channel)) = (&event.customer, event.channel) else {
            continue;
        };
        let Some(id) = customer.id.as_deref() else {
            continue;
        };
        let phone = customer.handles.iter().find(|h| h.kind == "phone").cloned();
        match channels.get_mut(id) {
            None => {
                channels.insert(id.to_owned(), (channel, phone));
            }
            Some((first, known)) => {
                if known.is_none() {
                    *known = phone;
                }
                if *first != channel
                    && let Some(phone) = known.clone()
                    && customer_id_for_handle(&phone) == id
                {
                    return Some(phone);
                }
            }
        }
    }
    None
}

/// Waits (bounded) until the customer's journey answers with two channels, so the link
/// the demo prints answers at once.
async fn wait_for_journey(base: &str, customer: &str, timeout: Duration) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let Ok(url) = format!("{base}/v1/customers/{customer}/journey?wait_ms=0").parse::<hyper::Uri>()
    else {
        return;
    };
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(response) = client.get(url.clone()).await
            && response.status() == hyper::StatusCode::OK
            && let Ok(body) = response.into_body().collect().await
            && let Ok(journey) = serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
            && journey["journeys"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|j| j["channels"].as_array().is_some_and(|c| c.len() >= 2))
            })
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(
        customer,
        "the featured customer's journey did not show two channels in time"
    );
}

/// The demo's reactor rule: a callback notice ten minutes after a customer abandoned a
/// queue without contacting the desk again, a fifth of customers held out.
fn demo_callback_rule() -> anyhow::Result<omnilog_reactor::Rule> {
    let spec = omnilog_reactor::RuleSpec {
        reason: "callback".to_owned(),
        kind: omnilog_reactor::RuleKind::AbandonedCallback,
        after_minutes: Some(10),
        channel: Some("sms".to_owned()),
        text: Some("Sorry we missed you: we will call you back shortly.".to_owned()),
        attribute: None,
        holdout_percent: Some(20),
    };
    Ok(spec.check("demo reactor")?)
}
