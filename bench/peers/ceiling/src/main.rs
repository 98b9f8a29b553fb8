//! The ceiling of Roomcast's fan-out benchmark (`bench/run.sh`): the smallest server that takes
//! the benchmark's subscribers and its publish trigger, so that every other server's figures
//! can be read as a fraction of what this machine can do at all.
//!
//! - No rooms, no authentication: every WebSocket upgrade at any path is a subscriber, welcomed
//!   with the room its token's `room` claim names (read, never checked) so that the native
//!   subscriber of the benchmark accepts it; every publish goes to every subscriber.
//! - `POST /api/publish` with Roomcast's body builds the native `event` frame once and hands the
//!   same bytes to every connection: no per-recipient work but queueing a pointer.
//! - Ideal batching: one epoll loop per sender thread, each owning a share of the subscribers;
//!   after each round of readiness events, each subscriber with something due gets everything
//!   queued for it in one `sendmsg`. A control thread accepts, answers upgrades and publishes,
//!   and hands frames and subscribers to the senders, so that a publish is answered at once,
//!   whatever the senders are doing.
//!
//! Binds 127.0.0.1 on the port given as the first argument or in `PORT` (0 for any), runs as
//! many sender threads as the second argument or `CEILING_THREADS` says (default: half the
//! cores, at least one) and prints `ceiling listening on HOST:PORT`.

mod conn;
mod control;
mod http;
mod worker;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use mio::{Poll, Waker};

use control::Control;
use worker::{Mailbox, Sender, WAKER};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .or_else(|| std::env::var("PORT").ok())
        .unwrap_or_else(|| "0".into())
        .parse()?;
    let threads = match args
        .next()
        .or_else(|| std::env::var("CEILING_THREADS").ok())
    {
        Some(n) => n.parse::<usize>()?.max(1),
        // Half the cores: the load generator shares the machine and reads on the other half
        // (on 2 cores, one sender beat two: less CPU per delivery, lower latency).
        None => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;

    let mut mailboxes = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let poll = Poll::new()?;
        let mailbox = Arc::new(Mailbox::new(Waker::new(poll.registry(), WAKER)?));
        mailboxes.push(mailbox.clone());
        // Built on its own thread: its queues hold `Rc`s, which stay there.
        handles.push(std::thread::spawn(move || Sender::new(poll, mailbox).run()));
    }
    let mut control = Control::new(mio::net::TcpListener::from_std(listener), mailboxes)?;
    eprintln!("ceiling: {threads} sender threads");
    println!("ceiling listening on {addr}");
    std::io::stdout().flush()?;
    control.run()?;
    for handle in handles {
        if let Ok(Err(e)) = handle.join() {
            return Err(e.into());
        }
    }
    Ok(())
}
