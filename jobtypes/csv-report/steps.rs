//! csv-report's Rust steps: Plan (cut the file into record-aligned ranges), Aggregate (one
//! range → a partial, written back to the blob store: only its key travels through the
//! workflow), Merge (partials → result, report.csv, report.png); and its input check (the
//! rules of `longhaul-report`'s spec, the upload's header holds the columns named). The
//! computation itself is `longhaul-report`. Compiled into longhaul-steps (see its build.rs).

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use longhaul_jobs::{InputCheck, JobFile, Progress};
use longhaul_report::{Chunk, Partial, Planner, ReportError, ReportSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::base::output_prefix;
use crate::{StepContext, StepError, StepOutput, StepRegistry};

pub fn register(steps: &mut StepRegistry) {
    steps.add("csv-plan", step_fn!("csv-plan", plan));
    steps.add("csv-aggregate", step_fn!("csv-aggregate", aggregate));
    steps.add("csv-merge", step_fn!("csv-merge", merge));
    steps.add_input_check("csv-report", Arc::new(ReportInput));
}

/// The csv-report input rules a schema cannot say.
struct ReportInput;

impl InputCheck for ReportInput {
    fn normalize(&self, input: &mut Map<String, Value>) -> Result<(), String> {
        let spec: ReportSpec = serde_json::from_value(Value::Object(input.clone()))
            .map_err(|e| format!("input: {e}"))?;
        spec.validate()
    }

    fn check_file_head(&self, input: &Value, _field: &str, head: &[u8]) -> Result<(), String> {
        let spec = spec_of(input).map_err(|e| e.cause)?;
        let delimiter = spec.delimiter_byte()?;
        // A header that does not parse here is reported by Plan, with its line.
        if let Ok(Some(header)) = longhaul_report::read_header(head, delimiter) {
            longhaul_report::check_columns(&spec, &header).map_err(|e| format!("input: {e}"))?;
        }
        Ok(())
    }
}

/// At most this many ranges, whatever chunkBytes asks: the plan travels through the
/// workflow, whose payloads are limited (256 KB on Step Functions).
pub const MAX_CHUNKS: u64 = 1000;
const READ_BYTES: u64 = 8 << 20;

/// The spec from a job's input. Register gives the file as `{"object", "uri"}`; the spec
/// reads the object.
fn spec_of(v: &Value) -> Result<ReportSpec, StepError> {
    let mut v = v.clone();
    if let Some(source) = v.get_mut("source").and_then(Value::as_object_mut) {
        source.remove("uri");
    }
    serde_json::from_value(v)
        .map_err(|e| StepError::new("InvalidJobInput", format!("input: {e}")))
}

fn object_of(spec: &ReportSpec) -> Result<String, StepError> {
    match &spec.source {
        longhaul_report::Source::Object { object } => Ok(object.clone()),
        _ => Err(StepError::new(
            "InvalidTaskInput",
            "the source was not fetched into the blob store (Register does that)",
        )),
    }
}

fn report_err(e: ReportError) -> StepError {
    let name = match e {
        ReportError::UnknownColumn { .. } => "UnknownColumn",
        ReportError::NoHeader | ReportError::BadHeader(_) | ReportError::Csv(_) => "InvalidCsv",
        ReportError::Spec(_) => "InvalidJobInput",
    };
    StepError::new(name, e.to_string())
}

fn blob_err(e: longhaul_jobs::BlobError) -> StepError {
    StepError::new("StoreUnavailable", e.to_string())
}

async fn progress(
    ctx: &StepContext,
    job_id: &str,
    percent: u8,
    message: String,
) -> Result<(), StepError> {
    let ok = ctx
        .store
        .set_progress(job_id, &Progress { percent, message }, Utc::now())
        .await
        .map_err(|e| StepError::new("StoreUnavailable", e.to_string()))?;
    if !ok {
        return Err(StepError::new(
            "JobNotRunning",
            format!("job {job_id} is no longer running"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRequest {
    pub job_id: String,
    pub input: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanOutput {
    pub object: String,
    pub header: Vec<String>,
    pub chunks: Vec<Chunk>,
    pub count: usize,
    pub size_bytes: u64,
}

/// Plan: one pass over the file, cutting at record boundaries.
pub async fn plan(ctx: &StepContext, req: PlanRequest) -> Result<PlanOutput, StepError> {
    let spec = spec_of(&req.input)?;
    let object = object_of(&spec)?;
    let size = ctx
        .blobs
        .head(&object)
        .await
        .map_err(blob_err)?
        .ok_or_else(|| {
            StepError::new("InputNotFound", format!("the input file {object} is gone"))
        })?
        .size_bytes;
    let chunk_bytes = spec.chunk_bytes().max(size.div_ceil(MAX_CHUNKS));
    let delimiter = spec
        .delimiter_byte()
        .map_err(|m| StepError::new("InvalidJobInput", m))?;
    let mut planner = Planner::new(delimiter, chunk_bytes);
    let mut at = 0;
    while at < size {
        let end = (at + READ_BYTES).min(size);
        let bytes = ctx
            .blobs
            .get(&object, Some(at..end))
            .await
            .map_err(blob_err)?;
        planner = tokio::task::spawn_blocking(move || planner.feed(&bytes).map(|()| planner))
            .await
            .map_err(|e| StepError::new("Internal", e.to_string()))?
            .map_err(report_err)?;
        at = end;
    }
    let plan = planner.finish().map_err(report_err)?;
    longhaul_report::check_columns(&spec, &plan.header).map_err(report_err)?;
    let count = plan.chunks.len();
    progress(
        ctx,
        &req.job_id,
        5,
        format!("read the header; {count} chunk(s) of the {size}-byte file to aggregate"),
    )
    .await?;
    Ok(PlanOutput {
        object,
        header: plan.header,
        chunks: plan.chunks,
        count,
        size_bytes: size,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateRequest {
    pub job_id: String,
    pub object: String,
    pub header: Vec<String>,
    pub spec: Value,
    pub chunk: Chunk,
    pub index: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateOutput {
    pub partial: String,
}

/// Aggregate: one range → a partial in the blob store.
pub async fn aggregate(
    ctx: &StepContext,
    req: AggregateRequest,
) -> Result<AggregateOutput, StepError> {
    let spec = spec_of(&req.spec)?;
    if req.chunk.start > req.chunk.end {
        return Err(StepError::new(
            "InvalidTaskInput",
            "chunk start is after its end",
        ));
    }
    let bytes = ctx
        .blobs
        .get(&req.object, Some(req.chunk.start..req.chunk.end))
        .await
        .map_err(blob_err)?;
    let header = req.header.clone();
    let first_line = req.chunk.first_line;
    let partial = tokio::task::spawn_blocking(move || {
        longhaul_report::aggregate(&spec, &header, &bytes, first_line)
    })
    .await
    .map_err(|e| StepError::new("Internal", e.to_string()))?
    .map_err(report_err)?;
    let key = format!("jobs/{}/partials/{:05}.json", req.job_id, req.index);
    let body =
        serde_json::to_vec(&partial).map_err(|e| StepError::new("Internal", e.to_string()))?;
    ctx.blobs
        .put(&key, Bytes::from(body), "application/json")
        .await
        .map_err(blob_err)?;
    let total = req.total.max(1);
    let percent = 5 + (85 * (req.index + 1) / total).min(85);
    progress(
        ctx,
        &req.job_id,
        percent as u8,
        format!("aggregated chunk {} of {total}", req.index + 1),
    )
    .await?;
    Ok(AggregateOutput { partial: key })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeRequest {
    pub job_id: String,
    pub spec: Value,
    pub partials: Vec<AggregateOutput>,
}

/// Merge: partials → the result, report.csv and report.png.
pub async fn merge(ctx: &StepContext, req: MergeRequest) -> Result<StepOutput, StepError> {
    let spec = spec_of(&req.spec)?;
    let mut partials: Vec<Partial> = Vec::with_capacity(req.partials.len());
    let prefix = format!("jobs/{}/partials/", req.job_id);
    for p in &req.partials {
        if !p.partial.starts_with(&prefix) {
            return Err(StepError::new(
                "InvalidTaskInput",
                "a partial of another job",
            ));
        }
        let bytes = ctx.blobs.get(&p.partial, None).await.map_err(blob_err)?;
        partials.push(
            serde_json::from_slice(&bytes)
                .map_err(|e| StepError::new("Internal", format!("corrupt partial: {e}")))?,
        );
    }
    progress(
        ctx,
        &req.job_id,
        92,
        format!("merging {} partial(s)", partials.len()),
    )
    .await?;
    let by = if spec.group_by.is_empty() {
        "all rows".to_string()
    } else {
        spec.group_by.join(", ")
    };
    let (report, png) = tokio::task::spawn_blocking(move || {
        longhaul_report::merge(&spec, &partials).map(|r| {
            let title = format!("{} by {by} (top {})", r.sort_metric, r.chart_bars.len());
            let png = longhaul_report::chart::bar_chart_png(&title, &r.chart_bars);
            (r, png)
        })
    })
    .await
    .map_err(|e| StepError::new("Internal", e.to_string()))?
    .map_err(report_err)?;
    let csv_key = format!("{}report.csv", output_prefix(&req.job_id));
    let png_key = format!("{}report.png", output_prefix(&req.job_id));
    let (csv_len, png_len) = (report.csv.len() as u64, png.len() as u64);
    ctx.blobs
        .put(&csv_key, Bytes::from(report.csv), "text/csv")
        .await
        .map_err(blob_err)?;
    ctx.blobs
        .put(&png_key, Bytes::from(png), "image/png")
        .await
        .map_err(blob_err)?;
    Ok(StepOutput {
        // Deleted by Complete, not here: a Merge retried after a crash reads them again.
        scratch: req.partials.iter().map(|p| p.partial.clone()).collect(),
        result: report.result,
        files: vec![
            JobFile {
                name: "report.csv".into(),
                mime_type: "text/csv".into(),
                size_bytes: csv_len,
                object: csv_key,
            }
            .into(),
            JobFile {
                name: "report.png".into(),
                mime_type: "image/png".into(),
                size_bytes: png_len,
                object: png_key,
            }
            .into(),
        ],
    })
}
