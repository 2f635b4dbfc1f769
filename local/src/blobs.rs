//! Files under the data dir, written atomically (temp file, fsync, rename) and so never
//! changed in place, which lets large ranges be read by mapping the file rather than copying
//! it; and the signed, expiring links that stand in for S3 presigned URLs: HMAC-SHA256 over
//! the method, the key, the expiry and the headers to serve, with a key generated once into
//! the data dir.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use longhaul_jobs::ports::validate_key;
use longhaul_jobs::{BlobError, BlobMeta, BlobStore, SignedUrl};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks file links.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    pub fn from_key(key: [u8; 32]) -> UrlSigner {
        UrlSigner { key }
    }

    /// Loads the key from `path`, creating it (32 random bytes, mode 0600) the first time.
    pub fn load_or_create(path: &Path) -> std::io::Result<UrlSigner> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("{} must hold exactly 32 bytes (it holds {}); delete it to make a new key", path.display(), bytes.len()),
                    )
                })?;
                Ok(UrlSigner { key })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path)?;
                std::io::Write::write_all(&mut f, &key)?;
                f.sync_all()?;
                Ok(UrlSigner { key })
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        // new_from_slice accepts any key length for HMAC.
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    pub fn sign(&self, parts: &[&str]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    /// Constant-time check of a hex signature.
    pub fn verify(&self, parts: &[&str], sig_hex: &str) -> bool {
        let Ok(sig) = hex::decode(sig_hex) else {
            return false;
        };
        self.mac(parts).verify_slice(&sig).is_ok()
    }
}

/// Files in a directory.
pub struct FsBlobStore {
    root: PathBuf,
    signer: UrlSigner,
    base_url: String,
}

fn io_err(e: std::io::Error, what: &str) -> BlobError {
    match e.kind() {
        ErrorKind::StorageFull
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::PermissionDenied
        | ErrorKind::QuotaExceeded
        | ErrorKind::FileTooLarge => BlobError::Unavailable(format!("{what}: {e}")),
        _ => BlobError::Other(format!("{what}: {e}")),
    }
}

impl FsBlobStore {
    /// Files under `root`; links start with `base_url` (the server's public URL).
    pub fn open(root: &Path, signer: UrlSigner, base_url: &str) -> std::io::Result<FsBlobStore> {
        std::fs::create_dir_all(root.join(".tmp"))?;
        // Absolute: steps in other processes get file:// URIs under it.
        let root = root.canonicalize()?;
        Ok(FsBlobStore {
            root,
            signer,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// Deletes the temp files of writes that never finished (a killed process). Only for the
    /// one process that owns the store (`longhaul serve` holds the data dir's lock).
    pub fn remove_unfinished_writes(&self) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join(".tmp"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join(".tmp")
            .join(uuid::Uuid::new_v4().to_string())
    }

    async fn commit(&self, tmp: &Path, dest: &Path) -> Result<(), BlobError> {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_err(e, "creating a directory"))?;
        }
        tokio::fs::rename(tmp, dest)
            .await
            .map_err(|e| io_err(e, "renaming into place"))
    }

    /// Writes an object from a stream of chunks, at most `max_bytes`, atomically. Returns
    /// the size, or `Ok(None)` when the stream was longer than `max_bytes` (nothing kept).
    pub async fn put_stream<S, E>(
        &self,
        key: &str,
        mut body: S,
        max_bytes: u64,
    ) -> Result<Option<u64>, BlobError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dest = self.path(key)?;
        let tmp = self.temp_path();
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_err(e, "creating a temp file"))?;
        let mut total = 0u64;
        let result: Result<Option<u64>, BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| BlobError::Other(format!("reading the upload: {e}")))?;
                total += chunk.len() as u64;
                if total > max_bytes {
                    return Ok(None);
                }
                f.write_all(&chunk)
                    .await
                    .map_err(|e| io_err(e, "writing"))?;
            }
            f.sync_all().await.map_err(|e| io_err(e, "syncing"))?;
            Ok(Some(total))
        }
        .await;
        drop(f);
        match result {
            Ok(Some(n)) => {
                self.commit(&tmp, &dest).await?;
                Ok(Some(n))
            }
            other => {
                let _ = tokio::fs::remove_file(&tmp).await;
                other
            }
        }
    }

    fn expiry(ttl: Duration) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(15))
    }

    fn url(&self, key: &str, query: &[(&str, &str)]) -> String {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter())
            .finish();
        format!("{}/files/{key}?{q}", self.base_url)
    }
}

