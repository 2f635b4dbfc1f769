//! Tasks are jobs. The task id is the job id, so a task lives exactly as long as its job
//! record, on any instance, with no task table: `tasks/get` is getJob, `tasks/cancel` is
//! cancelJob, 2025-11-25's `tasks/list` is listJobs and its `tasks/result` is getJob with a
//! wait. Another owner's task is not found, as another owner's job is.
//!
//! Status: QUEUED, RUNNING → `working`; SUCCEEDED → `completed`; FAILED, TIMED_OUT →
//! `failed` (with the job's error); CANCELLED → `cancelled`. The progress is the
//! `statusMessage`, `pollAfterSeconds` the poll interval, the job retention the TTL.
//! `input_required` is never reported yet: jobs cannot wait for a person's answer until the
//! engine's callbacks exist, so `tasks/update` only acknowledges (the extension asks servers
//! to ignore answers to requests that are not outstanding, and none ever is).

use std::time::Duration;

use chrono::SecondsFormat;
use longhaul_jobs::{JobStatus, JobView, ListParams, ServiceError};
use serde_json::{Map, Value, json};

use super::Call;
use super::jsonrpc::{INTERNAL_ERROR, INVALID_PARAMS, RpcError};
use super::tools;

/// JSON-RPC error codes of a failed task (2026-07-28 carries the failure as a JSON-RPC
/// error). Outside the reserved -32768..-32000, as the spec asks of application codes.
pub const JOB_FAILED: i64 = 1;
pub const JOB_TIMED_OUT: i64 = 2;

/// How long 2025-11-25's `tasks/result` waits for a job that is still working. The revision
/// says it blocks until the task ends; a request cannot outlive API Gateway's 29 s, so past
/// this it answers with an error telling the client to poll `tasks/get`.
const RESULT_WAIT: Duration = Duration::from_secs(20);

/// Page size of `tasks/list`.
const LIST_LIMIT: u32 = 50;

pub fn task_status(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued | JobStatus::Running => "working",
        JobStatus::Succeeded => "completed",
        JobStatus::Failed | JobStatus::TimedOut => "failed",
        JobStatus::Cancelled => "cancelled",
    }
}

/// "queued", "running (40%)", "running: step 2 of 5 (40%)".
pub fn progress_text(view: &JobView) -> String {
    progress_words(view.status, &view.progress)
}

fn progress_words(status: JobStatus, progress: &longhaul_jobs::Progress) -> String {
    let what = progress.message.trim().trim_end_matches('.');
    match status {
        JobStatus::Queued => "queued".to_string(),
        _ if what.is_empty() => format!("running ({}%)", progress.percent),
        _ => format!("running: {what} ({}%)", progress.percent),
    }
}

/// What a task shows of its job, from a job view (getJob) or a summary (listJobs).
pub struct TaskState<'a> {
    job_id: &'a str,
    status: JobStatus,
    message: &'a str,
    progress: &'a longhaul_jobs::Progress,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    poll_after_seconds: Option<u32>,
}

impl<'a> From<&'a JobView> for TaskState<'a> {
    fn from(v: &'a JobView) -> TaskState<'a> {
        TaskState {
            job_id: &v.job_id,
            status: v.status,
            message: &v.message,
            progress: &v.progress,
            created_at: v.created_at,
            updated_at: v.updated_at,
            poll_after_seconds: v.poll_after_seconds,
        }
    }
}

impl<'a> From<&'a longhaul_jobs::JobSummary> for TaskState<'a> {
    fn from(v: &'a longhaul_jobs::JobSummary) -> TaskState<'a> {
        TaskState {
            job_id: &v.job_id,
            status: v.status,
            message: &v.message,
            progress: &v.progress,
            created_at: v.created_at,
            updated_at: v.updated_at,
            poll_after_seconds: (!v.status.is_terminal())
                .then_some(longhaul_jobs::view::POLL_AFTER_SECONDS),
        }
    }
}

