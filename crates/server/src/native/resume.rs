//! Resuming rooms on a native connection: joining a room with its history after the client's
//! position in hand ([`join_resumed`]), on a broker whose history is in process or, on the
//! async lane, in Redis ([`join_resumed_later`]), and the welcome that carries each
//! auto-joined room's position ([`Welcome`], [`WelcomeRooms`]).

use bytes::Bytes;
use roomcast_broker::{Position, Publication};
use roomcast_engine::rooms::{ConnId, JoinError, RoomKey};
use roomcast_engine::{OutQueue, Outbound};

use crate::app::App;
use crate::node::native_event;
use crate::proto::{self, RoomPosition, Since};

/// What resumes may still queue on one connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    pub(super) messages: usize,
    pub(super) bytes: usize,
}

impl Budget {
    pub(super) fn spend(&mut self, events: &[Bytes]) {
        self.messages = self.messages.saturating_sub(events.len());
        self.bytes = self
            .bytes
            .saturating_sub(events.iter().map(Bytes::len).sum());
    }
}

/// What resuming one room found ([`NativeSession::resume`]).
#[derive(Debug, Default)]
pub(super) struct Resumed {
    /// Every event after the client's position follows.
    pub(super) recovered: bool,
    /// The room's position, when it has a stream.
    pub(super) current: Option<Position>,
    /// The missed events, as `event` messages (none unless recovered).
    pub(super) events: Vec<Bytes>,
}

/// What a welcome says besides the rooms' positions.
pub(super) struct Welcome<'a> {
    pub(super) session_id: &'a str,
    pub(super) user: &'a str,
    pub(super) tenant: &'a str,
    pub(super) rooms: &'a [String],
    pub(super) heartbeat_ms: u64,
    pub(super) expires_at: Option<u64>,
}

/// A [`Welcome`] to make later, on the async lane.
pub(super) struct OwnedWelcome {
    session_id: String,
    user: String,
    tenant: String,
    pub(super) rooms: Vec<String>,
    heartbeat_ms: u64,
    expires_at: Option<u64>,
}

impl Welcome<'_> {
    /// The welcome message with `positions` (room, position, and whether it resumed).
    pub(super) fn encode(&self, positions: &[(&str, Position, Option<bool>)]) -> Bytes {
        let positions: Vec<RoomPosition<'_>> = positions
            .iter()
            .map(|(room, p, recovered)| RoomPosition {
                room,
                offset: p.offset,
                epoch: &p.epoch,
                recovered: *recovered,
            })
            .collect();
        proto::encode_welcome_with(
            self.session_id,
            self.user,
            self.tenant,
            self.rooms,
            self.heartbeat_ms,
            self.expires_at,
            &positions,
        )
    }

    pub(super) fn owned(&self) -> OwnedWelcome {
        OwnedWelcome {
            session_id: self.session_id.to_owned(),
            user: self.user.to_owned(),
            tenant: self.tenant.to_owned(),
            rooms: self.rooms.to_vec(),
            heartbeat_ms: self.heartbeat_ms,
            expires_at: self.expires_at,
        }
    }
}

impl OwnedWelcome {
    pub(super) fn borrowed(&self) -> Welcome<'_> {
        Welcome {
            session_id: &self.session_id,
            user: &self.user,
            tenant: &self.tenant,
            rooms: &self.rooms,
            heartbeat_ms: self.heartbeat_ms,
            expires_at: self.expires_at,
        }
    }
}

