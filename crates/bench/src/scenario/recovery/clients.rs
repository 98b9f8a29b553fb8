//! The clients of `recovery`: each connects to the doomed node, keeps the last offset it
//! received, sees its connection end, then reconnects to the survivor with its `pid` and offset,
//! trying again after a failed attempt, and reports how its recovery ended.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::client::{Drops, HoldEnd, OpenError};
use crate::fleet::Dialer;
use crate::sub::{self, sio_handshake};
use crate::wire::{self, parse_sio, ConnectAnswer, SioEvent, SioFrame, Tokens};
use crate::wsconn::WsConn;

/// What the scenario and its clients share.
pub(super) struct Shared {
    /// Clients on the doomed node that hold an offset.
    pub(super) with_offset: AtomicUsize,
    /// Clients whose connection to the doomed node has ended.
    pub(super) lost: AtomicUsize,
    /// The storm's start, once it started: every client then reconnects.
    pub(super) storm: watch::Sender<Option<Instant>>,
    /// One outcome per client, once the storm started.
    pub(super) outcomes: mpsc::UnboundedSender<Outcome>,
    /// Events received after a client's outcome: none is published then, so none should come.
    pub(super) late_events: AtomicU64,
}

/// How a client's reconnection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Its socket id and `pid` back, and every missed event, in order and once.
    Recovered,
    /// A new socket id or `pid`: the server did not find or could not restore the session.
    NewSession,
    /// Its session back, but the missed events were not all there, in order and once.
    WrongEvents,
    /// No `CONNECT` answer: every attempt failed, or the time was up.
    Failed,
}

impl Verdict {
    pub(super) const NOT_RECOVERED: [Verdict; 3] =
        [Verdict::NewSession, Verdict::WrongEvents, Verdict::Failed];

    pub(super) fn name(self) -> &'static str {
        match self {
            Verdict::Recovered => "recovered",
            Verdict::NewSession => "new_session",
            Verdict::WrongEvents => "wrong_events",
            Verdict::Failed => "failed",
        }
    }
}

/// One client's reconnection.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub(super) verdict: Verdict,
    /// From the start of its reconnection until it had the answer and every missed event (or
    /// gave up).
    pub(super) took: Duration,
    /// When it was done.
    pub(super) done: Instant,
    pub(super) attempts: u32,
    /// Whether it reconnected with an offset.
    pub(super) had_offset: bool,
    /// Whether it saw its connection to the doomed node end before the storm.
    pub(super) saw_close: bool,
    /// Why each failed attempt failed.
    pub(super) errors: Vec<String>,
}

/// The clients: connected to the doomed node by the fleet, then, in [`Dialer::hold`], through
/// its death and their reconnection to the survivor.
pub(super) struct Clients {
    pub(super) tokens: Tokens,
    pub(super) doomed: SocketAddr,
    pub(super) survivor: SocketAddr,
    pub(super) sources: Vec<IpAddr>,
    /// Events published while they are away.
    pub(super) missed: u64,
    pub(super) reconnect_rate: f64,
    pub(super) retry: Duration,
    pub(super) recover_within: Duration,
    pub(super) shared: Arc<Shared>,
}

/// A client connected to the doomed node, with its session.
pub(super) struct Connected {
    id: usize,
    ws: WsConn,
    sid: String,
    pid: String,
}

/// Why a client stopped reading from the doomed node.
enum Left {
    /// Its connection ended.
    Lost,
    /// The storm started first.
    Storm,
    /// The fleet is closing (the setup failed).
    Stop,
}

/// A reconnection that got its `CONNECT` answer.
struct Answered {
    ws: WsConn,
    answer: ConnectAnswer,
    /// The scenario's numbers of the events received so far (`None`: an event of another shape).
    events: Vec<Option<u64>>,
}

impl Dialer for Clients {
    type Conn = Connected;

    async fn dial(self: Arc<Self>, id: usize) -> Result<Connected, OpenError> {
        let token = self.tokens.token(id).map_err(OpenError::Token)?;
        let mut ws = sub::connect(self.doomed, self.source(id), wire::SOCKET_IO_PATH).await?;
        let answer = sio_handshake(&mut ws, &wire::sio_connect(&token), &mut |_| {}).await?;
        let answer = wire::sio_connect_answer(answer.as_bytes()).ok_or_else(|| {
            OpenError::SocketIo(format!("no socket id in the CONNECT answer `{answer}`"))
        })?;
        let pid = answer.pid.ok_or_else(|| {
            OpenError::SocketIo("no pid in the CONNECT answer: is [socketio.recovery] on?".into())
        })?;
        Ok(Connected {
            id,
            ws,
            sid: answer.sid,
            pid,
        })
    }

