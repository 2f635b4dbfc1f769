//! The Rust step of job type {name}, compiled into longhaul (longhaul-steps collects every
//! `jobtypes/*/steps.rs`). A step is an async function over the ports: JSON in (decoded into
//! its request type), JSON out; a `StepError`'s name is what Retry and Catch match.

use chrono::Utc;
use longhaul_jobs::Progress;
use serde::Deserialize;
use serde_json::json;

use crate::{StepContext, StepError, StepOutput, StepRegistry};

pub fn register(steps: &mut StepRegistry) {
    steps.add("{name}-count", step_fn!("{name}-count", count));
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountRequest {
    pub job_id: String,
    pub input: CountInput,
}

#[derive(Debug, Deserialize)]
pub struct CountInput {
    pub text: String,
}

pub async fn count(ctx: &StepContext, req: CountRequest) -> Result<StepOutput, StepError> {
    let words = req.input.text.split_whitespace().count();
    let progress = Progress {
        percent: 50,
        message: format!("counted {words} words"),
    };
    ctx.store
        .set_progress(&req.job_id, &progress, Utc::now())
        .await
        .map_err(StepError::store)?;
    Ok(StepOutput {
        result: json!({"words": words, "characters": req.input.text.chars().count()}),
        ..Default::default()
    })
}
