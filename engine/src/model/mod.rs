//! The parsed, validated state machine. Validation happens once, before anything runs; each
//! error names the state and the field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

mod choice;
mod fields;
mod map;
mod parallel;
mod simple;
mod task;
mod wait;

pub(crate) use task::base_resource;

use crate::choice::Rule;
use crate::jsonata::{Expr, JTemplate};
use crate::path::Path;
use crate::template::Template;
use fields::Ctx;

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

/// The query language of a state: JSONPath (paths, `Parameters`, `ResultPath`, ...) or
/// JSONata (`{% %}` expressions, `Arguments`, `Output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    JsonPath,
    Jsonata,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::JsonPath => "JSONPath",
            Lang::Jsonata => "JSONata",
        }
    }
}

/// A payload built at run time: a JSONPath template (`key.$` fields) or a JSONata one
/// (`{% %}` strings). Assign, ItemSelector and BatchInput are one or the other by the
/// state's query language.
#[derive(Debug)]
pub(crate) enum Payload {
    Path(Template),
    Jsonata(JTemplate),
}

#[derive(Debug)]
pub(crate) struct State {
    pub name: String,
    pub kind: Kind,
    pub lang: Lang,
    /// `None`: the field was `null` (the state sees `{}`). Always `$` in JSONata states.
    pub input_path: Option<Path>,
    pub output_path: Option<Path>,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    /// `None`: `ResultPath: null` (discard the result, keep the input).
    pub result_path: Option<Path>,
    /// JSONata: the input of a Task's step or of a Parallel's branches.
    pub arguments: Option<JTemplate>,
    /// JSONata: the state's output (default: its result, else its input).
    pub output: Option<JTemplate>,
    pub assign: Option<Payload>,
    pub next: Option<String>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task(Box<TaskSpec>),
    Choice {
        choices: Vec<ChoiceRule>,
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
pub(crate) struct TaskSpec {
    pub resource: String,
    pub integration: Integration,
    /// `.waitForTaskToken`: the resource is called with a task token, and the task ends when
    /// an outside system sends that token back (success, failure) — its result is ignored.
    pub callback: bool,
    pub timeout: Seconds,
    /// Enforced for callbacks (heartbeats come with the token); a step called in process
    /// sends none, so for other tasks it is only validated.
    pub heartbeat: Seconds,
}

/// What a Task's resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Integration {
    /// Any other resource: called through the [`crate::TaskInvoker`] as it is named (less
    /// the pattern suffix).
    Direct,
    /// `arn:aws:states:::lambda:invoke`: the function comes from `FunctionName`, the result
    /// is wrapped in AWS's shape.
    LambdaInvoke,
    /// `arn:aws:states:::http:invoke`: the engine builds the request and its result; the
    /// network call goes to the [`crate::HttpInvoker`].
    Http,
}

/// One top-level rule of a Choice state, with what it does when it matches.
#[derive(Debug)]
pub(crate) struct ChoiceRule {
    pub test: Test,
    pub next: String,
    pub assign: Option<Payload>,
    pub output: Option<JTemplate>,
}

#[derive(Debug)]
pub(crate) enum Test {
    /// JSONPath: `Variable` with an operator, `And`, `Or`, `Not`.
    Path(Rule),
    /// JSONata: `Condition`, true or an expression.
    Condition(JTemplate),
}

/// A number of seconds (or any count) given as a number, a path, or an expression.
#[derive(Debug)]
pub(crate) enum Seconds {
    None,
    Fixed(u64),
    Path(Path),
    Expr(Box<Expr>),
}

/// A number (a tolerated failure count or percentage) given as such or by an expression.
#[derive(Debug)]
pub(crate) enum Num {
    Fixed(f64),
    Path(Path),
    Expr(Box<Expr>),
}

#[derive(Debug)]
pub(crate) enum StrSource {
    Fixed(String),
    Path(Path),
    /// An intrinsic function call (AWS accepts them in ErrorPath and CausePath).
    Call(crate::intrinsics::Call),
    Expr(Box<Expr>),
}

#[derive(Debug)]
pub(crate) enum WaitFor {
    Seconds(u64),
    SecondsPath(Path),
    SecondsExpr(Box<Expr>),
    Timestamp(chrono::DateTime<chrono::Utc>),
    TimestampPath(Path),
    TimestampExpr(Box<Expr>),
}

#[derive(Debug)]
pub(crate) struct MapSpec {
    pub items_path: Option<Path>,
    /// JSONata: `Items` (else the state's input is the array).
    pub items: Option<JTemplate>,
    pub item_selector: Option<Payload>,
    pub processor: Branch,
    pub max_concurrency: Seconds,
    pub tolerated_percent: Option<Num>,
    pub tolerated_count: Option<Num>,
    pub batcher: Option<Batcher>,
}

#[derive(Debug)]
pub(crate) struct Batcher {
    pub max_items: Option<u64>,
    pub max_bytes: Option<u64>,
    pub batch_input: Option<Payload>,
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
    pub assign: Option<Payload>,
    pub output: Option<JTemplate>,
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
        let lang = fields::query_language(top.get("QueryLanguage"), None, None, &mut cx)
            .unwrap_or(Lang::JsonPath);
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
        let root = parse_branch(top, &mut cx, "", 0, lang);
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

