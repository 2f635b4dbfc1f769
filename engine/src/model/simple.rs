//! Fail states: the error and the cause, given as such, by a path or an intrinsic function
//! (JSONPath), or by an expression (JSONata). (Pass and Succeed have nothing of their own
//! beyond the shared fields.)

use serde_json::{Map, Value};

use super::fields::{Ctx, expr};
use super::{Kind, Lang, StrSource};
use crate::jsonata::expression_text;
use crate::path::Path;

pub(super) fn parse_fail(m: &Map<String, Value>, lang: Lang, name: &str, cx: &mut Ctx) -> Kind {
    let mut src = |field: &str, path_field_name: &str| -> Option<StrSource> {
        match (m.get(field), m.get(path_field_name)) {
            (Some(_), Some(_)) => {
                cx.err(
                    Some(name),
                    field,
                    format!("use {field} or {path_field_name}, not both"),
                );
                None
            }
            (Some(Value::String(s)), None)
                if lang == Lang::Jsonata && expression_text(s).is_some() =>
            {
                expr(s, field, name, cx).map(StrSource::Expr)
            }
            (Some(Value::String(s)), None) => Some(StrSource::Fixed(s.clone())),
            (Some(_), None) => {
                cx.err(Some(name), field, "must be a string");
                None
            }
            (None, Some(Value::String(p))) if crate::intrinsics::looks_like_call(p) => {
                match crate::intrinsics::parse(p) {
                    Ok(c) => Some(StrSource::Call(c)),
                    Err(e) => {
                        cx.err(Some(name), path_field_name, e);
                        None
                    }
                }
            }
            (None, Some(Value::String(p))) => match Path::parse(p) {
                Ok(p) => Some(StrSource::Path(p)),
                Err(e) => {
                    cx.err(Some(name), path_field_name, e);
                    None
                }
            },
            (None, Some(_)) => {
                cx.err(Some(name), path_field_name, "must be a path string");
                None
            }
            (None, None) => None,
        }
    };
    let error = src("Error", "ErrorPath");
    let cause = src("Cause", "CausePath");
    Kind::Fail { error, cause }
}
