//! The packets the server sends, encoded straight into Engine.IO message items
//! (`4` + the Socket.IO packet): events and acks with or without attachments, the answers to
//! `CONNECT`, and `DISCONNECT`. Arguments are written as the raw JSON they already are.

use bytes::{BufMut, Bytes, BytesMut};
use roomcast_broker::Payload;
use roomcast_engine::Outbound;
use serde_json::value::RawValue;

use super::args::Args;
use crate::socketio::MAIN_NAMESPACE;

/// Encodes an event with one argument, `data`, for namespace `ns`: the item a publish pushes
/// to every Socket.IO member of a room, encoded once per broadcast
/// (`42/ns,["event",data]`, or `42["event",data]` for the main namespace).
pub fn encode_event(ns: &str, event: &str, data: &RawValue) -> Outbound {
    let mut out = header(b'2', 0, ns, None, event.len() + data.get().len() + 8);
    put_event_array(&mut out, event, data.get());
    Outbound::Text(out.freeze())
}

/// Encodes a publication's event for namespace `ns`: one text item, or for arguments with
/// attachments the binary event header and one item per attachment (push those with
/// [`SocketIo::push_items`](super::SocketIo::push_items), which groups them per transport).
pub fn encode_payload(
    ns: &str,
    event_name: &str,
    payload: &Payload,
    offset: Option<&str>,
) -> Vec<Outbound> {
    // The offset, when there is one, is a last string argument (connection state recovery).
    let tail = |json: &mut String| {
        if let Some(offset) = offset {
            json.push(',');
            // Cannot fail: a string always serializes.
            json.push_str(&serde_json::to_string(offset).unwrap_or_default());
        }
    };
    match payload {
        Payload::Json(data) if offset.is_none() => vec![encode_event(ns, event_name, data)],
        Payload::Json(data) => {
            let mut json = String::with_capacity(data.get().len() + 32);
            json.push(',');
            json.push_str(data.get());
            tail(&mut json);
            let mut out = header(b'2', 0, ns, None, event_name.len() + json.len() + 8);
            put_event_array_tail(&mut out, event_name, &json);
            vec![Outbound::Text(out.freeze())]
        }
        Payload::Args { array, attachments } => match Args::new(array.clone()) {
            Ok(args) => {
                let args = args.with_attachments(attachments.clone());
                let binary = args.is_binary();
                let kind = if binary { b'5' } else { b'2' };
                let inner = args.inner();
                let mut json = String::with_capacity(inner.len() + 32);
                if !inner.is_empty() {
                    json.push(',');
                    json.push_str(inner);
                }
                tail(&mut json);
                let mut out = header(
                    kind,
                    attachments.len(),
                    ns,
                    None,
                    event_name.len() + json.len() + 8,
                );
                put_event_array_tail(&mut out, event_name, &json);
                with_attachments(out.freeze(), &args)
            }
            // Not an array: carried as the one argument it is.
            Err(_) => encode_payload(ns, event_name, &Payload::Json(array.clone()), offset),
        },
    }
}

/// An event with its arguments and optional ack id: one text item, or for arguments with
/// attachments the binary event header followed by one binary item per attachment.
pub(crate) fn event(ns: &str, id: Option<u64>, name: &str, args: &Args) -> Vec<Outbound> {
    let binary = args.is_binary();
    let kind = if binary { b'5' } else { b'2' };
    let inner = args.inner();
    let mut out = header(
        kind,
        args.attachments().len(),
        ns,
        id,
        name.len() + inner.len() + 8,
    );
    let mut json = String::with_capacity(inner.len() + 1);
    if !inner.is_empty() {
        json.push(',');
        json.push_str(inner);
    }
    put_event_array_tail(&mut out, name, &json);
    with_attachments(out.freeze(), args)
}

/// An ack of event `id` with its arguments.
pub(crate) fn ack(ns: &str, id: u64, args: &Args) -> Vec<Outbound> {
    let kind = if args.is_binary() { b'6' } else { b'3' };
    let array = args.json().get();
    let mut out = header(kind, args.attachments().len(), ns, Some(id), array.len());
    out.extend_from_slice(array.as_bytes());
    with_attachments(out.freeze(), args)
}

/// The acceptance of a `CONNECT`: `40/ns,{"sid":"..."}`.
pub(crate) fn connect(ns: &str, sid: &str, pid: Option<&str>) -> Outbound {
    let pid_len = pid.map_or(0, |pid| pid.len() + 10);
    let mut out = header(b'0', 0, ns, None, sid.len() + pid_len + 10);
    out.extend_from_slice(b"{\"sid\":");
    put_json_string(&mut out, sid);
    if let Some(pid) = pid {
        out.extend_from_slice(b",\"pid\":");
        put_json_string(&mut out, pid);
    }
    out.put_u8(b'}');
    Outbound::Text(out.freeze())
}

/// The refusal of a `CONNECT`: `44/ns,{"message":"...","data":...}`.
pub(crate) fn connect_error(ns: &str, message: &str, data: Option<&RawValue>) -> Outbound {
    let mut out = header(b'4', 0, ns, None, message.len() + 16);
    out.extend_from_slice(b"{\"message\":");
    put_json_string(&mut out, message);
    if let Some(data) = data {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(data.get().as_bytes());
    }
    out.put_u8(b'}');
    Outbound::Text(out.freeze())
}

/// A server-side disconnect from a namespace: `41/ns,`.
pub(crate) fn disconnect(ns: &str) -> Outbound {
    Outbound::Text(header(b'1', 0, ns, None, 0).freeze())
}

