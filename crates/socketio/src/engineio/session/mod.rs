//! One Engine.IO session as a state machine without sockets, clock or data buffer: the
//! polling rules (at most one pending `GET` and one `POST`), the upgrade to WebSocket
//! (`2probe`, `3probe`, `5`), the server's heartbeat and the close rules. Requests, packets
//! and `now` go in; events, the packets the session owes, and the decisions on pending
//! requests come out.
//!
//! The data for the client lives outside, in the owner's outgoing queue: the session only
//! says when a pending `GET` may take it ([`Session::poll_get`]). The owner drives it: after
//! any input it appends [`Session::poll_transmit`] to that queue, drains
//! [`Session::poll_event`], writes [`Session::poll_probe_reply`] to a probing WebSocket, and
//! calls [`Session::on_tick`] at [`Session::poll_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::Error;
use super::handshake::{OpenData, Sid, Transport};
use super::packet::{Packet, PROBE};
use super::payload::decode_payload;

#[cfg(test)]
mod tests;
mod types;

pub use types::{CloseReason, Event, GetReply, SessionConfig};

/// The answer to a successful `POST`.
pub const POST_OK: &[u8] = b"ok";

/// How long a `GET` sent after the probe was answered, with nothing queued for it, waits for
/// the upgrade to complete. A client pauses polling to upgrade, so such a `GET` raced the
/// client's own `5`: held this long, it is refused once the upgrade completes, as any later
/// `GET`, whichever of the two connections the server read first. Packets queued for it go
/// out at once instead: socket.io-client sends `5` only once that `GET` has completed, so
/// holding it would hold the upgrade and every packet with it.
const LATE_GET_HOLD: Duration = Duration::from_millis(100);

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
        reason: CloseReason,
        /// Nothing more is owed to the client: the session can be dropped.
        done: bool,
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
    /// The pending `GET` arrived after the probe: it waits until then for the upgrade.
    late_get: Option<Instant>,
    post_active: bool,
    /// `3probe` is owed to the probing WebSocket.
    probe_reply: bool,
    /// Packets the session itself owes the client (open, pings), for the outgoing queue.
    transmit: VecDeque<Packet>,
    events: VecDeque<Event>,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
}

