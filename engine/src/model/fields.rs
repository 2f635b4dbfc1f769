//! What every state type shares: the query language, the fields each type allows in each
//! language, `Next`/`End`, the JSONPath I/O fields, `Arguments`/`Output`, `Assign`, Retry
//! and Catch, and the checks of paths, templates, expressions and numbers the types use.

use serde_json::{Map, Value};

use super::{
    Catcher, Kind, Lang, Num, Payload, Retrier, STATES_ERRORS, Seconds, State, ValidationError,
};
use crate::jsonata::{Expr, JTemplate, expression_text};
use crate::path::Path;
use crate::template::Template;

/// Collects validation errors (at most 100).
pub(crate) struct Ctx {
    pub errors: Vec<ValidationError>,
}

impl Ctx {
    pub fn err(&mut self, state: Option<&str>, field: &str, message: impl Into<String>) {
        if self.errors.len() < 100 {
            self.errors.push(ValidationError {
                state: state.map(str::to_string),
                field: field.to_string(),
                message: message.into(),
            });
        }
    }
}

/// A `QueryLanguage` field: `inherited` is the top level's (a state may switch a JSONPath
/// machine's state to JSONata, not the reverse, as on AWS).
pub(crate) fn query_language(
    v: Option<&Value>,
    inherited: Option<Lang>,
    state: Option<&str>,
    cx: &mut Ctx,
) -> Option<Lang> {
    let lang = match v {
        None => return inherited,
        Some(Value::String(s)) if s == "JSONPath" => Lang::JsonPath,
        Some(Value::String(s)) if s == "JSONata" => Lang::Jsonata,
        Some(_) => {
            cx.err(
                state,
                "QueryLanguage",
                "must be \"JSONPath\" or \"JSONata\"",
            );
            return inherited;
        }
    };
    if inherited == Some(Lang::Jsonata) && lang == Lang::JsonPath {
        cx.err(
            state,
            "QueryLanguage",
            "a state cannot use JSONPath when the state machine's QueryLanguage is JSONata",
        );
    }
    Some(lang)
}

const IO: &[&str] = &["InputPath", "OutputPath"];
const FLOW: &[&str] = &["Next", "End"];

/// The fields of a state type: (in both languages, JSONPath only, JSONata only).
fn allowed_fields(ty: &str) -> Option<(Vec<&'static str>, Vec<&'static str>, Vec<&'static str>)> {
    let mut both: Vec<&'static str> = vec!["Type", "Comment", "QueryLanguage"];
    let mut path: Vec<&'static str> = Vec::new();
    let mut ata: Vec<&'static str> = Vec::new();
    match ty {
        "Pass" => {
            both.extend(FLOW);
            both.push("Assign");
            path.extend(IO);
            path.extend(["Parameters", "ResultPath", "Result"]);
            ata.push("Output");
        }
        "Task" => {
            both.extend(FLOW);
            both.extend([
                "Assign",
                "Retry",
                "Catch",
                "Resource",
                "TimeoutSeconds",
                "HeartbeatSeconds",
                "Credentials",
            ]);
            path.extend(IO);
            path.extend([
                "Parameters",
                "ResultSelector",
                "ResultPath",
                "TimeoutSecondsPath",
                "HeartbeatSecondsPath",
            ]);
            ata.extend(["Arguments", "Output"]);
        }
        "Choice" => {
            both.extend(["Choices", "Default", "Assign"]);
            path.extend(IO);
            ata.push("Output");
        }
        "Wait" => {
            both.extend(FLOW);
            both.extend(["Assign", "Seconds", "Timestamp"]);
            path.extend(IO);
            path.extend(["SecondsPath", "TimestampPath"]);
            ata.push("Output");
        }
        "Succeed" => {
            path.extend(IO);
            ata.push("Output");
        }
        "Fail" => {
            both.extend(["Error", "Cause"]);
            path.extend(["ErrorPath", "CausePath"]);
        }
        "Parallel" => {
            both.extend(FLOW);
            both.extend(["Assign", "Retry", "Catch", "Branches"]);
            path.extend(IO);
            path.extend(["Parameters", "ResultSelector", "ResultPath"]);
            ata.extend(["Arguments", "Output"]);
        }
        "Map" => {
            both.extend(FLOW);
            both.extend([
                "Assign",
                "Retry",
                "Catch",
                "ItemSelector",
                "ItemProcessor",
                "MaxConcurrency",
                "ToleratedFailurePercentage",
                "ToleratedFailureCount",
                "ItemBatcher",
                "ItemReader",
                "ResultWriter",
                "Label",
            ]);
            path.extend(IO);
            path.extend([
                "ItemsPath",
                "Parameters",
                "Iterator",
                "MaxConcurrencyPath",
                "ToleratedFailurePercentagePath",
                "ToleratedFailureCountPath",
                "ResultSelector",
                "ResultPath",
            ]);
            ata.extend(["Items", "Output"]);
        }
        _ => return None,
    }
    Some((both, path, ata))
}

