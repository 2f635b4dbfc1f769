//! The `JobStore` port in one DynamoDB table.
//!
//! Item layout (partition key `jobId`):
//! - a job: `jobId`, `owner` and `createdAt` (the `byOwner` index), `activeOwner` while the
//!   job is QUEUED or RUNNING (the sparse `activeByOwner` index, for quotas), `status` and
//!   `type` (conditions and list filters), `version` (optimistic concurrency), `expiresAt` (TTL,
//!   epoch seconds), `doc` (the whole record as JSON), and `resultObject` when the result was
//!   too big for the item and lives in the bucket instead;
//! - an idempotency record: `jobId` = `idem#<owner>#<key>` (owner with `%` and `#` escaped),
//!   `targetJobId`, `expiresAt`. It has no `owner` attribute, so it stays out of the index.
//!
//! Every change is read → change in memory → write conditioned on the version read *and* on
//! the status being a legal predecessor, retried when only the version moved (a progress
//! write in between). So a status never moves backwards and no write is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, Select, TransactWriteItem};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use longhaul_jobs::job::apply_transition;
use longhaul_jobs::job::{ExecutionRef, Job, JobStatus, Progress, TransitionPatch};
use longhaul_jobs::ports::{
    BlobStore, CreateOutcome, JobPage, JobStore, JobWatch, ListQuery, StoreError, TransitionOutcome,
};

use crate::{describe, is_transient};

type Item = HashMap<String, AttributeValue>;

/// Results bigger than this go to the bucket; the item keeps a pointer (items are limited
/// to 400 KB, and the input shares the item).
const RESULT_INLINE_MAX: usize = 32 * 1024;
/// How often a long poll re-reads the item: DynamoDB cannot push.
const POLL_EVERY: Duration = Duration::from_millis(1000);
/// Conditional-write retries when only the version moved.
const MAX_RETRIES: usize = 20;
/// The statuses that count as active (quotas) and accept progress.
const ACTIVE: [JobStatus; 2] = [JobStatus::Queued, JobStatus::Running];

/// Jobs in DynamoDB.
pub struct DynamoJobStore {
    client: Client,
    table: String,
    /// Where oversized results go.
    overflow: Arc<dyn BlobStore>,
}

