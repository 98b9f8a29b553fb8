//! HTTP request bodies read whole, under three bounds: a size limit per body, a deadline for
//! the whole body, and a [`BodyBudget`] of bytes shared by every body being read at once, so
//! that many slow or large uploads cannot make the process grow without bound.
//!
//! A body that announces its length (`Content-Length`) reserves it before the first byte is
//! read: one that can never fit is refused at once. Chunked bodies reserve as they arrive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;

/// Default of [`BodyBudget`]: 64 MiB of bodies in flight.
pub const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;
/// The default deadline for a whole body: 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer deadlines count as this long (a day).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Why a body was not read.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is (or announces to be) larger than the limit: answer 413.
    #[error("request body too large")]
    TooLarge,
    /// The body did not arrive whole before the deadline: answer 408.
    #[error("request body not received in time")]
    Timeout,
    /// Bodies being read already hold the whole budget: answer 503.
    #[error("too many request bytes in flight")]
    Busy,
    /// The body could not be read (the client went away, a malformed chunk).
    #[error("request body not read: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// Bytes of request bodies being read, bounded; clones share the same budget.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    inner: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    max: usize,
    used: AtomicUsize,
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

impl BodyBudget {
    /// A budget of `max_bytes` for all bodies being read at once.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Budget {
                max: max_bytes,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget's size, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.inner.max
    }

    /// Bytes reserved by bodies being read now.
    pub fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Takes `n` more bytes for `held`, if they fit.
    fn grow(&self, held: &mut Held<'_>, n: usize) -> bool {
        let budget = &self.inner;
        let taken = budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= budget.max)
            });
        if taken.is_ok() {
            held.bytes += n;
        }
        taken.is_ok()
    }
}

/// What one body holds of the budget, given back when the read ends, however it ends.
struct Held<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget
            .inner
            .used
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Reads `body` whole: at most `limit` bytes, within `timeout`, holding its bytes against
/// `budget` while it is read (they are given back when this returns).
pub async fn read<B>(
    body: B,
    limit: usize,
    timeout: Duration,
    budget: &BodyBudget,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let announced = body.size_hint().lower();
    if announced > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    let announced = usize::try_from(announced).unwrap_or(limit);
    let mut held = Held { budget, bytes: 0 };
    if !budget.grow(&mut held, announced) {
        return Err(BodyError::Busy);
    }
    // Bounded so that adding it to the clock cannot overflow.
    let deadline = tokio::time::Instant::now() + timeout.min(MAX_TIMEOUT);
    let collect = collect(body, limit, announced, &mut held);
    match tokio::time::timeout_at(deadline, collect).await {
        Ok(read) => read,
        Err(_) => Err(BodyError::Timeout),
    }
}

async fn collect<B>(
    body: B,
    limit: usize,
    announced: usize,
    held: &mut Held<'_>,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::with_capacity(announced);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| BodyError::Read(err.into()))?;
        let Ok(data) = frame.into_data() else {
            // Trailers: nothing to keep.
            continue;
        };
        if out.len() + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        let total = out.len() + data.len();
        if total > held.bytes {
            let budget = held.budget;
            if !budget.grow(held, total - held.bytes) {
                return Err(BodyError::Busy);
            }
        }
        if out.is_empty() && body.is_end_stream() {
            // The whole body in one chunk: kept as it came, without a copy.
            return Ok(data);
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    use super::*;

    fn full(text: &'static str) -> Full<Bytes> {
        Full::new(Bytes::from_static(text.as_bytes()))
    }

    #[tokio::test]
    async fn reads_within_the_limit_and_gives_the_budget_back() {
        let budget = BodyBudget::new(100);
        let body = read(full("hello"), 10, DEFAULT_TIMEOUT, &budget).await;
        assert_eq!(body.unwrap(), "hello");
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn an_announced_length_over_the_limit_is_refused_unread() {
        let budget = BodyBudget::new(100);
        let err = read(full("0123456789x"), 10, DEFAULT_TIMEOUT, &budget).await;
        assert!(matches!(err, Err(BodyError::TooLarge)));
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn bodies_in_flight_share_the_budget() {
        let budget = BodyBudget::new(10);
        // A body announcing 8 bytes and sending them slowly holds 8 bytes of the budget.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        let stream = tokio_stream(rx);
        let slow = WithLength {
            inner: StreamBody::new(stream),
            len: 8,
        };
        let reading = tokio::spawn({
            let budget = budget.clone();
            async move { read(slow, 10, DEFAULT_TIMEOUT, &budget).await }
        });
        while budget.in_use() < 8 {
            tokio::task::yield_now().await;
        }
        let refused = read(full("abc"), 10, DEFAULT_TIMEOUT, &budget).await;
        assert!(matches!(refused, Err(BodyError::Busy)), "{refused:?}");
        assert!(read(full("ab"), 10, DEFAULT_TIMEOUT, &budget).await.is_ok());
        tx.send(Ok(Frame::data(Bytes::from_static(b"12345678"))))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(reading.await.unwrap().unwrap(), "12345678");
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_times_out_and_gives_the_budget_back() {
        let budget = BodyBudget::new(100);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
            .await
            .unwrap();
        let stalled = WithLength {
            inner: StreamBody::new(tokio_stream(rx)),
            len: 50,
        };
        let err = read(stalled, 100, Duration::from_secs(10), &budget).await;
        assert!(matches!(err, Err(BodyError::Timeout)), "{err:?}");
        assert_eq!(budget.in_use(), 0);
        drop(tx);
    }

    #[tokio::test]
    async fn chunked_bodies_reserve_as_they_arrive() {
        let budget = BodyBudget::new(6);
        let frames = [b"abc".as_slice(), b"defg".as_slice()]
            .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from_static(c))));
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let err = read(body, 100, DEFAULT_TIMEOUT, &budget).await;
        assert!(matches!(err, Err(BodyError::Busy)), "{err:?}");
        assert_eq!(budget.in_use(), 0);
    }

    /// A channel as a stream of frames.
    fn tokio_stream<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// A body that announces `len` bytes, as `Content-Length` does.
    struct WithLength<B> {
        inner: B,
        len: u64,
    }

    impl<B: Body + Unpin> Body for WithLength<B> {
        type Data = B::Data;
        type Error = B::Error;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            std::pin::Pin::new(&mut self.inner).poll_frame(cx)
        }

        fn size_hint(&self) -> hyper::body::SizeHint {
            hyper::body::SizeHint::with_exact(self.len)
        }
    }
}
