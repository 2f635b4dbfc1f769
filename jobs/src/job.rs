//! The job record and its lifecycle.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where a job is in its life. Terminal states are final.
///
/// ```text
/// QUEUED ──► RUNNING ──► SUCCEEDED | FAILED | CANCELLED | TIMED_OUT
///    └──────────────────► FAILED | CANCELLED
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::TimedOut,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// The states a job may be in for a move to `self` to be legal. Stores use this as the
    /// condition of their conditional write (`WHERE status IN (...)`), which is what keeps
    /// races (cancel vs finish, retried steps, replayed events) from moving a job backwards.
    pub fn legal_predecessors(self) -> &'static [JobStatus] {
        match self {
            JobStatus::Queued => &[],
            JobStatus::Running => &[JobStatus::Queued],
            JobStatus::Succeeded | JobStatus::TimedOut => &[JobStatus::Running],
            JobStatus::Failed | JobStatus::Cancelled => &[JobStatus::Queued, JobStatus::Running],
        }
    }

    pub fn can_move_to(self, next: JobStatus) -> bool {
        next.legal_predecessors().contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelled => "CANCELLED",
            JobStatus::TimedOut => "TIMED_OUT",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress as the steps report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// 0..=100.
    pub percent: u8,
    pub message: String,
}

/// A result file as stored on the job: `object` is the blob-store key, never shown to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFile {
    pub name: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub object: String,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// The workflow execution that runs a job. Its name is the job id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
}

/// A file ChatGPT attached to the request (`openaiFileIdRefs`). Its link lives 5 minutes, so
/// Register copies the file into the blob store at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiFileRef {
    pub name: String,
    pub id: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    pub download_link: String,
}

/// The job record, as every store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: String,
    pub owner: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    pub input: Value,
    #[serde(default)]
    pub progress: Progress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default)]
    pub files: Vec<JobFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub execution: ExecutionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The client's idempotency key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Hex SHA-256 of the canonical start request; same key + other body → 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub openai_file_id_refs: Vec<OpenAiFileRef>,
}

impl Job {
    /// A new QUEUED job with a fresh UUID v7 id (sortable by creation time).
    pub fn new(owner: &str, job_type: &str, input: Value, now: DateTime<Utc>) -> Job {
        let job_id = new_job_id();
        Job {
            execution: ExecutionRef {
                name: job_id.clone(),
                arn: None,
                console_url: None,
            },
            job_id,
            owner: owner.to_string(),
            job_type: job_type.to_string(),
            status: JobStatus::Queued,
            input,
            progress: Progress {
                percent: 0,
                message: "Queued".into(),
            },
            result: None,
            files: Vec::new(),
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            expires_at: None,
            idempotency_key: None,
            request_hash: None,
            openai_file_id_refs: Vec::new(),
        }
    }
}

/// A fresh job id: UUID v7, so ids sort by creation time. It is also the execution name.
pub fn new_job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether `s` looks like a job id (a UUID). Checked before any store lookup so a junk path
/// segment is a plain 404 and never reaches a query.
pub fn is_valid_job_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

/// What a status change writes besides the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransitionPatch {
    pub progress: Option<Progress>,
    pub result: Option<Value>,
    pub files: Option<Vec<JobFile>>,
    pub error: Option<JobError>,
    pub execution: Option<ExecutionRef>,
}

/// Applies a status change to `job` if legal (`to.legal_predecessors()`); returns whether it
/// did. What every store does inside its conditional write (memory, SQLite, DynamoDB).
pub fn apply_transition(
    job: &mut Job,
    to: JobStatus,
    patch: TransitionPatch,
    now: DateTime<Utc>,
) -> bool {
    if !job.status.can_move_to(to) {
        return false;
    }
    job.status = to;
    job.updated_at = now;
    if to.is_terminal() {
        job.finished_at = Some(now);
    }
    if let Some(p) = patch.progress {
        job.progress = p;
    }
    if let Some(r) = patch.result {
        job.result = Some(r);
    }
    if let Some(f) = patch.files {
        job.files = f;
    }
    if let Some(e) = patch.error {
        job.error = Some(e);
    }
    if let Some(x) = patch.execution {
        job.execution = x;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_final() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to} must be illegal");
            }
        }
    }

    #[test]
    fn legal_moves_match_the_design() {
        use JobStatus::*;
        let legal = [
            (Queued, Running),
            (Queued, Failed),
            (Queued, Cancelled),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Cancelled),
            (Running, TimedOut),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn status_round_trips_through_its_name() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                Value::String(s.as_str().into())
            );
        }
        assert_eq!(JobStatus::parse("running"), None);
    }

    #[test]
    fn job_ids_sort_by_creation() {
        let a = new_job_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_job_id();
        assert!(a < b);
        assert!(is_valid_job_id(&a));
        assert!(!is_valid_job_id("../etc/passwd"));
    }
}
