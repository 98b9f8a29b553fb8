//! The HTTP long-polling payload: packets in their text encoding joined by the record
//! separator `\x1e`, binary messages as `b<base64>`. The decoder checks the body's size and
//! UTF-8 once and slices it; the encoder batches queued packets up to `maxPayload` bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::Error;
use super::packet::{parse_utf8, Packet};

/// The record separator between the packets of a payload.
pub const SEPARATOR: u8 = 0x1e;

/// Decodes a polling request body into its packets.
///
/// A body longer than `max_payload` bytes is refused before anything is parsed; an empty body
/// or an empty record between two separators is an [`Error::EmptyPacket`], as for the
/// reference parser. Text packets share the body's buffer.
pub fn decode_payload(body: Bytes, max_payload: usize) -> Result<Vec<Packet>, Error> {
    if body.len() > max_payload {
        return Err(Error::PayloadTooLarge);
    }
    // One check for the whole body: 0x1e never occurs inside a multi-byte UTF-8 sequence, so
    // every record is UTF-8 too.
    if std::str::from_utf8(&body).is_err() {
        return Err(Error::InvalidUtf8);
    }
    body.split(|&b| b == SEPARATOR)
        .map(|record| parse_utf8(body.slice_ref(record)))
        .collect()
}

/// Encodes packets from the front of `packets` into one payload of at most `max_payload`
/// bytes and returns how many it took.
///
/// The first packet is always taken, even if it alone exceeds `max_payload`: a packet that
/// could never be sent would stall the session. It returns 0 only when `packets` is empty.
/// Message data must not contain `\x1e`: the format has no escaping (Socket.IO's JSON
/// escapes it as `\u001e`).
pub fn encode_payload<'a, I>(packets: I, max_payload: usize, out: &mut BytesMut) -> usize
where
    I: IntoIterator<Item = &'a Packet>,
{
    let mut taken = 0;
    let mut len = 0;
    for packet in packets {
        let separator = usize::from(taken > 0);
        let next = len + separator + packet.text_len();
        if taken > 0 && next > max_payload {
            break;
        }
        if separator == 1 {
            out.put_u8(SEPARATOR);
        }
        packet.encode_text(out);
        len = next;
        taken += 1;
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &'static [u8]) -> Result<Vec<Packet>, Error> {
        decode_payload(Bytes::from_static(body), 1_000_000)
    }

    fn encode_all(packets: &[Packet], max: usize) -> (usize, Vec<u8>) {
        let mut out = BytesMut::new();
        let n = encode_payload(packets, max, &mut out);
        (n, out.to_vec())
    }

    fn msg(s: &'static str) -> Packet {
        Packet::Message(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn protocol_document_vectors() {
        let first = [msg("hello"), Packet::Ping(Bytes::new()), msg("world")];
        assert_eq!(decode(b"4hello\x1e2\x1e4world").unwrap(), first);
        assert_eq!(
            encode_all(&first, 1000),
            (3, b"4hello\x1e2\x1e4world".to_vec())
        );

        let second = [
            msg("hello"),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        assert_eq!(decode(b"4hello\x1ebAQIDBA==").unwrap(), second);
        assert_eq!(
            encode_all(&second, 1000),
            (2, b"4hello\x1ebAQIDBA==".to_vec())
        );
    }

    #[test]
    fn sample_session_bodies() {
        assert_eq!(
            decode(b"42[\"hello\"]\x1e42[\"world\"]").unwrap(),
            [msg("2[\"hello\"]"), msg("2[\"world\"]")]
        );
        assert_eq!(decode(b"40").unwrap(), [msg("0")]);
    }

    #[test]
    fn text_packets_share_the_body() {
        let body = Bytes::from_static(b"4abc\x1e4def");
        let packets = decode_payload(body.clone(), 100).unwrap();
        let Packet::Message(data) = &packets[1] else {
            panic!("{packets:?}");
        };
        assert_eq!(data.as_ptr(), body[6..].as_ptr());
    }

    #[test]
    fn rejects_bad_bodies() {
        assert_eq!(decode(b""), Err(Error::EmptyPacket));
        assert_eq!(decode(b"4a\x1e\x1e4b"), Err(Error::EmptyPacket));
        assert_eq!(decode(b"4a\x1e"), Err(Error::EmptyPacket));
        assert_eq!(decode(b"abc"), Err(Error::UnknownPacketType));
        assert_eq!(decode(b"4a\x1e4\xc3"), Err(Error::InvalidUtf8));
        assert_eq!(decode(b"4a\x1eb@@"), Err(Error::InvalidBase64));
    }

    #[test]
    fn max_payload_is_inclusive() {
        let body = Bytes::from_static(b"4hello");
        assert_eq!(decode_payload(body.clone(), 6).unwrap(), [msg("hello")]);
        assert_eq!(decode_payload(body, 5), Err(Error::PayloadTooLarge));
    }

    #[test]
    fn batching_stops_at_max_payload() {
        let packets = [msg("aaaa"), msg("bbbb"), msg("cccc")];
        // "4aaaa" is 5 bytes, each further packet 6 with its separator.
        assert_eq!(encode_all(&packets, 11), (2, b"4aaaa\x1e4bbbb".to_vec()));
        assert_eq!(encode_all(&packets, 16), (2, b"4aaaa\x1e4bbbb".to_vec()));
        assert_eq!(encode_all(&packets, 17).0, 3);
        assert_eq!(encode_all(&packets, 1), (1, b"4aaaa".to_vec()));
        assert_eq!(encode_all(&[], 1), (0, Vec::new()));
    }

    #[test]
    fn property_decode_inverts_encode() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..500 {
            let mut packets = Vec::new();
            for _ in 0..1 + seed % 6 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = (seed % 20) as usize;
                // Text without the separator, binary with anything.
                let text: String = (0..len)
                    .map(|i| ['a', 'é', '€', '"', '\n'][(seed >> i) as usize % 5])
                    .collect();
                let bytes: Vec<u8> = (0..len).map(|i| (seed >> i) as u8).collect();
                packets.push(match seed % 4 {
                    0 => Packet::Message(Bytes::from(text)),
                    1 => Packet::Binary(Bytes::from(bytes)),
                    2 => Packet::Ping(Bytes::new()),
                    _ => Packet::Noop,
                });
            }
            let (n, body) = encode_all(&packets, usize::MAX);
            assert_eq!(n, packets.len());
            assert_eq!(
                decode_payload(Bytes::from(body), usize::MAX).unwrap(),
                packets
            );
        }
    }
}