    async fn hold(
        self: Arc<Self>,
        conn: Connected,
        mut stop: watch::Receiver<bool>,
        drops: Arc<Drops>,
    ) -> HoldEnd {
        let Connected {
            id,
            mut ws,
            sid,
            pid,
        } = conn;
        let mut storm = self.shared.storm.subscribe();
        let mut offset = None;
        let saw_close = match self
            .on_doomed(&mut ws, &mut offset, &mut storm, &mut stop)
            .await
        {
            Left::Lost => {
                self.shared.lost.fetch_add(1, Ordering::Relaxed);
                true
            }
            Left::Storm => false,
            Left::Stop => return close(ws).await,
        };
        drop(ws);
        let start = tokio::select! {
            start = storm.wait_for(Option::is_some) => start.ok().and_then(|start| *start),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        let Some(start) = start else {
            return HoldEnd::Dropped;
        };
        if self.reconnect_rate > 0.0 {
            let after = Duration::from_secs_f64(id as f64 / self.reconnect_rate);
            tokio::time::sleep_until(start + after).await;
        }
        let began = Instant::now();
        let (verdict, attempts, errors, answered) = self
            .recover(
                id,
                &sid,
                &pid,
                offset.as_deref(),
                began + self.recover_within,
            )
            .await;
        let done = Instant::now();
        let _ = self.shared.outcomes.send(Outcome {
            verdict,
            took: done - began,
            done,
            attempts,
            had_offset: offset.is_some(),
            saw_close,
            errors,
        });
        match answered {
            Some(ws) => self.hold_survivor(ws, &mut stop, &drops).await,
            None => HoldEnd::Dropped,
        }
    }
}

impl Clients {
    fn source(&self, id: usize) -> IpAddr {
        self.sources[id % self.sources.len().max(1)]
    }

