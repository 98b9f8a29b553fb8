//! What the ceiling reads and writes besides sending frames: the HTTP request that starts a
//! connection (a WebSocket upgrade or a publish), the handshake reply with its welcome, the
//! native `event` frame built once per publish, and the masked frames a subscriber sends
//! (of which only a close matters).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::Value;
use sha1::{Digest, Sha1};

/// Bytes shared by every connection they are queued for.
pub(crate) type Frame = Arc<[u8]>;

/// The most bytes of a request head and body taken.
const MAX_REQUEST: usize = 64 * 1024;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The answer to a publish.
pub(crate) const PUBLISHED: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
/// The answer to a publish that could not be queued.
pub(crate) const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
/// The answer to anything else.
pub(crate) const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
/// A close frame with code 1000, the reply to a subscriber's close.
pub(crate) const CLOSE: &[u8] = &[0x88, 0x02, 0x03, 0xe8];

/// One complete request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// A WebSocket upgrade: the reply, with the welcome frame after it.
    Upgrade(Vec<u8>),
    /// A publish: the frame every subscriber gets.
    Publish(Frame),
    /// Anything else, or a publish whose body is not Roomcast's shape.
    Other,
}

/// The malformed or oversized request that ends a connection.
#[derive(Debug)]
pub(crate) struct BadRequest;

/// Parses the request at the start of `buf`: `Ok(None)` until it is complete, then the
/// request and how many bytes it took.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => return Ok(None),
        _ => return Err(BadRequest),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let length = match header("content-length") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or(BadRequest)?,
        None => 0,
    };
    if head + length > MAX_REQUEST {
        return Err(BadRequest);
    }
    if buf.len() < head + length {
        return Ok(None);
    }
    let path = req.path.unwrap_or("");
    let request = match (req.method, header("sec-websocket-key")) {
        (Some("GET"), Some(key)) => Request::Upgrade(upgrade(key, &room_of(path))),
        (Some("POST"), _) if path.split('?').next() == Some("/api/publish") => {
            publish_frame(&buf[head..head + length]).map_or(Request::Other, Request::Publish)
        }
        _ => Request::Other,
    };
    Ok(Some((request, head + length)))
}

/// The room the token in the query names, unchecked; `bench` without one.
fn room_of(path: &str) -> String {
    let claim = || {
        let query = path.split_once('?')?.1;
        let token = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))?;
        let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
        let claims: Value = serde_json::from_slice(&payload).ok()?;
        claims["room"].as_str().map(str::to_string)
    };
    claim().unwrap_or_else(|| "bench".into())
}

/// The 101 reply and the native welcome, in one buffer.
fn upgrade(key: &[u8], room: &str) -> Vec<u8> {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    let accept = STANDARD.encode(sha.finalize());
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {accept}\r\n\r\n"
    )
    .into_bytes();
    let welcome = format!(r#"{{"type":"welcome","rooms":[{}]}}"#, Value::from(room));
    out.extend_from_slice(&text_frame(welcome.as_bytes()));
    out
}

/// The native `event` frame for a publish body `{"rooms":[..],"event":..,"data":..}`: the
/// data's text is copied as it came.
fn publish_frame(body: &[u8]) -> Option<Frame> {
    let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body).ok()?;
    let rooms: Vec<String> = serde_json::from_str(fields.get("rooms")?.get()).ok()?;
    let room = Value::from(rooms.first()?.as_str());
    let event = fields.get("event")?.get();
    let data = fields.get("data").map_or("null", |d| d.get());
    let payload = format!(r#"{{"type":"event","room":{room},"event":{event},"data":{data}}}"#);
    Some(text_frame(payload.as_bytes()).into())
}

/// An unmasked text frame.
pub(crate) fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Skips the complete frames at the start of `buf` (a subscriber's, masked): how many bytes
/// they took and whether one was a close.
pub(crate) fn client_frames(buf: &[u8]) -> (usize, bool) {
    let mut at = 0;
    let mut close = false;
    while let Some(&[b0, b1]) = buf.get(at..at + 2) {
        let (len, ext) = match b1 & 0x7f {
            126 => match buf.get(at + 2..at + 4) {
                Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 2),
                _ => break,
            },
            127 => match buf
                .get(at + 2..at + 10)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
            {
                Some(b) => (u64::from_be_bytes(b), 8),
                None => break,
            },
            n => (u64::from(n), 0),
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        let Ok(len) = usize::try_from(len) else { break };
        let total = 2 + ext + mask + len;
        if buf.len() - at < total {
            break;
        }
        close |= b0 & 0x0f == 0x8;
        at += total;
    }
    (at, close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_handshake_example() {
        let req = b"GET /ws?token=x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let Ok(Some((Request::Upgrade(reply), n))) = parse(req) else {
            panic!("not an upgrade")
        };
        assert_eq!(n, req.len());
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.ends_with(r#"{"type":"welcome","rooms":["bench"]}"#));
    }

    #[test]
    fn the_welcome_names_the_tokens_room() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"1","room":"r7"}"#);
        assert_eq!(room_of(&format!("/ws?token=h.{payload}.s")), "r7");
        assert_eq!(room_of("/ws"), "bench");
    }

    #[test]
    fn a_publish_becomes_one_native_event_frame() {
        let body = br#"{"tenant":"t","rooms":["bench"],"event":"tick","data":{"seq":1,"t":2}}"#;
        let req = [
            format!(
                "POST /api/publish HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            body,
        ]
        .concat();
        assert!(matches!(parse(&req[..req.len() - 1]), Ok(None)));
        let Ok(Some((Request::Publish(frame), n))) = parse(&req) else {
            panic!("not a publish")
        };
        assert_eq!(n, req.len());
        let payload = br#"{"type":"event","room":"bench","event":"tick","data":{"seq":1,"t":2}}"#;
        assert_eq!(frame[..2], [0x81, payload.len() as u8]);
        assert_eq!(&frame[2..], payload);
    }

    #[test]
    fn client_frames_are_skipped_and_a_close_seen() {
        let text = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];
        let buf = [&text[..], &close[..], &[0x81]].concat();
        assert_eq!(client_frames(&buf), (16, true));
        assert_eq!(client_frames(&text[..5]), (0, false));
    }
}
