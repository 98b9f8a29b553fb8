//! Integration tests of the connection driver over loopback TCP: hyper upgrades, the driver
//! runs the connection, tokio-tungstenite or a raw TCP client plays the peer.
//!
//! Tests assert behaviour (messages, frames, close codes, counters), never durations. The two
//! tests that need the heartbeat let real time pass, because the driver reads the clock
//! itself; their margins are wide and they assert outcomes, not timings.

// A failed expectation in a test is a panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use roomcast_engine::driver::{self, Ctx, End, Handler, IoStats, Session};
use roomcast_engine::ws::{frame, OpCode};
use roomcast_engine::{CloseRequest, OutQueue, Outbound, PushError, QueueLimits};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use common::{
    config, masked, within, ws_connect, ws_connect_tight, ws_drain, ws_next, RawClient, Seen,
    ServerFrame, TestServer, HEARTBEAT_TIMEOUT, SLOW_CONSUMER,
};

const KIB: usize = 1024;

async fn server(max_frame: usize, max_message: usize) -> TestServer {
    TestServer::start(config(max_frame, max_message), QueueLimits::default()).await
}

fn end(code: u16) -> Seen {
    Seen::Closed(End {
        code: Some(code),
        slow_consumer: false,
    })
}

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// Bytes whose position shows in their value, so a shifted or spliced payload cannot pass.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn echoes_text_binary_and_pre_encoded_frames() {
    let mut server = server(256 * KIB, 256 * KIB).await;
    let mut ws = ws_connect(server.addr).await;
    let mut conn = server.accept().await;

    // Outbound::Text, 7-bit and 16-bit lengths.
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("hello"));
    assert_eq!(conn.next().await, Seen::text("hello"));
    let accents = "é".repeat(600);
    ws.send(Message::text(accents.as_str())).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text(accents.as_str()));
    assert_eq!(conn.next().await, Seen::text(&accents));

    // Outbound::Binary, 7-bit and 64-bit lengths.
    ws.send(Message::binary(vec![0, 1, 2, 255])).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::binary(vec![0, 1, 2, 255]));
    assert_eq!(
        conn.next().await,
        Seen::Binary(Bytes::from_static(&[0, 1, 2, 255]))
    );
    let big = pattern(100 * KIB);
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::binary(big.clone()));
    assert_eq!(conn.next().await, Seen::Binary(big.into()));

    // Outbound::Frame, encoded by the handler: short, then past 64 KiB.
    ws.send(Message::text("!frame pre-encoded")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("pre-encoded"));
    assert_eq!(conn.next().await, Seen::text("!frame pre-encoded"));
    let long = "x".repeat(70 * KIB);
    ws.send(Message::text(format!("!frame {long}")))
        .await
        .unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text(long.as_str()));
    assert_eq!(conn.next().await, Seen::text(&format!("!frame {long}")));

    ws.close(None).await.unwrap();
    ws_drain(&mut ws).await;
    // An empty close frame carries no code.
    assert_eq!(
        conn.end().await,
        End {
            code: None,
            slow_consumer: false
        }
    );
}

#[tokio::test]
async fn reassembles_fragmented_messages() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    let mut client = RawClient::connect(server.addr).await;
    let mut conn = server.accept().await;

    // Text in three fragments with a ping between them (control frames may interleave).
    let mut wire = masked(OpCode::Text, false, b"Hel");
    wire.extend(masked(OpCode::Ping, true, b"p"));
    wire.extend(masked(OpCode::Continuation, false, b"l"));
    wire.extend(masked(OpCode::Continuation, true, b"o"));
    client.send(&wire).await;
    assert_eq!(conn.next().await, Seen::text("Hello"));
    // The pong was owed before the message arrived, so it leaves before the answer.
    assert_eq!(
        client.frame().await,
        Some(ServerFrame {
            fin: true,
            opcode: OpCode::Pong,
            payload: Bytes::from_static(b"p"),
        })
    );
    assert_eq!(client.frame().await, Some(ServerFrame::text("Hello")));

    // Binary in fragments, one of them written in two pieces that split its header.
    let data = pattern(3000);
    client
        .send(&masked(OpCode::Binary, false, &data[..1000]))
        .await;
    let middle = masked(OpCode::Continuation, false, &data[1000..2000]);
    client.send(&middle[..3]).await;
    client.send(&middle[3..]).await;
    client
        .send(&masked(OpCode::Continuation, true, &data[2000..]))
        .await;
    assert_eq!(conn.next().await, Seen::Binary(data.clone().into()));
    assert_eq!(
        client.frame().await,
        Some(ServerFrame {
            fin: true,
            opcode: OpCode::Binary,
            payload: data.into(),
        })
    );

    // A clean close: the server echoes the code and hangs up.
    client
        .send(&masked(OpCode::Close, true, &1000u16.to_be_bytes()))
        .await;
    assert_eq!(
        client.frames_to_end().await,
        vec![ServerFrame::close(1000, "")]
    );
    assert_eq!(conn.next().await, end(1000));
}

