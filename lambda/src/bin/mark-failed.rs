//! The `mark-failed` workflow step as a Lambda function.

use longhaul_jobs::types::JobTypes;

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_step("mark-failed", JobTypes::empty(), |ctx, req| async move {
        longhaul_workers::mark_failed(&ctx, req).await
    })
    .await
}
