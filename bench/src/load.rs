//! `longhaul-bench load`: a `longhaul serve` child with N running demo jobs and M concurrent
//! long polls held on them by wrk (its own process, one connection per poll); reports errors
//! and the server's resident memory (peak sampled VmRSS and the kernel's VmHWM), from /proc.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::{Value, json};

use crate::server::{Longhaul, spawn_serve};
use crate::wrk::{self, Settings};

#[derive(Debug, Clone, Args)]
pub struct LoadBench {
    /// Concurrent long polls (getJob with waitSeconds=20), each on its own connection.
    #[arg(long, default_value_t = 1000)]
    pub long_polls: usize,
    /// Demo jobs running meanwhile (20 steps of 2 s each).
    #[arg(long, default_value_t = 200)]
    pub jobs: usize,
    /// How long the polls are held.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Long polls on the jobs in turn (each wrk thread goes round the list).
fn long_poll_script(token: &str, ids: &[String]) -> String {
    let ids: Vec<String> = ids.iter().map(|id| wrk::lua_string(id)).collect();
    format!(
        r#"local ids = {{{ids}}}
local auth = {auth}
local n = 0
function request()
  n = n + 1
  return wrk.format("GET", "/jobs/" .. ids[(n % #ids) + 1] .. "?waitSeconds=20", {{["Authorization"] = auth}})
end
"#,
        ids = ids.join(", "),
        auth = wrk::lua_string(&format!("Bearer {token}")),
    )
}

/// Starts `jobs` demo jobs of 20 steps of 2 s; their ids.
async fn start_jobs(url: &str, token: &str, jobs: usize) -> Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..jobs {
        let r = http
            .post(format!("{url}/jobs"))
            .bearer_auth(token)
            .json(&json!({"type": "demo", "input": {"steps": 20, "stepSeconds": 2}}))
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!("startJob answered {}", r.status());
        }
        let v: Value = r.json().await?;
        ids.push(
            v["jobId"]
                .as_str()
                .context("startJob gave no jobId")?
                .to_string(),
        );
    }
    Ok(ids)
}

pub async fn run(b: LoadBench, longhaul: &Longhaul) -> Result<i32> {
    crate::server::raise_open_files_limit();
    ensure!(b.jobs > 0, "--jobs: at least 1");
    let wrk = wrk::ensure_installed()?;
    let dir = tempfile::tempdir()?;
    let max_active = (b.jobs + 10).to_string();
    let mut server = spawn_serve(longhaul, dir.path(), &["--max-active-jobs", &max_active]).await?;
    let pid = server.process.id().context("server pid")?;
    ensure!(!server.token.is_empty(), "the server printed no token");
    let idle_rss = proc_kib(pid, "VmRSS:").unwrap_or(0);
    let ids = start_jobs(&server.url, &server.token, b.jobs).await?;
    let settings = Settings {
        threads: b.threads.max(1),
        connections: b.long_polls.max(b.threads.max(1)),
        seconds: b.seconds.max(1),
        timeout_seconds: 25,
    };
    let script = long_poll_script(&server.token, &ids);
    let sample = async {
        let until = Instant::now() + Duration::from_secs(b.seconds.max(1));
        let mut peak = 0;
        while Instant::now() < until {
            peak = peak.max(proc_kib(pid, "VmRSS:").unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        peak
    };
    let (polls, peak) = tokio::join!(wrk::run(&wrk, &settings, &server.url, &script), sample);
    let polls = polls?;
    let hwm = proc_kib(pid, "VmHWM:").unwrap_or(0);
    let _ = server.process.kill().await;
    if polls.errors > 0 {
        eprintln!("{}", polls.error_detail);
    }
    let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    let report = json!({
        "load_generator": settings.command(),
        "longhaul": longhaul.0,
        "long_polls": b.long_polls,
        "running_jobs": b.jobs,
        "seconds": b.seconds,
        "poll_answers": polls.answers,
        "errors": polls.errors,
        "server_rss_idle_mib": mib(idle_rss),
        "server_rss_peak_sampled_mib": mib(peak),
        "server_vmhwm_mib": mib(hwm),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if polls.errors == 0 { 0 } else { 1 })
}
