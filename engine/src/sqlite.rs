//! SQLite plumbing shared by the engine's store and longhaul-local's job store: the
//! connection settings, and a writer thread that commits every write waiting for it in one
//! transaction (group commit).
//!
//! Why group commit: a commit's cost (the WAL frames of every dirty page, locks, the page
//! cache's end-of-transaction work) is about the same for one write as for hundreds, and with
//! many jobs running most writes find others waiting. A write returns only once committed.

use std::sync::mpsc;
use std::thread::JoinHandle;

/// Most writes in one transaction: bounds a commit's latency under a flood of writes.
const MAX_GROUP: usize = 512;

/// Applies the settings both databases use: WAL (readers never wait for the writer),
/// `synchronous=NORMAL` (in WAL mode a committed transaction survives a process crash; a
/// power loss may drop the last few, and tasks are at least once anyway), a 5 s busy wait.
pub fn configure(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Hot pages (rows being updated, the tables' right edges) stay in memory, and the WAL is
    // copied back less often: each page is written back once per WAL checkpoint however many
    // commits changed it. Not larger: a commit after a page split scans the whole page-cache
    // hash (SQLite re-keys pages through the lock page), which at 64 MiB took 9% of the
    // server's CPU under startJob load; 8 MiB measured as fast as 64 on `bench engine`.
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.pragma_update(None, "wal_autocheckpoint", 8192)?;
    Ok(())
}

/// A write waiting for the writer thread.
trait PendingWrite<E>: Send {
    /// Runs the write in `tx`, keeping its result until the transaction ends. May run again
    /// (alone) if the group it was in failed.
    fn apply(&mut self, tx: &rusqlite::Transaction<'_>) -> Result<(), E>;
    /// Answers the caller: the kept result once committed, else the error.
    fn answer(self: Box<Self>, outcome: Result<(), E>);
}

struct Pending<R, F, E> {
    run: F,
    result: Option<R>,
    done: tokio::sync::oneshot::Sender<Result<R, E>>,
}

impl<R, F, E> PendingWrite<E> for Pending<R, F, E>
where
    R: Send,
    E: Send,
    F: FnMut(&rusqlite::Transaction<'_>) -> Result<R, E> + Send,
{
    fn apply(&mut self, tx: &rusqlite::Transaction<'_>) -> Result<(), E> {
        self.result = Some((self.run)(tx)?);
        Ok(())
    }

    fn answer(self: Box<Self>, outcome: Result<(), E>) {
        let Pending { result, done, .. } = *self;
        let answer = match (outcome, result) {
            (Ok(()), Some(r)) => Ok(r),
            (Err(e), _) => Err(e),
            // apply succeeded in the committed transaction, so a result is there.
            (Ok(()), None) => return,
        };
        let _ = done.send(answer);
    }
}

type Queue<E> = mpsc::Sender<Box<dyn PendingWrite<E>>>;

/// One connection's writes, on a thread of its own; dropped, it finishes what was sent and
/// closes the connection before returning.
pub struct GroupCommitWriter<E: Send + 'static> {
    queue: Option<Queue<E>>,
    thread: Option<JoinHandle<()>>,
    stopped: fn() -> E,
}

impl<E: Send + 'static> GroupCommitWriter<E> {
    /// Starts the thread `name` writing through `conn`. `sql_error` maps SQLite's errors of
    /// the begin and commit; `stopped` is the error of a write sent after the thread ended.
    pub fn start(
        name: &str,
        conn: rusqlite::Connection,
        sql_error: fn(rusqlite::Error) -> E,
        stopped: fn() -> E,
    ) -> std::io::Result<GroupCommitWriter<E>> {
        let (queue, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || write_loop(conn, rx, sql_error))?;
        Ok(GroupCommitWriter {
            queue: Some(queue),
            thread: Some(thread),
            stopped,
        })
    }

    /// Runs `run` on the writer thread, in a transaction shared with the other writes waiting
    /// then; returns its result once that transaction is committed. `run` may run twice (the
    /// second time alone, if its group failed), so it reads what it needs from the transaction.
    pub async fn write<R, F>(&self, run: F) -> Result<R, E>
    where
        R: Send + 'static,
        F: FnMut(&rusqlite::Transaction<'_>) -> Result<R, E> + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel();
        let pending: Box<dyn PendingWrite<E>> = Box::new(Pending {
            run,
            result: None,
            done,
        });
        let queue = self.queue.as_ref().ok_or_else(self.stopped)?;
        queue.send(pending).map_err(|_| (self.stopped)())?;
        answer.await.map_err(|_| (self.stopped)())?
    }
}

impl<E: Send + 'static> Drop for GroupCommitWriter<E> {
    fn drop(&mut self) {
        // Closing the queue ends the loop once the writes already sent are done.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Takes what is waiting (up to [`MAX_GROUP`]), runs it in one transaction, commits, answers
/// each write. If the group fails, each write runs alone, so that one failing write cannot
/// fail the others.
fn write_loop<E>(
    mut conn: rusqlite::Connection,
    rx: mpsc::Receiver<Box<dyn PendingWrite<E>>>,
    sql_error: fn(rusqlite::Error) -> E,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        match apply_group(&mut conn, &mut group, sql_error) {
            Ok(()) => group.into_iter().for_each(|w| w.answer(Ok(()))),
            Err(_) => {
                for mut w in group {
                    let outcome = apply_group(&mut conn, std::slice::from_mut(&mut w), sql_error);
                    w.answer(outcome);
                }
            }
        }
    }
}

fn apply_group<E>(
    conn: &mut rusqlite::Connection,
    group: &mut [Box<dyn PendingWrite<E>>],
    sql_error: fn(rusqlite::Error) -> E,
) -> Result<(), E> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    for w in group.iter_mut() {
        w.apply(&tx)?;
    }
    tx.commit().map_err(sql_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum TestError {
        Sql(String),
        Stopped,
        Refused,
    }

    fn writer(path: &std::path::Path) -> GroupCommitWriter<TestError> {
        let conn = rusqlite::Connection::open(path).unwrap();
        configure(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        GroupCommitWriter::start(
            "test-writer",
            conn,
            |e| TestError::Sql(e.to_string()),
            || TestError::Stopped,
        )
        .unwrap()
    }

    /// Many concurrent writes share commits; one that fails gets its own error and the
    /// others still land; after drop, everything is on disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_failing_write_does_not_fail_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = std::sync::Arc::new(writer(&path));
        let tasks: Vec<_> = (0..400)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move {
                    w.write(move |tx| {
                        if i == 123 {
                            return Err(TestError::Refused);
                        }
                        tx.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [i])
                            .map_err(|e| TestError::Sql(e.to_string()))?;
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let r = t.await.unwrap();
            if i == 123 {
                assert_eq!(r, Err(TestError::Refused));
            } else {
                assert_eq!(r, Ok(i as i64));
            }
        }
        drop(std::sync::Arc::into_inner(w).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 399);
    }
}
