//! Job types added as folders only — Python, Node and command steps — run end to end on a
//! real `longhaul serve`: results and files, Retry and Catch by an exception's class name,
//! schema refusals, a step that hangs, a step that prints garbage, progress lines, a kill of
//! the server mid-step, and a bad folder that stops the start.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Server};
use serde_json::{Value, json};

/// Writes a job type folder `dir/name` from its jobtype.json, workflow and code files.
fn write_type(dir: &Path, name: &str, jobtype: Value, workflow: Value, files: &[(&str, &str)]) {
    let t = dir.join(name);
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("jobtype.json"), jobtype.to_string()).unwrap();
    std::fs::write(t.join("workflow.asl.json"), workflow.to_string()).unwrap();
    for (file, text) in files {
        std::fs::write(t.join(file), text).unwrap();
    }
}

fn one_step(runtime: Value, timeout: u32) -> Value {
    let mut step = runtime;
    step["timeoutSeconds"] = json!(timeout);
    json!({
        "description": "A test type.",
        "inputSchema": {"type": "object", "properties": {"dir": {"type": "string"}, "count": {"type": "integer", "minimum": 1}}},
        "steps": {"Run": step}
    })
}

fn one_task() -> Value {
    json!({"StartAt": "Run", "States": {"Run": {"Type": "Task", "Resource": "${Run}", "End": true}}})
}

/// Retry by name (Flaky, twice), then Catch by name (ValueError) into a plain answer.
fn flaky_type(dir: &Path) {
    write_type(
        dir,
        "flaky",
        json!({
            "description": "Fails twice with Flaky, then raises ValueError when asked.",
            "inputSchema": {"type": "object", "additionalProperties": false, "required": ["dir", "count"],
                "properties": {"dir": {"type": "string"}, "count": {"type": "integer", "minimum": 1, "maximum": 5},
                               "bad": {"type": "boolean", "default": false}}},
            "steps": {
                "Attempt": {"runtime": "python3.12", "handler": "flaky.attempt", "timeoutSeconds": 30},
                "Check": {"runtime": "python3.12", "handler": "flaky.check", "timeoutSeconds": 30}
            }
        }),
        json!({"StartAt": "Attempt", "States": {
            "Attempt": {"Type": "Task", "Resource": "${Attempt}", "ResultPath": "$.attempts",
                "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 1}],
                "Next": "Check"},
            "Check": {"Type": "Task", "Resource": "${Check}",
                "Catch": [{"ErrorEquals": ["ValueError"], "ResultPath": "$.caught", "Next": "Recovered"}],
                "End": true},
            "Recovered": {"Type": "Pass", "Parameters": {"result": {"recovered.$": "$.caught.Error", "attempts.$": "$.attempts"}}, "End": true}
        }}),
        &[(
            "flaky.py",
            r#"
import os

class Flaky(Exception):
    pass

def attempt(event, context):
    marker = os.path.join(event["input"]["dir"], "attempts-" + event["jobId"])
    n = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
    with open(marker, "w") as f:
        f.write(str(n))
    if n < 3:
        raise Flaky(f"attempt {n} failed")
    return n

def check(event, context):
    if event["input"]["bad"]:
        raise ValueError("the input asked for a bad check")
    return {"result": {"attempts": event["attempts"], "count": event["input"]["count"]}}
"#,
        )],
    );
}

fn server_with_types(types: &Path, data: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--job-types", types.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(data, &args, None)
}

