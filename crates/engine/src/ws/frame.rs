//! The RFC 6455 frame codec (section 5): decoding masked client frames out of a read buffer
//! and encoding unmasked server frames. No state beyond one frame: fragmentation, UTF-8 and
//! the close handshake belong to [`super::conn`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::ProtocolError;

/// Largest payload of a control frame (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Largest close reason: a control payload minus the two-byte status code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASK: u8 = 0x80;

/// A frame opcode (RFC 6455 section 5.2). Reserved opcodes are rejected by [`decode`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a UTF-8 text message (or its first fragment).
    Text,
    /// 0x2: a binary message (or its first fragment).
    Binary,
    /// 0x8: starts or answers the close handshake.
    Close,
    /// 0x9: heartbeat request.
    Ping,
    /// 0xA: heartbeat answer (or unsolicited heartbeat).
    Pong,
}

impl OpCode {
    /// Close, Ping and Pong: at most 125 bytes, never fragmented, allowed between fragments.
    pub fn is_control(self) -> bool {
        match self {
            Self::Close | Self::Ping | Self::Pong => true,
            Self::Continuation | Self::Text | Self::Binary => false,
        }
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Parses a 4-bit wire value; `None` for reserved opcodes.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }
}

/// One decoded frame, payload already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Last fragment of its message.
    pub fin: bool,
    /// What the payload is.
    pub opcode: OpCode,
    /// The unmasked payload (shares the read buffer's allocation).
    pub payload: Bytes,
}

/// Size limits enforced while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest payload of a single frame, checked as soon as its header is complete, before
    /// the payload is buffered. Default: 64 KiB.
    pub max_frame: usize,
    /// Largest message, all fragments together. Default: 64 KiB.
    pub max_message: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_frame: 64 * 1024,
            max_message: 64 * 1024,
        }
    }
}

/// Decodes one client frame from the front of `buf` and unmasks its payload.
///
/// `Ok(None)` means more bytes are needed; `buf` is then left as it was. Rejected:
/// unmasked frames, RSV bits (no extension is ever negotiated), reserved opcodes, control
/// frames that are fragmented or longer than 125 bytes, 64-bit lengths with the top bit set,
/// and payloads over `limits.max_frame` (as soon as the header is complete). Non-minimal
/// length encodings are accepted, as RFC 6455 does not require rejecting them.
pub fn decode(buf: &mut BytesMut, limits: &FrameLimits) -> Result<Option<Frame>, ProtocolError> {
    let Some(&[b0, b1]) = buf.get(..2) else {
        return Ok(None);
    };
    if b0 & RSV != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode)?;
    let fin = b0 & FIN != 0;
    if b1 & MASK == 0 {
        return Err(ProtocolError::UnmaskedFrame);
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlTooLong);
        }
    }
    let (len, ext) = match len7 {
        126 => {
            let Some(&[a, b]) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([a, b])), 2)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(ProtocolError::InvalidLength);
            }
            (len, 8)
        }
        n => (u64::from(n), 0),
    };
    if len > u64::try_from(limits.max_frame).unwrap_or(u64::MAX) {
        return Err(ProtocolError::FrameTooLarge);
    }
    let len = usize::try_from(len).map_err(|_| ProtocolError::FrameTooLarge)?;
    let header: usize = 2 + ext + 4;
    let total = header
        .checked_add(len)
        .ok_or(ProtocolError::FrameTooLarge)?;
    if buf.len() < total {
        // No `reserve(total)` here: a 14-byte header must not make an idle peer cost us
        // `max_frame` bytes. The buffer grows as the payload actually arrives.
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[header - 4..header]);
    let mut payload = buf.split_to(total);
    payload.advance(header);
    apply_mask(&mut payload, mask);
    Ok(Some(Frame {
        fin,
        opcode,
        payload: payload.freeze(),
    }))
}

