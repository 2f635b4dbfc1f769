//! Steps in Python, Node or a command, run on one machine as subprocesses with Lambda's
//! contract: the Task's input is the event, the return value (stdout for a command) is the
//! output, an exception fails the task with error = its class name and cause = Lambda's
//! `{"errorMessage", "errorType", "stackTrace"}` — so the workflow's Retry and Catch match
//! it by name, as on AWS.
//!
//! Each runs in its type's folder (Lambda's `/var/task`), with the server's environment minus
//! `LONGHAUL_*`, killed when it outlives its `timeoutSeconds` (→ `States.Timeout`) or when
//! the server dies. What it prints goes to stderr (Lambda's log); a stderr line
//! `{"longhaulProgress": {"percent", "message"}}` updates the job's progress at once, and the
//! last lines of stderr are kept in a failure's cause.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use longhaul_jobs::{Runtime, StepDef};
use longhaul_steps::progress::{ProgressLine, parse_progress};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A step's output, at most (Lambda's synchronous response limit).
pub const MAX_OUTPUT_BYTES: usize = 6 * 1024 * 1024;
/// The end of stderr kept for a failure's cause.
const STDERR_TAIL_BYTES: usize = 4096;

/// Runs Python steps: imports `module`, calls `function(event, context)`, prints the
/// outcome as one JSON object on the real stdout (user prints go to stderr, as on Lambda).
const PYTHON_RUNNER: &str = r#"
import importlib, json, os, sys, time, traceback
out = sys.stdout
sys.stdout = sys.stderr
spec = sys.argv[1]
module_name, _, function_name = spec.rpartition(".")
sys.path.insert(0, os.getcwd())
deadline = time.time() + float(sys.argv[2])
class Context:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    aws_request_id = os.environ.get("LONGHAUL_REQUEST_ID", "")
    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.time()) * 1000))
def fail(e):
    return {"errorType": type(e).__name__, "errorMessage": str(e),
            "stackTrace": traceback.format_exception(type(e), e, e.__traceback__)[-5:]}
try:
    event = json.load(sys.stdin)
    handler = getattr(importlib.import_module(module_name), function_name)
    result = {"result": handler(event, Context())}
except Exception as e:
    result = fail(e)
try:
    text = json.dumps(result)
except (TypeError, ValueError) as e:
    text = json.dumps({"errorType": "Runtime.MarshalError",
                       "errorMessage": "Unable to marshal response: " + str(e), "stackTrace": []})
sys.stderr.flush()
out.write(text)
out.flush()
"#;

/// Runs Node steps (ES modules or CommonJS): the same protocol as the Python runner.
const NODE_RUNNER: &str = r#"
import fs from "node:fs";
import path from "node:path";
import util from "node:util";
import { pathToFileURL } from "node:url";
const spec = process.argv[1];
const deadline = Date.now() + Number(process.argv[2]) * 1000;
const dot = spec.lastIndexOf(".");
const modulePath = spec.slice(0, dot), functionName = spec.slice(dot + 1);
const toStderr = (...a) => process.stderr.write(util.format(...a) + "\n");
console.log = console.info = console.debug = console.warn = console.error = toStderr;
const write = (obj) => new Promise((done) => fs.write(1, JSON.stringify(obj), () => done()));
const fail = (e) => ({
  errorType: (e && e.name) || "Error",
  errorMessage: (e && e.message) || String(e),
  stackTrace: String((e && e.stack) || "").split("\n").slice(0, 6),
});
let result;
try {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const file = ["mjs", "js", "cjs"].map((e) => path.resolve(`${modulePath}.${e}`)).find((f) => fs.existsSync(f));
  const mod = await import(pathToFileURL(file).href);
  const fn = mod[functionName] ?? (mod.default && mod.default[functionName]);
  if (typeof fn !== "function") throw Object.assign(new Error(`${spec} is not a function`), { name: "Runtime.HandlerNotFound" });
  const context = {
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME || "",
    awsRequestId: process.env.LONGHAUL_REQUEST_ID || "",
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  const value = await fn(event, context);
  result = { result: value === undefined ? null : value };
} catch (e) {
  result = fail(e);
}
try { await write(result); } catch (e) {
  await write({ errorType: "Runtime.MarshalError", errorMessage: "Unable to marshal response: " + e.message, stackTrace: [] });
}
"#;

/// A step's failure: Step Functions' error name and cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub error: String,
    pub cause: String,
}

