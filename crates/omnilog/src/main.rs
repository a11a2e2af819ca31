//! The `omnilog` binary: command line, configuration and wiring. The only crate that
//! uses `anyhow`; everything below it reports typed errors.

mod config;
mod demo;
mod serve;

use clap::{Parser, Subcommand};

/// omnilog: every interaction from every channel, as an immutable, replayable log.
#[derive(Debug, Parser)]
#[command(name = "omnilog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs omnilog on the embedded log: the ingest API, channel webhooks and identity queries.
    Serve(config::ServerArgs),
    /// Writes a seeded cross-channel history into a fresh embedded log and reads it back.
    Demo(demo::DemoArgs),
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
    }
}
