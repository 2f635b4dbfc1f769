//! README's command blocks marked `<!-- tests/readme.rs runs this block ... -->` run as
//! written, line by line, by bash. `cargo run --release -- ARGS` is the one thing stood in
//! for: a `cargo` on PATH that checks it was called exactly so and runs the longhaul binary
//! this test was built with (a release build per test would take minutes). The server
//! address comes from the environment (`LONGHAUL_ADDR`, `LONGHAUL_URL`), as a user's would,
//! so the test does not take port 8080.

mod common;

use std::path::Path;
use std::process::Command;

use common::BIN;

const MARKER: &str = "<!-- tests/readme.rs runs this block";

/// The shell blocks README marks for this test.
fn marked_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut blocks = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find(MARKER) {
        let after = &rest[at..];
        let start = after
            .find("```sh\n")
            .expect("a ```sh block after the marker")
            + 6;
        let end = after[start..].find("```").expect("the block ends") + start;
        blocks.push(after[start..end].to_string());
        rest = &after[end..];
    }
    blocks
}

/// A free loopback port (the server binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cargo_shim(dir: &Path) {
    let shim = dir.join("cargo");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\n\
             # Stands in for `cargo run --release -- ARGS` (and nothing else).\n\
             if [ \"$1\" != run ] || [ \"$2\" != --release ] || [ \"$3\" != -- ]; then\n\
               echo \"cargo shim: not 'cargo run --release --': $*\" >&2; exit 2\n\
             fi\n\
             shift 3\n\
             exec {BIN:?} \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs a marked block as written, line by line (`set -e`), in an empty folder, with the
/// cargo shim on PATH and the server address in the environment; background jobs (the
/// server) are stopped at the end. Returns the block's stdout and the folder.
fn run_block(block: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    cargo_shim(&bin);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let port = free_port();
    let script = format!("set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n{block}");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("LONGHAUL_ADDR", format!("127.0.0.1:{port}"))
        .env("LONGHAUL_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{block}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, dir)
}

#[test]
fn the_add_a_job_type_commands_run_as_written() {
    let blocks = marked_blocks();
    let block = blocks
        .iter()
        .find(|b| b.contains("new job-type"))
        .expect("README has the marked `new job-type` block");
    let (stdout, dir) = run_block(block);
    let work = dir.path().join("work");
    assert!(stdout.contains("Created job type word-count"), "{stdout}");
    assert!(stdout.contains("\"status\": \"SUCCEEDED\""), "{stdout}");
    assert!(
        stdout.contains("\"words\": 9"),
        "the sample's nine words: {stdout}"
    );
    assert!(
        stdout.contains("summary.txt"),
        "the step's inline file: {stdout}"
    );
    assert!(work.join("jobtypes/word-count/jobtype.json").is_file());
}

/// The question-and-answer flow README shows: a demo job asks, `answer` answers once it
/// asked, the job finishes with the answer in its result.
#[test]
fn the_ask_the_user_commands_run_as_written() {
    let blocks = marked_blocks();
    let block = blocks
        .iter()
        .find(|b| b.contains("askFirst"))
        .expect("README has the marked askFirst block");
    let (stdout, _dir) = run_block(block);
    assert!(stdout.contains("\"answer\": \"blue\""), "{stdout}");
    assert!(stdout.contains("\"status\": \"SUCCEEDED\""), "{stdout}");
}

/// The other runtimes the README names scaffold types that run too.
#[test]
fn a_scaffolded_node_type_runs_and_rust_is_refused_outside_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    let out = Command::new(BIN)
        .args([
            "new",
            "job-type",
            "node-count",
            "--runtime",
            "nodejs22.x",
            "--dir",
        ])
        .arg(&types)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = common::Server::start(
        &dir.path().join("data"),
        &["--job-types", types.to_str().unwrap()],
        None,
    );
    let api = server.client();
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(types.join("node-count/sample-input.json")).unwrap(),
    )
    .unwrap();
    let r = api.post(
        "/jobs",
        &serde_json::json!({"type": "node-count", "input": sample}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job = api.wait_terminal(
        r.body["jobId"].as_str().unwrap(),
        std::time::Duration::from_secs(60),
    );
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["words"], 9, "{job}");
    assert_eq!(job["files"][0]["name"], "summary.txt", "{job}");

    let out = Command::new(BIN)
        .args(["new", "job-type", "rusty", "--runtime", "rust", "--dir"])
        .arg(&types)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run this in longhaul's repository"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["new", "job-type", "Bad_Name"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a job type name"));
}