/// XORs `data` with the repeating 4-byte `mask` (RFC 6455 section 5.3), eight bytes at a time.
pub(crate) fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let [m0, m1, m2, m3] = mask;
    let wide = u64::from_ne_bytes([m0, m1, m2, m3, m0, m1, m2, m3]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Chunks are multiples of 8 bytes, so the remainder starts at mask index 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Header size of an unmasked server frame carrying `payload_len` bytes: 2, 4 or 10.
pub fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Writes the first byte and the length field, with `mask_bit` in the second byte.
fn put_header(dst: &mut BytesMut, first: u8, mask_bit: u8, len: usize) {
    match len {
        0..=125 => {
            // In range, so the cast is lossless.
            dst.put_slice(&[first, mask_bit | len as u8]);
        }
        126..=0xFFFF => {
            dst.put_slice(&[first, mask_bit | 126]);
            dst.put_u16(len as u16);
        }
        _ => {
            dst.put_slice(&[first, mask_bit | 127]);
            dst.put_u64(len as u64);
        }
    }
}

/// The header of an unmasked server frame with FIN set, for a payload written separately
/// (vectored writes): the bytes and how many of them are used.
pub fn server_header(opcode: OpCode, payload_len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = FIN | opcode.as_u8();
    let used = match payload_len {
        // In range, so the casts are lossless.
        0..=125 => {
            header[1] = payload_len as u8;
            2
        }
        126..=0xFFFF => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    };
    (header, used)
}

/// Appends an unmasked server frame with FIN set to `dst`.
pub fn encode(opcode: OpCode, payload: &[u8], dst: &mut BytesMut) {
    dst.reserve(header_len(payload.len()) + payload.len());
    put_header(dst, FIN | opcode.as_u8(), 0, payload.len());
    dst.put_slice(payload);
}

/// An unmasked server frame with FIN set, in an allocation of exactly its size: encode once,
/// hand the same `Bytes` to every recipient.
pub fn encoded(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut dst = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    encode(opcode, payload, &mut dst);
    dst.freeze()
}

/// A close frame with `code` and `reason`, the reason cut to 123 bytes at a char boundary.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encoded(OpCode::Close, &payload[..2 + end])
}

