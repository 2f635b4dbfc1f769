//! `longhaul demo`: the first thing a new user runs. Starts a server in process (the same
//! one `longhaul serve` runs), runs a short demo job over HTTP with a progress bar, prints
//! the result and the curl lines that make the same calls.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::client::{Client, ClientArgs, Format};
use crate::serve::{self, ServeArgs};

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Data directory (the same one `longhaul serve` uses by default).
    #[arg(long, env = "LONGHAUL_DATA_DIR", default_value = "longhaul-data")]
    pub data_dir: PathBuf,
    /// Steps of the demo job.
    #[arg(long, default_value_t = 5)]
    pub steps: u32,
    /// Seconds per step.
    #[arg(long, default_value_t = 1)]
    pub step_seconds: u32,
}

pub async fn run(args: DemoArgs) -> Result<i32> {
    let server = serve::start(&ServeArgs::local(&args.data_dir), false)
        .await
        .context("starting the server")?;
    let token = match &server.new_token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(args.data_dir.join("tokens"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .and_then(|l| l.split_whitespace().next())
                    .map(str::to_string)
            })
            .context("reading the token from the data dir")?,
    };
    println!(
        "longhaul demo: a server is running in this process at {}",
        server.base_url
    );
    let client = Client::new(&ClientArgs {
        url: server.base_url.clone(),
        token: Some(token.clone()),
        data_dir: args.data_dir.clone(),
        format: Format::Json,
    })?;

    let input = json!({"steps": args.steps, "stepSeconds": args.step_seconds});
    println!(
        "Starting a demo job: {} steps of {} s each (POST /jobs)…",
        args.steps, args.step_seconds
    );
    let job = client.start("demo", input.clone(), None).await?;
    let job_id = job["jobId"].as_str().unwrap_or_default().to_string();
    println!(
        "Job {job_id} is {}. Waiting for it (GET /jobs/{job_id}?waitSeconds=…):",
        job["status"].as_str().unwrap_or("?")
    );
    let done = client
        .wait(
            &job_id,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .await?;
    println!("\nFinal job:");
    println!("{}", serde_json::to_string_pretty(&done)?);
    server.shutdown().await?;

    let body = json!({"type": "demo", "input": input}).to_string();
    println!(
        "\nThe same calls with curl, against `cargo run --release -- serve` (it uses the same data dir and token):\n\
         \n  export LONGHAUL_TOKEN={token}\
         \n  curl -s -X POST http://127.0.0.1:8080/jobs -H \"Authorization: Bearer $LONGHAUL_TOKEN\" -H 'Content-Type: application/json' -d '{body}'\
         \n  curl -s \"http://127.0.0.1:8080/jobs/JOB_ID?waitSeconds=20\" -H \"Authorization: Bearer $LONGHAUL_TOKEN\"\
         \n  curl -s http://127.0.0.1:8080/jobs -H \"Authorization: Bearer $LONGHAUL_TOKEN\"\
         \n  curl -s -X POST http://127.0.0.1:8080/jobs/JOB_ID/cancel -H \"Authorization: Bearer $LONGHAUL_TOKEN\"\n"
    );
    Ok(crate::client::exit_code_for(&done))
}
