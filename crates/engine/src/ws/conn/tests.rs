//! Deterministic tests of the connection state machine, on a virtual clock.

use super::*;
use crate::ws::frame::encode_masked;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn wire(frames: &[(OpCode, bool, &[u8])]) -> BytesMut {
    let mut buf = BytesMut::new();
    for &(op, fin, payload) in frames {
        encode_masked(op, fin, payload, MASK, &mut buf);
    }
    buf
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

struct Peer {
    conn: Connection,
    t0: Instant,
}

impl Peer {
    fn new() -> Self {
        Self::with_config(ConnConfig::default())
    }

    fn with_config(config: ConnConfig) -> Self {
        let t0 = Instant::now();
        Self {
            conn: Connection::new(config, t0),
            t0,
        }
    }

    fn at(&self, s: f64) -> Instant {
        self.t0 + secs(s)
    }

    fn read_at(&mut self, s: f64, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        let now = self.at(s);
        self.conn.read(buf, now)
    }

    fn send(&mut self, frames: &[(OpCode, bool, &[u8])]) -> Result<Option<Event>, ProtocolError> {
        let mut buf = wire(frames);
        self.read_at(0.0, &mut buf)
    }

    fn transmit(&mut self) -> Vec<Bytes> {
        std::iter::from_fn(|| self.conn.take_transmit()).collect()
    }

    fn tick(&mut self, s: f64) -> TickAction {
        let now = self.at(s);
        self.conn.on_tick(now)
    }
}

fn text(s: &str) -> Event {
    Event::Text(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn rfc_masked_hello_is_a_text_message() {
    let mut p = Peer::new();
    let mut buf = BytesMut::from(
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ][..],
    );
    assert_eq!(p.read_at(0.0, &mut buf), Ok(Some(text("Hello"))));
    assert!(buf.is_empty());
    assert!(p.transmit().is_empty());
    assert!(p.conn.is_open());
}

#[test]
fn binary_message() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[(OpCode::Binary, true, &[0, 1, 2, 255])]),
        Ok(Some(Event::Binary(Bytes::from_static(&[0, 1, 2, 255]))))
    );
}

#[test]
fn rfc_fragmented_hello() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[
            (OpCode::Text, false, b"Hel"),
            (OpCode::Continuation, true, b"lo")
        ]),
        Ok(Some(text("Hello")))
    );
    assert_eq!(
        p.conn.fragments.capacity(),
        0,
        "buffer released after the message"
    );
}

#[test]
fn several_messages_in_one_buffer() {
    let mut p = Peer::new();
    let mut buf = wire(&[(OpCode::Text, true, b"one"), (OpCode::Binary, true, b"two")]);
    assert_eq!(p.read_at(0.0, &mut buf), Ok(Some(text("one"))));
    assert_eq!(
        p.read_at(0.0, &mut buf),
        Ok(Some(Event::Binary(Bytes::from_static(b"two"))))
    );
    assert_eq!(p.read_at(0.0, &mut buf), Ok(None));
}

#[test]
fn byte_by_byte_delivery() {
    let mut p = Peer::new();
    let stream = wire(&[
        (OpCode::Text, false, "h€".as_bytes()),
        (OpCode::Ping, true, b"p"),
        (OpCode::Continuation, true, b"!"),
        (OpCode::Binary, true, &[9; 300]),
    ]);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for &byte in stream.iter() {
        buf.extend_from_slice(&[byte]);
        while let Some(event) = p.read_at(0.0, &mut buf).unwrap() {
            events.push(event);
        }
    }
    assert_eq!(
        events,
        vec![text("h€!"), Event::Binary(Bytes::from(vec![9; 300]))]
    );
    assert_eq!(p.transmit(), vec![Bytes::from_static(&[0x8a, 0x01, b'p'])]);
}

#[test]
fn rfc_ping_gets_pong_with_same_payload() {
    let mut p = Peer::new();
    assert_eq!(p.send(&[(OpCode::Ping, true, b"Hello")]), Ok(None));
    assert_eq!(
        p.transmit(),
        vec![Bytes::from_static(&[
            0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
        ])]
    );
}

