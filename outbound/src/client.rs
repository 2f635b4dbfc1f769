//! The client side of the policy: resolve, check every address, pin, follow redirects by
//! hand.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{MAX_REDIRECTS, OutboundPolicy, check_url, is_public_ip};

/// Why an outbound request did not get a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The policy refused the address (the URL, a resolved address or a redirect).
    #[error("{0}")]
    Refused(String),
    /// The request was allowed but failed (name not found, connection, timeout, TLS).
    #[error("{0}")]
    Failed(String),
}

/// One request. Redirects are followed for GET and HEAD only.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// The whole request, connection and body included.
    pub timeout: Duration,
}

impl Request {
    pub fn get(url: &str, timeout: Duration) -> Request {
        Request {
            method: reqwest::Method::GET,
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            timeout,
        }
    }
}

/// The name's addresses, all checked: `None` for a literal address (checked by
/// [`check_url`]).
async fn resolve(
    url: &url::Url,
    policy: OutboundPolicy,
) -> Result<Option<(String, SocketAddr)>, OutboundError> {
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(None);
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| OutboundError::Failed(format!("cannot resolve {host}: {e}")))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(OutboundError::Failed(format!(
            "{host} resolves to no address"
        )));
    };
    if !policy.allow_insecure
        && let Some(bad) = addrs.iter().find(|a| !is_public_ip(a.ip()))
    {
        return Err(OutboundError::Refused(format!(
            "{host} resolves to {}, which is not a public address",
            bad.ip()
        )));
    }
    Ok(Some((host.to_string(), first)))
}

/// Sends `req` under `policy`: the URL checked, the name resolved and every address checked,
/// the connection pinned to the checked address, redirects (GET/HEAD, at most
/// [`MAX_REDIRECTS`]) checked again. Returns the first non-redirect response, whatever its
/// status.
pub async fn send(
    policy: OutboundPolicy,
    req: Request,
) -> Result<reqwest::Response, OutboundError> {
    let follow = matches!(req.method, reqwest::Method::GET | reqwest::Method::HEAD);
    let mut current = req.url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let parsed = check_url(&current, policy).map_err(OutboundError::Refused)?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10).min(req.timeout))
            .timeout(req.timeout);
        if let Some((host, addr)) = resolve(&parsed, policy).await? {
            builder = builder.resolve(&host, addr);
        }
        let client = builder
            .build()
            .map_err(|e| OutboundError::Failed(e.to_string()))?;
        let mut r = client.request(req.method.clone(), parsed.clone());
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        if let Some(body) = &req.body {
            r = r.body(body.clone());
        }
        let resp = r
            .send()
            .await
            .map_err(|e| OutboundError::Failed(e.without_url().to_string()))?;
        if !(follow && resp.status().is_redirection()) {
            return Ok(resp);
        }
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| OutboundError::Failed("a redirect without a Location".into()))?;
        current = parsed
            .join(loc)
            .map_err(|e| OutboundError::Refused(format!("bad redirect: {e}")))?
            .to_string();
    }
    Err(OutboundError::Refused(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused() {
        // check_url refuses the name itself; the resolver check is the second line of defence
        // for names that only resolve to such an address.
        let url = url::Url::parse("https://localhost/x").unwrap();
        let e = resolve(&url, OutboundPolicy::default()).await.unwrap_err();
        assert!(
            matches!(&e, OutboundError::Refused(m) if m.contains("not a public address")),
            "{e:?}"
        );
    }

    /// A loopback server (reachable with the insecure policy) that answers every request
    /// with a redirect to `location`.
    async fn redirecting_server(location: &'static str) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        addr
    }

    const INSECURE: OutboundPolicy = OutboundPolicy {
        allow_insecure: true,
    };

    #[tokio::test]
    async fn every_redirect_is_checked_again() {
        let addr = redirecting_server("file:///etc/passwd").await;
        let e = send(
            INSECURE,
            Request::get(&format!("http://{addr}/a"), Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e,
            OutboundError::Refused("the scheme must be https, not file".into())
        );
    }

    #[tokio::test]
    async fn redirect_loops_stop() {
        let addr = redirecting_server("/again").await;
        let e = send(
            INSECURE,
            Request::get(&format!("http://{addr}/a"), Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
        assert_eq!(e, OutboundError::Refused("more than 3 redirects".into()));
    }

    #[tokio::test]
    async fn only_get_and_head_follow_redirects() {
        let addr = redirecting_server("/elsewhere").await;
        let resp = send(
            INSECURE,
            Request {
                method: reqwest::Method::POST,
                body: Some(b"{}".to_vec()),
                ..Request::get(&format!("http://{addr}/a"), Duration::from_secs(5))
            },
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 302);
    }
}
