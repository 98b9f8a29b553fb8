//! Open-loop publishing: a schedule of (time, room, lane, sequence number) computed before the
//! phase starts, and a few keep-alive HTTP/1.1 connections ("lanes", hyper) that post each
//! entry, the entries dealt to the lanes in turn. Every message carries its *scheduled* send
//! time, so a server or client stall shows up as latency and never as fewer sends (no
//! coordinated omission). A lane posts one request after the other and numbers each room's
//! messages on its own, so they reach the server in sequence order and any reordering that a
//! subscriber sees within one lane is the server's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::wire::{self, Tick};

/// Delay between computing the schedule's start and its first entry.
const LEAD: Duration = Duration::from_millis(50);

/// Where and how to post publish requests.
#[derive(Debug, Clone)]
pub(crate) struct PublishApi {
    pub(crate) addr: SocketAddr,
    pub(crate) path: String,
    /// `Authorization: Bearer` value, if the server wants one.
    pub(crate) bearer: Option<String>,
}

/// One scheduled publish.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: Duration,
    room: u32,
    lane: u32,
    seq: u64,
}

/// The publishes of one phase: `rate` per second for `duration`, each to a room drawn at
/// random (seeded, so runs repeat) among `rooms`, dealt to `lanes` in turn, numbered per room
/// and lane from 0.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    entries: Vec<Entry>,
    rooms: usize,
    duration: Duration,
}

impl Schedule {
    pub(crate) fn new(
        rate: f64,
        duration: Duration,
        rooms: usize,
        lanes: usize,
        seed: u64,
    ) -> Schedule {
        let rooms = rooms.max(1);
        let lanes = lanes.max(1);
        let n = (rate * duration.as_secs_f64()).round().max(1.0) as usize;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut next_seq = vec![0u64; rooms * lanes];
        let entries = (0..n)
            .map(|i| {
                let room = if rooms == 1 {
                    0
                } else {
                    rng.random_range(0..rooms)
                };
                let lane = i % lanes;
                let next = &mut next_seq[room * lanes + lane];
                let seq = *next;
                *next += 1;
                Entry {
                    at: Duration::from_secs_f64(i as f64 / rate),
                    room: room as u32,
                    lane: lane as u32,
                    seq,
                }
            })
            .collect();
        Schedule {
            entries,
            rooms,
            duration,
        }
    }

    pub(crate) fn duration(&self) -> Duration {
        self.duration
    }
}

/// What one phase's publishing did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent {
    /// Publishes scheduled.
    pub(crate) scheduled: u64,
    /// Accepted (2xx) publishes per room.
    pub(crate) ok_per_room: Vec<u64>,
    /// Refused or failed requests.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// How far behind its schedule the last request was handed to its connection.
    pub(crate) dispatch_lag: Duration,
}

impl Sent {
    pub(crate) fn ok(&self) -> u64 {
        self.ok_per_room.iter().sum()
    }
}

/// The counts of one phase, shared by the connections.
struct Tally {
    done: AtomicU64,
    ok: Vec<AtomicU64>,
    errors: AtomicU64,
    /// A std mutex: set once, read at the end.
    first_error: Mutex<Option<String>>,
    finished: Notify,
    total: u64,
}

impl Tally {
    fn finish_one(&self) {
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            self.finished.notify_one();
        }
    }

    fn error(&self, message: String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Ok(mut first) = self.first_error.lock() {
                *first = Some(message);
            }
        }
    }
}

struct Job {
    room: u32,
    body: Bytes,
    tally: Arc<Tally>,
}

/// Keep-alive connections posting publishes.
pub(crate) struct Publisher {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    room_names: Vec<String>,
    size: usize,
}

impl Publisher {
    /// Opens `lanes` connections to `api`; `room_names[i]` is room `i` of the schedules;
    /// the data of each message is padded to `size` bytes.
    pub(crate) async fn connect(
        api: PublishApi,
        lanes: usize,
        room_names: Vec<String>,
        size: usize,
    ) -> Result<Publisher> {
        let api = Arc::new(api);
        let mut senders = Vec::new();
        for _ in 0..lanes.max(1) {
            let sender = dial(&api).await?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(lane(api.clone(), sender, rx));
            senders.push(tx);
        }
        Ok(Publisher {
            lanes: senders,
            room_names,
            size,
        })
    }

