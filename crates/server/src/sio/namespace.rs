//! One configured Socket.IO namespace served by the roomcast server: `CONNECT` and client
//! events carried out through the client core ([`crate::client`]: the token check, the room
//! ACL, rate and size limits, token expiry), as the [`Router`] decides; the core's refusals
//! are told as `CONNECT_ERROR`s, error events and disconnects (`protocol/socketio.md`).

use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use roomcast_broker::BoxFuture;
use roomcast_engine::rooms::JoinError;
use roomcast_socketio::{AckSender, Args, ConnectError, NamespaceHandler, Prepared, SocketRef};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::api_keys::bearer;
use crate::app::App;
use crate::auth::SessionIdentity;
use crate::backend::{Handshake, RpcCall};
use crate::client::{self, ClientCore, Refusal, SocketIoAnswer};
use crate::config::ConnectErrorMessages;
use crate::lifecycle::Transport;
use crate::node::{Attempt, Publication};
use crate::sio::recovery::{self, LiveSession, Pending};
use crate::sio::routing::{Action, Caller, Reply, Router};
use crate::web::query_param;
use roomcast_broker::{Payload, Target};

/// What a connected socket keeps (as its state, [`SocketRef::set_state`]): its client core,
/// whose identity keeps every claim of the token (in the compact form, since memory per
/// connection is a budget), since route, reply and error templates may read any of them.
struct SocketState {
    core: ClientCore,
    /// Its recoverable session, when recovery is on.
    session: Option<Box<LiveSession>>,
}

/// The socket's state while it connects through the connect proxy: the proxy's verdict.
struct Proxied(Option<Result<crate::auth::Identity, Refusal>>);

/// The socket's session after a join or leave of `room`, written.
fn session_moved(app: &App, socket: &SocketRef, room: &str, joined: bool) {
    let Some(writer) = app.sessions.get() else {
        return;
    };
    socket.with_state(|state: &mut SocketState| {
        let Some(live) = state.session.as_mut() else {
            return;
        };
        let rooms = &mut live.record.rooms;
        let at = rooms.iter().position(|r| r == room);
        match (joined, at) {
            (true, None) => rooms.push(room.to_owned()),
            (false, Some(i)) => {
                rooms.remove(i);
            }
            _ => return,
        }
        writer.keep(live);
    });
}

/// The handler of one namespace (its aliases share it).
pub(crate) struct ConfiguredNamespace {
    // Weak: the app owns the Socket.IO endpoint, which owns this handler.
    app: Weak<App>,
    router: Arc<Router>,
    /// The namespace's configured name (aliases resolve to it).
    name: String,
}

impl ConfiguredNamespace {
    pub(crate) fn new(app: Weak<App>, router: Arc<Router>, name: String) -> Self {
        Self { app, router, name }
    }

    /// What answers `event` of `socket` once the work it started has completed.
    fn late_answer(
        &self,
        app: &Arc<App>,
        socket: &SocketRef,
        event: &str,
        identity: &Arc<SessionIdentity>,
    ) -> LateAnswer {
        LateAnswer {
            app: app.clone(),
            router: self.router.clone(),
            ns: self.name.clone(),
            event: event.to_owned(),
            identity: identity.clone(),
            socket: socket.clone(),
        }
    }

