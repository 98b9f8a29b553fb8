//! [`Error`]: everything that can go wrong in the Engine.IO layer (a request's query, a packet or
//! payload from the client, a breach of the session rules) and the one mapping from each error
//! to what goes on the wire: the Engine.IO error code and HTTP status of a refused request, or
//! the close code of a WebSocket that carried a bad packet.
//!
//! | variant                      | Engine.IO code                   | HTTP | close code | session  |
//! |------------------------------|----------------------------------|------|------------|----------|
//! | `UnknownTransport`           | 0 Transport unknown              | 400  | -          | -        |
//! | `UnknownSid`                 | 1 Session ID unknown             | 400  | -          | -        |
//! | `SessionClosed`              | 1 Session ID unknown             | 400  | -          | -        |
//! | `BadHandshakeMethod`         | 2 Bad handshake method           | 400  | -          | -        |
//! | `BadQuery`                   | 3 Bad request                    | 400  | -          | -        |
//! | `BadMethod`                  | 3 Bad request                    | 400  | -          | -        |
//! | `TransportMismatch`          | 3 Bad request                    | 400  | -          | kept     |
//! | `UpgradeRefused`             | 3 Bad request                    | 400  | -          | kept     |
//! | `DuplicateGet`               | 3 Bad request                    | 400  | -          | closed   |
//! | `DuplicatePost`              | 3 Bad request                    | 400  | -          | closed   |
//! | `EmptyPacket`                | 3 Bad request                    | 400  | 1002       | closed   |
//! | `UnknownPacketType`          | 3 Bad request                    | 400  | 1002       | closed   |
//! | `InvalidUtf8`                | 3 Bad request                    | 400  | 1002       | closed   |
//! | `InvalidBase64`              | 3 Bad request                    | 400  | 1002       | closed   |
//! | `UnexpectedPacket`           | 3 Bad request                    | 400  | 1002       | closed   |
//! | `PayloadTooLarge`            | 3 Bad request                    | 413  | 1009       | closed   |
//! | `Forbidden`                  | 4 Forbidden                      | 403  | -          | -        |
//! | `UnsupportedProtocolVersion` | 5 Unsupported protocol version   | 400  | -          | -        |
//! | `BodyTimeout`                | 3 Request body timeout           | 408  | -          | closed   |
//! | `BodiesBusy`                 | 3 Server busy                    | 503  | -          | closed   |
//! | `TooManySessions`            | 3 Too many pending sessions      | 503  | -          | -        |
//! | `TooManySessionsFromAddress` | 3 Too many pending sessions from this address | 429 | - | - |
//!
//! "-" in the close code column: the error refuses an HTTP request (a WebSocket upgrade
//! included), so no WebSocket exists to close. The session column says what
//! [`Session`](super::Session) does when it reports the error itself. The last four carry a
//! message of their own with the code, as the reference server does for the requests its
//! application refuses.

use roomcast_engine::ws::error::{CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG};

/// The Engine.IO error codes, sent as `{"code":N,"message":"..."}` in the body of a refused
/// HTTP request. The numbers and messages are those of the reference server.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: the `transport` query parameter is missing or names no transport we serve.
    TransportUnknown,
    /// 1: the `sid` query parameter names no open session.
    SessionIdUnknown,
    /// 2: a handshake (a request without `sid`) that is not a `GET`.
    BadHandshakeMethod,
    /// 3: anything else the client got wrong.
    BadRequest,
    /// 4: refused by policy (origin, authentication); never produced by this crate.
    Forbidden,
    /// 5: `EIO` is missing or is not `4`.
    UnsupportedProtocolVersion,
}

impl ErrorCode {
    /// The numeric code.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::TransportUnknown => 0,
            Self::SessionIdUnknown => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden => 4,
            Self::UnsupportedProtocolVersion => 5,
        }
    }

    /// The message the reference server sends with the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::TransportUnknown => "Transport unknown",
            Self::SessionIdUnknown => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status of a request refused with this code: 403 for `Forbidden`, else 400.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Forbidden => 403,
            Self::TransportUnknown
            | Self::SessionIdUnknown
            | Self::BadHandshakeMethod
            | Self::BadRequest
            | Self::UnsupportedProtocolVersion => 400,
        }
    }

    /// The JSON response body (`Content-Type: application/json`), as a constant.
    pub fn json_body(self) -> &'static str {
        match self {
            Self::TransportUnknown => r#"{"code":0,"message":"Transport unknown"}"#,
            Self::SessionIdUnknown => r#"{"code":1,"message":"Session ID unknown"}"#,
            Self::BadHandshakeMethod => r#"{"code":2,"message":"Bad handshake method"}"#,
            Self::BadRequest => r#"{"code":3,"message":"Bad request"}"#,
            Self::Forbidden => r#"{"code":4,"message":"Forbidden"}"#,
            Self::UnsupportedProtocolVersion => {
                r#"{"code":5,"message":"Unsupported protocol version"}"#
            }
        }
    }
}

