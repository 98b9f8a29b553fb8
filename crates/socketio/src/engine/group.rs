//! Packets that must reach the client together, as one queue item: encoded as several
//! WebSocket frames for a WebSocket, or as several records of a polling payload for polling.
//! When a session upgrades, the records still queued become frames again.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use roomcast_engine::ws::frame::{self, OpCode};
use roomcast_engine::Outbound;

use crate::engineio::payload::SEPARATOR;

/// The items as consecutive WebSocket frames.
pub(super) fn frames(items: &[Outbound]) -> Bytes {
    let mut out = BytesMut::new();
    for item in items {
        match item {
            Outbound::Text(text) => frame::encode(OpCode::Text, text, &mut out),
            Outbound::Binary(data) => frame::encode(OpCode::Binary, data, &mut out),
            Outbound::Frame(frame) => out.extend_from_slice(frame),
            _ => {}
        }
    }
    out.freeze()
}

/// The items as polling payload records joined by the separator, binary ones in base64.
pub(super) fn records(items: &[Outbound]) -> Bytes {
    let mut out = BytesMut::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        put_record(item, &mut out);
    }
    out.freeze()
}

/// Appends one item as a polling payload record: text as it is, binary as `b` and base64.
/// Complete WebSocket frames have no polling form and append nothing.
pub(super) fn put_record(item: &Outbound, out: &mut BytesMut) {
    match item {
        Outbound::Text(text) => out.extend_from_slice(text),
        Outbound::Binary(data) => {
            out.put_u8(b'b');
            out.extend_from_slice(STANDARD.encode(data).as_bytes());
        }
        _ => {}
    }
}

/// A queue item taken over by a WebSocket, as the frames to write: a group of polling
/// records is split back into one frame per packet. Text packets never contain the
/// separator otherwise: polling bodies are split on it, and JSON escapes it.
pub(super) fn to_websocket(item: &Outbound) -> Bytes {
    match item {
        Outbound::Text(text) if text.contains(&SEPARATOR) => {
            let mut out = BytesMut::new();
            for record in text.split(|&b| b == SEPARATOR) {
                match record.strip_prefix(b"b") {
                    Some(encoded) => match STANDARD.decode(encoded) {
                        Ok(data) => frame::encode(OpCode::Binary, &data, &mut out),
                        Err(_) => tracing::warn!("undecodable queued binary record dropped"),
                    },
                    None => frame::encode(OpCode::Text, record, &mut out),
                }
            }
            out.freeze()
        }
        Outbound::Text(text) => frame::encoded(OpCode::Text, text),
        Outbound::Binary(data) => frame::encoded(OpCode::Binary, data),
        Outbound::Frame(frame) => frame.clone(),
        _ => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Vec<Outbound> {
        vec![
            Outbound::Text(Bytes::from_static(
                br#"451-["a",{"_placeholder":true,"num":0}]"#,
            )),
            Outbound::Binary(Bytes::from_static(&[1, 2, 3])),
        ]
    }

    #[test]
    fn polling_records_and_their_websocket_frames() {
        let records = records(&group());
        assert_eq!(
            records,
            &b"451-[\"a\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID"[..]
        );
        let as_frames = to_websocket(&Outbound::Text(records));
        assert_eq!(as_frames, frames(&group()));
    }

    #[test]
    fn websocket_frames_are_consecutive_frames() {
        let mut expected = BytesMut::new();
        frame::encode(
            OpCode::Text,
            br#"451-["a",{"_placeholder":true,"num":0}]"#,
            &mut expected,
        );
        frame::encode(OpCode::Binary, &[1, 2, 3], &mut expected);
        assert_eq!(frames(&group()), expected.freeze());
        assert_eq!(
            to_websocket(&Outbound::Text(Bytes::from_static(b"42[\"x\"]"))),
            frame::encoded(OpCode::Text, b"42[\"x\"]")
        );
    }
}
