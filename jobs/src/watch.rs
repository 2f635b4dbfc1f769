//! Per-job change notification for stores that can push: a long poll subscribes, every
//! committed write to the job bumps its counter. Entries go away with their last subscriber,
//! so 10,000 long polls coming and going leave nothing behind.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::ports::JobWatch;

#[derive(Default)]
pub struct Watchers {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Watchers {
    pub fn new() -> Watchers {
        Watchers::default()
    }

    pub fn subscribe(&self, job_id: &str) -> JobWatch {
        let Ok(mut map) = self.senders.lock() else {
            return JobWatch::Poll(std::time::Duration::from_secs(1));
        };
        // Drop senders nobody listens to any more, now and then, so the map stays small.
        if map.len() > 1024 {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
        let rx = match map.get(job_id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                map.insert(job_id.to_string(), tx);
                rx
            }
        };
        JobWatch::Push(rx)
    }

    /// Wakes everyone waiting on `job_id`.
    pub fn notify(&self, job_id: &str) {
        let Ok(mut map) = self.senders.lock() else {
            return;
        };
        if let Some(tx) = map.get(job_id) {
            if tx.receiver_count() == 0 {
                map.remove(job_id);
            } else {
                tx.send_modify(|n| *n += 1);
            }
        }
    }

    /// How many jobs have a sender (for tests: no unbounded growth).
    pub fn len(&self) -> usize {
        self.senders
            .lock()
            .map(|mut m| {
                m.retain(|_, tx| tx.receiver_count() > 0);
                m.len()
            })
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
