//! `/mcp` driven in process through the Router, with raw JSON-RPC over HTTP: what the
//! transport asks of the HTTP layer (statuses, headers, 413, 405, 403), each era's error
//! codes, the job → task mapping for every job status (jobs moved by hand in the memory
//! store), and the Lambda's view (API Gateway REST proxy events with Cognito claims).

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use chrono::Utc;
use http_body_util::BodyExt;
use longhaul_api::mcp::{
    HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, JOB_FAILED, JOB_TIMED_OUT, METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY, PARSE_ERROR, UNSUPPORTED_PROTOCOL_VERSION,
};
use longhaul_api::{ApiState, Authenticator, CognitoClaimsAuth, TokensFileAuth, router};
use longhaul_jobs::memory::{MemoryBlobStore, MemoryJobStore};
use longhaul_jobs::{
    ExecutionRef, Job, JobError, JobService, JobStatus, Orchestrator, OrchestratorError, Progress,
    ServiceConfig, TransitionPatch,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789abc";

struct NoopOrchestrator;

#[async_trait]
impl Orchestrator for NoopOrchestrator {
    async fn start(&self, job: &Job) -> Result<ExecutionRef, OrchestratorError> {
        Ok(ExecutionRef {
            name: job.job_id.clone(),
            arn: Some(format!("arn:test:{}", job.job_id)),
            console_url: None,
        })
    }
    async fn stop(&self, _: &ExecutionRef, _: &str, _: &str) -> Result<(), OrchestratorError> {
        Ok(())
    }
    async fn history(
        &self,
        _: &ExecutionRef,
        _: u64,
        _: usize,
    ) -> Result<Vec<longhaul_jobs::ExecutionEvent>, OrchestratorError> {
        Ok(Vec::new())
    }
    // No task of these tests waits for a token.
    async fn send_task_success(
        &self,
        token: &str,
        _: &Value,
    ) -> Result<(), longhaul_jobs::CallbackError> {
        Err(longhaul_jobs::CallbackError::TaskDoesNotExist(token.into()))
    }
    async fn send_task_failure(
        &self,
        token: &str,
        _: &str,
        _: &str,
    ) -> Result<(), longhaul_jobs::CallbackError> {
        Err(longhaul_jobs::CallbackError::TaskDoesNotExist(token.into()))
    }
    async fn send_task_heartbeat(&self, token: &str) -> Result<(), longhaul_jobs::CallbackError> {
        Err(longhaul_jobs::CallbackError::TaskDoesNotExist(token.into()))
    }
}

struct App {
    router: axum::Router,
    service: Arc<JobService>,
}

fn app_with(auth: Arc<dyn Authenticator>) -> App {
    app_config(auth, ServiceConfig::default())
}

fn app_config(auth: Arc<dyn Authenticator>, config: ServiceConfig) -> App {
    let service = Arc::new(JobService::new(
        Arc::new(MemoryJobStore::new()),
        Arc::new(MemoryBlobStore::new()),
        Arc::new(NoopOrchestrator),
        longhaul_steps::builtin_catalog()
            .unwrap()
            .job_types()
            .clone(),
        config,
    ));
    App {
        router: router(ApiState {
            public_url: None,
            service: service.clone(),
            auth,
        }),
        service,
    }
}

fn tokens() -> Arc<dyn Authenticator> {
    Arc::new(TokensFileAuth::parse(&format!("{ALICE} alice\n{BOB} bob\n"), "tokens").unwrap())
}

fn app() -> App {
    app_with(tokens())
}

struct Resp {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

async fn send(app: &App, req: http::Request<Body>) -> Resp {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    }
}

fn post(
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> http::Request<Body> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

/// A 2026-07-28 request with its `_meta` and the three headers.
async fn modern(app: &App, token: &str, method: &str, mut params: Value, tasks: bool) -> Resp {
    let caps = if tasks {
        json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})
    } else {
        json!({})
    };
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    });
    let name = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = &name {
        headers.push(("mcp-name", n));
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    send(app, post(Some(token), &headers, body.to_string())).await
}

