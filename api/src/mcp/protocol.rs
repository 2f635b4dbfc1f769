//! Which protocol revision a request speaks, and the checks the 2026-07-28 transport asks of
//! a server before it acts (the "validation ladder"): the per-request `_meta`, the
//! `MCP-Protocol-Version` / `Mcp-Method` / `Mcp-Name` headers agreeing with the body, and a
//! version this server serves.

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::jsonrpc::{HEADER_MISMATCH, RpcError, UNSUPPORTED_PROTOCOL_VERSION};

/// Revisions served statelessly with per-request `_meta`.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// Revisions reached through the `initialize` handshake, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// The legacy revision with tasks in the core (`params.task`, `tasks/result`, `tasks/list`).
pub const LEGACY_TASKS_VERSION: &str = "2025-11-25";
/// The version a legacy request without `MCP-Protocol-Version` is taken to speak (the
/// 2025-11-25 transport says so: clients before 2025-06-18 sent no header).
const HEADERLESS_VERSION: &str = "2025-03-26";

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const HEADER_METHOD: &str = "mcp-method";
pub const HEADER_NAME: &str = "mcp-name";

/// The protocol revision of one request, with what it says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Era {
    /// 2026-07-28 and later: no session; `tasks` says whether the request's client
    /// capabilities declare the tasks extension.
    Modern { version: String, tasks: bool },
    /// 2025-11-25 and earlier, after (or at) `initialize`.
    Legacy { version: &'static str },
}

impl Era {
    pub fn is_modern(&self) -> bool {
        matches!(self, Era::Modern { .. })
    }

    /// Whether the revision has tasks in the core (2025-11-25).
    pub fn has_legacy_tasks(&self) -> bool {
        matches!(self, Era::Legacy { version } if *version == LEGACY_TASKS_VERSION)
    }

    /// Whether the revision knows `structuredContent` and `resource_link` (2025-06-18+).
    pub fn has_structured_content(&self) -> bool {
        !matches!(self, Era::Legacy { version } if *version == "2025-03-26")
    }
}

/// Every version this server speaks, modern first (the `supported` list of -32022).
pub fn supported_versions() -> Vec<&'static str> {
    MODERN_VERSIONS
        .iter()
        .chain(LEGACY_VERSIONS)
        .copied()
        .collect()
}

/// The legacy version to answer an `initialize` with: the client's when served, else the
/// newest (the client then decides whether it can go on).
pub fn negotiate_legacy(requested: &str) -> &'static str {
    LEGACY_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LEGACY_VERSIONS[0])
}

/// Decides the era of a request and runs the 2026-07-28 checks on modern ones.
///
/// `initialize` always selects the legacy handshake. A request is modern when its `_meta`
/// carries a protocol version that is not a legacy one, when its method is
/// `server/discover`, or when its `MCP-Protocol-Version` header names a version that is not
/// a legacy one; the rest are legacy (with the header's version, or 2025-03-26 without one).
pub fn classify(
    method: &str,
    params: &Map<String, Value>,
    headers: &HeaderMap,
) -> Result<Era, RpcError> {
    if method == "initialize" {
        return Ok(Era::Legacy {
            version: LEGACY_VERSIONS[0],
        });
    }
    let header_version = single_header(headers, HEADER_PROTOCOL_VERSION)?;
    let meta = params.get("_meta").and_then(Value::as_object);
    let meta_version = meta.and_then(|m| m.get(META_PROTOCOL_VERSION));
    // A legacy client may name its (legacy) version in `_meta` too; that is no modern marker.
    let meta_modern =
        meta_version.is_some_and(|v| v.as_str().is_none_or(|v| !LEGACY_VERSIONS.contains(&v)));
    let modern = meta_modern
        || method == "server/discover"
        || header_version
            .as_deref()
            .is_some_and(|v| !LEGACY_VERSIONS.contains(&v));
    if !modern {
        let version = match header_version.as_deref() {
            None => HEADERLESS_VERSION,
            Some(v) => LEGACY_VERSIONS
                .iter()
                .copied()
                .find(|l| *l == v)
                .unwrap_or(HEADERLESS_VERSION),
        };
        return Ok(Era::Legacy { version });
    }
    modern_ladder(method, params, headers, header_version)
}

