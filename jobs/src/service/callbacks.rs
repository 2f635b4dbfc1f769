//! Callbacks: an outside system answers a workflow Task that waits for a task token
//! (`.waitForTaskToken`) — success with an output, failure with an error and a cause, or a
//! heartbeat. The token is the capability: it names no job and no owner (as with Step
//! Functions' SendTaskSuccess), so any authenticated caller that holds it may answer.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{JobService, ServiceError};
use crate::ports::{CallbackError, OrchestratorError};

/// Longest task token (Step Functions' limit).
pub const MAX_TOKEN_CHARS: usize = 2048;
/// Largest success output, as JSON (Step Functions' payload limit).
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Longest failure error name.
pub const MAX_ERROR_CHARS: usize = 256;
/// Longest failure cause.
pub const MAX_CAUSE_CHARS: usize = 32_768;

/// The body of a failure answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailTaskRequest {
    /// The error name the workflow's Retry and Catch match (at most 256 characters).
    #[serde(default)]
    pub error: Option<String>,
    /// What went wrong (at most 32,768 characters).
    #[serde(default)]
    pub cause: Option<String>,
}

fn check_token(token: &str) -> Result<(), ServiceError> {
    let ok =
        (1..=MAX_TOKEN_CHARS).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "a task token is 1 to {MAX_TOKEN_CHARS} printable ASCII characters (percent-encode it in the path)"
        )))
    }
}

impl From<CallbackError> for ServiceError {
    fn from(e: CallbackError) -> Self {
        match e {
            CallbackError::InvalidToken(_) | CallbackError::TaskDoesNotExist(_) => {
                ServiceError::NotFound(
                    "no task waits for this task token: it is unknown, was answered already, or its job ended".into(),
                )
            }
            CallbackError::TaskTimedOut(_) => ServiceError::Conflict(
                "the task of this task token timed out; it takes no more answers".into(),
            ),
            CallbackError::Invalid(m) => ServiceError::BadRequest(m),
            CallbackError::Orchestrator(OrchestratorError::Unavailable(m)) => {
                ServiceError::Unavailable {
                    message: format!("the workflow engine is unavailable ({m}); try again"),
                    retry_after_seconds: 5,
                }
            }
            CallbackError::Orchestrator(e) => ServiceError::Internal(e.to_string()),
        }
    }
}

impl JobService {
    /// The Task waiting for `token` succeeds with `output` (JSON, at most 256 KiB).
    pub async fn send_task_success(&self, token: &str, output: &Value) -> Result<(), ServiceError> {
        check_token(token)?;
        let size = serde_json::to_vec(output)
            .map_err(|e| ServiceError::BadRequest(format!("the output is not JSON: {e}")))?
            .len();
        if size > MAX_OUTPUT_BYTES {
            return Err(ServiceError::PayloadTooLarge(format!(
                "the output is {size} bytes as JSON; the limit is {MAX_OUTPUT_BYTES}"
            )));
        }
        Ok(self.orchestrator.send_task_success(token, output).await?)
    }

    /// The Task waiting for `token` fails with `error` (≤ 256 characters) and `cause`
    /// (≤ 32,768).
    pub async fn send_task_failure(
        &self,
        token: &str,
        answer: &FailTaskRequest,
    ) -> Result<(), ServiceError> {
        check_token(token)?;
        let error = answer.error.as_deref().unwrap_or("");
        let cause = answer.cause.as_deref().unwrap_or("");
        if error.chars().count() > MAX_ERROR_CHARS {
            return Err(ServiceError::BadRequest(format!(
                "error is over {MAX_ERROR_CHARS} characters"
            )));
        }
        if cause.chars().count() > MAX_CAUSE_CHARS {
            return Err(ServiceError::BadRequest(format!(
                "cause is over {MAX_CAUSE_CHARS} characters"
            )));
        }
        Ok(self
            .orchestrator
            .send_task_failure(token, error, cause)
            .await?)
    }

    /// The Task waiting for `token` is alive: its HeartbeatSeconds start again.
    pub async fn send_task_heartbeat(&self, token: &str) -> Result<(), ServiceError> {
        check_token(token)?;
        Ok(self.orchestrator.send_task_heartbeat(token).await?)
    }
}
