//! Running executions: the interpreter loop, input/output processing, Assign, Retry/Catch,
//! and checkpoints before top-level states that act on the world. Its parts: `states` (Pass,
//! Fail, Choice, Wait), `task` (Tasks: request-response, callbacks, HTTP), `map` (Map and
//! Parallel).

mod map;
mod states;
mod task;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::callback::Callbacks;
use crate::history::{Field, MAX_PAYLOAD_BYTES, details, within_bytes};
use crate::jsonata::{Env, JTemplate, QUERY_ERROR, QueryError};
use crate::model::{Branch, Kind, Lang, Num, Payload, Retrier, Seconds, State, StateMachine};
use crate::path::{Path, Root};
use crate::store::{CallbackCursor, Cursor};
use crate::template::ApplyError;
use crate::vars::Vars;
use crate::{HistoryEvent, HttpInvoker, TaskInvoker};

/// Why a state, branch or execution failed: an error name and a cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    pub cause: String,
}

impl Failure {
    pub fn new(error: &str, cause: impl Into<String>) -> Failure {
        Failure {
            error: error.to_string(),
            cause: cause.into(),
        }
    }
}

fn runtime(cause: impl Into<String>) -> Failure {
    Failure::new("States.Runtime", cause)
}

fn from_apply(e: ApplyError, field: &str) -> Failure {
    match e {
        // AWS raises States.Runtime (not States.ParameterPathFailure) for a path that
        // matches nothing, in every state type.
        ApplyError::Path(m) => Failure::new("States.Runtime", format!("{field}: {m}")),
        ApplyError::Intrinsic(m) => {
            Failure::new("States.IntrinsicFailure", format!("{field}: {m}"))
        }
    }
}

/// Errors a Retry or Catch can never match (AWS: terminal).
fn uncatchable(error: &str) -> bool {
    error == "States.Runtime" || error == "States.DataLimitExceeded"
}

pub(crate) fn error_matches(names: &[String], error: &str) -> bool {
    if uncatchable(error) {
        return false;
    }
    names.iter().any(|n| {
        n == error
            || n == "States.ALL"
            || (n == "States.TaskFailed"
                && error != "States.Timeout"
                && (!error.starts_with("States.")
                    || error == "States.HeartbeatTimeout"
                    || error.starts_with("States.Http.")))
    })
}

pub(crate) struct Events {
    pub pending: Vec<HistoryEvent>,
    pub next_id: u64,
}

/// One execution being driven.
pub(crate) struct Run {
    pub arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub machine: StateMachine,
    pub input: Value,
    pub start: DateTime<Utc>,
    pub invoker: Arc<dyn TaskInvoker>,
    /// Sends HTTP Tasks' requests; without one, an HTTP Task fails.
    pub http: Option<Arc<dyn HttpInvoker>>,
    /// The engine's waiting callback Tasks, by token.
    pub callbacks: Arc<Callbacks>,
    pub store: Arc<dyn crate::ExecutionStore>,
    pub events: Mutex<Events>,
    pub cancel: CancellationToken,
    /// What an outside stop said (error, cause).
    pub stop_reason: Mutex<Option<(Option<String>, Option<String>)>>,
    /// The top-level branch has moved past the stored cursor. Cleared by a checkpoint.
    pub unsaved: std::sync::atomic::AtomicBool,
}

/// Where a resumed execution's first state continues.
#[derive(Debug, Clone)]
pub(crate) enum Resume {
    /// A Wait that was sleeping: when it wakes.
    Wait(DateTime<Utc>),
    /// A callback Task that was waiting: its token.
    Callback(CallbackCursor),
}

impl Resume {
    /// From a checkpoint's cursor.
    pub fn from_cursor(c: &Cursor) -> Option<Resume> {
        match (&c.wait_until, &c.callback) {
            (Some(t), _) => Some(Resume::Wait(*t)),
            (None, Some(cb)) => Some(Resume::Callback(cb.clone())),
            (None, None) => None,
        }
    }

    fn wait_until(self) -> Option<DateTime<Utc>> {
        match self {
            Resume::Wait(t) => Some(t),
            Resume::Callback(_) => None,
        }
    }

