//! The HTTP API as a Lambda function behind API Gateway REST with the Cognito authorizer.

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run_api().await
}
