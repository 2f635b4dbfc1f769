//! longhaul-engine: an embedded interpreter of the Amazon States Language (AWS Step
//! Functions' definitions, in JSONPath and JSONata). It runs any definition on one machine, durably,
//! with no AWS: longhaul's single-machine mode runs `statemachine/job.asl.json` on it, and
//! `longhaul sfn run` runs any definition from the command line.
//!
//! ```no_run
//! # async fn demo(invoker: std::sync::Arc<dyn longhaul_engine::TaskInvoker>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use longhaul_engine::{Engine, MemoryExecutionStore, StateMachine};
//! let machine = StateMachine::parse(r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}"#, &Default::default())?;
//! let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), invoker);
//! let sm = engine.create_state_machine("hello", machine).await?;
//! let exec = engine.start_execution(&sm, None, serde_json::json!({"x": 1})).await?;
//! let done = engine.wait_for_completion(&exec.execution_arn).await?;
//! assert_eq!(done.output, Some(serde_json::json!({"x": 1})));
//! # Ok(()) }
//! ```
//!
//! What it supports: both query languages of ASL. **JSONPath**: InputPath, Parameters,
//! ResultSelector, ResultPath (null, creating missing nodes), OutputPath, paths into the
//! state's data (`$`), the context object (`$$`) and variables (`$name`), filter
//! expressions (`[?(@.price < 10 && @.tag)]`), all intrinsic functions. **JSONata**
//! (`QueryLanguage` top-level or per state; a JSONPath machine may have JSONata states, not
//! the reverse): `Arguments`, `Output`, `Assign`, Choice `Condition`, Map `Items` and
//! `ItemSelector`, Fail `Error`/`Cause`, and `TimeoutSeconds`, `HeartbeatSeconds`, `Seconds`,
//! `Timestamp`, `MaxConcurrency`, `ToleratedFailure*` as `{% %}` expressions;
//! `$states.input`/`.result`/`.errorOutput`/`.context`; AWS's `$partition`, `$range`,
//! `$hash`, `$random`, `$uuid`, `$parse`; a field of the other language is a validation
//! error, an expression that fails or returns nothing is `States.QueryEvaluationError`.
//! **Variables** (`Assign` in states, catchers and choice rules, both languages): a state's
//! assignments take effect when it ends (everything in it reads the values from its
//! entry); Map iterations and Parallel branches read the outer variables and assign their
//! own; 256 KiB per state and 10 MiB per execution; the top-level variables are part of
//! every checkpoint. Every state type, inline Map (ItemsPath, ItemSelector/Parameters,
//! ItemProcessor/Iterator, MaxConcurrency(Path), ToleratedFailureCount/Percentage,
//! ItemBatcher); Retry (BackoffRate, MaxDelaySeconds, JitterStrategy) and Catch with the
//! predefined error names (`States.Runtime` and `States.DataLimitExceeded`, for results
//! over 256 KiB, are not catchable, as on AWS); state and execution timeouts; `${Name}`
//! substitutions as SAM's DefinitionSubstitutions. Tasks go to a [`TaskInvoker`]: direct
//! resources, and `arn:aws:states:::lambda:invoke` with AWS's result shape.
//!
//! **Callbacks** (`.waitForTaskToken` on a service integration, e.g.
//! `arn:aws:states:::lambda:invoke.waitForTaskToken`; a bare function ARN with the suffix is
//! refused, as on AWS): the resource is called with a task token (`$$.Task.Token`,
//! `$states.context.Task.Token`, [`TaskContext::task_token`]; 256 random bits in URL-safe
//! base64) and its result is ignored; the task ends with [`Engine::send_task_success`]
//! (its output the result) or [`Engine::send_task_failure`] (an error Retry and Catch match
//! by name). [`Engine::send_task_heartbeat`] resets `HeartbeatSeconds`, which is enforced
//! (`States.HeartbeatTimeout`, a TaskTimedOut event); `TimeoutSeconds` counts from the
//! task's first start. Each Retry attempt has a new token. Answers are refused as AWS
//! names it: [`EngineError::InvalidToken`] (not a token this engine issues),
//! [`EngineError::TaskDoesNotExist`] (unknown, already answered, or its execution ended),
//! [`EngineError::TaskTimedOut`] (its task timed out; remembered for the last 10,000
//! tokens, and not across a restart). A top-level waiting task checkpoints its token and
//! whether its resource was called: after a restart the same token answers it and the
//! resource is not called again. Inside Map and Parallel (which are not checkpointed) a
//! restart runs the state again, with new tokens.
//!
//! **HTTP Task** (`arn:aws:states:::http:invoke`, request-response only): Parameters or
//! Arguments with `ApiEndpoint`, `Method` (GET, POST, PUT, DELETE, PATCH, OPTIONS, HEAD),
//! `Authentication.ConnectionArn` or `InvocationConfig.ConnectionArn` (required, as on AWS;
//! nothing else in them), `Headers` (AWS's forbidden ones refused; `User-Agent`, `Range`
//! and `Content-Length` set by the task), `QueryParameters`, `RequestBody` (JSON, or
//! `Transform.RequestBodyEncoding: URL_ENCODED` with `RequestEncodingOptions.ArrayFormat`
//! INDICES, REPEAT, COMMAS or BRACKETS). Literal arguments are checked when the definition is
//! read, the rest when it runs (`States.Runtime`). The result is
//! `{Headers: {name: [values]}, ResponseBody, StatusCode, StatusText}`, `ResponseBody`
//! parsed when the response is JSON; a status outside 2xx fails with
//! `States.Http.StatusCode.NNN` and that same object as JSON text for cause (the exact cause
//! text AWS writes was not verified); image, audio, video and octet-stream responses are
//! `States.Runtime`, bodies over 256 KiB `States.DataLimitExceeded`; one request takes at
//! most 60 s. The engine has no HTTP client: the request goes to the host's
//! [`HttpInvoker`] ([`Engine::with_http`]), which decides what may be reached and what a
//! connection's credentials are (longhaul's: `longhaul_local::http_task`); an engine made
//! with [`Engine::new`] fails HTTP Tasks with `States.Runtime`.
//!
//! `longhaul sfn conformance FILE` measures the engine against outcomes recorded on AWS
//! (512 of 512 of the shared corpus pass).
//!
//! **Why jsonata-core.** Two Rust JSONata crates exist. `jsonata-rs` (0.3) calls itself
//! incomplete, parses the input document as JSONata text, and ties a parsed expression to
//! an arena and a frame, so it cannot be compiled once and shared across executions.
//! `jsonata-core` (2.2) reports passing the reference implementation's 1,686-case suite,
//! parses to a plain AST that is `Send + Sync` (compiled once per definition, kept in the
//! state machine), takes variable bindings and host functions (AWS's additions), and is
//! maintained; 30 expressions (paths, filters, lambdas, higher-order and string functions,
//! regexes, sequences) evaluated by it and by the reference `jsonata` npm package (2.x)
//! gave the same 30 results. Its cost to the rest of the build: it turns on serde_json's
//! `preserve_order` (objects keep their keys' order, as AWS does; `States.JsonToString`
//! now writes keys in input order).
//!
//! Not supported: distributed Map (ItemReader/ResultWriter); service integrations other than
//! Lambda invoke and the HTTP Task run as they are named, through the [`TaskInvoker`] (no
//! AWS SDK calls); `.sync` is not waited for (the call's result is the task's); heartbeats
//! of tasks that are not callbacks (a step called in process sends none: `HeartbeatSeconds`
//! is only validated there); EventBridge connections are not resolved (the host's
//! [`HttpInvoker`] supplies credentials, if any).
//!
//! **Durability.** Before each top-level state that acts on the world (Task, Map, Parallel)
//! the execution is checkpointed through an [`ExecutionStore`] (in memory, or SQLite) if it
//! moved since the last checkpoint: the next state and its input; a Wait that sleeps records
//! its wake-up time. Pass and Choice states are not checkpointed (a restart runs them again
//! from the last cursor with the same input). After a crash, [`Engine::resume_all`]
//! continues RUNNING executions from their last checkpoint: a long Wait does not start
//! over, a callback Task keeps its token. A state that was running when the
//! process died runs again, so **tasks are at least once** — as on AWS, make them
//! idempotent. Map iterations and Parallel branches are part of their state: after a crash
//! the whole Map or Parallel state runs again.

