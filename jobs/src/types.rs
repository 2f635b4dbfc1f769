//! Job types. A job type is a folder (`jobtypes/NAME/`: `jobtype.json`, `workflow.asl.json`
//! and its steps' code); this module holds what the domain needs of it: the parsed
//! `jobtype.json` ([`JobTypeDef`]), the [`JobType`] the service validates inputs with, and the
//! [`JobTypes`] registry. Loading folders and composing workflows is `longhaul-catalog`'s job.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

/// One job type as listJobTypes shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTypeInfo {
    #[serde(rename = "type")]
    pub job_type: String,
    pub description: String,
    /// JSON Schema of `input`.
    #[schema(value_type = Object)]
    pub input_schema: Value,
}

/// Longest description: listJobTypes shows it to the model, and GPT Actions cut at 300.
pub const MAX_DESCRIPTION_CHARS: usize = 300;
/// A job type's time limit when its jobtype.json gives none.
pub const DEFAULT_TYPE_TIMEOUT_SECONDS: u32 = 3600;
/// The longest a job may run (Step Functions Standard allows a year; two days is what
/// longhaul's workflow allows itself).
pub const MAX_TYPE_TIMEOUT_SECONDS: u32 = 172_800;
/// A step's time limit when none is given, and the most (Lambda's limit).
pub const DEFAULT_STEP_TIMEOUT_SECONDS: u32 = 300;
pub const MAX_STEP_TIMEOUT_SECONDS: u32 = 900;
/// A step's memory when none is given, and Lambda's bounds.
pub const DEFAULT_STEP_MEMORY_MB: u32 = 256;
pub const MIN_STEP_MEMORY_MB: u32 = 128;
pub const MAX_STEP_MEMORY_MB: u32 = 10_240;

/// Where a step's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Runtime {
    #[serde(rename = "python3.12")]
    Python312,
    #[serde(rename = "python3.13")]
    Python313,
    #[serde(rename = "nodejs22.x")]
    Nodejs22,
    /// A step compiled into longhaul (a handler of this workspace, by name).
    #[serde(rename = "rust")]
    Rust,
    /// A program: the event on stdin, the output on stdout. Local only.
    #[serde(rename = "command")]
    Command,
}

impl Runtime {
    pub const ALL: [Runtime; 5] = [
        Runtime::Python312,
        Runtime::Python313,
        Runtime::Nodejs22,
        Runtime::Rust,
        Runtime::Command,
    ];