/// A 2025-11-25 request, as sent after `initialize`.
async fn legacy(app: &App, token: &str, method: &str, params: Value) -> Resp {
    let body = json!({"jsonrpc": "2.0", "id": "r", "method": method, "params": params});
    send(
        app,
        post(
            Some(token),
            &[("mcp-protocol-version", "2025-11-25")],
            body.to_string(),
        ),
    )
    .await
}

async fn start_task(app: &App, token: &str) -> String {
    let r = modern(
        app,
        token,
        "tools/call",
        json!({"name": "demo", "arguments": {"steps": 3}}),
        true,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["result"]["resultType"], "task", "{}", r.body);
    r.body["result"]["taskId"].as_str().unwrap().to_string()
}

async fn transition(app: &App, id: &str, to: JobStatus, patch: TransitionPatch) {
    app.service
        .store()
        .transition(id, to, patch, Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_transport_rules_hold_at_the_http_level() {
    let app = app();
    // No credentials: 401 with the challenge, before anything else.
    let r = send(&app, post(None, &[], "{}")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    // Not JSON, a batch, no method: 400 with the JSON-RPC code and a null id.
    for (body, code) in [
        ("{not json", PARSE_ERROR),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
    ] {
        let r = send(&app, post(Some(ALICE), &[], body)).await;
        assert_eq!(
            (r.status, &r.body["error"]["code"]),
            (400, &json!(code)),
            "{body}: {}",
            r.body
        );
        assert_eq!(r.body["id"], Value::Null);
    }
    // Notifications and responses: 202, no body.
    for body in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
    ] {
        let r = send(&app, post(Some(ALICE), &[], body)).await;
        assert_eq!(r.status, 202, "{body}");
        assert!(r.raw.is_empty());
    }
    // GET (legacy stream) and DELETE (legacy session end): 405, once authenticated.
    for method in ["GET", "DELETE"] {
        let req = |t: Option<&str>| {
            let mut b = http::Request::builder().method(method).uri("/mcp");
            if let Some(t) = t {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            b.body(Body::empty()).unwrap()
        };
        assert_eq!(send(&app, req(None)).await.status, 401, "{method}");
        let r = send(&app, req(Some(ALICE))).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.headers["allow"], "POST");
    }
    // A body over the limit: 413, as on every route.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"demo","arguments":{{"x":"{}"}}}}}}"#,
        "a".repeat(300 * 1024)
    );
    let r = send(&app, post(Some(ALICE), &[], big)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "payload_too_large");
    // A page of another site: 403. The same origin is served.
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let r = send(
        &app,
        post(
            Some(ALICE),
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example"),
            ],
            ping,
        ),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = send(
        &app,
        post(
            Some(ALICE),
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ],
            ping,
        ),
    )
    .await;
    assert_eq!(
        (r.status, &r.body["result"]),
        (200, &json!({})),
        "{}",
        r.body
    );
    assert!(
        app.service
            .list("alice", &Default::default())
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
}

#[tokio::test]
async fn initialize_makes_no_session_and_negotiates_the_legacy_version() {
    let app = app();
    for (asked, answered, tasks) in [
        ("2025-11-25", "2025-11-25", true),
        ("2025-06-18", "2025-06-18", false),
        ("2024-11-05", "2025-11-25", true),
    ] {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let r = send(&app, post(Some(ALICE), &[], body.to_string())).await;
        assert_eq!(r.status, 200);
        assert!(r.headers.get("mcp-session-id").is_none(), "stateless");
        let result = &r.body["result"];
        assert_eq!(result["protocolVersion"], answered, "{asked}");
        assert_eq!(
            result["capabilities"]["tasks"].is_object(),
            tasks,
            "{asked}: {result}"
        );
        assert_eq!(result["serverInfo"]["name"], "longhaul");
        assert!(
            result.get("resultType").is_none(),
            "legacy results have no resultType"
        );
    }
    // 2025-06-18 has no tasks: its tools carry no execution, and tasks/* do not exist.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let r = send(
        &app,
        post(
            Some(ALICE),
            &[("mcp-protocol-version", "2025-06-18")],
            body.to_string(),
        ),
    )
    .await;
    assert!(
        r.body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("execution").is_none())
    );
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/list"});
    let r = send(
        &app,
        post(
            Some(ALICE),
            &[("mcp-protocol-version", "2025-06-18")],
            body.to_string(),
        ),
    )
    .await;
    assert_eq!(r.body["error"]["code"], METHOD_NOT_FOUND);
}

