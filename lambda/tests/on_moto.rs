//! The Lambda entry points' wiring on a moto server: the `api` Router over DynamoDB, S3 and
//! Step Functions driven by API Gateway REST proxy events, and the steps running
//! whole jobs against DynamoDB and S3 (the workflow interpreted by the embedded engine in
//! place of Step Functions, which moto cannot run with Rust Lambdas).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use longhaul_aws::moto::MotoServer;
use longhaul_aws::{AwsSettings, Clients};
use longhaul_catalog::Catalog;
use longhaul_jobs::service::{JobService, ServiceConfig, StartJobRequest};
use longhaul_steps::{StepContext, StepError, StepRegistry};
use serde_json::{Value, json};
use tower::ServiceExt;

const TABLE: &str = "longhaul-jobs";
const BUCKET: &str = "longhaul-files";

struct Env {
    _moto: MotoServer,
    clients: Clients,
    settings: AwsSettings,
}

impl Env {
    /// The AWS adapters and a step context over them, as the step functions build it
    /// (with the job types the bootstrap embeds).
    fn steps(&self) -> (longhaul_lambda::Adapters, StepContext) {
        let a = longhaul_lambda::adapters(&self.settings, &self.clients);
        let ctx = StepContext {
            store: a.store.clone(),
            blobs: a.blobs.clone(),
            types: Arc::new(longhaul_lambda::job_types(&StepRegistry::all()).unwrap()),
            downloads: Default::default(),
            job_retention: None,
        };
        (a, ctx)
    }
}

async fn env() -> Env {
    let moto = MotoServer::start();
    let clients = Clients::for_test_endpoint(&moto.url).await;
    longhaul_aws::moto::create_table_and_bucket(&clients, TABLE, BUCKET).await;
    let mut definition = std::fs::read_to_string(root().join("statemachine/job.asl.json")).unwrap();
    for (var, arn) in catalog()
        .substitutions(|s| format!("arn:aws:lambda:us-east-1:123456789012:function:longhaul-{s}"))
    {
        definition = definition.replace(&format!("${{{var}}}"), &arn);
    }
    let arn = clients
        .sfn()
        .create_state_machine()
        .name("longhaul-jobs")
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/longhaul-states")
        .send()
        .await
        .expect("moto's Step Functions accepts statemachine/job.asl.json")
        .state_machine_arn()
        .to_string();
    Env {
        settings: AwsSettings {
            table: TABLE.into(),
            bucket: BUCKET.into(),
            state_machine_arn: Some(arn),
            endpoint_url: Some(moto.url.clone()),
        },
        _moto: moto,
        clients,
    }
}

/// The built-in job types, as `longhaul serve` checks them.
fn catalog() -> Catalog {
    Catalog::new(
        longhaul_catalog::builtin_folders(),
        &StepRegistry::all().rust_code(),
    )
    .unwrap()
}

async fn dispatch(ctx: &StepContext, step: &str, input: Value) -> Result<Value, StepError> {
    StepRegistry::all().run(ctx, step, input).await
}

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> serde_yaml::Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

/// An API Gateway REST proxy event (stage `prod` in the path), with Cognito claims or none.
fn rest_event(
    method: &str,
    path: &str,
    sub: Option<&str>,
    body: Option<Value>,
) -> http::Request<Body> {
    let mut ctx = json!({
        "accountId": "123456789012", "resourceId": "abc", "stage": "prod", "requestId": "r-1",
        "identity": {"sourceIp": "203.0.113.1"}, "resourcePath": "/{proxy+}", "httpMethod": method,
        "apiId": "api123", "path": format!("/prod{path}"), "protocol": "HTTP/1.1"
    });
    if let Some(sub) = sub {
        ctx["authorizer"] =
            json!({"claims": {"sub": sub, "email": "a@example.com", "token_use": "id"}});
    }
    let event = json!({
        "resource": "/{proxy+}", "path": format!("/prod{path}"), "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": null, "multiValueQueryStringParameters": null,
        "pathParameters": {"proxy": path.trim_start_matches('/')}, "stageVariables": null,
        "requestContext": ctx,
        "body": body.map(|b| b.to_string()), "isBase64Encoded": false
    });
    let req = lambda_http::request::from_str(&event.to_string()).expect("a valid event");
    req.map(|b| Body::from(b.to_vec()))
}