    /// The name in jobtype.json (and, for Python and Node, Lambda's runtime name).
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python312 => "python3.12",
            Runtime::Python313 => "python3.13",
            Runtime::Nodejs22 => "nodejs22.x",
            Runtime::Rust => "rust",
            Runtime::Command => "command",
        }
    }

    pub fn parse(s: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn is_python(self) -> bool {
        matches!(self, Runtime::Python312 | Runtime::Python313)
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a job type, as jobtype.json declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepDef {
    pub runtime: Runtime,
    /// `module.function` (Python), `file.function` (Node), a step name (Rust).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// The program and its arguments (`command`), run in the type's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, rename = "memoryMB", skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
}

impl StepDef {
    pub fn timeout_seconds(&self) -> u32 {
        self.timeout_seconds.unwrap_or(DEFAULT_STEP_TIMEOUT_SECONDS)
    }

    pub fn memory_mb(&self) -> u32 {
        self.memory_mb.unwrap_or(DEFAULT_STEP_MEMORY_MB)
    }

    /// Checks the fields the runtime needs; a message naming the field.
    fn check(&self) -> Result<(), String> {
        match (self.runtime, &self.handler, &self.command) {
            (Runtime::Command, _, None) => {
                return Err("a command step needs \"command\": [program, args...]".into());
            }
            (Runtime::Command, Some(_), _) => {
                return Err("a command step takes \"command\", not \"handler\"".into());
            }
            (Runtime::Command, None, Some(c)) if c.is_empty() || c[0].is_empty() => {
                return Err("\"command\" must name a program".into());
            }
            (r, None, _) if r != Runtime::Command => {
                return Err(format!("a {r} step needs \"handler\""));
            }
            (r, Some(_), Some(_)) if r != Runtime::Command => {
                return Err(format!("a {r} step takes \"handler\", not \"command\""));
            }
            _ => {}
        }
        if let Some(h) = &self.handler {
            let ok = match self.runtime {
                // module.function / file.function: a dotted path, the last part the function.
                r if r.is_python() || r == Runtime::Nodejs22 => {
                    h.rsplit_once('.').is_some_and(|(m, f)| {
                        !m.is_empty()
                            && !f.is_empty()
                            && h.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
                            && !h.contains("..")
                            && !h.starts_with('/')
                    })
                }
                _ => {
                    !h.is_empty()
                        && h.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                }
            };
            if !ok {
                return Err(match self.runtime {
                    Runtime::Rust => {
                        format!("handler {h:?} must be a step name (letters, digits, '-', '_')")
                    }
                    _ => format!(
                        "handler {h:?} must be FILE.FUNCTION (e.g. \"count.handler\") inside the folder"
                    ),
                });
            }
        }
        let t = self.timeout_seconds();
        if !(1..=MAX_STEP_TIMEOUT_SECONDS).contains(&t) {
            return Err(format!(
                "timeoutSeconds {t} must be from 1 to {MAX_STEP_TIMEOUT_SECONDS}"
            ));
        }
        let m = self.memory_mb();
        if !(MIN_STEP_MEMORY_MB..=MAX_STEP_MEMORY_MB).contains(&m) {
            return Err(format!(
                "memoryMB {m} must be from {MIN_STEP_MEMORY_MB} to {MAX_STEP_MEMORY_MB}"
            ));
        }
        Ok(())
    }
}

/// `jobtype.json`: what a job type is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobTypeDef {
    /// At most 300 characters; listJobTypes shows it to the model.
    pub description: String,
    /// The JSON Schema of the job's input (the subset in `schema`).
    pub input_schema: Value,
    /// The job's time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Top-level input properties that hold a file: an upload (`{"object"}`), a file attached
    /// in ChatGPT (`{"fileRef"}`) or an https URL (`{"url"}`). longhaul supplies their schema,
    /// checks them at startJob, and copies refs and URLs into its storage before the first
    /// step: steps get `{"object", "uri"}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_inputs: Vec<String>,
    /// A Rust input check compiled into longhaul, by name (for rules a schema cannot say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_check: Option<String>,
    /// The steps the workflow's Tasks name as `"Resource": "${StepName}"`. None at all is
    /// fine: a workflow of HTTP Tasks (and Pass, Choice, Wait...) needs no code.
    #[serde(default)]
    pub steps: BTreeMap<String, StepDef>,
}

impl JobTypeDef {
    /// Parses jobtype.json; the message names the field.
    pub fn parse(text: &str) -> Result<JobTypeDef, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    pub fn timeout_seconds(&self) -> u32 {
        self.timeout_seconds.unwrap_or(DEFAULT_TYPE_TIMEOUT_SECONDS)
    }

    /// Everything that can be checked without the workflow or the filesystem. Returns the
    /// input schema as served (file inputs filled in).
    pub fn check(&self) -> Result<Value, String> {
        let chars = self.description.chars().count();
        if self.description.trim().is_empty() || chars > MAX_DESCRIPTION_CHARS {
            return Err(format!(
                "description: must be 1 to {MAX_DESCRIPTION_CHARS} characters (it has {chars})"
            ));
        }
        let t = self.timeout_seconds();
        if !(1..=MAX_TYPE_TIMEOUT_SECONDS).contains(&t) {
            return Err(format!(
                "timeoutSeconds: {t} must be from 1 to {MAX_TYPE_TIMEOUT_SECONDS}"
            ));
        }
        for (name, step) in &self.steps {
            if !is_step_name(name) {
                return Err(format!(
                    "steps.{name}: a step name is a letter then letters, digits or '_' (at most 64)"
                ));
            }
            step.check().map_err(|m| format!("steps.{name}: {m}"))?;
        }
        let schema = expand_file_inputs(&self.input_schema, &self.file_inputs)?;
        crate::schema::check_schema(&schema).map_err(|m| format!("inputSchema{m}"))?;
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(
                "inputSchema: must be {\"type\": \"object\", ...} (the input is an object)".into(),
            );
        }
        Ok(schema)
    }
}

