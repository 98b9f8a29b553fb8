//! A token bucket for the inbound message rate of one client (a native connection, a Socket.IO
//! socket), driven by the caller's clock.

use std::time::Instant;

/// Allows `rate` messages per second on average and bursts of `burst`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f32,
    rate: f32,
    burst: f32,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = burst.max(1) as f32;
        Self {
            tokens: burst,
            rate: rate as f32,
            burst,
            last: now,
        }
    }

    /// Takes one token; `false` when the bucket is empty.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        // Never more than the burst, however long it waits.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }
}
