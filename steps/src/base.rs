//! The base workflow's steps, around every job type's own: Register (job → RUNNING, file
//! inputs fetched), Complete (result and files recorded, job → SUCCEEDED), MarkFailed
//! (job → FAILED), and the status-change tracker (an execution that ended any other way).

use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use longhaul_jobs::service::{FileSource, validate_file_name};
use longhaul_jobs::workflow::ExecutionStatus;
use longhaul_jobs::{
    ExecutionRef, ExecutionStatusChange, Job, JobError, JobFile, JobStatus, JobType, Progress,
    TransitionOutcome, TransitionPatch, WorkflowInput,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{StepContext, StepError, fetch};

/// Input of [`register`] (Parameters in the workflow).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    pub execution_name: String,
    #[serde(default)]
    pub execution_arn: Option<String>,
    pub job: WorkflowInput,
}

/// The workflow state after Register: the input of the job type's first state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredJob {
    pub job_id: String,
    pub owner: String,
    #[serde(rename = "type")]
    pub job_type: String,
    /// The validated input; each file input is `{"object", "uri"}`.
    pub input: Value,
    /// Where steps write result files too large to return inline (a folder as
    /// `file:///…/`, or `s3://bucket/jobs/<id>/output/`): everything there is a result file.
    pub output_uri: String,
}

/// Where a job's result files live in the blob store.
pub fn output_prefix(job_id: &str) -> String {
    format!("jobs/{job_id}/output/")
}

/// Register: the job → RUNNING. An execution not started by the API (a schedule, the
/// console) has no record yet: it is created here from the execution input, named by the
/// execution name, after the same validation as startJob.
pub async fn register(ctx: &StepContext, req: RegisterRequest) -> Result<RegisteredJob, StepError> {
    let job_id = req.execution_name.clone();
    if let Some(given) = &req.job.job_id
        && given != &job_id
    {
        return Err(StepError::bad_input(
            "register",
            format!("input jobId {given} is not the execution name {job_id}"),
        ));
    }
    let now = Utc::now();
    let execution = ExecutionRef {
        name: job_id.clone(),
        arn: req.execution_arn.clone(),
        console_url: None,
    };
    if ctx
        .store
        .get(&job_id)
        .await
        .map_err(StepError::store)?
        .is_none()
    {
        create_for_execution(ctx, &req, &execution).await?;
    }
    let patch = TransitionPatch {
        progress: Some(Progress {
            percent: 0,
            message: "Started".into(),
        }),
        execution: Some(execution),
        ..Default::default()
    };
    let job = match ctx
        .store
        .transition(&job_id, JobStatus::Running, patch, now)
        .await
        .map_err(StepError::store)?
    {
        TransitionOutcome::Applied(job) => *job,
        // A retried Register: already running is fine.
        TransitionOutcome::Rejected(job) if job.status == JobStatus::Running => *job,
        TransitionOutcome::Rejected(job) => return Err(not_running(&job)),
        TransitionOutcome::NotFound => {
            return Err(StepError::new("JobNotFound", format!("no job {job_id}")));
        }
    };
    let job_type = job_type_of(ctx, &job.job_type)?;
    let input = fetch_file_inputs(ctx, &job, job_type).await?;
    Ok(RegisteredJob {
        output_uri: ctx.blobs.uri(&output_prefix(&job.job_id)),
        job_id: job.job_id,
        owner: job.owner,
        job_type: job.job_type,
        input,
    })
}

fn job_type_of<'a>(ctx: &'a StepContext, name: &str) -> Result<&'a JobType, StepError> {
    ctx.types.get(name).ok_or_else(|| {
        StepError::new(
            "UnknownJobType",
            format!(
                "unknown job type {name:?}; known types: {}",
                ctx.types.names().join(", ")
            ),
        )
    })
}

