//! The Engine.IO server over tokio and hyper: a thin glue around the sans-IO
//! [`Session`]. It routes requests (polling `GET`/`POST`, the
//! `OPTIONS` preflight, WebSocket upgrades with or without a session), keeps the map of
//! polling sessions, and runs one shared heartbeat over them.
//!
//! Each session has one bounded [`OutQueue`] of Engine.IO packets in their text encoding
//! ([`Outbound::Text`]: `4...` messages, `2` pings) and binary messages
//! ([`Outbound::Binary`]). Over polling a `GET` drains it into a payload; over WebSocket the
//! engine's driver writes it; an upgrade hands the same queue from one to the other, so
//! nothing is lost or reordered. The application sees messages through an
//! [`EngineHandler`] and answers through its [`EngineConn`].
//!
//! Sessions the application has not admitted yet ([`EngineConn::admit`]) are bounded
//! overall and per [`ClientAddr`]; polling bodies are read under a deadline and a shared
//! budget of bytes in flight (see [`Config`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Incoming};
use roomcast_engine::driver::{DriverConfig, IoStats};
use roomcast_engine::{CloseRequest, OutQueue, Outbound};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::engineio::{check_request, CloseReason, Event, Packet, Session, Sid, Transport};

mod conn;
mod group;
pub(crate) mod http;
mod pending;
mod polling;
mod probe;
mod serve;

pub use serve::ticker;
#[cfg(test)]
mod tests;
mod websocket;

pub use self::conn::EngineConn;
use self::conn::Link;
pub(crate) use self::http::Resp;
pub use self::pending::ClientAddr;
use self::pending::{Pending, PendingSlot};

/// The close code of a WebSocket closed by the server or after a client's close packet.
const CLOSE_NORMAL: u16 = 1000;
/// The close code of a WebSocket whose client stopped answering pings (the engine's
/// heartbeat timeout code, as for native connections).
const CLOSE_PING_TIMEOUT: u16 = 4000;
/// The close code and reason of a session closed by [`EngineIo::close_all`].
const CLOSE_GOING_AWAY: (u16, &str) = (1001, "server shutting down");

/// A message from the client.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (UTF-8, without the Engine.IO `4`).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// What an application does with Engine.IO sessions.
///
/// Calls for one session never overlap. They run inside the runtime, under the session's
/// lock and without `.await`: do the work, push answers with the [`EngineConn`], return.
/// Nothing reached from here may call back into the same session's runtime (nothing in
/// this crate does).
pub trait EngineHandler: Send + Sync + 'static {
    /// The application's state for one session.
    type State: Send + 'static;

    /// A session opened: `req` is the head of its handshake request.
    fn on_open(&self, conn: &EngineConn, req: ::http::request::Parts) -> Self::State;

    /// A message arrived.
    fn on_message(&self, state: &mut Self::State, conn: &EngineConn, message: Message);

    /// A deadline passed (deadlines of the application live here); it may come early.
    /// Default: nothing.
    fn on_tick(&self, state: &mut Self::State, conn: &EngineConn, now: Instant) {
        let _ = (state, conn, now);
    }

    /// When [`on_tick`](Self::on_tick) must run next for this session, or `None` when the
    /// application has nothing due. Polling sessions are ticked by the engine's periodic
    /// sweep whatever this says. Default: `None`.
    fn deadline(&self, state: &Self::State) -> Option<Instant> {
        let _ = state;
        None
    }

    /// Packets just taken from the session's queue, `items[from..]`, before they go out over
    /// either transport: the application may rewrite them for this session. Default: nothing.
    fn on_outgoing(&self, state: &Self::State, items: &mut VecDeque<Outbound>, from: usize) {
        let _ = (state, items, from);
    }

    /// The session closed; called once, last.
    fn on_close(&self, state: &mut Self::State, conn: &EngineConn, reason: CloseReason);
}

/// A session's state: the protocol state machine, the application's state, and packets
/// taken from the queue by polling but not yet sent (a payload is bounded by `maxPayload`).
struct State<A> {
    session: Session,
    app: A,
    leftover: VecDeque<Outbound>,
}

