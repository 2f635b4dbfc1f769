//! JobService over the in-memory adapters: start/idempotency/quota rules, and the long poll
//! (10,000 idle waiters on a single-threaded runtime, all woken by the one write that ends
//! the job — no thread per poll, no sleeping and re-reading).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use longhaul_jobs::memory::{MemoryBlobStore, MemoryJobStore};
use longhaul_jobs::{
    CallbackError, ExecutionRef, FailTaskRequest, Job, JobService, JobStatus, JobStore, JobTypes,
    ListParams, Orchestrator, OrchestratorError, ServiceConfig, ServiceError, StartJobRequest,
    TransitionPatch,
};
use serde_json::{Value, json};

/// Records starts and callback answers; the test drives status changes itself. The task
/// token `waiting` has a task waiting, `late` one that timed out; others none.
#[derive(Default)]
struct RecordingOrchestrator {
    starts: AtomicUsize,
    stops: AtomicUsize,
    answers: std::sync::Mutex<Vec<String>>,
}

impl RecordingOrchestrator {
    fn answer(&self, token: &str, what: String) -> Result<(), CallbackError> {
        match token {
            "waiting" => {
                self.answers.lock().unwrap().push(what);
                Ok(())
            }
            "late" => Err(CallbackError::TaskTimedOut(token.into())),
            _ => Err(CallbackError::TaskDoesNotExist(token.into())),
        }
    }
}

#[async_trait]
impl Orchestrator for RecordingOrchestrator {
    async fn start(&self, job: &Job) -> Result<ExecutionRef, OrchestratorError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(ExecutionRef {
            name: job.job_id.clone(),
            arn: Some(format!("arn:test:execution:{}", job.job_id)),
            console_url: None,
        })
    }
    async fn stop(&self, _: &ExecutionRef, _: &str, _: &str) -> Result<(), OrchestratorError> {
        self.stops.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn history(
        &self,
        _: &ExecutionRef,
        _: u64,
        _: usize,
    ) -> Result<Vec<longhaul_jobs::ExecutionEvent>, OrchestratorError> {
        Ok(Vec::new())
    }
    async fn send_task_success(&self, token: &str, output: &Value) -> Result<(), CallbackError> {
        self.answer(token, format!("success {output}"))
    }
    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError> {
        self.answer(token, format!("failure {error}: {cause}"))
    }
    async fn send_task_heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        self.answer(token, "heartbeat".into())
    }
}

fn service(
    config: ServiceConfig,
) -> (
    Arc<JobService>,
    Arc<MemoryJobStore>,
    Arc<RecordingOrchestrator>,
) {
    let store = Arc::new(MemoryJobStore::new());
    let orch = Arc::new(RecordingOrchestrator::default());
    let svc = JobService::new(
        store.clone(),
        Arc::new(MemoryBlobStore::new()),
        orch.clone(),
        builtin_types(),
        config,
    );
    (Arc::new(svc), store, orch)
}

