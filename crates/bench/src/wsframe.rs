//! The client side of WebSocket (RFC 6455) as the subscribers need it, without sockets: the
//! upgrade request and the check of its answer, frame headers read in place from a buffer of
//! any number of frames, and masked frames to send. Nothing is copied or validated beyond
//! the header: the payload of a data frame is handed on as the bytes it is.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest frame taken: far above any event of the benchmark.
pub(crate) const MAX_FRAME: usize = 1 << 24;

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xa;

/// A frame the server sent that a client must refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("a masked frame from the server")]
    Masked,
    #[error("a frame of {0} bytes")]
    TooLarge(u64),
}

/// The header of one complete frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    /// Where the payload starts.
    pub(crate) start: usize,
    /// Where the payload, and the frame, end.
    pub(crate) end: usize,
}

/// The frame at the start of `buf`: `Ok(None)` until all of it is there.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, start) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let end = start + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        start,
        end,
    }))
}

/// A final, masked frame of `opcode` carrying `payload`.
pub(crate) fn encode(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The close code and reason of a close frame's payload, as text for reports.
pub(crate) fn describe_close(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => format!(
            "close code {} {:?}",
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(reason)
        ),
        _ => "a close frame without a code".into(),
    }
}

/// The upgrade request for `path` on `host`, with the 16-byte `nonce` as its key.
pub(crate) fn upgrade_request(host: &str, path: &str, nonce: [u8; 16]) -> (String, String) {
    let key = STANDARD.encode(nonce);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    (request, key)
}

/// The end of the response head in `buf` (after its blank line), once it is there.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Why an upgrade was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Another status than 101, with what followed the head.
    Status(u16, String),
    /// A 101 whose `Sec-WebSocket-Accept` does not answer the key, or a head that is not HTTP.
    Invalid(String),
}

/// Checks the response head `head` (up to its blank line) to an upgrade sent with `key`;
/// `rest` is what came after the head, quoted when the status is not 101.
pub(crate) fn check_upgrade(head: &[u8], rest: &[u8], key: &str) -> Result<(), Refusal> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Refusal::Invalid(format!("not an HTTP response: {status_line}")))?;
    if status != 101 {
        return Err(Refusal::Status(
            status,
            String::from_utf8_lossy(rest).into_owned(),
        ));
    }
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    let want = STANDARD.encode(sha.finalize());
    let accepted = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == want
        })
    });
    if accepted {
        Ok(())
    } else {
        Err(Refusal::Invalid(
            "the 101 answer lacks the right Sec-WebSocket-Accept".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_handshake_example() {
        // RFC 6455, section 1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" is the nonce below.
        let (request, key) = upgrade_request("a:1", "/ws?token=t", *b"the sample nonce");
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(request.starts_with("GET /ws?token=t HTTP/1.1\r\nHost: a:1\r\n"));
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(check_upgrade(head, b"", &key), Ok(()));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(matches!(
            check_upgrade(wrong, b"", &key),
            Err(Refusal::Invalid(_))
        ));
        let refused = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(
            check_upgrade(refused, b"no", &key),
            Err(Refusal::Status(401, "no".into()))
        );
    }

    #[test]
    fn the_rfc_frame_examples() {
        // RFC 6455, section 5.7: an unmasked "Hello", and a masked one.
        let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let frame = decode(&hello).unwrap().unwrap();
        assert_eq!((frame.fin, frame.opcode), (true, OP_TEXT));
        assert_eq!(&hello[frame.start..frame.end], b"Hello");
        assert_eq!(decode(&hello[..6]), Ok(None));
        assert_eq!(
            encode(OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(
            decode(&[0x81, 0x85, 0, 0, 0, 0, 0]),
            Err(FrameError::Masked)
        );
        // A fragmented text message's first frame.
        let first = decode(&[0x01, 0x03, b'H', b'e', b'l']).unwrap().unwrap();
        assert!(!first.fin);
    }

    #[test]
    fn extended_lengths() {
        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(0u8, 256));
        let frame = decode(&long).unwrap().unwrap();
        assert_eq!((frame.start, frame.end), (4, 260));
        assert_eq!(decode(&long[..259]), Ok(None));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(decode(&huge), Err(FrameError::TooLarge(1 << 40)));
        let masked = encode(OP_BINARY, &[0u8; 300], [1, 2, 3, 4]);
        assert_eq!(masked[..4], [0x82, 0x80 | 126, 0x01, 0x2c]);
        assert_eq!(masked.len(), 4 + 4 + 300);
    }

    #[test]
    fn close_payloads_describe_themselves() {
        assert_eq!(
            describe_close(&[0x03, 0xe8, b'b', b'y', b'e']),
            "close code 1000 \"bye\""
        );
        assert_eq!(describe_close(&[]), "a close frame without a code");
    }
}
