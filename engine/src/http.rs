//! The HTTP Task (`arn:aws:states:::http:invoke`), as AWS's "Call HTTPS APIs in Step
//! Functions workflows" describes it: the arguments' fields and their checks (at definition
//! time when they are literal, at run time always), the request they make, and the result
//! (`{Headers, ResponseBody, StatusCode, StatusText}`) or the error (`States.Http.StatusCode.NNN`)
//! the response gives. The network call itself is the host's: an [`HttpInvoker`] (so this
//! crate needs no HTTP client, and the host decides which addresses may be reached).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::TaskFailure;
use crate::exec::Failure;
use crate::history::MAX_PAYLOAD_BYTES;

/// The HTTP Task's resource.
pub const HTTP_INVOKE: &str = "arn:aws:states:::http:invoke";

/// Longest response body an HTTP Task takes (AWS: 256 KiB); an invoker reads at most one
/// byte more, so that a longer one is told apart.
pub const MAX_RESPONSE_BYTES: usize = MAX_PAYLOAD_BYTES;

/// How long one request may take, connection included (AWS's limit for an HTTP Task).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The fields of an HTTP Task's Parameters (JSONPath) or Arguments (JSONata).
const FIELDS: &[&str] = &[
    "ApiEndpoint",
    "Method",
    "Headers",
    "QueryParameters",
    "RequestBody",
    "Transform",
    "Authentication",
    "InvocationConfig",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

/// Headers an HTTP Task may not set (AWS's list; `Authorization` comes from the connection).
const FORBIDDEN_HEADERS: &[&str] = &[
    "a-im",
    "accept-charset",
    "accept-datetime",
    "accept-encoding",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-md5",
    "date",
    "expect",
    "forwarded",
    "from",
    "host",
    "http2-settings",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "max-forwards",
    "origin",
    "pragma",
    "proxy-authorization",
    "referer",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "warning",
];

const FORBIDDEN_HEADER_PREFIXES: &[&str] = &["x-forwarded-", "x-amz-", "x-amzn-"];

/// Headers the HTTP Task sets itself: a value the definition gives is replaced, as on AWS.
const SET_BY_THE_TASK: &[&str] = &["user-agent", "range", "content-length"];

/// The `User-Agent` AWS sends (with the region where AWS has one).
const USER_AGENT: &str = "Amazon|StepFunctions|HttpInvoke|local";

/// One request of an HTTP Task, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// GET, POST, PUT, DELETE, PATCH, OPTIONS or HEAD.
    pub method: String,
    /// ApiEndpoint with QueryParameters added.
    pub url: String,
    /// In order; a name may repeat.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// `Authentication.ConnectionArn` (or `InvocationConfig.ConnectionArn`): which
    /// credentials the invoker adds, if it knows them.
    pub connection_arn: String,
    pub timeout: Duration,
}

/// The response an [`HttpInvoker`] got: at most [`MAX_RESPONSE_BYTES`] + 1 bytes of body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    /// The reason phrase (`OK`, `Not Found`).
    pub status_text: String,
    /// Names in lower case, in the order received; a name may repeat.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Sends HTTP Tasks' requests. The engine builds the request and the result; the invoker
/// decides what may be reached and makes the call. A failure to get a response is an error
/// a Retry or Catch can match (e.g. `States.Http.Socket`).
#[async_trait]
pub trait HttpInvoker: Send + Sync + 'static {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TaskFailure>;
}

/// A field's name without the JSONPath `.$` suffix.
fn bare(key: &str) -> &str {
    key.strip_suffix(".$").unwrap_or(key)
}

/// A value known when the definition is read: not a path (`key.$`) nor an expression.
fn literal<'v>(key: &str, v: &'v Value) -> Option<&'v Value> {
    let is_expr = v
        .as_str()
        .is_some_and(|s| crate::jsonata::expression_text(s).is_some());
    (!key.ends_with(".$") && !is_expr).then_some(v)
}

