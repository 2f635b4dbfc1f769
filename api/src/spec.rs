//! The OpenAPI 3.1 spec for GPT Actions: paths written next to the Router they describe,
//! schemas derived from the domain types (utoipa). `longhaul openapi` prints it; the
//! committed `openapi.yaml` must equal it (a test checks).

use serde_json::{Value, json};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(components(schemas(
    longhaul_jobs::JobView,
    longhaul_jobs::FileView,
    longhaul_jobs::Progress,
    longhaul_jobs::JobError,
    longhaul_jobs::ExecutionRef,
    longhaul_jobs::JobStatus,
    longhaul_jobs::ExecutionEvent,
    longhaul_jobs::ExecutionHistory,
    longhaul_jobs::JobList,
    longhaul_jobs::JobSummary,
    longhaul_jobs::JobTypeInfo,
    longhaul_jobs::StartJobRequest,
    longhaul_jobs::OpenAiFileRef,
    longhaul_jobs::CreateUploadRequest,
    longhaul_jobs::UploadTicket,
    longhaul_jobs::FailTaskRequest,
    crate::ErrorBody,
    crate::ErrorDetail,
)))]
struct Schemas;

fn error_responses(codes: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    for (status, desc) in codes {
        m.insert(
            status.to_string(),
            json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}),
        );
    }
    Value::Object(m)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(am), Value::Object(bm)) = (&mut a, b) {
        for (k, v) in bm {
            am.insert(k, v);
        }
    }
    a
}

fn ok(status: &str, desc: &str, schema: &str) -> Value {
    json!({status: {"description": desc, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}})
}

const COMMON_ERRORS: &[(&str, &str)] = &[
    ("401", "Missing or invalid credentials."),
    ("429", "Too many requests; retry after Retry-After seconds."),
    ("500", "Server error."),
    (
        "503",
        "Temporarily unavailable; retry after Retry-After seconds.",
    ),
];

/// The error responses every operation has, and `extra`.
fn errors(extra: &[(&str, &str)]) -> Value {
    let mut all: Vec<(&str, &str)> = COMMON_ERRORS.to_vec();
    all.extend_from_slice(extra);
    error_responses(&all)
}

/// The spec as JSON.
pub fn openapi(server_url: &str) -> Value {
    let components = serde_json::to_value(Schemas::openapi().components).unwrap_or(Value::Null);
    let job_id = json!({"name": "jobId", "in": "path", "required": true, "description": "The job's id, from startJob.", "schema": {"type": "string"}});
    let paths = json!({
        "/jobs": {
            "post": {
                "operationId": "startJob",
                "summary": "Start a job",
                "description": "Start long-running work; returns at once with the job (status QUEUED or RUNNING). Then call getJob with waitSeconds=20 until the status is SUCCEEDED, FAILED, CANCELLED or TIMED_OUT. Use listJobTypes for the types and their input. Send idempotencyKey so a retry does not start a second job.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StartJobRequest"}}}},
                "responses": merge(merge(ok("202", "The job was started.", "JobView"), ok("200", "A retry with the same idempotencyKey: the job started before.", "JobView")),
                    errors(&[("400", "Invalid request: unknown type or input that does not fit the type's schema."), ("409", "idempotencyKey already used with a different request."), ("413", "Body over 256 KiB.")])),
                "x-openai-isConsequential": true
            },
            "get": {
                "operationId": "listJobs",
                "summary": "List your jobs",
                "description": "List your jobs, newest first, as summaries (getJob has results and file links). Filter by status or type. A page holds up to limit jobs, fewer if more would not fit; pass nextCursor as cursor for more.",
                "parameters": [
                    {"name": "status", "in": "query", "required": false, "schema": {"$ref": "#/components/schemas/JobStatus"}},
                    {"name": "type", "in": "query", "required": false, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}}
                ],
                "responses": merge(ok("200", "A page of jobs.", "JobList"), errors(&[("400", "Invalid filter, limit or cursor.")])),
                "x-openai-isConsequential": false
            }
        },
        "/jobs/{jobId}": {
            "get": {
                "operationId": "getJob",
                "summary": "Get a job's status and result",
                "description": "Get a job: status, progress, result, file links. waitSeconds (up to 25) waits for the job to end. While QUEUED or RUNNING, call again. Show files from openaiFileResponse. A result too large to show is a file.",
                "parameters": [job_id, {"name": "waitSeconds", "in": "query", "required": false, "description": "Hold the request up to this many seconds until the job ends.", "schema": {"type": "integer", "minimum": 0, "maximum": 25, "default": 0}}],
                "responses": merge(ok("200", "The job.", "JobView"), errors(&[("400", "waitSeconds out of range."), ("404", "No such job (or not yours).")])),
                "x-openai-isConsequential": false
            }
        },
        "/jobs/{jobId}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a job",
                "description": "Cancel a queued or running job: its workflow stops and the job becomes CANCELLED. Fails with 409 if the job already ended.",
                "parameters": [job_id],
                "responses": merge(ok("200", "The cancelled job.", "JobView"), errors(&[("404", "No such job (or not yours)."), ("409", "The job already ended.")])),
                "x-openai-isConsequential": true
            }
        },
        "/jobs/{jobId}/history": {
            "get": {
                "operationId": "getJobHistory",
                "summary": "A job's execution history",
                "description": "The steps the job's workflow took, oldest first: states, tasks, retries, failures, inputs and outputs cut short. Use it to explain a failure. A page holds up to limit events, fewer if more would not fit; nextCursor goes on.",
                "parameters": [job_id, {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
                "responses": merge(ok("200", "A page of events.", "ExecutionHistory"), errors(&[("400", "Invalid cursor or limit."), ("404", "No such job (or not yours).")])),
                "x-openai-isConsequential": false
            }
        },
        "/job-types": {
            "get": {
                "operationId": "listJobTypes",
                "summary": "List job types",
                "description": "List the job types this service runs, each with a description and the JSON Schema of its input. Call it before startJob when unsure what input a type takes.",
                "responses": merge(
                    json!({"200": {"description": "The job types.", "content": {"application/json": {"schema": {"type": "object", "required": ["jobTypes"], "properties": {"jobTypes": {"type": "array", "items": {"$ref": "#/components/schemas/JobTypeInfo"}}}}}}}}),
                    errors(&[])),
                "x-openai-isConsequential": false
            }
        },
        "/uploads": {
            "post": {
                "operationId": "createUpload",
                "summary": "Get a link to upload a file",
                "description": "Get a short-lived URL to PUT a file to (for large inputs). Use the returned object as a job input source: {\"object\": \"...\"}.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateUploadRequest"}}}},
                "responses": merge(ok("200", "Where to upload.", "UploadTicket"), errors(&[("400", "Invalid name or size."), ("413", "The file is over the upload limit.")])),
                "x-openai-isConsequential": true
            }
        }
    });
    let paths = merge(paths, callback_paths());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "longhaul",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Start long-running jobs and poll for their results. startJob answers at once; getJob with waitSeconds returns the status, progress, result and file links. Every answer stays under 100,000 characters: pages end early and large results are files."
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": merge(components, json!({"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}))
    })
}

