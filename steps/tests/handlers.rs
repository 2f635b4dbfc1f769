//! The handlers over the in-memory adapters: each does its one status change, is safe to
//! run twice, and never moves a job backwards.

use std::sync::Arc;

use chrono::Utc;
use longhaul_jobs::memory::{MemoryBlobStore, MemoryJobStore};
use longhaul_jobs::{ExecutionStatusChange, Job, JobStatus, JobTypes};
use longhaul_steps::{StepContext, StepError, StepRegistry};
use serde_json::{Value, json};

/// The built-in job types, with the Rust input checks of this crate.
fn builtin_types() -> JobTypes {
    longhaul_steps::builtin_catalog()
        .unwrap()
        .job_types()
        .clone()
}

fn ctx() -> StepContext {
    StepContext {
        store: Arc::new(MemoryJobStore::new()),
        blobs: Arc::new(MemoryBlobStore::new()),
        types: Arc::new(builtin_types()),
        downloads: Default::default(),
        job_retention: Some(std::time::Duration::from_secs(7 * 24 * 3600)),
    }
}

async fn dispatch(ctx: &StepContext, step: &str, input: Value) -> Result<Value, StepError> {
    StepRegistry::all().run(ctx, step, input).await
}

async fn queued_job(ctx: &StepContext, input: Value) -> Job {
    let job = Job::new("alice", "demo", input, Utc::now());
    ctx.store.create(&job).await.unwrap();
    job
}

async fn status(ctx: &StepContext, id: &str) -> JobStatus {
    ctx.store.get(id).await.unwrap().unwrap().status
}

fn register_input(job_id: &str, job: Value) -> Value {
    json!({"executionName": job_id, "executionArn": format!("arn:x:{job_id}"), "job": job})
}

#[tokio::test]
async fn register_runs_the_job_and_is_safe_to_repeat() {
    let ctx = ctx();
    let job = queued_job(&ctx, json!({"steps": 2, "stepSeconds": 0})).await;
    let input = register_input(
        &job.job_id,
        json!({"jobId": job.job_id, "type": "demo", "input": job.input}),
    );
    let out = dispatch(&ctx, "register", input.clone()).await.unwrap();
    assert_eq!(out["jobId"], json!(job.job_id));
    assert_eq!(out["input"]["steps"], json!(2));
    assert_eq!(status(&ctx, &job.job_id).await, JobStatus::Running);
    let again = dispatch(&ctx, "register", input).await.unwrap();
    assert_eq!(again, out);
    let stored = ctx.store.get(&job.job_id).await.unwrap().unwrap();
    assert_eq!(
        stored.execution.arn.as_deref(),
        Some(format!("arn:x:{}", job.job_id).as_str())
    );
}

