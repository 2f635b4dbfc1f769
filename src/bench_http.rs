//! `longhaul bench http`: getJob and startJob under concurrent load, against a bare axum
//! handler served the same way (a child process on loopback) in the same run.
//!
//! - getJob: `GET /jobs/{id}` with auth and the SQLite read, vs. the bare handler returning a
//!   fixed job-sized JSON: requests per second and p50/p99 latency.
//! - startJob: `POST /jobs` (a 1-step demo job, written durably and started), vs. the bare
//!   handler answering a POST: jobs accepted per second.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::{get, post};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Clone, Args)]
pub struct HttpBench {
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Runs of each measurement (min/median/max are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
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

/// `longhaul bench bare-server`: the peer, a plain axum app with the same runtime and HTTP
/// stack as `longhaul serve`, minus auth, storage and the workflow.
pub async fn bare_server(b: BareServer) -> Result<i32> {
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

/// A `longhaul` child process (a server) and what it printed at start: its URL and the token
/// it created, if it created one. Killed when dropped.
pub(crate) struct ServerChild {
    pub process: tokio::process::Child,
    pub url: String,
    pub token: String,
}

/// Starts `longhaul serve` on a free loopback port with its data in `dir/data`, plus `extra`
/// arguments, and waits until it listens.
pub(crate) async fn spawn_serve(dir: &std::path::Path, extra: &[&str]) -> Result<ServerChild> {
    let data = dir.join("data").to_string_lossy().to_string();
    let mut args = vec!["serve", "--addr", "127.0.0.1:0", "--data-dir", &data];
    args.extend_from_slice(extra);
    spawn_server(&args, dir).await
}

/// Starts `longhaul ARGS` in `dir` and waits until it prints where it listens.
pub(crate) async fn spawn_server(args: &[&str], dir: &std::path::Path) -> Result<ServerChild> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env("LONGHAUL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting a server")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut url, mut token) = (None, String::new());
    while let Some(line) = lines.next_line().await? {
        if line.starts_with("Created a token") {
            token = lines
                .next_line()
                .await?
                .unwrap_or_default()
                .trim()
                .to_string();
        } else if let Some(u) = line.strip_prefix("longhaul listening on ") {
            url = Some(u.trim().to_string());
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let Some(url) = url else {
        bail!("{args:?} did not start")
    };
    Ok(ServerChild {
        process: child,
        url,
        token,
    })
}

/// Requests per second and latency percentiles (ms) of one load run.
struct Measured {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

async fn load(
    connections: usize,
    seconds: u64,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
    ok_status: u16,
) -> Measured {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .expect("client");
    let start = Instant::now() + Duration::from_millis(500);
    let until = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, make) = (http.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            loop {
                let t = Instant::now();
                if t >= until {
                    break;
                }
                let r = make(&http).send().await;
                let ok = match r {
                    Ok(r) => r.status().as_u16() == ok_status && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                // Warm-up requests (connection set-up) are not counted.
                if t >= start {
                    if ok {
                        lat.push(t.elapsed().as_micros() as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|us| *us as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    Measured {
        per_second: all.len() as f64 / seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

/// min/median/max, rounded to hundredths.
pub(crate) fn summary(xs: &[f64]) -> Value {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let r = |x: f64| (x * 100.0).round() / 100.0;
    json!({"min": r(v[0]), "median": r(v[v.len() / 2]), "max": r(v[v.len() - 1])})
}

pub async fn run(b: HttpBench) -> Result<i32> {
    crate::serve::raise_open_files_limit();
    let dir = tempfile::tempdir()?;
    let server = spawn_serve(dir.path(), &["--max-active-jobs", "10000000"]).await?;
    let bare = spawn_server(&["bench", "bare-server"], dir.path()).await?;

    // One finished job to read.
    let http = reqwest::Client::new();
    let v: Value = http
        .post(format!("{}/jobs", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"type": "demo", "input": {"steps": 1, "stepSeconds": 0}}))
        .send()
        .await?
        .json()
        .await?;
    let id = v["jobId"].as_str().context("jobId")?.to_string();
    let _ = http
        .get(format!("{}/jobs/{id}?waitSeconds=10", server.url))
        .bearer_auth(&server.token)
        .send()
        .await?;

    let get_job = {
        let (url, token) = (format!("{}/jobs/{id}", server.url), server.token.clone());
        Arc::new(move |h: &reqwest::Client| h.get(&url).bearer_auth(&token))
            as Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>
    };
    let get_bare = {
        let url = format!("{}/jobs/{id}", bare.url);
        Arc::new(move |h: &reqwest::Client| h.get(&url))
            as Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>
    };
    let start_job = {
        let (url, token) = (format!("{}/jobs", server.url), server.token.clone());
        Arc::new(move |h: &reqwest::Client| {
            h.post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(r#"{"type":"demo","input":{"steps":1,"stepSeconds":0}}"#)
        }) as Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>
    };
    let start_bare = {
        let url = format!("{}/jobs", bare.url);
        Arc::new(move |h: &reqwest::Client| {
            h.post(&url)
                .header("content-type", "application/json")
                .body(r#"{"type":"demo","input":{"steps":1,"stepSeconds":0}}"#)
        }) as Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>
    };

    let (mut g, mut gb, mut ratio_g, mut g99, mut gb99) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut s, mut sb, mut ratio_s, mut errors) = (vec![], vec![], vec![], 0);
    for _ in 0..b.runs.max(1) {
        // Alternate peer and subject so drift on a noisy machine hits both alike.
        let bare_get = load(b.connections, b.seconds, get_bare.clone(), 200).await;
        let ours_get = load(b.connections, b.seconds, get_job.clone(), 200).await;
        let bare_post = load(b.connections, b.seconds, start_bare.clone(), 202).await;
        let ours_post = load(b.connections, b.seconds, start_job.clone(), 202).await;
        errors += bare_get.errors + ours_get.errors + bare_post.errors + ours_post.errors;
        ratio_g.push(ours_get.per_second / bare_get.per_second.max(1.0));
        ratio_s.push(ours_post.per_second / bare_post.per_second.max(1.0));
        g.push(ours_get.per_second);
        gb.push(bare_get.per_second);
        g99.push(ours_get.p99_ms);
        gb99.push(bare_get.p99_ms);
        s.push(ours_post.per_second);
        sb.push(bare_post.per_second);
        eprintln!(
            "run: getJob {:.0}/s (p50 {:.2} ms, p99 {:.2} ms) vs bare {:.0}/s (p99 {:.2} ms); startJob {:.0}/s vs bare POST {:.0}/s",
            ours_get.per_second,
            ours_get.p50_ms,
            ours_get.p99_ms,
            bare_get.per_second,
            bare_get.p99_ms,
            ours_post.per_second,
            bare_post.per_second
        );
    }
    let report = json!({
        "connections": b.connections,
        "seconds_per_measurement": b.seconds,
        "runs": b.runs,
        "errors": errors,
        "getJob_per_s": summary(&g),
        "getJob_p99_ms": summary(&g99),
        "bare_get_per_s": summary(&gb),
        "bare_get_p99_ms": summary(&gb99),
        "getJob_over_bare": summary(&ratio_g),
        "startJob_accepted_per_s": summary(&s),
        "bare_post_per_s": summary(&sb),
        "startJob_over_bare": summary(&ratio_s),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if errors == 0 { 0 } else { 1 })
}
