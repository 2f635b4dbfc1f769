//! longhaul's AWS Lambda entry points. Each bin in `src/bin` is one function of
//! template.yaml: `api` serves the same Router as `longhaul serve` (owner from the Cognito
//! claims API Gateway puts in the request context), and one bin per workflow step calls its
//! handler in `longhaul-workers`. This crate only wires: settings from the environment,
//! clients built once per container, JSON logs.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use longhaul_api::{ApiState, CognitoClaimsAuth};
use longhaul_aws::{AwsSettings, Clients, DynamoJobStore, S3BlobStore, SfnOrchestrator};
use longhaul_jobs::ports::{BlobStore, JobStore};
use longhaul_jobs::service::{JobService, ServiceConfig};
use longhaul_jobs::types::JobTypes;
use longhaul_workers::{WorkerContext, WorkerError, fetch::DownloadPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A startup failure: logged, and Lambda reports the init error.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// JSON logs (CloudWatch parses them), level from `RUST_LOG` (default info), no ANSI.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .log_internal_errors(false)
        .without_time() // Lambda stamps every line itself.
        .try_init();
}

/// The stores every function uses.
pub struct Adapters {
    pub store: Arc<dyn JobStore>,
    pub blobs: Arc<dyn BlobStore>,
}

pub fn adapters(settings: &AwsSettings, clients: &Clients) -> Adapters {
    let blobs: Arc<dyn BlobStore> =
        Arc::new(S3BlobStore::new(clients.s3.clone(), &settings.bucket));
    let store: Arc<dyn JobStore> = Arc::new(DynamoJobStore::new(
        clients.dynamodb.clone(),
        &settings.table,
        blobs.clone(),
    ));
    Adapters { store, blobs }
}

/// The API's service settings: `LONGHAUL_MAX_ACTIVE_JOBS` (1..=10000, default 20).
pub fn service_config(
    get: impl Fn(&str) -> Option<String>,
) -> Result<ServiceConfig, longhaul_aws::SettingsError> {
    let mut config = ServiceConfig::default();
    if let Some(v) = get("LONGHAUL_MAX_ACTIVE_JOBS").filter(|v| !v.is_empty()) {
        config.max_active_jobs_per_owner = v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| longhaul_aws::SettingsError {
                name: "LONGHAUL_MAX_ACTIVE_JOBS",
                problem: format!("{v:?} is not a whole number from 1 to 10000"),
            })?;
    }
    Ok(config)
}

/// The API state over the AWS adapters, authenticated by the Cognito claims.
pub fn api_state(
    settings: &AwsSettings,
    clients: &Clients,
    config: ServiceConfig,
) -> Result<ApiState, Error> {
    let Adapters { store, blobs } = adapters(settings, clients);
    let arn = settings
        .state_machine_arn
        .clone()
        .ok_or("LONGHAUL_STATE_MACHINE_ARN: is not set")?;
    let orchestrator = Arc::new(SfnOrchestrator::new(clients.sfn(), arn));
    let service = Arc::new(JobService::new(
        store,
        blobs,
        orchestrator,
        JobTypes::builtin(),
        config,
    ));
    Ok(ApiState {
        service,
        auth: Arc::new(CognitoClaimsAuth),
    })
}

/// `main` of the `api` function.
pub async fn run_api() -> Result<(), Error> {
    init_tracing();
    let settings = AwsSettings::from_env(true).inspect_err(|e| tracing::error!(%e, "settings"))?;
    let config = service_config(|k| std::env::var(k).ok())
        .inspect_err(|e| tracing::error!(%e, "settings"))?;
    let clients = Clients::new(&settings).await;
    let router = longhaul_api::router(api_state(&settings, &clients, config)?);
    lambda_http::run(router).await
}

/// A handler failure as Step Functions sees it: `errorType` is the handler's error name
/// (what Retry and Catch match), `errorMessage` its cause.
#[derive(Debug)]
pub struct StepError(pub WorkerError);

impl From<StepError> for Diagnostic {
    fn from(e: StepError) -> Diagnostic {
        Diagnostic {
            error_type: e.0.error,
            error_message: e.0.cause,
        }
    }
}

/// The tracker receives the EventBridge event's `detail` (the rule's InputPath); a whole
/// event is unwrapped too, so a rule without InputPath still works.
pub fn step_input(handler: &str, payload: Value) -> Value {
    if handler == "track-status"
        && payload.get("detail-type").is_some()
        && let Some(detail) = payload.get("detail")
    {
        return detail.clone();
    }
    payload
}

/// `main` of a workflow step's function: decodes each invocation's input for `handler` and
/// encodes its output. Each bin passes its one handler, so a bootstrap carries only the code
/// of its step; only Register, which validates jobs started by schedules, gets the job types.
pub async fn run_step<Req, Resp, F, Fut>(
    name: &'static str,
    types: JobTypes,
    handler: F,
) -> Result<(), Error>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Arc<WorkerContext>, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, WorkerError>> + Send,
{
    init_tracing();
    let settings = AwsSettings::from_env(false).inspect_err(|e| tracing::error!(%e, "settings"))?;
    let clients = Clients::new(&settings).await;
    let Adapters { store, blobs } = adapters(&settings, &clients);
    let ctx = Arc::new(WorkerContext {
        store,
        blobs,
        types: Arc::new(types),
        downloads: DownloadPolicy::default(),
    });
    let handler = Arc::new(handler);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (ctx, handler) = (ctx.clone(), handler.clone());
        async move {
            let req: Req = serde_json::from_value(step_input(name, event.payload))
                .map_err(|e| StepError(WorkerError::bad_input(name, e)))?;
            let resp = handler(ctx, req).await.map_err(|e| {
                tracing::warn!(handler = name, error = %e.error, "step failed");
                StepError(e)
            })?;
            serde_json::to_value(resp)
                .map_err(|e| StepError(WorkerError::new("Internal", e.to_string())))
        }
    }))
    .await
}

/// Every Lambda function's bin: `api` is the HTTP API; the rest are workflow steps.
pub const BINS: &[&str] = &[
    "api",
    "register",
    "demo-step",
    "csv-plan",
    "csv-aggregate",
    "csv-merge",
    "complete",
    "mark-failed",
    "track-status",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn step_errors_keep_the_handler_error_name() {
        let d: Diagnostic = StepError(WorkerError::new("JobCancelled", "cancelled")).into();
        assert_eq!(d.error_type, "JobCancelled");
        assert_eq!(d.error_message, "cancelled");
    }

    #[test]
    fn the_tracker_takes_a_detail_or_a_whole_event() {
        let detail = json!({"executionArn": "arn", "name": "n", "status": "ABORTED"});
        let event = json!({"detail-type": "Step Functions Execution Status Change", "source": "aws.states", "detail": detail});
        assert_eq!(step_input("track-status", event.clone()), detail);
        assert_eq!(step_input("track-status", detail.clone()), detail);
        assert_eq!(step_input("register", event.clone()), event);
    }

    #[test]
    fn max_active_jobs_is_validated() {
        let get = |v: &'static str| {
            move |k: &str| (k == "LONGHAUL_MAX_ACTIVE_JOBS").then(|| v.to_string())
        };
        assert_eq!(
            service_config(get("5")).unwrap().max_active_jobs_per_owner,
            5
        );
        for bad in ["0", "-1", "lots", "10001"] {
            let e = service_config(get(bad)).unwrap_err();
            assert_eq!(e.name, "LONGHAUL_MAX_ACTIVE_JOBS", "{bad}");
        }
        assert_eq!(
            service_config(|_| None).unwrap().max_active_jobs_per_owner,
            20
        );
    }
}
