//! longhaul's AWS Lambda functions, all served by one bootstrap (one build, one link):
//! `LONGHAUL_FUNCTION` names what a function is — `api` (lambda_http serving the same Router
//! as `longhaul serve`, the owner from the Cognito claims API Gateway puts in the request
//! context), a Rust step of the workflow by name (`register`, `csv-plan`, …; lambda_runtime
//! calling the step in `longhaul-steps`), `track-status` (the EventBridge rule's target) or
//! `progress` (the CloudWatch Logs subscription of the Python and Node steps). This crate
//! only wires: settings from the environment, clients built once per container, JSON logs.

use std::io::Read as _;
use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use longhaul_api::{ApiState, CognitoClaimsAuth};
use longhaul_aws::{AwsSettings, Clients, DynamoJobStore, S3BlobStore, SfnOrchestrator};
use longhaul_jobs::ports::{BlobStore, JobStore};
use longhaul_jobs::service::{JobService, ServiceConfig};
use longhaul_jobs::types::JobTypes;
use longhaul_steps::{StepContext, StepError, StepRegistry, fetch::DownloadPolicy};
use serde_json::Value;

/// Every job type's jobtype.json, as `longhaul sam` wrote them (the functions have no
/// folders to read).
pub const JOB_TYPES_JSON: &str = include_str!("../../statemachine/job-types.json");

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

/// The API's service settings: `LONGHAUL_MAX_ACTIVE_JOBS` (1..=10000, default 20) and
/// `LONGHAUL_JOB_RETENTION_DAYS` (see [`job_retention`]).
pub fn service_config(
    get: impl Fn(&str) -> Option<String>,
) -> Result<ServiceConfig, longhaul_aws::SettingsError> {
    let mut config = ServiceConfig {
        job_retention: job_retention(&get)?,
        ..ServiceConfig::default()
    };
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

/// `LONGHAUL_JOB_RETENTION_DAYS` (1..=3650, default 30): how long job records are kept
/// (DynamoDB TTL), the same as the bucket keeps their files (the template sets both from
/// ResultRetentionDays).
pub fn job_retention(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<std::time::Duration>, longhaul_aws::SettingsError> {
    let Some(v) = get("LONGHAUL_JOB_RETENTION_DAYS").filter(|v| !v.is_empty()) else {
        return Ok(ServiceConfig::default().job_retention);
    };
    let days = v
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=3650).contains(n))
        .ok_or_else(|| longhaul_aws::SettingsError {
            name: "LONGHAUL_JOB_RETENTION_DAYS",
            problem: format!("{v:?} is not a whole number of days from 1 to 3650"),
        })?;
    Ok(Some(std::time::Duration::from_secs(days * 24 * 3600)))
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
        job_types(&StepRegistry::all())?,
        config,
    ));
    Ok(ApiState {
        public_url: std::env::var("LONGHAUL_PUBLIC_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        service,
        auth: Arc::new(CognitoClaimsAuth),
    })
}

/// `main` of the `api` function.
pub async fn run_api() -> Result<(), Error> {
    let settings = AwsSettings::from_env(true).inspect_err(|e| tracing::error!(%e, "settings"))?;
    let config = service_config(|k| std::env::var(k).ok())
        .inspect_err(|e| tracing::error!(%e, "settings"))?;
    let clients = Clients::new(&settings).await;
    let router = longhaul_api::router(api_state(&settings, &clients, config)?);
    lambda_http::run(router).await
}

/// The job types, from [`JOB_TYPES_JSON`] with their Rust input checks.
pub fn job_types(registry: &StepRegistry) -> Result<JobTypes, Error> {
    let checks = registry
        .input_check_names()
        .filter_map(|n| registry.input_check(n).map(|c| (n.to_string(), c)))
        .collect();
    Ok(longhaul_catalog::job_types_from_json(
        JOB_TYPES_JSON,
        &checks,
    )?)
}

/// A step failure as Step Functions sees it: `errorType` is the step's error name (what
/// Retry and Catch match), `errorMessage` its cause.
#[derive(Debug)]
pub struct StepFailure(pub StepError);

impl From<StepFailure> for Diagnostic {
    fn from(e: StepFailure) -> Diagnostic {
        Diagnostic {
            error_type: e.0.error,
            error_message: e.0.cause,
        }
    }
}

/// The tracker receives the EventBridge event's `detail` (the rule's InputPath); a whole
/// event is unwrapped too, so a rule without InputPath still works.
pub fn step_input(step: &str, payload: Value) -> Value {
    if step == longhaul_steps::TRACK_STATUS
        && payload.get("detail-type").is_some()
        && let Some(detail) = payload.get("detail")
    {
        return detail.clone();
    }
    payload
}

/// The context the steps run with on AWS.
pub async fn step_context(
    settings: &AwsSettings,
    clients: &Clients,
    types: JobTypes,
    job_retention: Option<std::time::Duration>,
) -> StepContext {
    let Adapters { store, blobs } = adapters(settings, clients);
    StepContext {
        store,
        blobs,
        types: Arc::new(types),
        downloads: DownloadPolicy::default(),
        job_retention,
    }
}

