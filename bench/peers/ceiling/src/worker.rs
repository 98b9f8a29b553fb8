//! A sender thread of the ceiling: an epoll loop (mio) over its share of the subscribers. The
//! control thread hands it new subscribers and every publish's frame through its mailbox; it
//! queues each frame on every one of its subscribers, and after each round of events visits
//! every subscriber with something queued once, sending all of it in one `sendmsg`. Frames
//! that arrive while it sends wait in the mailbox for the next round, so the busier it is, the
//! more each send carries.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use mio::{Events, Interest, Poll, Token, Waker};

use crate::conn::{Conn, Handover, Queued, MAX_QUEUED};
use crate::http::Frame;

pub(crate) const WAKER: Token = Token(0);
const FIRST_CONN: usize = 1;
/// Most publishes waiting in one sender's mailbox; past it, publishes are refused with 503.
pub(crate) const MAX_MAILBOX: usize = 65_536;
/// Bytes read in one `read` call.
const SCRATCH: usize = 16 * 1024;

/// What the control thread hands to a sender.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) subscribers: Vec<Handover>,
    pub(crate) frames: Vec<Frame>,
}

#[derive(Debug)]
pub(crate) struct Mailbox {
    // A std mutex: held to push to or swap out two vectors, never while doing I/O.
    inbox: Mutex<Inbox>,
    pub(crate) waker: Waker,
}

impl Mailbox {
    pub(crate) fn new(waker: Waker) -> Mailbox {
        Mailbox {
            inbox: Mutex::default(),
            waker,
        }
    }

    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub(crate) struct Sender {
    poll: Poll,
    mailbox: Arc<Mailbox>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Subscribers with something queued, visited once each round.
    due: Vec<usize>,
    scratch: Vec<u8>,
}

impl Sender {
    pub(crate) fn new(poll: Poll, mailbox: Arc<Mailbox>) -> Sender {
        Sender {
            poll,
            mailbox,
            conns: Vec::new(),
            free: Vec::new(),
            due: Vec::new(),
            scratch: vec![0; SCRATCH],
        }
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

    fn open_mailbox(&mut self) -> io::Result<()> {
        let inbox = std::mem::take(&mut *self.mailbox.inbox());
        for handover in inbox.subscribers {
            self.add(Conn::subscriber(handover))?;
        }
        // One copy per thread, shared by its subscribers without atomics.
        let frames: Vec<Queued> = inbox.frames.iter().map(|f| Queued::from(&f[..])).collect();
        self.deliver(&frames);
        Ok(())
    }

    fn add(&mut self, mut conn: Conn) -> io::Result<()> {
        let slot = self.free.pop().unwrap_or(self.conns.len());
        self.poll.registry().register(
            conn.stream(),
            Token(FIRST_CONN + slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        match self.conns.get_mut(slot) {
            Some(entry) => *entry = Some(conn),
            None => self.conns.push(Some(conn)),
        }
        // Its handshake reply and welcome are queued.
        self.mark_due(slot);
        Ok(())
    }

    fn drop_conn(&mut self, slot: usize) {
        if let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = self.poll.registry().deregister(conn.stream());
            self.free.push(slot);
        }
    }

    fn read(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if conn.read(&mut self.scratch, || false).end {
            self.drop_conn(slot);
        } else {
            // A close to answer, perhaps.
            self.mark_due(slot);
        }
    }

    /// Queues `frames` on every subscriber.
    fn deliver(&mut self, frames: &[Queued]) {
        if frames.is_empty() {
            return;
        }
        let mut behind = Vec::new();
        for (slot, entry) in self.conns.iter_mut().enumerate() {
            let Some(conn) = entry else { continue };
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
            eprintln!("ceiling: a subscriber fell {MAX_QUEUED} frames behind; dropped");
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

    /// One visit to each subscriber with something queued.
    fn send_due(&mut self) {
        let mut due = std::mem::take(&mut self.due);
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
        // Nothing was marked during the visits: keep the vector's capacity for the next round.
        due.clear();
        self.due = due;
    }
}