    /// Runs `work` (a backend call, an inbox operation) on the socket's async lane, then
    /// answers `event` with its result as an `rpc` route does (the reply rendered with
    /// `{result}`), or with its refusal; past the lane's deadline, with `Timeout`. The ack, if
    /// any, is answered exactly once either way. `Err` when the lane refuses the work.
    #[allow(clippy::too_many_arguments)]
    fn answer_later(
        &self,
        app: &Arc<App>,
        socket: &SocketRef,
        event: &str,
        identity: &Arc<SessionIdentity>,
        args: &[Value],
        ack: &mut Option<AckSender>,
        work: impl std::future::Future<Output = Result<Value, Refusal>> + Send + 'static,
    ) -> Result<(), Refusal> {
        let answer_later = self.late_answer(app, socket, event, identity);
        let late = answer_later.clone();
        // Shared with the timeout's answer: the ack is answered once, either way.
        let ack_slot = Arc::new(std::sync::Mutex::new(ack.take()));
        let (late_ack, kept) = (ack_slot.clone(), ack_slot.clone());
        let args = args.to_vec();
        let run = async move {
            let result = work.await;
            answer_later.rpc(result, &args, take(&ack_slot));
        };
        let timed_out = move || late.finish(Err(Refusal::Timeout), Reply::None, take(&late_ack));
        // Refused by the lane: the ack is back for the refusal to answer.
        submit(app, socket, run, timed_out).inspect_err(|_| *ack = take(&kept))
    }

    /// Tells the client about a refusal of `event` (empty: of no event, such as a token's
    /// expiry): the route's or namespace's error event (or the ack), then for refusals that end
    /// the session a `DISCONNECT`, and for some the close of the whole connection.
    fn refuse(
        &self,
        app: &App,
        socket: &SocketRef,
        event: &str,
        refusal: &Refusal,
        ack: &mut Option<AckSender>,
        caller: &Caller<'_>,
    ) {
        tell_refusal(
            &self.router,
            &self.name,
            app,
            socket,
            event,
            refusal,
            ack,
            caller,
        );
    }
}

/// Tells a socket about a refusal of `event`: the route's or namespace's error event (or the
/// ack), then for refusals that end the session a `DISCONNECT`, and for some the close of the
/// whole connection.
#[allow(clippy::too_many_arguments)] // Each is a different part of the answer's context.
fn tell_refusal(
    router: &Router,
    ns: &str,
    app: &App,
    socket: &SocketRef,
    event: &str,
    refusal: &Refusal,
    ack: &mut Option<AckSender>,
    caller: &Caller<'_>,
) {
    let (message, disconnect, close) = match refusal.socketio(&app.config.socketio.errors) {
        SocketIoAnswer::Error(message) => (message, false, None),
        SocketIoAnswer::Disconnect(message) => (message, true, None),
        SocketIoAnswer::Close(code, message) => (message, true, Some(code)),
        // Refusals of `CONNECT` only; a connected socket is told as by an error event.
        SocketIoAnswer::ConnectError(message) => (message.into(), false, None),
    };
    let reply = router.refusal(ns, event, ack.is_some(), &message, caller);
    answer(socket, reply, ack);
    if disconnect {
        socket.disconnect();
    }
    if let Some(code) = close {
        socket.engine().close_with(code, &message);
    }
}

/// A relay as a publication: to the room of the socket's tenant and namespace, without the
/// sender.
fn relay_publication(
    socket: &SocketRef,
    room: &str,
    event: &str,
    args: &Args,
    volatile: bool,
) -> Publication {
    let tenant = socket
        .identity()
        .map(|(tenant, _)| tenant)
        .unwrap_or_default();
    let mut publication = Publication::new(
        socket.room_ns(),
        Target::Tenant {
            tenant,
            rooms: vec![room.into()],
            users: Vec::new(),
        },
        event,
        Payload::Args {
            array: args.json().to_owned(),
            attachments: args.attachments().to_vec(),
        },
    );
    publication.exclude = Some(socket.conn_id());
    publication.volatile = volatile;
    publication
}

/// What answers an event whose relay had to wait for the broker, once it has: the route's
/// answer, or its refusal as the route renders it.
#[derive(Clone)]
struct LateAnswer {
    app: Arc<App>,
    router: Arc<Router>,
    ns: String,
    event: String,
    identity: Arc<SessionIdentity>,
    socket: SocketRef,
}

