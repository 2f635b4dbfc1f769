//! `longhaul serve --schedule`: bad expressions stop the start with the reason; a one-time
//! run fires when due; a run missed while the server was down runs once at start; restarts
//! never start a due time twice.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_longhaul");

#[test]
fn bad_schedules_stop_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        json!({"type": "demo", "input": {"steps": 1}, "owner": "ops"}).to_string(),
    )
    .unwrap();
    let bad_type = dir.path().join("bad.json");
    std::fs::write(
        &bad_type,
        json!({"type": "nope", "input": {}, "owner": "ops"}).to_string(),
    )
    .unwrap();
    for (flag, why) in [
        (
            format!("x=cron(0 25 * * ? *)=@{}", job.display()),
            "hours: 25 is outside 0-23",
        ),
        (
            format!("x=every day=@{}", job.display()),
            "not a schedule expression",
        ),
        (
            format!("x=rate(5 minutes)=@{}", bad_type.display()),
            "unknown job type",
        ),
        ("x=rate(5 minutes)".to_string(), "NAME=EXPRESSION=@JOB.json"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--schedule", &flag])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} must stop the start");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{flag}: {err}");
    }
}

fn jobs_of(server: &Server) -> Vec<serde_json::Value> {
    server.client().get("/jobs?limit=100").body["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn due_runs_start_once_and_missed_runs_catch_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        json!({"type": "demo", "input": {"steps": 1, "stepSeconds": 0}, "owner": "local"})
            .to_string(),
    )
    .unwrap();
    // "daily" has existed since January: its latest 06:00 was missed while no server ran.
    std::fs::write(
        data.join("schedules.json"),
        json!({"daily": "2026-01-01T00:00:00Z"}).to_string(),
    )
    .unwrap();
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(3)).format("%Y-%m-%dT%H:%M:%S");
    let args = [
        "--schedule".to_string(),
        format!("daily=cron(0 6 * * ? *)=@{}", job.display()),
        "--schedule".to_string(),
        format!("once=at({soon})=@{}", job.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(&data, &args, None);
    let token = server.token.clone();

    // The missed daily run starts at once; the one-time run when due.
    let deadline = Instant::now() + Duration::from_secs(20);
    while jobs_of(&server).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "scheduled runs did not start: {:?}\n{}",
            jobs_of(&server),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let api = server.client();
    for j in jobs_of(&server) {
        let done = api.wait_terminal(j["jobId"].as_str().unwrap(), Duration::from_secs(20));
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
    }

    // Restarts start nothing again: each due time maps to its one job.
    for _ in 0..2 {
        server.kill();
        server = Server::start(&data, &args, Some(&token));
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(jobs_of(&server).len(), 2, "{:?}", jobs_of(&server));
    }
}