impl StepFailure {
    fn new(error: &str, cause: impl Into<String>) -> StepFailure {
        StepFailure {
            error: error.to_string(),
            cause: cause.into(),
        }
    }
}

/// The program that runs a step of this runtime, if it needs one on PATH (for the check at
/// start-up).
pub fn interpreter(runtime: Runtime) -> Option<&'static str> {
    match runtime {
        r if r.is_python() => Some("python3"),
        Runtime::Nodejs22 => Some("node"),
        _ => None,
    }
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| {
            let f = p.join(program);
            f.is_file()
                && std::fs::metadata(&f)
                    .map(|m| {
                        use std::os::unix::fs::PermissionsExt;
                        m.permissions().mode() & 0o111 != 0
                    })
                    .unwrap_or(false)
        })
    })
}

/// Runs one step in `dir` with `event`; `on_progress` is called for each progress line.
pub async fn run(
    dir: &Path,
    step: &str,
    def: &StepDef,
    event: &Value,
    env: &[(&str, String)],
    on_progress: impl Fn(ProgressLine) + Send + Sync,
) -> Result<Value, StepFailure> {
    let timeout = Duration::from_secs(u64::from(def.timeout_seconds()));
    let mut cmd = command_for(def, timeout)?;
    cmd.current_dir(dir)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| !k.starts_with("LONGHAUL_")))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout stops what it started too.
        .process_group(0);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        StepFailure::new(
            "States.TaskFailed",
            format!(
                "step {step}: cannot start {:?}: {e}",
                cmd.as_std().get_program()
            ),
        )
    })?;
    // Whatever ends this run early — its timeout, or the execution stopped (cancelled, timed
    // out) dropping this future — stops the step and what it started.
    let group = GroupKill(child.id());
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let event_text = event.to_string();
    let feed = async move {
        if let Some(mut s) = stdin.take() {
            // A step that does not read its event is fine.
            let _ = s.write_all(event_text.as_bytes()).await;
        }
    };
    let read_out = async move {
        let mut buf = Vec::new();
        if let Some(out) = stdout {
            // One byte past the limit tells "too large" from "exactly at the limit".
            let _ = out
                .take(MAX_OUTPUT_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .await;
        }
        buf
    };
    let read_err = read_stderr(stderr, &on_progress);
    let work = async {
        let (_, out, tail) = tokio::join!(feed, read_out, read_err);
        let status = child.wait().await;
        (status, out, tail)
    };
    let (status, out, tail) = match tokio::time::timeout(timeout, work).await {
        Ok(done) => done,
        Err(_) => {
            drop(group);
            return Err(StepFailure::new(
                "States.Timeout",
                format!(
                    "step {step} ran past its timeoutSeconds ({} s) and was stopped",
                    timeout.as_secs()
                ),
            ));
        }
    };
    // The step has exited; what it left running in its group is stopped too.
    drop(group);
    let status = status.map_err(|e| StepFailure::new("States.TaskFailed", e.to_string()))?;
    outcome(step, def.runtime, status, &out, &tail)
}

fn command_for(def: &StepDef, timeout: Duration) -> Result<tokio::process::Command, StepFailure> {
    let handler = def.handler.clone().unwrap_or_default();
    let secs = timeout.as_secs().to_string();
    Ok(match def.runtime {
        Runtime::Python312 | Runtime::Python313 => {
            let mut c = tokio::process::Command::new("python3");
            c.args(["-c", PYTHON_RUNNER, &handler, &secs]);
            c
        }
        Runtime::Nodejs22 => {
            let mut c = tokio::process::Command::new("node");
            c.args([
                "--input-type=module",
                "-e",
                NODE_RUNNER,
                "--",
                &handler,
                &secs,
            ]);
            c
        }
        Runtime::Command => {
            let argv = def.command.clone().unwrap_or_default();
            let Some((program, args)) = argv.split_first() else {
                return Err(StepFailure::new(
                    "States.TaskFailed",
                    "the command is empty",
                ));
            };
            let mut c = tokio::process::Command::new(program);
            c.args(args);
            c
        }
        Runtime::Rust => {
            return Err(StepFailure::new(
                "States.TaskFailed",
                "a Rust step runs in process, not as a subprocess",
            ));
        }
    })
}

