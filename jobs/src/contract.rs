//! The port contract suite: what every `JobStore` and `BlobStore` adapter promises, as
//! functions that panic (assert) on a broken promise. Adapters run it in their tests — the
//! in-memory ones here, SQLite and files in `longhaul-local`, DynamoDB and S3 on a moto
//! server in `longhaul-aws`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde_json::json;

use crate::job::{ExecutionRef, Job, JobError, JobFile, JobStatus, Progress, TransitionPatch};
use crate::ports::{
    BlobError, BlobStore, CreateOutcome, JobStore, JobWatch, ListQuery, TransitionOutcome,
};

fn job(owner: &str, ty: &str) -> Job {
    // Ids are UUID v7: a short sleep keeps creation order strict.
    std::thread::sleep(Duration::from_millis(2));
    Job::new(
        owner,
        ty,
        json!({"steps": 1, "nested": {"k": [1, 2]}}),
        Utc::now(),
    )
}

/// Everything `JobStore` promises.
pub async fn job_store_contract(store: Arc<dyn JobStore>) {
    create_and_get_round_trip(&*store).await;
    idempotency(&*store).await;
    list_paging_and_filters(&*store).await;
    transitions(&*store).await;
    progress_and_execution(&*store).await;
    watch_wakes_on_writes(store.clone()).await;
    racing_terminal_writes(store).await;
}

async fn create_and_get_round_trip(store: &dyn JobStore) {
    let mut j = job("contract-a", "demo");
    j.idempotency_key = None;
    j.request_hash = Some("abc".into());
    j.openai_file_id_refs = vec![crate::job::OpenAiFileRef {
        name: "f.csv".into(),
        id: "file-1".into(),
        mime_type: Some("text/csv".into()),
        download_link: "https://example.com/f".into(),
    }];
    assert_eq!(store.create(&j).await.unwrap(), CreateOutcome::Created);
    let got = store
        .get(&j.job_id)
        .await
        .unwrap()
        .expect("created job is readable");
    assert_eq!(got, j, "every field round-trips");
    assert_eq!(store.get(&crate::job::new_job_id()).await.unwrap(), None);
}

async fn idempotency(store: &dyn JobStore) {
    let mut a = job("contract-idem", "demo");
    a.idempotency_key = Some("key-1".into());
    assert_eq!(store.create(&a).await.unwrap(), CreateOutcome::Created);
    let mut b = job("contract-idem", "demo");
    b.idempotency_key = Some("key-1".into());
    match store.create(&b).await.unwrap() {
        CreateOutcome::IdempotencyKeyExists(existing) => assert_eq!(existing.job_id, a.job_id),
        other => panic!("second create with the same key: {other:?}"),
    }
    assert_eq!(
        store.get(&b.job_id).await.unwrap(),
        None,
        "nothing written for the duplicate"
    );
    assert_eq!(
        store
            .find_by_idempotency_key("contract-idem", "key-1")
            .await
            .unwrap()
            .map(|j| j.job_id),
        Some(a.job_id.clone())
    );
    // The same key of another owner is independent.
    let mut c = job("contract-idem-other", "demo");
    c.idempotency_key = Some("key-1".into());
    assert_eq!(store.create(&c).await.unwrap(), CreateOutcome::Created);
    assert_eq!(
        store
            .find_by_idempotency_key("contract-idem", "nope")
            .await
            .unwrap(),
        None
    );
}

