//! Parallel states: their branches.

use serde_json::{Map, Value};

use super::fields::Ctx;
use super::{Kind, Lang, parse_branch};

pub(super) fn parse(
    m: &Map<String, Value>,
    name: &str,
    cx: &mut Ctx,
    depth: usize,
    inherited: Lang,
) -> Kind {
    let mut branches = Vec::new();
    match m.get("Branches") {
        Some(Value::Array(bs)) if !bs.is_empty() => {
            for (i, b) in bs.iter().enumerate() {
                match b {
                    Value::Object(bm) => {
                        let prefix = format!("{name}.Branches[{i}].");
                        if let Some(b) = parse_branch(bm, cx, &prefix, depth + 1, inherited) {
                            branches.push(b);
                        }
                    }
                    _ => cx.err(
                        Some(name),
                        &format!("Branches[{i}]"),
                        "a branch must be an object",
                    ),
                }
            }
        }
        _ => cx.err(
            Some(name),
            "Branches",
            "a Parallel state needs a non-empty Branches array",
        ),
    }
    Kind::Parallel { branches }
}
