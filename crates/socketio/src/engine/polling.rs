//! HTTP long-polling: the handshake, the `GET` that waits for packets, the `POST` that brings
//! the client's, what happens when either is aborted, and the shared heartbeat's visit.
//!
//! A `GET` is the only reader of a polling session's queue: it moves the queued packets to
//! the session's `leftover` and answers with as many as fit in `maxPayload`. The other paths
//! look at the queue only once it is closing, to see a close request or an overflow.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::Body;
use roomcast_engine::body::BodyError;
use roomcast_engine::Outbound;

use super::{http, EngineConn, EngineHandler, EngineIo, Entry, PendingSlot, Resp, State};
use crate::engineio::payload::SEPARATOR;
use crate::engineio::{CloseReason, Error, GetReply, Packet, Transport};

/// A `leftover` buffer larger than this is released once empty: an idle session keeps none.
const KEEP_CAPACITY: usize = 16;

impl<H: EngineHandler> EngineIo<H> {
    /// A polling handshake: a new session, answered with its open packet (and whatever the
    /// handler queued on open, within `maxPayload`).
    pub(super) fn open_polling(&self, req: ::http::request::Parts, slot: PendingSlot) -> Resp {
        let now = Instant::now();
        let (conn, mut state) = self.new_session(Transport::Polling, req, slot, now);
        self.drain(&mut state, &conn, now, true);
        let body = encode_batch(&mut state.leftover, self.config.max_payload);
        let sid = conn.sid;
        super::write(&self.polling).insert(sid, Arc::new(Entry::new(conn, state)));
        http::payload(body)
    }

