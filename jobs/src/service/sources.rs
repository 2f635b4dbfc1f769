//! A job's file inputs as the client gives them — an upload, a file attached in ChatGPT, a
//! URL — and their checks before anything is written: uploads are the owner's and there,
//! refs point into openaiFileIdRefs, URLs pass the outbound policy.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{JobService, ServiceError};
use crate::job::OpenAiFileRef;
use crate::types::JobType;

const MAX_FILE_REFS: usize = 10;

impl JobService {
    /// Checks a job's file inputs before anything is written: an upload must be the owner's
    /// and exist (and pass the type's check of its first bytes), a file ref must point into
    /// openaiFileIdRefs, a URL must be https to a public address.
    pub(super) async fn check_sources(
        &self,
        owner: &str,
        job_type: &JobType,
        input: &Value,
        refs: &[OpenAiFileRef],
    ) -> Result<(), ServiceError> {
        for field in &job_type.file_inputs {
            let Some(value) = input.get(field) else {
                continue;
            };
            let source = FileSource::parse(value)
                .map_err(|m| ServiceError::BadRequest(format!("input.{field}: {m}")))?;
            match source {
                FileSource::Object(object) => {
                    self.check_upload(owner, job_type, input, field, &object)
                        .await?;
                }
                FileSource::FileRef(i) => {
                    let Some(r) = refs.get(i) else {
                        return Err(ServiceError::BadRequest(format!(
                            "input.{field}.fileRef: {i} is not an index of openaiFileIdRefs ({} file(s) attached)",
                            refs.len()
                        )));
                    };
                    // Refused now rather than failing the job later in Register.
                    check_download_url(&r.download_link, self.config.allow_insecure_downloads)
                        .map_err(|m| {
                            ServiceError::BadRequest(format!(
                                "openaiFileIdRefs[{i}].download_link: {m}"
                            ))
                        })?;
                }
                FileSource::Url(url) => {
                    check_download_url(&url, self.config.allow_insecure_downloads)
                        .map_err(|m| ServiceError::BadRequest(format!("input.{field}.url: {m}")))?;
                }
            }
        }
        Ok(())
    }

    /// An upload used as a file input: the owner's, there, within the size limit, and its
    /// first bytes pass the type's check.
    async fn check_upload(
        &self,
        owner: &str,
        job_type: &JobType,
        input: &Value,
        field: &str,
        object: &str,
    ) -> Result<(), ServiceError> {
        let prefix = format!("{}/", upload_prefix(owner));
        if !object.starts_with(&prefix) {
            return Err(ServiceError::BadRequest(format!(
                "input.{field}.object: not one of your uploads (use the object createUpload returned)"
            )));
        }
        let meta = self.blobs.head(object).await?.ok_or_else(|| {
            ServiceError::BadRequest(format!(
                "input.{field}.object: nothing was uploaded there yet (PUT the file to its uploadUrl first)"
            ))
        })?;
        // S3's presigned PUT cannot cap the size: the cap is enforced here, at use.
        if meta.size_bytes > self.config.max_upload_bytes {
            return Err(ServiceError::PayloadTooLarge(format!(
                "input.{field}.object: the upload is {} bytes, over the limit of {}",
                meta.size_bytes, self.config.max_upload_bytes
            )));
        }
        let head_len = meta.size_bytes.min(64 * 1024);
        if head_len > 0 {
            let first = self.blobs.get(object, Some(0..head_len)).await?;
            job_type
                .check_file_head(input, field, &first)
                .map_err(ServiceError::BadRequest)?;
        }
        Ok(())
    }
}

/// The outbound policy's URL check (longhaul-outbound), as a message.
fn check_download_url(url: &str, allow_insecure: bool) -> Result<(), String> {
    longhaul_outbound::check_url(url, longhaul_outbound::OutboundPolicy { allow_insecure })
        .map(drop)
}

/// A file input's value as the client gives it (the schema `file_source_schema` describes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// An object in the blob store (an upload, or a copy Register made).
    Object(String),
    /// An index into the request's openaiFileIdRefs.
    FileRef(usize),
    Url(String),
}

impl FileSource {
    pub fn parse(v: &Value) -> Result<FileSource, String> {
        if let Some(o) = v.get("object").and_then(Value::as_str) {
            Ok(FileSource::Object(o.to_string()))
        } else if let Some(i) = v.get("fileRef").and_then(Value::as_u64) {
            usize::try_from(i)
                .map(FileSource::FileRef)
                .map_err(|_| format!("fileRef {i} is out of range"))
        } else if let Some(u) = v.get("url").and_then(Value::as_str) {
            Ok(FileSource::Url(u.to_string()))
        } else {
            Err("a file is {\"object\"}, {\"fileRef\"} or {\"url\"}".into())
        }
    }
}

/// The prefix under which an owner's uploads live. A job may read only objects under its
/// owner's prefix (owners are isolated).
pub fn upload_prefix(owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    format!("uploads/{}", &hex::encode(digest)[..24])
}

pub(super) fn validate_file_refs(refs: &[OpenAiFileRef]) -> Result<(), ServiceError> {
    if refs.len() > MAX_FILE_REFS {
        return Err(ServiceError::BadRequest(format!(
            "openaiFileIdRefs: at most {MAX_FILE_REFS} files"
        )));
    }
    for (i, r) in refs.iter().enumerate() {
        if !r.download_link.starts_with("https://") && !r.download_link.starts_with("http://") {
            return Err(ServiceError::BadRequest(format!(
                "openaiFileIdRefs[{i}].download_link must be an http(s) URL"
            )));
        }
        if r.name.is_empty() || r.name.len() > 255 {
            return Err(ServiceError::BadRequest(format!(
                "openaiFileIdRefs[{i}].name must be 1 to 255 characters"
            )));
        }
    }
    Ok(())
}

/// A file name safe to use as the last segment of an object key.
pub fn validate_file_name(name: &str) -> Result<String, ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(ServiceError::BadRequest(
            "name must be 1 to 200 characters of letters, digits, '.', '-' or '_', not starting with '.' (no paths)"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_escape() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "a b",
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_file_name("sales-2024.csv").is_ok());
    }

    #[test]
    fn upload_prefixes_differ_per_owner() {
        assert_ne!(upload_prefix("alice"), upload_prefix("bob"));
        assert!(upload_prefix("alice").starts_with("uploads/"));
    }
}
