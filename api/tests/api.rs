//! The Router driven as the Lambda receives it (API Gateway REST proxy events with Cognito
//! claims) and directly, with the authenticators: tokens file, JWT/JWKS, none.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use http_body_util::BodyExt;
use longhaul_api::{ApiState, Authenticator, CognitoClaimsAuth, JwtAuth, TokensFileAuth, router};
use longhaul_jobs::memory::{MemoryBlobStore, MemoryJobStore};
use longhaul_jobs::{
    CallbackError, ExecutionRef, Job, JobService, Orchestrator, OrchestratorError, ServiceConfig,
};
use serde_json::{Value, json};
use tower::ServiceExt;

struct NoopOrchestrator;

#[async_trait]
impl Orchestrator for NoopOrchestrator {
    async fn start(&self, job: &Job) -> Result<ExecutionRef, OrchestratorError> {
        Ok(ExecutionRef {
            name: job.job_id.clone(),
            arn: Some(format!("arn:test:{}", job.job_id)),
            console_url: None,
        })
    }
    async fn stop(&self, _: &ExecutionRef, _: &str, _: &str) -> Result<(), OrchestratorError> {
        Ok(())
    }
    async fn history(
        &self,
        _: &ExecutionRef,
        _: u64,
        _: usize,
    ) -> Result<Vec<longhaul_jobs::ExecutionEvent>, OrchestratorError> {
        Ok(Vec::new())
    }
    // Token `waiting/1+` has a task waiting, `late` one that timed out; others none.
    async fn send_task_success(&self, token: &str, _: &Value) -> Result<(), CallbackError> {
        answer(token)
    }
    async fn send_task_failure(&self, token: &str, _: &str, _: &str) -> Result<(), CallbackError> {
        answer(token)
    }
    async fn send_task_heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        answer(token)
    }
}

fn answer(token: &str) -> Result<(), CallbackError> {
    match token {
        "waiting/1+" => Ok(()),
        "late" => Err(CallbackError::TaskTimedOut(token.into())),
        _ => Err(CallbackError::TaskDoesNotExist(token.into())),
    }
}

fn app(auth: Arc<dyn Authenticator>) -> axum::Router {
    let service = JobService::new(
        Arc::new(MemoryJobStore::new()),
        Arc::new(MemoryBlobStore::new()),
        Arc::new(NoopOrchestrator),
        longhaul_steps::builtin_catalog()
            .unwrap()
            .job_types()
            .clone(),
        ServiceConfig::default(),
    );
    router(ApiState {
        public_url: None,
        service: Arc::new(service),
        auth,
    })
}

async fn send(app: &axum::Router, req: http::Request<Body>) -> (u16, http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// An API Gateway REST proxy event as the Lambda receives it, with Cognito claims.
fn rest_event(
    method: &str,
    path: &str,
    sub: Option<&str>,
    body: Option<Value>,
    query: Option<Value>,
) -> http::Request<Body> {
    let mut ctx = json!({
        "accountId": "123456789012", "resourceId": "abc", "stage": "prod", "requestId": "r-1",
        "identity": {"sourceIp": "203.0.113.1"}, "resourcePath": "/jobs", "httpMethod": method,
        "apiId": "api123", "path": format!("/prod{path}"), "protocol": "HTTP/1.1",
        "domainName": "api123.execute-api.us-east-1.amazonaws.com"
    });
    if let Some(sub) = sub {
        ctx["authorizer"] =
            json!({"claims": {"sub": sub, "email": "a@example.com", "token_use": "id"}});
    }
    let event = json!({
        "resource": path, "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json", "Host": "api123.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": ["application/json"], "Host": ["api123.execute-api.us-east-1.amazonaws.com"]},
        "queryStringParameters": query.clone(),
        "multiValueQueryStringParameters": query.map(|q| {
            let m: serde_json::Map<String, Value> = q.as_object().unwrap().iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
            Value::Object(m)
        }),
        "pathParameters": null, "stageVariables": null,
        "requestContext": ctx,
        "body": body.map(|b| b.to_string()), "isBase64Encoded": false
    });
    let req =
        lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
    req.map(|b| Body::from(b.to_vec()))
}