async fn call(app: &axum::Router, req: http::Request<Body>) -> (u16, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_function_runs_jobs_on_dynamodb_and_step_functions() {
    let env = env().await;
    let state =
        longhaul_lambda::api_state(&env.settings, &env.clients, ServiceConfig::default()).unwrap();
    let app = longhaul_api::router(state);

    let (s, body) = call(
        &app,
        rest_event(
            "POST",
            "/jobs",
            None,
            Some(json!({"type": "demo", "input": {"steps": 2}})),
        ),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );

    let start = json!({"type": "demo", "input": {"steps": 2}, "idempotencyKey": "k-1"});
    let (s, job) = call(
        &app,
        rest_event("POST", "/jobs", Some("alice"), Some(start.clone())),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    let id = job["jobId"].as_str().unwrap().to_string();
    let exec_arn = job["execution"]["arn"]
        .as_str()
        .expect("execution ARN")
        .to_string();
    assert!(
        exec_arn.ends_with(&format!(":execution:longhaul-jobs:{id}")),
        "{exec_arn}"
    );
    assert!(
        job["execution"]["consoleUrl"]
            .as_str()
            .unwrap()
            .contains(&exec_arn)
    );

    // The execution exists in Step Functions, named by the job, with the job as input.
    let d = env
        .clients
        .sfn()
        .describe_execution()
        .execution_arn(&exec_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(d.name(), Some(id.as_str()));
    let input: Value = serde_json::from_str(d.input().unwrap()).unwrap();
    assert_eq!(
        (
            input["jobId"].as_str(),
            input["owner"].as_str(),
            input["type"].as_str()
        ),
        (Some(id.as_str()), Some("alice"), Some("demo"))
    );

    // Idempotent retry: the same job; other body with the key: 409.
    let (s, again) = call(
        &app,
        rest_event("POST", "/jobs", Some("alice"), Some(start)),
    )
    .await;
    assert_eq!((s, again["jobId"].as_str()), (200, Some(id.as_str())));
    let (s, body) = call(
        &app,
        rest_event(
            "POST",
            "/jobs",
            Some("alice"),
            Some(json!({"type": "demo", "input": {"steps": 3}, "idempotencyKey": "k-1"})),
        ),
    )
    .await;
    assert_eq!((s, body["error"]["code"].as_str()), (409, Some("conflict")));

    let (s, got) = call(
        &app,
        rest_event("GET", &format!("/jobs/{id}"), Some("alice"), None),
    )
    .await;
    assert_eq!((s, got["status"].as_str()), (200, Some("QUEUED")), "{got}");
    let (s, list) = call(&app, rest_event("GET", "/jobs", Some("alice"), None)).await;
    assert_eq!(s, 200);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    // Another owner sees nothing.
    let (s, _) = call(
        &app,
        rest_event("GET", &format!("/jobs/{id}"), Some("mallory"), None),
    )
    .await;
    assert_eq!(s, 404);
    let (_, list) = call(&app, rest_event("GET", "/jobs", Some("mallory"), None)).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    let (s, _) = call(
        &app,
        rest_event("POST", &format!("/jobs/{id}/cancel"), Some("mallory"), None),
    )
    .await;
    assert_eq!(s, 404);

    // An upload ticket is a presigned S3 PUT.
    let (s, up) = call(
        &app,
        rest_event(
            "POST",
            "/uploads",
            Some("alice"),
            Some(json!({"name": "data.csv", "sizeBytes": 10, "mimeType": "text/csv"})),
        ),
    )
    .await;
    assert_eq!(s, 200, "{up}");
    let url = up["uploadUrl"].as_str().unwrap();
    assert!(
        url.contains("X-Amz-Signature=") && url.contains(BUCKET),
        "{url}"
    );

    // Cancel: CANCELLED in DynamoDB, the execution ABORTED.
    let (s, cancelled) = call(
        &app,
        rest_event("POST", &format!("/jobs/{id}/cancel"), Some("alice"), None),
    )
    .await;
    assert_eq!(
        (s, cancelled["status"].as_str()),
        (200, Some("CANCELLED")),
        "{cancelled}"
    );
    let d = env
        .clients
        .sfn()
        .describe_execution()
        .execution_arn(&exec_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status().as_str(), "ABORTED");
    let (s, body) = call(
        &app,
        rest_event("POST", &format!("/jobs/{id}/cancel"), Some("alice"), None),
    )
    .await;
    assert_eq!((s, body["error"]["code"].as_str()), (409, Some("conflict")));

    let (s, hist) = call(
        &app,
        rest_event("GET", &format!("/jobs/{id}/history"), Some("alice"), None),
    )
    .await;
    assert_eq!(s, 200, "{hist}");
    assert!(hist["events"].is_array());
}

/// The steps run whole jobs against DynamoDB and S3: the same workflow, with the
/// embedded engine standing in for Step Functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_step_functions_run_jobs_against_dynamodb_and_s3() {
    let env = env().await;
    let (a, ctx) = env.steps();
    let catalog = catalog();
    let steps = Arc::new(longhaul_local::orchestrator::LocalSteps::new(
        &catalog,
        StepRegistry::all(),
        ctx.clone(),
    ));
    let machine = steps.load_definition(&catalog.workflow_text()).unwrap();
    let orchestrator = longhaul_local::orchestrator::EngineOrchestrator::with_steps(
        Arc::new(longhaul_engine::MemoryExecutionStore::default()),
        steps,
        Arc::new(longhaul_local::http_task::OutboundHttp::new(
            Default::default(),
        )),
        machine,
    )
    .await
    .unwrap();
    let _tracker = orchestrator.spawn_tracker(ctx.clone());
    let service = JobService::new(
        a.store.clone(),
        a.blobs.clone(),
        Arc::new(orchestrator),
        catalog.job_types().clone(),
        ServiceConfig::default(),
    );

    // csv-report over an upload in S3, cut into several chunks.
    let mut csv = String::from("region,product,amount\n");
    for i in 0..3000 {
        csv.push_str(&format!(
            "{},p{},{}.5\n",
            ["north", "south", "east"][i % 3],
            i % 7,
            i
        ));
    }
    let object = format!(
        "{}/u1/sales.csv",
        longhaul_jobs::service::upload_prefix("bob")
    );
    a.blobs
        .put(&object, bytes::Bytes::from(csv), "text/csv")
        .await
        .unwrap();
    let (view, _) = service
        .start("bob", serde_json::from_value::<StartJobRequest>(json!({
            "type": "csv-report",
            "input": {"source": {"object": object}, "groupBy": ["region"], "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"}], "chunkBytes": 8192}
        })).unwrap())
        .await
        .unwrap();
    let done = wait_terminal(&service, "bob", &view.job_id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["result"]["rowsRead"], 3000);
    assert_eq!(done["result"]["groups"], 3);
    let files = done["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{done}");
    for f in files {
        assert!(f["url"].as_str().unwrap().contains("X-Amz-Signature="));
    }
    let stored = a.store.get(&view.job_id).await.unwrap().unwrap();
    for f in &stored.files {
        let meta = a
            .blobs
            .head(&f.object)
            .await
            .unwrap()
            .expect("the file is in S3");
        assert_eq!(meta.size_bytes, f.size_bytes);
    }

    // A failing demo job ends FAILED with the step's error.
    let (view, _) = service
        .start(
            "bob",
            serde_json::from_value::<StartJobRequest>(
                json!({"type": "demo", "input": {"steps": 3, "stepSeconds": 0, "failAtStep": 2}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let done = wait_terminal(&service, "bob", &view.job_id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert!(done["error"]["code"].as_str().is_some(), "{done}");
}

async fn wait_terminal(service: &JobService, owner: &str, id: &str) -> Value {
    for _ in 0..60 {
        let v = service
            .get(owner, id, Duration::from_secs(2))
            .await
            .unwrap();
        let v = serde_json::to_value(&v).unwrap();
        if matches!(
            v["status"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT")
        ) {
            return v;
        }
    }
    panic!("job {id} did not finish in time");
}

/// Every Task resource of the workflow has a substitution bound to a function of
/// template.yaml; every Rust function is the one bootstrap with a `LONGHAUL_FUNCTION` the
/// bootstrap knows; Python and Node functions run their step's handler from its folder.
#[test]
fn workflow_template_and_bootstrap_agree() {
    let definition = std::fs::read_to_string(root().join("statemachine/job.asl.json")).unwrap();
    let vars: std::collections::BTreeSet<String> = definition
        .split("${")
        .skip(1)
        .map(|p| p.split('}').next().unwrap().to_string())
        .collect();
    let catalog = catalog();
    let known: std::collections::BTreeSet<String> = catalog
        .substitutions(|s| s.to_string())
        .into_keys()
        .collect();
    assert_eq!(
        vars, known,
        "job.asl.json's substitutions are the catalog's"
    );

    let registry = StepRegistry::all();
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let mut functions = std::collections::BTreeMap::new();
    for (name, r) in resources {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap().to_string();
        let runtime = r["Properties"]["Runtime"].as_str();
        if runtime.is_none() {
            // Globals: provided.al2023, the one bootstrap.
            assert_eq!(
                r["Metadata"]["BuildProperties"]["Binary"].as_str(),
                Some("longhaul-lambda"),
                "{name}"
            );
            assert_eq!(
                r["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda")
            );
            let f = r["Properties"]["Environment"]["Variables"]["LONGHAUL_FUNCTION"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no LONGHAUL_FUNCTION"));
            assert!(
                ["api", "progress", "timeouts"].contains(&f) || registry.get(f).is_some(),
                "{name}: LONGHAUL_FUNCTION {f} is not compiled in"
            );
            functions.insert(name, f.to_string());
        } else {
            assert!(r["Properties"]["CodeUri"].as_str().is_some(), "{name}");
            functions.insert(
                name,
                r["Properties"]["Handler"].as_str().unwrap().to_string(),
            );
        }
    }
    let machine = resources
        .values()
        .find(|r| r["Type"].as_str() == Some("AWS::Serverless::StateMachine"))
        .expect("a state machine in template.yaml");
    let subs = machine["Properties"]["DefinitionSubstitutions"]
        .as_mapping()
        .expect("DefinitionSubstitutions");
    let expected: Vec<(String, String)> = longhaul_catalog::BASE_STEPS
        .iter()
        .map(|(v, step)| (v.to_string(), step.to_string()))
        .chain(catalog.bindings().iter().map(|b| {
            (
                b.substitution.clone(),
                b.def.handler.clone().unwrap_or_default(),
            )
        }))
        .collect();
    assert_eq!(subs.len(), expected.len());
    for (var, step) in expected {
        let v = subs
            .get(var.as_str())
            .unwrap_or_else(|| panic!("no substitution for {var}"));
        // `!GetAtt Fn.Arn` parses as a tagged value; its text names the function.
        let text = format!("{v:?}");
        let function = functions
            .iter()
            .find(|(name, _)| text.contains(&format!("{name}.Arn")))
            .unwrap_or_else(|| panic!("{var} is not the ARN of a function: {text}"));
        assert_eq!(function.1, &step, "{var} must point at the {step} function");
    }
}

/// On DynamoDB, as in memory: a retried step and a replayed or late status-change event
/// never move a job backwards or overwrite its terminal status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_steps_and_replayed_events_never_move_a_job_backwards() {
    use longhaul_jobs::job::{Job, JobStatus};
    let env = env().await;
    let (a, ctx) = env.steps();
    let status = |id: String| {
        let store = a.store.clone();
        async move { store.get(&id).await.unwrap().unwrap().status }
    };
    let new_job = || async {
        let job = Job::new(
            "carol",
            "demo",
            json!({"steps": 1, "stepSeconds": 0}),
            chrono::Utc::now(),
        );
        a.store.create(&job).await.unwrap();
        let reg = json!({"executionName": job.job_id, "executionArn": format!("arn:x:{}", job.job_id),
                         "job": {"type": "demo", "input": job.input}});
        // Register retried: both succeed, the job is RUNNING once.
        dispatch(&ctx, "register", reg.clone()).await.unwrap();
        dispatch(&ctx, "register", reg).await.unwrap();
        job.job_id
    };
    let event = |id: &str, st: &str| json!({"executionArn": format!("arn:x:{id}"), "name": id, "status": st, "error": "X", "cause": "y"});

    // Complete retried after it wrote; then a late FAILED event and a retried MarkFailed.
    let id = new_job().await;
    let done = json!({"jobId": id, "output": {"result": {"answer": 42}, "files": []}});
    dispatch(&ctx, "complete", done.clone()).await.unwrap();
    dispatch(&ctx, "complete", done)
        .await
        .expect("a retried Complete succeeds");
    dispatch(&ctx, "track-status", event(&id, "FAILED"))
        .await
        .unwrap();
    dispatch(
        &ctx,
        "mark-failed",
        json!({"jobId": id, "failure": {"Error": "Late", "Cause": "late"}}),
    )
    .await
    .unwrap();
    assert_eq!(status(id.clone()).await, JobStatus::Succeeded);
    let stored = a.store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.result, Some(json!({"answer": 42})));

    // Stopped in the console: ABORTED delivered twice, then a late Complete is refused.
    let id = new_job().await;
    dispatch(&ctx, "track-status", event(&id, "ABORTED"))
        .await
        .unwrap();
    dispatch(&ctx, "track-status", event(&id, "ABORTED"))
        .await
        .unwrap();
    assert_eq!(status(id.clone()).await, JobStatus::Cancelled);
    let err = dispatch(
        &ctx,
        "complete",
        json!({"jobId": id, "output": {"result": {}}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error, "JobCancelled");
    assert_eq!(status(id.clone()).await, JobStatus::Cancelled);

    // Timed out, then a replayed FAILED event: stays TIMED_OUT.
    let id = new_job().await;
    dispatch(&ctx, "track-status", event(&id, "TIMED_OUT"))
        .await
        .unwrap();
    dispatch(&ctx, "track-status", event(&id, "FAILED"))
        .await
        .unwrap();
    assert_eq!(status(id).await, JobStatus::TimedOut);
}
