//! IAM proven, not guessed: every Rust Lambda function of template.yaml runs its AWS code
//! paths as an IAM user whose only permissions are the policy the template gives that
//! function, on a moto server that enforces IAM.
//!
//! How: moto starts without enforcement; the test creates the table, the bucket and the
//! state machine, and per function an IAM user with the function's template policy (the
//! intrinsics resolved to these resources), then turns enforcement on (moto's
//! `INITIAL_NO_AUTH_ACTION_COUNT` = 0 through its reset-auth API). Each function's code then
//! runs with its user's keys: the api Router on API Gateway events; Register, the csv-report
//! and demo steps, Complete and MarkFailed inside whole workflows (the embedded engine
//! stands in for Step Functions, each Task calling its function's code with that function's
//! keys); Complete, MarkFailed, track-status and progress also on their own.
//!
//! Proven on moto (a missing permission fails the call): S3 actions on the bucket and
//! object ARNs — HeadObject and ranged GETs as s3:GetObject, multipart uploads as
//! s3:PutObject, s3:AbortMultipartUpload, s3:DeleteObject, ListObjectsV2 as s3:ListBucket;
//! DynamoDB and Step Functions actions (moto checks them by name only).
//!
//! Checked by the evaluator in `iam/` on every request the functions sent (recorded on the
//! way to moto), where moto 5.2.5 models nothing or not what AWS does:
//! - DynamoDB and Step Functions resources (moto authorizes them on `*`): the table, its
//!   `byOwner` and `activeByOwner` indexes, the state machine, its executions;
//! - a DynamoDB transaction as AWS authorizes it, each item as its own action (PutItem,
//!   ConditionCheckItem; moto names it TransactWriteItems);
//! - conditions, which moto ignores: `s3:prefix` of every listing;
//! - a missing key: S3 answers 404 only to a caller that may s3:ListBucket with the key as
//!   `s3:prefix`, else 403 (moto always answers 404), so every 404 a function saw needs that;
//! - presigned URLs (moto 5.2.5 answers 500 to them while enforcing IAM): the api's user
//!   may do what each URL does, and a link to a file that is gone answers 404.
//!
//! And the other way: every action and resource of every policy is used by some request
//! (the Rust steps share one generated policy: by one of them), so nothing is granted that
//! no code path needs. The Python and Node steps' policy (catalog's EXTERNAL_STEP_POLICY)
//! runs user code in their own runtime; catalog/tests/template.rs checks it statically,
//! with the static forms of the rules above. Not modeled: the bucket policy (its one
//! statement denies plain http, which the SDK never sends on AWS) and the managed policies
//! SAM adds to every role (logs, X-Ray), which longhaul's code does not call.

mod iam;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use iam::policy::{Authorization, Decision, Deployment, FunctionPolicy, Policy};
use iam::record::{Recorder, authorizations, s3_authorizations};
use longhaul_aws::moto::MotoServer;
use longhaul_aws::{AwsSettings, Clients};
use longhaul_engine::{Engine, ExecutionStatus, TaskContext, TaskFailure, TaskInvoker};
use longhaul_jobs::job::{Job, JobStatus, TransitionPatch};
use longhaul_jobs::ports::BlobStore;
use longhaul_steps::{StepContext, StepRegistry};
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;
use tower::ServiceExt;

const TABLE: &str = "longhaul-jobs";
const BUCKET: &str = "longhaul-files";
/// `${AWS::StackName}`: the state machine is `${AWS::StackName}-jobs`.
const STACK: &str = "longhaul";
/// moto's account and the region of the test's clients.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const OWNER: &str = "alice";
/// Register's download limit here: a download over it has started a multipart upload.
const MAX_DOWNLOAD: u64 = 9 << 20;

/// A Rust function of the template and the IAM user it runs as.
struct Function {
    logical_id: String,
    name: String,
    policy: Policy,
    access_key_id: String,
    recorder: Recorder,
    clients: Clients,
}

struct World {
    moto: MotoServer,
    deployment: Deployment,
    settings: AwsSettings,
    /// By `LONGHAUL_FUNCTION`.
    functions: BTreeMap<String, Function>,
    /// Seeds and inspects with every permission (not audited).
    admin: Clients,
    /// The local https-less server Register downloads from.
    files_url: String,
    /// The function ARN each Task substitution resolves to.
    substitutions: BTreeMap<String, String>,
    /// A user with the api's policy less the statement that reads uploads.
    api_without_upload_reads: iam::User,
    /// Presigned URLs the api handed out (method, URL).
    presigned: std::sync::Mutex<Vec<(String, String)>>,
}

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> Yaml {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

fn credentials(user: &iam::User) -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new(
        &user.access_key_id,
        &user.secret_access_key,
        None,
        None,
        "iam-test",
    )
}

/// A CSV of `rows` rows (region, product, amount).
fn sales_csv(rows: usize) -> String {
    let mut csv = String::from("region,product,amount\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "{},p{},{}.5\n",
            ["north", "south", "east"][i % 3],
            i % 7,
            i
        ));
    }
    csv
}