/// A polling session in the map.
struct Entry<A> {
    conn: EngineConn,
    /// Wakes the pending `GET` for what is not a queue push: a probe, an upgrade.
    wake: Notify,
    // A std mutex: held for one state transition and the handler calls it makes, never
    // across an `.await`.
    slot: Mutex<Slot<A>>,
}

/// What a polling session's lock guards.
struct Slot<A> {
    /// `None` once a WebSocket took the session over: its task owns the state then.
    state: Option<Box<State<A>>>,
    /// The answer owed to a `GET` still pending when a WebSocket took the session over.
    handoff: Option<crate::engineio::GetReply>,
}

impl<A> Entry<A> {
    fn new(conn: EngineConn, state: State<A>) -> Self {
        Self {
            conn,
            wake: Notify::new(),
            slot: Mutex::new(Slot {
                state: Some(Box::new(state)),
                handoff: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot<A>> {
        // A panicking handler leaves the state as consistent as it found it between two
        // transitions; the session goes on rather than poisoning every later request.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What [`EngineIo::pump`] saw.
#[derive(Debug, Default)]
struct Pumped {
    closed: Option<CloseReason>,
    upgraded: bool,
}

/// An Engine.IO endpoint: serves its paths for one [`EngineHandler`].
pub struct EngineIo<H: EngineHandler> {
    config: Config,
    driver: Arc<DriverConfig>,
    handler: H,
    // Std locks: looked up or updated briefly per request or session, never held across an
    // `.await`, and never while taking a session's lock.
    polling: RwLock<HashMap<Sid, Arc<Entry<H::State>>>>,
    /// Every open session, both transports: for counts and [`close_all`](Self::close_all).
    live: Mutex<HashMap<Sid, Arc<OutQueue>>>,
    /// Sessions not admitted by the application yet, bounded.
    pending: Arc<Pending>,
    tick: watch::Receiver<Instant>,
    stats: Arc<IoStats>,
    sweeper: AtomicBool,
}

impl<H: EngineHandler> std::fmt::Debug for EngineIo<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineIo")
            .field("path", &self.config.path)
            .field("sessions", &self.session_count())
            .finish_non_exhaustive()
    }
}

impl<H: EngineHandler> EngineIo<H> {
    /// An endpoint. `tick` is the heartbeat clock of long-polling sessions: one task started
    /// with the first request visits them on every tick, so its period bounds their
    /// heartbeat's precision (WebSocket sessions sleep until their own deadlines). `stats`
    /// counts WebSocket traffic and the sessions closed as slow consumers (any transport).
    pub fn new(
        config: Config,
        handler: H,
        tick: watch::Receiver<Instant>,
        stats: Arc<IoStats>,
    ) -> Arc<Self> {
        Arc::new(Self {
            driver: Arc::new(config.driver()),
            pending: Pending::new(
                config.max_pending_sessions,
                config.max_pending_sessions_per_ip,
            ),
            config,
            handler,
            polling: RwLock::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            tick,
            stats,
            sweeper: AtomicBool::new(false),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The application handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Whether a request for `path` (without the query) is for this endpoint.
    pub fn matches(&self, path: &str) -> bool {
        self.config.matches(path)
    }

    /// Open sessions, both transports.
    pub fn session_count(&self) -> usize {
        lock(&self.live).len()
    }

    /// Open sessions not admitted by the application yet ([`EngineConn::admit`]).
    pub fn pending_count(&self) -> usize {
        self.pending.count()
    }

    /// Closes every session as [`EngineConn::close`] does, with close code 1001 over
    /// WebSocket. New sessions are still accepted: stop routing requests here first.
    pub fn close_all(&self) {
        let queues: Vec<Arc<OutQueue>> = lock(&self.live).values().cloned().collect();
        let (code, reason) = CLOSE_GOING_AWAY;
        for queue in queues {
            queue.request_close(CloseRequest {
                code,
                reason: reason.to_owned(),
                last_message: None,
            });
        }
    }

    /// Closes every session for a shutdown, as [`close_all`](Self::close_all) does, except
    /// that a polling session with no `GET` pending is dropped at once rather than kept for
    /// its next `GET`, which may never reach a server that stopped accepting: the client's
    /// next request finds the session unknown, and it reconnects. A pending `GET` gets what
    /// is queued and the close packet.
    pub fn shutdown(&self) {
        self.close_all();
        let entries: Vec<Arc<Entry<H::State>>> = read(&self.polling).values().cloned().collect();
        let now = Instant::now();
        for entry in entries {
            let mut guard = entry.lock();
            if let Some(state) = guard.state.as_mut() {
                state.session.close_now(now);
                self.process(&entry, state, now);
            }
        }
    }

    /// Serves HTTP/1.1 on `listener`: this endpoint's paths, and 404 for anything else.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        serve::serve(listener, move |req: ::http::Request<Incoming>| {
            let this = self.clone();
            async move {
                if this.matches(req.uri().path()) {
                    Some(this.handle(req).await)
                } else {
                    None
                }
            }
        })
        .await
    }

    /// Answers one request for this endpoint: a polling `GET` or `POST`, an `OPTIONS`
    /// preflight, or a WebSocket upgrade (a new session, or the upgrade of a polling one).
    /// A [`ClientAddr`] in the request's extensions subjects its handshake to the bound on
    /// pending sessions per address.
    pub async fn handle(self: &Arc<Self>, req: ::http::Request<Incoming>) -> Resp {
        self.handle_request(req).await
    }

    /// [`handle`](Self::handle) for any body (tests use in-memory ones).
    pub(crate) async fn handle_request<B>(self: &Arc<Self>, mut req: ::http::Request<B>) -> Resp
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.start_sweeper();
        if req.method() == ::http::Method::OPTIONS {
            return http::preflight(&req, &self.config.cors);
        }
        // Kept for the CORS headers of the answer: a POST's request is consumed.
        let origin = req.headers().get(::http::header::ORIGIN).cloned();
        let query = req.uri().query().unwrap_or_default();
        let mut resp = match check_request(req.method(), query) {
            Err(err) => http::error(err),
            Ok(r) => match (r.transport, r.sid) {
                (Transport::Polling, None) => match self.admit(&req) {
                    Ok(slot) => self.open_polling(http::head_of(&req), slot),
                    Err(err) => http::error(err),
                },
                (Transport::Polling, Some(sid)) => match self.entry(sid) {
                    None => http::error(crate::engineio::Error::UnknownSid),
                    Some(entry) if req.method() == ::http::Method::POST => {
                        self.post(entry, req.into_body()).await
                    }
                    Some(entry) => self.get(entry).await,
                },
                (Transport::WebSocket, None) => match self.admit(&req) {
                    Ok(slot) => self.open_websocket(&mut req, slot),
                    Err(err) => http::error(err),
                },
                (Transport::WebSocket, Some(sid)) => match self.entry(sid) {
                    Some(entry) => self.upgrade_session(entry, &mut req),
                    // Upgraded already: accepted, then closed, as the reference server does.
                    None if lock(&self.live).contains_key(&sid) => self.refuse_websocket(&mut req),
                    None => http::error(crate::engineio::Error::UnknownSid),
                },
            },
        };
        let mut request = ::http::HeaderMap::new();
        if let Some(origin) = origin {
            request.insert(::http::header::ORIGIN, origin);
        }
        http::add_cors(&request, &self.config.cors, resp.headers_mut());
        resp
    }

    /// A place among the pending sessions for a handshake, from its client's address.
    fn admit<B>(&self, req: &::http::Request<B>) -> Result<PendingSlot, crate::engineio::Error> {
        let ip = req.extensions().get::<ClientAddr>().map(|addr| addr.0);
        self.pending.admit(ip)
    }

    fn entry(&self, sid: Sid) -> Option<Arc<Entry<H::State>>> {
        read(&self.polling).get(&sid).cloned()
    }

    /// A new session's queue, handle and state, its open packet queued first; it holds
    /// `slot` until the application admits it.
    fn new_session(
        &self,
        transport: Transport,
        req: ::http::request::Parts,
        slot: PendingSlot,
        now: Instant,
    ) -> (EngineConn, State<H::State>) {
        let sid = Sid::random();
        let conn = EngineConn {
            sid,
            queue: Arc::new(OutQueue::new(self.config.queue)),
            link: Arc::new(Link {
                websocket: AtomicBool::new(transport == Transport::WebSocket),
                switch: RwLock::new(()),
                pending: Mutex::new(Some(slot)),
            }),
        };
        let mut session = Session::new(sid, transport, self.config.session(), now);
        push_transmit(&mut session, &conn);
        let app = self.handler.on_open(&conn, req);
        lock(&self.live).insert(sid, conn.queue.clone());
        let state = State {
            session,
            app,
            leftover: VecDeque::new(),
        };
        (conn, state)
    }

    /// Moves what the session produced to where it goes: its packets to the queue, the
    /// client's messages and the close to the handler.
    fn pump(&self, state: &mut State<H::State>, conn: &EngineConn) -> Pumped {
        push_transmit(&mut state.session, conn);
        let mut pumped = Pumped::default();
        while let Some(event) = state.session.poll_event() {
            match event {
                Event::Message(data) => {
                    self.handler
                        .on_message(&mut state.app, conn, Message::Text(data));
                }
                Event::Binary(data) => {
                    self.handler
                        .on_message(&mut state.app, conn, Message::Binary(data));
                }
                Event::Upgraded => pumped.upgraded = true,
                Event::UpgradeCancelled => {}
                Event::Closed(reason) => {
                    // A closed session is pending no more.
                    conn.admit();
                    if reason == CloseReason::SlowConsumer {
                        // Counted here, where every transport's overflow ends up.
                        self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    }
                    self.handler.on_close(&mut state.app, conn, reason);
                    pumped.closed = Some(reason);
                }
            }
        }
        pumped
    }

    /// A session is over: it leaves the maps.
    fn forget(&self, sid: Sid) {
        write(&self.polling).remove(&sid);
        lock(&self.live).remove(&sid);
    }

    fn start_sweeper(self: &Arc<Self>) {
        if !self.sweeper.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self), self.tick.clone()));
        }
    }
}