/// An Engine.IO error; see the module table for what each one puts on the wire.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The `transport` query parameter is missing or unknown.
    #[error("unknown or missing transport")]
    UnknownTransport,
    /// The `sid` query parameter is malformed or names no session.
    #[error("unknown session id")]
    UnknownSid,
    /// The session ended and its last packets were delivered.
    #[error("session closed")]
    SessionClosed,
    /// A handshake request that is not a `GET`.
    #[error("a handshake must be a GET request")]
    BadHandshakeMethod,
    /// A query parameter given twice, or not valid percent-encoded UTF-8.
    #[error("malformed query")]
    BadQuery,
    /// A method the transport does not serve (polling: `GET` and `POST`; WebSocket: `GET`).
    #[error("method not allowed on this transport")]
    BadMethod,
    /// A polling request for a session that upgraded to WebSocket, or the reverse.
    #[error("request on the wrong transport")]
    TransportMismatch,
    /// A WebSocket for a session that cannot upgrade: upgrades are disabled, or it is already
    /// upgrading or upgraded.
    #[error("upgrade refused")]
    UpgradeRefused,
    /// A second `GET` while one is pending.
    #[error("a GET request is already pending")]
    DuplicateGet,
    /// A second `POST` while one is being read.
    #[error("a POST request is already in progress")]
    DuplicatePost,
    /// A packet with no type, or an empty record in a payload.
    #[error("empty packet")]
    EmptyPacket,
    /// A packet type other than `0`-`6` and `b`.
    #[error("unknown packet type")]
    UnknownPacketType,
    /// A text packet or payload that is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A `b` packet whose data is not base64.
    #[error("invalid base64")]
    InvalidBase64,
    /// A packet the client may not send now: a ping (the server pings in v4), an open, or an
    /// upgrade outside an upgrade.
    #[error("unexpected packet")]
    UnexpectedPacket,
    /// A payload larger than `maxPayload`.
    #[error("payload too large")]
    PayloadTooLarge,
    /// Refused by the application's policy; for the caller's own checks.
    #[error("forbidden")]
    Forbidden,
    /// `EIO` is missing or is not `4`.
    #[error("unsupported protocol version")]
    UnsupportedProtocolVersion,
    /// A polling `POST` body did not arrive whole within the body deadline.
    #[error("request body timeout")]
    BodyTimeout,
    /// The request bodies being read already hold the whole memory budget for bodies.
    #[error("server busy: too many request bytes in flight")]
    BodiesBusy,
    /// A handshake refused: too many sessions wait for their first namespace connection.
    #[error("too many pending sessions")]
    TooManySessions,
    /// A handshake refused: too many sessions of this client address wait for their first
    /// namespace connection.
    #[error("too many pending sessions from this address")]
    TooManySessionsFromAddress,
}

impl Error {
    /// The Engine.IO error code of a request refused with this error (see the module table).
    pub fn code(&self) -> ErrorCode {
        // No `_` arm: a new variant must pick its code here.
        match self {
            Self::UnknownTransport => ErrorCode::TransportUnknown,
            Self::UnknownSid | Self::SessionClosed => ErrorCode::SessionIdUnknown,
            Self::BadHandshakeMethod => ErrorCode::BadHandshakeMethod,
            Self::BadQuery
            | Self::BadMethod
            | Self::TransportMismatch
            | Self::UpgradeRefused
            | Self::DuplicateGet
            | Self::DuplicatePost
            | Self::EmptyPacket
            | Self::UnknownPacketType
            | Self::InvalidUtf8
            | Self::InvalidBase64
            | Self::UnexpectedPacket
            | Self::PayloadTooLarge
            | Self::BodyTimeout
            | Self::BodiesBusy
            | Self::TooManySessions
            | Self::TooManySessionsFromAddress => ErrorCode::BadRequest,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::UnsupportedProtocolVersion => ErrorCode::UnsupportedProtocolVersion,
        }
    }

