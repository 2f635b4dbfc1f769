//! Choice states: the rules (JSONPath comparisons or JSONata conditions), each with its
//! `Next` and, optionally, `Assign` and `Output`; the `Default`.

use serde_json::{Map, Value};

use super::fields::{Ctx, assign, check_fields, jtemplate};
use super::{ChoiceRule, Kind, Lang, Test};
use crate::choice;

pub(super) fn parse(m: &Map<String, Value>, lang: Lang, name: &str, cx: &mut Ctx) -> Kind {
    let mut choices = Vec::new();
    match m.get("Choices") {
        Some(Value::Array(cs)) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if let Some(rule) = parse_rule(c, lang, name, &format!("Choices[{i}]"), cx) {
                    choices.push(rule);
                }
            }
        }
        _ => cx.err(
            Some(name),
            "Choices",
            "a Choice state needs a non-empty Choices array",
        ),
    }
    let default = match m.get("Default") {
        None => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => {
            cx.err(Some(name), "Default", "must be a state name");
            None
        }
    };
    Kind::Choice { choices, default }
}

fn parse_rule(c: &Value, lang: Lang, name: &str, f: &str, cx: &mut Ctx) -> Option<ChoiceRule> {
    let next = c.get("Next").and_then(Value::as_str);
    let Some(next) = next else {
        cx.err(
            Some(name),
            &format!("{f}.Next"),
            "every top-level choice rule needs Next",
        );
        return None;
    };
    let Value::Object(m) = c else {
        cx.err(Some(name), f, "a choice rule must be an object");
        return None;
    };
    let test = match lang {
        Lang::JsonPath => {
            // The comparison itself is checked by choice::compile; Assign is ours.
            let mut rule = m.clone();
            rule.remove("Assign");
            match choice::compile(&Value::Object(rule), true, 0) {
                Ok(r) => Test::Path(r),
                Err((field, msg)) => {
                    cx.err(Some(name), &format!("{f}.{field}"), msg);
                    return None;
                }
            }
        }
        Lang::Jsonata => {
            check_fields(
                m,
                lang,
                (
                    &["Next", "Comment", "Assign"],
                    &[],
                    &["Condition", "Output"],
                ),
                name,
                &format!("{f}."),
                "a JSONata choice rule (Condition, Next, Assign, Output)",
                cx,
            );
            match m.get("Condition") {
                Some(Value::Bool(_)) | Some(Value::String(_)) => {
                    Test::Condition(jtemplate(m, "Condition", name, cx)?)
                }
                _ => {
                    cx.err(
                        Some(name),
                        &format!("{f}.Condition"),
                        "a JSONata choice rule needs Condition: true, false or a {% %} expression",
                    );
                    return None;
                }
            }
        }
    };
    Some(ChoiceRule {
        test,
        next: next.to_string(),
        assign: assign(m, lang, name, &format!("{f}.Assign"), cx),
        output: jtemplate(m, "Output", name, cx),
    })
}
