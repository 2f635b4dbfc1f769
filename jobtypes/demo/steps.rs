//! demo's Rust step: one step of the demo job (its time was spent in the Wait before it):
//! count it, report progress, fail if this is `failAtStep`, and on the last one return the
//! answer to `askFirst` if it was asked (the Ask state uses the built-in `request-input`
//! step); and its input check. Compiled
//! into longhaul-steps (see its build.rs).

use std::sync::Arc;

use chrono::Utc;
use longhaul_jobs::{InputCheck, Progress};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::base::not_running;
use crate::{StepContext, StepError, StepOutput, StepRegistry};

pub fn register(steps: &mut StepRegistry) {
    steps.add("demo-step", step_fn!("demo-step", demo_step));
    steps.add_input_check("demo", Arc::new(DemoInput));
}

/// `failAtStep` must be one of the steps.
struct DemoInput;

impl InputCheck for DemoInput {
    fn normalize(&self, input: &mut Map<String, Value>) -> Result<(), String> {
        let steps = input.get("steps").and_then(Value::as_u64).unwrap_or(0);
        if let Some(at) = input.get("failAtStep").and_then(Value::as_u64)
            && at > steps
        {
            return Err(format!(
                "input.failAtStep: {at} is after the last step ({steps})"
            ));
        }
        Ok(())
    }
}

/// Input of [`demo_step`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoStepRequest {
    pub job_id: String,
    /// The whole workflow state: `input` and, after the first step, `demo`.
    pub state: DemoState,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoState {
    pub input: DemoInputFields,
    #[serde(default)]
    pub demo: Option<DemoStepOutput>,
    /// The user's answer to `askFirst` (`{"answer": "..."}`), when it was asked.
    #[serde(default)]
    pub asked: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoInputFields {
    pub steps: u32,
    #[serde(default)]
    pub step_seconds: u32,
    #[serde(default)]
    pub fail_at_step: Option<u32>,
}

/// What one demo step leaves in `$.demo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoStepOutput {
    pub step: u32,
    pub steps: u32,
    pub done: bool,
    /// Set on the last step: the job's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<StepOutput>,
}

pub async fn demo_step(
    ctx: &StepContext,
    req: DemoStepRequest,
) -> Result<DemoStepOutput, StepError> {
    let input = &req.state.input;
    if input.steps == 0 {
        return Err(StepError::bad_input("demo-step", "steps must be at least 1"));
    }
    let step = req.state.demo.as_ref().map_or(0, |d| d.step) + 1;
    if input.fail_at_step == Some(step) {
        return Err(StepError::new(
            "DemoStepFailed",
            format!("step {step} failed because the input asked for failAtStep={step}"),
        ));
    }
    let steps = input.steps;
    let step = step.min(steps);
    let percent = u8::try_from(u64::from(step) * 100 / u64::from(steps)).unwrap_or(100);
    let progress = Progress {
        percent,
        message: format!("step {step} of {steps}"),
    };
    let updated = ctx
        .store
        .set_progress(&req.job_id, &progress, Utc::now())
        .await
        .map_err(StepError::store)?;
    if !updated {
        // The job was cancelled (or ended) under us: stop the workflow.
        let job = ctx.job(&req.job_id).await?;
        return Err(not_running(&job));
    }
    let done = step >= steps;
    let output = done.then(|| {
        let mut result = json!({
            "stepsCompleted": steps,
            "stepSeconds": input.step_seconds,
            "totalSeconds": u64::from(steps) * u64::from(input.step_seconds),
            "summary": format!("Ran {steps} steps of {} s each.", input.step_seconds),
        });
        if let Some(answer) = req.state.asked.as_ref().and_then(|a| a.get("answer")) {
            result["answer"] = answer.clone();
        }
        StepOutput {
            scratch: Vec::new(),
            result,
            files: Vec::new(),
        }
    });
    Ok(DemoStepOutput {
        step,
        steps,
        done,
        output,
    })
}