/// The record of a job whose execution was started without the API, validated as startJob
/// would.
async fn create_for_execution(
    ctx: &StepContext,
    req: &RegisterRequest,
    execution: &ExecutionRef,
) -> Result<(), StepError> {
    let owner = req
        .job
        .owner
        .clone()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| {
            StepError::bad_input(
                "register",
                "an execution without a job record must name its owner",
            )
        })?;
    let job_type = job_type_of(ctx, &req.job.job_type)?;
    let input = job_type
        .validate(&req.job.input)
        .map_err(|m| StepError::new("InvalidJobInput", m))?;
    let now = Utc::now();
    let mut job = Job::new(&owner, &req.job.job_type, input, now);
    job.expires_at = ctx
        .job_retention
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| now + d);
    job.job_id = execution.name.clone();
    job.execution = execution.clone();
    job.openai_file_id_refs = req.job.openai_file_id_refs.clone();
    // Created, or created meanwhile by a retried Register: either way it exists now.
    ctx.store.create(&job).await.map_err(StepError::store)?;
    Ok(())
}

/// Copies a job's outside file inputs (a ChatGPT file ref, whose link lives 5 minutes; a
/// URL) into the blob store at once, and gives every file input as `{"object", "uri"}`.
/// Safe to repeat: a copy already made is used again.
async fn fetch_file_inputs(
    ctx: &StepContext,
    job: &Job,
    job_type: &JobType,
) -> Result<Value, StepError> {
    let mut input = job.input.clone();
    for field in &job_type.file_inputs {
        let Some(value) = input.get(field) else {
            continue;
        };
        let source = FileSource::parse(value)
            .map_err(|m| StepError::new("InvalidJobInput", format!("input.{field}: {m}")))?;
        let object = match source {
            FileSource::Object(object) => object,
            FileSource::FileRef(i) => {
                let r = job.openai_file_id_refs.get(i).ok_or_else(|| {
                    StepError::new(
                        "InvalidJobInput",
                        format!("input.{field}.fileRef: no file {i} in openaiFileIdRefs"),
                    )
                })?;
                let key = input_key(&job.job_id, field, &r.name);
                fetch_once(ctx, &r.download_link, &key, r.mime_type.as_deref()).await?;
                key
            }
            FileSource::Url(url) => {
                let name = url::Url::parse(&url)
                    .ok()
                    .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
                    .unwrap_or_default();
                let key = input_key(&job.job_id, field, &name);
                fetch_once(ctx, &url, &key, None).await?;
                key
            }
        };
        input[field.as_str()] = json!({"object": object, "uri": ctx.blobs.uri(&object)});
    }
    Ok(input)
}

async fn fetch_once(
    ctx: &StepContext,
    url: &str,
    key: &str,
    content_type: Option<&str>,
) -> Result<(), StepError> {
    if ctx
        .blobs
        .head(key)
        .await
        .map_err(StepError::store)?
        .is_none()
    {
        fetch::download(ctx.blobs.as_ref(), &ctx.downloads, url, key, content_type).await?;
    }
    Ok(())
}

/// `jobs/<id>/input/<field>/<name>`, the name made safe for a key.
fn input_key(job_id: &str, field: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let safe = safe.trim_start_matches('.');
    let name = if safe.is_empty() { "file" } else { safe };
    format!("jobs/{job_id}/input/{field}/{name}")
}

pub(crate) fn not_running(job: &Job) -> StepError {
    let error = if job.status == JobStatus::Cancelled {
        "JobCancelled"
    } else {
        "JobNotRunning"
    };
    StepError::new(error, format!("job {} is {}", job.job_id, job.status))
}

/// A result file as a step returns it: inline (`contentBase64`), or an object it wrote under
/// the job's own prefix (`object`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

impl From<JobFile> for OutputFile {
    fn from(f: JobFile) -> OutputFile {
        OutputFile {
            name: f.name,
            mime_type: Some(f.mime_type),
            content_base64: None,
            object: Some(f.object),
            size_bytes: Some(f.size_bytes),
        }
    }
}

