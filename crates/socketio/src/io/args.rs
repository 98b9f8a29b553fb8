//! [`Args`]: the arguments of an event or ack, as the JSON array they are on the wire (kept
//! raw, so that relaying them costs no rebuild) with the binary attachments its placeholders
//! point to; and the errors of emitting and of waiting for an ack.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::socketio::RawJson;

/// The arguments of an event or ack: a JSON array, and the binary attachments its
/// `{"_placeholder":true,"num":N}` objects stand for (none for plain-text packets).
#[derive(Debug, Clone)]
pub struct Args {
    json: Box<RawValue>,
    attachments: Vec<Bytes>,
}

/// `Args::new` was given JSON that is not an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event arguments must be a JSON array")]
pub struct NotAnArray;

impl Args {
    /// Arguments from a JSON array.
    pub fn new(json: Box<RawValue>) -> Result<Self, NotAnArray> {
        if json.get().trim_start().starts_with('[') {
            Ok(Self {
                json,
                attachments: Vec::new(),
            })
        } else {
            Err(NotAnArray)
        }
    }

    /// No arguments.
    pub fn empty() -> Self {
        Self::from_raw_array("[]".to_owned())
    }

    /// Arguments from values, one per argument.
    pub fn from_values(values: Vec<Value>) -> Self {
        // Cannot fail: a `Value` always serializes.
        Self::from_raw_array(serde_json::to_string(&values).unwrap_or_else(|_| "[]".to_owned()))
    }

    /// One argument.
    pub fn one<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let json = serde_json::to_string(value)?;
        Ok(Self::from_raw_array(format!("[{json}]")))
    }

    /// Adds the binary attachments the arguments' placeholders point to (built with
    /// [`socketio::Attachments`](crate::socketio::Attachments)). Placeholders must number
    /// them from 0 in order; that is not checked here.
    pub fn with_attachments(mut self, attachments: Vec<Bytes>) -> Self {
        self.attachments = attachments;
        self
    }

    /// The JSON array, placeholders included.
    pub fn json(&self) -> &RawValue {
        &self.json
    }

    /// The binary attachments.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// Whether the arguments go in a binary packet.
    pub fn is_binary(&self) -> bool {
        !self.attachments.is_empty()
    }

    /// The whole array, deserialized (a tuple, a `Vec`, a `Value`...).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.json.get())
    }

    /// Argument `index`, deserialized; `None` if missing or of another shape.
    pub fn get<T: DeserializeOwned>(&self, index: usize) -> Option<T> {
        let items: Vec<&RawValue> = serde_json::from_str(self.json.get()).ok()?;
        serde_json::from_str(items.get(index)?.get()).ok()
    }

    /// The array's text between its brackets, trimmed: empty when there are no arguments.
    pub(crate) fn inner(&self) -> &str {
        let text = self.json.get().trim();
        text.strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or_default()
            .trim()
    }

    /// An `EVENT`'s data `["name", args...]` split into the name and the arguments; `None`
    /// when the first element is not a string (the decoder already refused those).
    pub(crate) fn split_event(data: &RawJson) -> Option<(String, Self)> {
        let items: Vec<&RawValue> = serde_json::from_str(data.get()).ok()?;
        let (name, rest) = items.split_first()?;
        let name: String = serde_json::from_str(name.get()).ok()?;
        let mut array = String::with_capacity(data.get().len());
        array.push('[');
        for (i, item) in rest.iter().enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push_str(item.get());
        }
        array.push(']');
        Some((name, Self::from_raw_array(array)))
    }

    /// A `BINARY_EVENT`'s `["name", args...]` with its attachments, split likewise.
    pub(crate) fn split_binary_event(
        value: Value,
        attachments: Vec<Bytes>,
    ) -> Option<(String, Self)> {
        let Value::Array(mut items) = value else {
            return None;
        };
        if items.is_empty() {
            return None;
        }
        let Value::String(name) = items.remove(0) else {
            return None;
        };
        Some((name, Self::from_values(items).with_attachments(attachments)))
    }

    /// An `ACK`'s arguments.
    pub(crate) fn from_ack(data: RawJson) -> Self {
        Self {
            json: data.into_inner(),
            attachments: Vec::new(),
        }
    }

    /// A `BINARY_ACK`'s arguments with their attachments.
    pub(crate) fn from_binary_ack(value: Value, attachments: Vec<Bytes>) -> Self {
        let json = serde_json::to_string(&value).unwrap_or_else(|_| "[]".to_owned());
        Self::from_raw_array(json).with_attachments(attachments)
    }

    /// From text known to be a JSON array.
    fn from_raw_array(array: String) -> Self {
        let json = RawValue::from_string(array)
            .unwrap_or_else(|_| RawValue::from_string("[]".to_owned()).unwrap_or_default());
        Self {
            json,
            attachments: Vec::new(),
        }
    }
}