/// Serves `/fetched.csv` (a small CSV) and `/huge.csv` (over [`MAX_DOWNLOAD`], streamed
/// without a length: Register finds out after its multipart upload began) on loopback.
async fn file_server() -> String {
    let small = Bytes::from(sales_csv(200));
    let huge = || {
        let chunk = Bytes::from(vec![b'x'; 64 << 10]);
        let count = (MAX_DOWNLOAD / (64 << 10)) as usize + 16;
        let chunks = std::iter::repeat_n(chunk, count).map(Ok::<_, std::convert::Infallible>);
        async move { Body::from_stream(futures::stream::iter(chunks)) }
    };
    let app = axum::Router::new()
        .route(
            "/fetched.csv",
            axum::routing::get(move || async move { small }),
        )
        .route("/huge.csv", axum::routing::get(huge));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The template's DefinitionSubstitutions, each a function ARN.
fn substitutions(t: &Yaml, d: &Deployment) -> BTreeMap<String, String> {
    let machine = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| r["Type"].as_str() == Some("AWS::Serverless::StateMachine"))
        .expect("a state machine");
    let subs = d.resolve(&machine["Properties"]["DefinitionSubstitutions"]);
    subs.as_object()
        .expect("DefinitionSubstitutions")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("an ARN").to_string()))
        .collect()
}

fn definition(subs: &BTreeMap<String, String>) -> String {
    let mut text = std::fs::read_to_string(root().join("statemachine/job.asl.json")).unwrap();
    for (var, arn) in subs {
        text = text.replace(&format!("${{{var}}}"), arn);
    }
    text
}

/// A user per function, with the function's policy (as moto can enforce it), and the
/// function's clients signing with its keys, by `LONGHAUL_FUNCTION`.
async fn users(moto_url: &str, policies: Vec<FunctionPolicy>) -> BTreeMap<String, Function> {
    let mut functions = BTreeMap::new();
    for FunctionPolicy {
        logical_id,
        name,
        policy,
    } in policies
    {
        let user = iam::create_user(moto_url, &logical_id, &policy.for_moto()).await;
        let recorder = Recorder::default();
        let clients =
            Clients::for_test_endpoint_as(moto_url, credentials(&user), recorder.http_client())
                .await;
        let f = Function {
            logical_id,
            name: name.clone(),
            policy,
            access_key_id: user.access_key_id,
            recorder,
            clients,
        };
        assert!(functions.insert(name.clone(), f).is_none(), "two {name}");
    }
    functions
}

/// moto with the deployment's resources and a user per function; IAM enforced from then on.
async fn world() -> World {
    let moto = MotoServer::start();
    let setup = Clients::for_test_endpoint(&moto.url).await;
    longhaul_aws::moto::create_table_and_bucket(&setup, TABLE, BUCKET).await;
    let t = template();
    let types: BTreeMap<String, String> = t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let kind = v["Type"].as_str().unwrap_or_default().to_string();
            (k.as_str().unwrap().to_string(), kind)
        })
        .collect();
    let mut deployment = Deployment {
        account: ACCOUNT.into(),
        region: REGION.into(),
        stack: STACK.into(),
        table: TABLE.into(),
        bucket: BUCKET.into(),
        state_machine_arn: String::new(),
        types,
    };
    let subs = substitutions(&t, &deployment);
    deployment.state_machine_arn = setup
        .sfn()
        .create_state_machine()
        .name(format!("{STACK}-jobs"))
        .definition(definition(&subs))
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/longhaul-states"))
        .send()
        .await
        .expect("moto's Step Functions accepts the workflow")
        .state_machine_arn()
        .to_string();
    let (policies, _python_and_node) = iam::policy::functions(&t, &deployment);
    let functions = users(&moto.url, policies).await;
    let api = functions.get("api").expect("an api function");
    let bucket_arn = format!("arn:aws:s3:::{BUCKET}");
    let statement = api
        .policy
        .statement_allowing("s3:GetObject", &format!("{bucket_arn}/uploads/*"))
        .expect("the api reads uploads");
    let narrowed = api
        .policy
        .without_statement("api without upload reads", statement);
    let api_without_upload_reads =
        iam::create_user(&moto.url, "api-without-upload-reads", &narrowed.for_moto()).await;
    let everything = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let admin = iam::create_user(&moto.url, "test-admin", &everything).await;
    let admin = Clients::for_test_endpoint_as(
        &moto.url,
        credentials(&admin),
        longhaul_aws::test_https_client(),
    )
    .await;
    iam::enforce_iam(&moto.url).await;
    // Enforced: the setup's keys belong to no user now.
    let setup_blobs = longhaul_aws::S3BlobStore::new(setup.s3.clone(), BUCKET);
    assert!(
        setup_blobs.head("jobs/x").await.is_err(),
        "moto must refuse keys no IAM user has"
    );
    World {
        settings: AwsSettings {
            table: TABLE.into(),
            bucket: BUCKET.into(),
            state_machine_arn: Some(deployment.state_machine_arn.clone()),
            endpoint_url: Some(moto.url.clone()),
        },
        moto,
        deployment,
        functions,
        admin,
        files_url: file_server().await,
        substitutions: subs,
        api_without_upload_reads,
        presigned: Default::default(),
    }
}

impl World {
    fn f(&self, name: &str) -> &Function {
        self.functions
            .get(name)
            .unwrap_or_else(|| panic!("template.yaml has no function {name}"))
    }

    fn admin_stores(&self) -> longhaul_lambda::Adapters {
        longhaul_lambda::adapters(&self.settings, &self.admin)
    }

