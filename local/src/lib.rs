//! longhaul's single-machine adapters: [`SqliteJobStore`] (jobs in SQLite, WAL), [`FsBlobStore`]
//! (files under the data dir, written atomically) with [`UrlSigner`] (HMAC-SHA256 signed,
//! expiring links served by [`files_router`]), [`orchestrator::EngineOrchestrator`] (the
//! workflow in the embedded engine, Tasks bound to the steps, callbacks answered into it),
//! and [`http_task::OutboundHttp`] (HTTP Tasks' requests under the outbound policy).

mod blobs;
pub mod console;
pub mod http_task;
mod jobs;
pub mod orchestrator;
pub mod runners;
pub mod schedule;

pub use blobs::{FsBlobStore, UrlSigner, files_router};
pub use jobs::SqliteJobStore;