/// Checks the field names of an object (a state, a catcher, a choice rule) against what
/// its language allows.
pub(crate) fn check_fields(
    m: &Map<String, Value>,
    lang: Lang,
    (both, path, ata): (&[&str], &[&str], &[&str]),
    state: &str,
    prefix: &str,
    what: &str,
    cx: &mut Ctx,
) {
    for k in m.keys() {
        let k = k.as_str();
        if both.contains(&k) || (lang == Lang::JsonPath && path.contains(&k)) {
            continue;
        }
        if lang == Lang::Jsonata && ata.contains(&k) {
            continue;
        }
        let field = format!("{prefix}{k}");
        if path.contains(&k) || ata.contains(&k) {
            cx.err(
                Some(state),
                &field,
                format!(
                    "the field {k:?} is not supported when the QueryLanguage is {} (it is a {} field)",
                    lang.name(),
                    if path.contains(&k) { "JSONPath" } else { "JSONata" }
                ),
            );
        } else {
            cx.err(
                Some(state),
                &field,
                format!("unknown field {k:?} for {what}"),
            );
        }
    }
}

/// Parses one state: the fields every type shares, then its type's own.
pub(crate) fn parse_state(
    name: &str,
    v: &Value,
    cx: &mut Ctx,
    depth: usize,
    inherited: Lang,
) -> Option<State> {
    let Value::Object(m) = v else {
        cx.err(Some(name), "Type", "a state must be an object");
        return None;
    };
    let Some(Value::String(ty)) = m.get("Type") else {
        cx.err(Some(name), "Type", "missing Type");
        return None;
    };
    let Some((both, path, ata)) = allowed_fields(ty) else {
        cx.err(
            Some(name),
            "Type",
            format!(
                "unknown state type {ty:?} (Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map)"
            ),
        );
        return None;
    };
    let lang = query_language(m.get("QueryLanguage"), Some(inherited), Some(name), cx)
        .unwrap_or(inherited);
    check_fields(
        m,
        lang,
        (&both, &path, &ata),
        name,
        "",
        &format!("a {ty} state"),
        cx,
    );
    let terminal_kind = matches!(ty.as_str(), "Choice" | "Succeed" | "Fail");
    let next = match (m.get("Next"), m.get("End")) {
        _ if terminal_kind => None,
        (Some(Value::String(n)), None) => Some(n.clone()),
        (None, Some(Value::Bool(true))) => None,
        (Some(_), Some(_)) => {
            cx.err(Some(name), "Next", "a state has Next or End, not both");
            None
        }
        (None, None) | (None, Some(Value::Bool(false))) => {
            cx.err(Some(name), "Next", "missing Next (or \"End\": true)");
            None
        }
        (Some(_), None) => {
            cx.err(Some(name), "Next", "Next must be a state name");
            None
        }
        (None, Some(_)) => {
            cx.err(Some(name), "End", "End must be true");
            None
        }
    };
    let mut state = State {
        name: name.to_string(),
        kind: Kind::Succeed,
        lang,
        input_path: opt_path(m, "InputPath", name, cx, false).unwrap_or(None),
        output_path: opt_path(m, "OutputPath", name, cx, false).unwrap_or(None),
        result_path: opt_path(m, "ResultPath", name, cx, true).unwrap_or(None),
        parameters: template(m, "Parameters", name, cx),
        result_selector: template(m, "ResultSelector", name, cx),
        arguments: jtemplate(m, "Arguments", name, cx),
        output: jtemplate(m, "Output", name, cx),
        assign: assign(m, lang, name, "Assign", cx),
        next,
        retry: retriers(m, name, cx)?,
        catch: catchers(m, lang, name, cx)?,
    };
    state.kind = match ty.as_str() {
        "Pass" => Kind::Pass {
            result: m.get("Result").cloned(),
        },
        "Task" => super::task::parse(m, &state, cx)?,
        "Choice" => super::choice::parse(m, lang, name, cx),
        "Wait" => super::wait::parse(m, lang, name, cx)?,
        "Succeed" => Kind::Succeed,
        "Fail" => super::simple::parse_fail(m, lang, name, cx),
        "Parallel" => super::parallel::parse(m, name, cx, depth, inherited),
        "Map" => super::map::parse(m, &mut state, cx, depth, inherited)?,
        _ => return None,
    };
    Some(state)
}

