//! The messages on a node's channel: requests from other nodes, and replies to this node's
//! own requests, told apart by their `kind`.
//!
//! ```text
//! {"kind":"request","id":7,"from":"a","reply_to":"<prefix>:node:a:req","body":{...}}
//! {"kind":"reply","id":7,"from":"b","ok":{...}}
//! {"kind":"reply","id":7,"from":"b","error":"timed out"}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The largest message a node reads from its channel, and the largest answer it sends (a
/// larger one is replaced by an error). Redis's default output buffer limit for Pub/Sub
/// clients (8 MiB over 60 s, 32 MiB at once) would cut a subscriber off near this size.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// One message on a node channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Envelope {
    /// A request from node `from`, to be answered on `reply_to`.
    Request {
        /// Chosen by the asking node, unique among its requests in flight.
        id: u64,
        /// The asking node's id.
        from: String,
        /// The asking node's channel.
        reply_to: String,
        /// What the handler gets.
        body: Value,
    },
    /// An answer from node `from` to request `id`.
    Reply {
        /// The request's id.
        id: u64,
        /// The answering node's id.
        from: String,
        /// The handler's answer (absent when `error` is set).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<Value>,
        /// Why there is no answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl Envelope {
    /// A reply carrying `answer`.
    pub(crate) fn reply(id: u64, from: String, answer: Result<Value, String>) -> Self {
        match answer {
            Ok(value) => Self::Reply {
                id,
                from,
                ok: Some(value),
                error: None,
            },
            Err(error) => Self::Reply {
                id,
                from,
                ok: None,
                error: Some(error),
            },
        }
    }

    /// Reads a message, or `None` for one too large or not an envelope.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    /// Writes the message as JSON.
    pub(crate) fn encode(&self) -> String {
        // Only strings, integers and `Value`s, whose serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A reply's answer: `error` wins, and `"ok": null` (or nothing) is a null answer.
pub(crate) fn answer_of(ok: Option<Value>, error: Option<String>) -> Result<Value, String> {
    match error {
        Some(error) => Err(error),
        None => Ok(ok.unwrap_or(Value::Null)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_and_replies_are_told_apart_by_kind() -> Result<(), serde_json::Error> {
        let request = Envelope::Request {
            id: 7,
            from: "a".into(),
            reply_to: "rc:node:a:req".into(),
            body: json!({"op": "count"}),
        };
        assert_eq!(
            serde_json::from_str::<Value>(&request.encode())?,
            json!({"kind": "request", "id": 7, "from": "a", "reply_to": "rc:node:a:req", "body": {"op": "count"}})
        );
        let ok = Envelope::reply(7, "b".into(), Ok(json!(3)));
        assert_eq!(
            serde_json::from_str::<Value>(&ok.encode())?,
            json!({"kind": "reply", "id": 7, "from": "b", "ok": 3})
        );
        let err = Envelope::reply(7, "b".into(), Err("busy".into()));
        assert_eq!(
            serde_json::from_str::<Value>(&err.encode())?,
            json!({"kind": "reply", "id": 7, "from": "b", "error": "busy"})
        );
        for message in [request, ok, err] {
            assert_eq!(Envelope::decode(message.encode().as_bytes()), Some(message));
        }
        Ok(())
    }

    #[test]
    fn a_null_answer_survives_the_trip() {
        let Some(Envelope::Reply { ok, error, .. }) = Envelope::decode(
            Envelope::reply(1, "b".into(), Ok(Value::Null))
                .encode()
                .as_bytes(),
        ) else {
            panic!("not a reply");
        };
        assert_eq!(answer_of(ok, error), Ok(Value::Null));
    }

    #[test]
    fn garbage_and_oversized_messages_are_ignored() {
        assert_eq!(Envelope::decode(b"not json"), None);
        assert_eq!(Envelope::decode(br#"{"kind":"other","id":1}"#), None);
        assert_eq!(Envelope::decode(br#"{"kind":"reply","from":"b"}"#), None);
        let big = format!(
            r#"{{"kind":"reply","id":1,"from":"b","ok":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(Envelope::decode(big.as_bytes()), None);
    }
}
