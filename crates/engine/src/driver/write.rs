//! The write path of a connection's task: the backlog goes out in vectored `send`s, the
//! headers of payloads framed on the way out built on the stack, and a partly written frame
//! resumed where the socket stopped taking bytes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::Ordering;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::task::Task;
use super::IoStats;
use crate::queue::Outbound;
use crate::ws::{frame, OpCode};

/// Most frames handed to one vectored write.
const MAX_IOV: usize = 64;

impl Task {
    /// Writes the backlog until it is empty or the socket would block.
    pub(super) fn write(&mut self, stream: &TcpStream, stats: &IoStats) -> io::Result<()> {
        loop {
            // An empty frame has nothing to write and would never count as written.
            while matches!(self.pending.front(), Some(Outbound::Frame(f)) if f.is_empty()) {
                self.pending.pop_front();
            }
            if self.pending.is_empty() {
                return Ok(());
            }
            // Headers of payloads framed on the way out live here while the write borrows them.
            let mut headers = [([0u8; 10], 0usize); MAX_IOV / 2];
            let mut payloads: [&[u8]; MAX_IOV / 2] = [&[]; MAX_IOV / 2];
            let items = self.pending.len().min(MAX_IOV / 2);
            for (i, item) in self.pending.iter().take(items).enumerate() {
                let (header, used, payload) = wire_parts(item);
                headers[i] = (header, used);
                payloads[i] = payload;
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut n_slices = 0;
            for i in 0..items {
                let (header, used) = &headers[i];
                let mut head = &header[..*used];
                let mut body = payloads[i];
                if i == 0 {
                    let skip = self.written.min(head.len());
                    head = &head[skip..];
                    body = &body[self.written - skip..];
                }
                for part in [head, body] {
                    if !part.is_empty() {
                        slices[n_slices] = IoSlice::new(part);
                        n_slices += 1;
                    }
                }
            }
            let mut n =
                match stream.try_io(Interest::WRITABLE, || send(stream, &slices[..n_slices])) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                };
            stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
            while n > 0 {
                let Some(front) = self.pending.front() else {
                    break;
                };
                let (_, used, payload) = wire_parts(front);
                let left = used + payload.len() - self.written;
                if n >= left {
                    n -= left;
                    self.written = 0;
                    self.pending.pop_front();
                    stats.frames_out.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.written += n;
                    n = 0;
                }
            }
            if self.pending.is_empty() {
                // Idle connections hold no backlog buffer.
                self.pending = VecDeque::new();
            }
        }
    }
}

/// Writes with `send`/`sendmsg` rather than `write`/`writev`: the socket call skips the
/// file layer, a measurable share of the kernel's time per delivery in a fan-out.
fn send(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    let socket = SockRef::from(stream);
    match slices {
        [one] => socket.send(one),
        _ => socket.send_vectored(slices),
    }
}

/// An item as it goes on the wire: the frame header to add (none for a complete frame) and
/// the bytes that follow it.
pub(super) fn wire_parts(item: &Outbound) -> ([u8; 10], usize, &[u8]) {
    match item {
        Outbound::Frame(frame) => ([0; 10], 0, frame),
        Outbound::Text(payload) => {
            let (header, used) = frame::server_header(OpCode::Text, payload.len());
            (header, used, payload)
        }
        Outbound::Binary(payload) => {
            let (header, used) = frame::server_header(OpCode::Binary, payload.len());
            (header, used, payload)
        }
    }
}
