//! The engine's conformance suite: ASL definitions with inputs and the outputs or errors the
//! AWS Step Functions documentation says they give, one file per feature group under
//! `tests/conformance/`. Each case names the documentation it follows in `doc`.
//!
//! Case shape: `{name, doc, definition, input, substitutions?, expect, expectHistory?}` with
//! `expect` one of `{"output": ...}`, `{"status": "FAILED"|"TIMED_OUT", "error"?, "cause"?,
//! "causeContains"?, "errorIsNull"?, "causeIsNull"?}`, `{"validationError": {"state"?, "field"?}}` (substring matches).
//!
//! Test resources every case may use (also as lambda:invoke FunctionName):
//! - `arn:aws:lambda:us-east-1:123456789012:function:Echo` returns its input;
//! - `…:function:Fail` fails with `input.error` (default `CustomError`) and `input.cause`;
//! - `…:function:FailTimes` fails with `input.error` (default `TransientError`) the first
//!   `input.failTimes` calls per execution and state, then returns `{"attempts": n}`;
//! - `…:function:Sleep` sleeps `input.seconds` (fractional) and returns its input;
//! - `…:function:Add` returns `{"sum": input.a + input.b}`;
//! - `…:function:Context` returns `{"state": STATE_NAME, "retryCount": N}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use longhaul_engine::{
    Engine, ExecutionStatus, ExecutionStore, MemoryExecutionStore, SqliteExecutionStore,
    StateMachine, TaskContext, TaskFailure, TaskInvoker,
};
use serde_json::{Value, json};

const FN: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

#[derive(Default)]
struct TestTasks {
    calls: Mutex<HashMap<(String, String), u64>>,
}

#[async_trait]
impl TaskInvoker for TestTasks {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        ctx: TaskContext,
    ) -> Result<Value, TaskFailure> {
        let name = resource.strip_prefix(FN).unwrap_or(resource);
        match name {
            "Echo" => Ok(input),
            "Fail" => Err(TaskFailure::new(
                input["error"].as_str().unwrap_or("CustomError"),
                input["cause"].as_str().unwrap_or("failed on purpose"),
            )),
            "FailTimes" => {
                let n = {
                    let mut calls = self.calls.lock().unwrap();
                    let c = calls
                        .entry((ctx.execution_arn.clone(), ctx.state_name.clone()))
                        .or_insert(0);
                    *c += 1;
                    *c
                };
                if n <= input["failTimes"].as_u64().unwrap_or(0) {
                    Err(TaskFailure::new(
                        input["error"].as_str().unwrap_or("TransientError"),
                        format!("attempt {n} failed"),
                    ))
                } else {
                    Ok(json!({"attempts": n}))
                }
            }
            "Sleep" => {
                tokio::time::sleep(Duration::from_secs_f64(
                    input["seconds"].as_f64().unwrap_or(0.0),
                ))
                .await;
                Ok(input)
            }
            "Add" => Ok(
                json!({"sum": input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0)}),
            ),
            "Context" => Ok(json!({"state": ctx.state_name, "retryCount": ctx.retry_count})),
            other => Err(TaskFailure::new(
                "Lambda.ResourceNotFoundException",
                format!("no test function {other}"),
            )),
        }
    }
}

struct Case {
    file: String,
    value: Value,
}

fn cases() -> Vec<Case> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        if f.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let arr: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for v in arr {
            out.push(Case {
                file: f.file_name().unwrap().to_string_lossy().to_string(),
                value: v,
            });
        }
    }
    out
}

fn contains(hay: &str, needle: &Value) -> bool {
    needle.as_str().is_none_or(|n| hay.contains(n))
}

