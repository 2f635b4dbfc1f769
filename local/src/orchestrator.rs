//! The Orchestrator port on the embedded engine: `statemachine/job.asl.json` runs in
//! `longhaul-engine`, its Task resources bound to the worker handlers in process, and a
//! tracker that follows every execution that ends, as the EventBridge rule does on AWS.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use longhaul_engine::{
    Engine, EngineError, ExecutionDescription, ExecutionStatus, ExecutionStore, StateMachine,
    TaskContext, TaskFailure, TaskInvoker,
};
use longhaul_jobs::{
    ExecutionEvent, ExecutionRef, ExecutionStatusChange, Job, Orchestrator, OrchestratorError,
    WorkflowInput,
};
use longhaul_workers::{FUNCTIONS, WorkerContext};

/// The workflow definition shipped in the binary.
pub const DEFAULT_DEFINITION: &str = include_str!("../../statemachine/job.asl.json");

/// The state machine's name in the embedded engine.
pub const STATE_MACHINE_NAME: &str = "longhaul-job";

/// ARN prefix of the in-process "functions": `…:function:longhaul-<handler>`.
const FUNCTION_ARN_PREFIX: &str = "arn:aws:lambda:local:000000000000:function:longhaul-";

/// The DefinitionSubstitutions that bind the workflow's Task resources to the handlers.
pub fn local_substitutions() -> BTreeMap<String, String> {
    FUNCTIONS
        .iter()
        .map(|(subst, handler)| (subst.to_string(), format!("{FUNCTION_ARN_PREFIX}{handler}")))
        .collect()
}

/// Parses and validates a workflow definition with the local substitutions, and checks that
/// every Task resource is bound to a handler.
pub fn load_definition(definition_json: &str) -> Result<StateMachine, String> {
    let machine = StateMachine::parse(definition_json, &local_substitutions())
        .map_err(|e| format!("invalid workflow definition:\n{e}"))?;
    for resource in machine.task_resources() {
        if handler_for(&resource).is_none() {
            return Err(format!(
                "invalid workflow definition: Task resource {resource:?} is not bound to a worker handler (known: {})",
                FUNCTIONS
                    .iter()
                    .map(|(s, _)| format!("${{{s}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(machine)
}

fn handler_for(resource: &str) -> Option<&'static str> {
    let name = resource.strip_prefix(FUNCTION_ARN_PREFIX)?;
    FUNCTIONS.iter().map(|(_, h)| *h).find(|h| *h == name)
}

/// Binds Task resources to the worker handlers.
pub struct WorkerInvoker {
    ctx: WorkerContext,
}

impl WorkerInvoker {
    pub fn new(ctx: WorkerContext) -> WorkerInvoker {
        WorkerInvoker { ctx }
    }
}

#[async_trait]
impl TaskInvoker for WorkerInvoker {
    async fn invoke(
        &self,
        resource: &str,
        input: serde_json::Value,
        ctx: TaskContext,
    ) -> Result<serde_json::Value, TaskFailure> {
        let Some(handler) = handler_for(resource) else {
            return Err(TaskFailure::new(
                "Lambda.ResourceNotFoundException",
                format!("no function {resource}"),
            ));
        };
        tracing::debug!(handler, execution = %ctx.execution_name, state = %ctx.state_name, "task");
        longhaul_workers::dispatch(&self.ctx, handler, input)
            .await
            .map_err(|e| TaskFailure::new(&e.error, e.cause))
    }
}

/// The Orchestrator port over the embedded engine.
#[derive(Clone)]
pub struct EngineOrchestrator {
    engine: Engine,
    state_machine_arn: String,
}

impl EngineOrchestrator {
    /// Registers the workflow in `engine` (whose invoker should be a [`WorkerInvoker`]).
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

    /// Builds an engine over `store` with the workers bound, and the orchestrator on it.
    pub async fn with_workers(
        store: Arc<dyn ExecutionStore>,
        ctx: WorkerContext,
        machine: StateMachine,
    ) -> Result<EngineOrchestrator, EngineError> {
        let engine = Engine::new(store, Arc::new(WorkerInvoker::new(ctx)));
        EngineOrchestrator::new(engine, machine).await
    }

    /// Follows every execution that ends, as the EventBridge rule → tracker does on AWS.
    /// Runs until the engine is dropped.
    pub fn spawn_tracker(&self, ctx: WorkerContext) -> tokio::task::JoinHandle<()> {
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

async fn track(ctx: &WorkerContext, desc: &ExecutionDescription) {
    if matches!(
        desc.status,
        ExecutionStatus::Running | ExecutionStatus::Succeeded
    ) {
        return;
    }
    let change = ExecutionStatusChange {
        execution_arn: desc.execution_arn.clone(),
        name: desc.name.clone(),
        status: desc.status.as_str().to_string(),
        error: desc.error.clone(),
        cause: desc.cause.clone(),
    };
    if let Err(e) = longhaul_workers::track_status_change(ctx, change).await {
        tracing::error!(execution = %desc.name, error = %e, "status-change tracker failed");
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
            Err(EngineError::Store(m)) => Err(OrchestratorError::Unavailable(m)),
            Err(e) => Err(OrchestratorError::Other(e.to_string())),
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
            Err(EngineError::Store(m)) => Err(OrchestratorError::Unavailable(m)),
            Err(e) => Err(OrchestratorError::Other(e.to_string())),
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
        let events = match self.engine.get_execution_history(arn).await {
            Ok(e) => e,
            Err(EngineError::ExecutionDoesNotExist(a)) => {
                return Err(OrchestratorError::NotFound(a));
            }
            Err(EngineError::Store(m)) => return Err(OrchestratorError::Unavailable(m)),
            Err(e) => return Err(OrchestratorError::Other(e.to_string())),
        };
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
}
