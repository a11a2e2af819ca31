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

/// mimalloc instead of the system allocator: folds and sled allocate many small,
/// short-lived values. `omnilog bench --events 100000`, two runs each way: read and decode
/// +40 %, folds +16 %, durable projection +10 %, batched ingest +15 %. Built without
/// transparent huge pages (the workspace's `no_thp` feature): with them, fresh memory
/// faults in 2 MB at a time, and the kernel zeroing it (`clear_page_erms`) took 18 % of
/// a bench profile; without, three paired runs gave +12 % to the journey view's durable
/// projection and 10 % less peak memory for `omnilog replay`.
///
/// mimalloc 2 (the workspace's `v2` feature), not 3: Rust asks for every allocation with
/// its alignment (`mi_malloc_aligned`), and mimalloc 3 serves a word-aligned request whose
/// size is not a power of two by over-allocating whenever its size class's page has no
/// free block at hand (`mi_malloc_is_naturally_aligned` lost version 2's "up to 16 bytes is
/// always aligned" rule): 380,000 such calls in a 200k-event replay. With version 2: 1.1 %
/// fewer instructions (`valgrind --tool=callgrind omnilog replay`), and three alternated
/// 1M-event replays peaked at 325 MB against 398 MB.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let serving = matches!(
        cli.command,
        Command::Serve(_)
            | Command::IngestServer(_)
            | Command::Projector(_)
            | Command::Demo(_)
            | Command::Bench(_)
    );
    if serving {
        allocator::tune_for_server();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if serving {
        builder.on_thread_park(allocator::give_back_when_idle);
    }
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
