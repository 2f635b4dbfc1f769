//! The tools: one per job type (named as the type, with its description and input schema,
//! read from `JobService::job_types()` on every call, never a fixed list), and four for
//! clients that use no tasks: `get_job`, `list_jobs`, `cancel_job`, `list_job_types`.
//! Job type names (`^[a-z][a-z0-9-]*$`) have no `_`, so they never clash with those four.

use std::time::Duration;

use longhaul_jobs::{JobStatus, JobView, ListParams, ServiceError, StartJobRequest};
use serde_json::{Map, Value, json};

use super::Call;
use super::jsonrpc::{INTERNAL_ERROR, METHOD_NOT_FOUND, RpcError};
use super::protocol::Era;
use super::tasks;

pub const GET_JOB: &str = "get_job";
pub const LIST_JOBS: &str = "list_jobs";
pub const CANCEL_JOB: &str = "cancel_job";
pub const LIST_JOB_TYPES: &str = "list_job_types";

/// How long a job tool called without tasks waits for its job before answering with the
/// job as it is (under the 29 s an API Gateway request may last, and the router's 30 s).
pub const UNTASKED_WAIT: Duration = Duration::from_secs(20);

/// Longest `waitSeconds` of `get_job` (the service's long poll allows 25 s).
const MAX_WAIT_SECONDS: u64 = 25;

/// Results inline in the text for the model up to this many characters; all of it is in
/// `structuredContent` either way.
const MAX_RESULT_TEXT_CHARS: usize = 4_000;

/// The tools as `tools/list` returns them, job types first, in the registry's order.
pub fn list(call: &Call<'_>) -> Vec<Value> {
    let mut tools: Vec<Value> = call
        .service
        .job_types()
        .into_iter()
        .map(|t| {
            let mut tool = json!({
                "name": t.job_type,
                "description": t.description,
                "inputSchema": t.input_schema,
            });
            if call.era.has_legacy_tasks() {
                // Any job may run as a task; a client that uses none gets the job after a
                // wait, or a message saying how to poll it.
                tool["execution"] = json!({"taskSupport": "optional"});
            }
            tool
        })
        .collect();
    for (name, description, schema, annotations) in fixed_tools() {
        tools.push(json!({
            "name": name,
            "description": description,
            "inputSchema": schema,
            "annotations": annotations,
        }));
    }
    tools
}

