//! The per-connection RFC 6455 state machine, without sockets or clock: message reassembly,
//! UTF-8 checks, ping/pong, the close handshake, heartbeat and deadlines. Bytes and `now` go
//! in; events come out, and the control frames owed to the peer wait in
//! [`Connection::take_transmit`].
//!
//! An idle connection owns no heap memory: the fragment buffer is allocated when a fragmented
//! message starts and released when it ends, and the queue of owed pongs is allocated only
//! while pings wait for their answers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::error::ProtocolError;
use super::frame::{self, FrameLimits, OpCode};
use super::utf8::Utf8Validator;

/// An empty ping, pre-encoded: heartbeats need no allocation.
const PING_FRAME: &[u8] = &[0x89, 0x00];
/// Most pongs owed at once; past this the oldest unanswered ping goes unanswered.
const MAX_OWED_PONGS: usize = 16;

/// Timing and size settings of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnConfig {
    /// Frame and message size limits. Default: 64 KiB each.
    pub limits: FrameLimits,
    /// A ping is queued when nothing was received and no ping was sent for this long.
    /// Default: 25 s.
    pub ping_interval: Duration,
    /// The connection is dead when nothing was received for this long. Default: 60 s.
    pub idle_timeout: Duration,
    /// How long to wait for the peer's close frame once we sent ours, and for our close to
    /// be flushed once the handshake is over or failed. Default: 5 s.
    pub close_timeout: Duration,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            limits: FrameLimits::default(),
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// What [`Connection::read`] produced.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete text message, validated as UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// The peer's close frame arrived: either it started the handshake (our reply is already
    /// queued) or it answered our close. Either way the handshake is over; flush
    /// [`Connection::take_transmit`] and drop the transport.
    Closed {
        /// The peer's status code; `None` if its close frame had no payload.
        code: Option<u16>,
        /// The peer's reason, possibly empty.
        reason: String,
    },
}

/// What [`Connection::on_tick`] decided.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickAction {
    /// Nothing to do.
    Idle,
    /// A ping waits in [`Connection::take_transmit`].
    PingQueued,
    /// Silent past `idle_timeout`, or the close handshake ran past `close_timeout`: drop the
    /// TCP connection.
    TimedOut,
}

/// `t + d`, or a year after `t` when that cannot be represented.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(t)
}

/// Whether a close status code may appear on the wire (RFC 6455 section 7.4 and the IANA
/// registry): 1000-1003, 1007-1014 and the application range 3000-4999. 1004-1006 and 1015
/// are reserved or local-only; everything else below 3000 is unassigned.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Our close is queued or sent; waiting for the peer's since `since`.
    Closing {
        since: Instant,
    },
    /// Both closes exchanged, or the connection failed: nothing more is read, and our close
    /// (if any) has until `since + close_timeout` to be flushed.
    Closed {
        since: Instant,
    },
}

/// The kind of a data message, text needing UTF-8 validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// One WebSocket connection's protocol state (server side).
///
/// Sized for many idle connections: 224 bytes inline on x86-64 Linux, no heap while
/// no fragmented message is in flight.
#[derive(Debug)]
pub struct Connection {
    // Copied rather than shared: 64 bytes inline cost less than an `Arc` allocation per
    // connection when the caller hands over a value.
    config: ConnConfig,
    state: State,
    last_seen: Instant,
    last_ping: Instant,
    /// The fragmented message in progress, if any.
    partial: Option<Kind>,
    utf8: Utf8Validator,
    ping_owed: bool,
    /// Fragments of the message in progress; empty and unallocated otherwise.
    fragments: BytesMut,
    /// Encoded pongs owed, oldest first; unallocated unless pings are waiting for answers.
    /// RFC 6455 5.5.3 would allow answering only the latest ping, but peers (and Autobahn
    /// 2.10) expect one pong per ping, so a burst of up to [`MAX_OWED_PONGS`] is kept.
    pongs: VecDeque<Bytes>,
    /// Encoded close frame not yet taken by the writer.
    close_frame: Option<Bytes>,
}

impl Connection {
    /// A connection whose handshake just completed at `now`.
    pub fn new(config: ConnConfig, now: Instant) -> Self {
        Self {
            config,
            state: State::Open,
            last_seen: now,
            last_ping: now,
            partial: None,
            utf8: Utf8Validator::default(),
            ping_owed: false,
            fragments: BytesMut::new(),
            pongs: VecDeque::new(),
            close_frame: None,
        }
    }

