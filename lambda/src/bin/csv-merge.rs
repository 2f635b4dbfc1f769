//! The `csv-merge` workflow step as a Lambda function.

use longhaul_jobs::types::JobTypes;

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_step("csv-merge", JobTypes::empty(), |ctx, req| async move {
        longhaul_workers::csv::merge(&ctx, req).await
    })
    .await
}
