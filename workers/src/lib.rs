//! longhaul's workflow step handlers: plain async functions over the ports, called by the
//! embedded engine in process (`longhaul serve`) or by one Lambda entry point each (AWS).
//! They never see Lambda or engine types: JSON in, JSON out, or a [`WorkerError`] whose
//! `error` becomes the Step Functions error name (what `Catch`/`Retry` match on).
//!
//! Every handler is safe to run twice (Step Functions tasks are at least once): status
//! changes are conditional writes, and a handler that finds its work already done succeeds.

pub mod csv;
pub mod fetch;

use std::sync::Arc;

use chrono::Utc;
use longhaul_jobs::{
    BlobStore, ExecutionRef, ExecutionStatusChange, Job, JobError, JobFile, JobStatus, JobStore,
    JobTypes, Progress, TransitionOutcome, TransitionPatch, WorkflowInput,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the handlers work with.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Arc<dyn JobStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub types: Arc<JobTypes>,
    pub downloads: fetch::DownloadPolicy,
}

/// A handler failure, as Step Functions sees it: an error name and a cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct WorkerError {
    pub error: String,
    pub cause: String,
}

impl WorkerError {
    pub fn new(error: &str, cause: impl Into<String>) -> WorkerError {
        WorkerError {
            error: error.to_string(),
            cause: cause.into(),
        }
    }

    fn store(e: longhaul_jobs::StoreError) -> WorkerError {
        // A store error is worth a retry: the workflow's Retry matches States.Timeout and the
        // Lambda errors, and this name is listed in MarkFailed's retry-all.
        WorkerError::new("StoreUnavailable", e.to_string())
    }

    /// Input the handler cannot decode (a workflow or a caller sent the wrong shape).
    pub fn bad_input(handler: &str, e: impl std::fmt::Display) -> WorkerError {
        WorkerError::new("InvalidTaskInput", format!("{handler}: {e}"))
    }
}

/// The workflow's Task resources: the DefinitionSubstitutions name and the handler it binds.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("RegisterFunctionArn", "register"),
    ("DemoStepFunctionArn", "demo-step"),
    ("CsvPlanFunctionArn", "csv-plan"),
    ("CsvAggregateFunctionArn", "csv-aggregate"),
    ("CsvMergeFunctionArn", "csv-merge"),
    ("CompleteFunctionArn", "complete"),
    ("MarkFailedFunctionArn", "mark-failed"),
];

/// Calls the handler named `handler` (see [`FUNCTIONS`]) with JSON input.
pub async fn dispatch(
    ctx: &WorkerContext,
    handler: &str,
    input: Value,
) -> Result<Value, WorkerError> {
    fn parse<T: for<'de> Deserialize<'de>>(handler: &str, v: Value) -> Result<T, WorkerError> {
        serde_json::from_value(v).map_err(|e| WorkerError::bad_input(handler, e))
    }
    fn out<T: Serialize>(v: T) -> Result<Value, WorkerError> {
        serde_json::to_value(v).map_err(|e| WorkerError::new("Internal", e.to_string()))
    }
    match handler {
        "register" => out(register(ctx, parse(handler, input)?).await?),
        "demo-step" => out(demo_step(ctx, parse(handler, input)?).await?),
        "csv-plan" => out(csv::plan(ctx, parse(handler, input)?).await?),
        "csv-aggregate" => out(csv::aggregate(ctx, parse(handler, input)?).await?),
        "csv-merge" => out(csv::merge(ctx, parse(handler, input)?).await?),
        "complete" => out(complete(ctx, parse(handler, input)?).await?),
        "mark-failed" => out(mark_failed(ctx, parse(handler, input)?).await?),
        "track-status" => out(track_status_change(ctx, parse(handler, input)?).await?),
        other => Err(WorkerError::new(
            "UnknownHandler",
            format!("no worker handler named {other:?}"),
        )),
    }
}

/// Input of [`register`] (Parameters in the workflow).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    pub execution_name: String,
    #[serde(default)]
    pub execution_arn: Option<String>,
    pub job: WorkflowInput,
}

/// The workflow state after Register: what the type's states read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredJob {
    pub job_id: String,
    pub owner: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub input: Value,
}

