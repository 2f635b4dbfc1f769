//! HTTP Tasks end to end: a job type folder with no code, whose workflow calls an API
//! (`arn:aws:states:::http:invoke`), run by `longhaul serve`. The API is a loopback server
//! of the test's, reachable only with `--allow-insecure-downloads` (the outbound policy URL
//! sources follow); without the flag the job fails, and nothing is sent.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

/// A loopback API: every request is recorded (request line, headers, body); `/orders`
/// answers 201 with JSON, anything else 404.
struct Api {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn start_api() -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let request = format!("{head}\r\n{}", String::from_utf8_lossy(&body));
            let found = request.starts_with("POST /orders");
            seen.lock().unwrap().push(request);
            let (status, payload) = if found {
                (
                    "201 Created",
                    json!({"orderId": "o-42", "echo": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)}),
                )
            } else {
                ("404 Not Found", json!({"message": "no such route"}))
            };
            let text = payload.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    Api { url, requests }
}

/// `DIR/types/order/`: one HTTP Task, no steps.
fn write_job_type(dir: &Path) -> PathBuf {
    let types = dir.join("types");
    let folder = types.join("order");
    std::fs::create_dir_all(&folder).unwrap();
    let def = json!({
        "description": "Places an order with the shop's API.",
        "inputSchema": {"type": "object", "properties": {
            "api": {"type": "string"}, "item": {"type": "string"}}, "required": ["api", "item"]},
        "steps": {}
    });
    let workflow = json!({
        "StartAt": "Place",
        "States": {
            "Place": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {
                    "ApiEndpoint.$": "States.Format('{}/orders', $.input.api)",
                    "Method": "POST",
                    "Authentication": {"ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/shop/0001"},
                    "Headers": {"X-Job.$": "$.jobId"},
                    "QueryParameters": {"source": "longhaul"},
                    "RequestBody": {"item.$": "$.input.item", "quantity": 2}
                },
                "Retry": [{"ErrorEquals": ["States.Http.StatusCode.503"], "MaxAttempts": 2}],
                "ResultSelector": {"order.$": "$.ResponseBody", "status.$": "$.StatusCode"},
                "ResultPath": "$.placed",
                "Next": "Done"
            },
            "Done": {"Type": "Pass", "Parameters": {"result.$": "$.placed"}, "End": true}
        }
    });
    std::fs::write(folder.join("jobtype.json"), def.to_string()).unwrap();
    std::fs::write(folder.join("workflow.asl.json"), workflow.to_string()).unwrap();
    types
}

fn order(server: &Server, api: &str) -> Value {
    let client = server.client();
    let r = client.post(
        "/jobs",
        &json!({"type": "order", "input": {"api": api, "item": "tea"}}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job = r.body["jobId"].as_str().unwrap().to_string();
    client.wait_terminal(&job, Duration::from_secs(60))
}

#[test]
fn a_job_type_calls_an_api_with_no_code() {
    let dir = tempfile::tempdir().unwrap();
    let types = write_job_type(dir.path());
    let api = start_api();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[
            "--job-types",
            types.to_str().unwrap(),
            "--allow-insecure-downloads",
        ],
        None,
        &[("LONGHAUL_HTTP_CONNECTION_SHOP", "X-Api-Key: shop-key-1")],
    );
    let done = order(&server, &api.url);
    assert_eq!(done["status"], "SUCCEEDED", "{done}\n{}", server.log());
    assert_eq!(
        done["result"],
        json!({"order": {"orderId": "o-42", "echo": {"item": "tea", "quantity": 2}}, "status": 201})
    );
    let sent = {
        let requests = api.requests.lock().unwrap();
        assert_eq!(requests.len(), 1);
        requests[0].to_ascii_lowercase()
    };
    assert!(
        sent.starts_with("post /orders?source=longhaul http/1.1"),
        "{sent}"
    );
    assert!(
        sent.contains(&format!("x-job: {}", done["jobId"].as_str().unwrap())),
        "{sent}"
    );
    assert!(
        sent.contains("x-api-key: shop-key-1"),
        "the connection's credentials: {sent}"
    );
    assert!(sent.contains("content-type: application/json"), "{sent}");

    // A status outside 2xx fails the job with the status's error name.
    let done = order(&server, &format!("{}/elsewhere", api.url));
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"]["code"], "States.Http.StatusCode.404");
}

#[test]
fn without_the_flag_private_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let types = write_job_type(dir.path());
    let api = start_api();
    let server = Server::start(
        &dir.path().join("data"),
        &["--job-types", types.to_str().unwrap()],
        None,
    );
    let done = order(&server, &api.url);
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"]["code"], "States.Permissions", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("https"), "{message}");
    assert!(api.requests.lock().unwrap().is_empty(), "nothing was sent");
}
