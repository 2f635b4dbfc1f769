//! The `demo-step` workflow step as a Lambda function.

use longhaul_jobs::types::JobTypes;

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_step("demo-step", JobTypes::empty(), |ctx, req| async move {
        longhaul_workers::demo_step(&ctx, req).await
    })
    .await
}