#[tokio::test]
async fn frames_sent_with_the_handshake_are_not_lost() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    // The message rides in the same write as the upgrade request, so hyper may read it
    // along with the request: the driver gets it as the upgrade prefix.
    let early = masked(OpCode::Text, true, b"early");
    let mut client = RawClient::connect_with(server.addr, &early, false).await;
    let mut conn = server.accept().await;
    assert_eq!(conn.next().await, Seen::text("early"));
    assert_eq!(client.frame().await, Some(ServerFrame::text("early")));
}

#[tokio::test]
async fn bytes_in_counts_frames_read_with_the_upgrade() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    let early = masked(OpCode::Text, true, b"early");
    let mut client = RawClient::connect_with(server.addr, &early, false).await;
    let mut conn = server.accept().await;
    assert_eq!(conn.next().await, Seen::text("early"));
    assert_eq!(client.frame().await, Some(ServerFrame::text("early")));
    // Whoever read them from the socket, these are the only bytes the client sent after
    // its request.
    assert_eq!(
        server.stats.bytes_in.load(Ordering::Relaxed),
        early.len() as u64
    );
}

#[tokio::test]
async fn close_request_sends_queued_frames_then_last_message_then_close() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    let mut ws = ws_connect(server.addr).await;
    let mut conn = server.accept().await;

    // A publisher (the HTTP API, shutdown) holds the queue, not the handler.
    conn.queue
        .push(Outbound::Text(Bytes::from_static(b"first")))
        .unwrap();
    conn.queue
        .push(Outbound::Binary(Bytes::from_static(b"second")))
        .unwrap();
    conn.queue.request_close(CloseRequest {
        code: 4004,
        reason: "disconnected".into(),
        last_message: Some(Outbound::Text(Bytes::from_static(b"last"))),
    });
    assert!(matches!(
        conn.queue.push(Bytes::from_static(b"too late")),
        Err(PushError::Closed(_))
    ));

    assert_eq!(ws_next(&mut ws).await, Message::text("first"));
    assert_eq!(ws_next(&mut ws).await, Message::binary(&b"second"[..]));
    assert_eq!(ws_next(&mut ws).await, Message::text("last"));
    assert_eq!(ws_next(&mut ws).await, close_message(4004, "disconnected"));
    ws_drain(&mut ws).await;
    assert_eq!(conn.next().await, end(4004));
}

#[tokio::test]
async fn close_request_with_nothing_queued_sends_the_close_frame() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    let mut client = RawClient::connect(server.addr).await;
    let mut conn = server.accept().await;
    conn.queue.request_close(CloseRequest {
        code: 1001,
        reason: "going away".into(),
        last_message: None,
    });
    assert_eq!(
        client.frame().await,
        Some(ServerFrame::close(1001, "going away"))
    );
    client
        .send(&masked(OpCode::Close, true, &1001u16.to_be_bytes()))
        .await;
    assert_eq!(client.frames_to_end().await, vec![]);
    assert_eq!(conn.next().await, end(1001));
}

#[tokio::test]
async fn end_code_stays_the_one_sent_when_the_peer_errs_while_closing() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    let mut client = RawClient::connect(server.addr).await;
    let mut conn = server.accept().await;
    conn.queue.request_close(CloseRequest {
        code: 4004,
        reason: "disconnected".into(),
        last_message: None,
    });
    assert_eq!(
        client.frame().await,
        Some(ServerFrame::close(4004, "disconnected"))
    );
    // Instead of answering the close, an unmasked frame: the server just hangs up.
    client.send(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(client.frames_to_end().await, vec![]);
    // `End::code` is "the close code sent or received": 4004 was sent, 1002 never was.
    assert_eq!(conn.next().await, end(4004));
}

