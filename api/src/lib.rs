//! longhaul's HTTP API: an axum [`Router`] over [`JobService`] — startJob, getJob (with a long
//! poll), listJobs, cancelJob, answerJobInput (a job waiting for its owner's answer),
//! listJobTypes, createUpload — plus `/healthz` and the OpenAPI
//! spec, the same jobs over MCP at `/mcp` ([`mcp`]), and the callback routes
//! (`/task-tokens/{token}/success|failure|heartbeat`, see `callbacks.rs`). The same Router
//! serves `longhaul serve` and, on AWS, the API Lambda. Every job route is authenticated by
//! an [`Authenticator`]; errors are [`ApiError`]s, always
//! `{"error": {"code", "message"}}`.

mod auth;
mod callbacks;
mod error;
pub mod mcp;
mod spec;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use longhaul_jobs::{
    CreateUploadRequest, GetParams, HistoryParams, JobService, ListParams, StartJobRequest,
};
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub use auth::{
    AuthError, Authenticator, CognitoClaimsAuth, JwksError, JwtAuth, NoAuth, Principal,
    TokensFileAuth, TokensFileError, bearer, check_no_auth_allowed,
};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use spec::{openapi, openapi_yaml};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub service: Arc<JobService>,
    pub auth: Arc<dyn Authenticator>,
    /// The URL clients reach the API at (`--public-url`), named in the served spec so a GPT
    /// can import it by URL. None: from the request (API Gateway's domain and stage, or the
    /// Host header).
    pub public_url: Option<String>,
}

/// The caller, authenticated.
pub struct Owner(pub String);

impl FromRequestParts<ApiState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let token_given = parts.headers.contains_key(header::AUTHORIZATION);
        state
            .auth
            .authenticate(parts)
            .await
            .map(|p| Owner(p.subject))
            .map_err(|e| ApiError::unauthorized(e.to_string(), token_given))
    }
}

/// A query string as a typed value (`Query` with the API's error): unknown names are refused
/// (they are usually typos), and so is a name given twice.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        for (k, _) in url::form_urlencoded::parse(raw.as_bytes()) {
            if !seen.insert(k.to_string()) {
                return Err(ApiError::bad_request(format!(
                    "query parameter {k:?} is given twice"
                )));
            }
        }
        serde_urlencoded::from_str(raw)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request(query_error(&e.to_string())))
    }
}

/// serde's words for a query problem, in the API's.
fn query_error(e: &str) -> String {
    match e.strip_prefix("unknown field `") {
        Some(rest) => {
            let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
            if expected.contains("there are no fields") {
                format!("unknown query parameter {name:?}: this operation takes none")
            } else {
                let allowed = expected
                    .trim_start_matches(", expected ")
                    .trim_start_matches("one of ")
                    .replace('`', "");
                format!("unknown query parameter {name:?}; allowed: {allowed}")
            }
        }
        None => format!("invalid query: {e}"),
    }
}

/// An operation that takes no query parameters.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// A JSON body as a typed value, with the API's errors: over [`MAX_BODY_BYTES`] is 413, not
/// UTF-8 or not JSON or not the shape is 400 naming the problem.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(
        req: Request<axum::body::Body>,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::payload_too_large(format!("the body is over {MAX_BODY_BYTES} bytes"))
        })?;
        json_body(&body).map(ApiJson)
    }
}

/// A body's JSON as `T`: over [`MAX_BODY_BYTES`] is 413, not UTF-8 or not JSON or not the
/// shape is 400 naming the problem.
fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(format!(
            "the body is over {MAX_BODY_BYTES} bytes"
        )));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::bad_request("the body is not UTF-8"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, axum::Json(v)).into_response()
}

async fn start_job(
    State(s): State<ApiState>,
    Owner(owner): Owner,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    ApiJson(req): ApiJson<StartJobRequest>,
) -> Result<Response, ApiError> {
    let (job, created) = s.service.start(&owner, req).await?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &job))
}

