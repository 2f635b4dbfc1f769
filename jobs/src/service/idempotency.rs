//! Idempotency keys: a retried startJob with the same key and the same body is the same job;
//! the body is compared by a hash of its canonical form.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ServiceError, StartJobRequest};

const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

pub(super) fn validate_idempotency_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(ServiceError::BadRequest(format!(
            "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// SHA-256 of the request with object keys sorted, so the same body always hashes the same.
pub(super) fn request_hash(req: &StartJobRequest) -> String {
    let canonical = serde_json::json!({
        "type": req.job_type,
        "input": canonical_json(&req.input),
        "openaiFileIdRefs": req.openai_file_id_refs.as_ref().map(|r| serde_json::to_value(r).unwrap_or(Value::Null)),
    });
    hex::encode(Sha256::digest(
        canonical_json(&canonical).to_string().as_bytes(),
    ))
}

fn canonical_json(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical_json(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hash_ignores_key_order() {
        let a: StartJobRequest =
            serde_json::from_str(r#"{"type":"demo","input":{"steps":1,"stepSeconds":0}}"#).unwrap();
        let b: StartJobRequest =
            serde_json::from_str(r#"{"input":{"stepSeconds":0,"steps":1},"type":"demo"}"#).unwrap();
        let c: StartJobRequest =
            serde_json::from_str(r#"{"type":"demo","input":{"steps":2,"stepSeconds":0}}"#).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
