//! `/mcp` of a real `longhaul serve`, driven by a client no one here wrote: the official
//! Python SDK (`mcp`, pinned in scripts/requirements.txt, installed into `.venv` by
//! scripts/venv), through `tests/mcp/client.py`, in both eras — 2026-07-28 (per-request
//! `_meta`, `server/discover`, the tasks extension) and 2025-11-25 (`initialize`, core
//! tasks). What an MCP client does shows up in REST, and the other way round.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Api, Server};
use serde_json::{Value, json};

const ALICE: &str = "alice-token-0123456789abcdef0123456789abcdef";
const BOB: &str = "bob-token-fedcba9876543210fedcba9876543210";
const ERAS: [&str; 2] = ["modern", "legacy"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A server whose tokens file holds Alice and Bob.
fn server(dir: &tempfile::TempDir) -> Server {
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{ALICE} alice\n{BOB} bob\n")).unwrap();
    let auth = format!("tokens:{}", tokens.display());
    Server::start(&dir.path().join("data"), &["--auth", &auth], Some(ALICE))
}

/// Runs tests/mcp/client.py (the Python SDK) and returns what it printed. An empty `era`
/// leaves `--era` to `args`.
fn mcp(server: &Server, token: Option<&str>, era: &str, args: &[&str]) -> Value {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/venv (scripts/test does)",
        python.display()
    );
    let url = format!("{}/mcp", server.url);
    let mut cmd = Command::new(&python);
    cmd.arg(root().join("tests/mcp/client.py"))
        .args(["--url", &url, "--poll-seconds", "0.2"]);
    if !era.is_empty() {
        cmd.args(["--era", era]);
    }
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd
        .args(args)
        .output()
        .expect("running the Python MCP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn rest(server: &Server, token: &str) -> Api {
    server.client().with_token(Some(token))
}

fn job_ids(api: &Api) -> Vec<String> {
    let r = api.get("/jobs?limit=100");
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap().to_string())
        .collect()
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_sdk_client_lists_one_tool_per_job_type_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let types = rest(&server, ALICE).get("/job-types").body["jobTypes"].clone();
    let types = types.as_array().unwrap();
    assert!(!types.is_empty());
    for (era, version) in [("modern", "2026-07-28"), ("legacy", "2025-11-25")] {
        let out = mcp(&server, Some(ALICE), era, &["tools"]);
        assert_eq!(out["protocolVersion"], version, "{out}");
        let tools = out["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        let mut expected: Vec<&str> = types.iter().map(|t| t["type"].as_str().unwrap()).collect();
        expected.extend(["get_job", "list_jobs", "cancel_job", "list_job_types"]);
        assert_eq!(names, expected, "{era}");
        for t in types {
            let tool = tools.iter().find(|x| x["name"] == t["type"]).unwrap();
            assert_eq!(tool["description"], t["description"], "{era}");
            assert_eq!(tool["inputSchema"], t["inputSchema"], "{era}");
            if era == "legacy" {
                assert_eq!(tool["execution"]["taskSupport"], "optional");
            }
        }
        // Stateless: no session is ever handed out.
        assert!(
            out["http"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["sessionId"].is_null()),
            "{out}"
        );
    }
}

#[test]
fn a_job_runs_as_a_task_to_completion_in_both_eras_and_shows_in_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let alice = rest(&server, ALICE);
    for era in ERAS {
        let out = mcp(
            &server,
            Some(ALICE),
            era,
            &["run", "demo", r#"{"steps": 3, "stepSeconds": 1}"#],
        );
        let statuses: Vec<&str> = out["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(statuses.first(), Some(&"working"), "{era}: {out}");
        assert_eq!(statuses.last(), Some(&"completed"), "{era}: {out}");
        let result = &out["result"];
        assert_eq!(result["isError"], false, "{era}: {out}");
        let job = &result["structuredContent"];
        assert_eq!(job["status"], "SUCCEEDED", "{era}: {out}");
        assert_eq!(job["result"]["stepsCompleted"], 3, "{era}: {out}");
        assert!(text_of(result).contains("Done"), "{era}: {out}");
        let job_id = job["jobId"].as_str().unwrap();
        if era == "legacy" {
            assert_eq!(out["created"]["task"]["taskId"], job_id);
            assert_eq!(out["created"]["task"]["pollInterval"], 5000);
            assert_eq!(
                result["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
                job_id
            );
        }
        // The same job, through the other door.
        assert!(job_ids(&alice).contains(&job_id.to_string()), "{era}");
        let r = alice.get(&format!("/jobs/{job_id}"));
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (200, Some("SUCCEEDED"))
        );
    }
    // A REST job is a task to an MCP client.
    let id = alice.start_demo(1, 0);
    alice.wait_terminal(&id, std::time::Duration::from_secs(30));
    let modern = mcp(&server, Some(ALICE), "modern", &["get-task", &id]);
    assert_eq!(modern["task"]["status"], "completed", "{modern}");
    assert_eq!(
        modern["task"]["result"]["structuredContent"]["jobId"],
        id.as_str(),
        "{modern}"
    );
    let legacy = mcp(&server, Some(ALICE), "legacy", &["list-tasks"]);
    let listed: Vec<&str> = legacy["tasks"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap())
        .collect();
    assert_eq!(listed.first(), Some(&id.as_str()), "newest first: {legacy}");
    assert_eq!(listed.len(), 3, "{legacy}");
}

#[test]
fn a_task_cancelled_over_mcp_cancels_its_job_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let alice = rest(&server, ALICE);
    for era in ERAS {
        let out = mcp(
            &server,
            Some(ALICE),
            era,
            &["cancel", "demo", r#"{"steps": 5, "stepSeconds": 30}"#],
        );
        assert_eq!(out["task"]["status"], "cancelled", "{era}: {out}");
        let id = out["task"]["taskId"].as_str().unwrap();
        if era == "legacy" {
            // 2025-11-25 answers tasks/cancel with the cancelled task.
            assert_eq!(out["cancelled"]["status"], "cancelled", "{out}");
        }
        let r = alice.get(&format!("/jobs/{id}"));
        assert_eq!(r.body["status"], "CANCELLED", "{era}: {}", r.text);
    }
}

#[test]
fn refused_credentials_get_401_with_www_authenticate_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    for era in ERAS {
        for (token, challenge) in [
            (None, "Bearer"),
            (
                Some("not-a-token-0123456789"),
                "Bearer error=\"invalid_token\"",
            ),
        ] {
            let out = mcp(&server, token, era, &["run", "demo", r#"{"steps": 1}"#]);
            assert!(
                out.get("result").is_none() && out["error"].is_object(),
                "{era}: {out}"
            );
            let http = out["http"].as_array().unwrap();
            assert!(!http.is_empty(), "{out}");
            for h in http {
                assert_eq!(h["status"], 401, "{era}: {out}");
                assert_eq!(h["wwwAuthenticate"], challenge, "{era}: {out}");
            }
        }
    }
    assert!(job_ids(&rest(&server, ALICE)).is_empty());
    assert!(job_ids(&rest(&server, BOB)).is_empty());
}

#[test]
fn another_owners_task_and_job_are_not_found_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    for era in ERAS {
        let started = mcp(
            &server,
            Some(ALICE),
            era,
            &["start", "demo", r#"{"steps": 3, "stepSeconds": 30}"#],
        );
        let id = if era == "modern" {
            started["created"]["taskId"].as_str()
        } else {
            started["created"]["task"]["taskId"].as_str()
        }
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
        let theirs = mcp(&server, Some(BOB), era, &["get-task", &id]);
        assert_eq!(theirs["error"]["code"], -32602, "{era}: {theirs}");
        assert!(
            theirs["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not found"),
            "{theirs}"
        );
        let none = mcp(
            &server,
            Some(BOB),
            era,
            &["get-task", "0193aaaa-0000-7000-8000-000000000000"],
        );
        assert_eq!(
            none["error"]["code"], theirs["error"]["code"],
            "the same answer as for no task"
        );
        for tool in ["get_job", "cancel_job"] {
            let r = mcp(
                &server,
                Some(BOB),
                era,
                &["call", tool, &json!({"jobId": id}).to_string()],
            );
            assert_eq!(r["result"]["isError"], true, "{era} {tool}: {r}");
            assert!(text_of(&r["result"]).contains("no job"), "{r}");
        }
        let bobs = mcp(&server, Some(BOB), era, &["call", "list_jobs"]);
        assert_eq!(
            bobs["result"]["structuredContent"]["jobs"],
            json!([]),
            "{bobs}"
        );
        if era == "legacy" {
            let tasks = mcp(&server, Some(BOB), era, &["list-tasks"]);
            assert_eq!(tasks["tasks"]["tasks"], json!([]), "{tasks}");
        }
        // Still Alice's, still running.
        let mine = mcp(&server, Some(ALICE), era, &["get-task", &id]);
        assert_eq!(mine["task"]["status"], "working", "{mine}");
        let r = mcp(
            &server,
            Some(ALICE),
            era,
            &["call", "cancel_job", &json!({"jobId": id}).to_string()],
        );
        assert_eq!(
            r["result"]["structuredContent"]["status"], "CANCELLED",
            "{r}"
        );
    }
    assert!(job_ids(&rest(&server, BOB)).is_empty());
}

#[test]
fn bad_arguments_are_an_is_error_result_naming_the_field_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    for era in ERAS {
        for (args, field) in [
            (r#"{"steps": 0}"#, "steps"),
            (r#"{}"#, "steps"),
            (r#"{"steps": 1, "colour": "red"}"#, "colour"),
            (r#"{"steps": "many"}"#, "steps"),
        ] {
            let out = mcp(&server, Some(ALICE), era, &["call", "demo", args]);
            assert_eq!(out["result"]["isError"], true, "{era} {args}: {out}");
            assert!(
                text_of(&out["result"]).contains(field),
                "{era} {args}: {out}"
            );
        }
        let out = mcp(
            &server,
            Some(ALICE),
            era,
            &["call", "get_job", r#"{"jobId": "x", "waitSeconds": 99}"#],
        );
        assert!(
            text_of(&out["result"]).contains("arguments.waitSeconds"),
            "{out}"
        );
        let out = mcp(&server, Some(ALICE), era, &["call", "no-such-tool"]);
        assert_eq!(out["error"]["code"], -32602, "{out}");
        assert!(
            out["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no-such-tool"),
            "{out}"
        );
    }
    assert!(
        job_ids(&rest(&server, ALICE)).is_empty(),
        "a refused call started a job"
    );
}

#[test]
fn without_tasks_a_job_tool_answers_with_the_job_or_a_pointer_to_get_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    // Quick enough to finish within the wait: the answer itself, in both eras.
    for flags in [&["--era", "legacy"][..], &["--era", "modern", "--no-tasks"]] {
        let mut args = flags.to_vec();
        args.extend(["call", "demo", r#"{"steps": 1, "stepSeconds": 0}"#]);
        let out = mcp(&server, Some(ALICE), "", &args);
        assert_eq!(
            out["result"]["structuredContent"]["status"], "SUCCEEDED",
            "{out}"
        );
        assert_eq!(out["result"]["isError"], false, "{out}");
        assert!(
            out["statuses"].as_array().unwrap().is_empty(),
            "no task was made: {out}"
        );
    }
    // A modern client without the tasks extension may not use tasks/*.
    let out = mcp(
        &server,
        Some(ALICE),
        "",
        &[
            "--era",
            "modern",
            "--no-tasks",
            "get-task",
            "0193aaaa-0000-7000-8000-000000000000",
        ],
    );
    assert_eq!(out["error"]["code"], -32021, "{out}");
    assert_eq!(
        out["error"]["data"]["requiredCapabilities"]["extensions"],
        json!({"io.modelcontextprotocol/tasks": {}}),
        "{out}"
    );
    // A failing job is an isError result with the job's error.
    let out = mcp(
        &server,
        Some(ALICE),
        "legacy",
        &[
            "call",
            "demo",
            r#"{"steps": 2, "stepSeconds": 0, "failAtStep": 1}"#,
        ],
    );
    assert_eq!(out["result"]["isError"], true, "{out}");
    assert_eq!(
        out["result"]["structuredContent"]["status"], "FAILED",
        "{out}"
    );
    // Longer than the wait: the job so far, and how to keep polling it.
    let out = mcp(
        &server,
        Some(ALICE),
        "legacy",
        &["call", "demo", r#"{"steps": 2, "stepSeconds": 60}"#],
    );
    let job = &out["result"]["structuredContent"];
    assert_eq!(job["status"], "RUNNING", "{out}");
    let text = text_of(&out["result"]);
    assert!(
        text.contains("get_job") && !text.contains("getJob"),
        "{text}"
    );
    let id = job["jobId"].as_str().unwrap();
    let polled = mcp(
        &server,
        Some(ALICE),
        "modern",
        &[
            "call",
            "get_job",
            &json!({"jobId": id, "waitSeconds": 1}).to_string(),
        ],
    );
    assert_eq!(
        polled["result"]["structuredContent"]["status"], "RUNNING",
        "{polled}"
    );
    let cancelled = mcp(
        &server,
        Some(ALICE),
        "modern",
        &["call", "cancel_job", &json!({"jobId": id}).to_string()],
    );
    assert_eq!(
        cancelled["result"]["structuredContent"]["status"], "CANCELLED",
        "{cancelled}"
    );
    let again = mcp(
        &server,
        Some(ALICE),
        "modern",
        &["call", "cancel_job", &json!({"jobId": id}).to_string()],
    );
    assert_eq!(again["result"]["isError"], true, "{again}");
    assert!(
        text_of(&again["result"]).contains("already CANCELLED"),
        "{again}"
    );
}

#[test]
fn result_files_come_back_as_resource_links_to_their_signed_urls() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let alice = rest(&server, ALICE);
    let csv = "region,amount\nnorth,1\nsouth,2\nnorth,3\n";
    let up = alice.post(
        "/uploads",
        &json!({"name": "sales.csv", "sizeBytes": csv.len(), "mimeType": "text/csv"}),
    );
    assert_eq!(up.status, 200, "{}", up.text);
    let put = alice.put_raw(
        up.body["uploadUrl"].as_str().unwrap(),
        csv.as_bytes().to_vec(),
    );
    assert!(put.status < 300, "{}", put.text);
    let input = json!({"source": {"object": up.body["object"]}, "groupBy": ["region"], "metrics": [{"op": "sum", "column": "amount"}]});
    let out = mcp(
        &server,
        Some(ALICE),
        "modern",
        &["run", "csv-report", &input.to_string()],
    );
    let content = out["result"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"));
    let links: Vec<&Value> = content
        .iter()
        .filter(|c| c["type"] == "resource_link")
        .collect();
    let files = out["result"]["structuredContent"]["files"]
        .as_array()
        .unwrap();
    assert_eq!(links.len(), files.len(), "{out}");
    assert!(!links.is_empty(), "{out}");
    for (link, file) in links.iter().zip(files) {
        assert_eq!(link["uri"], file["url"]);
        assert_eq!(link["name"], file["name"]);
        let (status, _, body) = alice.get_url(link["uri"].as_str().unwrap());
        assert_eq!(status, 200);
        assert_eq!(body.len() as u64, file["sizeBytes"].as_u64().unwrap());
    }
}

/// The README's MCP lines (the `.venv/bin/python tests/mcp/client.py` ones of "Use from an
/// MCP client"), run as written with `LONGHAUL_URL` and `LONGHAUL_TOKEN` set.
#[test]
fn the_readme_mcp_commands_run_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Use from an MCP client"))
        .expect("README has \"Use from an MCP client\"");
    let lines: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with(".venv/bin/python tests/mcp/client.py"))
        .collect();
    assert_eq!(lines.len(), 3, "{section}");
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    for line in lines {
        let out = Command::new("sh")
            .args(["-c", line])
            .current_dir(root())
            .env("LONGHAUL_URL", &server.url)
            .env("LONGHAUL_TOKEN", ALICE)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{line}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{line}: {e}: {stdout}"));
        assert!(
            v.get("error").is_none() && v.get("exception").is_none(),
            "{line}: {v}"
        );
        if line.contains(" run ") {
            assert_eq!(
                v["result"]["structuredContent"]["status"], "SUCCEEDED",
                "{line}: {v}"
            );
        } else {
            assert!(
                v["tools"].as_array().is_some_and(|t| t.len() > 4),
                "{line}: {v}"
            );
        }
    }
    assert_eq!(job_ids(&rest(&server, ALICE)).len(), 2);
}

/// Runs tests/mcp/client.mjs (the TypeScript SDK, installed by `npm ci --prefix tests/mcp`).
fn ts(server: &Server, token: &str, args: &[&str]) -> Value {
    let sdk = root().join("tests/mcp/node_modules/@modelcontextprotocol/sdk");
    assert!(
        sdk.exists(),
        "{} is missing: run npm ci --prefix tests/mcp (scripts/test does)",
        sdk.display()
    );
    let url = format!("{}/mcp", server.url);
    let out = Command::new("node")
        .arg(root().join("tests/mcp/client.mjs"))
        .args([url.as_str(), token])
        .args(args)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A second client no one here wrote, and one whose task client is its own: the TypeScript
/// SDK (2025-11-25) decides from `execution.taskSupport` to run a job tool as a task, polls
/// `tasks/get` at the server's `pollInterval` and fetches `tasks/result`.
#[test]
fn the_typescript_sdk_runs_fails_and_cancels_jobs_as_tasks_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let alice = rest(&server, ALICE);
    let kinds = |out: &Value| -> Vec<String> {
        out["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{out}"))
            .iter()
            .map(|m| m["type"].as_str().unwrap().to_string())
            .collect()
    };
    let out = ts(
        &server,
        ALICE,
        &["run", "demo", r#"{"steps": 2, "stepSeconds": 1}"#],
    );
    assert_eq!(
        (out["protocolVersion"].as_str(), &out["sessionId"]),
        (Some("2025-11-25"), &Value::Null)
    );
    let k = kinds(&out);
    assert_eq!(k.first().map(String::as_str), Some("taskCreated"), "{out}");
    assert_eq!(k.last().map(String::as_str), Some("result"), "{out}");
    let result = &out["messages"].as_array().unwrap().last().unwrap()["result"];
    assert_eq!(result["structuredContent"]["status"], "SUCCEEDED", "{out}");
    let id = result["structuredContent"]["jobId"].as_str().unwrap();
    assert_eq!(
        alice.get(&format!("/jobs/{id}")).body["status"],
        "SUCCEEDED"
    );

    // A failed job is a failed task, and the SDK reports it as an error.
    let out = ts(
        &server,
        ALICE,
        &[
            "run",
            "demo",
            r#"{"steps": 2, "stepSeconds": 0, "failAtStep": 1}"#,
        ],
    );
    let messages = out["messages"].as_array().unwrap();
    let last_status = messages
        .iter()
        .rev()
        .find(|m| m["type"] == "taskStatus")
        .unwrap();
    assert_eq!(last_status["task"]["status"], "failed", "{out}");
    assert!(
        last_status["task"]["statusMessage"]
            .as_str()
            .unwrap()
            .contains("failAtStep"),
        "{out}"
    );
    assert_eq!(
        kinds(&out).last().map(String::as_str),
        Some("error"),
        "{out}"
    );

    // Cancelled through the SDK's tasks/cancel: the job is CANCELLED; a second cancel is refused.
    let out = ts(
        &server,
        ALICE,
        &["cancel", "demo", r#"{"steps": 3, "stepSeconds": 30}"#],
    );
    assert_eq!(out["cancelled"]["status"], "cancelled", "{out}");
    assert_eq!(out["task"]["status"], "cancelled", "{out}");
    assert_eq!(out["cancelAgain"]["code"], -32602, "{out}");
    let id = out["task"]["taskId"].as_str().unwrap();
    assert_eq!(
        alice.get(&format!("/jobs/{id}")).body["status"],
        "CANCELLED"
    );

    // The four job tools are not tasks: a plain call.
    let out = ts(&server, ALICE, &["call", "list_jobs", r#"{"limit": 10}"#]);
    assert_eq!(
        out["result"]["structuredContent"]["jobs"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{out}"
    );
    // Refused credentials reach the SDK as a 401.
    let out = ts(&server, "not-a-token-0123456789", &["tools"]);
    assert_eq!(out["error"]["code"], 401, "{out}");
}

/// A job that asks its owner a question (demo's `askFirst`): 2026-07-28 sees the task
/// `input_required` with the question as an elicitation in `inputRequests`, and answers it
/// with `tasks/update` (the SDK carries the extension's methods as types only, so the
/// request is the test client's `UpdateTask` sent through the SDK session); 2025-11-25 sees
/// `input_required` in tasks/get and tasks/list, and the answer comes through REST.
#[test]
fn a_task_waiting_for_input_takes_the_answer_through_tasks_update() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let alice = rest(&server, ALICE);
    let args = r#"{"steps": 1, "stepSeconds": 0, "askFirst": "Which colour?"}"#;

    let started = mcp(&server, Some(ALICE), "modern", &["start", "demo", args]);
    let id = started["created"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
    let waiting = mcp(
        &server,
        Some(ALICE),
        "modern",
        &["wait-task", &id, "--until", "input_required"],
    );
    let task = &waiting["task"];
    assert_eq!(task["status"], "input_required", "{waiting}");
    assert!(
        task["statusMessage"]
            .as_str()
            .unwrap()
            .contains("Which colour?"),
        "{waiting}"
    );
    let requests = task["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(requests.len(), 1, "{waiting}");
    let (key, request) = requests.iter().next().unwrap();
    assert_eq!(request["method"], "elicitation/create", "{waiting}");
    assert_eq!(request["params"]["mode"], "form", "{waiting}");
    assert_eq!(request["params"]["message"], "Which colour?", "{waiting}");
    assert_eq!(
        request["params"]["requestedSchema"]["required"],
        json!(["answer"]),
        "{waiting}"
    );
    // REST shows the same question, under the same id.
    let r = alice.get(&format!("/jobs/{id}"));
    assert_eq!(
        r.body["inputRequest"]["requestId"],
        key.as_str(),
        "{}",
        r.text
    );

    // Another owner's update: not found.
    let update = |token: &str, responses: Value| {
        mcp(
            &server,
            Some(token),
            "modern",
            &["update-task", &id, &responses.to_string()],
        )
    };
    let theirs = update(
        BOB,
        json!({key: {"action": "accept", "content": {"answer": "red"}}}),
    );
    assert_eq!(theirs["error"]["code"], -32602, "{theirs}");
    // An answer the schema refuses: -32602 naming the field; the task still waits.
    let bad = update(
        ALICE,
        json!({key: {"action": "accept", "content": {"answer": 7}}}),
    );
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let message = bad["error"]["message"].as_str().unwrap();
    assert!(message.contains("content.answer:"), "{bad}");
    // A key that is not outstanding is ignored (the extension's rule).
    let ignored = update(
        ALICE,
        json!({"input-0": {"action": "accept", "content": {"answer": "red"}}}),
    );
    assert!(ignored.get("error").is_none(), "{ignored}");
    let still = mcp(&server, Some(ALICE), "modern", &["get-task", &id]);
    assert_eq!(still["task"]["status"], "input_required", "{still}");

    let ack = update(
        ALICE,
        json!({key: {"action": "accept", "content": {"answer": "blue"}}}),
    );
    assert_eq!(ack["ack"]["resultType"], "complete", "{ack}");
    let done = mcp(&server, Some(ALICE), "modern", &["wait-task", &id]);
    assert_eq!(done["task"]["status"], "completed", "{done}");
    let job = &done["task"]["result"]["structuredContent"];
    assert_eq!(job["result"]["answer"], "blue", "{done}");

    // Declined: the waiting Task fails with InputDeclined, and so does the job (demo does
    // not catch it).
    let started = mcp(&server, Some(ALICE), "modern", &["start", "demo", args]);
    let declined_id = started["created"]["taskId"].as_str().unwrap().to_string();
    let waiting = mcp(
        &server,
        Some(ALICE),
        "modern",
        &["wait-task", &declined_id, "--until", "input_required"],
    );
    let key = waiting["task"]["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_else(|| panic!("{waiting}"));
    let ack = mcp(
        &server,
        Some(ALICE),
        "modern",
        &[
            "update-task",
            &declined_id,
            &json!({key: {"action": "decline"}}).to_string(),
        ],
    );
    assert!(ack.get("error").is_none(), "{ack}");
    let done = alice.wait_terminal(&declined_id, std::time::Duration::from_secs(60));
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"]["code"], "InputDeclined", "{done}");

    // 2025-11-25: input_required in tasks/get and tasks/list; the answer through REST.
    let started = mcp(&server, Some(ALICE), "legacy", &["start", "demo", args]);
    let legacy_id = started["created"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
    let waiting = mcp(
        &server,
        Some(ALICE),
        "legacy",
        &["wait-task", &legacy_id, "--until", "input_required"],
    );
    assert_eq!(waiting["task"]["status"], "input_required", "{waiting}");
    let listed = mcp(&server, Some(ALICE), "legacy", &["list-tasks"]);
    let entry = listed["tasks"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["taskId"] == legacy_id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(entry["status"], "input_required", "{listed}");
    let r = alice.post(
        &format!("/jobs/{legacy_id}/input"),
        &json!({"answer": "green"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let done = mcp(&server, Some(ALICE), "legacy", &["wait-task", &legacy_id]);
    assert_eq!(done["task"]["status"], "completed", "{done}");
}
