//! Task states: the call to the resource (request-response), the wait for a task token
//! (`.waitForTaskToken`, with heartbeats and a checkpointed token), and the HTTP Task; the
//! timeouts and the task events of each.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{At, Failure, Run, runtime, saved_variables};
use crate::callback::{Ended, Signal, Waiter};
use crate::history::{Field, details};
use crate::model::{Integration, Kind, TaskSpec};
use crate::store::{CallbackCursor, Cursor};
use crate::vars::Vars;
use crate::{TaskContext, TaskFailure};

impl From<TaskFailure> for Failure {
    fn from(f: TaskFailure) -> Failure {
        Failure {
            error: f.error,
            cause: f.cause,
        }
    }
}

/// What the resource of a Task is called with.
struct Call {
    /// The resource as the invoker knows it (lambda:invoke: the FunctionName).
    target: String,
    payload: Value,
    ctx: TaskContext,
}

/// Where a callback Task is: its token, since when it waits, whether its resource was
/// called (so a resumed one is not called again).
struct Wait<'a> {
    token: String,
    started: DateTime<Utc>,
    invoked: bool,
    /// The state's raw input and variables: what a checkpoint of this Task writes (at the
    /// top level only; `None` inside Map and Parallel, which are not checkpointed).
    checkpoint: Option<(&'a Value, &'a Vars<'a>)>,
    heartbeat: Option<Duration>,
}