fn demo(steps: u32, key: Option<&str>) -> StartJobRequest {
    StartJobRequest {
        job_type: "demo".into(),
        input: json!({"steps": steps, "stepSeconds": 0}),
        idempotency_key: key.map(str::to_string),
        openai_file_id_refs: None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_idle_long_polls_share_one_thread_and_wake_on_the_write() {
    let (svc, store, _) = service(ServiceConfig::default());
    let (job, _) = svc.start("alice", demo(1, None)).await.unwrap();
    let id = job.job_id.clone();
    store
        .transition(
            &id,
            JobStatus::Running,
            TransitionPatch::default(),
            Utc::now(),
        )
        .await
        .unwrap();

    let mut waiters = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let svc = svc.clone();
        let id = id.clone();
        waiters.push(tokio::spawn(async move {
            svc.get("alice", &id, Duration::from_secs(20)).await
        }));
    }
    // Let every waiter reach its wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    store
        .transition(
            &id,
            JobStatus::Succeeded,
            TransitionPatch {
                result: Some(json!({"ok": true})),
                ..Default::default()
            },
            Utc::now(),
        )
        .await
        .unwrap();
    for w in waiters {
        let view = w.await.unwrap().unwrap();
        assert_eq!(view.status, JobStatus::Succeeded);
    }
    // Woken by the write, not by the 20 s deadline.
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn idempotency_same_body_same_job_other_body_conflict() {
    let (svc, _, orch) = service(ServiceConfig::default());
    let (a, created) = svc.start("alice", demo(2, Some("k1"))).await.unwrap();
    assert!(created);
    let (b, created) = svc.start("alice", demo(2, Some("k1"))).await.unwrap();
    assert!(!created);
    assert_eq!(a.job_id, b.job_id);
    let err = svc.start("alice", demo(3, Some("k1"))).await.unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)), "{err:?}");
    // Same key, other owner: an independent job.
    let (c, created) = svc.start("bob", demo(2, Some("k1"))).await.unwrap();
    assert!(created);
    assert_ne!(c.job_id, a.job_id);
    assert_eq!(orch.starts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn quota_counts_active_jobs_and_rejections_write_nothing() {
    let (svc, _, _) = service(ServiceConfig {
        max_active_jobs_per_owner: 2,
        ..ServiceConfig::default()
    });
    svc.start("alice", demo(1, None)).await.unwrap();
    svc.start("alice", demo(1, None)).await.unwrap();
    let err = svc.start("alice", demo(1, None)).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::TooManyRequests { retry_after_seconds, .. } if retry_after_seconds > 0)
    );
    let err = svc
        .start(
            "alice",
            StartJobRequest {
                input: json!({"steps": 0}),
                ..demo(1, None)
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::BadRequest(ref m) if m.contains("steps")),
        "{err:?}"
    );
    let list = svc.list("alice", &ListParams::default()).await.unwrap();
    assert_eq!(list.jobs.len(), 2);
    // Bob is not limited by Alice's jobs.
    svc.start("bob", demo(1, None)).await.unwrap();
}

#[tokio::test]
async fn cancel_wins_or_loses_cleanly_and_other_owners_see_not_found() {
    let (svc, store, orch) = service(ServiceConfig::default());
    let (job, _) = svc.start("alice", demo(1, None)).await.unwrap();
    let err = svc.cancel("bob", &job.job_id).await.unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)));
    let err = svc
        .get("bob", &job.job_id, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)));
    let view = svc.cancel("alice", &job.job_id).await.unwrap();
    assert_eq!(view.status, JobStatus::Cancelled);
    assert_eq!(orch.stops.load(Ordering::SeqCst), 1);
    let err = svc.cancel("alice", &job.job_id).await.unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)));
    // A late completion cannot overwrite the cancel.
    let out = store
        .transition(
            &job.job_id,
            JobStatus::Succeeded,
            TransitionPatch::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(out, longhaul_jobs::TransitionOutcome::Rejected(j) if j.status == JobStatus::Cancelled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_adapters_keep_the_port_contracts() {
    longhaul_jobs::contract::job_store_contract(Arc::new(MemoryJobStore::new())).await;
    longhaul_jobs::contract::blob_store_contract(Arc::new(MemoryBlobStore::new())).await;
}

/// The built-in job types from their folders (`jobtypes/*/jobtype.json`), without their
/// Rust input checks (those live in longhaul-steps).
fn builtin_types() -> JobTypes {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobtypes");
    let types = ["demo", "csv-report"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(name).join("jobtype.json")).unwrap();
            let mut def = longhaul_jobs::JobTypeDef::parse(&text).unwrap();
            def.input_check = None;
            longhaul_jobs::JobType::from_def(name, &def, None).unwrap()
        })
        .collect();
    JobTypes::new(types).unwrap()
}

