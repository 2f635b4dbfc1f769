//! RequestInput (`request-input`): the built-in step that makes a job wait for its owner's
//! answer. A job type declares it as a Rust step (`{"runtime": "rust", "handler":
//! "request-input"}`) and calls it from a callback Task:
//!
//! ```json
//! "Ask": {
//!   "Type": "Task",
//!   "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
//!   "Parameters": {"FunctionName": "${Ask}", "Payload": {
//!     "jobId.$": "$.jobId", "taskToken.$": "$$.Task.Token",
//!     "message": "Who is it for?",
//!     "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}},
//!   "ResultPath": "$.answer",
//!   "Next": "Go"
//! }
//! ```
//!
//! The step records the request on the job (through the JobStore, so the same on SQLite and
//! DynamoDB) and returns; the Task then waits until the owner answers (REST
//! `POST /jobs/{jobId}/input`, MCP `tasks/update`): the answer is the Task's output. A
//! declined question fails the Task with `InputDeclined` (MCP's `decline`) or
//! `InputCancelled` (`cancel`).

use chrono::Utc;
use longhaul_jobs::{InputRequest, InputRequestChange};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::not_running;
use crate::{StepContext, StepError};

/// Input of [`request_input`] (the callback Task's Payload).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestInputRequest {
    pub job_id: String,
    /// `$$.Task.Token`: what the answer is delivered with.
    pub task_token: String,
    /// What the person is asked.
    pub message: String,
    /// The answer's JSON schema: an object of flat fields (MCP elicitation's form).
    pub requested_schema: Value,
}

/// What the step returns (a callback Task ignores it; its output is the answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputRequested {
    pub job_id: String,
    /// The request's key (MCP's `inputRequests` key); not the token.
    pub request: String,
}

/// Records the request on the job. Safe to run twice for one wait (the same token makes
/// the same request). A bad message or schema fails with `InvalidInputRequest`, naming the
/// field; a job that ended fails as every step does on one (`JobCancelled`,
/// `JobNotRunning`).
pub async fn request_input(
    ctx: &StepContext,
    req: RequestInputRequest,
) -> Result<InputRequested, StepError> {
    let request = InputRequest::new(
        &req.task_token,
        &req.message,
        req.requested_schema,
        Utc::now(),
    )
    .map_err(|m| StepError::new("InvalidInputRequest", format!("request-input: {m}")))?;
    let key = request.key.clone();
    let changed = ctx
        .store
        .set_input_request(&req.job_id, &InputRequestChange::Ask(request), Utc::now())
        .await
        .map_err(StepError::store)?;
    if !changed {
        let job = ctx.job(&req.job_id).await?;
        // Unchanged and still running: this same request was recorded by an earlier run.
        let recorded = job.input_request.as_ref().is_some_and(|r| r.key == key);
        if job.status.is_terminal() || !recorded {
            return Err(not_running(&job));
        }
    }
    tracing::info!(job_id = %req.job_id, request = %key, "waiting for the owner's answer");
    Ok(InputRequested {
        job_id: req.job_id,
        request: key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_jobs::memory::{MemoryBlobStore, MemoryJobStore};
    use longhaul_jobs::{Job, JobStatus, JobStore, JobTypes, TransitionPatch};
    use serde_json::json;
    use std::sync::Arc;

    fn ctx(store: Arc<MemoryJobStore>) -> StepContext {
        StepContext {
            store,
            blobs: Arc::new(MemoryBlobStore::default()),
            types: Arc::new(JobTypes::empty()),
            downloads: crate::fetch::DownloadPolicy::default(),
            job_retention: None,
        }
    }

    fn ask(job_id: &str, token: &str, schema: Value) -> RequestInputRequest {
        RequestInputRequest {
            job_id: job_id.into(),
            task_token: token.into(),
            message: "Who is it for?".into(),
            requested_schema: schema,
        }
    }

    fn name_schema() -> Value {
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    }

    #[tokio::test]
    async fn records_the_request_once_and_refuses_bad_ones() {
        let store = Arc::new(MemoryJobStore::new());
        let mut job = Job::new("alice", "demo", json!({}), Utc::now());
        job.status = JobStatus::Running;
        store.create(&job).await.unwrap();
        let c = ctx(store.clone());
        let out = request_input(&c, ask(&job.job_id, "tok", name_schema()))
            .await
            .unwrap();
        let again = request_input(&c, ask(&job.job_id, "tok", name_schema()))
            .await
            .unwrap();
        assert_eq!(out, again, "a step run twice records the same request");
        let stored = store.get(&job.job_id).await.unwrap().unwrap();
        let r = stored.input_request.unwrap();
        assert_eq!(
            (r.key.as_str(), r.task_token.as_str()),
            (out.request.as_str(), "tok")
        );

        let e = request_input(
            &c,
            ask(
                &job.job_id,
                "tok2",
                json!({"type": "object", "properties": {"a": {"type": "array"}}}),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(e.error, "InvalidInputRequest");
        assert!(
            e.cause.contains("requestedSchema.properties.a.type"),
            "{}",
            e.cause
        );

        store
            .transition(
                &job.job_id,
                JobStatus::Cancelled,
                TransitionPatch::default(),
                Utc::now(),
            )
            .await
            .unwrap();
        let e = request_input(&c, ask(&job.job_id, "tok3", name_schema()))
            .await
            .unwrap_err();
        assert_eq!(e.error, "JobCancelled");
    }
}