/// `main` of a step's function: each invocation's payload is the step's input.
pub async fn run_step(name: String) -> Result<(), Error> {
    let settings = AwsSettings::from_env(false).inspect_err(|e| tracing::error!(%e, "settings"))?;
    let clients = Clients::new(&settings).await;
    let registry = Arc::new(StepRegistry::all());
    if registry.get(&name).is_none() {
        return Err(format!("LONGHAUL_FUNCTION: no step named {name:?} is compiled in").into());
    }
    // Only Register validates jobs (those started by schedules); the rest need no types.
    let types = if name == longhaul_steps::REGISTER {
        job_types(&registry)?
    } else {
        JobTypes::empty()
    };
    let retention = job_retention(&|k: &str| std::env::var(k).ok())
        .inspect_err(|e| tracing::error!(%e, "settings"))?;
    let ctx = Arc::new(step_context(&settings, &clients, types, retention).await);
    let name: &'static str = Box::leak(name.into_boxed_str());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (ctx, registry) = (ctx.clone(), registry.clone());
        async move {
            registry
                .run(&ctx, name, step_input(name, event.payload))
                .await
                .map_err(|e| {
                    tracing::warn!(step = name, error = %e.error, "step failed");
                    StepFailure(e)
                })
        }
    }))
    .await
}

/// The log lines a CloudWatch Logs subscription delivers (`awslogs.data`: base64 of gzip
/// of JSON).
pub fn log_messages(payload: &Value) -> Result<Vec<String>, String> {
    use base64::Engine as _;
    let data = payload
        .pointer("/awslogs/data")
        .and_then(Value::as_str)
        .ok_or("not a CloudWatch Logs subscription event (no awslogs.data)")?;
    let zipped = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("awslogs.data is not base64: {e}"))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(zipped.as_slice())
        .take(16 << 20)
        .read_to_string(&mut text)
        .map_err(|e| format!("awslogs.data is not gzip: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("awslogs.data: {e}"))?;
    Ok(v.get("logEvents")
        .and_then(Value::as_array)
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Records every progress line in a batch of log events; returns how many.
pub async fn record_progress(ctx: &StepContext, payload: &Value) -> Result<usize, StepError> {
    let messages = log_messages(payload).map_err(|m| StepError::bad_input("progress", m))?;
    let mut n = 0;
    for m in messages {
        if let Some(line) = longhaul_steps::progress::parse_progress(&m)
            && let Some(job_id) = line.job_id.clone()
        {
            longhaul_steps::progress::record(ctx, &job_id, line).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// `main` of the `progress` function.
pub async fn run_progress() -> Result<(), Error> {
    let settings = AwsSettings::from_env(false).inspect_err(|e| tracing::error!(%e, "settings"))?;
    let clients = Clients::new(&settings).await;
    let ctx = Arc::new(step_context(&settings, &clients, JobTypes::empty(), None).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let ctx = ctx.clone();
        async move {
            let n = record_progress(&ctx, &event.payload)
                .await
                .map_err(StepFailure)?;
            Ok::<Value, StepFailure>(serde_json::json!({"recorded": n}))
        }
    }))
    .await
}

/// `main` of the `timeouts` function (every minute, from an EventBridge schedule): ends the
/// jobs past their type's `timeoutSeconds` and stops their executions.
pub async fn run_timeouts() -> Result<(), Error> {
    let settings = AwsSettings::from_env(true).inspect_err(|e| tracing::error!(%e, "settings"))?;
    let config = service_config(|k| std::env::var(k).ok())
        .inspect_err(|e| tracing::error!(%e, "settings"))?;
    let clients = Clients::new(&settings).await;
    let service = api_state(&settings, &clients, config)?.service;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| {
        let service = service.clone();
        async move {
            let ended = service
                .time_out_overdue(chrono::Utc::now())
                .await
                .map_err(|e| StepFailure(StepError::store(e)))?;
            Ok::<Value, StepFailure>(serde_json::json!({"timedOut": ended}))
        }
    }))
    .await
}

/// The bootstrap's `main`: runs the function `LONGHAUL_FUNCTION` names.
pub async fn run() -> Result<(), Error> {
    init_tracing();
    let function = std::env::var("LONGHAUL_FUNCTION").unwrap_or_default();
    match function.as_str() {
        "" => Err("LONGHAUL_FUNCTION is not set (api, progress, timeouts, or a step name)".into()),
        "api" => run_api().await,
        "progress" => run_progress().await,
        "timeouts" => run_timeouts().await,
        step => run_step(step.to_string()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn step_errors_keep_the_step_error_name() {
        let d: Diagnostic = StepFailure(StepError::new("JobCancelled", "cancelled")).into();
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
        let days = |v: &'static str| {
            move |k: &str| (k == "LONGHAUL_JOB_RETENTION_DAYS").then(|| v.to_string())
        };
        assert_eq!(
            service_config(days("7")).unwrap().job_retention,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        for bad in ["0", "x", "3651"] {
            let e = service_config(days(bad)).unwrap_err();
            assert_eq!(e.name, "LONGHAUL_JOB_RETENTION_DAYS", "{bad}");
        }
    }
}
