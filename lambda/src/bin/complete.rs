//! The `complete` workflow step as a Lambda function.

use longhaul_jobs::types::JobTypes;

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_step("complete", JobTypes::empty(), |ctx, req| async move {
        longhaul_workers::complete(&ctx, req).await
    })
    .await
}
