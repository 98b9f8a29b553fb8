//! The index's registry of live connections: every connection of the node, of either
//! protocol, authenticated or not, from its upgrade (or Socket.IO `CONNECT`) to its end, with
//! the [`Control`] handle through which the HTTP API disconnects it and a shutdown sends it
//! elsewhere. Room membership ([`RoomIndex::register`](super::RoomIndex::register)) is for
//! admitted connections only; this table is what "connections" counts and closes.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::{ConnId, RoomIndex, WireFormat};

/// How a connection is asked to go. Exhaustive on purpose: every protocol's control decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing<'a> {
    /// Ended by the operator (`POST /api/disconnect`): the client should not come back with
    /// this session. The reason goes to the client.
    Disconnect(&'a str),
    /// The node is shutting down: the client should reconnect, to another node.
    GoingAway,
}

/// What a protocol layer gives the index to act on one of its connections.
pub trait Control: Send + Sync {
    /// Asks the connection to close, after what is queued for it.
    fn close(&self, how: Closing<'_>);
    /// The session id its client knows it by.
    fn session_id(&self) -> String;
    /// For downcasting to the protocol's own handle.
    fn as_any(&self) -> &dyn Any;
}

/// One live connection.
#[derive(Clone)]
pub struct Live {
    /// Its wire format (protocol).
    pub format: WireFormat,
    /// Its handle.
    pub control: Arc<dyn Control>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// The live-connection table, beside the membership maps. A std mutex of its own: connects
/// and disconnects do not contend with fan-out's read lock; held for one insert, remove or
/// copy, never across an `.await` or a call into a [`Control`].
pub(super) type LiveTable = Mutex<HashMap<ConnId, Live>>;

/// Keeps a connection in the live table until dropped.
#[derive(Debug)]
pub struct Tracked {
    index: Weak<RoomIndex>,
    id: ConnId,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(index) = self.index.upgrade() {
            index.live().remove(&self.id);
        }
    }
}

impl RoomIndex {
    pub(super) fn live(&self) -> MutexGuard<'_, HashMap<ConnId, Live>> {
        // Single inserts and removes: a poisoned lock is still consistent.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a live connection; it stays until the guard drops. A connection tracked while the
    /// node is closing everything ([`close_live`](Self::close_live) was called) is asked to go
    /// at once.
    pub fn track(
        self: &Arc<Self>,
        id: ConnId,
        format: WireFormat,
        control: Arc<dyn Control>,
    ) -> Tracked {
        let closing = {
            let mut live = self.live();
            live.insert(
                id,
                Live {
                    format,
                    control: control.clone(),
                },
            );
            self.closing.load(std::sync::atomic::Ordering::Acquire)
        };
        if closing {
            control.close(Closing::GoingAway);
        }
        Tracked {
            index: Arc::downgrade(self),
            id,
        }
    }

    /// The live connection with this id.
    pub fn live_connection(&self, id: ConnId) -> Option<Live> {
        self.live().get(&id).cloned()
    }

    /// The live connections of one wire format.
    pub fn live_connections(&self, format: WireFormat) -> Vec<Live> {
        self.live()
            .values()
            .filter(|l| l.format == format)
            .cloned()
            .collect()
    }

    /// Live connections, authenticated or not.
    pub fn live_count(&self) -> usize {
        self.live().len()
    }

    /// Live connections of one wire format, counted without copying them.
    pub fn live_count_of(&self, format: WireFormat) -> usize {
        self.live().values().filter(|l| l.format == format).count()
    }

    /// Asks every live connection, and every one tracked from now on, to go away (shutdown).
    pub fn close_live(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        let all: Vec<Arc<dyn Control>> = self.live().values().map(|l| l.control.clone()).collect();
        for control in all {
            control.close(Closing::GoingAway);
        }
    }
}
