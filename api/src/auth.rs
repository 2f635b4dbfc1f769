//! Who is calling: a bearer token from a tokens file, a JWT verified with a JWKS, no auth
//! (loopback only), or the Cognito claims API Gateway puts in the request context.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::request::Parts;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The authenticated caller; `subject` owns the jobs it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send Authorization: Bearer <token>")]
    Missing,
    #[error("invalid credentials: {0}")]
    Invalid(String),
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, AuthError>;

    /// The OAuth authorization servers (issuers) whose tokens this accepts, for clients that
    /// find them on their own (MCP's protected resource metadata, RFC 9728). None by default:
    /// a tokens file has no authorization server.
    fn authorization_servers(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    let Some(v) = parts.headers.get(http::header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let v = v
        .to_str()
        .map_err(|_| AuthError::Invalid("the Authorization header is not text".into()))?;
    let (scheme, token) = v
        .split_once(' ')
        .ok_or_else(|| AuthError::Invalid("expected `Bearer <token>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid("expected `Bearer <token>`".into()));
    }
    Ok(token.trim())
}

#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path} holds no tokens")]
    Empty { path: String },
}

/// Tokens from a file of lines `TOKEN SUBJECT` (`#` comments). Only SHA-256 digests are
/// kept, and a presented token's digest is compared with each in constant time.
pub struct TokensFileAuth {
    entries: Vec<([u8; 32], String)>,
}

impl std::fmt::Debug for TokensFileAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print digests: a token list is a secret.
        write!(f, "TokensFileAuth({} tokens)", self.entries.len())
    }
}

pub const MIN_TOKEN_LEN: usize = 16;

impl TokensFileAuth {
    pub fn parse(text: &str, path: &str) -> Result<TokensFileAuth, TokensFileError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(token), Some(subject), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(TokensFileError::Line {
                    path: path.into(),
                    line: i + 1,
                    reason: "expected `TOKEN SUBJECT`".into(),
                });
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(TokensFileError::Line {
                    path: path.into(),
                    line: i + 1,
                    reason: format!("the token is shorter than {MIN_TOKEN_LEN} characters"),
                });
            }
            entries.push((Sha256::digest(token.as_bytes()).into(), subject.to_string()));
        }
        if entries.is_empty() {
            return Err(TokensFileError::Empty { path: path.into() });
        }
        Ok(TokensFileAuth { entries })
    }

    pub fn load(path: &Path) -> Result<TokensFileAuth, TokensFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        TokensFileAuth::parse(&text, &path.display().to_string())
    }

    /// Creates a tokens file with one new random token for the subject `local` (mode 0600).
    pub fn create_default(path: &Path) -> Result<(TokensFileAuth, String), TokensFileError> {
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let token = hex::encode(raw);
        let text =
            format!("# longhaul bearer tokens: TOKEN SUBJECT (one per line)\n{token} local\n");
        let io = |source| TokensFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok((
            TokensFileAuth::parse(&text, &path.display().to_string())?,
            token,
        ))
    }
}

#[async_trait]
impl Authenticator for TokensFileAuth {
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, AuthError> {
        let token = bearer(parts)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare with every entry, without stopping early.
        let mut found: Option<&str> = None;
        for (d, subject) in &self.entries {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(subject);
            }
        }
        found
            .map(|s| Principal {
                subject: s.to_string(),
            })
            .ok_or_else(|| AuthError::Invalid("unknown token".into()))
    }
}

/// Every request is `subject`. Only for a server bound to loopback.
pub struct NoAuth {
    pub subject: String,
}

#[async_trait]
impl Authenticator for NoAuth {
    async fn authenticate(&self, _parts: &Parts) -> Result<Principal, AuthError> {
        Ok(Principal {
            subject: self.subject.clone(),
        })
    }
}

/// `--auth none` is refused unless the server listens on loopback only.
pub fn check_no_auth_allowed(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "--auth none is allowed only on a loopback address (127.0.0.1 or ::1), not {addr}"
        ))
    }
}

/// JWTs signed with RS256 or ES256 by a key of a JWKS, with `iss` (and `aud`, when set),
/// `exp` and `nbf` checked; `sub` is the owner.
pub struct JwtAuth {
    source: String,
    issuer: String,
    audience: Option<String>,
    keys: RwLock<(JwkSet, Instant)>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading the JWKS {0}: {1}")]
    Read(String, String),
    #[error("the JWKS {0} is not a JSON Web Key Set: {1}")]
    Parse(String, String),
}

