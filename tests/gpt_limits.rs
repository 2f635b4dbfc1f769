//! A GPT's worst cases: every answer of every operation stays under ChatGPT's 100,000
//! characters, whatever the jobs hold and whatever page sizes are asked for; ChatGPT gets no
//! image, nothing over 10 MB and at most 10 links in openaiFileResponse; the served spec
//! names the public URL, so a GPT imports it by URL.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

const LIMIT: usize = 100_000;

fn write_type(dir: &Path, name: &str, jobtype: Value, workflow: Value, code: &str) {
    let t = dir.join(name);
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("jobtype.json"), jobtype.to_string()).unwrap();
    std::fs::write(t.join("workflow.asl.json"), workflow.to_string()).unwrap();
    std::fs::write(t.join("step.py"), code).unwrap();
}

/// `wide`: as many files as asked (long names), a result of the size asked, an image and a
/// file over 10 MB when asked, a long progress line, or a failure with a long message.
fn wide_type(dir: &Path) {
    write_type(
        dir,
        "wide",
        json!({
            "description": "Makes big outputs.",
            "inputSchema": {"type": "object", "properties": {
                "files": {"type": "integer", "minimum": 0}, "resultChars": {"type": "integer", "minimum": 0},
                "extras": {"type": "boolean"}, "fail": {"type": "boolean"}}},
            "steps": {"Make": {"runtime": "python3.12", "handler": "step.handler", "timeoutSeconds": 120}}
        }),
        json!({"StartAt": "Make", "States": {"Make": {"Type": "Task", "Resource": "${Make}", "End": true}}}),
        r#"
import json, os, sys
from urllib.parse import unquote, urlparse

def handler(event, context):
    params = event["input"]
    print(json.dumps({"longhaulProgress": {"percent": 50, "message": "p" * 2000}}), file=sys.stderr, flush=True)
    if params.get("fail"):
        raise ValueError("e" * 5000)
    out = unquote(urlparse(event["outputUri"]).path)
    os.makedirs(out, exist_ok=True)
    for i in range(params.get("files", 0)):
        with open(os.path.join(out, f"file-{i:03d}-" + "x" * 150 + ".txt"), "w") as f:
            f.write("data")
    if params.get("extras"):
        with open(os.path.join(out, "chart.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
        with open(os.path.join(out, "big.bin"), "wb") as f:
            f.truncate(11 * 1024 * 1024)
    rows = ["r" * 99 for _ in range(params.get("resultChars", 0) // 102)]
    return {"result": {"rows": rows}}
"#,
    );
}

/// `busy`: a Map over 400 items, each a few Pass states with bulky data: a long history.
fn busy_type(dir: &Path) {
    write_type(
        dir,
        "busy",
        json!({
            "description": "Makes a long history.",
            "inputSchema": {"type": "object"},
            "steps": {"Noop": {"runtime": "python3.12", "handler": "step.handler", "timeoutSeconds": 30}}
        }),
        json!({"StartAt": "Items", "States": {
            "Items": {"Type": "Pass", "Parameters": {"items.$": "States.ArrayRange(1, 400, 1)", "pad.$": "States.Format('{}', $.jobId)"}, "Next": "Each"},
            "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 8,
                "ItemSelector": {"n.$": "$$.Map.Item.Value", "pad.$": "$.pad"},
                "ItemProcessor": {"StartAt": "A", "States": {
                    "A": {"Type": "Pass", "Parameters": {"n.$": "$.n", "blob.$": "States.ArrayRange(1, 300, 1)"}, "Next": "B"},
                    "B": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "End": true}}},
                "ResultPath": null, "Next": "Noop"},
            "Noop": {"Type": "Task", "Resource": "${Noop}", "End": true}
        }}),
        "def handler(event, context):\n    return {\"result\": {\"ok\": True}}\n",
    );
}

fn chars(r: &common::Resp) -> usize {
    r.text.chars().count()
}

#[test]
fn no_answer_of_any_operation_passes_100000_characters() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types");
    wide_type(&types);
    busy_type(&types);
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--job-types",
            types.to_str().unwrap(),
            "--max-active-jobs",
            "500",
        ],
        None,
    );
    let api = server.client();
    let run = |input: Value| {
        let r = api.post("/jobs", &json!({"type": "wide", "input": input}));
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.body["jobId"].as_str().unwrap().to_string();
        api.wait_terminal(&id, Duration::from_secs(120));
        id
    };

    // getJob: 150 files with long names, a result of 200,000 characters (Step Functions passes
    // at most 256 KiB between states).
    let big = run(json!({"files": 150, "resultChars": 200_000, "extras": true}));
    let r = api.get(&format!("/jobs/{big}"));
    assert_eq!(r.status, 200);
    assert!(chars(&r) < LIMIT, "getJob: {} characters", chars(&r));
    assert_eq!(
        r.body["result"]["truncated"], true,
        "the result is a note: {:.2000}",
        r.text
    );
    let files = r.body["files"].as_array().unwrap();
    assert!(
        files.iter().any(|f| f["name"] == "result.json"),
        "the whole result is a file"
    );
    let message = r.body["message"].as_str().unwrap();
    assert!(message.contains("more file(s) are not listed"), "{message}");
    let openai = r.body["openaiFileResponse"].as_array().unwrap();
    assert!(openai.len() <= 10, "{}", openai.len());
    for link in openai {
        let f = files
            .iter()
            .find(|f| f["url"] == *link)
            .expect("each link is a listed file");
        assert!(
            !f["mimeType"].as_str().unwrap().starts_with("image/"),
            "{f}"
        );
        assert!(f["sizeBytes"].as_u64().unwrap() <= 10 * 1024 * 1024, "{f}");
    }
    // The inline result's file holds the whole result.
    let result_file = files.iter().find(|f| f["name"] == "result.json").unwrap();
    let (status, _, body) = api.get_url(result_file["url"].as_str().unwrap());
    assert_eq!(status, 200);
    let whole: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(whole["rows"].as_array().unwrap().len(), 200_000 / 102);

    // A job with the image and the big file among few files: they stay out of
    // openaiFileResponse, and the message names them.
    let few = run(json!({"files": 1, "extras": true}));
    let r = api.get(&format!("/jobs/{few}"));
    let openai = r.body["openaiFileResponse"].as_array().unwrap();
    assert_eq!(openai.len(), 1, "{}", r.text);
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains("chart.png (image)") && message.contains("big.bin (over 10 MB)"),
        "{message}"
    );

    // A failure with a 5,000-character message; a running job with a 2,000-character
    // progress line is clipped too.
    let failed = run(json!({"fail": true}));
    let r = api.get(&format!("/jobs/{failed}"));
    assert!(chars(&r) < 20_000, "{}", chars(&r));

    // listJobs at its largest page, over 110 jobs.
    for _ in 0..110 {
        let r = api.post("/jobs", &json!({"type": "wide", "input": {"fail": true}}));
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/jobs?limit=100&cursor={c}"),
            None => "/jobs?limit=100".to_string(),
        };
        let r = api.get(&path);
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(chars(&r) < LIMIT, "listJobs: {} characters", chars(&r));
        for j in r.body["jobs"].as_array().unwrap() {
            assert!(
                j.get("result").is_none() && j.get("files").is_none(),
                "a summary: {j}"
            );
            seen += 1;
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 113, "every job, page by page");

    // getJobHistory at its largest page, over a long history: each page fits, the pages
    // together are the whole history, in order.
    let r = api.post("/jobs", &json!({"type": "busy", "input": {}}));
    let busy = r.body["jobId"].as_str().unwrap().to_string();
    let job = api.wait_terminal(&busy, Duration::from_secs(120));
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/jobs/{busy}/history?limit=1000&cursor={c}"),
            None => format!("/jobs/{busy}/history?limit=1000"),
        };
        let r = api.get(&path);
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(chars(&r) < LIMIT, "getJobHistory: {} characters", chars(&r));
        ids.extend(
            r.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_u64().unwrap()),
        );
        pages += 1;
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(ids.len() > 2_000, "a long history: {} events", ids.len());
    assert!(pages > 2, "cut by size, not only by count: {pages} pages");
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "no event lost or repeated"
    );

    // listJobTypes.
    let r = api.get("/job-types");
    assert!(chars(&r) < LIMIT);
}

