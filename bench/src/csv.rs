//! `longhaul-bench csv`: csv-report over a generated CSV (3 group keys, 5 metrics), end to
//! end through the API of a `longhaul serve` child, against DuckDB and pandas running the
//! same GROUP BY over the same file in the same run (bench/csv_peers.py, peers pinned in
//! bench/requirements.txt and installed into `.venv` by this command), for each size asked
//! (1 GiB and 140 MiB by default). Every group of longhaul's report.csv is checked against
//! DuckDB's exact decimal answer; the bench fails on any difference.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::{Value, json};

use crate::server::{Longhaul, ServerChild, spawn_serve};
use crate::stats::{median, summary};

#[derive(Debug, Clone, Args)]
pub struct CsvBench {
    /// Sizes of the generated CSVs, in MiB, one case each (`--megabytes 140`, or a list).
    #[arg(long, value_delimiter = ',', default_values_t = [1024, 140])]
    pub megabytes: Vec<u64>,
    /// Runs of each tool (min/median/max are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Writes `megabytes` of CSV: id, region (10), product (25), channel (3), amount (2
/// decimals), note. Returns the row count.
fn generate(path: &Path, megabytes: u64) -> Result<u64> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "id,region,product,channel,amount,note")?;
    let regions = [
        "north", "south", "east", "west", "centre", "alps", "coast", "lakes", "hills", "plains",
    ];
    let channels = ["web", "store", "phone"];
    let target = megabytes << 20;
    let (mut written, mut rows, mut x) = (0u64, 0u64, 0x9e37_79b9_7f4a_7c15u64);
    while written < target {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            "{rows},{},p{:02},{},{}.{:02},order {}\n",
            regions[(x % 10) as usize],
            (x >> 8) % 25,
            channels[((x >> 16) % 3) as usize],
            (x >> 24) % 10_000,
            (x >> 40) % 100,
            x % 1_000_000
        );
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
        rows += 1;
    }
    w.flush()?;
    Ok(rows)
}

/// Installs the pinned peers into `.venv` once (a stamp records what was installed).
fn install_peers(root: &Path) -> Result<()> {
    let venv = std::process::Command::new(root.join("scripts/venv")).status()?;
    ensure!(venv.success(), "scripts/venv failed");
    let stamp = root.join(".venv/.bench-peers");
    let want = std::fs::read_to_string(root.join("bench/requirements.txt"))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        let pip = std::process::Command::new(root.join(".venv/bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(root.join("bench/requirements.txt"))
            .status()?;
        ensure!(
            pip.success(),
            "installing the peers (bench/requirements.txt) failed"
        );
        std::fs::write(&stamp, want)?;
    }
    Ok(())
}

/// Runs bench/csv_peers.py: `runs` timed runs of each peer, then, given longhaul's
/// report.csv, the cross-check against DuckDB's exact answer.
fn peers(root: &Path, csv: &Path, runs: usize, report_csv: Option<&Path>) -> Result<Value> {
    let mut cmd = std::process::Command::new(root.join(".venv/bin/python"));
    cmd.arg("-c")
        .arg(include_str!("../csv_peers.py"))
        .arg(csv)
        .arg(runs.to_string());
    if let Some(r) = report_csv {
        cmd.arg(r);
    }
    let out = cmd.stderr(Stdio::inherit()).output()?;
    ensure!(out.status.success(), "the peers failed");
    // The answer is the last line; a library may have printed before it.
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last).with_context(|| format!("the peers printed {text:?}"))
}

pub async fn run(b: CsvBench, longhaul: &Longhaul) -> Result<i32> {
    ensure!(
        !b.megabytes.is_empty(),
        "--megabytes: give at least one size"
    );
    for &megabytes in &b.megabytes {
        ensure!(
            (1..=65_536).contains(&megabytes),
            "--megabytes {megabytes}: from 1 to 65536"
        );
    }
    let root = crate::server::repo_root();
    install_peers(root)?;
    let mut cases = Vec::new();
    for &megabytes in &b.megabytes {
        cases.push(run_case(root, longhaul, megabytes, b.runs.max(1)).await?);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "cases": cases }))?
    );
    Ok(0)
}

/// A `longhaul serve` child holding the uploaded CSV.
struct Served {
    server: ServerChild,
    http: reqwest::Client,
    object: String,
    upload_seconds: f64,
}

/// Starts a server and uploads the CSV once (createUpload, then one PUT streamed from the
/// file), timing the upload on its own.
async fn serve_and_upload(
    longhaul: &Longhaul,
    dir: &Path,
    csv: &Path,
    size: u64,
) -> Result<Served> {
    let max_upload = (size + 1).to_string();
    let server = spawn_serve(longhaul, dir, &["--max-upload-bytes", &max_upload]).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let t = Instant::now();
    let up: Value = http
        .post(format!("{}/uploads", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"name": "sales.csv", "sizeBytes": size, "mimeType": "text/csv"}))
        .send()
        .await?
        .json()
        .await?;
    let file = tokio::fs::File::open(csv).await?;
    let put = http
        .put(up["uploadUrl"].as_str().context("uploadUrl")?)
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::with_capacity(file, 1 << 20),
        ))
        .send()
        .await?;
    ensure!(put.status().is_success(), "upload: {}", put.status());
    Ok(Served {
        object: up["object"].as_str().context("object")?.to_string(),
        upload_seconds: t.elapsed().as_secs_f64(),
        server,
        http,
    })
}

