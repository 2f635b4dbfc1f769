//! Storage faults on a real `longhaul serve`: a database locked by another process, and
//! writes refused by a file-size limit (what a full disk looks like to the server, set on the
//! running process with `prlimit`). Requests get 503 with Retry-After, nothing is half
//! written, and the server recovers by itself when the fault goes away.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;
use serde_json::json;

fn demo() -> serde_json::Value {
    json!({"type": "demo", "input": {"steps": 1, "stepSeconds": 0}})
}

#[test]
fn a_locked_database_gives_503_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[], None);
    let api = server.client();
    let first = api.post("/jobs", &demo());
    assert_eq!(first.status, 202, "{}", first.text);
    let first_id = first.body["jobId"].as_str().unwrap().to_string();
    api.wait_terminal(&first_id, Duration::from_secs(20));

    // Another process takes the write lock and holds it until we close its stdin.
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); \
             c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()",
        ])
        .arg(data.join("jobs.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");

    let r = api.post("/jobs", &demo());
    assert_eq!(
        (r.status, r.error_code()),
        (503, "unavailable"),
        "{}",
        r.text
    );
    assert!(r.headers.get("retry-after").is_some(), "Retry-After is set");

    // Release: the next start works, and nothing of the refused one exists.
    locker.stdin.take().unwrap().write_all(b"").unwrap();
    locker.wait().unwrap();
    let r = api.post("/jobs", &demo());
    assert_eq!(r.status, 202, "{}", r.text);
    let list = api.get("/jobs");
    assert_eq!(
        list.body["jobs"].as_array().unwrap().len(),
        2,
        "{}",
        list.text
    );
    let done = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(20));
    assert_eq!(done["status"], "SUCCEEDED");
}

fn prlimit(pid: u32, fsize: &str) {
    let st = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={fsize}:")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(st.success());
}

#[test]
fn refused_writes_give_503_nothing_is_corrupted_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[], None);
    let api = server.client();
    let first = api.post("/jobs", &demo());
    assert_eq!(first.status, 202, "{}", first.text);
    let first_id = first.body["jobId"].as_str().unwrap().to_string();
    let done = api.wait_terminal(&first_id, Duration::from_secs(20));
    assert_eq!(done["status"], "SUCCEEDED");

    // "The disk is full": no file may grow past 1 KiB (the soft limit; the hard one stays).
    prlimit(server.child.id(), "1024");
    let mut refused = 0;
    for _ in 0..5 {
        let r = api.post("/jobs", &demo());
        assert_ne!(r.status, 500, "never a 500: {}", r.text);
        if r.status == 503 {
            assert_eq!(r.error_code(), "unavailable");
            assert!(r.headers.get("retry-after").is_some());
            refused += 1;
        } else {
            assert_eq!(r.status, 202, "{}", r.text);
        }
    }
    assert!(refused > 0, "writes past the limit must be refused");
    let up = api.post("/uploads", &json!({"name": "d.csv", "sizeBytes": 100_000}));
    assert_eq!(up.status, 200, "{}", up.text);
    let put = api.put_raw(up.body["uploadUrl"].as_str().unwrap(), vec![b'x'; 100_000]);
    assert_eq!(
        (put.status, put.error_code()),
        (503, "unavailable"),
        "{}",
        put.text
    );
    // The body was not read to its end: the client is told not to reuse the connection.
    assert_eq!(
        put.headers.get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    // Reads still work.
    let r = api.get(&format!("/jobs/{first_id}"));
    assert_eq!(r.body["status"], "SUCCEEDED", "{}", r.text);

    // Space returns: everything works again, and the data is whole.
    prlimit(server.child.id(), "unlimited");
    let r = api.post("/jobs", &demo());
    assert_eq!(r.status, 202, "{}", r.text);
    let done = api.wait_terminal(r.body["jobId"].as_str().unwrap(), Duration::from_secs(20));
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let put = api.put_raw(up.body["uploadUrl"].as_str().unwrap(), vec![b'x'; 100_000]);
    assert!(put.status < 300, "{}", put.text);
    let check = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])",
        ])
        .arg(data.join("jobs.db"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok");
    let blobs_tmp: Vec<_> = std::fs::read_dir(data.join("blobs/.tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        blobs_tmp.is_empty(),
        "half-written files left: {blobs_tmp:?}"
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
