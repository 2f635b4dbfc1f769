//! JSONata, the second query language of ASL: `{% expression %}` strings in a JSONata
//! state's fields, evaluated with `$states` (`input`, `result`, `errorOutput`, `context`),
//! the workflow variables, and the functions AWS adds (`$partition`, `$range`, `$hash`,
//! `$random`, `$uuid`, `$parse`).
//!
//! The language itself is the `jsonata-core` crate. Expressions are parsed once, when the
//! definition is (a [`JTemplate`] holds them compiled); evaluating one converts only what
//! it reads: the variables it names, and `$states` if it names it.

use std::collections::BTreeSet;

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError};
use jsonata_core::value::JValue;
use serde_json::{Map, Value};

use crate::vars::Vars;

/// The error AWS raises when a JSONata expression fails or returns what its field cannot
/// take.
pub(crate) const QUERY_ERROR: &str = "States.QueryEvaluationError";

/// One compiled `{% %}` expression.
#[derive(Debug)]
pub(crate) struct Expr {
    ast: AstNode,
    /// The expression's text (between `{%` and `%}`), for messages.
    pub text: String,
    /// The `$names` it mentions (a superset of the variables it reads).
    names: BTreeSet<String>,
    uses_states: bool,
    uses_context: bool,
}

/// A JSON value whose strings may be `{% %}` expressions, at any depth.
#[derive(Debug)]
pub(crate) enum JTemplate {
    Literal(Value),
    Expr(Box<Expr>),
    Object(Vec<(String, JTemplate)>),
    Array(Vec<JTemplate>),
}

/// What a JSONata expression can read.
pub(crate) struct Env<'a> {
    pub input: &'a Value,
    pub result: Option<&'a Value>,
    pub error_output: Option<&'a Value>,
    /// Builds the context object (`$states.context`), only when an expression reads it.
    pub context: &'a dyn Fn() -> Value,
    pub vars: &'a Vars<'a>,
}

/// Why an evaluation failed (the error is always [`QUERY_ERROR`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryError(pub String);

/// The expression inside `s` when it is written `{% ... %}` (no space outside).
pub(crate) fn expression_text(s: &str) -> Option<&str> {
    s.strip_prefix("{%")?.strip_suffix("%}")
}

impl Expr {
    pub fn compile(text: &str) -> Result<Expr, String> {
        let ast = jsonata_core::parser::parse(text)
            .map_err(|e| format!("the JSONata expression '{}' is not valid: {e}", text.trim()))?;
        let names = dollar_names(text);
        Ok(Expr {
            ast,
            text: text.trim().to_string(),
            uses_states: names.contains("states"),
            uses_context: names.contains("states") && text.contains("context"),
            names,
        })
    }

    /// Evaluates; `field` names where it stands (`Output/result`) in messages.
    pub fn eval(&self, env: &Env<'_>, field: &str) -> Result<Value, QueryError> {
        let mut cx = Context::new();
        for n in &self.names {
            if n != "states"
                && let Some(v) = env.vars.get(n)
            {
                cx.bind(n.clone(), JValue::from(v.clone()));
            }
        }
        if self.uses_states {
            let mut states = Map::new();
            states.insert("input".into(), env.input.clone());
            if let Some(r) = env.result {
                states.insert("result".into(), r.clone());
            }
            if let Some(e) = env.error_output {
                states.insert("errorOutput".into(), e.clone());
            }
            if self.uses_context {
                states.insert("context".into(), (env.context)());
            }
            cx.bind("states".into(), JValue::from(Value::Object(states)));
        }
        let mut ev = Evaluator::with_context(cx);
        register_aws_functions(&mut ev).map_err(|e| QueryError(e.to_string()))?;
        let out = ev.evaluate(&self.ast, &JValue::Null).map_err(|e| {
            QueryError(format!(
                "The JSONata expression '{}' specified for the field '{field}' failed: {}",
                self.text,
                e.message()
            ))
        })?;
        to_json(&out).map_err(|why| {
            QueryError(format!(
                "The JSONata expression '{}' specified for the field '{field}' {why}",
                self.text
            ))
        })
    }
}

impl JTemplate {
    /// Compiles a field's value; `Err` is (the dotted place, the problem).
    pub fn compile(v: &Value) -> Result<JTemplate, (String, String)> {
        compile(v, "", 0)
    }

    /// Whether the whole field is one expression (then its result may be any JSON value).
    pub fn as_expr(&self) -> Option<&Expr> {
        match self {
            JTemplate::Expr(e) => Some(e),
            _ => None,
        }
    }

    /// Fills the template; `field` is the field's name (`Output`), for messages.
    pub fn eval(&self, env: &Env<'_>, field: &str) -> Result<Value, QueryError> {
        match self {
            JTemplate::Literal(v) => Ok(v.clone()),
            JTemplate::Expr(e) => e.eval(env, field),
            JTemplate::Object(fields) => {
                let mut m = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    m.insert(k.clone(), t.eval(env, &format!("{field}/{k}"))?);
                }
                Ok(Value::Object(m))
            }
            JTemplate::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, t)| t.eval(env, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
        }
    }
}

