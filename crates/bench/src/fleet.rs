//! The benchmark's open connections as one set: opening them at a bounded rate with a bounded
//! number of handshakes in flight, holding them (the dialer decides what holding means: idle,
//! or reading events), and closing them all at the end. What one connection is and how it is
//! opened is the [`Dialer`]'s business, so the same pacing serves every protocol.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Drops, HoldEnd, OpenError};

/// Opens and holds one kind of connection.
pub(crate) trait Dialer: Send + Sync + 'static {
    /// An open connection.
    type Conn: Send + 'static;

    /// Opens connection `id` up to the point where it is usable (a checked welcome, a
    /// Socket.IO namespace connect). The fleet bounds the time taken.
    fn dial(
        self: Arc<Self>,
        id: usize,
    ) -> impl Future<Output = Result<Self::Conn, OpenError>> + Send;

    /// Keeps `conn` open until `stop` turns true, then closes it; a connection the server
    /// ends is recorded in `drops`.
    fn hold(
        self: Arc<Self>,
        conn: Self::Conn,
        stop: watch::Receiver<bool>,
        drops: Arc<Drops>,
    ) -> impl Future<Output = HoldEnd> + Send;
}

/// How the fleet opens connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Connection attempts started per second.
    pub(crate) rate: f64,
    /// Most handshakes (connect to welcome) in flight at once.
    pub(crate) in_flight: usize,
    /// Time allowed for one handshake.
    pub(crate) timeout: Duration,
}

/// A set of open connections.
pub(crate) struct Fleet<D: Dialer> {
    dialer: Arc<D>,
    pace: Pace,
    stop: watch::Sender<bool>,
    held: JoinSet<HoldEnd>,
    drops: Arc<Drops>,
}

/// One [`Fleet::open`] call's outcome.
#[derive(Debug)]
pub(crate) struct Opened {
    /// Connections opened.
    pub(crate) count: usize,
    /// From the first attempt to the last welcome.
    pub(crate) elapsed: Duration,
    /// Time from starting to connect to the checked welcome, sorted.
    pub(crate) latencies: Vec<Duration>,
}

/// How the held connections ended in [`Fleet::close`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Closed {
    /// Close handshakes completed.
    pub(crate) clean: usize,
    /// Close handshakes that failed or timed out.
    pub(crate) failed: usize,
    /// Connections the server had already ended.
    pub(crate) dropped: usize,
}

impl<D: Dialer> Fleet<D> {
    /// An empty fleet whose connections `dialer` opens.
    pub(crate) fn new(dialer: D, pace: Pace) -> Fleet<D> {
        Fleet {
            dialer: Arc::new(dialer),
            pace,
            stop: watch::Sender::new(false),
            held: JoinSet::new(),
            drops: Arc::default(),
        }
    }

    /// Opens the connections of users `ids` and keeps them. Fails when any one fails: it then
    /// starts no more, waits for those in flight and reports the failures by kind.
    pub(crate) async fn open(&mut self, ids: Range<usize>) -> Result<Opened> {
        let started = Instant::now();
        let mut opening: JoinSet<Attempt<D::Conn>> = JoinSet::new();
        let mut next = ids.start;
        let mut failures = Failures::default();
        let mut latencies = Vec::with_capacity(ids.len());
        loop {
            let may_start =
                next < ids.end && failures.count == 0 && opening.len() < self.pace.in_flight;
            if !may_start && opening.is_empty() {
                break;
            }
            let due = started + Duration::from_secs_f64((next - ids.start) as f64 / self.pace.rate);
            tokio::select! {
                biased;
                Some(joined) = opening.join_next(), if !opening.is_empty() => match joined {
                    Ok((_, Ok((ws, latency)))) => {
                        latencies.push(latency);
                        self.hold(ws);
                    }
                    Ok((id, Err(e))) => failures.record(Some(id), e.kind(), e.to_string()),
                    Err(e) => {
                        let message = format!("the task failed: {e}");
                        failures.record(None, message.clone(), message);
                    }
                },
                () = tokio::time::sleep_until(due), if may_start => {
                    opening.spawn(open_one(next, self.dialer.clone(), self.pace.timeout));
                    next += 1;
                }
            }
        }
        if failures.count > 0 {
            bail!(failures.report(next - ids.start, latencies.len()));
        }
        latencies.sort_unstable();
        Ok(Opened {
            count: latencies.len(),
            elapsed: started.elapsed(),
            latencies,
        })
    }

    fn hold(&mut self, conn: D::Conn) {
        let hold = self
            .dialer
            .clone()
            .hold(conn, self.stop.subscribe(), self.drops.clone());
        self.held.spawn(hold);
    }

    /// How many held connections the server has ended, and why the first one ended.
    pub(crate) fn drops(&self) -> (usize, Option<String>) {
        self.drops.get()
    }

    /// Closes every held connection, waiting at most `wait` for the close handshakes.
    pub(crate) async fn close(mut self, wait: Duration) -> Closed {
        self.stop.send_replace(true);
        let deadline = Instant::now() + wait;
        let mut closed = Closed::default();
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, self.held.join_next()).await
        {
            match joined {
                Ok(HoldEnd::Closed) => closed.clean += 1,
                Ok(HoldEnd::CloseFailed) | Err(_) => closed.failed += 1,
                Ok(HoldEnd::Dropped) => closed.dropped += 1,
            }
        }
        closed.failed += self.held.len();
        self.held.abort_all();
        closed
    }
}

/// A connection id and either its connection with the time it took to open, or why it failed.
type Attempt<C> = (usize, Result<(C, Duration), OpenError>);

/// Opens connection `id` within `timeout`.
async fn open_one<D: Dialer>(id: usize, dialer: Arc<D>, timeout: Duration) -> Attempt<D::Conn> {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, dialer.dial(id)).await {
        Ok(Ok(conn)) => Ok((conn, started.elapsed())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(OpenError::Timeout(timeout)),
    };
    (id, result)
}

/// Failed attempts, counted by kind, with the first message of each kind.
#[derive(Debug, Default)]
struct Failures {
    count: usize,
    first_id: Option<usize>,
    kinds: Vec<(String, usize, String)>,
}

impl Failures {
    fn record(&mut self, id: Option<usize>, kind: String, message: String) {
        self.count += 1;
        if let Some(id) = id {
            self.first_id = Some(self.first_id.map_or(id, |first| first.min(id)));
        }
        match self.kinds.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, n, _)) => *n += 1,
            None => self.kinds.push((kind, 1, message)),
        }
    }

    fn report(&self, attempted: usize, opened: usize) -> String {
        let mut text = format!(
            "{} of {attempted} connection attempts in this phase failed ({opened} opened); no \
             more were started after the first failure",
            self.count
        );
        if let Some(id) = self.first_id {
            text.push_str(&format!(" (user {id})"));
        }
        text.push(':');
        for (kind, n, example) in &self.kinds {
            text.push_str(&format!("\n  {n} x {kind}"));
            if example != kind {
                text.push_str(&format!(", e.g. {example}"));
            }
        }
        text
    }
}
