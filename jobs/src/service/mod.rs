//! JobService: the use cases (start, get with long poll, list, cancel, history, job types,
//! uploads) over the ports. The HTTP API, MCP and the CLI call only this. Around it:
//! `error` (ServiceError → API codes), `sources` (file inputs and their checks),
//! `idempotency` (keys and the request hash), `cursor` (the opaque page cursors).

mod cursor;
mod error;
mod idempotency;
mod sources;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub use error::ServiceError;
pub use sources::{FileSource, upload_prefix, validate_file_name};

use crate::budget::{RESPONSE_BUDGET, fit_prefix};
use crate::job::{Job, JobError, JobStatus, OpenAiFileRef, TransitionPatch, is_valid_job_id};
use crate::ports::{
    BlobStore, CreateOutcome, JobStore, ListQuery, Orchestrator, OrchestratorError,
    TransitionOutcome,
};
use crate::types::{JobTypeInfo, JobTypes};
use crate::view::{ExecutionHistory, FileView, JobSummary, JobView};

mod callbacks;
mod input;
pub use callbacks::FailTaskRequest;
pub use input::{ANSWER_CANCELLED, ANSWER_DECLINED};

/// Limits and lifetimes of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// QUEUED + RUNNING jobs one owner may have at once.
    pub max_active_jobs_per_owner: usize,
    /// Lifetime of result-file links.
    pub file_url_ttl: Duration,
    /// Lifetime of upload links.
    pub upload_url_ttl: Duration,
    /// Largest upload accepted.
    pub max_upload_bytes: u64,
    /// How long job records are kept (TTL), if limited.
    pub job_retention: Option<Duration>,
    /// Longest long poll.
    pub max_wait: Duration,
    /// Lets URL and file-ref downloads reach http, loopback and private addresses (local
    /// testing only).
    pub allow_insecure_downloads: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_active_jobs_per_owner: 20,
            file_url_ttl: Duration::from_secs(15 * 60),
            upload_url_ttl: Duration::from_secs(15 * 60),
            max_upload_bytes: 1 << 30,
            job_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            max_wait: Duration::from_secs(25),
            allow_insecure_downloads: false,
        }
    }
}

/// Body of startJob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartJobRequest {
    /// A job type from listJobTypes.
    #[serde(rename = "type")]
    pub job_type: String,
    /// The type's input, as its inputSchema describes.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Makes a retried startJob return the same job instead of starting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Files attached in ChatGPT; a job input refers to one as `{"fileRef": INDEX}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openai_file_id_refs: Option<Vec<OpenAiFileRef>>,
}

/// Query of listJobs. An empty value is no value (`?status=` filters nothing).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default, deserialize_with = "status_param")]
    pub status: Option<JobStatus>,
    #[serde(default, rename = "type", deserialize_with = "string_param")]
    pub job_type: Option<String>,
    #[serde(default, deserialize_with = "count_param")]
    pub limit: Option<u32>,
    #[serde(default, deserialize_with = "string_param")]
    pub cursor: Option<String>,
}

/// Query of getJobHistory.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    #[serde(default, deserialize_with = "string_param")]
    pub cursor: Option<String>,
    #[serde(default, deserialize_with = "count_param")]
    pub limit: Option<u32>,
}

/// Query of getJob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetParams {
    /// Seconds to hold the request until the job ends (0 to `max_wait`).
    #[serde(default, deserialize_with = "count_param")]
    pub wait_seconds: Option<u32>,
}

fn string_param<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

fn count_param<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    match string_param(d)? {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} is not a whole number"))),
    }
}

fn status_param<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JobStatus>, D::Error> {
    use serde::de::Error;
    match string_param(d)? {
        None => Ok(None),
        Some(s) => JobStatus::parse(s.trim()).map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "status must be one of {}",
                JobStatus::ALL.map(|s| s.as_str()).join(", ")
            ))
        }),
    }
}

/// Answer of listJobs: summaries (getJob has each job's result and file links).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Body of createUpload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUploadRequest {
    /// File name, e.g. `sales.csv`.
    pub name: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// Answer of createUpload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadTicket {
    /// Use as a job input source: `{"object": "..."}`.
    pub object: String,
    /// PUT the file's bytes here before `expiresAt`.
    pub upload_url: String,
    pub expires_at: DateTime<Utc>,
}

