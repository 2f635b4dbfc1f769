//! The `Orchestrator` port on AWS Step Functions: one execution per job, named by the job id.

use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use chrono::{DateTime, Utc};
use longhaul_jobs::job::{ExecutionRef, Job};
use longhaul_jobs::ports::{CallbackError, Orchestrator, OrchestratorError};
use longhaul_jobs::view::ExecutionEvent;
use longhaul_jobs::workflow::WorkflowInput;
use serde_json::{Value, json};

use crate::{describe, is_transient};

/// Longest input, output, error or cause copied into a history event.
const DETAIL_BYTES: usize = 4096;

/// Executions of one state machine.
pub struct SfnOrchestrator {
    client: Client,
    state_machine_arn: String,
}

impl SfnOrchestrator {
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        SfnOrchestrator {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }

    /// The ARN Step Functions gives the execution `name` of this state machine.
    pub fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }

    fn reference(&self, name: &str, arn: String) -> ExecutionRef {
        ExecutionRef {
            name: name.to_string(),
            console_url: Some(execution_console_url(&arn)),
            arn: Some(arn),
        }
    }
}

/// The Step Functions console page of an execution (the region is the ARN's fourth field).
pub fn execution_console_url(execution_arn: &str) -> String {
    let region = execution_arn.split(':').nth(3).unwrap_or("us-east-1");
    format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
    )
}

fn sdk<E, R>(what: &str, e: aws_sdk_sfn::error::SdkError<E, R>) -> OrchestratorError
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let m = format!("{what}: {}", describe(&e));
    if is_transient(&e) {
        OrchestratorError::Unavailable(m)
    } else {
        OrchestratorError::Other(m)
    }
}

/// A refused SendTask* call in the port's terms, by Step Functions' error code (the same
/// outcomes the local engine gives).
fn callback_sdk<E, R>(what: &str, e: aws_sdk_sfn::error::SdkError<E, R>) -> CallbackError
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = e
        .as_service_error()
        .and_then(|se| se.code())
        .map(str::to_string);
    match callback_error(code.as_deref(), &describe(&e)) {
        Some(c) => c,
        None => CallbackError::Orchestrator(sdk(what, e)),
    }
}

/// Step Functions' callback error codes; `None` for anything else.
fn callback_error(code: Option<&str>, message: &str) -> Option<CallbackError> {
    let m = message.to_string();
    Some(match code? {
        "InvalidToken" => CallbackError::InvalidToken(m),
        "TaskDoesNotExist" => CallbackError::TaskDoesNotExist(m),
        "TaskTimedOut" => CallbackError::TaskTimedOut(m),
        "InvalidOutput" | "ValidationException" => CallbackError::Invalid(m),
        _ => return None,
    })
}