#[test]
fn a_python_type_retries_and_catches_by_exception_name() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    flaky_type(&types);
    let server = server_with_types(&types, &dir.path().join("data"), &[]);
    let api = server.client();
    let work = dir.path().to_str().unwrap();

    let listed = api.get("/job-types");
    assert!(
        listed.body["jobTypes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["type"] == "flaky"),
        "{}",
        listed.text
    );
    let r = api.post(
        "/jobs",
        &json!({"type": "flaky", "input": {"dir": work, "count": 2}}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(
        job["result"],
        json!({"attempts": 3, "count": 2}),
        "retried twice by name"
    );

    let r = api.post(
        "/jobs",
        &json!({"type": "flaky", "input": {"dir": work, "count": 1, "bad": true}}),
    );
    let job = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(
        job["result"]["recovered"], "ValueError",
        "caught by name: {job}"
    );

    // The schema refuses a bad input before anything runs, naming the field.
    let r = api.post(
        "/jobs",
        &json!({"type": "flaky", "input": {"dir": work, "count": 9}}),
    );
    r.assert_error(400, "bad_request", "input.count");
    let r = api.post("/jobs", &json!({"type": "flaky", "input": {"count": 1}}));
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("dir"),
        "{}",
        r.text
    );
}

#[test]
fn hanging_and_garbage_steps_fail_with_a_clear_cause() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    write_type(
        &types,
        "hangs",
        one_step(
            json!({"runtime": "python3.12", "handler": "hang.handler"}),
            2,
        ),
        one_task(),
        &[(
            "hang.py",
            "import time\ndef handler(event, context):\n    time.sleep(120)\n",
        )],
    );
    write_type(
        &types,
        "garbage",
        one_step(
            json!({"runtime": "command", "command": ["sh", "-c", "echo this is not json; echo more"]}),
            10,
        ),
        one_task(),
        &[],
    );
    write_type(
        &types,
        "exits",
        one_step(
            json!({"runtime": "command", "command": ["sh", "-c", "echo working >&2; echo '{\"error\": \"ToolBroke\", \"cause\": \"the tool broke\"}' >&2; exit 3"]}),
            10,
        ),
        one_task(),
        &[],
    );
    let server = server_with_types(&types, &dir.path().join("data"), &[]);
    let api = server.client();
    let run = |t: &str| {
        let r = api.post("/jobs", &json!({"type": t, "input": {}}));
        assert_eq!(r.status, 202, "{}", r.text);
        api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(60))
    };

    let started = Instant::now();
    let job = run("hangs");
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["error"]["code"], "States.Timeout", "{job}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped at its timeout"
    );

    let job = run("garbage");
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["error"]["code"], "Runtime.InvalidOutput", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not JSON") && message.contains("this is not json"),
        "{job}"
    );

    let job = run("exits");
    assert_eq!(job["error"]["code"], "ToolBroke", "{job}");
    assert_eq!(job["error"]["message"], "the tool broke", "{job}");
}

#[test]
fn a_python_exception_keeps_its_message_and_stderr_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    write_type(
        &types,
        "raises",
        one_step(
            json!({"runtime": "python3.12", "handler": "boom.handler"}),
            10,
        ),
        one_task(),
        &[(
            "boom.py",
            "def handler(event, context):\n    print('about to fail')\n    raise KeyError('no such thing')\n",
        )],
    );
    let server = server_with_types(&types, &dir.path().join("data"), &[]);
    let api = server.client();
    let r = api.post("/jobs", &json!({"type": "raises", "input": {}}));
    let id = r.body["jobId"].as_str().unwrap().to_string();
    let job = api.wait_terminal(&id, Duration::from_secs(60));
    assert_eq!(job["error"]["code"], "KeyError", "{job}");
    assert_eq!(job["error"]["message"], "'no such thing'", "{job}");
    let history = api.get(&format!("/jobs/{id}/history?limit=1000"));
    let failed = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "TaskFailed")
        .cloned()
        .expect("a TaskFailed event");
    let cause = failed["details"]["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains("about to fail"),
        "the step's output is kept: {failed}"
    );
    assert!(cause.contains("KeyError"), "{failed}");
}

