//! Tasks are jobs. The task id is the job id, so a task lives exactly as long as its job
//! record, on any instance, with no task table: `tasks/get` is getJob, `tasks/cancel` is
//! cancelJob, 2025-11-25's `tasks/list` is listJobs and its `tasks/result` is getJob with a
//! wait. Another owner's task is not found, as another owner's job is.
//!
//! Status: QUEUED, RUNNING → `working`, or `input_required` while the job waits for its
//! owner's answer (the RequestInput step); SUCCEEDED → `completed`; FAILED, TIMED_OUT →
//! `failed` (with the job's error); CANCELLED → `cancelled`. The progress is the
//! `statusMessage` (the question, while one waits), `pollAfterSeconds` the poll interval, the
//! job retention the TTL.
//!
//! **Input (2026-07-28).** An `input_required` task's `tasks/get` carries the question as one
//! `inputRequests` entry, an `elicitation/create` request in form mode (`message`,
//! `requestedSchema`), keyed by the request's id (unique over the job's life: a hash of the
//! waiting Task's token). `tasks/update` answers it: `{"action": "accept", "content"}` goes
//! to the job as answerJobInput does (the content checked against the schema first: a
//! mismatch is -32602 naming the field), `decline` / `cancel` fail the waiting Task with
//! `InputDeclined` / `InputCancelled`. Responses to keys that are not outstanding are
//! ignored, as the extension asks.
//!
//! **Input (2025-11-25).** Such a task is `input_required` in `tasks/get` and `tasks/list`.
//! That revision delivers the question as an `elicitation/create` request on the
//! `tasks/result` response stream; this server answers every request with one JSON
//! response and sends no requests of its own (see the module doc of `mcp`), so its
//! `tasks/result` on such a task is an error whose data carries the question, and the answer
//! goes through REST (answerJobInput) or a 2026-07-28 `tasks/update`.

use std::time::Duration;

use chrono::SecondsFormat;
use longhaul_jobs::service::{ANSWER_CANCELLED, ANSWER_DECLINED};
use longhaul_jobs::{InputRequestView, JobStatus, JobView, ListParams, ServiceError};
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
        // input_required is decided by the job's pending request: see `TaskState::status`.
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
    /// The question the job waits for (a view), or that it waits for one (a summary).
    input: Option<&'a InputRequestView>,
    input_required: bool,
}

impl TaskState<'_> {
    fn status(&self) -> &'static str {
        if self.input_required && !self.status.is_terminal() {
            INPUT_REQUIRED
        } else {
            task_status(self.status)
        }
    }
}

/// The task status of a job that waits for its owner's answer.
pub const INPUT_REQUIRED: &str = "input_required";

/// A view's task status.
pub fn view_status(view: &JobView) -> &'static str {
    TaskState::from(view).status()
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
            input: v.input_request.as_ref(),
            input_required: v.input_request.is_some(),
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
            input: None,
            input_required: v.input_required,
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
    let status = view.status();
    let status_message = if view.status.is_terminal() {
        view.message.to_string()
    } else if let Some(r) = view.input {
        format!("waiting for an answer: {}", r.message)
    } else if status == INPUT_REQUIRED {
        "waiting for an answer".to_string()
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
    t.insert("status".into(), json!(status));
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
        match view_status(&view) {
            INPUT_REQUIRED => {
                if let Some(r) = &view.input_request {
                    task.insert("inputRequests".into(), input_requests(r));
                }
            }
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
    if let Some(r) = view
        .input_request
        .as_ref()
        .filter(|_| !view.status.is_terminal())
    {
        return Err(RpcError::new(
            INTERNAL_ERROR,
            format!(
                "task {id} is input_required: it waits for the user's answer to {:?}. This server sends no elicitation requests on tasks/result; answer with the 2026-07-28 tasks/update or REST POST /jobs/{id}/input",
                r.message
            ),
        )
        .with_data(json!({"taskId": id, "status": INPUT_REQUIRED, "inputRequest": r})));
    }
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
                .map(|v| view_status(&v))
                .unwrap_or("completed");
            Err(RpcError::invalid_params(format!(
                "Cannot cancel task: already in terminal status '{status}'"
            )))
        }
        Err(e) => Err(task_failure(id, e)),
    }
}

/// A pending question as the tasks extension's `inputRequests`: one `elicitation/create`
/// request in form mode, keyed by the request's id.
fn input_requests(r: &InputRequestView) -> Value {
    let mut m = Map::new();
    m.insert(
        r.request_id.clone(),
        json!({
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": r.message,
                "requestedSchema": r.requested_schema,
            },
        }),
    );
    Value::Object(m)
}

/// 2026-07-28 `tasks/update`: the answers to the task's outstanding `inputRequests`
/// (elicitation results: `accept` with `content`, `decline`, `cancel`). An answer to a key
/// that is not outstanding is ignored, as the extension asks; the rest go to the job as
/// answerJobInput does. Acknowledged with an empty result.
pub async fn update(call: &Call<'_>, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let id = task_id(params)?;
    let Some(Value::Object(responses)) = params.get("inputResponses") else {
        return Err(RpcError::invalid_params(
            "params.inputResponses must be an object",
        ));
    };
    let view = call
        .service
        .get(call.owner, id, Duration::ZERO)
        .await
        .map_err(|e| task_failure(id, e))?;
    let Some(pending) = view
        .input_request
        .as_ref()
        .filter(|_| !view.status.is_terminal())
    else {
        return Ok(json!({}));
    };
    let Some(response) = responses.get(&pending.request_id) else {
        return Ok(json!({}));
    };
    let key = pending.request_id.as_str();
    let at = format!("params.inputResponses[{key:?}]");
    let action = response.get("action").and_then(Value::as_str);
    let answered = match action {
        Some("accept") => {
            let content = response.get("content").cloned().unwrap_or(json!({}));
            call.service
                .answer_input(call.owner, id, Some(key), &content)
                .await
        }
        Some("decline") => {
            call.service
                .decline_input(call.owner, id, Some(key), ANSWER_DECLINED)
                .await
        }
        Some("cancel") => {
            call.service
                .decline_input(call.owner, id, Some(key), ANSWER_CANCELLED)
                .await
        }
        _ => {
            return Err(RpcError::invalid_params(format!(
                "{at}.action must be \"accept\", \"decline\" or \"cancel\" (an elicitation result)"
            )));
        }
    };
    match answered {
        Ok(view) => {
            tracing::info!(job_id = %view.job_id, "mcp: input delivered");
            Ok(json!({}))
        }
        Err(ServiceError::BadRequest(m)) => {
            Err(RpcError::invalid_params(match m.strip_prefix("answer") {
                Some(rest) => format!("{at}.content{rest}"),
                None => m,
            }))
        }
        // The question was answered or its wait ended meanwhile: no longer outstanding.
        Err(ServiceError::Conflict(_)) => Ok(json!({})),
        Err(e) => Err(task_failure(id, e)),
    }
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
