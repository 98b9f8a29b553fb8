//! Engine.IO v4 packets and their two encodings: over WebSocket each packet is one frame, text
//! packets as `<type><data>` and binary messages as the raw frame payload; in a polling payload
//! binary messages become `b<base64>`. Decoding slices the input without copying text data.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use super::error::Error;

/// The data of the upgrade probe ping and of its pong.
pub const PROBE: &[u8] = b"probe";

/// Standard base64 that accepts data with or without padding: the reference client pads, but
/// some clients do not, and padding carries no information.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One Engine.IO packet.
///
/// The data of `Open`, `Ping`, `Pong` and `Message` is UTF-8 text (the decoders check it).
/// `Close`, `Upgrade` and `Noop` carry no data: the decoders ignore any, as the reference
/// implementation does.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake data, a JSON object (see [`OpenData`](super::handshake::OpenData)).
    Open(Bytes),
    /// `1`: the transport can be closed.
    Close,
    /// `2`: a heartbeat request; the data is empty, or [`PROBE`] during an upgrade.
    Ping(Bytes),
    /// `3`: a heartbeat reply, echoing the ping's data.
    Pong(Bytes),
    /// `4`: a text message.
    Message(Bytes),
    /// A binary message: a binary WebSocket frame, or `b<base64>` in a polling payload.
    Binary(Bytes),
    /// `5`: completes an upgrade to WebSocket.
    Upgrade,
    /// `6`: answers a pending polling request during an upgrade.
    Noop,
}

impl Packet {
    /// The upgrade probe's ping, `2probe`.
    pub fn probe_ping() -> Self {
        Self::Ping(Bytes::from_static(PROBE))
    }

    /// The reply to the upgrade probe, `3probe`.
    pub fn probe_pong() -> Self {
        Self::Pong(Bytes::from_static(PROBE))
    }

    /// Whether this is a binary message (sent as a binary WebSocket frame).
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// The WebSocket encoding: the payload of one frame, a binary frame if
    /// [`is_binary`](Self::is_binary), else a text frame.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Binary(data) => out.extend_from_slice(data),
            other => other.encode_text(out),
        }
    }

    /// The text encoding, as in a polling payload: `<type><data>`, binary messages as
    /// `b<base64>` (standard alphabet, padded).
    pub fn encode_text(&self, out: &mut BytesMut) {
        out.reserve(self.text_len());
        match self {
            Self::Open(data) => put_typed(out, b'0', data),
            Self::Close => out.put_u8(b'1'),
            Self::Ping(data) => put_typed(out, b'2', data),
            Self::Pong(data) => put_typed(out, b'3', data),
            Self::Message(data) => put_typed(out, b'4', data),
            Self::Upgrade => out.put_u8(b'5'),
            Self::Noop => out.put_u8(b'6'),
            Self::Binary(data) => {
                out.put_u8(b'b');
                // Allocates once; polling with binary data is the slow path anyway, and
                // WebSocket clients get binary frames without base64.
                out.extend_from_slice(STANDARD.encode(data).as_bytes());
            }
        }
    }

    /// The length of [`encode_text`](Self::encode_text)'s output.
    pub fn text_len(&self) -> usize {
        match self {
            Self::Close | Self::Upgrade | Self::Noop => 1,
            Self::Open(data) | Self::Ping(data) | Self::Pong(data) | Self::Message(data) => {
                1 + data.len()
            }
            Self::Binary(data) => {
                1 + base64::encoded_len(data.len(), true).unwrap_or(usize::MAX - 1)
            }
        }
    }

    /// The bytes of data this packet holds.
    pub fn data_len(&self) -> usize {
        match self {
            Self::Close | Self::Upgrade | Self::Noop => 0,
            Self::Open(data)
            | Self::Ping(data)
            | Self::Pong(data)
            | Self::Message(data)
            | Self::Binary(data) => data.len(),
        }
    }
}

fn put_typed(out: &mut BytesMut, kind: u8, data: &[u8]) {
    out.put_u8(kind);
    out.extend_from_slice(data);
}

/// Decodes the payload of a WebSocket text frame (or one record of a polling payload).
///
/// A text packet starting with `b` is a base64 binary message: clients that cannot send binary
/// frames use that form over WebSocket too, and the reference server accepts it.
pub fn decode_text(frame: Bytes) -> Result<Packet, Error> {
    // The WebSocket layer already checked text frames; checking again keeps the packet's
    // UTF-8 guarantee independent of where the bytes came from, for one linear pass.
    if std::str::from_utf8(&frame).is_err() {
        return Err(Error::InvalidUtf8);
    }
    parse_utf8(frame)
}

/// Decodes the payload of a WebSocket binary frame: always a binary message.
pub fn decode_binary(frame: Bytes) -> Packet {
    Packet::Binary(frame)
}