    fn callback(self) -> Option<CallbackCursor> {
        match self {
            Resume::Callback(c) => Some(c),
            Resume::Wait(_) => None,
        }
    }
}

/// A pinned, boxed future (for the recursion through Map and Parallel).
type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Run {
    pub fn event(
        &self,
        event_type: &str,
        state_name: Option<&str>,
        details: Box<serde_json::value::RawValue>,
    ) -> u64 {
        let Ok(mut ev) = self.events.lock() else {
            return 0;
        };
        let id = ev.next_id;
        ev.next_id += 1;
        ev.pending.push(HistoryEvent {
            id,
            previous_event_id: id.saturating_sub(1),
            timestamp: Utc::now(),
            event_type: event_type.to_string(),
            state_name: state_name.map(str::to_string),
            details,
        });
        id
    }

    pub fn take_events(&self) -> Vec<HistoryEvent> {
        self.events
            .lock()
            .map(|mut e| std::mem::take(&mut e.pending))
            .unwrap_or_default()
    }

    fn context(
        &self,
        state: &str,
        entered: DateTime<Utc>,
        retry: u32,
        item: Option<(usize, &Value)>,
    ) -> Value {
        let mut ctx = json!({
            "Execution": {
                "Id": self.arn,
                "Name": self.name,
                "Input": self.input,
                "StartTime": self.start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "RoleArn": "arn:aws:iam::000000000000:role/longhaul-local",
            },
            "StateMachine": {"Id": self.state_machine_arn, "Name": self.state_machine_name},
            "State": {
                "Name": state,
                "EnteredTime": entered.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "RetryCount": retry,
            },
        });
        if let Some((i, v)) = item
            && let Value::Object(m) = &mut ctx
        {
            m.insert("Map".into(), json!({"Item": {"Index": i, "Value": v}}));
        }
        ctx
    }

    async fn checkpoint(&self, cursor: &Cursor) -> Result<(), Failure> {
        self.unsaved
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let events = self.take_events();
        self.store
            .checkpoint(&self.arn, cursor, &events)
            .await
            .map_err(|e| runtime(format!("checkpoint failed: {e}")))
    }

    /// Runs a branch from `start` to its end, in the variable scope `vars`.
    ///
    /// A `top` branch checkpoints before each state that acts on the world (Task, Map,
    /// Parallel; a Wait that sleeps records its wake-up itself) when it has moved since the
    /// last checkpoint: so the result of every such state is durable before the next one
    /// starts, and a restart never repeats one that finished. Pass and Choice states are
    /// not checkpointed: a restart runs them again from the last cursor, with the same
    /// input and variables, which nothing outside the execution could tell apart.
    #[allow(clippy::too_many_arguments)]
    pub fn run_branch<'a>(
        &'a self,
        branch: &'a Branch,
        start: String,
        input: Value,
        top: bool,
        item: Option<(usize, Value)>,
        resume: Option<Resume>,
        vars: Vars<'a>,
    ) -> BoxFut<'a, Result<Value, Failure>> {
        Box::pin(async move {
            let mut name = start;
            let mut input = input;
            let mut resume = resume;
            let mut vars = vars;
            let mut transitions: u64 = 0;
            loop {
                transitions += 1;
                // Yield now and then so a tight loop of Pass states cannot starve other tasks.
                if transitions.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
                let Some(state) = branch.states.get(&name) else {
                    return Err(runtime(format!("no state named {name:?}")));
                };
                if top
                    && acts_on_world(&state.kind)
                    && self.unsaved.load(std::sync::atomic::Ordering::Relaxed)
                {
                    self.checkpoint(&Cursor {
                        state: name.clone(),
                        input: input.clone(),
                        wait_until: None,
                        variables: saved_variables(&vars),
                        callback: None,
                    })
                    .await?;
                }
                let (entered_event, exited_event) = state_events(&state.kind);
                self.event(
                    entered_event,
                    Some(&name),
                    details(&[("name", Field::Str(&name)), ("input", Field::Brief(&input))]),
                );
                let at = At {
                    state,
                    entered: Utc::now(),
                    item: item.as_ref().map(|(i, v)| (*i, v)),
                };
                let outcome = match self.run_state(&at, &input, top, resume.take(), &vars).await {
                    Ok(o) => o,
                    Err(f) => self.catch(&at, input, f, &vars)?,
                };
                self.event(
                    exited_event,
                    Some(&name),
                    details(&[
                        ("name", Field::Str(&name)),
                        ("output", Field::Brief(&outcome.output)),
                    ]),
                );
                if let Some(values) = outcome.assigned {
                    vars.assign(values).map_err(runtime)?;
                }
                match outcome.next {
                    Some(next) => {
                        name = next;
                        input = outcome.output;
                        if top {
                            self.unsaved
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    None => return Ok(outcome.output),
                }
            }
        })
    }

    /// Runs one state; `Err` is its failure, before any Catch.
    async fn run_state(
        &self,
        at: &At<'_>,
        raw: &Value,
        top: bool,
        resume: Option<Resume>,
        vars: &Vars<'_>,
    ) -> Result<Outcome, Failure> {
        let state = at.state;
        let ctx = || self.context(&state.name, at.entered, 0, at.item);
        let effective = self.input_path(state, raw, &ctx, vars)?;
        let flow = Flow {
            next: state.next.as_ref(),
            assign: state.assign.as_ref(),
            output: state.output.as_ref(),
        };
        match &state.kind {
            Kind::Pass { result } => {
                let r = self.pass_result(state, result.as_ref(), &effective, &ctx, vars)?;
                self.finish(at, raw, &effective, r, flow, vars)
            }
            Kind::Succeed => self.finish(at, raw, &effective, None, flow, vars),
            Kind::Fail { error, cause } => Err(Failure {
                error: self.fail_field(error.as_ref(), "Error", raw, &ctx, vars)?,
                cause: self.fail_field(cause.as_ref(), "Cause", raw, &ctx, vars)?,
            }),
            Kind::Choice { choices, default } => {
                let flow =
                    self.choose(at, choices, default.as_ref(), raw, &effective, flow, vars)?;
                self.finish(at, raw, &effective, None, flow, vars)
            }
            Kind::Wait(w) => {
                let wake = resume.and_then(Resume::wait_until);
                Box::pin(self.wait(at, w, raw, &effective, top, wake, vars)).await?;
                self.finish(at, raw, &effective, None, flow, vars)
            }
            Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_) => {
                let resumed = resume.and_then(Resume::callback);
                let result = self
                    .run_with_retries(at, raw, &effective, vars, top, resumed)
                    .await?;
                self.finish(at, raw, &effective, Some(result), flow, vars)
            }
        }
    }

    /// Runs a Task, Parallel or Map state's work under its Retry rules; its result after
    /// ResultSelector. `resumed`: a callback Task's checkpointed wait (for its first try).
    async fn run_with_retries(
        &self,
        at: &At<'_>,
        raw: &Value,
        effective: &Value,
        vars: &Vars<'_>,
        top: bool,
        mut resumed: Option<CallbackCursor>,
    ) -> Result<Value, Failure> {
        let state = at.state;
        let mut attempts: Vec<u32> = vec![0; state.retry.len()];
        let mut retry_count = 0u32;
        loop {
            let ctx = || self.context(&state.name, at.entered, retry_count, at.item);
            let result = match &state.kind {
                // Boxed, each: a branch's future is as large as its largest state's, and
                // every Pass state would pay for a Task's, Map's or Parallel's.
                Kind::Task(_) => {
                    Box::pin(self.run_task(
                        at,
                        raw,
                        effective,
                        retry_count,
                        vars,
                        top,
                        resumed.take(),
                    ))
                    .await
                }
                Kind::Parallel { branches } => {
                    Box::pin(self.run_parallel(state, branches, effective, &ctx, vars)).await
                }
                Kind::Map(_) => Box::pin(self.run_map(at, raw, effective, &ctx, vars)).await,
                _ => Err(runtime("only Task, Parallel and Map states retry")),
            };
            let f = match result {
                Ok(r) => {
                    return match &state.result_selector {
                        Some(t) => t
                            .apply(&r, &ctx(), vars)
                            .map_err(|e| from_apply(e, "ResultSelector")),
                        None => Ok(r),
                    };
                }
                Err(f) => f,
            };
            let Some((i, r)) = state
                .retry
                .iter()
                .enumerate()
                .find(|(_, r)| error_matches(&r.errors, &f.error))
            else {
                return Err(f);
            };
            if attempts[i] >= r.max_attempts {
                return Err(f);
            }
            let delay = retry_delay(r, attempts[i]);
            attempts[i] += 1;
            retry_count += 1;
            Box::pin(tokio::time::sleep(delay)).await;
        }
    }

    /// What a JSONata expression of this state reads.
    fn env<'e>(
        &self,
        input: &'e Value,
        result: Option<&'e Value>,
        error_output: Option<&'e Value>,
        context: &'e (dyn Fn() -> Value + Sync),
        vars: &'e Vars<'e>,
    ) -> Env<'e> {
        Env {
            input,
            result,
            error_output,
            context,
            vars,
        }
    }

    /// A path's value, from the data, the context object (built only then) or a variable.
    fn pick(
        &self,
        p: &Path,
        data: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Option<Value> {
        if p.root == Root::Context && p.variable.is_none() {
            p.select(&ctx())
        } else {
            p.resolve(data, &Value::Null, vars)
        }
    }

    /// InputPath (JSONPath); a JSONata state's input is its whole input.
    fn input_path<'v>(
        &self,
        state: &State,
        raw: &'v Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Cow<'v, Value>, Failure> {
        match (&state.lang, &state.input_path) {
            (Lang::Jsonata, _) => Ok(Cow::Borrowed(raw)),
            (_, None) => Ok(Cow::Owned(Value::Object(Map::new()))),
            (_, Some(p)) if p.is_root() => Ok(Cow::Borrowed(raw)),
            (_, Some(p)) => self.pick(p, raw, ctx, vars).map(Cow::Owned).ok_or_else(|| {
                runtime(format!(
                    "Invalid path '{p}': the InputPath of state '{}' matched nothing",
                    state.name
                ))
            }),
        }
    }

    /// Ends a state that did not fail: its assignments (which read the variables as they
    /// were when it was entered), its output, its transition. JSONPath: Assign reads the
    /// result (else the effective input), then ResultPath and OutputPath. JSONata: Assign
    /// and Output read `$states.input` and `$states.result`; the output defaults to the
    /// result, else the input.
    fn finish(
        &self,
        at: &At<'_>,
        raw: &Value,
        effective: &Value,
        result: Option<Value>,
        flow: Flow<'_>,
        vars: &Vars<'_>,
    ) -> Result<Outcome, Failure> {
        let state = at.state;
        let ctx = || self.context(&state.name, at.entered, 0, at.item);
        if let Some(r) = &result
            && !within_bytes(r, MAX_PAYLOAD_BYTES)
        {
            return Err(data_limit(&state.name));
        }
        let (assigned, output) = match state.lang {
            Lang::JsonPath => {
                let assigned = match flow.assign {
                    Some(p) => Some(self.assign_path(
                        p,
                        result.as_ref().unwrap_or(effective),
                        &ctx,
                        vars,
                    )?),
                    None => None,
                };
                let combined = match result {
                    None => effective.clone(),
                    Some(r) => match &state.result_path {
                        None => raw.clone(),
                        Some(p) if p.is_root() => r,
                        Some(p) => p
                            .insert(raw.clone(), r)
                            .map_err(|m| Failure::new("States.ResultPathMatchFailure", m))?,
                    },
                };
                (assigned, self.output_path(state, combined, &ctx, vars)?)
            }
            Lang::Jsonata => {
                let env = self.env(raw, result.as_ref(), None, &ctx, vars);
                let assigned = match flow.assign {
                    Some(p) => Some(assign_jsonata(p, &env)?),
                    None => None,
                };
                let output = match flow.output {
                    Some(t) => t
                        .eval(&env, "Output")
                        .map_err(|QueryError(m)| query_error(m))?,
                    None => result.unwrap_or_else(|| raw.clone()),
                };
                if !within_bytes(&output, MAX_PAYLOAD_BYTES) {
                    return Err(data_limit(&state.name));
                }
                (assigned, output)
            }
        };
        Ok(Outcome {
            next: flow.next.cloned(),
            output,
            assigned,
        })
    }

    /// A JSONPath Assign: a template whose top-level keys are the variables.
    fn assign_path(
        &self,
        p: &Payload,
        data: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Map<String, Value>, Failure> {
        let Payload::Path(t) = p else {
            return Err(runtime("a JSONata Assign in a JSONPath state"));
        };
        match t
            .apply(data, &ctx(), vars)
            .map_err(|e| from_apply(e, "Assign"))?
        {
            Value::Object(m) => Ok(m),
            other => Err(runtime(format!("Assign gave {other}, not an object"))),
        }
    }

    /// Catch: the first catcher that matches `f` handles it, else the state fails.
    fn catch(
        &self,
        at: &At<'_>,
        input: Value,
        f: Failure,
        vars: &Vars<'_>,
    ) -> Result<Outcome, Failure> {
        let state = at.state;
        let Some(c) = state
            .catch
            .iter()
            .find(|c| error_matches(&c.errors, &f.error))
        else {
            return Err(f);
        };
        let ctx = || self.context(&state.name, at.entered, 0, at.item);
        let err_obj = json!({"Error": f.error, "Cause": f.cause});
        let (assigned, output) = match state.lang {
            Lang::JsonPath => {
                let assigned = match &c.assign {
                    Some(p) => Some(self.assign_path(p, &err_obj, &ctx, vars)?),
                    None => None,
                };
                let output = match &c.result_path {
                    None => input,
                    Some(p) => p
                        .insert(input, err_obj)
                        .map_err(|m| Failure::new("States.ResultPathMatchFailure", m))?,
                };
                (assigned, output)
            }
            Lang::Jsonata => {
                let env = self.env(&input, None, Some(&err_obj), &ctx, vars);
                let assigned = match &c.assign {
                    Some(p) => Some(assign_jsonata(p, &env)?),
                    None => None,
                };
                let output = match &c.output {
                    Some(t) => t
                        .eval(&env, "Catch.Output")
                        .map_err(|QueryError(m)| query_error(m))?,
                    None => err_obj.clone(),
                };
                (assigned, output)
            }
        };
        Ok(Outcome {
            next: Some(c.next.clone()),
            output,
            assigned,
        })
    }

    /// OutputPath; `ctx` builds the context object, for a `$$` path.
    fn output_path(
        &self,
        state: &State,
        v: Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        match &state.output_path {
            None => Ok(Value::Object(Map::new())),
            Some(p) if p.is_root() => Ok(v),
            Some(p) => self.pick(p, &v, ctx, vars).ok_or_else(|| {
                runtime(format!(
                    "Invalid path '{p}': the OutputPath of state '{}' matched nothing",
                    state.name
                ))
            }),
        }
    }

    /// The input of a Task's step or of a Parallel's branches: Parameters (JSONPath) or
    /// Arguments (JSONata), else the effective input.
    fn state_input(
        &self,
        state: &State,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        match (state.lang, &state.parameters, &state.arguments) {
            (Lang::JsonPath, Some(t), _) => t
                .apply(effective, &ctx(), vars)
                .map_err(|e| from_apply(e, "Parameters")),
            (Lang::Jsonata, _, Some(t)) => t
                .eval(&self.env(effective, None, None, ctx, vars), "Arguments")
                .map_err(|QueryError(m)| query_error(m)),
            _ => Ok(effective.clone()),
        }
    }

    /// A count (seconds, concurrency) from a number, a path or an expression.
    fn count(
        &self,
        s: &Seconds,
        field: &str,
        data: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Option<u64>, Failure> {
        let as_count = |v: &Value| {
            v.as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                        .map(|f| f as u64)
                })
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        };
        Ok(match s {
            Seconds::None => None,
            Seconds::Fixed(n) => Some(*n),
            Seconds::Path(p) => Some(
                self.pick(p, data, ctx, vars)
                    .as_ref()
                    .and_then(as_count)
                    .ok_or_else(|| {
                        runtime(format!("{field}Path {p} must be a non-negative integer"))
                    })?,
            ),
            Seconds::Expr(e) => {
                let v = e
                    .eval(&self.env(data, None, None, ctx, vars), field)
                    .map_err(|QueryError(m)| query_error(m))?;
                Some(as_count(&v).ok_or_else(|| {
                    query_error(format!(
                        "The JSONata expression '{}' specified for the field '{field}' returned {v}, not a non-negative integer",
                        e.text
                    ))
                })?)
            }
        })
    }

    /// A number (a tolerated failure percentage or count) from a number, a path or an
    /// expression.
    fn num(
        &self,
        n: &Num,
        field: &str,
        data: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<f64, Failure> {
        match n {
            Num::Fixed(x) => Ok(*x),
            Num::Path(p) => self
                .pick(p, data, ctx, vars)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| runtime(format!("{field}Path {p} must be a number"))),
            Num::Expr(e) => {
                let v = e
                    .eval(&self.env(data, None, None, ctx, vars), field)
                    .map_err(|QueryError(m)| query_error(m))?;
                v.as_f64().ok_or_else(|| {
                    query_error(format!(
                        "The JSONata expression '{}' specified for the field '{field}' returned {v}, not a number",
                        e.text
                    ))
                })
            }
        }
    }
}

