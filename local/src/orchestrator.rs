//! The Orchestrator port on the embedded engine: `statemachine/job.asl.json` (composed from
//! the base and every job type folder) runs in `longhaul-engine`, its Task resources bound
//! to the steps — Rust ones called in process, Python/Node/command ones run as subprocesses
//! (`runners`) — and a tracker that follows every execution that ends, as the EventBridge
//! rule does on AWS.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use longhaul_catalog::{BASE_STEPS, Catalog, StepBinding};
use longhaul_engine::{
    Engine, EngineError, ExecutionDescription, ExecutionStatus, ExecutionStore, StateMachine,
    TaskContext, TaskFailure, TaskInvoker,
};
use longhaul_jobs::workflow::ExecutionStatus as JobExecutionStatus;
use longhaul_jobs::{
    CallbackError, ExecutionEvent, ExecutionRef, ExecutionStatusChange, Job, Orchestrator,
    OrchestratorError, Progress, Runtime, WorkflowInput,
};
use longhaul_steps::{StepContext, StepRegistry};

use crate::runners;

/// The state machine's name in the embedded engine.
pub const STATE_MACHINE_NAME: &str = "longhaul-job";

/// ARN prefix of the in-process "functions": `…:function:longhaul-<AwsName>`.
const FUNCTION_ARN_PREFIX: &str = "arn:aws:lambda:local:000000000000:function:longhaul-";

/// Every program the catalog's steps need on PATH is there; else the message names the step.
pub fn check_interpreters(catalog: &Catalog) -> Result<(), String> {
    for b in catalog.bindings() {
        if let Some(program) = runners::interpreter(b.def.runtime)
            && !runners::on_path(program)
        {
            return Err(format!(
                "job type {}: step {} ({}) needs {program} on PATH, and it is not there",
                b.job_type, b.step, b.def.runtime
            ));
        }
    }
    Ok(())
}

/// What a Task resource runs.
#[derive(Debug, Clone)]
enum Target {
    /// A step compiled into longhaul, by name.
    Rust(String),
    /// A Python, Node or command step of a job type folder.
    External(StepBinding),
}

/// The steps of a catalog, bound to the workflow's Task resources: the engine's
/// [`TaskInvoker`].
pub struct LocalSteps {
    registry: StepRegistry,
    ctx: StepContext,
    targets: HashMap<String, Target>,
    substitutions: BTreeMap<String, String>,
}

impl LocalSteps {
    pub fn new(catalog: &Catalog, registry: StepRegistry, ctx: StepContext) -> LocalSteps {
        let mut targets = HashMap::new();
        let mut substitutions = BTreeMap::new();
        for (subst, step) in BASE_STEPS {
            let arn = format!(
                "{FUNCTION_ARN_PREFIX}{}",
                subst.trim_end_matches("FunctionArn")
            );
            substitutions.insert(subst.to_string(), arn.clone());
            targets.insert(arn, Target::Rust(step.to_string()));
        }
        for b in catalog.bindings() {
            let arn = format!("{FUNCTION_ARN_PREFIX}{}", b.aws_name);
            substitutions.insert(b.substitution.clone(), arn.clone());
            let target = match (b.def.runtime, &b.def.handler) {
                (Runtime::Rust, Some(h)) => Target::Rust(h.clone()),
                _ => Target::External(b.clone()),
            };
            targets.insert(arn, target);
        }
        LocalSteps {
            registry,
            ctx,
            targets,
            substitutions,
        }
    }

    /// The DefinitionSubstitutions that bind the workflow's Task resources to the steps.
    pub fn substitutions(&self) -> &BTreeMap<String, String> {
        &self.substitutions
    }

