//! One connection of the ceiling: what it is (a request not yet read, a subscriber, a
//! publisher), the bytes read and not yet used, and the frames queued for it, sent all at once
//! with `sendmsg` whenever it is visited.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};

use mio::net::TcpStream;
use socket2::SockRef;

use crate::http::{self, Frame, Request};

/// Most frames queued for one connection; a subscriber that falls further behind is dropped.
pub(crate) const MAX_QUEUED: usize = 16_384;
/// Most buffers in one `sendmsg` (Linux's `IOV_MAX`).
const MAX_IOV: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Its first request is not complete yet.
    Http,
    /// Upgraded: gets every publish.
    Subscriber,
    /// Posts publishes, one request after the other.
    Publisher,
}

/// What reading found for the worker to act on.
#[derive(Debug, Default)]
pub(crate) struct Input {
    /// Publishes to hand to every subscriber; the publisher's replies are queued after them.
    pub(crate) publishes: Vec<Frame>,
    /// The peer closed, broke or misbehaved: drop the connection.
    pub(crate) end: bool,
    /// The connection became a subscriber.
    pub(crate) subscribed: bool,
}

#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    pub(crate) role: Role,
    input: Vec<u8>,
    out: VecDeque<Frame>,
    /// Bytes of `out`'s first frame already sent.
    sent: usize,
    /// Close once `out` is sent; queue nothing more.
    closing: bool,
    /// Listed for the next round of sends.
    pub(crate) due: bool,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            role: Role::Http,
            input: Vec::new(),
            out: VecDeque::new(),
            sent: 0,
            closing: false,
            due: false,
        }
    }

    pub(crate) fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Queues `frame`; `false` when the connection is already past [`MAX_QUEUED`].
    pub(crate) fn push(&mut self, frame: &Frame) -> bool {
        if self.closing {
            return true;
        }
        if self.out.len() >= MAX_QUEUED {
            return false;
        }
        self.out.push_back(frame.clone());
        true
    }

    /// Reads everything available, through `scratch`, and acts on it.
    pub(crate) fn read(&mut self, scratch: &mut [u8], busy: impl Fn() -> bool) -> Input {
        let mut input = Input::default();
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    input.end = true;
                    break;
                }
                Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    input.end = true;
                    break;
                }
            }
        }
        if self.role == Role::Subscriber {
            let (used, close) = http::client_frames(&self.input);
            self.input.drain(..used);
            if close && !self.closing {
                self.out.push_back(http::CLOSE.into());
                self.closing = true;
            }
            return input;
        }
        while !self.closing {
            let (request, used) = match http::parse(&self.input) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(http::BadRequest) => {
                    input.end = true;
                    break;
                }
            };
            self.input.drain(..used);
            match request {
                Request::Upgrade(reply) => {
                    self.role = Role::Subscriber;
                    self.out.push_back(reply.into());
                    input.subscribed = true;
                    return input;
                }
                Request::Publish(frame) => {
                    self.role = Role::Publisher;
                    if busy() {
                        self.out.push_back(http::BUSY.into());
                    } else {
                        input.publishes.push(frame);
                        self.out.push_back(http::PUBLISHED.into());
                    }
                }
                Request::Other => {
                    self.out.push_back(http::NOT_FOUND.into());
                    self.closing = true;
                }
            }
        }
        input
    }

    /// Sends as much of the queue as the socket takes, in as few `sendmsg` calls as it takes
    /// (one, unless the queue is longer than [`MAX_IOV`] or the socket takes part of it).
    /// `Ok(true)` when the connection is done with and should be dropped.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        let socket = SockRef::from(&self.stream);
        while !self.out.is_empty() {
            let mut slices = Vec::with_capacity(self.out.len().min(MAX_IOV));
            for (i, frame) in self.out.iter().take(MAX_IOV).enumerate() {
                let skip = if i == 0 { self.sent } else { 0 };
                slices.push(IoSlice::new(&frame[skip..]));
            }
            let mut n = match socket.send_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            while let Some(front) = self.out.front() {
                let left = front.len() - self.sent;
                if n < left {
                    self.sent += n;
                    break;
                }
                n -= left;
                self.sent = 0;
                self.out.pop_front();
            }
        }
        Ok(self.closing)
    }
}
