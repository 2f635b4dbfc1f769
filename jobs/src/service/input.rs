//! Answers to the question a job waits for (the RequestInput step's request): the owner
//! answers through REST (`POST /jobs/{jobId}/input`) or MCP (`tasks/update`); both come
//! here. The answer is checked against the request's schema, then handed to the waiting
//! Task as its output with the request's task token — the same call as
//! `POST /task-tokens/{token}/success` (SendTaskSuccess on AWS) — and the request is
//! cleared. Only the job's owner answers: another owner's job is not found.

use chrono::Utc;
use serde_json::Value;

use super::{JobService, ServiceError};
use crate::input::{InputRequest, InputRequestChange, validate_answer, with_defaults};
use crate::job::Job;
use crate::ports::CallbackError;
use crate::view::{JobView, pending_request};

/// The error a declined question fails its Task with (what a workflow's Catch matches).
pub const ANSWER_DECLINED: &str = "InputDeclined";
/// The error a dismissed question fails its Task with.
pub const ANSWER_CANCELLED: &str = "InputCancelled";

impl JobService {
    /// The owner's job and the request it waits for. `key`: the request the answer is for
    /// (MCP names it), when given it must be the pending one.
    async fn pending_input(
        &self,
        owner: &str,
        job_id: &str,
        key: Option<&str>,
    ) -> Result<(Job, InputRequest), ServiceError> {
        let job = self.owned_job(owner, job_id).await?;
        let Some(request) = pending_request(&job).cloned() else {
            return Err(ServiceError::Conflict(format!(
                "job {job_id} is not waiting for an answer (it is {})",
                job.status
            )));
        };
        if let Some(k) = key
            && k != request.key
        {
            return Err(ServiceError::Conflict(format!(
                "job {job_id} does not wait for an answer to {k:?}: it was answered already or replaced"
            )));
        }
        Ok((job, request))
    }

    /// The owner answers: `answer` (an object matching the request's schema; its fields'
    /// defaults filled in) becomes the waiting Task's output. Errors: not found (not the
    /// owner's), conflict (nothing pending, or the wait ended), bad request naming the field.
    pub async fn answer_input(
        &self,
        owner: &str,
        job_id: &str,
        key: Option<&str>,
        answer: &Value,
    ) -> Result<JobView, ServiceError> {
        let (job, request) = self.pending_input(owner, job_id, key).await?;
        validate_answer(&request, answer).map_err(ServiceError::BadRequest)?;
        let output = match answer {
            Value::Object(fields) => Value::Object(with_defaults(&request, fields)),
            other => other.clone(),
        };
        let sent = self
            .orchestrator
            .send_task_success(&request.task_token, &output)
            .await;
        self.after_answer(&job, &request, sent, "answered").await
    }

    /// The owner declines (or dismisses) the question: the waiting Task fails with `error`
    /// ([`ANSWER_DECLINED`], [`ANSWER_CANCELLED`]), which the workflow may catch.
    pub async fn decline_input(
        &self,
        owner: &str,
        job_id: &str,
        key: Option<&str>,
        error: &str,
    ) -> Result<JobView, ServiceError> {
        let (job, request) = self.pending_input(owner, job_id, key).await?;
        let cause = if error == ANSWER_CANCELLED {
            "the user dismissed the question without answering"
        } else {
            "the user declined to answer"
        };
        let sent = self
            .orchestrator
            .send_task_failure(&request.task_token, error, cause)
            .await;
        self.after_answer(&job, &request, sent, "declined").await
    }

    /// Clears the request once its Task took the answer — or once its Task can take none
    /// (timed out, or its wait already ended): then the request is moot, and the caller gets
    /// a conflict.
    async fn after_answer(
        &self,
        job: &Job,
        request: &InputRequest,
        sent: Result<(), CallbackError>,
        what: &str,
    ) -> Result<JobView, ServiceError> {
        let gone = matches!(
            sent,
            Err(CallbackError::InvalidToken(_)
                | CallbackError::TaskDoesNotExist(_)
                | CallbackError::TaskTimedOut(_))
        );
        if sent.is_ok() || gone {
            let change = InputRequestChange::Answered {
                key: request.key.clone(),
            };
            self.store
                .set_input_request(&job.job_id, &change, Utc::now())
                .await?;
        }
        match sent {
            Ok(()) => {
                tracing::info!(job_id = %job.job_id, request = %request.key, "input {what}");
            }
            Err(_) if gone => {
                return Err(ServiceError::Conflict(format!(
                    "job {} no longer waits for this answer: its wait ended (timed out, or answered meanwhile)",
                    job.job_id
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let job = self.owned_job(&job.owner, &job.job_id).await?;
        self.view(&job).await
    }
}
