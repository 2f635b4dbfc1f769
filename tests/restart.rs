//! Crash safety of `longhaul serve`: SIGKILL in the middle of a job, start again, the job
//! finishes; SIGTERM shuts down gracefully and running work resumes.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::json;

#[test]
fn a_job_survives_sigkill_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[], None);
    let token = server.token.clone();
    let api = server.client();
    let job_id = api.start_demo(4, 1);
    // Let it get going: at least one step done.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = api.get(&format!("/jobs/{job_id}"));
        if r.body["progress"]["percent"].as_u64().unwrap_or(0) >= 25 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no progress: {}",
            r.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill();

    let server = Server::start(&data, &[], Some(&token));
    let api = server.client();
    let job = api.wait_terminal(&job_id, Duration::from_secs(60));
    assert_eq!(job["status"], "SUCCEEDED", "{job}\n{}", server.log());
    assert_eq!(job["result"]["stepsCompleted"], json!(4));
    let running = api.get("/jobs?status=RUNNING");
    assert_eq!(running.body["jobs"], json!([]), "no job stays RUNNING");
}

#[test]
fn sigterm_is_graceful_and_running_work_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[], None);
    let token = server.token.clone();
    let api = server.client();
    let job_id = api.start_demo(3, 1);
    std::thread::sleep(Duration::from_millis(1200));
    let pid = server.child.id();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut server = server;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        exit.success(),
        "clean exit on SIGTERM: {exit:?}\n{}",
        server.log()
    );

    let server = Server::start(&data, &[], Some(&token));
    let job = server
        .client()
        .wait_terminal(&job_id, Duration::from_secs(60));
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
}

#[test]
fn one_server_per_data_dir_and_a_killed_ones_unfinished_writes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[], None);
    let token = server.token.clone();

    let second = std::process::Command::new(common::BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another longhaul serve is using the data dir"),
        "{err}"
    );

    // What a write cut off by SIGKILL leaves: a temp file that was never renamed.
    server.kill();
    let leftover = data.join("blobs/.tmp/0b5e8a42-cut-off");
    std::fs::write(&leftover, b"half a file").unwrap();
    let server = Server::start(&data, &[], Some(&token));
    assert!(!leftover.exists(), "{}", server.log());
    assert!(server.log().contains("removed unfinished writes"));
    assert_eq!(server.client().get("/jobs").status, 200);
}