    /// A polling `GET`: answered at once when packets are queued, else when one is, when the
    /// session closes or when a WebSocket takes over; aborting it closes the session.
    pub(super) async fn get(self: &Arc<Self>, entry: Arc<Entry<H::State>>) -> Resp {
        let mut pending = PendingGet {
            engine: self,
            entry: &entry,
            answered: false,
        };
        let mut deadline = {
            let mut guard = entry.lock();
            let Some(state) = guard.state.as_mut() else {
                pending.answered = true;
                return http::error(Error::TransportMismatch);
            };
            let now = Instant::now();
            // Deadlines first: a client back after its ping timeout finds its session closed.
            state.session.on_tick(now);
            if let Err(err) = state.session.on_get(now) {
                // A duplicate closes the session: the GET already pending gets the close.
                self.process(&entry, state, now);
                pending.answered = true;
                return http::error(err);
            }
            if let Some(answer) = self.answer(&entry, state, now) {
                pending.answered = true;
                return answer;
            }
            state.session.get_deadline()
        };
        loop {
            // A push, close or overflow notifies the queue; probes and upgrades wake
            // `entry.wake`. Both keep a permit when nobody waits, so nothing is missed
            // between the check above and this wait.
            let held = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = entry.conn.queue.notified() => {}
                () = entry.wake.notified() => {}
                () = held => {}
            }
            let mut guard = entry.lock();
            let Some(state) = guard.state.as_mut() else {
                // A WebSocket took over while this GET waited.
                pending.answered = true;
                return match guard.handoff.take() {
                    Some(GetReply::Refused(err)) => http::error(err),
                    _ => http::payload(Bytes::from_static(b"6")),
                };
            };
            let now = Instant::now();
            if let Some(answer) = self.answer(&entry, state, now) {
                pending.answered = true;
                return answer;
            }
            deadline = state.session.get_deadline();
        }
    }

    /// A polling `POST`: its body is read whole (at most `maxPayload` bytes, within the body
    /// deadline and the shared budget of bytes in flight), then its packets go to the
    /// session.
    pub(super) async fn post<B>(self: &Arc<Self>, entry: Arc<Entry<H::State>>, body: B) -> Resp
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        {
            let mut guard = entry.lock();
            let Some(state) = guard.state.as_mut() else {
                return http::error(Error::TransportMismatch);
            };
            let now = Instant::now();
            state.session.on_tick(now);
            let started = state.session.begin_post(now);
            self.process(&entry, state, now);
            if let Err(err) = started {
                return http::error(err);
            }
        }
        let mut pending = PendingPost {
            engine: self,
            entry: &entry,
            read: false,
        };
        let read = roomcast_engine::body::read(
            body,
            self.config.max_payload,
            self.config.body_timeout,
            &self.config.body_budget,
        )
        .await;
        pending.read = true;
        let mut guard = entry.lock();
        let Some(state) = guard.state.as_mut() else {
            // Upgraded while the body was read: the client should have waited for the POST.
            return http::error(Error::TransportMismatch);
        };
        let now = Instant::now();
        let result = match read {
            Ok(body) => state.session.on_post(body, now),
            Err(BodyError::TooLarge) => Err(state.session.on_error(Error::PayloadTooLarge, now)),
            Err(BodyError::Timeout) => Err(state.session.on_error(Error::BodyTimeout, now)),
            Err(BodyError::Busy) => Err(state.session.on_error(Error::BodiesBusy, now)),
            Err(err) => {
                tracing::debug!(error = %err, "polling POST body not read");
                state.session.on_request_aborted(now);
                Err(Error::SessionClosed)
            }
        };
        self.process(&entry, state, now);
        match result {
            Ok(()) => http::post_ok(),
            Err(err) => http::error(err),
        }
    }

    /// The shared heartbeat's visit to a polling session.
    pub(super) fn tick_polling(&self, entry: &Entry<H::State>, now: Instant) {
        let mut guard = entry.lock();
        let Some(state) = guard.state.as_mut() else {
            return;
        };
        state.session.on_tick(now);
        self.handler.on_tick(&mut state.app, &entry.conn, now);
        self.process(entry, state, now);
    }

    /// Settles the session after an input: sees a close request or an overflow of the queue,
    /// runs the handler on what the session produced, and forgets the session once it owes
    /// nothing more. A close wakes the pending `GET` through the queue's close request; a
    /// caller that changes anything else a `GET` waits for wakes it with `entry.wake`.
    pub(super) fn process(
        &self,
        entry: &Entry<H::State>,
        state: &mut State<H::State>,
        now: Instant,
    ) {
        self.drain(state, &entry.conn, now, false);
        let pumped = self.pump(state, &entry.conn);
        if let Some(reason) = pumped.closed {
            closed(state, &entry.conn, reason);
        }
        if state.session.is_finished() {
            self.forget(entry.conn.sid);
        }
    }

    /// [`process`](Self::process), then the answer for the pending `GET`, if it has one.
    fn answer(
        &self,
        entry: &Entry<H::State>,
        state: &mut State<H::State>,
        now: Instant,
    ) -> Option<Resp> {
        self.drain(state, &entry.conn, now, true);
        self.process(entry, state, now);
        let reply = state.session.poll_get(!state.leftover.is_empty(), now)?;
        let answer = match reply {
            GetReply::Data => {
                let mut batch = encode_batch(&mut state.leftover, self.config.max_payload);
                let fits = batch.len() + 2 <= self.config.max_payload;
                if state.leftover.is_empty() && fits && state.session.take_close_with_data() {
                    // The server closed the session and this is the last of its packets: the
                    // close goes with them, so that no further GET is needed (after a
                    // shutdown, none may reach this server).
                    let mut with_close = BytesMut::from(&batch[..]);
                    with_close.put_u8(SEPARATOR);
                    Packet::Close.encode_text(&mut with_close);
                    batch = with_close.freeze();
                }
                http::payload(batch)
            }
            GetReply::Refused(err) => http::error(err),
            other => http::payload(Bytes::from_static(other.body().unwrap_or(b"6"))),
        };
        if state.session.is_finished() {
            self.forget(entry.conn.sid);
        }
        Some(answer)
    }

    /// Moves the queue's packets to `leftover`: for a `GET` once the previous batch is sent,
    /// and for anyone once the queue is closing, to act on a close request (the session
    /// closes after what is queued) or an overflow (it closes at once).
    fn drain(&self, state: &mut State<H::State>, conn: &EngineConn, now: Instant, for_get: bool) {
        let closing = conn.queue.is_closing();
        if !(closing || for_get && state.leftover.is_empty()) {
            return;
        }
        let from = state.leftover.len();
        let drained = conn.queue.drain(&mut state.leftover);
        self.handler
            .on_outgoing(&state.app, &mut state.leftover, from);
        if drained.overflowed {
            state.session.on_slow_consumer(now);
        } else if let Some(close) = drained.close {
            state.leftover.extend(close.last_message);
            state.session.close(now);
        }
    }
}