/// The callback routes (`/task-tokens/{token}/...`): in the spec, marked not for the
/// assistant (outside systems call them).
fn callback_paths() -> Value {
    let token = json!({"name": "token", "in": "path", "required": true, "description": "The task token the workflow gave out, percent-encoded.", "schema": {"type": "string", "minLength": 1, "maxLength": 2048}});
    let delivered = |what: &str| json!({"200": {"description": format!("The {what} was delivered to the waiting task."), "content": {"application/json": {"schema": {"type": "object", "required": ["delivered"], "properties": {"delivered": {"type": "string", "enum": [what]}}}}}}});
    let callback_errors = |extra: &[(&str, &str)]| {
        let mut all: Vec<(&str, &str)> = vec![
            ("400", "Invalid token or body."),
            (
                "404",
                "No task waits for this token (unknown, answered already, or its job ended).",
            ),
            ("409", "The task of this token timed out."),
        ];
        all.extend_from_slice(extra);
        errors(&all)
    };
    json!({
        "/task-tokens/{token}/success": {
            "post": {
                "operationId": "sendTaskSuccess",
                "summary": "Answer a waiting task: success",
                "description": "Not for the assistant: for an outside system holding a task token from a job's workflow. The task waiting for the token succeeds; the JSON body (at most 256 KiB) is its output.",
                "parameters": [token],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"description": "The task's output: any JSON."}}}},
                "responses": merge(delivered("success"), callback_errors(&[("413", "Body over 256 KiB.")])),
                "x-openai-isConsequential": true
            }
        },
        "/task-tokens/{token}/failure": {
            "post": {
                "operationId": "sendTaskFailure",
                "summary": "Answer a waiting task: failure",
                "description": "Not for the assistant: for an outside system holding a task token from a job's workflow. The task waiting for the token fails with this error name (which the workflow's Retry and Catch match) and cause.",
                "parameters": [token],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FailTaskRequest"}}}},
                "responses": merge(delivered("failure"), callback_errors(&[])),
                "x-openai-isConsequential": true
            }
        },
        "/task-tokens/{token}/heartbeat": {
            "post": {
                "operationId": "sendTaskHeartbeat",
                "summary": "Tell a waiting task its work goes on",
                "description": "Not for the assistant: for an outside system holding a task token from a job's workflow. The task waiting for the token is alive: its HeartbeatSeconds start again. No body.",
                "parameters": [token],
                "responses": merge(delivered("heartbeat"), callback_errors(&[])),
                "x-openai-isConsequential": true
            }
        }
    })
}

/// The spec as YAML (what `longhaul openapi` prints).
pub fn openapi_yaml(server_url: &str) -> String {
    serde_yaml::to_string(&openapi(server_url)).unwrap_or_default()
}
