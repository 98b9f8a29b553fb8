//! The WebSocket transport: sessions opened over WebSocket, upgrade requests for polling
//! sessions, and the engine driver's [`Handler`] that runs a session once its WebSocket is
//! the transport (the driver writes the session's queue as it is).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use roomcast_engine::driver::{self, Ctx, End, Handler};
use roomcast_engine::ws::{frame, handshake};
use roomcast_engine::Outbound;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{http, probe, EngineConn, EngineHandler, EngineIo, Entry, PendingSlot, Resp, State};
use crate::engineio::{decode_binary, decode_text, Error, Transport};

/// The close of a WebSocket for a session that already has one (1008 policy violation).
const CLOSE_REFUSED: (u16, &str) = (1008, "session already upgraded");

impl<H: EngineHandler> EngineIo<H> {
    /// A WebSocket without a session: a new session over WebSocket, no upgrades.
    pub(super) fn open_websocket<B>(
        self: &Arc<Self>,
        req: &mut ::http::Request<B>,
        slot: PendingSlot,
    ) -> Resp {
        let head = http::head_of(req);
        let engine = self.clone();
        let run = move |stream, prefix| async move {
            let (conn, state) =
                engine.new_session(Transport::WebSocket, head, slot, Instant::now());
            engine.run_websocket(stream, prefix, conn, state).await;
        };
        match roomcast_engine::upgrade::upgrade(req, run) {
            Ok(resp) => resp,
            Err(err) => http::upgrade_refused(&err),
        }
    }

    /// A WebSocket naming a polling session: it probes, then takes the session over.
    pub(super) fn upgrade_session<B>(
        self: &Arc<Self>,
        entry: Arc<Entry<H::State>>,
        req: &mut ::http::Request<B>,
    ) -> Resp {
        // A malformed handshake must not disturb the session.
        if let Err(err) = handshake::check_request(req) {
            return http::upgrade_refused(&err);
        }
        {
            let mut guard = entry.lock();
            let Some(state) = guard.state.as_mut() else {
                return http::error(Error::UpgradeRefused);
            };
            let now = Instant::now();
            state.session.on_tick(now);
            let started = state.session.on_upgrade_request(now);
            self.process(&entry, state, now);
            match started {
                Ok(()) => {}
                // Another WebSocket is probing: this one is accepted, then closed, as the
                // reference server does.
                Err(Error::UpgradeRefused) => return self.refuse_websocket(req),
                Err(err) => return http::error(err),
            }
        }
        let engine = self.clone();
        let probing = entry.clone();
        let run = move |stream, prefix| probe::run(engine, probing, stream, prefix);
        match roomcast_engine::upgrade::upgrade(req, run) {
            Ok(resp) => resp,
            Err(err) => {
                self.cancel_upgrade(&entry);
                http::upgrade_refused(&err)
            }
        }
    }

    /// Accepts a WebSocket that cannot become its session's transport, and closes it at
    /// once.
    pub(super) fn refuse_websocket<B>(&self, req: &mut ::http::Request<B>) -> Resp {
        let run = |mut stream: TcpStream, _prefix: Bytes| async move {
            let close = frame::close_frame(CLOSE_REFUSED.0, CLOSE_REFUSED.1);
            if stream.write_all(&close).await.is_ok() {
                let _ = stream.shutdown().await;
            }
        };
        match roomcast_engine::upgrade::upgrade(req, run) {
            Ok(resp) => resp,
            Err(err) => http::upgrade_refused(&err),
        }
    }

    /// The probing WebSocket is gone: the session goes on over polling.
    pub(super) fn cancel_upgrade(&self, entry: &Entry<H::State>) {
        let mut guard = entry.lock();
        if let Some(state) = guard.state.as_mut() {
            if state.session.is_upgrading() {
                let now = Instant::now();
                state.session.on_websocket_closed(now);
                self.process(entry, state, now);
            }
        }
    }

    /// Runs a session whose transport is this WebSocket until it closes.
    pub(super) async fn run_websocket(
        self: Arc<Self>,
        stream: TcpStream,
        prefix: Bytes,
        conn: EngineConn,
        state: State<H::State>,
    ) {
        let queue = conn.queue.clone();
        let session = driver::Session {
            handler: WsTransport {
                engine: self.clone(),
                conn,
                state,
            },
            queue,
            config: self.driver.clone(),
            stats: self.stats.clone(),
        };
        driver::run(stream, prefix, session).await;
    }
}

/// A session over WebSocket, owned by its connection's task.
struct WsTransport<H: EngineHandler> {
    engine: Arc<EngineIo<H>>,
    conn: EngineConn,
    state: State<H::State>,
}

impl<H: EngineHandler> WsTransport<H> {
    /// Runs the handler on what the session produced; a closed session closes the socket
    /// after what is queued.
    fn settle(&mut self, ctx: &mut Ctx<'_>) {
        let pumped = self.engine.pump(&mut self.state, &self.conn);
        if let Some(reason) = pumped.closed {
            ctx.close(super::close_code(reason), reason.as_str());
        }
    }
}

impl<H: EngineHandler> Handler for WsTransport<H> {
    fn on_text(&mut self, text: Bytes, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        // Errors close the session; `settle` turns that into the close frame.
        let _ = match decode_text(text) {
            Ok(packet) => self.state.session.on_packet(packet, now),
            Err(err) => Err(self.state.session.on_error(err, now)),
        };
        self.settle(ctx);
    }

    fn on_binary(&mut self, data: Bytes, ctx: &mut Ctx<'_>) {
        let _ = self.state.session.on_packet(decode_binary(data), ctx.now());
        self.settle(ctx);
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.state.session.on_tick(now);
        self.engine
            .handler
            .on_tick(&mut self.state.app, &self.conn, now);
        self.settle(ctx);
    }

    fn deadline(&self) -> Option<Instant> {
        let app = self.engine.handler.deadline(&self.state.app);
        self.state
            .session
            .poll_timeout()
            .into_iter()
            .chain(app)
            .min()
    }

    fn on_outgoing(&mut self, pending: &mut VecDeque<Outbound>, from: usize) {
        self.engine
            .handler
            .on_outgoing(&self.state.app, pending, from);
    }

    fn on_close(&mut self, end: &End) {
        let now = Instant::now();
        if end.slow_consumer {
            self.state.session.on_slow_consumer(now);
        } else {
            self.state.session.on_websocket_closed(now);
        }
        self.engine.pump(&mut self.state, &self.conn);
        self.engine.forget(self.conn.sid);
    }
}
