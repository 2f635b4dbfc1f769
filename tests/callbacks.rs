//! Callbacks end to end: a job type folder (written here, loaded with `--job-types`) whose
//! workflow waits for a task token (`lambda:invoke.waitForTaskToken`); its `command` step
//! hands the token out (writes it to a file); the test answers through
//! `POST /task-tokens/{token}/success|failure|heartbeat` — also after the server was killed
//! and started again.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

/// `DIR/approval/`: a Task that calls the Notify step with its token and waits.
fn write_job_type(dir: &Path) -> PathBuf {
    let types = dir.join("types");
    let folder = types.join("approval");
    std::fs::create_dir_all(&folder).unwrap();
    let def = json!({
        "description": "Waits for someone to approve the request.",
        "inputSchema": {"type": "object", "properties": {"what": {"type": "string"}}, "required": ["what"]},
        "steps": {"Notify": {"runtime": "command", "command": ["sh", "-c",
            "cat > \"$APPROVAL_INBOX/$(date +%s%N).json\"; echo '{\"sent\": true}'"]}}
    });
    let workflow = json!({
        "StartAt": "Ask",
        "States": {
            "Ask": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {
                    "FunctionName": "${Notify}",
                    "Payload": {"token.$": "$$.Task.Token", "jobId.$": "$.jobId", "what.$": "$.input.what"}
                },
                "HeartbeatSeconds": 600,
                "ResultPath": "$.answer",
                "Next": "Done"
            },
            "Done": {"Type": "Pass", "Parameters": {"result.$": "$.answer"}, "End": true}
        }
    });
    std::fs::write(folder.join("jobtype.json"), def.to_string()).unwrap();
    std::fs::write(folder.join("workflow.asl.json"), workflow.to_string()).unwrap();
    types
}

/// The token the Notify step was given for `job_id` (it writes one file per call).
fn token_for(inbox: &Path, job_id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for entry in std::fs::read_dir(inbox).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if let Ok(event) = serde_json::from_str::<Value>(&text)
                && event["jobId"] == json!(job_id)
            {
                return event["token"].as_str().expect("a token").to_string();
            }
        }
        assert!(Instant::now() < deadline, "the step never got a token");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(server: &Server, what: &str) -> String {
    let r = server.client().post(
        "/jobs",
        &json!({"type": "approval", "input": {"what": what}}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    r.body["jobId"].as_str().unwrap().to_string()
}

/// Percent-encodes a token for the path (ours are URL-safe already; AWS's are not).
fn path(token: &str, answer: &str) -> String {
    let encoded: String = url_encode(token);
    format!("/task-tokens/{encoded}/{answer}")
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn an_outside_system_answers_a_waiting_job() {
    let dir = tempfile::tempdir().unwrap();
    let types = write_job_type(dir.path());
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with_env(
        &data,
        &["--job-types", types.to_str().unwrap()],
        None,
        &[("APPROVAL_INBOX", inbox.to_str().unwrap())],
    );
    let api = server.client();

    // Success: the answer is the job's result; the token is spent.
    let job = start(&server, "a new laptop");
    let token = token_for(&inbox, &job);
    assert_eq!(token.len(), 43);
    let r = api.get(&format!("/jobs/{job}"));
    assert_eq!(r.body["status"], "RUNNING", "waiting, no step busy");
    let r = api.post(&path(&token, "heartbeat"), &json!({}));
    assert_eq!(
        (r.status, &r.body),
        (200, &json!({"delivered": "heartbeat"}))
    );
    let r = api.post(
        &path(&token, "success"),
        &json!({"approved": true, "by": "ada"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let done = api.wait_terminal(&job, Duration::from_secs(60));
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["result"], json!({"approved": true, "by": "ada"}));
    let again = api.post(&path(&token, "success"), &json!(1));
    assert_eq!(
        (again.status, again.error_code()),
        (404, "not_found"),
        "spent"
    );

    // Failure: the job fails with the answer's error and cause.
    let job = start(&server, "a yacht");
    let token = token_for(&inbox, &job);
    let r = api.post(
        &path(&token, "failure"),
        &json!({"error": "Rejected", "cause": "not in the budget"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let done = api.wait_terminal(&job, Duration::from_secs(60));
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"]["code"], "Rejected");
    assert_eq!(done["error"]["message"], "not in the budget");

    // Wrong tokens and bad requests are clear 4xx, never 500; the routes need the API token.
    let unknown = "A".repeat(43);
    let r = api.post(&path(&unknown, "success"), &json!(1));
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    let r = api.post(&path("garbage", "heartbeat"), &json!({}));
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    let r = api.post(&path(&unknown, "failure"), &json!({"error": 7}));
    assert_eq!((r.status, r.error_code()), (400, "bad_request"));
    let anonymous = api.with_token(None);
    let r = anonymous.post(&path(&unknown, "success"), &json!(1));
    assert_eq!((r.status, r.error_code()), (401, "unauthorized"));
}

/// The waiting task's token is checkpointed: after `kill -9` and a new start, the same
/// token still answers the job.
#[test]
fn a_token_outlives_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    let types = write_job_type(dir.path());
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let data = dir.path().join("data");
    let env = [("APPROVAL_INBOX", inbox.to_str().unwrap())];
    let args = ["--job-types", types.to_str().unwrap()];
    let mut server = Server::start_with_env(&data, &args, None, &env);
    let job = start(&server, "a bike");
    let token = token_for(&inbox, &job);
    let api_token = server.token.clone();
    server.kill();

    let server = Server::start_with_env(&data, &args, Some(&api_token), &env);
    let api = server.client();
    let r = api.post(
        &path(&token, "success"),
        &json!({"approved": "after the restart"}),
    );
    assert_eq!(r.status, 200, "{}: {}", r.text, server.log());
    let done = api.wait_terminal(&job, Duration::from_secs(60));
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["result"], json!({"approved": "after the restart"}));
}