/// Reads stderr line by line: progress lines are reported, the rest echoed to the server's
/// log at debug level; returns the last [`STDERR_TAIL_BYTES`] of it.
async fn read_stderr(
    stderr: Option<tokio::process::ChildStderr>,
    on_progress: &(impl Fn(ProgressLine) + Send + Sync),
) -> String {
    let Some(stderr) = stderr else {
        return String::new();
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut tail = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(p) = parse_progress(&line) {
            on_progress(p);
            continue;
        }
        tracing::debug!(target: "longhaul::step", "{line}");
        tail.push_str(&line);
        tail.push('\n');
        if tail.len() > 2 * STDERR_TAIL_BYTES {
            let mut cut = tail.len() - STDERR_TAIL_BYTES;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail.drain(..cut);
        }
    }
    if tail.len() > STDERR_TAIL_BYTES {
        let mut cut = tail.len() - STDERR_TAIL_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail.drain(..cut);
    }
    tail
}

/// The step's result, or its failure as Lambda would report it.
fn outcome(
    step: &str,
    runtime: Runtime,
    status: std::process::ExitStatus,
    out: &[u8],
    stderr_tail: &str,
) -> Result<Value, StepFailure> {
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(StepFailure::new(
            "Runtime.ResponseTooLarge",
            format!(
                "step {step}'s output is over {MAX_OUTPUT_BYTES} bytes; write large results as files under outputUri"
            ),
        ));
    }
    let text = String::from_utf8_lossy(out);
    let text = text.trim();
    if runtime == Runtime::Command {
        if !status.success() {
            return Err(command_failure(step, status, stderr_tail));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(text).map_err(|e| {
            StepFailure::new(
                "Runtime.InvalidOutput",
                format!(
                    "step {step} printed output that is not JSON ({e}); it began: {}",
                    preview(text)
                ),
            )
        });
    }
    // Python and Node: the runner prints one JSON object; without it the interpreter died.
    let Ok(reply) = serde_json::from_str::<Value>(text) else {
        return Err(StepFailure::new(
            "Runtime.ExitError",
            format!(
                "step {step} exited ({status}) without an answer{}",
                stderr_suffix(stderr_tail)
            ),
        ));
    };
    if let Some(result) = reply.get("result") {
        return Ok(result.clone());
    }
    let error = reply
        .get("errorType")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .unwrap_or("Error");
    let mut cause = json!({
        "errorMessage": reply.get("errorMessage").cloned().unwrap_or(Value::from("")),
        "errorType": error,
        "stackTrace": reply.get("stackTrace").cloned().unwrap_or(Value::Array(Vec::new())),
    });
    if !stderr_tail.trim().is_empty() {
        cause["stderr"] = Value::from(stderr_tail.trim_end());
    }
    Err(StepFailure::new(error, cause.to_string()))
}

/// A command's non-zero exit: the error and cause it printed as the last line of stderr
/// (`{"error", "cause"}`), or `States.TaskFailed` with its exit status and stderr.
fn command_failure(step: &str, status: std::process::ExitStatus, stderr_tail: &str) -> StepFailure {
    let last = stderr_tail.lines().rev().find(|l| !l.trim().is_empty());
    if let Some(v) = last.and_then(|l| serde_json::from_str::<Value>(l.trim()).ok())
        && let Some(error) = v
            .get("error")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
    {
        let cause = v
            .get("cause")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return StepFailure::new(error, cause);
    }
    StepFailure::new(
        "States.TaskFailed",
        format!(
            "step {step} exited with {status}{}",
            stderr_suffix(stderr_tail)
        ),
    )
}

fn stderr_suffix(tail: &str) -> String {
    let t = tail.trim_end();
    if t.is_empty() {
        String::new()
    } else {
        format!("; the end of its stderr:\n{t}")
    }
}

fn preview(text: &str) -> String {
    let p: String = text.chars().take(120).collect();
    format!("{p:?}")
}

/// The step's process dies with the server, even by SIGKILL (a resumed execution runs it
/// again; an orphan would run it twice at once).
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe; called in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Kills the step's process group when dropped.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: signalling the process group this step's child leads (a group that is
            // gone already makes kill fail with ESRCH, which is fine).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}