impl DynamoJobStore {
    pub fn new(client: Client, table: impl Into<String>, overflow: Arc<dyn BlobStore>) -> Self {
        DynamoJobStore {
            client,
            table: table.into(),
            overflow,
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

/// Maps an SDK failure: throttling and network trouble are `Unavailable` (503), the rest
/// `Other` (500).
fn sdk<E, R>(what: &str, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let m = format!("{what}: {}", describe(&e));
    if is_transient(&e) {
        StoreError::Unavailable(m)
    } else {
        StoreError::Other(m)
    }
}

/// The `byOwner` sort key: fixed-width UTC so string order is time order.
fn created_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn idempotency_id(owner: &str, key: &str) -> String {
    let esc = owner.replace('%', "%25").replace('#', "%23");
    format!("idem#{esc}#{key}")
}

fn attr_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn attr_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// A job item read back: the record (result still possibly in the bucket) and its version.
struct Stored {
    job: Job,
    version: i64,
    result_object: Option<String>,
}

impl DynamoJobStore {
    fn item_for(
        &self,
        job: &Job,
        version: i64,
        result_object: Option<&str>,
    ) -> Result<Item, StoreError> {
        let mut doc_job = job.clone();
        if result_object.is_some() {
            doc_job.result = None;
        }
        let doc = serde_json::to_string(&doc_job).map_err(other)?;
        if doc.len() > 350 * 1024 {
            return Err(StoreError::Other(format!(
                "job {} is {} bytes as JSON, too big for a DynamoDB item",
                job.job_id,
                doc.len()
            )));
        }
        let mut item: Item = HashMap::new();
        item.insert("jobId".into(), s(&job.job_id));
        item.insert("owner".into(), s(&job.owner));
        item.insert("createdAt".into(), s(created_key(job.created_at)));
        item.insert("status".into(), s(job.status.as_str()));
        item.insert("type".into(), s(&job.job_type));
        item.insert("version".into(), n(version));
        item.insert("doc".into(), s(doc));
        if let Some(t) = job.expires_at {
            item.insert("expiresAt".into(), n(t.timestamp()));
        }
        if !job.status.is_terminal() {
            // Only active jobs carry it: the sparse `activeByOwner` index holds just them,
            // so the quota check reads a handful of keys, not the owner's whole history.
            item.insert("activeOwner".into(), s(&job.owner));
        }
        if let Some(o) = result_object {
            item.insert("resultObject".into(), s(o));
        }
        Ok(item)
    }

    async fn decode(&self, item: &Item) -> Result<Stored, StoreError> {
        let doc = attr_s(item, "doc").ok_or_else(|| other("job item without doc"))?;
        let mut job: Job = serde_json::from_str(doc).map_err(other)?;
        let version = attr_n(item, "version").unwrap_or(0);
        let result_object = attr_s(item, "resultObject").map(str::to_string);
        if let Some(key) = &result_object {
            let bytes = self
                .overflow
                .get(key, None)
                .await
                .map_err(|e| StoreError::Unavailable(format!("reading result {key}: {e}")))?;
            job.result = Some(serde_json::from_slice(&bytes).map_err(other)?);
        }
        Ok(Stored {
            job,
            version,
            result_object,
        })
    }

    async fn read(&self, job_id: &str) -> Result<Option<Stored>, StoreError> {
        if job_id.starts_with("idem#") {
            return Ok(None);
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("jobId", s(job_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk("GetItem", e))?;
        match out.item() {
            Some(item) => Ok(Some(self.decode(item).await?)),
            None => Ok(None),
        }
    }

    /// Writes `job` as the next version of `prev`, if the item is still at `prev.version`
    /// and in one of `allowed` statuses. `Ok(false)`: the condition failed; re-read.
    async fn write_next(
        &self,
        prev: &Stored,
        job: &Job,
        allowed: &[JobStatus],
    ) -> Result<bool, StoreError> {
        let next_version = prev.version + 1;
        // A big result goes to the bucket first, under a key of its own version, so a
        // reader never follows a pointer to a missing or newer object.
        let mut result_object = prev.result_object.clone();
        let result_changed = job.result != prev.job.result;
        if result_changed {
            result_object = None;
            if let Some(r) = &job.result {
                let bytes = serde_json::to_vec(r).map_err(other)?;
                if bytes.len() > RESULT_INLINE_MAX {
                    let key = format!("jobs/{}/result-v{next_version}.json", job.job_id);
                    self.overflow
                        .put(&key, Bytes::from(bytes), "application/json")
                        .await
                        .map_err(|e| StoreError::Unavailable(format!("writing result: {e}")))?;
                    result_object = Some(key);
                }
            }
        }
        let item = self.item_for(job, next_version, result_object.as_deref())?;
        let mut values: Item = HashMap::new();
        values.insert(":v".into(), n(prev.version));
        let mut placeholders = Vec::new();
        for (i, st) in allowed.iter().enumerate() {
            let p = format!(":s{i}");
            values.insert(p.clone(), s(st.as_str()));
            placeholders.push(p);
        }
        let condition = format!("#version = :v AND #status IN ({})", placeholders.join(", "));
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) => {
                let conditional = e
                    .as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception());
                if let Some(key) = result_object.filter(|k| Some(k) != prev.result_object.as_ref())
                {
                    // Our spilled result was never referenced: best-effort cleanup.
                    let _ = self.overflow.delete(&key).await;
                }
                if conditional {
                    Ok(false)
                } else {
                    Err(sdk("PutItem", e))
                }
            }
        }
    }

    /// Read-modify-write: `change` edits the job and says which statuses the write requires
    /// (`None`: nothing to write; the job as it is is returned as not applied).
    /// Changes a job that has not ended (set_progress, set_execution); false when it has
    /// ended or does not exist.
    async fn update_active(
        &self,
        job_id: &str,
        now: DateTime<Utc>,
        change: impl Fn(&mut Job) + Send + Sync,
    ) -> Result<bool, StoreError> {
        let res = self
            .update(job_id, |job| {
                if job.status.is_terminal() {
                    return None;
                }
                change(job);
                job.updated_at = now;
                Some(ACTIVE.to_vec())
            })
            .await?;
        Ok(matches!(res, Some((_, true))))
    }

    async fn update<F>(
        &self,
        job_id: &str,
        mut change: F,
    ) -> Result<Option<(Job, bool)>, StoreError>
    where
        F: FnMut(&mut Job) -> Option<Vec<JobStatus>> + Send,
    {
        for _ in 0..MAX_RETRIES {
            let Some(prev) = self.read(job_id).await? else {
                return Ok(None);
            };
            let mut job = prev.job.clone();
            let Some(allowed) = change(&mut job) else {
                return Ok(Some((prev.job, false)));
            };
            if self.write_next(&prev, &job, &allowed).await? {
                return Ok(Some((job, true)));
            }
        }
        Err(StoreError::Unavailable(format!(
            "job {job_id} changed {MAX_RETRIES} times while being written; try again"
        )))
    }
}

#[async_trait]
impl JobStore for DynamoJobStore {
    async fn create(&self, job: &Job) -> Result<CreateOutcome, StoreError> {
        let job_item = self.item_for(job, 0, None)?;
        if job.result.as_ref().is_some_and(|r| {
            serde_json::to_vec(r).map(|b| b.len()).unwrap_or(0) > RESULT_INLINE_MAX
        }) {
            return Err(other("a new job carries no result"));
        }
        let put_job = Put::builder()
            .table_name(&self.table)
            .set_item(Some(job_item))
            .condition_expression("attribute_not_exists(jobId)")
            .build()
            .map_err(other)?;
        let mut items = vec![TransactWriteItem::builder().put(put_job).build()];
        let idem_id = job
            .idempotency_key
            .as_ref()
            .map(|k| idempotency_id(&job.owner, k));
        if let Some(id) = &idem_id {
            let mut idem: Item = HashMap::new();
            idem.insert("jobId".into(), s(id));
            idem.insert("targetJobId".into(), s(&job.job_id));
            if let Some(t) = job.expires_at {
                idem.insert("expiresAt".into(), n(t.timestamp()));
            }
            let put_idem = Put::builder()
                .table_name(&self.table)
                .set_item(Some(idem))
                .condition_expression("attribute_not_exists(jobId)")
                .build()
                .map_err(other)?;
            items.push(TransactWriteItem::builder().put(put_idem).build());
        }
        let mut attempt = 0;
        let e = loop {
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let Err(e) = res else {
                return Ok(CreateOutcome::Created);
            };
            // Concurrent starts with one key conflict inside DynamoDB's transaction
            // protocol; after a short pause one of them has won and the others see it.
            let conflict = match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(tc)) => tc
                    .cancellation_reasons()
                    .iter()
                    .any(|r| r.code() == Some("TransactionConflict")),
                Some(se) => se.is_transaction_in_progress_exception(),
                None => false,
            };
            attempt += 1;
            if !conflict || attempt >= 8 {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
        };
        let reasons: Vec<Option<String>> = match e.as_service_error() {
            Some(se) if se.is_transaction_canceled_exception() => match se {
                TransactWriteItemsError::TransactionCanceledException(tc) => tc
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            },
            _ => return Err(sdk("TransactWriteItems", e)),
        };
        let failed = |i: usize| {
            reasons
                .get(i)
                .and_then(|c| c.as_deref())
                .is_some_and(|c| c == "ConditionalCheckFailed")
        };
        if failed(1)
            && let Some(key) = &job.idempotency_key
        {
            // The key is taken: that job is the answer (it may be a moment behind its record
            // when a concurrent start is mid-transaction; transactions make both visible
            // together, so a read after the cancellation sees it).
            return match self.find_by_idempotency_key(&job.owner, key).await? {
                Some(existing) => Ok(CreateOutcome::IdempotencyKeyExists(Box::new(existing))),
                None => Err(StoreError::Unavailable(
                    "idempotency record changed during the write; try again".into(),
                )),
            };
        }
        if failed(0) {
            return Err(StoreError::Other(format!("job {} exists", job.job_id)));
        }
        Err(sdk("TransactWriteItems", e))
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        Ok(self.read(job_id).await?.map(|s| s.job))
    }

    async fn find_by_idempotency_key(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<Job>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("jobId", s(idempotency_id(owner, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk("GetItem", e))?;
        let Some(target) = out.item().and_then(|i| attr_s(i, "targetJobId")) else {
            return Ok(None);
        };
        Ok(self.get(target).await?.filter(|j| j.owner == owner))
    }

    async fn list(&self, owner: &str, query: &ListQuery) -> Result<JobPage, StoreError> {
        let limit = query.limit.clamp(1, 100);
        let mut start: Option<Item> = None;
        if let Some(after) = &query.after_job_id {
            // The cursor is the last job of the previous page; its index key resumes the scan.
            match self.read(after).await? {
                Some(prev) if prev.job.owner == owner => {
                    let mut k: Item = HashMap::new();
                    k.insert("jobId".into(), s(&prev.job.job_id));
                    k.insert("owner".into(), s(owner));
                    k.insert("createdAt".into(), s(created_key(prev.job.created_at)));
                    start = Some(k);
                }
                _ => return Ok(JobPage::default()),
            }
        }
        let mut names: HashMap<String, String> = HashMap::new();
        names.insert("#owner".into(), "owner".into());
        let mut values: Item = HashMap::new();
        values.insert(":owner".into(), s(owner));
        let mut filters = Vec::new();
        if let Some(st) = query.status {
            names.insert("#status".into(), "status".into());
            values.insert(":status".into(), s(st.as_str()));
            filters.push("#status = :status");
        }
        if let Some(t) = &query.job_type {
            names.insert("#type".into(), "type".into());
            values.insert(":type".into(), s(t));
            filters.push("#type = :type");
        }
        let mut jobs = Vec::new();
        loop {
            // Filters apply after the read, so a page may need several queries; read one
            // more than asked to know whether another page exists.
            let want = limit + 1 - jobs.len();
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("byOwner")
                .key_condition_expression("#owner = :owner")
                .set_filter_expression(if filters.is_empty() {
                    None
                } else {
                    Some(filters.join(" AND "))
                })
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(want.max(10) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk("Query", e))?;
            for item in out.items() {
                if jobs.len() > limit {
                    break;
                }
                jobs.push(self.decode(item).await?.job);
            }
            start = out.last_evaluated_key().cloned();
            if jobs.len() > limit || start.is_none() {
                break;
            }
        }
        Ok(JobPage::from_overfetch(jobs, limit))
    }

    async fn count_active(&self, owner: &str) -> Result<usize, StoreError> {
        let mut total = 0usize;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("activeByOwner")
                .key_condition_expression("#owner = :owner")
                .expression_attribute_names("#owner", "activeOwner")
                .expression_attribute_values(":owner", s(owner))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk("Query", e))?;
            total += out.count().max(0) as usize;
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    async fn active_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        // The sparse index holds only QUEUED and RUNNING jobs: a scan of it is as long as
        // the active jobs are many.
        let mut ids: Vec<String> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .index_name("activeByOwner")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk("Scan", e))?;
            ids.extend(
                out.items()
                    .iter()
                    .filter_map(|i| attr_s(i, "jobId").map(str::to_string)),
            );
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        ids.sort();
        ids.truncate(limit);
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(job) = self.get(&id).await?
                && !job.status.is_terminal()
            {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    async fn transition(
        &self,
        job_id: &str,
        to: JobStatus,
        patch: TransitionPatch,
        now: DateTime<Utc>,
    ) -> Result<TransitionOutcome, StoreError> {
        let res = self
            .update(job_id, |job| {
                if apply_transition(job, to, patch.clone(), now) {
                    Some(to.legal_predecessors().to_vec())
                } else {
                    None
                }
            })
            .await?;
        Ok(match res {
            None => TransitionOutcome::NotFound,
            Some((job, true)) => TransitionOutcome::Applied(Box::new(job)),
            Some((job, false)) => TransitionOutcome::Rejected(Box::new(job)),
        })
    }

    async fn set_progress(
        &self,
        job_id: &str,
        progress: &Progress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update_active(job_id, now, |job| job.progress = progress.clone())
            .await
    }

    async fn set_execution(
        &self,
        job_id: &str,
        execution: &ExecutionRef,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update_active(job_id, now, |job| job.execution = execution.clone())
            .await
    }

    fn watch(&self, _job_id: &str) -> JobWatch {
        JobWatch::Poll(POLL_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_ids_cannot_collide_across_owners() {
        assert_ne!(idempotency_id("a#b", "c"), idempotency_id("a", "b#c"));
        assert_ne!(idempotency_id("a%23", "c"), idempotency_id("a#", "c"));
    }

    #[test]
    fn created_keys_sort_as_times() {
        let a = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000009Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.1Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(created_key(a) < created_key(b));
        assert_eq!(created_key(a), "2026-01-02T03:04:05.000009Z");
    }
}
