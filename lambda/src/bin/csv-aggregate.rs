//! The `csv-aggregate` workflow step as a Lambda function.

use longhaul_jobs::types::JobTypes;

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_step("csv-aggregate", JobTypes::empty(), |ctx, req| async move {
        longhaul_workers::csv::aggregate(&ctx, req).await
    })
    .await
}
