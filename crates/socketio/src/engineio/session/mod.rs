//! One Engine.IO session as a state machine without sockets or clock: the polling transport
//! (at most one pending `GET` and one `POST`), the upgrade to WebSocket (`2probe`, `3probe`,
//! `5`), the server's heartbeat and the bounded outgoing buffer. Requests, packets and `now`
//! go in; events, payloads and packets come out.
//!
//! The caller drives it: after any input it drains [`Session::poll_event`], answers a pending
//! `GET` with [`Session::take_batch`] when that returns a body, writes what
//! [`Session::poll_outgoing`] returns to the WebSocket, and calls [`Session::on_tick`] at
//! [`Session::poll_timeout`].

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::error::Error;
use super::handshake::{OpenData, Sid, Transport};
use super::packet::{Packet, PROBE};
use super::payload::{decode_payload, encode_payload};

#[cfg(test)]
mod tests;
mod types;

use types::Refusal;
pub use types::{CloseReason, Event, SendError, SessionConfig};

/// The answer to a successful `POST`.
pub const POST_OK: &[u8] = b"ok";

/// What a buffered data packet costs beyond its data: its slot in the queue. Counting it
/// bounds a flood of empty messages as well as a few large ones.
const PACKET_OVERHEAD: usize = std::mem::size_of::<Packet>();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// A WebSocket with our sid is probing; only while the transport is polling.
    Upgrading {
        deadline: Instant,
        probed: bool,
    },
    Closed {
        at: Instant,
    },
}

/// One Engine.IO session (server side).
#[derive(Debug)]
pub struct Session {
    sid: Sid,
    config: SessionConfig,
    transport: Transport,
    phase: Phase,
    get_pending: bool,
    post_active: bool,
    /// `3probe` is owed to the probing WebSocket.
    probe_reply: bool,
    outgoing: VecDeque<Packet>,
    /// Cost of the data packets in `outgoing`; control packets are not counted.
    buffered: usize,
    events: VecDeque<Event>,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
}

impl Session {
    /// A session opened at `now` over `transport`; its open packet is the first outgoing
    /// packet. For polling, the handshake request is the first `GET`: call
    /// [`on_get`](Self::on_get) and answer it with [`take_batch`](Self::take_batch).
    pub fn new(sid: Sid, transport: Transport, config: SessionConfig, now: Instant) -> Self {
        let upgrades = if transport == Transport::Polling && config.allow_upgrades {
            vec![Transport::WebSocket]
        } else {
            Vec::new()
        };
        let open = OpenData {
            sid,
            upgrades,
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            max_payload: config.max_payload,
        };
        Self {
            sid,
            next_ping: now + config.ping_interval,
            config,
            transport,
            phase: Phase::Open,
            get_pending: false,
            post_active: false,
            probe_reply: false,
            outgoing: VecDeque::from([Packet::Open(open.to_json())]),
            buffered: 0,
            events: VecDeque::new(),
            pong_deadline: None,
        }
    }