#[tokio::test]
async fn pong_is_not_starved_by_a_busy_queue() {
    // Small socket buffers on both sides make every 16 KiB frame wait for the client to read,
    // so the queue is refilled while the driver waits to write; the publisher keeps 16
    // frames in flight. (Deterministic on this single-threaded runtime: the 16 frames are
    // queued before the driver gets to read the ping.)
    const FRAMES: usize = 200;
    let mut server =
        TestServer::start_tight(config(64 * KIB, 64 * KIB), QueueLimits::default()).await;
    let mut ws = ws_connect_tight(server.addr).await;
    let conn = server.accept().await;
    let frame = frame::encoded(OpCode::Binary, &pattern(16 * KIB));

    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    for _ in 0..16 {
        conn.queue.push(frame.clone()).unwrap();
    }
    let (mut pushed, mut received, mut pong_after) = (16, 0, None);
    while received < pushed || pong_after.is_none() {
        match ws_next(&mut ws).await {
            Message::Binary(data) => {
                assert_eq!(data.len(), 16 * KIB);
                received += 1;
                if pushed < FRAMES {
                    conn.queue.push(frame.clone()).unwrap();
                    pushed += 1;
                }
            }
            Message::Pong(payload) => {
                assert_eq!(payload, &b"are you there"[..]);
                pong_after = Some(received);
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    let pong_after = pong_after.unwrap();
    assert!(
        pong_after <= FRAMES / 2,
        "the pong waited behind {pong_after} of {FRAMES} data frames"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_without_blocking_others() {
    let limits = QueueLimits {
        max_messages: 64,
        max_bytes: 512 * KIB,
    };
    let mut server = TestServer::start(config(64 * KIB, 64 * KIB), limits).await;
    let mut slow = ws_connect(server.addr).await;
    let mut slow_conn = server.accept().await;
    let mut fast = ws_connect(server.addr).await;
    let mut fast_conn = server.accept().await;

    // A publisher pushes large frames to a client that reads nothing, encoded once. Between
    // pushes the other client gets an echo, so the slow connection's writer has all the
    // time it needs: the queue fills only because the socket does.
    let payload = Bytes::from(pattern(60 * KIB));
    let shared = frame::encoded(OpCode::Binary, &payload);
    let mut pushed = 0usize;
    loop {
        match slow_conn.queue.push(shared.clone()) {
            Ok(()) => pushed += 1,
            Err(PushError::Full(_)) => break,
            Err(other) => panic!("the queue refused a frame before overflowing: {other:?}"),
        }
        // Socket buffers hold a few MiB at most; 100 times that means the writer never
        // blocked.
        assert!(pushed < 5_000, "the queue never filled");
        let text = format!("still here {pushed}");
        fast.send(Message::text(text.as_str())).await.unwrap();
        assert_eq!(ws_next(&mut fast).await, Message::text(text.as_str()));
        assert_eq!(fast_conn.next().await, Seen::text(&text));
    }

    // The slow client reads at last: whole frames, the farewell, then the close. What was
    // still queued at the overflow is dropped.
    let mut received = 0usize;
    loop {
        match ws_next(&mut slow).await {
            Message::Binary(data) => {
                assert_eq!(data, payload, "frame {received} arrived damaged");
                received += 1;
            }
            Message::Text(text) => {
                assert_eq!(text.as_str(), "farewell 4008 slow consumer");
                break;
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert!(received < pushed, "{received} of {pushed} frames arrived");
    assert_eq!(
        ws_next(&mut slow).await,
        close_message(SLOW_CONSUMER, "slow consumer")
    );
    ws_drain(&mut slow).await;
    assert_eq!(
        slow_conn.next().await,
        Seen::Closed(End {
            code: Some(SLOW_CONSUMER),
            slow_consumer: true,
        })
    );

    // The other connection is unaffected.
    fast.send(Message::text("after")).await.unwrap();
    assert_eq!(ws_next(&mut fast).await, Message::text("after"));
    assert_eq!(fast_conn.next().await, Seen::text("after"));
}

#[tokio::test]
async fn heartbeat_keeps_answering_peers_and_drops_silent_ones() {
    // Each connection's own timer drives its heartbeat, so real time has to pass. The idle
    // timeout is twenty pings wide: a peer that answers pings outlives any plausible
    // scheduling delay, and the test asserts only who stays and who goes.
    let tick_every = Duration::from_millis(50);
    let mut config = config(64 * KIB, 64 * KIB);
    config.conn.ping_interval = tick_every;
    config.conn.idle_timeout = tick_every * 20;
    let mut server = TestServer::start(config, QueueLimits::default()).await;

    let live = ws_connect(server.addr).await;
    let mut live_conn = server.accept().await;
    let mut silent = RawClient::connect(server.addr).await;
    let mut silent_conn = server.accept().await;

    // tungstenite answers pings while it reads; this task keeps it reading.
    let (mut live_tx, mut live_rx) = live.split();
    let (seen_tx, mut live_seen) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = live_rx.next().await {
            if seen_tx.send(message).is_err() {
                break;
            }
        }
    });

    let silent_end = within("the silent peer to time out", async {
        loop {
            tokio::time::sleep(tick_every).await;
            if let Some(seen) = silent_conn.try_next() {
                break seen;
            }
        }
    })
    .await;
    assert_eq!(silent_end, end(HEARTBEAT_TIMEOUT));

    // The silent peer was pinged, then told why it is being dropped.
    let frames = silent.frames_to_end().await;
    let (last, rest) = frames.split_last().expect("frames before the hang-up");
    let (farewell, pings) = rest.split_last().expect("a farewell before the close");
    assert!(!pings.is_empty());
    for ping in pings {
        assert_eq!(ping.opcode, OpCode::Ping);
        assert!(ping.payload.is_empty());
    }
    assert_eq!(
        *farewell,
        ServerFrame::text("farewell 4000 heartbeat timeout")
    );
    assert_eq!(
        *last,
        ServerFrame::close(HEARTBEAT_TIMEOUT, "heartbeat timeout")
    );

    // The answering peer was pinged too, and is still connected.
    assert_eq!(live_conn.try_next(), None);
    live_tx.send(Message::text("still here")).await.unwrap();
    let mut pings = 0;
    loop {
        match within("the echo", live_seen.recv()).await.unwrap() {
            Message::Ping(_) => pings += 1,
            Message::Text(text) if text.as_str() == "still here" => break,
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert!(pings > 0);
    assert_eq!(live_conn.next().await, Seen::text("still here"));
    live_tx.send(close_message(1000, "")).await.unwrap();
    within("the reader to finish", reader).await.unwrap();
    assert_eq!(live_conn.next().await, end(1000));
}

#[tokio::test]
async fn pongs_owed_to_a_peer_that_does_not_read_are_bounded() {
    // A client sends 8192 pings and reads nothing until it is done. The server may stop
    // reading, answer only some of the pings, or close the client as a slow consumer; it
    // may not keep a pong for every ping it read, because those pile up in memory for as
    // long as the peer keeps sending.
    let tick_every = Duration::from_millis(50);
    let mut config = config(64 * KIB, 64 * KIB);
    config.conn.idle_timeout = tick_every * 20;
    config.conn.close_timeout = tick_every * 20;
    let limits = QueueLimits {
        max_messages: 64,
        max_bytes: 64 * KIB,
    };
    let mut server = TestServer::start_tight(config, limits).await;
    let client = RawClient::connect_with(server.addr, &[], true).await;
    let mut conn = server.accept().await;

    // Pings with the largest payload allowed, so that each pong is as large as its ping:
    // 1 MiB of them, some thirty times what the small socket buffers on both sides hold.
    const PINGS: usize = 8192;
    let payload = [0x50; 125];
    let chunk = masked(OpCode::Ping, true, &payload).repeat(32);
    let mut flood = tokio::spawn(async move {
        let mut client = client;
        for _ in 0..PINGS / 32 {
            if client.try_send(&chunk).await.is_err() {
                break;
            }
        }
        client
    });
    let mut client = within("the flood to end", &mut flood).await.unwrap();

    // Now read everything, until the server hangs up (idle or close timeout).
    let mut reader = tokio::spawn(async move { client.frames_to_end().await });
    let frames = within("the server to hang up", &mut reader).await.unwrap();
    let pongs = frames.iter().filter(|f| f.opcode == OpCode::Pong).count();
    for pong in frames.iter().filter(|f| f.opcode == OpCode::Pong) {
        assert_eq!(pong.payload, payload.as_slice());
    }
    // What the socket buffers held, plus what the connection or the queue may owe.
    assert!(
        pongs < PINGS / 8,
        "{pongs} pongs owed to a peer that read none of them"
    );
    let Seen::Closed(end) = conn.next().await else {
        panic!("the handler saw a message");
    };
    assert!(
        matches!(end.code, Some(SLOW_CONSUMER | HEARTBEAT_TIMEOUT)),
        "{end:?}"
    );
}

/// Sends `wire` from a raw client and returns the frames up to the hang-up and how the
/// handler saw the end.
async fn after_sending(server: &mut TestServer, wire: &[u8]) -> (Vec<ServerFrame>, Vec<Seen>) {
    let mut client = RawClient::connect(server.addr).await;
    let mut conn = server.accept().await;
    client.send(wire).await;
    let frames = client.frames_to_end().await;
    let mut seen = Vec::new();
    loop {
        let event = conn.next().await;
        let done = matches!(event, Seen::Closed(_));
        seen.push(event);
        if done {
            return (frames, seen);
        }
    }
}

#[tokio::test]
async fn unmasked_frame_is_a_protocol_error() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    // The message before the bad frame is still answered, before the close.
    let mut wire = masked(OpCode::Text, true, b"ok");
    wire.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    let (frames, seen) = after_sending(&mut server, &wire).await;
    assert_eq!(
        frames,
        vec![
            ServerFrame::text("ok"),
            ServerFrame::close(1002, "client frame is not masked"),
        ]
    );
    assert_eq!(seen, vec![Seen::text("ok"), end(1002)]);
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    let (frames, seen) =
        after_sending(&mut server, &masked(OpCode::Text, true, &[0xC3, 0x28])).await;
    assert_eq!(frames, vec![ServerFrame::close(1007, "invalid UTF-8")]);
    assert_eq!(seen, vec![end(1007)]);

    // Split across fragments: the first is a valid start of a character, the second breaks it.
    let mut wire = masked(OpCode::Text, false, &[b'a', 0xE2, 0x82]);
    wire.extend(masked(OpCode::Continuation, true, b"("));
    let (frames, seen) = after_sending(&mut server, &wire).await;
    assert_eq!(frames, vec![ServerFrame::close(1007, "invalid UTF-8")]);
    assert_eq!(seen, vec![end(1007)]);
}

#[tokio::test]
async fn oversized_frame_or_message_closes_with_1009() {
    let mut server = server(KIB, KIB).await;
    // Only the header of a 2000-byte frame: it is refused before any payload arrives.
    let mut header = masked(OpCode::Binary, true, &[0; 2000]);
    header.truncate(8);
    let (frames, seen) = after_sending(&mut server, &header).await;
    assert_eq!(frames, vec![ServerFrame::close(1009, "frame too large")]);
    assert_eq!(seen, vec![end(1009)]);

    // Two fragments, each within the frame limit, together over the message limit.
    let mut wire = masked(OpCode::Binary, false, &[1; 600]);
    wire.extend(masked(OpCode::Continuation, true, &[2; 600]));
    let (frames, seen) = after_sending(&mut server, &wire).await;
    assert_eq!(frames, vec![ServerFrame::close(1009, "message too large")]);
    assert_eq!(seen, vec![end(1009)]);
}

#[tokio::test]
async fn handler_close_follows_frames_queued_before_it() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    let mut ws = ws_connect(server.addr).await;
    let mut conn = server.accept().await;

    // Sent together: the handler closes while answering the third, and the fourth, if it
    // reaches the handler at all, gets no answer after the close frame.
    for text in ["one", "two", "!close 4001 bye", "three"] {
        ws.feed(Message::text(text)).await.unwrap();
    }
    ws.flush().await.unwrap();

    assert_eq!(ws_next(&mut ws).await, Message::text("one"));
    assert_eq!(ws_next(&mut ws).await, Message::text("two"));
    assert_eq!(ws_next(&mut ws).await, Message::text("closing"));
    assert_eq!(ws_next(&mut ws).await, close_message(4001, "bye"));
    ws_drain(&mut ws).await;

    assert_eq!(conn.next().await, Seen::text("one"));
    assert_eq!(conn.next().await, Seen::text("two"));
    assert_eq!(conn.next().await, Seen::text("!close 4001 bye"));
    let mut last = conn.next().await;
    if last == Seen::text("three") {
        last = conn.next().await;
    }
    assert_eq!(last, end(4001));
}

#[tokio::test]
async fn io_stats_count_traffic() {
    let mut server = server(64 * KIB, 64 * KIB).await;
    let mut ws = ws_connect(server.addr).await;
    let mut conn = server.accept().await;

    let messages = [
        Message::text("a"),
        Message::text("bb"),
        Message::binary(vec![1, 2, 3]),
    ];
    for message in &messages {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(ws_next(&mut ws).await, *message);
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    ws_drain(&mut ws).await;
    for _ in &messages {
        assert!(!matches!(conn.next().await, Seen::Closed(_)));
    }
    assert_eq!(conn.next().await, end(1000));

    let stats = &server.stats;
    assert_eq!(stats.messages_in.load(Ordering::Relaxed), 3);
    // Three echoes (2-byte headers) and the 4-byte close reply.
    assert_eq!(stats.frames_out.load(Ordering::Relaxed), 4);
    assert_eq!(
        stats.bytes_out.load(Ordering::Relaxed),
        (2 + 1) + (2 + 2) + (2 + 3) + 4
    );
    // Client frames carry a 2-byte header and a 4-byte mask. Each message after the first
    // was sent after an answer, so certainly reached the driver's own reads.
    let client_bytes = (6 + 1) + (6 + 2) + (6 + 3) + (6 + 2);
    let bytes_in = stats.bytes_in.load(Ordering::Relaxed);
    assert!(
        ((6 + 2) + (6 + 3) + (6 + 2)..=client_bytes).contains(&bytes_in),
        "bytes_in = {bytes_in}"
    );
}

/// A handler whose deadline stays in the past: it never acts on it.
struct Stuck {
    ticks: Arc<AtomicUsize>,
    since: Instant,
}

impl Handler for Stuck {
    fn on_text(&mut self, _text: Bytes, _ctx: &mut Ctx<'_>) {}
    fn on_binary(&mut self, _data: Bytes, _ctx: &mut Ctx<'_>) {}
    fn on_tick(&mut self, _ctx: &mut Ctx<'_>) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }
    fn deadline(&self) -> Option<Instant> {
        Some(self.since)
    }
    fn on_close(&mut self, _end: &End) {}
}

#[tokio::test]
async fn a_deadline_nobody_acts_on_does_not_spin() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let session = Session {
        handler: Stuck {
            ticks: ticks.clone(),
            since: Instant::now(),
        },
        queue: Arc::new(OutQueue::new(QueueLimits::default())),
        config: Arc::new(config(64 * KIB, 64 * KIB)),
        stats: Arc::new(IoStats::default()),
    };
    let task = tokio::spawn(driver::run(stream, Bytes::new(), session));
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(client);
    within("the driver to see the end of the stream", task)
        .await
        .unwrap();
    // Ticked, but at most once per few milliseconds rather than as fast as it can.
    let ticks = ticks.load(Ordering::Relaxed);
    assert!((1..=60).contains(&ticks), "{ticks} ticks in 200 ms");
}

#[tokio::test]
async fn a_slow_command_stalls_neither_its_connection_nor_others() {
    // Heartbeat pings every 50 ms: the client sees some while its slow command waits.
    let tick_every = Duration::from_millis(50);
    let mut config = config(64 * KIB, 64 * KIB);
    config.conn.ping_interval = tick_every;
    config.conn.idle_timeout = tick_every * 40;
    let mut server = TestServer::start(config, QueueLimits::default()).await;
    let mut a = ws_connect(server.addr).await;
    let _a_conn = server.accept().await;
    let mut b = ws_connect(server.addr).await;
    let _b_conn = server.accept().await;

    // Two slow commands fill this connection's share of the lane; a third is refused at once.
    for text in ["!slow 800 one", "!slow 800 two", "!slow 1 three", "hello"] {
        a.send(Message::text(text)).await.unwrap();
    }
    let mut texts = Vec::new();
    let mut pings_while_waiting = 0;
    while texts.len() < 4 {
        match ws_next(&mut a).await {
            Message::Text(t) => texts.push(t.to_string()),
            Message::Ping(_) if texts.len() < 3 => pings_while_waiting += 1,
            _ => {}
        }
        if texts.len() == 2 {
            // Another connection is answered while this one's commands wait.
            b.send(Message::text("hi")).await.unwrap();
            assert_eq!(ws_next_text(&mut b).await, "hi");
        }
    }
    // Inline answers come in order, before the waiting commands' answers.
    assert_eq!(texts[..2], ["busy three", "hello"]);
    let mut done = texts[2..].to_vec();
    done.sort();
    assert_eq!(done, ["one", "two"]);
    assert!(
        pings_while_waiting > 0,
        "the heartbeat ran while commands waited"
    );

    // Past the lane's timeout the command is dropped and answered as timed out; the
    // connection goes on.
    a.send(Message::text("!slow 60000 late")).await.unwrap();
    assert_eq!(ws_next_text(&mut a).await, "timeout late");
    a.send(Message::text("after")).await.unwrap();
    assert_eq!(ws_next_text(&mut a).await, "after");
}

/// The next text message, skipping control frames.
async fn ws_next_text(ws: &mut common::Ws) -> String {
    loop {
        if let Message::Text(t) = ws_next(ws).await {
            return t.to_string();
        }
    }
}