/// Register: the job → RUNNING. An execution not started by the API (a schedule, the
/// console) has no record yet: it is created here from the execution input, named by the
/// execution name, after the same validation as startJob.
pub async fn register(
    ctx: &WorkerContext,
    req: RegisterRequest,
) -> Result<RegisteredJob, WorkerError> {
    let job_id = req.execution_name.clone();
    if let Some(given) = &req.job.job_id
        && given != &job_id
    {
        return Err(WorkerError::bad_input(
            "register",
            format!("input jobId {given} is not the execution name {job_id}"),
        ));
    }
    let now = Utc::now();
    let execution = ExecutionRef {
        name: job_id.clone(),
        arn: req.execution_arn.clone(),
        console_url: None,
    };
    if ctx
        .store
        .get(&job_id)
        .await
        .map_err(WorkerError::store)?
        .is_none()
    {
        let owner = req
            .job
            .owner
            .clone()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| {
                WorkerError::bad_input(
                    "register",
                    "an execution without a job record must name its owner",
                )
            })?;
        let job_type = ctx.types.get(&req.job.job_type).ok_or_else(|| {
            WorkerError::new(
                "UnknownJobType",
                format!(
                    "unknown job type {:?}; known types: {}",
                    req.job.job_type,
                    ctx.types.names().join(", ")
                ),
            )
        })?;
        let input = job_type
            .validate(&req.job.input)
            .map_err(|m| WorkerError::new("InvalidJobInput", m))?;
        let mut job = Job::new(&owner, &req.job.job_type, input, now);
        job.job_id = job_id.clone();
        job.execution = execution.clone();
        job.openai_file_id_refs = req.job.openai_file_id_refs.clone();
        // Created, or created meanwhile by a retried Register: either way it exists now.
        ctx.store.create(&job).await.map_err(WorkerError::store)?;
    }
    let patch = TransitionPatch {
        progress: Some(Progress {
            percent: 0,
            message: "Started".into(),
        }),
        execution: Some(execution),
        ..Default::default()
    };
    let job = match ctx
        .store
        .transition(&job_id, JobStatus::Running, patch, now)
        .await
        .map_err(WorkerError::store)?
    {
        TransitionOutcome::Applied(job) => *job,
        // A retried Register: already running is fine.
        TransitionOutcome::Rejected(job) if job.status == JobStatus::Running => *job,
        TransitionOutcome::Rejected(job) => return Err(not_running(&job)),
        TransitionOutcome::NotFound => {
            return Err(WorkerError::new("JobNotFound", format!("no job {job_id}")));
        }
    };
    let input = fetch_sources(ctx, &job).await?;
    Ok(RegisteredJob {
        job_id: job.job_id,
        owner: job.owner,
        job_type: job.job_type,
        input,
    })
}

/// Copies a job's outside inputs (a ChatGPT file ref, whose link lives 5 minutes; a URL)
/// into the blob store at once, and points the input at the copy. Safe to repeat.
async fn fetch_sources(ctx: &WorkerContext, job: &Job) -> Result<Value, WorkerError> {
    let mut input = job.input.clone();
    let Some(source) = input.get("source").cloned() else {
        return Ok(input);
    };
    let (url, name) = if let Some(i) = source.get("fileRef").and_then(Value::as_u64) {
        let r = usize::try_from(i)
            .ok()
            .and_then(|i| job.openai_file_id_refs.get(i))
            .ok_or_else(|| {
                WorkerError::new(
                    "InvalidJobInput",
                    format!("input.source.fileRef: no file {i} in openaiFileIdRefs"),
                )
            })?;
        (r.download_link.clone(), r.name.clone())
    } else if let Some(u) = source.get("url").and_then(Value::as_str) {
        (u.to_string(), "source.csv".to_string())
    } else {
        return Ok(input);
    };
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let safe = safe.trim_start_matches('.').to_string();
    let key = format!(
        "jobs/{}/input/{}",
        job.job_id,
        if safe.is_empty() { "source.csv" } else { &safe }
    );
    if ctx
        .blobs
        .head(&key)
        .await
        .map_err(|e| WorkerError::new("StoreUnavailable", e.to_string()))?
        .is_none()
    {
        fetch::download(ctx.blobs.as_ref(), &ctx.downloads, &url, &key).await?;
    }
    input["source"] = json!({"object": key});
    Ok(input)
}

fn not_running(job: &Job) -> WorkerError {
    let error = if job.status == JobStatus::Cancelled {
        "JobCancelled"
    } else {
        "JobNotRunning"
    };
    WorkerError::new(error, format!("job {} is {}", job.job_id, job.status))
}

