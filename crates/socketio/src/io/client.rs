//! One Engine.IO connection seen by Socket.IO: the [`EngineHandler`] that decodes its
//! messages into packets (with binary reassembly), connects its sockets to namespaces,
//! routes events and acks to them, and ends them when the connection ends or breaks the
//! protocol. A connection that joins no namespace within `connect_timeout` is closed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use roomcast_engine::{Outbound, QueueHold};

use super::alias;
use super::args::Args;
use super::encode;
use super::handler::{NamespaceHandler, Prepared};
use super::socket::{AckSender, SocketRef};
use super::{Resolved, Shared};
use crate::engine::{EngineConn, EngineHandler, Message};
use crate::engineio::CloseReason;
use crate::socketio::{Packet, RawJson, Reassembler};

/// The close code of a connection that joined no namespace in time.
const CLOSE_CONNECT_TIMEOUT: (u16, &str) = (1000, "connect timeout");
/// The `CONNECT_ERROR` message for a namespace nobody registered (the reference server's).
const INVALID_NAMESPACE: &str = "Invalid namespace";
/// The `CONNECT_ERROR` message for a namespace the client is in under another of its names.
const OTHER_NAME: &str = "Already connected to this namespace under another name";
/// The `CONNECT_ERROR` message for a `CONNECT` sent while another one to the same namespace
/// waits.
const CONNECT_WAITING: &str = "Another connect is under way";

/// The Socket.IO state of one connection.
pub(crate) struct Client {
    req: Arc<http::request::Parts>,
    /// The connected sockets, one per namespace; a few at most, so a `Vec`.
    sockets: Vec<SocketRef>,
    reassembler: Reassembler,
    connect_deadline: Option<Instant>,
    /// A socket's namespace has other names: packets the room index brings may need renaming.
    renaming: bool,
    /// A packet could not be read: the connection is closing, nothing more is read.
    broken: bool,
    /// Sockets connected from a task (a prepared `CONNECT`), made once one is needed.
    arrivals: Option<Arc<Mutex<Arrivals>>>,
}

/// Sockets a prepared `CONNECT` connected from its task, for the connection to take up.
#[derive(Default)]
struct Arrivals {
    /// Each socket, and whether its namespace has other names.
    sockets: Vec<(SocketRef, bool)>,
    /// The namespaces a prepared `CONNECT` is under way for (one each; a client has a few).
    waiting: Vec<Arc<str>>,
    /// The connection has closed: a socket arriving now is closed at once.
    closed: bool,
}

fn lock(arrivals: &Mutex<Arrivals>) -> std::sync::MutexGuard<'_, Arrivals> {
    // Single pushes and flags: a poisoned lock is consistent.
    arrivals.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// The connected socket of namespace `ns`; drops sockets disconnected meanwhile.
    fn socket(&mut self, ns: &str) -> Option<SocketRef> {
        self.adopt();
        self.sockets.retain(SocketRef::is_connected);
        self.sockets.iter().find(|s| s.ns() == ns).cloned()
    }

    /// Takes up the sockets connected from tasks.
    fn adopt(&mut self) {
        let Some(arrivals) = &self.arrivals else {
            return;
        };
        let arrived = std::mem::take(&mut lock(arrivals).sockets);
        for (socket, aliased) in arrived {
            self.renaming |= aliased;
            self.connect_deadline = None;
            self.sockets.push(socket);
        }
    }
}

/// The Socket.IO layer as an Engine.IO application.
pub(crate) struct Clients {
    pub(super) shared: Arc<Shared>,
}

impl EngineHandler for Clients {
    type State = Client;

    fn on_open(&self, _conn: &EngineConn, req: http::request::Parts) -> Client {
        Client {
            req: Arc::new(kept_handshake(req)),
            sockets: Vec::new(),
            reassembler: Reassembler::new(self.shared.reassembly),
            connect_deadline: Some(Instant::now() + self.shared.connect_timeout),
            renaming: false,
            broken: false,
            arrivals: None,
        }
    }