    /// The session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The current transport (polling until an upgrade completes).
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether a WebSocket is probing.
    pub fn is_upgrading(&self) -> bool {
        matches!(self.phase, Phase::Upgrading { .. })
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. })
    }

    /// Whether the session is closed and has nothing left to deliver: drop it.
    pub fn is_finished(&self) -> bool {
        self.is_closed() && self.outgoing.is_empty()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`on_tick`](Self::on_tick) must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let heartbeat = self.pong_deadline.unwrap_or(self.next_ping);
        match self.phase {
            Phase::Open => Some(heartbeat),
            Phase::Upgrading { deadline, .. } => Some(heartbeat.min(deadline)),
            Phase::Closed { at } => {
                (!self.outgoing.is_empty()).then(|| at + self.config.close_timeout)
            }
        }
    }

    /// Advances the clock: pings, the pong deadline, the upgrade deadline, and the end of a
    /// closed session's grace period.
    pub fn on_tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed { at } => {
                if now >= at + self.config.close_timeout {
                    self.clear_outgoing();
                }
                return;
            }
            Phase::Upgrading { deadline, .. } if now >= deadline => self.cancel_upgrade(),
            Phase::Open | Phase::Upgrading { .. } => {}
        }
        match self.pong_deadline {
            Some(deadline) if now >= deadline => self.shutdown(CloseReason::PingTimeout, now),
            Some(_) => {}
            None if now >= self.next_ping => {
                self.outgoing.push_back(Packet::Ping(Bytes::new()));
                self.pong_deadline = Some(now + self.config.ping_timeout);
            }
            None => {}
        }
    }

    /// A polling `GET` arrived; it waits until [`take_batch`](Self::take_batch) answers it.
    ///
    /// A second `GET` while one is pending closes the session with [`Error::DuplicateGet`]:
    /// answer the second with the error and the first with its `take_batch` (a close packet).
    pub fn on_get(&mut self, now: Instant) -> Result<(), Error> {
        self.check_polling(true)?;
        if self.get_pending {
            return Err(self.fail(Error::DuplicateGet, now));
        }
        self.get_pending = true;
        Ok(())
    }

    /// A polling `POST` started; call [`on_post`](Self::on_post) with its body once read. A
    /// second one before that closes the session with [`Error::DuplicatePost`].
    pub fn begin_post(&mut self, now: Instant) -> Result<(), Error> {
        self.check_polling(false)?;
        if self.post_active {
            return Err(self.fail(Error::DuplicatePost, now));
        }
        self.post_active = true;
        Ok(())
    }

    /// A polling `POST` body, answered with [`POST_OK`] on success. A malformed or oversized
    /// payload closes the session.
    pub fn on_post(&mut self, body: Bytes, now: Instant) -> Result<(), Error> {
        self.post_active = false;
        self.check_polling(false)?;
        let packets = match decode_payload(body, self.config.max_payload) {
            Ok(packets) => packets,
            Err(err) => return Err(self.fail(err, now)),
        };
        for packet in packets {
            if self.is_closed() {
                break;
            }
            self.on_transport_packet(packet, now)?;
        }
        Ok(())
    }

    /// A polling request ended before its answer was delivered (client gone): the session
    /// closes, as the reference server does.
    pub fn on_request_aborted(&mut self, now: Instant) {
        if self.transport == Transport::Polling {
            self.get_pending = false;
            self.post_active = false;
            self.shutdown(CloseReason::TransportClose, now);
        }
    }

    /// The body for the pending `GET`, if it can be answered now: buffered packets up to
    /// `max_payload` bytes, or `6` (noop) once an upgrade is probing or done.
    pub fn take_batch(&mut self) -> Option<Bytes> {
        if !self.get_pending {
            return None;
        }
        let upgrading = matches!(self.phase, Phase::Upgrading { probed: true, .. });
        if upgrading || self.transport == Transport::WebSocket {
            self.get_pending = false;
            return Some(Bytes::from_static(b"6"));
        }
        if self.outgoing.is_empty() {
            return None;
        }
        let mut body = BytesMut::new();
        let taken = encode_payload(&self.outgoing, self.config.max_payload, &mut body);
        for packet in self.outgoing.drain(..taken) {
            self.buffered -= cost(&packet);
        }
        self.get_pending = false;
        Some(body.freeze())
    }

    /// A WebSocket naming this session is being opened: it may probe, then upgrade. Refused
    /// (answer the upgrade request with the error) unless the session is open on polling with
    /// upgrades allowed and no other probe.
    pub fn on_upgrade_request(&mut self, now: Instant) -> Result<(), Error> {
        match self.phase {
            Phase::Closed { .. } => Err(Error::SessionClosed),
            Phase::Open if self.transport == Transport::Polling && self.config.allow_upgrades => {
                self.phase = Phase::Upgrading {
                    deadline: now + self.config.upgrade_timeout,
                    probed: false,
                };
                Ok(())
            }
            Phase::Open | Phase::Upgrading { .. } => Err(Error::UpgradeRefused),
        }
    }

    /// A packet from the WebSocket: the transport's, or the probe's during an upgrade.
    ///
    /// On an error, close the WebSocket with [`Error::close_code`]. A bad packet on the
    /// transport closes the session; on the probe, it cancels the upgrade only.
    pub fn on_packet(&mut self, packet: Packet, now: Instant) -> Result<(), Error> {
        match (self.phase, self.transport) {
            (Phase::Closed { .. }, _) => Ok(()),
            (Phase::Upgrading { deadline, probed }, _) => match packet {
                Packet::Ping(data) if !probed && data == PROBE => {
                    self.phase = Phase::Upgrading {
                        deadline,
                        probed: true,
                    };
                    self.probe_reply = true;
                    Ok(())
                }
                Packet::Upgrade if probed => {
                    self.phase = Phase::Open;
                    self.transport = Transport::WebSocket;
                    self.events.push_back(Event::Upgraded);
                    Ok(())
                }
                _ => {
                    self.cancel_upgrade();
                    Err(Error::UnexpectedPacket)
                }
            },
            (Phase::Open, Transport::WebSocket) => self.on_transport_packet(packet, now),
            (Phase::Open, Transport::Polling) => Err(Error::TransportMismatch),
        }
    }

    /// The WebSocket closed: the transport's closes the session, the probe's cancels the
    /// upgrade.
    pub fn on_websocket_closed(&mut self, now: Instant) {
        if self.is_upgrading() {
            self.cancel_upgrade();
        } else if self.transport == Transport::WebSocket {
            self.shutdown(CloseReason::TransportClose, now);
            self.clear_outgoing();
        }
    }

    /// The next packet for the WebSocket: the probe's `3probe`, or once upgraded (or for a
    /// WebSocket-only session) the buffered packets in order.
    pub fn poll_outgoing(&mut self) -> Option<Packet> {
        if std::mem::take(&mut self.probe_reply) {
            return Some(Packet::probe_pong());
        }
        if self.transport != Transport::WebSocket {
            return None;
        }
        let packet = self.outgoing.pop_front()?;
        self.buffered -= cost(&packet);
        Some(packet)
    }

    /// Queues a message or binary packet (the session sends the control packets itself).
    pub fn send(&mut self, packet: Packet) -> Result<(), SendError<Packet>> {
        let cost = cost(&packet);
        match self.admit(cost) {
            Ok(()) => {
                self.buffered += cost;
                self.outgoing.push_back(packet);
                Ok(())
            }
            Err(refusal) => Err(refusal.with(packet)),
        }
    }

    /// Queues packets that must go together (a Socket.IO binary packet and its attachments):
    /// all of them or none.
    pub fn send_all(&mut self, packets: Vec<Packet>) -> Result<(), SendError<Vec<Packet>>> {
        let total = packets.iter().map(cost).sum();
        match self.admit(total) {
            Ok(()) => {
                self.buffered += total;
                self.outgoing.extend(packets);
                Ok(())
            }
            Err(refusal) => Err(refusal.with(packets)),
        }
    }

    /// Whether `cost` more bytes may be buffered. An empty buffer takes anything, so that
    /// the bound limits the backlog, not the size of one message.
    fn admit(&self, cost: usize) -> Result<(), Refusal> {
        if self.is_closed() {
            Err(Refusal::Closed)
        } else if self.buffered > 0 && self.buffered + cost > self.config.max_buffered_bytes {
            Err(Refusal::Full)
        } else {
            Ok(())
        }
    }

    /// Closes the session from the server side: the buffered packets, then a close packet,
    /// are still delivered.
    pub fn close(&mut self, now: Instant) {
        self.shutdown(CloseReason::ServerClose, now);
    }

    /// Whether a polling request may go on: the session must be on polling and, for a `GET`,
    /// still have something to deliver if closed (its last packets); a `POST` needs it open.
    fn check_polling(&self, get: bool) -> Result<(), Error> {
        if self.transport != Transport::Polling {
            Err(Error::TransportMismatch)
        } else if self.is_closed() && (!get || self.outgoing.is_empty()) {
            Err(Error::SessionClosed)
        } else {
            Ok(())
        }
    }

    /// A packet on the current transport.
    fn on_transport_packet(&mut self, packet: Packet, now: Instant) -> Result<(), Error> {
        if packet.data_len() > self.config.max_payload {
            return Err(self.fail(Error::PayloadTooLarge, now));
        }
        match packet {
            Packet::Message(data) => self.events.push_back(Event::Message(data)),
            Packet::Binary(data) => self.events.push_back(Event::Binary(data)),
            Packet::Pong(_) => {
                self.pong_deadline = None;
                self.next_ping = now + self.config.ping_interval;
            }
            Packet::Close => self.shutdown(CloseReason::ClientClose, now),
            Packet::Noop => {}
            // v4 clients never ping (outside the probe), nor open or upgrade here.
            Packet::Ping(_) | Packet::Open(_) | Packet::Upgrade => {
                return Err(self.fail(Error::UnexpectedPacket, now))
            }
        }
        Ok(())
    }

    /// Closes the session because of `err`, and returns it.
    fn fail(&mut self, err: Error, now: Instant) -> Error {
        self.shutdown(CloseReason::Error(err), now);
        err
    }

    fn shutdown(&mut self, reason: CloseReason, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.is_upgrading() {
            self.cancel_upgrade();
        }
        self.phase = Phase::Closed { at: now };
        // Only a server close flushes what is queued; otherwise the client is gone or broken.
        if reason != CloseReason::ServerClose {
            self.clear_outgoing();
        }
        // A close packet answers a pending `GET` (or the next one) and tells the client why
        // the WebSocket closes; when the transport itself is gone, nobody would read it.
        if reason != CloseReason::TransportClose {
            self.outgoing.push_back(Packet::Close);
        }
        self.events.push_back(Event::Closed(reason));
    }

    fn cancel_upgrade(&mut self) {
        self.phase = Phase::Open;
        self.probe_reply = false;
        self.events.push_back(Event::UpgradeCancelled);
    }

    fn clear_outgoing(&mut self) {
        self.outgoing.clear();
        self.buffered = 0;
    }
}

/// What a queued packet counts against `max_buffered_bytes`: data packets only.
fn cost(packet: &Packet) -> usize {
    match packet {
        Packet::Message(data) | Packet::Binary(data) => data.len() + PACKET_OVERHEAD,
        Packet::Open(_)
        | Packet::Close
        | Packet::Ping(_)
        | Packet::Pong(_)
        | Packet::Upgrade
        | Packet::Noop => 0,
    }
}