/// Runs one case; `Err` says how it differs from the expectation.
async fn run_case(case: &Value, store: Arc<dyn ExecutionStore>) -> Result<(), String> {
    let definition = case["definition"].to_string();
    let subs: BTreeMap<String, String> = case["substitutions"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let expect = &case["expect"];
    let parsed = StateMachine::parse(&definition, &subs);
    if let Some(ve) = expect.get("validationError") {
        return match parsed {
            Ok(_) => Err("expected a validation error, the definition was accepted".into()),
            Err(errs) => {
                let hit = errs.0.iter().any(|e| {
                    contains(e.state.as_deref().unwrap_or(""), &ve["state"])
                        && contains(&e.field, &ve["field"])
                });
                if hit {
                    Ok(())
                } else {
                    Err(format!("validation errors did not name {ve}: {errs}"))
                }
            }
        };
    }
    let machine = parsed.map_err(|e| format!("definition rejected: {e}"))?;
    let engine = Engine::new(store, Arc::new(TestTasks::default()));
    let sm = engine
        .create_state_machine("conformance", machine)
        .await
        .map_err(|e| e.to_string())?;
    let input = case.get("input").cloned().unwrap_or(json!({}));
    let exec = engine
        .start_execution(&sm, None, input)
        .await
        .map_err(|e| e.to_string())?;
    let done = tokio::time::timeout(
        Duration::from_secs(20),
        engine.wait_for_completion(&exec.execution_arn),
    )
    .await
    .map_err(|_| "did not finish within 20 s".to_string())?
    .map_err(|e| e.to_string())?;
    let history = engine
        .get_execution_history(&exec.execution_arn)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(out) = expect.get("output") {
        if done.status != ExecutionStatus::Succeeded {
            return Err(format!(
                "expected SUCCEEDED with {out}, got {:?} {:?}: {:?}",
                done.status, done.error, done.cause
            ));
        }
        if done.output.as_ref() != Some(out) {
            return Err(format!(
                "output {} != expected {out}",
                done.output.unwrap_or(Value::Null)
            ));
        }
    } else {
        let status = expect["status"].as_str().unwrap_or("FAILED");
        if done.status.as_str() != status {
            return Err(format!(
                "expected {status}, got {:?} (output {:?}, error {:?}, cause {:?})",
                done.status, done.output, done.error, done.cause
            ));
        }
        if let Some(e) = expect["error"].as_str()
            && done.error.as_deref() != Some(e)
        {
            return Err(format!(
                "error {:?} != expected {e:?} (cause {:?})",
                done.error, done.cause
            ));
        }
        if let Some(c) = expect["cause"].as_str()
            && done.cause.as_deref() != Some(c)
        {
            return Err(format!("cause {:?} != expected {c:?}", done.cause));
        }
        if expect["errorIsNull"] == json!(true) && done.error.is_some() {
            return Err(format!("expected no error, got {:?}", done.error));
        }
        if expect["causeIsNull"] == json!(true) && done.cause.is_some() {
            return Err(format!("expected no cause, got {:?}", done.cause));
        }
        if let Some(c) = expect["causeContains"].as_str()
            && !done.cause.as_deref().unwrap_or("").contains(c)
        {
            return Err(format!("cause {:?} does not contain {c:?}", done.cause));
        }
    }
    if let Some(want) = case["expectHistory"].as_array() {
        let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
        let mut it = types.iter();
        for w in want {
            let w = w.as_str().unwrap_or("");
            if !it.any(|t| *t == w) {
                return Err(format!("history lacks {w} in order; it was {types:?}"));
            }
        }
    }
    Ok(())
}

async fn run_all(make_store: impl Fn() -> Arc<dyn ExecutionStore>) -> (usize, Vec<String>) {
    let all = cases();
    let mut failures = Vec::new();
    let mut ran = 0;
    // Run concurrently in groups: cases with Waits and timeouts take a moment each.
    let mut tasks = Vec::new();
    for c in all {
        if let Some(reason) = c.value["skip"].as_str() {
            eprintln!("SKIPPED {}: {}: {reason}", c.file, c.value["name"]);
            continue;
        }
        ran += 1;
        let store = make_store();
        tasks.push(tokio::spawn(async move {
            let r = run_case(&c.value, store).await;
            (
                format!("{} / {}", c.file, c.value["name"].as_str().unwrap_or("?")),
                r,
            )
        }));
    }
    for t in tasks {
        let (name, r) = t.await.unwrap();
        if let Err(e) = r {
            failures.push(format!("{name}: {e}"));
        }
    }
    (ran, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_memory() {
    let (ran, failures) = run_all(|| Arc::new(MemoryExecutionStore::new())).await;
    assert!(
        ran >= 150,
        "the suite has {ran} cases; it should have at least 150"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_sqlite_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let store: Arc<dyn ExecutionStore> = Arc::new(SqliteExecutionStore::open(&path).unwrap());
    let (ran, failures) = run_all(|| store.clone()).await;
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed with SQLite checkpoints:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn machine(def: Value) -> StateMachine {
    StateMachine::parse(&def.to_string(), &BTreeMap::new()).unwrap()
}

#[tokio::test]
async fn a_reused_execution_name_is_execution_already_exists() {
    let engine = Engine::new(
        Arc::new(MemoryExecutionStore::new()),
        Arc::new(TestTasks::default()),
    );
    let sm = engine
        .create_state_machine(
            "names",
            machine(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}})),
        )
        .await
        .unwrap();
    engine
        .start_execution(&sm, Some("run-1"), json!({}))
        .await
        .unwrap();
    let err = engine
        .start_execution(&sm, Some("run-1"), json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            longhaul_engine::EngineError::ExecutionAlreadyExists { .. }
        ),
        "{err}"
    );
    let err = engine
        .start_execution(&sm, Some("bad name"), json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, longhaul_engine::EngineError::InvalidName(_)),
        "{err}"
    );
}

