//! JobService: the use cases (start, get with long poll, list, cancel, job types, uploads)
//! over the ports. The HTTP API and the CLI call only this.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::job::{
    ExecutionRef, Job, JobError, JobStatus, OpenAiFileRef, TransitionPatch, is_valid_job_id,
};
use crate::ports::{
    BlobError, BlobStore, CreateOutcome, JobStore, ListQuery, Orchestrator, OrchestratorError,
    StoreError, TransitionOutcome,
};
use crate::types::{JobType, JobTypeInfo, JobTypes};
use crate::view::{ExecutionHistory, FileView, JobView};

mod callbacks;
pub use callbacks::FailTaskRequest;

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

/// Errors the service returns; each maps to one API error code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
    },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_seconds: u32,
    },
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The API error code (DESIGN.md).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::BadRequest(_) => "bad_request",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::PayloadTooLarge(_) => "payload_too_large",
            ServiceError::TooManyRequests { .. } => "too_many_requests",
            ServiceError::Unavailable { .. } => "unavailable",
            ServiceError::Internal(_) => "internal",
        }
    }

    fn job_not_found(job_id: &str) -> ServiceError {
        ServiceError::NotFound(format!("no job {job_id}"))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ServiceError::Unavailable {
                message: format!("the job store cannot take requests now ({m}); try again"),
                retry_after_seconds: 5,
            },
            StoreError::Other(m) => ServiceError::Internal(m),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Unavailable(m) => ServiceError::Unavailable {
                message: format!("file storage cannot take requests now ({m}); try again"),
                retry_after_seconds: 5,
            },
            BlobError::InvalidKey { .. } | BlobError::InvalidRange { .. } => {
                ServiceError::BadRequest(e.to_string())
            }
            BlobError::NotFound(k) => ServiceError::NotFound(format!("no object {k}")),
            BlobError::Other(m) => ServiceError::Internal(m),
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

/// Query of listJobs, as received (validated by the service).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ListParams {
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Answer of listJobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    pub jobs: Vec<JobView>,
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

const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;
const MAX_FILE_REFS: usize = 10;
const MAX_LIST_LIMIT: usize = 100;
const DEFAULT_LIST_LIMIT: usize = 20;

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
            validate_idempotency_key(key)?;
        }
        let refs = req.openai_file_id_refs.clone().unwrap_or_default();
        validate_file_refs(&refs)?;
        self.check_sources(owner, job_type, &input, &refs).await?;
        let request_hash = request_hash(&req);

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

    /// Checks a job's file inputs before anything is written: an upload must be the owner's
    /// and exist (and pass the type's check of its first bytes), a file ref must point into
    /// openaiFileIdRefs, a URL must be https to a public address.
    async fn check_sources(
        &self,
        owner: &str,
        job_type: &JobType,
        input: &Value,
        refs: &[OpenAiFileRef],
    ) -> Result<(), ServiceError> {
        for field in &job_type.file_inputs {
            let Some(value) = input.get(field) else {
                continue;
            };
            let source = FileSource::parse(value)
                .map_err(|m| ServiceError::BadRequest(format!("input.{field}: {m}")))?;
            match source {
                FileSource::Object(object) => {
                    self.check_upload(owner, job_type, input, field, &object)
                        .await?;
                }
                FileSource::FileRef(i) => {
                    let Some(r) = refs.get(i) else {
                        return Err(ServiceError::BadRequest(format!(
                            "input.{field}.fileRef: {i} is not an index of openaiFileIdRefs ({} file(s) attached)",
                            refs.len()
                        )));
                    };
                    // Refused now rather than failing the job later in Register.
                    check_download_url(&r.download_link, self.config.allow_insecure_downloads)
                        .map_err(|m| {
                            ServiceError::BadRequest(format!(
                                "openaiFileIdRefs[{i}].download_link: {m}"
                            ))
                        })?;
                }
                FileSource::Url(url) => {
                    check_download_url(&url, self.config.allow_insecure_downloads)
                        .map_err(|m| ServiceError::BadRequest(format!("input.{field}.url: {m}")))?;
                }
            }
        }
        Ok(())
    }

    /// An upload used as a file input: the owner's, there, within the size limit, and its
    /// first bytes pass the type's check.
    async fn check_upload(
        &self,
        owner: &str,
        job_type: &JobType,
        input: &Value,
        field: &str,
        object: &str,
    ) -> Result<(), ServiceError> {
        let prefix = format!("{}/", upload_prefix(owner));
        if !object.starts_with(&prefix) {
            return Err(ServiceError::BadRequest(format!(
                "input.{field}.object: not one of your uploads (use the object createUpload returned)"
            )));
        }
        let meta = self.blobs.head(object).await?.ok_or_else(|| {
            ServiceError::BadRequest(format!(
                "input.{field}.object: nothing was uploaded there yet (PUT the file to its uploadUrl first)"
            ))
        })?;
        // S3's presigned PUT cannot cap the size: the cap is enforced here, at use.
        if meta.size_bytes > self.config.max_upload_bytes {
            return Err(ServiceError::PayloadTooLarge(format!(
                "input.{field}.object: the upload is {} bytes, over the limit of {}",
                meta.size_bytes, self.config.max_upload_bytes
            )));
        }
        let head_len = meta.size_bytes.min(64 * 1024);
        if head_len > 0 {
            let first = self.blobs.get(object, Some(0..head_len)).await?;
            job_type
                .check_file_head(input, field, &first)
                .map_err(ServiceError::BadRequest)?;
        }
        Ok(())
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
    async fn owned_job(&self, owner: &str, job_id: &str) -> Result<Job, ServiceError> {
        if !is_valid_job_id(job_id) {
            return Err(ServiceError::job_not_found(job_id));
        }
        match self.store.get(job_id).await? {
            Some(job) if job.owner == owner => Ok(job),
            _ => Err(ServiceError::job_not_found(job_id)),
        }
    }

    /// getJob; with `wait` > 0, returns as soon as the job is terminal or `wait` has passed.
    pub async fn get(
        &self,
        owner: &str,
        job_id: &str,
        wait: Duration,
    ) -> Result<JobView, ServiceError> {
        if wait > self.config.max_wait {
            return Err(ServiceError::BadRequest(format!(
                "waitSeconds must be between 0 and {}",
                self.config.max_wait.as_secs()
            )));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Subscribe before reading, so a change between the read and the wait wakes us.
            let mut watch = self.store.watch(job_id);
            let job = self.owned_job(owner, job_id).await?;
            if job.status.is_terminal() || tokio::time::Instant::now() >= deadline {
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

    /// getJobHistory: the events of the job's execution, oldest first, a page at a time.
    pub async fn history(
        &self,
        owner: &str,
        job_id: &str,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> Result<ExecutionHistory, ServiceError> {
        let limit = match limit.filter(|s| !s.is_empty()) {
            None => 100,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(ServiceError::BadRequest(
                        "limit must be an integer from 1 to 1000".into(),
                    ));
                }
            },
        };
        let after = match cursor.filter(|s| !s.is_empty()) {
            None => 0,
            Some(c) => URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("h1:").and_then(|n| n.parse::<u64>().ok()))
                .ok_or_else(|| {
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
        let more = events.len() > limit;
        events.truncate(limit);
        let next_cursor = if more {
            events
                .last()
                .map(|e| URL_SAFE_NO_PAD.encode(format!("h1:{}", e.id)))
        } else {
            None
        };
        Ok(ExecutionHistory {
            job_id: job.job_id,
            events,
            next_cursor,
        })
    }

    /// listJobs: the owner's jobs, newest first.
    pub async fn list(&self, owner: &str, params: &ListParams) -> Result<JobList, ServiceError> {
        let status = match params.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "status must be one of {}",
                    JobStatus::ALL.map(|s| s.as_str()).join(", ")
                ))
            })?),
        };
        let job_type = params.job_type.clone().filter(|t| !t.is_empty());
        if let Some(t) = &job_type
            && self.types.get(t).is_none()
        {
            return Err(ServiceError::BadRequest(format!(
                "unknown job type {t:?}; known types: {}",
                self.types.names().join(", ")
            )));
        }
        let limit = match params.limit.as_deref().filter(|s| !s.is_empty()) {
            None => DEFAULT_LIST_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ServiceError::BadRequest(format!(
                        "limit must be an integer from 1 to {MAX_LIST_LIMIT}"
                    )));
                }
            },
        };
        let after_job_id = match params.cursor.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ServiceError::BadRequest("cursor is not one this service returned".into())
            })?),
        };
        let page = self
            .store
            .list(
                owner,
                &ListQuery {
                    status,
                    job_type,
                    limit,
                    after_job_id,
                },
            )
            .await?;
        let mut jobs = Vec::with_capacity(page.jobs.len());
        for job in &page.jobs {
            jobs.push(self.view(job).await?);
        }
        Ok(JobList {
            jobs,
            next_cursor: page.next_after_job_id.as_deref().map(encode_cursor),
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
            // The job is CANCELLED either way; its workers' writes are refused from now on.
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

/// The outbound policy's URL check (longhaul-outbound), as a message.
fn check_download_url(url: &str, allow_insecure: bool) -> Result<(), String> {
    longhaul_outbound::check_url(url, longhaul_outbound::OutboundPolicy { allow_insecure })
        .map(drop)
}

/// A file input's value as the client gives it (the schema `file_source_schema` describes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// An object in the blob store (an upload, or a copy Register made).
    Object(String),
    /// An index into the request's openaiFileIdRefs.
    FileRef(usize),
    Url(String),
}

impl FileSource {
    pub fn parse(v: &Value) -> Result<FileSource, String> {
        if let Some(o) = v.get("object").and_then(Value::as_str) {
            Ok(FileSource::Object(o.to_string()))
        } else if let Some(i) = v.get("fileRef").and_then(Value::as_u64) {
            usize::try_from(i)
                .map(FileSource::FileRef)
                .map_err(|_| format!("fileRef {i} is out of range"))
        } else if let Some(u) = v.get("url").and_then(Value::as_str) {
            Ok(FileSource::Url(u.to_string()))
        } else {
            Err("a file is {\"object\"}, {\"fileRef\"} or {\"url\"}".into())
        }
    }
}

/// The prefix under which an owner's uploads live. A job may read only objects under its
/// owner's prefix (owners are isolated).
pub fn upload_prefix(owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    format!("uploads/{}", &hex::encode(digest)[..24])
}

fn validate_idempotency_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(ServiceError::BadRequest(format!(
            "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

fn validate_file_refs(refs: &[OpenAiFileRef]) -> Result<(), ServiceError> {
    if refs.len() > MAX_FILE_REFS {
        return Err(ServiceError::BadRequest(format!(
            "openaiFileIdRefs: at most {MAX_FILE_REFS} files"
        )));
    }
    for (i, r) in refs.iter().enumerate() {
        if !r.download_link.starts_with("https://") && !r.download_link.starts_with("http://") {
            return Err(ServiceError::BadRequest(format!(
                "openaiFileIdRefs[{i}].download_link must be an http(s) URL"
            )));
        }
        if r.name.is_empty() || r.name.len() > 255 {
            return Err(ServiceError::BadRequest(format!(
                "openaiFileIdRefs[{i}].name must be 1 to 255 characters"
            )));
        }
    }
    Ok(())
}

/// A file name safe to use as the last segment of an object key.
pub fn validate_file_name(name: &str) -> Result<String, ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(ServiceError::BadRequest(
            "name must be 1 to 200 characters of letters, digits, '.', '-' or '_', not starting with '.' (no paths)"
                .into(),
        ))
    }
}

/// SHA-256 of the request with object keys sorted, so the same body always hashes the same.
fn request_hash(req: &StartJobRequest) -> String {
    let canonical = serde_json::json!({
        "type": req.job_type,
        "input": canonical_json(&req.input),
        "openaiFileIdRefs": req.openai_file_id_refs.as_ref().map(|r| serde_json::to_value(r).unwrap_or(Value::Null)),
    });
    hex::encode(Sha256::digest(
        canonical_json(&canonical).to_string().as_bytes(),
    ))
}

fn canonical_json(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical_json(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

fn encode_cursor(after_job_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{after_job_id}"))
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let id = s.strip_prefix("v1:")?;
    is_valid_job_id(id).then(|| id.to_string())
}

/// Execution reference for a job started under `name` (used by adapters).
pub fn execution_ref(name: &str, arn: Option<String>, console_url: Option<String>) -> ExecutionRef {
    ExecutionRef {
        name: name.to_string(),
        arn,
        console_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let id = crate::job::new_job_id();
        assert_eq!(decode_cursor(&encode_cursor(&id)), Some(id));
        assert_eq!(decode_cursor("junk"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1:../x")), None);
    }

    #[test]
    fn request_hash_ignores_key_order() {
        let a: StartJobRequest =
            serde_json::from_str(r#"{"type":"demo","input":{"steps":1,"stepSeconds":0}}"#).unwrap();
        let b: StartJobRequest =
            serde_json::from_str(r#"{"input":{"stepSeconds":0,"steps":1},"type":"demo"}"#).unwrap();
        let c: StartJobRequest =
            serde_json::from_str(r#"{"type":"demo","input":{"steps":2,"stepSeconds":0}}"#).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }

    #[test]
    fn file_names_cannot_escape() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "a b",
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_file_name("sales-2024.csv").is_ok());
    }

    #[test]
    fn upload_prefixes_differ_per_owner() {
        assert_ne!(upload_prefix("alice"), upload_prefix("bob"));
        assert!(upload_prefix("alice").starts_with("uploads/"));
    }
}
