//! The JSON Schema subset the job types' input schemas are written in, and a validator for it.
//!
//! Why not a general validator: a full JSON Schema implementation (with its regex engines)
//! made the api and register Lambda bootstraps about 1.5 MiB larger, and the two built-in
//! schemas use a dozen keywords. `check_schema` refuses any keyword outside this subset, so a
//! schema that needs more fails its test instead of being half enforced; the tests compare
//! this validator with the `jsonschema` crate on generated inputs.

use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Keywords `validate` enforces, and annotations it ignores.
const ENFORCED: &[&str] = &[
    "type",
    "properties",
    "additionalProperties",
    "required",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "items",
    "enum",
    "oneOf",
];
const ANNOTATIONS: &[&str] = &[
    "description",
    "default",
    "title",
    "examples",
    "$schema",
    "$comment",
];
const TYPES: &[&str] = &[
    "object", "array", "string", "integer", "number", "boolean", "null",
];

/// Checks that `schema` uses only the subset `validate` enforces, with well-formed values.
/// Returns a message with the JSON pointer of the first problem.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    check_schema_at(schema, "")
}

fn check_schema_at(schema: &Value, at: &str) -> Result<(), String> {
    let Value::Object(s) = schema else {
        return Err(format!("{at}: a schema must be an object"));
    };
    for (k, v) in s {
        let here = format!("{at}/{k}");
        let ok = match k.as_str() {
            "type" => match v {
                Value::String(t) => TYPES.contains(&t.as_str()),
                Value::Array(ts) => ts
                    .iter()
                    .all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))),
                _ => false,
            },
            "properties" => {
                let Value::Object(props) = v else {
                    return Err(format!("{here}: must be an object"));
                };
                for (name, sub) in props {
                    check_schema_at(sub, &format!("{here}/{name}"))?;
                }
                true
            }
            "items" => {
                check_schema_at(v, &here)?;
                true
            }
            "oneOf" => {
                let Value::Array(subs) = v else {
                    return Err(format!("{here}: must be an array"));
                };
                for (i, sub) in subs.iter().enumerate() {
                    check_schema_at(sub, &format!("{here}/{i}"))?;
                }
                !subs.is_empty()
            }
            // Only `false` is enforced: `true` is the default and a schema would need more code.
            "additionalProperties" => v == &Value::Bool(false),
            "required" => v.as_array().is_some_and(|r| r.iter().all(Value::is_string)),
            "minimum" | "maximum" => v.is_number(),
            "minLength" | "maxLength" | "minItems" | "maxItems" => v.is_u64(),
            "enum" => v.as_array().is_some_and(|e| !e.is_empty()),
            k if ANNOTATIONS.contains(&k) => true,
            _ => {
                return Err(format!(
                    "{here}: keyword not supported by longhaul's schema subset (supported: {})",
                    ENFORCED.join(", ")
                ));
            }
        };
        if !ok {
            return Err(format!("{here}: malformed value {v}"));
        }
    }
    Ok(())
}

/// One reason an instance does not match; `path` is a JSON pointer into the instance.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

/// Validates `instance` against `schema` (which `check_schema` accepted); returns the first
/// mismatch, in document order.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), SchemaError> {
    let mut path = String::new();
    validate_at(schema, instance, &mut path)
}

fn fail(path: &str, message: String) -> Result<(), SchemaError> {
    Err(SchemaError {
        path: path.to_string(),
        message,
    })
}

fn validate_at(schema: &Value, instance: &Value, path: &mut String) -> Result<(), SchemaError> {
    let Value::Object(s) = schema else {
        return Ok(());
    };
    if let Some(t) = s.get("type")
        && !type_matches(t, instance)
    {
        return fail(
            path,
            format!("{} is not of type {}", short(instance), type_list(t)),
        );
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.iter().any(|o| json_equal(o, instance))
    {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        return fail(
            path,
            format!("{} is not one of {}", short(instance), list.join(", ")),
        );
    }
    match instance {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                return fail(path, format!("{n} is less than the minimum of {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                return fail(path, format!("{n} is greater than the maximum of {max}"));
            }
        }
        Value::String(text) => {
            // JSON Schema counts characters (code points), not bytes.
            let len = text.chars().count() as u64;
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                return fail(
                    path,
                    format!("{} is shorter than {min} characters", short(instance)),
                );
            }
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                return fail(
                    path,
                    format!("{} is longer than {max} characters", short(instance)),
                );
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                return fail(path, format!("has {len} items, fewer than {min}"));
            }
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                return fail(path, format!("has {len} items, more than {max}"));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "/{i}");
                    validate_at(item_schema, item, path)?;
                    path.truncate(len);
                }
            }
        }
        Value::Object(map) => validate_object(s, map, path)?,
        Value::Null | Value::Bool(_) => {}
    }
    if let Some(Value::Array(options)) = s.get("oneOf") {
        validate_one_of(options, instance, path)?;
    }
    Ok(())
}

fn validate_object(
    s: &Map<String, Value>,
    map: &Map<String, Value>,
    path: &mut String,
) -> Result<(), SchemaError> {
    let props = s.get("properties").and_then(Value::as_object);
    if let Some(Value::Array(required)) = s.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                return fail(path, format!("\"{name}\" is a required property"));
            }
        }
    }
    if s.get("additionalProperties") == Some(&Value::Bool(false)) {
        let known = |k: &str| props.is_some_and(|p| p.contains_key(k));
        let extra: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !known(k))
            .collect();
        if !extra.is_empty() {
            let allowed: Vec<&str> = props
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return fail(
                path,
                format!(
                    "unknown propert{} {} (allowed: {})",
                    if extra.len() == 1 { "y" } else { "ies" },
                    extra.join(", "),
                    allowed.join(", ")
                ),
            );
        }
    }
    if let Some(props) = props {
        for (name, value) in map {
            if let Some(sub) = props.get(name) {
                let len = path.len();
                path.push('/');
                path.push_str(&name.replace('~', "~0").replace('/', "~1"));
                validate_at(sub, value, path)?;
                path.truncate(len);
            }
        }
    }
    Ok(())
}