#[tokio::test]
async fn stop_aborts_a_running_execution_and_its_tasks() {
    let engine = Engine::new(
        Arc::new(MemoryExecutionStore::new()),
        Arc::new(TestTasks::default()),
    );
    let def = json!({"StartAt": "Slow", "States": {"Slow": {"Type": "Task", "Resource": format!("{FN}Sleep"), "End": true}}});
    let sm = engine
        .create_state_machine("stop", machine(def))
        .await
        .unwrap();
    let mut ends = engine.subscribe_ends();
    let exec = engine
        .start_execution(&sm, None, json!({"seconds": 30}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = std::time::Instant::now();
    engine
        .stop_execution(&exec.execution_arn, Some("Stopped"), Some("by the test"))
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let d = engine
        .describe_execution(&exec.execution_arn)
        .await
        .unwrap();
    assert_eq!(d.status, ExecutionStatus::Aborted);
    assert_eq!(d.error.as_deref(), Some("Stopped"));
    let end = ends.recv().await.unwrap();
    assert_eq!(end.status, ExecutionStatus::Aborted);
    let history = engine
        .get_execution_history(&exec.execution_arn)
        .await
        .unwrap();
    assert_eq!(history.last().unwrap().event_type, "ExecutionAborted");
    // Stopping again is a no-op.
    engine
        .stop_execution(&exec.execution_arn, None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn many_concurrent_executions_need_no_thread_each() {
    let engine = Engine::new(
        Arc::new(MemoryExecutionStore::new()),
        Arc::new(TestTasks::default()),
    );
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "Next": "P"}, "P": {"Type": "Pass", "End": true}}});
    let sm = engine
        .create_state_machine("many", machine(def))
        .await
        .unwrap();
    let mut arns = Vec::new();
    for i in 0..2000 {
        arns.push(
            engine
                .start_execution(&sm, None, json!({"i": i}))
                .await
                .unwrap()
                .execution_arn,
        );
    }
    for (i, a) in arns.iter().enumerate() {
        let d = engine.wait_for_completion(a).await.unwrap();
        assert_eq!(d.output, Some(json!({"i": i})));
    }
}

