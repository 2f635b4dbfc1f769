//! Every request a function's SDK clients send, recorded on its way to moto (an HTTP client
//! wrapping the real one), and the authorizations AWS makes for each: the action and
//! resource per AWS's service authorization reference (S3's REST operations, each item of a
//! DynamoDB transaction, Step Functions' state machine or execution), with the condition
//! keys the policies test (`s3:prefix`).

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::Value;

use super::policy::{Authorization, Deployment};

/// One request as sent, and the status it got (None: no response).
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub uri: String,
    pub target: Option<String>,
    pub copy_source: bool,
    pub body: Option<Vec<u8>>,
    pub status: Option<u16>,
}

impl Call {
    /// The request in a line, for failure messages.
    pub fn describe(&self) -> String {
        let status = self.status.map_or("no answer".into(), |s| s.to_string());
        match &self.target {
            Some(t) => {
                let body = self
                    .body
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let body: String = body.chars().take(160).collect();
                format!("{t} {body} -> {status}")
            }
            None => format!("{} {} -> {status}", self.method, self.uri),
        }
    }
}

/// The calls of one function's clients.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    /// An HTTP client for the SDK that records through this recorder.
    pub fn http_client(&self) -> SharedHttpClient {
        SharedHttpClient::new(RecordingClient {
            inner: longhaul_aws::test_https_client(),
            calls: self.calls.clone(),
        })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    pub fn len(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }

    /// Takes the calls after the first `n` (a check of expected refusals keeps them out of
    /// the audit).
    pub fn take_after(&self, n: usize) -> Vec<Call> {
        self.calls.lock().expect("calls").split_off(n)
    }
}

#[derive(Debug)]
struct RecordingClient {
    inner: SharedHttpClient,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl HttpClient for RecordingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RecordingConnector {
            inner: self.inner.http_connector(settings, components),
            calls: self.calls.clone(),
        })
    }
}

#[derive(Debug)]
struct RecordingConnector {
    inner: SharedHttpConnector,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl HttpConnector for RecordingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut call = Call {
            method: request.method().to_string(),
            uri: request.uri().to_string(),
            target: request.headers().get("x-amz-target").map(str::to_string),
            copy_source: request.headers().contains_key("x-amz-copy-source"),
            body: request.body().bytes().map(<[u8]>::to_vec),
            status: None,
        };
        let calls = self.calls.clone();
        let response = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let result = response.await;
            call.status = result.as_ref().ok().map(|r| r.status().as_u16());
            calls.lock().expect("calls").push(call);
            result
        })
    }
}

/// `%XX` escapes of a URL path segment decoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bucket, key and query of a path-style S3 URL (the test's clients use path style).
pub fn s3_parts(uri: &str) -> (String, String, Vec<(String, String)>) {
    let url = url::Url::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
    let mut segments = url.path().trim_start_matches('/').splitn(2, '/');
    let bucket = percent_decode(segments.next().unwrap_or(""));
    let key = percent_decode(segments.next().unwrap_or(""));
    let query = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (bucket, key, query)
}

