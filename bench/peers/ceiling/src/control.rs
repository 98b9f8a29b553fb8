//! The control thread of the ceiling: accepts connections and reads their first request. An
//! upgrade is answered (the reply queued) and the connection handed to a sender thread, in
//! turn; a publish connection stays here, and each publish's frame goes to every sender's
//! mailbox before the publish is answered at once. Publishes are never held up behind a
//! round of sends.

use std::io;
use std::sync::Arc;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::conn::{Conn, Role};
use crate::worker::{Mailbox, MAX_MAILBOX};

const LISTENER: Token = Token(0);
const FIRST_CONN: usize = 1;
/// Bytes read in one `read` call: a publish body is small.
const SCRATCH: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct Control {
    poll: Poll,
    listener: TcpListener,
    senders: Vec<Arc<Mailbox>>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Which sender the next subscriber goes to.
    next: usize,
    scratch: Vec<u8>,
}

impl Control {
    pub(crate) fn new(
        mut listener: TcpListener,
        senders: Vec<Arc<Mailbox>>,
    ) -> io::Result<Control> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Control {
            poll,
            listener,
            senders,
            conns: Vec::new(),
            free: Vec::new(),
            next: 0,
            scratch: vec![0; SCRATCH],
        })
    }

    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept()?,
                    Token(t) => self.serve(t - FIRST_CONN),
                }
            }
        }
    }

    fn accept(&mut self) -> io::Result<()> {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of files, or a connection reset before it was taken: not fatal.
                Err(e) => {
                    eprintln!("ceiling: accept: {e}");
                    return Ok(());
                }
            };
            let _ = stream.set_nodelay(true);
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
        }
    }

    /// Reads what a connection sent and acts on it; answers go out at once.
    fn serve(&mut self, slot: usize) {
        let senders = &self.senders;
        let busy = || {
            senders
                .iter()
                .any(|m| m.inbox().frames.len() >= MAX_MAILBOX)
        };
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let input = conn.read(&mut self.scratch, busy);
        if input.end {
            self.take(slot);
            return;
        }
        if !input.publishes.is_empty() {
            for mailbox in &self.senders {
                mailbox
                    .inbox()
                    .frames
                    .extend(input.publishes.iter().cloned());
                let _ = mailbox.waker.wake();
            }
        }
        if conn.role == Role::Subscriber {
            if let Some(conn) = self.take(slot) {
                let mailbox = &self.senders[self.next];
                self.next = (self.next + 1) % self.senders.len();
                mailbox.inbox().subscribers.push(conn.hand_over());
                let _ = mailbox.waker.wake();
            }
            return;
        }
        match conn.flush() {
            Ok(false) => {}
            Ok(true) | Err(_) => {
                self.take(slot);
            }
        }
    }

    /// Removes a connection from this thread's poll.
    fn take(&mut self, slot: usize) -> Option<Conn> {
        let mut conn = self.conns.get_mut(slot).and_then(Option::take)?;
        let _ = self.poll.registry().deregister(conn.stream());
        self.free.push(slot);
        Some(conn)
    }
}