    /// The step context a function's bootstrap builds (`run_step`, `run_progress`), with
    /// Register allowed to download from the test's loopback server.
    async fn context(&self, f: &Function) -> StepContext {
        let types = if f.name == longhaul_steps::REGISTER {
            longhaul_lambda::job_types(&StepRegistry::all()).unwrap()
        } else {
            longhaul_jobs::types::JobTypes::empty()
        };
        let mut ctx = longhaul_lambda::step_context(
            &self.settings,
            &f.clients,
            types,
            Some(Duration::from_secs(86_400)),
        )
        .await;
        ctx.downloads.allow_insecure = true;
        ctx.downloads.max_bytes = MAX_DOWNLOAD;
        ctx
    }

    /// Runs one function's step with that function's keys, as its bootstrap does.
    async fn step(&self, name: &str, input: Value) -> Result<Value, longhaul_steps::StepError> {
        let ctx = self.context(self.f(name)).await;
        let input = longhaul_lambda::step_input(name, input);
        StepRegistry::all().run(&ctx, name, input).await
    }

    fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.deployment
                .state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }

    async fn job(&self, id: &str) -> Job {
        self.admin_stores()
            .store
            .get(id)
            .await
            .unwrap()
            .expect("the job exists")
    }
}

/// The engine in place of Step Functions: each Task calls its function's code with that
/// function's keys.
struct AsStepFunctions {
    steps: HashMap<String, (String, StepContext)>,
    registry: StepRegistry,
    execution_prefix: String,
}

#[async_trait]
impl TaskInvoker for AsStepFunctions {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        ctx: TaskContext,
    ) -> Result<Value, TaskFailure> {
        let Some((name, step_ctx)) = self.steps.get(resource) else {
            return Err(TaskFailure::new(
                "Lambda.ResourceNotFoundException",
                format!("no function {resource}"),
            ));
        };
        let mut input = longhaul_lambda::step_input(name, input);
        // $$.Execution.Id: the ARN Step Functions gives the execution, not the engine's.
        if let Some(arn) = input.get_mut("executionArn") {
            *arn = json!(format!("{}:{}", self.execution_prefix, ctx.execution_name));
        }
        self.registry
            .run(step_ctx, name, input)
            .await
            .map_err(|e| TaskFailure::new(&e.error, e.cause))
    }
}

async fn engine(w: &World) -> (Engine, String) {
    let mut steps = HashMap::new();
    // Python and Node steps are not run here (no job of theirs is started).
    for arn in w.substitutions.values() {
        let rust = w
            .functions
            .values()
            .find(|f| &w.deployment.function_arn(&f.logical_id) == arn);
        if let Some(f) = rust {
            steps.insert(arn.clone(), (f.name.clone(), w.context(f).await));
        }
    }
    let invoker = AsStepFunctions {
        steps,
        registry: StepRegistry::all(),
        execution_prefix: w.execution_arn("").trim_end_matches(':').to_string(),
    };
    let engine = Engine::new(
        Arc::new(longhaul_engine::MemoryExecutionStore::default()),
        Arc::new(invoker),
    );
    let text = std::fs::read_to_string(root().join("statemachine/job.asl.json")).unwrap();
    let machine = longhaul_engine::StateMachine::parse(&text, &w.substitutions).unwrap();
    let arn = engine
        .create_state_machine(&format!("{STACK}-jobs"), machine)
        .await
        .unwrap();
    (engine, arn)
}

