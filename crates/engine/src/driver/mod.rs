//! The tokio glue that runs one upgraded WebSocket connection.
//!
//! One task per connection owns the socket, the [`Connection`] state machine, the
//! application [`Handler`] and the write backlog. Its future is written by hand: it polls
//! socket readiness, the outbound queue and one timer, armed for the next deadline of the
//! connection or the handler (heartbeat ping, idle timeout, close timeout, the application's
//! own), so an idle connection is woken only when something is due. It holds no read buffer
//! while idle. Reads are decoded and handed to the handler; writes are drained from the
//! queue in batches and written with one vectored write.
//!
//! The timer is an entry in the runtime's one timer wheel, kept inline in the task (no
//! allocation of its own), and moved only when a deadline comes earlier. A shared periodic
//! tick spares that entry, but it wakes every connection each period to find, nearly always,
//! nothing due: 100 ms of CPU per second per 10,000 idle connections,
//! in bursts that delayed deliveries (bench/analysis.md).
//!
//! - `handler`: the [`Handler`] trait, its [`Ctx`] and the [`End`] of a connection;
//! - `future`: the hand-written future that polls the socket, the queue and the timer;
//! - `deadline`: when the task must wake, and the floor that keeps it from spinning;
//! - `task`: reads decoded and handed to the handler, closes turned into close frames;
//! - `write`: the backlog written with vectored `send`s.

mod deadline;
mod future;
mod handler;
mod task;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::queue::OutQueue;
use crate::ws::{ConnConfig, Connection};
use deadline::{next_deadline, Alarm};
use future::Driver;
pub use handler::{Ctx, End, Handler};
use task::Task;

/// Driver settings shared by all connections.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The WebSocket connection settings (limits, heartbeat, close timeout).
    pub conn: ConnConfig,
    /// The close code and reason given to a slow consumer.
    pub slow_consumer: (u16, &'static str),
    /// The close code and reason given to a peer silent past the idle timeout.
    pub heartbeat_timeout: (u16, &'static str),
}

/// Traffic counters shared by all connections (read by metrics).
#[derive(Debug, Default)]
pub struct IoStats {
    /// Bytes read from sockets.
    pub bytes_in: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Messages received.
    pub messages_in: AtomicU64,
    /// Frames written.
    pub frames_out: AtomicU64,
    /// Sessions closed because their outgoing queue overflowed, counted by the layer above
    /// the driver that closes them whatever their transport (the Socket.IO runtime: its
    /// WebSocket and long-polling sessions alike). The driver itself counts none of them.
    pub slow_consumers: AtomicU64,
}

/// Everything one connection task needs besides its socket.
#[derive(Debug)]
pub struct Session<H> {
    /// The application handler.
    pub handler: H,
    /// The connection's outbound queue (also reachable by publishers through the room index).
    pub queue: Arc<OutQueue>,
    /// Shared settings.
    pub config: Arc<DriverConfig>,
    /// Shared counters.
    pub stats: Arc<IoStats>,
}

/// Runs a connection until it closes. `prefix` holds bytes read past the HTTP upgrade.
pub async fn run<H: Handler>(stream: TcpStream, prefix: Bytes, session: Session<H>) {
    let Session {
        handler,
        queue,
        config,
        stats,
    } = session;
    let now = Instant::now();
    let conn = Connection::new(config.conn.clone(), now);
    // Copy the bytes read past the upgrade and let go of hyper's read buffer: the prefix
    // usually points into an 8 KiB allocation that would otherwise live as long as the task.
    stats
        .bytes_in
        .fetch_add(prefix.len() as u64, Ordering::Relaxed);
    let rbuf = BytesMut::from(&prefix[..]);
    drop(prefix);
    let alarm = Alarm::new(next_deadline(&conn, &handler), now);
    // Pinned in this future's own state rather than boxed: no allocation of its own.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(alarm.armed().into()));
    let mut driver = Driver {
        alarm,
        stream,
        rbuf,
        handler,
        queue,
        config,
        stats,
        task: Task::new(conn),
    };
    let result = std::future::poll_fn(|cx| driver.poll_step(cx, timer.as_mut())).await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection i/o error");
    }
    driver.queue.release_driver();
    driver.handler.on_close(&driver.task.end);
}
