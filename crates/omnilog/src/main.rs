//! The `omnilog` binary: command line, configuration and wiring. The only crate that
//! uses `anyhow`; everything below it reports typed errors.

mod allocator;
mod bench;
mod config;
mod demo;
mod export;
mod gate;
mod import;
mod inspect;
mod progress;
mod projector;
mod reactor;
mod replay;
mod router;
mod serve;
mod simulate;

use clap::{Parser, Subcommand};

/// jemalloc instead of the system allocator: folds and the log's readers and writers
/// allocate many small, short-lived values, and under ingest most of an event's strings are
/// allocated on the HTTP worker that parsed the request and freed on another thread (the
/// sequencer's, the log writer's). jemalloc takes such a free into the freeing thread's
/// cache; mimalloc 2, the allocator before, queued it to the owning thread's page with
/// atomic operations and had that thread collect it later (`_mi_page_thread_free_collect`,
/// `mi_free_block_delayed_mt` and the cache misses of `_mi_page_malloc` on blocks freed
/// elsewhere: 9 % of a server's samples under `benches/serve_load.py`, its functions all
/// told 13 %). Loading 1M events
/// through the API, six alternated pairs: server CPU 6.85 to 7.63 s (median 7.28) against
/// 6.96 to 10.21 s (8.9), every view caught up at 3.77 to 4.16 s against 3.79 to 5.51 s,
/// peak RSS 663 to 686 MB against 746 to 931 MB; seven alternated 1M replays: median 1.91 s
/// against 1.96 s, the same within the noise (docs/benchmarks-journal.md, "2026-12-04, night").
/// Its options are in [`allocator`].
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// omnilog: every interaction from every channel, as an immutable, replayable log.
#[derive(Debug, Parser)]
#[command(name = "omnilog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs omnilog on the embedded log: ingest API, channel webhooks, every projector, the query API.
    Serve(config::ServerArgs),
    /// The write side alone on Kafka (stateless; run any number): ingest API and channel webhooks.
    IngestServer(config::ServerArgs),
    /// One instance of a scaled-out projector group on Kafka: folds the partitions the group gives it, answers any query.
    Projector(projector::ProjectorArgs),
    /// Serves on a temporary data dir and drives it with the built-in traffic simulator.
    Demo(demo::DemoArgs),
    /// Drives a running server through its public ingest API with a seeded history.
    Simulate(simulate::SimulateArgs),
    /// Rebuilds views from the log into a fresh store, optionally as of a point in event time.
    Replay(replay::ReplayArgs),
    /// Streams the history (canonical JSON lines or CSV) to stdout.
    Export(export::ExportArgs),
    /// Loads a history of canonical JSON lines (from `omnilog export`) into a log, in batches, resumably.
    Import(import::ImportArgs),
    /// Shows what a data dir holds: log records, view checkpoints and digests.
    Inspect(inspect::InspectArgs),
    /// Measures every stage (log read, folds, durable projection, HTTP ingest, latency, memory).
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::Export(_)) {
        // Export is one sequential stream: one worker and one thread for the log's blocking
        // reads keep glibc from growing a heap arena per thread (its peak memory).
        builder.worker_threads(1).max_blocking_threads(1);
    }
    let runtime = builder.enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::IngestServer(args) => runtime.block_on(serve::run_ingest_server(args)),
        Command::Projector(args) => runtime.block_on(projector::run(args)),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Replay(args) => runtime.block_on(replay::run(args)),
        Command::Export(args) => runtime.block_on(export::run(args)),
        Command::Import(args) => runtime.block_on(import::run(args)),
        Command::Inspect(args) => runtime.block_on(inspect::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Simulate(args) => runtime.block_on(async {
            let report = simulate::run(args).await?;
            use std::io::Write as _;
            writeln!(
                std::io::stdout(),
                "sent {} events in {} requests ({} accepted, {} duplicates, {} retries) in {:.1} s",
                report.sent,
                report.requests,
                report.accepted,
                report.duplicates,
                report.retries,
                report.elapsed.as_secs_f64()
            )?;
            Ok(())
        }),
    }
}
