//! `longhaul bench csv`: csv-report over a generated CSV (3 group keys, 5 metrics), end to
//! end through the API of a `longhaul serve` child, against DuckDB and pandas running the
//! same GROUP BY over the same file in the same run (bench/csv_peers.py, peers pinned in
//! bench/requirements.txt and installed into `.venv` by this command).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::{Value, json};

use crate::bench_http::summary;

#[derive(Debug, Clone, Args)]
pub struct CsvBench {
    /// Size of the generated CSV.
    #[arg(long, default_value_t = 1024)]
    pub megabytes: u64,
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

fn peers(csv: &Path, runs: usize) -> Result<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
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
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg("-c")
        .arg(include_str!("../bench/csv_peers.py"))
        .arg(csv)
        .arg(runs.to_string())
        .stderr(Stdio::inherit())
        .output()?;
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

pub async fn run(b: CsvBench) -> Result<i32> {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("sales.csv");
    let t = Instant::now();
    let rows = generate(&csv, b.megabytes)?;
    let size = std::fs::metadata(&csv)?.len();
    eprintln!(
        "generated {size} bytes, {rows} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let max_upload = (size + 1).to_string();
    let mut server =
        crate::bench_http::spawn_serve(dir.path(), &["--max-upload-bytes", &max_upload]).await?;
    let (url, token) = (server.url.clone(), server.token.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;

    // Upload once (timed separately): createUpload, then one PUT streamed from the file.
    let t = Instant::now();
    let up: Value = http
        .post(format!("{url}/uploads"))
        .bearer_auth(&token)
        .json(&json!({"name": "sales.csv", "sizeBytes": size, "mimeType": "text/csv"}))
        .send()
        .await?
        .json()
        .await?;
    let file = tokio::fs::File::open(&csv).await?;
    let put = http
        .put(up["uploadUrl"].as_str().context("uploadUrl")?)
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::with_capacity(file, 1 << 20),
        ))
        .send()
        .await?;
    ensure!(put.status().is_success(), "upload: {}", put.status());
    let upload_s = t.elapsed().as_secs_f64();
    let object = up["object"].as_str().context("object")?.to_string();

    let mut ours = Vec::new();
    let mut result = Value::Null;
    for _ in 0..b.runs.max(1) {
        let t = Instant::now();
        let job: Value = http
            .post(format!("{url}/jobs"))
            .bearer_auth(&token)
            .json(&json!({"type": "csv-report", "input": {
                "source": {"object": object}, "groupBy": ["region", "product", "channel"],
                "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"}, {"op": "mean", "column": "amount"},
                            {"op": "min", "column": "amount"}, {"op": "max", "column": "amount"}]}}))
            .send()
            .await?
            .json()
            .await?;
        let id = job["jobId"].as_str().context("jobId")?.to_string();
        loop {
            let v: Value = http
                .get(format!("{url}/jobs/{id}?waitSeconds=20"))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            match v["status"].as_str() {
                Some("SUCCEEDED") => {
                    result = v["result"].clone();
                    break;
                }
                Some("QUEUED" | "RUNNING") => continue,
                other => bail!("csv-report ended {other:?}: {v}"),
            }
        }
        ours.push(t.elapsed().as_secs_f64());
    }
    let _ = server.process.kill().await;

    let p = peers(&csv, b.runs.max(1))?;
    let secs = |k: &str| -> Vec<f64> {
        p[k].as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (duck, pandas) = (secs("duckdb"), secs("pandas"));
    ensure!(
        result["rowsRead"].as_u64() == Some(rows),
        "longhaul read {} rows of {rows}",
        result["rowsRead"]
    );
    ensure!(
        p["count"].as_u64() == Some(rows),
        "DuckDB counted {} rows of {rows}",
        p["count"]
    );
    ensure!(
        result["groups"] == p["groups"],
        "groups differ: {} vs {}",
        result["groups"],
        p["groups"]
    );
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    };
    let mb = size as f64 / 1048576.0;
    let report = json!({
        "file": {"bytes": size, "rows": rows, "groups": result["groups"]},
        "upload_seconds": (upload_s * 100.0).round() / 100.0,
        "seconds": {"longhaul_csv_report": summary(&ours), "duckdb": summary(&duck), "pandas": summary(&pandas)},
        "mib_per_s_median": {
            "longhaul_csv_report": (mb / med(&ours)).round(),
            "duckdb": (mb / med(&duck)).round(),
            "pandas": (mb / med(&pandas)).round(),
        },
        "throughput_vs_duckdb": ((med(&duck) / med(&ours)) * 100.0).round() / 100.0,
        "throughput_vs_pandas": ((med(&pandas) / med(&ours)) * 100.0).round() / 100.0,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}
