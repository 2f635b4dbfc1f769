//! The parsed, validated state machine. Validation happens once, before anything runs; each
//! error names the state and the field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::choice::{self, Rule};
use crate::path::Path;
use crate::template::Template;

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub state: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            Some(s) => write!(f, "state '{s}', field '{}': {}", self.field, self.message),
            None => write!(f, "field '{}': {}", self.field, self.message),
        }
    }
}

/// Every validation problem of a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// A parsed, validated definition. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub(crate) inner: Arc<Machine>,
}

#[derive(Debug)]
pub(crate) struct Machine {
    /// The definition after substitutions (what executions store).
    pub text: String,
    pub root: Branch,
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Branch {
    pub start_at: String,
    pub states: HashMap<String, State>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub name: String,
    pub kind: Kind,
    /// `None`: the field was `null` (the state sees `{}`).
    pub input_path: Option<Path>,
    pub output_path: Option<Path>,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    /// `None`: `ResultPath: null` (discard the result, keep the input).
    pub result_path: Option<Path>,
    pub next: Option<String>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task {
        resource: String,
        /// `arn:aws:states:::lambda:invoke`: the function comes from Parameters.FunctionName.
        lambda_invoke: bool,
        timeout: Seconds,
        /// Validated; an in-process task cannot send heartbeats, so it is not enforced.
        #[allow(dead_code)]
        heartbeat: Seconds,
    },
    Choice {
        choices: Vec<(Rule, String)>,
        default: Option<String>,
    },
    Wait(WaitFor),
    Succeed,
    Fail {
        error: Option<StrSource>,
        cause: Option<StrSource>,
    },
    Parallel {
        branches: Vec<Branch>,
    },
    Map(Box<MapSpec>),
}

#[derive(Debug)]
pub(crate) enum Seconds {
    None,
    Fixed(u64),
    Path(Path),
}

#[derive(Debug)]
pub(crate) enum StrSource {
    Fixed(String),
    Path(Path),
    /// An intrinsic function call (AWS accepts them in ErrorPath and CausePath).
    Call(crate::intrinsics::Call),
}

#[derive(Debug)]
pub(crate) enum WaitFor {
    Seconds(u64),
    SecondsPath(Path),
    Timestamp(chrono::DateTime<chrono::Utc>),
    TimestampPath(Path),
}

#[derive(Debug)]
pub(crate) struct MapSpec {
    pub items_path: Option<Path>,
    pub item_selector: Option<Template>,
    pub processor: Branch,
    pub max_concurrency: Seconds,
    pub tolerated_percent: Option<f64>,
    pub tolerated_count: Option<u64>,
    pub batcher: Option<Batcher>,
}

#[derive(Debug)]
pub(crate) struct Batcher {
    pub max_items: Option<u64>,
    pub max_bytes: Option<u64>,
    pub batch_input: Option<Template>,
}

#[derive(Debug)]
pub(crate) struct Retrier {
    pub errors: Vec<String>,
    pub interval: f64,
    pub max_attempts: u32,
    pub backoff: f64,
    pub max_delay: Option<f64>,
    pub jitter_full: bool,
}

#[derive(Debug)]
pub(crate) struct Catcher {
    pub errors: Vec<String>,
    pub next: String,
    pub result_path: Option<Path>,
}

/// Resource of the optimized Lambda integration.
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

/// The predefined error names.
pub const STATES_ERRORS: &[&str] = &[
    "States.ALL",
    "States.TaskFailed",
    "States.Timeout",
    "States.HeartbeatTimeout",
    "States.Runtime",
    "States.BranchFailed",
    "States.NoChoiceMatched",
    "States.ParameterPathFailure",
    "States.ResultPathMatchFailure",
    "States.IntrinsicFailure",
    "States.ExceedToleratedFailureThreshold",
    "States.DataLimitExceeded",
    "States.ItemReaderFailed",
    "States.Permissions",
    "States.ResultWriterFailed",
    "States.QueryEvaluationError",
];

const COMMON: &[&str] = &["Type", "Comment"];
const IO: &[&str] = &["InputPath", "OutputPath"];
const FLOW: &[&str] = &["Next", "End"];
const ERRORS: &[&str] = &["Retry", "Catch"];

fn allowed_fields(ty: &str) -> Option<Vec<&'static str>> {
    let mut v: Vec<&'static str> = COMMON.to_vec();
    match ty {
        "Pass" => {
            v.extend(IO);
            v.extend(FLOW);
            v.extend(["Parameters", "ResultPath", "Result"]);
        }
        "Task" => {
            v.extend(IO);
            v.extend(FLOW);
            v.extend(ERRORS);
            v.extend([
                "Resource",
                "Parameters",
                "ResultSelector",
                "ResultPath",
                "TimeoutSeconds",
                "TimeoutSecondsPath",
                "HeartbeatSeconds",
                "HeartbeatSecondsPath",
                "Credentials",
            ]);
        }
        "Choice" => {
            v.extend(IO);
            v.extend(["Choices", "Default"]);
        }
        "Wait" => {
            v.extend(IO);
            v.extend(FLOW);
            v.extend(["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]);
        }
        "Succeed" => v.extend(IO),
        "Fail" => v.extend(["Error", "Cause", "ErrorPath", "CausePath"]),
        "Parallel" => {
            v.extend(IO);
            v.extend(FLOW);
            v.extend(ERRORS);
            v.extend(["Branches", "Parameters", "ResultSelector", "ResultPath"]);
        }
        "Map" => {
            v.extend(IO);
            v.extend(FLOW);
            v.extend(ERRORS);
            v.extend([
                "ItemsPath",
                "ItemSelector",
                "Parameters",
                "ItemProcessor",
                "Iterator",
                "MaxConcurrency",
                "MaxConcurrencyPath",
                "ToleratedFailurePercentage",
                "ToleratedFailurePercentagePath",
                "ToleratedFailureCount",
                "ToleratedFailureCountPath",
                "ItemBatcher",
                "ItemReader",
                "ResultWriter",
                "ResultSelector",
                "ResultPath",
                "Label",
            ]);
        }
        _ => return None,
    }
    Some(v)
}

struct Ctx {
    errors: Vec<ValidationError>,
}

impl Ctx {
    fn err(&mut self, state: Option<&str>, field: &str, message: impl Into<String>) {
        if self.errors.len() < 100 {
            self.errors.push(ValidationError {
                state: state.map(str::to_string),
                field: field.to_string(),
                message: message.into(),
            });
        }
    }
}

impl StateMachine {
    /// Parses and validates a definition, after replacing `${Name}` with `substitutions`.
    pub fn parse(
        definition_json: &str,
        substitutions: &BTreeMap<String, String>,
    ) -> Result<StateMachine, ValidationErrors> {
        let one = |field: &str, message: String| {
            ValidationErrors(vec![ValidationError {
                state: None,
                field: field.to_string(),
                message,
            }])
        };
        let raw: Value = {
            let mut de = serde_json::Deserializer::from_str(definition_json);
            // serde_json's own recursion limit (128) turns deep nesting into an error.
            serde::Deserialize::deserialize(&mut de)
                .map_err(|e| one("definition", format!("not valid JSON: {e}")))?
        };
        let def = substitute(&raw, substitutions, 0);
        let mut cx = Ctx { errors: Vec::new() };
        let Value::Object(top) = &def else {
            return Err(one(
                "definition",
                "the definition must be a JSON object".into(),
            ));
        };
        for k in top.keys() {
            if ![
                "StartAt",
                "States",
                "Comment",
                "Version",
                "TimeoutSeconds",
                "QueryLanguage",
            ]
            .contains(&k.as_str())
            {
                cx.err(None, k, format!("unknown top-level field {k:?}"));
            }
        }
        if let Some(q) = top.get("QueryLanguage")
            && q != "JSONPath"
        {
            cx.err(
                None,
                "QueryLanguage",
                "only the JSONPath query language is supported",
            );
        }
        let timeout_seconds = match top.get("TimeoutSeconds") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 && n <= 99_999_999 => Some(n),
                _ => {
                    cx.err(None, "TimeoutSeconds", "must be a positive integer");
                    None
                }
            },
        };
        let root = parse_branch(top, &mut cx, "", 0);
        let unresolved = find_unresolved(&def);
        if let Some(u) = unresolved {
            cx.err(
                None,
                "definition",
                format!("unresolved substitution ${{{u}}}: pass it with --subst {u}=VALUE"),
            );
        }
        if !cx.errors.is_empty() {
            return Err(ValidationErrors(cx.errors));
        }
        let Some(root) = root else {
            return Err(one("States", "the definition has no states".into()));
        };
        Ok(StateMachine {
            inner: Arc::new(Machine {
                text: def.to_string(),
                root,
                timeout_seconds,
            }),
        })
    }

