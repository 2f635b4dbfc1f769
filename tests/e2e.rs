//! End to end: a real `longhaul serve` on a free loopback port, driven by raw HTTP and by
//! the CLI, as a user would.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Api, BIN, Server};
use serde_json::{Value, json};

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[], None);
    (dir, server)
}

#[test]
fn start_then_long_poll_wakes_when_the_job_ends() {
    let (_dir, server) = server();
    let api = server.client();
    let r = api.post(
        "/jobs",
        &json!({"type": "demo", "input": {"steps": 2, "stepSeconds": 1}}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job_id = r.body["jobId"].as_str().unwrap().to_string();
    assert!(
        matches!(r.body["status"].as_str(), Some("QUEUED" | "RUNNING")),
        "{}",
        r.text
    );
    assert!(
        r.body["message"].as_str().unwrap().contains("getJob"),
        "{}",
        r.text
    );
    assert_eq!(r.body["pollAfterSeconds"], json!(5));

    // The job takes about 2 s; a 25 s long poll must come back as soon as it ends.
    let t0 = Instant::now();
    let r = api.get(&format!("/jobs/{job_id}?waitSeconds=25"));
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "SUCCEEDED", "{}", r.text);
    assert!(took < Duration::from_secs(15), "long poll took {took:?}");
    assert_eq!(r.body["result"]["stepsCompleted"], json!(2), "{}", r.text);
    assert_eq!(r.body["progress"]["percent"], json!(100));
    assert!(r.body.get("pollAfterSeconds").is_none());
    assert!(r.body["finishedAt"].is_string());
    assert_eq!(r.body["execution"]["name"], json!(job_id));
    assert!(
        r.body["execution"]["arn"]
            .as_str()
            .unwrap()
            .contains(&job_id)
    );
}

#[test]
fn long_poll_returns_at_the_deadline_while_running() {
    let (_dir, server) = server();
    let api = server.client();
    let job_id = api.start_demo(3, 20);
    let t0 = Instant::now();
    let r = api.get(&format!("/jobs/{job_id}?waitSeconds=2"));
    let took = t0.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "RUNNING", "{}", r.text);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Still running"),
        "{}",
        r.text
    );
}

#[test]
fn a_failing_step_fails_the_job_with_its_error() {
    let (_dir, server) = server();
    let api = server.client();
    let r = api.post(
        "/jobs",
        &json!({"type": "demo", "input": {"steps": 3, "stepSeconds": 0, "failAtStep": 2}}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(30));
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["error"]["code"], "DemoStepFailed", "{job}");
    assert!(
        job["error"]["message"].as_str().unwrap().contains("step 2"),
        "{job}"
    );
    assert!(
        job["message"].as_str().unwrap().starts_with("Failed"),
        "{job}"
    );
}

#[test]
fn list_is_newest_first_with_a_cursor() {
    let (_dir, server) = server();
    let api = server.client();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(api.start_demo(1, 0));
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/jobs?limit=2&cursor={c}"),
            None => "/jobs?limit=2".to_string(),
        };
        let r = api.get(&path);
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.body["jobs"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(
            page.iter()
                .map(|j| j["jobId"].as_str().unwrap().to_string()),
        );
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "all jobs, newest first, no duplicates");

    let r = api.get("/jobs?type=demo&status=QUEUED&limit=100");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.get("/jobs?cursor=not-a-cursor");
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "{}",
        r.text
    );
    let r = api.get("/jobs?limit=0");
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "{}",
        r.text
    );
    let r = api.get("/jobs?status=DONE");
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "{}",
        r.text
    );
}