#[tokio::test]
async fn modern_requests_are_checked_and_answered_with_the_statuses_the_spec_names() {
    // A 1 s long poll: an untasked job tool waits at most that long for its job.
    let config = ServiceConfig {
        max_wait: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let app = app_config(tokens(), config);
    let r = modern(&app, ALICE, "server/discover", json!({}), false).await;
    assert_eq!(r.status, 200);
    let d = &r.body["result"];
    assert_eq!(d["resultType"], "complete");
    assert_eq!(d["supportedVersions"][0], "2026-07-28");
    assert!(
        d["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25"))
    );
    assert_eq!(
        d["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"],
        json!({})
    );
    assert_eq!(
        d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "longhaul"
    );
    assert!(d["ttlMs"].is_u64() && d["cacheScope"].is_string());

    let r = modern(&app, ALICE, "tools/list", json!({}), false).await;
    assert!(r.body["result"]["ttlMs"].is_u64() && r.body["result"]["cacheScope"] == "private");
    assert!(
        r.body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("execution").is_none())
    );
    let r = modern(&app, ALICE, "tools/list", json!({"cursor": "x"}), false).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (400, &json!(INVALID_PARAMS))
    );

    // Unknown and legacy-only methods: 404 + -32601 (a modern answer a dual-era client
    // tells from a legacy server's 404).
    for method in [
        "resources/list",
        "ping",
        "tasks/result",
        "tasks/list",
        "logging/setLevel",
    ] {
        let r = modern(&app, ALICE, method, json!({}), true).await;
        assert_eq!(
            (r.status, &r.body["error"]["code"]),
            (404, &json!(METHOD_NOT_FOUND)),
            "{method}"
        );
    }
    // The same in a legacy request: 200 with the error.
    let r = legacy(&app, ALICE, "resources/list", json!({})).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (200, &json!(METHOD_NOT_FOUND))
    );

    // Headers that disagree with the body: 400 + -32020, and nothing started.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "demo", "arguments": {"steps": 1},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
    for headers in [
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "csv-report"),
        ],
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("mcp-name", "demo"),
        ],
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
        vec![("mcp-method", "tools/call"), ("mcp-name", "demo")],
    ] {
        let r = send(&app, post(Some(ALICE), &headers, body.to_string())).await;
        assert_eq!(
            (r.status, &r.body["error"]["code"]),
            (400, &json!(HEADER_MISMATCH)),
            "{headers:?}: {}",
            r.body
        );
        assert_eq!(r.body["id"], 1);
    }
    // A version this server does not speak: 400 + -32022 with what it does.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2030-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}});
    let r = send(
        &app,
        post(
            Some(ALICE),
            &[
                ("mcp-protocol-version", "2030-01-01"),
                ("mcp-method", "tools/list"),
            ],
            body.to_string(),
        ),
    )
    .await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (400, &json!(UNSUPPORTED_PROTOCOL_VERSION))
    );
    assert_eq!(r.body["error"]["data"]["requested"], "2030-01-01");
    assert!(
        r.body["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    // Tasks without declaring the extension: 400 + -32021.
    let r = modern(&app, ALICE, "tasks/get", json!({"taskId": "x"}), false).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (400, &json!(MISSING_REQUIRED_CLIENT_CAPABILITY))
    );
    // Without the extension a job tool answers with the job (here still running: the
    // orchestrator is a stub), never with a task.
    let r = modern(
        &app,
        ALICE,
        "tools/call",
        json!({"name": "demo", "arguments": {"steps": 1}}),
        false,
    )
    .await;
    assert_eq!(r.body["result"]["resultType"], "complete", "{}", r.body);
    assert_eq!(
        r.body["result"]["structuredContent"]["status"], "QUEUED",
        "{}",
        r.body
    );
    assert_eq!(
        app.service
            .list("alice", &Default::default())
            .await
            .unwrap()
            .jobs
            .len(),
        1
    );
}