/// Runs the workflow of a job the api started, with the input Step Functions holds for it.
async fn run_workflow(w: &World, engine: &(Engine, String), job_id: &str) -> Job {
    let described = w
        .admin
        .sfn()
        .describe_execution()
        .execution_arn(w.execution_arn(job_id))
        .send()
        .await
        .expect("the api started the execution");
    let input: Value = serde_json::from_str(described.input().unwrap()).unwrap();
    let (engine, machine) = engine;
    let started = engine
        .start_execution(machine, Some(job_id), input)
        .await
        .unwrap();
    for _ in 0..600 {
        let d = engine
            .describe_execution(&started.execution_arn)
            .await
            .unwrap();
        if d.status != ExecutionStatus::Running {
            return w.job(job_id).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the workflow of {job_id} did not end in a minute")
}

/// An API Gateway REST proxy event with Cognito claims.
fn rest_event(
    method: &str,
    path: &str,
    sub: &str,
    body: Option<Value>,
    query: Option<Value>,
) -> http::Request<Body> {
    let ctx = json!({
        "accountId": ACCOUNT, "resourceId": "abc", "stage": "prod", "requestId": "r-1",
        "identity": {"sourceIp": "203.0.113.1"}, "resourcePath": "/{proxy+}", "httpMethod": method,
        "apiId": "api123", "path": format!("/prod{path}"), "protocol": "HTTP/1.1",
        "authorizer": {"claims": {"sub": sub, "email": "a@example.com", "token_use": "id"}}
    });
    let multi = query.as_ref().map(|q| {
        let m: serde_json::Map<String, Value> = q
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect();
        Value::Object(m)
    });
    let event = json!({
        "resource": "/{proxy+}", "path": format!("/prod{path}"), "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": query, "multiValueQueryStringParameters": multi,
        "pathParameters": {"proxy": path.trim_start_matches('/')}, "stageVariables": null,
        "requestContext": ctx,
        "body": body.map(|b| b.to_string()), "isBase64Encoded": false
    });
    let req = lambda_http::request::from_str(&event.to_string()).expect("a valid event");
    req.map(|b| Body::from(b.to_vec()))
}

/// The api function's Router over the AWS adapters with `clients`' keys.
fn api_router(w: &World, clients: &Clients) -> axum::Router {
    let mut config = longhaul_lambda::service_config(|_| None).unwrap();
    // The test serves downloads from loopback over http.
    config.allow_insecure_downloads = true;
    longhaul_api::router(longhaul_lambda::api_state(&w.settings, clients, config).unwrap())
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

/// The jobs of the api part, by what they are for.
struct ApiJobs {
    upload: String,
    from_ref: String,
    too_large: String,
    upload_gone: String,
    demo: String,
    demo_fails: String,
    cancelled: String,
}

async fn start(app: &axum::Router, body: Value) -> String {
    let (s, job) = call(
        app,
        rest_event("POST", "/jobs", OWNER, Some(body.clone()), None),
    )
    .await;
    assert_eq!(s, 202, "startJob {body}: {job}");
    job["jobId"].as_str().unwrap().to_string()
}

/// An upload as the client makes it: createUpload, then the file PUT to its URL (by the
/// admin here: moto cannot serve presigned URLs while it enforces IAM; the URL itself is
/// checked by the evaluator).
async fn upload(w: &World, app: &axum::Router, name: &str, csv: &str) -> String {
    let (s, up) = call(
        app,
        rest_event(
            "POST",
            "/uploads",
            OWNER,
            Some(json!({"name": name, "sizeBytes": csv.len(), "mimeType": "text/csv"})),
            None,
        ),
    )
    .await;
    assert_eq!(s, 200, "{up}");
    let object = up["object"].as_str().unwrap().to_string();
    w.presigned
        .lock()
        .unwrap()
        .push(("PUT".into(), up["uploadUrl"].as_str().unwrap().to_string()));
    w.admin_stores()
        .blobs
        .put(&object, Bytes::from(csv.to_string()), "text/csv")
        .await
        .unwrap();
    object
}

/// startJob in every form a file input takes.
async fn start_jobs(w: &World, app: &axum::Router) -> ApiJobs {
    let csv = sales_csv(300);
    let spec = |source: Value| json!({"type": "csv-report", "input": {"source": source, "groupBy": ["region"], "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"}], "chunkBytes": 2048}});
    let object = upload(w, app, "sales.csv", &csv).await;
    let upload_job = start(app, spec(json!({"object": object}))).await;

    // An upload not made yet is the client's mistake: 400, not a 500 (S3's 403).
    let prefix = longhaul_jobs::service::upload_prefix(OWNER);
    let body = spec(json!({"object": format!("{prefix}/never/sent.csv")}));
    let (s, err) = call(app, rest_event("POST", "/jobs", OWNER, Some(body), None)).await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{err}"
    );

    let mut by_ref = spec(json!({"fileRef": 0}));
    by_ref["openaiFileIdRefs"] = json!([{"name": "fetched.csv", "id": "file-1", "mime_type": "text/csv", "download_link": format!("{}/fetched.csv", w.files_url)}]);
    let from_ref = start(app, by_ref).await;
    let too_large = start(
        app,
        spec(json!({"url": format!("{}/huge.csv", w.files_url)})),
    )
    .await;
    let gone = upload(w, app, "gone.csv", &csv).await;
    let upload_gone = start(app, spec(json!({"object": gone}))).await;
    // The bucket's lifecycle rule expires uploads; this one is gone before Plan reads it.
    w.admin_stores().blobs.delete(&gone).await.unwrap();

    let demo_body =
        json!({"type": "demo", "input": {"steps": 2, "stepSeconds": 0}, "idempotencyKey": "k-1"});
    let demo = start(app, demo_body.clone()).await;
    let (s, again) = call(
        app,
        rest_event("POST", "/jobs", OWNER, Some(demo_body), None),
    )
    .await;
    assert_eq!(
        (s, again["jobId"].as_str()),
        (200, Some(demo.as_str())),
        "{again}"
    );
    let demo_fails = start(
        app,
        json!({"type": "demo", "input": {"steps": 3, "stepSeconds": 0, "failAtStep": 2}}),
    )
    .await;

    let cancelled = start(app, json!({"type": "demo", "input": {"steps": 1}})).await;
    ApiJobs {
        upload: upload_job,
        from_ref,
        too_large,
        upload_gone,
        demo,
        demo_fails,
        cancelled,
    }
}

