//! Running executions: the interpreter loop, input/output processing, Retry/Catch, Map and
//! Parallel, Wait, timeouts, and checkpoints before top-level states that act on the world.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::choice;
use crate::history::{Field, MAX_PAYLOAD_BYTES, details, within_bytes};
use crate::jsonata::{Env, JTemplate, QUERY_ERROR, QueryError};
use crate::model::{
    Branch, Kind, Lang, MapSpec, Num, Payload, Retrier, Seconds, State, StateMachine, StrSource,
    Test, WaitFor,
};
use crate::path::{Path, Root};
use crate::store::Cursor;
use crate::template::ApplyError;
use crate::vars::Vars;
use crate::{HistoryEvent, TaskContext, TaskFailure, TaskInvoker};

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
                && (!error.starts_with("States.") || error == "States.HeartbeatTimeout"))
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
    pub store: Arc<dyn crate::ExecutionStore>,
    pub events: Mutex<Events>,
    pub cancel: CancellationToken,
    /// What an outside stop said (error, cause).
    pub stop_reason: Mutex<Option<(Option<String>, Option<String>)>>,
    /// The top-level branch has moved past the stored cursor. Cleared by a checkpoint.
    pub unsaved: std::sync::atomic::AtomicBool,
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
        resume_wait: Option<DateTime<Utc>>,
        vars: Vars<'a>,
    ) -> BoxFut<'a, Result<Value, Failure>> {
        Box::pin(async move {
            let mut name = start;
            let mut input = input;
            let mut resume_wait = resume_wait;
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
                    })
                    .await?;
                }
                let type_name = kind_name(&state.kind);
                self.event(
                    &format!("{type_name}StateEntered"),
                    Some(&name),
                    details(&[("name", Field::Str(&name)), ("input", Field::Brief(&input))]),
                );
                let at = At {
                    state,
                    entered: Utc::now(),
                    item: item.as_ref().map(|(i, v)| (*i, v)),
                };
                let outcome = match self
                    .run_state(&at, &input, top, resume_wait.take(), &vars)
                    .await
                {
                    Ok(o) => o,
                    Err(f) => self.catch(&at, input, f, &vars)?,
                };
                self.event(
                    &format!("{type_name}StateExited"),
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
        resume_wait: Option<DateTime<Utc>>,
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
                let r = match (state.lang, result, &state.parameters) {
                    (Lang::Jsonata, _, _) => None,
                    (_, Some(r), _) => Some(r.clone()),
                    (_, None, Some(t)) => Some(
                        t.apply(&effective, &ctx(), vars)
                            .map_err(|e| from_apply(e, "Parameters"))?,
                    ),
                    (_, None, None) => Some(effective.clone().into_owned()),
                };
                self.finish(at, raw, &effective, r, flow, vars)
            }
            Kind::Succeed => self.finish(at, raw, &effective, None, flow, vars),
            Kind::Fail { error, cause } => {
                let get = |s: &Option<StrSource>, what: &str| -> Result<String, Failure> {
                    Ok(match s {
                        None => String::new(),
                        Some(StrSource::Fixed(x)) => x.clone(),
                        Some(StrSource::Path(p)) => match self.pick(p, raw, &ctx, vars) {
                            Some(Value::String(x)) => x,
                            Some(other) => {
                                return Err(runtime(format!(
                                    "{what} {p} is not a string: {other}"
                                )));
                            }
                            None => return Err(runtime(format!("{what} {p} matched nothing"))),
                        },
                        Some(StrSource::Call(c)) => {
                            match crate::intrinsics::eval(c, raw, &ctx(), vars) {
                                Ok(Value::String(x)) => x,
                                Ok(other) => {
                                    return Err(runtime(format!(
                                        "{what} returned {other}, not a string"
                                    )));
                                }
                                Err(m) => return Err(Failure::new("States.IntrinsicFailure", m)),
                            }
                        }
                        Some(StrSource::Expr(e)) => {
                            match e.eval(&self.env(raw, None, None, &ctx, vars), what) {
                                Ok(Value::String(x)) => x,
                                Ok(other) => {
                                    return Err(query_error(format!(
                                        "The JSONata expression '{}' specified for the field '{what}' returned {other}, not a string",
                                        e.text
                                    )));
                                }
                                Err(QueryError(m)) => return Err(query_error(m)),
                            }
                        }
                    })
                };
                let error = get(error, "Error")?;
                let cause = get(cause, "Cause")?;
                Err(Failure { error, cause })
            }
            Kind::Choice { choices, default } => {
                for rule in choices {
                    let hit = match &rule.test {
                        Test::Path(r) => choice::eval(r, &effective, vars).map_err(runtime)?,
                        Test::Condition(t) => {
                            match t.eval(&self.env(raw, None, None, &ctx, vars), "Condition") {
                                Ok(Value::Bool(b)) => b,
                                Ok(other) => {
                                    return Err(query_error(format!(
                                        "the Condition of state '{}' returned {other}, not a boolean",
                                        state.name
                                    )));
                                }
                                Err(QueryError(m)) => return Err(query_error(m)),
                            }
                        }
                    };
                    if hit {
                        let flow = Flow {
                            next: Some(&rule.next),
                            assign: rule.assign.as_ref(),
                            output: rule.output.as_ref(),
                        };
                        return self.finish(at, raw, &effective, None, flow, vars);
                    }
                }
                match default {
                    Some(d) => {
                        let flow = Flow {
                            next: Some(d),
                            ..flow
                        };
                        self.finish(at, raw, &effective, None, flow, vars)
                    }
                    None => Err(Failure::new(
                        "States.NoChoiceMatched",
                        format!(
                            "no choice rule of state '{}' matched and it has no Default",
                            state.name
                        ),
                    )),
                }
            }
            Kind::Wait(w) => {
                let resumed = resume_wait.is_some();
                let until = match resume_wait {
                    Some(t) => t,
                    None => self.wake_up(at, w, raw, &effective, &ctx, vars)?,
                };
                // AWS's limit on a Wait: 2^31 seconds from now.
                if until - Utc::now() > chrono::Duration::seconds(i64::from(i32::MAX)) {
                    return Err(runtime(format!(
                        "the Wait state '{}' would wait until {until}: the delay is too long (at most 2^31 s)",
                        state.name
                    )));
                }
                if top && !resumed && until > Utc::now() {
                    // Checkpoint the wake-up time: a restart resumes the same Wait, not a new
                    // one. A Wait that does not sleep needs none (it acts on nothing).
                    self.checkpoint(&Cursor {
                        state: state.name.clone(),
                        input: raw.clone(),
                        wait_until: Some(until),
                        variables: saved_variables(vars),
                    })
                    .await?;
                }
                let left = (until - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if !left.is_zero() {
                    tokio::time::sleep(left).await;
                }
                self.finish(at, raw, &effective, None, flow, vars)
            }
            Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_) => {
                let result = self.run_with_retries(at, raw, &effective, vars).await?;
                self.finish(at, raw, &effective, Some(result), flow, vars)
            }
        }
    }

    /// Runs a Task, Parallel or Map state's work under its Retry rules; its result after
    /// ResultSelector.
    async fn run_with_retries(
        &self,
        at: &At<'_>,
        raw: &Value,
        effective: &Value,
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        let state = at.state;
        let mut attempts: Vec<u32> = vec![0; state.retry.len()];
        let mut retry_count = 0u32;
        loop {
            let ctx = || self.context(&state.name, at.entered, retry_count, at.item);
            let result = match &state.kind {
                Kind::Task(_) => self.run_task(at, raw, effective, retry_count, vars).await,
                Kind::Parallel { branches } => {
                    self.run_parallel(state, branches, raw, effective, &ctx, vars)
                        .await
                }
                Kind::Map(_) => self.run_map(at, raw, effective, &ctx, vars).await,
                _ => Err(runtime("only Task, Parallel and Map states retry")),
            };
            match result {
                Ok(r) => {
                    return match &state.result_selector {
                        Some(t) => t
                            .apply(&r, &ctx(), vars)
                            .map_err(|e| from_apply(e, "ResultSelector")),
                        None => Ok(r),
                    };
                }
                Err(f) => {
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
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// When a Wait state wakes.
    fn wake_up(
        &self,
        at: &At<'_>,
        w: &WaitFor,
        raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<DateTime<Utc>, Failure> {
        let seconds = |v: &Value, what: &str| match v.as_u64() {
            Some(s) => Ok(at.entered + chrono::Duration::seconds(s.min(i64::MAX as u64) as i64)),
            None => Err(format!("{what} must be a non-negative integer, got {v}")),
        };
        let parse_time = |v: &Value| {
            v.as_str()
                .and_then(choice::parse_timestamp)
                .map(|t| t.with_timezone(&Utc))
        };
        let env = || self.env(raw, None, None, ctx, vars);
        Ok(match w {
            WaitFor::Seconds(s) => at.entered + chrono::Duration::seconds(*s as i64),
            WaitFor::Timestamp(t) => *t,
            WaitFor::SecondsPath(p) => match self.pick(p, effective, ctx, vars) {
                Some(v) => seconds(&v, &format!("SecondsPath {p}")).map_err(runtime)?,
                None => return Err(runtime(format!("SecondsPath {p} matched nothing"))),
            },
            WaitFor::TimestampPath(p) => self
                .pick(p, effective, ctx, vars)
                .as_ref()
                .and_then(parse_time)
                .ok_or_else(|| {
                    runtime(format!(
                        "TimestampPath {p} must point to an RFC 3339 timestamp"
                    ))
                })?,
            WaitFor::SecondsExpr(e) => {
                let v = e
                    .eval(&env(), "Seconds")
                    .map_err(|QueryError(m)| query_error(m))?;
                seconds(&v, "Seconds").map_err(query_error)?
            }
            WaitFor::TimestampExpr(e) => {
                let v = e
                    .eval(&env(), "Timestamp")
                    .map_err(|QueryError(m)| query_error(m))?;
                parse_time(&v).ok_or_else(|| {
                    query_error(format!(
                        "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    ))
                })?
            }
        })
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
            (_, Some(p)) if p.is_root() => Ok(Cow::Owned(raw.clone())),
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

    async fn run_task(
        &self,
        at: &At<'_>,
        raw: &Value,
        effective: &Value,
        retry_count: u32,
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        let state = at.state;
        let Kind::Task(spec) = &state.kind else {
            return Err(runtime("not a task"));
        };
        let ctx = || self.context(&state.name, at.entered, retry_count, at.item);
        let task_input = self.state_input(state, effective, &ctx, vars)?;
        let resource = &spec.resource;
        let (target, payload) = if spec.lambda_invoke {
            let f = task_input
                .get("FunctionName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Failure::new(
                        "States.Runtime",
                        "lambda:invoke needs the FunctionName argument (a string)",
                    )
                })?;
            (
                f.to_string(),
                task_input.get("Payload").cloned().unwrap_or(Value::Null),
            )
        } else {
            (resource.clone(), task_input.clone())
        };
        let timeout = match self.count(&spec.timeout, "TimeoutSeconds", raw, &ctx, vars)? {
            None => None,
            Some(0) => return Err(runtime("TimeoutSeconds must be positive")),
            Some(n) => Some(Duration::from_secs(n)),
        };
        self.event(
            "TaskScheduled",
            Some(&state.name),
            details(&[
                ("resource", Field::Str(resource)),
                ("parameters", Field::Brief(&task_input)),
            ]),
        );
        self.event(
            "TaskStarted",
            Some(&state.name),
            details(&[("resource", Field::Str(resource))]),
        );
        let call = self.invoker.invoke(
            &target,
            payload,
            TaskContext {
                execution_arn: self.arn.clone(),
                execution_name: self.name.clone(),
                state_name: state.name.clone(),
                retry_count,
            },
        );
        let outcome = match timeout {
            Some(t) => match tokio::time::timeout(t, call).await {
                Ok(r) => r,
                Err(_) => {
                    let cause = format!("the task did not finish within {} s", t.as_secs());
                    self.event(
                        "TaskTimedOut",
                        Some(&state.name),
                        details(&[
                            ("error", Field::Str("States.Timeout")),
                            ("cause", Field::Str(&cause)),
                        ]),
                    );
                    return Err(Failure::new("States.Timeout", cause));
                }
            },
            None => call.await,
        };
        match outcome {
            Ok(out) => {
                self.event(
                    "TaskSucceeded",
                    Some(&state.name),
                    details(&[
                        ("resource", Field::Str(resource)),
                        ("output", Field::Brief(&out)),
                    ]),
                );
                Ok(if spec.lambda_invoke {
                    json!({
                        "ExecutedVersion": "$LATEST",
                        "Payload": out,
                        "SdkHttpMetadata": {"HttpStatusCode": 200},
                        "SdkResponseMetadata": {"RequestId": uuid::Uuid::new_v4().to_string()},
                        "StatusCode": 200
                    })
                } else {
                    out
                })
            }
            Err(TaskFailure { error, cause }) => {
                self.event(
                    "TaskFailed",
                    Some(&state.name),
                    details(&[
                        ("resource", Field::Str(resource)),
                        ("error", Field::Str(&error)),
                        ("cause", Field::Str(&cause)),
                    ]),
                );
                Err(Failure { error, cause })
            }
        }
    }

    async fn run_parallel(
        &self,
        state: &State,
        branches: &[Branch],
        _raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        let input = self.state_input(state, effective, ctx, vars)?;
        self.event("ParallelStateStarted", Some(&state.name), details(&[]));
        let runs = branches.iter().map(|b| {
            self.run_branch(
                b,
                b.start_at.clone(),
                input.clone(),
                false,
                None,
                None,
                Vars::new(Map::new(), Some(vars)),
            )
        });
        // try_join_all: the first failure drops (cancels) the other branches.
        let results = futures::future::try_join_all(runs).await;
        match results {
            Ok(outs) => {
                self.event("ParallelStateSucceeded", Some(&state.name), details(&[]));
                Ok(Value::Array(outs))
            }
            Err(f) => {
                self.event(
                    "ParallelStateFailed",
                    Some(&state.name),
                    details(&[
                        ("error", Field::Str(&f.error)),
                        ("cause", Field::Str(&f.cause)),
                    ]),
                );
                Err(f)
            }
        }
    }

    /// The items a Map state iterates: ItemsPath (JSONPath), Items (JSONata), else its
    /// input; an array.
    fn map_items(
        &self,
        state: &State,
        spec: &MapSpec,
        raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Vec<Value>, Failure> {
        let items = match (state.lang, &spec.items_path, &spec.items) {
            (Lang::JsonPath, None, _) => Value::Object(Map::new()),
            (Lang::JsonPath, Some(p), _) => self
                .pick(p, effective, ctx, vars)
                .ok_or_else(|| runtime(format!("ItemsPath {p} matched nothing")))?,
            (Lang::Jsonata, _, Some(t)) => {
                let v = t
                    .eval(&self.env(raw, None, None, ctx, vars), "Items")
                    .map_err(|QueryError(m)| query_error(m))?;
                if !v.is_array() {
                    let expr = t.as_expr().map_or("", |e| e.text.as_str());
                    return Err(query_error(format!(
                        "The JSONata expression '{expr}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {v}",
                        type_name(&v)
                    )));
                }
                v
            }
            (Lang::Jsonata, _, None) => match raw {
                Value::Array(_) => raw.clone(),
                other => {
                    return Err(query_error(format!(
                        "Map state input must be an array but was: {other}"
                    )));
                }
            },
        };
        match items {
            Value::Array(items) => Ok(items),
            _ => Err(runtime(format!(
                "the ItemsPath of Map state '{}' must select an array",
                state.name
            ))),
        }
    }

    async fn run_map(
        &self,
        at: &At<'_>,
        raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        let state = at.state;
        let Kind::Map(spec) = &state.kind else {
            return Err(runtime("not a map"));
        };
        let items = self.map_items(state, spec, raw, effective, ctx, vars)?;
        let concurrency = match self.count(
            &spec.max_concurrency,
            "MaxConcurrency",
            effective,
            ctx,
            vars,
        )? {
            None | Some(0) => usize::MAX,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let tolerated_count = match &spec.tolerated_count {
            Some(n) => Some(self.num(n, "ToleratedFailureCount", effective, ctx, vars)?),
            None => None,
        };
        let tolerated_percent = match &spec.tolerated_percent {
            Some(n) => Some(self.num(n, "ToleratedFailurePercentage", effective, ctx, vars)?),
            None => None,
        };
        let mut inputs = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            inputs.push(match &spec.item_selector {
                Some(selector) => {
                    // The context holds the execution's input: build it only when an
                    // ItemSelector can read it (a copy per item is quadratic in big Maps).
                    let item_ctx = || {
                        let mut c = ctx();
                        if let Value::Object(m) = &mut c {
                            m.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
                        }
                        c
                    };
                    match selector {
                        Payload::Path(t) => t
                            .apply(effective, &item_ctx(), vars)
                            .map_err(|e| from_apply(e, "ItemSelector"))?,
                        Payload::Jsonata(t) => t
                            .eval(&self.env(raw, None, None, &item_ctx, vars), "ItemSelector")
                            .map_err(|QueryError(m)| query_error(m))?,
                    }
                }
                None => item.clone(),
            });
        }
        if let Some(b) = &spec.batcher {
            let batch_input = match &b.batch_input {
                Some(Payload::Path(t)) => Some(
                    t.apply(effective, &ctx(), vars)
                        .map_err(|e| from_apply(e, "ItemBatcher.BatchInput"))?,
                ),
                Some(Payload::Jsonata(t)) => Some(
                    t.eval(
                        &self.env(raw, None, None, ctx, vars),
                        "ItemBatcher.BatchInput",
                    )
                    .map_err(|QueryError(m)| query_error(m))?,
                ),
                None => None,
            };
            inputs = batches(inputs, b.max_items, b.max_bytes, batch_input);
        }
        let total = inputs.len();
        self.event(
            "MapStateStarted",
            Some(&state.name),
            details(&[("length", Field::Num(total as u64))]),
        );
        let tolerant = tolerated_count.is_some() || tolerated_percent.is_some();
        let processor = &spec.processor;
        let iteration_event = |kind: &str, i: usize| {
            self.event(
                kind,
                Some(&state.name),
                details(&[
                    ("index", Field::Num(i as u64)),
                    ("name", Field::Str(&state.name)),
                ]),
            );
        };
        let mut stream = futures::stream::iter(inputs.into_iter().enumerate().map(|(i, input)| {
            let item_value = items.get(i).cloned().unwrap_or(Value::Null);
            async move {
                iteration_event("MapIterationStarted", i);
                let r = self
                    .run_branch(
                        processor,
                        processor.start_at.clone(),
                        input,
                        false,
                        Some((i, item_value)),
                        None,
                        Vars::new(Map::new(), Some(vars)),
                    )
                    .await;
                iteration_event(
                    if r.is_ok() {
                        "MapIterationSucceeded"
                    } else {
                        "MapIterationFailed"
                    },
                    i,
                );
                (i, r)
            }
        }))
        .buffer_unordered(concurrency.min(total.max(1)));
        let mut results: Vec<Value> = vec![Value::Null; total];
        let mut failed = 0usize;
        let fail = |f: &Failure| {
            self.event(
                "MapStateFailed",
                Some(&state.name),
                details(&[
                    ("error", Field::Str(&f.error)),
                    ("cause", Field::Str(&f.cause)),
                ]),
            );
        };
        while let Some((i, r)) = stream.next().await {
            match r {
                Ok(v) => results[i] = v,
                Err(f) => {
                    if !tolerant {
                        fail(&f);
                        return Err(f);
                    }
                    failed += 1;
                    results[i] = json!({"Error": f.error, "Cause": f.cause});
                }
            }
        }
        if tolerant && failed > 0 {
            let over_count = tolerated_count.is_none_or(|c| failed as f64 > c);
            let over_pct = tolerated_percent
                .is_none_or(|p| (failed as f64) * 100.0 / (total.max(1) as f64) > p);
            // Exceeded when every configured tolerance is exceeded.
            if over_count && over_pct {
                let f = Failure::new(
                    "States.ExceedToleratedFailureThreshold",
                    format!(
                        "{failed} of {total} iterations failed, more than the tolerated failures"
                    ),
                );
                fail(&f);
                return Err(f);
            }
        }
        self.event(
            "MapStateSucceeded",
            Some(&state.name),
            details(&[("length", Field::Num(total as u64))]),
        );
        Ok(Value::Array(results))
    }
}

/// Groups a Map's item inputs into batches (`{"BatchInput"?, "Items": [...]}`).
fn batches(
    inputs: Vec<Value>,
    max_items: Option<u64>,
    max_bytes: Option<u64>,
    batch_input: Option<Value>,
) -> Vec<Value> {
    let mut batches = Vec::new();
    let mut cur: Vec<Value> = Vec::new();
    let mut cur_bytes = 0u64;
    for v in inputs {
        let size = v.to_string().len() as u64;
        let full_items = max_items.is_some_and(|m| cur.len() as u64 >= m);
        let full_bytes = max_bytes.is_some_and(|m| !cur.is_empty() && cur_bytes + size > m);
        if full_items || full_bytes {
            batches.push(std::mem::take(&mut cur));
            cur_bytes = 0;
        }
        cur_bytes += size;
        cur.push(v);
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
        .into_iter()
        .map(|items| {
            let mut m = Map::new();
            if let Some(bi) = &batch_input {
                m.insert("BatchInput".into(), bi.clone());
            }
            m.insert("Items".into(), Value::Array(items));
            Value::Object(m)
        })
        .collect()
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

pub(crate) fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Pass { .. } => "Pass",
        Kind::Task(_) => "Task",
        Kind::Choice { .. } => "Choice",
        Kind::Wait(_) => "Wait",
        Kind::Succeed => "Succeed",
        Kind::Fail { .. } => "Fail",
        Kind::Parallel { .. } => "Parallel",
        Kind::Map(_) => "Map",
    }
}