/// A job type's output, what its last state returns: the result and result files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepOutput {
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub files: Vec<OutputFile>,
    /// Intermediate objects of this job (under `jobs/<jobId>/`) that Complete deletes once the
    /// job's success is recorded. The step that made the output keeps them, so that it can
    /// be retried after a crash or a lost response and read them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scratch: Vec<String>,
}

/// Input of [`complete`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteRequest {
    pub job_id: String,
    pub output: StepOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledged {
    pub job_id: String,
    pub status: JobStatus,
}

/// Most result files a job keeps (ChatGPT shows at most 10; the rest stay in `files`; the
/// list must fit a DynamoDB item).
const MAX_RESULT_FILES: usize = 200;

/// Complete: result and files written, job → SUCCEEDED. The files are those the output
/// names (inline ones are stored here) and every object under the job's output prefix.
pub async fn complete(ctx: &StepContext, req: CompleteRequest) -> Result<Acknowledged, StepError> {
    let own = format!("jobs/{}/", req.job_id);
    if let Some(bad) = req.output.scratch.iter().find(|k| !k.starts_with(&own)) {
        return Err(StepError::bad_input(
            "complete",
            format!("scratch object {bad} is not under {own}"),
        ));
    }
    let (result, result_file) = result_inline(ctx, &req.job_id, req.output.result).await?;
    let mut files = result_files(ctx, &req.job_id, &req.output.files).await?;
    if let Some(f) = result_file {
        // First: when a long list is cut to fit an answer, the result is not what goes.
        files.retain(|x| x.object != f.object);
        files.insert(0, f);
    }
    let patch = TransitionPatch {
        progress: Some(Progress {
            percent: 100,
            message: "Done".into(),
        }),
        result: Some(result),
        files: Some(files),
        ..Default::default()
    };
    let job = match ctx
        .store
        .transition(&req.job_id, JobStatus::Succeeded, patch, Utc::now())
        .await
        .map_err(StepError::store)?
    {
        TransitionOutcome::Applied(job) => job,
        // Retried after it had written: done already (and the scratch may be gone).
        TransitionOutcome::Rejected(job) if job.status == JobStatus::Succeeded => job,
        TransitionOutcome::Rejected(job) => return Err(not_running(&job)),
        TransitionOutcome::NotFound => {
            return Err(StepError::new(
                "JobNotFound",
                format!("no job {}", req.job_id),
            ));
        }
    };
    // Only now: a retried step or Complete before this point still finds them. A failed
    // delete leaves litter, not a wrong job (the bucket's lifecycle rule sweeps it on AWS).
    for key in &req.output.scratch {
        if let Err(e) = ctx.blobs.delete(key).await {
            tracing::warn!(key = %key, error = %e, "deleting a scratch object");
        }
    }
    Ok(Acknowledged {
        job_id: job.job_id,
        status: job.status,
    })
}

/// The result to keep on the job: as it is, or — when larger than getJob may show — a note,
/// with the result itself stored as the result file `result.json`.
async fn result_inline(
    ctx: &StepContext,
    job_id: &str,
    result: Value,
) -> Result<(Value, Option<JobFile>), StepError> {
    use longhaul_jobs::budget::{MAX_INLINE_RESULT_CHARS, json_len};
    let len = json_len(&result);
    if len <= MAX_INLINE_RESULT_CHARS {
        return Ok((result, None));
    }
    let body = serde_json::to_vec_pretty(&result)
        .map_err(|e| StepError::new("Internal", e.to_string()))?;
    let key = format!("{}result.json", output_prefix(job_id));
    let size_bytes = body.len() as u64;
    ctx.blobs
        .put(&key, Bytes::from(body), "application/json")
        .await
        .map_err(StepError::store)?;
    let note = json!({
        "truncated": true,
        "note": format!("The result is {len} characters, too large to show here; it is the file result.json."),
        "file": "result.json",
    });
    let file = JobFile {
        name: "result.json".into(),
        mime_type: "application/json".into(),
        size_bytes,
        object: key,
    };
    Ok((note, Some(file)))
}