/// One csv-report job, from startJob until a long-polling getJob sees it SUCCEEDED: its
/// final view.
async fn csv_report(s: &Served) -> Result<Value> {
    let (url, token) = (&s.server.url, &s.server.token);
    let job: Value = s
        .http
        .post(format!("{url}/jobs"))
        .bearer_auth(token)
        .json(&json!({"type": "csv-report", "input": {
            "source": {"object": s.object}, "groupBy": ["region", "product", "channel"],
            "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"}, {"op": "mean", "column": "amount"},
                        {"op": "min", "column": "amount"}, {"op": "max", "column": "amount"}]}}))
        .send()
        .await?
        .json()
        .await?;
    let id = job["jobId"].as_str().context("jobId")?.to_string();
    loop {
        let v: Value = s
            .http
            .get(format!("{url}/jobs/{id}?waitSeconds=20"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        match v["status"].as_str() {
            Some("SUCCEEDED") => return Ok(v),
            Some("QUEUED" | "RUNNING") => continue,
            other => bail!("csv-report ended {other:?}: {v}"),
        }
    }
}

/// Seconds of each tool, one entry per round.
#[derive(Default)]
struct Times {
    ours: Vec<f64>,
    duck: Vec<f64>,
    pandas: Vec<f64>,
}

/// `runs` rounds of one csv-report job, one DuckDB run and one pandas run (interleaved, so a
/// change in the machine's load touches all three alike); the last job's final view.
async fn rounds(root: &Path, served: &Served, csv: &Path, runs: usize) -> Result<(Times, Value)> {
    let mut times = Times::default();
    let mut done = Value::Null;
    for _ in 0..runs {
        let t = Instant::now();
        done = csv_report(served).await?;
        times.ours.push(t.elapsed().as_secs_f64());
        let p = peers(root, csv, 1, None)?;
        let secs = |k: &str| p[k].as_array().and_then(|a| a.first()?.as_f64());
        times.duck.push(secs("duckdb").context("DuckDB's time")?);
        times.pandas.push(secs("pandas").context("pandas' time")?);
    }
    Ok((times, done))
}

/// Downloads the job's report.csv into `dir`.
async fn fetch_report(served: &Served, done: &Value, dir: &Path) -> Result<std::path::PathBuf> {
    let report_url = done["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "report.csv"))
        .and_then(|f| f["url"].as_str())
        .context("the job's files have no report.csv")?;
    let report = served
        .http
        .get(report_url)
        .send()
        .await?
        .error_for_status()?;
    let report_csv = dir.join("report.csv");
    std::fs::write(&report_csv, report.bytes().await?)?;
    Ok(report_csv)
}

/// Fails unless longhaul's answer is DuckDB's: the rows read, the groups, and every group's
/// figures in report.csv (`check` is csv_peers.py's cross-check).
fn cross_check(result: &Value, check: &Value, rows: u64) -> Result<()> {
    ensure!(
        result["rowsRead"].as_u64() == Some(rows),
        "longhaul read {} rows of {rows}",
        result["rowsRead"]
    );
    ensure!(
        check["count"].as_u64() == Some(rows),
        "DuckDB counted {} rows of {rows}",
        check["count"]
    );
    ensure!(
        result["groups"] == check["groups"],
        "groups differ: {} vs {}",
        result["groups"],
        check["groups"]
    );
    ensure!(
        check["mismatch_count"].as_u64() == Some(0) && check["checked_groups"] == check["groups"],
        "report.csv differs from DuckDB's exact answer in {} group(s) ({} checked), e.g. {}",
        check["mismatch_count"],
        check["checked_groups"],
        check["mismatches"]
    );
    Ok(())
}

/// One size: generate and upload the CSV, the rounds, then the cross-check of the last
/// report.csv.
async fn run_case(root: &Path, longhaul: &Longhaul, megabytes: u64, runs: usize) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("sales.csv");
    let t = Instant::now();
    let rows = generate(&csv, megabytes)?;
    let size = std::fs::metadata(&csv)?.len();
    eprintln!(
        "generated {size} bytes, {rows} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut served = serve_and_upload(longhaul, dir.path(), &csv, size).await?;
    let (times, done) = rounds(root, &served, &csv, runs).await?;
    let report_csv = fetch_report(&served, &done, dir.path()).await?;
    let _ = served.server.process.kill().await;
    let result = &done["result"];
    let check = peers(root, &csv, 0, Some(&report_csv))?;
    cross_check(result, &check, rows)?;
    let (ours, duck, pandas) = (
        median(&times.ours),
        median(&times.duck),
        median(&times.pandas),
    );
    let mb = size as f64 / 1048576.0;
    Ok(json!({
        "file": {"mib": megabytes, "bytes": size, "rows": rows, "groups": result["groups"]},
        "checked_against_duckdb": format!("{} groups: count, sum, min, max exact; mean to 1e-12", check["checked_groups"]),
        "upload_seconds": (served.upload_seconds * 100.0).round() / 100.0,
        "seconds": {"longhaul_csv_report": summary(&times.ours), "duckdb": summary(&times.duck), "pandas": summary(&times.pandas)},
        "mib_per_s_median": {
            "longhaul_csv_report": (mb / ours).round(),
            "duckdb": (mb / duck).round(),
            "pandas": (mb / pandas).round(),
        },
        "throughput_vs_duckdb": ((duck / ours) * 100.0).round() / 100.0,
        "throughput_vs_pandas": ((pandas / ours) * 100.0).round() / 100.0,
    }))
}