#[tokio::test]
async fn every_job_status_becomes_its_task_status_in_both_eras() {
    let app = app();
    let id = start_task(&app, ALICE).await;
    // Working, with the progress as the status message and pollAfterSeconds as the interval.
    transition(&app, &id, JobStatus::Running, TransitionPatch::default()).await;
    app.service
        .store()
        .set_progress(
            &id,
            &Progress {
                percent: 40,
                message: "step 2 of 5".into(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let m = modern(&app, ALICE, "tasks/get", json!({"taskId": id}), true)
        .await
        .body["result"]
        .clone();
    assert_eq!(m["status"], "working");
    assert_eq!(m["statusMessage"], "running: step 2 of 5 (40%)");
    assert_eq!(m["pollIntervalMs"], 5000);
    assert_eq!(m["ttlMs"], 30u64 * 24 * 3600 * 1000);
    assert!(m.get("result").is_none() && m.get("error").is_none());
    let l = legacy(&app, ALICE, "tasks/get", json!({"taskId": id}))
        .await
        .body["result"]
        .clone();
    assert_eq!(
        (&l["status"], &l["pollInterval"], &l["statusMessage"]),
        (&json!("working"), &json!(5000), &m["statusMessage"])
    );
    assert!(l.get("pollIntervalMs").is_none() && l.get("resultType").is_none());

    // Failed: the job's error as the task's JSON-RPC error (modern) and an isError result (legacy).
    let error = JobError {
        code: "boom".into(),
        message: "it broke".into(),
    };
    transition(
        &app,
        &id,
        JobStatus::Failed,
        TransitionPatch {
            error: Some(error),
            ..Default::default()
        },
    )
    .await;
    let m = modern(&app, ALICE, "tasks/get", json!({"taskId": id}), true)
        .await
        .body["result"]
        .clone();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error"]["code"], JOB_FAILED);
    assert_eq!(
        m["error"]["data"]["error"],
        json!({"code": "boom", "message": "it broke"})
    );
    assert_eq!(m["statusMessage"], "Failed (boom): it broke");
    assert!(m.get("pollIntervalMs").is_none());
    let l = legacy(&app, ALICE, "tasks/result", json!({"taskId": id}))
        .await
        .body["result"]
        .clone();
    assert_eq!(l["isError"], true);
    assert_eq!(l["structuredContent"]["status"], "FAILED");
    assert_eq!(
        l["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        id.as_str()
    );
    // Cancelling a task that ended: 2025-11-25 refuses with -32602, 2026-07-28 acknowledges.
    let l = legacy(&app, ALICE, "tasks/cancel", json!({"taskId": id})).await;
    assert_eq!(l.body["error"]["code"], INVALID_PARAMS);
    assert!(
        l.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'failed'"),
        "{}",
        l.body
    );
    let m = modern(&app, ALICE, "tasks/cancel", json!({"taskId": id}), true).await;
    assert_eq!(
        (m.status, &m.body["result"]["resultType"]),
        (200, &json!("complete"))
    );

    // Timed out: failed too, with its own code.
    let id = start_task(&app, ALICE).await;
    transition(&app, &id, JobStatus::Running, TransitionPatch::default()).await;
    transition(&app, &id, JobStatus::TimedOut, TransitionPatch::default()).await;
    let m = modern(&app, ALICE, "tasks/get", json!({"taskId": id}), true)
        .await
        .body["result"]
        .clone();
    assert_eq!(
        (&m["status"], &m["error"]["code"]),
        (&json!("failed"), &json!(JOB_TIMED_OUT))
    );

    // Succeeded: the tool result inline (modern), the same from tasks/result (legacy).
    let id = start_task(&app, ALICE).await;
    transition(&app, &id, JobStatus::Running, TransitionPatch::default()).await;
    transition(
        &app,
        &id,
        JobStatus::Succeeded,
        TransitionPatch {
            result: Some(json!({"answer": 42})),
            ..Default::default()
        },
    )
    .await;
    let m = modern(&app, ALICE, "tasks/get", json!({"taskId": id}), true)
        .await
        .body["result"]
        .clone();
    assert_eq!(m["status"], "completed");
    assert_eq!(
        m["result"]["structuredContent"]["result"],
        json!({"answer": 42})
    );
    assert_eq!(m["result"]["isError"], false);
    let l = legacy(&app, ALICE, "tasks/result", json!({"taskId": id}))
        .await
        .body["result"]
        .clone();
    assert_eq!(l["structuredContent"], m["result"]["structuredContent"]);

    // Cancelled, by a task cancel: the job is CANCELLED.
    let id = start_task(&app, ALICE).await;
    let l = legacy(&app, ALICE, "tasks/cancel", json!({"taskId": id}))
        .await
        .body["result"]
        .clone();
    assert_eq!(l["status"], "cancelled");
    let job = app
        .service
        .get("alice", &id, Default::default())
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    let m = modern(&app, ALICE, "tasks/get", json!({"taskId": id}), true)
        .await
        .body["result"]
        .clone();
    assert_eq!(m["status"], "cancelled");
}

#[tokio::test]
async fn task_methods_refuse_what_is_not_the_callers_or_not_well_formed() {
    let app = app();
    let id = start_task(&app, ALICE).await;
    for method in ["tasks/get", "tasks/cancel", "tasks/update"] {
        let params = json!({"taskId": id, "inputResponses": {}});
        let r = modern(&app, BOB, method, params, true).await;
        assert_eq!(
            (r.status, &r.body["error"]["code"]),
            (400, &json!(INVALID_PARAMS)),
            "{method}: {}",
            r.body
        );
    }
    for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
        let r = legacy(&app, BOB, method, json!({"taskId": id})).await;
        assert_eq!(r.body["error"]["code"], INVALID_PARAMS, "{method}");
        let r = legacy(&app, ALICE, method, json!({"taskId": 7})).await;
        assert_eq!(r.body["error"]["code"], INVALID_PARAMS, "{method}");
    }
    let r = legacy(&app, BOB, "tasks/list", json!({})).await;
    assert_eq!(r.body["result"]["tasks"], json!([]));
    let r = legacy(&app, ALICE, "tasks/list", json!({"cursor": "junk"})).await;
    assert_eq!(r.body["error"]["code"], INVALID_PARAMS);
    // tasks/update: the caller's task is acknowledged (no input is ever outstanding yet).
    let r = modern(
        &app,
        ALICE,
        "tasks/update",
        json!({"taskId": id, "inputResponses": {"k": {"action": "accept"}}}),
        true,
    )
    .await;
    assert_eq!(
        (r.status, &r.body["result"]["resultType"]),
        (200, &json!("complete")),
        "{}",
        r.body
    );
    let r = modern(&app, ALICE, "tasks/update", json!({"taskId": id}), true).await;
    assert_eq!(r.body["error"]["code"], INVALID_PARAMS);
    // The four job tools do not run as tasks (2025-11-25: -32601), job tools do.
    let r = legacy(
        &app,
        ALICE,
        "tools/call",
        json!({"name": "list_jobs", "arguments": {}, "task": {}}),
    )
    .await;
    assert_eq!(r.body["error"]["code"], METHOD_NOT_FOUND);
    let r = legacy(
        &app,
        ALICE,
        "tools/call",
        json!({"name": "demo", "arguments": {"steps": 1}, "task": {"ttl": 1000}}),
    )
    .await;
    assert_eq!(r.body["result"]["task"]["status"], "working", "{}", r.body);
    let r = legacy(
        &app,
        ALICE,
        "tools/call",
        json!({"name": "demo", "arguments": {"steps": 1}, "task": 5}),
    )
    .await;
    assert_eq!(r.body["error"]["code"], INVALID_PARAMS);
    let r = legacy(
        &app,
        ALICE,
        "tools/call",
        json!({"name": "demo", "arguments": [1]}),
    )
    .await;
    assert_eq!(r.body["error"]["code"], INVALID_PARAMS);
}

/// An API Gateway REST proxy event for `/mcp`, as the api Lambda receives it.
fn rest_event(sub: Option<&str>, body: &Value, headers: Value) -> http::Request<Body> {
    let mut ctx = json!({
        "accountId": "123456789012", "resourceId": "abc", "stage": "prod", "requestId": "r-1",
        "identity": {"sourceIp": "203.0.113.1"}, "resourcePath": "/mcp", "httpMethod": "POST",
        "apiId": "api123", "path": "/prod/mcp", "protocol": "HTTP/1.1"
    });
    if let Some(sub) = sub {
        ctx["authorizer"] =
            json!({"claims": {"sub": sub, "token_use": "access", "scope": "openid"}});
    }
    let mut h = json!({"Content-Type": "application/json", "Host": "api123.execute-api.us-east-1.amazonaws.com"});
    for (k, v) in headers.as_object().unwrap() {
        h[k] = v.clone();
    }
    let multi: serde_json::Map<String, Value> = h
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect();
    let event = json!({
        "resource": "/mcp", "path": "/prod/mcp", "httpMethod": "POST",
        "headers": h, "multiValueHeaders": multi,
        "queryStringParameters": null, "multiValueQueryStringParameters": null,
        "pathParameters": null, "stageVariables": null,
        "requestContext": ctx, "body": body.to_string(), "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string())
        .expect("a valid API Gateway event")
        .map(|b| Body::from(b.to_vec()))
}

#[tokio::test]
async fn the_lambda_serves_mcp_to_the_cognito_user() {
    let app = app_with(Arc::new(CognitoClaimsAuth));
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "demo", "arguments": {"steps": 2}, "_meta": meta}});
    let headers = json!({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "demo"});
    let r = send(&app, rest_event(Some("user-1"), &call, headers.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["result"]["taskId"].as_str().unwrap().to_string();
    // The task is the Cognito user's job.
    let job = app
        .service
        .get("user-1", &id, Default::default())
        .await
        .unwrap();
    assert_eq!(job.job_type, "demo");
    assert!(
        app.service
            .get("user-2", &id, Default::default())
            .await
            .is_err()
    );
    let get = json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": id, "_meta": meta}});
    let h =
        json!({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tasks/get", "Mcp-Name": id});
    let r = send(&app, rest_event(Some("user-2"), &get, h.clone())).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (400, &json!(INVALID_PARAMS)),
        "{}",
        r.body
    );
    let r = send(&app, rest_event(Some("user-1"), &get, h)).await;
    assert_eq!(r.body["result"]["status"], "working", "{}", r.body);
    // No claims (API Gateway let it through without the authorizer): 401.
    let r = send(&app, rest_event(None, &call, headers)).await;
    assert_eq!(r.status, 401);
}

async fn metadata(app: &App) -> Resp {
    let req = http::Request::builder()
        .uri("/.well-known/oauth-protected-resource/mcp")
        .header("host", "jobs.example:8443")
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

#[tokio::test]
async fn a_jwt_server_names_its_authorization_server_for_clients_that_sign_in_themselves() {
    let jwt = longhaul_api::JwtAuth::with_keys(
        "jwks.json",
        jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
        "https://issuer.example/pool",
        None,
    );
    let jwt_app = app_with(Arc::new(jwt));
    let r = metadata(&jwt_app).await;
    assert_eq!(r.status, 200, "no credentials needed: {}", r.body);
    assert_eq!(r.body["resource"], "http://jobs.example:8443/mcp");
    assert_eq!(
        r.body["authorization_servers"],
        json!(["https://issuer.example/pool"])
    );
    let expected = r#"Bearer resource_metadata="http://jobs.example:8443/.well-known/oauth-protected-resource/mcp""#;
    let r = send(&jwt_app, post(None, &[("host", "jobs.example:8443")], "{}")).await;
    assert_eq!(
        (r.status, r.headers["www-authenticate"].to_str().unwrap()),
        (401, expected)
    );
    let r = send(
        &jwt_app,
        post(Some("not.a.jwt"), &[("host", "jobs.example:8443")], "{}"),
    )
    .await;
    assert_eq!(
        r.headers["www-authenticate"].to_str().unwrap(),
        format!("{expected}, error=\"invalid_token\"")
    );
    // A tokens file names no authorization server: no metadata, the plain challenge.
    let app = app();
    assert_eq!(metadata(&app).await.status, 404);
    let r = send(&app, post(None, &[], "{}")).await;
    assert_eq!(r.headers["www-authenticate"], "Bearer");
}
