//! The `register` workflow step as a Lambda function.

use longhaul_jobs::types::JobTypes;

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_step("register", JobTypes::builtin(), |ctx, req| async move {
        longhaul_workers::register(&ctx, req).await
    })
    .await
}
