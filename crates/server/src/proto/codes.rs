//! The two code tables of the native protocol: error codes carried in `reply.error.code` and
//! close codes carried in `disconnect` messages and close frames. `protocol/codes.md` is the
//! same table in prose; a test below keeps the two in step.

use std::fmt;

/// The `code` of a failed reply (`{"type":"reply","ok":false,"error":{"code":...}}`).
///
/// The wire spelling is [`ErrorCode::as_str`]; `protocol/codes.md` says when each is sent.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed JSON, not an object, or a missing or wrong-typed field.
    BadRequest,
    /// A well-formed message whose `type` this server does not know.
    UnknownType,
    /// A request sent before the connection authenticated.
    Unauthenticated,
    /// An `auth` message on a connection that is already authenticated.
    AlreadyAuthenticated,
    /// A `refresh` token that failed validation.
    InvalidToken,
    /// Refused by the room ACL or the tenant rules.
    Forbidden,
    /// An `unsubscribe` from a room the connection is not in.
    NotSubscribed,
    /// A `subscribe` past the per-connection room limit.
    TooManyRooms,
    /// A request over the connection's request rate; it was not executed.
    RateLimited,
    /// A `publish` whose `data` is over the publish size limit.
    PayloadTooLarge,
    /// A `history` of a room that keeps none.
    NotKept,
    /// Too many requests of this connection, or of the server, are waiting already; the
    /// request was not executed and may be sent again later.
    Busy,
    /// The request waited longer than `limits.command_timeout_ms`; what it started may still
    /// complete.
    Timeout,
    /// The server failed; the request may be retried.
    Internal,
    /// An `rpc` refused by its backend; `reason` carries the backend's own code.
    Refused,
    /// An `rpc` whose backend is down, failed, or answered no JSON; it may be retried.
    BackendUnavailable,
    /// An `rpc` whose backend did not answer within its timeout; what it started may still
    /// complete.
    BackendTimeout,
    /// An `rpc` naming a method the server does not offer.
    UnknownMethod,
    /// An `inbox` request naming a notification the caller's inbox does not hold.
    NotFound,
    /// An `inbox` request the inbox's database could not serve; it may be retried.
    InboxUnavailable,
}

impl ErrorCode {
    /// Every error code, in the order of the table in `protocol/codes.md`.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::Unauthenticated,
        ErrorCode::AlreadyAuthenticated,
        ErrorCode::InvalidToken,
        ErrorCode::Forbidden,
        ErrorCode::NotSubscribed,
        ErrorCode::TooManyRooms,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotKept,
        ErrorCode::Busy,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::Refused,
        ErrorCode::BackendUnavailable,
        ErrorCode::BackendTimeout,
        ErrorCode::UnknownMethod,
        ErrorCode::NotFound,
        ErrorCode::InboxUnavailable,
    ];

    /// The wire spelling, e.g. `"bad_request"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotKept => "not_kept",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Refused => "refused",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::BackendTimeout => "backend_timeout",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InboxUnavailable => "inbox_unavailable",
        }
    }

    /// The code with this wire spelling, if there is one (for clients and tests).
    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the server closes a native connection: the number goes in the close frame and in the
/// `disconnect` message that precedes it.
///
/// 1000-1011 are RFC 6455 codes; 4000-4009 are Roomcast's (4007 is unassigned).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// 1000: the close handshake the client started, or a close with nothing wrong.
    Normal = 1000,
    /// 1001: the server is shutting down; reconnect (another node will take the connection).
    GoingAway = 1001,
    /// 1002: a WebSocket framing error (bad opcode, reserved bits, unmasked client frame...).
    ProtocolError = 1002,
    /// 1003: a binary frame; the native protocol is text only.
    UnsupportedData = 1003,
    /// 1007: a text frame (or close reason) that is not valid UTF-8.
    InvalidPayload = 1007,
    /// 1008: a server policy refused the connection (e.g. its Origin, for the token's tenant).
    PolicyViolation = 1008,
    /// 1009: a message over the maximum message size.
    MessageTooBig = 1009,
    /// 1011: the server failed.
    InternalError = 1011,
    /// 4000: nothing was received from the client within the idle timeout.
    HeartbeatTimeout = 4000,
    /// 4001: no `auth` within the auth deadline, or a first message that was not `auth`.
    AuthRequired = 4001,
    /// 4002: the token failed validation (signature, claims, issuer, audience, algorithm).
    AuthFailed = 4002,
    /// 4003: the token expired: at connect, or during the session without a `refresh`.
    TokenExpired = 4003,
    /// 4004: the HTTP API (`POST /api/disconnect`) ended this session.
    Disconnected = 4004,
    /// 4005: a global, tenant or user connection limit is reached.
    ConnectionLimit = 4005,
    /// 4006: too many malformed requests (`bad_request` replies) in a short time.
    ProtocolViolations = 4006,
    /// 4008: the client reads too slowly and its outbound queue overflowed.
    SlowConsumer = 4008,
    /// 4009: the client kept exceeding its request rate after `rate_limited` replies.
    RateLimited = 4009,
}

