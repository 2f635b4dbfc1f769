//! Task tokens: a `.waitForTaskToken` Task waits here for an outside system's answer
//! (success, failure, heartbeat) to its token. A token is 256 random bits written in
//! URL-safe base64 (43 characters), unguessable. Which tokens ended lately, and how, is
//! remembered (the last [`ENDED_REMEMBERED`]) so that a late answer to a timed-out task is
//! told apart from a wrong or spent token.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::EngineError;

/// How many ended tokens are remembered (with how they ended).
const ENDED_REMEMBERED: usize = 10_000;

/// Characters of a token: 32 bytes in base64 without padding.
const TOKEN_CHARS: usize = 43;

/// An answer to a waiting task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signal {
    Success(Value),
    Failure { error: String, cause: String },
    Heartbeat,
}

/// How a token stopped taking answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// A success or failure was delivered.
    Answered,
    /// The task timed out (TimeoutSeconds or HeartbeatSeconds).
    TimedOut,
    /// The task stopped waiting otherwise (its execution stopped, a sibling branch failed).
    Abandoned,
}

struct Slot {
    /// Tells a waiter's slot from a later one with the same token (a resumed task).
    id: u64,
    tx: mpsc::UnboundedSender<Signal>,
    /// Set until a waiter takes it (a slot reserved at resume, before its task runs).
    rx: Option<mpsc::UnboundedReceiver<Signal>>,
    /// A success or failure was delivered before a waiter took the receiver: it is kept
    /// for the waiter, and the token takes no more answers.
    answered: bool,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    waiting: HashMap<String, Slot>,
    ended: HashMap<String, Ended>,
    ended_order: VecDeque<String>,
}

