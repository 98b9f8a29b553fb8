//! The client core shared by both protocols: what a native connection and a Socket.IO socket
//! each decide the same way. Authentication (a token to an admitted identity and a limit slot,
//! or a [`Refusal`]), the subscribe and publish checks under the room ACL (and the platform
//! admin's way into other tenants), the message rate limit, the publish size limit, token
//! refresh and expiry. The protocols own their wire: they ask the core, then tell the client
//! with [`Refusal::native`] or [`Refusal::socketio`].
//!
//! No socket and no clock here: callers pass `now`, and the only shared state touched is the
//! limits' counters and the metrics.

mod rate;
mod refusal;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use roomcast_engine::Lane;

use crate::app::App;
use crate::auth::{Identity, SessionIdentity};
use crate::lifecycle::{SessionGuard, SessionInfo, Transport};
use crate::limits::Slot;
use crate::metrics::Rejection;
use rate::TokenBucket;
pub use refusal::{NativeAnswer, Refusal, SocketIoAnswer};

/// The longest a client waits before it checks its token's expiry against the system clock
/// again, which may be stepped while the monotonic clock its timer runs on is not.
const EXPIRY_RECHECK: Duration = Duration::from_secs(60);

/// A token checked and a limit slot taken: what [`ClientCore::new`] starts a session from.
#[derive(Debug)]
pub struct Admission {
    /// The token's identity, with every claim (the caller decides which to keep).
    pub identity: Identity,
    /// The client's place under the connection limits.
    pub slot: Slot,
}

/// Verifies `token` and takes a place under the connection limits, or says why not.
pub fn admit(app: &App, token: Option<&str>) -> Result<Admission, Refusal> {
    let Some(token) = token else {
        app.metrics.reject(Rejection::AuthFailed);
        return Err(Refusal::TokenMissing);
    };
    let identity = app.verifier.verify(token).map_err(|e| {
        app.metrics.reject(Rejection::AuthFailed);
        tracing::debug!(error = %e, "authentication failed");
        Refusal::from_auth(e)
    })?;
    admit_identity(app, identity)
}

/// Takes a place under the connection limits for an identity the connect proxy granted.
pub fn admit_identity(app: &App, identity: Identity) -> Result<Admission, Refusal> {
    let slot = app
        .limits
        .acquire(&identity.tenant, &identity.user)
        .map_err(|e| {
            app.metrics.reject(Rejection::Limit);
            Refusal::ConnectionLimit(e)
        })?;
    Ok(Admission { identity, slot })
}

/// One admitted client (a native connection, or a Socket.IO socket): its identity, its token's
/// expiry check, its message rate, its limit slot, and its async command lane.
#[derive(Debug)]
pub struct ClientCore {
    // Shared with the requests being handled, which read it without holding a lock on the
    // core (a Socket.IO namespace keeps its sockets' cores in one map).
    identity: Arc<SessionIdentity>,
    /// When to check the token's expiry next (`None`: it never expires).
    check_expiry_at: Option<Instant>,
    bucket: TokenBucket,
    rate_strikes: u32,
    /// Where its requests that must wait run (bounded, with a timeout).
    lane: Lane,
    // Held for the client's lifetime: dropping it frees the limit slot.
    _slot: Slot,
    /// Its lifecycle events, when wanted: dropping it is the session's end.
    lifecycle: Option<SessionGuard>,
}

/// What a successful [`ClientCore::refresh`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// The new token's `exp`, if it has one.
    pub expires_at: Option<u64>,
    /// The old token carried the platform-admin role and the new one does not: rooms of other
    /// tenants must be left.
    pub lost_admin: bool,
}

impl ClientCore {
    /// A session for `identity` (with the claims the caller keeps), starting at `now` with a
    /// full rate bucket.
    pub fn new(app: &App, identity: SessionIdentity, slot: Slot, now: Instant) -> ClientCore {
        let limits = &app.config.limits;
        ClientCore {
            check_expiry_at: expiry_check(app, identity.expires_at),
            identity: Arc::new(identity),
            bucket: TokenBucket::new(limits.messages_per_second, limits.messages_burst, now),
            rate_strikes: 0,
            lane: Lane::new(),
            _slot: slot,
            lifecycle: None,
        }
    }

    /// Starts the session's lifecycle events: `connect` (and its user's `user_online`, when it
    /// is the user's first session) now, `disconnect` when the core is dropped.
    pub fn track(&mut self, app: &App, transport: Transport, session: &str, ns: Option<&str>) {
        self.lifecycle = app.lifecycle.session(SessionInfo {
            tenant: (*self.identity.tenant).into(),
            user: (*self.identity.user).into(),
            session: session.into(),
            transport,
            namespace: ns.map(Into::into),
        });
    }

    /// Why the session ends, for its `disconnect` event (the first reason given stays).
    pub fn end_reason(&mut self, reason: &str) {
        if let Some(lifecycle) = &mut self.lifecycle {
            lifecycle.set_reason(reason);
        }
    }

