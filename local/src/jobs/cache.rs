//! Jobs recently read, kept parsed: a getJob on a job nobody is writing costs neither a SQLite
//! read (whose WAL read lock alone is two `fcntl` calls) nor parsing the stored JSON. Only
//! this process writes the database (one `serve` per data dir, held by a kernel lock), and
//! every write drops the job's entry once it has committed, so an entry is never older than
//! the last committed write. A read that overlapped a write to a job of the same stripe does
//! not store what it read (it may be the record from before the write).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex, MutexGuard};

use longhaul_jobs::Job;

/// Write generations are kept per stripe of job ids, not per job, so they need no entry of
/// their own: a write to another job of the stripe only costs a read its chance to cache.
const STRIPES: usize = 256;
/// At most this many jobs, and this many bytes of their stored records, are kept.
const MAX_ENTRIES: usize = 4096;
const MAX_BYTES: usize = 8 << 20;
/// A record larger than this (a big result) is read from SQLite each time.
const MAX_RECORD_BYTES: usize = 64 << 10;

#[derive(Default)]
struct Entries {
    jobs: HashMap<String, (Arc<Job>, usize)>,
    bytes: usize,
    generations: Vec<u64>,
}

pub(super) struct JobCache {
    entries: Mutex<Entries>,
}

/// What a read that missed needs to store its result: the stripe's write generation when the
/// read began.
pub(super) struct Ticket {
    stripe: usize,
    generation: u64,
}

fn stripe(job_id: &str) -> usize {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(job_id) as usize % STRIPES
}

impl JobCache {
    pub(super) fn new() -> JobCache {
        JobCache {
            entries: Mutex::new(Entries {
                generations: vec![0; STRIPES],
                ..Entries::default()
            }),
        }
    }

    /// The entries; a panic elsewhere while holding the lock left them whole (every change
    /// below is complete before anything can panic), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job if it is kept, else the ticket to keep it once read.
    pub(super) fn get(&self, job_id: &str) -> Result<Job, Ticket> {
        let stripe = stripe(job_id);
        let entries = self.lock();
        match entries.jobs.get(job_id) {
            Some((job, _)) => Ok(Job::clone(job)),
            None => Err(Ticket {
                stripe,
                generation: entries.generations[stripe],
            }),
        }
    }

    /// Keeps `job`, read from a record of `size` bytes, unless its stripe was written since
    /// the ticket was taken.
    pub(super) fn put(&self, ticket: Ticket, job: &Job, size: usize) {
        if size > MAX_RECORD_BYTES {
            return;
        }
        let mut entries = self.lock();
        if entries.generations[ticket.stripe] != ticket.generation {
            return;
        }
        while !entries.jobs.is_empty()
            && (entries.jobs.len() >= MAX_ENTRIES || entries.bytes + size > MAX_BYTES)
        {
            // Any entry: the map's order is as good as random, and a job read again is
            // simply read from SQLite.
            let Some(victim) = entries.jobs.keys().next().cloned() else {
                break;
            };
            if let Some((_, n)) = entries.jobs.remove(&victim) {
                entries.bytes -= n;
            }
        }
        if let Some((_, n)) = entries
            .jobs
            .insert(job.job_id.clone(), (Arc::new(job.clone()), size))
        {
            entries.bytes -= n;
        }
        entries.bytes += size;
    }

    /// Drops the job's entry: called after every write to it has committed (or failed).
    pub(super) fn invalidate(&self, job_id: &str) {
        let stripe = stripe(job_id);
        let mut entries = self.lock();
        entries.generations[stripe] += 1;
        if let Some((_, n)) = entries.jobs.remove(job_id) {
            entries.bytes -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn job(message: &str) -> Job {
        let mut j = Job::new("alice", "demo", json!({}), Utc::now());
        j.progress.message = message.into();
        j
    }

    #[test]
    fn a_read_that_overlapped_a_write_is_not_kept() {
        let cache = JobCache::new();
        let old = job("old");
        let Err(ticket) = cache.get(&old.job_id) else {
            panic!("an empty cache holds nothing")
        };
        // The write commits and drops the entry while the read is under way.
        cache.invalidate(&old.job_id);
        cache.put(ticket, &old, 100);
        assert!(cache.get(&old.job_id).is_err(), "the stale record was kept");
    }

    #[test]
    fn a_kept_job_is_returned_until_written() {
        let cache = JobCache::new();
        let j = job("step 1");
        let Err(ticket) = cache.get(&j.job_id) else {
            panic!("an empty cache holds nothing")
        };
        cache.put(ticket, &j, 100);
        assert_eq!(cache.get(&j.job_id).ok(), Some(j.clone()));
        cache.invalidate(&j.job_id);
        assert!(cache.get(&j.job_id).is_err());
    }

    #[test]
    fn entries_and_bytes_stay_bounded() {
        let cache = JobCache::new();
        for _ in 0..MAX_ENTRIES + 100 {
            let j = job("x");
            if let Err(t) = cache.get(&j.job_id) {
                cache.put(t, &j, 1000);
            }
        }
        let entries = cache.lock();
        assert!(entries.jobs.len() <= MAX_ENTRIES, "{}", entries.jobs.len());
        assert!(entries.bytes <= MAX_BYTES);
        assert_eq!(
            entries.bytes,
            entries.jobs.values().map(|(_, n)| n).sum::<usize>()
        );
        drop(entries);
        let big = job("big");
        let Err(t) = cache.get(&big.job_id) else {
            panic!("not kept yet")
        };
        cache.put(t, &big, MAX_RECORD_BYTES + 1);
        assert!(
            cache.get(&big.job_id).is_err(),
            "a record too big is not kept"
        );
    }
}