#[test]
fn cancel_stops_a_running_job_and_a_second_cancel_conflicts() {
    let (_dir, server) = server();
    let api = server.client();
    let job_id = api.start_demo(10, 5);
    let r = api.post(&format!("/jobs/{job_id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "CANCELLED", "{}", r.text);
    let r = api.post(&format!("/jobs/{job_id}/cancel"), &json!({}));
    assert_eq!((r.status, r.error_code()), (409, "conflict"), "{}", r.text);
    // It stays cancelled: the stopped execution never moves it.
    std::thread::sleep(Duration::from_millis(500));
    let r = api.get(&format!("/jobs/{job_id}"));
    assert_eq!(r.body["status"], "CANCELLED", "{}", r.text);
}

#[test]
fn idempotent_retry_returns_the_same_job_and_another_body_conflicts() {
    let (_dir, server) = server();
    let api = server.client();
    let body = json!({"type": "demo", "input": {"steps": 1, "stepSeconds": 0}, "idempotencyKey": "order-42"});
    let first = api.post("/jobs", &body);
    assert_eq!(first.status, 202, "{}", first.text);
    let again = api.post("/jobs", &body);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["jobId"], first.body["jobId"]);
    let other = api.post(
        "/jobs",
        &json!({"type": "demo", "input": {"steps": 2, "stepSeconds": 0}, "idempotencyKey": "order-42"}),
    );
    assert_eq!(
        (other.status, other.error_code()),
        (409, "conflict"),
        "{}",
        other.text
    );
    let list = api.get("/jobs?limit=100");
    assert_eq!(
        list.body["jobs"].as_array().unwrap().len(),
        1,
        "one job only"
    );
}

#[test]
fn client_mistakes_get_the_documented_error_codes_and_write_nothing() {
    let (_dir, server) = server();
    let api = server.client();

    let r = api.post("/jobs", &json!({"type": "nope", "input": {}}));
    r.assert_error(400, "bad_request", "demo");

    let r = api.post("/jobs", &json!({"type": "demo", "input": {"steps": 500}}));
    r.assert_error(400, "bad_request", "steps");

    let r = api.post("/jobs", &json!({"type": "demo", "input": [1, 2]}));
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "{}",
        r.text
    );

    let r = api.post_raw("/jobs", b"{not json".to_vec());
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "{}",
        r.text
    );

    let big = format!(
        r#"{{"type":"demo","input":{{"steps":1,"pad":"{}"}}}}"#,
        "x".repeat(300 * 1024)
    );
    let r = api.post_raw("/jobs", big.into_bytes());
    assert_eq!(
        (r.status, r.error_code()),
        (413, "payload_too_large"),
        "{}",
        r.text
    );
    // The unread rest of the body makes the connection unusable; the client must be told.
    assert_eq!(
        r.headers.get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );

    let r = api.get("/jobs/0193aaaa-0000-7000-8000-000000000000");
    assert_eq!((r.status, r.error_code()), (404, "not_found"), "{}", r.text);
    let r = api.get("/jobs/not-a-uuid");
    assert_eq!((r.status, r.error_code()), (404, "not_found"), "{}", r.text);

    let r = api.get("/jobs/0193aaaa-0000-7000-8000-000000000000?waitSeconds=26");
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "{}",
        r.text
    );

    let list = api.get("/jobs");
    assert_eq!(
        list.body["jobs"],
        json!([]),
        "nothing was written: {}",
        list.text
    );
}

#[test]
fn requests_without_a_valid_token_get_401() {
    let (_dir, server) = server();
    for token in [None, Some("wrong-token-wrong-token")] {
        let api = Api::new(&server.url, token);
        let r = api.get("/jobs");
        assert_eq!(
            (r.status, r.error_code()),
            (401, "unauthorized"),
            "{}",
            r.text
        );
        let www = r
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            www.unwrap_or_default().starts_with("Bearer"),
            "WWW-Authenticate: Bearer"
        );
        let r = api.post("/jobs", &json!({"type": "demo", "input": {"steps": 1}}));
        assert_eq!(r.status, 401);
    }
    let r = Api::new(&server.url, None).get("/healthz");
    assert_eq!(r.status, 200, "healthz needs no auth");
    let api = server.client();
    assert_eq!(
        api.get("/jobs").body["jobs"],
        json!([]),
        "nothing was written"
    );
}