/// The api's other calls: cancel, history, list pages, a retried start.
async fn job_calls(w: &World, app: &axum::Router, jobs: &ApiJobs) {
    let cancelled = &jobs.cancelled;
    let (s, c) = call(
        app,
        rest_event(
            "POST",
            &format!("/jobs/{cancelled}/cancel"),
            OWNER,
            None,
            None,
        ),
    )
    .await;
    assert_eq!((s, c["status"].as_str()), (200, Some("CANCELLED")), "{c}");
    let (s, h) = call(
        app,
        rest_event(
            "GET",
            &format!("/jobs/{cancelled}/history"),
            OWNER,
            None,
            None,
        ),
    )
    .await;
    assert!(s == 200 && h["events"].is_array(), "{s} {h}");

    // Pages: the cursor resumes after a job read back by id.
    let (s, page) = call(
        app,
        rest_event(
            "GET",
            "/jobs",
            OWNER,
            None,
            Some(json!({"limit": "2", "status": "QUEUED"})),
        ),
    )
    .await;
    assert_eq!(s, 200, "{page}");
    let cursor = page["nextCursor"]
        .as_str()
        .expect("more than 2 queued jobs")
        .to_string();
    let (s, next) = call(
        app,
        rest_event(
            "GET",
            "/jobs",
            OWNER,
            None,
            Some(json!({"limit": "2", "status": "QUEUED", "cursor": cursor})),
        ),
    )
    .await;
    assert!(
        s == 200 && !next["jobs"].as_array().unwrap().is_empty(),
        "{s} {next}"
    );

    // The callback routes call SendTask*: whatever moto says of this token (it takes any
    // when it runs no executions), the answer is never a refused call (a 500).
    for (answer, body) in [
        ("success", Some(json!({"approved": true}))),
        ("failure", Some(json!({"error": "Rejected"}))),
        ("heartbeat", None),
    ] {
        let (s, r) = call(
            app,
            rest_event(
                "POST",
                &format!("/task-tokens/iam-test-token/{answer}"),
                OWNER,
                body,
                None,
            ),
        )
        .await;
        assert!(s == 200 || s == 404, "{answer}: {s} {r}");
    }

    // A start retried after its execution ended: DescribeExecution says it is this job's.
    let orchestrator = longhaul_aws::SfnOrchestrator::new(
        w.f("api").clients.sfn(),
        w.deployment.state_machine_arn.clone(),
    );
    let record = w.job(cancelled).await;
    longhaul_jobs::ports::Orchestrator::start(&orchestrator, &record)
        .await
        .expect("the same execution");
}

/// The api's jobs run through the workflow, each step with its own function's keys.
async fn workflows(w: &World, app: &axum::Router, jobs: &ApiJobs) {
    let engine = engine(w).await;
    let done = run_workflow(w, &engine, &jobs.upload).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.result.as_ref().unwrap()["rowsRead"], 300);
    // Complete deleted the partials once SUCCEEDED was recorded.
    let partials = w
        .admin_stores()
        .blobs
        .list(&format!("jobs/{}/partials/", jobs.upload), 10)
        .await
        .unwrap();
    assert!(partials.is_empty(), "{partials:?}");
    let (s, got) = call(
        app,
        rest_event("GET", &format!("/jobs/{}", jobs.upload), OWNER, None, None),
    )
    .await;
    assert_eq!(s, 200, "{got}");
    let files = got["files"].as_array().expect("files");
    assert_eq!(files.len(), 2, "{got}");
    for f in files {
        let url = f["url"].as_str().expect("a link").to_string();
        w.presigned.lock().unwrap().push(("GET".into(), url));
    }

    let fetched = run_workflow(w, &engine, &jobs.from_ref).await;
    assert_eq!(fetched.status, JobStatus::Succeeded, "{:?}", fetched.error);
    assert_eq!(fetched.result.as_ref().unwrap()["rowsRead"], 200);

    let too_large = run_workflow(w, &engine, &jobs.too_large).await;
    assert_eq!(too_large.status, JobStatus::Failed);
    assert_eq!(too_large.error.as_ref().unwrap().code, "DownloadTooLarge");
    let left = w
        .admin_stores()
        .blobs
        .head(&format!("jobs/{}/input/source/huge.csv", jobs.too_large))
        .await
        .unwrap();
    assert!(left.is_none(), "the aborted upload left no object");

    let gone = run_workflow(w, &engine, &jobs.upload_gone).await;
    assert_eq!(gone.status, JobStatus::Failed);
    assert_eq!(
        gone.error.as_ref().unwrap().code,
        "InputNotFound",
        "{:?}",
        gone.error
    );

    let demo = run_workflow(w, &engine, &jobs.demo).await;
    assert_eq!(demo.status, JobStatus::Succeeded, "{:?}", demo.error);
    let fails = run_workflow(w, &engine, &jobs.demo_fails).await;
    assert_eq!(fails.status, JobStatus::Failed);
    assert_eq!(fails.error.as_ref().unwrap().code, "DemoStepFailed");
}

/// A result larger than the item keeps: 40 KB of JSON.
fn big_result() -> Value {
    json!({"rows": (0..2000).map(|i| format!("row {i:05} of the result")).collect::<Vec<_>>()})
}

/// A job Register creates, as for a schedule's execution (no record before).
async fn registered(w: &World, owner: &str) -> String {
    let id = longhaul_jobs::job::new_job_id();
    let out = w
        .step(
            "register",
            json!({"executionName": id, "executionArn": w.execution_arn(&id),
                   "job": {"type": "demo", "owner": owner, "input": {"steps": 1}}}),
        )
        .await
        .expect("Register creates the job");
    assert_eq!(out["jobId"], json!(id));
    assert_eq!(w.job(&id).await.status, JobStatus::Running);
    id
}

