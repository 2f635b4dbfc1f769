//! A job waiting for a person's answer: the request the RequestInput step records on the job
//! (a message and the JSON schema of the answer, MCP elicitation's form), and the rules both
//! doors check an answer with.
//!
//! The request lives on the job record, so it is the same on SQLite and DynamoDB and on any
//! instance. The task token of the waiting workflow Task is kept with it, server side only:
//! no view, listing or log shows it; the answer goes to the orchestrator with it
//! (SendTaskSuccess on AWS, the engine locally). Each request has a key derived from that
//! token, so a request is never confused with a later one of the same job (MCP's tasks
//! extension asks that an `inputRequests` key is never reused over a task's life), and a
//! RequestInput step run twice for the same wait records the same request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest as _;
use utoipa::ToSchema;

use crate::job::Job;

/// Longest message of a request.
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Largest requested schema, as JSON.
pub const MAX_SCHEMA_BYTES: usize = 16 * 1024;
/// Most fields a request may ask for.
pub const MAX_FIELDS: usize = 50;

/// What a job waits for, as stored on the job. Its `Debug` leaves the token out.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputRequest {
    /// Unique over the job's life (derived from the task token): MCP's `inputRequests` key.
    pub key: String,
    pub message: String,
    /// A flat object schema (MCP elicitation's `requestedSchema`).
    pub requested_schema: Value,
    /// The waiting Task's token. Never shown, never logged.
    pub task_token: String,
    pub requested_at: DateTime<Utc>,
}

impl std::fmt::Debug for InputRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputRequest")
            .field("key", &self.key)
            .field("message", &self.message)
            .field("requested_schema", &self.requested_schema)
            .field("task_token", &"<hidden>")
            .field("requested_at", &self.requested_at)
            .finish()
    }
}

impl InputRequest {
    /// A request for the Task waiting with `task_token`; the message and schema checked.
    pub fn new(
        task_token: &str,
        message: &str,
        requested_schema: Value,
        now: DateTime<Utc>,
    ) -> Result<InputRequest, String> {
        if task_token.is_empty() {
            return Err("taskToken: must not be empty (pass \"$$.Task.Token\")".into());
        }
        let message = message.trim();
        if message.is_empty() {
            return Err("message: must say what the person is asked".into());
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(format!("message: over {MAX_MESSAGE_CHARS} characters"));
        }
        check_requested_schema(&requested_schema)?;
        Ok(InputRequest {
            key: request_key(task_token),
            message: message.to_string(),
            requested_schema,
            task_token: task_token.to_string(),
            requested_at: now,
        })
    }
}

/// `input-` and 24 hex digits of the token's SHA-256: stable for one wait, different for
/// the next, and no way back to the token.
pub fn request_key(task_token: &str) -> String {
    let digest = sha2::Sha256::digest(task_token.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("input-{hex}")
}

/// What a pending request shows to its job's owner (getJob's `inputRequest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputRequestView {
    /// Which question this is: each one the job asks has its own id.
    pub request_id: String,
    /// What the person is asked.
    pub message: String,
    /// JSON schema of the answer: an object of flat fields. Send the answer to
    /// POST /jobs/{jobId}/input.
    #[schema(value_type = Object)]
    pub requested_schema: Value,
    pub requested_at: DateTime<Utc>,
}

impl From<&InputRequest> for InputRequestView {
    fn from(r: &InputRequest) -> InputRequestView {
        InputRequestView {
            request_id: r.key.clone(),
            message: r.message.clone(),
            requested_schema: r.requested_schema.clone(),
            requested_at: r.requested_at,
        }
    }
}

/// A change to a job's pending request ([`crate::JobStore::set_input_request`]).
#[derive(Debug, Clone, PartialEq)]
pub enum InputRequestChange {
    /// The job waits for this answer (replaces any earlier request).
    Ask(InputRequest),
    /// The request with this key was answered (or can no longer be): it goes, unless a newer
    /// one took its place meanwhile.
    Answered { key: String },
}

/// Applies `change` to `job`; returns whether anything changed. What every store does inside
/// its write (memory, SQLite, DynamoDB). A terminal job takes no change.
pub fn apply_input_change(job: &mut Job, change: &InputRequestChange) -> bool {
    if job.status.is_terminal() {
        return false;
    }
    match change {
        InputRequestChange::Ask(r) => {
            if job.input_request.as_ref() == Some(r) {
                return false;
            }
            job.input_request = Some(r.clone());
            true
        }
        InputRequestChange::Answered { key } => {
            if job.input_request.as_ref().is_some_and(|r| &r.key == key) {
                job.input_request = None;
                true
            } else {
                false
            }
        }
    }
}