    /// Every Task resource the [`crate::TaskInvoker`] is called with (for lambda:invoke, its
    /// static FunctionName; without a `.waitForTaskToken` suffix), after substitution. HTTP
    /// Tasks are not in it: the engine runs them.
    pub fn task_resources(&self) -> Vec<String> {
        let mut out = Vec::new();
        visit_states(&self.inner.root, &mut |s| out.extend(invoked_resource(s)));
        out.sort();
        out.dedup();
        out
    }

    /// A state that waits for a task token (`.waitForTaskToken`), if there is one.
    pub fn callback_state(&self) -> Option<String> {
        let mut found = None;
        visit_states(&self.inner.root, &mut |s| {
            if found.is_none()
                && let Kind::Task(t) = &s.kind
                && t.callback
            {
                found = Some(s.name.clone());
            }
        });
        found
    }

    /// The definition after substitutions.
    pub fn definition_text(&self) -> &str {
        &self.inner.text
    }
}

/// Calls `f` on every state of `b`, Map and Parallel bodies included.
fn visit_states(b: &Branch, f: &mut dyn FnMut(&State)) {
    for s in b.states.values() {
        f(s);
        match &s.kind {
            Kind::Parallel { branches } => branches.iter().for_each(|b| visit_states(b, f)),
            Kind::Map(m) => visit_states(&m.processor, f),
            _ => {}
        }
    }
}

/// The resource the task invoker is called with for state `s`, if it is a Task that
/// calls one with a name known before it runs.
fn invoked_resource(s: &State) -> Option<String> {
    let Kind::Task(t) = &s.kind else {
        return None;
    };
    match t.integration {
        Integration::Http => None,
        Integration::Direct => Some(task::base_resource(&t.resource).to_string()),
        Integration::LambdaInvoke => {
            // The static FunctionName of Parameters (JSONPath) or Arguments (JSONata).
            let literal = match (&s.parameters, &s.arguments) {
                (Some(Template::Literal(v)), _) | (_, Some(JTemplate::Literal(v))) => {
                    v.get("FunctionName").cloned()
                }
                (Some(Template::Object(fields)), _) => {
                    fields.iter().find_map(|(k, t)| match (k.as_str(), t) {
                        ("FunctionName", Template::Literal(v)) => Some(v.clone()),
                        _ => None,
                    })
                }
                (_, Some(JTemplate::Object(fields))) => {
                    fields.iter().find_map(|(k, t)| match (k.as_str(), t) {
                        ("FunctionName", JTemplate::Literal(v)) => Some(v.clone()),
                        _ => None,
                    })
                }
                _ => None,
            };
            match literal {
                Some(Value::String(f)) => Some(f),
                _ => None,
            }
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

/// Parses a branch (the machine, a Parallel branch, a Map's processor); its states' query
/// language defaults to `lang`.
fn parse_branch(
    m: &Map<String, Value>,
    cx: &mut Ctx,
    prefix: &str,
    depth: usize,
    lang: Lang,
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
        if let Some(s) = fields::parse_state(name, v, cx, depth, lang) {
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
    check_transitions(states, &parsed, &start_at, cx);
    Some(Branch {
        start_at,
        states: parsed,
    })
}

/// Every transition target of a branch exists; every state is reachable from StartAt.
fn check_transitions(
    states: &Map<String, Value>,
    parsed: &HashMap<String, State>,
    start_at: &str,
    cx: &mut Ctx,
) {
    // Every transition target exists; every state is reachable from StartAt.
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, s) in parsed {
        let mut targets: Vec<&str> = Vec::new();
        if let Some(n) = &s.next {
            targets.push(n);
        }
        for c in &s.catch {
            targets.push(&c.next);
        }
        if let Kind::Choice { choices, default } = &s.kind {
            targets.extend(choices.iter().map(|c| c.next.as_str()));
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
    let mut stack = vec![start_at];
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
}
