//! Downloads from outside (URL sources, ChatGPT file refs) into the blob store, safely:
//! https only, every address the name resolves to must be public, the connection goes to the
//! checked address (no second lookup to race), redirects are followed by hand (at most 3)
//! and checked again, and the size is capped while streaming.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use longhaul_jobs::BlobStore;
use longhaul_jobs::service::{check_download_url, is_public_ip};

use crate::WorkerError;

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

const MAX_REDIRECTS: usize = 3;

fn refused(m: impl Into<String>) -> WorkerError {
    WorkerError::new("DownloadRefused", m)
}

async fn resolve(
    url: &url::Url,
    policy: &DownloadPolicy,
) -> Result<Option<(String, SocketAddr)>, WorkerError> {
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(None); // A literal address: checked by check_download_url.
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| WorkerError::new("DownloadFailed", format!("cannot resolve {host}: {e}")))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(WorkerError::new(
            "DownloadFailed",
            format!("{host} resolves to no address"),
        ));
    };
    if !policy.allow_insecure
        && let Some(bad) = addrs.iter().find(|a| !is_public_ip(a.ip()))
    {
        return Err(refused(format!(
            "{host} resolves to {}, which is not a public address",
            bad.ip()
        )));
    }
    Ok(Some((host.to_string(), first)))
}

/// Downloads `url` into the blob store at `key`; returns its size.
pub async fn download(
    blobs: &dyn BlobStore,
    policy: &DownloadPolicy,
    url: &str,
    key: &str,
) -> Result<u64, WorkerError> {
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        check_download_url(&current, policy.allow_insecure).map_err(refused)?;
        let parsed = url::Url::parse(&current).map_err(|e| refused(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(900));
        if let Some((host, addr)) = resolve(&parsed, policy).await? {
            builder = builder.resolve(&host, addr);
        }
        let client = builder
            .build()
            .map_err(|e| WorkerError::new("DownloadFailed", e.to_string()))?;
        let resp = client.get(parsed.clone()).send().await.map_err(|e| {
            WorkerError::new(
                "DownloadFailed",
                format!("fetching the file: {}", e.without_url()),
            )
        })?;
        if resp.status().is_redirection() {
            let loc = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    WorkerError::new("DownloadFailed", "a redirect without a Location")
                })?;
            current = parsed
                .join(loc)
                .map_err(|e| refused(format!("bad redirect: {e}")))?
                .to_string();
            continue;
        }
        if !resp.status().is_success() {
            return Err(WorkerError::new(
                "DownloadFailed",
                format!("the server answered HTTP {}", resp.status().as_u16()),
            ));
        }
        if let Some(len) = resp.content_length()
            && len > policy.max_bytes
        {
            return Err(WorkerError::new(
                "DownloadTooLarge",
                format!("the file is {len} bytes; the limit is {}", policy.max_bytes),
            ));
        }
        let stream = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| e.to_string()))
            .boxed();
        return match blobs
            .put_stream(key, stream, "text/csv", policy.max_bytes)
            .await
        {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(WorkerError::new(
                "DownloadTooLarge",
                format!("the file is over the limit of {} bytes", policy.max_bytes),
            )),
            Err(e) => Err(WorkerError::new("StoreUnavailable", e.to_string())),
        };
    }
    Err(refused(format!("more than {MAX_REDIRECTS} redirects")))
}