async fn get_job(
    State(s): State<ApiState>,
    Owner(owner): Owner,
    Path(job_id): Path<String>,
    ApiQuery(params): ApiQuery<GetParams>,
) -> Result<Response, ApiError> {
    let job = s.service.get_with(&owner, &job_id, params).await?;
    Ok(json(StatusCode::OK, &job))
}

async fn get_job_history(
    State(s): State<ApiState>,
    Owner(owner): Owner,
    Path(job_id): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Response, ApiError> {
    let h = s.service.history(&owner, &job_id, &params).await?;
    Ok(json(StatusCode::OK, &h))
}

async fn list_jobs(
    State(s): State<ApiState>,
    Owner(owner): Owner,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &s.service.list(&owner, &params).await?,
    ))
}

async fn cancel_job(
    State(s): State<ApiState>,
    Owner(owner): Owner,
    Path(job_id): Path<String>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &s.service.cancel(&owner, &job_id).await?,
    ))
}

/// answerJobInput: the owner answers the question the job waits for (the body is the
/// answer object, checked against the request's schema).
async fn answer_job_input(
    State(s): State<ApiState>,
    Owner(owner): Owner,
    Path(job_id): Path<String>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    ApiJson(answer): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &s.service
            .answer_input(&owner, &job_id, None, &answer)
            .await?,
    ))
}

async fn list_job_types(
    State(s): State<ApiState>,
    Owner(_): Owner,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"jobTypes": s.service.job_types()}),
    ))
}

async fn create_upload(
    State(s): State<ApiState>,
    Owner(owner): Owner,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    ApiJson(req): ApiJson<CreateUploadRequest>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &s.service.create_upload(&owner, &req).await?,
    ))
}

async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// The public base URL of a request (for the spec's `servers`), from proxy headers or Host.
fn base_url(headers: &axum::http::HeaderMap) -> String {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host = h("x-forwarded-host")
        .or_else(|| h("host"))
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let proto = h("x-forwarded-proto").unwrap_or_else(|| "http".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(*c))
        .collect();
    let proto = if proto == "https" { "https" } else { "http" };
    format!("{proto}://{host}")
}

/// The base URL the spec names: the configured public URL, else API Gateway's stage URL
/// (the Lambda gets the domain and stage in the request context; the path it sees has no
/// stage), else the request's own host.
fn spec_server_url(state: &ApiState, req: &Request<axum::body::Body>) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_string();
    }
    use lambda_http::request::RequestContext;
    if let Some(RequestContext::ApiGatewayV1(ctx)) = req.extensions().get::<RequestContext>()
        && let Some(domain) = ctx.domain_name.as_deref().filter(|d| !d.is_empty())
    {
        let domain: String = domain
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || ".-".contains(*c))
            .collect();
        return match ctx
            .stage
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "$default")
        {
            Some(stage) => {
                let stage: String = stage
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
                    .collect();
                format!("https://{domain}/{stage}")
            }
            None => format!("https://{domain}"),
        };
    }
    base_url(req.headers())
}

async fn spec_yaml(State(s): State<ApiState>, req: Request<axum::body::Body>) -> Response {
    let body = openapi_yaml(&spec_server_url(&s, &req));
    ([(header::CONTENT_TYPE, "application/yaml")], body).into_response()
}

async fn spec_json(State(s): State<ApiState>, req: Request<axum::body::Body>) -> Response {
    json(StatusCode::OK, &openapi(&spec_server_url(&s, &req)))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.yaml")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "bad_request",
        "this method is not allowed on this route",
    )
}

