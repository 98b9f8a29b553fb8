//! [`Refusal`]: every way the client core says no to a client, and its one mapping to each
//! protocol's answer: a native reply error or close code ([`Refusal::native`]), a Socket.IO
//! `CONNECT_ERROR`, error event or disconnect ([`Refusal::socketio`]). Both matches list every
//! variant, without a `_` arm, so that a new refusal forces a decision for both protocols.
//! `protocol/codes.md` ("Refusals") is the same table in prose; a test keeps them in step.

use std::borrow::Cow;

use crate::auth::AuthError;
use crate::config::ConnectErrorMessages;
use crate::limits::LimitError;
use crate::proto::{CloseCode, ErrorCode};

/// Why the client core refused a connection, a request or the rest of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No token: none came with the native upgrade and the first message was not `auth`, or
    /// a Socket.IO `CONNECT` carried none (auth payload, `Authorization` header, `?token=`).
    TokenMissing,
    /// A native connection sent no `auth` within `auth.auth_timeout_ms`.
    AuthTimeout,
    /// The token fails validation (anything but expiry).
    TokenInvalid(AuthError),
    /// The token had already expired when presented.
    TokenExpired,
    /// A global, tenant or user connection limit is reached.
    ConnectionLimit(LimitError),
    /// The server is draining and takes no new sessions.
    ShuttingDown,
    /// The room ACL does not let the client subscribe to (join) the room.
    SubscribeForbidden,
    /// The room is in another tenant and the token lacks the platform-admin role.
    TenantForbidden,
    /// The room ACL does not let the client publish (relay) to the room.
    PublishForbidden,
    /// The client is already in `rooms.max_per_connection` rooms.
    TooManyRooms,
    /// The published (relayed) data is larger than `limits.max_publish_bytes`.
    PayloadTooLarge,
    /// Over the message rate (`limits.messages_per_second`, `limits.messages_burst`): the
    /// message was not acted on.
    RateLimited,
    /// More than `limits.max_violations` messages refused for the rate: the session ends.
    RateLimitExceeded,
    /// A `refresh` token fails validation; the session keeps its current token.
    RefreshInvalid(AuthError),
    /// A `refresh` token names another user or tenant than the session's.
    RefreshOtherIdentity,
    /// The session's token reached its `exp` (plus leeway) without a refresh: the session ends.
    SessionExpired,
    /// Too many requests are waiting on the async command lane, of this connection or of the
    /// node; not acted on.
    Busy,
    /// A request waited longer than `limits.command_timeout_ms`.
    Timeout,
    /// The node refused a publication (too many targets, data too deep); the message says why.
    PublishRefused(String),
    /// The broker failed; the publish may have reached this node only.
    Unavailable,
    /// An RPC backend refused the call (4xx): its code and message.
    BackendRefused {
        /// The backend's code (`refused` when it gave none).
        code: String,
        /// The backend's message.
        message: String,
    },
    /// An RPC backend is down, failed (5xx) or answered no JSON.
    BackendUnavailable,
    /// An RPC backend did not answer within its `timeout_ms`.
    BackendTimeout,
    /// A native `rpc` names a method that `[rpc.methods]` does not.
    UnknownMethod,
    /// The connect proxy refused the handshake: `unauthenticated` for a 401 (no credentials
    /// it knows), with the backend's message if it gave one.
    ProxyRefused {
        /// The answer was 401.
        unauthenticated: bool,
        /// The backend's message.
        message: Option<String>,
    },
    /// The connect proxy is down, failed, or did not answer in time.
    ProxyUnavailable,
    /// A request whose arguments are wrong (an inbox list's options); the message says why.
    InvalidRequest(String),
    /// An inbox request on a server without an inbox.
    NoInbox,
    /// No such notification in the caller's inbox (unknown, another user's or another
    /// tenant's: one answer for all).
    NotFound,
    /// The inbox's database is down, locked past its timeout, or failed.
    InboxUnavailable,
}

