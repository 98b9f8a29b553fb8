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
    /// The upgrade is complete: the session's state for the driver.
    Upgraded(Box<State<A>>),
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
    let deadline = tokio::time::Instant::now() + engine.config.upgrade_timeout;
    let upgraded = probe.exchange(&engine, &entry, &mut stream, deadline).await;
    match upgraded {
        Ok(Some(state)) => {
            let State {
                session,
                app,
                leftover,
            } = *state;
            if let Err(err) = probe.hand_over(&mut stream, leftover).await {
                tracing::debug!(error = %err, "upgraded WebSocket failed");
                return;
            }
            let state = State {
                session,
                app,
                leftover: VecDeque::new(),
            };
            let conn = entry.conn.clone();
            drop(entry);
            let rest = probe.rbuf.freeze();
            engine.run_websocket(stream, rest, conn, state).await;
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
    ) -> io::Result<Option<Box<State<H::State>>>> {
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
                    Step::Upgraded(state) => return Ok(Some(state)),
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
        for item in leftover {
            let framed = match &item {
                Outbound::Text(text) => frame::encoded(OpCode::Text, text),
                Outbound::Binary(data) => frame::encoded(OpCode::Binary, data),
                Outbound::Frame(frame) => frame.clone(),
                _ => continue,
            };
            stream.write_all(&framed).await?;
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
        let Some(state) = guard.as_mut() else {
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
        // Wakes a pending GET: after the probe it ends with a noop.
        self.process(entry, state, now);
        if state.session.transport() == Transport::WebSocket {
            let taken = guard.take();
            drop(guard);
            super::write(&self.polling).remove(&entry.conn.sid);
            entry.wake.notify_one();
            return match taken {
                Some(state) => Step::Upgraded(state),
                None => Step::Refused(CLOSE_PROBE_FAILED, "session gone".to_owned()),
            };
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
