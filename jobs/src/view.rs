//! The job as clients see it (getJob, startJob, listJobs): what a GPT needs to decide its next
//! call, with signed links instead of object keys, and one plain sentence for the model.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::job::{ExecutionRef, Job, JobError, JobStatus, Progress};

/// Inline results above this many characters are replaced by a note (responses must stay
/// under 100,000 characters; big results belong in files).
pub const MAX_INLINE_RESULT_CHARS: usize = 60_000;

/// Seconds a client should wait before polling again while a job runs.
pub const POLL_AFTER_SECONDS: u32 = 5;

/// A result file with a short-lived download link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    pub name: String,
    pub mime_type: String,
    pub size_bytes: u64,
    /// Signed download link; expires at `expiresAt`.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A job as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Progress,
    /// The job's answer (small JSON), once SUCCEEDED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub files: Vec<FileView>,
    /// The file links again, in the field ChatGPT uses to show files to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openai_file_response: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    pub execution: ExecutionRef,
    /// While the job is not terminal: seconds to wait before calling getJob again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_after_seconds: Option<u32>,
    /// One plain sentence saying what to do next.
    pub message: String,
}

impl JobView {
    /// Builds the view; `files` are the signed links, in the order of `job.files`.
    pub fn new(job: &Job, files: Vec<FileView>) -> JobView {
        let result = job.result.as_ref().map(|r| {
            let len = serde_json::to_string(r).map(|s| s.len()).unwrap_or(usize::MAX);
            if len > MAX_INLINE_RESULT_CHARS {
                serde_json::json!({
                    "truncated": true,
                    "note": format!("The result is {len} characters, too large to show inline; see the files."),
                })
            } else {
                r.clone()
            }
        });
        let openai_file_response =
            (!files.is_empty()).then(|| files.iter().map(|f| f.url.clone()).collect());
        JobView {
            job_id: job.job_id.clone(),
            job_type: job.job_type.clone(),
            status: job.status,
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
            progress: job.progress.clone(),
            result,
            message: message_for(job, files.len()),
            files,
            openai_file_response,
            error: job.error.clone(),
            execution: job.execution.clone(),
            poll_after_seconds: (!job.status.is_terminal()).then_some(POLL_AFTER_SECONDS),
        }
    }
}

/// The sentence for the model.
pub fn message_for(job: &Job, file_count: usize) -> String {
    let again = "Call getJob again with waitSeconds=20.";
    match job.status {
        JobStatus::Queued => format!("Queued; it starts in a moment. {again}"),
        JobStatus::Running => {
            let what = job.progress.message.trim();
            if what.is_empty() {
                format!("Still running ({}%). {again}", job.progress.percent)
            } else {
                format!(
                    "Still running: {} ({}%). {again}",
                    what.trim_end_matches('.'),
                    job.progress.percent
                )
            }
        }
        JobStatus::Succeeded => match file_count {
            0 => "Done. The answer is in `result`.".to_string(),
            1 => "Done. The answer is in `result`; 1 file is linked in `files`.".to_string(),
            n => format!("Done. The answer is in `result`; {n} files are linked in `files`."),
        },
        JobStatus::Failed => match &job.error {
            Some(e) => format!("Failed ({}): {}", e.code, e.message),
            None => "Failed.".to_string(),
        },
        JobStatus::Cancelled => "Cancelled; it will not run further.".to_string(),
        JobStatus::TimedOut => "Timed out before it finished.".to_string(),
    }
}

/// One event of a job's execution history, as getJobHistory returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionEvent {
    pub id: u64,
    pub timestamp: DateTime<Utc>,
    /// AWS's event type name, e.g. TaskStateEntered, TaskFailed, ExecutionSucceeded.
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_name: Option<String>,
    /// Input, output, error or cause, cut to a safe size.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// A page of a job's execution history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionHistory {
    pub job_id: String,
    pub events: Vec<ExecutionEvent>,
    /// Pass as `cursor` for the next page; absent on the last page (so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