/// Group commit: many executions' checkpoints share transactions, yet each execution's
/// history is whole and in order, and a new store on the same file sees every end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_executions_on_sqlite_keep_whole_histories() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Pass", "Result": 2, "ResultPath": "$.b", "Next": "C"},
        "C": {"Type": "Pass", "End": true}}});
    let arns: Vec<String> = {
        let engine = Engine::new(
            Arc::new(SqliteExecutionStore::open(&path).unwrap()),
            Arc::new(TestTasks::default()),
        );
        let sm = engine
            .create_state_machine("group", machine(def))
            .await
            .unwrap();
        let (e, s) = (&engine, &sm);
        let arns: Vec<String> = futures::stream::iter(0..600)
            .map(|i| async move {
                e.start_execution(s, None, json!({"i": i}))
                    .await
                    .unwrap()
                    .execution_arn
            })
            .buffer_unordered(200)
            .collect()
            .await;
        for a in &arns {
            let d = engine.wait_for_completion(a).await.unwrap();
            assert_eq!(d.status, ExecutionStatus::Succeeded);
        }
        engine.shutdown().await;
        arns
    };
    let engine = Engine::new(
        Arc::new(SqliteExecutionStore::open(&path).unwrap()),
        Arc::new(TestTasks::default()),
    );
    assert_eq!(engine.resume_all().await.unwrap(), 0);
    for a in &arns {
        let d = engine.describe_execution(a).await.unwrap();
        assert_eq!(d.status, ExecutionStatus::Succeeded, "{a}");
        let i = d.input["i"].clone();
        assert_eq!(d.output, Some(json!({"i": i, "a": 1, "b": 2})));
        let h = engine.get_execution_history(a).await.unwrap();
        let ids: Vec<u64> = h.iter().map(|e| e.id).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "{a}");
        let types: Vec<&str> = h.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types.first(), Some(&"ExecutionStarted"));
        assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
        assert_eq!(
            types.iter().filter(|t| t.ends_with("StateExited")).count(),
            3
        );
    }
}

/// Records where each checkpoint put the cursor, over the in-memory store.
#[derive(Default)]
struct RecordingStore {
    inner: MemoryExecutionStore,
    cursors: Mutex<Vec<String>>,
}

#[async_trait]
impl ExecutionStore for RecordingStore {
    async fn insert(
        &self,
        rec: &longhaul_engine::ExecutionRecord,
        events: &[longhaul_engine::HistoryEvent],
    ) -> Result<bool, longhaul_engine::EngineError> {
        self.inner.insert(rec, events).await
    }
    async fn checkpoint(
        &self,
        arn: &str,
        cursor: &longhaul_engine::Cursor,
        events: &[longhaul_engine::HistoryEvent],
    ) -> Result<(), longhaul_engine::EngineError> {
        let at = match cursor.wait_until {
            Some(_) => format!("{} (sleeping)", cursor.state),
            None => cursor.state.clone(),
        };
        self.cursors.lock().unwrap().push(at);
        self.inner.checkpoint(arn, cursor, events).await
    }
    async fn finish(
        &self,
        rec: &longhaul_engine::ExecutionRecord,
        events: &[longhaul_engine::HistoryEvent],
    ) -> Result<(), longhaul_engine::EngineError> {
        self.inner.finish(rec, events).await
    }
    fn get(
        &self,
        arn: &str,
    ) -> Result<Option<longhaul_engine::ExecutionRecord>, longhaul_engine::EngineError> {
        self.inner.get(arn)
    }
    fn history(
        &self,
        arn: &str,
    ) -> Result<Vec<longhaul_engine::HistoryEvent>, longhaul_engine::EngineError> {
        self.inner.history(arn)
    }
    fn running(
        &self,
    ) -> Result<Vec<longhaul_engine::ExecutionRecord>, longhaul_engine::EngineError> {
        self.inner.running()
    }
}