    fn on_message(&self, client: &mut Client, conn: &EngineConn, message: Message) {
        if client.broken {
            return;
        }
        let decoded = match message {
            Message::Text(text) => client.reassembler.on_text(&text),
            Message::Binary(data) => client.reassembler.on_binary(data),
        };
        match decoded {
            Ok(Some(packet)) => self.dispatch(client, conn, packet),
            Ok(None) => {}
            Err(err) => {
                // A packet that cannot be read may have been meant for any namespace: the
                // whole connection goes, as with the reference server.
                client.broken = true;
                for socket in client.sockets.drain(..) {
                    socket.close("parse error", false);
                }
                conn.close_with(err.close_code(), &err.to_string());
            }
        }
    }

    fn on_tick(&self, client: &mut Client, conn: &EngineConn, now: Instant) {
        client.adopt();
        if let Some(deadline) = client.connect_deadline {
            if now >= deadline {
                client.connect_deadline = None;
                if client.sockets.is_empty() {
                    let (code, reason) = CLOSE_CONNECT_TIMEOUT;
                    conn.close_with(code, reason);
                }
            }
        }
        for socket in &client.sockets {
            socket.expire_acks(now);
            socket.check_expiry(now);
        }
    }

    fn deadline(&self, client: &Client) -> Option<Instant> {
        let arrived = client.arrivals.as_ref().and_then(|arrivals| {
            lock(arrivals)
                .sockets
                .iter()
                .filter_map(|(socket, _)| socket.next_deadline())
                .min()
        });
        client
            .sockets
            .iter()
            .filter_map(SocketRef::next_deadline)
            .chain(client.connect_deadline)
            .chain(arrived)
            .min()
    }