    /// Every Task resource (for lambda:invoke, its static FunctionName), after substitution.
    pub fn task_resources(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_resources(&self.inner.root, &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// The definition after substitutions.
    pub fn definition_text(&self) -> &str {
        &self.inner.text
    }
}

fn collect_resources(b: &Branch, out: &mut Vec<String>) {
    for s in b.states.values() {
        match &s.kind {
            Kind::Task {
                resource,
                lambda_invoke,
                ..
            } => {
                if *lambda_invoke {
                    if let Some(Template::Object(fields)) = &s.parameters {
                        for (k, t) in fields {
                            if k == "FunctionName"
                                && let Template::Literal(Value::String(f)) = t
                            {
                                out.push(f.clone());
                            }
                        }
                    } else if let Some(Template::Literal(Value::Object(m))) = &s.parameters
                        && let Some(Value::String(f)) = m.get("FunctionName")
                    {
                        out.push(f.clone());
                    }
                } else {
                    out.push(resource.clone());
                }
            }
            Kind::Parallel { branches } => branches.iter().for_each(|b| collect_resources(b, out)),
            Kind::Map(m) => collect_resources(&m.processor, out),
            _ => {}
        }
    }
}

fn substitute(v: &Value, subs: &BTreeMap<String, String>, depth: usize) -> Value {
    if depth > 200 {
        return v.clone();
    }
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = s.clone();
            for (k, val) in subs {
                out = out.replace(&format!("${{{k}}}"), val);
            }
            Value::String(out)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), substitute(v, subs, depth + 1)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| substitute(v, subs, depth + 1)).collect()),
        other => other.clone(),
    }
}