/// The 2026-07-28 checks, in the spec's order: the `_meta` envelope (-32602), the headers
/// against the body (-32020), then the version (-32022).
fn modern_ladder(
    method: &str,
    params: &Map<String, Value>,
    headers: &HeaderMap,
    header_version: Option<String>,
) -> Result<Era, RpcError> {
    let Some(meta) = params.get("_meta").and_then(Value::as_object) else {
        // A version this server does not know, from a client that sends no `_meta`: an old
        // client (2024-11-05) is told what is served rather than that its params are wrong.
        if let Some(h) = header_version.as_deref()
            && !MODERN_VERSIONS.contains(&h)
        {
            return Err(unsupported(h));
        }
        return Err(RpcError::invalid_params(format!(
            "params._meta must be an object with {META_PROTOCOL_VERSION:?} and {META_CLIENT_CAPABILITIES:?} (revision 2026-07-28 sends them on every request)"
        )));
    };
    let missing: Vec<&str> = [META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES]
        .into_iter()
        .filter(|k| !meta.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(RpcError::invalid_params(format!(
            "params._meta is missing {}",
            missing.join(" and ")
        )));
    }
    let version = &meta[META_PROTOCOL_VERSION];
    match header_version.as_deref() {
        None => return Err(mismatch("the MCP-Protocol-Version header is missing")),
        Some(h) if Some(h) != version.as_str() => {
            return Err(mismatch(format!(
                "the MCP-Protocol-Version header {h:?} differs from params._meta's {version}"
            )));
        }
        Some(_) => {}
    }
    match single_header(headers, HEADER_METHOD)?.as_deref() {
        None => return Err(mismatch("the Mcp-Method header is missing")),
        Some(h) if h != method => {
            return Err(mismatch(format!(
                "the Mcp-Method header {h:?} differs from the body's method {method:?}"
            )));
        }
        Some(_) => {}
    }
    if let Some(key) = name_param(method) {
        check_name_header(headers, params, key)?;
    }
    let Some(version) = version.as_str() else {
        return Err(RpcError::invalid_params(format!(
            "params._meta[{META_PROTOCOL_VERSION:?}] must be a string"
        )));
    };
    if !MODERN_VERSIONS.contains(&version) {
        return Err(unsupported(version));
    }
    let capabilities = &meta[META_CLIENT_CAPABILITIES];
    if !capabilities.is_object() {
        return Err(RpcError::invalid_params(format!(
            "params._meta[{META_CLIENT_CAPABILITIES:?}] must be an object"
        )));
    }
    let tasks = capabilities
        .get("extensions")
        .and_then(|e| e.get(TASKS_EXTENSION))
        .is_some_and(Value::is_object);
    Ok(Era::Modern {
        version: version.to_string(),
        tasks,
    })
}

/// The body param that the `Mcp-Name` header mirrors: the core's `tools/call`,
/// `prompts/get`, `resources/read`, and the tasks extension's `tasks/*` (its task id).
fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

fn check_name_header(
    headers: &HeaderMap,
    params: &Map<String, Value>,
    key: &str,
) -> Result<(), RpcError> {
    let Some(body) = params.get(key).and_then(Value::as_str) else {
        // The method's own param check names this problem better.
        return Ok(());
    };
    let Some(raw) = single_header(headers, HEADER_NAME)? else {
        return Err(mismatch("the Mcp-Name header is missing"));
    };
    let decoded = decode_header_value(&raw).ok_or_else(|| {
        mismatch("the Mcp-Name header's =?base64?...?= value is not base64 of UTF-8")
    })?;
    if decoded != body {
        return Err(mismatch(format!(
            "the Mcp-Name header {decoded:?} differs from params.{key} {body:?}"
        )));
    }
    Ok(())
}

/// A header value, undoing the spec's `=?base64?...?=` form for values that are not plain
/// visible ASCII.
pub fn decode_header_value(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(raw.to_string()),
    }
}

/// A header given at most once, as text.
fn single_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, RpcError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(mismatch(format!(
            "the {name} header is given more than once"
        )));
    }
    first
        .to_str()
        .map(|s| Some(s.trim().to_string()))
        .map_err(|_| mismatch(format!("the {name} header is not visible ASCII")))
}

