//! Support of the IAM test (iam_on_moto.rs): the template's policies and an evaluator of
//! them (policy.rs), the requests each function sends and the authorizations AWS makes for
//! them (record.rs), and IAM users on moto.

pub mod policy;
pub mod record;

use serde_json::Value;

/// An IAM user on moto and its access key.
#[derive(Debug, Clone)]
pub struct User {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// One call of IAM's query API. Made before enforcement starts, when moto checks neither
/// the signature nor the caller: the Authorization header only names the service (moto
/// routes by its credential scope).
async fn iam_call(moto_url: &str, params: &[(&str, &str)]) -> String {
    let mut form = vec![("Version", "2010-05-08")];
    form.extend_from_slice(params);
    let resp = reqwest::Client::new()
        .post(moto_url)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&form)
        .send()
        .await
        .expect("moto answers IAM");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "IAM {params:?}: {status} {text}");
    text
}

fn xml_field(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {name} in {xml}"))
        + open.len();
    let end = xml[start..]
        .find(&format!("</{name}>"))
        .expect("a closed element")
        + start;
    xml[start..end].to_string()
}

/// Creates a user whose only permissions are `policy` (an inline policy) and its access key.
pub async fn create_user(moto_url: &str, name: &str, policy: &Value) -> User {
    iam_call(moto_url, &[("Action", "CreateUser"), ("UserName", name)]).await;
    iam_call(
        moto_url,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "template"),
            ("PolicyDocument", &policy.to_string()),
        ],
    )
    .await;
    let key = iam_call(
        moto_url,
        &[("Action", "CreateAccessKey"), ("UserName", name)],
    )
    .await;
    User {
        access_key_id: xml_field(&key, "AccessKeyId"),
        secret_access_key: xml_field(&key, "SecretAccessKey"),
    }
}

/// From now on moto authenticates every request and authorizes it against the caller's
/// policies (moto's `INITIAL_NO_AUTH_ACTION_COUNT`, set to 0 through its reset-auth API).
pub async fn enforce_iam(moto_url: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{moto_url}/moto-api/reset-auth"))
        .body("0")
        .send()
        .await
        .expect("moto's reset-auth");
    assert!(resp.status().is_success(), "reset-auth: {}", resp.status());
}
