//! `omnilog demo`: a first look without installing anything. It runs `serve` on a fresh
//! data directory and drives it with the built-in simulator (realistic cross-channel
//! journeys, agents, queues) through the public ingest API, and prints where to look.
//! It runs until Ctrl-C, or with `--exit` stops once the simulated events are projected.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::config::ServerArgs;
use crate::serve;
use crate::simulate::{self, SimulateArgs};
use omnilog_events::identity::customer_id_for_handle;
use omnilog_testkit::history;

/// Options of `omnilog demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "OMNILOG_LISTEN")]
    listen: SocketAddr,
    /// Keep the data here instead of a temporary directory.
    #[arg(long, env = "OMNILOG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Simulated events per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Stop simulating after this many events [default: run until Ctrl-C].
    #[arg(long)]
    events: Option<u64>,
    /// Seed of the simulated history.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Distinct customers of the simulated desk: few enough that some come back and switch
    /// channels within the first minutes, enough that most journeys stay short.
    #[arg(long, default_value_t = 2_000)]
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
    let config = ServerArgs {
        data_dir: Some(data_dir.clone()),
        listen: Some(args.listen),
        ..ServerArgs::default()
    }
    .resolve()?;
    let server = serve::start(config).await?;
    let base = format!("http://{}", server.addr);
    let simulation_args = SimulateArgs {
        target: base.clone(),
        customers: Some(args.customers.max(1)),
        rate: args.rate,
        duration: None,
        events: Some(args.events.unwrap_or(u64::MAX / 2)),
        seed: args.seed,
        start: None,
        batch: 50,
        concurrency: 4,
        token: None,
        quiet: false,
    };
    // The first customer the simulation sends: the demo can name a journey that exists
    // from the first second instead of asking the user to find a customer id.
    let first_phone = history(simulate::history_config(&simulation_args)).find_map(|event| {
        event
            .customer
            .as_ref()?
            .handles
            .iter()
            .find(|h| h.kind == "phone")
            .cloned()
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "omnilog demo listening on {base} (data in {})",
            data_dir.display()
        )?;
        writeln!(
            out,
            "simulating a service desk at {} events/s; look at:",
            args.rate
        )?;
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
        if let Some(phone) = &first_phone {
            let encoded = phone.value.replace('+', "%2B");
            writeln!(
                out,
                "  {:<36} curl -s '{base}/v1/customers/resolve?kind=phone&value={encoded}'",
                "the first customer, by phone"
            )?;
            writeln!(
                out,
                "  {:<36} curl -s '{base}/v1/customers/{}/journey'",
                "their journey across channels",
                customer_id_for_handle(phone)
            )?;
        }
        writeln!(out, "Ctrl-C stops it.")?;
    }
    let simulation = simulate::run(simulation_args);
    if args.exit {
        let report = simulation.await?;
        server.wait_caught_up(Duration::from_secs(120)).await?;
        writeln!(
            std::io::stdout(),
            "sent {} events ({} accepted, {} duplicates) in {:.1} s; every view caught up",
            report.sent,
            report.accepted,
            report.duplicates,
            report.elapsed.as_secs_f64()
        )?;
    } else {
        tokio::select! {
            outcome = simulation => {
                let report = outcome?;
                tracing::info!(sent = report.sent, "the simulation finished; still serving");
                serve::shutdown_signal().await;
            }
            () = serve::shutdown_signal() => {}
        }
    }
    server.stop().await
}
