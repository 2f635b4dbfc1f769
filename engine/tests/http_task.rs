//! The HTTP Task (`arn:aws:states:::http:invoke`) over a fake [`HttpInvoker`]: the request
//! its arguments make, AWS's result shape, `States.Http.StatusCode.NNN` errors matched by
//! name in Retry and Catch, and the checks made when the definition is read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use longhaul_engine::{
    Engine, ExecutionStatus, HttpInvoker, HttpRequest, HttpResponse, MemoryExecutionStore,
    StateMachine, TaskContext, TaskFailure, TaskInvoker,
};
use serde_json::{Value, json};

/// Answers by path: `/items` 200 JSON, `/text` 200 text, `/missing` 404 JSON, `/flaky` 503
/// the first time then 200, `/down` no response at all.
#[derive(Default)]
struct FakeApi {
    requests: Mutex<Vec<HttpRequest>>,
}

#[async_trait]
impl HttpInvoker for FakeApi {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TaskFailure> {
        let path = request
            .url
            .split("://")
            .nth(1)
            .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
            .unwrap_or_default();
        let path = path.split('?').next().unwrap_or("").to_string();
        let seen = {
            let mut r = self.requests.lock().unwrap();
            r.push(request.clone());
            r.iter().filter(|q| q.url.contains(&path)).count()
        };
        let json_response = |status: u16, text: &str, body: Value| HttpResponse {
            status,
            status_text: text.into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-request-id".into(), "r-1".into()),
            ],
            body: body.to_string().into_bytes(),
        };
        match path.as_str() {
            "/items" => Ok(json_response(200, "OK", json!({"items": [1, 2]}))),
            "/text" => Ok(HttpResponse {
                status: 201,
                status_text: "Created".into(),
                headers: vec![("content-type".into(), "text/plain".into())],
                body: b"made it".to_vec(),
            }),
            "/missing" => Ok(json_response(
                404,
                "Not Found",
                json!({"message": "no such item"}),
            )),
            "/flaky" if seen == 1 => Ok(json_response(503, "Service Unavailable", json!({}))),
            "/flaky" => Ok(json_response(200, "OK", json!({"second": true}))),
            _ => Err(TaskFailure::new("States.Http.Socket", "connection refused")),
        }
    }
}

struct NoSteps;

#[async_trait]
impl TaskInvoker for NoSteps {
    async fn invoke(&self, r: &str, _: Value, _: TaskContext) -> Result<Value, TaskFailure> {
        Err(TaskFailure::new(
            "States.TaskFailed",
            format!("no step {r}"),
        ))
    }
}

const CONNECTION: &str = "arn:aws:events:us-east-1:123456789012:connection/Example/0001";

fn http_task(parameters: Value, extra: Value) -> Value {
    let mut task = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::http:invoke",
        "Parameters": parameters,
        "End": true
    });
    if let (Value::Object(t), Value::Object(e)) = (&mut task, extra) {
        t.extend(e);
    }
    task
}

fn params(path: &str) -> Value {
    json!({
        "ApiEndpoint": format!("https://api.example.com{path}"),
        "Method": "GET",
        "Authentication": {"ConnectionArn": CONNECTION}
    })
}