/// The task a job is, with the era's field names (2026-07-28: `ttlMs`, `pollIntervalMs`;
/// 2025-11-25: `ttl`, `pollInterval`).
pub fn task_fields<'a>(call: &Call<'_>, view: impl Into<TaskState<'a>>) -> Map<String, Value> {
    let view: TaskState<'a> = view.into();
    let (ttl_key, poll_key) = if call.era.is_modern() {
        ("ttlMs", "pollIntervalMs")
    } else {
        ("ttl", "pollInterval")
    };
    let status_message = if view.status.is_terminal() {
        view.message.to_string()
    } else {
        progress_words(view.status, view.progress)
    };
    let ttl = call
        .service
        .config()
        .job_retention
        .map(|d| d.as_millis() as u64);
    let mut t = Map::new();
    t.insert("taskId".into(), json!(view.job_id));
    t.insert("status".into(), json!(task_status(view.status)));
    t.insert("statusMessage".into(), json!(status_message));
    t.insert(
        "createdAt".into(),
        json!(view.created_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    t.insert(
        "lastUpdatedAt".into(),
        json!(view.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    t.insert(ttl_key.into(), json!(ttl));
    if let Some(s) = view.poll_after_seconds {
        t.insert(poll_key.into(), json!(u64::from(s) * 1000));
    }
    t
}

/// The JSON-RPC error a failed or timed-out job is (2026-07-28 `failed` tasks carry one).
fn job_error(view: &JobView) -> Value {
    let code = if view.status == JobStatus::TimedOut {
        JOB_TIMED_OUT
    } else {
        JOB_FAILED
    };
    json!({
        "code": code,
        "message": view.message,
        "data": {"jobId": view.job_id, "status": view.status, "error": view.error},
    })
}

fn task_id(params: &Map<String, Value>) -> Result<&str, RpcError> {
    params
        .get("taskId")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("params.taskId must be a string"))
}

/// A service error on a task method: an unknown (or another owner's) task and bad params
/// are -32602, as both revisions ask; the rest is -32603.
fn task_failure(task_id: &str, e: ServiceError) -> RpcError {
    match e {
        ServiceError::NotFound(_) => RpcError::invalid_params(format!("Task not found: {task_id}")),
        ServiceError::BadRequest(m) | ServiceError::Conflict(m) => RpcError::invalid_params(m),
        ServiceError::Internal(m) => {
            tracing::error!(error = %m, "mcp: internal error");
            RpcError::new(
                INTERNAL_ERROR,
                "something went wrong on our side; try again",
            )
        }
        other => RpcError::new(INTERNAL_ERROR, other.to_string()),
    }
}

/// `tasks/get`. 2026-07-28 inlines the outcome: the tool result once completed, the error
/// once failed.
pub async fn get(call: &Call<'_>, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let id = task_id(params)?;
    let view = call
        .service
        .get(call.owner, id, Duration::ZERO)
        .await
        .map_err(|e| task_failure(id, e))?;
    let mut task = task_fields(call, &view);
    if call.era.is_modern() {
        match task_status(view.status) {
            "completed" => {
                let mut result = tools::job_result(&view, call.era, false);
                result["resultType"] = json!("complete");
                task.insert("result".into(), result);
            }
            "failed" => {
                task.insert("error".into(), job_error(&view));
            }
            _ => {}
        }
    }
    Ok(Value::Object(task))
}

/// 2025-11-25 `tasks/result`: what the tool call would have returned — the job as a tool
/// result, `isError` unless it succeeded — once the job has ended.
pub async fn result(call: &Call<'_>, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let id = task_id(params)?;
    let wait = RESULT_WAIT.min(call.service.config().max_wait);
    let view = call
        .service
        .get(call.owner, id, wait)
        .await
        .map_err(|e| task_failure(id, e))?;
    if !view.status.is_terminal() {
        return Err(RpcError::new(
            INTERNAL_ERROR,
            format!(
                "task {id} is still working after {} s; poll tasks/get and ask for tasks/result once it has ended",
                wait.as_secs()
            ),
        )
        .with_data(json!({"taskId": id, "status": "working"})));
    }
    let mut result = tools::job_result(&view, call.era, view.status != JobStatus::Succeeded);
    result["_meta"] = json!({"io.modelcontextprotocol/related-task": {"taskId": id}});
    Ok(result)
}

/// 2025-11-25 `tasks/list`: the owner's jobs, newest first, a page at a time.
pub async fn list(call: &Call<'_>, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let cursor = match params.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => return Err(RpcError::invalid_params("params.cursor must be a string")),
    };
    let page = call
        .service
        .list(
            call.owner,
            &ListParams {
                limit: Some(LIST_LIMIT),
                cursor,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| match e {
            ServiceError::BadRequest(m) => RpcError::new(INVALID_PARAMS, m),
            other => task_failure("", other),
        })?;
    let tasks: Vec<Value> = page
        .jobs
        .iter()
        .map(|v| Value::Object(task_fields(call, v)))
        .collect();
    let mut r = json!({"tasks": tasks});
    if let Some(c) = page.next_cursor {
        r["nextCursor"] = json!(c);
    }
    Ok(r)
}

/// `tasks/cancel` cancels the job. 2025-11-25 answers with the cancelled task and refuses a
/// task that already ended (-32602); 2026-07-28 acknowledges either way (cancellation is
/// cooperative there, and a job that ended first keeps its outcome).
pub async fn cancel(call: &Call<'_>, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let id = task_id(params)?;
    match call.service.cancel(call.owner, id).await {
        Ok(view) if call.era.is_modern() => {
            tracing::info!(job_id = %view.job_id, "mcp: task cancelled");
            Ok(json!({}))
        }
        Ok(view) => Ok(Value::Object(task_fields(call, &view))),
        Err(ServiceError::Conflict(_)) if call.era.is_modern() => Ok(json!({})),
        Err(ServiceError::Conflict(_)) => {
            let status = call
                .service
                .get(call.owner, id, Duration::ZERO)
                .await
                .map(|v| task_status(v.status))
                .unwrap_or("completed");
            Err(RpcError::invalid_params(format!(
                "Cannot cancel task: already in terminal status '{status}'"
            )))
        }
        Err(e) => Err(task_failure(id, e)),
    }
}

/// 2026-07-28 `tasks/update`: acknowledged for the owner's tasks. No job asks for input yet,
/// so no answer is outstanding, and the extension says such answers are ignored.
pub async fn update(call: &Call<'_>, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let id = task_id(params)?;
    if !matches!(params.get("inputResponses"), Some(Value::Object(_))) {
        return Err(RpcError::invalid_params(
            "params.inputResponses must be an object",
        ));
    }
    call.service
        .get(call.owner, id, Duration::ZERO)
        .await
        .map_err(|e| task_failure(id, e))?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_status_maps_to_its_task_status() {
        let expected = [
            (JobStatus::Queued, "working"),
            (JobStatus::Running, "working"),
            (JobStatus::Succeeded, "completed"),
            (JobStatus::Failed, "failed"),
            (JobStatus::TimedOut, "failed"),
            (JobStatus::Cancelled, "cancelled"),
        ];
        for (job, task) in expected {
            assert_eq!(task_status(job), task, "{job}");
        }
        assert_eq!(expected.len(), JobStatus::ALL.len());
    }
}
