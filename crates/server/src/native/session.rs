//! One native protocol connection: authentication, subscriptions, client publishes, token
//! refresh and expiry, rate limiting, and the close codes of `protocol/codes.md`.
//!
//! The session runs inside its connection's task as a [`Handler`]: no `.await`, brief
//! access to the shared room index, answers pushed to the connection's own bounded queue.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use roomcast_engine::driver::{Ctx, End, Handler};
use roomcast_engine::rooms::{ConnId, JoinError, Member, RoomKey, WireFormat};
use roomcast_engine::{OutQueue, Outbound};

use crate::app::{App, LiveGuard};
use crate::auth::{AuthError, SessionIdentity};
use crate::limits::{LimitError, Slot};
use crate::metrics::Rejection;
use crate::native::close_request;
use crate::native::proto::{self, ClientMessage, CloseCode, ErrorCode};
use crate::native::rate::TokenBucket;
use roomcast_broker::{Payload, Publication, Target};

/// The namespace native clients use when a message names none.
const DEFAULT_NS: &str = "/";

enum State {
    /// Upgraded without a token: the first frame must be `auth`, before the deadline.
    Awaiting {
        deadline: Instant,
    },
    Active(Box<Active>),
    /// Closing or closed: further messages are ignored.
    Done,
}

struct Active {
    /// The claims in it are only those the room policy reads.
    identity: SessionIdentity,
    /// When to check the token's expiry next (`None`: it never expires).
    expires: Option<Instant>,
    // Held for the connection's lifetime: dropping it frees the limit slot.
    _slot: Slot,
}

/// The native protocol handler of one connection.
pub struct NativeSession {
    app: Arc<App>,
    id: ConnId,
    queue: Arc<OutQueue>,
    state: State,
    bucket: TokenBucket,
    violations: u32,
    rate_strikes: u32,
    _live: LiveGuard,
}

impl std::fmt::Debug for NativeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The longest a connection waits before it checks its token's expiry against the system
/// clock again, which may be stepped while the monotonic clock its timer runs on is not.
const EXPIRY_RECHECK: Duration = Duration::from_secs(60);

/// When to check a token expiring at `expires_at` (unix seconds) next: when it expires past
/// the leeway, or sooner.
fn expiry_check(app: &App, expires_at: Option<u64>) -> Option<Instant> {
    let at = app.verifier.expiry_deadline(expires_at)?;
    Some(at.min(Instant::now() + EXPIRY_RECHECK))
}

impl NativeSession {
    /// A session waiting for its token.
    pub fn new(app: Arc<App>, queue: Arc<OutQueue>, live: LiveGuard, now: Instant) -> Self {
        let limits = &app.config.limits;
        let bucket = TokenBucket::new(limits.messages_per_second, limits.messages_burst, now);
        let deadline = now + Duration::from_millis(app.config.auth.auth_timeout_ms);
        Self {
            id: ConnId::next(),
            queue,
            state: State::Awaiting { deadline },
            bucket,
            violations: 0,
            rate_strikes: 0,
            _live: live,
            app,
        }
    }

    /// The session id given to the client in `welcome`.
    pub fn session_id(id: ConnId) -> String {
        format!("{:x}", id.0)
    }

    /// Queues a message to this connection; the driver frames it on the way out.
    fn send(&self, json: Bytes) {
        let _ = self.queue.push(Outbound::Text(json));
    }

    /// Sends a `disconnect` message, then closes with the same code.
    fn disconnect(&mut self, code: CloseCode, reason: &str) {
        self.queue.request_close(close_request(code, reason));
        self.leave_index();
        self.state = State::Done;
    }

    fn leave_index(&self) {
        if matches!(self.state, State::Active(_)) {
            self.app.index.unregister(self.id);
        }
    }

