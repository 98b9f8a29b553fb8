//! [`Error`]: everything a Socket.IO client can get wrong in a packet or in the attachments of
//! a binary packet, and the one mapping from each error to the close code of the connection.
//!
//! Every error ends the Engine.IO session, as the reference server does on a parse error: a
//! packet that cannot be read may have been meant for any namespace, so no `CONNECT_ERROR` or
//! per-namespace answer is possible. Over WebSocket the close frame carries the code below;
//! over polling the session's close packet is the only signal.
//!
//! | variant                  | close code           |
//! |--------------------------|----------------------|
//! | `Empty`                  | 1002 protocol error  |
//! | `UnknownType`            | 1002 protocol error  |
//! | `InvalidAttachmentCount` | 1002 protocol error  |
//! | `InvalidNamespace`       | 1002 protocol error  |
//! | `InvalidAckId`           | 1002 protocol error  |
//! | `MissingAckId`           | 1002 protocol error  |
//! | `InvalidJson`            | 1002 protocol error  |
//! | `InvalidPayload`         | 1002 protocol error  |
//! | `ReservedEventName`      | 1002 protocol error  |
//! | `InvalidPlaceholder`     | 1002 protocol error  |
//! | `UnexpectedText`         | 1002 protocol error  |
//! | `UnexpectedBinary`       | 1002 protocol error  |
//! | `TooManyAttachments`     | 1009 message too big |
//! | `AttachmentsTooLarge`    | 1009 message too big |

use roomcast_engine::ws::error::{CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG};

/// A malformed Socket.IO packet or attachment sequence; the connection cannot go on.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// An empty message.
    #[error("empty packet")]
    Empty,
    /// A packet type other than `0`-`6`.
    #[error("unknown packet type")]
    UnknownType,
    /// A binary packet without `<count>-`, or a count that does not fit.
    #[error("invalid attachment count")]
    InvalidAttachmentCount,
    /// A namespace that is not UTF-8.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// An ack id that does not fit in 64 bits, or on a packet type that takes none.
    #[error("invalid ack id")]
    InvalidAckId,
    /// An `ACK` or `BINARY_ACK` without the id of the event it answers.
    #[error("missing ack id")]
    MissingAckId,
    /// The payload is not JSON.
    #[error("invalid JSON payload")]
    InvalidJson,
    /// The payload does not fit the packet type (an `EVENT` whose data is not a non-empty
    /// array starting with a string, a `DISCONNECT` with data...).
    #[error("payload does not fit the packet type")]
    InvalidPayload,
    /// An event named like one the server raises itself (`connect`, `disconnect`...).
    #[error("reserved event name")]
    ReservedEventName,
    /// A `{"_placeholder":true}` object without a `num` below the attachment count.
    #[error("invalid attachment placeholder")]
    InvalidPlaceholder,
    /// A text message while a binary packet still waits for attachments.
    #[error("text packet while attachments are expected")]
    UnexpectedText,
    /// A binary message while no binary packet waits for attachments.
    #[error("binary message without a binary packet")]
    UnexpectedBinary,
    /// More attachments announced than the limit allows.
    #[error("too many attachments")]
    TooManyAttachments,
    /// The attachments of one packet together exceed the size limit.
    #[error("attachments too large")]
    AttachmentsTooLarge,
}

impl Error {
    /// The WebSocket close code to end the connection with (see the module table).
    pub fn close_code(&self) -> u16 {
        // No `_` arm: a new variant must pick its code here.
        match self {
            Self::Empty
            | Self::UnknownType
            | Self::InvalidAttachmentCount
            | Self::InvalidNamespace
            | Self::InvalidAckId
            | Self::MissingAckId
            | Self::InvalidJson
            | Self::InvalidPayload
            | Self::ReservedEventName
            | Self::InvalidPlaceholder
            | Self::UnexpectedText
            | Self::UnexpectedBinary => CLOSE_PROTOCOL_ERROR,
            Self::TooManyAttachments | Self::AttachmentsTooLarge => CLOSE_TOO_BIG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_match_the_table() {
        let cases = [
            (Error::Empty, 1002),
            (Error::UnknownType, 1002),
            (Error::InvalidAttachmentCount, 1002),
            (Error::InvalidNamespace, 1002),
            (Error::InvalidAckId, 1002),
            (Error::MissingAckId, 1002),
            (Error::InvalidJson, 1002),
            (Error::InvalidPayload, 1002),
            (Error::ReservedEventName, 1002),
            (Error::InvalidPlaceholder, 1002),
            (Error::UnexpectedText, 1002),
            (Error::UnexpectedBinary, 1002),
            (Error::TooManyAttachments, 1009),
            (Error::AttachmentsTooLarge, 1009),
        ];
        for (err, code) in cases {
            assert_eq!(err.close_code(), code, "{err:?}");
            // The Display text is the close reason: it must fit in a close frame.
            assert!(err.to_string().len() <= 123, "{err:?}");
        }
    }
}
