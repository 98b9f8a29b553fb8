//! Arbitrary client bytes through the WebSocket connection state machine.
//!
//! The input is what a client sends. It is fed once whole and once in chunks whose sizes and
//! virtual-clock steps come from a hash of the input: both runs must agree on every event and
//! error, since chunking and ticks must not change what is decoded. A third run also starts a
//! server close midway. Every run must only ever transmit well-formed server control frames,
//! nothing after a close frame. Run: `cargo +nightly fuzz run ws_frames seeds/ws_frames`.

#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use roomcast_engine::ws::{ConnConfig, Connection, Event, FrameLimits, ProtocolError};

/// Small limits, so that inputs of a few KiB reach the size checks.
fn config() -> ConnConfig {
    ConnConfig {
        limits: FrameLimits {
            max_frame: 1024,
            max_message: 4096,
        },
        ..ConnConfig::default()
    }
}

/// How one run feeds the input.
#[derive(Clone, Copy)]
enum Feed {
    Whole,
    /// LCG state choosing chunk sizes and clock steps, and maybe a chunk to close after.
    Chunked {
        seed: u64,
        close_after: Option<u64>,
    },
}

/// The events and the error a run produced.
type Outcome = (Vec<Event>, Option<ProtocolError>);

struct Wire {
    close_sent: bool,
}

impl Wire {
    /// Drains the control frames owed to the peer and checks each one.
    fn drain(&mut self, conn: &mut Connection) {
        while let Some(frame) = conn.take_transmit() {
            assert!(!self.close_sent, "frame after close: {frame:?}");
            let [b0, b1, payload @ ..] = &frame[..] else {
                panic!("short frame {frame:?}");
            };
            assert_eq!(b0 & 0xF0, 0x80, "FIN set, RSV clear: {frame:?}");
            assert!(matches!(b0 & 0x0F, 0x8..=0xA), "control opcode: {frame:?}");
            assert_eq!(usize::from(*b1), payload.len(), "unmasked, exact length");
            assert!(payload.len() <= 125);
            if b0 & 0x0F == 0x8 {
                self.close_sent = true;
                if let [hi, lo, reason @ ..] = payload {
                    let code = u16::from_be_bytes([*hi, *lo]);
                    assert!(
                        roomcast_engine::ws::conn::is_valid_close_code(code),
                        "{code}"
                    );
                    assert!(std::str::from_utf8(reason).is_ok());
                } else {
                    assert!(payload.is_empty(), "close payload of one byte");
                }
            }
        }
    }
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

fn run(data: &[u8], feed: Feed) -> Outcome {
    let mut now = Instant::now();
    let mut conn = Connection::new(config(), now);
    let mut wire = Wire { close_sent: false };
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut rest = data;
    let mut chunk_index = 0u64;
    while !rest.is_empty() {
        let take = match feed {
            Feed::Whole => rest.len(),
            Feed::Chunked { seed, .. } => {
                let mut state = seed ^ chunk_index;
                let take = 1 + (lcg(&mut state) % 64) as usize;
                // Up to 40 s per chunk: enough to cross ping, idle and close deadlines.
                now += Duration::from_millis(lcg(&mut state) % 40_000);
                take.min(rest.len())
            }
        };
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        loop {
            match conn.read(&mut buf, now) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(err) => {
                    assert!(conn.is_closed() && !conn.is_open());
                    wire.drain(&mut conn);
                    assert!(wire.close_sent, "an error always leaves a close frame");
                    return (events, Some(err));
                }
            }
        }
        if let Feed::Chunked { close_after, .. } = feed {
            // Ticks only queue pings and report deadlines; they never change decoding.
            let _ = conn.on_tick(now);
            if close_after == Some(chunk_index) {
                conn.close(1000, "fuzz", now);
            }
        }
        wire.drain(&mut conn);
        if conn.is_closed() {
            assert!(buf.is_empty() || conn.read(&mut buf, now) == Ok(None));
        }
        chunk_index += 1;
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    // FNV-1a: chunking follows the input without a separate control section, so raw frame
    // captures work as seeds.
    let seed = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let whole = run(data, Feed::Whole);
    let chunked = run(
        data,
        Feed::Chunked {
            seed,
            close_after: None,
        },
    );
    assert_eq!(whole, chunked, "chunking changed the outcome");
    let _ = run(
        data,
        Feed::Chunked {
            seed,
            close_after: Some(seed % 8),
        },
    );
});
