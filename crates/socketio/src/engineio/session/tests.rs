//! Deterministic tests of the session state machine: a virtual clock, no sleeping. The
//! outgoing queue is modelled by a `VecDeque` the tests fill from `poll_transmit`.

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

fn session(transport: Transport, config: SessionConfig, now: Instant) -> Session {
    Session::new(SID.parse().unwrap(), transport, config, now)
}

/// A polling session whose handshake was answered with its open packet.
fn polling(now: Instant) -> Session {
    let mut s = session(Transport::Polling, config(), now);
    let Some(Packet::Open(json)) = s.poll_transmit() else {
        panic!("open packet first");
    };
    assert!(json.starts_with(b"{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"]"));
    assert_eq!(s.poll_transmit(), None);
    s
}

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn transmitted(session: &mut Session) -> Vec<Packet> {
    std::iter::from_fn(|| session.poll_transmit()).collect()
}

fn post(session: &mut Session, body: &'static [u8], now: Instant) -> Result<(), Error> {
    session.begin_post(now)?;
    session.on_post(Bytes::from_static(body), now)
}

fn ping() -> Packet {
    Packet::Ping(Bytes::new())
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
    // A GET with nothing queued waits; queued data makes it answerable, once.
    s.on_get(t0).unwrap();
    assert!(s.is_get_pending());
    assert_eq!(s.poll_get(false, t0), None);
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Data));
    assert_eq!(s.poll_get(true, t0), None, "the GET was answered");
    assert!(!s.is_get_pending());
}

#[test]
fn heartbeat_with_virtual_clock() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(300)));
    s.on_tick(t0 + Duration::from_millis(299));
    assert_eq!(transmitted(&mut s), [], "no ping before ping_interval");

    let t1 = t0 + Duration::from_millis(300);
    s.on_tick(t1);
    assert_eq!(transmitted(&mut s), [ping()]);
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
    assert_eq!(transmitted(&mut s), [ping()]);
    s.on_get(t3).unwrap();
    s.on_tick(t3 + Duration::from_millis(199));
    assert!(!s.is_closed());
    s.on_tick(t3 + Duration::from_millis(200));
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::PingTimeout)]);
    assert!(!s.is_finished(), "the pending GET is owed its close packet");
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Close));
    assert!(s.is_finished());
    assert_eq!(s.on_get(t3), Err(Error::SessionClosed));
}

#[test]
fn late_tick_keeps_the_heartbeat_schedule() {
    // The ping is noticed 40 ms late; the client still has to answer by 300 + 200 ms.
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_tick(t0 + Duration::from_millis(340));
    assert_eq!(transmitted(&mut s), [ping()]);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    s.on_tick(t0 + Duration::from_millis(500));
    assert_eq!(s.close_reason(), Some(CloseReason::PingTimeout));
}

#[test]
fn ping_timeout_without_a_pending_get_is_final() {
    // As the Engine.IO test suite: after ping interval + timeout, the next GET gets a 400.
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_tick(t0 + Duration::from_millis(300));
    s.on_tick(t0 + Duration::from_millis(500));
    assert!(s.is_finished());
    assert_eq!(
        s.on_get(t0 + Duration::from_millis(500))
            .map_err(|e| e.http_status()),
        Err(400)
    );
}

#[test]
fn duplicate_get_closes_the_session() {
    // As the Engine.IO test suite: the first GET gets `1`, the second 400, the next 400.
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_get(t0).unwrap();
    let err = s.on_get(t0).unwrap_err();
    assert_eq!((err, err.http_status()), (Error::DuplicateGet, 400));
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Close));
    assert_eq!(GetReply::Close.body(), Some(&b"1"[..]));
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
    assert_eq!(post(&mut s, b"abc", t0), Err(Error::UnknownPacketType));
    assert!(s.is_finished(), "no GET was pending");
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
fn client_close_answers_the_pending_get_with_a_noop() {
    // As the Engine.IO test suite: a pending GET gets `6`, the next GET a 400.
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_get(t0).unwrap();
    post(&mut s, b"1\x1e4ignored", t0).unwrap();
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::ClientClose)]);
    assert_eq!(CloseReason::ClientClose.as_str(), "transport close");
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Noop));
    assert!(s.is_finished());
    assert_eq!(s.on_get(t0), Err(Error::SessionClosed));

    // Without a pending GET, one that raced the close packet still ends with a noop; the
    // session is gone after it, or after close_timeout.
    let mut s = polling(t0);
    post(&mut s, b"1", t0).unwrap();
    assert!(!s.is_finished());
    s.on_get(t0).unwrap();
    assert_eq!(s.poll_get(false, t0), Some(GetReply::Noop));
    assert!(s.is_finished());
    assert_eq!(s.on_get(t0), Err(Error::SessionClosed));
    let mut s = polling(t0);
    post(&mut s, b"1", t0).unwrap();
    s.on_tick(t0 + Duration::from_secs(30));
    assert!(s.is_finished());
}

