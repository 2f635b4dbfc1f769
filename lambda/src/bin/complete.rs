//! The `complete` workflow step as a Lambda function.

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_worker("complete").await
}
