//! Downloads from outside (URL sources, ChatGPT file refs) into the blob store, under the
//! outbound policy (longhaul-outbound: https, public addresses only, checked at every
//! hop), with the size capped while streaming.

use std::time::Duration;

use futures::StreamExt;
use longhaul_jobs::BlobStore;
use longhaul_outbound::{OutboundError, OutboundPolicy, Request};

use crate::StepError;

/// What downloads may do.
#[derive(Debug, Clone, Copy)]
pub struct DownloadPolicy {
    /// Allow http and non-public addresses (local testing only).
    pub allow_insecure: bool,
    pub max_bytes: u64,
}

impl Default for DownloadPolicy {
    fn default() -> Self {
        DownloadPolicy {
            allow_insecure: false,
            max_bytes: 1 << 30,
        }
    }
}

/// Downloads `url` into the blob store at `key`; returns its size. The object's type is
/// `content_type` if given, else what the server said.
pub async fn download(
    blobs: &dyn BlobStore,
    policy: &DownloadPolicy,
    url: &str,
    key: &str,
    content_type: Option<&str>,
) -> Result<u64, StepError> {
    let outbound = OutboundPolicy {
        allow_insecure: policy.allow_insecure,
    };
    let resp = longhaul_outbound::send(outbound, Request::get(url, Duration::from_secs(900)))
        .await
        .map_err(|e| match e {
            OutboundError::Refused(m) => StepError::new("DownloadRefused", m),
            OutboundError::Failed(m) => {
                StepError::new("DownloadFailed", format!("fetching the file: {m}"))
            }
        })?;
    if !resp.status().is_success() {
        return Err(StepError::new(
            "DownloadFailed",
            format!("the server answered HTTP {}", resp.status().as_u16()),
        ));
    }
    if let Some(len) = resp.content_length()
        && len > policy.max_bytes
    {
        return Err(StepError::new(
            "DownloadTooLarge",
            format!("the file is {len} bytes; the limit is {}", policy.max_bytes),
        ));
    }
    let content_type = content_type
        .map(str::to_string)
        .or_else(|| {
            resp.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "application/octet-stream".into());
    let stream = resp
        .bytes_stream()
        .map(|r| r.map_err(|e| e.to_string()))
        .boxed();
    match blobs
        .put_stream(key, stream, &content_type, policy.max_bytes)
        .await
    {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(StepError::new(
            "DownloadTooLarge",
            format!("the file is over the limit of {} bytes", policy.max_bytes),
        )),
        Err(e) => Err(StepError::new("StoreUnavailable", e.to_string())),
    }
}
