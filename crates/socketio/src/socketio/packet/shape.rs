//! What each packet type's payload must look like, checked while decoding: objects for
//! `CONNECT` and `CONNECT_ERROR`, arrays for acks, and for events a non-empty array whose first
//! element is a string other than a reserved name, read without building the array.

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{BinaryData, RawJson};
use crate::socketio::binary::check_placeholders;
use crate::socketio::error::Error;

/// Event names the server raises itself; a client may not send them (as in the reference
/// parser), so that no handler of those events ever runs on a client's behalf.
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// What a payload must look like.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    Object,
    Array,
    /// A non-empty array whose first element is a string other than a reserved name.
    Event,
}

pub(super) fn raw(json: &[u8], shape: Shape) -> Result<RawJson, Error> {
    let raw: Box<RawValue> = serde_json::from_slice(json).map_err(|_| Error::InvalidJson)?;
    // Serde skipped the leading whitespace: the first byte tells the JSON type.
    let first = raw.get().as_bytes().first().copied();
    match shape {
        Shape::Object if first == Some(b'{') => {}
        Shape::Array if first == Some(b'[') => {}
        Shape::Event => match serde_json::from_str::<EventHead>(raw.get()) {
            Ok(EventHead { reserved: false }) => {}
            Ok(EventHead { reserved: true }) => return Err(Error::ReservedEventName),
            Err(_) => return Err(Error::InvalidPayload),
        },
        Shape::Object | Shape::Array => return Err(Error::InvalidPayload),
    }
    Ok(RawJson(raw))
}

pub(super) fn value(json: Option<&[u8]>, shape: Shape, count: usize) -> Result<BinaryData, Error> {
    let value: Value = serde_json::from_slice(json.ok_or(Error::InvalidPayload)?)
        .map_err(|_| Error::InvalidJson)?;
    match (shape, &value) {
        (Shape::Array, Value::Array(_)) => {}
        (Shape::Event, Value::Array(items)) => match items.first() {
            Some(Value::String(name)) if is_reserved(name) => return Err(Error::ReservedEventName),
            Some(Value::String(_)) => {}
            _ => return Err(Error::InvalidPayload),
        },
        (Shape::Object, Value::Object(_)) => {}
        _ => return Err(Error::InvalidPayload),
    }
    check_placeholders(&value, count)?;
    Ok(BinaryData {
        value,
        // Not reserved here: `count` comes from the peer, and only the reassembler knows the
        // limit it must stay within.
        attachments: Vec::new(),
    })
}

fn is_reserved(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

/// Reads an event array's first element without building the array.
struct EventHead {
    reserved: bool,
}

impl<'de> Deserialize<'de> for EventHead {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(HeadVisitor)
    }
}

struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = EventHead;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array starting with an event name")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventHead, A::Error> {
        let name: EventName = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(EventHead { reserved: name.0 })
    }
}

/// A string, reduced to whether it is a reserved event name.
struct EventName(bool);

impl<'de> Deserialize<'de> for EventName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = EventName;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event name")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<EventName, E> {
                Ok(EventName(is_reserved(name)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}