/// Step names: they become `${Name}` substitutions and parts of function names.
pub fn is_step_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Job type names: `^[a-z][a-z0-9-]{0,39}$`.
pub fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The schema of a file input: one of an upload, a ChatGPT file ref, an https URL.
pub fn file_source_schema(description: Option<&str>) -> Value {
    const DEFAULT: &str = "A file: an upload ({\"object\"} from createUpload), a file attached in ChatGPT ({\"fileRef\": index into openaiFileIdRefs}) or an https URL ({\"url\"}).";
    json!({
        "description": description.unwrap_or(DEFAULT),
        "oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["object"],
             "properties": {"object": {"type": "string", "minLength": 1, "maxLength": 512,
                "description": "The object from createUpload."}}},
            {"type": "object", "additionalProperties": false, "required": ["fileRef"],
             "properties": {"fileRef": {"type": "integer", "minimum": 0, "maximum": 9,
                "description": "Index of a file in openaiFileIdRefs."}}},
            {"type": "object", "additionalProperties": false, "required": ["url"],
             "properties": {"url": {"type": "string", "minLength": 8, "maxLength": 2048,
                "description": "An https URL of the file."}}}
        ]
    })
}

/// The schema with every file input's property replaced by [`file_source_schema`]. A file
/// input's own schema may hold only annotations (a description).
fn expand_file_inputs(schema: &Value, file_inputs: &[String]) -> Result<Value, String> {
    if file_inputs.is_empty() {
        return Ok(schema.clone());
    }
    let mut schema = schema.clone();
    let Some(props) = schema
        .as_object_mut()
        .map(|s| s.entry("properties").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return Err("inputSchema: must be an object with \"properties\"".into());
    };
    for (i, name) in file_inputs.iter().enumerate() {
        if file_inputs[..i].contains(name) {
            return Err(format!("fileInputs: {name:?} is listed twice"));
        }
        let description = match props.get(name) {
            None => None,
            Some(Value::Object(p))
                if p.keys()
                    .all(|k| matches!(k.as_str(), "description" | "title")) =>
            {
                p.get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }
            Some(_) => {
                return Err(format!(
                    "inputSchema.properties.{name}: a file input's schema is longhaul's; give at most a \"description\""
                ));
            }
        };
        props.insert(name.clone(), file_source_schema(description.as_deref()));
    }
    Ok(schema)
}

/// Rules of a type that its schema cannot say, compiled into longhaul (named by
/// jobtype.json's `inputCheck`).
pub trait InputCheck: Send + Sync + 'static {
    /// Checks the input (already valid against the schema) and may fill defaults. The message
    /// names the field (`input.failAtStep: ...`).
    fn normalize(&self, input: &mut Map<String, Value>) -> Result<(), String> {
        let _ = input;
        Ok(())
    }

    /// Checks the first bytes (at most 64 KiB) of an uploaded file input before the job is
    /// accepted, so a mistake is a 400 rather than a failed job.
    fn check_file_head(&self, input: &Value, field: &str, head: &[u8]) -> Result<(), String> {
        let _ = (input, field, head);
        Ok(())
    }
}

/// A job type the service accepts.
#[derive(Clone)]
pub struct JobType {
    pub name: String,
    pub description: String,
    /// As served by listJobTypes and enforced (file inputs filled in).
    pub input_schema: Value,
    pub timeout_seconds: u32,
    pub file_inputs: Vec<String>,
    check: Option<Arc<dyn InputCheck>>,
}

impl std::fmt::Debug for JobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobType").field("name", &self.name).finish()
    }
}