    /// Parses and validates a workflow definition with these substitutions, and checks that
    /// every Task resource is bound to a step.
    pub fn load_definition(&self, definition_json: &str) -> Result<StateMachine, String> {
        let machine = StateMachine::parse(definition_json, &self.substitutions)
            .map_err(|e| format!("invalid workflow definition:\n{e}"))?;
        for resource in machine.task_resources() {
            if !self.targets.contains_key(&resource) {
                return Err(format!(
                    "invalid workflow definition: Task resource {resource:?} is not bound to a step (known: {})",
                    self.substitutions
                        .keys()
                        .map(|s| format!("${{{s}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(machine)
    }

    async fn run_external(
        &self,
        b: &StepBinding,
        input: serde_json::Value,
        ctx: &TaskContext,
    ) -> Result<serde_json::Value, TaskFailure> {
        let Some(dir) = &b.dir else {
            return Err(TaskFailure::new(
                "States.TaskFailed",
                format!("step {} of {} has no folder to run in", b.step, b.job_type),
            ));
        };
        let job_id = ctx.execution_name.clone();
        let store = self.ctx.store.clone();
        let env = [
            (
                "AWS_LAMBDA_FUNCTION_NAME",
                format!("longhaul-{}", b.aws_name),
            ),
            ("LONGHAUL_REQUEST_ID", uuid::Uuid::new_v4().to_string()),
        ];
        let on_progress = move |p: longhaul_steps::progress::ProgressLine| {
            let store = store.clone();
            let job_id = job_id.clone();
            // Progress is advice: a lost update is overwritten by the next one.
            tokio::spawn(async move {
                let progress = Progress {
                    percent: p.percent,
                    message: p.message,
                };
                if let Err(e) = store.set_progress(&job_id, &progress, Utc::now()).await {
                    tracing::warn!(job_id, error = %e, "recording a step's progress");
                }
            });
        };
        runners::run(dir, &b.step, &b.def, &input, &env, on_progress)
            .await
            .map_err(|f| TaskFailure::new(&f.error, f.cause))
    }
}

#[async_trait]
impl TaskInvoker for LocalSteps {
    async fn invoke(
        &self,
        resource: &str,
        input: serde_json::Value,
        ctx: TaskContext,
    ) -> Result<serde_json::Value, TaskFailure> {
        let Some(target) = self.targets.get(resource) else {
            return Err(TaskFailure::new(
                "Lambda.ResourceNotFoundException",
                format!("no function {resource}"),
            ));
        };
        tracing::debug!(resource, execution = %ctx.execution_name, state = %ctx.state_name, "task");
        match target {
            Target::Rust(name) => self
                .registry
                .run(&self.ctx, name, input)
                .await
                .map_err(|e| TaskFailure::new(&e.error, e.cause)),
            Target::External(b) => self.run_external(b, input, &ctx).await,
        }
    }
}

/// The Orchestrator port over the embedded engine.
#[derive(Clone)]
pub struct EngineOrchestrator {
    engine: Engine,
    state_machine_arn: String,
}

impl EngineOrchestrator {
    /// Registers the workflow in `engine` (whose invoker should be a [`LocalSteps`]).
    pub async fn new(
        engine: Engine,
        machine: StateMachine,
    ) -> Result<EngineOrchestrator, EngineError> {
        let state_machine_arn = engine
            .create_state_machine(STATE_MACHINE_NAME, machine)
            .await?;
        Ok(EngineOrchestrator {
            engine,
            state_machine_arn,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    /// Builds an engine over `store` with the steps bound and HTTP Tasks sent through
    /// `http`, and the orchestrator on it.
    pub async fn with_steps(
        store: Arc<dyn ExecutionStore>,
        steps: Arc<LocalSteps>,
        http: Arc<dyn longhaul_engine::HttpInvoker>,
        machine: StateMachine,
    ) -> Result<EngineOrchestrator, EngineError> {
        let engine = Engine::with_http(store, steps, http);
        EngineOrchestrator::new(engine, machine).await
    }

    /// Follows every execution that ends, as the EventBridge rule → tracker does on AWS.
    /// Runs until the engine is dropped.
    pub fn spawn_tracker(&self, ctx: StepContext) -> tokio::task::JoinHandle<()> {
        let mut ends = self.engine.subscribe_ends();
        tokio::spawn(async move {
            loop {
                match ends.recv().await {
                    Ok(desc) => track(&ctx, &desc).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "execution tracker lagged");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }
}

async fn track(ctx: &StepContext, desc: &ExecutionDescription) {
    if matches!(
        desc.status,
        ExecutionStatus::Running | ExecutionStatus::Succeeded
    ) {
        return;
    }
    let change = ExecutionStatusChange {
        execution_arn: desc.execution_arn.clone(),
        name: desc.name.clone(),
        status: match desc.status {
            ExecutionStatus::Running => JobExecutionStatus::Running,
            ExecutionStatus::Succeeded => JobExecutionStatus::Succeeded,
            ExecutionStatus::Failed => JobExecutionStatus::Failed,
            ExecutionStatus::TimedOut => JobExecutionStatus::TimedOut,
            ExecutionStatus::Aborted => JobExecutionStatus::Aborted,
        },
        error: desc.error.clone(),
        cause: desc.cause.clone(),
    };
    if let Err(e) = longhaul_steps::track_status_change(ctx, change).await {
        tracing::error!(execution = %desc.name, error = %e, "status-change tracker failed");
    }
}

/// The engine's refusal of a callback answer, in the port's terms.
fn callback_error(e: EngineError) -> CallbackError {
    match e {
        EngineError::InvalidToken(m) => CallbackError::InvalidToken(m),
        EngineError::TaskDoesNotExist => CallbackError::TaskDoesNotExist(e.to_string()),
        EngineError::TaskTimedOut => CallbackError::TaskTimedOut(e.to_string()),
        EngineError::InvalidOutput(m) | EngineError::InvalidArgument(m) => {
            CallbackError::Invalid(m)
        }
        other => CallbackError::Orchestrator(orchestrator_error(other)),
    }
}

/// An engine error the port has no word of its own for.
fn orchestrator_error(e: EngineError) -> OrchestratorError {
    match e {
        EngineError::Store(m) => OrchestratorError::Unavailable(m),
        EngineError::ExecutionDoesNotExist(a) => OrchestratorError::NotFound(a),
        other => OrchestratorError::Other(other.to_string()),
    }
}

fn execution_ref(name: &str, arn: &str) -> ExecutionRef {
    ExecutionRef {
        name: name.to_string(),
        arn: Some(arn.to_string()),
        console_url: None,
    }
}

#[async_trait]
impl Orchestrator for EngineOrchestrator {
    async fn start(&self, job: &Job) -> Result<ExecutionRef, OrchestratorError> {
        let input = serde_json::to_value(WorkflowInput::for_job(job))
            .map_err(|e| OrchestratorError::Other(e.to_string()))?;
        match self
            .engine
            .start_execution(&self.state_machine_arn, Some(&job.job_id), input)
            .await
        {
            Ok(desc) => Ok(execution_ref(&desc.name, &desc.execution_arn)),
            // A retried start of the same job: its execution is already there.
            Err(EngineError::ExecutionAlreadyExists { execution_arn }) => {
                Ok(execution_ref(&job.job_id, &execution_arn))
            }
            Err(e) => Err(orchestrator_error(e)),
        }
    }

    async fn stop(
        &self,
        execution: &ExecutionRef,
        error: &str,
        cause: &str,
    ) -> Result<(), OrchestratorError> {
        let Some(arn) = &execution.arn else {
            // Never started: nothing to stop.
            return Ok(());
        };
        match self
            .engine
            .stop_execution(arn, Some(error), Some(cause))
            .await
        {
            Ok(()) => Ok(()),
            Err(EngineError::ExecutionDoesNotExist(_)) => Ok(()),
            Err(e) => Err(orchestrator_error(e)),
        }
    }

    async fn history(
        &self,
        execution: &ExecutionRef,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<ExecutionEvent>, OrchestratorError> {
        let Some(arn) = &execution.arn else {
            return Ok(Vec::new());
        };
        let events = self
            .engine
            .get_execution_history(arn)
            .await
            .map_err(orchestrator_error)?;
        Ok(events
            .into_iter()
            .filter(|e| e.id > after_id)
            .take(limit)
            .map(|e| ExecutionEvent {
                details: e.details_value(),
                id: e.id,
                timestamp: e.timestamp,
                event_type: e.event_type,
                state_name: e.state_name,
            })
            .collect())
    }

    async fn send_task_success(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> Result<(), CallbackError> {
        self.engine
            .send_task_success(token, output.clone())
            .await
            .map_err(callback_error)
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError> {
        self.engine
            .send_task_failure(token, Some(error), Some(cause))
            .await
            .map_err(callback_error)
    }

    async fn send_task_heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        self.engine
            .send_task_heartbeat(token)
            .await
            .map_err(callback_error)
    }
}
