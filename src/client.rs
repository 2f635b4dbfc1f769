//! The CLI's HTTP client: `start`, `get`, `list`, `cancel`, `upload` against a longhaul
//! server (local or on AWS). JSON on stdout for scripts; `--format table` for people.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

/// Where the server is and who we are.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(
        long,
        env = "LONGHAUL_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token. Without it, the first token of DATA_DIR/tokens is used if present.
    #[arg(long, env = "LONGHAUL_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory whose tokens file is used when no token is given.
    #[arg(
        long = "client-data-dir",
        default_value = "longhaul-data",
        global = true,
        hide = true
    )]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json, global = true)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// The client, with the server's error shape turned into one readable line.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Read at each request when no token was given: a server started a moment ago
    /// (`longhaul serve &`) writes it on start.
    tokens_file: PathBuf,
    pub format: Format,
}

/// How long a request waits for a server that is still starting (connection refused).
const STARTING_SERVER_WAIT: Duration = Duration::from_secs(15);

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Client> {
        let token = args.token.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            http,
            base: args.url.trim_end_matches('/').to_string(),
            token,
            tokens_file: args.data_dir.join("tokens"),
            format: args.format,
        })
    }

    /// Sends the request; a server that refuses connections is given a few seconds to come
    /// up (a request that cannot be sent twice, an upload stream, is sent once).
    async fn send(&self, mut req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let deadline = std::time::Instant::now() + STARTING_SERVER_WAIT;
        let resp = loop {
            let retry = req.try_clone();
            let token = self
                .token
                .clone()
                .or_else(|| first_token(&self.tokens_file));
            let attempt = match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            };
            match attempt.send().await {
                Ok(resp) => break resp,
                Err(e) if e.is_connect() && std::time::Instant::now() < deadline => {
                    let Some(again) = retry else {
                        return Err(unreachable(&self.base, e));
                    };
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    req = again;
                }
                Err(e) => return Err(unreachable(&self.base, e)),
            }
        };
        let status = resp.status().as_u16();
        let body = resp.bytes().await.context("reading the response")?;
        let value: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            json!({"error": {"code": "unexpected", "message": String::from_utf8_lossy(&body).trim().to_string()}})
        });
        if status >= 400 {
            let code = value["error"]["code"].as_str().unwrap_or("error");
            let message = value["error"]["message"]
                .as_str()
                .unwrap_or("request failed");
            bail!("{code} (HTTP {status}): {message}");
        }
        Ok((status, value))
    }

    pub async fn start(
        &self,
        job_type: &str,
        input: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value> {
        let mut body = json!({"type": job_type, "input": input});
        if let Some(k) = idempotency_key {
            body["idempotencyKey"] = Value::from(k);
        }
        let (_, job) = self
            .send(self.http.post(format!("{}/jobs", self.base)).json(&body))
            .await?;
        Ok(job)
    }

    pub async fn get(&self, job_id: &str, wait_seconds: u32) -> Result<Value> {
        check_job_id(job_id)?;
        let mut req = self.http.get(format!("{}/jobs/{job_id}", self.base));
        if wait_seconds > 0 {
            req = req.query(&[("waitSeconds", wait_seconds)]);
        }
        Ok(self.send(req).await?.1)
    }

    pub async fn list(
        &self,
        status: Option<&str>,
        job_type: Option<&str>,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Value> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(s) = status {
            q.push(("status", s.to_string()));
        }
        if let Some(t) = job_type {
            q.push(("type", t.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
        }
        let req = self.http.get(format!("{}/jobs", self.base)).query(&q);
        Ok(self.send(req).await?.1)
    }

    /// answerJobInput: the answer to the question the job waits for.
    pub async fn answer(&self, job_id: &str, answer: &Value) -> Result<Value> {
        check_job_id(job_id)?;
        let req = self
            .http
            .post(format!("{}/jobs/{job_id}/input", self.base))
            .json(answer);
        Ok(self.send(req).await?.1)
    }

    pub async fn cancel(&self, job_id: &str) -> Result<Value> {
        check_job_id(job_id)?;
        let req = self
            .http
            .post(format!("{}/jobs/{job_id}/cancel", self.base));
        Ok(self.send(req).await?.1)
    }

    /// Every event of the job's execution (all pages).
    pub async fn history(&self, job_id: &str) -> Result<Vec<Value>> {
        check_job_id(job_id)?;
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut req = self
                .http
                .get(format!("{}/jobs/{job_id}/history", self.base))
                .query(&[("limit", "1000")]);
            if let Some(c) = &cursor {
                req = req.query(&[("cursor", c)]);
            }
            let (_, page) = self.send(req).await?;
            events.extend(page["events"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return Ok(events),
            }
        }
    }

    pub async fn job_types(&self) -> Result<Value> {
        Ok(self
            .send(self.http.get(format!("{}/job-types", self.base)))
            .await?
            .1)
    }

    /// `--file [FIELD=]PATH`: the input field the upload goes to (the type's one file input
    /// when none is named) and the path.
    pub async fn file_input(&self, job_type: &str, arg: &str) -> Result<(String, PathBuf)> {
        if let Some((field, path)) = arg.split_once('=')
            && !field.is_empty()
            && !field.contains('/')
        {
            return Ok((field.to_string(), PathBuf::from(path)));
        }
        let types = self.job_types().await?;
        let schema = types["jobTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == job_type)
            .map(|t| t["inputSchema"].clone())
            .ok_or_else(|| anyhow!("the server has no job type {job_type:?}"))?;
        let fields = file_fields(&schema);
        match fields.as_slice() {
            [one] => Ok((one.clone(), PathBuf::from(arg))),
            [] => bail!("job type {job_type} takes no file"),
            many => bail!(
                "job type {job_type} takes several files ({}): use --file FIELD=PATH",
                many.join(", ")
            ),
        }
    }

    /// createUpload, then PUT the file to the signed URL. Returns the createUpload answer.
    pub async fn upload(&self, path: &Path, mime_type: Option<&str>) -> Result<Value> {
        let meta = tokio::fs::metadata(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a file", path.display());
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{} has no usable file name", path.display()))?;
        let mime = mime_type
            .map(str::to_string)
            .unwrap_or_else(|| guess_mime(name));
        let body = json!({"name": name, "sizeBytes": meta.len(), "mimeType": mime});
        let (_, ticket) = self
            .send(self.http.post(format!("{}/uploads", self.base)).json(&body))
            .await?;
        let url = ticket["uploadUrl"]
            .as_str()
            .ok_or_else(|| anyhow!("the server's createUpload answer has no uploadUrl"))?;
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let stream = tokio_util::io::ReaderStream::new(file);
        // The signed URL is the credential: no bearer token on the PUT.
        let resp = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, mime)
            .header(reqwest::header::CONTENT_LENGTH, meta.len())
            .timeout(Duration::from_secs(3600))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| anyhow!("uploading {}: {}", path.display(), e.without_url()))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("upload failed (HTTP {status}): {message}");
        }
        Ok(
            json!({"object": ticket["object"], "sizeBytes": meta.len(), "mimeType": body["mimeType"]}),
        )
    }

    /// Downloads a job's files into `dir` (their signed links need no token).
    pub async fn save_files(&self, job: &Value, dir: &Path) -> Result<Vec<PathBuf>> {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut saved = Vec::new();
        for f in job["files"].as_array().into_iter().flatten() {
            let (Some(name), Some(url)) = (f["name"].as_str(), f["url"].as_str()) else {
                continue;
            };
            // The name comes from the server: keep only a plain file name.
            let name = Path::new(name)
                .file_name()
                .ok_or_else(|| anyhow!("the server sent a file without a usable name"))?;
            let resp = self
                .http
                .get(url)
                .timeout(Duration::from_secs(3600))
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "downloading {}: {}",
                        name.to_string_lossy(),
                        e.without_url()
                    )
                })?;
            if !resp.status().is_success() {
                bail!(
                    "downloading {}: HTTP {}",
                    name.to_string_lossy(),
                    resp.status().as_u16()
                );
            }
            let bytes = resp.bytes().await.context("reading a result file")?;
            let path = dir.join(name);
            tokio::fs::write(&path, &bytes)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            saved.push(path);
        }
        Ok(saved)
    }

    /// Long-polls until the job is terminal, drawing a progress bar on stderr.
    pub async fn wait(&self, job_id: &str, show_progress: bool) -> Result<Value> {
        let bar = show_progress.then(|| {
            let bar = indicatif::ProgressBar::new(100);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos:>3}% {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let mut asked: Option<String> = None;
        loop {
            // A short wait keeps the bar moving; the server wakes us at once when it ends.
            let job = self.get(job_id, if show_progress { 2 } else { 20 }).await?;
            let status = job["status"].as_str().unwrap_or("");
            if let Some(request) = job.get("inputRequest").filter(|r| r.is_object()) {
                // The long poll returns at once while the job waits for an answer: say so
                // once per question, and poll gently until someone answers.
                let id = request["requestId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if asked.as_deref() != Some(id.as_str()) {
                    let line = format!(
                        "job {job_id} asks: {}\nanswer it with: longhaul answer {job_id} --input '<JSON matching {}>'",
                        request["message"].as_str().unwrap_or_default(),
                        request["requestedSchema"]
                    );
                    match &bar {
                        Some(bar) => bar.println(line),
                        None => eprintln!("{line}"),
                    }
                    asked = Some(id);
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            if let Some(bar) = &bar {
                bar.set_position(job["progress"]["percent"].as_u64().unwrap_or(0));
                bar.set_message(format!(
                    "{status} {}",
                    job["progress"]["message"].as_str().unwrap_or("")
                ));
            }
            if !matches!(status, "QUEUED" | "RUNNING") {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Ok(job);
            }
        }
    }
}

fn check_job_id(job_id: &str) -> Result<()> {
    if job_id.len() != 36 || !job_id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        bail!("{job_id:?} is not a job id (a UUID like 01935c4e-…)");
    }
    Ok(())
}

fn first_token(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

fn guess_mime(name: &str) -> String {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" => "text/csv",
        "json" => "application/json",
        "txt" => "text/plain",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
    .to_string()
}

/// `--input JSON|@FILE`.
pub fn parse_input(arg: &str) -> Result<Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| anyhow!("--input is not valid JSON: {e}"))
}

/// Prints a job (or any answer) in the chosen format.
pub fn print_job(format: Format, job: &Value) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(job).unwrap_or_default()),
        Format::Table => {
            let row = |k: &str, v: String| println!("{k:<12} {v}");
            row("job", job["jobId"].as_str().unwrap_or("").into());
            row("type", job["type"].as_str().unwrap_or("").into());
            row("status", job["status"].as_str().unwrap_or("").into());
            row(
                "progress",
                format!(
                    "{}% {}",
                    job["progress"]["percent"].as_u64().unwrap_or(0),
                    job["progress"]["message"].as_str().unwrap_or("")
                ),
            );
            row("created", job["createdAt"].as_str().unwrap_or("").into());
            if let Some(f) = job["finishedAt"].as_str() {
                row("finished", f.into());
            }
            if let Some(r) = job.get("result") {
                row("result", r.to_string());
            }
            if let Some(files) = job["files"].as_array() {
                for f in files {
                    row(
                        "file",
                        format!(
                            "{} ({} bytes) {}",
                            f["name"].as_str().unwrap_or(""),
                            f["sizeBytes"].as_u64().unwrap_or(0),
                            f["url"].as_str().unwrap_or("")
                        ),
                    );
                }
            }
            if let Some(e) = job.get("error") {
                row(
                    "error",
                    format!(
                        "{}: {}",
                        e["code"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    ),
                );
            }
            row("message", job["message"].as_str().unwrap_or("").into());
        }
    }
}