impl JobType {
    /// The type a checked definition describes. `check` is the Rust input check its
    /// `inputCheck` names, if any.
    pub fn from_def(
        name: &str,
        def: &JobTypeDef,
        check: Option<Arc<dyn InputCheck>>,
    ) -> Result<JobType, String> {
        if !is_type_name(name) {
            return Err(format!(
                "{name:?} is not a job type name (a lowercase letter, then lowercase letters, digits or '-', at most 40)"
            ));
        }
        let input_schema = def.check()?;
        if def.input_check.is_some() && check.is_none() {
            return Err(format!(
                "inputCheck: no Rust input check named {:?} is compiled into longhaul",
                def.input_check.as_deref().unwrap_or_default()
            ));
        }
        Ok(JobType {
            name: name.to_string(),
            description: def.description.clone(),
            input_schema,
            timeout_seconds: def.timeout_seconds(),
            file_inputs: def.file_inputs.clone(),
            check,
        })
    }

    pub fn info(&self) -> JobTypeInfo {
        JobTypeInfo {
            job_type: self.name.clone(),
            description: self.description.clone(),
            input_schema: self.input_schema.clone(),
        }
    }

    /// Validates `input` against the schema and the type's own rules; returns the input with
    /// defaults filled in, or a message that names the offending field.
    pub fn validate(&self, input: &Value) -> Result<Value, String> {
        let Value::Object(map) = input else {
            return Err(format!(
                "input must be a JSON object, got {}",
                json_kind(input)
            ));
        };
        // The schema was checked to be inside the subset `schema` enforces when the type
        // was loaded (`JobTypeDef::check`).
        if let Err(err) = crate::schema::validate(&self.input_schema, input) {
            let field = if err.path.is_empty() {
                "input".to_string()
            } else {
                format!("input{}", err.path.replace('/', "."))
            };
            return Err(format!("{field}: {}", err.message));
        }
        let mut map = map.clone();
        fill_defaults(&self.input_schema, &mut map);
        if let Some(check) = &self.check {
            check.normalize(&mut map)?;
        }
        Ok(Value::Object(map))
    }

    /// The type's check of an uploaded file input's first bytes (see [`InputCheck`]).
    pub fn check_file_head(&self, input: &Value, field: &str, head: &[u8]) -> Result<(), String> {
        match &self.check {
            Some(c) => c.check_file_head(input, field, head),
            None => Ok(()),
        }
    }
}

/// Top-level `default`s of the schema's properties, filled in where the input has none, so a
/// step sees every value it was promised.
fn fill_defaults(schema: &Value, input: &mut Map<String, Value>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, prop) in props {
        if let Some(d) = prop.get("default")
            && !input.contains_key(name)
        {
            input.insert(name.clone(), d.clone());
        }
    }
}

pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The registry of job types.
#[derive(Debug, Clone, Default)]
pub struct JobTypes {
    types: Vec<JobType>,
}