#[test]
fn upgrade_sequence() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_get(t0).unwrap();
    s.on_upgrade_request(t0).unwrap();
    assert_eq!(s.on_upgrade_request(t0), Err(Error::UpgradeRefused));
    assert_eq!(s.poll_get(false, t0), None, "no noop before the probe");

    s.on_packet(Packet::probe_ping(), t0).unwrap();
    assert_eq!(s.poll_probe_reply(), Some(Packet::probe_pong()));
    assert_eq!(s.poll_probe_reply(), None);
    // Even with data queued: the data waits for the WebSocket.
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Noop));
    assert_eq!(GetReply::Noop.body(), Some(&b"6"[..]));

    s.on_packet(Packet::Upgrade, t0).unwrap();
    assert_eq!(events(&mut s), [Event::Upgraded]);
    assert_eq!(s.transport(), Transport::WebSocket);

    // Polling is over for this session.
    assert_eq!(s.on_get(t0), Err(Error::TransportMismatch));
    assert_eq!(post(&mut s, b"4x", t0), Err(Error::TransportMismatch));
    s.on_packet(Packet::Message(Bytes::from_static(b"2[\"hello\"]")), t0)
        .unwrap();
    assert_eq!(
        events(&mut s),
        [Event::Message(Bytes::from_static(b"2[\"hello\"]"))]
    );

    // Pings keep their schedule on the WebSocket; a WebSocket pong answers them.
    let t1 = t0 + Duration::from_millis(300);
    s.on_tick(t1);
    assert_eq!(transmitted(&mut s), [ping()]);
    s.on_packet(Packet::Pong(Bytes::new()), t1).unwrap();
    s.on_tick(t1 + Duration::from_millis(250));
    assert!(!s.is_closed());
}

#[test]
fn get_pending_when_the_upgrade_completes_gets_a_noop() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.on_packet(Packet::probe_ping(), t0).unwrap();
    s.on_packet(Packet::Upgrade, t0).unwrap();
    assert_eq!(s.poll_get(true, t0), None, "no GET pending");
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.on_get(t0).unwrap();
    s.on_packet(Packet::probe_ping(), t0).unwrap();
    s.on_packet(Packet::Upgrade, t0).unwrap();
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Noop));
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
    s.on_get(t0).unwrap();
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Data), "still polling");
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
    let mut s = session(Transport::Polling, cfg, t0);
    let Some(Packet::Open(json)) = s.poll_transmit() else {
        panic!("open packet first");
    };
    assert!(json.ends_with(
        b"\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}"
    ));
    assert_eq!(s.on_upgrade_request(t0), Err(Error::UpgradeRefused));
}

#[test]
fn websocket_only_session() {
    let t0 = Instant::now();
    let mut s = session(Transport::WebSocket, config(), t0);
    let Some(Packet::Open(json)) = s.poll_transmit() else {
        panic!("open packet first");
    };
    assert!(json.starts_with(b"{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[],"));
    assert_eq!(s.on_get(t0), Err(Error::TransportMismatch));
    assert_eq!(s.on_upgrade_request(t0), Err(Error::UpgradeRefused));
    s.on_packet(Packet::Binary(Bytes::from_static(&[1])), t0)
        .unwrap();
    assert_eq!(events(&mut s), [Event::Binary(Bytes::from_static(&[1]))]);

    let err = s.on_packet(ping(), t0).unwrap_err();
    assert_eq!(err.close_code(), Some(1002));
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::Error(err))]);
    assert!(s.is_finished(), "the owner closes the WebSocket");
}

#[test]
fn oversized_websocket_message_closes_with_1009() {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        max_payload: 4,
        ..config()
    };
    let mut s = session(Transport::WebSocket, cfg, t0);
    let err = s
        .on_packet(Packet::Message(Bytes::from_static(b"12345")), t0)
        .unwrap_err();
    assert_eq!(
        (err, err.close_code()),
        (Error::PayloadTooLarge, Some(1009))
    );
}