/// A path field that defaults to `$` (`None` inside: the field was `null`). JSONata states
/// have none: theirs is always `$`.
pub(crate) fn opt_path(
    m: &Map<String, Value>,
    field: &str,
    state: &str,
    cx: &mut Ctx,
    reference: bool,
) -> Option<Option<Path>> {
    match m.get(field) {
        None => Some(Some(Path::parse("$").ok()?)),
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => {
            let p = if reference {
                Path::parse_reference(s)
            } else {
                Path::parse(s)
            };
            match p {
                Ok(p) => Some(Some(p)),
                Err(e) => {
                    cx.err(Some(state), field, e);
                    None
                }
            }
        }
        Some(_) => {
            cx.err(Some(state), field, "must be a path string or null");
            None
        }
    }
}

pub(crate) fn path_field(
    m: &Map<String, Value>,
    field: &str,
    state: &str,
    cx: &mut Ctx,
    reference: bool,
) -> Option<Path> {
    match m.get(field)? {
        Value::String(s) => {
            let p = if reference {
                Path::parse_reference(s)
            } else {
                Path::parse(s)
            };
            p.map_err(|e| cx.err(Some(state), field, e)).ok()
        }
        _ => {
            cx.err(Some(state), field, "must be a path string");
            None
        }
    }
}

/// A JSONPath payload template (`key.$` fields).
pub(crate) fn template(
    m: &Map<String, Value>,
    field: &str,
    state: &str,
    cx: &mut Ctx,
) -> Option<Template> {
    let compiled = Template::compile(m.get(field)?).map_err(|e| (e.field, e.message));
    reported(compiled, field, state, cx)
}

/// A JSONata field whose strings may be `{% %}` expressions.
pub(crate) fn jtemplate(
    m: &Map<String, Value>,
    field: &str,
    state: &str,
    cx: &mut Ctx,
) -> Option<JTemplate> {
    reported(JTemplate::compile(m.get(field)?), field, state, cx)
}

/// A compiled field, or its error (at a place inside `field`, "" for the field itself)
/// reported.
fn reported<T>(
    compiled: Result<T, (String, String)>,
    field: &str,
    state: &str,
    cx: &mut Ctx,
) -> Option<T> {
    match compiled {
        Ok(t) => Some(t),
        Err((at, message)) => {
            let f = if at.is_empty() {
                field.to_string()
            } else {
                format!("{field}.{at}")
            };
            cx.err(Some(state), &f, message);
            None
        }
    }
}

/// A field that is a template in the state's language (Assign, ItemSelector, BatchInput).
pub(crate) fn payload(
    m: &Map<String, Value>,
    lang: Lang,
    field: &str,
    state: &str,
    cx: &mut Ctx,
) -> Option<Payload> {
    match lang {
        Lang::JsonPath => template(m, field, state, cx).map(Payload::Path),
        Lang::Jsonata => jtemplate(m, field, state, cx).map(Payload::Jsonata),
    }
}

/// `Assign` (of a state, a catcher or a choice rule): an object whose keys are variable
/// names (with `.$` for a JSONPath path or intrinsic).
pub(crate) fn assign(
    m: &Map<String, Value>,
    lang: Lang,
    state: &str,
    field: &str,
    cx: &mut Ctx,
) -> Option<Payload> {
    let v = m.get("Assign")?;
    let Value::Object(vars) = v else {
        cx.err(Some(state), field, "Assign must be an object of variables");
        return None;
    };
    for k in vars.keys() {
        let name = match lang {
            Lang::JsonPath => k.strip_suffix(".$").unwrap_or(k),
            Lang::Jsonata => k,
        };
        if !crate::vars::valid_name(name) {
            cx.err(
                Some(state),
                &format!("{field}.{k}"),
                format!(
                    "{name:?} is not a valid variable name (a letter or _, then letters, digits or _; at most 80; not \"states\")"
                ),
            );
        }
    }
    payload(m, lang, "Assign", state, cx)
}