mod callback;
mod choice;
pub mod cli;
mod exec;
mod history;
mod http;
mod intrinsics;
mod jsonata;
mod model;
mod path;
pub mod sqlite;
mod store;
mod template;
mod vars;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use http::{
    HTTP_INVOKE, HttpInvoker, HttpRequest, HttpResponse, MAX_RESPONSE_BYTES, REQUEST_TIMEOUT,
};
pub use model::{StateMachine, ValidationError, ValidationErrors};
pub use store::{
    CallbackCursor, Cursor, ExecutionRecord, ExecutionStore, MemoryExecutionStore,
    SqliteExecutionStore,
};

use callback::{Callbacks, Signal};
use exec::{Events, Failure, Resume, Run};
use history::Field;

/// Calls Task resources: resource string in, JSON out, or an error with name and cause.
#[async_trait]
pub trait TaskInvoker: Send + Sync + 'static {
    /// `resource` is the Task's Resource (for `lambda:invoke`, the FunctionName; the engine
    /// wraps the result in AWS's shape), without a `.waitForTaskToken` suffix. For a
    /// callback Task the result is ignored: the task waits for `ctx.task_token`'s answer
    /// ([`Engine::send_task_success`]); an error still fails it.
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        ctx: TaskContext,
    ) -> Result<Value, TaskFailure>;
}