#[test]
fn every_ping_is_answered_in_order() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[(OpCode::Ping, true, b"1"), (OpCode::Ping, true, b"2")]),
        Ok(None)
    );
    assert_eq!(
        p.transmit(),
        vec![
            Bytes::from_static(&[0x8a, 0x01, b'1']),
            Bytes::from_static(&[0x8a, 0x01, b'2'])
        ]
    );
}

#[test]
fn owed_pongs_are_bounded() {
    let mut p = Peer::new();
    let pings: Vec<[u8; 1]> = (0..40u8).map(|i| [i]).collect();
    let frames: Vec<(OpCode, bool, &[u8])> =
        pings.iter().map(|b| (OpCode::Ping, true, &b[..])).collect();
    assert_eq!(p.send(&frames), Ok(None));
    let out = p.transmit();
    assert_eq!(out.len(), MAX_OWED_PONGS);
    // The newest pings are the ones answered.
    assert_eq!(out.last().map(|f| f[2]), Some(39));
}

#[test]
fn unsolicited_pong_is_accepted_silently() {
    let mut p = Peer::new();
    assert_eq!(p.send(&[(OpCode::Pong, true, b"x")]), Ok(None));
    assert!(p.transmit().is_empty());
}

#[test]
fn control_frames_between_fragments() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[
            (OpCode::Text, false, b"frag"),
            (OpCode::Ping, true, b"ping"),
            (OpCode::Continuation, false, b"men"),
            (OpCode::Pong, true, b""),
            (OpCode::Continuation, true, b"ted"),
        ]),
        Ok(Some(text("fragmented")))
    );
    assert_eq!(p.transmit(), vec![frame::encoded(OpCode::Pong, b"ping")]);
}

#[test]
fn utf8_code_point_split_across_fragments() {
    let euro = "€".as_bytes();
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[
            (OpCode::Text, false, &[b'a', euro[0]]),
            (OpCode::Continuation, false, &euro[1..2]),
            (OpCode::Continuation, false, b""),
            (OpCode::Continuation, true, &euro[2..]),
        ]),
        Ok(Some(text("a€")))
    );
}

#[test]
fn invalid_utf8_fails_fast_before_the_message_ends() {
    let mut p = Peer::new();
    let mut buf = wire(&[(OpCode::Text, false, "κόσμε".as_bytes())]);
    assert_eq!(p.read_at(0.0, &mut buf), Ok(None));
    // Not the final fragment, yet F4 90 is already impossible.
    let mut buf = wire(&[(OpCode::Continuation, false, &[0xF4, 0x90, 0x80, 0x80])]);
    assert_eq!(p.read_at(0.0, &mut buf), Err(ProtocolError::InvalidUtf8));
    assert!(p.conn.is_closed());
    let out = p.transmit();
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][..4], &[0x88, out[0].len() as u8 - 2, 0x03, 0xEF]);
    assert_eq!(p.conn.fragments.capacity(), 0);
}

#[test]
fn invalid_utf8_in_single_frame() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[(OpCode::Text, true, &[b'a', 0xFF])]),
        Err(ProtocolError::InvalidUtf8)
    );
    // Binary is not checked.
    let mut p = Peer::new();
    assert!(p.send(&[(OpCode::Binary, true, &[0xFF])]).is_ok());
}

#[test]
fn truncated_code_point_at_message_end() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[
            (OpCode::Text, false, b"a"),
            (OpCode::Continuation, true, &[0xE2, 0x82]),
        ]),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn continuation_sequencing_errors() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[(OpCode::Continuation, true, b"x")]),
        Err(ProtocolError::UnexpectedContinuation)
    );
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[(OpCode::Text, false, b"a"), (OpCode::Text, true, b"b")]),
        Err(ProtocolError::ExpectedContinuation)
    );
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[(OpCode::Binary, false, b"a"), (OpCode::Binary, false, b"b")]),
        Err(ProtocolError::ExpectedContinuation)
    );
}

