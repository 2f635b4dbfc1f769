//! Where executions are checkpointed: before each top-level state that acts on the world the
//! engine writes the state it is about to run and that state's input (and, for a Wait that
//! sleeps, when it wakes), with the history events since the last checkpoint. After a crash,
//! RUNNING executions resume from there. Two stores: in memory, and SQLite (WAL).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sqlite::GroupCommitWriter;
use crate::{EngineError, ExecutionStatus, HistoryEvent};

/// Where a RUNNING execution is: the next top-level state to run and its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub state: String,
    pub input: Value,
    /// Set while a Wait state sleeps: when it wakes (so a restart does not wait again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<DateTime<Utc>>,
    /// The top-level scope's variables (`Assign`), when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<serde_json::Map<String, Value>>,
    /// Set while a top-level `.waitForTaskToken` Task waits: its token, valid again after a
    /// restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackCursor>,
}

/// A callback Task's wait, as checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackCursor {
    /// The task token the resource was (or is being) called with.
    pub token: String,
    /// When the task first started: its TimeoutSeconds counts from then.
    pub started: DateTime<Utc>,
    /// The resource was called (and returned): a resumed task only waits.
    pub invoked: bool,
}

/// An execution as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    /// The definition it runs (after substitutions), so a resumed execution survives a
    /// change of the state machine.
    pub definition: String,
    pub status: ExecutionStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub start_date: DateTime<Utc>,
    pub stop_date: Option<DateTime<Utc>>,
    pub cursor: Option<Cursor>,
}

/// Checkpoint storage. Writes are async and durable when they return (SQLite commits many
/// executions' writes together); reads are short and synchronous.
#[async_trait::async_trait]
pub trait ExecutionStore: Send + Sync + 'static {
    /// Inserts a new execution; `Ok(false)` when one with this ARN exists.
    async fn insert(
        &self,
        rec: &ExecutionRecord,
        events: &[HistoryEvent],
    ) -> Result<bool, EngineError>;
    /// Records progress of a RUNNING execution.
    async fn checkpoint(
        &self,
        arn: &str,
        cursor: &Cursor,
        events: &[HistoryEvent],
    ) -> Result<(), EngineError>;
    /// Records the end of an execution (status, output/error, stop date). Ignored if it has
    /// already ended.
    async fn finish(
        &self,
        rec: &ExecutionRecord,
        events: &[HistoryEvent],
    ) -> Result<(), EngineError>;
    fn get(&self, arn: &str) -> Result<Option<ExecutionRecord>, EngineError>;
    fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, EngineError>;
    /// Every RUNNING execution.
    fn running(&self) -> Result<Vec<ExecutionRecord>, EngineError>;
}

/// Executions in memory (lost when the process ends).
#[derive(Default)]
pub struct MemoryExecutionStore {
    inner: Mutex<Executions>,
}

type Executions = HashMap<String, (ExecutionRecord, Vec<HistoryEvent>)>;

impl MemoryExecutionStore {
    pub fn new() -> MemoryExecutionStore {
        MemoryExecutionStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Executions>, EngineError> {
        self.inner
            .lock()
            .map_err(|_| EngineError::Store("lock poisoned".into()))
    }
}

#[async_trait::async_trait]
impl ExecutionStore for MemoryExecutionStore {
    async fn insert(
        &self,
        rec: &ExecutionRecord,
        events: &[HistoryEvent],
    ) -> Result<bool, EngineError> {
        let mut g = self.lock()?;
        if g.contains_key(&rec.execution_arn) {
            return Ok(false);
        }
        g.insert(rec.execution_arn.clone(), (rec.clone(), events.to_vec()));
        Ok(true)
    }

    async fn checkpoint(
        &self,
        arn: &str,
        cursor: &Cursor,
        events: &[HistoryEvent],
    ) -> Result<(), EngineError> {
        let mut g = self.lock()?;
        if let Some((rec, hist)) = g.get_mut(arn)
            && rec.status == ExecutionStatus::Running
        {
            rec.cursor = Some(cursor.clone());
            hist.extend_from_slice(events);
        }
        Ok(())
    }