/// The primitive field types MCP elicitation allows.
const FIELD_TYPES: &[&str] = &["string", "number", "integer", "boolean"];
/// The keywords a field may use: longhaul's schema subset, restricted to what elicitation
/// forms show.
const FIELD_KEYWORDS: &[&str] = &[
    "type",
    "title",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
];

/// Checks a requested schema: what MCP elicitation asks for (`type: object`, `properties`
/// of primitive fields — string, number, integer, boolean, or an enum of strings —, an
/// optional `required`), within longhaul's schema subset so answers are validated exactly.
pub fn check_requested_schema(schema: &Value) -> Result<(), String> {
    let size = serde_json::to_vec(schema).map(|b| b.len()).unwrap_or(0);
    if size > MAX_SCHEMA_BYTES {
        return Err(format!(
            "requestedSchema: {size} bytes as JSON; the limit is {MAX_SCHEMA_BYTES}"
        ));
    }
    let Value::Object(s) = schema else {
        return Err("requestedSchema: must be an object schema".into());
    };
    if s.get("type").and_then(Value::as_str) != Some("object") {
        return Err("requestedSchema.type: must be \"object\"".into());
    }
    for k in s.keys() {
        if !matches!(
            k.as_str(),
            "type" | "properties" | "required" | "title" | "description" | "$schema"
        ) {
            return Err(format!(
                "requestedSchema.{k}: not allowed (an elicitation schema has type, properties, required, title, description)"
            ));
        }
    }
    let Some(Value::Object(props)) = s.get("properties") else {
        return Err("requestedSchema.properties: must be an object of fields".into());
    };
    if props.is_empty() || props.len() > MAX_FIELDS {
        return Err(format!(
            "requestedSchema.properties: 1 to {MAX_FIELDS} fields"
        ));
    }
    for (name, field) in props {
        check_field(name, field)?;
    }
    if let Some(req) = s.get("required") {
        let Some(names) = req.as_array() else {
            return Err("requestedSchema.required: must be an array of field names".into());
        };
        for n in names {
            match n.as_str() {
                Some(n) if props.contains_key(n) => {}
                _ => {
                    return Err(format!(
                        "requestedSchema.required: {n} is not one of the properties"
                    ));
                }
            }
        }
    }
    crate::schema::check_schema(schema).map_err(|m| format!("requestedSchema{m}"))
}

fn check_field(name: &str, field: &Value) -> Result<(), String> {
    let at = format!("requestedSchema.properties.{name}");
    let Value::Object(f) = field else {
        return Err(format!("{at}: must be a schema object"));
    };
    let Some(t) = f.get("type").and_then(Value::as_str) else {
        return Err(format!(
            "{at}.type: must be one of {}",
            FIELD_TYPES.join(", ")
        ));
    };
    if !FIELD_TYPES.contains(&t) {
        return Err(format!(
            "{at}.type: {t:?} is not a flat field (elicitation takes {})",
            FIELD_TYPES.join(", ")
        ));
    }
    for k in f.keys() {
        if !FIELD_KEYWORDS.contains(&k.as_str()) {
            return Err(format!(
                "{at}.{k}: not allowed in an elicitation field (allowed: {})",
                FIELD_KEYWORDS.join(", ")
            ));
        }
    }
    if let Some(e) = f.get("enum")
        && (t != "string" || !e.as_array().is_some_and(|v| v.iter().all(Value::is_string)))
    {
        return Err(format!(
            "{at}.enum: only a string field takes an enum of strings"
        ));
    }
    Ok(())
}