/// Files under `root` whose keys start with `prefix`, in key order, at most `limit`
/// (temp files of unfinished writes excluded).
fn list_files(
    root: &Path,
    prefix: &str,
    limit: usize,
) -> Result<Vec<(String, BlobMeta)>, BlobError> {
    let start = root.join(prefix.rsplit_once('/').map_or("", |(d, _)| d));
    let mut found = Vec::new();
    let mut dirs = vec![start];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(e, "listing")),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(e, "listing"))?;
            let path = entry.path();
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let key = rel
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            if key.starts_with(".tmp") {
                continue;
            }
            let meta = entry.metadata().map_err(|e| io_err(e, "stat"))?;
            if meta.is_dir() {
                if prefix.starts_with(&format!("{key}/")) || key.starts_with(prefix) {
                    dirs.push(path);
                }
            } else if meta.is_file() && key.starts_with(prefix) && validate_key(&key).is_ok() {
                found.push((
                    key,
                    BlobMeta {
                        size_bytes: meta.len(),
                        content_type: None,
                    },
                ));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.truncate(limit);
    Ok(found)
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), BlobError> {
        let stream = futures::stream::iter([Ok::<Bytes, std::io::Error>(bytes)]);
        self.put_stream(key, stream, u64::MAX).await.map(|_| ())
    }

    async fn put_stream(
        &self,
        key: &str,
        chunks: futures::stream::BoxStream<'_, Result<Bytes, String>>,
        _content_type: &str,
        max_bytes: u64,
    ) -> Result<Option<u64>, BlobError> {
        FsBlobStore::put_stream(self, key, chunks, max_bytes).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BlobError> {
        let path = self.path(key)?;
        let key = key.to_string();
        tokio::task::spawn_blocking(move || read_object(&path, &key, range))
            .await
            .map_err(|e| BlobError::Other(format!("reading: {e}")))?
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(BlobMeta {
                size_bytes: m.len(),
                content_type: None,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e, "stat")),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(e, "deleting")),
        }
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<(String, BlobMeta)>, BlobError> {
        // The directory the prefix's last complete segment names; keys under it are filtered
        // by the whole prefix.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        if !dir_part.is_empty() {
            validate_key(dir_part)?;
        }
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_files(&root, &prefix, limit))
            .await
            .map_err(|e| BlobError::Other(e.to_string()))?
    }

    fn uri(&self, key: &str) -> String {
        let path = self.root.join(key);
        url::Url::from_file_path(&path)
            .map(|u| {
                // A prefix ("jobs/x/output/") keeps its trailing slash: it names a folder.
                let mut s = u.to_string();
                if key.ends_with('/') && !s.ends_with('/') {
                    s.push('/');
                }
                s
            })
            .unwrap_or_else(|()| format!("file://{}", path.display()))
    }

    async fn presign_get(
        &self,
        key: &str,
        file_name: &str,
        content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl, BlobError> {
        validate_key(key)?;
        let expires_at = Self::expiry(ttl);
        let exp = expires_at.timestamp().to_string();
        let sig = self
            .signer
            .sign(&["GET", key, &exp, file_name, content_type]);
        Ok(SignedUrl {
            url: self.url(
                key,
                &[
                    ("exp", &exp),
                    ("name", file_name),
                    ("type", content_type),
                    ("sig", &sig),
                ],
            ),
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
        let expires_at = Self::expiry(ttl);
        let exp = expires_at.timestamp().to_string();
        let max = max_bytes.to_string();
        let sig = self.signer.sign(&["PUT", key, &exp, &max, content_type]);
        Ok(SignedUrl {
            url: self.url(
                key,
                &[
                    ("exp", &exp),
                    ("max", &max),
                    ("type", content_type),
                    ("sig", &sig),
                ],
            ),
            expires_at,
        })
    }
}

/// Ranges at least this long are mapped rather than copied.
const MAP_AT_BYTES: u64 = 1 << 20;

/// An object's bytes, or a range of them. A large range is the file's pages mapped into
/// memory (no copy, no fresh memory to zero: csv-report reads its whole input this way
/// twice); a small one is read into a buffer.
fn read_object(path: &Path, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BlobError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(BlobError::NotFound(key.to_string()));
        }
        Err(e) => return Err(io_err(e, "opening")),
    };
    let size = f.metadata().map_err(|e| io_err(e, "stat"))?.len();
    let r = range.unwrap_or(0..size);
    if r.start > r.end || r.end > size {
        return Err(BlobError::InvalidRange {
            start: r.start,
            end: r.end,
            size,
        });
    }
    let len =
        usize::try_from(r.end - r.start).map_err(|_| BlobError::Other("range too large".into()))?;
    if r.end - r.start < MAP_AT_BYTES {
        let mut buf = vec![0u8; len];
        let mut f = f;
        f.seek(SeekFrom::Start(r.start))
            .map_err(|e| io_err(e, "seeking"))?;
        f.read_exact(&mut buf).map_err(|e| io_err(e, "reading"))?;
        return Ok(Bytes::from(buf));
    }
    // SAFETY: a mapping is undefined behaviour if the file changes under it. Objects here
    // never change in place: `put_stream` writes a temp file and renames it over the key,
    // and `delete` unlinks; either leaves this mapping on the inode it mapped. Only a
    // process writing into the data dir behind the server's back could change or truncate
    // the file, and the data dir belongs to the one `serve` that holds its lock.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(r.start)
            .len(len)
            .populate()
            .map(&f)
    }
    .map_err(|e| io_err(e, "mapping"))?;
    Ok(Bytes::from_owner(map))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::UNAUTHORIZED {
        // An upload refused before its body was read: the connection cannot be reused.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Checks a link's signature and expiry; the signed parts are method, key, then `fields`.
/// The error is the message of the 401.
fn check(
    store: &FsBlobStore,
    method: &str,
    key: &str,
    q: &HashMap<String, String>,
    fields: &[&str],
) -> Result<(), &'static str> {
    let (Some(exp), Some(sig)) = (q.get("exp"), q.get("sig")) else {
        return Err("this link is not valid (it is not signed)");
    };
    let mut parts: Vec<&str> = vec![method, key, exp];
    for f in fields {
        parts.push(q.get(*f).map(String::as_str).unwrap_or(""));
    }
    if !store.signer.verify(&parts, sig) {
        return Err("this link is not valid");
    }
    let exp: i64 = exp.parse().map_err(|_| "this link is not valid")?;
    if Utc::now().timestamp() > exp {
        return Err("this link has expired; ask for a new one");
    }
    Ok(())
}