/// Definition-time checks of an HTTP Task's Parameters or Arguments (`field`): the problems
/// as (field, message). Only what is literal is checked; the rest is checked when it runs.
pub(crate) fn check_arguments(args: Option<&Value>, field: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let m = match args {
        Some(Value::Object(m)) => m,
        Some(Value::String(s)) if crate::jsonata::expression_text(s).is_some() => return out,
        _ => {
            out.push((
                field.to_string(),
                format!("an HTTP Task needs {field} with ApiEndpoint, Method and Authentication.ConnectionArn"),
            ));
            return out;
        }
    };
    let mut err = |f: &str, message: String| out.push((format!("{field}.{f}"), message));
    for k in m.keys() {
        if !FIELDS.contains(&bare(k)) {
            err(
                bare(k),
                format!(
                    "The field '{}' is not supported by the HTTP Task (its fields: {})",
                    bare(k),
                    FIELDS.join(", ")
                ),
            );
        }
    }
    let has = |name: &str| m.contains_key(name) || m.contains_key(&format!("{name}.$"));
    for required in ["ApiEndpoint", "Method"] {
        if !has(required) {
            err(required, format!("an HTTP Task needs {required}"));
        }
    }
    let mut checked = |name: &str, check: fn(&Value) -> Result<(), String>| {
        let key_and_value = m
            .get_key_value(name)
            .or_else(|| m.get_key_value(&format!("{name}.$")));
        if let Some((k, v)) = key_and_value
            && let Some(v) = literal(k, v)
            && let Err(message) = check(v)
        {
            out.push((format!("{field}.{name}"), message));
        }
    };
    checked("ApiEndpoint", |v| endpoint(v).map(|_| ()));
    checked("Method", |v| method(v).map(|_| ()));
    checked("Headers", check_literal_headers);
    checked("QueryParameters", |v| query_pairs(v).map(|_| ()));
    checked("Transform", |v| transform(Some(v)).map(|_| ()));
    checked("Authentication", |v| {
        connection(v, "Authentication").map(|_| ())
    });
    checked("InvocationConfig", |v| {
        connection(v, "InvocationConfig").map(|_| ())
    });
    match (has("Authentication"), has("InvocationConfig")) {
        (false, false) => out.push((
            format!("{field}.Authentication"),
            "an HTTP Task needs an EventBridge connection: Authentication.ConnectionArn (or InvocationConfig.ConnectionArn), as on AWS".into(),
        )),
        (true, true) => out.push((
            format!("{field}.Authentication"),
            "give Authentication or InvocationConfig, not both".into(),
        )),
        _ => {}
    }
    out
}

/// Literal headers: names outside AWS's forbidden list, values scalars (or arrays of them);
/// a name's `.$` form is checked by its name.
fn check_literal_headers(v: &Value) -> Result<(), String> {
    let Value::Object(h) = v else {
        return Err("Headers must be an object of header names and values".into());
    };
    let bad: Vec<String> = h
        .keys()
        .map(|k| bare(k).to_ascii_lowercase())
        .filter(|k| forbidden_header(k))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "The 'Headers' field contains unsupported values: [{}]",
            bad.join(", ")
        ));
    }
    for (k, v) in h {
        if let Some(v) = literal(k, v) {
            header_values(k, v)?;
        }
    }
    Ok(())
}

fn forbidden_header(lower: &str) -> bool {
    FORBIDDEN_HEADERS.contains(&lower)
        || FORBIDDEN_HEADER_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p))
}

fn endpoint(v: &Value) -> Result<url::Url, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("ApiEndpoint must be a URL (a string), not {v}"))?;
    let u = url::Url::parse(s).map_err(|e| format!("ApiEndpoint {s:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "https" | "http") || !u.has_host() {
        return Err(format!(
            "ApiEndpoint {s:?} must be an https URL with a host"
        ));
    }
    Ok(u)
}

fn method(v: &Value) -> Result<String, String> {
    match v.as_str() {
        Some(m) if METHODS.contains(&m) => Ok(m.to_string()),
        _ => Err(format!(
            "Method must be one of {}, not {v}",
            METHODS.join(", ")
        )),
    }
}

/// A header's, query parameter's or form field's value as text: strings as they are,
/// numbers and booleans written out; an array gives one value per item; null gives none.
fn scalar_values(name: &str, v: &Value, what: &str) -> Result<Vec<String>, String> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Null => Ok(None),
        other => Err(format!(
            "{what} {name:?} must be a string, number, boolean or an array of them, not {other}"
        )),
    };
    match v {
        Value::Array(items) => items.iter().filter_map(|i| one(i).transpose()).collect(),
        v => Ok(one(v)?.into_iter().collect()),
    }
}