/// Input of [`demo_step`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoStepRequest {
    pub job_id: String,
    /// The whole workflow state: `input` and, after the first step, `demo`.
    pub state: DemoState,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoState {
    pub input: DemoInput,
    #[serde(default)]
    pub demo: Option<DemoStepOutput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoInput {
    pub steps: u32,
    #[serde(default)]
    pub step_seconds: u32,
    #[serde(default)]
    pub fail_at_step: Option<u32>,
}

/// What one demo step leaves in `$.demo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoStepOutput {
    pub step: u32,
    pub steps: u32,
    pub done: bool,
    /// Set on the last step: what Complete writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<StepOutput>,
}

/// A job type's final output: inline result and result files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepOutput {
    pub result: Value,
    #[serde(default)]
    pub files: Vec<JobFile>,
    /// Intermediate objects of this job (under `jobs/<jobId>/`) that Complete deletes once the
    /// job's success is recorded. The step that made the output keeps them, so that it can
    /// be retried after a crash or a lost response and read them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scratch: Vec<String>,
}

/// One demo step (its time was spent in the Wait before it): count it, report progress,
/// fail if this is `failAtStep`.
pub async fn demo_step(
    ctx: &WorkerContext,
    req: DemoStepRequest,
) -> Result<DemoStepOutput, WorkerError> {
    let input = &req.state.input;
    if input.steps == 0 {
        return Err(WorkerError::bad_input(
            "demo-step",
            "steps must be at least 1",
        ));
    }
    let step = req.state.demo.as_ref().map_or(0, |d| d.step) + 1;
    if input.fail_at_step == Some(step) {
        return Err(WorkerError::new(
            "DemoStepFailed",
            format!("step {step} failed because the input asked for failAtStep={step}"),
        ));
    }
    let steps = input.steps;
    let step = step.min(steps);
    let percent = u8::try_from(u64::from(step) * 100 / u64::from(steps)).unwrap_or(100);
    let progress = Progress {
        percent,
        message: format!("step {step} of {steps}"),
    };
    let updated = ctx
        .store
        .set_progress(&req.job_id, &progress, Utc::now())
        .await
        .map_err(WorkerError::store)?;
    if !updated {
        // The job was cancelled (or ended) under us: stop the workflow.
        let job = ctx
            .store
            .get(&req.job_id)
            .await
            .map_err(WorkerError::store)?
            .ok_or_else(|| WorkerError::new("JobNotFound", format!("no job {}", req.job_id)))?;
        return Err(not_running(&job));
    }
    let done = step >= steps;
    let output = done.then(|| StepOutput {
        scratch: Vec::new(),
        result: json!({
            "stepsCompleted": steps,
            "stepSeconds": input.step_seconds,
            "totalSeconds": u64::from(steps) * u64::from(input.step_seconds),
            "summary": format!("Ran {steps} steps of {} s each.", input.step_seconds),
        }),
        files: Vec::new(),
    });
    Ok(DemoStepOutput {
        step,
        steps,
        done,
        output,
    })
}

/// Input of [`complete`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteRequest {
    pub job_id: String,
    pub output: StepOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledged {
    pub job_id: String,
    pub status: JobStatus,
}

/// Complete: result and files written, job → SUCCEEDED.
pub async fn complete(
    ctx: &WorkerContext,
    req: CompleteRequest,
) -> Result<Acknowledged, WorkerError> {
    let own = format!("jobs/{}/", req.job_id);
    if let Some(bad) = req.output.scratch.iter().find(|k| !k.starts_with(&own)) {
        return Err(WorkerError::bad_input(
            "complete",
            format!("scratch object {bad} is not under {own}"),
        ));
    }
    let patch = TransitionPatch {
        progress: Some(Progress {
            percent: 100,
            message: "Done".into(),
        }),
        result: Some(req.output.result),
        files: Some(req.output.files),
        ..Default::default()
    };
    let job = match ctx
        .store
        .transition(&req.job_id, JobStatus::Succeeded, patch, Utc::now())
        .await
        .map_err(WorkerError::store)?
    {
        TransitionOutcome::Applied(job) => job,
        // Retried after it had written: done already (and the scratch may be gone).
        TransitionOutcome::Rejected(job) if job.status == JobStatus::Succeeded => job,
        TransitionOutcome::Rejected(job) => return Err(not_running(&job)),
        TransitionOutcome::NotFound => {
            return Err(WorkerError::new(
                "JobNotFound",
                format!("no job {}", req.job_id),
            ));
        }
    };
    // Only now: a retried Merge or Complete before this point still finds them. A failed
    // delete leaves litter, not a wrong job (the bucket's lifecycle rule sweeps it on AWS).
    for key in &req.output.scratch {
        if let Err(e) = ctx.blobs.delete(key).await {
            tracing::warn!(key = %key, error = %e, "deleting a scratch object");
        }
    }
    Ok(Acknowledged {
        job_id: job.job_id,
        status: job.status,
    })
}

