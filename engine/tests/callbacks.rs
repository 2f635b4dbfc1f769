//! Callbacks (`.waitForTaskToken`): the resource is called with a task token, and the task
//! ends with the answer an outside system sends for that token — success, failure (caught
//! by name), heartbeats — or times out; a waiting task's token survives a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use longhaul_engine::{
    Engine, EngineError, ExecutionStatus, ExecutionStore, MemoryExecutionStore,
    SqliteExecutionStore, StateMachine, TaskContext, TaskFailure, TaskInvoker,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One call of a callback Task's resource, as the outside system would see it.
#[derive(Debug)]
struct Call {
    resource: String,
    input: Value,
    token: Option<String>,
}

/// Hands every call to the test (which answers the token); `fail_with` makes calls fail.
struct Notify {
    calls: mpsc::UnboundedSender<Call>,
    count: AtomicUsize,
    fail_with: Option<&'static str>,
}

#[async_trait]
impl TaskInvoker for Notify {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        ctx: TaskContext,
    ) -> Result<Value, TaskFailure> {
        self.count.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = self.fail_with {
            return Err(TaskFailure::new(e, "the notification could not be sent"));
        }
        let _ = self.calls.send(Call {
            resource: resource.to_string(),
            input,
            token: ctx.task_token,
        });
        Ok(json!({"sent": true}))
    }
}

fn notify() -> (Arc<Notify>, mpsc::UnboundedReceiver<Call>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Arc::new(Notify {
            calls: tx,
            count: AtomicUsize::new(0),
            fail_with: None,
        }),
        rx,
    )
}

fn machine(def: Value) -> StateMachine {
    StateMachine::parse(&def.to_string(), &BTreeMap::new()).unwrap()
}

/// A Task that asks `notify` to tell someone the token, then waits.
fn approval(extra: Value) -> Value {
    let mut task = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {
            "FunctionName": "notify",
            "Payload": {"token.$": "$$.Task.Token", "order.$": "$.order"}
        },
        "ResultPath": "$.approval",
        "End": true
    });
    let catches = extra.get("Catch").is_some();
    if let (Value::Object(t), Value::Object(e)) = (&mut task, extra) {
        t.extend(e);
    }
    let mut states = json!({"Approve": task});
    if catches {
        states["Rejected"] = json!({"Type": "Pass", "End": true});
    }
    json!({"StartAt": "Approve", "States": states})
}

async fn start(engine: &Engine, def: Value, input: Value) -> String {
    let sm = engine
        .create_state_machine("callbacks", machine(def))
        .await
        .unwrap();
    engine
        .start_execution(&sm, None, input)
        .await
        .unwrap()
        .execution_arn
}

async fn next_call(rx: &mut mpsc::UnboundedReceiver<Call>) -> Call {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the resource was called")
        .expect("a call")
}

async fn done(engine: &Engine, arn: &str) -> longhaul_engine::ExecutionDescription {
    tokio::time::timeout(Duration::from_secs(20), engine.wait_for_completion(arn))
        .await
        .expect("the execution ended")
        .unwrap()
}

#[tokio::test]
async fn success_answers_the_token_and_spends_it() {
    let (n, mut calls) = notify();
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), n.clone());
    let arn = start(&engine, approval(json!({})), json!({"order": 7})).await;
    let call = next_call(&mut calls).await;
    assert_eq!(call.resource, "notify", "lambda:invoke's FunctionName");
    let token = call.token.expect("the task context carries the token");
    assert_eq!(
        call.input,
        json!({"token": token, "order": 7}),
        "$$.Task.Token"
    );
    assert_eq!(token.len(), 43, "256 bits, URL-safe base64");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    // Still waiting: the resource's own result is not the task's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        engine.describe_execution(&arn).await.unwrap().status,
        ExecutionStatus::Running
    );
    engine
        .send_task_heartbeat(&token)
        .await
        .expect("a heartbeat to a waiting task");
    engine
        .send_task_success(&token, json!({"approved": true}))
        .await
        .unwrap();
    let d = done(&engine, &arn).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(
        d.output,
        Some(json!({"order": 7, "approval": {"approved": true}}))
    );
    assert!(matches!(
        engine.send_task_success(&token, json!(1)).await,
        Err(EngineError::TaskDoesNotExist)
    ));
    assert!(matches!(
        engine.send_task_heartbeat(&token).await,
        Err(EngineError::TaskDoesNotExist)
    ));
    let types: Vec<String> = engine
        .get_execution_history(&arn)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    let task_events: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("Task") && *t != "TaskStateEntered" && *t != "TaskStateExited")
        .collect();
    assert_eq!(
        task_events,
        [
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded"
        ]
    );
    assert_eq!(n.count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failure_is_caught_by_its_name() {
    let (n, mut calls) = notify();
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), n);
    let def = approval(json!({
        "Catch": [{"ErrorEquals": ["Rejected"], "ResultPath": "$.why", "Next": "Rejected"}]
    }));
    let arn = start(&engine, def, json!({"order": 1})).await;
    let token = next_call(&mut calls).await.token.unwrap();
    engine
        .send_task_failure(&token, Some("Rejected"), Some("too expensive"))
        .await
        .unwrap();
    let d = done(&engine, &arn).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(
        d.output,
        Some(json!({"order": 1, "why": {"Error": "Rejected", "Cause": "too expensive"}}))
    );
}

