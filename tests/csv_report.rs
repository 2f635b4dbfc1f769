//! csv-report end to end on a real `longhaul serve`: the file goes in by upload, by URL and
//! as a ChatGPT file ref; the answer is exact and the same for any chunk size; the report
//! files download; bad columns and unsafe sources are refused before anything runs.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{BIN, Server};
use serde_json::{Value, json};

/// A CSV with quoted fields (delimiters and newlines inside), CRLF and a BOM, and the exact
/// expected sums (in cents) per region.
fn sample() -> (String, BTreeMap<String, (u64, i64)>) {
    let mut csv = String::from("\u{feff}region,product,amount\r\n");
    let mut want: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for i in 0..4000u64 {
        let region = ["north", "south", "east", "west", ""][(i % 5) as usize];
        let cents = ((i * 7919) % 10000) as i64 - 2000;
        let product = if i % 9 == 0 {
            "\"multi\nline, product\"".to_string()
        } else {
            format!("p{}", i % 13)
        };
        let sign = if cents < 0 { "-" } else { "" };
        csv.push_str(&format!(
            "{region},{product},{sign}{}.{:02}\r\n",
            cents.abs() / 100,
            cents.abs() % 100
        ));
        let e = want.entry(region.to_string()).or_insert((0, 0));
        e.0 += 1;
        e.1 += cents;
    }
    (csv, want)
}

fn cents_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.abs();
    if c % 100 == 0 {
        format!("{sign}{}", c / 100)
    } else if c % 10 == 0 {
        format!("{sign}{}.{}", c / 100, (c % 100) / 10)
    } else {
        format!("{sign}{}.{:02}", c / 100, c % 100)
    }
}

#[test]
fn upload_report_exact_for_any_chunk_size_with_files() {
    let (csv, want) = sample();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sales.csv");
    std::fs::write(&file, &csv).unwrap();
    let server = Server::start(&dir.path().join("data"), &[], None);
    let mut outputs = Vec::new();
    for chunk in [1024, 8 << 20] {
        let out_dir = dir.path().join(format!("out-{chunk}"));
        let input = json!({"groupBy": ["region"], "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"}], "sortBy": "count", "chunkBytes": chunk, "limit": 10});
        let out = Command::new(BIN)
            .args([
                "start",
                "csv-report",
                "--wait",
                "--input",
                &input.to_string(),
                "--file",
            ])
            .arg(&file)
            .arg("--out")
            .arg(&out_dir)
            .env("LONGHAUL_URL", &server.url)
            .env("LONGHAUL_TOKEN", &server.token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        let job: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(job["status"], "SUCCEEDED", "{job}");
        assert_eq!(job["result"]["rowsRead"], json!(4000));
        assert_eq!(job["result"]["groups"], json!(5));
        let top = job["result"]["top"].as_array().unwrap();
        for row in top {
            let (n, cents) = want[row["region"].as_str().unwrap()];
            assert_eq!(row["count"], json!(n), "{row}");
            let got = row["sum_amount"].as_f64().unwrap();
            assert!(
                (got - cents as f64 / 100.0).abs() < 1e-9,
                "{row} vs {cents}"
            );
        }
        assert_eq!(job["files"].as_array().unwrap().len(), 2);
        // ChatGPT takes no images there: report.png is in files only, and the message says so.
        assert_eq!(job["openaiFileResponse"].as_array().unwrap().len(), 1);
        assert!(
            job["message"]
                .as_str()
                .unwrap()
                .contains("report.png (image)"),
            "{job}"
        );
        let report = std::fs::read_to_string(out_dir.join("report.csv")).unwrap();
        assert!(report.starts_with("region,count,sum_amount\n"), "{report}");
        for (region, (n, cents)) in &want {
            assert!(
                report.contains(&format!("\n{region},{n},{}\n", cents_text(*cents)))
                    || report.ends_with(&format!("\n{region},{n},{}", cents_text(*cents))),
                "{region} in {report}"
            );
        }
        let png = std::fs::read(out_dir.join("report.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        outputs.push(report);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "the same answer for 1 KiB and 8 MiB chunks"
    );
}

fn upload(api: &common::Api, name: &str, body: &[u8]) -> String {
    let r = api.post(
        "/uploads",
        &json!({"name": name, "sizeBytes": body.len(), "mimeType": "text/csv"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let put = api.put_raw(r.body["uploadUrl"].as_str().unwrap(), body.to_vec());
    assert_eq!(put.status, 201, "{}", put.text);
    r.body["object"].as_str().unwrap().to_string()
}

#[test]
fn bad_columns_and_sources_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "alice-token-0123456789abcdef alice\nbob-token-0123456789abcdef bob\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--auth", &format!("tokens:{}", tokens.display())],
        Some("alice-token-0123456789abcdef"),
    );
    let alice = server.client();
    let bob = alice.with_token(Some("bob-token-0123456789abcdef"));
    let object = upload(&alice, "a.csv", b"region,amount\nnorth,1\n");
    let start = |api: &common::Api, input: Value| {
        api.post("/jobs", &json!({"type": "csv-report", "input": input}))
    };

    let r = start(
        &alice,
        json!({"source": {"object": object}, "groupBy": ["regoin"], "metrics": [{"op": "count"}]}),
    );
    r.assert_error(400, "bad_request", "regoin");

    let r = start(
        &bob,
        json!({"source": {"object": object}, "metrics": [{"op": "count"}]}),
    );
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "another owner's upload: {}",
        r.text
    );

    let r = start(
        &alice,
        json!({"source": {"object": format!("{object}-missing")}, "metrics": [{"op": "count"}]}),
    );
    assert_eq!(r.status, 400, "{}", r.text);

    for url in [
        "https://127.0.0.1/x.csv",
        "http://example.com/x.csv",
        "https://10.1.2.3/x.csv",
        "https://[::1]/x.csv",
        "https://169.254.169.254/latest",
        "https://localhost/x.csv",
        "ftp://example.com/x",
    ] {
        let r = start(
            &alice,
            json!({"source": {"url": url}, "metrics": [{"op": "count"}]}),
        );
        assert_eq!(
            (r.status, r.error_code()),
            (400, "bad_request"),
            "{url}: {}",
            r.text
        );
    }
    let r = start(
        &alice,
        json!({"source": {"fileRef": 0}, "metrics": [{"op": "count"}]}),
    );
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_request"),
        "no file refs: {}",
        r.text
    );
    let r = start(
        &alice,
        json!({"source": {"object": object}, "metrics": [{"op": "sum"}]}),
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("metrics[0].column"),
        "{}",
        r.text
    );
    assert_eq!(
        alice.get("/jobs").body["jobs"],
        json!([]),
        "nothing was written"
    );
}

