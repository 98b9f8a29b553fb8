//! When a connection's task must wake: the earliest deadline of the connection (heartbeat
//! ping, idle timeout, close timeout) and of its handler, kept in one timer entry that is moved
//! only when a deadline comes earlier, and never closer than a floor after it fired.

use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use super::Handler;
use crate::ws::Connection;

/// The timer is never re-armed closer than this after it fired, so a deadline that its
/// owner does not act on cannot make the task spin.
const MIN_REARM: Duration = Duration::from_millis(5);

/// The earliest deadline of the connection (it always has one) and of its handler.
pub(super) fn next_deadline(conn: &Connection, handler: &impl Handler) -> Instant {
    let own = conn.deadline();
    handler.deadline().map_or(own, |theirs| theirs.min(own))
}

/// What the task's one timer is set to, and how soon it may be set again.
#[derive(Debug)]
pub(super) struct Alarm {
    /// The earliest the timer may be set for: a little after it last fired.
    floor: Instant,
    /// The deadline the timer is set to.
    armed: Instant,
}

impl Alarm {
    /// An alarm set for `armed`, created at `now`.
    pub(super) fn new(armed: Instant, now: Instant) -> Alarm {
        Alarm { floor: now, armed }
    }

    /// The deadline the timer is set to.
    pub(super) fn armed(&self) -> Instant {
        self.armed
    }

    /// Moves the timer to `due` when that is earlier than it is set for. Deadlines only move
    /// later as traffic arrives, so the timer is moved only when one comes earlier; firing
    /// early costs one harmless check. Never sooner than the floor: a deadline its owner does
    /// not act on must not spin.
    pub(super) fn lower(&mut self, due: Instant, timer: Pin<&mut Sleep>) {
        let due = due.max(self.floor);
        if due < self.armed {
            self.armed = due;
            timer.reset(due.into());
        }
    }

    /// The timer fired at `now`: sets it for `due`, but not before the new floor.
    pub(super) fn fired(&mut self, now: Instant, due: Instant, timer: Pin<&mut Sleep>) {
        self.floor = now + MIN_REARM;
        self.armed = due.max(self.floor);
        timer.reset(self.armed.into());
    }
}
