//! `longhaul-bench`: longhaul's measurements, kept out of the `longhaul` binary users run.
//! Benchmarks are commands, never tests: each runs its peer in the same run and prints JSON
//! with min/median/max over its runs (the machine is small and noisy: compare ratios).
//!
//! - `engine`: the embedded engine's Pass transitions/s, in memory and with SQLite
//!   checkpoints, vs moto's Step Functions executor (in process: no server).
//! - `http`: getJob and startJob of a `longhaul serve` child vs a bare axum handler in its
//!   own process, both loaded from outside by wrk.
//! - `csv`: csv-report through the API vs DuckDB and pandas on the same file.
//! - `load`: idle long polls (held by wrk) plus running jobs: errors and the server's RSS.
//! - `lambda`: the Lambda bootstraps' size and start to first response.
//!
//! The benches that need a server start the `longhaul` binary found next to this one (the
//! same target dir: `cargo build --release -p longhaul` first) or the one `--longhaul` names.

/// The same allocator as `longhaul`: `engine` runs the engine in this process, and the bare
/// peer of `http` should allocate as `longhaul serve` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod csv;
mod engine;
mod http;
mod lambda;
mod load;
mod server;
mod stats;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "longhaul-bench",
    version,
    about = "Measure longhaul against its peers (benchmarks are commands, never tests)."
)]
struct Cli {
    /// The `longhaul` binary to start as the server (http, csv, load). Default: the one next
    /// to this binary, in the same target directory.
    #[arg(long, global = true, env = "LONGHAUL_BENCH_LONGHAUL")]
    longhaul: Option<PathBuf>,
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Pass-state transitions per second of the embedded engine.
    Engine(engine::EngineBench),
    /// Lambda bootstraps: size and start-to-first-response under a Runtime API emulator.
    Lambda(lambda::LambdaBench),
    /// Idle long polls (wrk) plus running jobs against a `longhaul serve`: errors and RSS.
    Load(load::LoadBench),
    /// getJob and startJob under load from wrk vs. a bare axum handler.
    Http(http::HttpBench),
    /// csv-report over a generated CSV through the API vs. DuckDB and pandas.
    Csv(csv::CsvBench),
    /// The bare axum peer of `http` (started by it, in its own process).
    #[command(hide = true)]
    BareServer(http::BareServer),
}

// The runtime `longhaul` builds (multi-threaded, all drivers): the bare peer must be served
// the same way.
#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let longhaul = || server::Longhaul::find(cli.longhaul.as_deref());
    match cli.command {
        BenchCommand::Engine(b) => engine::run(b).await,
        BenchCommand::Lambda(b) => lambda::run(b).await,
        BenchCommand::Load(b) => load::run(b, &longhaul()?).await,
        BenchCommand::Http(b) => http::run(b, &longhaul()?).await,
        BenchCommand::Csv(b) => csv::run(b, &longhaul()?).await,
        BenchCommand::BareServer(b) => http::bare_server(b).await,
    }
}