async fn get_file(
    State(store): State<Arc<FsBlobStore>>,
    UrlPath(key): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(m) = check(&store, "GET", &key, &q, &["name", "type"]) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", m);
    }
    let path = match store.path(&key) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return error(StatusCode::NOT_FOUND, "not_found", "no such file");
        }
        Err(e) => {
            tracing::error!(error = %e, "opening a served file");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the file cannot be read now",
            );
        }
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let name = q
        .get("name")
        .cloned()
        .unwrap_or_else(|| key.rsplit('/').next().unwrap_or("file").to_string());
    let ctype = q
        .get("type")
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ctype)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Ok(v) = HeaderValue::from_str(&longhaul_jobs::attachment_disposition(&name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    (StatusCode::OK, headers, body).into_response()
}

async fn put_file(
    State(store): State<Arc<FsBlobStore>>,
    UrlPath(key): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Err(m) = check(&store, "PUT", &key, &q, &["max", "type"]) {
        drain_refused(body, declared).await;
        return error(StatusCode::UNAUTHORIZED, "unauthorized", m);
    }
    let max: u64 = q.get("max").and_then(|m| m.parse().ok()).unwrap_or(0);
    if let Some(len) = declared
        && len > max
    {
        drain_refused(body, declared).await;
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the file is {len} bytes; this link accepts at most {max}"),
        );
    }
    let mut resp = match store.put_stream(&key, body.into_data_stream(), max).await {
        Ok(Some(n)) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"object": key, "sizeBytes": n})),
        )
            .into_response(),
        Ok(None) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("this link accepts at most {max} bytes"),
        ),
        Err(BlobError::InvalidKey { .. }) => {
            error(StatusCode::BAD_REQUEST, "bad_request", "invalid object key")
        }
        Err(BlobError::Unavailable(m)) => {
            tracing::error!(error = %m, "storing an upload");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage is unavailable; try again later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "storing an upload");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the upload could not be stored",
            )
        }
    };
    if !resp.status().is_success() {
        // The write stopped part way (too large, disk full): the rest of the body is never
        // read, so the client must not reuse the connection, or its next request on it races
        // the server closing it.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads and drops a refused upload's body when it is small enough (64 MiB, 20 s): closing a
/// socket with unread data sends a reset, and a client still writing would see "broken pipe"
/// instead of the 401 or 413.
async fn drain_refused(body: Body, declared: Option<u64>) {
    const LIMIT: u64 = 64 << 20;
    if declared.is_some_and(|len| len > LIMIT) {
        return;
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), read).await;
}

/// `GET /files/{key}` and `PUT /files/{key}`, authorised by the link's signature alone.
pub fn files_router(store: Arc<FsBlobStore>) -> Router {
    Router::new()
        .route("/files/{*key}", get(get_file).put(put_file))
        .with_state(store)
}