/// Input of [`mark_failed`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkFailedRequest {
    pub job_id: String,
    pub error: String,
    #[serde(default)]
    pub cause: Option<String>,
}

/// MarkFailed: job → FAILED with the error that ended the run. A job already terminal
/// (cancelled, say) stays as it is.
pub async fn mark_failed(
    ctx: &WorkerContext,
    req: MarkFailedRequest,
) -> Result<Acknowledged, WorkerError> {
    let error = job_error(&req.error, req.cause.as_deref());
    let patch = TransitionPatch {
        error: Some(error),
        ..Default::default()
    };
    match ctx
        .store
        .transition(&req.job_id, JobStatus::Failed, patch, Utc::now())
        .await
        .map_err(WorkerError::store)?
    {
        TransitionOutcome::Applied(job) | TransitionOutcome::Rejected(job) => Ok(Acknowledged {
            job_id: job.job_id,
            status: job.status,
        }),
        // Register failed before any record existed (bad schedule spec): nothing to mark.
        TransitionOutcome::NotFound => Ok(Acknowledged {
            job_id: req.job_id,
            status: JobStatus::Failed,
        }),
    }
}

/// The job error for a Step Functions error and cause. Lambda causes are JSON
/// (`{"errorMessage": ..., "errorType": ...}`): keep the message only.
pub fn job_error(error: &str, cause: Option<&str>) -> JobError {
    let cause = cause.unwrap_or("").trim();
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string());
    let message = if message.is_empty() {
        format!("the workflow failed with {error}")
    } else {
        truncate(&message, 2000)
    };
    JobError {
        code: error.to_string(),
        message,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The status-change tracker: when an execution ends other than through Complete or
/// MarkFailed (stopped in the console, timed out, failed in MarkFailed itself), the job
/// follows it, so no job stays RUNNING. A late or repeated event changes nothing.
pub async fn track_status_change(
    ctx: &WorkerContext,
    change: ExecutionStatusChange,
) -> Result<Acknowledged, WorkerError> {
    use longhaul_jobs::workflow::{EXECUTION_ABORTED, EXECUTION_FAILED, EXECUTION_TIMED_OUT};
    let (to, error) = match change.status.as_str() {
        EXECUTION_ABORTED => (
            JobStatus::Cancelled,
            JobError {
                code: "aborted".into(),
                message: change
                    .cause
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "the execution was stopped".into()),
            },
        ),
        EXECUTION_TIMED_OUT => (
            JobStatus::TimedOut,
            JobError {
                code: "timed_out".into(),
                message: "the execution ran past its time limit".into(),
            },
        ),
        EXECUTION_FAILED => (
            JobStatus::Failed,
            job_error(
                change.error.as_deref().unwrap_or("States.Runtime"),
                change.cause.as_deref(),
            ),
        ),
        _ => {
            let job = ctx
                .store
                .get(&change.name)
                .await
                .map_err(WorkerError::store)?;
            return Ok(Acknowledged {
                job_id: change.name,
                status: job.map_or(JobStatus::Succeeded, |j| j.status),
            });
        }
    };
    let now = Utc::now();
    let patch = TransitionPatch {
        error: Some(error.clone()),
        ..Default::default()
    };
    let outcome = ctx
        .store
        .transition(&change.name, to, patch, now)
        .await
        .map_err(WorkerError::store)?;
    let job = match outcome {
        TransitionOutcome::Applied(job) => *job,
        // TIMED_OUT is legal only from RUNNING; a job still QUEUED then simply failed.
        TransitionOutcome::Rejected(job) if !job.status.is_terminal() => {
            let patch = TransitionPatch {
                error: Some(error),
                ..Default::default()
            };
            match ctx
                .store
                .transition(&change.name, JobStatus::Failed, patch, now)
                .await
                .map_err(WorkerError::store)?
            {
                TransitionOutcome::Applied(j) | TransitionOutcome::Rejected(j) => *j,
                TransitionOutcome::NotFound => *job,
            }
        }
        TransitionOutcome::Rejected(job) => *job,
        TransitionOutcome::NotFound => {
            return Ok(Acknowledged {
                job_id: change.name,
                status: to,
            });
        }
    };
    Ok(Acknowledged {
        job_id: job.job_id,
        status: job.status,
    })
}