async fn list_paging_and_filters(store: &dyn JobStore) {
    let owner = "contract-list";
    let mut ids = Vec::new();
    for i in 0..7 {
        let j = job(owner, if i % 2 == 0 { "demo" } else { "other" });
        store.create(&j).await.unwrap();
        ids.push(j.job_id);
    }
    store
        .create(&job("contract-list-someone-else", "demo"))
        .await
        .unwrap();
    ids.reverse();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(
                owner,
                &ListQuery {
                    limit: 3,
                    after_job_id: after.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(page.jobs.len() <= 3);
        seen.extend(page.jobs.iter().map(|j| j.job_id.clone()));
        match page.next_after_job_id {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(
        seen, ids,
        "newest first, own jobs only, no gaps or duplicates"
    );
    let demo = store
        .list(
            owner,
            &ListQuery {
                limit: 100,
                job_type: Some("demo".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(demo.jobs.len(), 4);
    assert!(demo.next_after_job_id.is_none());
    let running = store
        .list(
            owner,
            &ListQuery {
                limit: 100,
                status: Some(JobStatus::Running),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(running.jobs.is_empty());
    assert_eq!(store.count_active(owner).await.unwrap(), 7);
    // Every owner's, oldest first (ids sort by creation).
    let active = store.active_jobs(10_000).await.unwrap();
    let mine: Vec<&Job> = active.iter().filter(|j| j.owner == owner).collect();
    assert_eq!(mine.len(), 7);
    assert!(active.iter().all(|j| !j.status.is_terminal()));
    assert!(active.windows(2).all(|w| w[0].job_id < w[1].job_id));
    assert_eq!(store.active_jobs(1).await.unwrap().len(), 1);
}

async fn transitions(store: &dyn JobStore) {
    use JobStatus::*;
    for from in [Queued, Running, Succeeded, Failed, Cancelled, TimedOut] {
        for to in [Running, Succeeded, Failed, Cancelled, TimedOut] {
            let j = job("contract-tx", "demo");
            store.create(&j).await.unwrap();
            // Bring the job to `from` by a legal path.
            if from != Queued {
                store
                    .transition(&j.job_id, Running, TransitionPatch::default(), Utc::now())
                    .await
                    .unwrap();
                if from != Running {
                    store
                        .transition(&j.job_id, from, TransitionPatch::default(), Utc::now())
                        .await
                        .unwrap();
                }
            }
            assert_eq!(store.get(&j.job_id).await.unwrap().unwrap().status, from);
            let patch = TransitionPatch {
                result: Some(json!({"r": 1})),
                error: Some(JobError {
                    code: "c".into(),
                    message: "m".into(),
                }),
                files: Some(vec![JobFile {
                    name: "a.csv".into(),
                    mime_type: "text/csv".into(),
                    size_bytes: 3,
                    object: "jobs/x/a.csv".into(),
                }]),
                progress: Some(Progress {
                    percent: 100,
                    message: "done".into(),
                }),
                ..Default::default()
            };
            let out = store
                .transition(&j.job_id, to, patch, Utc::now())
                .await
                .unwrap();
            let now = store.get(&j.job_id).await.unwrap().unwrap();
            if from.can_move_to(to) {
                assert!(
                    matches!(out, TransitionOutcome::Applied(ref a) if a.status == to),
                    "{from} -> {to}: {out:?}"
                );
                assert_eq!(now.status, to);
                assert_eq!(now.result, Some(json!({"r": 1})));
                assert_eq!(now.files.len(), 1);
                assert_eq!(now.finished_at.is_some(), to.is_terminal());
            } else {
                assert!(
                    matches!(out, TransitionOutcome::Rejected(ref r) if r.status == from),
                    "{from} -> {to} must be rejected: {out:?}"
                );
                assert_eq!(now.status, from, "a rejected move writes nothing");
            }
        }
    }
    assert_eq!(
        store
            .transition(
                &crate::job::new_job_id(),
                Running,
                TransitionPatch::default(),
                Utc::now()
            )
            .await
            .unwrap(),
        TransitionOutcome::NotFound
    );
}

async fn progress_and_execution(store: &dyn JobStore) {
    let j = job("contract-progress", "demo");
    store.create(&j).await.unwrap();
    let p = Progress {
        percent: 40,
        message: "step 2 of 5".into(),
    };
    assert!(store.set_progress(&j.job_id, &p, Utc::now()).await.unwrap());
    let x = ExecutionRef {
        name: j.job_id.clone(),
        arn: Some("arn:x".into()),
        console_url: Some("https://c".into()),
    };
    assert!(
        store
            .set_execution(&j.job_id, &x, Utc::now())
            .await
            .unwrap()
    );
    let got = store.get(&j.job_id).await.unwrap().unwrap();
    assert_eq!(got.progress, p);
    assert_eq!(got.execution, x);
    store
        .transition(
            &j.job_id,
            JobStatus::Cancelled,
            TransitionPatch::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(
        !store.set_progress(&j.job_id, &p, Utc::now()).await.unwrap(),
        "no progress on a terminal job"
    );
    assert!(
        !store
            .set_execution(&j.job_id, &x, Utc::now())
            .await
            .unwrap()
    );
    assert_eq!(store.count_active("contract-progress").await.unwrap(), 0);
}

async fn watch_wakes_on_writes(store: Arc<dyn JobStore>) {
    let j = job("contract-watch", "demo");
    store.create(&j).await.unwrap();
    let mut w = store.watch(&j.job_id);
    let push = matches!(w, JobWatch::Push(_));
    let s2 = store.clone();
    let id = j.job_id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s2.set_progress(
            &id,
            &Progress {
                percent: 1,
                message: "x".into(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    });
    let woke =
        tokio::time::timeout(Duration::from_secs(if push { 2 } else { 30 }), w.changed()).await;
    assert!(woke.is_ok(), "watch woke on the write");
}

async fn racing_terminal_writes(store: Arc<dyn JobStore>) {
    let j = job("contract-race", "demo");
    store.create(&j).await.unwrap();
    store
        .transition(
            &j.job_id,
            JobStatus::Running,
            TransitionPatch::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = store.clone();
        let id = j.job_id.clone();
        tasks.push(tokio::spawn(async move {
            let to = if i % 2 == 0 {
                JobStatus::Succeeded
            } else {
                JobStatus::Cancelled
            };
            matches!(
                s.transition(&id, to, TransitionPatch::default(), Utc::now())
                    .await
                    .unwrap(),
                TransitionOutcome::Applied(_)
            )
        }));
    }
    let mut applied = 0;
    for t in tasks {
        if t.await.unwrap() {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "exactly one terminal write wins");
}

/// Everything `BlobStore` promises.
pub async fn blob_store_contract(store: Arc<dyn BlobStore>) {
    let key = "jobs/contract/data.csv";
    store
        .put(key, Bytes::from_static(b"hello, world"), "text/csv")
        .await
        .unwrap();
    assert_eq!(
        store.get(key, None).await.unwrap(),
        Bytes::from_static(b"hello, world")
    );
    assert_eq!(
        store.get(key, Some(7..12)).await.unwrap(),
        Bytes::from_static(b"world")
    );
    assert_eq!(store.get(key, Some(0..0)).await.unwrap(), Bytes::new());
    assert!(matches!(
        store.get(key, Some(5..100)).await,
        Err(BlobError::InvalidRange { .. })
    ));
    assert_eq!(
        store.head(key).await.unwrap().map(|m| m.size_bytes),
        Some(12)
    );
    // Overwrite is whole.
    store
        .put(key, Bytes::from_static(b"new"), "text/csv")
        .await
        .unwrap();
    assert_eq!(
        store.get(key, None).await.unwrap(),
        Bytes::from_static(b"new")
    );
    store.delete(key).await.unwrap();
    assert_eq!(store.head(key).await.unwrap(), None);
    assert!(matches!(
        store.get(key, None).await,
        Err(BlobError::NotFound(_))
    ));
    store
        .delete(key)
        .await
        .expect("deleting a missing object is fine");
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../b",
        "a//b",
        "a/./b",
        "a\\b",
        "a b",
        "a/",
    ] {
        assert!(
            matches!(
                store.put(bad, Bytes::new(), "x/y").await,
                Err(BlobError::InvalidKey { .. })
            ),
            "key {bad:?} must be refused"
        );
        assert!(
            matches!(
                store.get(bad, None).await,
                Err(BlobError::InvalidKey { .. })
            ),
            "{bad:?}"
        );
    }
    let ttl = Duration::from_secs(600);
    let g = store
        .presign_get("jobs/contract/r.csv", "r.csv", "text/csv", ttl)
        .await
        .unwrap();
    let p = store
        .presign_put("uploads/o/u/r.csv", 100, "text/csv", ttl)
        .await
        .unwrap();
    for u in [&g, &p] {
        let left = u.expires_at - Utc::now();
        assert!(
            left > chrono::Duration::seconds(590) && left <= chrono::Duration::seconds(600),
            "expiry as asked"
        );
        assert!(!u.url.is_empty());
    }
    assert_ne!(g.url, p.url);
}
