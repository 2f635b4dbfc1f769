//! Wait states: seconds or a timestamp, given as such, by a path, or by an expression.

use serde_json::{Map, Value};

use super::fields::{Ctx, expr, path_field};
use super::{Kind, Lang, WaitFor};
use crate::choice;
use crate::jsonata::expression_text;

pub(super) fn parse(m: &Map<String, Value>, lang: Lang, name: &str, cx: &mut Ctx) -> Option<Kind> {
    let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
        .into_iter()
        .filter(|k| m.contains_key(*k))
        .collect();
    if present.len() != 1 {
        cx.err(
            Some(name),
            "Seconds",
            "a Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
        );
        return None;
    }
    let is_expr = |v: Option<&Value>| {
        lang == Lang::Jsonata
            && v.and_then(Value::as_str)
                .and_then(expression_text)
                .is_some()
    };
    Some(Kind::Wait(match present[0] {
        "Seconds" if is_expr(m.get("Seconds")) => {
            WaitFor::SecondsExpr(expr(m.get("Seconds")?.as_str()?, "Seconds", name, cx)?)
        }
        "Seconds" => match m.get("Seconds").and_then(Value::as_u64) {
            Some(n) if n <= 99_999_999 => WaitFor::Seconds(n),
            _ => {
                cx.err(Some(name), "Seconds", "must be a non-negative integer");
                return None;
            }
        },
        "Timestamp" if is_expr(m.get("Timestamp")) => {
            WaitFor::TimestampExpr(expr(m.get("Timestamp")?.as_str()?, "Timestamp", name, cx)?)
        }
        "Timestamp" => match m
            .get("Timestamp")
            .and_then(Value::as_str)
            .and_then(choice::parse_timestamp)
        {
            Some(t) => WaitFor::Timestamp(t.with_timezone(&chrono::Utc)),
            None => {
                cx.err(Some(name), "Timestamp", "must be an RFC 3339 timestamp");
                return None;
            }
        },
        "SecondsPath" => WaitFor::SecondsPath(path_field(m, "SecondsPath", name, cx, false)?),
        _ => WaitFor::TimestampPath(path_field(m, "TimestampPath", name, cx, false)?),
    }))
}
