//! HTTP Tasks (`arn:aws:states:::http:invoke`) on one machine: the engine builds the request
//! and the result; this sends it with `longhaul-outbound` under the same policy as URL
//! sources — https only, every resolved address public, checked again at each redirect —
//! unless insecure requests are allowed (`serve --allow-insecure-downloads`, `sfn run
//! --allow-insecure-http`), for local testing.
//!
//! **Connections.** On AWS an HTTP Task authenticates with an EventBridge connection
//! (`Authentication.ConnectionArn`). Locally a connection is not looked up in AWS; its
//! credentials come from the environment: `LONGHAUL_HTTP_CONNECTION_<NAME>` holds one header
//! line (`Authorization: Bearer …`, `X-Api-Key: …`) added to the requests of the connection
//! whose name (`arn:aws:events:REGION:ACCOUNT:connection/NAME/ID`) is NAME, upper-cased, with
//! every character other than a letter or digit written `_`. A connection with no such
//! variable sends no credentials. Basic and OAuth connections are not emulated.

use async_trait::async_trait;
use longhaul_engine::{HttpInvoker, HttpRequest, HttpResponse, MAX_RESPONSE_BYTES, TaskFailure};
use longhaul_outbound::{OutboundError, OutboundPolicy, Request};

/// The prefix of the variables that hold connections' credentials.
pub const CONNECTION_ENV_PREFIX: &str = "LONGHAUL_HTTP_CONNECTION_";

/// Where a connection's credentials come from: its variable's name in, its value out.
type Credentials = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Sends HTTP Tasks' requests under an outbound policy.
pub struct OutboundHttp {
    policy: OutboundPolicy,
    credentials: Box<Credentials>,
}

impl OutboundHttp {
    /// Connections' credentials from this process's environment.
    pub fn new(policy: OutboundPolicy) -> OutboundHttp {
        OutboundHttp::with_credentials(policy, |var| std::env::var(var).ok())
    }

    /// Connections' credentials from `lookup` (a variable's name → its value).
    pub fn with_credentials(
        policy: OutboundPolicy,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> OutboundHttp {
        OutboundHttp {
            policy,
            credentials: Box::new(lookup),
        }
    }

    /// The header a connection adds, if its variable is set.
    fn connection_header(&self, arn: &str) -> Result<Option<(String, String)>, TaskFailure> {
        let Some(var) = connection_variable(arn) else {
            return Ok(None);
        };
        let Some(line) = (self.credentials)(&var) else {
            tracing::debug!(connection = arn, variable = %var, "no local credentials for the connection");
            return Ok(None);
        };
        // The value is a secret: errors name the variable, never its value.
        let bad = || {
            TaskFailure::new(
                "States.Runtime",
                format!("{var} must hold one header line, `Name: value`"),
            )
        };
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let (name, value) = (name.trim(), value.trim());
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid || value.is_empty() {
            return Err(bad());
        }
        Ok(Some((name.to_string(), value.to_string())))
    }
}

/// `LONGHAUL_HTTP_CONNECTION_<NAME>` for `arn:aws:events:…:connection/NAME/ID`.
pub fn connection_variable(arn: &str) -> Option<String> {
    let (_, rest) = arn.split_once(":connection/")?;
    let name = rest.split('/').next().filter(|n| !n.is_empty())?;
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    Some(format!("{CONNECTION_ENV_PREFIX}{upper}"))
}

#[async_trait]
impl HttpInvoker for OutboundHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TaskFailure> {
        let mut headers = request.headers;
        headers.extend(self.connection_header(&request.connection_arn)?);
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            TaskFailure::new(
                "States.Runtime",
                format!("{:?} is not an HTTP method", request.method),
            )
        })?;
        let response = longhaul_outbound::send(
            self.policy,
            Request {
                method,
                url: request.url,
                headers,
                body: request.body,
                timeout: request.timeout,
            },
        )
        .await
        .map_err(|e| match e {
            OutboundError::Refused(m) => TaskFailure::new(
                "States.Permissions",
                format!(
                    "the HTTP Task's endpoint is not allowed: {m} (https to public addresses only; `longhaul serve --allow-insecure-downloads` or `sfn run --allow-insecure-http` lift this for local testing)"
                ),
            ),
            OutboundError::Failed(m) => TaskFailure::new("States.Http.Socket", m),
        })?;
        read(response).await
    }
}