/// Callback answers are checked before they reach the orchestrator, and its refusals become
/// the API's errors: unknown or spent tokens 404, timed-out tasks 409.
#[tokio::test]
async fn callback_answers_are_checked_and_mapped() {
    let (svc, _, orch) = service(ServiceConfig::default());
    svc.send_task_success("waiting", &json!({"ok": true}))
        .await
        .unwrap();
    svc.send_task_heartbeat("waiting").await.unwrap();
    let fail = FailTaskRequest {
        error: Some("Rejected".into()),
        cause: Some("no".into()),
    };
    svc.send_task_failure("waiting", &fail).await.unwrap();
    assert_eq!(
        *orch.answers.lock().unwrap(),
        ["success {\"ok\":true}", "heartbeat", "failure Rejected: no"]
    );
    let code = |r: Result<(), ServiceError>| r.unwrap_err().code();
    assert_eq!(code(svc.send_task_heartbeat("spent").await), "not_found");
    assert_eq!(code(svc.send_task_heartbeat("late").await), "conflict");
    assert_eq!(code(svc.send_task_heartbeat("").await), "bad_request");
    assert_eq!(code(svc.send_task_heartbeat("a b").await), "bad_request");
    assert_eq!(
        code(svc.send_task_heartbeat(&"t".repeat(2049)).await),
        "bad_request"
    );
    assert_eq!(
        code(
            svc.send_task_success("waiting", &json!("x".repeat(256 * 1024)))
                .await
        ),
        "payload_too_large"
    );
    let long_error = FailTaskRequest {
        error: Some("e".repeat(257)),
        cause: None,
    };
    assert_eq!(
        code(svc.send_task_failure("waiting", &long_error).await),
        "bad_request"
    );
    let long_cause = FailTaskRequest {
        error: None,
        cause: Some("c".repeat(32_769)),
    };
    assert_eq!(
        code(svc.send_task_failure("waiting", &long_cause).await),
        "bad_request"
    );
    assert_eq!(
        orch.answers.lock().unwrap().len(),
        3,
        "refused answers never reach it"
    );
}

/// A job past its type's timeoutSeconds is ended (RUNNING → TIMED_OUT, QUEUED → FAILED) and
/// its execution stopped; one within its limit, or already ended, is left alone.
#[tokio::test]
async fn jobs_past_their_types_time_limit_are_timed_out() {
    let (svc, store, orch) = service(ServiceConfig::default());
    // demo's limit is 93,600 s (jobtypes/demo/jobtype.json).
    let (running, _) = svc.start("alice", demo(1, None)).await.unwrap();
    store
        .transition(
            &running.job_id,
            JobStatus::Running,
            TransitionPatch::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    let (queued, _) = svc.start("bob", demo(1, None)).await.unwrap();
    let (done, _) = svc.start("alice", demo(1, None)).await.unwrap();
    store
        .transition(
            &done.job_id,
            JobStatus::Failed,
            TransitionPatch::default(),
            Utc::now(),
        )
        .await
        .unwrap();

    assert_eq!(
        svc.time_out_overdue(Utc::now()).await.unwrap(),
        0,
        "within the limit"
    );
    let later = Utc::now() + chrono::Duration::seconds(93_601);
    let stops_before = orch.stops.load(Ordering::SeqCst);
    assert_eq!(svc.time_out_overdue(later).await.unwrap(), 2);
    let r = store.get(&running.job_id).await.unwrap().unwrap();
    assert_eq!(r.status, JobStatus::TimedOut);
    assert_eq!(r.error.unwrap().code, "timed_out");
    assert_eq!(
        store.get(&queued.job_id).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
    assert_eq!(
        store.get(&done.job_id).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
    assert_eq!(
        orch.stops.load(Ordering::SeqCst) - stops_before,
        2,
        "both executions stopped"
    );
    assert_eq!(svc.time_out_overdue(later).await.unwrap(), 0, "once");
}
