//! Binary packets: a text header whose JSON holds placeholders `{"_placeholder":true,"num":N}`,
//! followed by N binary messages. The [`Reassembler`] decodes incoming messages and joins a
//! header with its attachments, within limits; [`Attachments`] and [`deconstruct`] build the
//! outgoing side.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::error::Error;
use super::packet::{decode, Packet};
use crate::engineio;

/// Limits on the attachments of one incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// The most attachments a packet may announce. Default: 10.
    pub max_attachments: usize,
    /// The most bytes its attachments may hold together. Default: 1 000 000, the default
    /// Engine.IO `maxPayload`.
    pub max_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            max_attachments: 10,
            max_bytes: 1_000_000,
        }
    }
}

/// Decodes the messages of one connection: text messages are packets, binary messages the
/// attachments of the binary packet before them.
///
/// After an error the reassembler is empty again, but the connection should close (see
/// [`Error::close_code`]).
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
    bytes: usize,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            pending: None,
        }
    }

    /// Whether a binary packet waits for attachments.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// A text message: the packet, or `Ok(None)` for a binary header whose attachments must
    /// follow.
    pub fn on_text(&mut self, text: &[u8]) -> Result<Option<Packet>, Error> {
        if self.pending.take().is_some() {
            return Err(Error::UnexpectedText);
        }
        let (mut packet, expected) = decode(text)?;
        if expected == 0 {
            return Ok(Some(packet));
        }
        if expected > self.limits.max_attachments {
            return Err(Error::TooManyAttachments);
        }
        if let Some(data) = packet.binary_data_mut() {
            data.attachments.reserve_exact(expected);
        }
        self.pending = Some(Pending {
            packet,
            expected,
            bytes: 0,
        });
        Ok(None)
    }

    /// A binary message: the completed packet once it is the last attachment, else
    /// `Ok(None)`.
    pub fn on_binary(&mut self, data: Bytes) -> Result<Option<Packet>, Error> {
        let mut pending = self.pending.take().ok_or(Error::UnexpectedBinary)?;
        pending.bytes = pending.bytes.saturating_add(data.len());
        if pending.bytes > self.limits.max_bytes {
            return Err(Error::AttachmentsTooLarge);
        }
        // Only binary packets are ever pending, so this always finds the data.
        let attachments = &mut pending
            .packet
            .binary_data_mut()
            .ok_or(Error::UnexpectedBinary)?
            .attachments;
        attachments.push(data);
        if attachments.len() == pending.expected {
            Ok(Some(pending.packet))
        } else {
            self.pending = Some(pending);
            Ok(None)
        }
    }
}

/// Collects binary parts while a packet's JSON is built: [`push`](Self::push) returns the
/// placeholder to put where the part belongs.
#[derive(Debug, Default, Clone)]
pub struct Attachments(Vec<Bytes>);

impl Attachments {
    /// No parts yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a part and returns its placeholder.
    pub fn push(&mut self, data: Bytes) -> Value {
        self.0.push(data);
        placeholder(self.0.len() - 1)
    }

    /// The parts, for [`BinaryData::attachments`](super::BinaryData::attachments).
    pub fn into_vec(self) -> Vec<Bytes> {
        self.0
    }
}

/// The placeholder for attachment `num`: `{"_placeholder":true,"num":N}`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

/// The attachment index a placeholder stands for; `None` if `value` is not a placeholder.
pub fn placeholder_index(value: &Value) -> Option<usize> {
    let map = value.as_object()?;
    if map.get("_placeholder")? != &Value::Bool(true) {
        return None;
    }
    usize::try_from(map.get("num")?.as_u64()?).ok()
}

/// Checks that every placeholder in `value` names one of `count` attachments. Objects marked
/// `"_placeholder": true` are placeholders, as for the reference parser; their other keys are
/// ignored. Depth is bounded by serde_json's recursion limit.
pub(crate) fn check_placeholders(value: &Value, count: usize) -> Result<(), Error> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_placeholders(v, count)),
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            match placeholder_index(value) {
                Some(num) if num < count => Ok(()),
                _ => Err(Error::InvalidPlaceholder),
            }
        }
        Value::Object(map) => map.values().try_for_each(|v| check_placeholders(v, count)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
    }
}

/// Splits a packet into its text message and the binary messages that follow it (none for
/// non-binary packets).
pub fn deconstruct(packet: &Packet) -> (Bytes, Vec<Bytes>) {
    let mut text = BytesMut::new();
    packet.encode(&mut text);
    (text.freeze(), packet.attachments().to_vec())
}