/// The authorizations AWS makes for one S3 object or bucket request.
pub fn s3_authorizations(
    method: &str,
    uri: &str,
    copy_source: bool,
    status: Option<u16>,
) -> Vec<Authorization> {
    let (bucket, key, query) = s3_parts(uri);
    let has = |name: &str| query.iter().any(|(k, _)| k == name);
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let what = format!("{method} {uri}");
    if key.is_empty() {
        return match method {
            "GET" if param("list-type").as_deref() == Some("2") => {
                let mut a = Authorization::new(
                    "s3:ListBucket",
                    format!("arn:aws:s3:::{bucket}"),
                    format!("ListObjectsV2: {what}"),
                );
                if let Some(prefix) = param("prefix") {
                    a = a.with("s3:prefix", prefix);
                }
                vec![a]
            }
            _ => panic!("the IAM test cannot map the bucket request {what}; add it"),
        };
    }
    let object = format!("arn:aws:s3:::{bucket}/{key}");
    let action = match method {
        "GET" | "HEAD" if has("uploadId") => {
            panic!("the IAM test cannot map {what} (ListParts); add it")
        }
        "GET" | "HEAD" => "s3:GetObject",
        "PUT" if copy_source => panic!("the IAM test cannot map {what} (a copy); add it"),
        // PutObject, and UploadPart of a multipart upload.
        "PUT" => "s3:PutObject",
        // CreateMultipartUpload and CompleteMultipartUpload.
        "POST" if has("uploads") || has("uploadId") => "s3:PutObject",
        "DELETE" if has("uploadId") => "s3:AbortMultipartUpload",
        "DELETE" if has("versionId") => "s3:DeleteObjectVersion",
        "DELETE" => "s3:DeleteObject",
        _ => panic!("the IAM test cannot map {what}; add it"),
    };
    let mut out = vec![Authorization::new(action, object, what.clone())];
    if matches!(method, "GET" | "HEAD") && status == Some(404) {
        // S3 answers a missing key with 404 only to a caller that may list the bucket, with
        // the key as s3:prefix (Ceph's RGW copied this rule: ceph/ceph#68577); else 403.
        out.push(
            Authorization::new(
                "s3:ListBucket",
                format!("arn:aws:s3:::{bucket}"),
                format!("{what} answered 404: without s3:ListBucket it is a 403 on AWS"),
            )
            .with("s3:prefix", key),
        );
    }
    out
}

/// The authorizations AWS makes for one recorded call.
pub fn authorizations(call: &Call, d: &Deployment) -> Vec<Authorization> {
    let Some(target) = &call.target else {
        return s3_authorizations(&call.method, &call.uri, call.copy_source, call.status);
    };
    let body: Value = call
        .body
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_else(|| panic!("{}: no JSON body", call.describe()));
    let str_of = |v: &Value, name: &str| -> String {
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no {name}", call.describe()))
            .to_string()
    };
    let what = call.describe();
    let (service, operation) = target.split_once('.').unwrap_or(("", target));
    if service.starts_with("DynamoDB_") {
        let table_resource = |v: &Value| {
            let table = d.table_arn(&str_of(v, "TableName"));
            match v["IndexName"].as_str() {
                Some(index) => format!("{table}/index/{index}"),
                None => table,
            }
        };
        return match operation {
            "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "Query" | "Scan" => {
                vec![Authorization::new(
                    &format!("dynamodb:{operation}"),
                    table_resource(&body),
                    what,
                )]
            }
            // AWS authorizes each item of a transaction as its own action.
            "TransactWriteItems" => body["TransactItems"]
                .as_array()
                .expect("TransactItems")
                .iter()
                .map(|item| {
                    let (kind, v) = item
                        .as_object()
                        .and_then(|o| o.iter().next())
                        .expect("a transaction item");
                    let action = match kind.as_str() {
                        "Put" => "dynamodb:PutItem",
                        "Update" => "dynamodb:UpdateItem",
                        "Delete" => "dynamodb:DeleteItem",
                        "ConditionCheck" => "dynamodb:ConditionCheckItem",
                        other => panic!("{what}: transaction item {other}"),
                    };
                    Authorization::new(action, table_resource(v), format!("{kind} in {what}"))
                })
                .collect(),
            other => panic!("the IAM test cannot map DynamoDB {other}; add it"),
        };
    }
    if service == "AWSStepFunctions" {
        let resource = match operation {
            "StartExecution" => str_of(&body, "stateMachineArn"),
            "StopExecution" | "DescribeExecution" | "GetExecutionHistory" => {
                str_of(&body, "executionArn")
            }
            // A task token names no resource IAM can scope (only an activity's tokens
            // could be): these are authorized on `*`.
            "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => "*".to_string(),
            other => panic!("the IAM test cannot map Step Functions {other}; add it"),
        };
        return vec![Authorization::new(
            &format!("states:{operation}"),
            resource,
            what,
        )];
    }
    panic!("the IAM test cannot map {what}; add it")
}
