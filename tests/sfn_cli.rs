//! `longhaul sfn run`: exit codes and output as documented, task commands, and durability —
//! SIGKILL in the middle of a Wait and of a Map, run again with the same store, and the
//! execution resumes from its checkpoint and ends with the right output.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use serde_json::{Value, json};

fn write(dir: &std::path::Path, name: &str, v: &Value) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

fn sfn(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("sfn")
        .arg("run")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn success_prints_the_output_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        dir.path(),
        "d.json",
        &json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"}, "End": true}}}),
    );
    let out = sfn(&[def.to_str().unwrap(), "--input", r#"{"a": 2, "b": 3}"#]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"sum": 5}));
}

#[test]
fn failure_prints_status_error_cause_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        dir.path(),
        "d.json",
        &json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Nope", "Cause": "because"}}}),
    );
    let out = sfn(&[def.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"status": "FAILED", "error": "Nope", "cause": "because"})
    );

    let def = write(
        dir.path(),
        "t.json",
        &json!({"TimeoutSeconds": 1, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 10, "End": true}}}),
    );
    let out = sfn(&[def.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "TIMED_OUT");
}

#[test]
fn invalid_definitions_and_inputs_exit_2_naming_state_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        dir.path(),
        "d.json",
        &json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Nxt": "B", "End": true}}}),
    );
    let out = sfn(&[def.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state 'A'") && err.contains("Nxt"), "{err}");

    let ok = write(
        dir.path(),
        "ok.json",
        &json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}),
    );
    let out = sfn(&[ok.to_str().unwrap(), "--input", "{nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--input"));

    let task = write(
        dir.path(),
        "task.json",
        &json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:X", "End": true}}}),
    );
    let out = sfn(&[task.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unbound Task resource is invalid"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bound to nothing"));
}

#[test]
fn tasks_run_commands_with_substitutions_and_history_goes_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        dir.path(),
        "d.json",
        &json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "${Fn}", "ResultPath": "$.r", "Next": "Bad"},
        "Bad": {"Type": "Task", "Resource": "${Failing}", "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.err", "Next": "Done"}], "End": true},
        "Done": {"Type": "Pass", "End": true}}}),
    );
    let out = sfn(&[
        def.to_str().unwrap(),
        "--input",
        r#"{"x": 1}"#,
        "--subst",
        "Fn=arn:fn:echo",
        "--subst",
        "Failing=arn:fn:fail",
        "--task",
        "arn:fn:echo=cat",
        "--task",
        "arn:fn:fail=echo broken >&2; exit 3",
        "--history",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["r"], json!({"x": 1}));
    assert_eq!(
        v["err"],
        json!({"Error": "States.TaskFailed", "Cause": "broken"})
    );
    let history = String::from_utf8_lossy(&out.stderr);
    let types: Vec<String> = history
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| e["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("ExecutionStarted"));
    assert_eq!(types.last().map(String::as_str), Some("ExecutionSucceeded"));
    assert!(types.iter().any(|t| t == "TaskFailed"));
}

fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .arg("sfn")
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_during_a_wait_resumes_without_waiting_again() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        dir.path(),
        "d.json",
        &json!({"StartAt": "Before", "States": {
        "Before": {"Type": "Pass", "Result": "done", "ResultPath": "$.before", "Next": "Nap"},
        "Nap": {"Type": "Wait", "Seconds": 4, "Next": "After"},
        "After": {"Type": "Pass", "Result": "done", "ResultPath": "$.after", "End": true}}}),
    );
    let store = dir.path().join("engine.db");
    let args = [
        def.to_str().unwrap(),
        "--input",
        r#"{"n": 1}"#,
        "--store",
        store.to_str().unwrap(),
    ];
    let t0 = Instant::now();
    let mut first = spawn(&args);
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let out = Command::new(BIN)
        .arg("sfn")
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    let total = t0.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"n": 1, "before": "done", "after": "done"}));
    // The 4 s Wait ran once in all: it was not started over after the kill at 1.5 s.
    assert!(
        total < Duration::from_millis(5800),
        "took {total:?}: the Wait started over"
    );
    assert!(
        total >= Duration::from_millis(3900),
        "took {total:?}: the Wait was skipped"
    );
}

#[test]
fn sigkill_during_a_map_resumes_from_the_last_completed_state() {
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.log");
    let items = dir.path().join("items.log");
    let def = write(
        dir.path(),
        "d.json",
        &json!({"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Task", "Resource": "arn:fn:prepare", "ResultPath": "$.prepared", "Next": "Tidy"},
        // Pure states between are not checkpointed: the one before the Map still records
        // that Prepare finished.
        "Tidy": {"Type": "Pass", "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.prepared", "BooleanEquals": true, "Next": "Each"}]},
        "Each": {"Type": "Map", "ItemsPath": "$.xs", "MaxConcurrency": 1,
                 "ItemProcessor": {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": "arn:fn:work", "End": true}}},
                 "ResultPath": "$.results", "End": true}}}),
    );
    let store = dir.path().join("engine.db");
    let prepare = format!("echo once >> {}; echo true", before.display());
    let work = format!("echo item >> {}; sleep 0.3; cat", items.display());
    let prepare_bind = format!("arn:fn:prepare={prepare}");
    let work_bind = format!("arn:fn:work={work}");
    let args = [
        def.to_str().unwrap(),
        "--input",
        r#"{"xs": [1, 2, 3, 4, 5, 6]}"#,
        "--store",
        store.to_str().unwrap(),
        "--task",
        &prepare_bind,
        "--task",
        &work_bind,
    ];
    let mut first = spawn(&args);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = std::fs::read_to_string(&items)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the Map never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL in the middle of the Map
    first.wait().unwrap();

    let out = Command::new(BIN)
        .arg("sfn")
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"], json!([1, 2, 3, 4, 5, 6]));
    assert_eq!(v["prepared"], json!(true));
    // The state completed before the crash is not run again; the Map (in flight) is.
    let prepared = std::fs::read_to_string(&before).unwrap();
    assert_eq!(
        prepared.lines().count(),
        1,
        "Prepare ran again after the crash"
    );
}

/// HTTP Tasks under `sfn run`: a loopback endpoint is refused by default (https and public
/// addresses only) and reached with `--allow-insecure-http`; a callback Task is refused, as
/// `sfn run` has no API to answer it.
#[test]
fn http_tasks_follow_the_outbound_policy_and_callbacks_are_refused() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = r#"{"pong": true}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        dir.path(),
        "http.json",
        &json!({"StartAt": "Ping", "States": {"Ping": {
            "Type": "Task",
            "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": format!("http://{addr}/ping"), "Method": "GET",
                           "Authentication": {"ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/ping/1"}},
            "OutputPath": "$.ResponseBody",
            "End": true}}}),
    );
    let refused = sfn(&[def.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(v["error"], "States.Permissions", "{v}");

    let allowed = sfn(&[def.to_str().unwrap(), "--allow-insecure-http"]);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stdout)
    );
    let v: Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(v, json!({"pong": true}));

    let callback = write(
        dir.path(),
        "callback.json",
        &json!({"StartAt": "Ask", "States": {"Ask": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}},
            "End": true}}}),
    );
    let out = sfn(&[callback.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("waits for a task token"), "{err}");
}
