//! What an event emitted by a Socket.IO client does, per namespace, as `[socketio]` configures
//! it: the [`Router`] turns (namespace, event, arguments) into [`Action`]s for the runtime to
//! carry out: join or leave a room, relay to a room, reply, call a backend (`rpc`), act on the
//! sender's inbox (`inbox`). Sans-IO: no sockets, no clock (the caller passes the time), no
//! room index and no ACL: the runtime applies those and asks the router how to tell a refusal
//! ([`Router::refusal`]).
//!
//! Templates in routes, greetings and errors (rendered by the router):
//! - `{sub}`, `{tenant_id}`, any claim of the token; `{org.id}` a field of an object claim;
//! - `{args}` the event's arguments as an array, `{args.0}` the first, `{args.0.tenant_id}` a
//!   field of it (not in greetings nor error templates);
//! - `{socket.id}` the socket id; `{now}` the time, `2024-01-20T14:30:00.000Z`;
//! - `{error}` the refusal message, in error templates only.
//!
//! In JSON data a string that is exactly one placeholder keeps the JSON type of its value
//! (missing: `null`); placeholders inside longer strings render as text (missing: nothing). In a
//! room name every placeholder must give a non-empty string or a number, else the event is
//! refused. `{{` and `}}` are literal braces.
//!
//! Acks: when the client asked for one, the route's reply data answers the ack instead of being
//! emitted as the reply event, and a route without reply data answers it with no arguments; a
//! refusal answers it with the error data. So an ack asked for a routed event is always answered
//! exactly once. An event with no route gives [`Action::Unhandled`]: the runtime ignores it and
//! answers no ack, as a Socket.IO server without a listener for it does.

mod build;
#[cfg(test)]
mod rpc_tests;
#[cfg(test)]
mod seeds;
pub(crate) mod template;

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::Value;

use crate::acl::RoomPolicy;
use crate::auth::ClaimSource;
use crate::config::{ConfigError, InboxOp, SocketIoConfig};
use crate::proto::MAX_NAME_BYTES;
use template::{Context, Data, Text};

/// The connection an event came from.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The claims of its token.
    pub claims: &'a dyn ClaimSource,
    /// Its Socket.IO socket id (per namespace connection).
    pub socket_id: &'a str,
    /// The current time, for `{now}`.
    pub now: SystemTime,
}

/// Something the runtime does for a client's event. [`Router::route`] gives them in the order
/// they are to be carried out; when one is refused (ACL, room limit), the runtime sends
/// [`Router::refusal`] in its place and skips the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Join the sender to `room` of the namespace, in its tenant, if the room ACL lets it
    /// subscribe (auto-joined rooms always do); then send `then`. Joining a room the socket is
    /// already in succeeds.
    Join {
        /// The rendered room name (1 to 256 bytes, no control characters).
        room: String,
        /// Sent once the socket is in the room.
        then: Reply,
    },
    /// Remove the sender from `room`, then send `then`. Leaving a room the socket is not in
    /// succeeds.
    Leave {
        /// The rendered room name.
        room: String,
        /// Sent once the socket is out of the room.
        then: Reply,
    },
    /// [`Action::Join`] for a room of `tenant`, which the route's `tenant` template named: the
    /// runtime refuses it unless `tenant` is the sender's own or the sender is a platform
    /// admin (and then the ACL does not apply).
    JoinIn {
        /// The rendered tenant.
        tenant: String,
        /// The rendered room name.
        room: String,
        /// Sent once the socket is in the room.
        then: Reply,
    },
    /// [`Action::Leave`] for a room of `tenant`.
    LeaveIn {
        /// The rendered tenant.
        tenant: String,
        /// The rendered room name.
        room: String,
        /// Sent once the socket is out of the room.
        then: Reply,
    },
    /// Send `event` with `args` to every socket of the namespace in `room`, in the sender's
    /// tenant, except the sender, if the room ACL lets it publish there; then send `then`.
    Relay {
        /// The rendered room name.
        room: String,
        /// The event the room receives.
        event: String,
        /// Its arguments: the rendered `relay.data`, or else the client's own arguments as they
        /// were given to [`Router::route`] (binary attachments are the runtime's to carry along).
        args: Vec<Value>,
        /// Receivers whose queue is full miss it instead of being disconnected.
        volatile: bool,
        /// Sent to the sender once the event is handed over.
        then: Reply,
    },
    /// Post the event to `backend` at `path` with `args`; once it answers, send
    /// [`Router::rpc_answer`] (or, when it refuses or fails, [`Router::refusal`]).
    Rpc {
        /// The backend's name in `[rpc.backends]`.
        backend: String,
        /// Appended to the backend's URL.
        path: String,
    },
    /// Act on the sender's inbox; once done, send [`Router::rpc_answer`] with the result (or,
    /// when refused, [`Router::refusal`]).
    Inbox {
        /// What is done.
        op: InboxOp,
        /// The notification, for `read` and `dismiss`.
        notification: Option<i64>,
        /// The options of `list` (the first argument, when it is an object): `read`,
        /// `dismissed`, `type`, `priority`, `cursor`, `limit`.
        options: Value,
    },
    /// Only answer the sender.
    Reply(Reply),
    /// No route for this event (or no such namespace): ignore it, answer no ack.
    Unhandled,
}