/// What a native client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeAnswer {
    /// A failed reply; the connection stays.
    Reply(ErrorCode, Cow<'static, str>),
    /// A `disconnect` message, then the close frame with the same code and reason.
    Close(CloseCode, Cow<'static, str>),
}

/// What a Socket.IO client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketIoAnswer {
    /// `CONNECT_ERROR` `{"message"}`: the client's `connect_error` with `err.message`.
    ConnectError(String),
    /// The namespace's error event (default `error` `{"message"}`), or the ack answered with
    /// it when the client asked for one; the socket stays.
    Error(Cow<'static, str>),
    /// The error event with this message, then `DISCONNECT` (`io server disconnect`, which
    /// clients do not retry by themselves).
    Disconnect(Cow<'static, str>),
    /// As [`SocketIoAnswer::Disconnect`], then the whole connection is closed with this code
    /// (over WebSocket, the close frame's; over polling, a close packet).
    Close(u16, Cow<'static, str>),
}

impl Refusal {
    /// The refusal of a token that failed validation at connect.
    pub fn from_auth(e: AuthError) -> Refusal {
        match e {
            AuthError::Expired => Refusal::TokenExpired,
            e => Refusal::TokenInvalid(e),
        }
    }

    /// The native protocol's answer (protocol/codes.md).
    pub fn native(&self) -> NativeAnswer {
        use NativeAnswer::{Close, Reply};
        match self {
            Refusal::TokenMissing => {
                Close(CloseCode::AuthRequired, "first message must be auth".into())
            }
            Refusal::AuthTimeout => Close(CloseCode::AuthRequired, "authentication timeout".into()),
            Refusal::TokenInvalid(e) => Close(CloseCode::AuthFailed, e.reason().into()),
            Refusal::TokenExpired => Close(CloseCode::TokenExpired, "token expired".into()),
            Refusal::ConnectionLimit(e) => {
                Close(CloseCode::ConnectionLimit, limit_message(*e).into())
            }
            Refusal::ShuttingDown => {
                Close(CloseCode::GoingAway, CloseCode::GoingAway.reason().into())
            }
            Refusal::SubscribeForbidden => Reply(ErrorCode::Forbidden, "room not allowed".into()),
            Refusal::TenantForbidden => Reply(ErrorCode::Forbidden, "tenant not allowed".into()),
            Refusal::PublishForbidden => Reply(ErrorCode::Forbidden, "publish not allowed".into()),
            Refusal::TooManyRooms => Reply(ErrorCode::TooManyRooms, "room limit reached".into()),
            Refusal::PayloadTooLarge => Reply(
                ErrorCode::PayloadTooLarge,
                "data larger than limits.max_publish_bytes".into(),
            ),
            Refusal::RateLimited => Reply(ErrorCode::RateLimited, "too many messages".into()),
            Refusal::RateLimitExceeded => Close(
                CloseCode::RateLimited,
                CloseCode::RateLimited.reason().into(),
            ),
            Refusal::RefreshInvalid(e) => Reply(ErrorCode::InvalidToken, e.reason().into()),
            Refusal::RefreshOtherIdentity => Reply(
                ErrorCode::InvalidToken,
                "token is for another user or tenant".into(),
            ),
            Refusal::SessionExpired => Close(CloseCode::TokenExpired, "token expired".into()),
            Refusal::Busy => Reply(ErrorCode::Busy, BUSY.into()),
            Refusal::Timeout => Reply(ErrorCode::Timeout, TIMEOUT.into()),
            Refusal::PublishRefused(m) => Reply(ErrorCode::BadRequest, m.clone().into()),
            Refusal::Unavailable => Reply(ErrorCode::Internal, UNAVAILABLE.into()),
            Refusal::BackendRefused { message, .. } => {
                Reply(ErrorCode::Refused, message.clone().into())
            }
            Refusal::BackendUnavailable => {
                Reply(ErrorCode::BackendUnavailable, BACKEND_UNAVAILABLE.into())
            }
            Refusal::BackendTimeout => Reply(ErrorCode::BackendTimeout, BACKEND_TIMEOUT.into()),
            Refusal::UnknownMethod => Reply(ErrorCode::UnknownMethod, "no such method".into()),
            Refusal::InvalidRequest(m) => Reply(ErrorCode::BadRequest, m.clone().into()),
            Refusal::NoInbox => Reply(ErrorCode::NotKept, NO_INBOX.into()),
            Refusal::NotFound => Reply(ErrorCode::NotFound, NOT_FOUND.into()),
            Refusal::InboxUnavailable => {
                Reply(ErrorCode::InboxUnavailable, INBOX_UNAVAILABLE.into())
            }
            Refusal::ProxyRefused {
                unauthenticated,
                message,
            } => {
                let code = if *unauthenticated {
                    CloseCode::AuthRequired
                } else {
                    CloseCode::AuthFailed
                };
                let reason = message.clone().unwrap_or_else(|| PROXY_REFUSED.into());
                Close(code, reason.into())
            }
            Refusal::ProxyUnavailable => Close(CloseCode::InternalError, PROXY_UNAVAILABLE.into()),
        }
    }

    /// The Socket.IO answer (protocol/socketio.md); `messages` are the configured
    /// `CONNECT_ERROR` messages (`[socketio.errors]`).
    pub fn socketio(&self, messages: &ConnectErrorMessages) -> SocketIoAnswer {
        use SocketIoAnswer::{Close, ConnectError, Disconnect, Error};
        match self {
            Refusal::TokenMissing => ConnectError(messages.token_missing.clone()),
            // The runtime's `connect_timeout` closes a connection that joins no namespace.
            Refusal::AuthTimeout => Close(1000, "connect timeout".into()),
            Refusal::TokenInvalid(e) => ConnectError(
                messages
                    .token_invalid
                    .clone()
                    .unwrap_or_else(|| e.reason().to_owned()),
            ),
            Refusal::TokenExpired => ConnectError(messages.token_expired.clone()),
            Refusal::ConnectionLimit(e) => ConnectError(
                messages
                    .connection_limit
                    .clone()
                    .unwrap_or_else(|| limit_message(*e).to_owned()),
            ),
            Refusal::ShuttingDown => ConnectError(messages.shutting_down.clone()),
            Refusal::SubscribeForbidden => Error("room not allowed".into()),
            Refusal::TenantForbidden => Error("tenant not allowed".into()),
            Refusal::PublishForbidden => Error("publish not allowed".into()),
            Refusal::TooManyRooms => Error("room limit reached".into()),
            Refusal::PayloadTooLarge => Error("data larger than limits.max_publish_bytes".into()),
            Refusal::RateLimited => Error("too many messages".into()),
            Refusal::RateLimitExceeded => Close(
                CloseCode::RateLimited.code(),
                CloseCode::RateLimited.reason().into(),
            ),
            Refusal::RefreshInvalid(e) => Error(e.reason().into()),
            Refusal::RefreshOtherIdentity => Error("token is for another user or tenant".into()),
            Refusal::SessionExpired => Disconnect("token expired".into()),
            Refusal::Busy => Error(BUSY.into()),
            Refusal::Timeout => Error(TIMEOUT.into()),
            Refusal::PublishRefused(m) => Error(m.clone().into()),
            Refusal::Unavailable => Error(UNAVAILABLE.into()),
            Refusal::BackendRefused { message, .. } => Error(message.clone().into()),
            Refusal::BackendUnavailable => Error(BACKEND_UNAVAILABLE.into()),
            Refusal::BackendTimeout => Error(BACKEND_TIMEOUT.into()),
            Refusal::UnknownMethod => Error("no such method".into()),
            Refusal::InvalidRequest(m) => Error(m.clone().into()),
            Refusal::NoInbox => Error(NO_INBOX.into()),
            Refusal::NotFound => Error(NOT_FOUND.into()),
            Refusal::InboxUnavailable => Error(INBOX_UNAVAILABLE.into()),
            Refusal::ProxyRefused {
                unauthenticated: true,
                ..
            } => ConnectError(messages.token_missing.clone()),
            Refusal::ProxyRefused {
                unauthenticated: false,
                message,
            } => ConnectError(
                messages
                    .token_invalid
                    .clone()
                    .or_else(|| message.clone())
                    .unwrap_or_else(|| PROXY_REFUSED.into()),
            ),
            Refusal::ProxyUnavailable => ConnectError(PROXY_UNAVAILABLE.into()),
        }
    }
}

const BUSY: &str = "too many requests waiting";
const TIMEOUT: &str = "request timed out";
const UNAVAILABLE: &str = "broker unavailable";
const BACKEND_UNAVAILABLE: &str = "backend unavailable";
const BACKEND_TIMEOUT: &str = "backend timed out";
const PROXY_REFUSED: &str = "authentication refused";
const PROXY_UNAVAILABLE: &str = "authentication backend unavailable";
const NO_INBOX: &str = "this server keeps no inbox";
const NOT_FOUND: &str = "no such notification";
const INBOX_UNAVAILABLE: &str = "inbox unavailable";

impl From<crate::node::PublishError> for Refusal {
    fn from(e: crate::node::PublishError) -> Self {
        use crate::node::PublishError;
        match e {
            PublishError::TooManyTargets(_) | PublishError::TooDeep => {
                Refusal::PublishRefused(e.to_string())
            }
            PublishError::Broker(_) => Refusal::Unavailable,
        }
    }
}

impl From<roomcast_engine::LaneError> for Refusal {
    fn from(_: roomcast_engine::LaneError) -> Self {
        Refusal::Busy
    }
}

fn limit_message(e: LimitError) -> &'static str {
    match e {
        LimitError::Global => "server connection limit reached",
        LimitError::Tenant => "tenant connection limit reached",
        LimitError::User => "user connection limit reached",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant, in the order of the table in `protocol/codes.md`.
    fn all() -> Vec<Refusal> {
        vec![
            Refusal::TokenMissing,
            Refusal::AuthTimeout,
            Refusal::TokenInvalid(AuthError::InvalidSignature),
            Refusal::TokenExpired,
            Refusal::ConnectionLimit(LimitError::User),
            Refusal::ShuttingDown,
            Refusal::SubscribeForbidden,
            Refusal::TenantForbidden,
            Refusal::PublishForbidden,
            Refusal::TooManyRooms,
            Refusal::PayloadTooLarge,
            Refusal::RateLimited,
            Refusal::RateLimitExceeded,
            Refusal::RefreshInvalid(AuthError::InvalidSignature),
            Refusal::RefreshOtherIdentity,
            Refusal::SessionExpired,
            Refusal::Busy,
            Refusal::Timeout,
            Refusal::PublishRefused("data nests deeper than 64 levels".into()),
            Refusal::Unavailable,
            Refusal::BackendRefused {
                code: "not_found".into(),
                message: "no such report".into(),
            },
            Refusal::BackendUnavailable,
            Refusal::BackendTimeout,
            Refusal::UnknownMethod,
            Refusal::ProxyRefused {
                unauthenticated: true,
                message: None,
            },
            Refusal::ProxyRefused {
                unauthenticated: false,
                message: Some("session expired".into()),
            },
            Refusal::ProxyUnavailable,
            Refusal::InvalidRequest("`limit` must be an integer from 1 to 200".into()),
            Refusal::NoInbox,
            Refusal::NotFound,
            Refusal::InboxUnavailable,
        ]
    }

    fn native_cell(r: &Refusal) -> String {
        match r.native() {
            NativeAnswer::Reply(code, message) => format!("reply `{code}` \"{message}\""),
            NativeAnswer::Close(code, reason) => format!("close {} \"{reason}\"", code.code()),
        }
    }

    fn socketio_cell(r: &Refusal) -> String {
        match r.socketio(&ConnectErrorMessages::default()) {
            SocketIoAnswer::ConnectError(m) => format!("`CONNECT_ERROR` \"{m}\""),
            SocketIoAnswer::Error(m) => format!("error event \"{m}\""),
            SocketIoAnswer::Disconnect(m) => format!("error event \"{m}\", `DISCONNECT`"),
            SocketIoAnswer::Close(code, m) => format!("close {code} \"{m}\""),
        }
    }

    #[test]
    fn the_table_in_protocol_codes_md_is_this_one() {
        let doc = include_str!("../../../../protocol/codes.md");
        for r in all() {
            let row = format!("| {} | {} |", native_cell(&r), socketio_cell(&r));
            assert!(
                doc.contains(&row),
                "protocol/codes.md lacks the row for {r:?}: {row}"
            );
        }
    }

    #[test]
    fn connect_errors_follow_the_configured_messages() {
        let messages = ConnectErrorMessages {
            token_missing: "Authentication required".into(),
            token_invalid: Some("Invalid or expired token".into()),
            token_expired: "Invalid or expired token".into(),
            ..ConnectErrorMessages::default()
        };
        let answer = |r: Refusal| r.socketio(&messages);
        assert_eq!(
            answer(Refusal::TokenMissing),
            SocketIoAnswer::ConnectError("Authentication required".into())
        );
        for r in [
            Refusal::from_auth(AuthError::Malformed),
            Refusal::from_auth(AuthError::Expired),
        ] {
            assert_eq!(
                answer(r),
                SocketIoAnswer::ConnectError("Invalid or expired token".into())
            );
        }
        // Unset: the specific reason, as before the setting existed.
        assert_eq!(
            Refusal::TokenInvalid(AuthError::Malformed).socketio(&ConnectErrorMessages::default()),
            SocketIoAnswer::ConnectError("malformed token".into())
        );
    }
}