fn header_values(name: &str, v: &Value) -> Result<Vec<String>, String> {
    scalar_values(bare(name), v, "the header")
}

fn query_pairs(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(q) = v else {
        return Err(format!(
            "QueryParameters must be an object of names and values, not {v}"
        ));
    };
    let mut out = Vec::new();
    for (k, v) in q {
        for value in scalar_values(k, v, "the query parameter")? {
            out.push((k.clone(), value));
        }
    }
    Ok(out)
}

/// How arrays are written in a URL-encoded body (`Transform.RequestEncodingOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayFormat {
    /// `a[0]=x&a[1]=y` (AWS's default).
    Indices,
    /// `a=x&a=y`.
    Repeat,
    /// `a=x,y`.
    Commas,
    /// `a[]=x&a[]=y`.
    Brackets,
}

/// `Transform`: `None` sends the body as JSON; `Some(format)` URL-encodes it.
fn transform(v: Option<&Value>) -> Result<Option<ArrayFormat>, String> {
    let Some(v) = v else { return Ok(None) };
    let Value::Object(t) = v else {
        return Err(format!("Transform must be an object, not {v}"));
    };
    for k in t.keys() {
        if !["RequestBodyEncoding", "RequestEncodingOptions"].contains(&k.as_str()) {
            return Err(format!(
                "Transform.{k} is not a field of Transform (RequestBodyEncoding, RequestEncodingOptions)"
            ));
        }
    }
    let encoded = match t.get("RequestBodyEncoding").map(Value::as_str) {
        None | Some(Some("NONE")) => false,
        Some(Some("URL_ENCODED")) => true,
        Some(_) => {
            return Err("Transform.RequestBodyEncoding must be NONE or URL_ENCODED".into());
        }
    };
    let format = match t.get("RequestEncodingOptions") {
        None => ArrayFormat::Indices,
        Some(Value::Object(o)) => {
            if let Some(k) = o.keys().find(|k| k.as_str() != "ArrayFormat") {
                return Err(format!(
                    "Transform.RequestEncodingOptions.{k} is not a field (ArrayFormat)"
                ));
            }
            match o.get("ArrayFormat").map(Value::as_str) {
                None | Some(Some("INDICES")) => ArrayFormat::Indices,
                Some(Some("REPEAT")) => ArrayFormat::Repeat,
                Some(Some("COMMAS")) => ArrayFormat::Commas,
                Some(Some("BRACKETS")) => ArrayFormat::Brackets,
                Some(_) => {
                    return Err("Transform.RequestEncodingOptions.ArrayFormat must be INDICES, REPEAT, COMMAS or BRACKETS".into());
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "Transform.RequestEncodingOptions must be an object, not {other}"
            ));
        }
    };
    Ok(encoded.then_some(format))
}

/// `Authentication` / `InvocationConfig`: an object with a ConnectionArn, and nothing else
/// (an EventBridge connection is the only way AWS authenticates an HTTP Task).
fn connection(v: &Value, field: &str) -> Result<String, String> {
    let Value::Object(a) = v else {
        return Err(format!(
            "{field} must be an object with ConnectionArn, not {v}"
        ));
    };
    if let Some(k) = a.keys().find(|k| bare(k) != "ConnectionArn") {
        return Err(format!(
            "{field}.{} is not supported: an HTTP Task authenticates with an EventBridge connection, {field}.ConnectionArn, only",
            bare(k)
        ));
    }
    let Some((k, arn)) = a
        .get_key_value("ConnectionArn")
        .or_else(|| a.get_key_value("ConnectionArn.$"))
    else {
        return Err(format!("{field} needs ConnectionArn"));
    };
    match literal(k, arn) {
        None => Ok(String::new()),
        Some(Value::String(s)) if s.starts_with("arn:") && s.contains(":connection/") => {
            Ok(s.clone())
        }
        Some(other) => Err(format!(
            "{field}.ConnectionArn must be an EventBridge connection ARN (arn:aws:events:REGION:ACCOUNT:connection/NAME/ID), not {other}"
        )),
    }
}

