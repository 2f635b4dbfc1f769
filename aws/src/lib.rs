//! longhaul's AWS adapters, used by the Lambda entry points (`longhaul-lambda`):
//!
//! - [`DynamoJobStore`]: the `JobStore` port in one DynamoDB table (conditional writes for
//!   every status change, idempotency records in the same transaction as the job, listJobs
//!   through the `byOwner` index).
//! - [`S3BlobStore`]: the `BlobStore` port in an S3 bucket (ranged reads, multipart streaming
//!   writes, presigned GET and PUT).
//! - [`SfnOrchestrator`]: the `Orchestrator` port on AWS Step Functions (executions named by
//!   the job id).
//!
//! [`AwsSettings::from_env`] reads the configuration; [`Clients::new`] builds the SDK clients
//! once per Lambda container, with an explicit rustls HTTP client and adaptive retries.

mod dynamo;
/// Test support: a moto server for the adapter and Lambda tests.
#[doc(hidden)]
#[cfg(feature = "test-support")]
pub mod moto;
mod s3;
mod sfn;

pub use dynamo::DynamoJobStore;
pub use s3::S3BlobStore;
pub use sfn::{SfnOrchestrator, execution_console_url};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_smithy_http_client::tls;

/// A setting missing or malformed at start.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct SettingsError {
    pub name: &'static str,
    pub problem: String,
}

/// What the adapters need from the environment (set by template.yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    /// `LONGHAUL_TABLE`: the jobs table.
    pub table: String,
    /// `LONGHAUL_BUCKET`: the files bucket.
    pub bucket: String,
    /// `LONGHAUL_STATE_MACHINE_ARN`: the job workflow (only the API starts executions).
    pub state_machine_arn: Option<String>,
    /// `AWS_ENDPOINT_URL`: one endpoint for every service (a moto server in tests).
    pub endpoint_url: Option<String>,
}

impl AwsSettings {
    /// Reads the settings; `need_state_machine` makes `LONGHAUL_STATE_MACHINE_ARN` required.
    pub fn from_env(need_state_machine: bool) -> Result<AwsSettings, SettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok(), need_state_machine)
    }

    /// [`AwsSettings::from_env`] over any lookup (tests).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        need_state_machine: bool,
    ) -> Result<AwsSettings, SettingsError> {
        let required = |name: &'static str| -> Result<String, SettingsError> {
            match get(name) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                _ => Err(SettingsError {
                    name,
                    problem: "is not set; template.yaml sets it on every function".into(),
                }),
            }
        };
        let table = required("LONGHAUL_TABLE")?;
        let bucket = required("LONGHAUL_BUCKET")?;
        let state_machine_arn = if need_state_machine {
            let arn = required("LONGHAUL_STATE_MACHINE_ARN")?;
            if !arn.starts_with("arn:") || !arn.contains(":stateMachine:") {
                return Err(SettingsError {
                    name: "LONGHAUL_STATE_MACHINE_ARN",
                    problem: format!("{arn:?} is not a state machine ARN"),
                });
            }
            Some(arn)
        } else {
            get("LONGHAUL_STATE_MACHINE_ARN").filter(|v| !v.is_empty())
        };
        let endpoint_url = get("AWS_ENDPOINT_URL").filter(|v| !v.is_empty());
        if let Some(e) = &endpoint_url
            && url::Url::parse(e).is_err()
        {
            return Err(SettingsError {
                name: "AWS_ENDPOINT_URL",
                problem: format!("{e:?} is not a URL"),
            });
        }
        Ok(AwsSettings {
            table,
            bucket,
            state_machine_arn,
            endpoint_url,
        })
    }
}

/// The SDK clients, built once per container and shared by every invocation.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    shared: aws_config::SdkConfig,
}

impl Clients {
    /// Loads region and credentials the standard way (Lambda's environment), with adaptive
    /// retries (backoff on throttling) and rustls over ring as the HTTP client.
    pub async fn new(settings: &AwsSettings) -> Clients {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(RetryConfig::adaptive().with_max_attempts(5));
        if let Some(endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        // Path-style addressing keeps a custom endpoint (moto) working; AWS accepts both.
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.endpoint_url.is_some())
            .build();
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            shared,
        }
    }
}