/// The checkpoint rule: the cursor is written before each state that acts on the world
/// (Task, Map, Parallel) once the execution moved since the last one, and before a Wait
/// sleeps; Pass and Choice states alone write nothing, and the history stays whole.
#[tokio::test]
async fn checkpoints_come_before_states_that_act_on_the_world() {
    let store = Arc::new(RecordingStore::default());
    let engine = Engine::new(store.clone(), Arc::new(TestTasks::default()));
    let def = json!({"StartAt": "First", "States": {
        "First": {"Type": "Task", "Resource": format!("{FN}Echo"), "Next": "P1"},
        "P1": {"Type": "Pass", "Next": "Route"},
        "Route": {"Type": "Choice", "Choices": [
            {"Variable": "$.go", "BooleanEquals": true, "Next": "NoSleep"}], "Default": "P1"},
        "NoSleep": {"Type": "Wait", "Seconds": 0, "Next": "Second"},
        "Second": {"Type": "Task", "Resource": format!("{FN}Echo"), "Next": "Nap"},
        "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Each"},
        "Each": {"Type": "Map", "ItemsPath": "$.xs", "ResultPath": "$.ys",
                 "ItemProcessor": {"StartAt": "In", "States": {
                     "In": {"Type": "Pass", "Next": "In2"}, "In2": {"Type": "Pass", "End": true}}},
                 "Next": "P2"},
        "P2": {"Type": "Pass", "Next": "P3"},
        "P3": {"Type": "Pass", "End": true}}});
    let sm = engine
        .create_state_machine("rule", machine(def))
        .await
        .unwrap();
    let arn = engine
        .start_execution(&sm, None, json!({"go": true, "xs": [1, 2]}))
        .await
        .unwrap()
        .execution_arn;
    let d = engine.wait_for_completion(&arn).await.unwrap();
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(d.output.unwrap()["ys"], json!([1, 2]));
    assert_eq!(
        *store.cursors.lock().unwrap(),
        ["Second", "Nap (sleeping)", "Each"],
        "First runs right after the start is stored; the Pass, Choice and 0 s Wait before \
         Second, and the Passes after the Map, write nothing of their own"
    );
    let h = engine.get_execution_history(&arn).await.unwrap();
    let ids: Vec<u64> = h.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    let exited = h
        .iter()
        .filter(|e| e.event_type.ends_with("StateExited"))
        .count();
    assert_eq!(exited, 9 + 4, "9 top-level states and 4 in the Map");
}

