//! The bounded outbound queue of one connection.
//!
//! Producers (publishers, the connection's own replies) push [`Outbound`] items: complete
//! WebSocket frames, or message payloads that the transport frames on the way out (so that one
//! queue serves a WebSocket and an HTTP long-polling transport alike); the connection's
//! driver drains them in batches. The queue is bounded by messages and by bytes: a push past
//! either bound fails with [`PushError::Full`], hands the frame back, and marks the queue as
//! overflowed so the driver closes the connection as a slow consumer. A producer never waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// One item of an outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outbound {
    /// A complete, encoded WebSocket frame (encoded once, shared by every recipient).
    Frame(Bytes),
    /// A text message payload; the transport adds its framing.
    Text(Bytes),
    /// A binary message payload; the transport adds its framing.
    Binary(Bytes),
}

impl Outbound {
    /// The bytes held, which is what the queue's byte bound counts.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Frame(b) | Outbound::Text(b) | Outbound::Binary(b) => b.len(),
        }
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Bytes> for Outbound {
    fn from(frame: Bytes) -> Self {
        Outbound::Frame(frame)
    }
}

/// Bounds of one outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most frames queued at once. Default 1024.
    pub max_messages: usize,
    /// Most bytes queued at once. Default 4 MiB.
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_messages: 1024,
            max_bytes: 4 << 20,
        }
    }
}

/// Why a push failed; the frame is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The queue is at its bound: the consumer is too slow.
    #[error("outbound queue full")]
    Full(Outbound),
    /// The connection is closing and takes no more frames.
    #[error("connection closing")]
    Closed(Outbound),
}

/// A request to close the connection, made by someone other than its driver
/// (the HTTP API, shutdown, token expiry detected elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason, at most 123 bytes on the wire.
    pub reason: String,
    /// A last application message sent before the close frame (e.g. a `disconnect` message).
    pub last_message: Option<Outbound>,
}

/// What one [`OutQueue::drain`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// The queue overflowed since the last drain: close as a slow consumer.
    pub overflowed: bool,
    /// A close was requested.
    pub close: Option<CloseRequest>,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Outbound>,
    bytes: usize,
    overflowed: bool,
    closing: bool,
    /// Live [`QueueHold`]s (saturating); while there is one, frames from `held_from` on are
    /// not drained.
    holds: u16,
    /// Frames pushed ahead ([`OutQueue::push_ahead`]) since the holds began: the first held.
    ahead: u16,
    /// How many frames at the front were queued before the holds.
    held_from: u32,
    close: Option<CloseRequest>,
    /// The connection's driver, waiting through [`OutQueue::poll_notified`].
    driver: Listener,
    /// Anyone else waiting through [`OutQueue::notified`] (a long-polling request). Kept
    /// apart from the driver: while a transport hands over to another, both may wait at
    /// once, and neither may take the other's wake-up.
    other: Listener,
}

/// One consumer's side of the queue's wake-ups.
#[derive(Debug, Default)]
struct Listener {
    /// Set by a wake-up; the next wait takes it and returns at once.
    permit: bool,
    waker: Option<Waker>,
}

impl Listener {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::take(&mut self.permit) {
            self.waker = None;
            return Poll::Ready(());
        }
        match &mut self.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Holds back what is queued after it was taken ([`OutQueue::hold`]) until it is dropped.
#[derive(Debug)]
#[must_use = "the hold ends when dropped"]
pub struct QueueHold(Arc<OutQueue>);

impl Drop for QueueHold {
    fn drop(&mut self) {
        self.0.release_hold();
    }
}

/// The wakers to wake once the queue's lock is released.
type Wakers = [Option<Waker>; 2];

impl Inner {
    /// Marks the queue overflowed (and closing); the first time, wakes the consumers.
    fn overflow(&mut self) -> Wakers {
        let first = !self.overflowed;
        self.overflowed = true;
        self.closing = true;
        if first {
            self.notify()
        } else {
            Wakers::default()
        }
    }

