//! Deterministic tests of the session state machine: a virtual clock, no sleeping.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

const SID: &str = "lv_VI97HAXpY6yYWAAAC";

fn config() -> SessionConfig {
    SessionConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..SessionConfig::default()
    }
}

fn polling(now: Instant) -> Session {
    let mut session = Session::new(SID.parse().unwrap(), Transport::Polling, config(), now);
    // The handshake request is the first GET.
    session.on_get(now).unwrap();
    let open = session.take_batch().unwrap();
    assert!(open.starts_with(b"0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"]"));
    session
}

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn msg(s: &'static str) -> Packet {
    Packet::Message(Bytes::from_static(s.as_bytes()))
}

fn post(session: &mut Session, body: &'static [u8], now: Instant) -> Result<(), Error> {
    session.begin_post(now)?;
    session.on_post(Bytes::from_static(body), now)
}

fn get(session: &mut Session, now: Instant) -> Option<Bytes> {
    session.on_get(now).unwrap();
    session.take_batch()
}

#[test]
fn polling_round_trip() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    assert_eq!(post(&mut s, b"4hello\x1ebAQIDBA==", t0), Ok(()));
    assert_eq!(
        events(&mut s),
        [
            Event::Message(Bytes::from_static(b"hello")),
            Event::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        ]
    );
    // A GET with nothing to send waits; a send makes it answerable.
    assert_eq!(get(&mut s, t0), None);
    s.send(msg("2[\"hey\",\"Jude\"]")).unwrap();
    s.send(Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])))
        .unwrap();
    assert_eq!(
        s.take_batch().unwrap(),
        &b"42[\"hey\",\"Jude\"]\x1ebAQIDBA=="[..]
    );
    assert_eq!(s.take_batch(), None, "the GET was answered");
}

#[test]
fn batches_respect_max_payload() {
    let t0 = Instant::now();
    let mut s = Session::new(
        SID.parse().unwrap(),
        Transport::Polling,
        SessionConfig {
            max_payload: 12,
            ..config()
        },
        t0,
    );
    assert!(get(&mut s, t0).is_some());
    for _ in 0..3 {
        s.send(msg("aaaa")).unwrap();
    }
    assert_eq!(get(&mut s, t0).unwrap(), &b"4aaaa\x1e4aaaa"[..]);
    assert_eq!(get(&mut s, t0).unwrap(), &b"4aaaa"[..]);
}

#[test]
fn heartbeat_with_virtual_clock() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(300)));
    s.on_tick(t0 + Duration::from_millis(299));
    assert_eq!(get(&mut s, t0), None, "no ping before ping_interval");

    let t1 = t0 + Duration::from_millis(300);
    s.on_tick(t1);
    assert_eq!(s.take_batch().unwrap(), &b"2"[..]);
    assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_millis(200)));

    // The pong clears the deadline; the next ping is due ping_interval after it.
    let t2 = t1 + Duration::from_millis(150);
    post(&mut s, b"3", t2).unwrap();
    s.on_tick(t1 + Duration::from_millis(250));
    assert!(!s.is_closed());
    assert_eq!(s.poll_timeout(), Some(t2 + Duration::from_millis(300)));

    // No pong this time: closed at ping + ping_timeout, the pending GET gets a close packet.
    let t3 = t2 + Duration::from_millis(300);
    s.on_tick(t3);
    assert_eq!(get(&mut s, t3).unwrap(), &b"2"[..]);
    assert_eq!(get(&mut s, t3), None);
    s.on_tick(t3 + Duration::from_millis(199));
    assert!(!s.is_closed());
    s.on_tick(t3 + Duration::from_millis(200));
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::PingTimeout)]);
    assert_eq!(s.take_batch().unwrap(), &b"1"[..]);
    assert!(s.is_finished());
    assert_eq!(s.on_get(t3), Err(Error::SessionClosed));
}

#[test]
fn duplicate_get_closes_the_session() {
    // As the Engine.IO test suite: the first GET gets `1`, the second 400, the next 400.
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_get(t0).unwrap();
    let err = s.on_get(t0).unwrap_err();
    assert_eq!((err, err.http_status()), (Error::DuplicateGet, 400));
    assert_eq!(s.take_batch().unwrap(), &b"1"[..]);
    assert_eq!(
        events(&mut s),
        [Event::Closed(CloseReason::Error(Error::DuplicateGet))]
    );
    assert_eq!(s.on_get(t0).map_err(|e| e.http_status()), Err(400));
}

