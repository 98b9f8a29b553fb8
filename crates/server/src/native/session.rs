//! One native protocol connection: its messages carried out through the client core
//! ([`crate::client`]: authentication, the ACL, rate and size limits, token refresh and
//! expiry), and the core's refusals told as the replies and close codes of `protocol/codes.md`.
//!
//! The session runs inside its connection's task as a [`Handler`]: no `.await`, brief
//! access to the shared room index, answers pushed to the connection's own bounded queue.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use roomcast_engine::driver::{Ctx, End, Handler};
use roomcast_engine::rooms::{ConnId, JoinError, Member, RoomKey, Tracked, WireFormat};
use roomcast_engine::{OutQueue, Outbound};

use crate::app::App;
use crate::client::{self, ClientCore, NativeAnswer, Refusal};
use crate::lifecycle::Transport;
use crate::metrics::Rejection;
use crate::native::close_request;
use crate::native::resume::{
    join_resumed, join_resumed_later, Budget, Resumed, Welcome, WelcomeRooms,
};
use crate::node::native_event;
use crate::proto::{self, ClientMessage, CloseCode, ErrorCode, Since};
use roomcast_broker::{Payload, Publication, Target};

/// The namespace native clients use when a message names none.
const DEFAULT_NS: &str = "/";
/// Events a `history` answers when it names no `limit`.
const DEFAULT_HISTORY_LIMIT: usize = 100;

enum State {
    /// Upgraded without a token: the first frame must be `auth`, before the deadline.
    Awaiting { deadline: Instant },
    /// Authenticated; the core's identity keeps only the claims the room policy reads.
    Active(Box<ClientCore>),
    /// Closing or closed: further messages are ignored.
    Done,
}

/// The native protocol handler of one connection.
pub struct NativeSession {
    app: Arc<App>,
    id: ConnId,
    queue: Arc<OutQueue>,
    state: State,
    violations: u32,
    // In the index's live table (what shutdown and the API reach) until the session ends.
    _tracked: Tracked,
}