/// The job's result files: inline ones stored under its output prefix, named objects
/// checked to be the job's own, then whatever else the steps wrote under the prefix.
async fn result_files(
    ctx: &StepContext,
    job_id: &str,
    named: &[OutputFile],
) -> Result<Vec<JobFile>, StepError> {
    let own = format!("jobs/{job_id}/");
    let prefix = output_prefix(job_id);
    let mut files: Vec<JobFile> = Vec::new();
    for (i, f) in named.iter().enumerate() {
        let bad = |m: String| StepError::new("InvalidOutput", format!("files[{i}]: {m}"));
        let name = validate_file_name(&f.name).map_err(|e| bad(e.to_string()))?;
        let mime = f
            .mime_type
            .clone()
            .unwrap_or_else(|| mime_for(&name).to_string());
        let (object, size) = match (&f.content_base64, &f.object) {
            (Some(b64), None) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| bad(format!("contentBase64 is not base64 ({e})")))?;
                let key = format!("{prefix}{name}");
                let size = bytes.len() as u64;
                ctx.blobs
                    .put(&key, Bytes::from(bytes), &mime)
                    .await
                    .map_err(StepError::store)?;
                (key, size)
            }
            (None, Some(object)) => {
                if !object.starts_with(&own) || object.contains("..") {
                    return Err(bad(format!("object {object} is not under {own}")));
                }
                let meta = ctx.blobs.head(object).await.map_err(StepError::store)?;
                let Some(meta) = meta else {
                    return Err(bad(format!("object {object} does not exist")));
                };
                (object.clone(), meta.size_bytes)
            }
            _ => return Err(bad("give either contentBase64 or object".into())),
        };
        if files.iter().any(|f| f.name == name) {
            return Err(bad(format!("two files are named {name}")));
        }
        files.push(JobFile {
            name,
            mime_type: mime,
            size_bytes: size,
            object,
        });
    }
    let written = ctx
        .blobs
        .list(&prefix, MAX_RESULT_FILES + 1)
        .await
        .map_err(StepError::store)?;
    for (key, meta) in written {
        if files.iter().any(|f| f.object == key) {
            continue;
        }
        let name = key[prefix.len()..].to_string();
        if files.len() >= MAX_RESULT_FILES {
            return Err(StepError::new(
                "InvalidOutput",
                format!("a job keeps at most {MAX_RESULT_FILES} result files"),
            ));
        }
        files.push(JobFile {
            mime_type: meta
                .content_type
                .filter(|t| t != "application/octet-stream")
                .unwrap_or_else(|| mime_for(&name).to_string()),
            name,
            size_bytes: meta.size_bytes,
            object: key,
        });
    }
    Ok(files)
}

/// A file's media type from its extension.
pub fn mime_for(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("csv") => "text/csv",
        Some("txt" | "log") => "text/plain",
        Some("md") => "text/markdown",
        Some("json") => "application/json",
        Some("html" | "htm") => "text/html",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("zip") => "application/zip",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("parquet") => "application/vnd.apache.parquet",
        _ => "application/octet-stream",
    }
}

/// Input of [`mark_failed`]: the caught error as the workflow's Catch leaves it
/// (`{"Error", "Cause"}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkFailedRequest {
    pub job_id: String,
    #[serde(default)]
    pub failure: Failure,
}

/// A caught error (Step Functions' error output).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Failure {
    #[serde(rename = "Error", default)]
    pub error: Option<String>,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