/// Every error `read` can return, the close frame it queues, and the failed state.
#[test]
fn every_protocol_error_fails_the_connection_with_its_code() {
    let too_long = [0u8; 126];
    let frame_errors: [(&[u8], ProtocolError); 6] = [
        (&[0x81, 0x00], ProtocolError::UnmaskedFrame),
        (&[0xC1, 0x80, 0, 0, 0, 0], ProtocolError::ReservedBits),
        (&[0x83, 0x80, 0, 0, 0, 0], ProtocolError::ReservedOpcode),
        (
            &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
            ProtocolError::InvalidLength,
        ),
        (&[0x09, 0x80, 0, 0, 0, 0], ProtocolError::FragmentedControl),
        (
            &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1],
            ProtocolError::FrameTooLarge,
        ),
    ];
    let mut cases: Vec<(BytesMut, ProtocolError)> = frame_errors
        .iter()
        .map(|(bytes, err)| (BytesMut::from(*bytes), err.clone()))
        .collect();
    cases.extend([
        (
            wire(&[(OpCode::Ping, true, &too_long)]),
            ProtocolError::ControlTooLong,
        ),
        (
            wire(&[(OpCode::Continuation, true, b"")]),
            ProtocolError::UnexpectedContinuation,
        ),
        (
            wire(&[(OpCode::Text, false, b""), (OpCode::Binary, true, b"")]),
            ProtocolError::ExpectedContinuation,
        ),
        (
            wire(&[(OpCode::Close, true, &close_payload(1005, b""))]),
            ProtocolError::InvalidCloseCode,
        ),
        (
            wire(&[(OpCode::Close, true, &[0x03])]),
            ProtocolError::InvalidClosePayload,
        ),
        (
            wire(&[(OpCode::Text, true, &[0xC0, 0x80])]),
            ProtocolError::InvalidUtf8,
        ),
        (
            wire(&[
                (OpCode::Binary, false, &[0; 40_000]),
                (OpCode::Continuation, true, &[0; 40_000]),
            ]),
            ProtocolError::MessageTooLarge,
        ),
    ]);
    assert_eq!(cases.len(), 13, "one case per variant");
    for (mut buf, err) in cases {
        let mut p = Peer::new();
        assert_eq!(p.read_at(0.0, &mut buf), Err(err.clone()));
        assert!(p.conn.is_closed() && !p.conn.is_open(), "{err:?}");
        let expected = frame::close_frame(err.close_code(), &err.to_string());
        assert_eq!(p.transmit(), vec![expected], "{err:?}");
        // Failing again, or a late close(), queues nothing more; input is discarded.
        p.conn.fail(&err, p.at(0.0));
        p.conn.close(1000, "", p.at(0.0));
        assert!(p.transmit().is_empty());
        let mut more = wire(&[(OpCode::Text, true, b"late")]);
        assert_eq!(p.read_at(1.0, &mut more), Ok(None));
        assert!(more.is_empty());
    }
}

#[test]
fn close_code_validation() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ] {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Close, true, &close_payload(code, b"ok"))]),
            Ok(Some(Event::Closed {
                code: Some(code),
                reason: "ok".into()
            })),
            "{code}"
        );
        // Echoed with the same code.
        assert_eq!(p.transmit(), vec![frame::close_frame(code, "")]);
        assert!(p.conn.is_closed());
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut p = Peer::new();
        assert_eq!(
            p.send(&[(OpCode::Close, true, &close_payload(code, b""))]),
            Err(ProtocolError::InvalidCloseCode),
            "{code}"
        );
    }
}

#[test]
fn close_without_payload_and_with_bad_reason() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[(OpCode::Close, true, b"")]),
        Ok(Some(Event::Closed {
            code: None,
            reason: String::new()
        }))
    );
    assert_eq!(p.transmit(), vec![Bytes::from_static(&[0x88, 0x00])]);

    let mut p = Peer::new();
    assert_eq!(
        p.send(&[(
            OpCode::Close,
            true,
            &close_payload(1000, &[0xCE, 0xBA, 0xFF])
        )]),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn peer_initiated_close_mid_message() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&[
            (OpCode::Text, false, b"half"),
            (OpCode::Close, true, &close_payload(1001, b"bye")),
        ]),
        Ok(Some(Event::Closed {
            code: Some(1001),
            reason: "bye".into()
        }))
    );
    assert_eq!(p.conn.fragments.capacity(), 0);
    // Anything after the close is discarded.
    let mut buf = wire(&[(OpCode::Continuation, true, b"rest")]);
    assert_eq!(p.read_at(0.0, &mut buf), Ok(None));
    assert!(buf.is_empty());
}

