//! Progress from steps outside longhaul's process (Python, Node, a command): a line on
//! stderr, `{"longhaulProgress": {"jobId": "...", "percent": 40, "message": "..."}}`. On one
//! machine the runner reads it as it is printed; on AWS it reaches CloudWatch Logs, whose
//! subscription sends it to the `progress` function. `jobId` may be left out on one machine
//! (the runner knows the job); on AWS it is needed, and it is in every step's event.

use chrono::Utc;
use longhaul_jobs::Progress;
use serde_json::Value;

use crate::{StepContext, StepError};

/// A progress report a step printed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressLine {
    pub job_id: Option<String>,
    pub percent: u8,
    pub message: String,
}

/// Finds a progress report in a log line (a logger's prefix before it is allowed).
pub fn parse_progress(line: &str) -> Option<ProgressLine> {
    let start = line.find("{\"longhaulProgress\"")?;
    let mut de = serde_json::Deserializer::from_str(&line[start..]).into_iter::<Value>();
    let v = de.next()?.ok()?;
    let p = v.get("longhaulProgress")?;
    let percent = p.get("percent").and_then(Value::as_f64)?.clamp(0.0, 100.0) as u8;
    let message: String = p
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(500)
        .collect();
    let job_id = p
        .get("jobId")
        .and_then(Value::as_str)
        .filter(|id| longhaul_jobs::job::is_valid_job_id(id))
        .map(str::to_string);
    Some(ProgressLine {
        job_id,
        percent,
        message,
    })
}

/// Records a report; a job that is no longer running keeps what it has.
pub async fn record(ctx: &StepContext, job_id: &str, line: ProgressLine) -> Result<(), StepError> {
    let progress = Progress {
        percent: line.percent,
        message: line.message,
    };
    ctx.store
        .set_progress(job_id, &progress, Utc::now())
        .await
        .map_err(StepError::store)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_found_and_nothing_else() {
        let id = longhaul_jobs::job::new_job_id();
        let line = format!(
            "2026-12-01T10:00:00Z\tabc\tERROR\t{{\"longhaulProgress\": {{\"jobId\": \"{id}\", \"percent\": 40, \"message\": \"half\"}}}}"
        );
        assert_eq!(
            parse_progress(&line),
            Some(ProgressLine {
                job_id: Some(id),
                percent: 40,
                message: "half".into()
            })
        );
        let p =
            parse_progress(r#"{"longhaulProgress": {"percent": 400, "jobId": "../x"}}"#).unwrap();
        assert_eq!((p.percent, p.job_id), (100, None));
        assert_eq!(parse_progress("longhaulProgress 40"), None);
        assert_eq!(parse_progress(r#"{"other": 1}"#), None);
        assert_eq!(
            parse_progress(r#"{"longhaulProgress": {"message": "no percent"}}"#),
            None
        );
    }
}