impl std::fmt::Debug for NativeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NativeSession {
    /// A session waiting for its token.
    pub fn new(
        app: Arc<App>,
        id: ConnId,
        queue: Arc<OutQueue>,
        tracked: Tracked,
        now: Instant,
    ) -> Self {
        let deadline = now + Duration::from_millis(app.config.auth.auth_timeout_ms);
        Self {
            id,
            queue,
            state: State::Awaiting { deadline },
            violations: 0,
            _tracked: tracked,
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
        if let State::Active(core) = &mut self.state {
            core.end_reason(reason);
        }
        self.queue.request_close(close_request(code, reason));
        self.leave_index();
        self.state = State::Done;
    }

    /// Tells the client about a refusal: a failed reply to request `id`, or the close.
    fn refuse(&mut self, id: Option<u64>, refusal: &Refusal) {
        match refusal.native() {
            NativeAnswer::Reply(code, message) => self.reply_error(id, code, &message),
            NativeAnswer::Close(code, reason) => self.disconnect(code, &reason),
        }
    }

    fn leave_index(&self) {
        if matches!(self.state, State::Active(_)) {
            self.app.index.unregister(self.id);
        }
    }

    /// Verifies a token and, when it is good and the limits allow, joins the auto rooms and
    /// sends `welcome`. Auto rooms named in `since` are resumed after the position given
    /// there: their missed events follow the welcome.
    pub fn authenticate(&mut self, token: &str, since: Option<Vec<(String, Since)>>, now: Instant) {
        match client::admit(&self.app, Some(token)) {
            Ok(admitted) => self.start(admitted, since, now),
            Err(refusal) => self.refuse(None, &refusal),
        }
    }

    /// Starts the session with the connect proxy's verdict on the upgrade. A 401 (no
    /// credentials the proxy knows) leaves the session waiting for an `auth` message, unless
    /// the proxy decides every client (`mode = "only"`).
    pub fn authenticate_proxied(
        &mut self,
        verdict: Result<crate::auth::Identity, Refusal>,
        since: Option<Vec<(String, Since)>>,
        now: Instant,
    ) {
        let only = self.app.backends.connect_proxy().is_some_and(|p| p.only());
        match verdict.and_then(|identity| client::admit_identity(&self.app, identity)) {
            Ok(admitted) => self.start(admitted, since, now),
            Err(Refusal::ProxyRefused {
                unauthenticated: true,
                ..
            }) if !only => {}
            Err(refusal) => {
                self.app.metrics.reject(Rejection::AuthFailed);
                self.refuse(None, &refusal);
            }
        }
    }

    /// Joins the auto rooms of an admitted identity and sends `welcome`.
    fn start(
        &mut self,
        admitted: client::Admission,
        since: Option<Vec<(String, Since)>>,
        now: Instant,
    ) {
        let client::Admission { identity, slot } = admitted;
        let app = &self.app;
        let mut identity = identity;
        let mut rooms = app.policy.auto_rooms(&identity.claims);
        retain_claims(app, &mut identity.claims);
        let identity = identity.into_session();
        rooms.truncate(app.config.rooms.max_per_connection);
        // Nothing reaches the client before the welcome (protocol/README.md section 2), and
        // the welcome waits, with what follows it, until the auto-joined rooms are subscribed.
        let hold = self.queue.hold();
        let since = since.unwrap_or_default();
        let resumes = |room: &str| {
            since
                .binary_search_by(|(r, _)| r.as_str().cmp(room))
                .ok()
                .map(|i| &since[i].1)
        };
        let keys: Vec<RoomKey> = rooms
            .iter()
            .filter(|room| resumes(room).is_none())
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
        let session_id = Self::session_id(self.id);
        let welcome = Welcome {
            session_id: &session_id,
            user: &identity.user,
            tenant: &identity.tenant,
            rooms: &rooms,
            heartbeat_ms: app.config.heartbeat.interval_ms,
            expires_at: identity.expires_at,
        };
        if !app.node.broker().history_at_hand() {
            // A cluster's positions and history are in Redis: the welcome is made on the async
            // lane (what the client sends meanwhile is answered after it).
            let plain = welcome.encode(&[]);
            let owned = welcome.owned();
            let (lane_app, conn, queue, budget) = (
                self.app.clone(),
                self.id,
                self.queue.clone(),
                self.replay_budget(),
            );
            let late = self.queue.clone();
            let tenant = identity.tenant.to_string();
            // Shared with the timeout's answer, which must still come first of what is held.
            let hold = Arc::new(std::sync::Mutex::new(Some(hold)));
            let late_hold = hold.clone();
            let (late_app, late_tenant) = (self.app.clone(), tenant.clone());
            let resumed_rooms: Vec<String> = since.iter().map(|(room, _)| room.clone()).collect();
            let work = async move {
                let app = lane_app;
                let broker = app.node.broker();
                if let Some(subscribed) = broker.subscribed() {
                    subscribed.await;
                }
                let mut gathered = WelcomeRooms::new(budget);
                for room in &owned.rooms {
                    let key = RoomKey::new(&tenant, DEFAULT_NS, room);
                    let resumed = since
                        .binary_search_by(|(r, _)| r.as_str().cmp(room))
                        .ok()
                        .map(|i| &since[i].1);
                    match resumed {
                        None => gathered.joined(room, broker.current(&key).await),
                        Some(since) => {
                            let budget = gathered.budget();
                            let outcome = join_resumed_later(&app, conn, &key, since, budget).await;
                            gathered.resumed(room, outcome);
                        }
                    }
                }
                let hold = hold.lock().unwrap_or_else(PoisonError::into_inner).take();
                let Some(hold) = hold else { return };
                gathered.queue(&queue, &owned.borrowed());
                app.node.release_when_subscribed(hold);
            };
            // Past the lane's deadline the welcome goes without positions, first of what was
            // held, and the rooms it was resuming are joined without their history.
            let timed_out = move || {
                let hold = late_hold
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                for room in &resumed_rooms {
                    let _ = late_app
                        .index
                        .join(conn, &RoomKey::new(&late_tenant, DEFAULT_NS, room));
                }
                let _ = late.push_ahead(Outbound::Text(plain));
                drop(hold);
            };
            let mut core = ClientCore::new(app, identity, slot, now);
            if let Err(refusal) = core.submit(app, work, timed_out) {
                // Not served: out of the index again.
                app.index.unregister(self.id);
                return self.refuse(None, &refusal);
            }
            core.track(app, Transport::Native, &Self::session_id(self.id), None);
            app.metrics
                .connections_opened
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.state = State::Active(Box::new(core));
            return;
        }
        // Each room's position, read once the connection is in it: an event published since
        // it joined reaches it, whatever its offset.
        let mut gathered = WelcomeRooms::new(self.replay_budget());
        for room in &rooms {
            let key = RoomKey::new(&identity.tenant, DEFAULT_NS, room);
            match resumes(room) {
                None => gathered.joined(room, app.node.broker().position(&key)),
                Some(since) => gathered.resumed(room, self.resume(&key, since, gathered.budget())),
            }
        }
        gathered.queue(&self.queue, &welcome);
        app.node.release_when_subscribed(hold);
        app.metrics
            .connections_opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut core = ClientCore::new(app, identity, slot, now);
        core.track(app, Transport::Native, &Self::session_id(self.id), None);
        self.state = State::Active(Box::new(core));
    }

    /// What resumes may queue at once: half the outbound queue (in messages and in bytes),
    /// so that the live events fit beside them.
    fn replay_budget(&self) -> Budget {
        let limits = self.app.queue_limits;
        Budget {
            messages: (limits.max_messages / 2).clamp(1, usize::from(u16::MAX) - 2),
            bytes: limits.max_bytes / 2,
        }
    }

    /// Joins `key` resuming after `since`, with the room's publications held back meanwhile
    /// ([`Broker::join_since`](roomcast_broker::Broker::join_since)): the missed events when
    /// every one after `since` is still kept and they are at most `limit`; otherwise
    /// `recovered: false` and nothing (another epoch, events no longer kept, too many). The
    /// caller queues them ahead of its held output, so they come before the live ones.
    fn resume(&self, key: &RoomKey, since: &Since, budget: Budget) -> Result<Resumed, JoinError> {
        let mut resumed = Err(JoinError::NotRegistered);
        let position = since.position();
        self.app
            .node
            .broker()
            .join_since(key, &position, budget.messages, &mut |history| {
                resumed = join_resumed(&self.app, self.id, key, since, budget, history);
            });
        resumed
    }

    /// [`resume`](Self::resume) for a broker whose history is not at hand (a cluster's):
    /// read on the async lane, then joined as the broker finishes it; the reply and the missed
    /// events go ahead of what `hold` keeps back, which is let go of then.
    fn resume_later(
        &mut self,
        id: u64,
        key: RoomKey,
        since: Since,
        hold: roomcast_engine::QueueHold,
    ) -> Result<(), Refusal> {
        let (app, conn, queue, budget) = (
            self.app.clone(),
            self.id,
            self.queue.clone(),
            self.replay_budget(),
        );
        let late = self.queue.clone();
        let work = async move {
            let broker = app.node.broker();
            // What is published from the read on must reach this node: its subscriptions
            // (the tenant's, since this connection registered) first.
            if let Some(subscribed) = broker.subscribed() {
                subscribed.await;
            }
            match join_resumed_later(&app, conn, &key, &since, budget).await {
                Ok(r) => {
                    let current = r.current.as_ref().map(|c| (c.offset, &*c.epoch));
                    let reply = proto::encode_reply_recovered(id, r.recovered, current);
                    let _ = queue.push_ahead(Outbound::Text(reply));
                    for event in r.events {
                        let _ = queue.push_ahead(Outbound::Text(event));
                    }
                }
                Err(e) => {
                    let refusal = match e {
                        JoinError::TooManyRooms => Refusal::TooManyRooms,
                        _ => Refusal::ShuttingDown,
                    };
                    let _ = queue.push_ahead(Outbound::Text(encode_refusal(id, &refusal)));
                }
            }
            app.node.release_when_subscribed(hold);
        };
        let timed_out = move || {
            let _ = late.push(Outbound::Text(encode_refusal(id, &Refusal::Timeout)));
        };
        let State::Active(core) = &mut self.state else {
            return Ok(());
        };
        core.submit(&self.app, work, timed_out)
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
        let State::Active(core) = &mut self.state else {
            return;
        };
        // A handle of its own: the refusals below borrow the session mutably.
        let app = &self.app.clone();
        let identity = core.identity().clone();
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
                since,
            } => {
                let key =
                    match subscribable(app, &identity, ns.as_deref(), &room, tenant.as_deref()) {
                        Ok(key) => key,
                        Err(refusal) => return self.refuse(Some(id), &refusal),
                    };
                // The reply goes first of what the join brings (the missed events, then the
                // room's live ones), once the room's subscription is in effect.
                let hold = self.queue.hold();
                if let (Some(since), false) = (&since, app.node.broker().history_at_hand()) {
                    if let Err(refusal) = self.resume_later(id, key, since.clone(), hold) {
                        self.refuse(Some(id), &refusal);
                    }
                    return;
                }
                let joined = match since {
                    None => app.index.join(self.id, &key).inspect(|_| {
                        let _ = self
                            .queue
                            .push_ahead(Outbound::Text(proto::encode_reply_ok(id)));
                    }),
                    Some(since) => self.resume(&key, &since, self.replay_budget()).map(|r| {
                        let current = r.current.as_ref().map(|c| (c.offset, &*c.epoch));
                        let reply = proto::encode_reply_recovered(id, r.recovered, current);
                        let _ = self.queue.push_ahead(Outbound::Text(reply));
                        for event in r.events {
                            let _ = self.queue.push_ahead(Outbound::Text(event));
                        }
                        true
                    }),
                };
                match joined {
                    Ok(_) => app.node.release_when_subscribed(hold),
                    Err(JoinError::TooManyRooms) => self.refuse(Some(id), &Refusal::TooManyRooms),
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
                if let Err(refusal) =
                    client::check_publish(app, &identity, ns, &room, data.get().len())
                {
                    return self.refuse(Some(id), &refusal);
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
                // On the async lane: a memory broker answers at once, a cluster's may wait.
                let (queue, late) = (self.queue.clone(), self.queue.clone());
                let node = app.node.clone();
                let work = async move {
                    let reply = match node.publish(publication).await {
                        Ok(_) => proto::encode_reply_ok(id),
                        Err(e) => encode_refusal(id, &Refusal::from(e)),
                    };
                    let _ = queue.push(Outbound::Text(reply));
                };
                let timed_out = move || {
                    let _ = late.push(Outbound::Text(encode_refusal(id, &Refusal::Timeout)));
                };
                if let Err(refusal) = core.submit(app, work, timed_out) {
                    self.refuse(Some(id), &refusal);
                }
            }
            ClientMessage::Refresh { id, token } => {
                let keep = |fresh: &mut crate::auth::Identity| {
                    retain_claims(app, &mut fresh.claims);
                };
                match core.refresh(app, &token, keep) {
                    Ok(refreshed) => {
                        if refreshed.lost_admin {
                            // Observing other tenants was allowed by the old token only.
                            for key in app.index.rooms_of(self.id) {
                                if *key.tenant != *identity.tenant {
                                    app.index.leave(self.id, &key);
                                }
                            }
                        }
                        match refreshed.expires_at {
                            Some(exp) => self.send(proto::encode_reply_ok_expires(id, exp)),
                            None => self.send(proto::encode_reply_ok(id)),
                        }
                    }
                    Err(refusal) => self.refuse(Some(id), &refusal),
                }
            }
            ClientMessage::Ping { id } => self.send(proto::encode_pong(id)),
            ClientMessage::Rpc {
                id,
                method,
                data,
                ns,
            } => {
                let args = match serde_json::from_str::<serde_json::Value>(data.get()) {
                    Ok(serde_json::Value::Null) | Err(_) => Vec::new(),
                    Ok(value) => vec![value],
                };
                let call = crate::backend::RpcCall {
                    kind: "method",
                    name: method,
                    namespace: ns.unwrap_or_else(|| DEFAULT_NS.to_owned()),
                    session: Self::session_id(self.id),
                    args,
                };
                let started = app.backends.start_method(&identity, call);
                let done =
                    started.and_then(|called| reply_later(&self.queue, core, app, id, called));
                if let Err(refusal) = done {
                    self.refuse(Some(id), &refusal);
                }
            }
            ClientMessage::Inbox {
                id,
                op,
                notification,
                options,
            } => {
                let Some(inbox) = app.inbox() else {
                    return self.refuse(Some(id), &Refusal::NoInbox);
                };
                let actor = crate::inbox::Actor::of(&identity, self.id);
                let started = inbox.start(op, actor, notification, &options);
                let done = started.and_then(|work| reply_later(&self.queue, core, app, id, work));
                if let Err(refusal) = done {
                    self.refuse(Some(id), &refusal);
                }
            }
            ClientMessage::History {
                id,
                room,
                ns,
                tenant,
                since,
                limit,
                reverse,
            } => {
                let key =
                    match subscribable(app, &identity, ns.as_deref(), &room, tenant.as_deref()) {
                        Ok(key) => key,
                        Err(refusal) => return self.refuse(Some(id), &refusal),
                    };
                if !app.keeps_history(&key) {
                    let message = "this room keeps no history";
                    return self.reply_error(Some(id), ErrorCode::NotKept, message);
                }
                let since = since.as_ref().map(Since::position);
                let limit = limit.map_or(DEFAULT_HISTORY_LIMIT, |n| n as usize);
                // On the async lane: a memory broker answers at once, others may wait.
                let (queue, late) = (self.queue.clone(), self.queue.clone());
                let node = app.node.clone();
                // One reply frame: at most half the outbound queue's bytes of events.
                let max_bytes = app.queue_limits.max_bytes / 2;
                let work = async move {
                    let all = if reverse { usize::MAX } else { limit };
                    let reply = match node.broker().history(&key, since, all).await {
                        Ok(h) => {
                            let mut bytes = 0;
                            let events: Vec<Bytes> = crate::history::pick(&h, limit, reverse)
                                .map(|(pos, p)| native_event(p, Some(&*key.room), Some(pos)))
                                .take_while(|e| {
                                    bytes += e.len() + 1;
                                    bytes <= max_bytes
                                })
                                .collect();
                            let current = h.current.as_ref().map(|c| (c.offset, &*c.epoch));
                            proto::encode_reply_history(id, &events, h.complete, current)
                        }
                        Err(e) => {
                            encode_refusal(id, &Refusal::from(crate::node::PublishError::from(e)))
                        }
                    };
                    let _ = queue.push(Outbound::Text(reply));
                };
                let timed_out = move || {
                    let _ = late.push(Outbound::Text(encode_refusal(id, &Refusal::Timeout)));
                };
                if let Err(refusal) = core.submit(app, work, timed_out) {
                    self.refuse(Some(id), &refusal);
                }
            }
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
                Ok(ClientMessage::Auth { token, since }) => {
                    self.authenticate(&token, since, ctx.now())
                }
                other => {
                    // A request whose id could be read is answered before the close.
                    let id = match &other {
                        Ok(msg) => msg.id(),
                        Err(e) => e.id,
                    };
                    if id.is_some() {
                        self.reply_error(id, ErrorCode::Unauthenticated, "authenticate first");
                    }
                    self.refuse(None, &Refusal::TokenMissing)
                }
            };
        }
        let State::Active(core) = &mut self.state else {
            return;
        };
        if let Err(refusal) = core.take_message(&self.app, ctx.now()) {
            let id = parsed.as_ref().ok().and_then(ClientMessage::id);
            // Like bad requests: the reply, then the close once past the limit.
            if refusal == Refusal::RateLimitExceeded {
                self.refuse(id, &Refusal::RateLimited);
            }
            return self.refuse(id, &refusal);
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
                self.refuse(None, &Refusal::AuthTimeout);
            }
            State::Active(core) => {
                if let Err(refusal) = core.check_expiry(&self.app, ctx.now()) {
                    self.refuse(None, &refusal);
                }
            }
            _ => {}
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Awaiting { deadline } => Some(*deadline),
            State::Active(core) => core.expiry_deadline(),
            State::Done => None,
        }
    }

    fn farewell(&mut self, code: u16, reason: &str) -> Option<Outbound> {
        let code = CloseCode::from_code(code)?;
        Some(Outbound::Text(proto::encode_disconnect(code, reason)))
    }

    fn on_close(&mut self, end: &End) {
        if let State::Active(core) = &mut self.state {
            let code = end.code.and_then(CloseCode::from_code);
            let reason = match (end.slow_consumer, code) {
                (true, _) => "slow consumer",
                (false, Some(code)) => code.reason(),
                (false, None) => "connection lost",
            };
            core.end_reason(reason);
        }
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

/// The key of a room the connection may subscribe to, or read the history of, under the
/// room ACL (`tenant`: another tenant's, for a platform admin; `ns`: `/` when `None`).
fn subscribable(
    app: &App,
    identity: &crate::auth::SessionIdentity,
    ns: Option<&str>,
    room: &str,
    tenant: Option<&str>,
) -> Result<RoomKey, Refusal> {
    let ns = ns.unwrap_or(DEFAULT_NS);
    client::check_subscribe(app, identity, ns, room, tenant, false)
        .map(|tenant| RoomKey::new(tenant, ns, room))
}

/// Trims a session's claims to those the room policy reads and those an RPC backend forwards:
/// memory per connection is a budget.
fn retain_claims(app: &App, claims: &mut serde_json::Map<String, serde_json::Value>) {
    let forwarded: Vec<(String, serde_json::Value)> =
        crate::backend::Backends::forwarded_claims(&app.config)
            .filter_map(|name| Some((name.to_owned(), claims.get(name)?.clone())))
            .collect();
    app.policy.retain_used_claims(claims);
    claims.extend(forwarded);
}

/// Runs `work` on the async lane and queues the reply to request `id`: its result or its
/// refusal (past the lane's deadline, `timeout`). `Err` when the lane refuses the work.
fn reply_later(
    queue: &Arc<OutQueue>,
    core: &mut ClientCore,
    app: &App,
    id: u64,
    work: impl std::future::Future<Output = Result<serde_json::Value, Refusal>> + Send + 'static,
) -> Result<(), Refusal> {
    let (queue, late) = (queue.clone(), queue.clone());
    let run = async move {
        let reply = match work.await {
            Ok(result) => proto::encode_reply_result(id, &result),
            Err(refusal) => encode_refusal(id, &refusal),
        };
        let _ = queue.push(Outbound::Text(reply));
    };
    let timed_out = move || {
        let _ = late.push(Outbound::Text(encode_refusal(id, &Refusal::Timeout)));
    };
    core.submit(app, run, timed_out)
}

/// The reply refusing request `id`, for answers queued from the async lane.
fn encode_refusal(id: u64, refusal: &Refusal) -> bytes::Bytes {
    if let Refusal::BackendRefused { code, message } = refusal {
        return proto::encode_reply_refused(id, code, message);
    }
    match refusal.native() {
        NativeAnswer::Reply(code, message) => proto::encode_reply_error(Some(id), code, &message),
        // Lane refusals are replies; a close is not the lane's to make.
        NativeAnswer::Close(_, reason) => {
            proto::encode_reply_error(Some(id), ErrorCode::Internal, &reason)
        }
    }
}