#[test]
fn another_owner_sees_404_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "# two owners\nalice-token-0123456789abcdef alice\nbob-token-0123456789abcdef bob\n",
    )
    .unwrap();
    let auth = format!("tokens:{}", tokens.display());
    let server = Server::start(
        &dir.path().join("data"),
        &["--auth", &auth],
        Some("alice-token-0123456789abcdef"),
    );
    let alice = server.client();
    let bob = alice.with_token(Some("bob-token-0123456789abcdef"));
    let job_id = alice.start_demo(5, 2);

    let r = bob.get(&format!("/jobs/{job_id}"));
    assert_eq!((r.status, r.error_code()), (404, "not_found"), "{}", r.text);
    let r = bob.get(&format!("/jobs/{job_id}?waitSeconds=1"));
    assert_eq!((r.status, r.error_code()), (404, "not_found"), "{}", r.text);
    let r = bob.post(&format!("/jobs/{job_id}/cancel"), &json!({}));
    assert_eq!((r.status, r.error_code()), (404, "not_found"), "{}", r.text);
    assert_eq!(bob.get("/jobs").body["jobs"], json!([]));
    let r = alice.get(&format!("/jobs/{job_id}"));
    assert_eq!(r.status, 200);
    assert_ne!(r.body["status"], "CANCELLED");
}

#[test]
fn quota_gives_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--max-active-jobs", "2"], None);
    let api = server.client();
    api.start_demo(5, 10);
    api.start_demo(5, 10);
    let r = api.post("/jobs", &json!({"type": "demo", "input": {"steps": 1}}));
    assert_eq!(
        (r.status, r.error_code()),
        (429, "too_many_requests"),
        "{}",
        r.text
    );
    assert!(r.headers.get("retry-after").is_some(), "Retry-After");
    assert_eq!(api.get("/jobs").body["jobs"].as_array().unwrap().len(), 2);
}

#[test]
fn job_types_are_listed_with_their_schema() {
    let (_dir, server) = server();
    let r = server.client().get("/job-types");
    assert_eq!(r.status, 200, "{}", r.text);
    let demo = r.body["jobTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "demo")
        .cloned()
        .expect("demo type");
    assert_eq!(
        demo["inputSchema"]["properties"]["steps"]["maximum"],
        json!(100)
    );
    assert!(!demo["description"].as_str().unwrap().is_empty());
}

#[test]
fn uploads_go_to_a_signed_url_that_expires_and_cannot_be_forged() {
    let (_dir, server) = server();
    let api = server.client();
    let r = api.post(
        "/uploads",
        &json!({"name": "data.csv", "sizeBytes": 11, "mimeType": "text/csv"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let url = r.body["uploadUrl"].as_str().unwrap().to_string();
    assert!(r.body["object"].as_str().unwrap().ends_with("/data.csv"));
    let put = api.put_raw(&url, b"a,b\n1,2\n3,4".to_vec());
    assert!(
        put.status == 200 || put.status == 201,
        "{} {}",
        put.status,
        put.text
    );
    let forged = url.replace("sig=", "sig=00");
    let put = api.put_raw(&forged, b"x".to_vec());
    assert_eq!(put.status, 401, "{}", put.text);
    let r = api.post(
        "/uploads",
        &json!({"name": "../etc/passwd", "sizeBytes": 1}),
    );
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "{}",
        r.text
    );
}

#[test]
fn the_cli_starts_waits_lists_and_reports_errors_in_one_line() {
    let (_dir, server) = server();
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("LONGHAUL_URL", &server.url)
            .env("LONGHAUL_TOKEN", &server.token)
            .output()
            .expect("run cli")
    };
    let out = cli(&[
        "start",
        "demo",
        "--input",
        r#"{"steps": 2, "stepSeconds": 0}"#,
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(job["status"], "SUCCEEDED");
    let id = job["jobId"].as_str().unwrap();

    let out = cli(&["get", id]);
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["jobId"], job["jobId"]);

    let out = cli(&["list", "--format", "table"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(id) && text.contains("SUCCEEDED"), "{text}");

    let out = cli(&["start", "nope", "--input", "{}"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("bad_request") && err.contains("demo"), "{err}");

    let out = cli(&["cancel", id]);
    assert!(!out.status.success(), "cancel of a finished job fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflict"));

    let out = cli(&[
        "start",
        "demo",
        "--input",
        r#"{"steps": 2, "stepSeconds": 0, "failAtStep": 1}"#,
        "--wait",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed job exits 1");
}

#[test]
fn no_auth_is_refused_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--addr",
            "0.0.0.0:0",
            "--auth",
            "none",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_demo_command_runs_a_job_and_prints_curl_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--steps", "2", "--step-seconds", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"status\": \"SUCCEEDED\""), "{stdout}");
    assert!(
        stdout.contains("curl -s -X POST http://127.0.0.1:8080/jobs"),
        "{stdout}"
    );
    assert!(dir.path().join("data/tokens").exists());
}

#[test]
fn readme_commands_and_ci_are_the_ones_that_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    assert!(
        readme.contains("cargo run --release -- demo"),
        "README names the main command"
    );
    assert!(
        readme.contains("scripts/test"),
        "README names the test command"
    );
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).unwrap();
    let commands: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("set ") && !l.starts_with("cd ")
        })
        .collect();
    assert_eq!(
        commands,
        ["exec scripts/test"],
        ".ci/run runs scripts/test and nothing else"
    );
    // Every subcommand the README uses exists.
    for sub in [
        "demo", "serve", "start", "get", "list", "cancel", "upload", "openapi", "sfn", "types",
        "sam",
    ] {
        let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "longhaul {sub} --help");
    }
}