impl Default for Args {
    fn default() -> Self {
        Self::empty()
    }
}

/// Why an emit was not queued.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The socket is disconnected from its namespace.
    #[error("socket disconnected")]
    Disconnected,
    /// The connection's queue is full: it is being closed as a slow consumer.
    #[error("outgoing queue full")]
    Full,
    /// The connection is closing.
    #[error("connection closing")]
    Closed,
    /// The data did not serialize to JSON.
    #[error("data is not serializable to JSON")]
    Serialize,
}

impl From<roomcast_engine::PushError> for EmitError {
    fn from(err: roomcast_engine::PushError) -> Self {
        match err {
            roomcast_engine::PushError::Full(_) => Self::Full,
            _ => Self::Closed,
        }
    }
}

/// Why an ack did not come.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No answer within the timeout.
    #[error("ack timed out")]
    Timeout,
    /// The socket disconnected first.
    #[error("socket disconnected")]
    Disconnected,
    /// The event itself was not queued.
    #[error("event not sent: {0}")]
    Emit(EmitError),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(s: &str) -> RawJson {
        RawJson::from(RawValue::from_string(s.to_owned()).unwrap())
    }

    #[test]
    fn events_split_into_name_and_arguments() {
        let (name, args) = Args::split_event(&raw(r#"["message",1,"2",{"3":[true]}]"#)).unwrap();
        assert_eq!(name, "message");
        assert_eq!(args.json().get(), r#"[1,"2",{"3":[true]}]"#);
        assert_eq!(args.inner(), r#"1,"2",{"3":[true]}"#);
        assert_eq!(args.get::<String>(1).as_deref(), Some("2"));
        assert_eq!(args.get::<u8>(7), None);
        let (_, none) = Args::split_event(&raw(r#"[ "ping" ]"#)).unwrap();
        assert_eq!((none.json().get(), none.inner()), ("[]", ""));
        assert!(Args::split_event(&raw("[1]")).is_none());
    }

    #[test]
    fn binary_events_keep_their_placeholders() {
        let value = json!(["message", {"_placeholder": true, "num": 0}]);
        let (name, args) = Args::split_binary_event(value, vec![Bytes::from_static(b"x")]).unwrap();
        assert_eq!(name, "message");
        assert_eq!(args.json().get(), r#"[{"_placeholder":true,"num":0}]"#);
        assert!(args.is_binary());
        assert!(Args::split_binary_event(json!({}), Vec::new()).is_none());
    }

    #[test]
    fn constructors() {
        assert_eq!(
            Args::one(&json!({"a": 1})).unwrap().json().get(),
            r#"[{"a":1}]"#
        );
        assert_eq!(
            Args::from_values(vec![json!(1), json!("b")]).inner(),
            r#"1,"b""#
        );
        assert_eq!(Args::default().inner(), "");
        let array = RawValue::from_string("[1]".to_owned()).unwrap();
        assert!(Args::new(array).is_ok());
        let object = RawValue::from_string("{}".to_owned()).unwrap();
        assert_eq!(Args::new(object).err(), Some(NotAnArray));
        assert_eq!(
            Args::new(RawValue::from_string(" [ 2 ] ".to_owned()).unwrap())
                .unwrap()
                .inner(),
            "2"
        );
        let parsed: (u8,) = Args::one(&7).unwrap().parse().unwrap();
        assert_eq!(parsed, (7,));
    }
}