/// The four job tools, with their input schemas (in the subset `longhaul_jobs::schema`
/// validates) and annotations.
fn fixed_tools() -> [(&'static str, &'static str, Value, Value); 4] {
    let read_only = json!({"readOnlyHint": true, "openWorldHint": false});
    let statuses: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
    [
        (
            GET_JOB,
            "Get a job: its status, progress, and once done its result and file links. With waitSeconds, waits up to that long for the job to finish.",
            json!({
                "type": "object",
                "properties": {
                    "jobId": {"type": "string", "description": "The job's id."},
                    "waitSeconds": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
                        "description": "Wait up to this many seconds for the job to finish (0 answers at once)."},
                },
                "required": ["jobId"],
                "additionalProperties": false,
            }),
            read_only.clone(),
        ),
        (
            LIST_JOBS,
            "List your jobs, newest first, optionally by status or type.",
            json!({
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": statuses},
                    "type": {"type": "string", "description": "A job type (see list_job_types)."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                    "cursor": {"type": "string", "description": "nextCursor of the previous page."},
                },
                "additionalProperties": false,
            }),
            read_only.clone(),
        ),
        (
            CANCEL_JOB,
            "Cancel a queued or running job: it stops and becomes CANCELLED.",
            json!({
                "type": "object",
                "properties": {"jobId": {"type": "string", "description": "The job's id."}},
                "required": ["jobId"],
                "additionalProperties": false,
            }),
            json!({"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}),
        ),
        (
            LIST_JOB_TYPES,
            "List the job types: each is also a tool of the same name that starts such a job.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
            read_only,
        ),
    ]
}

/// `tools/call`: a job tool starts a job (a task when the client asked for one), the four
/// job tools read or cancel jobs. Mistakes the model can fix (bad arguments, an unknown job,
/// the owner's quota) are `isError` results; an unknown tool or malformed params are
/// JSON-RPC errors, as the spec asks.
pub async fn call(call: &Call<'_>, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err(RpcError::invalid_params("params.name must be a string"));
    };
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a.clone(),
        Some(_) => {
            return Err(RpcError::invalid_params(
                "params.arguments must be an object",
            ));
        }
    };
    // 2025-11-25: `params.task` asks for a task. Revisions without core tasks ignore it, as
    // a receiver that did not declare the capability must.
    let legacy_task = match params.get("task") {
        Some(t) if call.era.has_legacy_tasks() => {
            if !t.is_object() {
                return Err(RpcError::invalid_params("params.task must be an object"));
            }
            true
        }
        _ => false,
    };
    let fixed = [GET_JOB, LIST_JOBS, CANCEL_JOB, LIST_JOB_TYPES];
    if fixed.contains(&name) {
        if legacy_task {
            // Their execution.taskSupport is absent, i.e. forbidden.
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("the tool {name} does not run as a task; call it without params.task"),
            ));
        }
        let schema = fixed_tools()
            .into_iter()
            .find(|t| t.0 == name)
            .map(|t| t.2)
            .unwrap_or(Value::Null);
        let args = Value::Object(arguments);
        if let Err(e) = longhaul_jobs::schema::validate(&schema, &args) {
            let field = if e.path.is_empty() {
                "arguments".to_string()
            } else {
                format!("arguments{}", e.path.replace('/', "."))
            };
            return Ok(error_result(&format!("{field}: {}", e.message)));
        }
        return match name {
            GET_JOB => get_job(call, &args).await,
            LIST_JOBS => list_jobs(call, &args).await,
            CANCEL_JOB => cancel_job(call, &args).await,
            _ => Ok(list_job_types(call)),
        };
    }
    if !call.service.job_types().iter().any(|t| t.job_type == name) {
        return Err(RpcError::invalid_params(format!("Unknown tool: {name}")));
    }
    start_job(call, name, arguments, legacy_task).await
}

/// A job tool: starts the job (nothing is started when the service refuses the input), then
/// answers with a task (task-capable clients) or with the job after up to [`UNTASKED_WAIT`].
async fn start_job(
    call: &Call<'_>,
    job_type: &str,
    arguments: Map<String, Value>,
    legacy_task: bool,
) -> Result<Value, RpcError> {
    let request = StartJobRequest {
        job_type: job_type.to_string(),
        input: Value::Object(arguments),
        idempotency_key: None,
        openai_file_id_refs: None,
    };
    let view = match call.service.start(call.owner, request).await {
        Ok((view, _)) => view,
        Err(e) => return service_failure(e),
    };
    tracing::info!(job_id = %view.job_id, job_type, "mcp: job started");
    match call.era {
        Era::Modern { tasks: true, .. } => {
            let mut task = tasks::task_fields(call, &view);
            task.insert("resultType".into(), json!("task"));
            Ok(Value::Object(task))
        }
        Era::Legacy { .. } if legacy_task => Ok(json!({
            "task": tasks::task_fields(call, &view),
            "_meta": {"io.modelcontextprotocol/model-immediate-response": job_text(&view)},
        })),
        _ => {
            let wait = UNTASKED_WAIT.min(call.service.config().max_wait);
            match call.service.get(call.owner, &view.job_id, wait).await {
                Ok(view) => Ok(job_result(
                    &view,
                    call.era,
                    view.status.is_terminal() && view.status != JobStatus::Succeeded,
                )),
                Err(e) => service_failure(e),
            }
        }
    }
}

async fn get_job(call: &Call<'_>, args: &Value) -> Result<Value, RpcError> {
    let job_id = args["jobId"].as_str().unwrap_or_default();
    let wait = args["waitSeconds"]
        .as_u64()
        .unwrap_or(0)
        .min(call.service.config().max_wait.as_secs());
    match call
        .service
        .get(call.owner, job_id, Duration::from_secs(wait))
        .await
    {
        Ok(view) => Ok(job_result(&view, call.era, false)),
        Err(e) => service_failure(e),
    }
}

