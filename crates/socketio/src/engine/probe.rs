//! The upgrade probe. A WebSocket naming a polling session sends `2probe`, gets `3probe`, and
//! completes the upgrade with `5`. Until then the session's queue still belongs to polling,
//! so this phase runs a small read loop of its own over the engine's WebSocket state machine
//! and writes only the probe's answers. On `5` the socket, the bytes read past it and the
//! session's state go to the engine's driver, which writes the queue from then on: what
//! polling had taken from the queue but not sent goes first, on this socket, so nothing is
//! lost or reordered.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use roomcast_engine::queue::Drained;
use roomcast_engine::ws::frame::{self, OpCode};
use roomcast_engine::ws::{Connection, Event as WsEvent};
use roomcast_engine::Outbound;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{EngineHandler, EngineIo, Entry, State};
use crate::engineio::{decode_binary, decode_text, Error, Packet, Transport};

/// Bytes read per readiness event.
const READ_CHUNK: usize = 4096;
/// The close code of a probe that did not lead to an upgrade.
const CLOSE_PROBE_FAILED: u16 = 1000;

/// What one packet on the probing WebSocket led to.
enum Step<A> {
    /// Nothing to write yet.
    Continue,
    /// Write this packet (`3probe`).
    Reply(Packet),
    /// The upgrade is complete: the session's state for the driver, with everything taken
    /// from the queue in `leftover`, and what taking it found.
    Upgraded(Box<State<A>>, Drained),
    /// The probe failed: close with this code and reason.
    Refused(u16, String),
}

/// Runs the probe on a freshly upgraded socket, then the session if the upgrade completes.
pub(super) async fn run<H: EngineHandler>(
    engine: Arc<EngineIo<H>>,
    entry: Arc<Entry<H::State>>,
    mut stream: TcpStream,
    prefix: Bytes,
) {
    let mut probe = Probe {
        conn: Connection::new(engine.config.ws.clone(), Instant::now()),
        rbuf: BytesMut::from(&prefix[..]),
    };
    drop(prefix);
    let deadline =
        tokio::time::Instant::now() + crate::config::bounded(engine.config.upgrade_timeout);
    let upgraded = probe.exchange(&engine, &entry, &mut stream, deadline).await;
    match upgraded {
        Ok(Some((mut state, drained))) => {
            let leftover = std::mem::take(&mut state.leftover);
            let conn = entry.conn.clone();
            drop(entry);
            if drained.overflowed {
                // The client fell behind while upgrading: closed as any slow consumer.
                let (code, reason) = engine.driver.slow_consumer;
                probe.conn.close(code, reason, Instant::now());
                let _ = probe.flush_control(&mut stream).await;
                state.session.on_slow_consumer(Instant::now());
                engine.pump(&mut state, &conn);
                engine.forget(conn.sid);
                return;
            }
            if let Some(close) = drained.close {
                // Asked while the queue changed hands: the driver does it after the rest.
                conn.queue.request_close(close);
            }
            if let Err(err) = probe.hand_over(&mut stream, leftover).await {
                tracing::debug!(error = %err, "upgraded WebSocket failed");
                state.session.on_websocket_closed(Instant::now());
                engine.pump(&mut state, &conn);
                engine.forget(conn.sid);
                return;
            }
            let rest = probe.rbuf.freeze();
            engine.run_websocket(stream, rest, conn, *state).await;
        }
        Ok(None) | Err(_) => {
            engine.cancel_upgrade(&entry);
            // Best effort: say why, then drop the socket.
            let _ = probe.flush_control(&mut stream).await;
        }
    }
}

struct Probe {
    conn: Connection,
    rbuf: BytesMut,
}