/// The Engine.IO packets carrying `packet`: a message, then one binary message per
/// attachment. Queue them with
/// [`EngineConn::push_group`](crate::engine::EngineConn::push_group) so that they stay
/// together.
pub fn to_engineio(packet: &Packet) -> Vec<engineio::Packet> {
    let (text, attachments) = deconstruct(packet);
    std::iter::once(engineio::Packet::Message(text))
        .chain(attachments.into_iter().map(engineio::Packet::Binary))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::socketio::BinaryData;

    fn binary_event(nsp: &'static str, id: Option<u64>, parts: &[&'static [u8]]) -> Packet {
        let mut attachments = Attachments::new();
        let mut args = vec![Value::from("baz")];
        args.extend(
            parts
                .iter()
                .map(|p| attachments.push(Bytes::from_static(p))),
        );
        Packet::BinaryEvent {
            nsp: Cow::Borrowed(nsp),
            id,
            data: BinaryData {
                value: Value::Array(args),
                attachments: attachments.into_vec(),
            },
        }
    }

    fn feed(r: &mut Reassembler, text: &[u8], parts: &[&'static [u8]]) -> Option<Packet> {
        let mut out = r.on_text(text).unwrap();
        for part in parts {
            assert!(out.is_none(), "complete before its last attachment");
            out = r.on_binary(Bytes::from_static(part)).unwrap();
        }
        out
    }

    #[test]
    fn protocol_document_vectors() {
        let mut r = Reassembler::default();
        let one = binary_event("/", None, &[&[1, 2, 3, 4]]);
        let text = br#"51-["baz",{"_placeholder":true,"num":0}]"#;
        assert_eq!(feed(&mut r, text, &[&[1, 2, 3, 4]]), Some(one.clone()));
        assert_eq!(
            deconstruct(&one),
            (
                Bytes::from_static(text),
                vec![Bytes::from_static(&[1, 2, 3, 4])]
            )
        );

        let two = binary_event("/admin", None, &[&[1, 2], &[3, 4]]);
        let text =
            br#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(feed(&mut r, text, &[&[1, 2], &[3, 4]]), Some(two.clone()));
        assert_eq!(deconstruct(&two).0, &text[..]);

        let ack = Packet::BinaryAck {
            nsp: Cow::Borrowed("/"),
            id: 15,
            data: BinaryData {
                value: serde_json::json!(["bar", placeholder(0)]),
                attachments: vec![Bytes::from_static(&[1, 2, 3, 4])],
            },
        };
        let text = br#"61-15["bar",{"_placeholder":true,"num":0}]"#;
        assert_eq!(feed(&mut r, text, &[&[1, 2, 3, 4]]), Some(ack.clone()));
        assert_eq!(deconstruct(&ack).0, &text[..]);
        assert!(!r.is_pending());
    }

    #[test]
    fn sample_session_binary_ack() {
        let mut r = Reassembler::default();
        let text = br#"61-/admin,1[{"_placeholder":true,"num":0}]"#;
        let packet = feed(&mut r, text, &[b"\x00\xff"]).unwrap();
        assert_eq!(packet.nsp(), "/admin");
        let Packet::BinaryAck { id: 1, data, .. } = &packet else {
            panic!("{packet:?}");
        };
        assert_eq!(placeholder_index(&data.value[0]), Some(0));
        assert_eq!(packet.attachments(), [Bytes::from_static(b"\x00\xff")]);
    }

    #[test]
    fn to_engineio_keeps_order() {
        let packets = to_engineio(&binary_event("/", Some(3), &[b"a", b"b"]));
        assert_eq!(packets.len(), 3);
        assert_eq!(
            packets[0],
            engineio::Packet::Message(Bytes::from_static(
                br#"52-3["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
            ))
        );
        assert_eq!(
            packets[2],
            engineio::Packet::Binary(Bytes::from_static(b"b"))
        );
    }

    #[test]
    fn sequence_errors() {
        let mut r = Reassembler::default();
        assert_eq!(r.on_binary(Bytes::new()), Err(Error::UnexpectedBinary));
        assert_eq!(
            r.on_text(br#"51-["a",{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        assert_eq!(r.on_text(br#"2["a"]"#), Err(Error::UnexpectedText));
        assert!(!r.is_pending());
        // A zero-attachment binary packet is complete at once.
        assert!(r.on_text(br#"50-["a"]"#).unwrap().is_some());
    }

    #[test]
    fn limits() {
        let limits = ReassemblyLimits {
            max_attachments: 2,
            max_bytes: 4,
        };
        let mut r = Reassembler::new(limits);
        let three = br#"53-["a",{"_placeholder":true,"num":2}]"#;
        assert_eq!(r.on_text(three), Err(Error::TooManyAttachments));
        // A huge announced count allocates nothing before the limit check.
        let huge = br#"518446744073709551615-["a"]"#;
        assert_eq!(r.on_text(huge), Err(Error::TooManyAttachments));
        assert_eq!(r.on_text(br#"52-["a"]"#), Ok(None));
        assert_eq!(r.on_binary(Bytes::from_static(b"abc")), Ok(None));
        assert_eq!(
            r.on_binary(Bytes::from_static(b"de")),
            Err(Error::AttachmentsTooLarge)
        );
        assert!(!r.is_pending());
    }

    #[test]
    fn placeholders_are_checked() {
        let mut r = Reassembler::default();
        for text in [
            &br#"51-["a",{"_placeholder":true,"num":1}]"#[..],
            br#"51-["a",{"_placeholder":true}]"#,
            br#"51-["a",{"_placeholder":true,"num":-1}]"#,
            br#"51-["a",{"_placeholder":true,"num":"0"}]"#,
            br#"51-["a",{"deep":[{"_placeholder":true,"num":7}]}]"#,
        ] {
            assert_eq!(r.on_text(text), Err(Error::InvalidPlaceholder), "{text:?}");
        }
        // Not placeholders: `_placeholder` must be `true`.
        assert_eq!(
            r.on_text(br#"51-["a",{"_placeholder":1,"num":9}]"#),
            Ok(None)
        );
        assert_eq!(placeholder_index(&serde_json::json!({"num": 0})), None);
    }
}