fn unsupported(requested: &str) -> RpcError {
    RpcError::new(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version")
        .with_data(json!({"supported": supported_versions(), "requested": requested}))
}

fn mismatch(message: impl Into<String>) -> RpcError {
    RpcError::new(
        HEADER_MISMATCH,
        format!("Header mismatch: {}", message.into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::jsonrpc::INVALID_PARAMS;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn modern_params(extra: Value, caps: Value) -> Map<String, Value> {
        let mut p = params(extra);
        p.insert(
            "_meta".into(),
            json!({META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: caps}),
        );
        p
    }

    fn modern_headers(method: &str, name: Option<&str>) -> HeaderMap {
        let mut h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ]);
        if let Some(n) = name {
            h.append("mcp-name", HeaderValue::from_str(n).unwrap());
        }
        h
    }

    #[test]
    fn initialize_and_requests_without_modern_markers_are_legacy() {
        let none = Map::new();
        assert_eq!(
            classify(
                "initialize",
                &none,
                &headers(&[("mcp-protocol-version", "2026-07-28")])
            ),
            Ok(Era::Legacy {
                version: "2025-11-25"
            })
        );
        assert_eq!(
            classify("tools/list", &none, &HeaderMap::new()),
            Ok(Era::Legacy {
                version: "2025-03-26"
            })
        );
        assert_eq!(
            classify(
                "tools/list",
                &none,
                &headers(&[("mcp-protocol-version", "2025-06-18")])
            ),
            Ok(Era::Legacy {
                version: "2025-06-18"
            })
        );
        let era = classify(
            "tasks/list",
            &none,
            &headers(&[("mcp-protocol-version", "2025-11-25")]),
        );
        assert!(era.unwrap().has_legacy_tasks());
        // A legacy client that also names its version in _meta stays legacy.
        let p = params(json!({"_meta": {META_PROTOCOL_VERSION: "2025-11-25"}}));
        assert_eq!(
            classify(
                "tools/list",
                &p,
                &headers(&[("mcp-protocol-version", "2025-11-25")])
            ),
            Ok(Era::Legacy {
                version: "2025-11-25"
            })
        );
    }

    #[test]
    fn a_modern_request_passes_the_ladder_and_says_whether_it_declared_tasks() {
        let caps = json!({"extensions": {TASKS_EXTENSION: {}}});
        assert_eq!(
            classify(
                "tools/call",
                &modern_params(json!({"name": "demo"}), caps),
                &modern_headers("tools/call", Some("demo"))
            ),
            Ok(Era::Modern {
                version: "2026-07-28".into(),
                tasks: true
            })
        );
        assert_eq!(
            classify(
                "tools/list",
                &modern_params(json!({}), json!({})),
                &modern_headers("tools/list", None)
            ),
            Ok(Era::Modern {
                version: "2026-07-28".into(),
                tasks: false
            })
        );
        // A name outside visible ASCII travels base64-encoded.
        assert_eq!(
            classify(
                "tasks/get",
                &modern_params(
                    json!({"taskId": "t-ü"}),
                    json!({"extensions": {TASKS_EXTENSION: {}}})
                ),
                &modern_headers("tasks/get", Some("=?base64?dC3DvA==?="))
            )
            .map(|e| e.is_modern()),
            Ok(true)
        );
    }

    #[test]
    fn the_ladder_refuses_in_the_spec_order() {
        let code = |method: &str, p: Map<String, Value>, h: HeaderMap| {
            classify(method, &p, &h).unwrap_err().code
        };
        // No _meta at all on a modern-only method.
        assert_eq!(
            code(
                "server/discover",
                Map::new(),
                modern_headers("server/discover", None)
            ),
            INVALID_PARAMS
        );
        // _meta without client capabilities.
        let mut p = Map::new();
        p.insert("_meta".into(), json!({META_PROTOCOL_VERSION: "2026-07-28"}));
        assert_eq!(
            code("tools/list", p, modern_headers("tools/list", None)),
            INVALID_PARAMS
        );
        // Headers: missing, disagreeing with the body, duplicated.
        let ok = || modern_params(json!({"name": "demo"}), json!({}));
        assert_eq!(
            code(
                "tools/call",
                ok(),
                headers(&[("mcp-method", "tools/call"), ("mcp-name", "demo")])
            ),
            HEADER_MISMATCH
        );
        assert_eq!(
            code(
                "tools/call",
                ok(),
                modern_headers("tools/list", Some("demo"))
            ),
            HEADER_MISMATCH
        );
        assert_eq!(
            code("tools/call", ok(), modern_headers("tools/call", None)),
            HEADER_MISMATCH
        );
        assert_eq!(
            code(
                "tools/call",
                ok(),
                modern_headers("tools/call", Some("other"))
            ),
            HEADER_MISMATCH
        );
        assert_eq!(
            code(
                "tools/call",
                ok(),
                modern_headers("tools/call", Some("=?base64?!!?="))
            ),
            HEADER_MISMATCH
        );
        let mut twice = modern_headers("tools/call", Some("demo"));
        twice.append(
            "mcp-protocol-version",
            HeaderValue::from_static("2026-07-28"),
        );
        assert_eq!(code("tools/call", ok(), twice), HEADER_MISMATCH);
        // The header names a version the body does not.
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ]);
        let mut p = Map::new();
        p.insert(
            "_meta".into(),
            json!({META_PROTOCOL_VERSION: "2099-01-01", META_CLIENT_CAPABILITIES: {}}),
        );
        assert_eq!(code("tools/list", p, h), HEADER_MISMATCH);
    }

    #[test]
    fn an_unknown_version_is_refused_with_the_supported_list() {
        let h = headers(&[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/list"),
        ]);
        let mut p = Map::new();
        p.insert(
            "_meta".into(),
            json!({META_PROTOCOL_VERSION: "2099-01-01", META_CLIENT_CAPABILITIES: {}}),
        );
        let e = classify("tools/list", &p, &h).unwrap_err();
        assert_eq!(e.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(
            e.data,
            Some(
                json!({"supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"], "requested": "2099-01-01"})
            )
        );
        // An unknown version in the header alone (a 2024-11-05 client) is told the same,
        // never served as if it spoke a version it does not.
        let e = classify(
            "tools/list",
            &Map::new(),
            &headers(&[("mcp-protocol-version", "2024-11-05")]),
        )
        .unwrap_err();
        assert_eq!(e.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(e.data.unwrap()["requested"], "2024-11-05");
    }

    #[test]
    fn initialize_negotiates_a_served_legacy_version() {
        assert_eq!(negotiate_legacy("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate_legacy("2024-11-05"), "2025-11-25");
        assert_eq!(negotiate_legacy("2026-07-28"), "2025-11-25");
    }
}