#[tokio::test]
async fn each_retry_has_a_new_token() {
    let (n, mut calls) = notify();
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), n);
    let def = approval(json!({
        "Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 1, "MaxAttempts": 1}]
    }));
    let arn = start(&engine, def, json!({"order": 2})).await;
    let first = next_call(&mut calls).await.token.unwrap();
    engine
        .send_task_failure(&first, Some("Busy"), None)
        .await
        .unwrap();
    let second = next_call(&mut calls).await.token.unwrap();
    assert_ne!(first, second);
    engine
        .send_task_success(&second, json!("yes"))
        .await
        .unwrap();
    assert_eq!(
        done(&engine, &arn).await.output,
        Some(json!({"order": 2, "approval": "yes"}))
    );
}

#[tokio::test]
async fn heartbeats_keep_a_task_alive_until_they_stop() {
    let (n, mut calls) = notify();
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), n);
    let def = approval(json!({"HeartbeatSeconds": 1, "TimeoutSeconds": 30}));
    let arn = start(&engine, def, json!({"order": 3})).await;
    let token = next_call(&mut calls).await.token.unwrap();
    // Three heartbeats 0.5 s apart carry the task past its first second.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        engine.send_task_heartbeat(&token).await.unwrap();
    }
    assert_eq!(
        engine.describe_execution(&arn).await.unwrap().status,
        ExecutionStatus::Running,
        "alive after 1.5 s thanks to its heartbeats"
    );
    let d = done(&engine, &arn).await;
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.HeartbeatTimeout"));
    assert!(matches!(
        engine.send_task_success(&token, json!(1)).await,
        Err(EngineError::TaskTimedOut)
    ));
    let history = engine.get_execution_history(&arn).await.unwrap();
    assert!(history.iter().any(|e| e.event_type == "TaskTimedOut"));
}

#[tokio::test]
async fn timeout_seconds_still_apply_and_heartbeat_timeouts_are_catchable() {
    let (n, mut calls) = notify();
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), n);
    let arn = start(
        &engine,
        approval(json!({"TimeoutSeconds": 1})),
        json!({"order": 4}),
    )
    .await;
    let token = next_call(&mut calls).await.token.unwrap();
    let d = done(&engine, &arn).await;
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.Timeout"));
    assert!(matches!(
        engine.send_task_failure(&token, Some("Late"), None).await,
        Err(EngineError::TaskTimedOut)
    ));

    let def = approval(json!({"HeartbeatSeconds": 1,
        "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.why", "Next": "Rejected"}]}));
    let arn = start(&engine, def, json!({"order": 5})).await;
    next_call(&mut calls).await;
    let d = done(&engine, &arn).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(
        d.output.unwrap()["why"]["Error"],
        json!("States.HeartbeatTimeout")
    );
}

#[tokio::test]
async fn a_resource_that_fails_fails_the_task_and_stopping_abandons_the_token() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let failing = Arc::new(Notify {
        calls: tx,
        count: AtomicUsize::new(0),
        fail_with: Some("Lambda.ServiceException"),
    });
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), failing);
    let arn = start(&engine, approval(json!({})), json!({"order": 6})).await;
    let d = done(&engine, &arn).await;
    assert_eq!(d.error.as_deref(), Some("Lambda.ServiceException"));

    let (n, mut calls) = notify();
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), n);
    let arn = start(&engine, approval(json!({})), json!({"order": 8})).await;
    let token = next_call(&mut calls).await.token.unwrap();
    engine.stop_execution(&arn, None, None).await.unwrap();
    assert!(matches!(
        engine.send_task_success(&token, json!(1)).await,
        Err(EngineError::TaskDoesNotExist)
    ));
}