    async fn finish(
        &self,
        rec: &ExecutionRecord,
        events: &[HistoryEvent],
    ) -> Result<(), EngineError> {
        let mut g = self.lock()?;
        if let Some((stored, hist)) = g.get_mut(&rec.execution_arn)
            && stored.status == ExecutionStatus::Running
        {
            *stored = rec.clone();
            stored.cursor = None;
            hist.extend_from_slice(events);
        }
        Ok(())
    }

    fn get(&self, arn: &str) -> Result<Option<ExecutionRecord>, EngineError> {
        Ok(self.lock()?.get(arn).map(|(r, _)| r.clone()))
    }

    fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, EngineError> {
        Ok(self
            .lock()?
            .get(arn)
            .map(|(_, h)| h.clone())
            .unwrap_or_default())
    }

    fn running(&self) -> Result<Vec<ExecutionRecord>, EngineError> {
        Ok(self
            .lock()?
            .values()
            .filter(|(r, _)| r.status == ExecutionStatus::Running)
            .map(|(r, _)| r.clone())
            .collect())
    }
}

/// Executions in a SQLite file (WAL; `synchronous=NORMAL`: a committed checkpoint survives
/// a process crash, and at worst the last transitions before a power loss are redone —
/// tasks are at least once anyway).
///
/// Writes go to one writer thread that commits every write waiting for it in one
/// transaction (group commit): a commit costs the same for one checkpoint as for hundreds,
/// and with thousands of executions running most checkpoints share one. A write returns
/// once its transaction is committed. Reads use their own connection (WAL readers do not
/// wait for the writer).
///
/// Layout: one `executions` row per execution, written when it starts and when it ends, and
/// one `checkpoints` row per write in between: the cursor (if any) and that write's history
/// events as one JSON array. A checkpoint is an append at the end of `checkpoints` (its
/// `seq` grows) plus a small index entry, never an update in place: with thousands of
/// executions running, updating each one's row, or inserting each event under its
/// execution's key, dirtied a different page per execution in every commit (about 125 KB
/// written per 1-step job under `bench http`). An execution's cursor is its latest
/// checkpoint's, else the one it started with.
pub struct SqliteExecutionStore {
    reader: Mutex<rusqlite::Connection>,
    writer: GroupCommitWriter<EngineError>,
    /// The legacy per-event `history` table exists in this file.
    legacy_history: bool,
}

enum WriteOp {
    Insert(Box<ExecutionRecord>),
    Checkpoint { arn: String, cursor: String },
    Finish(Box<ExecutionRecord>),
}

fn store_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Store(e.to_string())
}
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS definitions (hash TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    state_machine_arn TEXT NOT NULL,
    name TEXT NOT NULL,
    definition_hash TEXT NOT NULL REFERENCES definitions(hash),
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    start_date TEXT NOT NULL,
    stop_date TEXT,
    cursor TEXT
);
CREATE INDEX IF NOT EXISTS executions_running ON executions(status) WHERE status = 'RUNNING';
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    arn TEXT NOT NULL,
    cursor TEXT,
    events TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_by_arn ON checkpoints(arn, seq);
";

/// The history table of stores written before `checkpoints` (one row per event, keyed by
/// ARN and event id). Read, never written: histories stored there stay readable.
const LEGACY_HISTORY: &str = "history";

