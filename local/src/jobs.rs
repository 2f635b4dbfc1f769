//! Jobs in SQLite. Writes go to one writer thread that commits every write waiting for it in
//! one transaction (group commit, as the engine's store: under load a commit serves many
//! jobs' writes); reads use their own connections. WAL so readers never block;
//! `synchronous=NORMAL`, which in WAL mode keeps every committed transaction across a process
//! crash (a power loss may drop the last few, and the workflow's at-least-once tasks redo
//! them).

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use longhaul_engine::sqlite::GroupCommitWriter;
use longhaul_jobs::job::apply_transition;
use longhaul_jobs::watch::Watchers;
use longhaul_jobs::{
    CreateOutcome, ExecutionRef, InputRequestChange, Job, JobPage, JobStatus, JobStore, JobWatch,
    ListQuery, Progress, StoreError, TransitionOutcome, TransitionPatch,
};
use rusqlite::{OptionalExtension, params};

mod cache;
use cache::JobCache;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX jobs_by_owner ON jobs(owner, job_id DESC);
    CREATE INDEX jobs_active ON jobs(owner, status) WHERE status IN ('QUEUED', 'RUNNING');
    CREATE TABLE idempotency (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        job_id TEXT NOT NULL,
        PRIMARY KEY (owner, key)
    ) WITHOUT ROWID;
"];

/// Read connections beside the writer.
const READERS: usize = 2;

pub struct SqliteJobStore {
    /// The writer thread, which owns the write connection; dropped, it closes the database.
    writer: GroupCommitWriter<StoreError>,
    /// Reads (getJob, the hot path) go to these, so they do not queue behind writes; WAL lets
    /// them read concurrently and see every committed write.
    readers: Vec<Mutex<rusqlite::Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    watchers: Watchers,
    /// Jobs recently read, parsed (getJob's hot path); every write drops its job's entry.
    cache: JobCache,
}

/// Disk full, read-only, locked, I/O trouble: the caller should try again later (503).
fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && matches!(
            f.code,
            DiskFull
                | ReadOnly
                | DatabaseBusy
                | DatabaseLocked
                | CannotOpen
                | SystemIoFailure
                | PermissionDenied
        )
    {
        return StoreError::Unavailable(e.to_string());
    }
    StoreError::Other(e.to_string())
}

fn to_json(job: &Job) -> Result<String, StoreError> {
    serde_json::to_string(job).map_err(|e| StoreError::Other(e.to_string()))
}

fn from_json(text: &str) -> Result<Job, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Other(format!("corrupt job record: {e}")))
}

