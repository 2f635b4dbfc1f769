//! `longhaul-bench lambda`: the Lambda bootstrap's size, and each function's
//! start-to-first-response time under a local Lambda Runtime API emulator (the three
//! endpoints a runtime uses: next invocation, response, error). Every function of the
//! deployment runs the same bootstrap, told which it is by `LONGHAUL_FUNCTION` (as the
//! template does). No AWS is called: `api` answers `GET /healthz`, each step gets an input it
//! rejects before any I/O.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

#[derive(Debug, Clone, Args)]
pub struct LambdaBench {
    /// Where `cargo lambda build` put the bootstrap (`longhaul-lambda/bootstrap` under it).
    #[arg(long, default_value = "target/lambda")]
    pub dir: PathBuf,
    /// Cold starts per function (min/median/max are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// The functions timed: the API and the steps every job runs (`timeouts` and `progress` read
/// DynamoDB or logs as they start, which would time the network, not the start).
const FUNCTIONS: [&str; 6] = [
    "api",
    "register",
    "complete",
    "mark-failed",
    "track-status",
    "csv-plan",
];

/// What the emulator hands out and what it saw.
struct Emulator {
    event: Mutex<Option<Value>>,
    answered: mpsc::Sender<(String, Value)>,
}

async fn next(State(em): State<Arc<Emulator>>) -> (HeaderMap, String) {
    // One event per process; later polls wait (a real runtime blocks here too).
    let event = em.event.lock().await.take();
    let Some(event) = event else {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return (HeaderMap::new(), String::new());
    };
    let mut h = HeaderMap::new();
    h.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_static("req-1"),
    );
    let deadline = (chrono::Utc::now().timestamp_millis() + 60_000).to_string();
    if let Ok(v) = HeaderValue::from_str(&deadline) {
        h.insert("lambda-runtime-deadline-ms", v);
    }
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:bench"),
    );
    h.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-0-0"),
    );
    (h, event.to_string())
}

async fn respond(
    State(em): State<Arc<Emulator>>,
    UrlPath((_id, kind)): UrlPath<(String, String)>,
    body: String,
) -> &'static str {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = em.answered.send((kind, v)).await;
    "{}"
}

async fn init_error(State(em): State<Arc<Emulator>>, body: String) -> &'static str {
    let _ = em
        .answered
        .send(("init-error".into(), Value::String(body)))
        .await;
    "{}"
}

fn healthz_event() -> Value {
    json!({
        "resource": "/healthz", "path": "/healthz", "httpMethod": "GET",
        "headers": {}, "multiValueHeaders": {}, "queryStringParameters": null,
        "multiValueQueryStringParameters": null, "pathParameters": null, "stageVariables": null,
        "requestContext": {"accountId": "123456789012", "resourceId": "r", "stage": "prod",
            "requestId": "r-1", "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": "/healthz",
            "httpMethod": "GET", "apiId": "bench", "path": "/prod/healthz", "protocol": "HTTP/1.1"},
        "body": null, "isBase64Encoded": false
    })
}

/// One cold start: milliseconds from spawn to the first response, and the response.
async fn cold_start(bootstrap: &Path, function: &str) -> Result<(f64, String, Value)> {
    let (tx, mut rx) = mpsc::channel(4);
    let event = if function == "api" {
        healthz_event()
    } else {
        json!({"benchmark": "an input every handler rejects before any I/O"})
    };
    let em = Arc::new(Emulator {
        event: Mutex::new(Some(event)),
        answered: tx,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(respond))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(em);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bootstrap)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("LONGHAUL_FUNCTION", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("LONGHAUL_TABLE", "bench-jobs")
        .env("LONGHAUL_BUCKET", "bench-files")
        .env(
            "LONGHAUL_STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:123456789012:stateMachine:bench",
        )
        .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bootstrap.display()))?;
    let answer = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let _ = child.kill().await;
    server.abort();
    match answer {
        Ok(Some((kind, v))) => Ok((ms, kind, v)),
        _ => bail!("{} gave no response within 30 s", bootstrap.display()),
    }
}

pub async fn run(b: LambdaBench) -> Result<i32> {
    let bootstrap = b.dir.join("longhaul-lambda/bootstrap");
    let size = std::fs::metadata(&bootstrap)
        .with_context(|| {
            format!(
                "{} (build first: cargo lambda build --release -p longhaul-lambda)",
                bootstrap.display()
            )
        })?
        .len();
    let mut results = serde_json::Map::new();
    for name in FUNCTIONS {
        let mut times = Vec::new();
        let mut outcome = String::new();
        for _ in 0..b.runs.max(1) {
            let (ms, kind, v) = cold_start(&bootstrap, name).await?;
            times.push(ms);
            outcome = match kind.as_str() {
                "response" if name == "api" => format!("response, HTTP {}", v["statusCode"]),
                "error" => format!("error {}", v["errorType"]),
                other => other.to_string(),
            };
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        results.insert(
            name.to_string(),
            json!({
                "start_to_first_response_ms": {
                    "min": (times[0] * 10.0).round() / 10.0,
                    "median": (times[times.len() / 2] * 10.0).round() / 10.0,
                    "max": (times[times.len() - 1] * 10.0).round() / 10.0,
                },
                "first_response": outcome,
            }),
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "bootstrap": bootstrap,
            "bytes": size,
            "mib": (size as f64 / 1048576.0 * 100.0).round() / 100.0,
            "runs": b.runs,
            "functions": results,
        }))?
    );
    Ok(0)
}
