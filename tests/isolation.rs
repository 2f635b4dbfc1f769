//! Owners are isolated and secrets stay out of the logs, on a real `longhaul serve` logging at
//! debug level: another owner's ids get 404 on every route (never 403), nothing of theirs
//! shows in listJobs, their uploads cannot be used as a source, a signed file link cannot be
//! re-pointed at another file, and no bearer token or link signature is ever logged.

mod common;

use common::Server;
use serde_json::json;

const ALICE: &str = "alice-token-0123456789abcdef0123456789abcdef";
const BOB: &str = "bob-token-fedcba9876543210fedcba9876543210";

#[test]
fn owners_are_isolated_and_secrets_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{ALICE} alice\n{BOB} bob\n")).unwrap();
    let auth = format!("tokens:{}", tokens.display());
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &["--auth", &auth, "--log-format", "json"],
        Some(ALICE),
        &[("LONGHAUL_LOG", "debug")],
    );
    let alice = server.client().with_token(Some(ALICE));
    let bob = server.client().with_token(Some(BOB));

    // Alice uploads a CSV and runs a report over it: a job with files.
    let csv = "region,amount\nnorth,1\nsouth,2\nnorth,3\n";
    let up = alice.post(
        "/uploads",
        &json!({"name": "sales.csv", "sizeBytes": csv.len(), "mimeType": "text/csv"}),
    );
    assert_eq!(up.status, 200, "{}", up.text);
    let object = up.body["object"].as_str().unwrap().to_string();
    let put = alice.put_raw(
        up.body["uploadUrl"].as_str().unwrap(),
        csv.as_bytes().to_vec(),
    );
    assert!(put.status < 300, "{}", put.text);
    let start = json!({"type": "csv-report", "input": {"source": {"object": object}, "groupBy": ["region"], "metrics": [{"op": "sum", "column": "amount"}]}});
    let r = alice.post("/jobs", &start);
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["jobId"].as_str().unwrap().to_string();
    let done = alice.get(&format!("/jobs/{id}?waitSeconds=20"));
    assert_eq!(done.body["status"], "SUCCEEDED", "{}", done.text);
    let files = done.body["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 2);

    // Bob: 404 on every route that names Alice's job, the same answer as for no job at all.
    let missing = "0193aaaa-0000-7000-8000-000000000000";
    for (path, post) in [
        (format!("/jobs/{id}"), false),
        (format!("/jobs/{id}?waitSeconds=1"), false),
        (format!("/jobs/{id}/history"), false),
        (format!("/jobs/{id}/cancel"), true),
    ] {
        let theirs = if post {
            bob.post(&path, &json!({}))
        } else {
            bob.get(&path)
        };
        let none_path = path.replace(&id, missing);
        let none = if post {
            bob.post(&none_path, &json!({}))
        } else {
            bob.get(&none_path)
        };
        assert_eq!(
            (theirs.status, theirs.error_code()),
            (404, "not_found"),
            "{path}: {}",
            theirs.text
        );
        assert_eq!(
            theirs.body["error"]["message"]
                .as_str()
                .map(|m| m.replace(&id, "ID")),
            none.body["error"]["message"]
                .as_str()
                .map(|m| m.replace(missing, "ID")),
            "the not-found answer must not tell whether the job exists"
        );
    }
    let list = bob.get("/jobs");
    assert_eq!(list.body["jobs"], json!([]), "{}", list.text);
    let list = bob.get("/jobs?status=SUCCEEDED&type=csv-report");
    assert_eq!(list.body["jobs"], json!([]), "{}", list.text);
    // Bob cannot read Alice's upload through a job of his own.
    let r = bob.post("/jobs", &start);
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "{}",
        r.text
    );
    // Alice's job is untouched by Bob's cancel.
    assert_eq!(
        alice.get(&format!("/jobs/{id}")).body["status"],
        "SUCCEEDED"
    );

    // A signed link is for one file: re-pointed at the other file, it is refused.
    let csv_url = files.iter().find(|f| f["name"] == "report.csv").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, body) = alice.get_url(&csv_url);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("north"));
    let repointed = csv_url.replace("report.csv", "report.png");
    let (status, _, _) = alice.get_url(&repointed);
    assert_eq!(status, 401, "a signature covers its key");
    let elsewhere = csv_url.replace(&format!("jobs/{id}/"), "jobs/../signing.key?x=");
    let (status, _, _) = alice.get_url(&elsewhere);
    assert!(status == 401 || status == 400 || status == 404, "{status}");

    // The logs: every request is there, but no token and no link signature.
    let log = server.log();
    assert!(log.contains(&id), "the log records the requests");
    for secret in [ALICE, BOB] {
        assert!(!log.contains(secret), "a bearer token was logged");
    }
    for f in &files {
        let url = f["url"].as_str().unwrap();
        let sig = url.split("sig=").nth(1).unwrap().split('&').next().unwrap();
        assert!(sig.len() >= 32);
        assert!(!log.contains(sig), "a link signature was logged");
    }
    let up_sig = up.body["uploadUrl"]
        .as_str()
        .unwrap()
        .split("sig=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    assert!(
        !log.contains(&up_sig),
        "an upload link signature was logged"
    );
    let key = std::fs::read(dir.path().join("data/signing.key")).unwrap();
    assert!(!log.contains(&hex(&key)), "the signing key was logged");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