/// A store written before the `checkpoints` table kept the cursor in `executions` and one
/// `history` row per event. Opening it with this version loses nothing: ended executions
/// keep their histories, and a RUNNING one resumes from its stored cursor, its new events
/// numbered after the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_from_before_checkpoint_rows_resume_and_keep_their_histories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "T"},
        "T": {"Type": "Task", "Resource": format!("{FN}Echo"), "End": true}}})
    .to_string();
    let sm = "arn:aws:states:local:000000000000:stateMachine:legacy";
    let arn = |name: &str| format!("arn:aws:states:local:000000000000:execution:legacy:{name}");
    let event = |id: u64, kind: &str, state: Option<&str>, details: Value| {
        let mut e = json!({"id": id, "previousEventId": id - 1,
            "timestamp": "2026-11-01T10:00:00Z", "type": kind, "details": details});
        if let Some(s) = state {
            e["stateName"] = json!(s);
        }
        e.to_string()
    };
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE definitions (hash TEXT PRIMARY KEY, text TEXT NOT NULL);
             CREATE TABLE executions (arn TEXT PRIMARY KEY, state_machine_arn TEXT NOT NULL,
                 name TEXT NOT NULL, definition_hash TEXT NOT NULL REFERENCES definitions(hash),
                 status TEXT NOT NULL, input TEXT NOT NULL, output TEXT, error TEXT, cause TEXT,
                 start_date TEXT NOT NULL, stop_date TEXT, cursor TEXT);
             CREATE INDEX executions_running ON executions(status) WHERE status = 'RUNNING';
             CREATE TABLE history (arn TEXT NOT NULL, id INTEGER NOT NULL, event TEXT NOT NULL,
                 PRIMARY KEY (arn, id)) WITHOUT ROWID;",
        )
        .unwrap();
        conn.execute("INSERT INTO definitions VALUES ('h', ?1)", [&def])
            .unwrap();
        let insert = "INSERT INTO executions VALUES (?1, ?2, ?3, 'h', ?4, ?5, ?6, NULL, NULL, '2026-11-01T10:00:00Z', ?7, ?8)";
        conn.execute(
            insert,
            rusqlite::params![
                arn("done"),
                sm,
                "done",
                "SUCCEEDED",
                r#"{"i":0}"#,
                r#"{"i":0,"a":1}"#,
                "2026-11-01T10:00:01Z",
                None::<String>
            ],
        )
        .unwrap();
        conn.execute(
            insert,
            rusqlite::params![
                arn("running"),
                sm,
                "running",
                "RUNNING",
                r#"{"i":1}"#,
                None::<String>,
                None::<String>,
                r#"{"state":"T","input":{"i":1,"a":1}}"#
            ],
        )
        .unwrap();
        let done = [
            event(1, "ExecutionStarted", None, json!({"input": {"i": 0}})),
            event(2, "PassStateEntered", Some("A"), json!({"name": "A"})),
            event(3, "PassStateExited", Some("A"), json!({"name": "A"})),
            event(
                4,
                "ExecutionSucceeded",
                None,
                json!({"output": {"i": 0, "a": 1}}),
            ),
        ];
        let running = &done[..3];
        for (name, events) in [("done", &done[..]), ("running", running)] {
            for (i, e) in events.iter().enumerate() {
                conn.execute(
                    "INSERT INTO history VALUES (?1, ?2, ?3)",
                    rusqlite::params![arn(name), i as i64 + 1, e],
                )
                .unwrap();
            }
        }
    }
    let engine = Engine::new(
        Arc::new(SqliteExecutionStore::open(&path).unwrap()),
        Arc::new(TestTasks::default()),
    );
    let types = |h: &[longhaul_engine::HistoryEvent]| -> Vec<String> {
        h.iter().map(|e| e.event_type.clone()).collect()
    };
    let done = engine.get_execution_history(&arn("done")).await.unwrap();
    assert_eq!(
        types(&done),
        [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(engine.resume_all().await.unwrap(), 1);
    let d = engine.wait_for_completion(&arn("running")).await.unwrap();
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(d.output, Some(json!({"i": 1, "a": 1})));
    let h = engine.get_execution_history(&arn("running")).await.unwrap();
    let ids: Vec<u64> = h.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    let kinds = types(&h);
    assert_eq!(
        kinds[..4],
        [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "TaskStateEntered"
        ]
    );
    assert_eq!(kinds.last().map(String::as_str), Some("ExecutionSucceeded"));
    // Resumed at T: A did not run again.
    assert_eq!(kinds.iter().filter(|k| *k == "PassStateEntered").count(), 1);
    engine.shutdown().await;
}

/// Variables are part of the checkpoint: an execution stopped while a Wait sleeps resumes
/// in a new engine with the variables it had assigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"who.$": "$.who", "n": 1}, "Next": "W"},
        "W": {"Type": "Wait", "Seconds": 2, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"who.$": "$who", "n.$": "$n"}, "End": true}}});
    let arn = {
        let engine = Engine::new(
            Arc::new(SqliteExecutionStore::open(&path).unwrap()),
            Arc::new(TestTasks::default()),
        );
        let sm = engine
            .create_state_machine("vars", machine(def))
            .await
            .unwrap();
        let arn = engine
            .start_execution(&sm, None, json!({"who": "ada"}))
            .await
            .unwrap()
            .execution_arn;
        tokio::time::sleep(Duration::from_millis(500)).await;
        engine.shutdown().await;
        arn
    };
    let engine = Engine::new(
        Arc::new(SqliteExecutionStore::open(&path).unwrap()),
        Arc::new(TestTasks::default()),
    );
    assert_eq!(engine.resume_all().await.unwrap(), 1);
    let d = engine.wait_for_completion(&arn).await.unwrap();
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{:?}", d.cause);
    assert_eq!(d.output, Some(json!({"who": "ada", "n": 1})));
}
