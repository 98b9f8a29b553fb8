//! What a consumer did, for health and metrics: whether it is connected, and its counts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A consumer's state, shared with whoever reports it.
#[derive(Debug, Default)]
pub struct SourceStatus {
    connected: AtomicBool,
    received: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    retried: AtomicU64,
    reconnects: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

/// A snapshot of a [`SourceStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Whether the consumer is connected and consuming.
    pub connected: bool,
    /// Deliveries received (redeliveries included).
    pub received: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages rejected to the dead-letter queue.
    pub rejected: u64,
    /// Handlings that asked to be tried again.
    pub retried: u64,
    /// Connections lost and made again.
    pub reconnects: u64,
    /// Why the last connection failed, when it did.
    pub last_error: Option<String>,
}

impl SourceStatus {
    /// A snapshot.
    pub fn counts(&self) -> StatusCounts {
        StatusCounts {
            connected: self.connected.load(Ordering::Acquire),
            received: self.received.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    pub(crate) fn count(&self, what: Count) {
        let counter = match what {
            Count::Received => &self.received,
            Count::Acked => &self.acked,
            Count::Rejected => &self.rejected,
            Count::Retried => &self.retried,
            Count::Reconnect => &self.reconnects,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Received,
    Acked,
    Rejected,
    Retried,
    Reconnect,
}