async fn fetch_jwks(source: &str) -> Result<JwkSet, JwksError> {
    let text = if source.starts_with("https://") || source.starts_with("http://") {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| JwksError::Read(source.into(), e.to_string()))?;
        client
            .get(source)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| JwksError::Read(source.into(), e.without_url().to_string()))?
            .text()
            .await
            .map_err(|e| JwksError::Read(source.into(), e.to_string()))?
    } else {
        tokio::fs::read_to_string(source)
            .await
            .map_err(|e| JwksError::Read(source.into(), e.to_string()))?
    };
    serde_json::from_str(&text).map_err(|e| JwksError::Parse(source.into(), e.to_string()))
}

impl JwtAuth {
    pub async fn new(
        jwks: &str,
        issuer: &str,
        audience: Option<&str>,
    ) -> Result<JwtAuth, JwksError> {
        let set = fetch_jwks(jwks).await?;
        Ok(JwtAuth::with_keys(jwks, set, issuer, audience))
    }

    pub fn with_keys(source: &str, keys: JwkSet, issuer: &str, audience: Option<&str>) -> JwtAuth {
        JwtAuth {
            source: source.to_string(),
            issuer: issuer.to_string(),
            audience: audience.map(str::to_string),
            keys: RwLock::new((keys, Instant::now())),
        }
    }

    fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let guard = self.keys.read().ok()?;
        let set = &guard.0;
        let jwk = match kid {
            Some(k) => set.find(k)?,
            None if set.keys.len() == 1 => set.keys.first()?,
            None => return None,
        };
        if let Some(ka) = &jwk.common.key_algorithm
            && format!("{ka:?}") != format!("{alg:?}")
        {
            return None;
        }
        DecodingKey::from_jwk(jwk).ok()
    }

    async fn refresh(&self) {
        let stale = self
            .keys
            .read()
            .map(|g| g.1.elapsed() > Duration::from_secs(60))
            .unwrap_or(false);
        if !stale || !(self.source.starts_with("https://") || self.source.starts_with("http://")) {
            return;
        }
        match fetch_jwks(&self.source).await {
            Ok(set) => {
                if let Ok(mut g) = self.keys.write() {
                    *g = (set, Instant::now());
                }
            }
            Err(e) => tracing::warn!(error = %e, "refreshing the JWKS"),
        }
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<String>,
}

#[async_trait]
impl Authenticator for JwtAuth {
    fn authorization_servers(&self) -> Vec<String> {
        vec![self.issuer.clone()]
    }

    async fn authenticate(&self, parts: &Parts) -> Result<Principal, AuthError> {
        let token = bearer(parts)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("not a JWT".into()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Invalid(
                "only RS256 and ES256 tokens are accepted".into(),
            ));
        }
        let key = match self.key_for(header.kid.as_deref(), header.alg) {
            Some(k) => k,
            None => {
                // A key rotation: look again, at most once a minute.
                self.refresh().await;
                self.key_for(header.kid.as_deref(), header.alg)
                    .ok_or_else(|| {
                        AuthError::Invalid("the token's signing key is unknown".into())
                    })?
            }
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.validate_nbf = true;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| AuthError::Invalid(format!("{:?}", e.kind())))?;
        let sub = data
            .claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::Invalid("the token has no sub".into()))?;
        Ok(Principal { subject: sub })
    }
}

/// For the API Lambda behind API Gateway: the owner is the `sub` claim the Cognito
/// authorizer put in the request context (REST: `authorizer.claims.sub`; HTTP API JWT
/// authorizer: `authorizer.jwt.claims.sub`). No claims → 401: API Gateway should never let
/// such a request through, so it is refused rather than trusted.
pub struct CognitoClaimsAuth;

#[async_trait]
impl Authenticator for CognitoClaimsAuth {
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, AuthError> {
        use lambda_http::request::RequestContext;
        let sub = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx
                .authorizer
                .fields
                .get("claims")
                .and_then(|c| c.get("sub"))
                .and_then(|s| s.as_str())
                .map(str::to_string),
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx
                .authorizer
                .as_ref()
                .and_then(|a| a.jwt.as_ref())
                .and_then(|j| j.claims.get("sub").cloned()),
            _ => None,
        };
        sub.filter(|s| !s.is_empty())
            .map(|subject| Principal { subject })
            .ok_or(AuthError::Missing)
    }
}