pub fn print_list(format: Format, list: &Value) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(list).unwrap_or_default()),
        Format::Table => {
            println!(
                "{:<36}  {:<12}  {:<10}  {:>4}  CREATED",
                "JOB ID", "TYPE", "STATUS", "%"
            );
            for j in list["jobs"].as_array().into_iter().flatten() {
                println!(
                    "{:<36}  {:<12}  {:<10}  {:>4}  {}",
                    j["jobId"].as_str().unwrap_or(""),
                    j["type"].as_str().unwrap_or(""),
                    j["status"].as_str().unwrap_or(""),
                    j["progress"]["percent"].as_u64().unwrap_or(0),
                    j["createdAt"].as_str().unwrap_or("")
                );
            }
            if let Some(c) = list["nextCursor"].as_str() {
                println!("more: --cursor {c}");
            }
        }
    }
}

/// A readable timeline (table) or the events as JSON lines.
pub fn print_history(format: Format, events: &[Value]) {
    if format == Format::Json {
        for e in events {
            println!("{e}");
        }
        return;
    }
    let start = events
        .first()
        .and_then(|e| e["timestamp"].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    for e in events {
        let ts = e["timestamp"].as_str().unwrap_or("");
        let offset = match (start, chrono::DateTime::parse_from_rfc3339(ts).ok()) {
            (Some(a), Some(b)) => format!("+{:.3}s", (b - a).num_milliseconds() as f64 / 1000.0),
            _ => String::new(),
        };
        let detail = ["error", "cause"]
            .iter()
            .filter_map(|k| {
                e["details"][k]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(|s| format!("{k}: {s}"))
            })
            .collect::<Vec<_>>()
            .join("; ");
        println!(
            "{:>4}  {:<10}  {:<28}  {:<20}  {}",
            e["id"].as_u64().unwrap_or(0),
            offset,
            e["type"].as_str().unwrap_or(""),
            e["stateName"].as_str().unwrap_or(""),
            detail
        );
    }
}

/// Exit code for a job the CLI waited for: 0 when it succeeded.
pub fn exit_code_for(job: &Value) -> i32 {
    match job["status"].as_str() {
        Some("SUCCEEDED") | Some("QUEUED") | Some("RUNNING") => 0,
        _ => 1,
    }
}

fn unreachable(base: &str, e: reqwest::Error) -> anyhow::Error {
    anyhow!(
        "cannot reach the server at {base} ({}); is `longhaul serve` running?",
        e.without_url()
    )
}

/// The input properties that take a file: their schema is longhaul's file source (one of
/// `{"object"}`, `{"fileRef"}`, `{"url"}`).
pub fn file_fields(schema: &Value) -> Vec<String> {
    let Some(props) = schema["properties"].as_object() else {
        return Vec::new();
    };
    props
        .iter()
        .filter(|(_, p)| {
            p["oneOf"].as_array().is_some_and(|alts| {
                alts.iter()
                    .any(|a| a["required"] == serde_json::json!(["object"]))
            })
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// `longhaul start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Job type (see `longhaul types`).
    pub job_type: String,
    /// The job's input: JSON, or @FILE.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Idempotency key: a retried start returns the same job.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait for the job to end, with a progress bar; exit 1 unless it succeeds.
    #[arg(long)]
    pub wait: bool,
    /// Upload this file first and use it as the job's file input: `PATH` when the type has
    /// one file input, `FIELD=PATH` to name it.
    #[arg(long, value_name = "[FIELD=]PATH")]
    pub file: Option<String>,
    /// With --wait: save the job's result files into this directory.
    #[arg(long, requires = "wait")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `longhaul start`: startJob (after uploading `--file`), then with `--wait` the job to its
/// end; returns the exit code.
pub async fn start_command(args: StartArgs) -> Result<i32> {
    let c = Client::new(&args.client)?;
    let mut input = parse_input(&args.input)?;
    if let Some(arg) = &args.file {
        let (field, path) = c.file_input(&args.job_type, arg).await?;
        let uploaded = c.upload(&path, None).await?;
        match &mut input {
            Value::Object(m) => {
                m.insert(field, json!({"object": uploaded["object"]}));
            }
            _ => bail!("--input must be a JSON object to use --file"),
        }
    }
    let job = c
        .start(&args.job_type, input, args.idempotency_key.as_deref())
        .await?;
    if !args.wait {
        print_job(c.format, &job);
        return Ok(0);
    }
    let id = job["jobId"].as_str().unwrap_or_default().to_string();
    let job = c
        .wait(&id, std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .await?;
    if let Some(dir) = &args.out {
        for saved in c.save_files(&job, dir).await? {
            eprintln!("saved {}", saved.display());
        }
    }
    print_job(c.format, &job);
    Ok(exit_code_for(&job))
}

/// `longhaul answer`: waits until the job asks its question (getJob's long poll comes back
/// when it does), then answers it (answerJobInput) and prints the job.
pub async fn answer_command(job_id: &str, input: &str, client: &ClientArgs) -> Result<i32> {
    let c = Client::new(client)?;
    let answer = parse_input(input)?;
    loop {
        let job = c.get(job_id, 20).await?;
        if job.get("inputRequest").is_some_and(Value::is_object) {
            break;
        }
        let status = job["status"].as_str().unwrap_or("");
        if !matches!(status, "QUEUED" | "RUNNING") {
            bail!("job {job_id} is {status}: it waits for no answer");
        }
    }
    let job = c.answer(job_id, &answer).await?;
    print_job(c.format, &job);
    Ok(0)
}

/// `longhaul get`: getJob, or with `wait` the job to its end; returns the exit code.
pub async fn get_command(job_id: &str, wait: bool, client: &ClientArgs) -> Result<i32> {
    let c = Client::new(client)?;
    let job = if wait {
        c.wait(job_id, std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .await?
    } else {
        c.get(job_id, 0).await?
    };
    print_job(c.format, &job);
    Ok(if wait { exit_code_for(&job) } else { 0 })
}