impl Slots {
    fn remember(&mut self, token: &str, how: Ended) {
        if self.ended.insert(token.to_string(), how).is_none() {
            self.ended_order.push_back(token.to_string());
        }
        while self.ended_order.len() > ENDED_REMEMBERED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    fn slot(&mut self, token: &str) -> &mut Slot {
        let next_id = &mut self.next_id;
        self.waiting.entry(token.to_string()).or_insert_with(|| {
            *next_id += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            Slot {
                id: *next_id,
                tx,
                rx: Some(rx),
                answered: false,
            }
        })
    }
}

/// The engine's waiting tasks, by token.
#[derive(Default)]
pub(crate) struct Callbacks {
    slots: Mutex<Slots>,
}

/// A new token.
pub(crate) fn new_token() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `token` has the form of one this engine issues.
fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Callbacks {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Slots>, EngineError> {
        self.slots
            .lock()
            .map_err(|_| EngineError::Store("lock poisoned".into()))
    }

    /// Makes `token` answerable before its task runs again (an execution being resumed):
    /// answers that come meanwhile wait for it.
    pub fn reserve(&self, token: &str) {
        if let Ok(mut s) = self.lock() {
            s.slot(token);
        }
    }

    /// Starts waiting for answers to `token`. The waiter stops it when dropped.
    pub fn wait(self: &Arc<Self>, token: &str) -> Waiter {
        let (id, rx) = match self.lock() {
            Ok(mut s) => {
                let slot = s.slot(token);
                let rx = slot.rx.take().unwrap_or_else(|| {
                    // Taken by an earlier waiter of the same token: this one replaces it.
                    let (tx, rx) = mpsc::unbounded_channel();
                    slot.tx = tx;
                    rx
                });
                (slot.id, Some(rx))
            }
            Err(_) => (0, None),
        };
        Waiter {
            callbacks: self.clone(),
            token: token.to_string(),
            id,
            rx,
            ended: None,
        }
    }

    /// Delivers an answer. Success and failure end the wait (the token is spent).
    pub fn deliver(&self, token: &str, signal: Signal) -> Result<(), EngineError> {
        if !well_formed(token) {
            return Err(EngineError::InvalidToken(
                "the task token is not one this engine issued".into(),
            ));
        }
        let mut s = self.lock()?;
        let ends = !matches!(signal, Signal::Heartbeat);
        match s.waiting.get_mut(token) {
            Some(slot) if !slot.answered => {
                // The receiver lives as long as the slot (its waiter removes both).
                let _ = slot.tx.send(signal);
                if ends {
                    if slot.rx.is_some() {
                        // Reserved, not yet taken: the answer waits in the slot.
                        slot.answered = true;
                    } else {
                        s.waiting.remove(token);
                    }
                    s.remember(token, Ended::Answered);
                }
                Ok(())
            }
            Some(_) => Err(EngineError::TaskDoesNotExist),
            None => Err(match s.ended.get(token) {
                Some(Ended::TimedOut) => EngineError::TaskTimedOut,
                _ => EngineError::TaskDoesNotExist,
            }),
        }
    }
}

/// One task's wait for its token's answers.
pub(crate) struct Waiter {
    callbacks: Arc<Callbacks>,
    token: String,
    id: u64,
    rx: Option<mpsc::UnboundedReceiver<Signal>>,
    ended: Option<Ended>,
}

impl Waiter {
    /// The next answer (never, when the registry could not be locked).
    pub async fn next(&mut self) -> Signal {
        match &mut self.rx {
            Some(rx) => match rx.recv().await {
                Some(s) => s,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Records how the wait ended (else, when dropped, it was abandoned).
    pub fn end(&mut self, how: Ended) {
        self.ended = Some(how);
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let Ok(mut s) = self.callbacks.slots.lock() else {
            return;
        };
        if s.waiting
            .get(&self.token)
            .is_some_and(|slot| slot.id == self.id)
        {
            s.waiting.remove(&self.token);
            s.remember(&self.token, self.ended.unwrap_or(Ended::Abandoned));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}+", &a[..42])));
    }

    #[tokio::test]
    async fn answers_reach_the_waiter_once() {
        let c = Arc::new(Callbacks::default());
        let t = new_token();
        let mut w = c.wait(&t);
        c.deliver(&t, Signal::Heartbeat).unwrap();
        c.deliver(&t, Signal::Success(Value::from(1))).unwrap();
        assert_eq!(w.next().await, Signal::Heartbeat);
        assert_eq!(w.next().await, Signal::Success(Value::from(1)));
        assert!(matches!(
            c.deliver(&t, Signal::Success(Value::Null)),
            Err(EngineError::TaskDoesNotExist)
        ));
        assert!(matches!(
            c.deliver("nope", Signal::Heartbeat),
            Err(EngineError::InvalidToken(_))
        ));
        assert!(matches!(
            c.deliver(&new_token(), Signal::Heartbeat),
            Err(EngineError::TaskDoesNotExist)
        ));
    }

    #[tokio::test]
    async fn a_timed_out_token_says_so_and_an_abandoned_one_is_gone() {
        let c = Arc::new(Callbacks::default());
        let (t1, t2) = (new_token(), new_token());
        let mut w1 = c.wait(&t1);
        w1.end(Ended::TimedOut);
        drop(w1);
        drop(c.wait(&t2));
        assert!(matches!(
            c.deliver(&t1, Signal::Heartbeat),
            Err(EngineError::TaskTimedOut)
        ));
        assert!(matches!(
            c.deliver(&t2, Signal::Heartbeat),
            Err(EngineError::TaskDoesNotExist)
        ));
    }

    #[tokio::test]
    async fn a_reserved_token_keeps_answers_for_its_waiter() {
        let c = Arc::new(Callbacks::default());
        let t = new_token();
        c.reserve(&t);
        c.deliver(&t, Signal::Success(Value::from("early")))
            .unwrap();
        assert!(
            matches!(
                c.deliver(&t, Signal::Success(Value::Null)),
                Err(EngineError::TaskDoesNotExist)
            ),
            "spent before its task ran again"
        );
        let mut w = c.wait(&t);
        assert_eq!(w.next().await, Signal::Success(Value::from("early")));
    }
}