/// The job service.
pub struct JobService {
    store: Arc<dyn JobStore>,
    blobs: Arc<dyn BlobStore>,
    orchestrator: Arc<dyn Orchestrator>,
    types: JobTypes,
    config: ServiceConfig,
}

const MAX_LIST_LIMIT: u32 = 100;
const DEFAULT_LIST_LIMIT: u32 = 20;
const MAX_HISTORY_LIMIT: u32 = 1000;
const DEFAULT_HISTORY_LIMIT: u32 = 100;

impl JobService {
    pub fn new(
        store: Arc<dyn JobStore>,
        blobs: Arc<dyn BlobStore>,
        orchestrator: Arc<dyn Orchestrator>,
        types: JobTypes,
        config: ServiceConfig,
    ) -> JobService {
        JobService {
            store,
            blobs,
            orchestrator,
            types,
            config,
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    pub fn job_types(&self) -> Vec<JobTypeInfo> {
        self.types.infos()
    }

    /// startJob. Returns the job and whether it was created now (`false`: an idempotent
    /// replay of an earlier start). Nothing is written for a rejected request.
    /// Checks a job's type and input as startJob would (schedules are checked at start-up).
    pub fn validate_input(&self, job_type: &str, input: &Value) -> Result<Value, String> {
        let t = self.types.get(job_type).ok_or_else(|| {
            format!(
                "unknown job type {job_type:?}; known types: {}",
                self.types.names().join(", ")
            )
        })?;
        t.validate(input)
    }

    pub async fn start(
        &self,
        owner: &str,
        req: StartJobRequest,
    ) -> Result<(JobView, bool), ServiceError> {
        let now = Utc::now();
        let job_type = self.types.get(&req.job_type).ok_or_else(|| {
            ServiceError::BadRequest(format!(
                "unknown job type {:?}; known types: {}",
                req.job_type,
                self.types.names().join(", ")
            ))
        })?;
        let input = job_type
            .validate(&req.input)
            .map_err(ServiceError::BadRequest)?;
        if let Some(key) = &req.idempotency_key {
            idempotency::validate_idempotency_key(key)?;
        }
        let refs = req.openai_file_id_refs.clone().unwrap_or_default();
        sources::validate_file_refs(&refs)?;
        self.check_sources(owner, job_type, &input, &refs).await?;
        let request_hash = idempotency::request_hash(&req);

        if let Some(key) = &req.idempotency_key
            && let Some(existing) = self.store.find_by_idempotency_key(owner, key).await?
        {
            return self.replay(existing, &request_hash).await;
        }

        let active = self.store.count_active(owner).await?;
        if active >= self.config.max_active_jobs_per_owner {
            return Err(ServiceError::TooManyRequests {
                message: format!(
                    "you have {active} jobs queued or running (the limit is {}); wait for one to finish",
                    self.config.max_active_jobs_per_owner
                ),
                retry_after_seconds: 30,
            });
        }

        let mut job = Job::new(owner, &req.job_type, input, now);
        job.idempotency_key = req.idempotency_key.clone();
        job.request_hash = Some(request_hash.clone());
        job.openai_file_id_refs = refs;
        job.expires_at = self
            .config
            .job_retention
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| now + d);

        match self.store.create(&job).await? {
            CreateOutcome::Created => {}
            CreateOutcome::IdempotencyKeyExists(existing) => {
                return self.replay(*existing, &request_hash).await;
            }
        }
        let job = self.launch(job).await?;
        Ok((self.view(&job).await?, true))
    }

    /// An idempotent replay: same body → the same job (started again if an earlier start
    /// was cut off before its execution began); other body → 409.
    async fn replay(
        &self,
        existing: Job,
        request_hash: &str,
    ) -> Result<(JobView, bool), ServiceError> {
        if existing.request_hash.as_deref() != Some(request_hash) {
            return Err(ServiceError::Conflict(format!(
                "idempotencyKey was already used for job {} with a different request",
                existing.job_id
            )));
        }
        let job = if existing.status == JobStatus::Queued && existing.execution.arn.is_none() {
            self.launch(existing).await?
        } else {
            existing
        };
        Ok((self.view(&job).await?, false))
    }

    /// Starts a job that was accepted but whose execution never began (the process stopped
    /// between the two). Used at start-up; a no-op for any other job.
    pub async fn resume_queued(&self, job: Job) -> Result<JobView, ServiceError> {
        let job = if job.status == JobStatus::Queued && job.execution.arn.is_none() {
            self.launch(job).await?
        } else {
            job
        };
        self.view(&job).await
    }

    /// Starts the job's execution. Starting is idempotent per job, so this is safe to repeat.
    async fn launch(&self, mut job: Job) -> Result<Job, ServiceError> {
        match self.orchestrator.start(&job).await {
            Ok(execution) => {
                self.store
                    .set_execution(&job.job_id, &execution, Utc::now())
                    .await?;
                if let Some(current) = self.store.get(&job.job_id).await? {
                    job = current;
                } else {
                    job.execution = execution;
                }
                Ok(job)
            }
            Err(e) => {
                tracing::error!(job_id = %job.job_id, error = %e, "could not start execution");
                // Never leave a job QUEUED with nothing to run it.
                let patch = TransitionPatch {
                    error: Some(JobError {
                        code: "start_failed".into(),
                        message: format!("the workflow could not be started: {e}"),
                    }),
                    ..Default::default()
                };
                let _ = self
                    .store
                    .transition(&job.job_id, JobStatus::Failed, patch, Utc::now())
                    .await;
                Err(match e {
                    OrchestratorError::Unavailable(m) => ServiceError::Unavailable {
                        message: format!("the workflow engine is unavailable ({m}); try again"),
                        retry_after_seconds: 5,
                    },
                    other => ServiceError::Internal(other.to_string()),
                })
            }
        }
    }

    /// Reads one of the owner's jobs; another owner's job is "not found".
    pub(crate) async fn owned_job(&self, owner: &str, job_id: &str) -> Result<Job, ServiceError> {
        if !is_valid_job_id(job_id) {
            return Err(ServiceError::job_not_found(job_id));
        }
        match self.store.get(job_id).await? {
            Some(job) if job.owner == owner => Ok(job),
            _ => Err(ServiceError::job_not_found(job_id)),
        }
    }

    /// getJob with `waitSeconds`: checked, then [`JobService::get`].
    pub async fn get_with(
        &self,
        owner: &str,
        job_id: &str,
        params: GetParams,
    ) -> Result<JobView, ServiceError> {
        let wait = u64::from(params.wait_seconds.unwrap_or(0));
        if wait > self.config.max_wait.as_secs() {
            return Err(ServiceError::BadRequest(format!(
                "waitSeconds must be an integer from 0 to {}",
                self.config.max_wait.as_secs()
            )));
        }
        self.get(owner, job_id, Duration::from_secs(wait)).await
    }

    /// getJob; with `wait` > 0, returns as soon as the job is terminal or waits for an
    /// answer, or `wait` has passed (at most the service's longest long poll).
    pub async fn get(
        &self,
        owner: &str,
        job_id: &str,
        wait: Duration,
    ) -> Result<JobView, ServiceError> {
        let wait = wait.min(self.config.max_wait);
        if wait.is_zero() {
            // No long poll: nothing to be woken by, so no change subscription either.
            let job = self.owned_job(owner, job_id).await?;
            return self.view(&job).await;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Subscribe before reading, so a change between the read and the wait wakes us.
            let mut watch = self.store.watch(job_id);
            let job = self.owned_job(owner, job_id).await?;
            // A question for the user ends the wait too: the job cannot go on without them.
            let waits_for_answer = crate::view::pending_request(&job).is_some();
            if job.status.is_terminal()
                || waits_for_answer
                || tokio::time::Instant::now() >= deadline
            {
                return self.view(&job).await;
            }
            if tokio::time::timeout_at(deadline, watch.changed())
                .await
                .is_err()
            {
                let job = self.owned_job(owner, job_id).await?;
                return self.view(&job).await;
            }
        }
    }

    /// getJobHistory: the events of the job's execution, oldest first, a page at a time —
    /// `limit` events, or fewer when more would not fit the response budget.
    pub async fn history(
        &self,
        owner: &str,
        job_id: &str,
        params: &HistoryParams,
    ) -> Result<ExecutionHistory, ServiceError> {
        let limit = checked_limit(params.limit, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)?;
        let after = match &params.cursor {
            None => 0,
            Some(c) => cursor::decode_history_cursor(c).ok_or_else(|| {
                ServiceError::BadRequest("cursor is not one this service returned".into())
            })?,
        };
        let job = self.owned_job(owner, job_id).await?;
        if job.execution.arn.is_none() {
            return Ok(ExecutionHistory {
                job_id: job.job_id,
                events: Vec::new(),
                next_cursor: None,
            });
        }
        let mut events = self
            .orchestrator
            .history(&job.execution, after, limit + 1)
            .await
            .map_err(|e| match e {
                OrchestratorError::NotFound(_) => {
                    ServiceError::NotFound(format!("job {job_id} has no execution history"))
                }
                OrchestratorError::Unavailable(m) => ServiceError::Unavailable {
                    message: m,
                    retry_after_seconds: 5,
                },
                OrchestratorError::Other(m) => ServiceError::Internal(m),
            })?;
        let mut more = events.len() > limit;
        events.truncate(limit);
        more |= fit_prefix(&mut events, job.job_id.len() + 200, RESPONSE_BUDGET);
        let next_cursor = if more {
            events.last().map(|e| cursor::encode_history_cursor(e.id))
        } else {
            None
        };
        Ok(ExecutionHistory {
            job_id: job.job_id,
            events,
            next_cursor,
        })
    }

    /// listJobs: the owner's jobs, newest first, as summaries — `limit` of them, or fewer
    /// when more would not fit the response budget (the cursor goes on from the last one).
    pub async fn list(&self, owner: &str, params: &ListParams) -> Result<JobList, ServiceError> {
        if let Some(t) = &params.job_type
            && self.types.get(t).is_none()
        {
            return Err(ServiceError::BadRequest(format!(
                "unknown job type {t:?}; known types: {}",
                self.types.names().join(", ")
            )));
        }
        let limit = checked_limit(params.limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
        let after_job_id = match &params.cursor {
            None => None,
            Some(c) => Some(cursor::decode_cursor(c).ok_or_else(|| {
                ServiceError::BadRequest("cursor is not one this service returned".into())
            })?),
        };
        let page = self
            .store
            .list(
                owner,
                &ListQuery {
                    status: params.status,
                    job_type: params.job_type.clone(),
                    limit,
                    after_job_id,
                },
            )
            .await?;
        let mut jobs: Vec<JobSummary> = page.jobs.iter().map(JobSummary::new).collect();
        let cut = fit_prefix(&mut jobs, 200, RESPONSE_BUDGET);
        let next = if cut {
            jobs.last().map(|j| j.job_id.clone())
        } else {
            page.next_after_job_id
        };
        Ok(JobList {
            jobs,
            next_cursor: next.as_deref().map(cursor::encode_cursor),
        })
    }

    /// cancelJob: the job becomes CANCELLED (a conditional write, so it wins or loses
    /// cleanly against completion), then its execution is stopped.
    pub async fn cancel(&self, owner: &str, job_id: &str) -> Result<JobView, ServiceError> {
        let job = self.owned_job(owner, job_id).await?;
        if job.status.is_terminal() {
            return Err(ServiceError::Conflict(format!(
                "job {job_id} is already {}",
                job.status
            )));
        }
        let patch = TransitionPatch {
            error: Some(JobError {
                code: "cancelled".into(),
                message: "cancelled by the user".into(),
            }),
            ..Default::default()
        };
        let job = match self
            .store
            .transition(job_id, JobStatus::Cancelled, patch, Utc::now())
            .await?
        {
            TransitionOutcome::Applied(job) => *job,
            TransitionOutcome::Rejected(job) => {
                return Err(ServiceError::Conflict(format!(
                    "job {job_id} is already {}",
                    job.status
                )));
            }
            TransitionOutcome::NotFound => return Err(ServiceError::job_not_found(job_id)),
        };
        if let Err(e) = self
            .orchestrator
            .stop(&job.execution, "JobCancelled", "cancelled by the user")
            .await
        {
            // The job is CANCELLED either way; its steps' writes are refused from now on.
            tracing::warn!(job_id, error = %e, "could not stop the execution of a cancelled job");
        }
        self.view(&job).await
    }

    /// createUpload: a key under the owner's upload prefix and a signed PUT URL for it.
    pub async fn create_upload(
        &self,
        owner: &str,
        req: &CreateUploadRequest,
    ) -> Result<UploadTicket, ServiceError> {
        let name = validate_file_name(&req.name)?;
        if req.size_bytes == 0 {
            return Err(ServiceError::BadRequest(
                "sizeBytes must be at least 1".into(),
            ));
        }
        if req.size_bytes > self.config.max_upload_bytes {
            return Err(ServiceError::PayloadTooLarge(format!(
                "sizeBytes {} is over the upload limit of {} bytes",
                req.size_bytes, self.config.max_upload_bytes
            )));
        }
        let mime = req
            .mime_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        if mime.len() > 100 || !mime.chars().all(|c| c.is_ascii_graphic()) || !mime.contains('/') {
            return Err(ServiceError::BadRequest(
                "mimeType must look like type/subtype".into(),
            ));
        }
        let object = format!("{}/{}/{}", upload_prefix(owner), uuid::Uuid::now_v7(), name);
        let url = self
            .blobs
            .presign_put(&object, req.size_bytes, &mime, self.config.upload_url_ttl)
            .await?;
        Ok(UploadTicket {
            object,
            upload_url: url.url,
            expires_at: url.expires_at,
        })
    }

    /// Ends the jobs that ran past their type's `timeoutSeconds`: RUNNING ones become
    /// TIMED_OUT (QUEUED ones FAILED), and their executions are stopped. Run every few
    /// seconds on one machine, every minute on AWS (one workflow serves every type, so the
    /// workflow's own time limit is the longest type's). Returns how many it ended.
    pub async fn time_out_overdue(&self, now: DateTime<Utc>) -> Result<usize, ServiceError> {
        let mut ended = 0;
        for job in self.store.active_jobs(10_000).await? {
            let Some(t) = self.types.get(&job.job_type) else {
                continue;
            };
            let limit = chrono::Duration::seconds(i64::from(t.timeout_seconds));
            if now < job.created_at + limit {
                continue;
            }
            let error = JobError {
                code: "timed_out".into(),
                message: format!(
                    "the job ran past its type's time limit ({} s)",
                    t.timeout_seconds
                ),
            };
            let to = if job.status == JobStatus::Running {
                JobStatus::TimedOut
            } else {
                JobStatus::Failed
            };
            let patch = TransitionPatch {
                error: Some(error.clone()),
                ..Default::default()
            };
            if let TransitionOutcome::Applied(job) =
                self.store.transition(&job.job_id, to, patch, now).await?
            {
                ended += 1;
                tracing::info!(job_id = %job.job_id, job_type = %job.job_type, "timed out");
                if let Err(e) = self
                    .orchestrator
                    .stop(&job.execution, "States.Timeout", &error.message)
                    .await
                {
                    // The job is ended either way; its steps' writes are refused from now on.
                    tracing::warn!(job_id = %job.job_id, error = %e, "could not stop the execution of a timed-out job");
                }
            }
        }
        Ok(ended)
    }

    /// The client's view of a job, with fresh signed links for its files.
    pub async fn view(&self, job: &Job) -> Result<JobView, ServiceError> {
        let mut files = Vec::with_capacity(job.files.len());
        for f in &job.files {
            let url = self
                .blobs
                .presign_get(&f.object, &f.name, &f.mime_type, self.config.file_url_ttl)
                .await?;
            files.push(FileView {
                name: f.name.clone(),
                mime_type: f.mime_type.clone(),
                size_bytes: f.size_bytes,
                url: url.url,
                expires_at: url.expires_at,
            });
        }
        Ok(JobView::new(job, files))
    }
}

/// `limit` as given (1 to `max`), or `default`.
fn checked_limit(limit: Option<u32>, default: u32, max: u32) -> Result<usize, ServiceError> {
    match limit {
        None => Ok(default as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(_) => Err(ServiceError::BadRequest(format!(
            "limit must be an integer from 1 to {max}"
        ))),
    }
}