/// `4`, the packet type, the attachment count for binary types, the namespace unless it is
/// the main one, and the ack id.
fn header(kind: u8, attachments: usize, ns: &str, id: Option<u64>, extra: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(ns.len() + 24 + extra);
    out.put_u8(b'4');
    out.put_u8(kind);
    if kind == b'5' || kind == b'6' {
        out.extend_from_slice(attachments.to_string().as_bytes());
        out.put_u8(b'-');
    }
    if ns != MAIN_NAMESPACE {
        out.extend_from_slice(ns.as_bytes());
        out.put_u8(b',');
    }
    if let Some(id) = id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
    out
}

/// `["name",data]`.
fn put_event_array(out: &mut BytesMut, name: &str, data: &str) {
    out.put_u8(b'[');
    put_json_string(out, name);
    out.put_u8(b',');
    out.extend_from_slice(data.as_bytes());
    out.put_u8(b']');
}

/// `["name"` + `tail` + `]`, where `tail` is empty or starts with a comma.
fn put_event_array_tail(out: &mut BytesMut, name: &str, tail: &str) {
    out.put_u8(b'[');
    put_json_string(out, name);
    out.extend_from_slice(tail.as_bytes());
    out.put_u8(b']');
}

fn put_json_string(out: &mut BytesMut, s: &str) {
    // Cannot fail: a string always serializes, and the writer is memory.
    let _ = serde_json::to_writer(out.writer(), s);
}

fn with_attachments(text: Bytes, args: &Args) -> Vec<Outbound> {
    std::iter::once(Outbound::Text(text))
        .chain(args.attachments().iter().cloned().map(Outbound::Binary))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(item: &Outbound) -> &[u8] {
        match item {
            Outbound::Text(text) => text,
            other => panic!("{other:?}"),
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn publish_encoding() {
        let data = raw(r#"{"id":42,"status":"shipped"}"#);
        assert_eq!(
            text(&encode_event("/", "order:status_updated", &data)),
            br#"42["order:status_updated",{"id":42,"status":"shipped"}]"#
        );
        assert_eq!(
            text(&encode_event("/dashboard", "say \"hi\"", &raw("1"))),
            br#"42/dashboard,["say \"hi\"",1]"#
        );
    }

    #[test]
    fn events_and_acks_as_in_the_test_suite() {
        let args = Args::new(raw(r#"[1,"2",{"3":[true]}]"#)).unwrap();
        let items = event("/", None, "message-back", &args);
        assert_eq!(items.len(), 1);
        assert_eq!(text(&items[0]), br#"42["message-back",1,"2",{"3":[true]}]"#);
        assert_eq!(
            text(&ack("/", 456, &args)[0]),
            br#"43456[1,"2",{"3":[true]}]"#
        );
        let none = event("/custom", Some(7), "ping", &Args::empty());
        assert_eq!(text(&none[0]), br#"42/custom,7["ping"]"#);
    }

    #[test]
    fn binary_events_and_acks() {
        let placeholders = json!([
            {"_placeholder": true, "num": 0},
            {"_placeholder": true, "num": 1}
        ]);
        let args =
            Args::from_values(placeholders.as_array().unwrap().clone()).with_attachments(vec![
                Bytes::from_static(&[1, 2, 3]),
                Bytes::from_static(&[4]),
            ]);
        let items = event("/", None, "message-back", &args);
        assert_eq!(
            text(&items[0]),
            br#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(items[1], Outbound::Binary(Bytes::from_static(&[1, 2, 3])));
        assert_eq!(items.len(), 3);
        let acked = ack("/admin", 789, &args);
        assert_eq!(
            text(&acked[0]),
            br#"462-/admin,789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
    }

    #[test]
    fn offsets_are_last_arguments() {
        let one = Payload::Json(raw(r#"{"a":1}"#));
        assert_eq!(
            text(&encode_payload("/", "e", &one, Some("7"))[0]),
            br#"42["e",{"a":1},"7"]"#
        );
        assert_eq!(
            text(&encode_payload("/", "e", &one, None)[0]),
            br#"42["e",{"a":1}]"#
        );
        let args = Payload::Args {
            array: raw(r#"[1,{"_placeholder":true,"num":0}]"#),
            attachments: vec![Bytes::from_static(b"x")],
        };
        let items = encode_payload("/n", "e", &args, Some("8"));
        assert_eq!(
            text(&items[0]),
            br#"451-/n,["e",1,{"_placeholder":true,"num":0},"8"]"#
        );
        assert_eq!(items.len(), 2);
        let none = Payload::Args {
            array: raw("[]"),
            attachments: vec![],
        };
        assert_eq!(
            text(&encode_payload("/", "e", &none, Some("9"))[0]),
            br#"42["e","9"]"#
        );
    }

    #[test]
    fn connect_answers() {
        assert_eq!(text(&connect("/", "abc", None)), br#"40{"sid":"abc"}"#);
        assert_eq!(
            text(&connect("/custom", "abc", None)),
            br#"40/custom,{"sid":"abc"}"#
        );
        assert_eq!(
            text(&connect("/", "abc", Some("p\"1"))),
            br#"40{"sid":"abc","pid":"p\"1"}"#
        );
        assert_eq!(
            text(&connect_error("/random", "Invalid namespace", None)),
            br#"44/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            text(&connect_error("/", "nope", Some(&raw(r#"{"code":4001}"#)))),
            br#"44{"message":"nope","data":{"code":4001}}"#
        );
        assert_eq!(text(&disconnect("/")), b"41");
        assert_eq!(text(&disconnect("/custom")), b"41/custom,");
    }
}