impl Clients {
    /// The Step Functions client. Built on demand (cheap: it shares the HTTP client) so the
    /// step functions, which never call Step Functions, do not link its SDK.
    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.shared)
    }

    /// Clients for a stand-in endpoint (a moto server): fixed test credentials and region,
    /// path-style S3, no retries beyond the SDK's standard ones.
    pub async fn for_test_endpoint(endpoint_url: &str) -> Clients {
        Self::for_test_endpoint_as(
            endpoint_url,
            aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "test"),
            test_https_client(),
        )
        .await
    }

    /// [`Clients::for_test_endpoint`] signing with `credentials` (moto's IAM access control
    /// checks them: one IAM user per function) over `http` (a recording wrapper of
    /// [`test_https_client`] in the IAM test).
    pub async fn for_test_endpoint_as(
        endpoint_url: &str,
        credentials: aws_sdk_dynamodb::config::Credentials,
        http: aws_sdk_dynamodb::config::SharedHttpClient,
    ) -> Clients {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(endpoint_url)
            .load()
            .await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build();
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            shared,
        }
    }
}

/// The HTTP client the test clients use: rustls over ring, as in Lambda.
pub fn test_https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// An SDK error's service code and message, for logs and for mapping to port errors.
pub(crate) fn describe<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_dynamodb::error::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("ServiceError"),
                err.message().unwrap_or("")
            )
        }
        other => format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(other)),
    }
}

/// True for failures worth a 503 (the service is throttling, unreachable or timing out)
/// rather than a 500.
pub(crate) fn is_transient<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    use aws_sdk_dynamodb::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            code.contains("Throttl")
                || code.contains("ProvisionedThroughputExceeded")
                || code == "RequestLimitExceeded"
                || code == "ServiceUnavailable"
                || code == "InternalServerError"
                || code == "SlowDown"
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn missing_settings_are_named() {
        let e = AwsSettings::from_lookup(env(&[("LONGHAUL_BUCKET", "b")]), false).unwrap_err();
        assert_eq!(e.name, "LONGHAUL_TABLE");
        let e = AwsSettings::from_lookup(env(&[("LONGHAUL_TABLE", "t")]), false).unwrap_err();
        assert_eq!(e.name, "LONGHAUL_BUCKET");
        let e = AwsSettings::from_lookup(
            env(&[("LONGHAUL_TABLE", "t"), ("LONGHAUL_BUCKET", "b")]),
            true,
        )
        .unwrap_err();
        assert_eq!(e.name, "LONGHAUL_STATE_MACHINE_ARN");
        let e = AwsSettings::from_lookup(
            env(&[
                ("LONGHAUL_TABLE", "t"),
                ("LONGHAUL_BUCKET", "b"),
                ("LONGHAUL_STATE_MACHINE_ARN", "jobs"),
            ]),
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a state machine ARN"), "{e}");
        let e = AwsSettings::from_lookup(
            env(&[
                ("LONGHAUL_TABLE", "t"),
                ("LONGHAUL_BUCKET", "b"),
                ("AWS_ENDPOINT_URL", "not a url"),
            ]),
            false,
        )
        .unwrap_err();
        assert_eq!(e.name, "AWS_ENDPOINT_URL");
    }

    #[test]
    fn settings_are_read() {
        let s = AwsSettings::from_lookup(
            env(&[
                ("LONGHAUL_TABLE", " jobs "),
                ("LONGHAUL_BUCKET", "files"),
                (
                    "LONGHAUL_STATE_MACHINE_ARN",
                    "arn:aws:states:eu-west-1:123456789012:stateMachine:jobs",
                ),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(s.table, "jobs");
        assert_eq!(s.bucket, "files");
        assert!(s.state_machine_arn.is_some());
        assert_eq!(s.endpoint_url, None);
    }
}