/// Complete on its own: a result too large to show (result.json), an inline file, a named
/// object that is missing, the output prefix listed, the scratch deleted.
async fn complete_alone(w: &World, app: &axum::Router) {
    let id = registered(w, OWNER).await;
    let notes = json!({"name": "notes.txt", "contentBase64": "aGVsbG8="});
    let missing =
        json!({"name": "missing.bin", "object": format!("jobs/{id}/output/sub/missing.bin")});
    let err = w
        .step(
            "complete",
            json!({"jobId": id, "output": {"result": big_result(), "files": [notes, missing]}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error, "InvalidOutput", "{err}");
    assert!(err.cause.contains("does not exist"), "{err}");
    // What the steps wrote: a file under the output prefix, a scratch object.
    let blobs = w.admin_stores().blobs;
    let extra = format!("jobs/{id}/output/extra.txt");
    let scratch = format!("jobs/{id}/scratch/tmp.json");
    blobs
        .put(&extra, Bytes::from_static(b"extra"), "text/plain")
        .await
        .unwrap();
    blobs
        .put(&scratch, Bytes::from_static(b"{}"), "application/json")
        .await
        .unwrap();
    let out = json!({"result": big_result(), "files": [notes], "scratch": [scratch]});
    let ack = w
        .step("complete", json!({"jobId": id, "output": out}))
        .await
        .unwrap();
    assert_eq!(ack["status"], "SUCCEEDED");
    assert!(
        blobs.head(&scratch).await.unwrap().is_none(),
        "scratch deleted"
    );
    let (s, got) = call(
        app,
        rest_event("GET", &format!("/jobs/{id}"), OWNER, None, None),
    )
    .await;
    assert_eq!(s, 200, "{got}");
    let names: BTreeSet<&str> = got["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["result.json", "notes.txt", "extra.txt"]),
        "{got}"
    );
}

/// A CloudWatch Logs subscription event carrying `lines`.
fn log_event(lines: &[String]) -> Value {
    use base64::Engine as _;
    let events: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": i.to_string(), "timestamp": 0, "message": m}))
        .collect();
    let data = json!({"messageType": "DATA_MESSAGE", "logGroup": "/aws/lambda/x", "logStream": "s", "logEvents": events});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data.to_string().as_bytes()).unwrap();
    let zipped = gz.finish().unwrap();
    json!({"awslogs": {"data": base64::engine::general_purpose::STANDARD.encode(zipped)}})
}

async fn progress(w: &World, job_id: &str, percent: u8) -> usize {
    let f = w.f("progress");
    let ctx = longhaul_lambda::step_context(
        &w.settings,
        &f.clients,
        longhaul_jobs::types::JobTypes::empty(),
        None,
    )
    .await;
    let line = format!(
        "{{\"longhaulProgress\": {{\"jobId\": \"{job_id}\", \"percent\": {percent}, \"message\": \"working\"}}}}"
    );
    longhaul_lambda::record_progress(&ctx, &log_event(&[line]))
        .await
        .expect("progress recorded")
}

fn status_event(id: &str, w: &World, status: &str) -> Value {
    json!({"version": "0", "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
           "detail": {"executionArn": w.execution_arn(id), "name": id, "status": status, "error": "E", "cause": "c"}})
}

/// progress, track-status and MarkFailed on their own.
async fn trackers(w: &World, app: &axum::Router, jobs: &ApiJobs) {
    let id = registered(w, OWNER).await;
    assert_eq!(progress(w, &id, 40).await, 1);
    let (_, got) = call(
        app,
        rest_event("GET", &format!("/jobs/{id}"), OWNER, None, None),
    )
    .await;
    assert_eq!(got["progress"]["percent"], 40, "{got}");
    let ack = w
        .step("track-status", status_event(&id, w, "TIMED_OUT"))
        .await
        .unwrap();
    assert_eq!(ack["status"], "TIMED_OUT");
    let ack = w
        .step("track-status", status_event(&jobs.cancelled, w, "ABORTED"))
        .await
        .unwrap();
    assert_eq!(ack["status"], "CANCELLED");
    let ack = w
        .step("track-status", status_event(&jobs.upload, w, "FAILED"))
        .await
        .unwrap();
    assert_eq!(ack["status"], "SUCCEEDED");
    let id = registered(w, OWNER).await;
    let ack = w
        .step(
            "mark-failed",
            json!({"jobId": id, "failure": {"Error": "States.Timeout", "Cause": "slow"}}),
        )
        .await
        .unwrap();
    assert_eq!(ack["status"], "FAILED");
}

/// The timeouts function as its bootstrap runs it: the service over its keys ends the
/// running jobs past their type's limit (here: all of them, two days on) and stops their
/// executions.
async fn timeouts(w: &World) {
    let id = registered(w, OWNER).await;
    let f = w.f("timeouts");
    let config = longhaul_lambda::service_config(|_| None).unwrap();
    let service = longhaul_lambda::api_state(&w.settings, &f.clients, config)
        .unwrap()
        .service;
    let later = chrono::Utc::now() + chrono::Duration::days(3);
    let ended = service
        .time_out_overdue(later)
        .await
        .expect("the timeouts function runs");
    assert!(ended >= 1, "{ended}");
    assert_eq!(w.job(&id).await.status, JobStatus::TimedOut);
}

/// A job whose result the store keeps in the bucket (over 32 KiB): every function that
/// reads jobs reads it back from S3.
async fn spilled_result(w: &World, app: &axum::Router) {
    let admin = w.admin_stores();
    let now = chrono::Utc::now();
    let job = Job::new(OWNER, "demo", json!({"steps": 1}), now);
    let id = job.job_id.clone();
    admin.store.create(&job).await.unwrap();
    let running = TransitionPatch::default();
    admin
        .store
        .transition(&id, JobStatus::Running, running, now)
        .await
        .unwrap();
    let done = TransitionPatch {
        result: Some(big_result()),
        ..Default::default()
    };
    admin
        .store
        .transition(&id, JobStatus::Succeeded, done, now)
        .await
        .unwrap();
    let spilled = admin
        .blobs
        .list(&format!("jobs/{id}/result-"), 5)
        .await
        .unwrap();
    assert_eq!(
        spilled.len(),
        1,
        "the store spilled the result: {spilled:?}"
    );

    let (s, got) = call(
        app,
        rest_event("GET", &format!("/jobs/{id}"), OWNER, None, None),
    )
    .await;
    assert_eq!(
        (s, got["status"].as_str()),
        (200, Some("SUCCEEDED")),
        "{got}"
    );
    let ack = w
        .step(
            "mark-failed",
            json!({"jobId": id, "failure": {"Error": "Late"}}),
        )
        .await
        .unwrap();
    assert_eq!(ack["status"], "SUCCEEDED");
    let ack = w
        .step("track-status", status_event(&id, w, "FAILED"))
        .await
        .unwrap();
    assert_eq!(ack["status"], "SUCCEEDED");
    assert_eq!(progress(w, &id, 50).await, 1);
    let register = json!({"executionName": id, "job": {"type": "demo", "input": {"steps": 1}}});
    assert_eq!(
        w.step("register", register).await.unwrap_err().error,
        "JobNotRunning"
    );
    let step = json!({"jobId": id, "state": {"input": {"steps": 1}}});
    assert_eq!(
        w.step("demo-step", step).await.unwrap_err().error,
        "JobNotRunning"
    );
    let ack = w
        .step("complete", json!({"jobId": id, "output": {"result": {}}}))
        .await
        .unwrap();
    assert_eq!(ack["status"], "SUCCEEDED");
}

/// Calls outside a function's policy fail on moto, and the evaluator refuses what moto
/// does not check; a policy missing one statement fails the api's own calls.
async fn refusals(w: &World, jobs: &ApiJobs) {
    let register = w.f("register");
    let api = w.f("api");
    let before = [register.recorder.len(), api.recorder.len()];
    let stores = longhaul_lambda::adapters(&w.settings, &register.clients);
    let upload_key = format!(
        "{}/x/planted.csv",
        longhaul_jobs::service::upload_prefix(OWNER)
    );
    assert!(
        stores
            .blobs
            .put(&upload_key, Bytes::from_static(b"x"), "text/csv")
            .await
            .is_err()
    );
    let api_stores = longhaul_lambda::adapters(&w.settings, &api.clients);
    let report = format!("jobs/{}/output/report.csv", jobs.upload);
    assert!(api_stores.blobs.delete(&report).await.is_err());
    for (f, n) in [register, api].into_iter().zip(before) {
        let refused: Vec<String> = f
            .recorder
            .take_after(n)
            .iter()
            .map(|c| c.describe())
            .collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].ends_with("-> 403"), "{refused:?}");
    }

    // What moto lets through and AWS would not.
    let other_table = Authorization::new(
        "dynamodb:GetItem",
        w.deployment.table_arn("another-table"),
        "another table",
    );
    assert_eq!(register.policy.decide(&other_table), Decision::ImplicitDeny);
    let bucket = format!("arn:aws:s3:::{BUCKET}");
    let whole = Authorization::new("s3:ListBucket", &bucket, "the whole bucket");
    assert_eq!(api.policy.decide(&whole), Decision::ImplicitDeny);
    let uploads =
        Authorization::new("s3:ListBucket", &bucket, "uploads").with("s3:prefix", "uploads/");
    assert_eq!(
        w.f("complete").policy.decide(&uploads),
        Decision::ImplicitDeny
    );

    // The api's policy without the statement that lets it read uploads: on moto, startJob
    // over an upload fails (500), where the template's policy gave 202 above.
    let user = &w.api_without_upload_reads;
    let recorder = Recorder::default();
    let clients =
        Clients::for_test_endpoint_as(&w.moto.url, credentials(user), recorder.http_client()).await;
    let app = api_router(w, &clients);
    let object = w.job(&jobs.upload).await.input["source"]["object"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"type": "csv-report", "input": {"source": {"object": object}, "metrics": [{"op": "count"}]}});
    let (s, err) = call(&app, rest_event("POST", "/jobs", OWNER, Some(body), None)).await;
    assert_eq!(s, 500, "{err}");
    assert!(recorder.calls().iter().any(|c| c.status == Some(403)));

    // Without its ListBucket statement, the api's startJob over an upload not made yet
    // answers 500 on AWS (S3's 403): the evaluator finds it in the api's own requests.
    let statement = api
        .policy
        .statement_allowing("s3:ListBucket", &bucket)
        .expect("the api may list");
    let narrowed = api
        .policy
        .without_statement("api without ListBucket", statement);
    let refused: Vec<Authorization> = api
        .recorder
        .calls()
        .iter()
        .flat_map(|c| authorizations(c, &w.deployment))
        .filter(|a| matches!(narrowed.decide(a), Decision::ImplicitDeny))
        .collect();
    assert!(
        refused
            .iter()
            .any(|a| a.why.contains("never/sent.csv") && a.why.contains("404")),
        "{refused:?}"
    );
}