impl Probe {
    /// Reads and answers the probe's packets until the upgrade completes (`Some`), fails or
    /// times out (`None`).
    async fn exchange<H: EngineHandler>(
        &mut self,
        engine: &EngineIo<H>,
        entry: &Entry<H::State>,
        stream: &mut TcpStream,
        deadline: tokio::time::Instant,
    ) -> io::Result<Option<(Box<State<H::State>>, Drained)>> {
        loop {
            loop {
                let now = Instant::now();
                let event = match self.conn.read(&mut self.rbuf, now) {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    // The connection failed itself; its close frame is queued.
                    Err(_) => return Ok(None),
                };
                let packet = match event {
                    WsEvent::Text(text) => decode_text(text),
                    WsEvent::Binary(data) => Ok(decode_binary(data)),
                    WsEvent::Closed { .. } => return Ok(None),
                    _ => continue,
                };
                match engine.probe_step(entry, packet, now) {
                    Step::Continue => {}
                    Step::Reply(packet) => {
                        let mut text = BytesMut::new();
                        packet.encode(&mut text);
                        stream
                            .write_all(&frame::encoded(OpCode::Text, &text))
                            .await?;
                    }
                    Step::Upgraded(state, drained) => return Ok(Some((state, drained))),
                    Step::Refused(code, reason) => {
                        self.conn.close(code, &reason, now);
                        return Ok(None);
                    }
                }
            }
            self.flush_control(stream).await?;
            tokio::select! {
                ready = stream.readable() => {
                    ready?;
                    self.rbuf.reserve(READ_CHUNK);
                    match stream.try_read_buf(&mut self.rbuf) {
                        Ok(0) => return Ok(None),
                        Ok(_) => {}
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        Err(err) => return Err(err),
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.conn.close(CLOSE_PROBE_FAILED, "upgrade timeout", Instant::now());
                    return Ok(None);
                }
            }
        }
    }

    /// Writes the control frames the connection owes (pongs, a close).
    async fn flush_control(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        while let Some(control) = self.conn.take_transmit() {
            stream.write_all(&control).await?;
        }
        Ok(())
    }

    /// Writes what polling had taken from the queue but not sent, before the driver takes
    /// over the queue.
    async fn hand_over(
        &mut self,
        stream: &mut TcpStream,
        leftover: VecDeque<Outbound>,
    ) -> io::Result<()> {
        self.flush_control(stream).await?;
        for item in &leftover {
            stream.write_all(&super::group::to_websocket(item)).await?;
        }
        Ok(())
    }
}

impl<H: EngineHandler> EngineIo<H> {
    /// One packet from the probing WebSocket, under the session's lock.
    fn probe_step(
        &self,
        entry: &Entry<H::State>,
        packet: Result<Packet, Error>,
        now: Instant,
    ) -> Step<H::State> {
        let mut guard = entry.lock();
        let Some(state) = guard.state.as_mut() else {
            return Step::Refused(CLOSE_PROBE_FAILED, "session gone".to_owned());
        };
        let result = match packet {
            Ok(packet) => state.session.on_packet(packet, now),
            Err(err) => {
                // Not a packet: the probe fails, the session goes on over polling.
                state.session.on_websocket_closed(now);
                Err(err)
            }
        };
        let reply = state.session.poll_probe_reply();
        self.process(entry, state, now);
        if reply.is_some() {
            // A pending GET ends with a noop once the probe is answered.
            entry.wake.notify_one();
        }
        if state.session.transport() == Transport::WebSocket {
            // A GET still pending gets its answer from the entry: the state leaves with us.
            guard.handoff = state.session.poll_get(false, now);
            let Some(mut state) = guard.state.take() else {
                return Step::Refused(CLOSE_PROBE_FAILED, "session gone".to_owned());
            };
            drop(guard);
            super::write(&self.polling).remove(&entry.conn.sid);
            entry.wake.notify_one();
            // From here on producers encode groups for the WebSocket; what they queued for
            // polling is taken now and rewritten as frames before the driver starts. It goes
            // past the application first, as every item a transport takes does (a socket of
            // an alias renames the packets queued under its namespace's own name).
            let from = state.leftover.len();
            let drained = {
                let _switching = super::write(&entry.conn.link.switch);
                entry
                    .conn
                    .link
                    .websocket
                    .store(true, std::sync::atomic::Ordering::Release);
                entry.conn.queue.drain(&mut state.leftover)
            };
            self.handler
                .on_outgoing(&state.app, &mut state.leftover, from);
            return Step::Upgraded(state, drained);
        }
        match (result, reply) {
            (Err(err), _) => Step::Refused(
                err.close_code()
                    .unwrap_or(roomcast_engine::ws::error::CLOSE_PROTOCOL_ERROR),
                err.to_string(),
            ),
            (Ok(()), Some(reply)) => Step::Reply(reply),
            (Ok(()), None) if state.session.is_upgrading() => Step::Continue,
            (Ok(()), None) => Step::Refused(CLOSE_PROBE_FAILED, "upgrade cancelled".to_owned()),
        }
    }
}