impl SqliteJobStore {
    /// Opens (creating) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteJobStore, StoreError> {
        let conn = rusqlite::Connection::open(path).map_err(map_err)?;
        let mut store = SqliteJobStore::from_connection(conn)?;
        for _ in 0..READERS {
            let r = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(map_err)?;
            r.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(map_err)?;
            store.readers.push(Mutex::new(r));
        }
        Ok(store)
    }

    /// A read connection (round robin).
    fn reader(&self) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, StoreError> {
        if self.readers.is_empty() {
            return Err(StoreError::Other(
                "the job store has no read connection".into(),
            ));
        }
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        self.readers[i]
            .lock()
            .map_err(|_| StoreError::Other("job store lock poisoned".into()))
    }

    /// Prepares the write connection and starts the writer thread on it.
    fn from_connection(mut conn: rusqlite::Connection) -> Result<SqliteJobStore, StoreError> {
        longhaul_engine::sqlite::configure(&conn).map_err(map_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(map_err)?;
        let done = usize::try_from(version).unwrap_or(0);
        if done > MIGRATIONS.len() {
            return Err(StoreError::Other(format!(
                "the database is at schema version {done}, newer than this longhaul knows ({}); upgrade longhaul",
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
            let tx = conn.transaction().map_err(map_err)?;
            tx.execute_batch(m).map_err(map_err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(map_err)?;
            tx.commit().map_err(map_err)?;
        }
        let writer = GroupCommitWriter::start("job-store-writer", conn, map_err, || {
            StoreError::Unavailable("the job store's writer has stopped".into())
        })
        .map_err(|e| StoreError::Other(format!("starting the job store's writer: {e}")))?;
        Ok(SqliteJobStore {
            writer,
            readers: Vec::new(),
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            watchers: Watchers::new(),
            cache: JobCache::new(),
        })
    }

    fn read(conn: &rusqlite::Connection, job_id: &str) -> Result<Option<Job>, StoreError> {
        Self::read_record(conn, job_id)?
            .map(|t| from_json(&t))
            .transpose()
    }

    /// The stored JSON of a job.
    fn read_record(
        conn: &rusqlite::Connection,
        job_id: &str,
    ) -> Result<Option<String>, StoreError> {
        conn.prepare_cached("SELECT record FROM jobs WHERE job_id = ?1")
            .map_err(map_err)?
            .query_row(params![job_id], |r| r.get(0))
            .optional()
            .map_err(map_err)
    }

    /// After a write to `job_id` has committed (or failed): its cached copy goes, then long
    /// polls on it wake (and read the new record).
    fn written(&self, job_id: &str, changed: bool) {
        self.cache.invalidate(job_id);
        if changed {
            self.watchers.notify(job_id);
        }
    }

    /// Overwrites a job's stored record (and its status column).
    fn store_record(conn: &rusqlite::Connection, job: &Job) -> Result<(), StoreError> {
        conn.prepare_cached("UPDATE jobs SET status = ?2, record = ?3 WHERE job_id = ?1")
            .map_err(map_err)?
            .execute(params![job.job_id, job.status.as_str(), to_json(job)?])
            .map_err(map_err)?;
        Ok(())
    }

    /// Changes a job that has not ended (progress, execution ref); `false` if it has ended
    /// or does not exist.
    async fn update_active<F>(
        &self,
        job_id: &str,
        now: DateTime<Utc>,
        mut change: F,
    ) -> Result<bool, StoreError>
    where
        F: FnMut(&mut Job) -> bool + Send + 'static,
    {
        let id = job_id.to_string();
        let changed = self
            .writer
            .write(move |tx| match Self::read(tx, &id)? {
                Some(mut job) if !job.status.is_terminal() => {
                    if !change(&mut job) {
                        return Ok(false);
                    }
                    job.updated_at = now;
                    Self::store_record(tx, &job)?;
                    Ok(true)
                }
                _ => Ok(false),
            })
            .await;
        self.written(job_id, matches!(changed, Ok(true)));
        changed
    }

    /// Jobs accepted but whose execution never began (the process stopped between the two).
    pub async fn list_queued_without_execution(&self) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .list_by_status(JobStatus::Queued)?
            .into_iter()
            .filter(|j| j.execution.arn.is_none())
            .collect())
    }

    /// Every RUNNING job.
    pub async fn list_running(&self) -> Result<Vec<Job>, StoreError> {
        self.list_by_status(JobStatus::Running)
    }

    fn list_by_status(&self, status: JobStatus) -> Result<Vec<Job>, StoreError> {
        let conn = self.reader()?;
        let mut st = conn
            .prepare("SELECT record FROM jobs WHERE status = ?1")
            .map_err(map_err)?;
        let rows = st
            .query_map(params![status.as_str()], |r| r.get::<_, String>(0))
            .map_err(map_err)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(from_json(&r.map_err(map_err)?)?);
        }
        Ok(out)
    }

    /// Jobs with a change subscription now (for tests: long polls leave nothing behind).
    pub fn watched_jobs(&self) -> usize {
        self.watchers.len()
    }
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn create(&self, job: &Job) -> Result<CreateOutcome, StoreError> {
        let record = to_json(job)?;
        let (job_id, owner, job_type, key) = (
            job.job_id.clone(),
            job.owner.clone(),
            job.job_type.clone(),
            job.idempotency_key.clone(),
        );
        let (status, created_at) = (job.status.as_str(), job.created_at.to_rfc3339());
        let outcome = self
            .writer.write(move |tx| {
                if let Some(key) = &key {
                    let existing: Option<String> = tx
                        .prepare_cached(
                            "SELECT job_id FROM idempotency WHERE owner = ?1 AND key = ?2",
                        )
                        .and_then(|mut st| {
                            st.query_row(params![owner, key], |r| r.get(0)).optional()
                        })
                        .map_err(map_err)?;
                    if let Some(id) = existing {
                        return match Self::read(tx, &id)? {
                            Some(j) => Ok(CreateOutcome::IdempotencyKeyExists(Box::new(j))),
                            None => Err(StoreError::Other(format!(
                                "idempotency record points to a missing job {id}"
                            ))),
                        };
                    }
                    tx.prepare_cached(
                        "INSERT INTO idempotency (owner, key, job_id) VALUES (?1, ?2, ?3)",
                    )
                    .and_then(|mut st| st.execute(params![owner, key, job_id]))
                    .map_err(map_err)?;
                }
                tx.prepare_cached(
                    "INSERT INTO jobs (job_id, owner, type, status, created_at, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut st| {
                    st.execute(params![job_id, owner, job_type, status, created_at, record])
                })
                .map_err(map_err)?;
                Ok(CreateOutcome::Created)
            })
            .await;
        self.written(&job.job_id, matches!(outcome, Ok(CreateOutcome::Created)));
        outcome
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let ticket = match self.cache.get(job_id) {
            Ok(job) => return Ok(Some(job)),
            Err(ticket) => ticket,
        };
        let record = Self::read_record(&*self.reader()?, job_id)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let job = from_json(&record)?;
        self.cache.put(ticket, &job, record.len());
        Ok(Some(job))
    }

    async fn find_by_idempotency_key(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<Job>, StoreError> {
        let conn = self.reader()?;
        let id: Option<String> = conn
            .prepare_cached("SELECT job_id FROM idempotency WHERE owner = ?1 AND key = ?2")
            .and_then(|mut st| st.query_row(params![owner, key], |r| r.get(0)).optional())
            .map_err(map_err)?;
        match id {
            Some(id) => Self::read(&conn, &id),
            None => Ok(None),
        }
    }

    async fn list(&self, owner: &str, query: &ListQuery) -> Result<JobPage, StoreError> {
        let limit = query.limit.clamp(1, 1000);
        let conn = self.reader()?;
        let mut sql = String::from("SELECT record FROM jobs WHERE owner = ?1");
        let mut args: Vec<String> = vec![owner.to_string()];
        if let Some(s) = query.status {
            args.push(s.as_str().to_string());
            sql.push_str(&format!(" AND status = ?{}", args.len()));
        }
        if let Some(t) = &query.job_type {
            args.push(t.clone());
            sql.push_str(&format!(" AND type = ?{}", args.len()));
        }
        if let Some(after) = &query.after_job_id {
            args.push(after.clone());
            sql.push_str(&format!(" AND job_id < ?{}", args.len()));
        }
        sql.push_str(&format!(" ORDER BY job_id DESC LIMIT {}", limit + 1));
        let mut st = conn.prepare(&sql).map_err(map_err)?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(0)
            })
            .map_err(map_err)?;
        let mut jobs = Vec::new();
        for r in rows {
            jobs.push(from_json(&r.map_err(map_err)?)?);
        }
        Ok(JobPage::from_overfetch(jobs, limit))
    }

    async fn count_active(&self, owner: &str) -> Result<usize, StoreError> {
        // A read connection: the limit is a soft one, and a count must not wait for writes.
        let conn = self.reader()?;
        let n: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM jobs WHERE owner = ?1 AND status IN ('QUEUED', 'RUNNING')",
            )
            .and_then(|mut st| st.query_row(params![owner], |r| r.get(0)))
            .map_err(map_err)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn active_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let conn = self.reader()?;
        let mut st = conn
            .prepare_cached(
                "SELECT record FROM jobs WHERE status IN ('QUEUED', 'RUNNING') ORDER BY job_id LIMIT ?1",
            )
            .map_err(map_err)?;
        let rows = st
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                r.get::<_, String>(0)
            })
            .map_err(map_err)?;
        let mut jobs = Vec::new();
        for row in rows {
            let text = row.map_err(map_err)?;
            jobs.push(serde_json::from_str(&text).map_err(|e| StoreError::Other(e.to_string()))?);
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
        let id = job_id.to_string();
        // The condition is checked again by the UPDATE itself, so the write is conditional
        // even if another connection (another process) raced us.
        let preds: Vec<&str> = to.legal_predecessors().iter().map(|s| s.as_str()).collect();
        let placeholders = (0..preds.len())
            .map(|i| format!("?{}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE jobs SET status = ?2, record = ?3 WHERE job_id = ?1 AND status IN ({placeholders})"
        );
        let outcome = self
            .writer
            .write(move |tx| {
                let Some(mut job) = Self::read(tx, &id)? else {
                    return Ok(TransitionOutcome::NotFound);
                };
                if !apply_transition(&mut job, to, patch.clone(), now) {
                    return Ok(TransitionOutcome::Rejected(Box::new(job)));
                }
                let mut args: Vec<String> =
                    vec![id.clone(), to.as_str().to_string(), to_json(&job)?];
                args.extend(preds.iter().map(|s| s.to_string()));
                let n = tx
                    .prepare_cached(&sql)
                    .and_then(|mut st| st.execute(rusqlite::params_from_iter(args.iter())))
                    .map_err(map_err)?;
                if n == 0 {
                    return Ok(match Self::read(tx, &id)? {
                        Some(j) => TransitionOutcome::Rejected(Box::new(j)),
                        None => TransitionOutcome::NotFound,
                    });
                }
                Ok(TransitionOutcome::Applied(Box::new(job)))
            })
            .await;
        self.written(job_id, matches!(outcome, Ok(TransitionOutcome::Applied(_))));
        outcome
    }

    async fn set_progress(
        &self,
        job_id: &str,
        progress: &Progress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let progress = progress.clone();
        self.update_active(job_id, now, move |job| {
            job.progress = progress.clone();
            true
        })
        .await
    }

    async fn set_execution(
        &self,
        job_id: &str,
        execution: &ExecutionRef,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let execution = execution.clone();
        self.update_active(job_id, now, move |job| {
            job.execution = execution.clone();
            true
        })
        .await
    }

    async fn set_input_request(
        &self,
        job_id: &str,
        change: &InputRequestChange,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let change = change.clone();
        self.update_active(job_id, now, move |job| {
            longhaul_jobs::input::apply_input_change(job, &change)
        })
        .await
    }

    fn watch(&self, job_id: &str) -> JobWatch {
        self.watchers.subscribe(job_id)
    }
}
