//! longhaul-steps: the steps compiled into longhaul, as plain async functions over the ports
//! — the base workflow's (Register, Complete, MarkFailed, and the status-change tracker), the
//! built-in RequestInput (`request-input`: a job waits for its owner's answer; [`input`]), and
//! the Rust steps of every job type folder (`jobtypes/*/steps.rs`, collected at build time).
//! The embedded engine calls them in process (`longhaul serve`); on AWS each is a Lambda
//! function of one bootstrap. They never see Lambda or engine types: JSON in, JSON out, or a
//! [`StepError`] whose `error` becomes the Step Functions error name (what `Catch`/`Retry`
//! match on).
//!
//! Every step is safe to run twice (Step Functions tasks are at least once): status changes
//! are conditional writes, and a step that finds its work already done succeeds.

pub mod base;
pub mod fetch;
pub mod input;
pub mod progress;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use longhaul_jobs::{BlobStore, InputCheck, JobStore, JobTypes};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use base::{
    Acknowledged, CompleteRequest, MarkFailedRequest, RegisterRequest, RegisteredJob, StepOutput,
    complete, job_error, mark_failed, register, track_status_change,
};
pub use serde_json::Value;

/// What the steps work with.
#[derive(Clone)]
pub struct StepContext {
    pub store: Arc<dyn JobStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub types: Arc<JobTypes>,
    pub downloads: fetch::DownloadPolicy,
    /// How long the records of jobs Register creates (scheduled runs) are kept, if limited;
    /// startJob's own jobs get the service's.
    pub job_retention: Option<std::time::Duration>,
}

impl StepContext {
    /// The job as stored now; `JobNotFound` if it is gone.
    pub async fn job(&self, job_id: &str) -> Result<longhaul_jobs::Job, StepError> {
        self.store
            .get(job_id)
            .await
            .map_err(StepError::store)?
            .ok_or_else(|| StepError::new("JobNotFound", format!("no job {job_id}")))
    }
}

/// A step's failure, as Step Functions sees it: an error name and a cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct StepError {
    pub error: String,
    pub cause: String,
}

impl StepError {
    pub fn new(error: &str, cause: impl Into<String>) -> StepError {
        StepError {
            error: error.to_string(),
            cause: cause.into(),
        }
    }

    /// A store error is worth a retry: MarkFailed retries everything, and the workflow's
    /// Catch records it when retries run out.
    pub fn store(e: impl std::fmt::Display) -> StepError {
        StepError::new("StoreUnavailable", e.to_string())
    }

    /// Input the step cannot decode (a workflow or a caller sent the wrong shape).
    pub fn bad_input(step: &str, e: impl std::fmt::Display) -> StepError {
        StepError::new("InvalidTaskInput", format!("{step}: {e}"))
    }
}

/// A step's running future.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, StepError>> + Send + 'a>>;

/// A step: the Task's input in, its output out. Written with [`step_fn!`] from a typed
/// async function.
pub type StepFn = for<'a> fn(&'a StepContext, Value) -> StepFuture<'a>;

/// Decodes a step's input (for [`step_fn!`]).
pub fn parse_input<T: DeserializeOwned>(step: &str, input: Value) -> Result<T, StepError> {
    serde_json::from_value(input).map_err(|e| StepError::bad_input(step, e))
}

/// Encodes a step's output (for [`step_fn!`]).
pub fn to_output<T: Serialize>(out: T) -> Result<Value, StepError> {
    serde_json::to_value(out).map_err(|e| StepError::new("Internal", e.to_string()))
}

/// A [`StepFn`] from `async fn(&StepContext, Request) -> Result<Output, StepError>`, with the
/// request decoded from JSON (a decoding failure is `InvalidTaskInput`) and the output
/// encoded.
#[macro_export]
macro_rules! step_fn {
    ($name:literal, $f:path) => {{
        fn step(ctx: &$crate::StepContext, input: $crate::Value) -> $crate::StepFuture<'_> {
            Box::pin(async move {
                $crate::to_output($f(ctx, $crate::parse_input($name, input)?).await?)
            })
        }
        step as $crate::StepFn
    }};
}

/// The steps compiled into longhaul, by name (jobtype.json's `"runtime": "rust", "handler":
/// NAME`), and the Rust input checks (`"inputCheck": NAME`).
#[derive(Clone, Default)]
pub struct StepRegistry {
    steps: BTreeMap<&'static str, StepFn>,
    input_checks: BTreeMap<&'static str, Arc<dyn InputCheck>>,
}

