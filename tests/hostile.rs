//! The hostile-input catalogue: requests a careless or malicious client sends, each with the
//! status code and error code it must get, on a real `longhaul serve`. After the whole
//! catalogue nothing was written: no job, no execution, no file.

mod common;

use std::path::Path;

use common::{Api, Server};
use serde_json::{Value, json};

/// One request of the catalogue.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_string(),
        body,
        status,
        code,
    }
}

fn json_body(v: Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

fn csv_from(source: Value) -> Option<Vec<u8>> {
    json_body(
        json!({"type": "csv-report", "input": {"source": source, "metrics": [{"op": "count"}]}}),
    )
}

fn send(api: &Api, c: &Case) -> (u16, String, String) {
    let http = reqwest::blocking::Client::new();
    let url = format!("{}{}", api.url, c.path);
    let mut req = match c.method {
        "GET" => http.get(&url),
        "POST" => http.post(&url),
        "DELETE" => http.delete(&url),
        "PUT" => http.put(&url),
        other => panic!("method {other}"),
    };
    if let Some(t) = &api.token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = &c.body {
        req = req
            .header("content-type", "application/json")
            .body(b.clone());
    }
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, code, text)
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn hostile_requests_get_the_documented_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--max-upload-bytes", "1048576"], None);
    let api = server.client();
    let job = "/jobs/0193aaaa-0000-7000-8000-000000000000";

    let mut deep = String::new();
    for _ in 0..10_000 {
        deep.push('[');
    }
    for _ in 0..10_000 {
        deep.push(']');
    }
    let deep_body = format!(r#"{{"type":"demo","input":{{"steps":1,"x":{deep}}}}}"#);
    let ten_mb = format!(
        r#"{{"type":"demo","input":{{"steps":1,"pad":"{}"}}}}"#,
        "x".repeat(10 << 20)
    );
    let mut bad_utf8 = br#"{"type":"demo","input":{"steps":1,"s":""#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    bad_utf8.extend_from_slice(br#""}}"#);

    let cases = vec![
        // Malformed and mistyped bodies.
        case(
            "malformed JSON",
            "POST",
            "/jobs",
            Some(b"{not json".to_vec()),
            400,
            "bad_request",
        ),
        case(
            "empty body",
            "POST",
            "/jobs",
            Some(Vec::new()),
            400,
            "bad_request",
        ),
        case(
            "body is an array",
            "POST",
            "/jobs",
            json_body(json!([1, 2])),
            400,
            "bad_request",
        ),
        case(
            "type is a number",
            "POST",
            "/jobs",
            json_body(json!({"type": 5, "input": {}})),
            400,
            "bad_request",
        ),
        case(
            "input is a string",
            "POST",
            "/jobs",
            json_body(json!({"type": "demo", "input": "steps=1"})),
            400,
            "bad_request",
        ),
        case(
            "steps is a string",
            "POST",
            "/jobs",
            json_body(json!({"type": "demo", "input": {"steps": "3"}})),
            400,
            "bad_request",
        ),
        case(
            "unknown field",
            "POST",
            "/jobs",
            json_body(json!({"type": "demo", "input": {"steps": 1}, "priority": 9})),
            400,
            "bad_request",
        ),
        case(
            "unknown type",
            "POST",
            "/jobs",
            json_body(json!({"type": "../demo", "input": {}})),
            400,
            "bad_request",
        ),
        case(
            "huge number",
            "POST",
            "/jobs",
            Some(br#"{"type":"demo","input":{"steps":1e400}}"#.to_vec()),
            400,
            "bad_request",
        ),
        case(
            "huge integer",
            "POST",
            "/jobs",
            Some(br#"{"type":"demo","input":{"steps":123456789012345678901234567890}}"#.to_vec()),
            400,
            "bad_request",
        ),
        case(
            "negative steps",
            "POST",
            "/jobs",
            json_body(json!({"type": "demo", "input": {"steps": -1}})),
            400,
            "bad_request",
        ),
        case(
            "nesting 10,000 deep",
            "POST",
            "/jobs",
            Some(deep_body.into_bytes()),
            400,
            "bad_request",
        ),
        case(
            "10 MB body",
            "POST",
            "/jobs",
            Some(ten_mb.into_bytes()),
            413,
            "payload_too_large",
        ),
        case(
            "invalid UTF-8",
            "POST",
            "/jobs",
            Some(bad_utf8),
            400,
            "bad_request",
        ),
        case(
            "idempotency key of 10 KB",
            "POST",
            "/jobs",
            json_body(
                json!({"type": "demo", "input": {"steps": 1}, "idempotencyKey": "k".repeat(10_000)}),
            ),
            400,
            "bad_request",
        ),
        // Object keys and upload names that try to leave their place.
        case(
            "upload name with ..",
            "POST",
            "/uploads",
            json_body(json!({"name": "../../etc/passwd", "sizeBytes": 10})),
            400,
            "bad_request",
        ),
        case(
            "upload name absolute",
            "POST",
            "/uploads",
            json_body(json!({"name": "/etc/passwd", "sizeBytes": 10})),
            400,
            "bad_request",
        ),
        case(
            "upload name with a slash",
            "POST",
            "/uploads",
            json_body(json!({"name": "a/b.csv", "sizeBytes": 10})),
            400,
            "bad_request",
        ),
        case(
            "upload name with NUL",
            "POST",
            "/uploads",
            json_body(json!({"name": "a\u{0}.csv", "sizeBytes": 10})),
            400,
            "bad_request",
        ),
        case(
            "upload over the limit",
            "POST",
            "/uploads",
            json_body(json!({"name": "big.csv", "sizeBytes": 2_000_000})),
            413,
            "payload_too_large",
        ),
        case(
            "upload of 0 bytes",
            "POST",
            "/uploads",
            json_body(json!({"name": "e.csv", "sizeBytes": 0})),
            400,
            "bad_request",
        ),
        case(
            "source key with ..",
            "POST",
            "/jobs",
            csv_from(json!({"object": "uploads/../signing.key"})),
            400,
            "bad_request",
        ),
        case(
            "source key absolute",
            "POST",
            "/jobs",
            csv_from(json!({"object": "/etc/passwd"})),
            400,
            "bad_request",
        ),
        case(
            "source key of another owner",
            "POST",
            "/jobs",
            csv_from(json!({"object": "uploads/0000000000000000deadbeef/x/data.csv"})),
            400,
            "bad_request",
        ),
        // URLs that point inside the machine or its network.
        case(
            "url to loopback",
            "POST",
            "/jobs",
            csv_from(json!({"url": "https://127.0.0.1/data.csv"})),
            400,
            "bad_request",
        ),
        case(
            "url to localhost",
            "POST",
            "/jobs",
            csv_from(json!({"url": "https://localhost/data.csv"})),
            400,
            "bad_request",
        ),
        case(
            "url to IPv6 loopback",
            "POST",
            "/jobs",
            csv_from(json!({"url": "https://[::1]/data.csv"})),
            400,
            "bad_request",
        ),
        case(
            "url to a private address",
            "POST",
            "/jobs",
            csv_from(json!({"url": "https://10.1.2.3/data.csv"})),
            400,
            "bad_request",
        ),
        case(
            "url to link-local metadata",
            "POST",
            "/jobs",
            csv_from(json!({"url": "https://169.254.169.254/latest/meta-data/"})),
            400,
            "bad_request",
        ),
        case(
            "url with http",
            "POST",
            "/jobs",
            csv_from(json!({"url": "http://example.com/data.csv"})),
            400,
            "bad_request",
        ),
        case(
            "url with file scheme",
            "POST",
            "/jobs",
            csv_from(json!({"url": "file:///etc/passwd"})),
            400,
            "bad_request",
        ),
        case(
            "url with credentials",
            "POST",
            "/jobs",
            csv_from(json!({"url": "https://user:pw@127.0.0.1/x.csv"})),
            400,
            "bad_request",
        ),
        case(
            "file ref to loopback",
            "POST",
            "/jobs",
            json_body(
                json!({"type": "csv-report", "input": {"source": {"fileRef": 0}, "metrics": [{"op": "count"}]},
            "openaiFileIdRefs": [{"name": "a.csv", "id": "file-1", "mime_type": "text/csv", "download_link": "https://127.0.0.1/a.csv"}]}),
            ),
            400,
            "bad_request",
        ),
        case(
            "file ref out of range",
            "POST",
            "/jobs",
            csv_from(json!({"fileRef": 3})),
            400,
            "bad_request",
        ),
        // Query strings and paths.
        case(
            "unknown query parameter",
            "GET",
            "/jobs?color=red",
            None,
            400,
            "bad_request",
        ),
        case("limit 0", "GET", "/jobs?limit=0", None, 400, "bad_request"),
        case(
            "limit 1000",
            "GET",
            "/jobs?limit=1000",
            None,
            400,
            "bad_request",
        ),
        case(
            "forged cursor",
            "GET",
            "/jobs?cursor=AAAA%2F..%2F",
            None,
            400,
            "bad_request",
        ),
        case(
            "unknown status",
            "GET",
            "/jobs?status=DONE",
            None,
            400,
            "bad_request",
        ),
        case(
            "waitSeconds 26",
            "GET",
            &format!("{job}?waitSeconds=26"),
            None,
            400,
            "bad_request",
        ),
        case(
            "waitSeconds -1",
            "GET",
            &format!("{job}?waitSeconds=-1"),
            None,
            400,
            "bad_request",
        ),
        case(
            "waitSeconds text",
            "GET",
            &format!("{job}?waitSeconds=soon"),
            None,
            400,
            "bad_request",
        ),
        case(
            "job id traversal",
            "GET",
            "/jobs/..%2F..%2Fetc%2Fpasswd",
            None,
            404,
            "not_found",
        ),
        case(
            "job id SQL",
            "GET",
            "/jobs/1'%20OR%20'1'='1",
            None,
            404,
            "not_found",
        ),
        case(
            "history unknown param",
            "GET",
            &format!("{job}/history?all=1"),
            None,
            400,
            "bad_request",
        ),
        case(
            "cancel unknown job",
            "POST",
            &format!("{job}/cancel"),
            None,
            404,
            "not_found",
        ),
        case("unknown route", "GET", "/admin", None, 404, "not_found"),
        case(
            "method not allowed",
            "DELETE",
            "/jobs",
            None,
            405,
            "bad_request",
        ),
    ];

    let mut wrong = Vec::new();
    for c in &cases {
        let (status, code, text) = send(&api, c);
        if (status, code.as_str()) != (c.status, c.code) {
            wrong.push(format!(
                "{}: got {status} {code:?}, want {} {:?}: {}",
                c.name,
                c.status,
                c.code,
                text.chars().take(200).collect::<String>()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    // Bad tokens: never a job.
    for token in [
        "",
        "x",
        "Bearer",
        &"a".repeat(5000),
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ] {
        let (status, code, _) = send(
            &api.with_token(Some(token)),
            &case(
                "bad token",
                "POST",
                "/jobs",
                json_body(json!({"type": "demo", "input": {"steps": 1}})),
                401,
                "unauthorized",
            ),
        );
        assert_eq!(
            (status, code.as_str()),
            (401, "unauthorized"),
            "token {:?}",
            token.chars().take(20).collect::<String>()
        );
    }

    // Nothing was written: no job, no execution, no file.
    let list = api.get("/jobs");
    assert_eq!(list.body["jobs"], json!([]), "{}", list.text);
    let blobs = files_under(&data.join("blobs"));
    assert!(blobs.is_empty(), "files were written: {blobs:?}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// A client still writing a refused body must read the refusal, not "broken pipe": the server
/// reads and drops bodies up to 64 MiB before it answers (CI once saw the reset).
#[test]
fn oversized_bodies_are_answered_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[], None);
    let api = server.client();
    let big = vec![b'x'; 8 << 20];
    let upload = api.post(
        "/uploads",
        &json!({"name": "a.csv", "sizeBytes": 1024, "mimeType": "text/csv"}),
    );
    assert_eq!(upload.status, 200, "{}", upload.text);
    let url = upload.body["uploadUrl"].as_str().unwrap().to_string();
    let forged = url.replace("sig=", "sig=0");
    for round in 0..15 {
        let r = api.post_raw("/jobs", big.clone());
        assert_eq!(r.status, 413, "round {round}: {}", r.text);
        assert_eq!(r.error_code(), "payload_too_large");
        let r = api.put_raw(&url, big.clone());
        assert_eq!(r.status, 413, "round {round}: {}", r.text);
        let r = api.put_raw(&forged, big.clone());
        assert_eq!(r.status, 401, "round {round}: {}", r.text);
    }
}
