//! The HTTP/1.1 upgrade to WebSocket over hyper: check the request, answer 101, and hand the
//! plain TCP stream to the caller once hyper lets go of it.

use std::future::Future;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::ws::handshake::{self, HandshakeError};

/// Checks an upgrade request and returns the 101 response to send. Once hyper has sent it,
/// `run` gets the TCP stream and the bytes hyper read past the request, in a task of its own.
///
/// The stream is taken back from hyper so that the connection driver can wait on socket
/// readiness without holding a read buffer. A connection that is not plain TCP (never the
/// case with [`hyper::server::conn::http1`] over a `TcpStream`) is logged and dropped.
pub fn upgrade<B, R, F, Fut>(
    req: &mut http::Request<B>,
    run: F,
) -> Result<http::Response<R>, HandshakeError>
where
    R: Default,
    F: FnOnce(TcpStream, Bytes) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let accept = handshake::check_request(req)?;
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
        };
        let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => parts,
            Err(_) => return tracing::error!("upgraded connection is not a TCP stream"),
        };
        match reregister(parts.io.into_inner()) {
            Ok(stream) => run(stream, parts.read_buf).await,
            Err(e) => tracing::debug!(error = %e, "upgraded stream could not be registered"),
        }
    });
    Ok(handshake::response(accept))
}

/// Registers the stream with the reactor afresh. The registration hyper used still holds the
/// waker of the HTTP/1 task that served the upgrade, which keeps that finished task allocated
/// until the socket next becomes readable: never, for an idle subscriber. Two `epoll_ctl`
/// calls per connection free it.
fn reregister(stream: TcpStream) -> std::io::Result<TcpStream> {
    TcpStream::from_std(stream.into_std()?)
}