#[test]
fn server_initiated_close_handshake() {
    let mut p = Peer::new();
    p.conn.close(1001, "going away", p.at(1.0));
    assert!(!p.conn.is_open());
    assert!(!p.conn.is_closed());
    p.conn.close(1000, "again", p.at(1.5)); // idempotent
    assert_eq!(
        p.transmit(),
        vec![Bytes::from_static(b"\x88\x0c\x03\xe9going away")]
    );
    // Data is ignored while closing, pings are not answered, the peer's close ends it.
    let mut buf = wire(&[
        (OpCode::Text, true, b"ignored"),
        (OpCode::Ping, true, b""),
        (OpCode::Close, true, &close_payload(1001, b"")),
    ]);
    assert_eq!(
        p.read_at(2.0, &mut buf),
        Ok(Some(Event::Closed {
            code: Some(1001),
            reason: String::new()
        }))
    );
    assert!(p.conn.is_closed());
    assert!(p.transmit().is_empty(), "no second close frame");
}

#[test]
fn close_handshake_timeout() {
    let mut p = Peer::new();
    p.conn.close(1000, "", p.at(10.0));
    assert_eq!(p.tick(14.9), TickAction::Idle);
    assert_eq!(p.tick(15.0), TickAction::TimedOut);
}

#[test]
fn closed_connection_times_out_if_never_dropped() {
    let mut p = Peer::new();
    let mut buf = wire(&[(OpCode::Close, true, b"")]);
    assert!(p.read_at(3.0, &mut buf).unwrap().is_some());
    assert_eq!(p.tick(7.9), TickAction::Idle);
    assert_eq!(p.tick(8.0), TickAction::TimedOut);
}

#[test]
fn fragmented_message_dropped_on_close() {
    let mut p = Peer::new();
    assert_eq!(p.send(&[(OpCode::Binary, false, &[1; 100])]), Ok(None));
    assert!(p.conn.fragments.capacity() > 0);
    p.conn.close(1000, "", p.at(0.0));
    assert_eq!(p.conn.fragments.capacity(), 0);
    assert_eq!(p.send(&[(OpCode::Continuation, true, &[2; 10])]), Ok(None));
}

#[test]
fn heartbeat_pings_and_idle_timeout() {
    let mut p = Peer::new();
    assert_eq!(p.tick(24.9), TickAction::Idle);
    assert_eq!(p.tick(25.0), TickAction::PingQueued);
    assert_eq!(p.transmit(), vec![Bytes::from_static(&[0x89, 0x00])]);
    assert_eq!(p.tick(26.0), TickAction::Idle);
    assert_eq!(p.tick(50.0), TickAction::PingQueued);
    assert_eq!(p.tick(59.9), TickAction::Idle);
    assert_eq!(p.tick(60.0), TickAction::TimedOut);
}

#[test]
fn deadline_is_when_the_tick_next_acts() {
    let mut p = Peer::new();
    assert_eq!(p.conn.deadline(), p.at(25.0), "first ping");
    assert_eq!(p.tick(25.0), TickAction::PingQueued);
    assert_eq!(p.conn.deadline(), p.at(50.0), "second ping");
    assert_eq!(p.tick(50.0), TickAction::PingQueued);
    // The idle timeout comes before a third ping.
    assert_eq!(p.conn.deadline(), p.at(60.0));
    let mut pong = wire(&[(OpCode::Pong, true, b"")]);
    assert_eq!(p.read_at(55.0, &mut pong), Ok(None));
    assert_eq!(p.conn.deadline(), p.at(80.0), "quiet since the pong");
    p.conn.close(1000, "", p.at(56.0));
    assert_eq!(p.conn.deadline(), p.at(61.0), "close timeout");
    assert_eq!(p.tick(60.9), TickAction::Idle);
    assert_eq!(p.tick(61.0), TickAction::TimedOut);
}

