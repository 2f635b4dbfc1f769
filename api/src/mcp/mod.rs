//! The same jobs over the Model Context Protocol: `/mcp`, Streamable HTTP, dual-era.
//!
//! - **2026-07-28 ("modern")**: no handshake; each request carries `_meta`
//!   (`io.modelcontextprotocol/protocolVersion`, `…/clientCapabilities`) and the
//!   `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` headers, checked against the body
//!   (`protocol::classify`). `server/discover`; tasks are the `io.modelcontextprotocol/tasks`
//!   extension: a job tool called by a client that declares it answers
//!   `{"resultType": "task", …}`, then `tasks/get` (the tool result inline once completed,
//!   the job's question as `inputRequests` while it waits for one), `tasks/cancel`,
//!   `tasks/update` (the answer).
//! - **2025-11-25 and earlier ("legacy")**: `initialize`, then requests with the
//!   `MCP-Protocol-Version` header; tasks in the core: `params.task` on `tools/call` →
//!   `{"task": {…}}`, `tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel`; job tools
//!   declare `execution.taskSupport: "optional"`.
//!
//! One tool per job type (from `JobService::job_types()`), plus `get_job`, `list_jobs`,
//! `cancel_job`, `list_job_types` (`tools`); tasks are jobs (`tasks`).
//!
//! **Stateless, in both eras.** The route sits in the REST Router, so it has the same
//! authentication (every request, as REST: 401 with `WWW-Authenticate`), owners, body
//! limit (413) and timeout. With an OAuth issuer (`--auth jwt`) the 401's challenge names
//! the RFC 9728 protected resource metadata, served at [`METADATA_PATH`], as MCP's
//! authorization spec asks, so a client can find where to sign in. A legacy `initialize` is answered without an `Mcp-Session-Id`:
//! the 2025-11-25 transport lets a server use no sessions, and then no request needs
//! memory of an earlier one — what a session would hold is in each request (the
//! `MCP-Protocol-Version` header; a task is asked for per call with `params.task`; the
//! owner comes from the credentials). So any instance (a Lambda container, a restarted
//! `serve`) answers any request; GET (the legacy server-to-client stream) and DELETE (ending
//! a session) get 405. Every answer is one `application/json` response: the server sends no
//! notifications or requests of its own.
//!
//! **Why not the Rust SDK.** `rmcp` 3.11 (checked with `cargo info rmcp` and its source)
//! speaks 2026-07-28 and the tasks extension, but no longer has 2025-11-25's core tasks:
//! its `CallToolRequestParams` drops `params.task`, and `tasks/result` / `tasks/list`
//! reach only its custom-request hook, with the modern field names. Serving legacy tasks
//! next to it would take a second JSON-RPC layer in front of it, and the two would have to
//! agree on every request's era. Its HTTP service is also a second HTTP stack inside
//! this Router (its own body limit, a loopback-only `Host` allow-list by default, sessions
//! and SSE machinery this stateless server does not use). The protocol surface longhaul
//! needs — a handful of methods over one request, one response — is small, so it is
//! written here, and tested with the official Python SDK as the client (`tests/mcp.rs`).

mod jsonrpc;
mod protocol;
mod tasks;
mod tools;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use longhaul_jobs::JobService;
use serde_json::{Map, Value, json};

use crate::{ApiError, ApiState, Owner};
use jsonrpc::{Incoming, RpcError};
use protocol::Era;

pub use jsonrpc::{
    HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY, PARSE_ERROR, UNSUPPORTED_PROTOCOL_VERSION,
};
pub use protocol::{LEGACY_VERSIONS, MODERN_VERSIONS};
pub use tasks::{JOB_FAILED, JOB_TIMED_OUT};

/// The path of the MCP endpoint.
pub const PATH: &str = "/mcp";

const SERVER_NAME: &str = "longhaul";

const INSTRUCTIONS: &str = "longhaul runs long jobs. Each job type is a tool of the same name: calling it starts a job. \
Clients with tasks get a task at once and poll it; others get the job after up to 20 s and poll it with get_job (waitSeconds=20) until it ends. \
Result files are links that expire; list_jobs and cancel_job manage jobs. \
A job may ask the user a question (task status input_required): show it, and send the answer with tasks/update.";

/// What a method needs: the service, the caller, and the revision it speaks.
pub(crate) struct Call<'a> {
    pub service: &'a JobService,
    pub owner: &'a str,
    pub era: &'a Era,
}

/// Where the protected resource metadata of `/mcp` is (RFC 9728's path-inserted form).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";