impl std::fmt::Debug for StepRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRegistry")
            .field("steps", &self.steps.keys().collect::<Vec<_>>())
            .field(
                "input_checks",
                &self.input_checks.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The base workflow's steps: their names in `statemachine/job.asl.json`'s substitutions.
pub const REGISTER: &str = "register";
pub const COMPLETE: &str = "complete";
pub const MARK_FAILED: &str = "mark-failed";
/// The built-in step a job type declares to wait for its owner's answer (`"runtime":
/// "rust", "handler": "request-input"`; see [`input`]).
pub const REQUEST_INPUT: &str = "request-input";
/// Not a workflow step: the EventBridge rule's target (and the local tracker's).
pub const TRACK_STATUS: &str = "track-status";

impl StepRegistry {
    /// Every step compiled into longhaul: the base steps and each job type folder's.
    pub fn all() -> StepRegistry {
        let mut r = StepRegistry::default();
        r.add(REGISTER, step_fn!("register", base::register));
        r.add(COMPLETE, step_fn!("complete", base::complete));
        r.add(MARK_FAILED, step_fn!("mark-failed", base::mark_failed));
        r.add(
            REQUEST_INPUT,
            step_fn!("request-input", input::request_input),
        );
        r.add(
            TRACK_STATUS,
            step_fn!("track-status", base::track_status_change),
        );
        jobtypes::register_all(&mut r);
        r
    }

    /// Adds a step. Names are unique: a second one with the same name is a bug in longhaul,
    /// found by the tests that build the registry.
    pub fn add(&mut self, name: &'static str, step: StepFn) {
        let old = self.steps.insert(name, step);
        assert!(old.is_none(), "two Rust steps are named {name:?}");
    }

    pub fn add_input_check(&mut self, name: &'static str, check: Arc<dyn InputCheck>) {
        let old = self.input_checks.insert(name, check);
        assert!(old.is_none(), "two Rust input checks are named {name:?}");
    }

    pub fn get(&self, name: &str) -> Option<StepFn> {
        self.steps.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.steps.keys().copied()
    }

    pub fn input_check(&self, name: &str) -> Option<Arc<dyn InputCheck>> {
        self.input_checks.get(name).cloned()
    }

    pub fn input_check_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.input_checks.keys().copied()
    }

    /// Runs the step `name`.
    pub async fn run(
        &self,
        ctx: &StepContext,
        name: &str,
        input: Value,
    ) -> Result<Value, StepError> {
        match self.get(name) {
            Some(step) => step(ctx, input).await,
            None => Err(StepError::new(
                "UnknownStep",
                format!("no Rust step named {name:?} is compiled into longhaul"),
            )),
        }
    }
}

impl StepRegistry {
    /// What of this registry job type folders may name, for [`longhaul_catalog::Catalog`].
    pub fn rust_code(&self) -> longhaul_catalog::RustCode {
        longhaul_catalog::RustCode {
            steps: self.names().map(str::to_string).collect(),
            input_checks: self
                .input_check_names()
                .filter_map(|n| self.input_check(n).map(|c| (n.to_string(), c)))
                .collect(),
        }
    }
}

/// The built-in job types (`jobtypes/demo`, `jobtypes/csv-report`) checked against the
/// steps compiled in.
pub fn builtin_catalog() -> Result<longhaul_catalog::Catalog, longhaul_catalog::CatalogError> {
    longhaul_catalog::Catalog::new(
        longhaul_catalog::builtin_folders(),
        &StepRegistry::all().rust_code(),
    )
}

/// The Rust step `longhaul new job-type --runtime rust` writes, compiled here as it is (and
/// run by a test), so the scaffold always builds.
#[cfg(test)]
#[path = "../../src/scaffold/rust_step.rs"]
mod scaffold_rust_step;

#[cfg(test)]
mod scaffold_tests {
    use std::sync::Arc;

    use longhaul_jobs::memory::{MemoryBlobStore, MemoryJobStore};
    use longhaul_jobs::{Job, JobStatus, JobStore, TransitionPatch};
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn the_scaffolded_rust_step_runs() {
        let mut r = StepRegistry::default();
        scaffold_rust_step::register(&mut r);
        let store = Arc::new(MemoryJobStore::new());
        let ctx = StepContext {
            store: store.clone(),
            blobs: Arc::new(MemoryBlobStore::new()),
            types: Arc::new(JobTypes::empty()),
            downloads: Default::default(),
            job_retention: None,
        };
        let job = Job::new("a", "t", json!({}), chrono::Utc::now());
        store.create(&job).await.unwrap();
        store
            .transition(
                &job.job_id,
                JobStatus::Running,
                TransitionPatch::default(),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        let out = r
            .run(
                &ctx,
                "{name}-count",
                json!({"jobId": job.job_id, "input": {"text": "a b c"}}),
            )
            .await
            .unwrap();
        assert_eq!(out["result"]["words"], 3);
        let progress = store.get(&job.job_id).await.unwrap().unwrap().progress;
        assert_eq!(progress.message, "counted 3 words");
    }
}

/// The Rust steps of the job type folders: `jobtypes/NAME/steps.rs`, each a module with
/// `pub fn register(steps: &mut StepRegistry)` (see build.rs).
mod jobtypes {
    include!(concat!(env!("OUT_DIR"), "/jobtypes.rs"));
}