    fn on_outgoing(&self, client: &Client, items: &mut VecDeque<Outbound>, from: usize) {
        // Sockets connected from a task and not taken up yet count too.
        let arrived: Vec<SocketRef> = client.arrivals.as_ref().map_or_else(Vec::new, |a| {
            lock(a)
                .sockets
                .iter()
                .filter(|(_, aliased)| *aliased)
                .map(|(socket, _)| socket.clone())
                .collect()
        });
        if !client.renaming && arrived.is_empty() {
            return;
        }
        // The name `name` stands for on this connection, when it is another one.
        let wire_name = |name: &str| -> Option<SocketRef> {
            let room_ns = self.shared.canonical(name)?;
            client
                .sockets
                .iter()
                .chain(arrived.iter())
                .find(|s| *s.room_ns() == *room_ns && s.ns() != name)
                .cloned()
        };
        for item in items.iter_mut().skip(from) {
            match item {
                Outbound::Text(text) => {
                    let Some((start, end, name)) = alias::namespace(text) else {
                        continue;
                    };
                    if let Some(socket) = wire_name(name) {
                        *text = alias::rename(text, start, end, socket.ns());
                    }
                }
                // A binary event's group, framed for a WebSocket session.
                Outbound::Frame(frames) => {
                    let Some((text, frame_end)) = alias::first_text_frame(frames) else {
                        continue;
                    };
                    let Some((start, end, name)) = alias::namespace(text) else {
                        continue;
                    };
                    if let Some(socket) = wire_name(name) {
                        *frames = alias::rename_first_frame(
                            frames,
                            text,
                            frame_end,
                            start,
                            end,
                            socket.ns(),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn on_close(&self, client: &mut Client, _conn: &EngineConn, reason: CloseReason) {
        if let Some(arrivals) = &client.arrivals {
            let mut arrivals = lock(arrivals);
            arrivals.closed = true;
            let arrived = std::mem::take(&mut arrivals.sockets);
            client
                .sockets
                .extend(arrived.into_iter().map(|(socket, _)| socket));
        }
        for socket in client.sockets.drain(..) {
            socket.close(reason.as_str(), false);
        }
    }
}

impl Clients {
    fn dispatch(&self, client: &mut Client, conn: &EngineConn, packet: Packet) {
        match packet {
            Packet::Connect { nsp, data } => self.connect(client, conn, &nsp, data),
            Packet::Disconnect { nsp } => {
                if let Some(socket) = client.socket(&nsp) {
                    socket.close("client namespace disconnect", false);
                    client.sockets.retain(SocketRef::is_connected);
                }
            }
            Packet::Event { nsp, id, data } => {
                let Some(socket) = client.socket(&nsp) else {
                    return;
                };
                if let Some((name, args)) = Args::split_event(&data) {
                    deliver(&socket, &name, args, id);
                }
            }
            Packet::BinaryEvent { nsp, id, data } => {
                let Some(socket) = client.socket(&nsp) else {
                    return;
                };
                if let Some((name, args)) = Args::split_binary_event(data.value, data.attachments) {
                    deliver(&socket, &name, args, id);
                }
            }
            Packet::Ack { nsp, id, data } => {
                if let Some(socket) = client.socket(&nsp) {
                    socket.on_ack(id, Args::from_ack(data));
                }
            }
            Packet::BinaryAck { nsp, id, data } => {
                if let Some(socket) = client.socket(&nsp) {
                    socket.on_ack(id, Args::from_binary_ack(data.value, data.attachments));
                }
            }
            // Only servers send it; the reference server ignores it too.
            Packet::ConnectError { .. } => {}
        }
    }

    /// A `CONNECT` to namespace `ns`, with the client's auth payload if any.
    fn connect(&self, client: &mut Client, conn: &EngineConn, ns: &str, auth: Option<RawJson>) {
        if client.socket(ns).is_some() {
            // Already connected: ignored, as the reference server does.
            return;
        }
        let Some(resolved) = self.shared.namespace(ns) else {
            push(conn, encode::connect_error(ns, INVALID_NAMESPACE, None));
            return;
        };
        if client
            .sockets
            .iter()
            .any(|s| s.is_connected() && *s.room_ns() == *resolved.name)
        {
            push(conn, encode::connect_error(ns, OTHER_NAME, None));
            return;
        }
        // Read by the handler while it connects, not kept: memory per socket is a budget.
        let auth = auth.map(RawJson::into_inner);
        if let Some(prepare) = resolved.handler.prepare(auth.as_deref(), &client.req) {
            let arrivals = client.arrivals.get_or_insert_with(Default::default).clone();
            {
                let mut arrivals = lock(&arrivals);
                if arrivals.waiting.iter().any(|w| **w == *resolved.name) {
                    drop(arrivals);
                    push(conn, encode::connect_error(ns, CONNECT_WAITING, None));
                    return;
                }
                arrivals.waiting.push(resolved.name.clone());
            }
            let (conn, req, ns) = (conn.clone(), client.req.clone(), ns.to_owned());
            let shared = self.shared.clone();
            let timeout = self.shared.connect_timeout;
            tokio::spawn(async move {
                // Past the timeout the connection is closed if nothing else connected; the
                // connect goes on unprepared for one that did.
                let prepared = tokio::time::timeout(timeout, prepare)
                    .await
                    .unwrap_or_default();
                let aliased = resolved.aliased;
                let name = resolved.name.clone();
                let connected = carry_out(&shared, &conn, &req, &ns, resolved, auth, prepared);
                let mut waiting = lock(&arrivals);
                waiting.waiting.retain(|w| *w != name);
                if let Some((socket, answer_held)) = connected {
                    if waiting.closed {
                        drop(waiting);
                        drop(answer_held);
                        socket.close("transport close", false);
                    } else {
                        // Where the connection's task finds it before the client can have its
                        // `CONNECT` answer, which is held until then: the events the client
                        // sends once connected find their socket.
                        waiting.sockets.push((socket, aliased));
                        drop(waiting);
                        drop(answer_held);
                        // The connection's task takes it up (its deadlines with it).
                        conn.queue().nudge();
                    }
                }
            });
            return;
        }
        let aliased = resolved.aliased;
        if let Some((socket, _answer_held)) = carry_out(
            &self.shared,
            conn,
            &client.req,
            ns,
            resolved,
            auth,
            Prepared::default(),
        ) {
            client.connect_deadline = None;
            client.renaming |= aliased;
            client.sockets.push(socket);
        }
    }
}

/// Makes the socket, runs the handler's `on_connect`, and answers: the connected socket, with
/// its `CONNECT` answer held back until the hold is dropped (once the socket is where the
/// connection's packets find it), or `None` when the handler refused (its `CONNECT_ERROR`
/// sent) or it disconnected meanwhile.
fn carry_out(
    shared: &Arc<Shared>,
    conn: &EngineConn,
    req: &Arc<http::request::Parts>,
    ns: &str,
    resolved: Resolved,
    auth: Option<Box<serde_json::value::RawValue>>,
    prepared: Prepared,
) -> Option<(SocketRef, QueueHold)> {
    let handler: Arc<dyn NamespaceHandler> = resolved.handler;
    let socket = SocketRef::new(
        ns,
        resolved.name,
        conn.clone(),
        shared.clone(),
        handler.clone(),
        req.clone(),
        prepared.sid,
    )
    .with_initial_state(prepared.state);
    // Nothing delivered to the socket once the handler has placed it in rooms goes out
    // before its `CONNECT` answer.
    let connecting = conn.queue().hold();
    match handler.on_connect(&socket, auth.as_deref(), req) {
        Ok(()) => {
            // Connected: the session is pending no more.
            conn.admit();
            if socket.finish_connect() {
                socket.track();
                return Some((socket, connecting));
            }
            None
        }
        Err(refusal) => {
            socket.abort();
            push(
                conn,
                encode::connect_error(ns, &refusal.message, refusal.data.as_deref()),
            );
            None
        }
    }
}

/// An event to its socket's handler.
fn deliver(socket: &SocketRef, name: &str, args: Args, id: Option<u64>) {
    let ack = id.map(|id| AckSender::new(socket.clone(), id));
    socket.handler().clone().on_event(socket, name, args, ack);
}

fn push(conn: &EngineConn, item: Outbound) {
    if conn.push(item).is_err() {
        tracing::debug!(sid = %conn.sid(), "answer dropped: connection closing");
    }
}

/// Headers of the handshake request that namespace handlers may read (credentials, origin,
/// host and client address); the rest is dropped, because the request head lives as long as
/// the connection and memory per connection is a budget.
///
/// `Host` is kept only beside an `Origin`, where it tells whether the page is the server's
/// own (same-origin checks): a client without one (not a browser) pays nothing for it.
const KEPT_HEADERS: [http::header::HeaderName; 5] = [
    http::header::AUTHORIZATION,
    http::header::COOKIE,
    http::header::ORIGIN,
    http::header::HOST,
    http::header::HeaderName::from_static("x-forwarded-for"),
];

/// The handshake request head as sockets keep it: method, URI (its query may carry a token),
/// version, and the [`KEPT_HEADERS`].
///
/// Header values and the URI are copied, not cloned: hyper's point into its read buffer, which
/// a clone would keep alive (8 KiB) for as long as the connection lives.
fn kept_handshake(mut req: http::request::Parts) -> http::request::Parts {
    let mut headers = http::HeaderMap::new();
    let browser = req.headers.contains_key(http::header::ORIGIN);
    for name in KEPT_HEADERS {
        if name == http::header::HOST && !browser {
            continue;
        }
        for value in req.headers.get_all(&name) {
            if let Ok(copy) = http::HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), copy);
            }
        }
    }
    req.headers = headers;
    req.extensions = http::Extensions::new();
    if let Ok(uri) = req.uri.to_string().parse() {
        req.uri = uri;
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut req = http::Request::builder().uri("/socket.io/?EIO=4&token=t");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_handshake_keeps_its_credentials_and_host_only_beside_an_origin() {
        let kept = kept_handshake(head(&[
            ("host", "rt.example"),
            ("origin", "https://rt.example"),
            ("cookie", "session_id=1"),
            ("user-agent", "a browser"),
        ]));
        assert_eq!(kept.headers.len(), 3);
        assert_eq!(kept.headers["host"], "rt.example");
        assert_eq!(kept.uri.query(), Some("EIO=4&token=t"));
        // Not a browser: nothing kept, not even a header map's allocation for `Host`.
        let kept = kept_handshake(head(&[("host", "rt.example"), ("user-agent", "node")]));
        assert!(kept.headers.is_empty());
        assert_eq!(kept.headers.capacity(), 0);
    }
}