#[test]
fn committed_openapi_yaml_is_what_the_code_generates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let committed = std::fs::read_to_string(format!("{root}/openapi.yaml")).unwrap();
    let out = Command::new(BIN).args(["openapi"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "openapi.yaml is stale: run `cargo run -- openapi > openapi.yaml`"
    );
}

/// template.yaml and statemachine/ are generated from the job type folders: the committed
/// files are what `longhaul sam` writes (run in the repository, as a user would).
#[test]
fn committed_deployment_files_are_what_longhaul_sam_generates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(BIN)
        .args(["sam", "--check"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn history_shows_what_the_execution_did_to_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "alice-token-0123456789abcdef alice\nbob-token-0123456789abcdef bob\n",
    )
    .unwrap();
    let auth = format!("tokens:{}", tokens.display());
    let server = Server::start(
        &dir.path().join("data"),
        &["--auth", &auth],
        Some("alice-token-0123456789abcdef"),
    );
    let alice = server.client();
    let r = alice.post(
        "/jobs",
        &json!({"type": "demo", "input": {"steps": 2, "stepSeconds": 0, "failAtStep": 2}}),
    );
    let id = r.body["jobId"].as_str().unwrap().to_string();
    let job = alice.wait_terminal(&id, Duration::from_secs(30));
    assert_eq!(job["status"], "FAILED");
    // Let the tracker and the engine write their last events.
    std::thread::sleep(Duration::from_millis(300));

    let all = alice.get(&format!("/jobs/{id}/history?limit=1000"));
    assert_eq!(all.status, 200, "{}", all.text);
    let events = all.body["events"].as_array().unwrap().clone();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"ExecutionStarted"));
    assert_eq!(types.last(), Some(&"ExecutionFailed"));
    for t in [
        "TaskStateEntered",
        "TaskScheduled",
        "TaskSucceeded",
        "WaitStateEntered",
        "TaskFailed",
        "FailStateEntered",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    let failed = events.iter().find(|e| e["type"] == "TaskFailed").unwrap();
    assert_eq!(failed["stateName"], "demo.Step");
    assert_eq!(failed["details"]["error"], "DemoStepFailed");

    // Pages of 5 give the same events, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/jobs/{id}/history?limit=5&cursor={c}"),
            None => format!("/jobs/{id}/history?limit=5"),
        };
        let r = alice.get(&path);
        assert_eq!(r.status, 200, "{}", r.text);
        paged.extend(r.body["events"].as_array().unwrap().iter().cloned());
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, events);

    let bob = alice.with_token(Some("bob-token-0123456789abcdef"));
    let r = bob.get(&format!("/jobs/{id}/history"));
    assert_eq!((r.status, r.error_code()), (404, "not_found"), "{}", r.text);
    let r = alice.get(&format!("/jobs/{id}/history?cursor=zzz"));
    assert_eq!((r.status, r.error_code()), (400, "bad_request"));

    let out = Command::new(BIN)
        .args(["history", &id, "--format", "table"])
        .env("LONGHAUL_URL", &server.url)
        .env("LONGHAUL_TOKEN", "alice-token-0123456789abcdef")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), events.len(), "{text}");
    assert!(
        text.contains("DemoStepFailed")
            && text.lines().next().unwrap().contains("ExecutionStarted"),
        "{text}"
    );
}