/// The API's Router, with request ids, tracing (no secrets), a timeout above the longest
/// long poll, and panics turned into a 500 JSON error. The layers wrap the routes once, as
/// one service, rather than each route (`Router::layer`), which would clone every layer's
/// service for every request (a few % of getJob's time in a profile).
pub fn router(state: ApiState) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let routes = Router::new()
        .route("/jobs", post(start_job).get(list_jobs))
        .route("/jobs/{jobId}", get(get_job))
        .route("/jobs/{jobId}/cancel", post(cancel_job))
        .route("/jobs/{jobId}/input", post(answer_job_input))
        .route("/jobs/{jobId}/history", get(get_job_history))
        .route("/job-types", get(list_job_types))
        .route("/uploads", post(create_upload))
        .route("/healthz", get(healthz))
        .route("/openapi.yaml", get(spec_yaml))
        .route("/openapi.json", get(spec_json))
        .merge(mcp::routes())
        .merge(callbacks::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let layered = tower::ServiceBuilder::new()
        // Rewriting the path must happen before routing.
        .map_request(strip_api_gateway_stage)
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(x_request_id))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                // The path only: query strings may carry signatures.
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on our side; try again").into_response()
        }))
        .map_response(into_response)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(axum::middleware::map_response(too_large_as_json))
        .layer(axum::middleware::from_fn(refuse_declared_oversized_body))
        .map_response(into_response)
        // A body one byte over the limit is cut off here, before it is buffered whole.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES + 1))
        .service(routes);
    Router::new().fallback_service(layered)
}

/// A layer's response as the API's (layers change the body type).
fn into_response<R: IntoResponse>(r: R) -> Response {
    r.into_response()
}

/// API Gateway REST puts the stage in front of the path (`/prod/jobs`) unless the Lambda
/// runs with `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true`; routes are stage-free either way.
fn strip_api_gateway_stage<B>(mut req: Request<B>) -> Request<B> {
    use lambda_http::request::RequestContext;
    let stage = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| s != "$default" && !s.is_empty()) else {
        return req;
    };
    let prefix = format!("/{stage}");
    let path = req.uri().path();
    let rest = match path.strip_prefix(&prefix) {
        Some("") => "/".to_string(),
        Some(r) if r.starts_with('/') => r.to_string(),
        _ => return req,
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    if let Ok(pq) = pq.parse::<axum::http::uri::PathAndQuery>() {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// How much of a refused body is read and thrown away so that the client sees the 413.
const DRAIN_LIMIT_BYTES: u64 = 64 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A body declared over the limit is refused without being kept, but it is read (up to
/// [`DRAIN_LIMIT_BYTES`]) before the 413 goes out: closing a socket with unread data makes the
/// kernel send a reset, and a client still writing its body then sees "broken pipe" instead of
/// the answer (seen in CI). Bigger bodies get the 413 at once and the connection is closed.
async fn refuse_declared_oversized_body(
    req: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > MAX_BODY_BYTES as u64 => {
            if len <= DRAIN_LIMIT_BYTES {
                discard_body(req.into_body(), DRAIN_LIMIT_BYTES, DRAIN_TIMEOUT).await;
            }
            ApiError::payload_too_large(format!(
                "the body is {len} bytes; the limit is {MAX_BODY_BYTES}"
            ))
            .into_response()
        }
        _ => next.run(req).await,
    }
}

/// Reads and drops a body, at most `limit` bytes and for at most `timeout`; true when it
/// was read to its end.
async fn discard_body(body: axum::body::Body, limit: u64, timeout: Duration) -> bool {
    use http_body_util::BodyExt;
    let read = async {
        let mut body = body;
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > limit {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(false)
}

/// tower-http answers an oversized body with a plain-text 413; make it the API's JSON error.
async fn too_large_as_json(resp: Response) -> Response {
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v != HeaderValue::from_static("application/json"))
    {
        return ApiError::payload_too_large(format!("the body is over {MAX_BODY_BYTES} bytes"))
            .into_response();
    }
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE
        && resp.headers().get(header::CONTENT_TYPE).is_none()
    {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the request took too long; try again",
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    }
    resp
}
