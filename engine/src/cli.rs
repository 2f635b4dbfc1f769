//! `longhaul sfn run`: runs one definition to its end from the command line, with Task
//! resources bound to local commands and HTTP Tasks sent through the host's
//! [`HttpInvoker`]; `longhaul sfn conformance`: measures the engine against recorded
//! outcomes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::{
    Engine, ExecutionStatus, HttpInvoker, MemoryExecutionStore, SqliteExecutionStore, StateMachine,
    TaskContext, TaskFailure, TaskInvoker,
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
    /// Let HTTP Tasks use http and reach loopback/private addresses. For local testing only:
    /// without it an HTTP Task reaches https endpoints on public addresses only.
    #[arg(long)]
    pub allow_insecure_http: bool,
}

/// Runs the command with `http` sending HTTP Tasks' requests (the host's client, under its
/// outbound policy); returns the process exit code (0 succeeded, 1 failed/timed out,
/// 2 invalid definition or input).
pub async fn run(args: SfnRunArgs, http: Arc<dyn HttpInvoker>) -> i32 {
    match run_inner(args, http).await {
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

async fn run_inner(args: SfnRunArgs, http: Arc<dyn HttpInvoker>) -> Result<i32, String> {
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
    if let Some(state) = machine.callback_state() {
        return Err(format!(
            "invalid definition: state {state:?} waits for a task token (.waitForTaskToken), and sfn run has no way to receive one; run the workflow under `longhaul serve`, whose API takes the answer (POST /task-tokens/TOKEN/success)"
        ));
    }
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
    let engine = Engine::with_http(store.clone(), Arc::new(CommandInvoker { commands }), http);
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

#[derive(Debug, Clone, clap::Args)]
pub struct SfnConformanceArgs {
    /// A JSON array of cases: `{id, feature, definition, input, expect: {status, output?,
    /// error?, cause?}}` (e.g. a corpus of outcomes recorded on AWS).
    pub cases: PathBuf,
    /// List each failing case's id and why it failed.
    #[arg(long)]
    pub failures: bool,
    /// Cases run at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

/// Runs the command; returns the process exit code (0: the cases ran, whatever passed;
/// 2: the file could not be read).
pub async fn conformance(args: SfnConformanceArgs) -> i32 {
    match conformance_inner(args).await {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("error: {msg}");
            2
        }
    }
}

/// One case of a conformance file, as read (fields checked when it runs).
#[derive(Debug, serde::Deserialize)]
struct ConformanceCase {
    id: String,
    feature: String,
    definition: Value,
    #[serde(default)]
    input: Value,
    expect: Value,
}

/// A Task invoker for definitions that should have no Task: every call fails.
struct NoTasks;

#[async_trait]
impl TaskInvoker for NoTasks {
    async fn invoke(
        &self,
        resource: &str,
        _input: Value,
        _ctx: TaskContext,
    ) -> Result<Value, TaskFailure> {
        Err(TaskFailure::new(
            "States.TaskFailed",
            format!("conformance cases have no tasks; {resource} was called"),
        ))
    }
}

/// The features whose cases need JSONata or variables (the rest are JSONPath-only).
const NEWER_FEATURES: &[&str] = &["jsonata", "variables"];

async fn conformance_inner(args: SfnConformanceArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.cases)
        .map_err(|e| format!("reading {}: {e}", args.cases.display()))?;
    let cases: Vec<ConformanceCase> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a JSON array of cases: {e}", args.cases.display()))?;
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), Arc::new(NoTasks));
    use futures::StreamExt;
    let outcomes: Vec<(usize, Result<(), String>)> =
        futures::stream::iter(cases.iter().enumerate().map(|(i, c)| {
            let engine = engine.clone();
            async move { (i, run_conformance_case(&engine, i, c).await) }
        }))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let mut results: Vec<Option<Result<(), String>>> = vec![None; cases.len()];
    for (i, r) in outcomes {
        results[i] = Some(r);
    }
    // feature -> (passed, total)
    let mut table: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (c, r) in cases.iter().zip(&results) {
        let e = table.entry(c.feature.as_str()).or_default();
        e.1 += 1;
        match r {
            Some(Ok(())) => e.0 += 1,
            Some(Err(why)) => failures.push((c.id.as_str(), why.clone())),
            None => failures.push((c.id.as_str(), "did not run".to_string())),
        }
    }
    println!("{:<12} {:>6} {:>6}", "feature", "passed", "total");
    for (f, (p, t)) in &table {
        println!("{f:<12} {p:>6} {t:>6}");
    }
    let sum = |pick: &dyn Fn(&str) -> bool| {
        table
            .iter()
            .filter(|(f, _)| pick(f))
            .fold((0, 0), |(p, t), (_, (p2, t2))| (p + p2, t + t2))
    };
    let pct = |(p, t): (usize, usize)| {
        if t == 0 {
            100.0
        } else {
            p as f64 * 100.0 / t as f64
        }
    };
    let all = sum(&|_| true);
    let old = sum(&|f| !NEWER_FEATURES.contains(&f));
    let new = sum(&|f| NEWER_FEATURES.contains(&f));
    println!(
        "all {}/{} ({:.1}%); JSONPath-only {}/{} ({:.1}%); JSONata + Variables {}/{} ({:.1}%)",
        all.0,
        all.1,
        pct(all),
        old.0,
        old.1,
        pct(old),
        new.0,
        new.1,
        pct(new)
    );
    if args.failures {
        for (id, why) in failures {
            println!("FAIL {id}: {}", clip(&why.replace('\n', "; ")));
        }
    }
    Ok(())
}

/// Runs one case and compares its outcome with `expect`: the status; the output (numbers
/// compared by value); the error (`null`: none); the cause when given.
async fn run_conformance_case(
    engine: &Engine,
    index: usize,
    case: &ConformanceCase,
) -> Result<(), String> {
    let want_status = case.expect["status"]
        .as_str()
        .ok_or("the case's expect.status is not a string")?;
    let machine = match StateMachine::parse(&case.definition.to_string(), &BTreeMap::new()) {
        Ok(m) => m,
        Err(e) => return Err(format!("definition rejected: {e}")),
    };
    let sm = engine
        .create_state_machine(&format!("case-{index}"), machine)
        .await
        .map_err(|e| e.to_string())?;
    let exec = engine
        .start_execution(&sm, None, case.input.clone())
        .await
        .map_err(|e| e.to_string())?;
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        engine.wait_for_completion(&exec.execution_arn),
    )
    .await
    .map_err(|_| "did not finish within 60 s".to_string())?
    .map_err(|e| e.to_string())?;
    let got = json!({"status": done.status.as_str(), "output": done.output, "error": done.error, "cause": done.cause});
    if done.status.as_str() != want_status {
        return Err(format!("expected {want_status}, got {got}"));
    }
    if let Some(want) = case.expect.get("output")
        && !same_json(want, done.output.as_ref().unwrap_or(&Value::Null))
    {
        return Err(format!("output {} != expected {want}", got["output"]));
    }
    if let Some(want) = case.expect.get("error")
        && want.as_str() != done.error.as_deref()
    {
        return Err(format!(
            "error {} != expected {want} (cause {})",
            got["error"], got["cause"]
        ));
    }
    if let Some(want) = case.expect.get("cause")
        && want.as_str() != done.cause.as_deref()
    {
        return Err(format!("cause {} != expected {want}", got["cause"]));
    }
    Ok(())
}

/// At most 400 characters of `s` (a failing case's output can be 256 KiB).
fn clip(s: &str) -> String {
    match s.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