/// What a task knows about where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContext {
    pub execution_arn: String,
    pub execution_name: String,
    pub state_name: String,
    pub retry_count: u32,
    /// The task token of a `.waitForTaskToken` Task (also `$$.Task.Token`), for the
    /// outside system that will answer.
    pub task_token: Option<String>,
}

/// A task's failure: the error name Retry/Catch match on, and a cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

impl TaskFailure {
    pub fn new(error: &str, cause: impl Into<String>) -> TaskFailure {
        TaskFailure {
            error: error.to_string(),
            cause: cause.into(),
        }
    }
}

/// Status of an execution, as Step Functions names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
    }

    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        [
            ExecutionStatus::Running,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
            ExecutionStatus::Aborted,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// DescribeExecution.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDescription {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub start_date: DateTime<Utc>,
    pub stop_date: Option<DateTime<Utc>>,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl From<&ExecutionRecord> for ExecutionDescription {
    fn from(r: &ExecutionRecord) -> Self {
        ExecutionDescription {
            execution_arn: r.execution_arn.clone(),
            state_machine_arn: r.state_machine_arn.clone(),
            name: r.name.clone(),
            status: r.status,
            start_date: r.start_date,
            stop_date: r.stop_date,
            input: r.input.clone(),
            output: r.output.clone(),
            error: r.error.clone(),
            cause: r.cause.clone(),
        }
    }
}

/// One event of an execution's history, with AWS's event type names.
///
/// `details` is kept as JSON text: it is written once, from references to the engine's
/// values (see `history::details`), and stored and served as it is. Building it as a `Value`
/// copied the state's input or output into every event, only to serialise and drop it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    pub timestamp: DateTime<Utc>,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_name: Option<String>,
    #[serde(default = "history::no_details")]
    pub details: Box<serde_json::value::RawValue>,
}

impl HistoryEvent {
    /// The details as a JSON value.
    pub fn details_value(&self) -> Value {
        serde_json::from_str(self.details.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for HistoryEvent {
    fn eq(&self, other: &HistoryEvent) -> bool {
        self.id == other.id
            && self.previous_event_id == other.previous_event_id
            && self.timestamp == other.timestamp
            && self.event_type == other.event_type
            && self.state_name == other.state_name
            && self.details.get() == other.details.get()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("execution already exists: {execution_arn}")]
    ExecutionAlreadyExists { execution_arn: String },
    #[error("execution does not exist: {0}")]
    ExecutionDoesNotExist(String),
    #[error("state machine does not exist: {0}")]
    StateMachineDoesNotExist(String),
    #[error(
        "invalid name {0:?}: 1 to 80 characters, no whitespace, no < > {{ }} [ ] ? * \" # % \\ ^ | ~ ` $ & , ; : /"
    )]
    InvalidName(String),
    #[error("invalid definition: {0}")]
    InvalidDefinition(#[from] ValidationErrors),
    #[error("execution store: {0}")]
    Store(String),
    /// A callback answer's token is not one this engine issues (AWS: InvalidToken).
    #[error("invalid task token: {0}")]
    InvalidToken(String),
    /// No task waits for this token: it was never issued here, was answered already, or
    /// its execution ended (AWS: TaskDoesNotExist).
    #[error("no task waits for this task token (unknown, or already answered)")]
    TaskDoesNotExist,
    /// The task of this token timed out (TimeoutSeconds or HeartbeatSeconds) before the
    /// answer (AWS: TaskTimedOut).
    #[error("the task of this task token timed out")]
    TaskTimedOut,
    /// A success's output is not what a task may return (AWS: InvalidOutput).
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    /// A failure's error or cause is too long (AWS: ValidationException).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

const ARN_PREFIX: &str = "arn:aws:states:local:000000000000";

fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=80).contains(&n)
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
}

struct Running {
    run: Arc<Run>,
    done: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    store: Arc<dyn ExecutionStore>,
    invoker: Arc<dyn TaskInvoker>,
    http: Option<Arc<dyn HttpInvoker>>,
    callbacks: Arc<Callbacks>,
    machines: RwLock<HashMap<String, StateMachine>>,
    running: Mutex<HashMap<String, Running>>,
    ends: broadcast::Sender<ExecutionDescription>,
    shutdown: CancellationToken,
}

/// The engine: state machines, executions, checkpoints. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine whose HTTP Tasks fail (it has no HTTP client): see [`Engine::with_http`].
    pub fn new(store: Arc<dyn ExecutionStore>, invoker: Arc<dyn TaskInvoker>) -> Engine {
        Engine::build(store, invoker, None)
    }

