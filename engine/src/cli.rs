//! `longhaul sfn run`: runs one definition to its end from the command line, with Task
//! resources bound to local commands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::{
    Engine, ExecutionStatus, MemoryExecutionStore, SqliteExecutionStore, StateMachine, TaskContext,
    TaskFailure, TaskInvoker,
};

#[derive(Debug, Clone, clap::Args)]
pub struct SfnRunArgs {
    /// The Amazon States Language definition (JSON).
    pub definition: PathBuf,
    /// Execution input: JSON, or @FILE.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// A DefinitionSubstitutions entry: `${NAME}` in the definition becomes VALUE.
    #[arg(long = "subst", value_name = "NAME=VALUE")]
    pub substitutions: Vec<String>,
    /// Binds a Task resource to a command (run with `sh -c`): the task input JSON on its
    /// stdin, its stdout (JSON) is the result, a non-zero exit is a task error.
    #[arg(long = "task", value_name = "RESOURCE=COMMAND")]
    pub tasks: Vec<String>,
    /// Print the execution history (JSON lines) to stderr.
    #[arg(long)]
    pub history: bool,
    /// Checkpoint into this SQLite file; a RUNNING execution of the same definition found
    /// there (a killed earlier run) is resumed instead of starting anew.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// Runs the command; returns the process exit code (0 succeeded, 1 failed/timed out,
/// 2 invalid definition or input).
pub async fn run(args: SfnRunArgs) -> i32 {
    match run_inner(args).await {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            2
        }
    }
}

struct CommandInvoker {
    commands: BTreeMap<String, String>,
}

#[async_trait]
impl TaskInvoker for CommandInvoker {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        _ctx: TaskContext,
    ) -> Result<Value, TaskFailure> {
        let Some(cmd) = self.commands.get(resource) else {
            return Err(TaskFailure::new(
                "States.TaskFailed",
                format!("no command bound to {resource}"),
            ));
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TaskFailure::new("States.TaskFailed", format!("cannot run {cmd:?}: {e}"))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let text = input.to_string();
            // A command that does not read its stdin is fine.
            let _ = stdin.write_all(text.as_bytes()).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| TaskFailure::new("States.TaskFailed", format!("{cmd:?}: {e}")))?;
        if !out.status.success() {
            return Err(TaskFailure::new(
                "States.TaskFailed",
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text.trim()).map_err(|e| {
            TaskFailure::new(
                "States.TaskFailed",
                format!("{cmd:?} printed something that is not JSON: {e}"),
            )
        })
    }
}

async fn run_inner(args: SfnRunArgs) -> Result<i32, String> {
    let text = std::fs::read_to_string(&args.definition)
        .map_err(|e| format!("reading {}: {e}", args.definition.display()))?;
    let mut subs = BTreeMap::new();
    for s in &args.substitutions {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--subst {s:?}: expected NAME=VALUE"))?;
        subs.insert(k.to_string(), v.to_string());
    }
    let mut commands = BTreeMap::new();
    for t in &args.tasks {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| format!("--task {t:?}: expected RESOURCE=COMMAND"))?;
        commands.insert(k.to_string(), v.to_string());
    }
    let machine = StateMachine::parse(&text, &subs)
        .map_err(|e| format!("invalid definition {}:\n{e}", args.definition.display()))?;
    for r in machine.task_resources() {
        if !commands.contains_key(&r) {
            return Err(format!(
                "invalid definition: Task resource {r:?} is bound to nothing (use --task {r}=COMMAND)"
            ));
        }
    }
    let input_text = match args.input.strip_prefix('@') {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("reading {p}: {e}"))?,
        None => args.input.clone(),
    };
    let input: Value =
        serde_json::from_str(&input_text).map_err(|e| format!("--input is not JSON: {e}"))?;

    let store: Arc<dyn crate::ExecutionStore> = match &args.store {
        Some(p) => Arc::new(SqliteExecutionStore::open(p).map_err(|e| e.to_string())?),
        None => Arc::new(MemoryExecutionStore::new()),
    };
    let engine = Engine::new(store.clone(), Arc::new(CommandInvoker { commands }));
    let sm = engine
        .create_state_machine("cli", machine.clone())
        .await
        .map_err(|e| e.to_string())?;
    // A killed earlier run of this same definition is resumed, not started again.
    let previous = store
        .running()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|r| r.definition == machine.definition_text() && r.state_machine_arn == sm);
    let arn = match previous {
        Some(rec) => {
            engine.resume_all().await.map_err(|e| e.to_string())?;
            rec.execution_arn
        }
        None => {
            engine
                .start_execution(&sm, None, input)
                .await
                .map_err(|e| e.to_string())?
                .execution_arn
        }
    };
    let done = engine
        .wait_for_completion(&arn)
        .await
        .map_err(|e| e.to_string())?;
    if args.history {
        for e in engine
            .get_execution_history(&arn)
            .await
            .map_err(|e| e.to_string())?
        {
            eprintln!("{}", serde_json::to_string(&e).unwrap_or_default());
        }
    }
    match done.status {
        ExecutionStatus::Succeeded => {
            println!("{}", done.output.unwrap_or(Value::Null));
            Ok(0)
        }
        status => {
            println!(
                "{}",
                json!({"status": status.as_str(), "error": done.error, "cause": done.cause})
            );
            Ok(1)
        }
    }
}