async fn run(api: Arc<FakeApi>, def: Value, input: Value) -> longhaul_engine::ExecutionDescription {
    let machine =
        StateMachine::parse(&def.to_string(), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let engine = Engine::with_http(
        Arc::new(MemoryExecutionStore::new()),
        Arc::new(NoSteps),
        api,
    );
    let sm = engine.create_state_machine("http", machine).await.unwrap();
    let arn = engine
        .start_execution(&sm, None, input)
        .await
        .unwrap()
        .execution_arn;
    tokio::time::timeout(Duration::from_secs(30), engine.wait_for_completion(&arn))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_get_returns_aws_result_shape() {
    let api = Arc::new(FakeApi::default());
    let def = json!({"StartAt": "Call", "States": {"Call": http_task(
        json!({
            "ApiEndpoint.$": "States.Format('https://api.example.com/{}', $.what)",
            "Method": "GET",
            "Authentication": {"ConnectionArn": CONNECTION},
            "QueryParameters": {"page.$": "$.page", "sort": "name"},
            "Headers": {"Accept": "application/json"}
        }),
        json!({"ResultSelector": {"body.$": "$.ResponseBody", "status.$": "$.StatusCode",
               "text.$": "$.StatusText", "id.$": "$.Headers['x-request-id'][0]"}}))}});
    let d = run(api.clone(), def, json!({"what": "items", "page": 2})).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(
        d.output,
        Some(json!({"body": {"items": [1, 2]}, "status": 200, "text": "OK", "id": "r-1"}))
    );
    let requests = api.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.url, "https://api.example.com/items?page=2&sort=name");
    assert_eq!(r.body, None);
    assert_eq!(r.connection_arn, CONNECTION);
    assert!(
        r.headers
            .contains(&("Accept".into(), "application/json".into()))
    );
}

#[tokio::test]
async fn a_post_sends_its_body_and_text_responses_stay_text() {
    let api = Arc::new(FakeApi::default());
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Call", "States": {"Call": {
        "Type": "Task",
        "Resource": "arn:aws:states:::http:invoke",
        "Arguments": {
            "ApiEndpoint": "https://api.example.com/text",
            "Method": "POST",
            "Authentication": {"ConnectionArn": CONNECTION},
            "RequestBody": {"name": "{% $states.input.name %}", "n": 1}
        },
        "Output": "{% $states.result %}",
        "End": true}}});
    let d = run(api.clone(), def, json!({"name": "ada"})).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    let out = d.output.unwrap();
    assert_eq!(out["ResponseBody"], json!("made it"));
    assert_eq!(out["StatusCode"], json!(201));
    assert_eq!(out["StatusText"], json!("Created"));
    assert_eq!(out["Headers"]["content-type"], json!(["text/plain"]));
    let r = api.requests.lock().unwrap()[0].clone();
    assert_eq!(r.method, "POST");
    let sent: Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
    assert_eq!(sent, json!({"name": "ada", "n": 1}));
    assert!(r.headers.contains(&(
        "Content-Type".into(),
        "application/json; charset=UTF-8".into()
    )));
}

#[tokio::test]
async fn other_statuses_fail_by_name_with_the_response_as_cause() {
    let api = Arc::new(FakeApi::default());
    let def =
        json!({"StartAt": "Call", "States": {"Call": http_task(params("/missing"), json!({}))}});
    let d = run(api, def, json!({})).await;
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.Http.StatusCode.404"));
    let cause: Value = serde_json::from_str(d.cause.as_deref().unwrap()).unwrap();
    assert_eq!(cause["StatusCode"], json!(404));
    assert_eq!(cause["StatusText"], json!("Not Found"));
    assert_eq!(cause["ResponseBody"], json!({"message": "no such item"}));
}