fn compile(v: &Value, at: &str, depth: usize) -> Result<JTemplate, (String, String)> {
    if depth > 64 {
        return Err((at.to_string(), "nested too deep".into()));
    }
    let here = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    Ok(match v {
        Value::String(s) => match expression_text(s) {
            Some(text) => JTemplate::Expr(Box::new(
                Expr::compile(text).map_err(|m| (at.to_string(), m))?,
            )),
            None => JTemplate::Literal(v.clone()),
        },
        Value::Object(m) => {
            let fields = m
                .iter()
                .map(|(k, x)| Ok((k.clone(), compile(x, &here(k), depth + 1)?)))
                .collect::<Result<Vec<_>, (String, String)>>()?;
            if fields
                .iter()
                .all(|(_, t)| matches!(t, JTemplate::Literal(_)))
            {
                JTemplate::Literal(v.clone())
            } else {
                JTemplate::Object(fields)
            }
        }
        Value::Array(a) => {
            let items = a
                .iter()
                .enumerate()
                .map(|(i, x)| compile(x, &format!("{at}[{i}]"), depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            if items.iter().all(|t| matches!(t, JTemplate::Literal(_))) {
                JTemplate::Literal(v.clone())
            } else {
                JTemplate::Array(items)
            }
        }
        other => JTemplate::Literal(other.clone()),
    })
}

/// Every `$name` in an expression's text (outside string literals).
fn dollar_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut chars = text.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '$') => {
                let start = i + 1;
                let mut end = start;
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                if end > start {
                    out.insert(text[start..end].to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// A JSONata value as JSON; `Err` says what AWS says of a result it cannot use.
fn to_json(v: &JValue) -> Result<Value, String> {
    Ok(match v {
        JValue::Undefined => return Err("returned nothing (undefined).".into()),
        JValue::Null => Value::Null,
        JValue::Bool(b) => Value::Bool(*b),
        JValue::Number(n) => number(*n).ok_or("returned a number that is not finite.")?,
        JValue::String(s) => Value::String(s.to_string()),
        JValue::Array(a) => Value::Array(
            a.iter()
                .filter(|x| !x.is_undefined())
                .map(to_json)
                .collect::<Result<_, _>>()?,
        ),
        JValue::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m.iter() {
                if !x.is_undefined() {
                    out.insert(k.clone(), to_json(x)?);
                }
            }
            Value::Object(out)
        }
        _ => return Err("returned an unsupported result type.".into()),
    })
}

/// A JSONata number as JSON: whole numbers as integers (as JavaScript prints them).
fn number(n: f64) -> Option<Value> {
    if !n.is_finite() {
        return None;
    }
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        // -0 is 0, as JSON.stringify writes it.
        return Some(Value::from(n as i64));
    }
    serde_json::Number::from_f64(n).map(Value::Number)
}

fn fail(name: &str, m: impl std::fmt::Display) -> EvaluatorError {
    EvaluatorError::EvaluationError(format!("${name}: {m}"))
}

fn arg_f64(args: &[JValue], i: usize, fname: &str, what: &str) -> Result<f64, EvaluatorError> {
    args.get(i)
        .and_then(JValue::as_f64)
        .ok_or_else(|| fail(fname, format!("{what} must be a number")))
}

/// AWS's additions to JSONata.
fn register_aws_functions(ev: &mut Evaluator) -> Result<(), EvaluatorError> {
    ev.register_fn("partition", |args: &[JValue]| {
        let items = args
            .first()
            .and_then(JValue::as_array)
            .ok_or_else(|| fail("partition", "the first argument must be an array"))?;
        let size = arg_f64(args, 1, "partition", "the chunk size")?;
        if size < 1.0 || size.fract() != 0.0 {
            return Err(fail(
                "partition",
                "the chunk size must be a positive integer",
            ));
        }
        let chunks = items
            .chunks(size as usize)
            .map(|c| JValue::array(c.to_vec()))
            .collect();
        Ok(JValue::array(chunks))
    })?;
    ev.register_fn("range", |args: &[JValue]| {
        let start = arg_f64(args, 0, "range", "start")?;
        let end = arg_f64(args, 1, "range", "end")?;
        let step = arg_f64(args, 2, "range", "step")?;
        if step == 0.0 || [start, end, step].iter().any(|x| x.fract() != 0.0) {
            return Err(fail(
                "range",
                "start, end and step must be integers, step not 0",
            ));
        }
        let count = if (step > 0.0 && start > end) || (step < 0.0 && start < end) {
            0.0
        } else {
            ((end - start) / step).floor() + 1.0
        };
        if count > 1000.0 {
            return Err(fail("range", "the range has more than 1000 items"));
        }
        let items = (0..count as i64)
            .map(|k| JValue::from_f64(start + k as f64 * step))
            .collect();
        // A sequence, as AWS returns it: one item is that item.
        Ok(JValue::sequence(items))
    })?;
    ev.register_fn("hash", |args: &[JValue]| {
        use sha2::Digest;
        let data = args
            .first()
            .and_then(JValue::as_str)
            .ok_or_else(|| fail("hash", "the data must be a string"))?;
        let alg = args
            .get(1)
            .and_then(JValue::as_str)
            .ok_or_else(|| fail("hash", "the algorithm must be a string"))?;
        let hex = match alg {
            "MD5" => hex::encode(md5::Md5::digest(data.as_bytes())),
            "SHA-1" => hex::encode(sha1::Sha1::digest(data.as_bytes())),
            "SHA-256" => hex::encode(sha2::Sha256::digest(data.as_bytes())),
            "SHA-384" => hex::encode(sha2::Sha384::digest(data.as_bytes())),
            "SHA-512" => hex::encode(sha2::Sha512::digest(data.as_bytes())),
            other => {
                return Err(fail(
                    "hash",
                    format!("unknown algorithm {other:?} (MD5, SHA-1, SHA-256, SHA-384, SHA-512)"),
                ));
            }
        };
        Ok(JValue::from(hex.as_str()))
    })?;
    ev.register_fn_override("random", |args: &[JValue]| {
        use rand::{Rng, SeedableRng};
        let x: f64 = match args.first() {
            Some(seed) => {
                let seed = seed
                    .as_f64()
                    .ok_or_else(|| fail("random", "the seed must be a number"))?;
                rand::rngs::StdRng::seed_from_u64(seed as i64 as u64).random()
            }
            None => rand::rng().random(),
        };
        Ok(JValue::from_f64(x))
    })?;
    ev.register_fn("uuid", |_: &[JValue]| {
        Ok(JValue::from(uuid::Uuid::new_v4().to_string().as_str()))
    })?;
    ev.register_fn("parse", |args: &[JValue]| {
        let text = args
            .first()
            .and_then(JValue::as_str)
            .ok_or_else(|| fail("parse", "the argument must be a string"))?;
        let v: Value =
            serde_json::from_str(text).map_err(|e| fail("parse", format!("not JSON: {e}")))?;
        Ok(JValue::from(v))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(expr: &str, input: Value) -> Result<Value, QueryError> {
        let vars = Vars::new(
            json!({"items": [1, 2, 3], "name": "x"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            None,
        );
        let ctx = || json!({"Execution": {"Name": "run-1"}});
        let env = Env {
            input: &input,
            result: None,
            error_output: None,
            context: &ctx,
            vars: &vars,
        };
        Expr::compile(expr)
            .map_err(QueryError)?
            .eval(&env, "Output")
    }

    #[test]
    fn evaluates_with_states_variables_and_aws_functions() {
        assert_eq!(run("$states.input.a + 1", json!({"a": 2})), Ok(json!(3)));
        assert_eq!(run("$sum($items)", json!({})), Ok(json!(6)));
        assert_eq!(
            run("$states.context.Execution.Name", json!({})),
            Ok(json!("run-1"))
        );
        assert_eq!(run("$range(0, 10, 3)", json!({})), Ok(json!([0, 3, 6, 9])));
        assert_eq!(run("$range(1, 9, 9)", json!({})), Ok(json!(1)));
        assert_eq!(
            run("$partition([1,2,3], 2)", json!({})),
            Ok(json!([[1, 2], [3]]))
        );
        assert_eq!(run("$partition([0], 1)", json!({})), Ok(json!([[0]])));
        assert_eq!(
            run("$parse('{\"a\": [1]}')", json!({})),
            Ok(json!({"a": [1]}))
        );
        assert_eq!(run("$parse('-0')", json!({})), Ok(json!(0)));
        assert_eq!(
            run("$hash('input data', 'SHA-1')", json!({})),
            Ok(json!("aaff4a450a104cd177d28d18d74485e8cae074b7"))
        );
        assert_eq!(
            run("$contains('hello$world', /^hello\\$/)", json!({})),
            Ok(json!(true))
        );
        assert_eq!(run("$v := 1", json!({})), Ok(json!(1)));
        assert_eq!(run("$random(7) = $random(7)", json!({})), Ok(json!(true)));
        assert_eq!(run("$length($uuid())", json!({})), Ok(json!(36)));
        assert_eq!(run("'$name'", json!({})), Ok(json!("$name")));
    }

    #[test]
    fn undefined_and_functions_are_errors() {
        let e = run("$nothing", json!({})).unwrap_err();
        assert!(e.0.contains("returned nothing (undefined)"), "{e:?}");
        let e = run("function($x){$x}", json!({})).unwrap_err();
        assert!(e.0.contains("unsupported result type"), "{e:?}");
        assert!(run("$states.input.a.b", json!({"a": 1})).is_err());
        assert!(Expr::compile("1 +").is_err());
    }

    #[test]
    fn templates_evaluate_nested_expressions() {
        let t = JTemplate::compile(&json!({"a": ["{% 1 + 1 %}", " {% no %} "], "b": 3})).unwrap();
        let vars = Vars::default();
        let input = json!({});
        let ctx = || json!({});
        let env = Env {
            input: &input,
            result: None,
            error_output: None,
            context: &ctx,
            vars: &vars,
        };
        assert_eq!(
            t.eval(&env, "Output"),
            Ok(json!({"a": [2, " {% no %} "], "b": 3}))
        );
    }
}