/// Checks an answer against the request's schema; the message names the field
/// (`answer.name: ...`).
pub fn validate_answer(request: &InputRequest, answer: &Value) -> Result<(), String> {
    let Value::Object(_) = answer else {
        return Err(format!(
            "answer: must be a JSON object of the requested fields, got {}",
            crate::types::json_kind(answer)
        ));
    };
    // Unknown fields are refused: a typo would otherwise pass as "not given".
    if let (Value::Object(a), Some(Value::Object(props))) =
        (answer, request.requested_schema.get("properties"))
        && let Some(extra) = a.keys().find(|k| !props.contains_key(*k))
    {
        return Err(format!(
            "answer.{extra}: not a requested field (requested: {})",
            props.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    crate::schema::validate(&request.requested_schema, answer).map_err(|e| {
        let field = if e.path.is_empty() {
            "answer".to_string()
        } else {
            format!("answer{}", e.path.replace('/', "."))
        };
        format!("{field}: {}", e.message)
    })
}

/// A schema's fields with their defaults filled in where the answer has none (a form's
/// defaults are what a person accepts by leaving a field alone).
pub fn with_defaults(request: &InputRequest, answer: &Map<String, Value>) -> Map<String, Value> {
    let mut out = answer.clone();
    if let Some(Value::Object(props)) = request.requested_schema.get("properties") {
        for (k, field) in props {
            if let Some(d) = field.get("default")
                && !out.contains_key(k)
            {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object",
               "properties": {"name": {"type": "string", "minLength": 1},
                              "size": {"type": "string", "enum": ["S", "M", "L"]},
                              "count": {"type": "integer", "minimum": 1, "default": 1}},
               "required": ["name"]})
    }

    fn request() -> InputRequest {
        InputRequest::new("tok", "Who?", schema(), Utc::now()).unwrap()
    }

    #[test]
    fn answers_are_checked_naming_the_field() {
        let r = request();
        assert_eq!(
            validate_answer(&r, &json!({"name": "Ada", "count": 2})),
            Ok(())
        );
        let e = validate_answer(&r, &json!({"count": 2})).unwrap_err();
        assert!(e.starts_with("answer: ") && e.contains("name"), "{e}");
        let e = validate_answer(&r, &json!({"name": "Ada", "count": "2"})).unwrap_err();
        assert!(e.starts_with("answer.count:"), "{e}");
        let e = validate_answer(&r, &json!({"name": "Ada", "size": "XL"})).unwrap_err();
        assert!(e.starts_with("answer.size:"), "{e}");
        let e = validate_answer(&r, &json!({"name": "Ada", "nmae": 1})).unwrap_err();
        assert!(e.starts_with("answer.nmae:"), "{e}");
        let e = validate_answer(&r, &json!(["Ada"])).unwrap_err();
        assert!(e.starts_with("answer:"), "{e}");
        let filled = with_defaults(&r, json!({"name": "Ada"}).as_object().unwrap());
        assert_eq!(Value::Object(filled), json!({"name": "Ada", "count": 1}));
    }

    #[test]
    fn only_flat_elicitation_schemas_are_taken() {
        assert_eq!(check_requested_schema(&schema()), Ok(()));
        let bad = [
            (json!({"type": "array"}), "requestedSchema.type"),
            (json!({"type": "object"}), "requestedSchema.properties"),
            (
                json!({"type": "object", "properties": {"a": {"type": "object"}}}),
                "requestedSchema.properties.a.type",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}),
                "requestedSchema.properties.a.pattern",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "integer", "enum": [1]}}}),
                "requestedSchema.properties.a.enum",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}),
                "requestedSchema.required",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": true}),
                "requestedSchema.additionalProperties",
            ),
        ];
        for (s, field) in bad {
            let e = check_requested_schema(&s).unwrap_err();
            assert!(e.starts_with(field), "{s}: {e}");
        }
        assert!(InputRequest::new("t", " ", schema(), Utc::now()).is_err());
        assert!(InputRequest::new("", "Who?", schema(), Utc::now()).is_err());
    }

    #[test]
    fn keys_are_stable_per_token_and_hide_it() {
        assert_eq!(request_key("a"), request_key("a"));
        assert_ne!(request_key("a"), request_key("b"));
        assert!(!request_key("secret-token").contains("secret"));
        assert_eq!(request_key("a").len(), "input-".len() + 24);
    }

    #[test]
    fn an_answer_clears_only_its_own_request() {
        let mut job = Job::new("o", "t", json!({}), Utc::now());
        job.status = crate::JobStatus::Running;
        let first = request();
        assert!(apply_input_change(
            &mut job,
            &InputRequestChange::Ask(first.clone())
        ));
        assert!(!apply_input_change(
            &mut job,
            &InputRequestChange::Ask(first.clone())
        ));
        let second = InputRequest::new("tok2", "Again?", schema(), Utc::now()).unwrap();
        assert!(apply_input_change(
            &mut job,
            &InputRequestChange::Ask(second.clone())
        ));
        assert!(!apply_input_change(
            &mut job,
            &InputRequestChange::Answered { key: first.key }
        ));
        assert_eq!(job.input_request.as_ref(), Some(&second));
        assert!(apply_input_change(
            &mut job,
            &InputRequestChange::Answered {
                key: second.key.clone()
            }
        ));
        assert_eq!(job.input_request, None);
        job.status = crate::JobStatus::Succeeded;
        assert!(!apply_input_change(
            &mut job,
            &InputRequestChange::Ask(second)
        ));
    }
}