/// Sleeps until `deadline`; never, without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Run {
    /// Runs a Task state's work once (Retry is its caller's): its result before
    /// ResultSelector. `resumed` is the checkpointed wait of a callback Task that a restart
    /// continues.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_task(
        &self,
        at: &At<'_>,
        raw: &Value,
        effective: &Value,
        retry_count: u32,
        vars: &Vars<'_>,
        top: bool,
        resumed: Option<CallbackCursor>,
    ) -> Result<Value, Failure> {
        let state = at.state;
        let Kind::Task(spec) = &state.kind else {
            return Err(runtime("not a task"));
        };
        let token = spec.callback.then(|| {
            resumed
                .as_ref()
                .map(|c| c.token.clone())
                .unwrap_or_else(crate::callback::new_token)
        });
        let ctx = || {
            let mut c = self.context(&state.name, at.entered, retry_count, at.item);
            if let (Some(t), Value::Object(m)) = (&token, &mut c) {
                m.insert("Task".into(), json!({"Token": t}));
            }
            c
        };
        let task_input = self.state_input(state, effective, &ctx, vars)?;
        let timeout = self.seconds_of(&spec.timeout, "TimeoutSeconds", raw, &ctx, vars)?;
        let resource = &spec.resource;
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
        let outcome = match (spec.integration, token.clone()) {
            (Integration::Http, _) => {
                let call = self.call_http(&task_input, timeout);
                self.within(&state.name, timeout, Utc::now(), call).await
            }
            (_, Some(token)) => {
                let wait = Wait {
                    started: resumed.as_ref().map_or_else(Utc::now, |c| c.started),
                    invoked: resumed.as_ref().is_some_and(|c| c.invoked),
                    token,
                    checkpoint: top.then_some((raw, vars)),
                    heartbeat: self.seconds_of(
                        &spec.heartbeat,
                        "HeartbeatSeconds",
                        raw,
                        &ctx,
                        vars,
                    )?,
                };
                let call = self.call(
                    spec,
                    &state.name,
                    task_input,
                    retry_count,
                    Some(&wait.token),
                )?;
                self.wait_for_token(&state.name, call, wait, timeout).await
            }
            (_, None) => {
                let call = self.call(spec, &state.name, task_input, retry_count, None)?;
                let invoke = async {
                    self.invoker
                        .invoke(&call.target, call.payload, call.ctx)
                        .await
                        .map_err(Failure::from)
                };
                self.within(&state.name, timeout, Utc::now(), invoke).await
            }
        };
        self.task_ended(spec, &state.name, outcome)
    }

    /// A count of seconds (TimeoutSeconds, HeartbeatSeconds): none, or a positive one.
    fn seconds_of(
        &self,
        s: &crate::model::Seconds,
        field: &str,
        raw: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Option<Duration>, Failure> {
        match self.count(s, field, raw, ctx, vars)? {
            None => Ok(None),
            Some(0) => Err(runtime(format!("{field} must be positive"))),
            Some(n) => Ok(Some(Duration::from_secs(n))),
        }
    }

    /// The resource call a Task's input makes.
    fn call(
        &self,
        spec: &TaskSpec,
        state: &str,
        task_input: Value,
        retry_count: u32,
        token: Option<&str>,
    ) -> Result<Call, Failure> {
        let (target, payload) = match spec.integration {
            Integration::LambdaInvoke => {
                let f = task_input
                    .get("FunctionName")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        runtime("lambda:invoke needs the FunctionName argument (a string)")
                    })?;
                (
                    f.to_string(),
                    task_input.get("Payload").cloned().unwrap_or(Value::Null),
                )
            }
            _ => (
                crate::model::base_resource(&spec.resource).to_string(),
                task_input,
            ),
        };
        Ok(Call {
            target,
            payload,
            ctx: TaskContext {
                execution_arn: self.arn.clone(),
                execution_name: self.name.clone(),
                state_name: state.to_string(),
                retry_count,
                task_token: token.map(str::to_string),
            },
        })
    }

    /// Runs `work` under the Task's TimeoutSeconds, counted from `since`: past it, the task
    /// fails with `States.Timeout` (and a TaskTimedOut event).
    async fn within(
        &self,
        state: &str,
        timeout: Option<Duration>,
        since: DateTime<Utc>,
        work: impl Future<Output = Result<Value, Failure>>,
    ) -> Result<Value, Failure> {
        let Some(t) = timeout else {
            return work.await;
        };
        let elapsed = (Utc::now() - since).to_std().unwrap_or_default();
        match tokio::time::timeout(t.saturating_sub(elapsed), work).await {
            Ok(r) => r,
            Err(_) => {
                let f = Failure::new(
                    "States.Timeout",
                    format!("the task did not finish within {} s", t.as_secs()),
                );
                self.timed_out_event(state, &f);
                Err(f)
            }
        }
    }

    fn timed_out_event(&self, state: &str, f: &Failure) {
        self.failed_event("TaskTimedOut", state, f);
    }

    /// A Task's end: its events, and lambda:invoke's result shape.
    fn task_ended(
        &self,
        spec: &TaskSpec,
        state: &str,
        outcome: Result<Value, Failure>,
    ) -> Result<Value, Failure> {
        let resource = spec.resource.as_str();
        match outcome {
            Ok(out) => {
                self.event(
                    "TaskSucceeded",
                    Some(state),
                    details(&[
                        ("resource", Field::Str(resource)),
                        ("output", Field::Brief(&out)),
                    ]),
                );
                Ok(match (spec.integration, spec.callback) {
                    (Integration::LambdaInvoke, false) => json!({
                        "ExecutedVersion": "$LATEST",
                        "Payload": out,
                        "SdkHttpMetadata": {"HttpStatusCode": 200},
                        "SdkResponseMetadata": {"RequestId": uuid::Uuid::new_v4().to_string()},
                        "StatusCode": 200
                    }),
                    _ => out,
                })
            }
            // Timeouts have their own event.
            Err(f) if f.error == "States.Timeout" || f.error == "States.HeartbeatTimeout" => Err(f),
            Err(f) => {
                self.event(
                    "TaskFailed",
                    Some(state),
                    details(&[
                        ("resource", Field::Str(resource)),
                        ("error", Field::Str(&f.error)),
                        ("cause", Field::Str(&f.cause)),
                    ]),
                );
                Err(f)
            }
        }
    }

    /// The HTTP Task: the request its arguments make, sent by the host's invoker; the
    /// response as its result.
    async fn call_http(&self, args: &Value, timeout: Option<Duration>) -> Result<Value, Failure> {
        let Some(http) = &self.http else {
            return Err(runtime(
                "this engine has no HTTP client for HTTP Tasks (arn:aws:states:::http:invoke)",
            ));
        };
        let request = crate::http::request(args, timeout.unwrap_or(crate::http::REQUEST_TIMEOUT))?;
        let response = http.send(request).await.map_err(Failure::from)?;
        crate::http::result(response)
    }

    /// A `.waitForTaskToken` Task: calls the resource with the token (once: not again when
    /// resumed after it was called), then waits for the token's success or failure, with
    /// heartbeats resetting HeartbeatSeconds; TimeoutSeconds counts from the first start.
    async fn wait_for_token(
        &self,
        state: &str,
        call: Call,
        wait: Wait<'_>,
        timeout: Option<Duration>,
    ) -> Result<Value, Failure> {
        let mut waiter = self.callbacks.wait(&wait.token);
        if !wait.invoked {
            self.checkpoint_wait(state, &wait, false).await?;
        }
        let since = wait.started;
        let answered = self.answer(state, call, &wait, &mut waiter);
        let r = self.within(state, timeout, since, answered).await;
        if matches!(&r, Err(f) if f.error == "States.Timeout" || f.error == "States.HeartbeatTimeout")
        {
            waiter.end(Ended::TimedOut);
        }
        r
    }

    /// Checkpoints a top-level callback Task's token (with whether its resource was called)
    /// so that a restart waits for the same token.
    async fn checkpoint_wait(
        &self,
        state: &str,
        wait: &Wait<'_>,
        invoked: bool,
    ) -> Result<(), Failure> {
        let Some((raw, vars)) = wait.checkpoint else {
            return Ok(());
        };
        self.checkpoint(&Cursor {
            state: state.to_string(),
            input: raw.clone(),
            wait_until: None,
            variables: saved_variables(vars),
            callback: Some(CallbackCursor {
                token: wait.token.clone(),
                started: wait.started,
                invoked,
            }),
        })
        .await
    }

    /// The call (unless made before a restart), then the answers to the token.
    async fn answer(
        &self,
        state: &str,
        call: Call,
        wait: &Wait<'_>,
        waiter: &mut Waiter,
    ) -> Result<Value, Failure> {
        let beat_after = |h: Duration| tokio::time::Instant::now() + h;
        let mut beat = wait.heartbeat.map(beat_after);
        if !wait.invoked {
            let invoke = self.invoker.invoke(&call.target, call.payload, call.ctx);
            tokio::pin!(invoke);
            loop {
                tokio::select! {
                    r = &mut invoke => {
                        let out = r.map_err(Failure::from)?;
                        self.event(
                            "TaskSubmitted",
                            Some(state),
                            details(&[("output", Field::Brief(&out))]),
                        );
                        self.checkpoint_wait(state, wait, true).await?;
                        break;
                    }
                    s = waiter.next() => match s {
                        Signal::Heartbeat => beat = wait.heartbeat.map(beat_after),
                        s => return answered(s),
                    },
                    _ = sleep_until(beat) => return Err(self.heartbeat_timeout(state, wait)),
                }
            }
        }
        loop {
            tokio::select! {
                s = waiter.next() => match s {
                    Signal::Heartbeat => beat = wait.heartbeat.map(beat_after),
                    s => return answered(s),
                },
                _ = sleep_until(beat) => return Err(self.heartbeat_timeout(state, wait)),
            }
        }
    }

    fn heartbeat_timeout(&self, state: &str, wait: &Wait<'_>) -> Failure {
        let f = Failure::new(
            "States.HeartbeatTimeout",
            format!(
                "no heartbeat or answer for the task token within {} s",
                wait.heartbeat.unwrap_or_default().as_secs()
            ),
        );
        self.timed_out_event(state, &f);
        f
    }
}

/// The task's result from an answer to its token (a heartbeat is not one).
fn answered(s: Signal) -> Result<Value, Failure> {
    match s {
        Signal::Success(v) => Ok(v),
        Signal::Failure { error, cause } => Err(Failure { error, cause }),
        Signal::Heartbeat => Err(runtime("a heartbeat is not an answer")),
    }
}
