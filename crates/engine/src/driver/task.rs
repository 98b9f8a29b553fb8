//! A connection's state between wake-ups: the WebSocket [`Connection`], the backlog of frames
//! taken from the outbound queue, and how the connection is ending. Reads are decoded and
//! handed to the handler here; closes asked by the handler, the queue or the heartbeat are
//! turned into close frames behind what was queued before them.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::write::wire_parts;
use super::{Ctx, DriverConfig, End, Handler, IoStats};
use crate::queue::{CloseRequest, OutQueue, Outbound};
use crate::ws::{Connection, Event};

/// One connection's state, but for its socket, read buffer, handler and timer.
pub(super) struct Task {
    pub(super) conn: Connection,
    /// Frames taken from the queue (and control frames), not yet fully written.
    pub(super) pending: VecDeque<Outbound>,
    /// Bytes of `pending[0]` already written, its frame header included.
    pub(super) written: usize,
    /// Whether frames are still taken from the queue (false once closing).
    pub(super) draining: bool,
    /// The peer closed its side of the TCP connection.
    pub(super) eof: bool,
    pub(super) end: End,
}

impl Task {
    /// A fresh connection: nothing written, draining its queue.
    pub(super) fn new(conn: Connection) -> Task {
        Task {
            conn,
            pending: VecDeque::new(),
            written: 0,
            draining: true,
            eof: false,
            end: End {
                code: None,
                slow_consumer: false,
            },
        }
    }

    /// Decodes what was read and gathers what is to be written. True when the connection
    /// is over: closed or at end of stream, with nothing left to write.
    pub(super) fn prepare<H: Handler>(
        &mut self,
        rbuf: &mut BytesMut,
        handler: &mut H,
        queue: &OutQueue,
        config: &DriverConfig,
        stats: &IoStats,
        now: Instant,
    ) -> bool {
        if !rbuf.is_empty() {
            self.decode(rbuf, handler, queue, now, stats);
        }
        if rbuf.is_empty() && rbuf.capacity() > 0 {
            // Idle connections hold no read buffer.
            *rbuf = BytesMut::new();
        }
        // Control frames wait in the connection (which bounds them) until the backlog is
        // written: a peer that sends pings but never reads cannot grow the backlog. Taken
        // before the queue, so a busy queue cannot starve pongs and heartbeat pings.
        self.take_control();
        // A writer blocked by a client that does not read must still see an overflow or a
        // close request, or the slow consumer would never be closed. Once the queue is
        // closing nothing more enters it, so moving it onto the backlog stays bounded.
        if self.draining && (self.pending.is_empty() || queue.is_closing()) {
            self.take_queue(queue, config, handler, now);
        }
        // A close taken from the queue queues its close frame: send it now if nothing is
        // waiting.
        self.take_control();
        self.pending.is_empty() && (self.conn.is_closed() || self.eof)
    }

    fn decode<H: Handler>(
        &mut self,
        rbuf: &mut BytesMut,
        handler: &mut H,
        queue: &OutQueue,
        now: Instant,
        stats: &IoStats,
    ) {
        loop {
            let event = match self.conn.read(rbuf, now) {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(e) => {
                    // The connection has already failed itself and queued its close frame.
                    // What went on the wire first stays the connection's code.
                    self.end.code = self.end.code.or(Some(e.close_code()));
                    // Answers to the messages before the bad frame still go out, before
                    // the close frame.
                    self.flush_queue(queue, handler);
                    rbuf.clear();
                    return;
                }
            };
            if matches!(event, Event::Text(_) | Event::Binary(_)) {
                // Pongs owed for pings that arrived before this message go out before any
                // answer to it: frames leave in the order their causes arrived.
                while self.conn.is_open() {
                    match self.conn.take_transmit() {
                        Some(control) => {
                            let _ = queue.push(control);
                        }
                        None => break,
                    }
                }
            }
            let mut ctx = Ctx::new(queue, now);
            match event {
                Event::Text(text) => {
                    stats.messages_in.fetch_add(1, Ordering::Relaxed);
                    handler.on_text(text, &mut ctx);
                }
                Event::Binary(data) => {
                    stats.messages_in.fetch_add(1, Ordering::Relaxed);
                    handler.on_binary(data, &mut ctx);
                }
                Event::Closed { code, .. } => {
                    self.end.code = self.end.code.or(code);
                    self.flush_queue(queue, handler);
                }
            }
            self.apply_close(ctx.into_close(), queue);
        }
    }

    /// A close asked by the handler goes through the queue so that frames queued before it
    /// are still written.
    pub(super) fn apply_close(&mut self, close: Option<(u16, String)>, queue: &OutQueue) {
        if let Some((code, reason)) = close {
            queue.request_close(CloseRequest {
                code,
                reason,
                last_message: None,
            });
        }
    }

    fn take_queue<H: Handler>(
        &mut self,
        queue: &OutQueue,
        config: &DriverConfig,
        handler: &mut H,
        now: Instant,
    ) {
        let from = self.pending.len();
        let drained = queue.drain(&mut self.pending);
        handler.on_outgoing(&mut self.pending, from);
        if drained.overflowed {
            // Keep only a partially written frame; the rest would arrive too late anyway.
            let keep = usize::from(self.written > 0);
            self.pending.truncate(keep);
            let (code, reason) = config.slow_consumer;
            self.end.code = Some(code);
            self.end.slow_consumer = true;
            self.pending.extend(handler.farewell(code, reason));
            self.conn.close(code, reason, now);
            self.stop_draining();
        } else if let Some(close) = drained.close {
            if let Some(last) = close.last_message {
                self.pending.push_back(last);
            }
            self.end.code = Some(close.code);
            self.conn.close(close.code, &close.reason, now);
            self.stop_draining();
        }
    }

    fn take_control(&mut self) {
        if self.pending.is_empty() {
            while let Some(frame) = self.conn.take_transmit() {
                self.pending.push_back(Outbound::Frame(frame));
            }
        }
    }

    fn stop_draining(&mut self) {
        self.draining = false;
    }

    /// Moves what is queued onto the backlog one last time and takes no more: the connection
    /// is closing, so nothing may follow the close frame.
    fn flush_queue<H: Handler>(&mut self, queue: &OutQueue, handler: &mut H) {
        if self.draining {
            let from = self.pending.len();
            let _ = queue.drain(&mut self.pending);
            handler.on_outgoing(&mut self.pending, from);
            self.stop_draining();
        }
    }

    /// The peer went silent past the idle timeout: say why with one best-effort write, since
    /// a silent peer is unlikely to be reading either.
    pub(super) fn timed_out<H: Handler>(
        &mut self,
        stream: &TcpStream,
        handler: &mut H,
        config: &DriverConfig,
        now: Instant,
    ) {
        if !self.conn.is_open() {
            return;
        }
        let (code, reason) = config.heartbeat_timeout;
        self.end.code = Some(code);
        self.pending.truncate(usize::from(self.written > 0));
        self.pending.extend(handler.farewell(code, reason));
        self.conn.close(code, reason, now);
        while let Some(frame) = self.conn.take_transmit() {
            self.pending.push_back(Outbound::Frame(frame));
        }
        let mut bytes = Vec::new();
        for (i, item) in self.pending.iter().enumerate() {
            let skip = if i == 0 { self.written } else { 0 };
            let (header, used, payload) = wire_parts(item);
            bytes.extend(header[..used].iter().chain(payload.iter()).skip(skip));
        }
        let _ = stream.try_write(&bytes);
    }
}