/// An answer to the sender of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Nothing to send.
    None,
    /// Emit `event` with `args` to the sender's socket.
    Event {
        /// The event name.
        event: String,
        /// Its arguments (none, or the rendered data).
        args: Vec<Value>,
    },
    /// Answer the ack the client asked for, with these arguments.
    Ack(Vec<Value>),
}

/// The routing table of every namespace, compiled from `[socketio]`.
#[derive(Debug, Clone)]
pub struct Router {
    namespaces: Vec<Namespace>,
    /// Every name and alias, to its index in `namespaces`.
    by_name: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
struct Namespace {
    name: String,
    /// The auto-join templates (the ACL part is unused).
    auto_join: RoomPolicy,
    greeting: Option<Emit>,
    error: Emit,
    routes: HashMap<String, Route>,
}

#[derive(Debug, Clone)]
struct Route {
    kind: Kind,
    reply: Option<Emit>,
    error: Option<Emit>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// The room, and the tenant template if the route has one.
    Join(Text, Option<Text>),
    Leave(Text, Option<Text>),
    Relay {
        room: Text,
        /// `None`: the route's own event name.
        event: Option<String>,
        /// `None`: the client's arguments, unchanged.
        data: Option<Data>,
        volatile: bool,
    },
    Reply,
    Rpc {
        backend: String,
        path: String,
    },
    Inbox {
        op: InboxOp,
        /// `read` and `dismiss`: the notification id's template.
        notification: Option<Text>,
    },
}

/// An event name and its data template. `event` is empty for a reply that only answers acks.
#[derive(Debug, Clone)]
struct Emit {
    event: String,
    data: Option<Data>,
}

impl Emit {
    fn args(&self, ctx: &Context<'_>) -> Vec<Value> {
        self.data.iter().map(|data| data.render(ctx)).collect()
    }
}

impl Router {
    /// Compiles `[socketio]`; `default_auto_join` (`rooms.auto_join`) serves namespaces without
    /// their own `auto_join`. Without any namespace configured, the main namespace `/` is served
    /// with no routes. Errors name the key: `socketio.namespaces[1].events[0].room: ...`.
    pub fn from_config(
        config: &SocketIoConfig,
        default_auto_join: &[String],
    ) -> Result<Router, ConfigError> {
        build::build(config, default_auto_join)
    }

    /// The namespaces served, by their configured names (aliases excluded), in configuration
    /// order.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> + '_ {
        self.namespaces.iter().map(|ns| ns.name.as_str())
    }

    /// The namespace a client asking for `requested` is connected to: `requested` itself when
    /// configured, the namespace it is an alias of, or `None` (answer CONNECT_ERROR
    /// "Invalid namespace"). Room keys use the returned name.
    pub fn resolve(&self, requested: &str) -> Option<&str> {
        self.namespace(requested).map(|ns| ns.name.as_str())
    }