#[test]
fn any_frame_refreshes_liveness() {
    let mut p = Peer::new();
    let mut pong = wire(&[(OpCode::Pong, true, b"")]);
    assert_eq!(p.read_at(20.0, &mut pong), Ok(None));
    // Quiet since 20 s: no ping at 25 s, one at 45 s.
    assert_eq!(p.tick(25.0), TickAction::Idle);
    assert_eq!(p.tick(45.0), TickAction::PingQueued);
    let mut msg = wire(&[(OpCode::Text, true, b"hi")]);
    assert!(p.read_at(70.0, &mut msg).unwrap().is_some());
    assert_eq!(p.tick(79.9), TickAction::Idle);
    assert_eq!(p.tick(95.0), TickAction::PingQueued);
    assert_eq!(p.tick(119.9), TickAction::Idle);
    assert_eq!(p.tick(129.9), TickAction::PingQueued);
    assert_eq!(
        p.tick(130.0),
        TickAction::TimedOut,
        "60 s after the message"
    );
}

#[test]
fn no_pings_once_closing() {
    let mut p = Peer::new();
    assert_eq!(p.tick(25.0), TickAction::PingQueued);
    p.conn.close(1000, "", p.at(25.0));
    assert_eq!(p.transmit(), vec![frame::close_frame(1000, "")]);
    assert_eq!(p.tick(26.0), TickAction::Idle);
}

#[test]
fn transmit_order_is_pong_ping_close() {
    let mut p = Peer::new();
    let mut ping = wire(&[(OpCode::Ping, true, b"a")]);
    assert_eq!(p.read_at(10.0, &mut ping), Ok(None));
    assert_eq!(
        p.tick(25.0),
        TickAction::Idle,
        "the ping was a sign of life"
    );
    assert_eq!(p.tick(35.0), TickAction::PingQueued);
    p.conn.close(1000, "", p.at(35.0));
    // close() withdraws the unsent ping; the pong still precedes the close.
    assert_eq!(
        p.transmit(),
        vec![
            frame::encoded(OpCode::Pong, b"a"),
            frame::close_frame(1000, "")
        ]
    );
}

#[test]
fn frame_and_message_limits() {
    let config = ConnConfig {
        limits: FrameLimits {
            max_frame: 16,
            max_message: 32,
        },
        ..ConnConfig::default()
    };
    let mut p = Peer::with_config(config.clone());
    assert_eq!(
        p.send(&[(OpCode::Binary, true, &[0; 17])]),
        Err(ProtocolError::FrameTooLarge)
    );
    assert_eq!(p.transmit()[0][2..4], [0x03, 0xF1]);

    let mut p = Peer::with_config(config);
    assert_eq!(
        p.send(&[
            (OpCode::Text, false, &[b'a'; 16]),
            (OpCode::Continuation, true, &[b'b'; 16]),
        ]),
        Ok(Some(text(&format!("{}{}", "a".repeat(16), "b".repeat(16)))))
    );
    assert_eq!(
        p.send(&[
            (OpCode::Text, false, &[b'a'; 16]),
            (OpCode::Continuation, false, &[b'b'; 16]),
            (OpCode::Continuation, true, b"c"),
        ]),
        Err(ProtocolError::MessageTooLarge)
    );

    // A single frame larger than max_message (max_frame allows it).
    let config = ConnConfig {
        limits: FrameLimits {
            max_frame: 64,
            max_message: 32,
        },
        ..ConnConfig::default()
    };
    let mut p = Peer::with_config(config);
    assert_eq!(
        p.send(&[(OpCode::Binary, true, &[0; 33])]),
        Err(ProtocolError::MessageTooLarge)
    );
}

#[test]
fn idle_connection_is_small_and_unallocated() {
    let size = std::mem::size_of::<Connection>();
    assert!(size <= 256, "Connection is {size} bytes");
    let p = Peer::new();
    assert_eq!(p.conn.fragments.capacity(), 0);
    assert!(p.conn.pongs.is_empty() && p.conn.close_frame.is_none());
}
