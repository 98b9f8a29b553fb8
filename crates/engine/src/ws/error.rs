//! [`ProtocolError`]: everything a WebSocket peer can get wrong on the wire, and the one
//! mapping from each error to the close code we send before dropping the connection.
//!
//! | variant                   | close code                   |
//! |---------------------------|------------------------------|
//! | `UnmaskedFrame`           | 1002 protocol error          |
//! | `ReservedBits`            | 1002 protocol error          |
//! | `ReservedOpcode`          | 1002 protocol error          |
//! | `InvalidLength`           | 1002 protocol error          |
//! | `ControlTooLong`          | 1002 protocol error          |
//! | `FragmentedControl`       | 1002 protocol error          |
//! | `UnexpectedContinuation`  | 1002 protocol error          |
//! | `ExpectedContinuation`    | 1002 protocol error          |
//! | `InvalidCloseCode`        | 1002 protocol error          |
//! | `InvalidClosePayload`     | 1002 protocol error          |
//! | `InvalidUtf8`             | 1007 invalid frame payload   |
//! | `FrameTooLarge`           | 1009 message too big         |
//! | `MessageTooLarge`         | 1009 message too big         |
//!
//! The same table lives in `protocol/` for client authors.

/// Close code 1002: the peer violated RFC 6455.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code 1007: a text message or close reason was not valid UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code 1009: a frame or message exceeded our limits.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// A violation of RFC 6455 or of our size limits by the peer. The connection cannot go on:
/// send a close frame with [`close_code`](ProtocolError::close_code) and drop it.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without the MASK bit (RFC 6455 section 5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// RSV1..3 set while no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Opcodes 0x3-0x7 and 0xB-0xF.
    #[error("reserved opcode")]
    ReservedOpcode,
    /// A 64-bit payload length with its most significant bit set.
    #[error("invalid payload length encoding")]
    InvalidLength,
    /// A control frame with a payload over 125 bytes.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A continuation frame outside a fragmented message.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A close frame with a status code that may not be sent on the wire.
    #[error("invalid close code")]
    InvalidCloseCode,
    /// A close frame whose payload is one byte long.
    #[error("invalid close frame payload")]
    InvalidClosePayload,
    /// A text message or close reason that is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A frame whose announced payload exceeds `FrameLimits::max_frame`.
    #[error("frame too large")]
    FrameTooLarge,
    /// A message whose fragments together exceed `FrameLimits::max_message`.
    #[error("message too large")]
    MessageTooLarge,
}

impl ProtocolError {
    /// The close code to send before dropping the connection (see the module table).
    pub fn close_code(&self) -> u16 {
        // No `_` arm: a new variant must pick its code here.
        match self {
            Self::UnmaskedFrame
            | Self::ReservedBits
            | Self::ReservedOpcode
            | Self::InvalidLength
            | Self::ControlTooLong
            | Self::FragmentedControl
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::InvalidCloseCode
            | Self::InvalidClosePayload => CLOSE_PROTOCOL_ERROR,
            Self::InvalidUtf8 => CLOSE_INVALID_PAYLOAD,
            Self::FrameTooLarge | Self::MessageTooLarge => CLOSE_TOO_BIG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_match_the_table() {
        let cases = [
            (ProtocolError::UnmaskedFrame, 1002),
            (ProtocolError::ReservedBits, 1002),
            (ProtocolError::ReservedOpcode, 1002),
            (ProtocolError::InvalidLength, 1002),
            (ProtocolError::ControlTooLong, 1002),
            (ProtocolError::FragmentedControl, 1002),
            (ProtocolError::UnexpectedContinuation, 1002),
            (ProtocolError::ExpectedContinuation, 1002),
            (ProtocolError::InvalidCloseCode, 1002),
            (ProtocolError::InvalidClosePayload, 1002),
            (ProtocolError::InvalidUtf8, 1007),
            (ProtocolError::FrameTooLarge, 1009),
            (ProtocolError::MessageTooLarge, 1009),
        ];
        for (err, code) in cases {
            assert_eq!(err.close_code(), code, "{err:?}");
        }
    }

    #[test]
    fn messages_fit_in_a_close_reason() {
        // The connection sends the Display text as the close reason (max 123 bytes).
        let all = [
            ProtocolError::UnmaskedFrame,
            ProtocolError::ReservedBits,
            ProtocolError::ReservedOpcode,
            ProtocolError::InvalidLength,
            ProtocolError::ControlTooLong,
            ProtocolError::FragmentedControl,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::InvalidCloseCode,
            ProtocolError::InvalidClosePayload,
            ProtocolError::InvalidUtf8,
            ProtocolError::FrameTooLarge,
            ProtocolError::MessageTooLarge,
        ];
        for err in all {
            assert!(err.to_string().len() <= 123, "{err:?}");
        }
    }
}