    /// Records a wake-up for both listeners.
    fn notify(&mut self) -> Wakers {
        self.driver.permit = true;
        self.other.permit = true;
        [self.driver.waker.take(), self.other.waker.take()]
    }
}

/// A bounded multi-producer, single-consumer queue of encoded frames.
#[derive(Debug)]
pub struct OutQueue {
    // A std mutex: it is held only for a push or a drain, never across an `.await`, and
    // an async mutex would cost more on the fan-out hot path.
    inner: Mutex<Inner>,
    limits: QueueLimits,
}

impl OutQueue {
    /// An empty queue; allocates nothing until the first push.
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the queue consistent (every update is a
        // single push or pop), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame, or hands it back when the queue is full or closing.
    pub fn push(&self, item: impl Into<Outbound>) -> Result<(), PushError> {
        let frame = item.into();
        let mut inner = self.lock();
        if inner.closing {
            return Err(PushError::Closed(frame));
        }
        if inner.frames.len() >= self.limits.max_messages
            || inner.bytes + frame.len() > self.limits.max_bytes
        {
            let wakers = inner.overflow();
            drop(inner);
            wake(wakers);
            return Err(PushError::Full(frame));
        }
        // The consumer drains everything it may each time, so it only needs waking when the
        // first frame it may take arrives (a held frame waits for the hold's end).
        let wake_up = inner.holds == 0 && inner.frames.is_empty();
        inner.bytes += frame.len();
        inner.frames.push_back(frame);
        let wakers = if wake_up {
            inner.notify()
        } else {
            Wakers::default()
        };
        drop(inner);
        wake(wakers);
        Ok(())
    }

    /// Queues a frame ahead of those a [`QueueHold`] holds back, but held with them (at the
    /// end when nothing is held), under the same bounds as [`push`](Self::push): an answer
    /// that must reach the client before what was queued while it was being decided, and no
    /// sooner than the hold ends.
    pub fn push_ahead(&self, item: impl Into<Outbound>) -> Result<(), PushError> {
        let mut inner = self.lock();
        if inner.holds == 0 {
            drop(inner);
            return self.push(item);
        }
        let frame = item.into();
        if inner.closing {
            return Err(PushError::Closed(frame));
        }
        if inner.frames.len() >= self.limits.max_messages
            || inner.bytes + frame.len() > self.limits.max_bytes
            || inner.ahead == u16::MAX
        {
            let wakers = inner.overflow();
            drop(inner);
            wake(wakers);
            return Err(PushError::Full(frame));
        }
        let at = inner.held_from as usize + usize::from(inner.ahead);
        inner.bytes += frame.len();
        inner.frames.insert(at, frame);
        inner.ahead = inner.ahead.saturating_add(1);
        Ok(())
    }

    /// Holds back every frame queued from now on (by [`push`](Self::push)) until the returned
    /// guard, and every other hold, is dropped: drains leave them queued, in order, and the
    /// queue's bounds still count them. For a connection whose first frames must wait for
    /// something outside it (a subscription taking effect), while publishers may already
    /// reach it.
    pub fn hold(self: &Arc<Self>) -> QueueHold {
        let mut inner = self.lock();
        if inner.holds == 0 {
            inner.held_from = u32::try_from(inner.frames.len()).unwrap_or(u32::MAX);
        }
        inner.holds = inner.holds.saturating_add(1);
        QueueHold(self.clone())
    }

    fn release_hold(&self) {
        let mut inner = self.lock();
        inner.holds = inner.holds.saturating_sub(1);
        if inner.holds > 0 {
            return;
        }
        let wakers = if inner.frames.len() > inner.held_from as usize {
            inner.notify()
        } else {
            Wakers::default()
        };
        inner.held_from = 0;
        inner.ahead = 0;
        drop(inner);
        wake(wakers);
    }

    /// Asks the driver to close the connection; the first request wins. Frames already
    /// queued are still sent, then `last_message`, then the close frame.
    pub fn request_close(&self, request: CloseRequest) {
        let mut inner = self.lock();
        if inner.close.is_none() && !inner.overflowed {
            inner.close = Some(request);
        }
        inner.closing = true;
        let wakers = inner.notify();
        drop(inner);
        wake(wakers);
    }

    /// Wakes the consumers as a push would, with nothing pushed: for a change they must
    /// look at (such as a new deadline) made by another task.
    pub fn nudge(&self) {
        let wakers = self.lock().notify();
        wake(wakers);
    }

    /// Whether the queue takes no more frames (closing or overflowed).
    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// Moves every queued frame (but those a [`QueueHold`] holds back) to `out` and reports
    /// overflow and close requests.
    pub fn drain(&self, out: &mut VecDeque<Outbound>) -> Drained {
        let mut inner = self.lock();
        if inner.holds > 0 {
            let n = inner.held_from as usize;
            let taken: usize = inner.frames.iter().take(n).map(Outbound::len).sum();
            inner.bytes -= taken;
            out.extend(inner.frames.drain(..n));
            inner.held_from = 0;
            return Drained {
                overflowed: std::mem::take(&mut inner.overflowed),
                close: inner.close.take(),
            };
        }
        inner.bytes = 0;
        if out.is_empty() {
            std::mem::swap(out, &mut inner.frames);
        } else {
            out.extend(inner.frames.drain(..));
        }
        // An idle connection holds no buffer: the consumer releases what it took once written.
        if inner.frames.capacity() > 0 {
            inner.frames = VecDeque::new();
        }
        Drained {
            overflowed: std::mem::take(&mut inner.overflowed),
            close: inner.close.take(),
        }
    }

    /// Frames and bytes currently queued.
    pub fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.frames.len(), inner.bytes)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().frames.is_empty()
    }