    /// Reads from the doomed node, answering pings and keeping the last offset, until the
    /// connection ends, the storm starts or the fleet closes.
    async fn on_doomed(
        &self,
        ws: &mut WsConn,
        offset: &mut Option<String>,
        storm: &mut watch::Receiver<Option<Instant>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Left {
        let stormed = storm.wait_for(Option::is_some);
        let stopped = stop.wait_for(|stop| *stop);
        tokio::pin!(stormed, stopped);
        loop {
            let had_offset = offset.is_some();
            let (mut pings, mut ended) = (0, false);
            let mut on_text = |text: &[u8]| match parse_sio(text) {
                SioFrame::Event(payload) => {
                    if let Some(event) = SioEvent::parse(payload) {
                        if let Some(last) = event.offset() {
                            *offset = Some(last.to_owned());
                        }
                    }
                }
                SioFrame::Ping => pings += 1,
                SioFrame::Close | SioFrame::Disconnect => ended = true,
                _ => {}
            };
            let read = tokio::select! {
                biased;
                read = ws.read_some(&mut on_text) => read,
                _ = &mut stormed => return Left::Storm,
                _ = &mut stopped => return Left::Stop,
            };
            if !had_offset && offset.is_some() {
                self.shared.with_offset.fetch_add(1, Ordering::Relaxed);
            }
            if read.is_err() || ended {
                return Left::Lost;
            }
            for _ in 0..pings {
                if sub::send(ws, wire::PONG).await.is_err() {
                    return Left::Lost;
                }
            }
        }
    }

    /// Reconnects to the survivor with the session's `pid` and `offset` until it is answered
    /// or `deadline` passes, then waits for the missed events the answer did not bring.
    async fn recover(
        &self,
        id: usize,
        sid: &str,
        pid: &str,
        offset: Option<&str>,
        deadline: Instant,
    ) -> (Verdict, u32, Vec<String>, Option<WsConn>) {
        let token = match self.tokens.token(id) {
            Ok(token) => token,
            Err(e) => return (Verdict::Failed, 0, vec![format!("token: {e}")], None),
        };
        let connect = wire::sio_reconnect(&token, pid, offset);
        let mut attempts = 0;
        let mut errors = Vec::new();
        let mut answered = loop {
            attempts += 1;
            match tokio::time::timeout_at(deadline, self.attempt(id, &connect)).await {
                Ok(Ok(answered)) => break answered,
                Ok(Err(e)) => errors.push(e.kind()),
                Err(_) => {
                    errors.push("no answer in time".into());
                    return (Verdict::Failed, attempts, errors, None);
                }
            }
            if Instant::now() + self.retry >= deadline {
                return (Verdict::Failed, attempts, errors, None);
            }
            tokio::time::sleep(self.retry).await;
        };
        let same = answered.answer.sid == sid && answered.answer.pid.as_deref() == Some(pid);
        if !same {
            return (Verdict::NewSession, attempts, errors, Some(answered.ws));
        }
        // Missed events come ahead of the answer; should any come after it, they are waited
        // for, as long as the client's time lasts.
        while (answered.events.len() as u64) < self.missed {
            let (mut pings, mut ended) = (0, false);
            let events = &mut answered.events;
            let mut on_text = |text: &[u8]| match parse_sio(text) {
                SioFrame::Event(payload) => events.push(event_number(payload)),
                SioFrame::Ping => pings += 1,
                SioFrame::Close | SioFrame::Disconnect => ended = true,
                _ => {}
            };
            let read = tokio::time::timeout_at(deadline, answered.ws.read_some(&mut on_text)).await;
            let broken = !matches!(read, Ok(Ok(())));
            if broken || ended {
                break;
            }
            for _ in 0..pings {
                let _ = sub::send(&mut answered.ws, wire::PONG).await;
            }
        }
        let verdict = if in_order(&answered.events, self.missed) {
            Verdict::Recovered
        } else {
            Verdict::WrongEvents
        };
        (verdict, attempts, errors, Some(answered.ws))
    }

    /// One reconnection to the survivor, up to its `CONNECT` answer.
    async fn attempt(&self, id: usize, connect: &str) -> Result<Answered, OpenError> {
        let mut ws = sub::connect(self.survivor, self.source(id), wire::SOCKET_IO_PATH).await?;
        let mut events = Vec::new();
        let answer = sio_handshake(&mut ws, connect, &mut |payload| {
            events.push(event_number(payload));
        })
        .await?;
        let answer = wire::sio_connect_answer(answer.as_bytes()).ok_or_else(|| {
            OpenError::SocketIo(format!("no socket id in the CONNECT answer `{answer}`"))
        })?;
        Ok(Answered { ws, answer, events })
    }

    /// Holds the connection to the survivor until the fleet closes, answering pings and
    /// counting events, which should not come.
    async fn hold_survivor(
        &self,
        mut ws: WsConn,
        stop: &mut watch::Receiver<bool>,
        drops: &Drops,
    ) -> HoldEnd {
        let stopped = stop.wait_for(|stop| *stop);
        tokio::pin!(stopped);
        loop {
            let (mut pings, mut events, mut ended) = (0, 0, None);
            let mut on_text = |text: &[u8]| match parse_sio(text) {
                SioFrame::Event(_) => events += 1,
                SioFrame::Ping => pings += 1,
                SioFrame::Close => ended = Some("the server closed the Engine.IO session"),
                SioFrame::Disconnect => ended = Some("the server sent a Socket.IO disconnect"),
                _ => {}
            };
            let read = tokio::select! {
                biased;
                read = ws.read_some(&mut on_text) => Some(read),
                _ = &mut stopped => None,
            };
            let Some(read) = read else {
                return close(ws).await;
            };
            self.shared.late_events.fetch_add(events, Ordering::Relaxed);
            if let Err(e) = read {
                drops.record(e.to_string());
                return HoldEnd::Dropped;
            }
            if let Some(ended) = ended {
                drops.record(ended.into());
                return HoldEnd::Dropped;
            }
            for _ in 0..pings {
                if let Err(e) = sub::send(&mut ws, wire::PONG).await {
                    drops.record(e.to_string());
                    return HoldEnd::Dropped;
                }
            }
        }
    }
}

/// Closes a held connection with a close handshake.
async fn close(mut ws: WsConn) -> HoldEnd {
    match tokio::time::timeout(Duration::from_secs(3), ws.close()).await {
        Ok(Ok(())) => HoldEnd::Closed,
        Ok(Err(_)) | Err(_) => HoldEnd::CloseFailed,
    }
}

/// The data of event `n`: 0 is published before the kill, 1 to M while the clients are away.
pub(super) fn event_data(n: u64) -> String {
    format!(r#"{{"n":{n}}}"#)
}

/// The `n` of a received event's data (the payload after `42`).
fn event_number(payload: &[u8]) -> Option<u64> {
    SioEvent::parse(payload)?.args.first()?.get("n")?.as_u64()
}

/// Whether `events` are the missed ones, 1 to `missed`, in order and once.
fn in_order(events: &[Option<u64>], missed: u64) -> bool {
    events.len() as u64 == missed && events.iter().zip(1..).all(|(n, k)| *n == Some(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_numbers_are_read_from_the_data() {
        let payload = format!(r#"["tick",{},"1700000000000-4"]"#, event_data(3));
        assert_eq!(event_number(payload.as_bytes()), Some(3));
        assert_eq!(event_number(br#"["tick",{"m":3},"1-0"]"#), None);
        assert_eq!(event_number(br#"["tick"]"#), None);
    }

    #[test]
    fn missed_events_must_come_in_order_and_once() {
        assert!(in_order(&[Some(1), Some(2), Some(3)], 3));
        assert!(in_order(&[], 0));
        assert!(!in_order(&[Some(1), Some(3), Some(2)], 3));
        assert!(!in_order(&[Some(1), Some(2)], 3));
        assert!(!in_order(&[Some(1), Some(1), Some(2), Some(3)], 3));
        // The event from before the disconnection is not among the missed.
        assert!(!in_order(&[Some(0), Some(1), Some(2), Some(3)], 3));
        assert!(!in_order(&[Some(1), None, Some(3)], 3));
    }
}