#[test]
fn websocket_close_and_slow_consumer() {
    let t0 = Instant::now();
    let mut s = session(Transport::WebSocket, config(), t0);
    s.on_websocket_closed(t0);
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::TransportClose)]);
    assert!(s.is_finished());

    let mut s = polling(t0);
    s.on_get(t0).unwrap();
    s.on_slow_consumer(t0);
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::SlowConsumer)]);
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Close));
    assert_eq!(CloseReason::SlowConsumer.as_str(), "transport error");
}

#[test]
fn server_close_flushes_then_closes() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.close(t0);
    assert_eq!(events(&mut s), [Event::Closed(CloseReason::ServerClose)]);
    assert!(!s.is_finished());
    assert_eq!(post(&mut s, b"4x", t0), Err(Error::SessionClosed));
    // The queued data first, then the close packet on the next GET.
    s.on_get(t0).unwrap();
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Data));
    assert!(!s.is_finished());
    s.on_get(t0).unwrap();
    assert_eq!(s.poll_get(false, t0), Some(GetReply::Close));
    assert!(s.is_finished());
    assert_eq!(s.on_get(t0), Err(Error::SessionClosed));
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

#[test]
fn closed_session_transmits_nothing() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.on_tick(t0 + Duration::from_millis(300));
    s.close(t0 + Duration::from_millis(301));
    assert_eq!(transmitted(&mut s), [], "a pending ping is dropped");
    s.on_tick(t0 + Duration::from_secs(5));
    assert_eq!(transmitted(&mut s), []);
}

#[test]
fn errors_found_outside_close_the_session() {
    let t0 = Instant::now();
    let mut s = polling(t0);
    s.begin_post(t0).unwrap();
    let err = s.on_error(Error::PayloadTooLarge, t0);
    assert_eq!(err.http_status(), 413);
    assert_eq!(
        events(&mut s),
        [Event::Closed(CloseReason::Error(Error::PayloadTooLarge))]
    );
    assert_eq!(s.begin_post(t0), Err(Error::SessionClosed));
}

#[test]
fn get_after_the_probe_is_held_for_the_upgrade() {
    let t0 = Instant::now();
    let hold = Duration::from_millis(100);
    // The upgrade completes during the hold: refused, as any GET after the upgrade.
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.on_packet(Packet::probe_ping(), t0).unwrap();
    s.on_get(t0).unwrap();
    assert_eq!(s.get_deadline(), Some(t0 + hold));
    assert_eq!(s.poll_get(false, t0), None);
    s.on_packet(Packet::Upgrade, t0 + Duration::from_millis(1))
        .unwrap();
    assert_eq!(
        s.poll_get(false, t0 + Duration::from_millis(1)),
        Some(GetReply::Refused(Error::TransportMismatch))
    );
    assert_eq!(s.get_deadline(), None);

    // No upgrade within the hold: a noop, as for the GET pending at probe time.
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.on_packet(Packet::probe_ping(), t0).unwrap();
    s.on_get(t0).unwrap();
    assert_eq!(s.poll_get(false, t0 + hold), Some(GetReply::Noop));

    // The upgrade fails during the hold: the GET goes back to waiting for data.
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.on_packet(Packet::probe_ping(), t0).unwrap();
    s.on_get(t0).unwrap();
    s.on_websocket_closed(t0);
    assert_eq!(s.poll_get(false, t0 + hold), None);
    assert_eq!(s.poll_get(true, t0 + hold), Some(GetReply::Data));
}

#[test]
fn get_after_the_probe_takes_queued_packets_at_once() {
    let t0 = Instant::now();
    // Packets already queued when the GET arrives: answered with them, no hold.
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.on_packet(Packet::probe_ping(), t0).unwrap();
    s.on_get(t0).unwrap();
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Data));
    assert_eq!(s.get_deadline(), None);
    assert!(!s.is_get_pending());
    // The upgrade still completes after it.
    s.on_packet(Packet::Upgrade, t0).unwrap();
    assert_eq!(s.transport(), Transport::WebSocket);

    // Packets queued during the hold end it at once.
    let mut s = polling(t0);
    s.on_upgrade_request(t0).unwrap();
    s.on_packet(Packet::probe_ping(), t0).unwrap();
    s.on_get(t0).unwrap();
    assert_eq!(s.poll_get(false, t0), None, "held while nothing is queued");
    assert_eq!(s.poll_get(true, t0), Some(GetReply::Data));
}
