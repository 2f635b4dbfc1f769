//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`): keys ending in `.$`
//! take their value from a path or an intrinsic call; everything else is copied.

use serde_json::{Map, Value};

use crate::intrinsics::{self, Call};
use crate::path::Path;
use crate::vars::Vars;

#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Literal(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    Path(Path),
    Call(Call),
}

/// Why a template could not be compiled: the field (dotted) and the reason.
#[derive(Debug, Clone)]
pub struct TemplateError {
    pub field: String,
    pub message: String,
}

impl Template {
    pub fn compile(v: &Value) -> Result<Template, TemplateError> {
        compile(v, "", 0)
    }

    /// Fills the template. Errors name the key and whether an intrinsic failed.
    pub fn apply(&self, data: &Value, ctx: &Value, vars: &Vars<'_>) -> Result<Value, ApplyError> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Path(p) => p.resolve(data, ctx, vars).ok_or_else(|| {
                ApplyError::Path(format!(
                    "the JSONPath '{p}' could not be found in the input"
                ))
            })?,
            Template::Call(c) => {
                intrinsics::eval(c, data, ctx, vars).map_err(ApplyError::Intrinsic)?
            }
            Template::Object(fields) => {
                let mut m = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    let v = t.apply(data, ctx, vars).map_err(|e| e.within(k))?;
                    m.insert(k.clone(), v);
                }
                Value::Object(m)
            }
            Template::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.apply(data, ctx, vars))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

#[derive(Debug, Clone)]
pub enum ApplyError {
    Path(String),
    Intrinsic(String),
}

impl ApplyError {
    fn within(self, key: &str) -> ApplyError {
        match self {
            ApplyError::Path(m) => ApplyError::Path(format!(
                "The value for the field '{key}.$' must be a valid JSONPath: {m}"
            )),
            ApplyError::Intrinsic(m) => ApplyError::Intrinsic(format!("field '{key}.$': {m}")),
        }
    }
}

fn compile(v: &Value, at: &str, depth: usize) -> Result<Template, TemplateError> {
    if depth > 64 {
        return Err(TemplateError {
            field: at.to_string(),
            message: "nested too deep".into(),
        });
    }
    match v {
        Value::Object(m) => {
            let mut fields = Vec::with_capacity(m.len());
            let mut all_literal = true;
            for (k, val) in m {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                if let Some(name) = k.strip_suffix(".$") {
                    let Value::String(expr) = val else {
                        return Err(TemplateError {
                            field: here,
                            message:
                                "a key ending in '.$' needs a string: a path or an intrinsic call"
                                    .into(),
                        });
                    };
                    let t = if intrinsics::looks_like_call(expr) {
                        Template::Call(intrinsics::parse(expr).map_err(|m| TemplateError {
                            field: here.clone(),
                            message: m,
                        })?)
                    } else {
                        Template::Path(Path::parse(expr).map_err(|m| TemplateError {
                            field: here.clone(),
                            message: m,
                        })?)
                    };
                    all_literal = false;
                    fields.push((name.to_string(), t));
                } else {
                    let t = compile(val, &here, depth + 1)?;
                    if !matches!(t, Template::Literal(_)) {
                        all_literal = false;
                    }
                    fields.push((k.clone(), t));
                }
            }
            if all_literal {
                return Ok(Template::Literal(v.clone()));
            }
            Ok(Template::Object(fields))
        }
        Value::Array(a) => {
            let items: Vec<Template> = a
                .iter()
                .enumerate()
                .map(|(i, x)| compile(x, &format!("{at}[{i}]"), depth + 1))
                .collect::<Result<_, _>>()?;
            if items.iter().all(|t| matches!(t, Template::Literal(_))) {
                Ok(Template::Literal(v.clone()))
            } else {
                Ok(Template::Array(items))
            }
        }
        other => Ok(Template::Literal(other.clone())),
    }
}