    /// An engine whose HTTP Tasks (`arn:aws:states:::http:invoke`) send their requests
    /// through `http`.
    pub fn with_http(
        store: Arc<dyn ExecutionStore>,
        invoker: Arc<dyn TaskInvoker>,
        http: Arc<dyn HttpInvoker>,
    ) -> Engine {
        Engine::build(store, invoker, Some(http))
    }

    fn build(
        store: Arc<dyn ExecutionStore>,
        invoker: Arc<dyn TaskInvoker>,
        http: Option<Arc<dyn HttpInvoker>>,
    ) -> Engine {
        let (ends, _) = broadcast::channel(4096);
        Engine {
            inner: Arc::new(Inner {
                store,
                invoker,
                http,
                callbacks: Arc::new(Callbacks::default()),
                machines: RwLock::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                ends,
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Registers (or replaces) a state machine under `name`; returns its ARN.
    pub async fn create_state_machine(
        &self,
        name: &str,
        machine: StateMachine,
    ) -> Result<String, EngineError> {
        if !valid_name(name) {
            return Err(EngineError::InvalidName(name.to_string()));
        }
        let arn = format!("{ARN_PREFIX}:stateMachine:{name}");
        self.inner
            .machines
            .write()
            .map_err(|_| EngineError::Store("lock poisoned".into()))?
            .insert(arn.clone(), machine);
        Ok(arn)
    }

    /// StartExecution. The name defaults to a UUID; a reused name is `ExecutionAlreadyExists`.
    pub async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<&str>,
        input: Value,
    ) -> Result<ExecutionDescription, EngineError> {
        let machine = self
            .inner
            .machines
            .read()
            .map_err(|_| EngineError::Store("lock poisoned".into()))?
            .get(state_machine_arn)
            .cloned()
            .ok_or_else(|| EngineError::StateMachineDoesNotExist(state_machine_arn.to_string()))?;
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if !valid_name(&name) {
            return Err(EngineError::InvalidName(name));
        }
        let sm_name = state_machine_arn
            .rsplit(':')
            .next()
            .unwrap_or("")
            .to_string();
        let arn = format!("{ARN_PREFIX}:execution:{sm_name}:{name}");
        let start = Utc::now();
        let started = HistoryEvent {
            id: 1,
            previous_event_id: 0,
            timestamp: start,
            event_type: "ExecutionStarted".into(),
            state_name: None,
            details: history::details(&[
                ("input", Field::Json(&input)),
                (
                    "roleArn",
                    Field::Str("arn:aws:iam::000000000000:role/longhaul-local"),
                ),
            ]),
        };
        let rec = ExecutionRecord {
            execution_arn: arn.clone(),
            state_machine_arn: state_machine_arn.to_string(),
            name: name.clone(),
            definition: machine.definition_text().to_string(),
            status: ExecutionStatus::Running,
            input: input.clone(),
            output: None,
            error: None,
            cause: None,
            start_date: start,
            stop_date: None,
            cursor: Some(Cursor {
                state: machine.inner.root.start_at.clone(),
                input,
                wait_until: None,
                variables: None,
                callback: None,
            }),
        };
        if !self.inner.store.insert(&rec, &[started]).await? {
            return Err(EngineError::ExecutionAlreadyExists { execution_arn: arn });
        }
        let description = ExecutionDescription::from(&rec);
        self.spawn(rec, machine, 2);
        Ok(description)
    }

    fn spawn(&self, rec: ExecutionRecord, machine: StateMachine, next_event_id: u64) {
        let run = Arc::new(Run {
            arn: rec.execution_arn.clone(),
            name: rec.name.clone(),
            state_machine_arn: rec.state_machine_arn.clone(),
            state_machine_name: rec
                .state_machine_arn
                .rsplit(':')
                .next()
                .unwrap_or("")
                .to_string(),
            machine,
            input: rec.input.clone(),
            start: rec.start_date,
            invoker: self.inner.invoker.clone(),
            http: self.inner.http.clone(),
            callbacks: self.inner.callbacks.clone(),
            store: self.inner.store.clone(),
            events: Mutex::new(Events {
                pending: Vec::new(),
                next_id: next_event_id,
            }),
            cancel: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            unsaved: std::sync::atomic::AtomicBool::new(false),
        });
        let (done_tx, done_rx) = watch::channel(false);
        let inner = self.inner.clone();
        let r = run.clone();
        // Hold the lock across spawn so the task cannot finish (and remove itself) before it
        // is registered.
        let Ok(mut running) = self.inner.running.lock() else {
            return;
        };
        // Boxed: a record held inline would be copied into the task's future twice (this
        // block's capture and drive's argument), and ten thousand executions are many tasks.
        let rec = Box::new(rec);
        let task = tokio::spawn(async move {
            drive(inner.clone(), r.clone(), rec).await;
            if let Ok(mut m) = inner.running.lock() {
                m.remove(&r.arn);
            }
            let _ = done_tx.send(true);
        });
        running.insert(
            run.arn.clone(),
            Running {
                run,
                done: done_rx,
                task,
            },
        );
    }

    /// DescribeExecution.
    pub async fn describe_execution(
        &self,
        execution_arn: &str,
    ) -> Result<ExecutionDescription, EngineError> {
        self.inner
            .store
            .get(execution_arn)?
            .map(|r| ExecutionDescription::from(&r))
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(execution_arn.to_string()))
    }

    /// StopExecution: the execution ends ABORTED; its running tasks and branches are
    /// cancelled. Stopping one that already ended does nothing.
    pub async fn stop_execution(
        &self,
        execution_arn: &str,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<(), EngineError> {
        let rec = self
            .inner
            .store
            .get(execution_arn)?
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(execution_arn.to_string()))?;
        if rec.status != ExecutionStatus::Running {
            return Ok(());
        }
        let running = self
            .inner
            .running
            .lock()
            .map_err(|_| EngineError::Store("lock poisoned".into()))?
            .get(execution_arn)
            .map(|r| (r.run.clone(), r.done.clone()));
        match running {
            Some((run, mut done)) => {
                if let Ok(mut s) = run.stop_reason.lock() {
                    *s = Some((error.map(str::to_string), cause.map(str::to_string)));
                }
                run.cancel.cancel();
                let _ = done.wait_for(|d| *d).await;
            }
            None => {
                // Not being driven here (e.g. not resumed yet): end it in the store.
                let mut rec = rec;
                rec.status = ExecutionStatus::Aborted;
                rec.error = error.map(str::to_string);
                rec.cause = cause.map(str::to_string);
                rec.stop_date = Some(Utc::now());
                let n = self.inner.store.history(execution_arn)?.len() as u64;
                let ev = HistoryEvent {
                    id: n + 1,
                    previous_event_id: n,
                    timestamp: Utc::now(),
                    event_type: "ExecutionAborted".into(),
                    state_name: None,
                    details: history::details(&[
                        ("error", Field::OptStr(rec.error.as_deref())),
                        ("cause", Field::OptStr(rec.cause.as_deref())),
                    ]),
                };
                self.inner.store.finish(&rec, &[ev]).await?;
                let _ = self.inner.ends.send(ExecutionDescription::from(&rec));
            }
        }
        Ok(())
    }

    /// GetExecutionHistory.
    pub async fn get_execution_history(
        &self,
        execution_arn: &str,
    ) -> Result<Vec<HistoryEvent>, EngineError> {
        if self.inner.store.get(execution_arn)?.is_none() {
            return Err(EngineError::ExecutionDoesNotExist(
                execution_arn.to_string(),
            ));
        }
        let mut events = self.inner.store.history(execution_arn)?;
        // Events since the last checkpoint of a running execution.
        if let Ok(running) = self.inner.running.lock()
            && let Some(r) = running.get(execution_arn)
            && let Ok(ev) = r.run.events.lock()
        {
            events.extend(ev.pending.iter().cloned());
        }
        Ok(events)
    }

    /// Waits until the execution is no longer RUNNING here and describes it.
    pub async fn wait_for_completion(
        &self,
        execution_arn: &str,
    ) -> Result<ExecutionDescription, EngineError> {
        let done = self
            .inner
            .running
            .lock()
            .map_err(|_| EngineError::Store("lock poisoned".into()))?
            .get(execution_arn)
            .map(|r| r.done.clone());
        if let Some(mut done) = done {
            let _ = done.wait_for(|d| *d).await;
        }
        self.describe_execution(execution_arn).await
    }

    /// Every execution that ends (any status) is sent here.
    pub fn subscribe_ends(&self) -> broadcast::Receiver<ExecutionDescription> {
        self.inner.ends.subscribe()
    }

    /// After a restart: drives every RUNNING execution of the store from its checkpoint.
    pub async fn resume_all(&self) -> Result<usize, EngineError> {
        let records = self.inner.store.running()?;
        let mut n = 0;
        for rec in records {
            let already = self
                .inner
                .running
                .lock()
                .map(|m| m.contains_key(&rec.execution_arn))
                .unwrap_or(true);
            if already {
                continue;
            }
            let machine = match StateMachine::parse(&rec.definition, &Default::default()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(execution = %rec.execution_arn, error = %e, "stored definition no longer parses");
                    let mut failed = rec.clone();
                    failed.status = ExecutionStatus::Failed;
                    failed.error = Some("States.Runtime".into());
                    failed.cause = Some(format!("the stored definition no longer parses: {e}"));
                    failed.stop_date = Some(Utc::now());
                    self.inner.store.finish(&failed, &[]).await?;
                    continue;
                }
            };
            // A waiting callback's token is answerable from now, before its task runs again.
            if let Some(cb) = rec.cursor.as_ref().and_then(|c| c.callback.as_ref()) {
                self.inner.callbacks.reserve(&cb.token);
            }
            let next_id = self.inner.store.history(&rec.execution_arn)?.len() as u64 + 1;
            tracing::info!(execution = %rec.execution_arn, state = ?rec.cursor.as_ref().map(|c| &c.state), "resuming execution");
            self.spawn(rec, machine, next_id);
            n += 1;
        }
        Ok(n)
    }

    /// Stops driving executions and leaves them RUNNING and checkpointed for `resume_all`.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let tasks: Vec<tokio::task::JoinHandle<()>> = match self.inner.running.lock() {
            Ok(mut m) => m.drain().map(|(_, r)| r.task).collect(),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            let _ = t.await;
        }
    }

    /// How many executions this engine is driving now.
    pub fn running_count(&self) -> usize {
        self.inner.running.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// SendTaskSuccess: the `.waitForTaskToken` Task waiting for `token` succeeds with
    /// `output` (at most 256 KiB as JSON). The token is spent: a second answer is
    /// [`EngineError::TaskDoesNotExist`]; a task that timed out is
    /// [`EngineError::TaskTimedOut`]; a token of another form is
    /// [`EngineError::InvalidToken`].
    pub async fn send_task_success(&self, token: &str, output: Value) -> Result<(), EngineError> {
        if !history::within_bytes(&output, history::MAX_PAYLOAD_BYTES) {
            return Err(EngineError::InvalidOutput(format!(
                "the output is over {} bytes",
                history::MAX_PAYLOAD_BYTES
            )));
        }
        self.inner.callbacks.deliver(token, Signal::Success(output))
    }

    /// SendTaskFailure: the task waiting for `token` fails with `error` (at most 256
    /// characters; the name its Retry and Catch match) and `cause` (at most 32,768).
    pub async fn send_task_failure(
        &self,
        token: &str,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<(), EngineError> {
        let (error, cause) = (error.unwrap_or(""), cause.unwrap_or(""));
        if error.chars().count() > 256 {
            return Err(EngineError::InvalidArgument(
                "error is over 256 characters".into(),
            ));
        }
        if cause.chars().count() > 32_768 {
            return Err(EngineError::InvalidArgument(
                "cause is over 32768 characters".into(),
            ));
        }
        self.inner.callbacks.deliver(
            token,
            Signal::Failure {
                error: error.to_string(),
                cause: cause.to_string(),
            },
        )
    }

    /// SendTaskHeartbeat: the task waiting for `token` is alive; its HeartbeatSeconds
    /// start again.
    pub async fn send_task_heartbeat(&self, token: &str) -> Result<(), EngineError> {
        self.inner.callbacks.deliver(token, Signal::Heartbeat)
    }
}

/// How an execution's drive ended.
enum End {
    Done(Result<Value, Failure>),
    TimedOut,
    Aborted,
    Shutdown,
}

/// Drives one execution to its end (or until shutdown), then records how it ended.
async fn drive(inner: Arc<Inner>, run: Arc<Run>, mut rec: Box<ExecutionRecord>) {
    // Taken, not copied: the record's cursor is cleared when the execution ends anyway.
    let cursor = rec.cursor.take().unwrap_or_else(|| Cursor {
        state: run.machine.inner.root.start_at.clone(),
        input: rec.input.clone(),
        wait_until: None,
        variables: None,
        callback: None,
    });
    let deadline = run
        .machine
        .inner
        .timeout_seconds
        .map(|s| rec.start_date + chrono::Duration::seconds(s as i64));
    let resume = Resume::from_cursor(&cursor);
    let body = run.run_branch(
        &run.machine.inner.root,
        cursor.state,
        cursor.input,
        true,
        None,
        resume,
        vars::Vars::new(cursor.variables.unwrap_or_default(), None),
    );
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep((d - Utc::now()).to_std().unwrap_or_default()).await,
            None => std::future::pending::<()>().await,
        }
    };
    let end = tokio::select! {
        r = body => End::Done(r),
        _ = timeout => End::TimedOut,
        _ = run.cancel.cancelled() => End::Aborted,
        _ = inner.shutdown.cancelled() => End::Shutdown,
    };
    if let End::Shutdown = end {
        // Leave it RUNNING: the last checkpoint is where it resumes. Keep the history.
        let events = run.take_events();
        if !events.is_empty()
            && let Some(c) = inner
                .store
                .get(&run.arn)
                .ok()
                .flatten()
                .and_then(|r| r.cursor)
        {
            let _ = inner.store.checkpoint(&run.arn, &c, &events).await;
        }
        return;
    }
    let mut done = rec;
    done.stop_date = Some(Utc::now());
    let (event, details) = ended(&run, end, &mut done);
    run.event(event, None, details);
    let events = run.take_events();
    if let Err(e) = inner.store.finish(&done, &events).await {
        tracing::error!(execution = %run.arn, error = %e, "could not record the end of an execution");
    }
    let _ = inner.ends.send(ExecutionDescription::from(&*done));
}

