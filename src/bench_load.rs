//! `longhaul bench load`: a `longhaul serve` child process with N running demo jobs and M
//! concurrent long polls held on them; reports errors and the server's resident memory
//! (peak sampled VmRSS and the kernel's VmHWM), from /proc.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::{Value, json};

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

pub async fn run(b: LoadBench) -> Result<i32> {
    crate::serve::raise_open_files_limit();
    let dir = tempfile::tempdir()?;
    let max_active = (b.jobs + 10).to_string();
    let mut server =
        crate::bench_http::spawn_serve(dir.path(), &["--max-active-jobs", &max_active]).await?;
    let pid = server.process.id().context("server pid")?;
    ensure!(!server.token.is_empty(), "the server printed no token");
    let (url, token) = (server.url.clone(), server.token.clone());
    let idle_rss = proc_kib(pid, "VmRSS:").unwrap_or(0);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(b.long_polls + 16)
        .build()?;
    let mut ids = Vec::new();
    for _ in 0..b.jobs {
        let r = http
            .post(format!("{url}/jobs"))
            .bearer_auth(&token)
            .json(&json!({"type": "demo", "input": {"steps": 20, "stepSeconds": 2}}))
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!("startJob answered {}", r.status());
        }
        let v: Value = r.json().await?;
        ids.push(v["jobId"].as_str().unwrap_or_default().to_string());
    }
    let ids = Arc::new(ids);
    let errors = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(b.seconds);
    let mut tasks = Vec::new();
    for i in 0..b.long_polls {
        let (http, url, token, ids, errors, polls) = (
            http.clone(),
            url.clone(),
            token.clone(),
            ids.clone(),
            errors.clone(),
            polls.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let id = &ids[i % ids.len().max(1)];
            while Instant::now() < until {
                let r = http
                    .get(format!("{url}/jobs/{id}?waitSeconds=20"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        polls.fetch_add(1, Ordering::Relaxed);
                        let _ = r.bytes().await;
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }));
    }
    let mut peak = 0;
    while Instant::now() < until {
        peak = peak.max(proc_kib(pid, "VmRSS:").unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let hwm = proc_kib(pid, "VmHWM:").unwrap_or(0);
    let _ = server.process.kill().await;
    let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    let report = json!({
        "long_polls": b.long_polls,
        "running_jobs": b.jobs,
        "seconds": b.seconds,
        "poll_answers": polls.load(Ordering::Relaxed),
        "errors": errors.load(Ordering::Relaxed),
        "server_rss_idle_mib": mib(idle_rss),
        "server_rss_peak_sampled_mib": mib(peak),
        "server_vmhwm_mib": mib(hwm),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if errors.load(Ordering::Relaxed) == 0 {
        0
    } else {
        1
    })
}