impl JobTypes {
    /// The registry of these types; a name given twice is refused, and so are types whose
    /// listJobTypes answer would not fit the response budget.
    pub fn new(types: Vec<JobType>) -> Result<JobTypes, String> {
        for (i, t) in types.iter().enumerate() {
            if types[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("job type {:?} is defined twice", t.name));
            }
        }
        let registry = JobTypes { types };
        let size = crate::budget::json_len(&registry.infos());
        if size > crate::budget::RESPONSE_BUDGET {
            return Err(format!(
                "the job types' descriptions and input schemas come to {size} characters; listJobTypes must stay under {} (ChatGPT refuses answers over {}): shorten the schemas' descriptions or split the folder",
                crate::budget::RESPONSE_BUDGET,
                crate::budget::MAX_RESPONSE_CHARS
            ));
        }
        Ok(registry)
    }

    /// No types: for the steps that never validate a job's input (only Register does).
    pub fn empty() -> JobTypes {
        JobTypes::default()
    }

    pub fn get(&self, name: &str) -> Option<&JobType> {
        self.types.iter().find(|t| t.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.types.iter().map(|t| t.name.as_str()).collect()
    }

    pub fn infos(&self) -> Vec<JobTypeInfo> {
        self.types.iter().map(JobType::info).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobType> {
        self.types.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(v: Value) -> JobTypeDef {
        serde_json::from_value(v).unwrap()
    }

    fn sample() -> Value {
        json!({
            "description": "Counts words.",
            "inputSchema": {"type": "object", "additionalProperties": false, "required": ["text"],
                "properties": {"text": {"type": "string"}, "top": {"type": "integer", "minimum": 1, "default": 10}}},
            "steps": {"Count": {"runtime": "python3.12", "handler": "count.handler"}}
        })
    }

    #[test]
    fn a_type_validates_its_input_and_fills_defaults() {
        let t = JobType::from_def("word-count", &def(sample()), None).unwrap();
        assert_eq!(
            t.validate(&json!({"text": "a b"})).unwrap(),
            json!({"text": "a b", "top": 10})
        );
        let e = t.validate(&json!({"text": 1})).unwrap_err();
        assert!(e.starts_with("input.text:"), "{e}");
        let e = t.validate(&json!({})).unwrap_err();
        assert!(e.contains("text"), "{e}");
        let e = t.validate(&json!([1])).unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
    }

    #[test]
    fn bad_definitions_are_refused_naming_the_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"description": ""}), "description"),
            (json!({"description": "x".repeat(301)}), "description"),
            (json!({"timeoutSeconds": 0}), "timeoutSeconds"),
            (
                json!({"steps": {"bad name": {"runtime": "rust", "handler": "x"}}}),
                "steps.bad name",
            ),
            (
                json!({"steps": {"Count": {"runtime": "python3.12"}}}),
                "needs \"handler\"",
            ),
            (
                json!({"steps": {"Count": {"runtime": "python3.12", "handler": "nodot"}}}),
                "FILE.FUNCTION",
            ),
            (
                json!({"steps": {"Count": {"runtime": "python3.12", "handler": "../x.handler"}}}),
                "FILE.FUNCTION",
            ),
            (
                json!({"steps": {"Count": {"runtime": "command"}}}),
                "needs \"command\"",
            ),
            (
                json!({"steps": {"Count": {"runtime": "command", "command": []}}}),
                "name a program",
            ),
            (
                json!({"steps": {"Count": {"runtime": "rust", "handler": "x", "timeoutSeconds": 901}}}),
                "timeoutSeconds",
            ),
            (
                json!({"steps": {"Count": {"runtime": "rust", "handler": "x", "memoryMB": 64}}}),
                "memoryMB",
            ),
            (
                json!({"inputSchema": {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}}),
                "inputSchema/properties/a/pattern",
            ),
            (json!({"inputSchema": {"type": "string"}}), "inputSchema"),
            (
                json!({"fileInputs": ["text"]}),
                "inputSchema.properties.text",
            ),
        ];
        for (patch, want) in cases {
            let mut v = sample();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let d = def(v);
            let e = JobType::from_def("t", &d, None).unwrap_err();
            assert!(e.contains(want), "{patch}: {e}");
        }
        let e = serde_json::from_value::<JobTypeDef>(json!({"description": "x", "inputSchema": {}, "steps": {"A": {"runtime": "java17", "handler": "a.b"}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `java17`"), "{e}");
        let e = JobType::from_def("Bad_Name", &def(sample()), None).unwrap_err();
        assert!(e.contains("not a job type name"), "{e}");
    }

    #[test]
    fn file_inputs_get_longhauls_schema() {
        let mut v = sample();
        v["fileInputs"] = json!(["source"]);
        v["inputSchema"]["properties"]["source"] = json!({"description": "The CSV."});
        v["inputSchema"]["required"] = json!(["text", "source"]);
        let t = JobType::from_def("t", &def(v), None).unwrap();
        let s = &t.input_schema["properties"]["source"];
        assert_eq!(s["description"], "The CSV.");
        assert_eq!(s["oneOf"].as_array().unwrap().len(), 3);
        assert!(
            t.validate(&json!({"text": "x", "source": {"url": "https://e.com/a.csv"}}))
                .is_ok()
        );
        let e = t
            .validate(&json!({"text": "x", "source": {"path": "/etc/passwd"}}))
            .unwrap_err();
        assert!(e.starts_with("input.source"), "{e}");
    }

    #[test]
    fn names_twice_are_refused() {
        let t = JobType::from_def("t", &def(sample()), None).unwrap();
        let e = JobTypes::new(vec![t.clone(), t]).unwrap_err();
        assert!(e.contains("defined twice"), "{e}");
    }
}