/// Decodes a text packet already known to be UTF-8.
pub(crate) fn parse_utf8(frame: Bytes) -> Result<Packet, Error> {
    let Some(&kind) = frame.first() else {
        return Err(Error::EmptyPacket);
    };
    let data = || frame.slice(1..);
    Ok(match kind {
        b'0' => Packet::Open(data()),
        b'1' => Packet::Close,
        b'2' => Packet::Ping(data()),
        b'3' => Packet::Pong(data()),
        b'4' => Packet::Message(data()),
        b'5' => Packet::Upgrade,
        b'6' => Packet::Noop,
        b'b' => {
            let bytes = LENIENT_BASE64
                .decode(&frame[1..])
                .map_err(|_| Error::InvalidBase64)?;
            Packet::Binary(Bytes::from(bytes))
        }
        _ => return Err(Error::UnknownPacketType),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        packet.encode_text(&mut out);
        assert_eq!(out.len(), packet.text_len(), "{packet:?}");
        out.to_vec()
    }

    fn ws(packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        packet.encode(&mut out);
        out.to_vec()
    }

    fn decode(s: &'static [u8]) -> Result<Packet, Error> {
        decode_text(Bytes::from_static(s))
    }

    #[test]
    fn protocol_document_vectors() {
        // Each (encoding, packet) pair from the Engine.IO v4 document.
        let vectors: [(&[u8], Packet); 9] = [
            (b"4hello", Packet::Message(Bytes::from_static(b"hello"))),
            (b"2", Packet::Ping(Bytes::new())),
            (b"3", Packet::Pong(Bytes::new())),
            (b"2probe", Packet::probe_ping()),
            (b"3probe", Packet::probe_pong()),
            (b"5", Packet::Upgrade),
            (b"6", Packet::Noop),
            (b"1", Packet::Close),
            (
                b"bAQIDBA==",
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ),
        ];
        for (wire, packet) in vectors {
            assert_eq!(
                decode_text(Bytes::copy_from_slice(wire)),
                Ok(packet.clone())
            );
            assert_eq!(text(&packet), wire);
        }
    }

    #[test]
    fn open_packet_keeps_its_json() {
        let wire = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#;
        let packet = decode(wire).unwrap();
        assert_eq!(packet, Packet::Open(Bytes::from_static(&wire[1..])));
        assert_eq!(text(&packet), wire);
    }

    #[test]
    fn websocket_binary_is_sent_as_is() {
        let packet = decode_binary(Bytes::from_static(&[1, 2, 3, 4]));
        assert!(packet.is_binary());
        assert_eq!(ws(&packet), [1, 2, 3, 4]);
        assert_eq!(
            ws(&Packet::Message(Bytes::from_static(b"hello"))),
            b"4hello"
        );
        assert_eq!(decode_binary(Bytes::new()), Packet::Binary(Bytes::new()));
    }

    #[test]
    fn unicode_message_is_utf8_bytes() {
        let packet = decode("4€ ünï".as_bytes()).unwrap();
        assert_eq!(packet, Packet::Message(Bytes::from("€ ünï")));
    }

    #[test]
    fn base64_padding_is_optional_on_input() {
        assert_eq!(decode(b"bAQIDBA"), decode(b"bAQIDBA=="));
        assert_eq!(decode(b"b"), Ok(Packet::Binary(Bytes::new())));
    }

    #[test]
    fn data_on_dataless_packets_is_ignored() {
        assert_eq!(decode(b"1bye"), Ok(Packet::Close));
        assert_eq!(decode(b"5x"), Ok(Packet::Upgrade));
        assert_eq!(decode(b"6x"), Ok(Packet::Noop));
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(decode(b""), Err(Error::EmptyPacket));
        assert_eq!(decode(b"7"), Err(Error::UnknownPacketType));
        assert_eq!(decode(b"abc"), Err(Error::UnknownPacketType));
        assert_eq!(decode(b"b!!!"), Err(Error::InvalidBase64));
        assert_eq!(decode(b"bAQIDBA==="), Err(Error::InvalidBase64));
        assert_eq!(decode(b"4\xff"), Err(Error::InvalidUtf8));
    }

    #[test]
    fn property_decode_inverts_encode() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            let utf8 = Bytes::from(String::from_utf8_lossy(&bytes).into_owned());
            let packet = match seed % 8 {
                0 => Packet::Open(utf8),
                1 => Packet::Close,
                2 => Packet::Ping(utf8),
                3 => Packet::Pong(utf8),
                4 => Packet::Message(utf8),
                5 => Packet::Binary(Bytes::from(bytes)),
                6 => Packet::Upgrade,
                _ => Packet::Noop,
            };
            let wire = Bytes::from(text(&packet));
            assert_eq!(decode_text(wire), Ok(packet.clone()));
            let frame = Bytes::from(ws(&packet));
            let decoded = if packet.is_binary() {
                decode_binary(frame)
            } else {
                decode_text(frame).unwrap()
            };
            assert_eq!(decoded, packet);
        }
    }
}