#[tokio::test]
async fn register_creates_the_record_for_a_scheduled_run_and_validates_it() {
    let ctx = ctx();
    let id = longhaul_jobs::job::new_job_id();
    let out = dispatch(
        &ctx,
        "register",
        register_input(
            &id,
            json!({"owner": "ops", "type": "demo", "input": {"steps": 1}}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out["owner"], "ops");
    assert_eq!(
        out["input"]["stepSeconds"],
        json!(1),
        "defaults filled as at startJob"
    );
    assert_eq!(status(&ctx, &id).await, JobStatus::Running);
    // Kept as long as the service keeps jobs (a scheduled job expires like any other).
    let stored = ctx.store.get(&id).await.unwrap().unwrap();
    let kept = stored.expires_at.expect("expiresAt") - stored.created_at;
    assert_eq!(kept.num_days(), 7);

    let bad = dispatch(
        &ctx,
        "register",
        register_input(
            &longhaul_jobs::job::new_job_id(),
            json!({"owner": "ops", "type": "demo", "input": {"steps": 0}}),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(bad.error, "InvalidJobInput");
    assert!(bad.cause.contains("steps"), "{}", bad.cause);
    let bad = dispatch(
        &ctx,
        "register",
        register_input(
            &longhaul_jobs::job::new_job_id(),
            json!({"type": "demo", "input": {"steps": 1}}),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(bad.error, "InvalidTaskInput", "no owner: {}", bad.cause);
}

#[tokio::test]
async fn demo_steps_report_progress_finish_and_fail_where_asked() {
    let ctx = ctx();
    let job = queued_job(&ctx, json!({"steps": 2, "stepSeconds": 0, "failAtStep": 2})).await;
    dispatch(
        &ctx,
        "register",
        register_input(&job.job_id, json!({"type": "demo", "input": job.input})),
    )
    .await
    .unwrap();
    let state = json!({"input": job.input});
    let first = dispatch(
        &ctx,
        "demo-step",
        json!({"jobId": job.job_id, "state": state}),
    )
    .await
    .unwrap();
    assert_eq!(first["step"], json!(1));
    assert_eq!(first["done"], json!(false));
    let progress = ctx.store.get(&job.job_id).await.unwrap().unwrap().progress;
    assert_eq!(
        (progress.percent, progress.message.as_str()),
        (50, "step 1 of 2")
    );
    let err = dispatch(
        &ctx,
        "demo-step",
        json!({"jobId": job.job_id, "state": {"input": job.input, "demo": first}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error, "DemoStepFailed");
    dispatch(
        &ctx,
        "mark-failed",
        json!({"jobId": job.job_id, "failure": {"Error": err.error, "Cause": err.cause}}),
    )
    .await
    .unwrap();
    let failed = ctx.store.get(&job.job_id).await.unwrap().unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "DemoStepFailed");
}

#[tokio::test]
async fn complete_is_idempotent_and_refuses_a_cancelled_job() {
    let ctx = ctx();
    let job = queued_job(&ctx, json!({"steps": 1, "stepSeconds": 0})).await;
    dispatch(
        &ctx,
        "register",
        register_input(&job.job_id, json!({"type": "demo", "input": job.input})),
    )
    .await
    .unwrap();
    let done = json!({"jobId": job.job_id, "output": {"result": {"answer": 42}, "files": []}});
    dispatch(&ctx, "complete", done.clone()).await.unwrap();
    dispatch(&ctx, "complete", done)
        .await
        .expect("a retried Complete succeeds");
    let stored = ctx.store.get(&job.job_id).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Succeeded);
    assert_eq!(stored.result, Some(json!({"answer": 42})));

    let other = queued_job(&ctx, json!({"steps": 1, "stepSeconds": 0})).await;
    ctx.store
        .transition(
            &other.job_id,
            JobStatus::Cancelled,
            Default::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    let err = dispatch(
        &ctx,
        "complete",
        json!({"jobId": other.job_id, "output": {"result": {}}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error, "JobCancelled");
    assert_eq!(status(&ctx, &other.job_id).await, JobStatus::Cancelled);
}

#[tokio::test]
async fn the_tracker_follows_ended_executions_and_ignores_late_events() {
    let ctx = ctx();
    let change = |name: &str, status: &str| ExecutionStatusChange {
        execution_arn: format!("arn:x:{name}"),
        name: name.to_string(),
        status: serde_json::from_value(json!(status)).unwrap(),
        error: Some("States.Timeout".into()),
        cause: None,
    };
    // Stopped in the console while running → CANCELLED.
    let a = queued_job(&ctx, json!({"steps": 1})).await;
    ctx.store
        .transition(
            &a.job_id,
            JobStatus::Running,
            Default::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    longhaul_steps::track_status_change(&ctx, change(&a.job_id, "ABORTED"))
        .await
        .unwrap();
    assert_eq!(status(&ctx, &a.job_id).await, JobStatus::Cancelled);
    // Timed out → TIMED_OUT; a replayed FAILED event later changes nothing.
    let b = queued_job(&ctx, json!({"steps": 1})).await;
    ctx.store
        .transition(
            &b.job_id,
            JobStatus::Running,
            Default::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    longhaul_steps::track_status_change(&ctx, change(&b.job_id, "TIMED_OUT"))
        .await
        .unwrap();
    longhaul_steps::track_status_change(&ctx, change(&b.job_id, "FAILED"))
        .await
        .unwrap();
    assert_eq!(status(&ctx, &b.job_id).await, JobStatus::TimedOut);
    // A timeout of a job still QUEUED fails it (TIMED_OUT is only legal from RUNNING).
    let c = queued_job(&ctx, json!({"steps": 1})).await;
    longhaul_steps::track_status_change(&ctx, change(&c.job_id, "TIMED_OUT"))
        .await
        .unwrap();
    assert_eq!(status(&ctx, &c.job_id).await, JobStatus::Failed);
    // SUCCEEDED events change nothing.
    let d = queued_job(&ctx, json!({"steps": 1})).await;
    longhaul_steps::track_status_change(&ctx, change(&d.job_id, "SUCCEEDED"))
        .await
        .unwrap();
    assert_eq!(status(&ctx, &d.job_id).await, JobStatus::Queued);
}

#[tokio::test]
async fn unknown_handlers_and_bad_input_are_task_errors() {
    let ctx = ctx();
    assert_eq!(
        dispatch(&ctx, "nope", json!({})).await.unwrap_err().error,
        "UnknownStep"
    );
    assert_eq!(
        dispatch(&ctx, "complete", json!({"x": 1}))
            .await
            .unwrap_err()
            .error,
        "InvalidTaskInput"
    );
}

#[tokio::test]
async fn a_merge_retried_after_it_ran_still_finds_its_partials_and_complete_clears_them() {
    let ctx = ctx();
    let csv = format!("city,amount\n{}", "Paris,3\nLyon,4\nParis,5\n".repeat(200));
    ctx.blobs
        .put("uploads/u1/sales.csv", csv.into(), "text/csv")
        .await
        .unwrap();
    let input = json!({"source": {"object": "uploads/u1/sales.csv"}, "groupBy": ["city"],
        "metrics": [{"op": "sum", "column": "amount"}], "chunkBytes": 1024});
    let job = Job::new("alice", "csv-report", input.clone(), Utc::now());
    ctx.store.create(&job).await.unwrap();
    let id = job.job_id.clone();
    dispatch(
        &ctx,
        "register",
        register_input(&id, json!({"type": "csv-report", "input": input})),
    )
    .await
    .unwrap();
    let plan = dispatch(&ctx, "csv-plan", json!({"jobId": id, "input": input}))
        .await
        .unwrap();
    let chunks = plan["chunks"].as_array().unwrap().clone();
    assert!(chunks.len() > 1, "{plan}");
    let mut partials = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let req = json!({"jobId": id, "object": plan["object"], "header": plan["header"],
            "spec": input, "chunk": chunk, "index": i, "total": chunks.len()});
        partials.push(dispatch(&ctx, "csv-aggregate", req).await.unwrap());
    }
    let merge = json!({"jobId": id, "spec": input, "partials": partials});
    let first = dispatch(&ctx, "csv-merge", merge.clone()).await.unwrap();
    // The process died before the engine recorded the Merge: it runs again.
    let again = dispatch(&ctx, "csv-merge", merge)
        .await
        .expect("a retried Merge");
    assert_eq!(first, again);
    assert_eq!(
        first["result"]["top"],
        json!([{"city": "Paris", "sum_amount": 1600}, {"city": "Lyon", "sum_amount": 800}])
    );
    let scratch: Vec<String> = serde_json::from_value(first["scratch"].clone()).unwrap();
    assert_eq!(scratch.len(), chunks.len());

    let foreign =
        json!({"jobId": id, "output": {"result": {}, "scratch": ["uploads/u1/sales.csv"]}});
    let err = dispatch(&ctx, "complete", foreign).await.unwrap_err();
    assert_eq!(err.error, "InvalidTaskInput", "{}", err.cause);
    assert!(
        ctx.blobs
            .head("uploads/u1/sales.csv")
            .await
            .unwrap()
            .is_some()
    );

    let done = json!({"jobId": id, "output": first});
    dispatch(&ctx, "complete", done.clone()).await.unwrap();
    for key in &scratch {
        assert!(
            ctx.blobs.head(key).await.unwrap().is_none(),
            "{key} is left"
        );
    }
    dispatch(&ctx, "complete", done)
        .await
        .expect("a retried Complete");
    let stored = ctx.store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Succeeded);
    assert_eq!(stored.files.len(), 2);
}
