//! Arbitrary bytes through the Socket.IO reassembler: the input cut at each 0xFF byte gives a
//! text message followed by binary attachments. A completed packet, deconstructed and fed
//! again, must come back equal. Run: `cargo +nightly fuzz run sio_packet seeds/sio_packet`.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use roomcast_socketio::socketio::{deconstruct, Reassembler, ReassemblyLimits};

fuzz_target!(|data: &[u8]| {
    let limits = ReassemblyLimits {
        max_attachments: 4,
        max_bytes: 1024,
    };
    let mut parts = data.split(|&b| b == 0xff);
    let mut reassembler = Reassembler::new(limits);
    let mut done = reassembler.on_text(parts.next().unwrap_or_default());
    for part in parts {
        if !reassembler.is_pending() {
            break;
        }
        done = reassembler.on_binary(Bytes::copy_from_slice(part));
    }
    if let Ok(Some(packet)) = done {
        let (text, attachments) = deconstruct(&packet);
        let mut again = Reassembler::new(limits);
        let mut out = again.on_text(&text);
        for attachment in attachments {
            out = again.on_binary(attachment);
        }
        assert_eq!(out, Ok(Some(packet)));
    }
});