/// oneOf: exactly one branch must match. When none does, the error of the branch whose
/// required properties the instance has is the useful one ("which kind of source did you
/// mean"); otherwise the branches are listed by their required properties.
fn validate_one_of(options: &[Value], instance: &Value, path: &str) -> Result<(), SchemaError> {
    let mut errors = Vec::new();
    let mut matched = 0;
    for option in options {
        let mut p = path.to_string();
        match validate_at(option, instance, &mut p) {
            Ok(()) => matched += 1,
            Err(e) => errors.push((option, e)),
        }
    }
    if matched == 1 {
        return Ok(());
    }
    if matched > 1 {
        return fail(
            path,
            format!(
                "{} matches more than one of the allowed forms",
                short(instance)
            ),
        );
    }
    if let Value::Object(map) = instance {
        let meant: Vec<&SchemaError> = errors
            .iter()
            .filter(|(option, _)| {
                required_of(option)
                    .is_some_and(|r| !r.is_empty() && r.iter().all(|k| map.contains_key(*k)))
            })
            .map(|(_, e)| e)
            .collect();
        if let [only] = meant.as_slice() {
            return Err((*only).clone());
        }
    }
    let forms: Vec<String> = options
        .iter()
        .map(|o| match required_of(o) {
            Some(r) if !r.is_empty() => format!("{{{}}}", r.join(", ")),
            _ => "a schema".to_string(),
        })
        .collect();
    fail(
        path,
        format!(
            "{} matches none of the allowed forms: {}",
            short(instance),
            forms.join(" or ")
        ),
    )
}

fn required_of(schema: &Value) -> Option<Vec<&str>> {
    Some(
        schema
            .get("required")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .collect(),
    )
}

fn type_matches(t: &Value, instance: &Value) -> bool {
    match t {
        Value::String(t) => is_type(t, instance),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .any(|t| is_type(t, instance)),
        _ => true,
    }
}

fn is_type(t: &str, v: &Value) -> bool {
    match (t, v) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("number", Value::Number(_))
        | ("boolean", Value::Bool(_))
        | ("null", Value::Null) => true,
        // JSON Schema: an integer is a number with no fractional part, so 2.0 is one.
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|x| x.fract() == 0.0)
        }
        _ => false,
    }
}

/// JSON Schema equality: numbers compare by value (1 equals 1.0).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn type_list(t: &Value) -> String {
    match t {
        Value::Array(ts) => ts
            .iter()
            .map(|t| format!("\"{}\"", t.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(" or "),
        other => other.to_string(),
    }
}

/// The instance as it appears in a message, cut so a huge input does not make a huge error.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 80 {
        return s;
    }
    let mut end = 77;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn check_schema_refuses_keywords_outside_the_subset() {
        let e = check_schema(&json!({"type": "object", "properties": {
            "a": {"type": "string", "pattern": "^x"}}}))
        .unwrap_err();
        assert!(e.starts_with("/properties/a/pattern:"), "{e}");
        let e = check_schema(&json!({"additionalProperties": {"type": "string"}})).unwrap_err();
        assert!(e.contains("additionalProperties"), "{e}");
        let e = check_schema(&json!({"type": "int"})).unwrap_err();
        assert!(e.contains("/type"), "{e}");
        let e = check_schema(&json!({"oneOf": []})).unwrap_err();
        assert!(e.contains("/oneOf"), "{e}");
    }

    #[test]
    fn messages_name_the_problem() {
        let schema = json!({"type": "object", "additionalProperties": false,
            "required": ["n"], "properties": {
                "n": {"type": "integer", "minimum": 1, "maximum": 5},
                "s": {"type": "string", "maxLength": 2},
                "e": {"enum": ["a", "b"]},
                "xs": {"type": "array", "maxItems": 1, "items": {"type": "string"}}}});
        let err = |v: Value| validate(&schema, &v).unwrap_err();
        assert_eq!(err(json!({})).message, "\"n\" is a required property");
        let e = err(json!({"n": 9}));
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("/n", "9 is greater than the maximum of 5")
        );
        assert_eq!(err(json!({"n": 1, "s": "héé"})).path, "/s");
        assert_eq!(
            err(json!({"n": 1, "e": "c"})).message,
            "\"c\" is not one of \"a\", \"b\""
        );
        assert_eq!(err(json!({"n": 1, "xs": [1]})).path, "/xs/0");
        assert!(err(json!({"n": 1, "zz": 1})).message.contains("zz"));
        assert_eq!(
            err(json!({"n": 1.5})).message,
            "1.5 is not of type \"integer\""
        );
        assert!(validate(&schema, &json!({"n": 2.0, "s": "éé", "xs": ["a"]})).is_ok());
    }

    #[test]
    fn one_of_reports_the_branch_the_caller_meant() {
        let schema = json!({"oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["object"],
             "properties": {"object": {"type": "string", "minLength": 1}}},
            {"type": "object", "additionalProperties": false, "required": ["url"],
             "properties": {"url": {"type": "string", "minLength": 8}}}]});
        let e = validate(&schema, &json!({"url": "x"})).unwrap_err();
        assert_eq!(e.path, "/url");
        let e = validate(&schema, &json!({"file": 1})).unwrap_err();
        assert!(e.message.contains("{object} or {url}"), "{}", e.message);
        assert!(validate(&schema, &json!({"object": "o"})).is_ok());
    }
}