/// A JSONata expression given as the whole string `{% ... %}`.
pub(crate) fn expr(s: &str, field: &str, state: &str, cx: &mut Ctx) -> Option<Box<Expr>> {
    let text = expression_text(s)?;
    match Expr::compile(text) {
        Ok(e) => Some(Box::new(e)),
        Err(m) => {
            cx.err(Some(state), field, m);
            None
        }
    }
}

/// A count of seconds (or items) that is a number, in JSONata also an expression, in
/// JSONPath also a `...Path` field.
pub(crate) fn seconds(
    m: &Map<String, Value>,
    field: &str,
    lang: Lang,
    state: &str,
    cx: &mut Ctx,
    (min, max): (u64, u64),
) -> Seconds {
    let path_field_name = format!("{field}Path");
    match (m.get(field), m.get(&path_field_name)) {
        (Some(_), Some(_)) => {
            cx.err(
                Some(state),
                field,
                format!("use {field} or {path_field_name}, not both"),
            );
            Seconds::None
        }
        (Some(Value::String(s)), None) if lang == Lang::Jsonata && expression_text(s).is_some() => {
            expr(s, field, state, cx).map_or(Seconds::None, Seconds::Expr)
        }
        (Some(v), None) => match v.as_u64() {
            Some(n) if n >= min && n <= max => Seconds::Fixed(n),
            _ => {
                cx.err(
                    Some(state),
                    field,
                    format!("must be an integer from {min} to {max}"),
                );
                Seconds::None
            }
        },
        (None, Some(_)) => {
            path_field(m, &path_field_name, state, cx, false).map_or(Seconds::None, Seconds::Path)
        }
        (None, None) => Seconds::None,
    }
}

/// A number from `min` to `max`, in JSONata also an expression, in JSONPath also a
/// `...Path` field.
pub(crate) fn number(
    m: &Map<String, Value>,
    field: &str,
    lang: Lang,
    state: &str,
    cx: &mut Ctx,
    (min, max): (f64, f64),
) -> Option<Num> {
    let path_field_name = format!("{field}Path");
    match (m.get(field), m.get(&path_field_name)) {
        (Some(_), Some(_)) => {
            cx.err(
                Some(state),
                field,
                format!("use {field} or {path_field_name}, not both"),
            );
            None
        }
        (Some(Value::String(s)), None) if lang == Lang::Jsonata && expression_text(s).is_some() => {
            expr(s, field, state, cx).map(Num::Expr)
        }
        (Some(v), None) => match v.as_f64() {
            Some(x) if (min..=max).contains(&x) => Some(Num::Fixed(x)),
            _ => {
                cx.err(
                    Some(state),
                    field,
                    format!("must be a number from {min} to {max}"),
                );
                None
            }
        },
        (None, Some(_)) => path_field(m, &path_field_name, state, cx, false).map(Num::Path),
        (None, None) => None,
    }
}

/// The HTTP Task's errors: `States.Http.StatusCode.NNN` and `States.Http.Socket`.
fn http_error(name: &str) -> bool {
    name == "States.Http.Socket"
        || name
            .strip_prefix("States.Http.StatusCode.")
            .is_some_and(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
}

fn error_names(v: Option<&Value>, state: &str, field: &str, cx: &mut Ctx) -> Vec<String> {
    let Some(Value::Array(a)) = v else {
        cx.err(
            Some(state),
            field,
            "ErrorEquals must be a non-empty array of error names",
        );
        return Vec::new();
    };
    if a.is_empty() {
        cx.err(
            Some(state),
            field,
            "ErrorEquals must be a non-empty array of error names",
        );
    }
    let names: Vec<String> = a
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    if names.len() != a.len() {
        cx.err(Some(state), field, "error names must be strings");
    }
    for n in &names {
        if n.starts_with("States.") && !STATES_ERRORS.contains(&n.as_str()) && !http_error(n) {
            cx.err(
                Some(state),
                field,
                format!("unknown predefined error {n:?}"),
            );
        }
    }
    if names.iter().any(|n| n == "States.ALL") && names.len() > 1 {
        cx.err(
            Some(state),
            field,
            "States.ALL must appear alone in ErrorEquals",
        );
    }
    names
}

/// One retrier or catcher: its field's name (`Retry[0]`), its object, its ErrorEquals.
type Handler<'a> = (String, &'a Map<String, Value>, Vec<String>);

