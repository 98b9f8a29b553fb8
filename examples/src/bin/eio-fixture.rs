//! `eio-fixture`: the Engine.IO server under test for the Engine.IO v4 protocol test suite
//! (`.ci/socketio-suites.sh`), on the Engine.IO layer of `roomcast-socketio` alone: every
//! message comes back as it came, text or binary.
//!
//! Usage: `eio-fixture [ADDR...]` (default `127.0.0.1:3000` and `[::1]:3000`, as the suite
//! connects to `localhost:3000`). Path `/engine.io/`, pingInterval 300 ms, pingTimeout
//! 200 ms, maxPayload 1 000 000. Prints `listening on http://ADDR` per address once bound.

use std::sync::Arc;
use std::time::Duration;

use roomcast_engine::driver::IoStats;
use roomcast_socketio::engine::{ticker, EngineConn, EngineHandler, EngineIo, Message};
use roomcast_socketio::engineio::CloseReason;
use roomcast_socketio::Config;

/// The long-polling heartbeat clock's period: fine enough for a 300 ms ping interval
/// (WebSocket sessions keep their own deadlines).
const TICK: Duration = Duration::from_millis(20);

/// Sends every message back.
#[derive(Debug)]
struct Echo;

impl EngineHandler for Echo {
    type State = ();

    fn on_open(&self, _conn: &EngineConn, _req: http::request::Parts) {}

    fn on_message(&self, _state: &mut (), conn: &EngineConn, message: Message) {
        let sent = match message {
            Message::Text(text) => conn.send_text(&text),
            Message::Binary(data) => conn.send_binary(data),
            _ => Ok(()),
        };
        if sent.is_err() {
            tracing::debug!(sid = %conn.sid(), "echo dropped: session closing");
        }
    }

    fn on_close(&self, _state: &mut (), conn: &EngineConn, reason: CloseReason) {
        tracing::debug!(sid = %conn.sid(), reason = reason.as_str(), "session closed");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    roomcast_examples::init_logging();
    let config = Config {
        path: "/engine.io/".to_owned(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        ..Config::default()
    };
    let eio = EngineIo::new(config, Echo, ticker(TICK), Arc::new(IoStats::default()));
    for listener in roomcast_examples::bind(std::env::args().skip(1).collect()).await? {
        tokio::spawn(eio.clone().serve(listener));
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
