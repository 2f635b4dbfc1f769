//! The `BlobStore` port in an S3 bucket: whole and ranged reads, streaming multipart
//! writes (a Lambda never holds a whole big file), presigned GET and PUT.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use longhaul_jobs::ports::validate_key;
use longhaul_jobs::ports::{BlobError, BlobMeta, BlobStore, SignedUrl, attachment_disposition};

use crate::{describe, is_transient};

/// Size of each part of a streamed write (S3's minimum is 5 MiB, except the last).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// S3 refuses presigned URLs valid for longer than 7 days.
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Files in S3.
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3BlobStore {
            client,
            bucket: bucket.into(),
        }
    }
}

fn sdk<E, R>(what: &str, key: &str, e: aws_sdk_s3::error::SdkError<E, R>) -> BlobError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let m = format!("{what} {key}: {}", describe(&e));
    if is_transient(&e) {
        BlobError::Unavailable(m)
    } else {
        BlobError::Other(m)
    }
}

fn presigning(ttl: Duration) -> Result<PresigningConfig, BlobError> {
    PresigningConfig::expires_in(ttl.clamp(Duration::from_secs(1), MAX_PRESIGN))
        .map_err(|e| BlobError::Other(format!("presigning: {e}")))
}

impl S3BlobStore {
    async fn size_of(&self, key: &str) -> Result<u64, BlobError> {
        match self.head(key).await? {
            Some(m) => Ok(m.size_bytes),
            None => Err(BlobError::NotFound(key.to_string())),
        }
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            // The bucket's lifecycle rule aborts leftovers; nothing is visible meanwhile.
            tracing::warn!(key, error = %describe(&e), "aborting a multipart upload");
        }
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Bytes,
    ) -> Result<CompletedPart, BlobError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk("UploadPart", key, e))?;
        Ok(CompletedPart::builder()
            .set_e_tag(out.e_tag().map(str::to_string))
            .part_number(number)
            .build())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk("PutObject", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BlobError> {
        validate_key(key)?;
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(r) = &range {
            let size = self.size_of(key).await?;
            if r.start > r.end || r.end > size {
                return Err(BlobError::InvalidRange {
                    start: r.start,
                    end: r.end,
                    size,
                });
            }
            if r.start == r.end {
                return Ok(Bytes::new());
            }
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Err(BlobError::NotFound(key.to_string()));
            }
            Err(e) => return Err(sdk("GetObject", key, e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| BlobError::Unavailable(format!("reading {key}: {e}")))?;
        let bytes = body.into_bytes();
        if let Some(r) = range
            && bytes.len() as u64 != r.end - r.start
        {
            // The object changed between the size check and the read.
            return Err(BlobError::Unavailable(format!(
                "{key} changed while being read; try again"
            )));
        }
        Ok(bytes)
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        validate_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(BlobMeta {
                size_bytes: o.content_length().unwrap_or(0).max(0) as u64,
                content_type: o.content_type().map(str::to_string),
            })),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(None),
            Err(e) => Err(sdk("HeadObject", key, e)),
        }
    }

    async fn put_stream(
        &self,
        key: &str,
        mut chunks: BoxStream<'_, Result<Bytes, String>>,
        content_type: &str,
        max_bytes: u64,
    ) -> Result<Option<u64>, BlobError> {
        validate_key(key)?;
        let mut buf = BytesMut::new();
        let mut total: u64 = 0;
        let mut upload: Option<(String, Vec<CompletedPart>)> = None;
        // Any early return below must abort the multipart upload: collect the outcome first.
        let outcome: Result<Option<u64>, BlobError> = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(BlobError::Other)?;
                total += chunk.len() as u64;
                if total > max_bytes {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk);
                if buf.len() >= PART_BYTES {
                    if upload.is_none() {
                        let out = self
                            .client
                            .create_multipart_upload()
                            .bucket(&self.bucket)
                            .key(key)
                            .content_type(content_type)
                            .send()
                            .await
                            .map_err(|e| sdk("CreateMultipartUpload", key, e))?;
                        let id = out
                            .upload_id()
                            .ok_or_else(|| BlobError::Other("no upload id".into()))?
                            .to_string();
                        upload = Some((id, Vec::new()));
                    }
                    if let Some((id, parts)) = upload.as_mut() {
                        let number = parts.len() as i32 + 1;
                        let part = self
                            .upload_part(key, id, number, buf.split().freeze())
                            .await?;
                        parts.push(part);
                    }
                }
            }
            Ok(Some(total))
        }
        .await;
        match (outcome, upload) {
            (Ok(Some(n)), None) => {
                self.put(key, buf.freeze(), content_type).await?;
                Ok(Some(n))
            }
            (Ok(Some(n)), Some((id, mut parts))) => {
                if !buf.is_empty() {
                    let number = parts.len() as i32 + 1;
                    match self.upload_part(key, &id, number, buf.freeze()).await {
                        Ok(p) => parts.push(p),
                        Err(e) => {
                            self.abort(key, &id).await;
                            return Err(e);
                        }
                    }
                }
                let done = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                if let Err(e) = done {
                    self.abort(key, &id).await;
                    return Err(sdk("CompleteMultipartUpload", key, e));
                }
                Ok(Some(n))
            }
            (other, Some((id, _))) => {
                self.abort(key, &id).await;
                other
            }
            (other, None) => other,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk("DeleteObject", key, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<(String, BlobMeta)>, BlobError> {
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        if !dir_part.is_empty() {
            validate_key(dir_part)?;
        }
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        while found.len() < limit {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(i32::try_from(limit - found.len()).unwrap_or(1000).min(1000))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| sdk("ListObjectsV2", prefix, e))?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    found.push((
                        key.to_string(),
                        BlobMeta {
                            size_bytes: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                            content_type: None,
                        },
                    ));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn presign_get(
        &self,
        key: &str,
        file_name: &str,
        content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl, BlobError> {
        validate_key(key)?;
        let config = presigning(ttl)?;
        let expires_at = Utc::now() + config.expires();
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(attachment_disposition(file_name))
            .response_content_type(content_type)
            .presigned(config)
            .await
            .map_err(|e| sdk("presign GetObject", key, e))?;
        Ok(SignedUrl {
            url: req.uri().to_string(),
            expires_at,
        })
    }

    async fn presign_put(
        &self,
        key: &str,
        max_bytes: u64,
        content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl, BlobError> {
        validate_key(key)?;
        let config = presigning(ttl)?;
        let expires_at = Utc::now() + config.expires();
        // A presigned PUT cannot carry a size range; the declared size is checked again
        // (HeadObject) when a job uses the object.
        let _ = max_bytes;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .presigned(config)
            .await
            .map_err(|e| sdk("presign PutObject", key, e))?;
        Ok(SignedUrl {
            url: req.uri().to_string(),
            expires_at,
        })
    }
}
