//! Choice rules: comparisons (and their `...Path` forms), `And`/`Or`/`Not`, and the type
//! tests, compiled once and evaluated against the Choice state's input.

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use crate::path::Path;
use crate::vars::Vars;

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Compare {
        variable: Path,
        op: Op,
        operand: Operand,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Value(Value),
    Path(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

const OPS: &[(&str, Op)] = &[
    ("StringEquals", Op::StringEquals),
    ("StringLessThan", Op::StringLessThan),
    ("StringGreaterThan", Op::StringGreaterThan),
    ("StringLessThanEquals", Op::StringLessThanEquals),
    ("StringGreaterThanEquals", Op::StringGreaterThanEquals),
    ("StringMatches", Op::StringMatches),
    ("NumericEquals", Op::NumericEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("BooleanEquals", Op::BooleanEquals),
    ("TimestampEquals", Op::TimestampEquals),
    ("TimestampLessThan", Op::TimestampLessThan),
    ("TimestampGreaterThan", Op::TimestampGreaterThan),
    ("TimestampLessThanEquals", Op::TimestampLessThanEquals),
    ("TimestampGreaterThanEquals", Op::TimestampGreaterThanEquals),
    ("IsNull", Op::IsNull),
    ("IsPresent", Op::IsPresent),
    ("IsNumeric", Op::IsNumeric),
    ("IsString", Op::IsString),
    ("IsBoolean", Op::IsBoolean),
    ("IsTimestamp", Op::IsTimestamp),
];

impl Op {
    fn is_type_test(self) -> bool {
        matches!(
            self,
            Op::IsNull
                | Op::IsPresent
                | Op::IsNumeric
                | Op::IsString
                | Op::IsBoolean
                | Op::IsTimestamp
        )
    }
}

/// Compiles one rule; `top` rules carry `Next` (checked by the caller), nested ones must not.
pub fn compile(v: &Value, top: bool, depth: usize) -> Result<Rule, (String, String)> {
    let err = |f: &str, m: String| Err((f.to_string(), m));
    if depth > 64 {
        return err("Choices", "rules nested too deep".into());
    }
    let Value::Object(m) = v else {
        return err("Choices", "a choice rule must be an object".into());
    };
    let allowed_extra = |k: &str| k == "Comment" || (top && k == "Next");
    if let Some(a) = m.get("And").or(m.get("Or")) {
        let name = if m.contains_key("And") { "And" } else { "Or" };
        for k in m.keys() {
            if k != name && !allowed_extra(k) {
                return err(k, format!("unexpected field {k:?} in a {name} rule"));
            }
        }
        let Value::Array(items) = a else {
            return err(name, format!("{name} must be a non-empty array of rules"));
        };
        if items.is_empty() {
            return err(name, format!("{name} must be a non-empty array of rules"));
        }
        let rules = items
            .iter()
            .map(|r| compile(r, false, depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if name == "And" {
            Rule::And(rules)
        } else {
            Rule::Or(rules)
        });
    }
    if let Some(n) = m.get("Not") {
        for k in m.keys() {
            if k != "Not" && !allowed_extra(k) {
                return err(k, format!("unexpected field {k:?} in a Not rule"));
            }
        }
        return Ok(Rule::Not(Box::new(compile(n, false, depth + 1)?)));
    }
    let Some(Value::String(var)) = m.get("Variable") else {
        return err("Variable", "a comparison needs a Variable (a path)".into());
    };
    let variable = Path::parse(var).map_err(|e| ("Variable".to_string(), e))?;
    let mut found: Option<(Op, Operand)> = None;
    for (k, val) in m {
        if k == "Variable" || allowed_extra(k) {
            continue;
        }
        let (name, is_path) = match k.strip_suffix("Path") {
            Some(n) if OPS.iter().any(|(o, op)| *o == n && !op.is_type_test()) => (n, true),
            _ => (k.as_str(), false),
        };
        let Some((_, op)) = OPS.iter().find(|(o, _)| *o == name) else {
            return err(k, format!("unknown comparison operator {k:?}"));
        };
        if found.is_some() {
            return err(k, "a comparison has exactly one operator".into());
        }
        let operand = if is_path {
            let Value::String(p) = val else {
                return err(k, format!("{k} must be a path string"));
            };
            Operand::Path(Path::parse(p).map_err(|e| (k.clone(), e))?)
        } else {
            check_operand(*op, val).map_err(|e| (k.clone(), e))?;
            Operand::Value(val.clone())
        };
        found = Some((*op, operand));
    }
    let Some((op, operand)) = found else {
        return err(
            "Variable",
            "a comparison needs an operator (StringEquals, NumericLessThan, IsPresent, ...)".into(),
        );
    };
    Ok(Rule::Compare {
        variable,
        op,
        operand,
    })
}

fn check_operand(op: Op, v: &Value) -> Result<(), String> {
    use Op::*;
    let ok = match op {
        StringEquals
        | StringLessThan
        | StringGreaterThan
        | StringLessThanEquals
        | StringGreaterThanEquals
        | StringMatches => v.is_string(),
        NumericEquals
        | NumericLessThan
        | NumericGreaterThan
        | NumericLessThanEquals
        | NumericGreaterThanEquals => v.is_number(),
        BooleanEquals | IsNull | IsPresent | IsNumeric | IsString | IsBoolean | IsTimestamp => {
            v.is_boolean()
        }
        TimestampEquals
        | TimestampLessThan
        | TimestampGreaterThan
        | TimestampLessThanEquals
        | TimestampGreaterThanEquals => v.as_str().is_some_and(|s| parse_timestamp(s).is_some()),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{op:?} needs {}",
            match op {
                TimestampEquals
                | TimestampLessThan
                | TimestampGreaterThan
                | TimestampLessThanEquals
                | TimestampGreaterThanEquals => "an RFC 3339 timestamp string",
                BooleanEquals | IsNull | IsPresent | IsNumeric | IsString | IsBoolean
                | IsTimestamp => "a boolean",
                NumericEquals
                | NumericLessThan
                | NumericGreaterThan
                | NumericLessThanEquals
                | NumericGreaterThanEquals => "a number",
                _ => "a string",
            }
        ))
    }
}

/// An RFC 3339 timestamp as Step Functions accepts it (uppercase `T`, a zone).
pub fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    if !s.contains('T') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// Evaluates a rule. `Err` is a runtime error (an operand path that matches nothing).
pub fn eval(rule: &Rule, input: &Value, vars: &Vars<'_>) -> Result<bool, String> {
    Ok(match rule {
        Rule::And(rs) => {
            for r in rs {
                if !eval(r, input, vars)? {
                    return Ok(false);
                }
            }
            true
        }
        Rule::Or(rs) => {
            for r in rs {
                if eval(r, input, vars)? {
                    return Ok(true);
                }
            }
            false
        }
        Rule::Not(r) => !eval(r, input, vars)?,
        Rule::Compare {
            variable,
            op,
            operand,
        } => {
            let value = variable.resolve(input, &Value::Null, vars);
            let expected = match operand {
                Operand::Value(v) => v.clone(),
                Operand::Path(p) => p.resolve(input, &Value::Null, vars).ok_or_else(|| {
                    format!("Invalid path '{p}': the path matched nothing in the Choice input")
                })?,
            };
            compare(*op, value.as_ref(), &expected)
        }
    })
}

fn compare(op: Op, value: Option<&Value>, expected: &Value) -> bool {
    use Op::*;
    let flag = expected.as_bool().unwrap_or(true);
    match op {
        IsPresent => value.is_some() == flag,
        IsNull => value.is_some_and(Value::is_null) == flag,
        IsNumeric => value.is_some_and(Value::is_number) == flag,
        IsString => value.is_some_and(Value::is_string) == flag,
        IsBoolean => value.is_some_and(Value::is_boolean) == flag,
        IsTimestamp => {
            value
                .and_then(Value::as_str)
                .is_some_and(|s| parse_timestamp(s).is_some())
                == flag
        }
        _ => {
            let Some(value) = value else { return false };
            match op {
                StringEquals
                | StringLessThan
                | StringGreaterThan
                | StringLessThanEquals
                | StringGreaterThanEquals => {
                    let (Some(a), Some(b)) = (value.as_str(), expected.as_str()) else {
                        return false;
                    };
                    ord(op, a.cmp(b))
                }
                StringMatches => {
                    let (Some(a), Some(b)) = (value.as_str(), expected.as_str()) else {
                        return false;
                    };
                    string_matches(a, b)
                }
                NumericEquals
                | NumericLessThan
                | NumericGreaterThan
                | NumericLessThanEquals
                | NumericGreaterThanEquals => {
                    let (Some(a), Some(b)) = (value.as_f64(), expected.as_f64()) else {
                        return false;
                    };
                    match a.partial_cmp(&b) {
                        Some(o) => ord(op, o),
                        None => false,
                    }
                }
                BooleanEquals => value.as_bool().is_some() && value.as_bool() == expected.as_bool(),
                TimestampEquals
                | TimestampLessThan
                | TimestampGreaterThan
                | TimestampLessThanEquals
                | TimestampGreaterThanEquals => {
                    let (Some(a), Some(b)) = (
                        value.as_str().and_then(parse_timestamp),
                        expected.as_str().and_then(parse_timestamp),
                    ) else {
                        return false;
                    };
                    ord(op, a.cmp(&b))
                }
                _ => false,
            }
        }
    }
}

fn ord(op: Op, o: std::cmp::Ordering) -> bool {
    use Op::*;
    use std::cmp::Ordering::*;
    match op {
        StringEquals | NumericEquals | TimestampEquals => o == Equal,
        StringLessThan | NumericLessThan | TimestampLessThan => o == Less,
        StringGreaterThan | NumericGreaterThan | TimestampGreaterThan => o == Greater,
        StringLessThanEquals | NumericLessThanEquals | TimestampLessThanEquals => o != Greater,
        StringGreaterThanEquals | NumericGreaterThanEquals | TimestampGreaterThanEquals => {
            o != Less
        }
        _ => false,
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` is a literal star, `\\` a
/// literal backslash.
pub fn string_matches(s: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Ch(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some(n) => toks.push(Tok::Ch(n)),
                None => toks.push(Tok::Ch('\\')),
            },
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Ch(c)),
        }
    }
    let s: Vec<char> = s.chars().collect();
    // Iterative wildcard matching with backtracking to the last star: linear-ish, no recursion.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < toks.len() && toks[pi] == Tok::Ch(s[si]) {
            si += 1;
            pi += 1;
        } else if pi < toks.len() && toks[pi] == Tok::Star {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < toks.len() && toks[pi] == Tok::Star {
        pi += 1;
    }
    pi == toks.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_matches_with_escapes() {
        assert!(string_matches("log-2024.txt", "log-*.txt"));
        assert!(!string_matches("log-2024.csv", "log-*.txt"));
        assert!(string_matches("a*b", "a\\*b"));
        assert!(!string_matches("axb", "a\\*b"));
        assert!(string_matches("a\\b", "a\\\\b"));
        assert!(string_matches("", "*"));
    }
}