/// Joins connection `conn` to `key` with the room's `history` after `since` in hand (the
/// broker holds the room's deliveries back meanwhile): what resuming found, when it joined
/// (see [`NativeSession::resume`](super::session::NativeSession)).
pub(super) fn join_resumed(
    app: &App,
    conn: ConnId,
    key: &RoomKey,
    since: &Since,
    budget: Budget,
    history: Result<roomcast_broker::History, roomcast_broker::BrokerError>,
) -> Result<Resumed, JoinError> {
    let joined = app.index.join(conn, key)?;
    let mut resumed = Resumed::default();
    let broker = app.node.broker();
    // The room's position once the connection is in it (the join may start its stream).
    let now = || broker.position(key);
    if !joined {
        // Already in the room: everything since reached it live, or is queued.
        resumed.recovered = true;
        resumed.current = now();
        return Ok(resumed);
    }
    let Ok(h) = history else {
        resumed.current = now();
        return Ok(resumed);
    };
    let last = h.events.last().map_or(since.offset, |(p, _)| p.offset);
    // Events that left out the rooms the connection is in (an emitter's `except`) are left
    // out of its replay too.
    let excepting = h.events.iter().any(|(_, p)| !p.except.is_empty());
    let rooms: Vec<RoomKey> = if excepting {
        app.index.rooms_of(conn)
    } else {
        Vec::new()
    };
    let left_out = |p: &Publication| {
        p.except.iter().any(|room| {
            rooms
                .iter()
                .any(|k| k.tenant == key.tenant && k.ns == key.ns && k.room == *room)
        })
    };
    let events: Vec<Bytes> = h
        .events
        .iter()
        .filter(|(_, p)| !left_out(p))
        .map(|(pos, p)| native_event(p, Some(&*key.room), Some(pos)))
        .collect();
    let bytes: usize = events.iter().map(Bytes::len).sum();
    resumed.recovered = events.len() <= budget.messages
        && bytes <= budget.bytes
        && h.complete
        && h.current.as_ref().is_some_and(|c| c.offset == last);
    if resumed.recovered {
        resumed.events = events;
    }
    resumed.current = h.current.or_else(now);
    Ok(resumed)
}

/// [`join_resumed`] for a broker whose history is not at hand: read first, then joined as
/// the broker finishes the resume.
pub(super) async fn join_resumed_later(
    app: &App,
    conn: ConnId,
    key: &RoomKey,
    since: &Since,
    budget: Budget,
) -> Result<Resumed, JoinError> {
    let read = match app
        .node
        .broker()
        .resume(key, &since.position(), budget.messages)
    {
        Some(reading) => reading.await,
        None => Err(roomcast_broker::BrokerError::HistoryUnsupported),
    };
    let mut outcome = Err(JoinError::NotRegistered);
    match read {
        Ok(resuming) => resuming.finish(&mut |history| {
            outcome = join_resumed(app, conn, key, since, budget, history);
        }),
        Err(e) => outcome = join_resumed(app, conn, key, since, budget, Err(e)),
    }
    outcome
}

/// What a welcome carries of its rooms, gathered room by room: each one's position (and for
/// a resumed one whether it recovered), and the missed events of the resumed ones, within
/// the connection's replay budget.
pub(super) struct WelcomeRooms<'a> {
    positions: Vec<(&'a str, Position, Option<bool>)>,
    replay: Vec<Bytes>,
    budget: Budget,
}

impl<'a> WelcomeRooms<'a> {
    pub(super) fn new(budget: Budget) -> Self {
        Self {
            positions: Vec::new(),
            replay: Vec::new(),
            budget,
        }
    }

    /// What resumes may still queue.
    pub(super) fn budget(&self) -> Budget {
        self.budget
    }

    /// A room joined without resuming, at position `current` (`None`: it has no stream).
    pub(super) fn joined(&mut self, room: &'a str, current: Option<Position>) {
        if let Some(current) = current {
            self.positions.push((room, current, None));
        }
    }

    /// A room resumed (or not joined, on `Err`).
    pub(super) fn resumed(&mut self, room: &'a str, outcome: Result<Resumed, JoinError>) {
        match outcome {
            Ok(resumed) => {
                self.budget.spend(&resumed.events);
                if let Some(current) = resumed.current {
                    self.positions
                        .push((room, current, Some(resumed.recovered)));
                }
                self.replay.extend(resumed.events);
            }
            Err(e) => tracing::debug!(error = ?e, room, "auto-join skipped"),
        }
    }

    /// Queues the welcome, then the missed events, ahead of what the connection holds back.
    pub(super) fn queue(self, queue: &OutQueue, welcome: &Welcome<'_>) {
        let _ = queue.push_ahead(Outbound::Text(welcome.encode(&self.positions)));
        for event in self.replay {
            let _ = queue.push_ahead(Outbound::Text(event));
        }
    }
}
