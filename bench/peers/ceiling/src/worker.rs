//! One thread of the ceiling: an epoll loop (mio) over its share of the connections. The first
//! worker also accepts, dealing new connections to the workers in turn. A publish read on any
//! worker is handed to the others through their mailboxes and queued on every subscriber of
//! its own; after each round of events, every connection with something queued is sent all of
//! it at once.

use std::io;
use std::sync::{Arc, Mutex};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::conn::{Conn, Role};
use crate::http::Frame;

pub(crate) const LISTENER: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Most publishes waiting in one worker's mailbox; past it, publishes are refused with 503.
const MAX_MAILBOX: usize = 65_536;
/// Bytes read in one `read` call: everything a connection has, usually.
const SCRATCH: usize = 64 * 1024;

/// What other workers hand to one worker.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    streams: Vec<TcpStream>,
    frames: Vec<Frame>,
}

#[derive(Debug)]
pub(crate) struct Mailbox {
    // A std mutex: held to push or swap a vector, never while doing I/O.
    inbox: Mutex<Inbox>,
    waker: Waker,
}

impl Mailbox {
    pub(crate) fn new(waker: Waker) -> Mailbox {
        Mailbox {
            inbox: Mutex::default(),
            waker,
        }
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) mailboxes: Vec<Mailbox>,
}

#[derive(Debug)]
pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections with something queued, visited once each round.
    due: Vec<usize>,
    /// Which worker the next accepted connection goes to.
    next: usize,
    scratch: Vec<u8>,
}

impl Worker {
    pub(crate) fn new(id: usize, poll: Poll, shared: Arc<Shared>) -> Worker {
        Worker {
            id,
            poll,
            shared,
            listener: None,
            conns: Vec::new(),
            free: Vec::new(),
            due: Vec::new(),
            next: 0,
            scratch: vec![0; SCRATCH],
        }
    }

    pub(crate) fn listen(&mut self, mut listener: TcpListener) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        self.listener = Some(listener);
        Ok(())
    }

    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept()?,
                    WAKER => self.open_mailbox()?,
                    Token(t) => {
                        let slot = t - FIRST_CONN;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(slot);
                        }
                        if event.is_writable() {
                            self.mark_due(slot);
                        }
                    }
                }
            }
            self.send_due();
        }
    }

    fn accept(&mut self) -> io::Result<()> {
        loop {
            let Some(listener) = &self.listener else {
                return Ok(());
            };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of files or a connection reset before it was taken: not fatal.
                Err(e) => {
                    eprintln!("ceiling: accept: {e}");
                    return Ok(());
                }
            };
            let _ = stream.set_nodelay(true);
            let to = self.next;
            self.next = (self.next + 1) % self.shared.mailboxes.len();
            if to == self.id {
                self.add(stream)?;
            } else {
                let mailbox = &self.shared.mailboxes[to];
                mailbox.inbox().streams.push(stream);
                mailbox.waker.wake()?;
            }
        }
    }

    fn open_mailbox(&mut self) -> io::Result<()> {
        let inbox = std::mem::take(&mut *self.shared.mailboxes[self.id].inbox());
        for stream in inbox.streams {
            self.add(stream)?;
        }
        self.deliver(&inbox.frames);
        Ok(())
    }

    fn add(&mut self, mut stream: TcpStream) -> io::Result<()> {
        let slot = self.free.pop().unwrap_or(self.conns.len());
        self.poll.registry().register(
            &mut stream,
            Token(FIRST_CONN + slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let conn = Some(Conn::new(stream));
        match self.conns.get_mut(slot) {
            Some(entry) => *entry = conn,
            None => self.conns.push(conn),
        }
        Ok(())
    }

    fn drop_conn(&mut self, slot: usize) {
        if let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = self.poll.registry().deregister(conn.stream());
            self.free.push(slot);
        }
    }

    fn read(&mut self, slot: usize) {
        let shared = &self.shared;
        let busy = || {
            shared
                .mailboxes
                .iter()
                .any(|m| m.inbox().frames.len() >= MAX_MAILBOX)
        };
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let input = conn.read(&mut self.scratch, busy);
        if input.end {
            self.drop_conn(slot);
            return;
        }
        if !input.publishes.is_empty() {
            for (to, mailbox) in self.shared.mailboxes.iter().enumerate() {
                if to != self.id {
                    mailbox
                        .inbox()
                        .frames
                        .extend(input.publishes.iter().cloned());
                    let _ = mailbox.waker.wake();
                }
            }
            self.deliver(&input.publishes);
        }
        self.mark_due(slot);
    }

    /// Queues `frames` on every subscriber of this worker.
    fn deliver(&mut self, frames: &[Frame]) {
        if frames.is_empty() {
            return;
        }
        let mut behind = Vec::new();
        for (slot, entry) in self.conns.iter_mut().enumerate() {
            let Some(conn) = entry else { continue };
            if conn.role != Role::Subscriber {
                continue;
            }
            if !frames.iter().all(|frame| conn.push(frame)) {
                behind.push(slot);
                continue;
            }
            if !conn.due {
                conn.due = true;
                self.due.push(slot);
            }
        }
        for slot in behind {
            eprintln!(
                "ceiling: a subscriber fell {} frames behind; dropped",
                crate::conn::MAX_QUEUED
            );
            self.drop_conn(slot);
        }
    }

    fn mark_due(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) {
            if !conn.due {
                conn.due = true;
                self.due.push(slot);
            }
        }
    }

    /// One visit to each connection with something queued.
    fn send_due(&mut self) {
        let due = std::mem::take(&mut self.due);
        for &slot in &due {
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            conn.due = false;
            match conn.flush() {
                Ok(false) => {}
                Ok(true) | Err(_) => self.drop_conn(slot),
            }
        }
        // Keep the vector's capacity for the next round.
        let mut due = due;
        due.clear();
        if self.due.is_empty() {
            self.due = due;
        }
    }
}