impl SqliteExecutionStore {
    pub fn open(path: &Path) -> Result<SqliteExecutionStore, EngineError> {
        let open = || -> Result<rusqlite::Connection, EngineError> {
            let conn = rusqlite::Connection::open(path)
                .map_err(|e| EngineError::Store(format!("opening {}: {e}", path.display())))?;
            crate::sqlite::configure(&conn).map_err(store_err)?;
            Ok(conn)
        };
        let writer = open()?;
        writer.execute_batch(SCHEMA).map_err(store_err)?;
        let legacy_history = writer
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                params![LEGACY_HISTORY],
                |r| r.get::<_, i64>(0),
            )
            .map_err(store_err)?
            > 0;
        let reader = open()?;
        let writer = GroupCommitWriter::start("engine-store-writer", writer, store_err, || {
            EngineError::Store("the store's writer has stopped".into())
        })
        .map_err(|e| EngineError::Store(format!("starting the writer thread: {e}")))?;
        Ok(SqliteExecutionStore {
            reader: Mutex::new(reader),
            writer,
            legacy_history,
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, EngineError> {
        self.reader
            .lock()
            .map_err(|_| EngineError::Store("lock poisoned".into()))
    }

    async fn write(&self, op: WriteOp, events: &[HistoryEvent]) -> Result<bool, EngineError> {
        // Serialised here, off the one writer thread.
        let events = serde_json::to_string(events).map_err(store_err)?;
        self.writer.write(move |tx| apply(tx, &op, &events)).await
    }
}

/// Runs one write. `events` is a JSON array (`[]` when there are none).
fn apply(tx: &rusqlite::Transaction<'_>, op: &WriteOp, events: &str) -> Result<bool, EngineError> {
    match op {
        WriteOp::Insert(rec) => {
            use sha2::Digest;
            let hash = hex::encode(sha2::Sha256::digest(rec.definition.as_bytes()));
            tx.prepare_cached("INSERT OR IGNORE INTO definitions (hash, text) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![hash, rec.definition]))
                .map_err(store_err)?;
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO executions (arn, state_machine_arn, name, definition_hash, status, input, output, error, cause, start_date, stop_date, cursor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        rec.execution_arn,
                        rec.state_machine_arn,
                        rec.name,
                        hash,
                        rec.status.as_str(),
                        rec.input.to_string(),
                        opt_json(&rec.output),
                        rec.error,
                        rec.cause,
                        rec.start_date.to_rfc3339(),
                        rec.stop_date.map(|d| d.to_rfc3339()),
                        rec.cursor.as_ref().map(|c| serde_json::to_string(c).unwrap_or_default()),
                    ])
                })
                .map_err(store_err)?;
            if n == 0 {
                return Ok(false);
            }
            append(tx, &rec.execution_arn, None, events)?;
            Ok(true)
        }
        WriteOp::Checkpoint { arn, cursor } => {
            // Read, not written: an ended execution takes no more checkpoints.
            let running = tx
                .prepare_cached("SELECT 1 FROM executions WHERE arn = ?1 AND status = 'RUNNING'")
                .and_then(|mut st| st.exists(params![arn]))
                .map_err(store_err)?;
            if running {
                append(tx, arn, Some(cursor), events)?;
            }
            Ok(true)
        }
        WriteOp::Finish(rec) => {
            let n = tx
                .prepare_cached(
                    "UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, stop_date = ?6, cursor = NULL
                     WHERE arn = ?1 AND status = 'RUNNING'",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        rec.execution_arn,
                        rec.status.as_str(),
                        opt_json(&rec.output),
                        rec.error,
                        rec.cause,
                        rec.stop_date.map(|d| d.to_rfc3339()),
                    ])
                })
                .map_err(store_err)?;
            if n > 0 {
                append(tx, &rec.execution_arn, None, events)?;
            }
            Ok(n > 0)
        }
    }
}