    /// Runs one phase's schedule and waits for every answer (at most `wait` after the last
    /// scheduled send).
    pub(crate) async fn run(&self, phase: u32, schedule: &Schedule, wait: Duration) -> Sent {
        let tally = Arc::new(Tally {
            done: AtomicU64::new(0),
            ok: (0..schedule.rooms).map(|_| AtomicU64::new(0)).collect(),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            finished: Notify::new(),
            total: schedule.entries.len() as u64,
        });
        let start = Instant::now() + LEAD;
        let start_ns = (wire::unix_now() + LEAD).as_nanos() as u64;
        let mut lag = Duration::ZERO;
        for entry in &schedule.entries {
            let due = start + entry.at;
            tokio::time::sleep_until(due).await;
            lag = Instant::now().saturating_duration_since(due);
            let tick = Tick {
                seq: entry.seq,
                lane: entry.lane,
                sent_ns: start_ns + entry.at.as_nanos() as u64,
                phase,
            };
            let data = wire::tick_data(tick, self.size);
            let room = &self.room_names[entry.room as usize];
            let job = Job {
                room: entry.room,
                body: Bytes::from(wire::publish_body(room, &data)),
                tally: tally.clone(),
            };
            let lane = &self.lanes[entry.lane as usize % self.lanes.len()];
            if lane.send(job).is_err() {
                tally.error("a publishing connection task ended".into());
                tally.finish_one();
            }
        }
        let finished = tally.finished.notified();
        if tally.done.load(Ordering::Acquire) < tally.total {
            let _ = tokio::time::timeout(wait, finished).await;
        }
        let first_error = tally.first_error.lock().ok().and_then(|e| e.clone());
        let not_done = tally.total - tally.done.load(Ordering::Acquire);
        Sent {
            scheduled: tally.total,
            ok_per_room: tally.ok.iter().map(|n| n.load(Ordering::Acquire)).collect(),
            errors: tally.errors.load(Ordering::Acquire) + not_done,
            first_error: first_error
                .or_else(|| (not_done > 0).then(|| format!("{not_done} publishes unanswered"))),
            dispatch_lag: lag,
        }
    }
}

/// Publishes posted one after the other on one keep-alive connection, each answered before the
/// next is sent: for the few publishes of a scenario whose order matters, not their rate.
pub(crate) struct OneByOne {
    api: PublishApi,
    sender: SendRequest<Full<Bytes>>,
}

impl OneByOne {
    pub(crate) async fn connect(api: PublishApi) -> Result<OneByOne> {
        let sender = dial(&api).await?;
        Ok(OneByOne { api, sender })
    }

    /// Posts one publish request `body` and waits for its `200`.
    pub(crate) async fn post(&mut self, body: String) -> Result<()> {
        if self.sender.ready().await.is_err() {
            self.sender = dial(&self.api).await?;
        }
        post(&self.api, &mut self.sender, Bytes::from(body)).await
    }
}

/// Opens one keep-alive HTTP/1.1 connection.
async fn dial(api: &PublishApi) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(api.addr)
        .await
        .with_context(|| format!("cannot connect to {} to publish", api.addr))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake for publishing")?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One connection: posts its jobs one after the other, reconnecting when the server closed it.
async fn lane(
    api: Arc<PublishApi>,
    mut sender: SendRequest<Full<Bytes>>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(job) = jobs.recv().await {
        if sender.ready().await.is_err() {
            match dial(&api).await {
                Ok(new) => sender = new,
                Err(e) => {
                    job.tally.error(format!("{e:#}"));
                    job.tally.finish_one();
                    continue;
                }
            }
        }
        match post(&api, &mut sender, job.body).await {
            Ok(()) => {
                job.tally.ok[job.room as usize].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => job.tally.error(format!("{e:#}")),
        }
        job.tally.finish_one();
    }
}

async fn post(api: &PublishApi, sender: &mut SendRequest<Full<Bytes>>, body: Bytes) -> Result<()> {
    let mut request = Request::post(api.path.as_str())
        .header(header::HOST, api.addr.to_string())
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(bearer) = &api.bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    }
    let request = request.body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        return Err(anyhow!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_evenly_timed_and_numbered_per_room_and_lane() {
        let s = Schedule::new(100.0, Duration::from_secs(2), 10, 3, 7);
        assert_eq!(s.entries.len(), 200);
        assert_eq!(s.entries[1].at, Duration::from_millis(10));
        assert_eq!(s.entries[199].at, Duration::from_millis(1990));
        let lanes: Vec<u32> = s.entries[..4].iter().map(|e| e.lane).collect();
        assert_eq!(lanes, [0, 1, 2, 0]);
        for room in 0..10 {
            for lane in 0..3 {
                let seqs: Vec<u64> = s
                    .entries
                    .iter()
                    .filter(|e| e.room == room && e.lane == lane)
                    .map(|e| e.seq)
                    .collect();
                assert!(seqs.iter().enumerate().all(|(i, &q)| q == i as u64));
            }
        }
        // Same seed, same schedule.
        let again = Schedule::new(100.0, Duration::from_secs(2), 10, 3, 7);
        assert!(s
            .entries
            .iter()
            .zip(&again.entries)
            .all(|(a, b)| a.room == b.room));
    }

    #[test]
    fn one_room_gets_every_entry() {
        let s = Schedule::new(5.0, Duration::from_secs(3), 1, 1, 1);
        assert_eq!(s.entries.len(), 15);
        assert!(s.entries.iter().all(|e| e.room == 0));
        assert_eq!(s.entries[14].seq, 14);
    }
}