#[tokio::test]
async fn answers_are_checked() {
    let (n, mut calls) = notify();
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), n);
    let arn = start(&engine, approval(json!({})), json!({"order": 9})).await;
    let token = next_call(&mut calls).await.token.unwrap();
    assert!(matches!(
        engine.send_task_success("not-a-token", json!(1)).await,
        Err(EngineError::InvalidToken(_))
    ));
    assert!(matches!(
        engine
            .send_task_success(&token, json!("x".repeat(256 * 1024)))
            .await,
        Err(EngineError::InvalidOutput(_))
    ));
    assert!(matches!(
        engine
            .send_task_failure(&token, Some(&"e".repeat(257)), None)
            .await,
        Err(EngineError::InvalidArgument(_))
    ));
    // None of those spent the token.
    engine.send_task_success(&token, json!(null)).await.unwrap();
    assert_eq!(done(&engine, &arn).await.status, ExecutionStatus::Succeeded);
}

#[tokio::test]
async fn jsonata_states_read_the_token_from_the_context() {
    let (n, mut calls) = notify();
    let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), n);
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Ask", "States": {"Ask": {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Arguments": {"QueueUrl": "q", "MessageBody": {"token": "{% $states.context.Task.Token %}"}},
        "Output": "{% {'answer': $states.result} %}",
        "End": true}}});
    let arn = start(&engine, def, json!({})).await;
    let call = next_call(&mut calls).await;
    assert_eq!(
        call.resource, "arn:aws:states:::sqs:sendMessage",
        "without the suffix"
    );
    let token = call.token.unwrap();
    assert_eq!(call.input["MessageBody"]["token"], json!(token));
    engine.send_task_success(&token, json!(42)).await.unwrap();
    assert_eq!(
        done(&engine, &arn).await.output,
        Some(json!({"answer": 42}))
    );
}

#[test]
fn callbacks_need_a_service_integration() {
    let lambda_arn = json!({"StartAt": "T", "States": {"T": {"Type": "Task",
        "Resource": "arn:aws:lambda:us-east-1:123456789012:function:F.waitForTaskToken", "End": true}}});
    let e = StateMachine::parse(&lambda_arn.to_string(), &BTreeMap::new()).unwrap_err();
    assert!(e.to_string().contains("needs a service integration"), "{e}");
    let ok = approval(json!({}));
    let m = machine(ok);
    assert_eq!(m.task_resources(), ["notify"]);
}

/// A waiting task's token is checkpointed: after the process stops (here: the engine shuts
/// down), a new engine on the same store resumes the execution, the same token is answered,
/// and the resource is not called again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_token_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let def = json!({"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Result": "ready", "ResultPath": "$.prepared", "Next": "Approve"},
        "Approve": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token"}},
            "ResultPath": "$.approval",
            "TimeoutSeconds": 3600,
            "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    let (token, arn) = {
        let (n, mut calls) = notify();
        let store: Arc<dyn ExecutionStore> = Arc::new(SqliteExecutionStore::open(&path).unwrap());
        let engine = Engine::new(store.clone(), n);
        let arn = start(&engine, def.clone(), json!({"order": 10})).await;
        let token = next_call(&mut calls).await.token.unwrap();
        // Wait until the checkpoint says the resource was called with this token.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let cursor = store.get(&arn).unwrap().unwrap().cursor.unwrap();
            if let Some(cb) = cursor.callback
                && cb.invoked
            {
                assert_eq!(cb.token, token);
                assert_eq!(cursor.state, "Approve");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no checkpoint");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        engine.shutdown().await;
        (token, arn)
    };
    let (n, _calls) = notify();
    let store: Arc<dyn ExecutionStore> = Arc::new(SqliteExecutionStore::open(&path).unwrap());
    let engine = Engine::new(store, n.clone());
    assert_eq!(engine.resume_all().await.unwrap(), 1);
    engine
        .send_task_success(&token, json!({"approved": "after a restart"}))
        .await
        .expect("the same token is valid after the restart");
    let d = done(&engine, &arn).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(
        d.output,
        Some(
            json!({"order": 10, "prepared": "ready", "approval": {"approved": "after a restart"}})
        )
    );
    assert_eq!(
        n.count.load(Ordering::SeqCst),
        0,
        "the resource is not called again"
    );
    let history = engine.get_execution_history(&arn).await.unwrap();
    let ids: Vec<u64> = history.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
}