impl LateAnswer {
    /// Answers an `rpc` route: the reply rendered with the backend's result, or the refusal.
    fn rpc(&self, result: Result<Value, Refusal>, args: &[Value], mut ack: Option<AckSender>) {
        match result {
            Ok(value) => {
                let caller = Caller {
                    claims: &self.identity.claims,
                    socket_id: self.socket.id(),
                    now: SystemTime::now(),
                };
                let reply = self.router.rpc_answer(
                    &self.ns,
                    &self.event,
                    args,
                    ack.is_some(),
                    &value,
                    &caller,
                );
                answer(&self.socket, reply, &mut ack);
            }
            Err(refusal) => self.finish(Err(refusal), Reply::None, ack),
        }
    }

    fn finish(&self, result: Result<(), Refusal>, then: Reply, mut ack: Option<AckSender>) {
        match result {
            Ok(()) => answer(&self.socket, then, &mut ack),
            Err(refusal) => {
                let caller = Caller {
                    claims: &self.identity.claims,
                    socket_id: self.socket.id(),
                    now: SystemTime::now(),
                };
                tell_refusal(
                    &self.router,
                    &self.ns,
                    &self.app,
                    &self.socket,
                    &self.event,
                    &refusal,
                    &mut ack,
                    &caller,
                );
            }
        }
    }
}

/// Runs `work` on the socket's async lane ([`ClientCore::submit`]).
fn submit<F, T>(app: &App, socket: &SocketRef, work: F, timed_out: T) -> Result<(), Refusal>
where
    F: std::future::Future<Output = ()> + Send + 'static,
    T: FnOnce() + Send + 'static,
{
    socket
        .with_state(|state: &mut SocketState| state.core.submit(app, work, timed_out))
        .unwrap_or(Err(Refusal::ShuttingDown))
}

/// The ack kept for a late answer, taken by the first answer that comes.
fn take(slot: &std::sync::Mutex<Option<AckSender>>) -> Option<AckSender> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// The refusal of a join the room index did not take.
fn join_refusal(e: JoinError) -> Refusal {
    match e {
        JoinError::TooManyRooms => Refusal::TooManyRooms,
        // The socket is leaving (no longer registered) and will not read the answer; told as
        // the limit, the one join refusal an event has.
        JoinError::NotRegistered => Refusal::TooManyRooms,
        // Another crate's non-exhaustive enum: a catch-all is unavoidable.
        _ => Refusal::TooManyRooms,
    }
}

/// The token of a `CONNECT`: `auth.token`, else `Authorization: Bearer`, else `?token=`.
fn token(auth: Option<&RawValue>, req: &http::request::Parts) -> Option<String> {
    auth.and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| {
            req.headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer)
                .map(str::to_owned)
        })
        .or_else(|| query_param(&req.uri, "token"))
}

/// The `CONNECT_ERROR` for a refusal of `CONNECT`.
fn connect_error(refusal: &Refusal, messages: &ConnectErrorMessages) -> ConnectError {
    match refusal.socketio(messages) {
        SocketIoAnswer::ConnectError(message) => ConnectError::new(message),
        SocketIoAnswer::Error(message)
        | SocketIoAnswer::Disconnect(message)
        | SocketIoAnswer::Close(_, message) => ConnectError::new(message),
    }
}

/// Sends a reply, consuming the ack when the reply answers it.
fn answer(socket: &SocketRef, reply: Reply, ack: &mut Option<AckSender>) {
    match reply {
        Reply::Event { event, args } => {
            let _ = socket.emit_args(&event, &Args::from_values(args));
        }
        Reply::Ack(values) => {
            if let Some(ack) = ack.take() {
                let _ = ack.send(&Args::from_values(values));
            }
        }
        Reply::None => {}
    }
}

