//! The hand-written future of one connection's task: it polls socket readiness, the outbound
//! queue and the one timer, and runs until the connection is over or nothing can progress
//! without a wake-up.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::deadline::{next_deadline, Alarm};
use super::task::Task;
use super::{Ctx, DriverConfig, Handler, IoStats};
use crate::queue::OutQueue;
use crate::ws::TickAction;

/// Bytes read per readiness event; the buffer exists only while a read is being decoded.
const READ_CHUNK: usize = 4096;

/// One connection's task state, but for its timer.
pub(super) struct Driver<H> {
    /// When the timer is set for.
    pub(super) alarm: Alarm,
    pub(super) stream: TcpStream,
    /// Bytes read and not yet decoded; empty and unallocated while idle.
    pub(super) rbuf: BytesMut,
    pub(super) handler: H,
    pub(super) queue: Arc<OutQueue>,
    pub(super) config: Arc<DriverConfig>,
    pub(super) stats: Arc<IoStats>,
    pub(super) task: Task,
}

impl<H: Handler> Driver<H> {
    /// Runs until the connection is over (`Ready`) or nothing can progress without a
    /// wake-up (`Pending`, with every source of one registered).
    pub(super) fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<io::Result<()>> {
        let Driver {
            alarm,
            stream,
            rbuf,
            handler,
            queue,
            config,
            stats,
            task,
        } = self;
        loop {
            let now = Instant::now();
            if task.prepare(rbuf, handler, queue, config, stats, now) {
                return Poll::Ready(Ok(()));
            }
            let mut progress = false;
            if !task.pending.is_empty() {
                if let Poll::Ready(ready) = stream.poll_write_ready(cx) {
                    ready?;
                    task.write(stream, stats)?;
                    progress = true;
                }
            }
            if !task.eof {
                if let Poll::Ready(ready) = stream.poll_read_ready(cx) {
                    ready?;
                    rbuf.reserve(READ_CHUNK);
                    match stream.try_read_buf(rbuf) {
                        Ok(0) => task.eof = true,
                        Ok(n) => {
                            stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                    progress = true;
                }
            }
            if task.draining && queue.poll_notified(cx).is_ready() {
                progress = true;
            }
            alarm.lower(next_deadline(&task.conn, handler), timer.as_mut());
            if timer.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                if task.conn.on_tick(now) == TickAction::TimedOut {
                    task.timed_out(stream, handler, config, now);
                    return Poll::Ready(Ok(()));
                }
                let mut ctx = Ctx::new(queue, now);
                handler.on_tick(&mut ctx);
                task.apply_close(ctx.into_close(), queue);
                alarm.fired(now, next_deadline(&task.conn, handler), timer.as_mut());
                progress = true;
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}
