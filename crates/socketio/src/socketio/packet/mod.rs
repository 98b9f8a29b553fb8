//! Socket.IO v5 packets in the default parser's encoding,
//! `<type>[<#attachments>-][<namespace>,][<ack id>][JSON]`, carried in Engine.IO messages.
//! Decoding checks the payload's shape for its type; JSON of non-binary packets stays raw
//! text, so that it can be forwarded without being rebuilt.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;
use serde_json::Value;

use super::error::Error;
use shape::{raw, value, Shape};

mod shape;
#[cfg(test)]
mod tests;

/// The main namespace, omitted on the wire.
pub const MAIN_NAMESPACE: &str = "/";

/// Validated JSON text, kept as received. Equal when the texts are equal.
#[derive(Debug, Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The underlying raw value.
    pub fn into_inner(self) -> Box<RawValue> {
        self.0
    }
}

impl From<Box<RawValue>> for RawJson {
    fn from(raw: Box<RawValue>) -> Self {
        Self(raw)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson {}

/// The data of a binary packet: JSON where each binary part is replaced by a placeholder
/// `{"_placeholder":true,"num":N}`, and the parts, `attachments[N]`. Decoding checks that every
/// placeholder's `num` is in range; an attachment may be referenced any number of times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryData {
    /// The JSON with placeholders.
    pub value: Value,
    /// The binary parts, in placeholder order.
    pub attachments: Vec<Bytes>,
}

/// One Socket.IO packet. `nsp` always starts with `/`.
///
/// The encoder trusts the data's shape; [`decode`] checks it: an object or nothing for
/// `Connect`, an object for `ConnectError`, a non-empty array starting with the event name
/// for events, an array for acks.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: joins a namespace (client, with optional auth data) or accepts the join (server,
    /// with `{"sid":...}`).
    Connect {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// An object, if any.
        data: Option<RawJson>,
    },
    /// `1`: leaves a namespace.
    Disconnect {
        /// The namespace.
        nsp: Cow<'static, str>,
    },
    /// `2`: an event, `[name, ...args]`, asking for an ack when `id` is set.
    Event {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// The ack id, if the sender wants an ack.
        id: Option<u64>,
        /// `[name, ...args]`.
        data: RawJson,
    },
    /// `3`: the answer to the event with the same `id`.
    Ack {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// The id of the event answered.
        id: u64,
        /// The ack's arguments, an array.
        data: RawJson,
    },
    /// `4`: refuses a `Connect`, with `{"message":...}`.
    ConnectError {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// An object.
        data: RawJson,
    },
    /// `5`: an event with binary parts.
    BinaryEvent {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// The ack id, if the sender wants an ack.
        id: Option<u64>,
        /// `[name, ...args]` with placeholders, and the parts.
        data: BinaryData,
    },
    /// `6`: an ack with binary parts.
    BinaryAck {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// The id of the event answered.
        id: u64,
        /// The arguments with placeholders, and the parts.
        data: BinaryData,
    },
}

impl Packet {
    /// The namespace.
    pub fn nsp(&self) -> &str {
        match self {
            Self::Connect { nsp, .. }
            | Self::Disconnect { nsp }
            | Self::Event { nsp, .. }
            | Self::Ack { nsp, .. }
            | Self::ConnectError { nsp, .. }
            | Self::BinaryEvent { nsp, .. }
            | Self::BinaryAck { nsp, .. } => nsp,
        }
    }

    /// The binary parts; empty for packets other than `BinaryEvent` and `BinaryAck`.
    pub fn attachments(&self) -> &[Bytes] {
        self.binary_data().map_or(&[], |data| &data.attachments)
    }

    fn binary_data(&self) -> Option<&BinaryData> {
        match self {
            Self::BinaryEvent { data, .. } | Self::BinaryAck { data, .. } => Some(data),
            _ => None,
        }
    }

    pub(crate) fn binary_data_mut(&mut self) -> Option<&mut BinaryData> {
        match self {
            Self::BinaryEvent { data, .. } | Self::BinaryAck { data, .. } => Some(data),
            _ => None,
        }
    }

