//! Running executions: the interpreter loop, input/output processing, Retry/Catch, Map and
//! Parallel, Wait, timeouts, and checkpoints before top-level states that act on the world.

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
use crate::model::{Branch, Kind, Retrier, Seconds, State, StateMachine, StrSource, WaitFor};
use crate::path::{Path, Root};
use crate::store::Cursor;
use crate::template::ApplyError;
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

enum Step {
    Next(String, Value),
    End(Value),
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

    /// Runs a branch from `start` to its end.
    ///
    /// A `top` branch checkpoints before each state that acts on the world (Task, Map,
    /// Parallel; a Wait that sleeps records its wake-up itself) when it has moved since the
    /// last checkpoint: so the result of every such state is durable before the next one
    /// starts, and a restart never repeats one that finished. Pass and Choice states are
    /// not checkpointed: a restart runs them again from the last cursor, with the same
    /// input, which nothing outside the execution could tell apart.
    pub fn run_branch<'a>(
        &'a self,
        branch: &'a Branch,
        start: String,
        input: Value,
        top: bool,
        item: Option<(usize, Value)>,
        resume_wait: Option<DateTime<Utc>>,
    ) -> BoxFut<'a, Result<Value, Failure>> {
        Box::pin(async move {
            let mut name = start;
            let mut input = input;
            let mut resume_wait = resume_wait;
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
                    })
                    .await?;
                }
                let type_name = kind_name(&state.kind);
                self.event(
                    &format!("{type_name}StateEntered"),
                    Some(&name),
                    details(&[("name", Field::Str(&name)), ("input", Field::Brief(&input))]),
                );
                let item_ref = item.as_ref().map(|(i, v)| (*i, v));
                let outcome = self
                    .run_state(state, &input, top, item_ref, resume_wait.take())
                    .await;
                match outcome {
                    Ok(Step::Next(next, output)) => {
                        self.event(
                            &format!("{type_name}StateExited"),
                            Some(&name),
                            details(&[
                                ("name", Field::Str(&name)),
                                ("output", Field::Brief(&output)),
                            ]),
                        );
                        name = next;
                        input = output;
                        if top {
                            self.unsaved
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Ok(Step::End(output)) => {
                        self.event(
                            &format!("{type_name}StateExited"),
                            Some(&name),
                            details(&[
                                ("name", Field::Str(&name)),
                                ("output", Field::Brief(&output)),
                            ]),
                        );
                        return Ok(output);
                    }
                    Err(f) => {
                        let catcher = state
                            .catch
                            .iter()
                            .find(|c| error_matches(&c.errors, &f.error));
                        let Some(c) = catcher else {
                            return Err(f);
                        };
                        let err_obj = json!({"Error": f.error, "Cause": f.cause});
                        let output = match &c.result_path {
                            None => input,
                            Some(p) => p
                                .insert(input, err_obj)
                                .map_err(|m| Failure::new("States.ResultPathMatchFailure", m))?,
                        };
                        self.event(
                            &format!("{type_name}StateExited"),
                            Some(&name),
                            details(&[
                                ("name", Field::Str(&name)),
                                ("output", Field::Brief(&output)),
                            ]),
                        );
                        name = c.next.clone();
                        input = output;
                        if top {
                            self.unsaved
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        })
    }

    async fn run_state(
        &self,
        state: &State,
        raw: &Value,
        top: bool,
        item: Option<(usize, &Value)>,
        resume_wait: Option<DateTime<Utc>>,
    ) -> Result<Step, Failure> {
        let entered = Utc::now();
        let effective = match &state.input_path {
            None => Value::Object(Map::new()),
            Some(p) if p.is_root() => raw.clone(),
            Some(p) if p.root == Root::Context => p
                .select(&self.context(&state.name, entered, 0, item))
                .ok_or_else(|| {
                    runtime(format!(
                        "Invalid path '{p}': the InputPath of state '{}' matched nothing",
                        state.name
                    ))
                })?,
            Some(p) => p.select(raw).ok_or_else(|| {
                runtime(format!(
                    "Invalid path '{p}': the InputPath of state '{}' matched nothing",
                    state.name
                ))
            })?,
        };
        let ctx_for = |retry: u32| self.context(&state.name, entered, retry, item);
        match &state.kind {
            Kind::Pass { result } => {
                let r = match (result, &state.parameters) {
                    (Some(r), _) => r.clone(),
                    (None, Some(t)) => t
                        .apply(&effective, &ctx_for(0))
                        .map_err(|e| from_apply(e, "Parameters"))?,
                    (None, None) => effective,
                };
                self.finish_state(state, raw, r, &|| ctx_for(0))
            }
            Kind::Succeed => Ok(Step::End(
                self.output_path(state, effective, &|| ctx_for(0))?,
            )),
            Kind::Fail { error, cause } => {
                let get = |s: &Option<StrSource>, what: &str| -> Result<Option<String>, Failure> {
                    match s {
                        None => Ok(None),
                        Some(StrSource::Fixed(x)) => Ok(Some(x.clone())),
                        Some(StrSource::Call(c)) => {
                            match crate::intrinsics::eval(c, raw, &ctx_for(0)) {
                                Ok(Value::String(x)) => Ok(Some(x)),
                                Ok(other) => {
                                    Err(runtime(format!("{what} returned {other}, not a string")))
                                }
                                Err(m) => Err(Failure::new("States.IntrinsicFailure", m)),
                            }
                        }
                        Some(StrSource::Path(p)) => match self.select(p, raw, &ctx_for(0)) {
                            Some(Value::String(x)) => Ok(Some(x)),
                            Some(other) => {
                                Err(runtime(format!("{what} {p} is not a string: {other}")))
                            }
                            None => Err(runtime(format!("{what} {p} matched nothing"))),
                        },
                    }
                };
                let error = get(error, "ErrorPath")?.unwrap_or_default();
                let cause = get(cause, "CausePath")?.unwrap_or_default();
                Err(Failure { error, cause })
            }
            Kind::Choice { choices, default } => {
                for (rule, next) in choices {
                    if choice::eval(rule, &effective).map_err(runtime)? {
                        return Ok(Step::Next(
                            next.clone(),
                            self.output_path(state, effective, &|| ctx_for(0))?,
                        ));
                    }
                }
                match default {
                    Some(d) => Ok(Step::Next(
                        d.clone(),
                        self.output_path(state, effective, &|| ctx_for(0))?,
                    )),
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
                    None => match w {
                        WaitFor::Seconds(s) => entered + chrono::Duration::seconds(*s as i64),
                        WaitFor::Timestamp(t) => *t,
                        WaitFor::SecondsPath(p) => match p.select_ref(&effective) {
                            Some(v) if v.as_u64().is_some() => {
                                let s = v.as_u64().unwrap_or(0).min(99_999_999);
                                entered + chrono::Duration::seconds(s as i64)
                            }
                            Some(v) => {
                                return Err(runtime(format!(
                                    "SecondsPath {p} must be a non-negative integer, got {v}"
                                )));
                            }
                            None => {
                                return Err(runtime(format!("SecondsPath {p} matched nothing")));
                            }
                        },
                        WaitFor::TimestampPath(p) => match p
                            .select_ref(&effective)
                            .and_then(Value::as_str)
                            .and_then(choice::parse_timestamp)
                        {
                            Some(t) => t.with_timezone(&Utc),
                            None => {
                                return Err(runtime(format!(
                                    "TimestampPath {p} must point to an RFC 3339 timestamp"
                                )));
                            }
                        },
                    },
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
                    })
                    .await?;
                }
                let left = (until - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if !left.is_zero() {
                    tokio::time::sleep(left).await;
                }
                self.next_or_end(state, self.output_path(state, effective, &|| ctx_for(0))?)
            }
            Kind::Task { .. } | Kind::Parallel { .. } | Kind::Map(_) => {
                let mut attempts: Vec<u32> = vec![0; state.retry.len()];
                let mut retry_count = 0u32;
                loop {
                    let ctx = ctx_for(retry_count);
                    let result = match &state.kind {
                        Kind::Task { .. } => self.run_task(state, &effective, &ctx).await,
                        Kind::Parallel { branches } => {
                            self.run_parallel(state, branches, &effective, &ctx).await
                        }
                        Kind::Map(_) => self.run_map(state, &effective, &ctx).await,
                        _ => unreachable!("only Task, Parallel and Map retry"),
                    };
                    match result {
                        Ok(r) => {
                            let r = match &state.result_selector {
                                Some(t) => t
                                    .apply(&r, &ctx)
                                    .map_err(|e| from_apply(e, "ResultSelector"))?,
                                None => r,
                            };
                            return self.finish_state(state, raw, r, &|| ctx_for(0));
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
        }
    }

    fn select(&self, p: &Path, data: &Value, ctx: &Value) -> Option<Value> {
        if p.root == Root::Context {
            p.select(ctx)
        } else {
            p.select(data)
        }
    }

    /// OutputPath; `ctx` builds the context object, for a `$$` path.
    fn output_path(
        &self,
        state: &State,
        v: Value,
        ctx: &dyn Fn() -> Value,
    ) -> Result<Value, Failure> {
        match &state.output_path {
            None => Ok(Value::Object(Map::new())),
            Some(p) if p.is_root() => Ok(v),
            Some(p) => self.select(p, &v, &ctx()).ok_or_else(|| {
                runtime(format!(
                    "Invalid path '{p}': the OutputPath of state '{}' matched nothing",
                    state.name
                ))
            }),
        }
    }

    fn next_or_end(&self, state: &State, output: Value) -> Result<Step, Failure> {
        Ok(match &state.next {
            Some(n) => Step::Next(n.clone(), output),
            None => Step::End(output),
        })
    }

    /// ResultPath then OutputPath, then the transition.
    fn finish_state(
        &self,
        state: &State,
        raw: &Value,
        result: Value,
        ctx: &dyn Fn() -> Value,
    ) -> Result<Step, Failure> {
        if !within_bytes(&result, MAX_PAYLOAD_BYTES) {
            return Err(Failure::new(
                "States.DataLimitExceeded",
                format!(
                    "the state '{}' returned a result larger than {MAX_PAYLOAD_BYTES} bytes",
                    state.name
                ),
            ));
        }
        let combined = match &state.result_path {
            None => raw.clone(),
            Some(p) if p.is_root() => result,
            Some(p) => p
                .insert(raw.clone(), result)
                .map_err(|m| Failure::new("States.ResultPathMatchFailure", m))?,
        };
        let out = self.output_path(state, combined, ctx)?;
        self.next_or_end(state, out)
    }

    async fn run_task(
        &self,
        state: &State,
        effective: &Value,
        ctx: &Value,
    ) -> Result<Value, Failure> {
        let Kind::Task {
            resource,
            lambda_invoke,
            timeout,
            ..
        } = &state.kind
        else {
            return Err(runtime("not a task"));
        };
        let task_input = match &state.parameters {
            Some(t) => t
                .apply(effective, ctx)
                .map_err(|e| from_apply(e, "Parameters"))?,
            None => effective.clone(),
        };
        let (target, payload) = if *lambda_invoke {
            let f = task_input
                .get("FunctionName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Failure::new(
                        "States.Runtime",
                        "lambda:invoke needs Parameters.FunctionName (a string)",
                    )
                })?;
            (
                f.to_string(),
                task_input.get("Payload").cloned().unwrap_or(Value::Null),
            )
        } else {
            (resource.clone(), task_input.clone())
        };
        let timeout = match timeout {
            Seconds::None => None,
            Seconds::Fixed(n) => Some(Duration::from_secs(*n)),
            Seconds::Path(p) => match p.select_ref(effective).and_then(Value::as_u64) {
                Some(n) if n > 0 => Some(Duration::from_secs(n)),
                _ => {
                    return Err(runtime(format!(
                        "TimeoutSecondsPath {p} must be a positive integer"
                    )));
                }
            },
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
        let retry_count = ctx["State"]["RetryCount"].as_u64().unwrap_or(0) as u32;
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
                Ok(if *lambda_invoke {
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
        effective: &Value,
        ctx: &Value,
    ) -> Result<Value, Failure> {
        let input = match &state.parameters {
            Some(t) => t
                .apply(effective, ctx)
                .map_err(|e| from_apply(e, "Parameters"))?,
            None => effective.clone(),
        };
        self.event("ParallelStateStarted", Some(&state.name), details(&[]));
        let runs = branches
            .iter()
            .map(|b| self.run_branch(b, b.start_at.clone(), input.clone(), false, None, None));
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

    async fn run_map(
        &self,
        state: &State,
        effective: &Value,
        ctx: &Value,
    ) -> Result<Value, Failure> {
        let Kind::Map(spec) = &state.kind else {
            return Err(runtime("not a map"));
        };
        let items = match &spec.items_path {
            None => Value::Object(Map::new()),
            Some(p) => p
                .select(effective)
                .ok_or_else(|| runtime(format!("ItemsPath {p} matched nothing")))?,
        };
        let Value::Array(items) = items else {
            return Err(runtime(format!(
                "the ItemsPath of Map state '{}' must select an array",
                state.name
            )));
        };
        let concurrency = match &spec.max_concurrency {
            Seconds::None => usize::MAX,
            Seconds::Fixed(n) => usize::try_from(*n).unwrap_or(usize::MAX),
            Seconds::Path(p) => match p.select_ref(effective).and_then(Value::as_u64) {
                Some(0) => usize::MAX,
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => {
                    return Err(runtime(format!(
                        "MaxConcurrencyPath {p} must be a non-negative integer"
                    )));
                }
            },
        }
        .max(1);
        let mut inputs = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            inputs.push(match &spec.item_selector {
                Some(t) => {
                    // The context holds the execution's input: copy it only when an
                    // ItemSelector can read it (a copy per item is quadratic in big Maps).
                    let mut item_ctx = ctx.clone();
                    if let Value::Object(m) = &mut item_ctx {
                        m.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
                    }
                    t.apply(effective, &item_ctx)
                        .map_err(|e| from_apply(e, "ItemSelector"))?
                }
                None => item.clone(),
            });
        }
        if let Some(b) = &spec.batcher {
            let batch_input = match &b.batch_input {
                Some(t) => Some(
                    t.apply(effective, ctx)
                        .map_err(|e| from_apply(e, "ItemBatcher.BatchInput"))?,
                ),
                None => None,
            };
            let mut batches = Vec::new();
            let mut cur: Vec<Value> = Vec::new();
            let mut cur_bytes = 0u64;
            for v in inputs {
                let size = v.to_string().len() as u64;
                let full_items = b.max_items.is_some_and(|m| cur.len() as u64 >= m);
                let full_bytes = b
                    .max_bytes
                    .is_some_and(|m| !cur.is_empty() && cur_bytes + size > m);
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
            inputs = batches
                .into_iter()
                .map(|items| {
                    let mut m = Map::new();
                    if let Some(bi) = &batch_input {
                        m.insert("BatchInput".into(), bi.clone());
                    }
                    m.insert("Items".into(), Value::Array(items));
                    Value::Object(m)
                })
                .collect();
        }
        let total = inputs.len();
        self.event(
            "MapStateStarted",
            Some(&state.name),
            details(&[("length", Field::Num(total as u64))]),
        );
        let tolerant = spec.tolerated_count.is_some() || spec.tolerated_percent.is_some();
        let processor = &spec.processor;
        let mut stream = futures::stream::iter(inputs.into_iter().enumerate().map(|(i, input)| {
            let item_value = items.get(i).cloned().unwrap_or(Value::Null);
            async move {
                self.event(
                    "MapIterationStarted",
                    Some(&state.name),
                    details(&[
                        ("index", Field::Num(i as u64)),
                        ("name", Field::Str(&state.name)),
                    ]),
                );
                let r = self
                    .run_branch(
                        processor,
                        processor.start_at.clone(),
                        input,
                        false,
                        Some((i, item_value)),
                        None,
                    )
                    .await;
                match &r {
                    Ok(_) => self.event(
                        "MapIterationSucceeded",
                        Some(&state.name),
                        details(&[
                            ("index", Field::Num(i as u64)),
                            ("name", Field::Str(&state.name)),
                        ]),
                    ),
                    Err(_) => self.event(
                        "MapIterationFailed",
                        Some(&state.name),
                        details(&[
                            ("index", Field::Num(i as u64)),
                            ("name", Field::Str(&state.name)),
                        ]),
                    ),
                };
                (i, r)
            }
        }))
        .buffer_unordered(concurrency.min(total.max(1)));
        let mut results: Vec<Value> = vec![Value::Null; total];
        let mut failed = 0usize;
        while let Some((i, r)) = stream.next().await {
            match r {
                Ok(v) => results[i] = v,
                Err(f) => {
                    if !tolerant {
                        self.event(
                            "MapStateFailed",
                            Some(&state.name),
                            details(&[
                                ("error", Field::Str(&f.error)),
                                ("cause", Field::Str(&f.cause)),
                            ]),
                        );
                        return Err(f);
                    }
                    failed += 1;
                    results[i] = json!({"Error": f.error, "Cause": f.cause});
                }
            }
        }
        if tolerant && failed > 0 {
            let over_count = spec.tolerated_count.is_none_or(|c| failed as u64 > c);
            let over_pct = spec
                .tolerated_percent
                .is_none_or(|p| (failed as f64) * 100.0 / (total.max(1) as f64) > p);
            // Exceeded when every configured tolerance is exceeded.
            if over_count && over_pct {
                let cause = format!(
                    "{failed} of {total} iterations failed, more than the tolerated failures"
                );
                self.event(
                    "MapStateFailed",
                    Some(&state.name),
                    details(&[
                        (
                            "error",
                            Field::Str("States.ExceedToleratedFailureThreshold"),
                        ),
                        ("cause", Field::Str(&cause)),
                    ]),
                );
                return Err(Failure::new(
                    "States.ExceedToleratedFailureThreshold",
                    cause,
                ));
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

/// Largest input/output kept whole in a history event; bigger ones keep a prefix of their
/// JSON text. History is for reading, and whole copies of big states would make a long
/// execution's history cost more memory than its data.
pub(crate) const HISTORY_DETAIL_BYTES: usize = 4096;

/// One field of an event's details, serialised from a reference (no copy of the value).
pub(crate) enum Field<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    Num(u64),
    /// The whole value (the execution's input and output, as AWS records them).
    Json(&'a Value),
    /// A state's data: itself when small, else a truncated JSON preview.
    Brief(&'a Value),
}

impl serde::Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Str(v) => s.serialize_str(v),
            Field::OptStr(v) => v.serialize(s),
            Field::Num(v) => s.serialize_u64(*v),
            Field::Json(v) => v.serialize(s),
            Field::Brief(v) if fits(v) => v.serialize(s),
            Field::Brief(v) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("truncated", &true)?;
                m.serialize_entry("preview", &preview(v))?;
                m.end()
            }
        }
    }
}

/// An event's details: a JSON object of `fields`, in this order.
pub(crate) fn details(fields: &[(&str, Field<'_>)]) -> Box<serde_json::value::RawValue> {
    struct Fields<'a, 'b>(&'a [(&'a str, Field<'b>)]);
    impl serde::Serialize for Fields<'_, '_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }
    // Strings, numbers and JSON values always serialise; the fallback is never taken.
    serde_json::value::to_raw_value(&Fields(fields)).unwrap_or_else(|_| no_details())
}

/// Details of an event that has none.
pub(crate) fn no_details() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("{}".into()).unwrap_or_else(|_| unreachable!())
}

/// Largest state result or output AWS allows (256 KiB): more is States.DataLimitExceeded.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// `v` serialises within [`HISTORY_DETAIL_BYTES`].
fn fits(v: &Value) -> bool {
    within_bytes(v, HISTORY_DETAIL_BYTES)
}

/// `v` serialises within about `limit` bytes (strings counted unescaped, numbers as 8).
/// Stops walking once over: a big value costs no more than `limit`.
pub(crate) fn within_bytes(v: &Value, limit: usize) -> bool {
    fn size(v: &Value, budget: usize) -> usize {
        match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                let mut n = 2;
                for x in a {
                    n += size(x, budget.saturating_sub(n)) + 1;
                    if n > budget {
                        break;
                    }
                }
                n
            }
            Value::Object(m) => {
                let mut n = 2;
                for (k, x) in m {
                    n += k.len() + 3 + size(x, budget.saturating_sub(n));
                    if n > budget {
                        break;
                    }
                }
                n
            }
        }
    }
    size(v, limit) <= limit
}

/// The first [`HISTORY_DETAIL_BYTES`] of `v`'s JSON text.
fn preview(v: &Value) -> String {
    struct Limited(Vec<u8>);
    impl std::io::Write for Limited {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.len() >= HISTORY_DETAIL_BYTES {
                return Err(std::io::Error::other("full"));
            }
            let n = buf.len().min(HISTORY_DETAIL_BYTES - self.0.len());
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Limited(Vec::with_capacity(HISTORY_DETAIL_BYTES));
    let _ = serde_json::to_writer(&mut w, v);
    String::from_utf8_lossy(&w.0).into_owned()
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
    matches!(
        kind,
        Kind::Task { .. } | Kind::Map(_) | Kind::Parallel { .. }
    )
}

pub(crate) fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Pass { .. } => "Pass",
        Kind::Task { .. } => "Task",
        Kind::Choice { .. } => "Choice",
        Kind::Wait(_) => "Wait",
        Kind::Succeed => "Succeed",
        Kind::Fail { .. } => "Fail",
        Kind::Parallel { .. } => "Parallel",
        Kind::Map(_) => "Map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_details_are_bounded() {
        let small = json!({"a": [1, 2, 3], "b": "text"});
        let big = json!({"rows": vec!["x".repeat(100); 1000]});
        let d: Value = serde_json::from_str(
            details(&[
                ("name", Field::Str("S")),
                ("small", Field::Brief(&small)),
                ("big", Field::Brief(&big)),
                ("whole", Field::Json(&big)),
                ("none", Field::OptStr(None)),
                ("n", Field::Num(7)),
            ])
            .get(),
        )
        .unwrap();
        assert_eq!(d["name"], "S");
        assert_eq!(d["small"], small);
        assert_eq!(d["big"]["truncated"], json!(true));
        let preview = d["big"]["preview"].as_str().unwrap();
        assert!(preview.len() <= HISTORY_DETAIL_BYTES && preview.starts_with("{\"rows\":[\"xxx"));
        assert_eq!(d["whole"], big);
        assert_eq!(d["none"], Value::Null);
        assert_eq!(d["n"], 7);
        assert_eq!(no_details().get(), "{}");
    }
}