fn find_unresolved(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let start = s.find("${")?;
            let rest = &s[start + 2..];
            let end = rest.find('}')?;
            let name = &rest[..end];
            (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .then(|| name.to_string())
        }
        Value::Object(m) => m.values().find_map(find_unresolved),
        Value::Array(a) => a.iter().find_map(find_unresolved),
        _ => None,
    }
}

fn parse_branch(
    m: &Map<String, Value>,
    cx: &mut Ctx,
    prefix: &str,
    depth: usize,
) -> Option<Branch> {
    if depth > 16 {
        cx.err(None, "States", "Parallel/Map nested too deep");
        return None;
    }
    let start_at = match m.get("StartAt") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            cx.err(
                None,
                &format!("{prefix}StartAt"),
                "StartAt must name a state",
            );
            String::new()
        }
    };
    let Some(Value::Object(states)) = m.get("States") else {
        cx.err(
            None,
            &format!("{prefix}States"),
            "States must be an object of states",
        );
        return None;
    };
    if states.is_empty() {
        cx.err(None, &format!("{prefix}States"), "States must not be empty");
        return None;
    }
    let mut parsed = HashMap::with_capacity(states.len());
    for (name, v) in states {
        if name.is_empty() || name.chars().count() > 80 {
            cx.err(Some(name), "name", "state names must be 1 to 80 characters");
        }
        if let Some(s) = parse_state(name, v, cx, depth) {
            parsed.insert(name.clone(), s);
        }
    }
    if !start_at.is_empty() && !states.contains_key(&start_at) {
        cx.err(
            None,
            &format!("{prefix}StartAt"),
            format!("StartAt names {start_at:?}, which is not a state"),
        );
    }
    // Every transition target exists; every state is reachable from StartAt.
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, s) in &parsed {
        let mut targets: Vec<&str> = Vec::new();
        if let Some(n) = &s.next {
            targets.push(n);
        }
        for c in &s.catch {
            targets.push(&c.next);
        }
        if let Kind::Choice { choices, default } = &s.kind {
            targets.extend(choices.iter().map(|(_, n)| n.as_str()));
            if let Some(d) = default {
                targets.push(d);
            }
        }
        for t in &targets {
            if !states.contains_key(*t) {
                cx.err(
                    Some(name),
                    "Next",
                    format!("{t:?} is not a state in this scope"),
                );
            }
        }
        edges.insert(name.as_str(), targets);
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack = vec![start_at.as_str()];
    while let Some(s) = stack.pop() {
        if seen.insert(s)
            && let Some(ts) = edges.get(s)
        {
            stack.extend(ts.iter().copied());
        }
    }
    let mut unreachable: Vec<&String> = states
        .keys()
        .filter(|n| !seen.contains(n.as_str()))
        .collect();
    unreachable.sort();
    for n in unreachable {
        if parsed.contains_key(n) {
            cx.err(Some(n), "Type", "this state is unreachable from StartAt");
        }
    }
    Some(Branch {
        start_at,
        states: parsed,
    })
}