/// An event detail: JSON when it parses, the text otherwise; cut to [`DETAIL_BYTES`].
fn brief(text: &str) -> Value {
    if text.len() > DETAIL_BYTES {
        let mut end = DETAIL_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        return json!({"truncated": true, "preview": &text[..end]});
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn to_chrono(t: &aws_sdk_sfn::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

/// The event as getJobHistory shows it; `state` is the state the event belongs to.
fn event_view(e: &HistoryEvent, state: Option<&str>) -> ExecutionEvent {
    let mut details = serde_json::Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            details.insert(k.to_string(), brief(v));
        }
    };
    let mut name = state.map(str::to_string);
    if let Some(d) = e.state_entered_event_details() {
        name = Some(d.name().to_string());
        put("input", d.input());
    }
    if let Some(d) = e.state_exited_event_details() {
        name = Some(d.name().to_string());
        put("output", d.output());
    }
    if let Some(d) = e.execution_started_event_details() {
        put("input", d.input());
    }
    if let Some(d) = e.execution_succeeded_event_details() {
        put("output", d.output());
    }
    // The SDK has one details type per event kind; these all carry an error and a cause.
    macro_rules! error_and_cause {
        ($($details:ident),* $(,)?) => {
            $(if let Some(d) = e.$details() {
                put("error", d.error());
                put("cause", d.cause());
            })*
        };
    }
    error_and_cause!(
        execution_failed_event_details,
        execution_aborted_event_details,
        execution_timed_out_event_details,
        lambda_function_failed_event_details,
        lambda_function_timed_out_event_details,
        task_failed_event_details,
        task_timed_out_event_details,
    );
    if let Some(d) = e.lambda_function_scheduled_event_details() {
        put("resource", Some(d.resource()));
        put("input", d.input());
    }
    if let Some(d) = e.lambda_function_succeeded_event_details() {
        put("output", d.output());
    }
    if let Some(d) = e.task_scheduled_event_details() {
        put("resource", Some(d.resource()));
        put("parameters", Some(d.parameters()));
    }
    if let Some(d) = e.task_succeeded_event_details() {
        put("output", d.output());
    }
    if let Some(d) = e.map_state_started_event_details() {
        details.insert("length".into(), json!(d.length()));
    }
    ExecutionEvent {
        id: e.id().max(0) as u64,
        timestamp: to_chrono(e.timestamp()),
        event_type: e.r#type().as_str().to_string(),
        state_name: name,
        details: Value::Object(details),
    }
}

#[async_trait]
impl Orchestrator for SfnOrchestrator {
    async fn start(&self, job: &Job) -> Result<ExecutionRef, OrchestratorError> {
        let input = serde_json::to_string(&WorkflowInput::for_job(job))
            .map_err(|e| OrchestratorError::Other(e.to_string()))?;
        let res = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&job.job_id)
            .input(input)
            .send()
            .await;
        match res {
            Ok(out) => Ok(self.reference(&job.job_id, out.execution_arn().to_string())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_execution_already_exists()) =>
            {
                // A retried start: the execution is this job's if its input names the job.
                let arn = self.execution_arn(&job.job_id);
                let d = self
                    .client
                    .describe_execution()
                    .execution_arn(&arn)
                    .send()
                    .await
                    .map_err(|e| sdk("DescribeExecution", e))?;
                let started_with: Option<WorkflowInput> = d
                    .input()
                    .and_then(|i| serde_json::from_str::<WorkflowInput>(i).ok());
                if started_with.as_ref() == Some(&WorkflowInput::for_job(job)) {
                    Ok(self.reference(&job.job_id, arn))
                } else {
                    Err(OrchestratorError::Other(format!(
                        "an execution named {} exists for another input",
                        job.job_id
                    )))
                }
            }
            Err(e) => Err(sdk("StartExecution", e)),
        }
    }

    async fn stop(
        &self,
        execution: &ExecutionRef,
        error: &str,
        cause: &str,
    ) -> Result<(), OrchestratorError> {
        let arn = execution
            .arn
            .clone()
            .unwrap_or_else(|| self.execution_arn(&execution.name));
        let res = self
            .client
            .stop_execution()
            .execution_arn(&arn)
            .error(error.chars().take(256).collect::<String>())
            .cause(cause.chars().take(32_768).collect::<String>())
            .send()
            .await;
        let Err(e) = res else {
            return Ok(());
        };
        if e.as_service_error()
            .is_some_and(|se| se.is_execution_does_not_exist())
        {
            return Err(OrchestratorError::NotFound(arn));
        }
        // Stopping an execution that has ended is success; anything else is an error.
        match self
            .client
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
        {
            Ok(d) if *d.status() != ExecutionStatus::Running => Ok(()),
            _ => Err(sdk("StopExecution", e)),
        }
    }

    async fn history(
        &self,
        execution: &ExecutionRef,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<ExecutionEvent>, OrchestratorError> {
        let arn = execution
            .arn
            .clone()
            .unwrap_or_else(|| self.execution_arn(&execution.name));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // Task events carry no state name; they belong to the state entered last.
        let mut state: Option<String> = None;
        loop {
            let page = match self
                .client
                .get_execution_history()
                .execution_arn(&arn)
                .include_execution_data(true)
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_execution_does_not_exist()) =>
                {
                    return Err(OrchestratorError::NotFound(arn));
                }
                Err(e) => return Err(sdk("GetExecutionHistory", e)),
            };
            for e in page.events() {
                let v = event_view(e, state.as_deref());
                if e.state_entered_event_details().is_some() {
                    state = v.state_name.clone();
                }
                if e.state_exited_event_details().is_some() {
                    state = None;
                }
                if v.id > after_id {
                    out.push(v);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn send_task_success(&self, token: &str, output: &Value) -> Result<(), CallbackError> {
        self.client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| callback_sdk("SendTaskSuccess", e))
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.client
            .send_task_failure()
            .task_token(token)
            .set_error(non_empty(error))
            .set_cause(non_empty(cause))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| callback_sdk("SendTaskFailure", e))
    }

    async fn send_task_heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        self.client
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| callback_sdk("SendTaskHeartbeat", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_and_console_urls() {
        let o = SfnOrchestrator {
            client: Client::from_conf(
                aws_sdk_sfn::Config::builder()
                    .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
                    .build(),
            ),
            state_machine_arn: "arn:aws:states:eu-west-1:123456789012:stateMachine:longhaul-jobs"
                .into(),
        };
        let arn = o.execution_arn("0193aaaa-0000-7000-8000-000000000000");
        assert_eq!(
            arn,
            "arn:aws:states:eu-west-1:123456789012:execution:longhaul-jobs:0193aaaa-0000-7000-8000-000000000000"
        );
        assert_eq!(
            execution_console_url(&arn),
            format!(
                "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/{arn}"
            )
        );
    }

    #[test]
    fn callback_errors_map_to_the_same_outcomes_as_locally() {
        let kind = |code| match callback_error(Some(code), "m") {
            Some(CallbackError::InvalidToken(_)) => "invalid token",
            Some(CallbackError::TaskDoesNotExist(_)) => "does not exist",
            Some(CallbackError::TaskTimedOut(_)) => "timed out",
            Some(CallbackError::Invalid(_)) => "invalid",
            Some(CallbackError::Orchestrator(_)) => "orchestrator",
            None => "other",
        };
        assert_eq!(kind("InvalidToken"), "invalid token");
        assert_eq!(kind("TaskDoesNotExist"), "does not exist");
        assert_eq!(kind("TaskTimedOut"), "timed out");
        assert_eq!(kind("InvalidOutput"), "invalid");
        assert_eq!(kind("ValidationException"), "invalid");
        assert_eq!(kind("ThrottlingException"), "other");
        assert!(callback_error(None, "m").is_none());
    }

    #[test]
    fn details_are_cut_and_parsed() {
        assert_eq!(brief("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(brief("not json"), json!("not json"));
        let big = "é".repeat(5000);
        let v = brief(&big);
        assert_eq!(v["truncated"], json!(true));
        assert!(v["preview"].as_str().unwrap().len() <= DETAIL_BYTES);
    }
}