async fn list_jobs(call: &Call<'_>, args: &Value) -> Result<Value, RpcError> {
    // The arguments as the REST query takes them (the same checks and messages).
    let mut query = Map::new();
    for k in ["status", "type", "limit", "cursor"] {
        match &args[k] {
            Value::String(s) => query.insert(k.into(), Value::from(s.clone())),
            Value::Number(n) => query.insert(k.into(), Value::from(n.to_string())),
            _ => None,
        };
    }
    let params: ListParams = match serde_json::from_value(Value::Object(query)) {
        Ok(p) => p,
        Err(e) => return service_failure(longhaul_jobs::ServiceError::BadRequest(e.to_string())),
    };
    let list = match call.service.list(call.owner, &params).await {
        Ok(l) => l,
        Err(e) => return service_failure(e),
    };
    let mut text = match list.jobs.len() {
        0 => "No jobs.".to_string(),
        1 => "1 job, newest first:".to_string(),
        n => format!("{n} jobs, newest first:"),
    };
    for j in &list.jobs {
        text.push_str(&format!("\n- {} {} {}", j.job_id, j.job_type, j.status));
    }
    if let Some(c) = &list.next_cursor {
        text.push_str(&format!("\nMore: call list_jobs with cursor {c:?}."));
    }
    Ok(structured_result(
        text,
        serde_json::to_value(&list).unwrap_or(Value::Null),
        call.era,
    ))
}

async fn cancel_job(call: &Call<'_>, args: &Value) -> Result<Value, RpcError> {
    let job_id = args["jobId"].as_str().unwrap_or_default();
    match call.service.cancel(call.owner, job_id).await {
        Ok(view) => Ok(job_result(&view, call.era, false)),
        Err(e) => service_failure(e),
    }
}

fn list_job_types(call: &Call<'_>) -> Value {
    let types = call.service.job_types();
    let mut text = format!(
        "{} job types; each is a tool of the same name:",
        types.len()
    );
    for t in &types {
        text.push_str(&format!("\n- {}: {}", t.job_type, t.description));
    }
    structured_result(text, json!({"jobTypes": types}), call.era)
}

/// A service error as a tool answer: what the caller can act on (bad input, no such job,
/// already finished, over quota, try again) is an `isError` result naming the problem;
/// anything else is a JSON-RPC internal error, its details logged and not sent.
fn service_failure(e: ServiceError) -> Result<Value, RpcError> {
    match e {
        ServiceError::Internal(m) => {
            tracing::error!(error = %m, "mcp: internal error");
            Err(RpcError::new(
                INTERNAL_ERROR,
                "something went wrong on our side; try again",
            ))
        }
        ServiceError::TooManyRequests {
            message,
            retry_after_seconds,
        }
        | ServiceError::Unavailable {
            message,
            retry_after_seconds,
        } => Ok(error_result(&format!(
            "{message} (try again in {retry_after_seconds} s)"
        ))),
        other => Ok(error_result(&other.to_string())),
    }
}

