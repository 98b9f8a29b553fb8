//! A minimal HTTP/1.1 server for an endpoint that has the listener to itself (examples,
//! tests, conformance fixtures): every connection served with upgrades, the endpoint's paths
//! routed to it, 404 for anything else. A real server routes to
//! [`EngineIo::handle`](super::EngineIo::handle) from its own accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{ClientAddr, Resp};

/// How long a client has to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` with `handle` until accepting fails for good.
pub(crate) async fn serve<F, Fut>(listener: TcpListener, handle: F) -> io::Result<()>
where
    F: Fn(::http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Resp>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) if is_transient(&err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: ::http::Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer.ip()));
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await.unwrap_or_else(not_found)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, %peer, "http connection error");
            }
        });
    }
}

fn not_found() -> Resp {
    let mut resp = Resp::default();
    *resp.status_mut() = ::http::StatusCode::NOT_FOUND;
    resp
}

/// Errors after which accepting can go on.
fn is_transient(err: &io::Error) -> bool {
    !matches!(
        err.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied
    )
}

/// Starts a heartbeat clock for long-polling sessions, ticking every `period` (on the current
/// tokio runtime), and returns its receiver, for endpoints that have no server clock to share. The task ends
/// when every receiver is gone.
pub fn ticker(period: Duration) -> tokio::sync::watch::Receiver<std::time::Instant> {
    let (tx, rx) = tokio::sync::watch::channel(std::time::Instant::now());
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            if tx.send(std::time::Instant::now()).is_err() {
                return;
            }
        }
    });
    rx
}