/// MarkFailed: job → FAILED with the error that ended the run. A job already terminal
/// (cancelled, say) stays as it is.
pub async fn mark_failed(
    ctx: &StepContext,
    req: MarkFailedRequest,
) -> Result<Acknowledged, StepError> {
    let error = job_error(
        req.failure.error.as_deref().unwrap_or("States.Runtime"),
        req.failure.cause.as_deref(),
    );
    let patch = TransitionPatch {
        error: Some(error),
        ..Default::default()
    };
    match ctx
        .store
        .transition(&req.job_id, JobStatus::Failed, patch, Utc::now())
        .await
        .map_err(StepError::store)?
    {
        TransitionOutcome::Applied(job) | TransitionOutcome::Rejected(job) => Ok(Acknowledged {
            job_id: job.job_id,
            status: job.status,
        }),
        // Register failed before any record existed (bad schedule spec): nothing to mark.
        TransitionOutcome::NotFound => Ok(Acknowledged {
            job_id: req.job_id,
            status: JobStatus::Failed,
        }),
    }
}

/// The job error for a Step Functions error and cause. Lambda causes are JSON
/// (`{"errorMessage": ..., "errorType": ...}`): keep the message only.
pub fn job_error(error: &str, cause: Option<&str>) -> JobError {
    let cause = cause.unwrap_or("").trim();
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string());
    let message = if message.is_empty() {
        format!("the workflow failed with {error}")
    } else {
        truncate(&message, 2000)
    };
    JobError {
        code: error.to_string(),
        message,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The status-change tracker: when an execution ends other than through Complete or
/// MarkFailed (stopped in the console, timed out, failed in MarkFailed itself), the job
/// follows it, so no job stays RUNNING. A late or repeated event changes nothing.
pub async fn track_status_change(
    ctx: &StepContext,
    change: ExecutionStatusChange,
) -> Result<Acknowledged, StepError> {
    let (to, error) = match change.status {
        ExecutionStatus::Aborted => (
            JobStatus::Cancelled,
            JobError {
                code: "aborted".into(),
                message: change
                    .cause
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "the execution was stopped".into()),
            },
        ),
        ExecutionStatus::TimedOut => (
            JobStatus::TimedOut,
            JobError {
                code: "timed_out".into(),
                message: "the execution ran past its time limit".into(),
            },
        ),
        ExecutionStatus::Failed => (
            JobStatus::Failed,
            job_error(
                change.error.as_deref().unwrap_or("States.Runtime"),
                change.cause.as_deref(),
            ),
        ),
        ExecutionStatus::Running | ExecutionStatus::Succeeded | ExecutionStatus::PendingRedrive => {
            let job = ctx
                .store
                .get(&change.name)
                .await
                .map_err(StepError::store)?;
            return Ok(Acknowledged {
                job_id: change.name,
                status: job.map_or(JobStatus::Succeeded, |j| j.status),
            });
        }
    };
    let now = Utc::now();
    let patch = TransitionPatch {
        error: Some(error.clone()),
        ..Default::default()
    };
    let outcome = ctx
        .store
        .transition(&change.name, to, patch, now)
        .await
        .map_err(StepError::store)?;
    let job = match outcome {
        TransitionOutcome::Applied(job) => *job,
        // TIMED_OUT is legal only from RUNNING; a job still QUEUED then simply failed.
        TransitionOutcome::Rejected(job) if !job.status.is_terminal() => {
            let patch = TransitionPatch {
                error: Some(error),
                ..Default::default()
            };
            match ctx
                .store
                .transition(&change.name, JobStatus::Failed, patch, now)
                .await
                .map_err(StepError::store)?
            {
                TransitionOutcome::Applied(j) | TransitionOutcome::Rejected(j) => *j,
                TransitionOutcome::NotFound => *job,
            }
        }
        TransitionOutcome::Rejected(job) => *job,
        TransitionOutcome::NotFound => {
            return Ok(Acknowledged {
                job_id: change.name,
                status: to,
            });
        }
    };
    Ok(Acknowledged {
        job_id: job.job_id,
        status: job.status,
    })
}