#[test]
fn url_and_file_ref_sources_are_fetched_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Loopback downloads are allowed only with the explicit test flag.
    let server = Server::start(
        &dir.path().join("data"),
        &["--allow-insecure-downloads"],
        None,
    );
    let api = server.client();
    let object = upload(&api, "src.csv", b"kind,qty\na,1\nb,2\na,3\n");
    let first = api.post("/jobs", &json!({"type": "csv-report", "input": {"source": {"object": object}, "metrics": [{"op": "count"}], "groupBy": ["kind"]}}));
    assert_eq!(first.status, 202, "{}", first.text);
    let done = api.wait_terminal(
        first.body["jobId"].as_str().unwrap(),
        Duration::from_secs(60),
    );
    // The first job's report.csv, served by a signed link, is the next jobs' source.
    let url = done["files"][0]["url"].as_str().unwrap().to_string();

    let by_url = api.post("/jobs", &json!({"type": "csv-report", "input": {"source": {"url": url}, "metrics": [{"op": "sum", "column": "count"}]}}));
    assert_eq!(by_url.status, 202, "{}", by_url.text);
    let job = api.wait_terminal(
        by_url.body["jobId"].as_str().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["top"], json!([{"sum_count": 3}]));

    let refs = json!([{"name": "report.csv", "id": "file-abc", "mime_type": "text/csv", "download_link": url}]);
    let by_ref = api.post("/jobs", &json!({"type": "csv-report", "openaiFileIdRefs": refs, "input": {"source": {"fileRef": 0}, "groupBy": ["kind"], "metrics": [{"op": "max", "column": "count"}]}}));
    assert_eq!(by_ref.status, 202, "{}", by_ref.text);
    let job = api.wait_terminal(
        by_ref.body["jobId"].as_str().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(
        job["result"]["top"][0],
        json!({"kind": "a", "max_count": 2})
    );

    // A column missing from a file only known at run time fails the job, naming it.
    let bad = api.post("/jobs", &json!({"type": "csv-report", "input": {"source": {"url": url}, "groupBy": ["nope"], "metrics": [{"op": "count"}]}}));
    let job = api.wait_terminal(bad.body["jobId"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["error"]["code"], "UnknownColumn");
    assert!(
        job["error"]["message"].as_str().unwrap().contains("nope"),
        "{job}"
    );
}
