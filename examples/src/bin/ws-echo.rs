//! `ws-echo`: a WebSocket echo server on the engine's public API, the server under test for
//! the Autobahn conformance run (`.ci/autobahn.sh`).
//!
//! Usage: `ws-echo [ADDR]` (default `127.0.0.1:9001`; port 0 picks a free one). Once bound it
//! prints `listening on ws://HOST:PORT` on stdout, so a script can start it on port 0 and read
//! the real port back. Every text and binary message is sent back unchanged; everything else
//! (fragmentation, control frames, UTF-8 checks, the close handshake) is the engine's job.
//! Log with `RUST_LOG=debug`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use roomcast_engine::driver::{self, Ctx, DriverConfig, End, Handler, IoStats, Session};
use roomcast_engine::ws::frame::{self, FrameLimits, OpCode};
use roomcast_engine::ws::ConnConfig;
use roomcast_engine::{OutQueue, QueueLimits};
use tokio::net::TcpListener;

const DEFAULT_ADDR: &str = "127.0.0.1:9001";
/// The `Server` header of the 101 response.
const AGENT: &str = "roomcast-ws-echo";
/// Autobahn sends messages of up to 16 MiB (cases 9.1.6 and 9.2.6); leave room above that.
const MAX_MESSAGE: usize = 32 << 20;

/// Echoes every data message back with the same opcode.
#[derive(Debug)]
struct Echo;

impl Handler for Echo {
    fn on_text(&mut self, text: Bytes, ctx: &mut Ctx<'_>) {
        ctx.send(frame::encoded(OpCode::Text, &text));
    }

    fn on_binary(&mut self, data: Bytes, ctx: &mut Ctx<'_>) {
        ctx.send(frame::encoded(OpCode::Binary, &data));
    }

    fn on_tick(&mut self, _ctx: &mut Ctx<'_>) {}

    fn on_close(&mut self, end: &End) {
        tracing::debug!(code = ?end.code, slow_consumer = end.slow_consumer, "connection closed");
    }
}

/// What every connection shares.
#[derive(Debug)]
struct Shared {
    driver: Arc<DriverConfig>,
    queue_limits: QueueLimits,
    stats: Arc<IoStats>,
}

fn shared() -> Shared {
    Shared {
        driver: Arc::new(DriverConfig {
            conn: ConnConfig {
                limits: FrameLimits {
                    max_frame: MAX_MESSAGE,
                    max_message: MAX_MESSAGE,
                },
                // The suite's slowest cases take seconds; no heartbeat may interfere.
                ping_interval: Duration::from_secs(60),
                idle_timeout: Duration::from_secs(120),
                close_timeout: Duration::from_secs(5),
            },
            slow_consumer: (4008, "slow consumer"),
            heartbeat_timeout: (4000, "heartbeat timeout"),
        }),
        // Case 9.x sends up to 1000 messages back to back, or single 16 MiB ones, before
        // reading any echo: the queue must hold a whole case.
        queue_limits: QueueLimits {
            max_messages: 4096,
            max_bytes: 256 << 20,
        },
        stats: Arc::new(IoStats::default()),
    }
}

/// Answers the upgrade request; the WebSocket connection runs in its own task once hyper
/// hands the socket over.
fn upgrade(shared: &Arc<Shared>, mut req: Request<Incoming>) -> Response<Empty<Bytes>> {
    let shared = shared.clone();
    let run = move |stream, prefix| async move {
        let session = Session {
            handler: Echo,
            queue: Arc::new(OutQueue::new(shared.queue_limits)),
            config: shared.driver.clone(),
            stats: shared.stats.clone(),
        };
        driver::run(stream, prefix, session).await;
    };
    match roomcast_engine::upgrade::upgrade(&mut req, run) {
        Ok(mut response) => {
            // Reports name the server under test after this header.
            response
                .headers_mut()
                .insert(SERVER, HeaderValue::from_static(AGENT));
            response
        }
        Err(e) => {
            tracing::debug!(error = %e, "upgrade refused");
            e.reject_response()
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    roomcast_examples::init_logging();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on ws://{local}")?;
        out.flush()?;
    }

    let shared = Arc::new(shared());

    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Echoes are small and latency-bound (the 9.x cases time round trips).
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = upgrade(&shared, req);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "http connection error");
            }
        });
    }
}