    /// For the connection's driver: ready after a push to an empty queue, an overflow, a
    /// close request or a [`nudge`](Self::nudge) since the last time it was ready; otherwise
    /// remembers `cx`'s waker (the latest replaces the previous one).
    pub fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.lock().driver.poll(cx)
    }

    /// The driver is done: forget its waker, so that the queue (which publishers may hold a
    /// little longer) does not keep the finished task allocated.
    pub fn release_driver(&self) {
        self.lock().driver.waker = None;
    }

    /// For anyone but the driver (one waiter at a time): resolves as
    /// [`poll_notified`](Self::poll_notified) does, on a wake-up of its own.
    pub async fn notified(&self) {
        // Forgets the waker if the wait is abandoned, for the same reason as `release_driver`.
        struct Forget<'a>(&'a OutQueue);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.lock().other.waker = None;
            }
        }
        let _forget = Forget(self);
        std::future::poll_fn(|cx| self.lock().other.poll(cx)).await;
    }
}

fn wake(wakers: Wakers) {
    for waker in wakers.into_iter().flatten() {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(messages: usize, bytes: usize) -> OutQueue {
        OutQueue::new(QueueLimits {
            max_messages: messages,
            max_bytes: bytes,
        })
    }

    fn texts(out: &VecDeque<Outbound>) -> Vec<&[u8]> {
        out.iter()
            .map(|o| match o {
                Outbound::Frame(b) | Outbound::Text(b) | Outbound::Binary(b) => &b[..],
            })
            .collect()
    }

    #[test]
    fn a_hold_keeps_later_frames_back_and_lets_answers_ahead() {
        let q = Arc::new(q(10, 1000));
        q.push(Bytes::from_static(b"before")).unwrap();
        let hold = q.hold();
        q.push(Bytes::from_static(b"event")).unwrap();
        q.push_ahead(Bytes::from_static(b"answer")).unwrap();
        q.push_ahead(Bytes::from_static(b"then")).unwrap();
        let mut out = VecDeque::new();
        q.drain(&mut out);
        assert_eq!(texts(&out), [&b"before"[..]]);
        assert_eq!(q.len(), (3, 15), "held frames stay counted");
        out.clear();
        q.drain(&mut out);
        assert!(out.is_empty());
        // A second hold outlives the first: still held.
        let second = q.hold();
        drop(hold);
        q.drain(&mut out);
        assert!(out.is_empty());
        drop(second);
        q.drain(&mut out);
        assert_eq!(texts(&out), [&b"answer"[..], b"then", b"event"]);
        // Without a hold, pushing ahead is pushing.
        q.push(Bytes::from_static(b"x")).unwrap();
        q.push_ahead(Bytes::from_static(b"y")).unwrap();
        out.clear();
        q.drain(&mut out);
        assert_eq!(texts(&out), [&b"x"[..], b"y"]);
        assert_eq!(q.len(), (0, 0));
    }

    #[test]
    fn the_end_of_a_hold_wakes_the_driver_only_for_held_frames() {
        let q = Arc::new(q(10, 1000));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(q.poll_notified(&mut cx).is_pending());
        let hold = q.hold();
        q.push(Bytes::from_static(b"held")).unwrap();
        assert!(
            q.poll_notified(&mut cx).is_pending(),
            "a held frame wakes nobody"
        );
        drop(hold);
        assert!(q.poll_notified(&mut cx).is_ready());
        let mut out = VecDeque::new();
        q.drain(&mut out);
        drop(q.hold());
        assert!(q.poll_notified(&mut cx).is_pending());
    }

    #[test]
    fn hundreds_of_frames_pushed_ahead_keep_their_order() {
        let q = Arc::new(q(2000, 1 << 20));
        let hold = q.hold();
        q.push(Bytes::from_static(b"live")).unwrap();
        for i in 0..600u32 {
            q.push_ahead(Bytes::from(i.to_string())).unwrap();
        }
        drop(hold);
        let mut out = VecDeque::new();
        q.drain(&mut out);
        let got: Vec<String> = texts(&out)
            .iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        let mut expected: Vec<String> = (0..600).map(|i| i.to_string()).collect();
        expected.push("live".into());
        assert_eq!(got, expected);
    }

    #[test]
    fn held_frames_count_against_the_bounds() {
        let q = Arc::new(q(2, 1000));
        let _hold = q.hold();
        q.push(Bytes::from_static(b"a")).unwrap();
        q.push(Bytes::from_static(b"b")).unwrap();
        assert!(matches!(
            q.push_ahead(Bytes::from_static(b"c")),
            Err(PushError::Full(_))
        ));
        let mut out = VecDeque::new();
        assert!(q.drain(&mut out).overflowed);
    }

    #[test]
    fn inner_stays_small() {
        // Every connection has one: 168 bytes before holds, 8 more for them.
        assert!(
            std::mem::size_of::<Inner>() <= 176,
            "{}",
            std::mem::size_of::<Inner>()
        );
    }

    #[test]
    fn bounded_by_messages() {
        let q = q(2, 1000);
        assert!(q.push(Bytes::from_static(b"a")).is_ok());
        assert!(q.push(Bytes::from_static(b"b")).is_ok());
        assert_eq!(
            q.push(Bytes::from_static(b"c")),
            Err(PushError::Full(Outbound::Frame(Bytes::from_static(b"c"))))
        );
        let mut out = VecDeque::new();
        let d = q.drain(&mut out);
        assert!(d.overflowed);
        assert_eq!(out.len(), 2);
        // Once overflowed the queue is closing: nothing more is taken.
        assert!(matches!(
            q.push(Bytes::from_static(b"d")),
            Err(PushError::Closed(_))
        ));
    }

    #[test]
    fn bounded_by_bytes() {
        let q = q(100, 5);
        assert!(q.push(Bytes::from_static(b"abc")).is_ok());
        assert!(matches!(
            q.push(Bytes::from_static(b"def")),
            Err(PushError::Full(_))
        ));
        assert_eq!(q.len(), (1, 3));
    }

    #[test]
    fn drain_resets_byte_count() {
        let q = q(100, 5);
        for _ in 0..3 {
            assert!(q.push(Bytes::from_static(b"abcd")).is_ok());
            let mut out = VecDeque::new();
            assert_eq!(q.drain(&mut out), Drained::default());
            assert_eq!(out.len(), 1);
        }
    }

    #[test]
    fn close_request_first_wins() {
        let q = q(10, 100);
        let req = |code| CloseRequest {
            code,
            reason: String::new(),
            last_message: None,
        };
        q.request_close(req(4004));
        q.request_close(req(1001));
        let mut out = VecDeque::new();
        assert_eq!(q.drain(&mut out).close.map(|c| c.code), Some(4004));
        assert!(q.is_closing());
    }

    #[tokio::test]
    async fn driver_and_other_waiter_each_get_their_wake_up() {
        let q = std::sync::Arc::new(q(10, 100));
        let q2 = q.clone();
        let other = tokio::spawn(async move { q2.notified().await });
        tokio::task::yield_now().await;
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(q.poll_notified(&mut cx), Poll::Pending);
        assert!(q.push(Bytes::from_static(b"x")).is_ok());
        assert!(other.await.is_ok(), "the other waiter is woken");
        assert_eq!(
            q.poll_notified(&mut cx),
            Poll::Ready(()),
            "and so is the driver"
        );
        assert_eq!(q.poll_notified(&mut cx), Poll::Pending);
        q.nudge();
        assert_eq!(q.poll_notified(&mut cx), Poll::Ready(()));
    }

    #[tokio::test]
    async fn push_wakes_consumer() {
        let q = std::sync::Arc::new(q(10, 100));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.notified().await });
        tokio::task::yield_now().await;
        assert!(q.push(Bytes::from_static(b"x")).is_ok());
        assert!(waiter.await.is_ok());
    }
}
