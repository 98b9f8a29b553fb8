//! One connection of the ceiling: what it is (a request not yet read, a subscriber, a
//! publisher), the bytes read and not yet used, and the frames queued for it, sent all at once
//! with `sendmsg` whenever it is visited.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};
use std::rc::Rc;

use mio::net::TcpStream;
use socket2::SockRef;

use crate::http::{self, Request};

/// Bytes queued on a connection: a sender thread's own copy of a publish's frame, counted
/// without atomics (an `Arc` shared by every thread would make each queueing an atomic
/// increment on a cache line the threads pass back and forth).
pub(crate) type Queued = Rc<[u8]>;

/// Most frames queued for one connection; a subscriber that falls further behind is dropped.
pub(crate) const MAX_QUEUED: usize = 16_384;
/// Most buffers in one `sendmsg`: a subscriber this far behind is sent its queue in several.
const MAX_IOV: usize = 64;

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
    pub(crate) publishes: Vec<http::Frame>,
    /// The peer closed, broke or misbehaved: drop the connection.
    pub(crate) end: bool,
}

/// A connection on its way from the control thread to a sender.
#[derive(Debug)]
pub(crate) struct Handover {
    stream: TcpStream,
    unsent: Vec<u8>,
    input: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    pub(crate) role: Role,
    input: Vec<u8>,
    out: VecDeque<Queued>,
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

    /// A subscriber handed over by the control thread: its stream, the bytes still to send
    /// (the handshake reply) and those read and not yet used.
    pub(crate) fn subscriber(handover: Handover) -> Conn {
        let mut conn = Conn::new(handover.stream);
        conn.role = Role::Subscriber;
        conn.input = handover.input;
        if !handover.unsent.is_empty() {
            conn.out.push_back(handover.unsent.into());
        }
        conn
    }

    /// What a sender thread needs of this connection to take it over: the queue's `Rc`s stay
    /// on this thread.
    pub(crate) fn hand_over(self) -> Handover {
        let mut unsent = Vec::new();
        for (i, frame) in self.out.iter().enumerate() {
            let skip = if i == 0 { self.sent } else { 0 };
            unsent.extend_from_slice(&frame[skip..]);
        }
        Handover {
            stream: self.stream,
            unsent,
            input: self.input,
        }
    }

    pub(crate) fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Queues `frame`; `false` when the connection is already past [`MAX_QUEUED`].
    pub(crate) fn push(&mut self, frame: &Queued) -> bool {
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
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slice, frame) in slices.iter_mut().zip(&self.out) {
                let skip = if count == 0 { self.sent } else { 0 };
                *slice = IoSlice::new(&frame[skip..]);
                count += 1;
            }
            let sent = socket.send_vectored(&slices[..count]);
            let mut n = match sent {
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