/// `/mcp`: POST carries JSON-RPC; GET and DELETE are refused with 405 once authenticated.
/// Its protected resource metadata needs no credentials (clients read it to get some).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(PATH, post(post_message).get(no_stream).delete(no_stream))
        .route(METADATA_PATH, get(protected_resource_metadata))
}

/// RFC 9728 metadata: which authorization servers issue tokens for `/mcp`, so that an MCP
/// client can sign in on its own. Only when the server has one (`--auth jwt`: its issuer);
/// a tokens file names none, and then this is 404.
async fn protected_resource_metadata(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Response {
    let servers = state.auth.authorization_servers();
    if servers.is_empty() {
        return ApiError::not_found(
            "no OAuth authorization server: this server takes the bearer tokens of its tokens file",
        )
        .into_response();
    }
    axum::Json(json!({
        "resource": format!("{}{PATH}", crate::base_url(&headers)),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "resource_name": SERVER_NAME,
    }))
    .into_response()
}

/// A refused credential: the REST 401, whose challenge also names the protected resource
/// metadata when there is an authorization server (MCP's authorization spec).
fn unauthorized(state: &ApiState, headers: &HeaderMap, e: ApiError) -> Response {
    let token_given = e.token_given;
    let mut r = e.into_response();
    if !state.auth.authorization_servers().is_empty() {
        let mut challenge = format!(
            "Bearer resource_metadata=\"{}{METADATA_PATH}\"",
            crate::base_url(headers)
        );
        if token_given {
            challenge.push_str(", error=\"invalid_token\"");
        }
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    r
}

/// The legacy transport's GET (a server-to-client stream) and DELETE (end a session): this
/// server sends nothing unasked and keeps no sessions.
async fn no_stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
    owner: Result<Owner, ApiError>,
) -> Response {
    if let Some(r) = foreign_origin(&headers) {
        return r;
    }
    if let Err(e) = owner {
        return unauthorized(&state, &headers, e);
    }
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "bad_request",
        "this MCP endpoint takes POST only: no server-to-client stream, no sessions",
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

async fn post_message(
    State(state): State<ApiState>,
    headers: HeaderMap,
    owner: Result<Owner, ApiError>,
    body: Bytes,
) -> Response {
    if let Some(r) = foreign_origin(&headers) {
        return r;
    }
    let owner = match owner {
        Ok(Owner(o)) => o,
        Err(e) => return unauthorized(&state, &headers, e),
    };
    let (id, method, params) = match jsonrpc::parse(&body) {
        Ok(Incoming::Request { id, method, params }) => (id, method, params),
        // Accepted and dropped: the client's notifications (initialized, cancelled) ask
        // nothing of a stateless server, and it sends no requests to answer.
        Ok(Incoming::Notification { .. } | Incoming::Response) => {
            return StatusCode::ACCEPTED.into_response();
        }
        Err((id, e)) => {
            return rpc_response(StatusCode::BAD_REQUEST, jsonrpc::error(id.as_ref(), &e));
        }
    };
    let era = match protocol::classify(&method, &params, &headers) {
        Ok(era) => era,
        Err(e) => return rpc_response(StatusCode::BAD_REQUEST, jsonrpc::error(Some(&id), &e)),
    };
    // The method is the client's text: only its start goes to the log.
    let logged: String = method.chars().take(64).collect();
    tracing::debug!(method = %logged, ?era, "mcp request");
    let call = Call {
        service: &state.service,
        owner: &owner,
        era: &era,
    };
    match dispatch(&call, &method, &params).await {
        Ok(result) => rpc_response(StatusCode::OK, jsonrpc::result(&id, decorate(result, &era))),
        Err(e) => rpc_response(http_status(&era, &e), jsonrpc::error(Some(&id), &e)),
    }
}

/// Runs one request of either era.
async fn dispatch(
    call: &Call<'_>,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    match (call.era, method) {
        (Era::Legacy { .. }, "initialize") => initialize(params),
        (Era::Legacy { .. }, "ping") => Ok(json!({})),
        (Era::Modern { .. }, "server/discover") => Ok(discover()),
        (_, "tools/list") => tools_list(call, params),
        (_, "tools/call") => tools::call(call, params).await,
        (Era::Modern { tasks: false, .. }, "tasks/get" | "tasks/update" | "tasks/cancel") => {
            Err(RpcError::new(
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                "Missing required client capability: declare the io.modelcontextprotocol/tasks extension in clientCapabilities.extensions",
            )
            .with_data(json!({"requiredCapabilities": {"extensions": {protocol::TASKS_EXTENSION: {}}}})))
        }
        (Era::Modern { .. }, "tasks/get") => tasks::get(call, params).await,
        (Era::Modern { .. }, "tasks/update") => tasks::update(call, params).await,
        (Era::Modern { .. }, "tasks/cancel") => tasks::cancel(call, params).await,
        (era, "tasks/get") if era.has_legacy_tasks() => tasks::get(call, params).await,
        (era, "tasks/result") if era.has_legacy_tasks() => tasks::result(call, params).await,
        (era, "tasks/list") if era.has_legacy_tasks() => tasks::list(call, params).await,
        (era, "tasks/cancel") if era.has_legacy_tasks() => tasks::cancel(call, params).await,
        _ => Err(RpcError::method_not_found(method)),
    }
}

/// The legacy handshake: the negotiated version, the capabilities (core tasks from
/// 2025-11-25), who we are. No session id: see the module doc.
fn initialize(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
        return Err(RpcError::invalid_params(
            "params.protocolVersion must be a string",
        ));
    };
    let version = protocol::negotiate_legacy(requested);
    let mut capabilities = json!({"tools": {"listChanged": false}});
    if version == protocol::LEGACY_TASKS_VERSION {
        capabilities["tasks"] =
            json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}});
    }
    Ok(json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    }))
}