/// A tool result that reports a mistake to the model.
pub fn error_result(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

/// A tool result with a text for the model and the same data as `structuredContent`
/// (from 2025-06-18; earlier clients get the text only).
fn structured_result(text: String, data: Value, era: &Era) -> Value {
    let mut r = json!({"content": [{"type": "text", "text": text}], "isError": false});
    if era.has_structured_content() {
        r["structuredContent"] = data;
    }
    r
}

/// A job as a tool result: its view as `structuredContent`, a short text for the model, and
/// each result file as a resource link to its signed URL.
pub fn job_result(view: &JobView, era: &Era, is_error: bool) -> Value {
    let mut r = structured_result(
        job_text(view),
        serde_json::to_value(view).unwrap_or(Value::Null),
        era,
    );
    r["isError"] = json!(is_error);
    if era.has_structured_content()
        && let Some(content) = r["content"].as_array_mut()
    {
        for f in &view.files {
            content.push(json!({
                "type": "resource_link",
                "uri": f.url,
                "name": f.name,
                "mimeType": f.mime_type,
                "size": f.size_bytes,
                "description": format!("{} ({} bytes); the link works until {}", f.name, f.size_bytes, f.expires_at.to_rfc3339()),
            }));
        }
    }
    r
}

/// The job's sentence, for MCP: the REST hint (`getJob`) becomes the `get_job` tool, and a
/// finished job's result is inlined when short.
pub fn job_text(view: &JobView) -> String {
    let head = format!("Job {} ({})", view.job_id, view.job_type);
    if let Some(r) = view
        .input_request
        .as_ref()
        .filter(|_| !view.status.is_terminal())
    {
        return format!(
            "{head} waits for the user's answer to: {} It goes on once they answer (a task client answers the task's inputRequests with tasks/update); call get_job to see it again.",
            r.message
        );
    }
    if !view.status.is_terminal() {
        let poll = format!(
            "It keeps running on the server: call get_job with {{\"jobId\": \"{}\", \"waitSeconds\": 20}} to wait for it, or cancel_job to stop it.",
            view.job_id
        );
        return format!("{head} is {}. {poll}", tasks::progress_text(view));
    }
    let mut text = format!("{head}: {}", view.message);
    if let Some(result) = &view.result {
        let json = result.to_string();
        if json.len() <= MAX_RESULT_TEXT_CHARS {
            text.push_str(&format!("\nresult: {json}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use longhaul_jobs::{ExecutionRef, FileView, Job, JobError};

    fn view(status: JobStatus) -> JobView {
        let mut job = Job::new("alice", "demo", json!({}), Utc::now());
        job.status = status;
        job.progress.percent = 40;
        job.progress.message = "step 2 of 5".into();
        if status == JobStatus::Succeeded {
            job.result = Some(json!({"answer": 42}));
        }
        if status == JobStatus::Failed {
            job.error = Some(JobError {
                code: "boom".into(),
                message: "it broke".into(),
            });
        }
        job.execution = ExecutionRef::default();
        JobView::new(&job, Vec::new())
    }

    #[test]
    fn the_text_of_a_running_job_points_to_get_job_never_to_rest() {
        let v = view(JobStatus::Running);
        let t = job_text(&v);
        assert!(t.contains("get_job"), "{t}");
        assert!(t.contains(&v.job_id), "{t}");
        assert!(t.contains("step 2 of 5 (40%)"), "{t}");
        assert!(!t.contains("getJob"), "{t}");
        assert!(!job_text(&view(JobStatus::Queued)).contains("getJob"));
    }

    #[test]
    fn a_finished_job_says_how_it_ended() {
        let t = job_text(&view(JobStatus::Succeeded));
        assert!(t.contains(r#"result: {"answer":42}"#), "{t}");
        let t = job_text(&view(JobStatus::Failed));
        assert!(t.contains("Failed (boom): it broke"), "{t}");
    }

    #[test]
    fn files_become_resource_links_with_their_signed_urls() {
        let mut v = view(JobStatus::Succeeded);
        v.files.push(FileView {
            name: "report.csv".into(),
            mime_type: "text/csv".into(),
            size_bytes: 12,
            url: "https://files.example/report.csv?sig=x".into(),
            expires_at: Utc::now(),
        });
        let era = Era::Legacy {
            version: "2025-11-25",
        };
        let r = job_result(&v, &era, false);
        assert_eq!(r["isError"], false);
        assert_eq!(r["structuredContent"]["jobId"], json!(v.job_id));
        assert_eq!(r["content"][1]["type"], "resource_link");
        assert_eq!(
            r["content"][1]["uri"],
            "https://files.example/report.csv?sig=x"
        );
        assert_eq!(r["content"][1]["mimeType"], "text/csv");
        // 2025-03-26 knows neither structuredContent nor resource links.
        let old = job_result(
            &v,
            &Era::Legacy {
                version: "2025-03-26",
            },
            false,
        );
        assert!(old.get("structuredContent").is_none());
        assert_eq!(old["content"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn the_fixed_tools_schemas_are_in_the_enforced_subset() {
        for (name, _, schema, _) in fixed_tools() {
            longhaul_jobs::schema::check_schema(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