    /// Verifies a token and, when it is good and the limits allow, joins the auto rooms and
    /// sends `welcome`.
    pub fn authenticate(&mut self, token: &str) {
        let identity = match self.app.verifier.verify(token) {
            Ok(identity) => identity,
            Err(e) => {
                self.app.metrics.reject(Rejection::AuthFailed);
                tracing::debug!(error = %e, "authentication failed");
                // An already expired token is 4003, every other refusal 4002 (codes.md).
                let code = match e {
                    AuthError::Expired => CloseCode::TokenExpired,
                    _ => CloseCode::AuthFailed,
                };
                return self.disconnect(code, e.reason());
            }
        };
        let slot = match self.app.limits.acquire(&identity.tenant, &identity.user) {
            Ok(slot) => slot,
            Err(e) => {
                self.app.metrics.reject(Rejection::Limit);
                let reason = match e {
                    LimitError::Global => "server connection limit reached",
                    LimitError::Tenant => "tenant connection limit reached",
                    LimitError::User => "user connection limit reached",
                };
                return self.disconnect(CloseCode::ConnectionLimit, reason);
            }
        };
        let app = &self.app;
        let mut identity = identity;
        let mut rooms = app.policy.auto_rooms(&identity.claims);
        app.policy.retain_used_claims(&mut identity.claims);
        let identity = identity.into_session();
        rooms.truncate(app.config.rooms.max_per_connection);
        // The welcome is queued before the connection becomes visible to publishers, so that
        // nothing reaches the client before it (protocol/README.md section 2).
        self.send(proto::encode_welcome(
            &Self::session_id(self.id),
            &identity.user,
            &identity.tenant,
            &rooms,
            app.config.heartbeat.interval_ms,
            identity.expires_at,
        ));
        let keys: Vec<RoomKey> = rooms
            .iter()
            .map(|room| RoomKey::new(&identity.tenant, DEFAULT_NS, room))
            .collect();
        app.index.register_with_rooms(
            &identity.tenant,
            &identity.user,
            Member {
                id: self.id,
                format: WireFormat::Native,
                queue: self.queue.clone(),
            },
            &keys,
        );
        app.metrics
            .connections_opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state = State::Active(Box::new(Active {
            expires: expiry_check(app, identity.expires_at),
            identity,
            _slot: slot,
        }));
    }

    fn reply_error(&self, id: Option<u64>, code: ErrorCode, message: &str) {
        self.send(proto::encode_reply_error(id, code, message));
    }

    /// Counts a bad request; too many close the connection.
    fn violation(&mut self) {
        self.violations += 1;
        if self.violations > self.app.config.limits.max_violations {
            self.disconnect(
                CloseCode::ProtocolViolations,
                CloseCode::ProtocolViolations.reason(),
            );
        }
    }

    fn handle(&mut self, msg: ClientMessage) {
        let State::Active(active) = &mut self.state else {
            return;
        };
        let app = &self.app;
        let identity = &active.identity;
        match msg {
            ClientMessage::Auth { .. } => self.reply_error(
                None,
                ErrorCode::AlreadyAuthenticated,
                "already authenticated",
            ),
            ClientMessage::Subscribe {
                id,
                room,
                ns,
                tenant,
            } => {
                let ns = ns.as_deref().unwrap_or(DEFAULT_NS);
                let (tenant, allowed) = match tenant.as_deref() {
                    Some(t) if t != &*identity.tenant => (t, identity.admin),
                    _ => (
                        &*identity.tenant,
                        app.policy.may_subscribe(ns, &room, &identity.claims),
                    ),
                };
                if !allowed {
                    return self.reply_error(Some(id), ErrorCode::Forbidden, "room not allowed");
                }
                match app.index.join(self.id, &RoomKey::new(tenant, ns, &room)) {
                    Ok(_) => self.send(proto::encode_reply_ok(id)),
                    Err(JoinError::TooManyRooms) => {
                        self.reply_error(Some(id), ErrorCode::TooManyRooms, "room limit reached")
                    }
                    Err(_) => self.reply_error(Some(id), ErrorCode::Internal, "not registered"),
                }
            }
            ClientMessage::Unsubscribe {
                id,
                room,
                ns,
                tenant,
            } => {
                let ns = ns.as_deref().unwrap_or(DEFAULT_NS);
                let tenant = tenant.as_deref().unwrap_or(&identity.tenant);
                if app.index.leave(self.id, &RoomKey::new(tenant, ns, &room)) {
                    self.send(proto::encode_reply_ok(id));
                } else {
                    self.reply_error(Some(id), ErrorCode::NotSubscribed, "not subscribed");
                }
            }
            ClientMessage::Publish {
                id,
                room,
                event,
                data,
                ns,
            } => {
                let ns = ns.as_deref().unwrap_or(DEFAULT_NS);
                if !app.policy.may_publish(ns, &room, &identity.claims) {
                    return self.reply_error(Some(id), ErrorCode::Forbidden, "publish not allowed");
                }
                if data.get().len() > app.config.limits.max_publish_bytes {
                    return self.reply_error(
                        Some(id),
                        ErrorCode::PayloadTooLarge,
                        "data larger than limits.max_publish_bytes",
                    );
                }
                let mut publication = Publication::new(
                    ns,
                    Target::Tenant {
                        tenant: (&*identity.tenant).into(),
                        rooms: vec![room.into()],
                        users: Vec::new(),
                    },
                    &event,
                    Payload::Json(data),
                );
                publication.exclude = Some(self.id);
                let queue = self.queue.clone();
                app.node.publish_detached(publication, move |result| {
                    let reply = match result {
                        Ok(_) => proto::encode_reply_ok(id),
                        Err(e) => {
                            proto::encode_reply_error(Some(id), ErrorCode::Internal, &e.to_string())
                        }
                    };
                    let _ = queue.push(Outbound::Text(reply));
                });
            }
            ClientMessage::Refresh { id, token } => match app.verifier.verify(&token) {
                Ok(fresh) if *fresh.tenant == *identity.tenant && *fresh.user == *identity.user => {
                    let expires = fresh.expires_at;
                    if identity.admin && !fresh.admin {
                        // Observing other tenants was allowed by the old token only.
                        for key in app.index.rooms_of(self.id) {
                            if *key.tenant != *fresh.tenant {
                                app.index.leave(self.id, &key);
                            }
                        }
                    }
                    let mut fresh = fresh;
                    app.policy.retain_used_claims(&mut fresh.claims);
                    active.identity = fresh.into_session();
                    active.expires = expiry_check(app, expires);
                    match expires {
                        Some(exp) => self.send(proto::encode_reply_ok_expires(id, exp)),
                        None => self.send(proto::encode_reply_ok(id)),
                    }
                }
                Ok(_) => self.reply_error(
                    Some(id),
                    ErrorCode::InvalidToken,
                    "token is for another user or tenant",
                ),
                Err(e) => {
                    app.metrics.reject(Rejection::AuthFailed);
                    self.reply_error(Some(id), ErrorCode::InvalidToken, e.reason());
                }
            },
            ClientMessage::Ping { id } => self.send(proto::encode_pong(id)),
        }
    }
}

