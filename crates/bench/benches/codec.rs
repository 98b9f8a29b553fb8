//! Micro-benchmarks of the codecs on the hot paths: WebSocket frames (server encode, client
//! decode with unmasking), the native protocol (parsing client messages, encoding an event)
//! and Socket.IO (the Engine.IO packet and the Socket.IO packet, both directions).
//! Run with `cargo bench -p roomcast-bench --bench codec`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomcast_engine::ws::frame;
use roomcast_engine::ws::{FrameLimits, OpCode};
use roomcast_server::native::proto;
use roomcast_socketio::{engineio, socketio};
use serde_json::value::RawValue;

/// A 100-byte event payload, as the fan-out benchmark publishes.
const DATA: &str = r#"{"seq":123456,"t":1760000000123456789,"p":3,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_frame");
    for size in [100usize, 4096] {
        let payload = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("encode_server_{size}"), |b| {
            b.iter(|| frame::encoded(OpCode::Text, black_box(&payload)))
        });
        let mut masked = BytesMut::new();
        frame::encode_masked(OpCode::Text, true, &payload, [1, 2, 3, 4], &mut masked);
        let limits = FrameLimits::default();
        group.bench_function(format!("decode_client_{size}"), |b| {
            b.iter_batched_ref(
                || masked.clone(),
                |buf| frame::decode(buf, &limits),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn native(c: &mut Criterion) {
    let mut group = c.benchmark_group("native");
    let publish =
        format!(r#"{{"type":"publish","id":17,"room":"chat:7","event":"tick","data":{DATA}}}"#);
    let subscribe = r#"{"type":"subscribe","id":1,"room":"order:42","ns":"/dashboard"}"#;
    let ping = r#"{"type":"ping","id":5}"#;
    for (name, text) in [
        ("publish", publish.as_str()),
        ("subscribe", subscribe),
        ("ping", ping),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("parse_{name}"), |b| {
            b.iter(|| proto::parse(black_box(text.as_bytes())))
        });
    }
    let data = raw(DATA);
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_event", |b| {
        b.iter(|| {
            proto::encode_event(
                Some(black_box("bench")),
                "/",
                "tick",
                &data,
                black_box(17),
                "5f2a9c1e-1",
            )
        })
    });
    group.finish();
}

fn socket_io(c: &mut Criterion) {
    let mut group = c.benchmark_group("socketio");
    let event_text = format!(r#"2["tick",{DATA}]"#);
    let event_frame = format!("4{event_text}");
    group.throughput(Throughput::Bytes(event_frame.len() as u64));
    group.bench_function("engineio_decode_message", |b| {
        let frame = Bytes::from(event_frame.clone());
        b.iter(|| engineio::decode_text(black_box(frame.clone())))
    });
    group.bench_function("engineio_encode_message", |b| {
        let packet = engineio::Packet::Message(Bytes::from(event_text.clone()));
        b.iter(|| {
            let mut out = BytesMut::new();
            black_box(&packet).encode(&mut out);
            out
        })
    });
    group.bench_function("socketio_decode_event", |b| {
        b.iter(|| socketio::decode(black_box(event_text.as_bytes())))
    });
    let event = socketio::Packet::Event {
        nsp: socketio::MAIN_NAMESPACE.into(),
        id: None,
        data: raw(&format!(r#"["tick",{DATA}]"#)).into(),
    };
    group.bench_function("socketio_encode_event", |b| {
        b.iter(|| {
            let mut out = BytesMut::new();
            black_box(&event).encode(&mut out);
            out
        })
    });
    let connect = r#"0{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.sig"}"#;
    group.bench_function("socketio_decode_connect", |b| {
        b.iter(|| socketio::decode(black_box(connect.as_bytes())))
    });
    group.finish();
}

criterion_group!(benches, frames, native, socket_io);
criterion_main!(benches);