impl NamespaceHandler for ConfiguredNamespace {
    fn on_connect(
        &self,
        socket: &SocketRef,
        auth: Option<&RawValue>,
        req: &http::request::Parts,
    ) -> Result<(), ConnectError> {
        let Some(app) = self.app.upgrade() else {
            let messages = ConnectErrorMessages::default();
            return Err(connect_error(&Refusal::ShuttingDown, &messages));
        };
        let messages = &app.config.socketio.errors;
        if app.shutting_down() {
            return Err(connect_error(&Refusal::ShuttingDown, messages));
        }
        let token = token(auth, req);
        let proxied = app
            .backends
            .connect_proxy()
            .is_some_and(|proxy| proxy.applies(token.is_some()));
        let admitted = if proxied {
            // `prepare` asked the proxy; no verdict means it ran out of the connect time.
            let verdict = socket
                .with_state(|p: &mut Proxied| p.0.take())
                .flatten()
                .unwrap_or(Err(Refusal::ProxyUnavailable));
            verdict
                .and_then(|identity| client::admit_identity(&app, identity))
                .inspect_err(|_| app.metrics.reject(crate::metrics::Rejection::AuthFailed))
        } else {
            client::admit(&app, token.as_deref())
        };
        let admitted = admitted.map_err(|refusal| connect_error(&refusal, messages))?;
        let identity = admitted.identity;
        // A session `prepare` found, to restore.
        let restoring: Pending = socket
            .with_state(|pending: &mut Pending| pending.take())
            .flatten();
        // The `CONNECT` answer goes ahead of this hold; what follows it waits until the
        // auto-joined rooms are subscribed.
        let hold = socket.hold_output();
        let auto_rooms = self.router.auto_join(&self.name, &identity.claims);
        let mut session = None;
        if let Some(restoring) = restoring {
            let ns = self.name.as_str();
            let session_identity = identity.clone().into_session();
            let mut may_join = |room: &str| {
                let auto_room = auto_rooms.iter().any(|r| r == room);
                client::check_subscribe(&app, &session_identity, ns, room, None, auto_room).is_ok()
            };
            session = recovery::restore(
                socket,
                restoring,
                &identity.tenant,
                &identity.user,
                &auto_rooms,
                &mut may_join,
                recovery::ReplayBudget::of(&app),
            );
            app.metrics.recovery(session.is_some());
        }
        // Registered by a restore already, or now (a new session).
        socket.set_identity(&identity.tenant, &identity.user);
        if session.is_none() {
            let position = app
                .sessions
                .get()
                .map(|_| recovery::position_now(&app, &identity.tenant, &self.name));
            for room in &auto_rooms {
                if let Err(e) = socket.join(room) {
                    tracing::warn!(error = %e, room, "auto-join skipped");
                }
            }
            if let Some(position) = position {
                let live = recovery::start(socket, &identity.tenant, &identity.user, position);
                session = Some(live);
            }
        }
        if let (Some(live), Some(writer)) = (&session, app.sessions.get()) {
            socket.set_pid(&live.pid);
            writer.keep(live);
        }
        app.node.release_when_subscribed(hold);
        app.metrics
            .connections_opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let caller = Caller {
            claims: &identity.claims,
            socket_id: socket.id(),
            now: SystemTime::now(),
        };
        if let Some((event, args)) = self.router.greeting(&self.name, &caller) {
            let _ = socket.emit_args(&event, &Args::from_values(args));
        }
        let tenant = identity.tenant.clone();
        let mut core =
            ClientCore::new(&app, identity.into_session(), admitted.slot, Instant::now());
        core.track(&app, Transport::SocketIo, socket.id(), Some(&self.name));
        socket.set_expiry(core.expiry_deadline());
        let unplaced = session.as_ref().is_some_and(|s| s.record.offset.is_empty());
        socket.set_state(SocketState {
            core,
            session: session.map(Box::new),
        });
        if unplaced {
            // Where the session starts in the log, once the broker has said.
            let socket = socket.clone();
            let writer = app.sessions.get().cloned();
            recovery::fill_position(&app, &tenant, &self.name, move |offset| {
                socket.with_state(|state: &mut SocketState| {
                    if let (Some(live), Some(writer)) = (state.session.as_mut(), &writer) {
                        live.record.offset = offset;
                        writer.keep(live);
                    }
                });
            });
        }
        Ok(())
    }