#[test]
fn duplicate_post_closes_the_session() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.begin_post(t0).unwrap();
    assert_eq!(s.begin_post(t0), Err(Error::DuplicatePost));
    assert!(s.is_closed());
    assert_eq!(
        s.on_post(Bytes::from_static(b"4x"), t0),
        Err(Error::SessionClosed)
    );
}

#[test]
fn invalid_payload_closes_the_session() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.send(msg("dropped")).unwrap();
    assert_eq!(post(&mut s, b"abc", t0), Err(Error::UnknownPacketType));
    assert_eq!(get(&mut s, t0).unwrap(), &b"1"[..], "buffer discarded");
    assert_eq!(s.on_get(t0), Err(Error::SessionClosed));
}

#[test]
fn client_ping_is_refused_in_v4() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    assert_eq!(post(&mut s, b"2", t0), Err(Error::UnexpectedPacket));
    assert!(s.is_closed());
}

#[test]
fn aborted_get_closes_the_session() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_get(t0).unwrap();
    s.on_request_aborted(t0);
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::TransportClose)]);
    assert!(s.is_finished());
    assert_eq!(s.on_get(t0), Err(Error::SessionClosed));
}

#[test]
fn upgrade_sequence() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_get(t0).unwrap();
    s.on_upgrade_request(t0).unwrap();
    assert_eq!(s.on_upgrade_request(t0), Err(Error::UpgradeRefused));
    assert_eq!(s.take_batch(), None, "no noop before the probe");

    s.on_packet(Packet::probe_ping(), t0).unwrap();
    assert_eq!(s.poll_outgoing(), Some(Packet::probe_pong()));
    assert_eq!(s.poll_outgoing(), None);
    assert_eq!(s.take_batch().unwrap(), &b"6"[..]);

    // Sent during the upgrade: buffered for the WebSocket.
    s.send(msg("2[\"buffered\"]")).unwrap();
    s.on_packet(Packet::Upgrade, t0).unwrap();
    assert_eq!(events(&mut s), [Event::Upgraded]);
    assert_eq!(s.transport(), Transport::WebSocket);
    assert_eq!(s.poll_outgoing(), Some(msg("2[\"buffered\"]")));

    // Polling is over for this session.
    assert_eq!(s.on_get(t0), Err(Error::TransportMismatch));
    assert_eq!(post(&mut s, b"4x", t0), Err(Error::TransportMismatch));
    s.on_packet(msg("2[\"hello\"]"), t0).unwrap();
    assert_eq!(
        events(&mut s),
        [Event::Message(Bytes::from_static(b"2[\"hello\"]"))]
    );

    // Pings go to the WebSocket now; a WebSocket pong answers them.
    let t1 = t0 + Duration::from_millis(300);
    s.on_tick(t1);
    assert_eq!(s.poll_outgoing(), Some(Packet::Ping(Bytes::new())));
    s.on_packet(Packet::Pong(Bytes::new()), t1).unwrap();
    s.on_tick(t1 + Duration::from_millis(250));
    assert!(!s.is_closed());
}

#[test]
fn upgrade_timeout_keeps_polling() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.on_packet(Packet::probe_ping(), t0).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(300)));
    s.on_tick(t0 + Duration::from_secs(10));
    assert_eq!(events(&mut s).first(), Some(&Event::UpgradeCancelled));
    assert_eq!(s.poll_outgoing(), None, "probe reply dropped");
    s.send(msg("still polling")).unwrap();
    assert!(get(&mut s, t0).is_some());
    assert_eq!(s.transport(), Transport::Polling);
    s.on_upgrade_request(t0).unwrap();
}

#[test]
fn unexpected_probe_packet_cancels_the_upgrade() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    // An upgrade before the probe is refused, as is anything else.
    assert_eq!(
        s.on_packet(Packet::Upgrade, t0),
        Err(Error::UnexpectedPacket)
    );
    assert_eq!(events(&mut s), [Event::UpgradeCancelled]);
    assert!(!s.is_closed());
    s.on_upgrade_request(t0).unwrap();
    s.on_websocket_closed(t0);
    assert_eq!(events(&mut s), [Event::UpgradeCancelled]);
    assert!(!s.is_closed());
}

#[test]
fn upgrades_can_be_disabled() {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        allow_upgrades: false,
        ..config()
    };
    let mut s = Session::new(SID.parse().unwrap(), Transport::Polling, cfg, t0);
    assert!(get(&mut s, t0).unwrap().ends_with(
        b"\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}"
    ));
    assert_eq!(s.on_upgrade_request(t0), Err(Error::UpgradeRefused));
}