    /// Runs a request that may have to wait (see [`roomcast_engine::lane`]): `work` answers
    /// when it completes, `timed_out` when it did not within `limits.command_timeout_ms`.
    /// `Busy` when too many requests are waiting; the request was not started.
    pub fn submit<F, T>(&mut self, app: &App, work: F, timed_out: T) -> Result<(), Refusal>
    where
        F: Future<Output = ()> + Send + 'static,
        T: FnOnce() + Send + 'static,
    {
        self.lane
            .submit(&app.lane, work, timed_out)
            .map(drop)
            .map_err(Refusal::from)
    }

    /// Who the client is.
    pub fn identity(&self) -> &Arc<SessionIdentity> {
        &self.identity
    }

    /// Counts one message from the client against its rate: `RateLimited` when it is over
    /// (the message is not acted on), `RateLimitExceeded` once that happened more than
    /// `limits.max_violations` times (end the session).
    pub fn take_message(&mut self, app: &App, now: Instant) -> Result<(), Refusal> {
        if self.bucket.take(now) {
            return Ok(());
        }
        app.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        self.rate_strikes += 1;
        if self.rate_strikes > app.config.limits.max_violations {
            Err(Refusal::RateLimitExceeded)
        } else {
            Err(Refusal::RateLimited)
        }
    }

    /// Replaces the session's token with `token`, which must be valid and name the same user
    /// and tenant; `keep` trims the new claims to those the caller keeps.
    pub fn refresh(
        &mut self,
        app: &App,
        token: &str,
        keep: impl FnOnce(&mut Identity),
    ) -> Result<Refreshed, Refusal> {
        let mut fresh = app.verifier.verify(token).map_err(|e| {
            app.metrics.reject(Rejection::AuthFailed);
            Refusal::RefreshInvalid(e)
        })?;
        let identity = &*self.identity;
        if *fresh.tenant != *identity.tenant || *fresh.user != *identity.user {
            return Err(Refusal::RefreshOtherIdentity);
        }
        let refreshed = Refreshed {
            expires_at: fresh.expires_at,
            lost_admin: identity.admin && !fresh.admin,
        };
        keep(&mut fresh);
        self.identity = Arc::new(fresh.into_session());
        self.check_expiry_at = expiry_check(app, refreshed.expires_at);
        Ok(refreshed)
    }

    /// When [`check_expiry`](Self::check_expiry) is due next.
    pub fn expiry_deadline(&self) -> Option<Instant> {
        self.check_expiry_at
    }

    /// At the expiry deadline: `SessionExpired` when the token has expired by the system
    /// clock, else the next check is set (see [`expiry_deadline`](Self::expiry_deadline)).
    pub fn check_expiry(&mut self, app: &App, now: Instant) -> Result<(), Refusal> {
        if self.check_expiry_at.is_none_or(|at| now < at) {
            return Ok(());
        }
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if app.verifier.expired(self.identity.expires_at, unix) {
            self.check_expiry_at = None;
            Err(Refusal::SessionExpired)
        } else {
            self.check_expiry_at = expiry_check(app, self.identity.expires_at);
            Ok(())
        }
    }
}

/// Whether the client `identity` may subscribe to `room` of namespace `ns` in `tenant` (`None`:
/// its own); `auto_room` tells that the room is one the client's namespace joins on connect.
/// Another tenant's rooms are for platform admins only, whatever the ACL says (it speaks of the
/// client's own tenant). Gives the tenant of the room.
pub fn check_subscribe<'a>(
    app: &App,
    identity: &'a SessionIdentity,
    ns: &str,
    room: &str,
    tenant: Option<&'a str>,
    auto_room: bool,
) -> Result<&'a str, Refusal> {
    match tenant {
        Some(t) if t != &*identity.tenant => {
            if identity.admin {
                Ok(t)
            } else {
                Err(Refusal::TenantForbidden)
            }
        }
        _ if auto_room || app.policy.may_subscribe(ns, room, &identity.claims) => {
            Ok(&identity.tenant)
        }
        _ => Err(Refusal::SubscribeForbidden),
    }
}

/// Whether the client `identity` may publish `size` bytes of data to `room` of namespace `ns`
/// in its tenant: the ACL's publish rules, then `limits.max_publish_bytes`. A relay from a
/// Socket.IO client is a publish too.
pub fn check_publish(
    app: &App,
    identity: &SessionIdentity,
    ns: &str,
    room: &str,
    size: usize,
) -> Result<(), Refusal> {
    if !app.policy.may_publish(ns, room, &identity.claims) {
        return Err(Refusal::PublishForbidden);
    }
    if size > app.config.limits.max_publish_bytes {
        return Err(Refusal::PayloadTooLarge);
    }
    Ok(())
}

/// When to check a token expiring at `expires_at` (unix seconds) next: when it expires past
/// the leeway, or sooner.
fn expiry_check(app: &App, expires_at: Option<u64>) -> Option<Instant> {
    let at = app.verifier.expiry_deadline(expires_at)?;
    Some(at.min(Instant::now() + EXPIRY_RECHECK))
}
