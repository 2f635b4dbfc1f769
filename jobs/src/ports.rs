//! The three ports the domain talks to. Adapters implement them: `longhaul-local` (SQLite,
//! files, the embedded engine) and `longhaul-aws` (DynamoDB, S3, Step Functions).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::job::{ExecutionRef, Job, JobStatus, Progress, TransitionPatch};

/// A store failure that is not the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes now (disk full, locked, read-only). Callers answer 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

/// Outcome of [`JobStore::create`].
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    /// The job (and its idempotency record, if it has a key) was written.
    Created,
    /// The owner already used this idempotency key: nothing was written; here is that job.
    IdempotencyKeyExists(Box<Job>),
}

/// Outcome of a conditional status change.
#[derive(Debug, Clone, PartialEq)]
pub enum TransitionOutcome {
    /// The write happened; the job as it is now.
    Applied(Box<Job>),
    /// The job was not in a legal predecessor state; nothing was written; the job as it is.
    Rejected(Box<Job>),
    NotFound,
}

/// Filters and page of [`JobStore::list`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub status: Option<JobStatus>,
    pub job_type: Option<String>,
    /// 1..=100.
    pub limit: usize,
    /// The last job id of the previous page (ids sort by creation time, newest first).
    pub after_job_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Set when there may be more: the job id to pass as `after_job_id`.
    pub next_after_job_id: Option<String>,
}

impl JobPage {
    /// A page of `limit` jobs from up to `limit + 1` read in order: the extra one only says
    /// that there is more.
    pub fn from_overfetch(mut jobs: Vec<Job>, limit: usize) -> JobPage {
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next_after_job_id = if more {
            jobs.last().map(|j| j.job_id.clone())
        } else {
            None
        };
        JobPage {
            jobs,
            next_after_job_id,
        }
    }
}

/// Where jobs live: SQLite locally, DynamoDB on AWS.
///
/// Every status change is conditional on the current status being one of
/// `to.legal_predecessors()`; a store must never move a job backwards or overwrite a terminal
/// status.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Writes a new job and, when `job.idempotency_key` is set, its idempotency record
    /// `(owner, key) → job_id`, both or neither.
    async fn create(&self, job: &Job) -> Result<CreateOutcome, StoreError>;

    async fn get(&self, job_id: &str) -> Result<Option<Job>, StoreError>;

    /// The owner's job started with this idempotency key, if any.
    async fn find_by_idempotency_key(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<Job>, StoreError>;

    /// The owner's jobs, newest first.
    async fn list(&self, owner: &str, query: &ListQuery) -> Result<JobPage, StoreError>;

    /// QUEUED or RUNNING jobs of this owner (for quotas).
    async fn count_active(&self, owner: &str) -> Result<usize, StoreError>;

    /// Every QUEUED or RUNNING job, of every owner (to time out those past their type's
    /// limit), at most `limit`, oldest first.
    async fn active_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError>;

    /// Conditional status change to `to`, writing `patch` with it; sets `finishedAt` when
    /// `to` is terminal, `updatedAt` always.
    async fn transition(
        &self,
        job_id: &str,
        to: JobStatus,
        patch: TransitionPatch,
        now: DateTime<Utc>,
    ) -> Result<TransitionOutcome, StoreError>;

    /// Progress of a RUNNING (or QUEUED) job; ignored (Ok(false)) when the job is terminal.
    async fn set_progress(
        &self,
        job_id: &str,
        progress: &Progress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records the execution of a job that is not terminal yet (arn, console URL).
    async fn set_execution(
        &self,
        job_id: &str,
        execution: &ExecutionRef,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// A subscription to changes of one job, taken *before* reading it so no change is
    /// missed. Stores that can push (local) wake the waiter on the write itself; others poll.
    fn watch(&self, job_id: &str) -> JobWatch;
}

/// Wakes a long poll when a job changes.
pub enum JobWatch {
    /// Woken by the write itself.
    Push(tokio::sync::watch::Receiver<u64>),
    /// No push available (e.g. DynamoDB): re-read after this interval.
    Poll(Duration),
}

impl JobWatch {
    /// Returns when the job may have changed. Never returns early for the push kind unless
    /// the sender is gone (then it behaves like a 1 s poll).
    pub async fn changed(&mut self) {
        match self {
            JobWatch::Push(rx) => {
                if rx.changed().await.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            JobWatch::Poll(every) => tokio::time::sleep(*every).await,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("object not found: {0}")]
    NotFound(String),
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("range {start}..{end} is outside the object ({size} bytes)")]
    InvalidRange { start: u64, end: u64, size: u64 },
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    #[error("blob store error: {0}")]
    Other(String),
}

/// A URL that grants one operation on one object until `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlobMeta {
    pub size_bytes: u64,
    pub content_type: Option<String>,
}

/// Where files live: a directory locally, S3 on AWS. Keys are `/`-separated relative paths
/// made of `[A-Za-z0-9._-]` segments, never `..`, never absolute.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes the object whole (atomically: readers see the old object or the new one).
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), BlobError>;

    /// Bytes `range` (end exclusive) of the object, or all of it.
    async fn get(&self, key: &str, range: Option<std::ops::Range<u64>>)
    -> Result<Bytes, BlobError>;

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError>;

    /// Writes an object from a stream of chunks, at most `max_bytes`, atomically. Returns
    /// the size, or `Ok(None)` when the stream was longer (then nothing is kept). The
    /// default collects the stream in memory; stores that can stream override it.
    async fn put_stream(
        &self,
        key: &str,
        mut chunks: futures_core::stream::BoxStream<'_, Result<Bytes, String>>,
        content_type: &str,
        max_bytes: u64,
    ) -> Result<Option<u64>, BlobError> {
        use futures_util::StreamExt;
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(BlobError::Other)?;
            if (buf.len() + chunk.len()) as u64 > max_bytes {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk);
        }
        let n = buf.len() as u64;
        self.put(key, buf.freeze(), content_type).await?;
        Ok(Some(n))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError>;

    /// The objects whose keys start with `prefix`, in key order, at most `limit`.
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<(String, BlobMeta)>, BlobError>;

    /// Where a program outside longhaul's process (a Python or Node step) finds the object:
    /// `file:///…` on one machine, `s3://bucket/key` on AWS.
    fn uri(&self, key: &str) -> String;

    /// A URL to download the object, served with this file name and content type.
    async fn presign_get(
        &self,
        key: &str,
        file_name: &str,
        content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl, BlobError>;

    /// A URL to upload the object with one PUT of at most `max_bytes`.
    async fn presign_put(
        &self,
        key: &str,
        max_bytes: u64,
        content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl, BlobError>;
}

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("execution not found: {0}")]
    NotFound(String),
    #[error("orchestrator unavailable: {0}")]
    Unavailable(String),
    #[error("orchestrator error: {0}")]
    Other(String),
}