#[test]
fn websocket_only_session() {
    let t0 = Instant::now();
    let mut s = Session::new(SID.parse().unwrap(), Transport::WebSocket, config(), t0);
    let Some(Packet::Open(json)) = s.poll_outgoing() else {
        panic!("open packet first");
    };
    assert!(json.starts_with(b"{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[],"));
    assert_eq!(s.on_get(t0), Err(Error::TransportMismatch));
    assert_eq!(s.on_upgrade_request(t0), Err(Error::UpgradeRefused));
    s.on_packet(Packet::Binary(Bytes::from_static(&[1])), t0)
        .unwrap();
    assert_eq!(events(&mut s), [Event::Binary(Bytes::from_static(&[1]))]);

    let err = s.on_packet(Packet::Ping(Bytes::new()), t0).unwrap_err();
    assert_eq!(err.close_code(), Some(1002));
    assert_eq!(s.poll_outgoing(), Some(Packet::Close));
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::Error(err))]);
    assert!(s.is_finished());
}

#[test]
fn oversized_websocket_message_closes_with_1009() {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        max_payload: 4,
        ..config()
    };
    let mut s = Session::new(SID.parse().unwrap(), Transport::WebSocket, cfg, t0);
    let err = s.on_packet(msg("12345"), t0).unwrap_err();
    assert_eq!(
        (err, err.close_code()),
        (Error::PayloadTooLarge, Some(1009))
    );
}

#[test]
fn websocket_close_and_client_close() {
    let t0 = Instant::now();
    let mut s = Session::new(SID.parse().unwrap(), Transport::WebSocket, config(), t0);
    s.on_websocket_closed(t0);
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::TransportClose)]);
    assert!(s.is_finished());

    let mut s = polling(t0);
    post(&mut s, b"1\x1e4ignored", t0).unwrap();
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::ClientClose)]);
    assert_eq!(CloseReason::ClientClose.as_str(), "transport close");
}

#[test]
fn outgoing_buffer_is_bounded() {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        max_buffered_bytes: 2 * (10 + PACKET_OVERHEAD),
        ..config()
    };
    let mut s = Session::new(SID.parse().unwrap(), Transport::Polling, cfg, t0);
    let ten = || Packet::Message(Bytes::from_static(b"0123456789"));
    // The first packet always fits, however large.
    s.send(Packet::Binary(Bytes::from(vec![0; 4096]))).unwrap();
    assert_eq!(s.send(ten()), Err(SendError::Full(ten())));
    assert!(get(&mut s, t0).is_some());
    s.send(ten()).unwrap();
    s.send(ten()).unwrap();
    assert_eq!(s.send(ten()).map_err(SendError::into_inner), Err(ten()));
    // A group goes whole or not at all.
    assert_eq!(
        s.send_all(vec![msg("x")]),
        Err(SendError::Full(vec![msg("x")]))
    );
    // Control packets are not counted: the heartbeat still gets through.
    s.on_tick(t0 + Duration::from_millis(300));
    assert!(get(&mut s, t0).unwrap().ends_with(b"\x1e2"));
    s.send_all(vec![msg("a"), Packet::Binary(Bytes::new())])
        .unwrap();
}

#[test]
fn server_close_flushes_then_closes() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.send(msg("bye")).unwrap();
    s.close(t0);
    assert_eq!(s.send(msg("late")), Err(SendError::Closed(msg("late"))));
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::ServerClose)]);
    assert!(!s.is_finished());
    assert_eq!(post(&mut s, b"4x", t0), Err(Error::SessionClosed));
    assert_eq!(get(&mut s, t0).unwrap(), &b"4bye\x1e1"[..]);
    assert!(s.is_finished());
}

#[test]
fn closed_session_gives_up_after_close_timeout() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.close(t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    s.on_tick(t0 + Duration::from_secs(29));
    assert!(!s.is_finished());
    s.on_tick(t0 + Duration::from_secs(30));
    assert!(s.is_finished());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn close_during_upgrade_cancels_it() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.close(t0);
    assert_eq!(
        events(&mut s),
        [
            Event::UpgradeCancelled,
            Event::Closed(CloseReason::ServerClose)
        ]
    );
    assert_eq!(s.on_upgrade_request(t0), Err(Error::SessionClosed));
}
