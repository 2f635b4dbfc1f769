//! What passes between the API and the workflow: the execution input, and the event the
//! tracker receives when an execution ends. Both are plain JSON so Step Functions, the
//! embedded engine and EventBridge carry them unchanged.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::{Job, OpenAiFileRef};

/// The input of an execution. Started by the API it carries `jobId`; started by a schedule
/// or the console it may not, and Register then uses `$$.Execution.Name` as the job id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(rename = "type")]
    pub job_type: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub openai_file_id_refs: Vec<OpenAiFileRef>,
}

impl WorkflowInput {
    pub fn for_job(job: &Job) -> WorkflowInput {
        WorkflowInput {
            job_id: Some(job.job_id.clone()),
            owner: Some(job.owner.clone()),
            job_type: job.job_type.clone(),
            input: job.input.clone(),
            openai_file_id_refs: job.openai_file_id_refs.clone(),
        }
    }
}

/// An execution's status as Step Functions names it (EventBridge's `detail.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    PendingRedrive,
}

/// The `detail` of an EventBridge "Step Functions Execution Status Change" event, the part
/// the tracker reads. The local orchestrator builds the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatusChange {
    pub execution_arn: String,
    /// The execution name: the job id.
    pub name: String,
    pub status: ExecutionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}