fn discover() -> Value {
    json!({
        "supportedVersions": protocol::supported_versions(),
        "capabilities": {
            "tools": {"listChanged": false},
            "extensions": {protocol::TASKS_EXTENSION: {}},
        },
        "instructions": INSTRUCTIONS,
        "ttlMs": TOOLS_TTL_MS,
        "cacheScope": "private",
    })
}

/// How long clients may cache `tools/list` and `server/discover` (2026-07-28): job types
/// change only when the server restarts with other job type folders.
const TOOLS_TTL_MS: u64 = 60_000;

fn tools_list(call: &Call<'_>, params: &Map<String, Value>) -> Result<Value, RpcError> {
    if params.get("cursor").is_some_and(|c| !c.is_null()) {
        // Every tool is on the first page, so no cursor was ever handed out.
        return Err(RpcError::invalid_params(
            "invalid cursor: tools/list has a single page",
        ));
    }
    let mut r = json!({"tools": tools::list(call)});
    if call.era.is_modern() {
        // The same for every caller, but it sits behind auth: no shared cache keeps it.
        r["ttlMs"] = json!(TOOLS_TTL_MS);
        r["cacheScope"] = json!("private");
    }
    Ok(r)
}

fn server_info() -> Value {
    json!({"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")})
}

/// 2026-07-28 results say what they are (`resultType`, "complete" unless a handler set
/// "task") and who answered (`_meta` serverInfo); legacy results stay as their revision
/// defined them.
fn decorate(mut result: Value, era: &Era) -> Value {
    if era.is_modern()
        && let Value::Object(r) = &mut result
    {
        r.entry("resultType").or_insert_with(|| json!("complete"));
        let meta = r.entry("_meta").or_insert_with(|| json!({}));
        if let Value::Object(m) = meta {
            m.insert(protocol::META_SERVER_INFO.into(), server_info());
        }
    }
    result
}

/// The HTTP status of a JSON-RPC error: 2026-07-28 requires 400 for malformed and refused
/// requests and 404 for an unknown method, so that a dual-era client can tell a modern
/// server from a legacy one; legacy errors travel in a 200.
fn http_status(era: &Era, e: &RpcError) -> StatusCode {
    if !era.is_modern() {
        return StatusCode::OK;
    }
    match e.code {
        jsonrpc::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        jsonrpc::PARSE_ERROR
        | jsonrpc::INVALID_REQUEST
        | jsonrpc::INVALID_PARAMS
        | jsonrpc::HEADER_MISMATCH
        | jsonrpc::MISSING_REQUIRED_CLIENT_CAPABILITY
        | jsonrpc::UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

fn rpc_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A browser page from another origin (the `Origin` header names a host other than the one
/// the request is for) is refused with 403, as the transport asks against DNS rebinding and
/// cross-site requests; clients that are not browsers send no `Origin`.
fn foreign_origin(headers: &HeaderMap) -> Option<Response> {
    let origin = headers.get(header::ORIGIN)?;
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        });
    if origin_host.is_some() && origin_host.as_deref() == host {
        return None;
    }
    let body = jsonrpc::error(
        None,
        &RpcError::new(
            INVALID_REQUEST,
            "cross-origin requests are refused: the Origin header names another host",
        ),
    );
    Some(rpc_response(StatusCode::FORBIDDEN, body))
}