/// The body: JSON (the default), or URL-encoded with `Transform`.
fn body(
    v: Option<&Value>,
    form: Option<ArrayFormat>,
) -> Result<Option<(Vec<u8>, &'static str)>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(format) = form else {
        return Ok(Some((
            v.to_string().into_bytes(),
            "application/json; charset=UTF-8",
        )));
    };
    let Value::Object(fields) = v else {
        return Err(format!(
            "a URL_ENCODED RequestBody must be an object, not {v}"
        ));
    };
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        let values = scalar_values(k, v, "the RequestBody field")?;
        match (v.is_array(), format) {
            (false, _) | (true, ArrayFormat::Repeat) => {
                for x in &values {
                    ser.append_pair(k, x);
                }
            }
            (true, ArrayFormat::Commas) => {
                ser.append_pair(k, &values.join(","));
            }
            (true, ArrayFormat::Brackets) => {
                for x in &values {
                    ser.append_pair(&format!("{k}[]"), x);
                }
            }
            (true, ArrayFormat::Indices) => {
                for (i, x) in values.iter().enumerate() {
                    ser.append_pair(&format!("{k}[{i}]"), x);
                }
            }
        }
    }
    Ok(Some((
        ser.finish().into_bytes(),
        "application/x-www-form-urlencoded",
    )))
}

/// The request an HTTP Task's arguments make; a problem with them is `States.Runtime` (as
/// on AWS: the arguments are the definition's mistake, not the endpoint's).
pub(crate) fn request(args: &Value, timeout: Duration) -> Result<HttpRequest, Failure> {
    let runtime = |m: String| Failure::new("States.Runtime", format!("HTTP Task: {m}"));
    let Value::Object(m) = args else {
        return Err(runtime(format!(
            "the arguments must be an object with ApiEndpoint and Method, not {args}"
        )));
    };
    if let Some(k) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(runtime(format!(
            "The field '{k}' is not supported by the HTTP Task"
        )));
    }
    let field = |name: &str| {
        m.get(name)
            .ok_or_else(|| runtime(format!("{name} is missing")))
    };
    let mut url = endpoint(field("ApiEndpoint")?).map_err(runtime)?;
    let method = method(field("Method")?).map_err(runtime)?;
    let connection_arn = match (m.get("Authentication"), m.get("InvocationConfig")) {
        (Some(a), None) => connection(a, "Authentication"),
        (None, Some(c)) => connection(c, "InvocationConfig"),
        (None, None) => Err("Authentication.ConnectionArn is missing".to_string()),
        (Some(_), Some(_)) => Err("give Authentication or InvocationConfig, not both".into()),
    }
    .map_err(runtime)?;
    if let Some(q) = m.get("QueryParameters").filter(|q| !q.is_null()) {
        let pairs = query_pairs(q).map_err(runtime)?;
        url.query_pairs_mut().extend_pairs(pairs);
    }
    let mut headers = Vec::new();
    if let Some(h) = m.get("Headers").filter(|h| !h.is_null()) {
        check_literal_headers(h).map_err(runtime)?;
        if let Value::Object(h) = h {
            for (k, v) in h {
                if SET_BY_THE_TASK.contains(&k.to_ascii_lowercase().as_str()) {
                    continue;
                }
                for value in header_values(k, v).map_err(runtime)? {
                    headers.push((k.clone(), value));
                }
            }
        }
    }
    let form = transform(m.get("Transform").filter(|t| !t.is_null())).map_err(runtime)?;
    let body = body(m.get("RequestBody"), form).map_err(runtime)?;
    let body = body.map(|(bytes, content_type)| {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".into(), content_type.into()));
        }
        bytes
    });
    headers.push(("User-Agent".into(), USER_AGENT.into()));
    headers.push(("Range".into(), format!("bytes=0-{MAX_RESPONSE_BYTES}")));
    Ok(HttpRequest {
        method,
        url: url.to_string(),
        headers,
        body,
        connection_arn,
        timeout: timeout.min(REQUEST_TIMEOUT),
    })
}

/// Content types an HTTP Task does not take (AWS: the task fails with `States.Runtime`).
fn unsupported_content_type(media: &str) -> bool {
    media == "application/octet-stream"
        || ["image/", "audio/", "video/"]
            .iter()
            .any(|p| media.starts_with(p))
}