/// The authorizations of the presigned URLs the api handed out: the signer (the api's
/// user) may do what the URL does, and a link outliving its file answers 404.
fn presigned_authorizations(w: &World) -> Vec<Authorization> {
    let api = w.f("api");
    let mut out = Vec::new();
    for (method, url) in w.presigned.lock().unwrap().iter() {
        let u = url::Url::parse(url).unwrap();
        let credential = u
            .query_pairs()
            .find(|(k, _)| k == "X-Amz-Credential")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        assert!(
            credential.starts_with(&format!("{}/", api.access_key_id)),
            "{url} is signed by the api's user"
        );
        let status = if method == "GET" {
            Some(404)
        } else {
            Some(200)
        };
        out.extend(s3_authorizations(method, url, false, status));
    }
    assert!(
        out.len() >= 4,
        "uploads and file links were checked: {out:?}"
    );
    out
}

/// Every request of every function allowed by its template policy (on moto and by the
/// evaluator), every function exercised, every grant used.
fn audit(w: &World) -> Vec<String> {
    let mut problems = Vec::new();
    let presigned = presigned_authorizations(w);
    // Functions with the same policy (the generated Rust steps) share their grants' uses.
    let mut uses: BTreeMap<String, BTreeSet<(usize, &'static str, String)>> = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<&Function>> = BTreeMap::new();
    for f in w.functions.values() {
        let key = f.policy.document().to_string();
        groups.entry(key.clone()).or_default().push(f);
        let calls = f.recorder.calls();
        if calls.is_empty() {
            problems.push(format!("{}: not exercised (no AWS request)", f.logical_id));
        }
        let mut all = Vec::new();
        for c in &calls {
            match c.status {
                Some(403) => {
                    problems.push(format!("{}: moto refused {}", f.logical_id, c.describe()))
                }
                None => problems.push(format!("{}: no answer to {}", f.logical_id, c.describe())),
                _ => {}
            }
            all.extend(authorizations(c, &w.deployment));
        }
        if f.name == "api" {
            all.extend(presigned.iter().cloned());
        }
        for a in all {
            match f.policy.decide(&a) {
                Decision::Allowed(_) => uses
                    .entry(key.clone())
                    .or_default()
                    .extend(f.policy.uses(&a)),
                refused => problems.push(format!(
                    "{}: {a} is refused by its template policy ({refused:?})",
                    f.logical_id
                )),
            }
        }
    }
    for (key, members) in groups {
        let used = uses.remove(&key).unwrap_or_default();
        for grant in members[0].policy.grants() {
            if !used.contains(&grant) {
                let ids: Vec<&str> = members.iter().map(|f| f.logical_id.as_str()).collect();
                problems.push(format!(
                    "{}: statement {} {} {} is used by no request: more than the code needs",
                    ids.join(", "),
                    grant.0,
                    grant.1,
                    grant.2
                ));
            }
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_function_runs_with_exactly_its_template_policy() {
    let w = world().await;
    let app = api_router(&w, &w.f("api").clients);
    let jobs = start_jobs(&w, &app).await;
    job_calls(&w, &app, &jobs).await;
    workflows(&w, &app, &jobs).await;
    complete_alone(&w, &app).await;
    trackers(&w, &app, &jobs).await;
    spilled_result(&w, &app).await;
    timeouts(&w).await;
    refusals(&w, &jobs).await;
    let problems = audit(&w);
    assert!(
        problems.is_empty(),
        "{} IAM problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_evaluator_follows_aws_rules() {
    let doc = json!({"Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/jobs/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
         "Condition": {"StringLike": {"s3:prefix": ["jobs/*"]}}},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/jobs/secret*"}
    ]});
    let p = Policy::parse("test", doc);
    let get = |key: &str| Authorization::new("S3:GetObject", format!("arn:aws:s3:::b/{key}"), "t");
    assert!(matches!(
        p.decide(&get("jobs/a/b.csv")),
        Decision::Allowed(_)
    ));
    assert_eq!(p.decide(&get("uploads/a")), Decision::ImplicitDeny);
    assert_eq!(p.decide(&get("jobs/secret.txt")), Decision::ExplicitDeny(2));
    let list = Authorization::new("s3:ListBucket", "arn:aws:s3:::b", "t");
    assert_eq!(
        p.decide(&list),
        Decision::ImplicitDeny,
        "no s3:prefix: the condition fails"
    );
    assert!(matches!(
        p.decide(&list.clone().with("s3:prefix", "jobs/x/")),
        Decision::Allowed(_)
    ));
    assert_eq!(
        p.decide(&list.with("s3:prefix", "uploads/")),
        Decision::ImplicitDeny
    );
    assert!(iam::policy::glob("a*c?e", "abbbcde", false));
    assert!(!iam::policy::glob("a*c?e", "abbbce", false));
    // A 404 on a read needs s3:ListBucket with the key as prefix.
    let auths = s3_authorizations("HEAD", "http://h/b/jobs/a%20b.csv", false, Some(404));
    assert_eq!(auths.len(), 2);
    assert_eq!(auths[0].resource, "arn:aws:s3:::b/jobs/a b.csv");
    assert_eq!(
        auths[1].context,
        vec![("s3:prefix".to_string(), "jobs/a b.csv".to_string())]
    );
}
