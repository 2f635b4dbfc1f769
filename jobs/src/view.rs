//! The job as clients see it (getJob, startJob, listJobs): what a GPT needs to decide its next
//! call, with signed links instead of object keys, and one plain sentence for the model.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::budget::{
    MAX_INLINE_RESULT_CHARS, MAX_OPENAI_FILE_BYTES, MAX_OPENAI_FILES, RESPONSE_BUDGET, clip,
    fit_prefix, json_len,
};
use crate::input::{InputRequest, InputRequestView};
use crate::job::{ExecutionRef, Job, JobError, JobStatus, Progress};

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
    /// The links of the files ChatGPT can take (no images or video, each at most 10 MB, at
    /// most 10), in the field it uses to show files to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openai_file_response: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    pub execution: ExecutionRef,
    /// While the job is not terminal: seconds to wait before calling getJob again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_after_seconds: Option<u32>,
    /// Set while the job waits for its owner's answer: ask the user, then send the answer
    /// (an object matching `requestedSchema`) to answerJobInput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_request: Option<InputRequestView>,
    /// One plain sentence saying what to do next.
    pub message: String,
}

impl JobView {
    /// Builds the view; `files` are the signed links, in the order of `job.files`. It fits
    /// the response budget: a result too large to show is a note (Complete keeps such a
    /// result as `result.json`), links that do not fit are counted in the message.
    pub fn new(job: &Job, files: Vec<FileView>) -> JobView {
        let result = job.result.as_ref().map(|r| {
            let len = json_len(r);
            if len > MAX_INLINE_RESULT_CHARS {
                serde_json::json!({
                    "truncated": true,
                    "note": format!("The result is {len} characters, too large to show here; it is in the files."),
                })
            } else {
                r.clone()
            }
        });
        let mut view = JobView {
            job_id: job.job_id.clone(),
            job_type: job.job_type.clone(),
            status: job.status,
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
            progress: Progress {
                percent: job.progress.percent,
                message: clip(&job.progress.message, 500),
            },
            result,
            message: String::new(),
            files,
            openai_file_response: None,
            error: job.error.clone(),
            execution: job.execution.clone(),
            poll_after_seconds: (!job.status.is_terminal()).then_some(POLL_AFTER_SECONDS),
            input_request: pending_request(job).map(InputRequestView::from),
        };
        let listed = view.files.len();
        let unlisted = view.fit_files(job);
        let (openai, left_out) = openai_files(&view.files);
        view.openai_file_response = (!openai.is_empty()).then_some(openai);
        view.message = message_for(job, listed, unlisted, &left_out);
        view
    }

    /// Drops the file links that do not fit the budget (both copies of each); returns how
    /// many were dropped.
    fn fit_files(&mut self, job: &Job) -> usize {
        let before = self.files.len();
        if before == 0 {
            // No link to drop: skip measuring the view (a serialisation of all of it).
            return 0;
        }
        // Each link shows twice (files and openaiFileResponse); the message takes ~400.
        let rest = json_len(&JobView {
            files: Vec::new(),
            ..self.clone()
        }) + 400
            + job.error.as_ref().map_or(0, |e| e.message.len());
        let mut doubled: Vec<(FileView, String)> = self
            .files
            .drain(..)
            .map(|f| {
                let url = f.url.clone();
                (f, url)
            })
            .collect();
        fit_prefix(&mut doubled, rest, RESPONSE_BUDGET);
        self.files = doubled.into_iter().map(|(f, _)| f).collect();
        before - self.files.len()
    }
}

/// The links ChatGPT can take, and the names of the files left out with the reason.
fn openai_files(files: &[FileView]) -> (Vec<String>, Vec<String>) {
    let mut links = Vec::new();
    let mut left_out = Vec::new();
    for f in files {
        let kind = f.mime_type.split('/').next().unwrap_or_default();
        let why = if kind == "image" || kind == "video" {
            Some(format!("{} ({kind})", f.name))
        } else if f.size_bytes > MAX_OPENAI_FILE_BYTES {
            Some(format!("{} (over 10 MB)", f.name))
        } else if links.len() >= MAX_OPENAI_FILES {
            Some(format!("{} (past the first 10)", f.name))
        } else {
            None
        };
        match why {
            Some(w) => left_out.push(w),
            None => links.push(f.url.clone()),
        }
    }
    (links, left_out)
}

/// The sentence for the model: what to do next, and what of the files it cannot take.
pub fn message_for(job: &Job, listed: usize, unlisted: usize, left_out: &[String]) -> String {
    let mut m = status_message(job, listed + unlisted);
    if unlisted > 0 {
        m.push_str(&format!(
            " {unlisted} more file(s) are not listed here, to keep the answer short."
        ));
    }
    if !left_out.is_empty() {
        let names = clip(&left_out.join(", "), 300);
        m.push_str(&format!(
            " Only in `files`, not in openaiFileResponse: {names}; give the user their links."
        ));
    }
    m
}

/// The request a job waits for, if it still runs (a request left on a job that ended is
/// moot: its Task's token answers nothing).
pub fn pending_request(job: &Job) -> Option<&InputRequest> {
    job.input_request
        .as_ref()
        .filter(|_| !job.status.is_terminal())
}

fn status_message(job: &Job, file_count: usize) -> String {
    let again = "Call getJob again with waitSeconds=20.";
    if let Some(r) = pending_request(job) {
        return format!(
            "Waiting for an answer: {} Ask the user, then call answerJobInput with an object matching inputRequest.requestedSchema.",
            clip(&r.message, 500)
        );
    }
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
            Some(e) => format!("Failed ({}): {}", e.code, clip(&e.message, 500)),
            None => "Failed.".to_string(),
        },
        JobStatus::Cancelled => "Cancelled; it will not run further.".to_string(),
        JobStatus::TimedOut => "Timed out before it finished.".to_string(),
    }
}

/// A job as listJobs shows it: where it is, not what it made (getJob has the result and the
/// file links), so a page of them stays small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    pub job_id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Progress,
    /// How many result files it has (links: getJob).
    pub file_count: usize,
    /// True while the job waits for its owner's answer (getJob shows the request).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub input_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// One short sentence.
    pub message: String,
}

impl JobSummary {
    pub fn new(job: &Job) -> JobSummary {
        let input_required = pending_request(job).is_some();
        let message = match job.status {
            _ if input_required => {
                "Waiting for an answer; call getJob to see the question.".to_string()
            }
            JobStatus::Succeeded => "Done; call getJob for the result and files.".to_string(),
            JobStatus::Queued | JobStatus::Running => {
                "Not finished; call getJob with waitSeconds=20.".to_string()
            }
            _ => clip(&status_message(job, job.files.len()), 200),
        };
        JobSummary {
            job_id: job.job_id.clone(),
            job_type: job.job_type.clone(),
            status: job.status,
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
            progress: Progress {
                percent: job.progress.percent,
                message: clip(&job.progress.message, 200),
            },
            file_count: job.files.len(),
            input_required,
            error: job.error.as_ref().map(|e| JobError {
                code: clip(&e.code, 100),
                message: clip(&e.message, 300),
            }),
            message,
        }
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
