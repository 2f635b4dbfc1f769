//! The local adapters against the port contracts, plus what only they do: migrations and
//! reopening, errors that mean "try again later", signed links served over HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use longhaul_jobs::{BlobStore, Job, JobStore, StoreError};
use longhaul_local::{FsBlobStore, SqliteJobStore, UrlSigner, files_router};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_job_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteJobStore::open(&dir.path().join("jobs.db")).unwrap();
    longhaul_jobs::contract::job_store_contract(Arc::new(store)).await;
}

/// getJob reads are cached in the store: with readers hammering a job while it is written,
/// every read after a write has returned sees that write (a read that began before it must
/// not leave the old record behind in the cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_racing_writes_see_every_committed_write() {
    use longhaul_jobs::{JobStatus, Progress, TransitionPatch};
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteJobStore::open(&dir.path().join("jobs.db")).unwrap());
    let job = Job::new("alice", "demo", serde_json::json!({}), chrono::Utc::now());
    let id = job.job_id.clone();
    store.create(&job).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, id, stop) = (store.clone(), id.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    store.get(&id).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    store
        .transition(
            &id,
            JobStatus::Running,
            TransitionPatch::default(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    for step in 1..=300u32 {
        let p = Progress {
            percent: (step % 100) as u8,
            message: format!("step {step}"),
        };
        assert!(
            store
                .set_progress(&id, &p, chrono::Utc::now())
                .await
                .unwrap()
        );
        let got = store.get(&id).await.unwrap().unwrap();
        assert_eq!(got.progress.message, p.message, "a read after the write");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let done = store
        .transition(
            &id,
            JobStatus::Succeeded,
            TransitionPatch::default(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(done, longhaul_jobs::TransitionOutcome::Applied(_)));
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_blob_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(
        &dir.path().join("blobs"),
        UrlSigner::from_key([7; 32]),
        "http://127.0.0.1:1",
    )
    .unwrap();
    longhaul_jobs::contract::blob_store_contract(Arc::new(store)).await;
}

/// Large ranges are mapped, not copied: they read the same bytes as small ones, at any
/// offset, and a mapped range keeps the bytes it had when the key is written again (writes
/// replace the file, never change it in place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_ranges_read_the_right_bytes_and_survive_a_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(
        &dir.path().join("blobs"),
        UrlSigner::from_key([7; 32]),
        "http://127.0.0.1:1",
    )
    .unwrap();
    let old: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    store
        .put(
            "big/a.bin",
            Bytes::from(old.clone()),
            "application/octet-stream",
        )
        .await
        .unwrap();
    let whole = store.get("big/a.bin", None).await.unwrap();
    assert_eq!(whole.as_ref(), old.as_slice());
    for (start, end) in [
        (0, 1 << 20),
        (4097, 2_100_000),
        (1, 3_000_000),
        (2_999_999, 3_000_000),
    ] {
        let got = store.get("big/a.bin", Some(start..end)).await.unwrap();
        assert_eq!(
            got.as_ref(),
            &old[start as usize..end as usize],
            "{start}..{end}"
        );
    }
    assert!(matches!(
        store.get("big/a.bin", Some(1..3_000_001)).await,
        Err(longhaul_jobs::BlobError::InvalidRange { .. })
    ));
    store
        .put(
            "big/a.bin",
            Bytes::from(vec![1u8; 2_000_000]),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(
        whole.as_ref(),
        old.as_slice(),
        "a mapped read outlives a rewrite"
    );
    let new = store.get("big/a.bin", Some(0..2_000_000)).await.unwrap();
    assert!(new.iter().all(|&b| b == 1));
    store.delete("big/a.bin").await.unwrap();
    assert_eq!(new.len(), 2_000_000);
    assert!(new.iter().all(|&b| b == 1), "and a delete");
}

#[tokio::test]
async fn reopening_keeps_jobs_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let job = Job::new(
        "alice",
        "demo",
        serde_json::json!({"steps": 1}),
        chrono::Utc::now(),
    );
    {
        let store = SqliteJobStore::open(&path).unwrap();
        store.create(&job).await.unwrap();
    }
    let store = SqliteJobStore::open(&path).unwrap();
    assert_eq!(store.get(&job.job_id).await.unwrap(), Some(job));
    assert_eq!(
        store.list_queued_without_execution().await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    drop(SqliteJobStore::open(&path).unwrap());
    rusqlite_set_version(&path, 99);
    let err = SqliteJobStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

fn rusqlite_set_version(path: &std::path::Path, v: i64) {
    // Through the sqlite3 file format: user_version is a 4-byte big-endian int at offset 60.
    let mut bytes = std::fs::read(path).unwrap();
    bytes[60..64].copy_from_slice(&(v as u32).to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn an_unwritable_database_is_unavailable_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    drop(SqliteJobStore::open(&path).unwrap());
    // A directory where the database should be: opening fails as "cannot open".
    let bad = dir.path().join("dir.db");
    std::fs::create_dir(&bad).unwrap();
    match SqliteJobStore::open(&bad) {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn long_polls_leave_no_watchers_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteJobStore::open(&dir.path().join("jobs.db")).unwrap();
    let watches: Vec<_> = (0..1000)
        .map(|i| store.watch(&format!("job-{i}")))
        .collect();
    assert_eq!(store.watched_jobs(), 1000);
    drop(watches);
    assert_eq!(store.watched_jobs(), 0);
}

#[test]
fn the_signing_key_is_created_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.key");
    let a = UrlSigner::load_or_create(&path).unwrap();
    let b = UrlSigner::load_or_create(&path).unwrap();
    assert_eq!(a.sign(&["x"]), b.sign(&["x"]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::write(&path, b"short").unwrap();
    assert!(
        UrlSigner::load_or_create(&path).is_err(),
        "a wrong-size key is refused"
    );
}

async fn call(
    app: &axum::Router,
    method: &str,
    url: &str,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let path = url.strip_prefix("http://test").unwrap_or(url);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (
        status,
        headers,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn signed_links_upload_and_download_and_refuse_forgery_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        FsBlobStore::open(
            &dir.path().join("blobs"),
            UrlSigner::from_key([1; 32]),
            "http://test",
        )
        .unwrap(),
    );
    let app = files_router(store.clone());
    let ttl = Duration::from_secs(60);

    let put = store
        .presign_put("uploads/o/1/data.csv", 10, "text/csv", ttl)
        .await
        .unwrap();
    let (s, _, _) = call(&app, "PUT", &put.url, b"0123456789ABC".to_vec()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        store.head("uploads/o/1/data.csv").await.unwrap().is_none(),
        "nothing kept"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs/.tmp"))
            .unwrap()
            .count(),
        0,
        "no temp file left"
    );
    let (s, _, _) = call(&app, "PUT", &put.url, b"a,b\n1,2\n".to_vec()).await;
    assert_eq!(s, StatusCode::CREATED);

    let get = store
        .presign_get("uploads/o/1/data.csv", "my data.csv", "text/csv", ttl)
        .await
        .unwrap();
    let (s, h, body) = call(&app, "GET", &get.url, vec![]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, Bytes::from_static(b"a,b\n1,2\n"));
    assert_eq!(h["content-type"], "text/csv");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .contains("filename=\"my data.csv\"")
    );

    for forged in [
        get.url.replace("sig=", "sig=0"),
        get.url.replace("data.csv?", "other.csv?"),
        get.url.replace("type=text%2Fcsv", "type=text%2Fhtml"),
        get.url.replace("exp=", "exp=9"),
        put.url.clone(),
    ] {
        let (s, _, body) = call(&app, "GET", &forged, vec![]).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{forged}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let expired = store
        .presign_get("uploads/o/1/data.csv", "d.csv", "text/csv", Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, body) = call(&app, "GET", &expired.url, vec![]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
}
