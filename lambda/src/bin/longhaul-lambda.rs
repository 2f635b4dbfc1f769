//! The one bootstrap of every longhaul Lambda function: `LONGHAUL_FUNCTION` says which
//! (`api`, a step such as `register` or `csv-plan`, `track-status`, `progress`).

#[tokio::main]
async fn main() -> Result<(), longhaul_lambda::Error> {
    longhaul_lambda::run().await
}
