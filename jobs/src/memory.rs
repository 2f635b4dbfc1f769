//! In-memory adapters of the ports, faithful to their contracts: for tests of the service,
//! the steps and the API, and for anyone embedding longhaul without a disk.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::job::{ExecutionRef, Job, JobStatus, Progress, TransitionPatch};
use crate::ports::{
    BlobError, BlobMeta, BlobStore, CreateOutcome, JobPage, JobStore, JobWatch, ListQuery,
    SignedUrl, StoreError, TransitionOutcome,
};
use crate::watch::Watchers;

/// Jobs in a map; idempotency records beside them, written under the same lock.
#[derive(Default)]
pub struct MemoryJobStore {
    inner: Mutex<MemoryJobs>,
    watchers: Watchers,
}

#[derive(Default)]
struct MemoryJobs {
    jobs: BTreeMap<String, Job>,
    idempotency: HashMap<(String, String), String>,
}

impl MemoryJobStore {
    pub fn new() -> MemoryJobStore {
        MemoryJobStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryJobs>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Other("memory store lock poisoned".into()))
    }

    /// Changes a job that is not terminal yet and wakes its watchers; `Ok(false)` if it is
    /// terminal or unknown.
    fn update_active(
        &self,
        job_id: &str,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut Job),
    ) -> Result<bool, StoreError> {
        {
            let mut g = self.lock()?;
            match g.jobs.get_mut(job_id) {
                Some(job) if !job.status.is_terminal() => {
                    change(job);
                    job.updated_at = now;
                }
                _ => return Ok(false),
            }
        }
        self.watchers.notify(job_id);
        Ok(true)
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn create(&self, job: &Job) -> Result<CreateOutcome, StoreError> {
        {
            let mut g = self.lock()?;
            if let Some(key) = &job.idempotency_key {
                let k = (job.owner.clone(), key.clone());
                if let Some(existing) = g.idempotency.get(&k).and_then(|id| g.jobs.get(id)) {
                    return Ok(CreateOutcome::IdempotencyKeyExists(Box::new(
                        existing.clone(),
                    )));
                }
                g.idempotency.insert(k, job.job_id.clone());
            }
            if g.jobs.contains_key(&job.job_id) {
                return Err(StoreError::Other(format!("job {} exists", job.job_id)));
            }
            g.jobs.insert(job.job_id.clone(), job.clone());
        }
        self.watchers.notify(&job.job_id);
        Ok(CreateOutcome::Created)
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        Ok(self.lock()?.jobs.get(job_id).cloned())
    }

    async fn find_by_idempotency_key(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<Job>, StoreError> {
        let g = self.lock()?;
        Ok(g.idempotency
            .get(&(owner.to_string(), key.to_string()))
            .and_then(|id| g.jobs.get(id))
            .cloned())
    }

    async fn list(&self, owner: &str, query: &ListQuery) -> Result<JobPage, StoreError> {
        let g = self.lock()?;
        let limit = query.limit.max(1);
        let jobs: Vec<Job> = g
            .jobs
            .values()
            .rev()
            .filter(|j| j.owner == owner)
            .filter(|j| query.status.is_none_or(|s| j.status == s))
            .filter(|j| query.job_type.as_deref().is_none_or(|t| j.job_type == t))
            .filter(|j| {
                query
                    .after_job_id
                    .as_deref()
                    .is_none_or(|after| j.job_id.as_str() < after)
            })
            .take(limit + 1)
            .cloned()
            .collect();
        Ok(JobPage::from_overfetch(jobs, limit))
    }

    async fn count_active(&self, owner: &str) -> Result<usize, StoreError> {
        Ok(self
            .lock()?
            .jobs
            .values()
            .filter(|j| j.owner == owner && !j.status.is_terminal())
            .count())
    }

    async fn active_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let mut jobs: Vec<Job> = self
            .lock()?
            .jobs
            .values()
            .filter(|j| !j.status.is_terminal())
            .cloned()
            .collect();
        jobs.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn transition(
        &self,
        job_id: &str,
        to: JobStatus,
        patch: TransitionPatch,
        now: DateTime<Utc>,
    ) -> Result<TransitionOutcome, StoreError> {
        let outcome = {
            let mut g = self.lock()?;
            let Some(job) = g.jobs.get_mut(job_id) else {
                return Ok(TransitionOutcome::NotFound);
            };
            if crate::job::apply_transition(job, to, patch, now) {
                TransitionOutcome::Applied(Box::new(job.clone()))
            } else {
                return Ok(TransitionOutcome::Rejected(Box::new(job.clone())));
            }
        };
        self.watchers.notify(job_id);
        Ok(outcome)
    }

    async fn set_progress(
        &self,
        job_id: &str,
        progress: &Progress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update_active(job_id, now, |job| job.progress = progress.clone())
    }

    async fn set_execution(
        &self,
        job_id: &str,
        execution: &ExecutionRef,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update_active(job_id, now, |job| job.execution = execution.clone())
    }

    fn watch(&self, job_id: &str) -> JobWatch {
        self.watchers.subscribe(job_id)
    }
}

/// Objects in a map; signed URLs are `memory://` links with an expiry.
#[derive(Default)]
pub struct MemoryBlobStore {
    objects: Mutex<Objects>,
}

/// Key → (bytes, content type).
type Objects = HashMap<String, (Bytes, String)>;

impl MemoryBlobStore {
    pub fn new() -> MemoryBlobStore {
        MemoryBlobStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Objects>, BlobError> {
        self.objects
            .lock()
            .map_err(|_| BlobError::Other("memory blob store lock poisoned".into()))
    }
}

fn expiry(ttl: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(15))
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), BlobError> {
        crate::ports::validate_key(key)?;
        self.lock()?
            .insert(key.to_string(), (bytes, content_type.to_string()));
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BlobError> {
        crate::ports::validate_key(key)?;
        let g = self.lock()?;
        let (bytes, _) = g
            .get(key)
            .ok_or_else(|| BlobError::NotFound(key.to_string()))?;
        match range {
            None => Ok(bytes.clone()),
            Some(r) => {
                let size = bytes.len() as u64;
                if r.start > r.end || r.end > size {
                    return Err(BlobError::InvalidRange {
                        start: r.start,
                        end: r.end,
                        size,
                    });
                }
                Ok(bytes.slice(r.start as usize..r.end as usize))
            }
        }
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        crate::ports::validate_key(key)?;
        Ok(self.lock()?.get(key).map(|(b, ct)| BlobMeta {
            size_bytes: b.len() as u64,
            content_type: Some(ct.clone()),
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        crate::ports::validate_key(key)?;
        self.lock()?.remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<(String, BlobMeta)>, BlobError> {
        let g = self.lock()?;
        let mut found: Vec<(String, BlobMeta)> = g
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (b, ct))| {
                (
                    k.clone(),
                    BlobMeta {
                        size_bytes: b.len() as u64,
                        content_type: Some(ct.clone()),
                    },
                )
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(limit);
        Ok(found)
    }

    fn uri(&self, key: &str) -> String {
        format!("memory://{key}")
    }

    async fn presign_get(
        &self,
        key: &str,
        _file_name: &str,
        _content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl, BlobError> {
        crate::ports::validate_key(key)?;
        let expires_at = expiry(ttl);
        Ok(SignedUrl {
            url: format!("memory://{key}?exp={}", expires_at.timestamp()),
            expires_at,
        })
    }

    async fn presign_put(
        &self,
        key: &str,
        max_bytes: u64,
        _content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl, BlobError> {
        crate::ports::validate_key(key)?;
        let expires_at = expiry(ttl);
        Ok(SignedUrl {
            url: format!(
                "memory://{key}?method=PUT&max={max_bytes}&exp={}",
                expires_at.timestamp()
            ),
            expires_at,
        })
    }
}