/// Why an answer to a task token was not taken (Step Functions' names).
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The token is not one the orchestrator issues (InvalidToken).
    #[error("invalid task token: {0}")]
    InvalidToken(String),
    /// No task waits for this token: unknown, already answered, or its execution ended
    /// (TaskDoesNotExist).
    #[error("no task waits for this task token: {0}")]
    TaskDoesNotExist(String),
    /// The task timed out before the answer (TaskTimedOut).
    #[error("the task of this task token timed out: {0}")]
    TaskTimedOut(String),
    /// The answer itself is refused (InvalidOutput, a too-long error or cause).
    #[error("invalid answer: {0}")]
    Invalid(String),
    #[error(transparent)]
    Orchestrator(#[from] OrchestratorError),
}

/// What runs the workflow: the embedded engine locally, Step Functions on AWS.
#[async_trait]
pub trait Orchestrator: Send + Sync + 'static {
    /// Starts the job's execution, named by the job id, with the workflow input
    /// [`crate::workflow::WorkflowInput`]. Starting an execution that already exists for
    /// this same job is success (a retried start), and returns its reference.
    async fn start(&self, job: &Job) -> Result<ExecutionRef, OrchestratorError>;

    /// Stops the execution (ABORTED). Stopping one that already ended is success.
    async fn stop(
        &self,
        execution: &ExecutionRef,
        error: &str,
        cause: &str,
    ) -> Result<(), OrchestratorError>;

    /// The execution's events in order (GetExecutionHistory): at most `limit` of them,
    /// after the event with id `after_id`.
    async fn history(
        &self,
        execution: &ExecutionRef,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<crate::view::ExecutionEvent>, OrchestratorError>;

    /// SendTaskSuccess: the Task waiting for `token` (`.waitForTaskToken`) succeeds with
    /// `output`; the token is spent.
    async fn send_task_success(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> Result<(), CallbackError>;

    /// SendTaskFailure: the Task waiting for `token` fails with `error` (the name its Retry
    /// and Catch match; "" for none) and `cause`.
    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError>;

    /// SendTaskHeartbeat: the Task waiting for `token` is alive (its HeartbeatSeconds start
    /// again).
    async fn send_task_heartbeat(&self, token: &str) -> Result<(), CallbackError>;
}

/// Checks an object key: `/`-separated segments of `[A-Za-z0-9._-]`, no `.` or `..`
/// segment, nothing empty, not absolute, at most 512 bytes.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let bad = |reason: &str| {
        Err(BlobError::InvalidKey {
            key: key.chars().take(100).collect(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() || key.len() > 512 {
        return bad("must be 1 to 512 bytes");
    }
    if key.starts_with('/') {
        return bad("must be relative");
    }
    for seg in key.split('/') {
        if seg.is_empty() {
            return bad("has an empty segment");
        }
        if seg == "." || seg == ".." {
            return bad("has a '.' or '..' segment");
        }
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return bad("may hold only letters, digits, '.', '-', '_' and '/'");
        }
    }
    Ok(())
}

/// `Content-Disposition: attachment` with the name both as ASCII and RFC 8187 UTF-8: what a
/// [`BlobStore::presign_get`] link is served with.
pub fn attachment_disposition(file_name: &str) -> String {
    let ascii: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = url::form_urlencoded::byte_serialize(file_name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_safe_and_keep_unicode() {
        assert_eq!(
            attachment_disposition("report.csv"),
            "attachment; filename=\"report.csv\"; filename*=UTF-8''report.csv"
        );
        let h = attachment_disposition("r\"é\n.csv");
        assert!(h.starts_with("attachment; filename=\"r__"), "{h}");
        assert!(h.contains("UTF-8''r%22%C3%A9%0A.csv"), "{h}");
    }
}
