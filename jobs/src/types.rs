//! Job types: each has a description, a JSON Schema for its input (served by listJobTypes and
//! enforced at startJob) and a branch in `statemachine/job.asl.json`.

use serde::Serialize;
use serde_json::{Value, json};
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

/// A job type the service accepts.
pub struct JobType {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    /// Checks the schema cannot say, and fills defaults. Returns a message naming the field.
    normalize: fn(&mut serde_json::Map<String, Value>) -> Result<(), String>,
}

impl std::fmt::Debug for JobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobType").field("name", &self.name).finish()
    }
}

impl JobType {
    pub fn new(
        name: &'static str,
        description: &'static str,
        input_schema: Value,
        normalize: fn(&mut serde_json::Map<String, Value>) -> Result<(), String>,
    ) -> JobType {
        JobType {
            name,
            description,
            input_schema,
            normalize,
        }
    }

    pub fn info(&self) -> JobTypeInfo {
        JobTypeInfo {
            job_type: self.name.to_string(),
            description: self.description.to_string(),
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
        // The schemas are ours and fixed; that they stay inside the subset `schema` enforces
        // is checked by a test (`every_builtin_schema_is_in_the_enforced_subset`).
        if let Err(err) = crate::schema::validate(&self.input_schema, input) {
            let field = if err.path.is_empty() {
                "input".to_string()
            } else {
                format!("input{}", err.path.replace('/', "."))
            };
            return Err(format!("{field}: {}", err.message));
        }
        let mut map = map.clone();
        (self.normalize)(&mut map)?;
        Ok(Value::Object(map))
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
#[derive(Debug)]
pub struct JobTypes {
    types: Vec<JobType>,
}

impl JobTypes {
    /// Every type longhaul ships.
    pub fn builtin() -> JobTypes {
        JobTypes {
            types: vec![demo(), csv_report()],
        }
    }

    /// No types: for the workers that never validate a job's input (only Register does), so
    /// their Lambda bootstraps do not carry the schemas and the validator.
    pub fn empty() -> JobTypes {
        JobTypes { types: Vec::new() }
    }

    pub fn get(&self, name: &str) -> Option<&JobType> {
        self.types.iter().find(|t| t.name == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.types.iter().map(|t| t.name).collect()
    }

    pub fn infos(&self) -> Vec<JobTypeInfo> {
        self.types.iter().map(JobType::info).collect()
    }
}

/// `demo`: steps with progress, to try a deployment and to show work past 45 s.
fn demo() -> JobType {
    JobType::new(
        "demo",
        "Runs `steps` steps of `stepSeconds` seconds each, reporting progress after each; \
         fails at step `failAtStep` if given. Use it to try longhaul and to see a job outlive \
         the 45 s Action timeout.",
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["steps"],
            "properties": {
                "steps": {"type": "integer", "minimum": 1, "maximum": 100,
                          "description": "How many steps to run."},
                "stepSeconds": {"type": "integer", "minimum": 0, "maximum": 900, "default": 1,
                                "description": "Seconds each step takes (default 1)."},
                "failAtStep": {"type": "integer", "minimum": 1, "maximum": 100,
                               "description": "Make the job fail at this step (to see a failure)."}
            }
        }),
        |input| {
            input.entry("stepSeconds").or_insert_with(|| Value::from(1));
            let steps = input.get("steps").and_then(Value::as_u64).unwrap_or(0);
            if let Some(at) = input.get("failAtStep").and_then(Value::as_u64)
                && at > steps
            {
                return Err(format!(
                    "input.failAtStep: {at} is after the last step ({steps})"
                ));
            }
            Ok(())
        },
    )
}

/// `csv-report`: a group-by aggregation of a CSV of any size, in parallel over its chunks.
fn csv_report() -> JobType {
    JobType::new(
        "csv-report",
        "Group-by aggregation of a CSV file of any size (count, sum, mean, min, max per group, \
         optional filters). The top groups come back in `result`; every group in report.csv \
         and a bar chart in report.png. The file comes from createUpload ({\"object\"}), from \
         a file attached in ChatGPT ({\"fileRef\": index into openaiFileIdRefs}) or a URL.",
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["source", "metrics"],
            "properties": {
                "source": {
                    "description": "Where the CSV is.",
                    "oneOf": [
                        {"type": "object", "additionalProperties": false, "required": ["object"],
                         "properties": {"object": {"type": "string", "minLength": 1, "maxLength": 512,
                            "description": "The object from createUpload."}}},
                        {"type": "object", "additionalProperties": false, "required": ["fileRef"],
                         "properties": {"fileRef": {"type": "integer", "minimum": 0, "maximum": 9,
                            "description": "Index of a file in openaiFileIdRefs."}}},
                        {"type": "object", "additionalProperties": false, "required": ["url"],
                         "properties": {"url": {"type": "string", "minLength": 8, "maxLength": 2048,
                            "description": "An https URL of the CSV."}}}
                    ]
                },
                "groupBy": {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1},
                            "description": "Columns to group by (0 to 4); none gives one row of totals."},
                "metrics": {"type": "array", "minItems": 1, "maxItems": 10,
                    "description": "What to compute per group: {op: count} or {op: sum|mean|min|max, column}. Named count, or OP_COLUMN (sum_amount).",
                    "items": {"type": "object", "additionalProperties": false, "required": ["op"],
                              "properties": {"op": {"enum": ["count", "sum", "mean", "min", "max"]},
                                             "column": {"type": "string", "minLength": 1}}}},
                "filter": {"type": "array", "maxItems": 10, "description": "Rows to keep (all must match).",
                    "items": {"type": "object", "additionalProperties": false, "required": ["column", "op", "value"],
                              "properties": {"column": {"type": "string"},
                                             "op": {"enum": ["eq", "ne", "lt", "le", "gt", "ge", "contains"]},
                                             "value": {"type": ["string", "number", "boolean"]}}}},
                "sortBy": {"type": "string", "description": "A metric name; default: the first metric."},
                "descending": {"type": "boolean", "default": true},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20,
                          "description": "How many top groups come back inline."},
                "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
                "chunkBytes": {"type": "integer", "minimum": 1024, "maximum": 1073741824,
                               "description": "Size of the parallel chunks (default 8 MiB)."}
            }
        }),
        |input| {
            let spec: longhaul_report::ReportSpec =
                serde_json::from_value(Value::Object(input.clone()))
                    .map_err(|e| format!("input: {e}"))?;
            spec.validate()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_accepts_valid_input_and_fills_defaults() {
        let types = JobTypes::builtin();
        let demo = types.get("demo").unwrap();
        let v = demo.validate(&json!({"steps": 3})).unwrap();
        assert_eq!(v, json!({"steps": 3, "stepSeconds": 1}));
    }

    #[test]
    fn demo_errors_name_the_field() {
        let types = JobTypes::builtin();
        let demo = types.get("demo").unwrap();
        let e = demo.validate(&json!({"steps": 0})).unwrap_err();
        assert!(e.starts_with("input.steps:"), "{e}");
        let e = demo
            .validate(&json!({"steps": 2, "stepSeconds": "x"}))
            .unwrap_err();
        assert!(e.starts_with("input.stepSeconds:"), "{e}");
        let e = demo.validate(&json!({})).unwrap_err();
        assert!(e.contains("steps"), "{e}");
        let e = demo
            .validate(&json!({"steps": 2, "failAtStep": 3}))
            .unwrap_err();
        assert!(e.starts_with("input.failAtStep:"), "{e}");
        let e = demo.validate(&json!([1])).unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
        let e = demo.validate(&json!({"steps": 1, "bogus": 1})).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    #[test]
    fn every_builtin_schema_is_in_the_enforced_subset() {
        for t in &JobTypes::builtin().types {
            if let Err(e) = crate::schema::check_schema(&t.input_schema) {
                panic!("{}: {e}", t.name);
            }
        }
    }
}
