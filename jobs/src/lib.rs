//! longhaul's domain: the job, its legal status changes, the job types and their input
//! validation, the three ports (`JobStore`, `BlobStore`, `Orchestrator`) and `JobService`,
//! the use cases the API and CLI call. No AWS SDK and no SQLite here: adapters implement the
//! ports (`longhaul-local`, `longhaul-aws`), entry points wire them.

pub mod budget;
#[cfg(feature = "test-support")]
pub mod contract;
pub mod job;
#[cfg(feature = "test-support")]
pub mod memory;
pub mod ports;
pub mod schema;
pub mod service;
pub mod types;
pub mod view;
pub mod watch;
pub mod workflow;

pub use job::{
    ExecutionRef, Job, JobError, JobFile, JobStatus, OpenAiFileRef, Progress, TransitionPatch,
};
pub use ports::{
    BlobError, BlobMeta, BlobStore, CallbackError, CreateOutcome, JobPage, JobStore, JobWatch,
    ListQuery, Orchestrator, OrchestratorError, SignedUrl, StoreError, TransitionOutcome,
    attachment_disposition,
};
pub use service::{
    CreateUploadRequest, FailTaskRequest, GetParams, HistoryParams, JobList, JobService,
    ListParams, ServiceConfig, ServiceError, StartJobRequest, UploadTicket,
};
pub use types::{InputCheck, JobType, JobTypeDef, JobTypeInfo, JobTypes, Runtime, StepDef};
pub use view::{ExecutionEvent, ExecutionHistory, FileView, JobSummary, JobView};
pub use workflow::{ExecutionStatusChange, WorkflowInput};