    fn prepare(
        &self,
        auth: Option<&RawValue>,
        req: &http::request::Parts,
    ) -> Option<BoxFuture<'static, Prepared>> {
        let app = self.app.upgrade()?;
        let token = token(auth, req);
        let Some(proxy) = app
            .backends
            .connect_proxy()
            .filter(|proxy| proxy.applies(token.is_some()))
        else {
            return recovery::prepare(&app, &self.name, auth, token);
        };
        // A proxied client has no token to prove a recoverable session is its own: it gets a
        // new session.
        let body = proxy.body(&Handshake {
            transport: "socketio",
            namespace: Some(&self.name),
            head: req,
            auth,
        });
        Some(Box::pin(async move {
            let verdict = app.backends.check_connect(&app.verifier, body).await;
            Prepared {
                sid: None,
                state: Some(Box::new(Proxied(Some(verdict)))),
            }
        }))
    }

    fn on_event(&self, socket: &SocketRef, event: &str, args: Args, ack: Option<AckSender>) {
        let Some(app) = self.app.upgrade() else {
            return;
        };
        let Some((identity, over_rate)) = socket.with_state(|state: &mut SocketState| {
            let over_rate = state.core.take_message(&app, Instant::now()).err();
            (state.core.identity().clone(), over_rate)
        }) else {
            return;
        };
        let mut ack = ack;
        let caller = Caller {
            claims: &identity.claims,
            socket_id: socket.id(),
            now: SystemTime::now(),
        };
        let ns = self.name.as_str();
        let refuse = |refusal: &Refusal, ack: &mut Option<AckSender>| {
            self.refuse(&app, socket, event, refusal, ack, &caller);
        };
        if let Some(refusal) = over_rate {
            return refuse(&refusal, &mut ack);
        }
        let values: Vec<Value> = args.parse().unwrap_or_default();
        let original = args;
        for action in self
            .router
            .route(ns, event, &values, ack.is_some(), &caller)
        {
            match action {
                Action::Join { room, then } => {
                    let auto_room = self.router.auto_join(ns, &identity.claims).contains(&room);
                    if let Err(refusal) =
                        client::check_subscribe(&app, &identity, ns, &room, None, auto_room)
                    {
                        return refuse(&refusal, &mut ack);
                    }
                    // The answer, and what follows it, wait for the room's subscription.
                    let hold = socket.hold_output();
                    let joined = socket.join(&room);
                    app.node.release_when_subscribed(hold);
                    match joined {
                        Ok(_) => {
                            session_moved(&app, socket, &room, true);
                            answer(socket, then, &mut ack);
                        }
                        Err(e) => return refuse(&join_refusal(e), &mut ack),
                    }
                }
                Action::JoinIn { tenant, room, then } => {
                    let auto_room = self.router.auto_join(ns, &identity.claims).contains(&room);
                    let tenant = match client::check_subscribe(
                        &app,
                        &identity,
                        ns,
                        &room,
                        Some(&tenant),
                        auto_room,
                    ) {
                        Ok(tenant) => tenant,
                        Err(refusal) => return refuse(&refusal, &mut ack),
                    };
                    let hold = socket.hold_output();
                    let joined = socket.join_in(tenant, &room);
                    app.node.release_when_subscribed(hold);
                    match joined {
                        Ok(_) => answer(socket, then, &mut ack),
                        Err(e) => return refuse(&join_refusal(e), &mut ack),
                    }
                }
                Action::Leave { room, then } => {
                    if socket.leave(&room) {
                        session_moved(&app, socket, &room, false);
                    }
                    answer(socket, then, &mut ack);
                }
                Action::LeaveIn { tenant, room, then } => {
                    socket.leave_in(&tenant, &room);
                    answer(socket, then, &mut ack);
                }
                Action::Relay {
                    room,
                    event,
                    args,
                    volatile,
                    then,
                } => {
                    // Relaying is publishing from a client: the ACL's publish rules and the
                    // publish size limit apply, as to a native `publish`.
                    let relayed = if args == values {
                        original.clone()
                    } else {
                        Args::from_values(args)
                    };
                    let size = relayed.json().get().len()
                        + relayed.attachments().iter().map(|a| a.len()).sum::<usize>();
                    if let Err(refusal) = client::check_publish(&app, &identity, ns, &room, size) {
                        return refuse(&refusal, &mut ack);
                    }
                    // A publication like any other (through the node, to native and Socket.IO
                    // members of the room, counted), relayed as received, binary attachments
                    // included, unless the route renders its own data; not to the sender.
                    let publication = relay_publication(socket, &room, &event, &relayed, volatile);
                    match app.node.attempt(publication) {
                        Attempt::Done(Ok(_)) => answer(socket, then, &mut ack),
                        Attempt::Done(Err(e)) => return refuse(&Refusal::from(e), &mut ack),
                        Attempt::Waiting(publish) => {
                            let answer_later = self.late_answer(&app, socket, &event, &identity);
                            let late = answer_later.clone();
                            let ack_now = ack.take();
                            let work = async move {
                                let result = publish.await.map(drop).map_err(Refusal::from);
                                answer_later.finish(result, then, ack_now);
                            };
                            let timed_out =
                                move || late.finish(Err(Refusal::Timeout), Reply::None, None);
                            if let Err(refusal) = submit(&app, socket, work, timed_out) {
                                return refuse(&refusal, &mut ack);
                            }
                        }
                    }
                }
                Action::Rpc { backend, path } => {
                    let call = RpcCall {
                        kind: "event",
                        name: event.to_owned(),
                        namespace: self.name.clone(),
                        session: socket.id().to_owned(),
                        args: values.clone(),
                    };
                    let called = match app.backends.start_call(&backend, &path, &identity, call) {
                        Ok(called) => called,
                        Err(refusal) => return refuse(&refusal, &mut ack),
                    };
                    self.answer_later(&app, socket, event, &identity, &values, &mut ack, called)
                        .unwrap_or_else(|refusal| refuse(&refusal, &mut ack));
                }
                Action::Inbox {
                    op,
                    notification,
                    options,
                } => {
                    let Some(inbox) = app.inbox() else {
                        return refuse(&Refusal::NoInbox, &mut ack);
                    };
                    let actor = crate::inbox::Actor::of(&identity, socket.conn_id());
                    let done = match inbox.start(op, actor, notification, &options) {
                        Ok(done) => done,
                        Err(refusal) => return refuse(&refusal, &mut ack),
                    };
                    self.answer_later(&app, socket, event, &identity, &values, &mut ack, done)
                        .unwrap_or_else(|refusal| refuse(&refusal, &mut ack));
                }
                Action::Reply(reply) => answer(socket, reply, &mut ack),
                Action::Unhandled => {}
            }
        }
    }

    fn on_expiry(&self, socket: &SocketRef) {
        let Some(app) = self.app.upgrade() else {
            return;
        };
        let Some((checked, next)) = socket.with_state(|state: &mut SocketState| {
            let checked = state.core.check_expiry(&app, Instant::now());
            let checked = checked.map_err(|refusal| (refusal, state.core.identity().clone()));
            (checked, state.core.expiry_deadline())
        }) else {
            return;
        };
        socket.set_expiry(next);
        if let Err((refusal, identity)) = checked {
            let caller = Caller {
                claims: &identity.claims,
                socket_id: socket.id(),
                now: SystemTime::now(),
            };
            self.refuse(&app, socket, "", &refusal, &mut None, &caller);
        }
    }

    fn on_disconnect(&self, socket: &SocketRef, reason: &str) {
        socket.with_state(|state: &mut SocketState| state.core.end_reason(reason));
        // The socket drops its state (and with it the limit slot) itself; a recoverable
        // session waits for its client, or ends.
        let Some(writer) = self
            .app
            .upgrade()
            .and_then(|app| app.sessions.get().cloned())
        else {
            return;
        };
        socket.with_state(|state: &mut SocketState| {
            if let Some(live) = &state.session {
                writer.disconnected(live, reason);
            }
        });
    }
}
