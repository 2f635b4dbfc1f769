//! The AWS adapters on a moto server: the same port contract suite the local adapters pass,
//! plus what only these adapters do (multipart streaming, result overflow, presigned URLs
//! that S3 honours, Step Functions executions named by the job id).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use longhaul_aws::moto::MotoServer;
use longhaul_aws::{Clients, DynamoJobStore, S3BlobStore, SfnOrchestrator};
use longhaul_jobs::contract::{blob_store_contract, job_store_contract};
use longhaul_jobs::job::{Job, JobStatus, TransitionPatch};
use longhaul_jobs::ports::{BlobStore, JobStore, Orchestrator, TransitionOutcome};
use serde_json::json;

const TABLE: &str = "longhaul-jobs";
const BUCKET: &str = "longhaul-files";

struct Aws {
    _moto: MotoServer,
    clients: Clients,
    blobs: Arc<S3BlobStore>,
    store: Arc<DynamoJobStore>,
}

async fn aws() -> Aws {
    let moto = MotoServer::start();
    let clients = Clients::for_test_endpoint(&moto.url).await;
    longhaul_aws::moto::create_table_and_bucket(&clients, TABLE, BUCKET).await;
    let blobs = Arc::new(S3BlobStore::new(clients.s3.clone(), BUCKET));
    let store = Arc::new(DynamoJobStore::new(
        clients.dynamodb.clone(),
        TABLE,
        blobs.clone(),
    ));
    Aws {
        _moto: moto,
        clients,
        blobs,
        store,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_and_s3_keep_the_port_contracts() {
    let aws = aws().await;
    job_store_contract(aws.store.clone()).await;
    blob_store_contract(aws.blobs.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_writes_use_parts_and_refuse_oversized_streams() {
    let aws = aws().await;
    // 20 MiB + a tail: three parts; each byte is its offset mod 251 so misplaced parts show.
    let total = 20 * 1024 * 1024 + 12_345;
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Result<Bytes, String>> = data
        .chunks(1_000_003)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let n = aws
        .blobs
        .put_stream(
            "jobs/big/source.csv",
            Box::pin(futures::stream::iter(chunks.clone())),
            "text/csv",
            total as u64,
        )
        .await
        .unwrap();
    assert_eq!(n, Some(total as u64));
    let meta = aws
        .blobs
        .head("jobs/big/source.csv")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.size_bytes, total as u64);
    assert_eq!(meta.content_type.as_deref(), Some("text/csv"));
    let start = 9 * 1024 * 1024 - 5;
    let got = aws
        .blobs
        .get("jobs/big/source.csv", Some(start as u64..start as u64 + 10))
        .await
        .unwrap();
    assert_eq!(&got[..], &data[start..start + 10]);
    assert_eq!(
        aws.blobs
            .get("jobs/big/source.csv", None)
            .await
            .unwrap()
            .len(),
        total
    );

    // One byte over: nothing is kept, and no multipart upload is left open.
    let n = aws
        .blobs
        .put_stream(
            "jobs/big/too-big.csv",
            Box::pin(futures::stream::iter(chunks)),
            "text/csv",
            total as u64 - 1,
        )
        .await
        .unwrap();
    assert_eq!(n, None);
    assert_eq!(aws.blobs.head("jobs/big/too-big.csv").await.unwrap(), None);
    let open = aws
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_results_live_in_the_bucket_not_in_the_item() {
    let aws = aws().await;
    let job = Job::new("owner-big", "demo", json!({"steps": 1}), Utc::now());
    aws.store.create(&job).await.unwrap();
    aws.store
        .transition(
            &job.job_id,
            JobStatus::Running,
            TransitionPatch::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    let rows: Vec<_> = (0..3000)
        .map(|i| json!({"group": format!("g{i}"), "count": i}))
        .collect();
    let result = json!({"top": rows});
    let out = aws
        .store
        .transition(
            &job.job_id,
            JobStatus::Succeeded,
            TransitionPatch {
                result: Some(result.clone()),
                ..Default::default()
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(out, TransitionOutcome::Applied(_)));
    // A terminal job leaves the sparse quota index.
    assert_eq!(aws.store.count_active("owner-big").await.unwrap(), 0);
    let got = aws.store.get(&job.job_id).await.unwrap().unwrap();
    assert_eq!(got.result, Some(result));
    let item = aws
        .clients
        .dynamodb
        .get_item()
        .table_name(TABLE)
        .key(
            "jobId",
            aws_sdk_dynamodb::types::AttributeValue::S(job.job_id.clone()),
        )
        .send()
        .await
        .unwrap();
    let item = item.item().unwrap();
    let doc = item["doc"].as_s().unwrap();
    assert!(doc.len() < 8 * 1024, "the item holds {} bytes", doc.len());
    let key = item["resultObject"].as_s().unwrap();
    assert!(key.starts_with(&format!("jobs/{}/", job.job_id)), "{key}");
    assert!(item.contains_key("expiresAt") || job.expires_at.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presigned_urls_work_against_s3() {
    let aws = aws().await;
    let http = reqwest::Client::new();
    let put = aws
        .blobs
        .presign_put(
            "uploads/o1/u/data.csv",
            11,
            "text/csv",
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    let r = http
        .put(&put.url)
        .header("content-type", "text/csv")
        .body("a,b\n1,2\n3,4")
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{} {}",
        r.status(),
        r.text().await.unwrap()
    );
    assert_eq!(
        aws.blobs.get("uploads/o1/u/data.csv", None).await.unwrap(),
        Bytes::from_static(b"a,b\n1,2\n3,4")
    );
    let get = aws
        .blobs
        .presign_get(
            "uploads/o1/u/data.csv",
            "résumé.csv",
            "text/csv",
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    assert!(get.url.contains("X-Amz-Expires=300"), "{}", get.url);
    let r = http.get(&get.url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cd = r
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(cd.starts_with("attachment;"), "{cd:?}");
    assert!(cd.contains("r%C3%A9sum%C3%A9.csv"), "{cd:?}");
    assert_eq!(r.text().await.unwrap(), "a,b\n1,2\n3,4");
    // (moto does not check signatures, so a tampered URL is not tested here; the URL is
    // SigV4-signed by the SDK's presigner.)
    assert!(get.url.contains("X-Amz-Signature="), "{}", get.url);
}

async fn state_machine(c: &Clients) -> String {
    let mut definition = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../statemachine/job.asl.json"
    ))
    .unwrap();
    for (var, handler) in longhaul_jobs_functions() {
        definition = definition.replace(
            &format!("${{{var}}}"),
            &format!("arn:aws:lambda:us-east-1:123456789012:function:longhaul-{handler}"),
        );
    }
    assert!(!definition.contains("${"), "every substitution is known");
    c.sfn()
        .create_state_machine()
        .name("longhaul-jobs")
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/longhaul-states")
        .send()
        .await
        .expect("Step Functions accepts statemachine/job.asl.json")
        .state_machine_arn()
        .to_string()
}

/// DefinitionSubstitutions of job.asl.json (the steps crate owns the table; this crate
/// must not depend on it, so the names are read from the definition itself).
fn longhaul_jobs_functions() -> Vec<(String, String)> {
    let definition = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../statemachine/job.asl.json"
    ))
    .unwrap();
    let mut out = Vec::new();
    for part in definition.split("${").skip(1) {
        let var = part.split('}').next().unwrap().to_string();
        let handler = var.trim_end_matches("FunctionArn").to_lowercase();
        if !out.iter().any(|(v, _): &(String, String)| v == &var) {
            out.push((var, handler));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executions_are_named_by_the_job_and_retried_starts_succeed() {
    let aws = aws().await;
    let arn = state_machine(&aws.clients).await;
    let sfn = SfnOrchestrator::new(aws.clients.sfn(), &arn);
    let job = Job::new("owner-x", "demo", json!({"steps": 2}), Utc::now());
    let first = sfn.start(&job).await.unwrap();
    assert_eq!(first.name, job.job_id);
    let exec_arn = first.arn.clone().unwrap();
    assert_eq!(exec_arn, sfn.execution_arn(&job.job_id));
    assert!(
        first
            .console_url
            .as_deref()
            .unwrap()
            .ends_with(&format!("/v2/executions/details/{exec_arn}"))
    );
    // A retried start of the same job is success with the same execution, also once the
    // execution has ended (Step Functions then answers ExecutionAlreadyExists).
    let again = sfn.start(&job).await.unwrap();
    assert_eq!(again, first);
    // Another job cannot take the name.
    let mut other = Job::new("owner-y", "demo", json!({"steps": 3}), Utc::now());
    other.job_id = job.job_id.clone();
    assert!(sfn.start(&other).await.is_err());

    sfn.stop(&first, "JobCancelled", "cancelled by its owner")
        .await
        .unwrap();
    let d = aws
        .clients
        .sfn()
        .describe_execution()
        .execution_arn(&exec_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status().as_str(), "ABORTED");
    // Stopping an ended execution is success; an unknown one is not found.
    sfn.stop(&first, "JobCancelled", "again").await.unwrap();
    assert_eq!(sfn.start(&job).await.unwrap(), first);
    let mut missing = first.clone();
    missing.arn = Some(sfn.execution_arn("0193aaaa-0000-7000-8000-000000000000"));
    assert!(matches!(
        sfn.stop(&missing, "X", "y").await,
        Err(longhaul_jobs::ports::OrchestratorError::NotFound(_))
    ));
    let events = sfn.history(&first, 0, 100).await.unwrap();
    assert!(!events.is_empty());
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let later = sfn.history(&first, events[0].id, 100).await.unwrap();
    assert_eq!(later.len(), events.len() - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_starts_with_one_key_make_one_job() {
    let aws = aws().await;
    let mut handles = Vec::new();
    for _ in 0..200 {
        let store = aws.store.clone();
        handles.push(tokio::spawn(async move {
            let mut job = Job::new("owner-race", "demo", json!({"steps": 1}), Utc::now());
            job.idempotency_key = Some("same-key".into());
            let id = job.job_id.clone();
            match store.create(&job).await.unwrap() {
                longhaul_jobs::ports::CreateOutcome::Created => id,
                longhaul_jobs::ports::CreateOutcome::IdempotencyKeyExists(j) => j.job_id,
            }
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one job for one key");
    assert_eq!(aws.store.count_active("owner-race").await.unwrap(), 1);
}

/// One SQS call in its JSON protocol (the crate has no SQS client; moto routes by the
/// signature's service).
async fn sqs(moto_url: &str, action: &str, body: serde_json::Value) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(format!("{moto_url}/"))
        .header("X-Amz-Target", format!("AmazonSQS.{action}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("moto answers SQS");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "SQS {action}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Callbacks through SendTaskSuccess/Heartbeat on moto's executing Step Functions: a Task
/// sends its token to SQS and waits; the adapter answers it; a spent or unknown token is
/// refused with the same outcome the local engine gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_answer_waiting_tasks_through_send_task_success() {
    use longhaul_jobs::ports::CallbackError;
    let moto = MotoServer::start();
    // moto runs executions only when told to.
    let r = reqwest::Client::new()
        .post(format!("{}/moto-api/config", moto.url))
        .json(&json!({"stepfunctions": {"execute_state_machine": true}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let clients = Clients::for_test_endpoint(&moto.url).await;
    let queue = sqs(&moto.url, "CreateQueue", json!({"QueueName": "approvals"})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let definition = json!({"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
        "HeartbeatSeconds": 600,
        "End": true}}});
    let sm = clients
        .sfn()
        .create_state_machine()
        .name("callbacks")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/longhaul-states")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_string();
    let exec = clients
        .sfn()
        .start_execution()
        .state_machine_arn(&sm)
        .input("{}")
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_string();
    let mut token = None;
    for _ in 0..50 {
        let got = sqs(&moto.url, "ReceiveMessage", json!({"QueueUrl": queue})).await;
        if let Some(body) = got["Messages"][0]["Body"].as_str() {
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            token = body["token"].as_str().map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(token) = token else {
        let d = clients
            .sfn()
            .describe_execution()
            .execution_arn(&exec)
            .send()
            .await
            .unwrap();
        panic!(
            "the task sent no token; the execution is {:?} ({:?}: {:?})",
            d.status(),
            d.error(),
            d.cause()
        );
    };
    let sfn = SfnOrchestrator::new(clients.sfn(), &sm);
    assert!(matches!(
        sfn.send_task_success("not-a-token", &json!(1)).await,
        Err(CallbackError::InvalidToken(_))
    ));
    sfn.send_task_heartbeat(&token).await.unwrap();
    sfn.send_task_success(&token, &json!({"approved": true}))
        .await
        .unwrap();
    let mut status = String::new();
    for _ in 0..50 {
        let d = clients
            .sfn()
            .describe_execution()
            .execution_arn(&exec)
            .send()
            .await
            .unwrap();
        status = d.status().as_str().to_string();
        if status != "RUNNING" {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(d.output().unwrap()).unwrap(),
                json!({"approved": true})
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "SUCCEEDED");
    // A spent token: moto says InvalidToken (AWS says TaskTimedOut); either is a refusal
    // the API turns into a 4xx. (moto's SendTaskFailure looks at ended executions too and
    // takes a spent token, so SendTaskSuccess is the call that tells.)
    let late = sfn.send_task_success(&token, &json!("late")).await;
    assert!(
        matches!(
            late,
            Err(CallbackError::InvalidToken(_) | CallbackError::TaskTimedOut(_))
        ),
        "{late:?}"
    );
}
