//! `longhaul-bench http`: getJob and startJob of a `longhaul serve` child under load from wrk
//! (its own process), against a bare axum handler served the same way (this binary's
//! `bare-server`, its own process, the same tokio runtime and HTTP stack) in the same run.
//!
//! - getJob: `GET /jobs/{id}` with the bearer token, on a RUNNING job (the issue's case) and
//!   on a SUCCEEDED one, vs. the bare handler returning a fixed job-sized JSON: requests per
//!   second and wrk's p50/p99 latency.
//! - startJob: `POST /jobs` (a 1-step demo job with a fresh idempotency key per request,
//!   written durably and started), vs. the bare handler answering a POST: jobs accepted per
//!   second.
//!
//! Before each measurement the bench waits for the server to be idle (the jobs startJob
//! started have run), and the servers are measured alternately, so a change in the machine's
//! load touches both alike.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::{get, post};
use clap::Args;
use serde_json::{Value, json};

use crate::server::{Longhaul, ServerChild, spawn_serve, spawn_server};
use crate::stats::summary;
use crate::wrk::{self, Measured, Settings};

#[derive(Debug, Clone, Args)]
pub struct HttpBench {
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Runs of each measurement (min/median/max are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Measure getJob only (for comparing two builds: each startJob measurement leaves
    /// thousands of jobs behind).
    #[arg(long)]
    pub get_only: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BareServer {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: std::net::SocketAddr,
}

/// A fixed answer the size of a typical job view.
fn bare_body() -> String {
    json!({
        "jobId": "01a210df-86bd-75df-ad8d-617c9d8a10fa", "type": "demo", "status": "SUCCEEDED",
        "createdAt": "2026-11-25T04:03:34.000000Z", "updatedAt": "2026-11-25T04:03:36.000000Z",
        "finishedAt": "2026-11-25T04:03:36.000000Z", "progress": {"percent": 100, "message": "Done"},
        "result": {"stepsCompleted": 1, "stepSeconds": 0, "totalSeconds": 0, "summary": "Ran 1 step of 0 s each."},
        "files": [], "execution": {"name": "01a210df-86bd-75df-ad8d-617c9d8a10fa"},
        "message": "Done. The answer is in `result`."
    })
    .to_string()
}

/// `longhaul-bench bare-server`: the peer, a plain axum app with the same runtime, allocator
/// and HTTP stack as `longhaul serve`, minus auth, storage and the workflow.
pub async fn bare_server(b: BareServer) -> Result<i32> {
    crate::server::disable_transparent_huge_pages();
    let body = Arc::new(bare_body());
    let (b1, b2) = (body.clone(), body);
    let app = Router::new()
        .route(
            "/jobs/{id}",
            get(move || {
                let b = b1.clone();
                async move { ([("content-type", "application/json")], (*b).clone()) }
            }),
        )
        .route(
            "/jobs",
            post(move |_body: axum::body::Bytes| {
                let b = b2.clone();
                async move {
                    (
                        axum::http::StatusCode::ACCEPTED,
                        [("content-type", "application/json")],
                        (*b).clone(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(b.addr).await?;
    println!("longhaul listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(0)
}

/// Clock ticks of CPU a process has used (user + system), from /proc.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Waits (at most two minutes) until `server` uses under 5% of a core over half a second:
/// the jobs a startJob measurement accepted run after it, and must not load the next one.
async fn wait_idle(server: &ServerChild) {
    let Some(pid) = server.process.id() else {
        return;
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut before = cpu_ticks(pid);
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = cpu_ticks(pid);
        match (before, now) {
            (Some(b), Some(n)) if ((n - b) as f64 / hz) < 0.025 => return,
            (_, None) => return,
            _ => before = now,
        }
    }
    eprintln!("warning: the server was still busy after two minutes; measuring anyway");
}

/// One job of the demo type, waited for until it has `status`; its id.
async fn job_with_status(server: &ServerChild, input: Value, status: &str) -> Result<String> {
    let http = reqwest::Client::new();
    let v: Value = http
        .post(format!("{}/jobs", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"type": "demo", "input": input}))
        .send()
        .await?
        .json()
        .await?;
    let id = v["jobId"].as_str().context("startJob gave no jobId")?;
    for _ in 0..100 {
        let v: Value = http
            .get(format!("{}/jobs/{id}?waitSeconds=1", server.url))
            .bearer_auth(&server.token)
            .send()
            .await?
            .json()
            .await?;
        if v["status"] == status {
            return Ok(id.to_string());
        }
    }
    bail!("job {id} did not reach {status}")
}

/// startJob requests: the same demo job, a fresh idempotency key each (thread, counter and
/// the run's tag), so every request creates a job as distinct clients' requests would.
fn start_job_script(token: &str, tag: &str) -> String {
    format!(
        r#"local auth = {auth}
local tag = {tag}
local counter = 0
local id = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function request()
  counter = counter + 1
  local body = '{{"type":"demo","input":{{"steps":1,"stepSeconds":0}},"idempotencyKey":"' .. tag .. '-' .. id .. '-' .. counter .. '"}}'
  return wrk.format("POST", nil, {{["Authorization"] = auth, ["Content-Type"] = "application/json"}}, body)
end
"#,
        auth = wrk::lua_string(&format!("Bearer {token}")),
        tag = wrk::lua_string(tag),
    )
}

/// The figures of one kind of measurement over the runs.
#[derive(Default)]
struct Series {
    per_second: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    errors: u64,
}

impl Series {
    fn push(&mut self, m: &Measured) {
        self.per_second.push(m.per_second);
        self.p50.push(m.p50_ms);
        self.p99.push(m.p99_ms);
        self.errors += m.errors;
    }

    fn report(&self) -> Value {
        json!({
            "per_s": crate::stats::summary_to(&self.per_second, 0),
            "p50_ms": summary(&self.p50),
            "p99_ms": summary(&self.p99),
            "errors": self.errors,
        })
    }
}

/// The two servers, the jobs read, and how wrk loads them.
struct Targets {
    wrk: std::path::PathBuf,
    settings: Settings,
    server: ServerChild,
    bare: ServerChild,
    /// wrk's script for getJob (the bearer token) and the three URLs it loads.
    get_script: String,
    running_url: String,
    finished_url: String,
    bare_url: String,
}

impl Targets {
    /// Starts both servers and makes the two jobs getJob reads: one RUNNING (a demo job of
    /// 100 steps of 900 s) and one SUCCEEDED.
    async fn start(b: &HttpBench, longhaul: &Longhaul, dir: &std::path::Path) -> Result<Targets> {
        let wrk = wrk::ensure_installed()?;
        let server = spawn_serve(longhaul, dir, &["--max-active-jobs", "10000000"]).await?;
        let me = std::env::current_exe()?;
        let bare = spawn_server(&me, &["bare-server"], dir).await?;
        let running_id = job_with_status(
            &server,
            json!({"steps": 100, "stepSeconds": 900}),
            "RUNNING",
        )
        .await?;
        let finished_id =
            job_with_status(&server, json!({"steps": 1, "stepSeconds": 0}), "SUCCEEDED").await?;
        let threads = b.threads.max(1);
        Ok(Targets {
            wrk,
            settings: Settings {
                threads,
                connections: b.connections.max(threads),
                seconds: b.seconds.max(1),
                timeout_seconds: 10,
            },
            get_script: wrk::get_script(&[("Authorization", &format!("Bearer {}", server.token))]),
            running_url: format!("{}/jobs/{running_id}", server.url),
            finished_url: format!("{}/jobs/{finished_id}", server.url),
            bare_url: format!("{}/jobs/{finished_id}", bare.url),
            server,
            bare,
        })
    }

    async fn measure(&self, on_longhaul: bool, url: &str, script: &str) -> Result<Measured> {
        wait_idle(if on_longhaul {
            &self.server
        } else {
            &self.bare
        })
        .await;
        let m = wrk::run(&self.wrk, &self.settings, url, script).await?;
        if m.errors > 0 {
            eprintln!("{url}: {}", m.error_detail);
        }
        Ok(m)
    }
}

/// Every run's figures.
#[derive(Default)]
struct Runs {
    bare_get: Series,
    running: Series,
    finished: Series,
    bare_post: Series,
    start: Series,
    running_over_bare: Vec<f64>,
    finished_over_bare: Vec<f64>,
    start_over_bare: Vec<f64>,
}

impl Runs {
    /// getJob on both jobs and the bare GET, one after another.
    async fn get_job(&mut self, t: &Targets, run: usize) -> Result<()> {
        let bare = t.measure(false, &t.bare_url, &t.get_script).await?;
        let running = t.measure(true, &t.running_url, &t.get_script).await?;
        let finished = t.measure(true, &t.finished_url, &t.get_script).await?;
        self.bare_get.push(&bare);
        self.running.push(&running);
        self.finished.push(&finished);
        self.running_over_bare
            .push(running.per_second / bare.per_second.max(1.0));
        self.finished_over_bare
            .push(finished.per_second / bare.per_second.max(1.0));
        eprintln!(
            "run {run}: getJob running {:.0}/s (p50 {:.2} ms, p99 {:.2} ms), succeeded {:.0}/s vs bare {:.0}/s (p50 {:.2} ms, p99 {:.2} ms): running / bare {:.2}",
            running.per_second,
            running.p50_ms,
            running.p99_ms,
            finished.per_second,
            bare.per_second,
            bare.p50_ms,
            bare.p99_ms,
            running.per_second / bare.per_second.max(1.0),
        );
        Ok(())
    }

    /// startJob and the bare POST.
    async fn start_job(&mut self, t: &Targets, run: usize) -> Result<()> {
        let bare_script = start_job_script("-", "bare");
        let bare = t
            .measure(false, &format!("{}/jobs", t.bare.url), &bare_script)
            .await?;
        let script = start_job_script(&t.server.token, &format!("run{run}"));
        let start = t
            .measure(true, &format!("{}/jobs", t.server.url), &script)
            .await?;
        self.bare_post.push(&bare);
        self.start.push(&start);
        self.start_over_bare
            .push(start.per_second / bare.per_second.max(1.0));
        eprintln!(
            "run {run}: startJob {:.0}/s vs bare POST {:.0}/s",
            start.per_second, bare.per_second
        );
        Ok(())
    }

    fn errors(&self) -> u64 {
        [
            &self.bare_get,
            &self.running,
            &self.finished,
            &self.bare_post,
            &self.start,
        ]
        .iter()
        .map(|s| s.errors)
        .sum()
    }
}

pub async fn run(b: HttpBench, longhaul: &Longhaul) -> Result<i32> {
    crate::server::raise_open_files_limit();
    let dir = tempfile::tempdir()?;
    let mut t = Targets::start(&b, longhaul, dir.path()).await?;
    // Uncounted: the first second of each fresh process (allocator pages, SQLite cache).
    t.settings.seconds = 1;
    t.measure(false, &t.bare_url, &t.get_script).await?;
    t.measure(true, &t.running_url, &t.get_script).await?;
    t.settings.seconds = b.seconds.max(1);
    let mut runs = Runs::default();
    for run in 0..b.runs.max(1) {
        runs.get_job(&t, run).await?;
        if !b.get_only {
            runs.start_job(&t, run).await?;
        }
    }
    let errors = runs.errors();
    let report = json!({
        "load_generator": t.settings.command(),
        "longhaul": longhaul.0,
        "runs": b.runs,
        "errors": errors,
        "getJob_running": runs.running.report(),
        "getJob_succeeded": runs.finished.report(),
        "bare_get": runs.bare_get.report(),
        "getJob_running_over_bare": summary(&runs.running_over_bare),
        "getJob_succeeded_over_bare": summary(&runs.finished_over_bare),
        "startJob_accepted": runs.start.report(),
        "bare_post": runs.bare_post.report(),
        "startJob_over_bare": summary(&runs.start_over_bare),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if errors == 0 { 0 } else { 1 })
}
