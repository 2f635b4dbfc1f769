//! schemathesis (pinned in scripts/requirements.txt, installed into `.venv`) against
//! `openapi.yaml` on a real `longhaul serve`: every operation, generated valid and invalid
//! requests, stateful sequences; no response may be a 5xx or differ from the spec (status
//! code, content type, headers, body schema).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;

#[test]
fn generated_requests_get_documented_answers_and_never_a_5xx() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let st = root.join(".venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/venv (scripts/test does)",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    // A quota high enough that generated startJob calls are not all 429.
    let server = Server::start(dir.path(), &["--max-active-jobs", "1000"], None);
    let report = dir.path().join("schemathesis.json");
    let out = Command::new(&st)
        .current_dir(dir.path())
        .args([
            "run",
            root.join("openapi.yaml").to_str().unwrap(),
            "--url",
            &server.url,
            "-H",
            &format!("Authorization: Bearer {}", server.token),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "150",
            "--seed",
            "20261125",
            "--workers",
            "2",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            report.to_str().unwrap(),
        ])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    // "Test cases:\n  N generated, N passed"
    let generated: usize = stdout
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(" generated, ")?;
            rest.ends_with("passed").then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no case count in:\n{stdout}"));
    assert!(
        generated >= 1000,
        "only {generated} cases generated:\n{stdout}"
    );
    assert!(
        !server.log().contains("panicked"),
        "the server panicked:\n{}",
        server.log()
    );
}