impl Handler for NativeSession {
    fn on_text(&mut self, text: Bytes, ctx: &mut Ctx<'_>) {
        if matches!(self.state, State::Done) {
            return;
        }
        let parsed = proto::parse(&text);
        if let State::Awaiting { .. } = self.state {
            return match parsed {
                Ok(ClientMessage::Auth { token }) => self.authenticate(&token),
                other => {
                    // A request whose id could be read is answered before the close.
                    let id = match &other {
                        Ok(msg) => msg.id(),
                        Err(e) => e.id,
                    };
                    if id.is_some() {
                        self.reply_error(id, ErrorCode::Unauthenticated, "authenticate first");
                    }
                    self.disconnect(CloseCode::AuthRequired, "first message must be auth")
                }
            };
        }
        if !self.bucket.take(ctx.now()) {
            self.app
                .metrics
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = parsed.as_ref().ok().and_then(ClientMessage::id);
            self.reply_error(id, ErrorCode::RateLimited, "too many messages");
            // Like bad requests: the reply, then the close once past the limit.
            self.rate_strikes += 1;
            if self.rate_strikes > self.app.config.limits.max_violations {
                self.disconnect(CloseCode::RateLimited, CloseCode::RateLimited.reason());
            }
            return;
        }
        match parsed {
            Ok(msg) => self.handle(msg),
            Err(e) => {
                self.reply_error(e.id, e.code, &e.message);
                // `unknown_type` is what a newer client gets from an older server: not a
                // violation (protocol/README.md section 6).
                if e.code == ErrorCode::BadRequest {
                    self.violation();
                }
            }
        }
    }

    fn on_binary(&mut self, _data: Bytes, _ctx: &mut Ctx<'_>) {
        if !matches!(self.state, State::Done) {
            self.disconnect(
                CloseCode::UnsupportedData,
                "binary frames are not supported",
            );
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        match &mut self.state {
            State::Awaiting { deadline } if ctx.now() >= *deadline => {
                self.app.metrics.reject(Rejection::AuthTimeout);
                self.disconnect(CloseCode::AuthRequired, "authentication timeout");
            }
            State::Active(active) if active.expires.is_some_and(|at| ctx.now() >= at) => {
                // The system clock decides; not yet expired by it, check again later.
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if self.app.verifier.expired(active.identity.expires_at, now) {
                    self.disconnect(CloseCode::TokenExpired, "token expired");
                } else {
                    active.expires = expiry_check(&self.app, active.identity.expires_at);
                }
            }
            _ => {}
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Awaiting { deadline } => Some(*deadline),
            State::Active(active) => active.expires,
            State::Done => None,
        }
    }

    fn farewell(&mut self, code: u16, reason: &str) -> Option<Outbound> {
        let code = CloseCode::from_code(code)?;
        Some(Outbound::Text(proto::encode_disconnect(code, reason)))
    }

    fn on_close(&mut self, end: &End) {
        if end.slow_consumer {
            self.app
                .metrics
                .slow_consumers
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.leave_index();
        self.state = State::Done;
    }
}