#[test]
fn the_served_spec_names_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--public-url", "https://jobs.example.com"],
        None,
    );
    let api = server.client();
    for path in ["/openapi.yaml", "/openapi.json"] {
        let (status, _, body) = api.get_url(&format!("{}{path}", server.url));
        assert_eq!(status, 200, "{path}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("https://jobs.example.com"),
            "{path}: {text:.300}"
        );
        assert!(
            !text.contains("127.0.0.1"),
            "{path} names the listen address"
        );
    }
}

/// The default data dir holds the tokens and the link-signing key: a checkout ignores it, and
/// a data dir inside a work tree that does not is named in a warning.
#[test]
fn secrets_in_the_data_dir_stay_out_of_git() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for secret in ["longhaul-data/tokens", "longhaul-data/signing.key"] {
        let ignored = std::process::Command::new("git")
            .args(["check-ignore", "-q", secret])
            .current_dir(root)
            .status()
            .unwrap();
        assert!(ignored.success(), ".gitignore covers {secret}");
    }

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    assert!(
        std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(repo)
            .status()
            .unwrap()
            .success()
    );
    let serve = |expect_warning: bool| {
        let mut child = std::process::Command::new(common::BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", "data"])
            .current_dir(repo)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until it listens, then stop it and read what it said.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0
            && !line.contains("listening")
        {
            line.clear();
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(err.contains("not ignored"), expect_warning, "{err}");
    };
    serve(true);
    std::fs::write(repo.join(".gitignore"), "/data\n").unwrap();
    serve(false);
}