impl CloseCode {
    /// Every close code, in the order of the table in `protocol/codes.md`.
    pub const ALL: &'static [CloseCode] = &[
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedData,
        CloseCode::InvalidPayload,
        CloseCode::PolicyViolation,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::HeartbeatTimeout,
        CloseCode::AuthRequired,
        CloseCode::AuthFailed,
        CloseCode::TokenExpired,
        CloseCode::Disconnected,
        CloseCode::ConnectionLimit,
        CloseCode::ProtocolViolations,
        CloseCode::SlowConsumer,
        CloseCode::RateLimited,
    ];

    /// The number sent in the close frame and in `disconnect.code`.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The close code with this number, if the protocol defines it.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// The default reason text (`disconnect.reason` and the close frame's reason). Each is
    /// shorter than the 123 bytes a close frame can carry.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal closure",
            CloseCode::GoingAway => "server shutting down",
            CloseCode::ProtocolError => "websocket protocol error",
            CloseCode::UnsupportedData => "binary frames are not supported",
            CloseCode::InvalidPayload => "invalid utf-8",
            CloseCode::PolicyViolation => "policy violation",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::InternalError => "internal error",
            CloseCode::HeartbeatTimeout => "heartbeat timeout",
            CloseCode::AuthRequired => "authentication required",
            CloseCode::AuthFailed => "authentication failed",
            CloseCode::TokenExpired => "token expired",
            CloseCode::Disconnected => "disconnected by the server api",
            CloseCode::ConnectionLimit => "connection limit reached",
            CloseCode::ProtocolViolations => "too many protocol violations",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::RateLimited => "rate limit exceeded",
        }
    }

    /// The `reconnect` hint: `true` when reconnecting automatically (with backoff) with the
    /// same credentials is expected to work; `false` when it would fail the same way or the
    /// server does not want it.
    pub fn reconnect(self) -> bool {
        match self {
            CloseCode::GoingAway
            | CloseCode::InternalError
            | CloseCode::HeartbeatTimeout
            | CloseCode::ConnectionLimit
            | CloseCode::SlowConsumer => true,
            CloseCode::Normal
            | CloseCode::ProtocolError
            | CloseCode::UnsupportedData
            | CloseCode::InvalidPayload
            | CloseCode::PolicyViolation
            | CloseCode::MessageTooBig
            | CloseCode::AuthRequired
            | CloseCode::AuthFailed
            | CloseCode::TokenExpired
            | CloseCode::Disconnected
            | CloseCode::ProtocolViolations
            | CloseCode::RateLimited => false,
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODES_MD: &str = include_str!("../../../../protocol/codes.md");

    /// The cells of the markdown table rows whose first cell is `first`.
    fn row(first: &str) -> Option<Vec<String>> {
        CODES_MD.lines().find_map(|line| {
            let cells: Vec<String> = line
                .trim()
                .strip_prefix('|')?
                .strip_suffix('|')?
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            (cells.first().map(String::as_str) == Some(first)).then_some(cells)
        })
    }

    #[test]
    fn error_codes_are_distinct_and_round_trip() {
        for (i, a) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(ErrorCode::from_wire(a.as_str()), Some(*a));
            for b in &ErrorCode::ALL[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
        assert_eq!(ErrorCode::from_wire("nope"), None);
        assert_eq!(ErrorCode::Forbidden.to_string(), "forbidden");
    }

    #[test]
    fn every_error_code_is_in_codes_md() {
        for code in ErrorCode::ALL {
            let cells = row(&format!("`{}`", code.as_str()));
            assert!(cells.is_some(), "{code} missing from protocol/codes.md");
        }
    }

    #[test]
    fn close_codes_are_distinct_and_round_trip() {
        for (i, a) in CloseCode::ALL.iter().enumerate() {
            assert_eq!(CloseCode::from_code(a.code()), Some(*a));
            assert!(
                a.reason().len() <= 123,
                "{a:?} reason too long for a close frame"
            );
            for b in &CloseCode::ALL[i + 1..] {
                assert_ne!(a.code(), b.code());
            }
        }
        assert_eq!(CloseCode::from_code(4007), None);
        assert_eq!(CloseCode::TokenExpired.to_string(), "4003 (token expired)");
    }

    #[test]
    fn close_table_in_codes_md_matches() {
        for code in CloseCode::ALL {
            let Some(cells) = row(&code.code().to_string()) else {
                panic!("{code} missing from protocol/codes.md");
            };
            assert_eq!(
                cells.get(1).map(String::as_str),
                Some(code.reason()),
                "{code}"
            );
            let hint = if code.reconnect() { "true" } else { "false" };
            assert_eq!(cells.get(2).map(String::as_str), Some(hint), "{code}");
        }
    }
}