    /// The rooms to join on connect to `ns` (a name or an alias), rendered from `claims`: in
    /// template order, without duplicates, at most [`crate::acl::MAX_RENDERED_ROOMS`]. Empty for
    /// an unknown namespace. The caller applies `rooms.max_per_connection`.
    pub fn auto_join(&self, ns: &str, claims: &impl ClaimSource) -> Vec<String> {
        self.namespace(ns)
            .map(|ns| ns.auto_join.auto_rooms(claims))
            .unwrap_or_default()
    }

    /// The event to send once a socket is connected to `ns`, with its arguments, if the
    /// namespace has a greeting.
    pub fn greeting(&self, ns: &str, caller: &Caller<'_>) -> Option<(String, Vec<Value>)> {
        let greeting = self.namespace(ns)?.greeting.as_ref()?;
        let ctx = context(caller, &[], None);
        Some((greeting.event.clone(), greeting.args(&ctx)))
    }

    /// What to do for `event` with `args`, emitted by `caller` on `ns` (a name or an alias);
    /// `wants_ack` tells whether the client asked for an ack. An event whose room cannot be
    /// named from its arguments is refused here: the one action is then the refusal's reply.
    pub fn route(
        &self,
        ns: &str,
        event: &str,
        args: &[Value],
        wants_ack: bool,
        caller: &Caller<'_>,
    ) -> Vec<Action> {
        let Some(namespace) = self.namespace(ns) else {
            return vec![Action::Unhandled];
        };
        let Some(route) = namespace.routes.get(event) else {
            return vec![Action::Unhandled];
        };
        let ctx = context(caller, args, None);
        let then = || answer(route.reply.as_ref(), wants_ack, &ctx);
        let refused =
            |message: String| Action::Reply(refuse(namespace, route, wants_ack, &message, caller));
        let action = match &route.kind {
            Kind::Reply => Action::Reply(then()),
            Kind::Rpc { backend, path } => Action::Rpc {
                backend: backend.clone(),
                path: path.clone(),
            },
            Kind::Inbox { op, notification } => {
                let id = notification.as_ref().map(|t| notification_id(t, &ctx));
                match id.transpose() {
                    Ok(notification) => Action::Inbox {
                        op: *op,
                        notification,
                        options: match args.first() {
                            Some(options @ Value::Object(_)) => options.clone(),
                            _ => Value::Null,
                        },
                    },
                    Err(message) => refused(message),
                }
            }
            Kind::Join(room, tenant) => match room_name(room, &ctx) {
                Ok(room) => match tenant.as_ref().and_then(|t| t.render_optional(&ctx)) {
                    Some(tenant) => Action::JoinIn {
                        tenant,
                        room,
                        then: then(),
                    },
                    None => Action::Join { room, then: then() },
                },
                Err(message) => refused(message),
            },
            Kind::Leave(room, tenant) => match room_name(room, &ctx) {
                Ok(room) => match tenant.as_ref().and_then(|t| t.render_optional(&ctx)) {
                    Some(tenant) => Action::LeaveIn {
                        tenant,
                        room,
                        then: then(),
                    },
                    None => Action::Leave { room, then: then() },
                },
                Err(message) => refused(message),
            },
            Kind::Relay {
                room,
                event: relay_event,
                data,
                volatile,
            } => match room_name(room, &ctx) {
                Ok(room) => Action::Relay {
                    room,
                    event: relay_event.clone().unwrap_or_else(|| event.to_string()),
                    args: match data {
                        Some(data) => vec![data.render(&ctx)],
                        None => args.to_vec(),
                    },
                    volatile: *volatile,
                    then: then(),
                },
                Err(message) => refused(message),
            },
        };
        vec![action]
    }