    /// Decodes frames from `buf` until a message or the peer's close completes.
    /// `Ok(None)`: more bytes are needed.
    ///
    /// Every frame counts as a sign of life. A ping queues a pong with its payload. Data
    /// frames are ignored once we started closing; after [`Event::Closed`] or an error,
    /// nothing more is read and `buf` is discarded. On `Err` the connection has already
    /// failed itself (see [`fail`](Self::fail)): the close frame with
    /// [`ProtocolError::close_code`] is queued and [`is_closed`](Self::is_closed) is true.
    pub fn read(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
    ) -> Result<Option<Event>, ProtocolError> {
        loop {
            if let State::Closed { .. } = self.state {
                // RFC 6455 sections 1.4 and 7.1.7: nothing after the close handshake or a
                // failure is processed.
                buf.clear();
                return Ok(None);
            }
            let frame = match frame::decode(buf, &self.config.limits) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(err) => return Err(self.failed(err, now)),
            };
            self.last_seen = now;
            let start = match frame.opcode {
                OpCode::Ping => {
                    if self.state == State::Open {
                        if self.pongs.len() == MAX_OWED_PONGS {
                            self.pongs.pop_front();
                        }
                        self.pongs
                            .push_back(frame::encoded(OpCode::Pong, &frame.payload));
                    }
                    continue;
                }
                OpCode::Pong => continue,
                OpCode::Close => {
                    return match self.on_close(&frame.payload, now) {
                        Ok(event) => Ok(Some(event)),
                        Err(err) => Err(self.failed(err, now)),
                    };
                }
                OpCode::Text => Some(Kind::Text),
                OpCode::Binary => Some(Kind::Binary),
                OpCode::Continuation => None,
            };
            if self.state != State::Open {
                // Closing: the peer may still be sending; its data no longer matters.
                continue;
            }
            match self.on_data(start, frame.fin, frame.payload) {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => {}
                Err(err) => return Err(self.failed(err, now)),
            }
        }
    }

    /// The next control frame owed to the peer (pong, ping, then close), already encoded.
    /// Data frames do not go through here. Once the close frame is taken, nothing follows.
    pub fn take_transmit(&mut self) -> Option<Bytes> {
        if let Some(pong) = self.pongs.pop_front() {
            if self.pongs.is_empty() && self.pongs.capacity() > 0 {
                self.pongs = VecDeque::new();
            }
            return Some(pong);
        }
        if self.ping_owed {
            self.ping_owed = false;
            return Some(Bytes::from_static(PING_FRAME));
        }
        self.close_frame.take()
    }

    /// Starts the close handshake: queues a close frame with `code` (which should satisfy
    /// [`is_valid_close_code`]) and `reason` (cut to 123 bytes), stops accepting data, and
    /// gives the peer `close_timeout` from `now` to answer. Does nothing unless open.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        if self.state != State::Open {
            return;
        }
        self.close_frame = Some(frame::close_frame(code, reason));
        self.state = State::Closing { since: now };
        self.ping_owed = false;
        self.drop_message();
    }

    /// Fails the connection for `err` (RFC 6455 section 7.1.7): queues a close frame with
    /// [`ProtocolError::close_code`] unless one was already sent, and stops reading.
    /// [`read`](Self::read) does this itself before returning an error; calling it again
    /// does nothing.
    pub fn fail(&mut self, err: &ProtocolError, now: Instant) {
        if self.state == State::Open {
            self.close_frame = Some(frame::close_frame(err.close_code(), &err.to_string()));
        }
        if !matches!(self.state, State::Closed { .. }) {
            self.state = State::Closed { since: now };
        }
        self.pongs = VecDeque::new();
        self.ping_owed = false;
        self.drop_message();
    }

    /// Heartbeat and deadlines, to call periodically.
    ///
    /// Open: `TimedOut` when nothing was received for `idle_timeout`; otherwise a ping is
    /// queued when nothing was received and no ping sent for `ping_interval` (a busy peer is
    /// not pinged). Closing or closed: `TimedOut` once `close_timeout` has passed since the
    /// close started, so a peer that neither answers nor reads cannot hold the socket.
    pub fn on_tick(&mut self, now: Instant) -> TickAction {
        match self.state {
            State::Closing { since } | State::Closed { since } => {
                if now.saturating_duration_since(since) >= self.config.close_timeout {
                    TickAction::TimedOut
                } else {
                    TickAction::Idle
                }
            }
            State::Open => {
                if now.saturating_duration_since(self.last_seen) >= self.config.idle_timeout {
                    return TickAction::TimedOut;
                }
                let quiet_since = self.last_seen.max(self.last_ping);
                if now.saturating_duration_since(quiet_since) >= self.config.ping_interval {
                    self.ping_owed = true;
                    self.last_ping = now;
                    TickAction::PingQueued
                } else {
                    TickAction::Idle
                }
            }
        }
    }

    /// When [`on_tick`](Self::on_tick) next has something to do: the next heartbeat ping or
    /// the idle timeout while open, the end of `close_timeout` once closing. Calling `on_tick`
    /// earlier is harmless; receiving data only moves this later.
    pub fn deadline(&self) -> Instant {
        match self.state {
            State::Closing { since } | State::Closed { since } => {
                later(since, self.config.close_timeout)
            }
            State::Open => {
                let quiet_since = self.last_seen.max(self.last_ping);
                later(self.last_seen, self.config.idle_timeout)
                    .min(later(quiet_since, self.config.ping_interval))
            }
        }
    }

    /// Neither closing nor closed: data may still be sent to the peer.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The close handshake finished both ways, or the connection failed: drop the transport
    /// once [`take_transmit`](Self::take_transmit) is drained and flushed.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// [`fail`](Self::fail), handing the error back for `read` to return.
    fn failed(&mut self, err: ProtocolError, now: Instant) -> ProtocolError {
        tracing::debug!(error = %err, "websocket protocol error");
        self.fail(&err, now);
        err
    }

    /// Releases the fragment buffer and forgets the message in progress.
    fn drop_message(&mut self) {
        self.partial = None;
        self.utf8 = Utf8Validator::default();
        self.fragments = BytesMut::new();
    }

    /// A data frame while open: `start` is the kind for Text/Binary, `None` for Continuation.
    fn on_data(
        &mut self,
        start: Option<Kind>,
        fin: bool,
        payload: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        let max = self.config.limits.max_message;
        let kind = match (start, self.partial) {
            (Some(_), Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (None, None) => return Err(ProtocolError::UnexpectedContinuation),
            (Some(kind), None) if fin => {
                // Unfragmented: no copy, the payload is the message.
                if payload.len() > max {
                    return Err(ProtocolError::MessageTooLarge);
                }
                if kind == Kind::Text && std::str::from_utf8(&payload).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                return Ok(Some(kind.event(payload)));
            }
            (Some(kind), None) | (None, Some(kind)) => kind,
        };
        if self.fragments.len().saturating_add(payload.len()) > max {
            return Err(ProtocolError::MessageTooLarge);
        }
        if kind == Kind::Text {
            self.utf8.feed(&payload)?;
        }
        self.fragments.extend_from_slice(&payload);
        if !fin {
            self.partial = Some(kind);
            return Ok(None);
        }
        if kind == Kind::Text {
            self.utf8.finish()?;
        }
        self.partial = None;
        // `take` leaves an unallocated buffer behind: the memory leaves with the message.
        let message = std::mem::take(&mut self.fragments).freeze();
        Ok(Some(kind.event(message)))
    }

    /// The peer's close frame: validate it, answer it if we had not closed, finish.
    fn on_close(&mut self, payload: &[u8], now: Instant) -> Result<Event, ProtocolError> {
        let (code, reason) = parse_close(payload)?;
        if self.state == State::Open {
            // Echo the peer's code (RFC 6455 section 5.5.1), without a reason.
            self.close_frame = Some(match code {
                Some(code) => frame::close_frame(code, ""),
                None => frame::encoded(OpCode::Close, &[]),
            });
        }
        self.state = State::Closed { since: now };
        self.ping_owed = false;
        self.drop_message();
        Ok(Event::Closed {
            code,
            reason: reason.to_owned(),
        })
    }
}

impl Kind {
    fn event(self, payload: Bytes) -> Event {
        match self {
            Self::Text => Event::Text(payload),
            Self::Binary => Event::Binary(payload),
        }
    }
}

/// Splits a close payload into its status code and UTF-8 reason (RFC 6455 section 5.5.1).
fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &str), ProtocolError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok((Some(code), reason))
        }
    }
}

#[cfg(test)]
mod tests;
