//! One configured Socket.IO namespace served by the roomcast server: the JWT check on
//! `CONNECT`, auto-joined rooms, the greeting, and client events carried out as the
//! [`Router`] decides, under the same room ACL and limits as native clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use roomcast_engine::rooms::ConnId;
use roomcast_socketio::{AckSender, Args, ConnectError, NamespaceHandler, SocketRef};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::api_keys::bearer;
use crate::app::App;
use crate::auth::Claims;
use crate::http::query_param;
use crate::limits::Slot;
use crate::metrics::Rejection;
use crate::sio::routing::{Action, Caller, Reply, Router};

/// What a connected socket keeps: its claims (for routes and the ACL) and its limit slot. Every
/// claim is kept, since route, reply and error templates may read any of them; in the compact
/// form, since memory per connection is a budget.
struct SocketState {
    // Shared with the events being handled, which read them without holding the map's lock.
    claims: Arc<Claims>,
    _slot: Slot,
}

/// The handler of one namespace (its aliases share it).
pub(crate) struct ConfiguredNamespace {
    // Weak: the app owns the Socket.IO endpoint, which owns this handler.
    app: Weak<App>,
    router: Arc<Router>,
    /// The namespace's configured name (aliases resolve to it).
    name: String,
    // A std mutex: held to insert, read or remove one entry, never across an `.await`.
    sockets: Mutex<HashMap<ConnId, SocketState>>,
}

impl ConfiguredNamespace {
    pub(crate) fn new(app: Weak<App>, router: Arc<Router>, name: String) -> Self {
        Self {
            app,
            router,
            name,
            sockets: Mutex::new(HashMap::new()),
        }
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, SocketState>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
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
        #[allow(unreachable_patterns)]
        _ => {}
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
            return Err(ConnectError::new("server shutting down"));
        };
        if app.shutting_down() {
            return Err(ConnectError::new("server shutting down"));
        }
        let Some(token) = token(auth, req) else {
            app.metrics.reject(Rejection::AuthFailed);
            return Err(ConnectError::new("authentication required"));
        };
        let identity = app.verifier.verify(&token).map_err(|e| {
            app.metrics.reject(Rejection::AuthFailed);
            ConnectError::new(e.reason())
        })?;
        let slot = app
            .limits
            .acquire(&identity.tenant, &identity.user)
            .map_err(|e| {
                app.metrics.reject(Rejection::Limit);
                ConnectError::new(e.to_string())
            })?;
        socket.set_identity(&identity.tenant, &identity.user);
        for room in self.router.auto_join(&self.name, &identity.claims) {
            if let Err(e) = socket.join(&room) {
                tracing::warn!(error = %e, room, "auto-join skipped");
            }
        }
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
        self.sockets().insert(
            socket.conn_id(),
            SocketState {
                claims: Arc::new(Claims::from(identity.claims)),
                _slot: slot,
            },
        );
        Ok(())
    }

    fn on_event(&self, socket: &SocketRef, event: &str, args: Args, ack: Option<AckSender>) {
        let Some(app) = self.app.upgrade() else {
            return;
        };
        let Some(kept) = self
            .sockets()
            .get(&socket.conn_id())
            .map(|s| s.claims.clone())
        else {
            return;
        };
        let claims: &Claims = &kept;
        let values: Vec<Value> = args.parse().unwrap_or_default();
        let original = args;
        let mut ack = ack;
        let caller = Caller {
            claims,
            socket_id: socket.id(),
            now: SystemTime::now(),
        };
        let ns = self.name.as_str();
        let refuse = |message: &str, ack: &mut Option<AckSender>| {
            let reply = self
                .router
                .refusal(ns, event, ack.is_some(), message, &caller);
            answer(socket, reply, ack);
        };
        for action in self
            .router
            .route(ns, event, &values, ack.is_some(), &caller)
        {
            match action {
                Action::Join { room, then } => {
                    let allowed = app.policy.may_subscribe(ns, &room, claims)
                        || self.router.auto_join(ns, claims).contains(&room);
                    if !allowed {
                        return refuse("room not allowed", &mut ack);
                    }
                    match socket.join(&room) {
                        Ok(_) => answer(socket, then, &mut ack),
                        Err(_) => return refuse("room limit reached", &mut ack),
                    }
                }
                Action::Leave { room, then } => {
                    socket.leave(&room);
                    answer(socket, then, &mut ack);
                }
                Action::Relay {
                    room,
                    event,
                    args,
                    volatile,
                    then,
                } => {
                    // Relaying is publishing from a client: the ACL's publish rules, or being
                    // in the room, allow it.
                    let member = socket.rooms().contains(&room);
                    if !member && !app.policy.may_publish(ns, &room, claims) {
                        return refuse("publish not allowed", &mut ack);
                    }
                    let to = socket.to(&room);
                    let to = if volatile { to.volatile() } else { to };
                    // Relayed as received, binary attachments included, unless the route
                    // renders its own data.
                    let relayed = if args == values {
                        original.clone()
                    } else {
                        Args::from_values(args)
                    };
                    to.emit_args(&event, &relayed);
                    answer(socket, then, &mut ack);
                }
                Action::Reply(reply) => answer(socket, reply, &mut ack),
                Action::Unhandled => {}
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }

    fn on_disconnect(&self, socket: &SocketRef, _reason: &str) {
        self.sockets().remove(&socket.conn_id());
    }
}
