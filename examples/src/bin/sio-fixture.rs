//! `sio-fixture`: the Socket.IO server under test for the Socket.IO v5 protocol test suite
//! (`.ci/socketio-suites.sh`), on the public API of `roomcast-socketio`.
//!
//! Usage: `sio-fixture [ADDR...]` (default `127.0.0.1:3000` and `[::1]:3000`, as the suite
//! connects to `localhost:3000`). Path `/socket.io/`, pingInterval 300 ms, pingTimeout
//! 200 ms, maxPayload 1 000 000, connectTimeout 1 s, no connection state recovery.
//! Namespaces `/` and `/custom`: each socket gets `auth` with its `CONNECT` payload (`{}`
//! without one); `message` is answered with `message-back` and the same arguments;
//! `message-with-ack` is acknowledged with the same arguments. Prints
//! `listening on http://ADDR` per address once bound.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use roomcast_engine::driver::IoStats;
use roomcast_engine::rooms::RoomIndex;
use roomcast_socketio::engine::ticker;
use roomcast_socketio::{
    AckSender, Args, Config, ConnectError, NamespaceHandler, SocketIo, SocketRef,
};
use serde_json::value::RawValue;

/// The long-polling heartbeat clock's period: fine enough for a 300 ms ping interval
/// (WebSocket sessions keep their own deadlines).
const TICK: Duration = Duration::from_millis(20);

/// The behaviour the test suite expects of both namespaces.
#[derive(Debug)]
struct Fixture;

impl NamespaceHandler for Fixture {
    fn on_connect(
        &self,
        socket: &SocketRef,
        auth: Option<&RawValue>,
        _req: &Parts,
    ) -> Result<(), ConnectError> {
        let empty = serde_json::json!({});
        let sent = match auth {
            Some(auth) => socket.emit("auth", auth),
            None => socket.emit("auth", &empty),
        };
        if let Err(err) = sent {
            tracing::debug!(error = %err, "auth not sent");
        }
        Ok(())
    }

    fn on_event(&self, socket: &SocketRef, event: &str, args: Args, ack: Option<AckSender>) {
        let sent = match (event, ack) {
            ("message", _) => socket.emit_args("message-back", &args),
            ("message-with-ack", Some(ack)) => ack.send(&args),
            // Not part of the official suite: the server asks the client for an ack, then
            // reports what the client answered as `acked` (or `ack-failed`).
            ("ask-ack", _) => {
                let back = socket.clone();
                socket.emit_with_ack("question", &args, Duration::from_secs(2), move |res| {
                    let _ = match res {
                        Ok(answer) => back.emit_args("acked", &answer),
                        Err(e) => back.emit("ack-failed", &e.to_string()),
                    };
                });
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(err) = sent {
            tracing::debug!(error = %err, event, "answer not sent");
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    roomcast_examples::init_logging();
    let config = Config {
        path: "/socket.io/".to_owned(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        connect_timeout: Duration::from_millis(1000),
        recovery: false,
        ..Config::default()
    };
    let index = Arc::new(RoomIndex::new(64));
    let io = SocketIo::new(config, index, ticker(TICK), Arc::new(IoStats::default()));
    io.namespace("/", Arc::new(Fixture));
    io.namespace("/custom", Arc::new(Fixture));
    for listener in roomcast_examples::bind(std::env::args().skip(1).collect()).await? {
        tokio::spawn(io.clone().serve(listener));
    }
    tokio::signal::ctrl_c().await?;
    io.close_all("server shutting down");
    Ok(())
}
