//! Namespace aliases on the wire. A socket connected through an alias is in its namespace's
//! rooms, so what reaches it through the room index (publishes, other sockets' broadcasts) is
//! encoded once for everyone with another name of the namespace; its connection renames those
//! packets to the name the client connected with, which is the only one it reads.

use bytes::{BufMut, Bytes, BytesMut};
use roomcast_engine::ws::frame::{self, OpCode};

use crate::socketio::MAIN_NAMESPACE;

/// The text of the first frame of a run of server WebSocket frames (unmasked, as a group of a
/// binary event is queued for a WebSocket session), and where that frame ends; `None` when the
/// first frame is not a complete text frame.
pub(crate) fn first_text_frame(frames: &[u8]) -> Option<(&[u8], usize)> {
    let (&b0, rest) = frames.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    if b0 != 0x80 | OpCode::Text.as_u8() || b1 & 0x80 != 0 {
        return None;
    }
    let (len, header): (usize, usize) = match b1 {
        126 => (
            u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)).ok()?,
            10,
        ),
        len => (usize::from(len), 2),
    };
    let end = header.checked_add(len)?;
    Some((frames.get(header..end)?, end))
}

/// `frames` with its first frame's text `text` (from [`first_text_frame`], ending at `end`)
/// renamed as [`rename`] does, the following frames unchanged.
pub(crate) fn rename_first_frame(
    frames: &[u8],
    text: &[u8],
    end: usize,
    start: usize,
    ns_end: usize,
    to: &str,
) -> Bytes {
    let renamed = rename(text, start, ns_end, to);
    let mut out = BytesMut::with_capacity(frames.len() + to.len() + 10);
    frame::encode(OpCode::Text, &renamed, &mut out);
    out.extend_from_slice(&frames[end..]);
    out.freeze()
}

/// Where the namespace of an encoded event (`4` + a Socket.IO `EVENT` or `BINARY_EVENT`, text
/// encoding) is: the byte range of `/ns,` (empty for the main namespace, which is written
/// without one) and the name. `None` for anything else: only events come through the room
/// index, and a socket writes its other packets (acks, `CONNECT` answers) under its own name.
pub(crate) fn namespace(text: &[u8]) -> Option<(usize, usize, &str)> {
    let (&engine, rest) = text.split_first()?;
    let (&kind, _) = rest.split_first()?;
    if engine != b'4' || !(kind == b'2' || kind == b'5') {
        return None;
    }
    let mut at = 2;
    if kind == b'5' {
        while text.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if text.get(at) != Some(&b'-') {
            return None;
        }
        at += 1;
    }
    if text.get(at) != Some(&b'/') {
        return Some((at, at, MAIN_NAMESPACE));
    }
    let len = text[at..].iter().position(|&b| b == b',')?;
    let name = std::str::from_utf8(&text[at..at + len]).ok()?;
    Some((at, at + len + 1, name))
}

/// `text` with the namespace range `start..end` (from [`namespace`]) replaced by `to`.
pub(crate) fn rename(text: &[u8], start: usize, end: usize, to: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + to.len() + 1);
    out.extend_from_slice(&text[..start]);
    if to != MAIN_NAMESPACE {
        out.extend_from_slice(to.as_bytes());
        out.put_u8(b',');
    }
    out.extend_from_slice(&text[end..]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(text: &str, to: &str) -> String {
        let (start, end, _) = namespace(text.as_bytes()).unwrap();
        String::from_utf8(rename(text.as_bytes(), start, end, to).to_vec()).unwrap()
    }

    #[test]
    fn finds_the_namespace_of_each_packet_type() {
        let ns = |t: &str| namespace(t.as_bytes()).map(|(_, _, n)| n.to_owned());
        assert_eq!(ns("42[\"a\"]").as_deref(), Some("/"));
        assert_eq!(ns("42/admin,[\"a\"]").as_deref(), Some("/admin"));
        assert_eq!(ns("42/admin,12[\"a\"]").as_deref(), Some("/admin"));
        assert_eq!(
            ns("451-/ws/p,[\"a\",{\"_placeholder\":true,\"num\":0}]").as_deref(),
            Some("/ws/p")
        );
        assert_eq!(ns("451-[\"a\"]").as_deref(), Some("/"));
        assert_eq!(ns("41/x,"), None);
        assert_eq!(ns("40/x,{\"sid\":\"a\"}"), None);
        assert_eq!(ns("44/x,{\"message\":\"no\"}"), None);
        assert_eq!(ns("43/x,1[]"), None);
        assert_eq!(ns("2"), None);
        assert_eq!(ns("6"), None);
        assert_eq!(ns("47[]"), None);
        assert_eq!(ns("45[]"), None);
        assert_eq!(ns("42/unterminated"), None);
    }

    #[test]
    fn renames_the_header_frame_of_a_binary_group() {
        let mut group = BytesMut::new();
        frame::encode(
            OpCode::Text,
            b"451-/a,[\"f\",{\"_placeholder\":true,\"num\":0}]",
            &mut group,
        );
        frame::encode(OpCode::Binary, &[0, 255], &mut group);
        let (text, end) = first_text_frame(&group).unwrap();
        let (start, ns_end, name) = namespace(text).unwrap();
        assert_eq!(name, "/a");
        let renamed = rename_first_frame(&group, text, end, start, ns_end, "/b");
        let mut expected = BytesMut::new();
        frame::encode(
            OpCode::Text,
            b"451-/b,[\"f\",{\"_placeholder\":true,\"num\":0}]",
            &mut expected,
        );
        frame::encode(OpCode::Binary, &[0, 255], &mut expected);
        assert_eq!(renamed, expected.freeze());
        // Long headers (16-bit length) and other first frames.
        let long = format!("42/a,[\"{}\"]", "x".repeat(300));
        let framed = frame::encoded(OpCode::Text, long.as_bytes());
        assert_eq!(
            first_text_frame(&framed).map(|(t, e)| (t.len(), e)),
            Some((long.len(), framed.len()))
        );
        assert_eq!(first_text_frame(&frame::encoded(OpCode::Pong, b"")), None);
        assert_eq!(first_text_frame(&framed[..10]), None);
    }

    #[test]
    fn renames_between_main_and_other_namespaces() {
        assert_eq!(
            renamed("42/provisioning,[\"s\",1]", "/ws/provisioning"),
            "42/ws/provisioning,[\"s\",1]"
        );
        assert_eq!(renamed("42[\"s\",1]", "/ws"), "42/ws,[\"s\",1]");
        assert_eq!(renamed("42/ws,[\"s\",1]", "/"), "42[\"s\",1]");
        assert_eq!(renamed("451-/a,[\"s\"]", "/b"), "451-/b,[\"s\"]");
    }
}