/// The task's result from the response: `{Headers, ResponseBody, StatusCode, StatusText}`,
/// the body parsed when it is JSON; a status outside 2xx is the error
/// `States.Http.StatusCode.NNN` with that same object (as JSON text) as its cause.
pub(crate) fn result(resp: HttpResponse) -> Result<Value, Failure> {
    let media = resp
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if unsupported_content_type(&media) {
        return Err(Failure::new(
            "States.Runtime",
            format!(
                "HTTP Task: the response's Content-Type {media} is not supported (only text and JSON responses are)"
            ),
        ));
    }
    if resp.body.len() > MAX_RESPONSE_BYTES {
        return Err(Failure::new(
            "States.DataLimitExceeded",
            format!("HTTP Task: the response body is over {MAX_RESPONSE_BYTES} bytes"),
        ));
    }
    let text = String::from_utf8(resp.body).map_err(|_| {
        Failure::new(
            "States.Runtime",
            "HTTP Task: the response body is not UTF-8 text",
        )
    })?;
    let json_body = media == "application/json" || media.ends_with("+json");
    let body = match json_body {
        true => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        false => Value::String(text),
    };
    let mut headers: Map<String, Value> = Map::new();
    for (k, v) in resp.headers {
        let entry = headers
            .entry(k.to_ascii_lowercase())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(v));
        }
    }
    let out = json!({
        "Headers": headers,
        "ResponseBody": body,
        "StatusCode": resp.status,
        "StatusText": resp.status_text,
    });
    if (200..300).contains(&resp.status) {
        return Ok(out);
    }
    Err(Failure::new(
        &format!("States.Http.StatusCode.{}", resp.status),
        clip_cause(out.to_string()),
    ))
}

