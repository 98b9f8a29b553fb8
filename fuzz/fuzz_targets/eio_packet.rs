//! Arbitrary bytes through the Engine.IO decoders: as one text packet, as a binary frame and as
//! a polling payload. Whatever decodes must encode back to something that decodes the same.
//! Run: `cargo +nightly fuzz run eio_packet seeds/eio_packet`.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use roomcast_socketio::engineio::{
    decode_binary, decode_payload, decode_text, encode_payload, Packet,
};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(packet) = decode_text(input.clone()) {
        let mut text = BytesMut::new();
        packet.encode_text(&mut text);
        assert_eq!(decode_text(text.freeze()).as_ref(), Ok(&packet));
    }
    assert_eq!(decode_binary(input.clone()), Packet::Binary(input.clone()));
    if let Ok(packets) = decode_payload(input, 4096) {
        let mut body = BytesMut::new();
        assert_eq!(
            encode_payload(&packets, usize::MAX, &mut body),
            packets.len()
        );
        assert_eq!(
            decode_payload(body.freeze(), usize::MAX).as_ref(),
            Ok(&packets)
        );
    }
});