/// A JSONata Assign: an object (of expressions) whose keys are the variables.
fn assign_jsonata(p: &Payload, env: &Env<'_>) -> Result<Map<String, Value>, Failure> {
    let Payload::Jsonata(t) = p else {
        return Err(runtime("a JSONPath Assign in a JSONata state"));
    };
    match t
        .eval(env, "Assign")
        .map_err(|QueryError(m)| query_error(m))?
    {
        Value::Object(m) => Ok(m),
        other => Err(query_error(format!("Assign gave {other}, not an object"))),
    }
}

/// The top-level scope's variables, for a checkpoint (none when there are none).
fn saved_variables(vars: &Vars<'_>) -> Option<Map<String, Value>> {
    (!vars.own.is_empty()).then(|| vars.own.clone())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn query_error(m: impl Into<String>) -> Failure {
    Failure::new(QUERY_ERROR, m)
}

fn data_limit(state: &str) -> Failure {
    Failure::new(
        "States.DataLimitExceeded",
        format!("the state '{state}' returned a result larger than {MAX_PAYLOAD_BYTES} bytes"),
    )
}

/// The state being run, when it was entered, and its Map item (if in a Map iteration).
struct At<'a> {
    state: &'a State,
    entered: DateTime<Utc>,
    item: Option<(usize, &'a Value)>,
}

/// Where a state goes and what it assigns and outputs when it does (a Choice takes its
/// matching rule's).
#[derive(Clone, Copy)]
struct Flow<'a> {
    next: Option<&'a String>,
    assign: Option<&'a Payload>,
    output: Option<&'a JTemplate>,
}