/// A cause is at most 32,768 characters (AWS's limit).
pub(crate) fn clip_cause(mut cause: String) -> String {
    if let Some((i, _)) = cause.char_indices().nth(32_768) {
        cause.truncate(i);
    }
    cause
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Value {
        let mut base = json!({
            "ApiEndpoint": "https://api.example.com/v1/items",
            "Method": "POST",
            "Authentication": {"ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/Example/1"}
        });
        if let (Value::Object(b), Value::Object(extra)) = (&mut base, v) {
            b.extend(extra);
        }
        base
    }

    #[test]
    fn requests_carry_query_headers_and_a_json_body() {
        let r = request(
            &args(json!({
                "QueryParameters": {"q": "a b", "tag": ["x", "y"], "n": 3, "skip": null},
                "Headers": {"X-Trace": "t1", "Accept": ["application/json", "text/plain"], "User-Agent": "mine"},
                "RequestBody": {"a": 1}
            })),
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url,
            "https://api.example.com/v1/items?q=a+b&tag=x&tag=y&n=3"
        );
        assert_eq!(r.body.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(r.timeout, REQUEST_TIMEOUT, "at most AWS's 60 s");
        let h: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            h,
            [
                ("X-Trace", "t1"),
                ("Accept", "application/json"),
                ("Accept", "text/plain"),
                ("Content-Type", "application/json; charset=UTF-8"),
                ("User-Agent", USER_AGENT),
                ("Range", "bytes=0-262144"),
            ]
        );
        assert!(r.connection_arn.contains(":connection/Example/"));
    }

    #[test]
    fn url_encoded_bodies_follow_the_array_format() {
        let body_of = |format: &str| {
            let r = request(
                &args(json!({
                    "RequestBody": {"a": ["x", "y"], "b": "c d"},
                    "Transform": {"RequestBodyEncoding": "URL_ENCODED",
                                  "RequestEncodingOptions": {"ArrayFormat": format}}
                })),
                Duration::from_secs(5),
            )
            .unwrap();
            assert!(
                r.headers
                    .iter()
                    .any(|(k, v)| k == "Content-Type" && v == "application/x-www-form-urlencoded")
            );
            String::from_utf8(r.body.unwrap()).unwrap()
        };
        assert_eq!(body_of("INDICES"), "a%5B0%5D=x&a%5B1%5D=y&b=c+d");
        assert_eq!(body_of("REPEAT"), "a=x&a=y&b=c+d");
        assert_eq!(body_of("COMMAS"), "a=x%2Cy&b=c+d");
        assert_eq!(body_of("BRACKETS"), "a%5B%5D=x&a%5B%5D=y&b=c+d");
    }

    #[test]
    fn bad_arguments_are_runtime_errors_naming_the_field() {
        for (extra, needle) in [
            (json!({"Method": "FETCH"}), "Method must be one of"),
            (json!({"ApiEndpoint": "not a url"}), "is not a URL"),
            (
                json!({"Headers": {"Host": "x"}}),
                "unsupported values: [host]",
            ),
            (json!({"Headers": {"X-Amz-Date": "x"}}), "[x-amz-date]"),
            (json!({"Headers": {"X": {"nested": 1}}}), "must be a string"),
            (json!({"Body": 1}), "The field 'Body' is not supported"),
            (
                json!({"Authentication": {"Username": "u"}}),
                "Authentication.Username is not supported",
            ),
            (
                json!({"RequestBody": [1], "Transform": {"RequestBodyEncoding": "URL_ENCODED"}}),
                "must be an object",
            ),
        ] {
            let f = request(&args(extra.clone()), Duration::from_secs(5)).unwrap_err();
            assert_eq!(f.error, "States.Runtime", "{extra}");
            assert!(f.cause.contains(needle), "{extra}: {}", f.cause);
        }
    }

    #[test]
    fn literal_arguments_are_checked_when_the_definition_is_read() {
        let problems = check_arguments(
            Some(&json!({
                "ApiEndpoint": "https://x.example/a",
                "Method": "GET",
                "Headers": {"Authorization": "Bearer s3cret", "X-Ok.$": "$.v"},
                "Transform": {"RequestBodyEncoding": "GZIP"},
                "Extra": 1
            })),
            "Parameters",
        );
        let text = format!("{problems:?}");
        assert!(text.contains("Parameters.Headers"), "{text}");
        assert!(
            text.contains("unsupported values: [authorization]"),
            "{text}"
        );
        assert!(
            text.contains("RequestBodyEncoding must be NONE or URL_ENCODED"),
            "{text}"
        );
        assert!(
            text.contains("The field 'Extra' is not supported"),
            "{text}"
        );
        assert!(text.contains("Parameters.Authentication"), "{text}");
        // Paths and expressions are checked when they run.
        assert!(
            check_arguments(
                Some(&json!({
                    "ApiEndpoint.$": "$.url",
                    "Method": "{% $states.input.method %}",
                    "InvocationConfig": {"ConnectionArn.$": "$.connection"}
                })),
                "Parameters",
            )
            .is_empty()
        );
    }

    fn response(status: u16, content_type: &str, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            status_text: "Whatever".into(),
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("set-cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn results_have_aws_shape_and_parse_json_bodies() {
        let out = result(response(
            200,
            "application/json; charset=utf-8",
            r#"{"id": 7}"#,
        ))
        .unwrap();
        assert_eq!(out["ResponseBody"], json!({"id": 7}));
        assert_eq!(out["StatusCode"], json!(200));
        assert_eq!(out["StatusText"], json!("Whatever"));
        assert_eq!(out["Headers"]["set-cookie"], json!(["a=1", "b=2"]));
        assert_eq!(
            out["Headers"]["content-type"],
            json!(["application/json; charset=utf-8"])
        );
        let text = result(response(201, "text/plain", "done")).unwrap();
        assert_eq!(text["ResponseBody"], json!("done"));
    }

    #[test]
    fn other_statuses_and_contents_are_errors() {
        let f = result(response(404, "application/json", r#"{"message": "no"}"#)).unwrap_err();
        assert_eq!(f.error, "States.Http.StatusCode.404");
        let cause: Value = serde_json::from_str(&f.cause).unwrap();
        assert_eq!(cause["ResponseBody"], json!({"message": "no"}));
        assert_eq!(cause["StatusCode"], json!(404));
        assert_eq!(
            result(response(200, "image/png", "x")).unwrap_err().error,
            "States.Runtime"
        );
        let big = "x".repeat(MAX_RESPONSE_BYTES + 1);
        assert_eq!(
            result(response(200, "text/plain", &big)).unwrap_err().error,
            "States.DataLimitExceeded"
        );
    }
}