/// Writes how an execution ended into its record; its last event's type and details.
fn ended(
    run: &Run,
    end: End,
    done: &mut ExecutionRecord,
) -> (&'static str, Box<serde_json::value::RawValue>) {
    let error_details = |done: &ExecutionRecord| {
        history::details(&[
            ("error", Field::OptStr(done.error.as_deref())),
            ("cause", Field::OptStr(done.cause.as_deref())),
        ])
    };
    match end {
        End::Done(Ok(output)) => {
            done.status = ExecutionStatus::Succeeded;
            let details = history::details(&[("output", Field::Json(&output))]);
            done.output = Some(output);
            ("ExecutionSucceeded", details)
        }
        End::Done(Err(f)) => {
            done.status = ExecutionStatus::Failed;
            // A Fail state without Error (or Cause) ends the execution with none, as on AWS.
            done.error = (!f.error.is_empty()).then(|| f.error.clone());
            done.cause = (!f.cause.is_empty()).then(|| f.cause.clone());
            (
                "ExecutionFailed",
                history::details(&[
                    ("error", Field::Str(&f.error)),
                    ("cause", Field::Str(&f.cause)),
                ]),
            )
        }
        End::TimedOut => {
            done.status = ExecutionStatus::TimedOut;
            done.error = Some("States.Timeout".into());
            done.cause = Some("the execution ran past its TimeoutSeconds".into());
            ("ExecutionTimedOut", error_details(done))
        }
        End::Aborted | End::Shutdown => {
            let (e, c) = run
                .stop_reason
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or((None, None));
            done.status = ExecutionStatus::Aborted;
            done.error = e;
            done.cause = c;
            ("ExecutionAborted", error_details(done))
        }
    }
}
