//! longhaul-report: the computation behind the `csv-report` job, as pure functions over
//! bytes so each step runs where the workflow puts it (a Lambda, or in process):
//!
//! 1. [`Planner`] reads the file once, front to back, and cuts it into byte ranges of about
//!    `chunk_bytes` that start and end on record boundaries (quoted fields may hold
//!    newlines, so a cut is only made at a newline outside quotes).
//! 2. [`aggregate`] groups and sums one range into a [`Partial`] (small: one entry per
//!    group, never rows). It splits records exactly as the `csv` crate would, but takes
//!    quote-free records apart where they lie, without copying them.
//! 3. [`merge`] combines the partials exactly (means from sums and counts), sorts, and
//!    writes `report.csv`; [`chart::bar_chart_png`] draws the top groups.
//!
//! The answer does not depend on how the file was cut. One module per step: `plan`,
//! `aggregate`, `merge`; `spec` is the job's input, `chart` the picture.

mod aggregate;
pub mod chart;
mod merge;
mod plan;
mod spec;

pub use aggregate::{Group, Partial, Totals, aggregate, check_columns};
pub use merge::{Report, merge};
pub use plan::{Chunk, Plan, Planner, read_header};
pub use spec::{Filter, FilterOp, Metric, MetricOp, ReportSpec, Source};

/// Why a step could not compute its part of the report.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    #[error("column {column:?} is not in the CSV header (columns: {known})")]
    UnknownColumn { column: String, known: String },
    #[error("the file has no header row")]
    NoHeader,
    #[error("the CSV header is not valid: {0}")]
    BadHeader(String),
    #[error("CSV error: {0}")]
    Csv(String),
    #[error("invalid report spec: {0}")]
    Spec(String),
}