impl Session {
    /// A session opened at `now` over `transport`; its open packet is the first
    /// [`poll_transmit`](Self::poll_transmit). For polling, the handshake request is answered
    /// with that packet alone; the session's first `GET` is the next one.
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
            late_get: None,
            post_active: false,
            probe_reply: false,
            transmit: VecDeque::from([Packet::Open(open.to_json())]),
            events: VecDeque::new(),
            pong_deadline: None,
        }
    }

    /// The session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The session's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
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

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Closed { reason, .. } => Some(reason),
            Phase::Open | Phase::Upgrading { .. } => None,
        }
    }

    /// Whether the session is closed and owes the client nothing more: drop it.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Closed { done: true, .. })
    }

    /// Whether a polling `GET` waits for its answer.
    pub fn is_get_pending(&self) -> bool {
        self.get_pending
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        release_if_empty(&mut self.events);
        event
    }

    /// The next packet the session owes the client (the open packet, pings), to append to
    /// the outgoing queue whatever the transport.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        let packet = self.transmit.pop_front();
        release_if_empty(&mut self.transmit);
        packet
    }

    /// When [`on_tick`](Self::on_tick) must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let heartbeat = self.pong_deadline.unwrap_or(self.next_ping);
        match self.phase {
            Phase::Open => Some(heartbeat),
            Phase::Upgrading { deadline, .. } => Some(heartbeat.min(deadline)),
            Phase::Closed { done: true, .. } => None,
            Phase::Closed { at, .. } => Some(at + self.config.close_timeout),
        }
    }

    /// Advances the clock: pings, the pong deadline, the upgrade deadline, and the end of a
    /// closed session's grace period.
    ///
    /// The pong deadline counts from when the ping was due, not from when this call noticed:
    /// the heartbeat keeps its schedule however coarse the caller's timer is.
    pub fn on_tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed { at, reason, .. } => {
                if now >= at + self.config.close_timeout {
                    self.phase = Phase::Closed {
                        at,
                        reason,
                        done: true,
                    };
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
                self.transmit.push_back(Packet::Ping(Bytes::new()));
                self.pong_deadline = Some(self.next_ping + self.config.ping_timeout);
            }
            None => {}
        }
    }

    /// A polling `GET` arrived; it waits until [`poll_get`](Self::poll_get) answers it.
    ///
    /// A second `GET` while one is pending closes the session with [`Error::DuplicateGet`]:
    /// answer the second with the error and the first with its `poll_get` (a close packet).
    /// After a server close, one more `GET` is taken to deliver the last packets; after a
    /// client close, one more is answered with a noop (it raced the close packet).
    pub fn on_get(&mut self, now: Instant) -> Result<(), Error> {
        self.check_polling(true)?;
        if self.get_pending {
            return Err(self.fail(Error::DuplicateGet, now));
        }
        self.get_pending = true;
        if let Phase::Upgrading { probed: true, .. } = self.phase {
            self.late_get = Some(now + LATE_GET_HOLD);
        }
        Ok(())
    }

    /// When a pending `GET` held during an upgrade gets its answer (a noop) if neither the
    /// upgrade completed nor packets were queued by then: call [`poll_get`](Self::poll_get)
    /// again at that time.
    pub fn get_deadline(&self) -> Option<Instant> {
        self.late_get
    }

    /// How to answer the pending `GET` at `now`, given whether packets are queued for the
    /// client; `None` while it must wait (or none is pending). Any answer given ends the
    /// `GET`.
    pub fn poll_get(&mut self, has_data: bool, now: Instant) -> Option<GetReply> {
        if !self.get_pending {
            return None;
        }
        let reply = match self.phase {
            Phase::Closed {
                reason: CloseReason::ClientClose,
                ..
            } => GetReply::Noop,
            Phase::Closed {
                reason: CloseReason::ServerClose,
                ..
            } if has_data => GetReply::Data,
            Phase::Closed { .. } => GetReply::Close,
            Phase::Upgrading { probed: true, .. } => match self.late_get {
                Some(_) if has_data => GetReply::Data,
                Some(deadline) if now < deadline => return None,
                _ => GetReply::Noop,
            },
            Phase::Open if self.transport == Transport::WebSocket => match self.late_get {
                Some(_) => GetReply::Refused(Error::TransportMismatch),
                None => GetReply::Noop,
            },
            Phase::Open | Phase::Upgrading { .. } if has_data => GetReply::Data,
            Phase::Open | Phase::Upgrading { .. } => return None,
        };
        self.get_pending = false;
        self.late_get = None;
        if reply != GetReply::Data {
            self.set_done();
        }
        Some(reply)
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

    /// The client sent something that could not be read before reaching the session: a
    /// WebSocket frame that is not a packet, a `POST` body too large to read whole. The
    /// session closes with `err`, which is returned.
    pub fn on_error(&mut self, err: Error, now: Instant) -> Error {
        self.post_active = false;
        self.fail(err, now)
    }

    /// A polling request ended before its answer was delivered (client gone): the session
    /// closes, as the reference server does.
    pub fn on_request_aborted(&mut self, now: Instant) {
        if self.transport == Transport::Polling {
            self.get_pending = false;
            self.late_get = None;
            self.post_active = false;
            self.shutdown(CloseReason::TransportClose, now);
        }
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

    /// The `3probe` owed to the probing WebSocket, once: written on that WebSocket directly,
    /// not queued, since the queue still belongs to polling until the upgrade completes.
    pub fn poll_probe_reply(&mut self) -> Option<Packet> {
        std::mem::take(&mut self.probe_reply).then(Packet::probe_pong)
    }

    /// The WebSocket closed: the transport's closes the session, the probe's cancels the
    /// upgrade.
    pub fn on_websocket_closed(&mut self, now: Instant) {
        if self.is_upgrading() {
            self.cancel_upgrade();
        } else if self.transport == Transport::WebSocket {
            self.shutdown(CloseReason::TransportClose, now);
        }
    }

    /// The outgoing queue overflowed: the client is too slow, the session closes.
    pub fn on_slow_consumer(&mut self, now: Instant) {
        self.shutdown(CloseReason::SlowConsumer, now);
    }

    /// Closes the session from the server side. Over polling, what is queued, then a close
    /// packet, still go to the pending or next `GET`, within `close_timeout`.
    pub fn close(&mut self, now: Instant) {
        self.shutdown(CloseReason::ServerClose, now);
    }

    /// Closes the session from the server side for good, as for a shutdown: over polling, a
    /// pending `GET` still gets what is queued and the close packet, but without one nothing
    /// more is owed: the session is finished at once, and the client's next request finds it
    /// unknown (then it reconnects) instead of keeping the session for `close_timeout`.
    pub fn close_now(&mut self, now: Instant) {
        self.shutdown(CloseReason::ServerClose, now);
        if !self.get_pending {
            self.set_done();
        }
    }

    /// After a server close, the `GET` answered with [`GetReply::Data`] took the last packets
    /// queued for the client: whether the close packet goes at the end of the same payload
    /// (then the session is finished), rather than waiting for one more `GET`.
    pub fn take_close_with_data(&mut self) -> bool {
        let closing = matches!(
            self.phase,
            Phase::Closed {
                reason: CloseReason::ServerClose,
                done: false,
                ..
            }
        );
        if closing && !self.get_pending {
            self.set_done();
        }
        closing && !self.get_pending
    }

    /// Whether a polling request may go on: the session must be on polling and open, except
    /// for the `GET` that takes the last packets after a server close.
    fn check_polling(&self, get: bool) -> Result<(), Error> {
        if self.transport != Transport::Polling {
            return Err(Error::TransportMismatch);
        }
        match self.phase {
            Phase::Open | Phase::Upgrading { .. } => Ok(()),
            Phase::Closed {
                reason: CloseReason::ServerClose | CloseReason::ClientClose,
                done: false,
                ..
            } if get => Ok(()),
            Phase::Closed { .. } => Err(Error::SessionClosed),
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
        // Over polling a pending GET is owed an answer (`1`, or `6` for a client close).
        // After a server close the next GET is owed the last packets; after a client close,
        // a GET sent before the close packet may still be on its way, and ends with `6`
        // rather than an error. Over WebSocket the owner closes the socket: nothing more
        // goes through the session.
        let owes = self.transport == Transport::Polling
            && match reason {
                CloseReason::ServerClose | CloseReason::ClientClose => true,
                CloseReason::TransportClose => false,
                CloseReason::PingTimeout | CloseReason::SlowConsumer | CloseReason::Error(_) => {
                    self.get_pending
                }
            };
        self.phase = Phase::Closed {
            at: now,
            reason,
            done: !owes,
        };
        self.transmit.clear();
        self.pong_deadline = None;
        self.events.push_back(Event::Closed(reason));
    }

    fn set_done(&mut self) {
        if let Phase::Closed { at, reason, .. } = self.phase {
            self.phase = Phase::Closed {
                at,
                reason,
                done: true,
            };
        }
    }

    fn cancel_upgrade(&mut self) {
        self.phase = Phase::Open;
        self.probe_reply = false;
        // A held GET goes back to waiting for data.
        self.late_get = None;
        self.events.push_back(Event::UpgradeCancelled);
    }
}

/// Frees an emptied queue's buffer: an idle session holds none.
fn release_if_empty<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
}