/// Appends a masked frame, as a client sends it (tests, fuzz seeds, benchmarks).
pub fn encode_masked(opcode: OpCode, fin: bool, payload: &[u8], mask: [u8; 4], dst: &mut BytesMut) {
    dst.reserve(header_len(payload.len()) + 4 + payload.len());
    let first = if fin { FIN } else { 0 } | opcode.as_u8();
    put_header(dst, first, MASK, payload.len());
    dst.put_slice(&mask);
    let start = dst.len();
    dst.put_slice(payload);
    apply_mask(&mut dst[start..], mask);
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn limits() -> FrameLimits {
        FrameLimits::default()
    }

    fn decode_all(bytes: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        decode(&mut BytesMut::from(bytes), &limits())
    }

    #[test]
    fn server_header_matches_encode() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload = vec![7u8; len];
            let whole = encoded(OpCode::Binary, &payload);
            let (header, used) = server_header(OpCode::Binary, len);
            assert_eq!(used, header_len(len));
            assert_eq!(&whole[..used], &header[..used], "len {len}");
        }
    }

    #[test]
    fn rfc_single_frame_unmasked_hello() {
        assert_eq!(
            &encoded(OpCode::Text, b"Hello")[..],
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
    }

    #[test]
    fn rfc_single_frame_masked_hello() {
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut built = BytesMut::new();
        encode_masked(OpCode::Text, true, b"Hello", RFC_MASK, &mut built);
        assert_eq!(&built[..], &wire);

        let mut buf = BytesMut::from(&wire[..]);
        let frame = decode(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                fin: true,
                opcode: OpCode::Text,
                payload: Bytes::from_static(b"Hello"),
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn rfc_fragmented_hello() {
        // RFC 5.7 gives the unmasked fragments 0x01 0x03 "Hel" and 0x80 0x02 "lo"; a client
        // sends the same headers with the MASK bit.
        let mut buf = BytesMut::new();
        encode_masked(OpCode::Text, false, b"Hel", RFC_MASK, &mut buf);
        encode_masked(OpCode::Continuation, true, b"lo", RFC_MASK, &mut buf);
        assert_eq!(&buf[..2], &[0x01, 0x83]);
        assert_eq!(&buf[9..11], &[0x80, 0x82]);

        let first = decode(&mut buf, &limits()).unwrap().unwrap();
        assert!(!first.fin);
        assert_eq!(first.opcode, OpCode::Text);
        assert_eq!(&first.payload[..], b"Hel");
        let second = decode(&mut buf, &limits()).unwrap().unwrap();
        assert!(second.fin);
        assert_eq!(second.opcode, OpCode::Continuation);
        assert_eq!(&second.payload[..], b"lo");
        assert!(buf.is_empty());
    }

    #[test]
    fn rfc_ping_and_masked_pong() {
        assert_eq!(
            &encoded(OpCode::Ping, b"Hello")[..],
            &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let frame = decode_all(&pong).unwrap().unwrap();
        assert_eq!(frame.opcode, OpCode::Pong);
        assert_eq!(&frame.payload[..], b"Hello");
    }

    #[test]
    fn rfc_256_byte_binary() {
        let payload = vec![0xAB; 256];
        let frame = encoded(OpCode::Binary, &payload);
        assert_eq!(&frame[..4], &[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(frame.len(), 4 + 256);
        assert_eq!(header_len(256), 4);

        let mut buf = BytesMut::new();
        encode_masked(OpCode::Binary, true, &payload, RFC_MASK, &mut buf);
        assert_eq!(&buf[..8], &[0x82, 0xFE, 0x01, 0x00, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            &decode(&mut buf, &limits()).unwrap().unwrap().payload[..],
            &payload[..]
        );
    }

    #[test]
    fn rfc_64k_binary() {
        let payload = vec![0x5A; 65536];
        let frame = encoded(OpCode::Binary, &payload);
        assert_eq!(
            &frame[..10],
            &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        assert_eq!(frame.len(), 10 + 65536);
        assert_eq!(header_len(65536), 10);

        let mut buf = BytesMut::new();
        encode_masked(OpCode::Binary, true, &payload, RFC_MASK, &mut buf);
        assert_eq!(&buf[..2], &[0x82, 0xFF]);
        assert_eq!(
            &decode(&mut buf, &limits()).unwrap().unwrap().payload[..],
            &payload[..]
        );
    }

    #[test]
    fn header_len_boundaries() {
        assert_eq!(header_len(0), 2);
        assert_eq!(header_len(125), 2);
        assert_eq!(header_len(126), 4);
        assert_eq!(header_len(65535), 4);
        assert_eq!(header_len(65536), 10);
    }

    #[test]
    fn encoded_allocates_exactly() {
        for len in [0, 125, 126, 65535, 65536] {
            let frame = encoded(OpCode::Binary, &vec![0; len]);
            assert_eq!(frame.len(), header_len(len) + len);
        }
    }

    #[test]
    fn partial_input_needs_more_and_leaves_buffer() {
        let mut full = BytesMut::new();
        encode_masked(OpCode::Binary, true, &[7; 300], RFC_MASK, &mut full);
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            let capacity = buf.capacity();
            assert_eq!(decode(&mut buf, &limits()), Ok(None), "cut at {cut}");
            assert_eq!(&buf[..], &full[..cut]);
            // Nothing reserved for the announced payload.
            assert_eq!(buf.capacity(), capacity);
        }
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let mut buf = BytesMut::new();
        encode_masked(OpCode::Text, true, b"a", RFC_MASK, &mut buf);
        encode_masked(OpCode::Binary, true, b"bc", [1, 2, 3, 4], &mut buf);
        assert_eq!(
            &decode(&mut buf, &limits()).unwrap().unwrap().payload[..],
            b"a"
        );
        assert_eq!(
            &decode(&mut buf, &limits()).unwrap().unwrap().payload[..],
            b"bc"
        );
        assert_eq!(decode(&mut buf, &limits()), Ok(None));
    }

    #[test]
    fn rejects_unmasked() {
        assert_eq!(
            decode_all(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
            Err(ProtocolError::UnmaskedFrame)
        );
    }

    #[test]
    fn rejects_reserved_bits() {
        for rsv in [0x40, 0x20, 0x10] {
            assert_eq!(
                decode_all(&[0x81 | rsv, 0x80, 0, 0, 0, 0]),
                Err(ProtocolError::ReservedBits)
            );
        }
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                decode_all(&[0x80 | op, 0x80, 0, 0, 0, 0]),
                Err(ProtocolError::ReservedOpcode)
            );
        }
    }

    #[test]
    fn rejects_long_control_frames_from_the_header() {
        // 126 announced with the 16-bit form: rejected before the length bytes even arrive.
        assert_eq!(
            decode_all(&[0x89, 0xFE]),
            Err(ProtocolError::ControlTooLong)
        );
        let mut buf = BytesMut::new();
        encode_masked(OpCode::Ping, true, &[0; 125], RFC_MASK, &mut buf);
        assert_eq!(
            decode(&mut buf, &limits()).unwrap().unwrap().payload.len(),
            125
        );
    }

    #[test]
    fn rejects_fragmented_control() {
        assert_eq!(
            decode_all(&[0x09, 0x80, 0, 0, 0, 0]),
            Err(ProtocolError::FragmentedControl)
        );
        assert_eq!(
            decode_all(&[0x08, 0x80]),
            Err(ProtocolError::FragmentedControl)
        );
    }

    #[test]
    fn rejects_64_bit_length_with_top_bit() {
        assert_eq!(
            decode_all(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::InvalidLength)
        );
    }

    #[test]
    fn rejects_oversized_frame_before_buffering() {
        let limits = FrameLimits {
            max_frame: 1000,
            max_message: 1000,
        };
        // Header only: 1001 bytes announced, nothing of the payload yet.
        let mut buf = BytesMut::from(&[0x82, 0xFE, 0x03, 0xE9][..]);
        assert_eq!(decode(&mut buf, &limits), Err(ProtocolError::FrameTooLarge));
        let mut buf = BytesMut::from(&[0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0][..]);
        assert_eq!(decode(&mut buf, &limits), Err(ProtocolError::FrameTooLarge));
        // Exactly at the limit is fine.
        let mut buf = BytesMut::new();
        encode_masked(OpCode::Binary, true, &[1; 1000], RFC_MASK, &mut buf);
        assert!(decode(&mut buf, &limits).unwrap().is_some());
    }

    #[test]
    fn accepts_non_minimal_lengths() {
        // "Hi" with a 16-bit and a 64-bit length field.
        let mut sixteen = BytesMut::from(&[0x81, 0xFE, 0x00, 0x02, 0, 0, 0, 0, b'H', b'i'][..]);
        assert_eq!(
            &decode(&mut sixteen, &limits()).unwrap().unwrap().payload[..],
            b"Hi"
        );
        let mut sixty_four =
            BytesMut::from(&[0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, b'H', b'i'][..]);
        assert_eq!(
            &decode(&mut sixty_four, &limits()).unwrap().unwrap().payload[..],
            b"Hi"
        );
    }

    #[test]
    fn close_frame_layout_and_truncation() {
        assert_eq!(
            &close_frame(1000, "bye")[..],
            &[0x88, 0x05, 0x03, 0xE8, b'b', b'y', b'e']
        );
        assert_eq!(&close_frame(1001, "")[..], &[0x88, 0x02, 0x03, 0xE9]);
        let long = "x".repeat(200);
        let frame = close_frame(1000, &long);
        assert_eq!(frame.len(), 2 + 125);
        // 'é' is two bytes: 61 of them are 122 bytes, the 62nd would end at 124 > 123.
        let accents = "é".repeat(70);
        let frame = close_frame(1000, &accents);
        assert_eq!(frame[1], 2 + 122);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn opcode_wire_values_round_trip() {
        for v in 0..16u8 {
            if let Some(op) = OpCode::from_u8(v) {
                assert_eq!(op.as_u8(), v);
                assert_eq!(op.is_control(), v >= 8);
            }
        }
    }

    #[test]
    fn masked_round_trip_many_lengths_and_masks() {
        // A tiny LCG (Knuth's MMIX constants) keeps the test deterministic without `rand`.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        let lengths = [0, 1, 2, 3, 7, 8, 9, 125, 126, 127, 1000, 65535, 65536];
        let limits = FrameLimits {
            max_frame: 1 << 20,
            max_message: 1 << 20,
        };
        for &len in &lengths {
            for _ in 0..4 {
                let mask = next().to_be_bytes();
                let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let opcode = if next() % 2 == 0 {
                    OpCode::Binary
                } else {
                    OpCode::Continuation
                };
                let fin = next() % 2 == 0;
                let mut buf = BytesMut::new();
                encode_masked(opcode, fin, &payload, mask, &mut buf);
                assert_eq!(buf.len(), header_len(len) + 4 + len);
                let frame = decode(&mut buf, &limits).unwrap().unwrap();
                assert_eq!(frame.fin, fin);
                assert_eq!(frame.opcode, opcode);
                assert_eq!(&frame.payload[..], &payload[..], "len {len}");
                assert!(buf.is_empty());
            }
        }
    }
}
