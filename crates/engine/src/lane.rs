//! The async command lane: how a connection's handler, which runs inside the driver and may
//! not wait, carries out a command that must await something (a broker, a database, an HTTP
//! backend).
//!
//! [`Lane::submit`] polls the command's future once, inline: a command that completes at once
//! (the common case: an in-memory publish) answers at once, in order. A command that has to
//! wait goes on a task of its own, bounded three ways: commands in flight per connection,
//! commands in flight per node ([`LaneLimits`]), and a timeout, after which the future is
//! dropped and the handler's timeout answer is queued instead. Either way the answer goes
//! through the connection's bounded outbound queue, so a slow command never stalls the driver,
//! its heartbeat, or any other connection.
//!
//! Order of answers on one connection: commands that complete at once are answered in the
//! order they arrived; a command that waits is answered when it completes, so later answers
//! may overtake it. Answers carry the request's id (native replies, Socket.IO acks) for the
//! client to match.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds shared by every connection of one node.
#[derive(Debug)]
pub struct LaneLimits {
    permits: Arc<Semaphore>,
    per_node: usize,
    per_connection: usize,
    timeout: Duration,
}

impl LaneLimits {
    /// At most `per_node` commands in flight on the node and `per_connection` on one
    /// connection; each may run for `timeout`.
    pub fn new(per_node: usize, per_connection: usize, timeout: Duration) -> Arc<Self> {
        // The semaphore's own bound: more would panic, and is more than any node holds.
        let per_node = per_node.min(Semaphore::MAX_PERMITS);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(per_node)),
            per_node,
            per_connection,
            timeout,
        })
    }

    /// Commands waiting on their tasks now, over the whole node.
    pub fn in_flight(&self) -> usize {
        self.per_node - self.permits.available_permits()
    }

    /// The timeout of one command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Why a command was not started. The command was not polled: nothing of it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaneError {
    /// The connection has as many commands in flight as it may.
    #[error("too many commands in flight on this connection")]
    ConnectionBusy,
    /// The node has as many commands in flight as it may.
    #[error("too many commands in flight on this server")]
    NodeBusy,
}

/// How a submitted command went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Submitted {
    /// It completed inline.
    Done,
    /// It waits on a task of its own.
    Running,
}

/// One connection's lane: one word, and no allocation until a command has to wait. The node's
/// [`LaneLimits`] are passed to [`submit`](Self::submit) rather than kept, since memory per
/// connection is a budget.
#[derive(Debug, Default)]
pub struct Lane {
    in_flight: Option<Arc<AtomicUsize>>,
}

impl Lane {
    /// A lane with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commands of this connection waiting on their tasks now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .as_ref()
            .map_or(0, |n| n.load(Ordering::Acquire))
    }

    /// Runs `work`, which queues its own answer when it completes. When it has not completed
    /// within the timeout it is dropped and `timed_out` runs instead, to queue the timeout
    /// answer (so does a `work` that panics: every started command is answered). Refused,
    /// untouched, when a bound is reached.
    pub fn submit<F, T>(
        &mut self,
        limits: &LaneLimits,
        work: F,
        timed_out: T,
    ) -> Result<Submitted, LaneError>
    where
        F: Future<Output = ()> + Send + 'static,
        T: FnOnce() + Send + 'static,
    {
        if self.in_flight() >= limits.per_connection {
            return Err(LaneError::ConnectionBusy);
        }
        let permit: OwnedSemaphorePermit = limits
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| LaneError::NodeBusy)?;
        let mut work = Box::pin(work);
        if let Poll::Ready(()) = work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return Ok(Submitted::Done);
        }
        let counter = self
            .in_flight
            .get_or_insert_with(|| Arc::new(AtomicUsize::new(0)))
            .clone();
        counter.fetch_add(1, Ordering::AcqRel);
        let timeout = limits.timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _counted = Counted(counter);
            // Answers for a command that did not: timed out, or panicked (unwinding drops it).
            let mut fallback = Fallback(Some(timed_out));
            if tokio::time::timeout(timeout, work).await.is_ok() {
                fallback.0 = None;
            }
        });
        Ok(Submitted::Running)
    }
}

