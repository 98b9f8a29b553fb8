//! The benchmark's open connections as one set: opening them at a bounded rate with a bounded
//! number of handshakes in flight, holding them idle, and closing them all at the end.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::client::{self, Drops, HoldEnd, Identities, OpenError, Ws};

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
pub(crate) struct Fleet {
    url_prefix: Arc<str>,
    identities: Arc<Identities>,
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

impl Fleet {
    /// An empty fleet for the server at `addr`.
    pub(crate) fn new(addr: SocketAddr, identities: Identities, pace: Pace) -> Fleet {
        Fleet {
            url_prefix: format!("ws://{addr}/ws?token=").into(),
            identities: Arc::new(identities),
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
        let mut opening: JoinSet<Attempt> = JoinSet::new();
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
                    opening.spawn(open_one(
                        next,
                        self.url_prefix.clone(),
                        self.identities.clone(),
                        self.pace.timeout,
                    ));
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

    fn hold(&mut self, ws: Ws) {
        self.held
            .spawn(client::hold(ws, self.stop.subscribe(), self.drops.clone()));
    }

    /// How many held connections the server has ended, and why the first one ended.
    pub(crate) fn drops(&self) -> (usize, Option<String>) {
        self.drops.get()
    }

    /// Closes every held connection, waiting at most a few seconds for the close handshakes.
    pub(crate) async fn close(mut self) -> Closed {
        self.stop.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(10);
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

/// A user id and either its connection with the time it took to open, or why it failed.
type Attempt = (usize, Result<(Ws, Duration), OpenError>);

/// Connects user `id` and waits for its welcome, within `timeout`.
async fn open_one(
    id: usize,
    url_prefix: Arc<str>,
    identities: Arc<Identities>,
    timeout: Duration,
) -> Attempt {
    let started = Instant::now();
    let token = match identities.token(id) {
        Ok(token) => token,
        Err(e) => return (id, Err(OpenError::Token(e))),
    };
    let url = format!("{url_prefix}{token}");
    // Small client buffers: the client holds as many connections as the server and shares the
    // machine with it, and idle connections read only a welcome and pings.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let opened = tokio::time::timeout(
        timeout,
        client::open(&url, identities.expected_rooms(id), config),
    );
    let result = match opened.await {
        Ok(Ok(ws)) => Ok((ws, started.elapsed())),
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