    /// The answer to `event` with `args` on `ns` once its `rpc` backend answered `result`: the
    /// route's reply rendered with `{result}` (its data defaults to the result itself), as the
    /// ack when the client asked for one, else as the reply event; the bare result answers an
    /// ack of a route without a reply.
    pub fn rpc_answer(
        &self,
        ns: &str,
        event: &str,
        args: &[Value],
        wants_ack: bool,
        result: &Value,
        caller: &Caller<'_>,
    ) -> Reply {
        let reply = self
            .namespace(ns)
            .and_then(|ns| ns.routes.get(event))
            .and_then(|route| route.reply.as_ref());
        let mut ctx = context(caller, args, None);
        ctx.result = Some(result);
        let data = match reply.and_then(|r| r.data.as_ref()) {
            Some(data) => data.render(&ctx),
            None => result.clone(),
        };
        match reply {
            _ if wants_ack => Reply::Ack(vec![data]),
            Some(reply) if !reply.event.is_empty() => Reply::Event {
                event: reply.event.clone(),
                args: vec![data],
            },
            _ => Reply::None,
        }
    }

    /// How to tell `caller` that `event` on `ns` was refused (room not allowed, too many rooms):
    /// the route's error template, else the namespace's, with `{error}` = `message`; as the ack
    /// when the client asked for one, else as an event.
    pub fn refusal(
        &self,
        ns: &str,
        event: &str,
        wants_ack: bool,
        message: &str,
        caller: &Caller<'_>,
    ) -> Reply {
        let Some(namespace) = self.namespace(ns) else {
            return default_refusal(wants_ack, message);
        };
        match namespace.routes.get(event) {
            Some(route) => refuse(namespace, route, wants_ack, message, caller),
            None => tell(
                &namespace.error,
                wants_ack,
                &context(caller, &[], Some(message)),
            ),
        }
    }

    fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.by_name.get(name).map(|&i| &self.namespaces[i])
    }
}

fn context<'a>(caller: &Caller<'a>, args: &'a [Value], error: Option<&'a str>) -> Context<'a> {
    Context {
        claims: caller.claims,
        args,
        socket_id: caller.socket_id,
        now: caller.now,
        error,
        result: None,
    }
}

/// The success answer: the data as the ack when one was asked for, else the reply event.
fn answer(reply: Option<&Emit>, wants_ack: bool, ctx: &Context<'_>) -> Reply {
    match reply {
        _ if wants_ack => Reply::Ack(reply.map(|r| r.args(ctx)).unwrap_or_default()),
        Some(reply) if !reply.event.is_empty() => Reply::Event {
            event: reply.event.clone(),
            args: reply.args(ctx),
        },
        _ => Reply::None,
    }
}

fn refuse(
    namespace: &Namespace,
    route: &Route,
    wants_ack: bool,
    message: &str,
    caller: &Caller<'_>,
) -> Reply {
    let error = route.error.as_ref().unwrap_or(&namespace.error);
    tell(error, wants_ack, &context(caller, &[], Some(message)))
}

fn tell(error: &Emit, wants_ack: bool, ctx: &Context<'_>) -> Reply {
    if wants_ack {
        Reply::Ack(error.args(ctx))
    } else {
        Reply::Event {
            event: error.event.clone(),
            args: error.args(ctx),
        }
    }
}

/// The built-in error template, `{ event = "error", data = { message = "{error}" } }`, rendered.
fn default_refusal(wants_ack: bool, message: &str) -> Reply {
    let data = serde_json::json!({ "message": message });
    if wants_ack {
        Reply::Ack(vec![data])
    } else {
        Reply::Event {
            event: "error".into(),
            args: vec![data],
        }
    }
}

/// A notification id rendered from the event: an integer, or a string of one.
fn notification_id(template: &Text, ctx: &Context<'_>) -> Result<i64, String> {
    let id = template
        .render_name(ctx)
        .map_err(|e| format!("cannot read the notification id: {e}"))?;
    id.trim()
        .parse::<i64>()
        .map_err(|_| "the notification id must be an integer".to_owned())
}

fn room_name(template: &Text, ctx: &Context<'_>) -> Result<String, String> {
    let room = template
        .render_name(ctx)
        .map_err(|e| format!("cannot name the room: {e}"))?;
    if room.len() > MAX_NAME_BYTES {
        return Err(format!("room name longer than {MAX_NAME_BYTES} bytes"));
    }
    if room.chars().any(char::is_control) {
        return Err("room name contains control characters".into());
    }
    Ok(room)
}

#[cfg(test)]
mod tests;