/// Runs the timeout answer unless disarmed: a command is answered whatever becomes of it.
struct Fallback<T: FnOnce()>(Option<T>);

impl<T: FnOnce()> Drop for Fallback<T> {
    fn drop(&mut self) {
        if let Some(answer) = self.0.take() {
            answer();
        }
    }
}

/// Takes a finished (or timed out) command off its connection's count.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn log() -> Arc<Mutex<Vec<&'static str>>> {
        Arc::new(Mutex::new(Vec::new()))
    }

    fn push(log: &Arc<Mutex<Vec<&'static str>>>, what: &'static str) -> impl FnOnce() + Send {
        let log = log.clone();
        move || log.lock().unwrap().push(what)
    }

    async fn after(ms: u64, then: impl FnOnce() + Send + 'static) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        then();
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_that_completes_at_once_answers_inline() {
        let limits = LaneLimits::new(1, 1, Duration::from_secs(1));
        let mut lane = Lane::new();
        let seen = log();
        let done = push(&seen, "done");
        let r = lane.submit(&limits, async move { done() }, push(&seen, "timeout"));
        assert_eq!(r, Ok(Submitted::Done));
        assert_eq!(*seen.lock().unwrap(), ["done"]);
        assert_eq!((lane.in_flight(), limits.in_flight()), (0, 0));
        assert!(
            lane.in_flight.is_none(),
            "no allocation for inline commands"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_commands_are_bounded_per_connection_and_per_node() {
        let limits = LaneLimits::new(3, 2, Duration::from_secs(10));
        let (mut a, mut b) = (Lane::new(), Lane::new());
        let seen = log();
        let t = || push(&seen, "timeout");
        assert_eq!(
            a.submit(&limits, after(100, push(&seen, "a1")), t()),
            Ok(Submitted::Running)
        );
        assert_eq!(
            a.submit(&limits, after(200, push(&seen, "a2")), t()),
            Ok(Submitted::Running)
        );
        assert_eq!(
            a.submit(&limits, after(1, push(&seen, "a3")), t()),
            Err(LaneError::ConnectionBusy)
        );
        assert_eq!(
            b.submit(&limits, after(50, push(&seen, "b1")), t()),
            Ok(Submitted::Running)
        );
        assert_eq!(
            b.submit(&limits, after(1, push(&seen, "b2")), t()),
            Err(LaneError::NodeBusy)
        );
        assert_eq!(limits.in_flight(), 3);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Completion order, not submission order; the refused commands never ran.
        assert_eq!(*seen.lock().unwrap(), ["b1", "a1", "a2"]);
        assert_eq!(
            (a.in_flight(), b.in_flight(), limits.in_flight()),
            (0, 0, 0)
        );
        assert_eq!(
            b.submit(&limits, after(1, push(&seen, "b3")), t()),
            Ok(Submitted::Running)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_that_panics_is_answered_and_released() {
        let limits = LaneLimits::new(4, 4, Duration::from_secs(1));
        let mut lane = Lane::new();
        let seen = log();
        let work = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("a command failed");
        };
        lane.submit(&limits, work, push(&seen, "failed")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*seen.lock().unwrap(), ["failed"]);
        assert_eq!((lane.in_flight(), limits.in_flight()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_past_its_timeout_is_dropped_and_answered_as_timed_out() {
        let limits = LaneLimits::new(4, 4, Duration::from_secs(1));
        let mut lane = Lane::new();
        let seen = log();
        lane.submit(
            &limits,
            after(5_000, push(&seen, "late")),
            push(&seen, "timeout"),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(*seen.lock().unwrap(), ["timeout"]);
        assert_eq!((lane.in_flight(), limits.in_flight()), (0, 0));
    }
}