    /// Encodes the text message; for binary packets, the header announcing
    /// `attachments().len()` parts, which follow as binary messages.
    pub fn encode(&self, out: &mut BytesMut) {
        let (kind, id) = match self {
            Self::Connect { .. } => (b'0', None),
            Self::Disconnect { .. } => (b'1', None),
            Self::Event { id, .. } => (b'2', *id),
            Self::Ack { id, .. } => (b'3', Some(*id)),
            Self::ConnectError { .. } => (b'4', None),
            Self::BinaryEvent { id, .. } => (b'5', *id),
            Self::BinaryAck { id, .. } => (b'6', Some(*id)),
        };
        out.put_u8(kind);
        if let Some(data) = self.binary_data() {
            put_decimal(out, data.attachments.len() as u64);
            out.put_u8(b'-');
        }
        if self.nsp() != MAIN_NAMESPACE {
            out.extend_from_slice(self.nsp().as_bytes());
            out.put_u8(b',');
        }
        if let Some(id) = id {
            put_decimal(out, id);
        }
        match self {
            Self::Connect { data: None, .. } | Self::Disconnect { .. } => {}
            Self::Connect {
                data: Some(data), ..
            }
            | Self::Event { data, .. }
            | Self::Ack { data, .. }
            | Self::ConnectError { data, .. } => out.extend_from_slice(data.get().as_bytes()),
            Self::BinaryEvent { data, .. } | Self::BinaryAck { data, .. } => {
                // Cannot fail: a `Value`'s keys are strings and the writer is memory.
                let _ = serde_json::to_writer(out.writer(), &data.value);
            }
        }
    }
}

fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Decodes one text message: the packet, and how many binary attachments follow it (0 for
/// non-binary types). A binary packet comes with empty `attachments`; the
/// [`Reassembler`](super::Reassembler) fills them.
pub fn decode(text: &[u8]) -> Result<(Packet, usize), Error> {
    let (&kind, mut rest) = text.split_first().ok_or(Error::Empty)?;
    if !(b'0'..=b'6').contains(&kind) {
        return Err(Error::UnknownType);
    }
    let binary = kind == b'5' || kind == b'6';
    let count = if binary {
        let (digits, after) = split_digits(rest);
        rest = after
            .strip_prefix(b"-")
            .ok_or(Error::InvalidAttachmentCount)?;
        parse_u64(digits)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(Error::InvalidAttachmentCount)?
    } else {
        0
    };
    let nsp: Cow<'static, str> = if rest.first() == Some(&b'/') {
        let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
        let nsp = std::str::from_utf8(&rest[..end]).map_err(|_| Error::InvalidNamespace)?;
        rest = rest.get(end + 1..).unwrap_or_default();
        if nsp == MAIN_NAMESPACE {
            Cow::Borrowed(MAIN_NAMESPACE)
        } else {
            Cow::Owned(nsp.to_owned())
        }
    } else {
        Cow::Borrowed(MAIN_NAMESPACE)
    };
    let (digits, after) = split_digits(rest);
    rest = after;
    let id = match digits {
        [] => None,
        digits => Some(parse_u64(digits).ok_or(Error::InvalidAckId)?),
    };
    let json = if rest.is_empty() { None } else { Some(rest) };
    let packet = match kind {
        b'0' => Packet::Connect {
            data: json.map(|j| raw(j, Shape::Object)).transpose()?,
            nsp: no_id(nsp, id)?,
        },
        b'1' if json.is_some() => return Err(Error::InvalidPayload),
        b'1' => Packet::Disconnect {
            nsp: no_id(nsp, id)?,
        },
        b'2' => Packet::Event {
            nsp,
            id,
            data: raw(json.ok_or(Error::InvalidPayload)?, Shape::Event)?,
        },
        b'3' => Packet::Ack {
            nsp,
            id: id.ok_or(Error::MissingAckId)?,
            data: raw(json.ok_or(Error::InvalidPayload)?, Shape::Array)?,
        },
        b'4' => Packet::ConnectError {
            data: raw(json.ok_or(Error::InvalidPayload)?, Shape::Object)?,
            nsp: no_id(nsp, id)?,
        },
        b'5' => Packet::BinaryEvent {
            nsp,
            id,
            data: value(json, Shape::Event, count)?,
        },
        _ => Packet::BinaryAck {
            nsp,
            id: id.ok_or(Error::MissingAckId)?,
            data: value(json, Shape::Array, count)?,
        },
    };
    Ok((packet, count))
}

/// Splits leading ASCII digits from the rest.
fn split_digits(input: &[u8]) -> (&[u8], &[u8]) {
    input.split_at(input.iter().take_while(|b| b.is_ascii_digit()).count())
}

/// A non-empty run of digits as a number; `None` if empty or over `u64::MAX`. Leading zeros
/// are accepted, as the reference parser does.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn no_id(nsp: Cow<'static, str>, id: Option<u64>) -> Result<Cow<'static, str>, Error> {
    match id {
        Some(_) => Err(Error::InvalidAckId),
        None => Ok(nsp),
    }
}
