//! [`OnceKeys`]: idempotency keys in process, for a single node's broker.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::broker::{BrokerError, Claim};

/// The keys claimed within their window, bounded in number.
#[derive(Debug)]
pub struct OnceKeys {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each key's expiry and result (`None` while pending).
    keys: HashMap<String, (Instant, Option<String>)>,
    /// Keys in claim order, for expiry.
    order: VecDeque<(Instant, String)>,
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            let Some((_, key)) = self.order.pop_front() else {
                break;
            };
            // A key claimed again after a release has a later expiry: keep it.
            if self.keys.get(&key).is_some_and(|(at, _)| *at <= now) {
                self.keys.remove(&key);
            }
        }
    }
}

impl OnceKeys {
    /// At most `max` keys at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is a single insert or removal: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`crate::Broker::claim`]. Past `max` keys in their window, refused as unavailable.
    pub fn claim(&self, key: &str, window: Duration) -> Result<Claim, BrokerError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now);
        if let Some((_, result)) = inner.keys.get(key) {
            return Ok(match result {
                Some(result) => Claim::Done(result.clone()),
                None => Claim::Pending,
            });
        }
        if inner.keys.len() >= self.max {
            return Err(BrokerError::Unavailable(format!(
                "{} idempotency keys are in their window already",
                self.max
            )));
        }
        inner.keys.insert(key.to_owned(), (now + window, None));
        inner.order.push_back((now + window, key.to_owned()));
        Ok(Claim::First)
    }

    /// See [`crate::Broker::settle`].
    pub fn settle(&self, key: &str, result: &str) {
        if let Some((_, slot)) = self.lock().keys.get_mut(key) {
            *slot = Some(result.to_owned());
        }
    }

    /// See [`crate::Broker::release`].
    pub fn release(&self, key: &str) {
        self.lock().keys.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claim_wins_until_the_window_ends() {
        let keys = OnceKeys::new(2);
        let window = Duration::from_millis(40);
        assert_eq!(keys.claim("a", window), Ok(Claim::First));
        assert_eq!(keys.claim("a", window), Ok(Claim::Pending));
        keys.settle("a", "answer");
        assert_eq!(keys.claim("a", window), Ok(Claim::Done("answer".into())));
        assert_eq!(keys.claim("b", window), Ok(Claim::First));
        assert!(keys.claim("c", window).is_err(), "bounded");
        keys.release("b");
        assert_eq!(keys.claim("b", window), Ok(Claim::First), "released");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(keys.claim("a", window), Ok(Claim::First), "past its window");
    }
}
