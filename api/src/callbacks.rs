//! Callback routes: an outside system answers a workflow Task waiting for a task token
//! (`.waitForTaskToken`).
//!
//! - `POST /task-tokens/{token}/success` — the body is the task's output (any JSON, at most
//!   256 KiB).
//! - `POST /task-tokens/{token}/failure` — body `{"error"?, "cause"?}`: the task fails with
//!   that error name (what the workflow's Retry and Catch match) and cause.
//! - `POST /task-tokens/{token}/heartbeat` — no body (or `{}`): the task is alive.
//!
//! Answers: 200 `{"delivered": "success"|"failure"|"heartbeat"}`; 404 `not_found` for a
//! token no task waits for (unknown, malformed, answered already, or its job ended); 409
//! `conflict` for a token whose task timed out (it takes no more answers); 400 for a bad
//! body. The token goes in the path percent-encoded (Step Functions' tokens hold `/`, `+`
//! and `=`).
//!
//! **Authentication.** The token is a 256-bit secret that names no job, and Step Functions'
//! SendTaskSuccess takes it as the only credential. These routes still require the API's
//! bearer token or JWT, like every route but `/healthz` and the spec: an outside system is
//! given an API credential, and a leaked task token alone answers nothing. Which owner
//! answers is not checked against the job's owner (the token is the capability).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use longhaul_jobs::FailTaskRequest;
use serde_json::{Value, json};

use crate::{ApiError, ApiJson, ApiQuery, ApiState, NoParams, Owner, json, json_body};

/// The callback routes, to merge into the API's Router.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/task-tokens/{token}/success", post(success))
        .route("/task-tokens/{token}/failure", post(failure))
        .route("/task-tokens/{token}/heartbeat", post(heartbeat))
}

fn delivered(what: &str) -> Response {
    json(StatusCode::OK, &json!({"delivered": what}))
}

/// An empty body, or a JSON object (`{}` for the heartbeat).
fn optional_object<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json_body(body)
}

async fn success(
    State(s): State<ApiState>,
    Owner(_): Owner,
    Path(token): Path<String>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    ApiJson(output): ApiJson<Value>,
) -> Result<Response, ApiError> {
    s.service.send_task_success(&token, &output).await?;
    Ok(delivered("success"))
}

async fn failure(
    State(s): State<ApiState>,
    Owner(_): Owner,
    Path(token): Path<String>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let answer: FailTaskRequest = optional_object(&body)?;
    s.service.send_task_failure(&token, &answer).await?;
    Ok(delivered("failure"))
}

/// A heartbeat carries nothing: its body is empty or `{}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {}

async fn heartbeat(
    State(s): State<ApiState>,
    Owner(_): Owner,
    Path(token): Path<String>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Heartbeat {} = optional_object(&body)?;
    s.service.send_task_heartbeat(&token).await?;
    Ok(delivered("heartbeat"))
}