/// The response, with at most [`MAX_RESPONSE_BYTES`] + 1 bytes of its body.
async fn read(mut response: reqwest::Response) -> Result<HttpResponse, TaskFailure> {
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while body.len() <= MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                return Err(TaskFailure::new(
                    "States.Http.Socket",
                    format!("reading the response: {}", e.without_url()),
                ));
            }
        }
    }
    body.truncate(MAX_RESPONSE_BYTES + 1);
    Ok(HttpResponse {
        status: status.as_u16(),
        status_text: status.canonical_reason().unwrap_or("").to_string(),
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that answers once with `response` and hands back the request.
    async fn server(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (format!("http://{addr}"), task)
    }

    fn request(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url.to_string(),
            headers: vec![("X-Trace".into(), "t1".into())],
            body: None,
            connection_arn: "arn:aws:events:us-east-1:123456789012:connection/my-api.v2/0001"
                .into(),
            timeout: Duration::from_secs(5),
        }
    }

    const INSECURE: OutboundPolicy = OutboundPolicy {
        allow_insecure: true,
    };

    #[tokio::test]
    async fn a_request_gets_its_response_and_the_connections_header() {
        let (url, got) = server(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{\"a\": 1}",
        )
        .await;
        let http = OutboundHttp::with_credentials(INSECURE, |var| {
            (var == "LONGHAUL_HTTP_CONNECTION_MY_API_V2").then(|| "X-Api-Key: k-123".to_string())
        });
        let r = http.send(request(&format!("{url}/x"))).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.status_text, "OK");
        assert_eq!(r.body, b"{\"a\": 1}");
        assert!(
            r.headers
                .contains(&("content-type".into(), "application/json".into()))
        );
        let sent = got.await.unwrap().to_ascii_lowercase();
        assert!(sent.starts_with("get /x http/1.1"), "{sent}");
        assert!(sent.contains("x-trace: t1"), "{sent}");
        assert!(sent.contains("x-api-key: k-123"), "{sent}");
    }

    #[tokio::test]
    async fn private_addresses_and_plain_http_are_refused_by_default() {
        let http = OutboundHttp::with_credentials(OutboundPolicy::default(), |_| None);
        for url in [
            "http://127.0.0.1:9/x",
            "https://10.0.0.1/x",
            "https://localhost/x",
        ] {
            let f = http.send(request(url)).await.unwrap_err();
            assert_eq!(f.error, "States.Permissions", "{url}");
            assert!(f.cause.contains("--allow-insecure"), "{}", f.cause);
        }
    }

    #[tokio::test]
    async fn a_bad_credential_variable_is_named_not_shown() {
        let http =
            OutboundHttp::with_credentials(INSECURE, |_| Some("no colon s3cret".to_string()));
        let f = http
            .send(request("http://127.0.0.1:9/x"))
            .await
            .unwrap_err();
        assert_eq!(f.error, "States.Runtime");
        assert!(f.cause.contains("LONGHAUL_HTTP_CONNECTION_MY_API_V2"));
        assert!(!f.cause.contains("s3cret"));
    }

    #[test]
    fn connection_variables_are_named_after_the_connection() {
        assert_eq!(
            connection_variable("arn:aws:events:eu-west-1:1:connection/Stripe/81210c42").as_deref(),
            Some("LONGHAUL_HTTP_CONNECTION_STRIPE")
        );
        assert_eq!(connection_variable("arn:aws:events:x"), None);
    }
}
