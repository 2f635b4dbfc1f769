//! JSON-RPC 2.0 as MCP uses it over Streamable HTTP: one message per POST, request ids that
//! are strings or integers (never null), params that are objects, and the error codes of
//! JSON-RPC and of MCP.

use serde_json::{Map, Value, json};

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a valid JSON-RPC request (or a batch, which MCP no longer allows).
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Bad params, an unknown tool, an unknown or expired task, an invalid cursor.
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// 2026-07-28: an `MCP-Protocol-Version`, `Mcp-Method` or `Mcp-Name` header is missing or
/// differs from the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request needs a client capability it did not declare (tasks/* without
/// the tasks extension).
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// 2026-07-28: the requested protocol version is not served; `data.supported` lists those that are.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// A request id: a string or an integer (MCP forbids null).
pub type RequestId = Value;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, message)
    }

    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }

    pub fn to_json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

/// One message a client POSTed.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: RequestId,
        method: String,
        params: Map<String, Value>,
    },
    Notification {
        method: String,
    },
    /// A response to a server request (this server sends none, so it is dropped).
    Response,
}

/// Reads a POST body as one JSON-RPC message. The error carries the id when one could be
/// read, so the client can match it.
#[allow(
    clippy::result_large_err,
    reason = "one per malformed request, returned straight to the client; serde_json with preserve_order makes a Value 72 bytes"
)]
pub fn parse(body: &[u8]) -> Result<Incoming, (Option<RequestId>, RpcError)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            None,
            RpcError::new(PARSE_ERROR, format!("the body is not JSON: {e}")),
        )
    })?;
    let Value::Object(mut msg) = value else {
        let what = if value.is_array() {
            "a batch (an array); send one JSON-RPC message per POST"
        } else {
            "not a JSON-RPC message object"
        };
        return Err((
            None,
            RpcError::new(INVALID_REQUEST, format!("the body is {what}")),
        ));
    };
    let id = match msg.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) if is_valid_id(&id) => Some(id),
        Some(other) => {
            return Err((
                None,
                RpcError::new(
                    INVALID_REQUEST,
                    format!(
                        "id must be a string or an integer, not {}",
                        longhaul_jobs::types::json_kind(&other)
                    ),
                ),
            ));
        }
    };
    if msg.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err((
            id,
            RpcError::new(INVALID_REQUEST, "jsonrpc must be \"2.0\""),
        ));
    }
    let method = match msg.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => {
            return Err((
                id,
                RpcError::new(INVALID_REQUEST, "method must be a string"),
            ));
        }
        None if id.is_some() && (msg.contains_key("result") || msg.contains_key("error")) => {
            return Ok(Incoming::Response);
        }
        None => return Err((id, RpcError::new(INVALID_REQUEST, "method is missing"))),
    };
    let params = match msg.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err((id, RpcError::invalid_params("params must be an object")));
        }
    };
    Ok(match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method },
    })
}

/// Strings, and numbers that are integers (`1.5` is no id).
fn is_valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// `{"jsonrpc": "2.0", "id", "result"}`.
pub fn result(id: &RequestId, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// `{"jsonrpc": "2.0", "id", "error"}`; the id is null when the request's could not be read.
pub fn error(id: Option<&RequestId>, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": e.to_json()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_code(body: &str) -> i64 {
        parse(body.as_bytes()).unwrap_err().1.code
    }

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"x"}}"#),
            Ok(Incoming::Request {
                id: json!(7),
                method: "tools/list".into(),
                params: json!({"cursor": "x"}).as_object().unwrap().clone(),
            })
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#),
            Ok(Incoming::Request {
                id: json!("a"),
                method: "ping".into(),
                params: Map::new(),
            })
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Incoming::Notification {
                method: "notifications/initialized".into()
            })
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Ok(Incoming::Response)
        );
    }

    #[test]
    fn malformed_messages_get_the_json_rpc_codes() {
        assert_eq!(err_code("{"), PARSE_ERROR);
        assert_eq!(err_code(""), PARSE_ERROR);
        assert_eq!(err_code("[]"), INVALID_REQUEST);
        assert_eq!(
            err_code(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            INVALID_REQUEST
        );
        assert_eq!(err_code("42"), INVALID_REQUEST);
        assert_eq!(err_code(r#"{"id":1,"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(
            err_code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":3}"#),
            INVALID_REQUEST
        );
        assert_eq!(err_code(r#"{"jsonrpc":"2.0","id":1}"#), INVALID_REQUEST);
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#),
            INVALID_PARAMS
        );
    }

    #[test]
    fn an_error_keeps_the_id_it_could_read() {
        let (id, e) =
            parse(br#"{"jsonrpc":"2.0","id":"r1","method":"x","params":"p"}"#).unwrap_err();
        assert_eq!(id, Some(json!("r1")));
        assert_eq!(
            error(id.as_ref(), &e),
            json!({"jsonrpc": "2.0", "id": "r1", "error": {"code": INVALID_PARAMS, "message": "params must be an object"}})
        );
        assert_eq!(
            error(
                None,
                &RpcError::new(PARSE_ERROR, "x").with_data(json!({"a": 1}))
            ),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": PARSE_ERROR, "message": "x", "data": {"a": 1}}})
        );
    }
}
