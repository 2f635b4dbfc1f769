//! `longhaul`: the command line. Thin wiring: each subcommand parses its arguments and calls
//! into the crates (`longhaul-local` + `longhaul-api` for `serve`, `longhaul-engine` for
//! `sfn run`, the HTTP client for `start`/`get`/`list`/`cancel`/`upload`).

/// mimalloc: the engine and the server allocate many small short-lived JSON values from many
/// tasks; glibc's allocator slowed a 1,000-item Map 2.5× once the heap had been through
/// 10,000 executions (`longhaul-bench engine`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod demo;
mod sam;
mod scaffold;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use client::{Client, ClientArgs};

#[derive(Debug, Parser)]
#[command(
    name = "longhaul",
    version,
    about = "Start long-running jobs over HTTP (for ChatGPT GPT Actions) and poll for the answer.",
    long_about = "Start long-running jobs over HTTP (for ChatGPT GPT Actions) and poll for the answer.\n\n\
        `longhaul serve` runs the whole service on this machine (SQLite, files on disk, the \
        embedded Step Functions engine); `longhaul demo` shows it working in one command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the job API on this machine.
    Serve(serve::ServeArgs),
    /// Start a server in process, run a short demo job over HTTP with a progress bar, print
    /// the result and the curl lines for the same calls.
    Demo(demo::DemoArgs),
    /// Start a job (startJob).
    Start(client::StartArgs),
    /// Show a job (getJob).
    Get {
        job_id: String,
        /// Wait for the job to end, with a progress bar; exit 1 unless it succeeds.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Answer the question a job waits for (answerJobInput); waits until it asks.
    Answer {
        job_id: String,
        /// The answer: a JSON object matching the question's requestedSchema, or @FILE.
        #[arg(long)]
        input: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List your jobs, newest first (listJobs).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a job (cancelJob).
    Cancel {
        job_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a job's execution history as a timeline (getJobHistory).
    History {
        job_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upload a file for use as a job input (createUpload + PUT).
    Upload {
        path: PathBuf,
        #[arg(long)]
        mime_type: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the job types and their input schemas (listJobTypes).
    Types {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run Amazon States Language definitions on the embedded engine.
    Sfn {
        #[command(subcommand)]
        command: SfnCommand,
    },
    /// Scaffold: `longhaul new job-type NAME --runtime python3.12|nodejs22.x|rust`.
    New {
        #[command(subcommand)]
        command: scaffold::NewCommand,
    },
    /// Write the AWS deployment (template.yaml, statemachine/job.asl.json and
    /// statemachine/job-types.json) from the job type folders.
    Sam(sam::SamArgs),
    /// Print the OpenAPI 3.1 spec (YAML) for a GPT Action.
    Openapi {
        /// The server URL to put in the spec (a GPT Action needs the public https URL).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server_url: String,
    },
}

#[derive(Debug, Subcommand)]
enum SfnCommand {
    /// Run one definition to its end and print its output.
    Run(longhaul_engine::cli::SfnRunArgs),
    /// Run a file of cases with recorded outcomes and print how many pass, per feature.
    Conformance(longhaul_engine::cli::SfnConformanceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await.map(|()| 0),
        Command::Demo(args) => demo::run(args).await,
        Command::Start(args) => client::start_command(args).await,
        Command::Get {
            job_id,
            wait,
            client,
        } => client::get_command(&job_id, wait, &client).await,
        Command::Answer {
            job_id,
            input,
            client,
        } => client::answer_command(&job_id, &input, &client).await,
        Command::List {
            status,
            job_type,
            limit,
            cursor,
            client,
        } => {
            let c = Client::new(&client)?;
            let list = c
                .list(
                    status.as_deref(),
                    job_type.as_deref(),
                    limit,
                    cursor.as_deref(),
                )
                .await?;
            client::print_list(c.format, &list);
            Ok(0)
        }
        Command::History { job_id, client } => {
            let c = Client::new(&client)?;
            let events = c.history(&job_id).await?;
            client::print_history(c.format, &events);
            Ok(0)
        }
        Command::Cancel { job_id, client } => {
            let c = Client::new(&client)?;
            let job = c.cancel(&job_id).await?;
            client::print_job(c.format, &job);
            Ok(0)
        }
        Command::Upload {
            path,
            mime_type,
            client,
        } => {
            let c = Client::new(&client)?;
            let answer = c.upload(&path, mime_type.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(0)
        }
        Command::Types { client } => {
            let c = Client::new(&client)?;
            let types = c.job_types().await?;
            println!("{}", serde_json::to_string_pretty(&types)?);
            Ok(0)
        }
        Command::Sfn {
            command: SfnCommand::Run(args),
        } => {
            let http =
                longhaul_local::http_task::OutboundHttp::new(longhaul_outbound::OutboundPolicy {
                    allow_insecure: args.allow_insecure_http,
                });
            Ok(longhaul_engine::cli::run(args, std::sync::Arc::new(http)).await)
        }
        Command::Sfn {
            command: SfnCommand::Conformance(args),
        } => Ok(longhaul_engine::cli::conformance(args).await),
        Command::Sam(args) => sam::run(&args),
        Command::New { command } => scaffold::run(&command),
        Command::Openapi { server_url } => {
            print!("{}", longhaul_api::openapi_yaml(&server_url));
            Ok(0)
        }
    }
}