#[test]
fn progress_lines_show_while_the_step_runs() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    write_type(
        &types,
        "reports",
        one_step(
            json!({"runtime": "nodejs22.x", "handler": "step.handler"}),
            30,
        ),
        one_task(),
        &[(
            "step.mjs",
            r#"export const handler = async (event) => {
  process.stderr.write(JSON.stringify({longhaulProgress: {percent: 42, message: "halfway there"}}) + "\n");
  console.log("a log line");
  await new Promise((r) => setTimeout(r, 3000));
  return {result: {ok: true}};
};
"#,
        )],
    );
    let server = server_with_types(&types, &dir.path().join("data"), &[]);
    let api = server.client();
    let r = api.post("/jobs", &json!({"type": "reports", "input": {}}));
    let id = r.body["jobId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = api.get(&format!("/jobs/{id}")).body;
        if job["progress"]["message"] == "halfway there" {
            assert_eq!(job["progress"]["percent"], 42);
            assert_eq!(job["status"], "RUNNING");
            break;
        }
        assert!(Instant::now() < deadline, "no progress seen: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let job = api.wait_terminal(&id, Duration::from_secs(30));
    assert_eq!(job["result"], json!({"ok": true}), "{job}");
}

#[test]
fn a_kill_of_the_server_mid_step_resumes_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    write_type(
        &types,
        "slow",
        one_step(
            json!({"runtime": "python3.12", "handler": "slow.handler"}),
            60,
        ),
        one_task(),
        &[(
            "slow.py",
            r#"
import os, time
def handler(event, context):
    runs = os.path.join(event["input"]["dir"], "runs")
    with open(runs, "a") as f:
        f.write("run\n")
    time.sleep(3)
    return {"result": {"runs": open(runs).read().count("run")}}
"#,
        )],
    );
    let data = dir.path().join("data");
    let work = dir.path().to_str().unwrap().to_string();
    let mut server = server_with_types(&types, &data, &[]);
    let api = server.client();
    let r = api.post("/jobs", &json!({"type": "slow", "input": {"dir": work}}));
    let id = r.body["jobId"].as_str().unwrap().to_string();
    let runs = dir.path().join("runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !runs.exists() {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    // The step died with the server (it was its child), not left running on its own.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);

    let server = server_with_types(&types, &data, &[]);
    let api = server.client();
    let job = api.wait_terminal(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(
        job["result"]["runs"], 2,
        "the step ran again after the restart: {job}"
    );
}

#[test]
fn the_examples_run_as_folders_with_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--job-types", root.join("examples").to_str().unwrap()],
        None,
    );
    let api = server.client();

    // word-tally: an uploaded page; words.csv comes back as a file.
    let page =
        b"<html><style>x{}</style><p>The river runs. A river sleeps. Rivers &amp; seas.</p></html>";
    let up = api.post(
        "/uploads",
        &json!({"name": "page.html", "sizeBytes": page.len()}),
    );
    assert_eq!(
        api.put_raw(up.body["uploadUrl"].as_str().unwrap(), page.to_vec())
            .status,
        201
    );
    let r = api.post(
        "/jobs",
        &json!({"type": "word-tally", "input": {"page": {"object": up.body["object"]}, "top": 2}}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(
        job["result"]["top"][0],
        json!({"word": "river", "count": 2}),
        "{job}"
    );
    let file = &job["files"][0];
    assert_eq!(file["name"], "words.csv");
    let (status, _, body) = api.get_url(file["url"].as_str().unwrap());
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).starts_with("word,count\nriver,2\n"));

    // A page with no words is caught by the workflow (NoWordsError) and answered plainly.
    let empty = b"<p>1 2 3</p>";
    let up = api.post(
        "/uploads",
        &json!({"name": "empty.html", "sizeBytes": empty.len()}),
    );
    api.put_raw(up.body["uploadUrl"].as_str().unwrap(), empty.to_vec());
    let r = api.post(
        "/jobs",
        &json!({"type": "word-tally", "input": {"page": {"object": up.body["object"]}}}),
    );
    let job = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["words"], 0, "{job}");

    // table-report (Node): report.html written to the job's output location.
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/table-report/sample-input.json")).unwrap(),
    )
    .unwrap();
    let r = api.post("/jobs", &json!({"type": "table-report", "input": sample}));
    let job = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["sums"], json!({"amount": 200}), "{job}");
    assert_eq!(job["files"][0]["name"], "report.html");
    assert_eq!(job["files"][0]["mimeType"], "text/html");
    let r = api.post(
        "/jobs",
        &json!({"type": "table-report", "input": {"title": "t", "columns": ["a", "b"], "rows": [[1]]}}),
    );
    let job = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(
        job["error"]["code"], "RangeError",
        "a thrown error by its name: {job}"
    );
}

#[test]
fn a_bad_folder_stops_the_start_naming_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    write_type(
        &types,
        "broken",
        one_step(
            json!({"runtime": "python3.12", "handler": "step.handler"}),
            10,
        ),
        json!({"StartAt": "Run", "States": {"Run": {"Type": "Task", "Resource": "${Missing}", "End": true}}}),
        &[("step.py", "def handler(e, c):\n    return {}\n")],
    );
    let out = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--job-types")
        .arg(&types)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken/workflow.asl.json"), "{err}");
    assert!(
        err.contains("${Missing} is not a step of jobtype.json"),
        "{err}"
    );
}

#[test]
fn a_job_past_its_types_time_limit_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    let mut def = one_step(
        json!({"runtime": "python3.12", "handler": "slow.handler"}),
        120,
    );
    def["timeoutSeconds"] = json!(2);
    write_type(
        &types,
        "brief",
        def,
        one_task(),
        &[(
            "slow.py",
            "import time\ndef handler(event, context):\n    time.sleep(60)\n",
        )],
    );
    let server = server_with_types(&types, &dir.path().join("data"), &[]);
    let api = server.client();
    let r = api.post("/jobs", &json!({"type": "brief", "input": {}}));
    assert_eq!(r.status, 202, "{}", r.text);
    let started = Instant::now();
    let job = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(40));
    assert_eq!(job["status"], "TIMED_OUT", "{job}");
    assert_eq!(job["error"]["code"], "timed_out", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("time limit (2 s)"),
        "{job}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
