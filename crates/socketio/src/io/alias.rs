//! Namespace aliases on the wire. A socket connected through an alias is in its namespace's
//! rooms, so what reaches it through the room index (publishes, other sockets' broadcasts) is
//! encoded once for everyone with another name of the namespace; its connection renames those
//! packets to the name the client connected with, which is the only one it reads.

use bytes::{BufMut, Bytes, BytesMut};

use crate::socketio::MAIN_NAMESPACE;

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