fn opt_path(
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

fn path_field(
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

fn template(m: &Map<String, Value>, field: &str, state: &str, cx: &mut Ctx) -> Option<Template> {
    let v = m.get(field)?;
    match Template::compile(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let f = if e.field.is_empty() {
                field.to_string()
            } else {
                format!("{field}.{}", e.field)
            };
            cx.err(Some(state), &f, e.message);
            None
        }
    }
}

fn seconds(m: &Map<String, Value>, field: &str, state: &str, cx: &mut Ctx, max: u64) -> Seconds {
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
        (Some(v), None) => match v.as_u64() {
            Some(n) if n >= 1 && n <= max => Seconds::Fixed(n),
            _ => {
                cx.err(
                    Some(state),
                    field,
                    format!("must be an integer from 1 to {max}"),
                );
                Seconds::None
            }
        },
        (None, Some(_)) => {
            path_field(m, &path_field_name, state, cx, true).map_or(Seconds::None, Seconds::Path)
        }
        (None, None) => Seconds::None,
    }
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
        if n.starts_with("States.") && !STATES_ERRORS.contains(&n.as_str()) {
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

fn parse_state(name: &str, v: &Value, cx: &mut Ctx, depth: usize) -> Option<State> {
    let Value::Object(m) = v else {
        cx.err(Some(name), "Type", "a state must be an object");
        return None;
    };
    let Some(Value::String(ty)) = m.get("Type") else {
        cx.err(Some(name), "Type", "missing Type");
        return None;
    };
    let Some(allowed) = allowed_fields(ty) else {
        cx.err(
            Some(name),
            "Type",
            format!(
                "unknown state type {ty:?} (Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map)"
            ),
        );
        return None;
    };
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            cx.err(
                Some(name),
                k,
                format!("unknown field {k:?} for a {ty} state"),
            );
        }
    }
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
    let input_path = opt_path(m, "InputPath", name, cx, false).unwrap_or(None);
    let output_path = opt_path(m, "OutputPath", name, cx, false).unwrap_or(None);
    let result_path = opt_path(m, "ResultPath", name, cx, true).unwrap_or(None);
    let parameters = template(m, "Parameters", name, cx);
    let result_selector = template(m, "ResultSelector", name, cx);

    let mut retry = Vec::new();
    if let Some(r) = m.get("Retry") {
        let Value::Array(rs) = r else {
            cx.err(Some(name), "Retry", "must be an array of retriers");
            return None;
        };
        for (i, r) in rs.iter().enumerate() {
            let f = format!("Retry[{i}]");
            let Value::Object(r) = r else {
                cx.err(Some(name), &f, "a retrier must be an object");
                continue;
            };
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
            let errors = error_names(r.get("ErrorEquals"), name, &format!("{f}.ErrorEquals"), cx);
            if errors.iter().any(|e| e == "States.ALL") && i + 1 != rs.len() {
                cx.err(
                    Some(name),
                    &format!("{f}.ErrorEquals"),
                    "States.ALL must be in the last retrier",
                );
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
    }
    let mut catch = Vec::new();
    if let Some(c) = m.get("Catch") {
        let Value::Array(cs) = c else {
            cx.err(Some(name), "Catch", "must be an array of catchers");
            return None;
        };
        for (i, c) in cs.iter().enumerate() {
            let f = format!("Catch[{i}]");
            let Value::Object(c) = c else {
                cx.err(Some(name), &f, "a catcher must be an object");
                continue;
            };
            for k in c.keys() {
                if !["ErrorEquals", "Next", "ResultPath", "Comment"].contains(&k.as_str()) {
                    cx.err(
                        Some(name),
                        &format!("{f}.{k}"),
                        format!("unknown catcher field {k:?}"),
                    );
                }
            }
            let errors = error_names(c.get("ErrorEquals"), name, &format!("{f}.ErrorEquals"), cx);
            if errors.iter().any(|e| e == "States.ALL") && i + 1 != cs.len() {
                cx.err(
                    Some(name),
                    &format!("{f}.ErrorEquals"),
                    "States.ALL must be in the last catcher",
                );
            }
            let Some(Value::String(next)) = c.get("Next") else {
                cx.err(Some(name), &format!("{f}.Next"), "a catcher needs Next");
                continue;
            };
            let result_path = opt_path(c, "ResultPath", name, cx, true).unwrap_or(None);
            catch.push(Catcher {
                errors,
                next: next.clone(),
                result_path,
            });
        }
    }

    let kind = match ty.as_str() {
        "Pass" => Kind::Pass {
            result: m.get("Result").cloned(),
        },
        "Task" => {
            let resource = match m.get("Resource") {
                Some(Value::String(r)) if !r.is_empty() => r.clone(),
                _ => {
                    cx.err(Some(name), "Resource", "a Task needs a Resource (an ARN)");
                    String::new()
                }
            };
            let lambda_invoke = resource == LAMBDA_INVOKE
                || resource == format!("{LAMBDA_INVOKE}.waitForTaskToken");
            if lambda_invoke {
                let has_fn = match m.get("Parameters") {
                    Some(Value::Object(p)) => {
                        p.contains_key("FunctionName") || p.contains_key("FunctionName.$")
                    }
                    _ => false,
                };
                if !has_fn {
                    cx.err(
                        Some(name),
                        "Parameters",
                        "lambda:invoke needs Parameters.FunctionName",
                    );
                }
            }
            let timeout = seconds(m, "TimeoutSeconds", name, cx, 99_999_999);
            let heartbeat = seconds(m, "HeartbeatSeconds", name, cx, 99_999_999);
            if let (Seconds::Fixed(t), Seconds::Fixed(h)) = (&timeout, &heartbeat)
                && h >= t
            {
                cx.err(
                    Some(name),
                    "HeartbeatSeconds",
                    "must be less than TimeoutSeconds",
                );
            }
            Kind::Task {
                resource,
                lambda_invoke,
                timeout,
                heartbeat,
            }
        }
        "Choice" => {
            let mut choices = Vec::new();
            match m.get("Choices") {
                Some(Value::Array(cs)) if !cs.is_empty() => {
                    for (i, c) in cs.iter().enumerate() {
                        let next = c.get("Next").and_then(Value::as_str);
                        let Some(next) = next else {
                            cx.err(
                                Some(name),
                                &format!("Choices[{i}].Next"),
                                "every top-level choice rule needs Next",
                            );
                            continue;
                        };
                        match choice::compile(c, true, 0) {
                            Ok(r) => choices.push((r, next.to_string())),
                            Err((f, msg)) => cx.err(Some(name), &format!("Choices[{i}].{f}"), msg),
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
        "Wait" => {
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
            match present[0] {
                "Seconds" => match m.get("Seconds").and_then(Value::as_u64) {
                    Some(n) if n <= 99_999_999 => Kind::Wait(WaitFor::Seconds(n)),
                    _ => {
                        cx.err(Some(name), "Seconds", "must be a non-negative integer");
                        return None;
                    }
                },
                "Timestamp" => match m
                    .get("Timestamp")
                    .and_then(Value::as_str)
                    .and_then(choice::parse_timestamp)
                {
                    Some(t) => Kind::Wait(WaitFor::Timestamp(t.with_timezone(&chrono::Utc))),
                    None => {
                        cx.err(Some(name), "Timestamp", "must be an RFC 3339 timestamp");
                        return None;
                    }
                },
                "SecondsPath" => Kind::Wait(WaitFor::SecondsPath(path_field(
                    m,
                    "SecondsPath",
                    name,
                    cx,
                    true,
                )?)),
                _ => Kind::Wait(WaitFor::TimestampPath(path_field(
                    m,
                    "TimestampPath",
                    name,
                    cx,
                    true,
                )?)),
            }
        }
        "Succeed" => Kind::Succeed,
        "Fail" => {
            let src = |field: &str, path_field_name: &str, cx: &mut Ctx| -> Option<StrSource> {
                match (m.get(field), m.get(path_field_name)) {
                    (Some(_), Some(_)) => {
                        cx.err(
                            Some(name),
                            field,
                            format!("use {field} or {path_field_name}, not both"),
                        );
                        None
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
            let error = src("Error", "ErrorPath", cx);
            let cause = src("Cause", "CausePath", cx);
            Kind::Fail { error, cause }
        }
        "Parallel" => {
            let mut branches = Vec::new();
            match m.get("Branches") {
                Some(Value::Array(bs)) if !bs.is_empty() => {
                    for (i, b) in bs.iter().enumerate() {
                        match b {
                            Value::Object(bm) => {
                                if let Some(b) = parse_branch(
                                    bm,
                                    cx,
                                    &format!("{name}.Branches[{i}]."),
                                    depth + 1,
                                ) {
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
        "Map" => {
            if m.contains_key("ItemReader") || m.contains_key("ResultWriter") {
                cx.err(
                    Some(name),
                    "ItemReader",
                    "distributed Map (ItemReader/ResultWriter) is not supported; use an inline Map",
                );
            }
            let proc_value = match (m.get("ItemProcessor"), m.get("Iterator")) {
                (Some(_), Some(_)) => {
                    cx.err(
                        Some(name),
                        "ItemProcessor",
                        "use ItemProcessor or Iterator, not both",
                    );
                    return None;
                }
                (Some(p), None) | (None, Some(p)) => p,
                (None, None) => {
                    cx.err(
                        Some(name),
                        "ItemProcessor",
                        "a Map state needs ItemProcessor (or Iterator)",
                    );
                    return None;
                }
            };
            let field = if m.contains_key("ItemProcessor") {
                "ItemProcessor"
            } else {
                "Iterator"
            };
            let Value::Object(pm) = proc_value else {
                cx.err(Some(name), field, "must be an object");
                return None;
            };
            let mut pm = pm.clone();
            if let Some(cfg) = pm.remove("ProcessorConfig") {
                let mode = cfg.get("Mode").and_then(Value::as_str).unwrap_or("INLINE");
                if mode != "INLINE" {
                    cx.err(
                        Some(name),
                        &format!("{field}.ProcessorConfig.Mode"),
                        "only INLINE Map is supported",
                    );
                }
            }
            for k in pm.keys() {
                if !["StartAt", "States", "Comment"].contains(&k.as_str()) {
                    cx.err(
                        Some(name),
                        &format!("{field}.{k}"),
                        format!("unknown field {k:?}"),
                    );
                }
            }
            let processor = parse_branch(&pm, cx, &format!("{name}.{field}."), depth + 1)?;
            if m.contains_key("ItemSelector") && m.contains_key("Parameters") {
                cx.err(
                    Some(name),
                    "ItemSelector",
                    "use ItemSelector or Parameters, not both",
                );
            }
            let item_selector = template(m, "ItemSelector", name, cx);
            let items_path = opt_path(m, "ItemsPath", name, cx, true).unwrap_or(None);
            let max_concurrency = match (m.get("MaxConcurrency"), m.get("MaxConcurrencyPath")) {
                (Some(v), None) => match v.as_u64() {
                    Some(0) => Seconds::None,
                    Some(n) => Seconds::Fixed(n),
                    None => {
                        cx.err(
                            Some(name),
                            "MaxConcurrency",
                            "must be a non-negative integer",
                        );
                        Seconds::None
                    }
                },
                (None, Some(_)) => path_field(m, "MaxConcurrencyPath", name, cx, true)
                    .map_or(Seconds::None, Seconds::Path),
                (Some(_), Some(_)) => {
                    cx.err(
                        Some(name),
                        "MaxConcurrency",
                        "use MaxConcurrency or MaxConcurrencyPath, not both",
                    );
                    Seconds::None
                }
                (None, None) => Seconds::None,
            };
            let tolerated_percent = match m.get("ToleratedFailurePercentage") {
                None => None,
                Some(v) => match v.as_f64() {
                    Some(p) if (0.0..=100.0).contains(&p) => Some(p),
                    _ => {
                        cx.err(
                            Some(name),
                            "ToleratedFailurePercentage",
                            "must be a number from 0 to 100",
                        );
                        None
                    }
                },
            };
            let tolerated_count = match m.get("ToleratedFailureCount") {
                None => None,
                Some(v) => match v.as_u64() {
                    Some(n) => Some(n),
                    None => {
                        cx.err(
                            Some(name),
                            "ToleratedFailureCount",
                            "must be a non-negative integer",
                        );
                        None
                    }
                },
            };
            let batcher = match m.get("ItemBatcher") {
                None => None,
                Some(Value::Object(b)) => {
                    for k in b.keys() {
                        if ![
                            "MaxItemsPerBatch",
                            "MaxInputBytesPerBatch",
                            "BatchInput",
                            "MaxItemsPerBatchPath",
                            "MaxInputBytesPerBatchPath",
                        ]
                        .contains(&k.as_str())
                        {
                            cx.err(
                                Some(name),
                                &format!("ItemBatcher.{k}"),
                                format!("unknown field {k:?}"),
                            );
                        }
                    }
                    let max_items = b.get("MaxItemsPerBatch").and_then(Value::as_u64);
                    let max_bytes = b.get("MaxInputBytesPerBatch").and_then(Value::as_u64);
                    if max_items.is_none() && max_bytes.is_none() {
                        cx.err(
                            Some(name),
                            "ItemBatcher",
                            "needs MaxItemsPerBatch or MaxInputBytesPerBatch (a positive integer)",
                        );
                    }
                    if max_items == Some(0) || max_bytes == Some(0) {
                        cx.err(Some(name), "ItemBatcher", "batch limits must be positive");
                    }
                    let batch_input = template(b, "BatchInput", name, cx);
                    Some(Batcher {
                        max_items,
                        max_bytes,
                        batch_input,
                    })
                }
                Some(_) => {
                    cx.err(Some(name), "ItemBatcher", "must be an object");
                    None
                }
            };
            Kind::Map(Box::new(MapSpec {
                items_path,
                item_selector,
                processor,
                max_concurrency,
                tolerated_percent,
                tolerated_count,
                batcher,
            }))
        }
        _ => return None,
    };
    // For Map, the older `Parameters` is the item selector, not the state's Parameters.
    let (parameters, kind) = match kind {
        Kind::Map(mut spec) if spec.item_selector.is_none() && parameters.is_some() => {
            spec.item_selector = parameters;
            (None, Kind::Map(spec))
        }
        k => (parameters, k),
    };
    Some(State {
        name: name.to_string(),
        kind,
        input_path,
        output_path,
        parameters,
        result_selector,
        result_path,
        next,
        retry,
        catch,
    })
}