#[tokio::test]
async fn retry_and_catch_match_status_codes_by_name() {
    let api = Arc::new(FakeApi::default());
    let def = json!({"StartAt": "Flaky", "States": {
        "Flaky": http_task(params("/flaky"), json!({
            "Retry": [{"ErrorEquals": ["States.Http.StatusCode.503"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            "ResultSelector": {"body.$": "$.ResponseBody"},
            "ResultPath": "$.flaky",
            "End": null, "Next": "Missing"})),
        "Missing": http_task(params("/missing"), json!({
            "Catch": [{"ErrorEquals": ["States.Http.StatusCode.404"], "ResultPath": "$.error", "Next": "Gone"}],
            "End": null, "Next": "Gone"})),
        "Gone": {"Type": "Pass", "End": true}}});
    let def = strip_nulls(def);
    let d = run(api.clone(), def, json!({})).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    let out = d.output.unwrap();
    assert_eq!(out["flaky"], json!({"body": {"second": true}}));
    assert_eq!(out["error"]["Error"], json!("States.Http.StatusCode.404"));
    assert_eq!(
        api.requests.lock().unwrap().len(),
        3,
        "503, then 200, then 404"
    );
}

#[tokio::test]
async fn no_response_is_the_invokers_error_and_bad_arguments_are_runtime_errors() {
    let api = Arc::new(FakeApi::default());
    let def = json!({"StartAt": "Call", "States": {"Call": http_task(params("/down"), json!({}))}});
    let d = run(api.clone(), def, json!({})).await;
    assert_eq!(d.error.as_deref(), Some("States.Http.Socket"));

    let def = json!({"StartAt": "Call", "States": {"Call": http_task(
        json!({"ApiEndpoint": "https://api.example.com/items", "Method.$": "$.m",
               "Authentication": {"ConnectionArn": CONNECTION}}), json!({}))}});
    let d = run(api.clone(), def, json!({"m": "BREW"})).await;
    assert_eq!(d.error.as_deref(), Some("States.Runtime"));
    assert!(d.cause.unwrap().contains("Method must be one of"));
    assert_eq!(
        api.requests.lock().unwrap().len(),
        1,
        "nothing sent for bad arguments"
    );
}

#[tokio::test]
async fn an_engine_without_an_http_client_says_so() {
    let def =
        json!({"StartAt": "Call", "States": {"Call": http_task(params("/items"), json!({}))}});
    let machine = StateMachine::parse(&def.to_string(), &BTreeMap::new()).unwrap();
    assert!(
        machine.task_resources().is_empty(),
        "HTTP Tasks are the engine's, not the task invoker's"
    );
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), Arc::new(NoSteps));
    let sm = engine
        .create_state_machine("nohttp", machine)
        .await
        .unwrap();
    let arn = engine
        .start_execution(&sm, None, json!({}))
        .await
        .unwrap()
        .execution_arn;
    let d = engine.wait_for_completion(&arn).await.unwrap();
    assert_eq!(d.error.as_deref(), Some("States.Runtime"));
    assert!(d.cause.unwrap().contains("no HTTP client"));
}

#[test]
fn literal_arguments_are_validated_like_aws() {
    let cases = [
        (
            json!({"ApiEndpoint": "https://x.example", "Method": "GET"}),
            "Parameters.Authentication",
        ),
        (
            json!({"ApiEndpoint": "https://x.example", "Method": "GET",
                   "Authentication": {"ConnectionArn": CONNECTION},
                   "Headers": {"Authorization": "Bearer x"}}),
            "unsupported values: [authorization]",
        ),
        (
            json!({"ApiEndpoint": "https://x.example", "Method": "GET",
                   "Authentication": {"ConnectionArn": CONNECTION, "ApiKey": "k"}}),
            "Authentication.ApiKey is not supported",
        ),
        (
            json!({"Method": "GET", "Authentication": {"ConnectionArn": CONNECTION}}),
            "needs ApiEndpoint",
        ),
    ];
    for (p, needle) in cases {
        let def = json!({"StartAt": "Call", "States": {"Call": http_task(p.clone(), json!({}))}});
        let e = StateMachine::parse(&def.to_string(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains(needle), "{p}: {e}");
    }
    let callback = json!({"StartAt": "Call", "States": {"Call": {"Type": "Task",
        "Resource": "arn:aws:states:::http:invoke.waitForTaskToken", "Parameters": params("/x"), "End": true}}});
    let e = StateMachine::parse(&callback.to_string(), &BTreeMap::new()).unwrap_err();
    assert!(
        e.to_string().contains("only the request-response pattern"),
        "{e}"
    );
}

/// Removes null fields (the tests above use `"End": null` to swap End for Next).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}
