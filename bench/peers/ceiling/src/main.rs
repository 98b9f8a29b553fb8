//! The ceiling of Roomcast's fan-out benchmark (`bench/run.sh`): the smallest server that takes
//! the benchmark's subscribers and its publish trigger, so that every other server's figures
//! can be read as a fraction of what this machine can do at all.
//!
//! - No rooms, no authentication: every WebSocket upgrade at any path is a subscriber, welcomed
//!   with the room its token's `room` claim names (read, never checked) so that the native
//!   subscriber of the benchmark accepts it; every publish goes to every subscriber.
//! - `POST /api/publish` with Roomcast's body builds the native `event` frame once and hands the
//!   same bytes to every connection: no per-recipient work but queueing a pointer.
//! - Ideal batching: one epoll loop per thread (as many as cores, or the second argument), each
//!   owning a share of the connections; after each round of readiness events, each connection
//!   with something due gets everything queued for it in one `sendmsg`.
//!
//! Binds 127.0.0.1 on the port given as the first argument or in `PORT` (0 for any) and prints
//! `ceiling listening on HOST:PORT`.

mod conn;
mod http;
mod worker;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use mio::{Poll, Waker};

use worker::{Mailbox, Shared, Worker, WAKER};

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
    let threads = match args.next() {
        Some(n) => n.parse::<usize>()?.max(1),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;

    let mut polls = Vec::with_capacity(threads);
    let mut mailboxes = Vec::with_capacity(threads);
    for _ in 0..threads {
        let poll = Poll::new()?;
        mailboxes.push(Mailbox::new(Waker::new(poll.registry(), WAKER)?));
        polls.push(poll);
    }
    let shared = Arc::new(Shared { mailboxes });
    let mut workers = polls
        .into_iter()
        .enumerate()
        .map(|(id, poll)| Worker::new(id, poll, shared.clone()));
    let Some(mut first) = workers.next() else {
        return Err("no worker".into());
    };
    first.listen(mio::net::TcpListener::from_std(listener))?;
    let mut handles = Vec::new();
    for mut worker in workers {
        handles.push(std::thread::spawn(move || worker.run()));
    }
    eprintln!("ceiling: {threads} threads");
    println!("ceiling listening on {addr}");
    std::io::stdout().flush()?;
    first.run()?;
    for handle in handles {
        if let Ok(Err(e)) = handle.join() {
            return Err(e.into());
        }
    }
    Ok(())
}
