//! The `demo-step` workflow step as a Lambda function.

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_worker("demo-step").await
}