/// A polling session closed: nothing more may be queued, and unless the server closed it,
/// nothing queued is delivered.
fn closed<A>(state: &mut State<A>, conn: &EngineConn, reason: CloseReason) {
    conn.close_with(super::close_code(reason), reason.as_str());
    if reason != CloseReason::ServerClose {
        state.leftover.clear();
        let _ = conn.queue.drain(&mut state.leftover);
        state.leftover = VecDeque::new();
    }
}

/// Encodes packets from the front of `items` into one payload of at most `max_payload` bytes
/// (the first packet always goes, however large) and removes them. Complete WebSocket frames
/// cannot be sent over polling: they are dropped.
pub(super) fn encode_batch(items: &mut VecDeque<Outbound>, max_payload: usize) -> Bytes {
    let mut out = BytesMut::new();
    let mut taken = 0usize;
    while let Some(item) = items.front() {
        let len = match item {
            Outbound::Text(text) => text.len(),
            Outbound::Binary(data) => {
                1 + base64::encoded_len(data.len(), true).unwrap_or(usize::MAX - 1)
            }
            _ => {
                tracing::warn!("a WebSocket frame was queued to a polling session; dropped");
                items.pop_front();
                continue;
            }
        };
        let separator = usize::from(taken > 0);
        if taken > 0 && out.len() + separator + len > max_payload {
            break;
        }
        if separator == 1 {
            out.put_u8(SEPARATOR);
        }
        super::group::put_record(item, &mut out);
        items.pop_front();
        taken += 1;
    }
    if items.is_empty() && items.capacity() > KEEP_CAPACITY {
        *items = VecDeque::new();
    }
    out.freeze()
}

/// A `GET` that has not been answered yet: dropped that way (hyper drops the request's
/// future when the client goes away), it closes the session.
struct PendingGet<'a, H: EngineHandler> {
    engine: &'a EngineIo<H>,
    entry: &'a Entry<H::State>,
    answered: bool,
}

impl<H: EngineHandler> Drop for PendingGet<'_, H> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut guard = self.entry.lock();
        if let Some(state) = guard.state.as_mut() {
            if state.session.is_get_pending() {
                let now = Instant::now();
                state.session.on_request_aborted(now);
                self.engine.process(self.entry, state, now);
            }
        }
    }
}

/// A `POST` whose body is being read: dropped before the end, it closes the session.
struct PendingPost<'a, H: EngineHandler> {
    engine: &'a EngineIo<H>,
    entry: &'a Entry<H::State>,
    read: bool,
}

impl<H: EngineHandler> Drop for PendingPost<'_, H> {
    fn drop(&mut self) {
        if self.read {
            return;
        }
        let mut guard = self.entry.lock();
        if let Some(state) = guard.state.as_mut() {
            let now = Instant::now();
            state.session.on_request_aborted(now);
            self.engine.process(self.entry, state, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Outbound {
        Outbound::Text(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn batches_join_text_and_base64_binary() {
        let mut items = VecDeque::from([
            text("4hello"),
            Outbound::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            text("2"),
        ]);
        assert_eq!(
            encode_batch(&mut items, 1000),
            &b"4hello\x1ebAQIDBA==\x1e2"[..]
        );
        assert!(items.is_empty());
    }

    #[test]
    fn batches_stop_at_max_payload() {
        let mut items = VecDeque::from([text("4aaaa"), text("4bbbb"), text("4cccc")]);
        // "4aaaa" is 5 bytes, each further packet 6 with its separator.
        assert_eq!(encode_batch(&mut items, 11), &b"4aaaa\x1e4bbbb"[..]);
        assert_eq!(items.len(), 1);
        // The first packet goes whatever its size.
        assert_eq!(encode_batch(&mut items, 1), &b"4cccc"[..]);
        assert_eq!(encode_batch(&mut items, 1), &b""[..]);
    }

    #[test]
    fn frames_are_dropped_from_polling_batches() {
        let mut items = VecDeque::from([
            Outbound::Frame(Bytes::from_static(b"\x81\x01x")),
            text("4x"),
        ]);
        assert_eq!(encode_batch(&mut items, 100), &b"4x"[..]);
    }
}
