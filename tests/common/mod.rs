//! Shared helpers: a real `longhaul serve` on a free loopback port, and an HTTP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_longhaul");

/// A `longhaul serve` child process.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub token: String,
    pub stderr_log: PathBuf,
}

impl Server {
    /// Starts `longhaul serve` on 127.0.0.1:0 with `extra` args, waiting until it listens.
    /// The token is the one printed at first start, or `token` when given.
    pub fn start(data_dir: &Path, extra: &[&str], token: Option<&str>) -> Server {
        Self::start_with_env(data_dir, extra, token, &[])
    }

    /// [`Server::start`] with extra environment variables (e.g. `LONGHAUL_LOG=debug`).
    pub fn start_with_env(
        data_dir: &Path,
        extra: &[&str],
        token: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let stderr_log = data_dir.with_extension(format!("{}.log", std::process::id()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .expect("log file");
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("LONGHAUL_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn longhaul serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut printed_token = None;
        let mut url = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if line.starts_with("Created a token") {
                printed_token = lines
                    .next()
                    .and_then(|l| l.ok())
                    .map(|l| l.trim().to_string());
            } else if let Some(u) = line.strip_prefix("longhaul listening on ") {
                url = Some(u.trim().to_string());
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = url.unwrap_or_else(|| {
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            panic!("server did not start; its log:\n{log}")
        });
        let token = token
            .map(str::to_string)
            .or(printed_token)
            .or_else(|| read_first_token(&data_dir.join("tokens")))
            .unwrap_or_default();
        Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            token,
            stderr_log,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL on unix
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn client(&self) -> Api {
        Api::new(&self.url, Some(&self.token))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn read_first_token(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

/// A small blocking HTTP client that returns (status, headers, JSON body).
pub struct Api {
    http: reqwest::blocking::Client,
    pub url: String,
    pub token: Option<String>,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The request was refused with `status` and error `code`, and the message names `part`
    /// (what a user reads to fix the request).
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, part: &str) {
        assert_eq!(
            (self.status, self.error_code()),
            (status, code),
            "{}",
            self.text
        );
        let message = self.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(part),
            "the message should name {part:?}: {}",
            self.text
        );
    }
}

impl Api {
    pub fn new(url: &str, token: Option<&str>) -> Api {
        Api {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            url: url.to_string(),
            token: token.map(str::to_string),
        }
    }

    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api::new(&self.url, token)
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Resp {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(format!("{}{path}", self.url)))
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.http
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    }

    pub fn post_raw(&self, path: &str, body: Vec<u8>) -> Resp {
        self.send(
            self.http
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(body),
        )
    }

    pub fn put_raw(&self, full_url: &str, body: Vec<u8>) -> Resp {
        let resp = self.http.put(full_url).body(body).send().expect("put");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn get_url(&self, full_url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = self.http.get(full_url).send().expect("get");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().expect("bytes").to_vec())
    }

    /// Starts a demo job and returns its id.
    pub fn start_demo(&self, steps: u32, step_seconds: u32) -> String {
        let r = self.post(
            "/jobs",
            &serde_json::json!({"type": "demo", "input": {"steps": steps, "stepSeconds": step_seconds}}),
        );
        assert_eq!(r.status, 202, "startJob: {}", r.text);
        r.body["jobId"].as_str().expect("jobId").to_string()
    }

    /// Long-polls until the job is terminal (or `limit` passes) and returns it.
    pub fn wait_terminal(&self, job_id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.get(&format!("/jobs/{job_id}?waitSeconds=5"));
            assert_eq!(r.status, 200, "getJob: {}", r.text);
            let status = r.body["status"].as_str().unwrap_or("");
            if !matches!(status, "QUEUED" | "RUNNING") {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} still {status} after {limit:?}"
            );
        }
    }
}
