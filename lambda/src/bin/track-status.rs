//! The `track-status` workflow step as a Lambda function.

use longhaul_jobs::types::JobTypes;

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_step("track-status", JobTypes::empty(), |ctx, req| async move {
        longhaul_workers::track_status_change(&ctx, req).await
    })
    .await
}