/// Appends the session's own packets (open, pings) to the queue. A full queue drops them:
/// it has overflowed, and whoever drains it next closes the session.
fn push_transmit(session: &mut Session, conn: &EngineConn) {
    while let Some(packet) = session.poll_transmit() {
        let _ = conn.queue.push(Outbound::Text(text_packet(&packet)));
    }
}

/// A packet in its text encoding.
fn text_packet(packet: &Packet) -> Bytes {
    let mut out = BytesMut::with_capacity(packet.text_len());
    packet.encode_text(&mut out);
    out.freeze()
}

/// The WebSocket close code for a session that closed for `reason`.
fn close_code(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::PingTimeout => CLOSE_PING_TIMEOUT,
        CloseReason::Error(err) => err
            .close_code()
            .unwrap_or(roomcast_engine::ws::error::CLOSE_PROTOCOL_ERROR),
        CloseReason::ClientClose
        | CloseReason::TransportClose
        | CloseReason::ServerClose
        | CloseReason::SlowConsumer => CLOSE_NORMAL,
    }
}

/// The heartbeat of polling sessions: one task for all of them, woken by the shared tick
/// (WebSocket sessions get theirs from their driver). Ends with the endpoint or the clock.
async fn sweep<H: EngineHandler>(engine: Weak<EngineIo<H>>, mut tick: watch::Receiver<Instant>) {
    let mut entries = Vec::new();
    while tick.changed().await.is_ok() {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        entries.extend(read(&engine.polling).values().cloned());
        let now = Instant::now();
        for entry in entries.drain(..) {
            engine.tick_polling(&entry, now);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps are updated by single inserts and removes: a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