/// On AWS the spec the api function serves names the stage URL (the path it sees has no
/// stage), so a GPT that imports it by URL calls inside the stage.
#[tokio::test]
async fn the_spec_served_through_api_gateway_names_the_stage_url() {
    let app = app(Arc::new(CognitoClaimsAuth));
    let (s, _, spec) = send(&app, rest_event("GET", "/openapi.json", None, None, None)).await;
    assert_eq!(s, 200, "{spec}");
    assert_eq!(
        spec["servers"][0]["url"],
        "https://api123.execute-api.us-east-1.amazonaws.com/prod"
    );
}

#[tokio::test]
async fn api_gateway_events_with_cognito_claims_drive_the_router() {
    let app = app(Arc::new(CognitoClaimsAuth));
    let (s, _, job) = send(
        &app,
        rest_event(
            "POST",
            "/jobs",
            Some("alice-sub"),
            Some(json!({"type": "demo", "input": {"steps": 2}})),
            None,
        ),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    let id = job["jobId"].as_str().unwrap().to_string();
    assert_eq!(job["status"], "QUEUED");

    let (s, _, got) = send(
        &app,
        rest_event(
            "GET",
            &format!("/jobs/{id}"),
            Some("alice-sub"),
            None,
            Some(json!({"waitSeconds": "0"})),
        ),
    )
    .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["jobId"], json!(id));

    let (s, _, list) = send(
        &app,
        rest_event("GET", "/jobs", Some("alice-sub"), None, None),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);

    // Another user (another sub) cannot see it, on any route.
    let (s, _, e) = send(
        &app,
        rest_event("GET", &format!("/jobs/{id}"), Some("bob-sub"), None, None),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _, _) = send(
        &app,
        rest_event(
            "POST",
            &format!("/jobs/{id}/cancel"),
            Some("bob-sub"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(s, 404);
    let (_, _, list) = send(
        &app,
        rest_event("GET", "/jobs", Some("bob-sub"), None, None),
    )
    .await;
    assert_eq!(list["jobs"], json!([]));

    // No claims (a misconfigured stage): 401, never an anonymous owner.
    let (s, h, e) = send(&app, rest_event("GET", "/jobs", None, None, None)).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert!(h.get("www-authenticate").is_some());

    let (s, _, c) = send(
        &app,
        rest_event(
            "POST",
            &format!("/jobs/{id}/cancel"),
            Some("alice-sub"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!((s, c["status"].as_str()), (200, Some("CANCELLED")));
}

fn token_app() -> axum::Router {
    let auth = TokensFileAuth::parse(
        "# comment\n\nalice-token-0123456789 alice\nbob-token-0123456789abc bob\n",
        "tokens",
    )
    .unwrap();
    app(Arc::new(auth))
}

fn req(method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> http::Request<Body> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.unwrap_or("").to_string())).unwrap()
}

#[tokio::test]
async fn every_error_has_the_documented_code_and_shape() {
    let app = token_app();
    let t = Some("alice-token-0123456789");
    let cases: Vec<(http::Request<Body>, u16, &str)> = vec![
        (req("GET", "/jobs", None, None), 401, "unauthorized"),
        (
            req("GET", "/jobs", Some("nope-nope-nope-nope"), None),
            401,
            "unauthorized",
        ),
        (
            req("POST", "/jobs", t, Some("{\"type\": \"demo\"")),
            400,
            "bad_request",
        ),
        (
            req(
                "POST",
                "/jobs",
                t,
                Some("{\"type\": \"demo\", \"input\": {\"steps\": 1}, \"extra\": 1}"),
            ),
            400,
            "bad_request",
        ),
        (
            req("POST", "/jobs", t, Some("{\"type\": \"x\", \"input\": {}}")),
            400,
            "bad_request",
        ),
        (
            req(
                "POST",
                "/jobs",
                t,
                Some("{\"type\": \"demo\", \"input\": {\"steps\": \"many\"}}"),
            ),
            400,
            "bad_request",
        ),
        (req("GET", "/jobs?bogus=1", t, None), 400, "bad_request"),
        (
            req(
                "GET",
                "/jobs/0193aaaa-0000-7000-8000-000000000000?waitSeconds=-1",
                t,
                None,
            ),
            400,
            "bad_request",
        ),
        (
            req(
                "GET",
                "/jobs/0193aaaa-0000-7000-8000-000000000000?waitSeconds=abc",
                t,
                None,
            ),
            400,
            "bad_request",
        ),
        (
            req("GET", "/jobs/0193aaaa-0000-7000-8000-000000000000", t, None),
            404,
            "not_found",
        ),
        (req("GET", "/nowhere", t, None), 404, "not_found"),
        (req("DELETE", "/jobs", t, None), 405, "bad_request"),
        (
            req(
                "POST",
                "/uploads",
                t,
                Some("{\"name\": \"../x\", \"sizeBytes\": 1}"),
            ),
            400,
            "bad_request",
        ),
        (
            req(
                "POST",
                "/uploads",
                t,
                Some("{\"name\": \"x.csv\", \"sizeBytes\": 99999999999999}"),
            ),
            413,
            "payload_too_large",
        ),
    ];
    for (r, status, code) in cases {
        let label = format!("{} {}", r.method(), r.uri());
        let (s, _, body) = send(&app, r).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{label}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{label}"
        );
    }
    let big = format!(
        "{{\"type\":\"demo\",\"input\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(300 * 1024)
    );
    let (s, _, body) = send(&app, req("POST", "/jobs", t, Some(&big))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (s, _, body) = send(
        &app,
        http::Request::builder()
            .method("POST")
            .uri("/jobs")
            .header("authorization", "Bearer alice-token-0123456789")
            .body(Body::from(vec![0xff, 0xfe, b'{']))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}

#[tokio::test]
async fn quota_and_idempotency_through_http() {
    let app = token_app();
    let t = Some("alice-token-0123456789");
    let body = r#"{"type": "demo", "input": {"steps": 1}, "idempotencyKey": "k-1"}"#;
    let (s1, _, a) = send(&app, req("POST", "/jobs", t, Some(body))).await;
    let (s2, _, b) = send(&app, req("POST", "/jobs", t, Some(body))).await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(a["jobId"], b["jobId"]);
    let other = r#"{"type": "demo", "input": {"steps": 2}, "idempotencyKey": "k-1"}"#;
    let (s, _, e) = send(&app, req("POST", "/jobs", t, Some(other))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("conflict")));
    for _ in 0..19 {
        let (s, _, _) = send(
            &app,
            req(
                "POST",
                "/jobs",
                t,
                Some(r#"{"type": "demo", "input": {"steps": 1}}"#),
            ),
        )
        .await;
        assert_eq!(s, 202);
    }
    let (s, h, e) = send(
        &app,
        req(
            "POST",
            "/jobs",
            t,
            Some(r#"{"type": "demo", "input": {"steps": 1}}"#),
        ),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (429, Some("too_many_requests"))
    );
    assert!(h.get("retry-after").is_some());
    // Bob has his own quota.
    let (s, _, _) = send(
        &app,
        req(
            "POST",
            "/jobs",
            Some("bob-token-0123456789abc"),
            Some(r#"{"type": "demo", "input": {"steps": 1}}"#),
        ),
    )
    .await;
    assert_eq!(s, 202);
}

#[tokio::test]
async fn health_and_spec_need_no_auth_and_responses_carry_a_request_id() {
    let app = token_app();
    let (s, h, body) = send(&app, req("GET", "/healthz", None, None)).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));
    assert!(h.get("x-request-id").is_some());
    let (s, _, spec) = send(&app, req("GET", "/openapi.json", None, None)).await;
    assert_eq!(s, 200);
    assert_eq!(spec["openapi"], "3.1.0");
}

#[test]
fn tokens_files_are_checked_line_by_line() {
    assert!(
        TokensFileAuth::parse("short alice\n", "f")
            .unwrap_err()
            .to_string()
            .contains("line 1")
    );
    assert!(TokensFileAuth::parse("# only comments\n", "f").is_err());
    let e = TokensFileAuth::parse(
        "ok-token-0123456789 alice\nthree parts here-here-here\n",
        "f",
    )
    .unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(
        !e.to_string().contains("three"),
        "the token is never echoed"
    );
}

#[test]
fn the_spec_is_fit_for_a_gpt_action() {
    let spec = longhaul_api::openapi("https://jobs.example.com");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml")).unwrap();
    assert_eq!(
        committed,
        longhaul_api::openapi_yaml("http://127.0.0.1:8080"),
        "openapi.yaml is stale: run `cargo run -- openapi > openapi.yaml`"
    );
    let mut ids = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            ids.push(id.to_string());
            let d = op["description"].as_str().unwrap();
            assert!(d.len() < 300, "{id}: description is {} characters", d.len());
            let reads = ["getJob", "listJobs", "listJobTypes", "getJobHistory"];
            assert_eq!(
                op["x-openai-isConsequential"],
                json!(!reads.contains(&id)),
                "{id}"
            );
        }
    }
    ids.sort();
    assert_eq!(
        ids,
        [
            "cancelJob",
            "createUpload",
            "getJob",
            "getJobHistory",
            "listJobTypes",
            "listJobs",
            "sendTaskFailure",
            "sendTaskHeartbeat",
            "sendTaskSuccess",
            "startJob"
        ]
    );
    assert_eq!(spec["security"], json!([{"bearerAuth": []}]));
    // Every $ref resolves.
    let text = spec.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    let job = &spec["components"]["schemas"]["JobView"]["properties"];
    for f in [
        "jobId",
        "status",
        "progress",
        "result",
        "files",
        "openaiFileResponse",
        "error",
        "execution",
        "pollAfterSeconds",
        "message",
    ] {
        assert!(job.get(f).is_some(), "JobView lacks {f}");
    }
}

mod jwt {
    use super::*;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

    const RSA: &[u8] = include_bytes!("keys/rsa.pem");
    const RSA_OTHER: &[u8] = include_bytes!("keys/rsa-other.pem");
    const EC: &[u8] = include_bytes!("keys/ec.pem");

    fn jwks() -> JwkSet {
        let mut rsa =
            Jwk::from_encoding_key(&EncodingKey::from_rsa_pem(RSA).unwrap(), Algorithm::RS256)
                .unwrap();
        rsa.common.key_id = Some("rsa-1".into());
        let mut ec =
            Jwk::from_encoding_key(&EncodingKey::from_ec_pem(EC).unwrap(), Algorithm::ES256)
                .unwrap();
        ec.common.key_id = Some("ec-1".into());
        JwkSet {
            keys: vec![rsa, ec],
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn token(alg: Algorithm, kid: &str, key: &EncodingKey, claims: Value) -> String {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        encode(&h, &claims, key).unwrap()
    }

    async fn status(auth: &JwtAuth, token: &str) -> Result<String, String> {
        let req = http::Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        auth.authenticate(&parts)
            .await
            .map(|p| p.subject)
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn valid_rs256_and_es256_tokens_are_accepted_and_everything_else_refused() {
        let auth = JwtAuth::with_keys("test", jwks(), "https://issuer.example", Some("longhaul"));
        let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
        let ec = EncodingKey::from_ec_pem(EC).unwrap();
        let good = json!({"sub": "user-1", "iss": "https://issuer.example", "aud": "longhaul", "exp": now() + 600});
        assert_eq!(
            status(&auth, &token(Algorithm::RS256, "rsa-1", &rsa, good.clone())).await,
            Ok("user-1".into())
        );
        assert_eq!(
            status(&auth, &token(Algorithm::ES256, "ec-1", &ec, good.clone())).await,
            Ok("user-1".into())
        );

        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        let bad = vec![
            (
                "expired",
                token(
                    Algorithm::RS256,
                    "rsa-1",
                    &rsa,
                    with("exp", json!(now() - 3600)),
                ),
            ),
            (
                "not yet valid",
                token(
                    Algorithm::RS256,
                    "rsa-1",
                    &rsa,
                    with("nbf", json!(now() + 3600)),
                ),
            ),
            (
                "wrong issuer",
                token(
                    Algorithm::RS256,
                    "rsa-1",
                    &rsa,
                    with("iss", json!("https://evil.example")),
                ),
            ),
            (
                "wrong audience",
                token(Algorithm::RS256, "rsa-1", &rsa, with("aud", json!("other"))),
            ),
            (
                "wrong key",
                token(
                    Algorithm::RS256,
                    "rsa-1",
                    &EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
                    good.clone(),
                ),
            ),
            (
                "unknown kid",
                token(Algorithm::RS256, "nope", &rsa, good.clone()),
            ),
            (
                "HS256",
                token(
                    Algorithm::HS256,
                    "rsa-1",
                    &EncodingKey::from_secret(b"secret"),
                    good.clone(),
                ),
            ),
        ];
        for (what, t) in bad {
            assert!(status(&auth, &t).await.is_err(), "{what} must be refused");
        }
        // alg: none, hand-made.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(good.to_string())
        );
        assert!(
            status(&auth, &none).await.is_err(),
            "alg none must be refused"
        );
        assert!(status(&auth, "garbage").await.is_err());
        let no_sub =
            json!({"iss": "https://issuer.example", "aud": "longhaul", "exp": now() + 600});
        assert!(
            status(&auth, &token(Algorithm::RS256, "rsa-1", &rsa, no_sub))
                .await
                .is_err(),
            "sub is required"
        );
    }

    #[tokio::test]
    async fn jwks_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, serde_json::to_string(&jwks()).unwrap()).unwrap();
        let auth = JwtAuth::new(path.to_str().unwrap(), "https://issuer.example", None)
            .await
            .unwrap();
        let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
        let claims = json!({"sub": "u", "iss": "https://issuer.example", "exp": now() + 60});
        assert_eq!(
            status(&auth, &token(Algorithm::RS256, "rsa-1", &rsa, claims)).await,
            Ok("u".into())
        );
        assert!(
            JwtAuth::new("/nonexistent/jwks.json", "i", None)
                .await
                .is_err()
        );
        let _ = Duration::ZERO;
    }
}

/// The callback routes: authenticated like every job route; the token percent-encoded in
/// the path; unknown tokens 404, timed-out tasks 409, bad bodies 400.
#[tokio::test]
async fn callback_routes_answer_waiting_tasks() {
    let app = token_app();
    let t = Some("alice-token-0123456789");
    let waiting = "/task-tokens/waiting%2F1%2B";
    let cases: Vec<(http::Request<Body>, u16, Value)> = vec![
        (
            req(
                "POST",
                &format!("{waiting}/success"),
                t,
                Some("{\"ok\": true}"),
            ),
            200,
            json!({"delivered": "success"}),
        ),
        (
            req(
                "POST",
                &format!("{waiting}/failure"),
                t,
                Some("{\"error\": \"Rejected\", \"cause\": \"no\"}"),
            ),
            200,
            json!({"delivered": "failure"}),
        ),
        (
            req("POST", &format!("{waiting}/failure"), t, None),
            200,
            json!({"delivered": "failure"}),
        ),
        (
            req("POST", &format!("{waiting}/heartbeat"), t, None),
            200,
            json!({"delivered": "heartbeat"}),
        ),
        (
            req("POST", &format!("{waiting}/heartbeat"), t, Some("{}")),
            200,
            json!({"delivered": "heartbeat"}),
        ),
        (
            req("POST", &format!("{waiting}/success"), None, Some("1")),
            401,
            json!("unauthorized"),
        ),
        (
            req("POST", "/task-tokens/unknown/success", t, Some("1")),
            404,
            json!("not_found"),
        ),
        (
            req("POST", "/task-tokens/late/heartbeat", t, None),
            409,
            json!("conflict"),
        ),
        (
            req("POST", &format!("{waiting}/success"), t, None),
            400,
            json!("bad_request"),
        ),
        (
            req(
                "POST",
                &format!("{waiting}/failure"),
                t,
                Some("{\"reason\": 1}"),
            ),
            400,
            json!("bad_request"),
        ),
        (
            req(
                "POST",
                &format!("{waiting}/heartbeat"),
                t,
                Some("{\"x\": 1}"),
            ),
            400,
            json!("bad_request"),
        ),
        (
            req("POST", &format!("{waiting}/success?x=1"), t, Some("1")),
            400,
            json!("bad_request"),
        ),
        (
            req("GET", &format!("{waiting}/success"), t, None),
            405,
            json!("bad_request"),
        ),
    ];
    for (r, status, want) in cases {
        let what = format!("{} {}", r.method(), r.uri());
        let (s, _, body) = send(&app, r).await;
        assert_eq!(s, status, "{what}: {body}");
        if want.is_object() {
            assert_eq!(body, want, "{what}");
        } else {
            assert_eq!(body["error"]["code"], want, "{what}: {body}");
        }
    }
}