/// A job that asks its owner a question (demo's `askFirst`, the built-in request-input
/// step): getJob's long poll comes back with the question, the owner answers through
/// POST /jobs/{jobId}/input — a wrong answer is refused naming the field, another owner
/// sees nothing — the question survives a restart of the server, and the answer ends up in
/// the result.
#[test]
fn a_job_waits_for_its_owners_answer_and_goes_on_with_it() {
    const ALICE: &str = "alice-token-0123456789abcdef0123456789abcdef";
    const BOB: &str = "bob-token-fedcba9876543210fedcba9876543210";
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{ALICE} alice\n{BOB} bob\n")).unwrap();
    let auth = format!("tokens:{}", tokens.display());
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--auth", &auth], Some(ALICE));
    let alice = server.client();
    let bob = alice.with_token(Some(BOB));

    let r = alice.post(
        "/jobs",
        &json!({"type": "demo", "input": {"steps": 1, "stepSeconds": 0, "askFirst": "Which colour should the report be?"}}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["jobId"].as_str().unwrap().to_string();

    // The long poll ends when the question is asked: the job cannot go on without the user.
    let t0 = Instant::now();
    let r = alice.get(&format!("/jobs/{id}?waitSeconds=25"));
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "RUNNING", "{}", r.text);
    let asked = &r.body["inputRequest"];
    assert_eq!(
        asked["message"], "Which colour should the report be?",
        "{}",
        r.text
    );
    assert_eq!(asked["requestedSchema"]["required"], json!(["answer"]));
    assert!(asked["requestId"].as_str().unwrap().starts_with("input-"));
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("answerJobInput"),
        "{}",
        r.text
    );
    assert!(
        !r.text.contains("taskToken"),
        "the token stays on the server: {}",
        r.text
    );
    let listed = alice.get("/jobs");
    assert_eq!(
        listed.body["jobs"][0]["inputRequired"], true,
        "{}",
        listed.text
    );

    // Another owner: not found, both ways; nothing is delivered.
    assert_eq!(bob.get(&format!("/jobs/{id}")).status, 404);
    let r = bob.post(&format!("/jobs/{id}/input"), &json!({"answer": "red"}));
    assert_eq!((r.status, r.error_code()), (404, "not_found"), "{}", r.text);

    // Answers that do not fit the schema: 400 naming the field; the job still waits.
    for (answer, field) in [
        (json!({"answer": 5}), "answer.answer"),
        (json!({"answer": ""}), "answer.answer"),
        (json!({"colour": "red"}), "answer.colour"),
        (json!({}), "answer"),
        (json!(["red"]), "answer"),
    ] {
        let r = alice.post(&format!("/jobs/{id}/input"), &answer);
        assert_eq!(
            (r.status, r.error_code()),
            (400, "bad_request"),
            "{answer}: {}",
            r.text
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{answer}: {message}"
        );
    }

    // The question survives a restart (it is on the job; the engine keeps the token).
    server.kill();
    let server = Server::start(&data, &["--auth", &auth], Some(ALICE));
    let alice = server.client();
    let r = alice.get(&format!("/jobs/{id}"));
    assert_eq!(
        r.body["inputRequest"]["message"], "Which colour should the report be?",
        "{}",
        r.text
    );

    let r = alice.post(&format!("/jobs/{id}/input"), &json!({"answer": "blue"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("inputRequest").is_none(), "{}", r.text);
    let done = alice.wait_terminal(&id, Duration::from_secs(60));
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["result"]["answer"], "blue", "{done}");
    assert_eq!(done["result"]["stepsCompleted"], 1, "{done}");

    // Answered: nothing waits any more (409), as for a job that never asked.
    let r = alice.post(&format!("/jobs/{id}/input"), &json!({"answer": "green"}));
    assert_eq!((r.status, r.error_code()), (409, "conflict"), "{}", r.text);
    let plain = alice.start_demo(1, 0);
    let r = alice.post(&format!("/jobs/{plain}/input"), &json!({"answer": "x"}));
    assert_eq!((r.status, r.error_code()), (409, "conflict"), "{}", r.text);
}