    /// The HTTP status of a request refused with this error: the code's status, except for
    /// an oversized payload (413), a body deadline (408) and the server's own bounds (503,
    /// and 429 for the bound per client address).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::PayloadTooLarge => 413,
            Self::BodyTimeout => 408,
            Self::BodiesBusy | Self::TooManySessions => 503,
            Self::TooManySessionsFromAddress => 429,
            other => other.code().http_status(),
        }
    }

    /// The JSON body of a request refused with this error: the code's, with a message of its
    /// own for the errors that are not the reference server's.
    pub fn json_body(&self) -> &'static str {
        match self {
            Self::BodyTimeout => r#"{"code":3,"message":"Request body timeout"}"#,
            Self::BodiesBusy => r#"{"code":3,"message":"Server busy"}"#,
            Self::TooManySessions => r#"{"code":3,"message":"Too many pending sessions"}"#,
            Self::TooManySessionsFromAddress => {
                r#"{"code":3,"message":"Too many pending sessions from this address"}"#
            }
            other => other.code().json_body(),
        }
    }

    /// The close code for a WebSocket that carried the offending packet; `None` for errors
    /// that refuse an HTTP request instead.
    pub fn close_code(&self) -> Option<u16> {
        // No `_` arm: a new variant must say whether it can happen on a WebSocket.
        match self {
            Self::EmptyPacket
            | Self::UnknownPacketType
            | Self::InvalidUtf8
            | Self::InvalidBase64
            | Self::UnexpectedPacket => Some(CLOSE_PROTOCOL_ERROR),
            Self::PayloadTooLarge => Some(CLOSE_TOO_BIG),
            Self::UnknownTransport
            | Self::UnknownSid
            | Self::SessionClosed
            | Self::BadHandshakeMethod
            | Self::BadQuery
            | Self::BadMethod
            | Self::TransportMismatch
            | Self::UpgradeRefused
            | Self::DuplicateGet
            | Self::DuplicatePost
            | Self::Forbidden
            | Self::UnsupportedProtocolVersion
            | Self::BodyTimeout
            | Self::BodiesBusy
            | Self::TooManySessions
            | Self::TooManySessionsFromAddress => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Error; 22] = [
        Error::UnknownTransport,
        Error::UnknownSid,
        Error::SessionClosed,
        Error::BadHandshakeMethod,
        Error::BadQuery,
        Error::BadMethod,
        Error::TransportMismatch,
        Error::UpgradeRefused,
        Error::DuplicateGet,
        Error::DuplicatePost,
        Error::EmptyPacket,
        Error::UnknownPacketType,
        Error::InvalidUtf8,
        Error::InvalidBase64,
        Error::UnexpectedPacket,
        Error::PayloadTooLarge,
        Error::Forbidden,
        Error::UnsupportedProtocolVersion,
        Error::BodyTimeout,
        Error::BodiesBusy,
        Error::TooManySessions,
        Error::TooManySessionsFromAddress,
    ];

    #[test]
    fn json_bodies_are_byte_exact() {
        assert_eq!(
            ErrorCode::TransportUnknown.json_body(),
            r#"{"code":0,"message":"Transport unknown"}"#
        );
        for code in [
            ErrorCode::TransportUnknown,
            ErrorCode::SessionIdUnknown,
            ErrorCode::BadHandshakeMethod,
            ErrorCode::BadRequest,
            ErrorCode::Forbidden,
            ErrorCode::UnsupportedProtocolVersion,
        ] {
            let expected = serde_json::json!({"code": code.as_u8(), "message": code.message()});
            assert_eq!(code.json_body(), expected.to_string(), "{code:?}");
        }
    }

    #[test]
    fn mapping_matches_the_table() {
        let rows: [(u8, u16, Option<u16>); 22] = [
            (0, 400, None),
            (1, 400, None),
            (1, 400, None),
            (2, 400, None),
            (3, 400, None),
            (3, 400, None),
            (3, 400, None),
            (3, 400, None),
            (3, 400, None),
            (3, 400, None),
            (3, 400, Some(1002)),
            (3, 400, Some(1002)),
            (3, 400, Some(1002)),
            (3, 400, Some(1002)),
            (3, 400, Some(1002)),
            (3, 413, Some(1009)),
            (4, 403, None),
            (5, 400, None),
            (3, 408, None),
            (3, 503, None),
            (3, 503, None),
            (3, 429, None),
        ];
        for (err, (code, status, close)) in ALL.iter().zip(rows) {
            assert_eq!(err.code().as_u8(), code, "{err:?}");
            assert_eq!(err.http_status(), status, "{err:?}");
            assert_eq!(err.close_code(), close, "{err:?}");
            let body: serde_json::Value = serde_json::from_str(err.json_body()).unwrap();
            assert_eq!(body["code"], code, "{err:?}");
        }
    }
}