/// The objects of a Retry or Catch array (`key`), each with its field's name and its
/// ErrorEquals checked (`States.ALL` alone, and in the last one); `None` when the field is
/// not an array.
fn error_handlers<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    kind: &str,
    name: &str,
    cx: &mut Ctx,
) -> Option<Vec<Handler<'a>>> {
    let Some(v) = m.get(key) else {
        return Some(Vec::new());
    };
    let Value::Array(items) = v else {
        cx.err(Some(name), key, format!("must be an array of {kind}s"));
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let f = format!("{key}[{i}]");
        let Value::Object(obj) = item else {
            cx.err(Some(name), &f, format!("a {kind} must be an object"));
            continue;
        };
        let errors = error_names(
            obj.get("ErrorEquals"),
            name,
            &format!("{f}.ErrorEquals"),
            cx,
        );
        if errors.iter().any(|e| e == "States.ALL") && i + 1 != items.len() {
            cx.err(
                Some(name),
                &format!("{f}.ErrorEquals"),
                format!("States.ALL must be in the last {kind}"),
            );
        }
        out.push((f, obj, errors));
    }
    Some(out)
}

fn retriers(m: &Map<String, Value>, name: &str, cx: &mut Ctx) -> Option<Vec<Retrier>> {
    let mut retry = Vec::new();
    for (f, r, errors) in error_handlers(m, "Retry", "retrier", name, cx)? {
        for k in r.keys() {
            if ![
                "ErrorEquals",
                "IntervalSeconds",
                "MaxAttempts",
                "BackoffRate",
                "MaxDelaySeconds",
                "JitterStrategy",
                "Comment",
            ]
            .contains(&k.as_str())
            {
                cx.err(
                    Some(name),
                    &format!("{f}.{k}"),
                    format!("unknown retrier field {k:?}"),
                );
            }
        }
        let num = |k: &str, d: f64, min: f64, cx: &mut Ctx| match r.get(k) {
            None => d,
            Some(v) => match v.as_f64() {
                Some(x) if x >= min && x.is_finite() && x <= 99_999_999.0 => x,
                _ => {
                    cx.err(
                        Some(name),
                        &format!("{f}.{k}"),
                        format!("must be a number ≥ {min}"),
                    );
                    d
                }
            },
        };
        let interval = num("IntervalSeconds", 1.0, 1.0, cx);
        let max_attempts = num("MaxAttempts", 3.0, 0.0, cx) as u32;
        let backoff = num("BackoffRate", 2.0, 1.0, cx);
        let max_delay = r
            .get("MaxDelaySeconds")
            .map(|_| num("MaxDelaySeconds", 1.0, 1.0, cx));
        let jitter_full = match r.get("JitterStrategy") {
            None => false,
            Some(Value::String(s)) if s == "FULL" => true,
            Some(Value::String(s)) if s == "NONE" => false,
            Some(_) => {
                cx.err(
                    Some(name),
                    &format!("{f}.JitterStrategy"),
                    "must be FULL or NONE",
                );
                false
            }
        };
        retry.push(Retrier {
            errors,
            interval,
            max_attempts,
            backoff,
            max_delay,
            jitter_full,
        });
    }
    Some(retry)
}

fn catchers(m: &Map<String, Value>, lang: Lang, name: &str, cx: &mut Ctx) -> Option<Vec<Catcher>> {
    let mut catch = Vec::new();
    for (f, c, errors) in error_handlers(m, "Catch", "catcher", name, cx)? {
        check_fields(
            c,
            lang,
            (
                &["ErrorEquals", "Next", "Comment", "Assign"],
                &["ResultPath"],
                &["Output"],
            ),
            name,
            &format!("{f}."),
            "a catcher",
            cx,
        );
        let Some(Value::String(next)) = c.get("Next") else {
            cx.err(Some(name), &format!("{f}.Next"), "a catcher needs Next");
            continue;
        };
        let result_path = opt_path(c, "ResultPath", name, cx, true).unwrap_or(None);
        catch.push(Catcher {
            errors,
            next: next.clone(),
            result_path,
            assign: assign(c, lang, name, &format!("{f}.Assign"), cx),
            output: jtemplate(c, "Output", name, cx),
        });
    }
    Some(catch)
}