/// Appends a checkpoint row (a cursor, events, or both).
fn append(
    tx: &rusqlite::Transaction<'_>,
    arn: &str,
    cursor: Option<&str>,
    events: &str,
) -> Result<(), EngineError> {
    if cursor.is_none() && events == "[]" {
        return Ok(());
    }
    tx.prepare_cached("INSERT INTO checkpoints (arn, cursor, events) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![arn, cursor, events]))
        .map_err(store_err)?;
    Ok(())
}

/// The one text column `sql` selects for an execution, in its order.
fn texts(conn: &rusqlite::Connection, sql: &str, arn: &str) -> Result<Vec<String>, EngineError> {
    let mut st = conn.prepare_cached(sql).map_err(store_err)?;
    let rows = st
        .query_map(params![arn], |r| r.get::<_, String>(0))
        .map_err(store_err)?;
    rows.collect::<Result<_, _>>().map_err(store_err)
}

fn opt_json(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ExecutionRecord, String)> {
    let parse_json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
    let date = |s: Option<String>| {
        s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    let status: String = row.get(4)?;
    let cursor: Option<String> = row.get(11)?;
    Ok((
        ExecutionRecord {
            execution_arn: row.get(0)?,
            state_machine_arn: row.get(1)?,
            name: row.get(2)?,
            definition: row.get(3)?,
            status: ExecutionStatus::parse(&status).unwrap_or(ExecutionStatus::Failed),
            input: parse_json(row.get(5)?).unwrap_or(Value::Null),
            output: parse_json(row.get(6)?),
            error: row.get(7)?,
            cause: row.get(8)?,
            start_date: date(row.get(9)?).unwrap_or_else(Utc::now),
            stop_date: date(row.get(10)?),
            cursor: cursor.and_then(|c| serde_json::from_str(&c).ok()),
        },
        status,
    ))
}

/// An execution with its cursor: its latest checkpoint's, else the one it started with
/// (also where stores written before `checkpoints` kept it). An ended execution has none.
const SELECT: &str = "SELECT e.arn, e.state_machine_arn, e.name, d.text, e.status, e.input, e.output, e.error, e.cause, e.start_date, e.stop_date,
    CASE WHEN e.status = 'RUNNING' THEN coalesce((SELECT c.cursor FROM checkpoints c WHERE c.arn = e.arn AND c.cursor IS NOT NULL ORDER BY c.seq DESC LIMIT 1), e.cursor) END
    FROM executions e JOIN definitions d ON d.hash = e.definition_hash";

#[async_trait::async_trait]
impl ExecutionStore for SqliteExecutionStore {
    async fn insert(
        &self,
        rec: &ExecutionRecord,
        events: &[HistoryEvent],
    ) -> Result<bool, EngineError> {
        self.write(WriteOp::Insert(Box::new(rec.clone())), events)
            .await
    }

    async fn checkpoint(
        &self,
        arn: &str,
        cursor: &Cursor,
        events: &[HistoryEvent],
    ) -> Result<(), EngineError> {
        let cursor = serde_json::to_string(cursor).map_err(store_err)?;
        self.write(
            WriteOp::Checkpoint {
                arn: arn.to_string(),
                cursor,
            },
            events,
        )
        .await
        .map(|_| ())
    }

    async fn finish(
        &self,
        rec: &ExecutionRecord,
        events: &[HistoryEvent],
    ) -> Result<(), EngineError> {
        self.write(WriteOp::Finish(Box::new(rec.clone())), events)
            .await
            .map(|_| ())
    }

    fn get(&self, arn: &str) -> Result<Option<ExecutionRecord>, EngineError> {
        let conn = self.lock()?;
        conn.query_row(
            &format!("{SELECT} WHERE e.arn = ?1"),
            params![arn],
            row_to_record,
        )
        .optional()
        .map(|o| o.map(|(r, _)| r))
        .map_err(store_err)
    }

    fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, EngineError> {
        let conn = self.lock()?;
        let mut out: Vec<HistoryEvent> = Vec::new();
        if self.legacy_history {
            for text in texts(
                &conn,
                "SELECT event FROM history WHERE arn = ?1 ORDER BY id",
                arn,
            )? {
                out.push(serde_json::from_str(&text).map_err(store_err)?);
            }
        }
        let batches = texts(
            &conn,
            "SELECT events FROM checkpoints WHERE arn = ?1 ORDER BY seq",
            arn,
        )?;
        for text in batches {
            let batch: Vec<HistoryEvent> = serde_json::from_str(&text).map_err(store_err)?;
            // Ids only grow: an event written twice (by a retried write) is kept once.
            let last = out.last().map_or(0, |e| e.id);
            out.extend(batch.into_iter().filter(|e| e.id > last));
        }
        Ok(out)
    }

    fn running(&self) -> Result<Vec<ExecutionRecord>, EngineError> {
        let conn = self.lock()?;
        let mut st = conn
            .prepare(&format!("{SELECT} WHERE e.status = 'RUNNING'"))
            .map_err(store_err)?;
        let rows = st.query_map([], row_to_record).map_err(store_err)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(store_err)?.0);
        }
        Ok(out)
    }
}
