//! The outside load generator: wrk (Debian package `wrk`), installed with apt when missing.
//! It runs as its own process, so the servers are measured as a client on the same machine
//! sees them, not through a client sharing their runtime. Each run's figures come from a Lua
//! `done` hook that prints them as one JSON line.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// How wrk loads a server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub threads: usize,
    pub connections: usize,
    pub seconds: u64,
    /// A request taking longer counts as a timeout error.
    pub timeout_seconds: u64,
}

impl Settings {
    /// The command line, for the report (the script and URL vary per measurement).
    pub fn command(&self) -> String {
        format!(
            "wrk -t{} -c{} -d{}s --timeout {}s -s SCRIPT.lua URL",
            self.threads, self.connections, self.seconds, self.timeout_seconds
        )
    }
}

/// What one wrk run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Answers below 400.
    pub answers: u64,
    /// Answers below 400 per second.
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Connect, read, write and timeout errors and answers of 400 or more.
    pub errors: u64,
    pub error_detail: String,
}

/// Appended to every script: the figures as one line of JSON after `LONGHAUL_BENCH `.
const DONE_HOOK: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nLONGHAUL_BENCH {"duration_us":%d,"requests":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// Quotes a string for a Lua script.
pub fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A script for GET requests with fixed headers (wrk builds the request once).
pub fn get_script(headers: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in headers {
        s.push_str(&format!(
            "wrk.headers[{}] = {}\n",
            lua_string(k),
            lua_string(v)
        ));
    }
    s
}

/// wrk on PATH, or installed now: `apt-get install -y wrk` (after `apt-get update` if the
/// first try fails; through sudo when not root).
pub fn ensure_installed() -> Result<PathBuf> {
    if let Some(path) = on_path("wrk") {
        return Ok(path);
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let apt = |args: &[&str]| -> Result<bool> {
        let (program, rest): (&str, Vec<&str>) = if root {
            ("apt-get", args.to_vec())
        } else {
            ("sudo", [&["apt-get"], args].concat())
        };
        eprintln!(
            "wrk (the load generator) is not installed: running `{program} {}`",
            rest.join(" ")
        );
        Ok(std::process::Command::new(program)
            .args(&rest)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {program} to install wrk"))?
            .success())
    };
    if !apt(&["install", "-y", "wrk"])? {
        ensure!(apt(&["update"])?, "apt-get update failed");
        ensure!(
            apt(&["install", "-y", "wrk"])?,
            "apt-get install -y wrk failed: install wrk (Debian package `wrk`) and run again"
        );
    }
    on_path("wrk").context("wrk was installed but is not on PATH")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs wrk with `script` (the done hook appended) against `url`.
pub async fn run(wrk: &Path, settings: &Settings, url: &str, script: &str) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("load.lua");
    std::fs::write(&file, format!("{script}\n{DONE_HOOK}"))?;
    let out = tokio::process::Command::new(wrk)
        .arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{}s", settings.seconds))
        .arg("--timeout")
        .arg(format!("{}s", settings.timeout_seconds))
        .arg("-s")
        .arg(&file)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("LONGHAUL_BENCH ")) else {
        bail!("wrk printed no figures: {text}");
    };
    let v: Value = serde_json::from_str(line).with_context(|| format!("wrk printed {line}"))?;
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let errors = ["connect", "read", "write", "status", "timeout"]
        .map(|k| n(k) as u64)
        .iter()
        .sum();
    Ok(Measured {
        answers: (n("requests") - n("status")) as u64,
        per_second: (n("requests") - n("status")) / (n("duration_us") / 1e6).max(1e-6),
        p50_ms: n("p50_us") / 1000.0,
        p99_ms: n("p99_us") / 1000.0,
        errors,
        error_detail: format!(
            "connect {}, read {}, write {}, timeout {}, status >= 400: {}",
            n("connect"),
            n("read"),
            n("write"),
            n("timeout"),
            n("status")
        ),
    })
}
