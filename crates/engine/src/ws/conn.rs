//! The per-connection RFC 6455 state machine, without sockets or clock: message reassembly,
//! UTF-8 checks, ping/pong, the close handshake, heartbeat and deadlines. Bytes and `now` go
//! in; events come out, and the control frames owed to the peer wait in [`Connection::take_transmit`].
//!
//! An idle connection owns no heap memory: the fragment buffer is allocated when a fragmented
//! message starts and released when it ends, and the pending control frames are small slots,
//! not a queue.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::error::ProtocolError;
use super::frame::{self, FrameLimits, OpCode};
use super::utf8::Utf8Validator;

/// An empty ping, pre-encoded: heartbeats need no allocation.
const PING_FRAME: &[u8] = &[0x89, 0x00];

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
    /// Encoded pong for the latest ping (RFC 6455 5.5.3 lets us answer only the latest).
    pong: Option<Bytes>,
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
            pong: None,
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
                        self.pong = Some(frame::encoded(OpCode::Pong, &frame.payload));
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
        if let Some(pong) = self.pong.take() {
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
        self.pong = None;
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
mod tests {
    use super::*;
    use crate::ws::frame::encode_masked;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn wire(frames: &[(OpCode, bool, &[u8])]) -> BytesMut {
        let mut buf = BytesMut::new();
        for &(op, fin, payload) in frames {
            encode_masked(op, fin, payload, MASK, &mut buf);
        }
        buf
    }

    fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        p
    }

    struct Peer {
        conn: Connection,
        t0: Instant,
    }

    impl Peer {
        fn new() -> Self {
            Self::with_config(ConnConfig::default())
        }

        fn with_config(config: ConnConfig) -> Self {
            let t0 = Instant::now();
            Self {
                conn: Connection::new(config, t0),
                t0,
            }
        }

        fn at(&self, s: f64) -> Instant {
            self.t0 + secs(s)
        }

        fn read_at(&mut self, s: f64, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
            let now = self.at(s);
            self.conn.read(buf, now)
        }

        fn send(
            &mut self,
            frames: &[(OpCode, bool, &[u8])],
        ) -> Result<Option<Event>, ProtocolError> {
            let mut buf = wire(frames);
            self.read_at(0.0, &mut buf)
        }

        fn transmit(&mut self) -> Vec<Bytes> {
            std::iter::from_fn(|| self.conn.take_transmit()).collect()
        }

        fn tick(&mut self, s: f64) -> TickAction {
            let now = self.at(s);
            self.conn.on_tick(now)
        }
    }

    fn text(s: &str) -> Event {
        Event::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn rfc_masked_hello_is_a_text_message() {
        let mut p = Peer::new();
        let mut buf = BytesMut::from(
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ][..],
        );
        assert_eq!(p.read_at(0.0, &mut buf), Ok(Some(text("Hello"))));
        assert!(buf.is_empty());
        assert!(p.transmit().is_empty());
        assert!(p.conn.is_open());
    }

    #[test]
    fn binary_message() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Binary, true, &[0, 1, 2, 255])]),
            Ok(Some(Event::Binary(Bytes::from_static(&[0, 1, 2, 255]))))
        );
    }

    #[test]
    fn rfc_fragmented_hello() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[
                (OpCode::Text, false, b"Hel"),
                (OpCode::Continuation, true, b"lo")
            ]),
            Ok(Some(text("Hello")))
        );
        assert_eq!(
            p.conn.fragments.capacity(),
            0,
            "buffer released after the message"
        );
    }

    #[test]
    fn several_messages_in_one_buffer() {
        let mut p = Peer::new();
        let mut buf = wire(&[(OpCode::Text, true, b"one"), (OpCode::Binary, true, b"two")]);
        assert_eq!(p.read_at(0.0, &mut buf), Ok(Some(text("one"))));
        assert_eq!(
            p.read_at(0.0, &mut buf),
            Ok(Some(Event::Binary(Bytes::from_static(b"two"))))
        );
        assert_eq!(p.read_at(0.0, &mut buf), Ok(None));
    }

    #[test]
    fn byte_by_byte_delivery() {
        let mut p = Peer::new();
        let stream = wire(&[
            (OpCode::Text, false, "h€".as_bytes()),
            (OpCode::Ping, true, b"p"),
            (OpCode::Continuation, true, b"!"),
            (OpCode::Binary, true, &[9; 300]),
        ]);
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        for &byte in stream.iter() {
            buf.extend_from_slice(&[byte]);
            while let Some(event) = p.read_at(0.0, &mut buf).unwrap() {
                events.push(event);
            }
        }
        assert_eq!(
            events,
            vec![text("h€!"), Event::Binary(Bytes::from(vec![9; 300]))]
        );
        assert_eq!(p.transmit(), vec![Bytes::from_static(&[0x8a, 0x01, b'p'])]);
    }

    #[test]
    fn rfc_ping_gets_pong_with_same_payload() {
        let mut p = Peer::new();
        assert_eq!(p.send(&[(OpCode::Ping, true, b"Hello")]), Ok(None));
        assert_eq!(
            p.transmit(),
            vec![Bytes::from_static(&[
                0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
            ])]
        );
    }

    #[test]
    fn only_the_latest_ping_is_answered() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Ping, true, b"1"), (OpCode::Ping, true, b"2")]),
            Ok(None)
        );
        assert_eq!(p.transmit(), vec![Bytes::from_static(&[0x8a, 0x01, b'2'])]);
    }

    #[test]
    fn unsolicited_pong_is_accepted_silently() {
        let mut p = Peer::new();
        assert_eq!(p.send(&[(OpCode::Pong, true, b"x")]), Ok(None));
        assert!(p.transmit().is_empty());
    }

    #[test]
    fn control_frames_between_fragments() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[
                (OpCode::Text, false, b"frag"),
                (OpCode::Ping, true, b"ping"),
                (OpCode::Continuation, false, b"men"),
                (OpCode::Pong, true, b""),
                (OpCode::Continuation, true, b"ted"),
            ]),
            Ok(Some(text("fragmented")))
        );
        assert_eq!(p.transmit(), vec![frame::encoded(OpCode::Pong, b"ping")]);
    }

    #[test]
    fn utf8_code_point_split_across_fragments() {
        let euro = "€".as_bytes();
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[
                (OpCode::Text, false, &[b'a', euro[0]]),
                (OpCode::Continuation, false, &euro[1..2]),
                (OpCode::Continuation, false, b""),
                (OpCode::Continuation, true, &euro[2..]),
            ]),
            Ok(Some(text("a€")))
        );
    }

    #[test]
    fn invalid_utf8_fails_fast_before_the_message_ends() {
        let mut p = Peer::new();
        let mut buf = wire(&[(OpCode::Text, false, "κόσμε".as_bytes())]);
        assert_eq!(p.read_at(0.0, &mut buf), Ok(None));
        // Not the final fragment, yet F4 90 is already impossible.
        let mut buf = wire(&[(OpCode::Continuation, false, &[0xF4, 0x90, 0x80, 0x80])]);
        assert_eq!(p.read_at(0.0, &mut buf), Err(ProtocolError::InvalidUtf8));
        assert!(p.conn.is_closed());
        let out = p.transmit();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][..4], &[0x88, out[0].len() as u8 - 2, 0x03, 0xEF]);
        assert_eq!(p.conn.fragments.capacity(), 0);
    }

    #[test]
    fn invalid_utf8_in_single_frame() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Text, true, &[b'a', 0xFF])]),
            Err(ProtocolError::InvalidUtf8)
        );
        // Binary is not checked.
        let mut p = Peer::new();
        assert!(p.send(&[(OpCode::Binary, true, &[0xFF])]).is_ok());
    }

    #[test]
    fn truncated_code_point_at_message_end() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[
                (OpCode::Text, false, b"a"),
                (OpCode::Continuation, true, &[0xE2, 0x82]),
            ]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn continuation_sequencing_errors() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Continuation, true, b"x")]),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Text, false, b"a"), (OpCode::Text, true, b"b")]),
            Err(ProtocolError::ExpectedContinuation)
        );
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Binary, false, b"a"), (OpCode::Binary, false, b"b")]),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    /// Every error `read` can return, the close frame it queues, and the failed state.
    #[test]
    fn every_protocol_error_fails_the_connection_with_its_code() {
        let too_long = [0u8; 126];
        let frame_errors: [(&[u8], ProtocolError); 6] = [
            (&[0x81, 0x00], ProtocolError::UnmaskedFrame),
            (&[0xC1, 0x80, 0, 0, 0, 0], ProtocolError::ReservedBits),
            (&[0x83, 0x80, 0, 0, 0, 0], ProtocolError::ReservedOpcode),
            (
                &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                ProtocolError::InvalidLength,
            ),
            (&[0x09, 0x80, 0, 0, 0, 0], ProtocolError::FragmentedControl),
            (
                &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1],
                ProtocolError::FrameTooLarge,
            ),
        ];
        let mut cases: Vec<(BytesMut, ProtocolError)> = frame_errors
            .iter()
            .map(|(bytes, err)| (BytesMut::from(*bytes), err.clone()))
            .collect();
        cases.extend([
            (
                wire(&[(OpCode::Ping, true, &too_long)]),
                ProtocolError::ControlTooLong,
            ),
            (
                wire(&[(OpCode::Continuation, true, b"")]),
                ProtocolError::UnexpectedContinuation,
            ),
            (
                wire(&[(OpCode::Text, false, b""), (OpCode::Binary, true, b"")]),
                ProtocolError::ExpectedContinuation,
            ),
            (
                wire(&[(OpCode::Close, true, &close_payload(1005, b""))]),
                ProtocolError::InvalidCloseCode,
            ),
            (
                wire(&[(OpCode::Close, true, &[0x03])]),
                ProtocolError::InvalidClosePayload,
            ),
            (
                wire(&[(OpCode::Text, true, &[0xC0, 0x80])]),
                ProtocolError::InvalidUtf8,
            ),
            (
                wire(&[
                    (OpCode::Binary, false, &[0; 40_000]),
                    (OpCode::Continuation, true, &[0; 40_000]),
                ]),
                ProtocolError::MessageTooLarge,
            ),
        ]);
        assert_eq!(cases.len(), 13, "one case per variant");
        for (mut buf, err) in cases {
            let mut p = Peer::new();
            assert_eq!(p.read_at(0.0, &mut buf), Err(err.clone()));
            assert!(p.conn.is_closed() && !p.conn.is_open(), "{err:?}");
            let expected = frame::close_frame(err.close_code(), &err.to_string());
            assert_eq!(p.transmit(), vec![expected], "{err:?}");
            // Failing again, or a late close(), queues nothing more; input is discarded.
            p.conn.fail(&err, p.at(0.0));
            p.conn.close(1000, "", p.at(0.0));
            assert!(p.transmit().is_empty());
            let mut more = wire(&[(OpCode::Text, true, b"late")]);
            assert_eq!(p.read_at(1.0, &mut more), Ok(None));
            assert!(more.is_empty());
        }
    }

    #[test]
    fn close_code_validation() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            let mut p = Peer::new();
            assert_eq!(
                p.send(&[(OpCode::Close, true, &close_payload(code, b"ok"))]),
                Ok(Some(Event::Closed {
                    code: Some(code),
                    reason: "ok".into()
                })),
                "{code}"
            );
            // Echoed with the same code.
            assert_eq!(p.transmit(), vec![frame::close_frame(code, "")]);
            assert!(p.conn.is_closed());
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let mut p = Peer::new();
            assert_eq!(
                p.send(&[(OpCode::Close, true, &close_payload(code, b""))]),
                Err(ProtocolError::InvalidCloseCode),
                "{code}"
            );
        }
    }

    #[test]
    fn close_without_payload_and_with_bad_reason() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Close, true, b"")]),
            Ok(Some(Event::Closed {
                code: None,
                reason: String::new()
            }))
        );
        assert_eq!(p.transmit(), vec![Bytes::from_static(&[0x88, 0x00])]);

        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(
                OpCode::Close,
                true,
                &close_payload(1000, &[0xCE, 0xBA, 0xFF])
            )]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn peer_initiated_close_mid_message() {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[
                (OpCode::Text, false, b"half"),
                (OpCode::Close, true, &close_payload(1001, b"bye")),
            ]),
            Ok(Some(Event::Closed {
                code: Some(1001),
                reason: "bye".into()
            }))
        );
        assert_eq!(p.conn.fragments.capacity(), 0);
        // Anything after the close is discarded.
        let mut buf = wire(&[(OpCode::Continuation, true, b"rest")]);
        assert_eq!(p.read_at(0.0, &mut buf), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn server_initiated_close_handshake() {
        let mut p = Peer::new();
        p.conn.close(1001, "going away", p.at(1.0));
        assert!(!p.conn.is_open());
        assert!(!p.conn.is_closed());
        p.conn.close(1000, "again", p.at(1.5)); // idempotent
        assert_eq!(
            p.transmit(),
            vec![Bytes::from_static(b"\x88\x0c\x03\xe9going away")]
        );
        // Data is ignored while closing, pings are not answered, the peer's close ends it.
        let mut buf = wire(&[
            (OpCode::Text, true, b"ignored"),
            (OpCode::Ping, true, b""),
            (OpCode::Close, true, &close_payload(1001, b"")),
        ]);
        assert_eq!(
            p.read_at(2.0, &mut buf),
            Ok(Some(Event::Closed {
                code: Some(1001),
                reason: String::new()
            }))
        );
        assert!(p.conn.is_closed());
        assert!(p.transmit().is_empty(), "no second close frame");
    }

    #[test]
    fn close_handshake_timeout() {
        let mut p = Peer::new();
        p.conn.close(1000, "", p.at(10.0));
        assert_eq!(p.tick(14.9), TickAction::Idle);
        assert_eq!(p.tick(15.0), TickAction::TimedOut);
    }

    #[test]
    fn closed_connection_times_out_if_never_dropped() {
        let mut p = Peer::new();
        let mut buf = wire(&[(OpCode::Close, true, b"")]);
        assert!(p.read_at(3.0, &mut buf).unwrap().is_some());
        assert_eq!(p.tick(7.9), TickAction::Idle);
        assert_eq!(p.tick(8.0), TickAction::TimedOut);
    }

    #[test]
    fn fragmented_message_dropped_on_close() {
        let mut p = Peer::new();
        assert_eq!(p.send(&[(OpCode::Binary, false, &[1; 100])]), Ok(None));
        assert!(p.conn.fragments.capacity() > 0);
        p.conn.close(1000, "", p.at(0.0));
        assert_eq!(p.conn.fragments.capacity(), 0);
        assert_eq!(p.send(&[(OpCode::Continuation, true, &[2; 10])]), Ok(None));
    }

    #[test]
    fn heartbeat_pings_and_idle_timeout() {
        let mut p = Peer::new();
        assert_eq!(p.tick(24.9), TickAction::Idle);
        assert_eq!(p.tick(25.0), TickAction::PingQueued);
        assert_eq!(p.transmit(), vec![Bytes::from_static(&[0x89, 0x00])]);
        assert_eq!(p.tick(26.0), TickAction::Idle);
        assert_eq!(p.tick(50.0), TickAction::PingQueued);
        assert_eq!(p.tick(59.9), TickAction::Idle);
        assert_eq!(p.tick(60.0), TickAction::TimedOut);
    }

    #[test]
    fn any_frame_refreshes_liveness() {
        let mut p = Peer::new();
        let mut pong = wire(&[(OpCode::Pong, true, b"")]);
        assert_eq!(p.read_at(20.0, &mut pong), Ok(None));
        // Quiet since 20 s: no ping at 25 s, one at 45 s.
        assert_eq!(p.tick(25.0), TickAction::Idle);
        assert_eq!(p.tick(45.0), TickAction::PingQueued);
        let mut msg = wire(&[(OpCode::Text, true, b"hi")]);
        assert!(p.read_at(70.0, &mut msg).unwrap().is_some());
        assert_eq!(p.tick(79.9), TickAction::Idle);
        assert_eq!(p.tick(95.0), TickAction::PingQueued);
        assert_eq!(p.tick(119.9), TickAction::Idle);
        assert_eq!(p.tick(129.9), TickAction::PingQueued);
        assert_eq!(
            p.tick(130.0),
            TickAction::TimedOut,
            "60 s after the message"
        );
    }

    #[test]
    fn no_pings_once_closing() {
        let mut p = Peer::new();
        assert_eq!(p.tick(25.0), TickAction::PingQueued);
        p.conn.close(1000, "", p.at(25.0));
        assert_eq!(p.transmit(), vec![frame::close_frame(1000, "")]);
        assert_eq!(p.tick(26.0), TickAction::Idle);
    }

    #[test]
    fn transmit_order_is_pong_ping_close() {
        let mut p = Peer::new();
        let mut ping = wire(&[(OpCode::Ping, true, b"a")]);
        assert_eq!(p.read_at(10.0, &mut ping), Ok(None));
        assert_eq!(
            p.tick(25.0),
            TickAction::Idle,
            "the ping was a sign of life"
        );
        assert_eq!(p.tick(35.0), TickAction::PingQueued);
        p.conn.close(1000, "", p.at(35.0));
        // close() withdraws the unsent ping; the pong still precedes the close.
        assert_eq!(
            p.transmit(),
            vec![
                frame::encoded(OpCode::Pong, b"a"),
                frame::close_frame(1000, "")
            ]
        );
    }

    #[test]
    fn frame_and_message_limits() {
        let config = ConnConfig {
            limits: FrameLimits {
                max_frame: 16,
                max_message: 32,
            },
            ..ConnConfig::default()
        };
        let mut p = Peer::with_config(config.clone());
        assert_eq!(
            p.send(&[(OpCode::Binary, true, &[0; 17])]),
            Err(ProtocolError::FrameTooLarge)
        );
        assert_eq!(p.transmit()[0][2..4], [0x03, 0xF1]);

        let mut p = Peer::with_config(config);
        assert_eq!(
            p.send(&[
                (OpCode::Text, false, &[b'a'; 16]),
                (OpCode::Continuation, true, &[b'b'; 16]),
            ]),
            Ok(Some(text(&format!("{}{}", "a".repeat(16), "b".repeat(16)))))
        );
        assert_eq!(
            p.send(&[
                (OpCode::Text, false, &[b'a'; 16]),
                (OpCode::Continuation, false, &[b'b'; 16]),
                (OpCode::Continuation, true, b"c"),
            ]),
            Err(ProtocolError::MessageTooLarge)
        );

        // A single frame larger than max_message (max_frame allows it).
        let config = ConnConfig {
            limits: FrameLimits {
                max_frame: 64,
                max_message: 32,
            },
            ..ConnConfig::default()
        };
        let mut p = Peer::with_config(config);
        assert_eq!(
            p.send(&[(OpCode::Binary, true, &[0; 33])]),
            Err(ProtocolError::MessageTooLarge)
        );
    }

    #[test]
    fn idle_connection_is_small_and_unallocated() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 256, "Connection is {size} bytes");
        let p = Peer::new();
        assert_eq!(p.conn.fragments.capacity(), 0);
        assert!(p.conn.pong.is_none() && p.conn.close_frame.is_none());
    }
}