/// What a state that did not fail produced.
struct Outcome {
    /// `None`: the branch ends with this output.
    next: Option<String>,
    output: Value,
    assigned: Option<Map<String, Value>>,
}

fn retry_delay(r: &Retrier, attempt: u32) -> Duration {
    let mut secs = r.interval * r.backoff.powi(attempt.min(1000) as i32);
    if let Some(max) = r.max_delay {
        secs = secs.min(max);
    }
    secs = secs.clamp(0.0, 99_999_999.0);
    if r.jitter_full {
        use rand::Rng;
        secs *= rand::rng().random_range(0.0..=1.0);
    }
    Duration::from_secs_f64(secs)
}

/// States whose effects a restart must not repeat once they finished.
fn acts_on_world(kind: &Kind) -> bool {
    matches!(kind, Kind::Task(_) | Kind::Map(_) | Kind::Parallel { .. })
}

/// A state type's history events: (entered, exited). Static names: a transition costs no
/// formatting.
fn state_events(k: &Kind) -> (&'static str, &'static str) {
    match k {
        Kind::Pass { .. } => ("PassStateEntered", "PassStateExited"),
        Kind::Task(_) => ("TaskStateEntered", "TaskStateExited"),
        Kind::Choice { .. } => ("ChoiceStateEntered", "ChoiceStateExited"),
        Kind::Wait(_) => ("WaitStateEntered", "WaitStateExited"),
        Kind::Succeed => ("SucceedStateEntered", "SucceedStateExited"),
        Kind::Fail { .. } => ("FailStateEntered", "FailStateExited"),
        Kind::Parallel { .. } => ("ParallelStateEntered", "ParallelStateExited"),
        Kind::Map(_) => ("MapStateEntered", "MapStateExited"),
    }
}
