//! The room index: which connections are in which rooms, keyed by (tenant, namespace, room).
//!
//! Every lookup starts at a tenant, so isolation is structural: a room named `order:42` in
//! tenant `a` and the same name in tenant `b` are different entries, and no call that takes a
//! tenant can reach another tenant's members. Fan-out collects recipients under a brief read
//! lock; the caller then encodes once and pushes the same bytes to each.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

pub use roomcast_broker::{ConnId, RoomKey};

use crate::queue::OutQueue;

mod collect;
mod live;

pub use live::{Closing, Control, Live, Tracked};

/// How a connection's frames are encoded: a publication is encoded once per format and room
/// position. Exhaustive on purpose: a new format must be given an encoder wherever events
/// are encoded, and the compiler lists those places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// Roomcast's JSON protocol (`protocol/`), one WebSocket text frame per event.
    Native,
    /// Socket.IO v5 over Engine.IO v4: an `EVENT` packet in the socket's namespace, the same
    /// item for WebSocket and long-polling transports.
    SocketIo,
}

/// A connection as the index sees it: where to push its frames and how to encode them.
#[derive(Debug, Clone)]
pub struct Member {
    /// The connection's id.
    pub id: ConnId,
    /// The wire format it speaks.
    pub format: WireFormat,
    /// The connection's outbound queue.
    pub queue: Arc<OutQueue>,
}

/// Why a join failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The connection is not registered (it already left).
    #[error("connection not registered")]
    NotRegistered,
    /// The connection is in as many rooms as it may be.
    #[error("too many rooms")]
    TooManyRooms,
}

/// Connection counts of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCount {
    /// Tenant name.
    pub tenant: String,
    /// Connections.
    pub connections: usize,
    /// Distinct users.
    pub users: usize,
}

/// Told when a room gains its first member on this node and loses its last: what a broker
/// subscribes and unsubscribes on. Called under the index's write lock, so the calls for one
/// room come in the order of its transitions; an implementation must not block nor call back
/// into the index.
pub trait Transitions: Send + Sync {
    /// `room` had no member and now has one.
    fn first_in(&self, room: &RoomKey);
    /// `room` lost its last member.
    fn last_out(&self, room: &RoomKey);
    /// The index had nothing of `tenant` (no connection, no room) and now has.
    fn tenant_first(&self, _tenant: &str) {}
    /// The index has nothing of `tenant` any more.
    fn tenant_last(&self, _tenant: &str) {}
}

#[derive(Debug, Default)]
struct Room {
    members: HashMap<ConnId, Member>,
}

#[derive(Debug)]
struct ConnEntry {
    tenant: Arc<str>,
    user: Arc<str>,
    /// The one namespace a connection lives in (a Socket.IO socket); `None` for connections
    /// that reach every namespace (native).
    ns: Option<Arc<str>>,
    member: Member,
    rooms: Vec<RoomKey>,
}

#[derive(Debug, Default)]
struct Tenant {
    conns: HashMap<ConnId, Member>,
    users: HashMap<Arc<str>, Vec<ConnId>>,
    // (namespace, room) -> room
    rooms: HashMap<Arc<str>, HashMap<Arc<str>, Room>>,
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<ConnId, ConnEntry>,
    tenants: HashMap<Arc<str>, Tenant>,
}

/// The room index of one node.
#[derive(Debug)]
pub struct RoomIndex {
    // A std lock: it is held to update or read the maps, never across an `.await`; fan-out
    // collects recipients under the read lock and pushes after releasing it.
    inner: RwLock<Inner>,
    max_rooms_per_conn: usize,
    // Weak: the observer (a broker) reaches the index through the node that owns both.
    transitions: OnceLock<Weak<dyn Transitions>>,
    /// Every live connection, admitted or not (see [`Control`]).
    live: live::LiveTable,
    /// Set once the node closes every connection: later ones are closed as they come.
    closing: AtomicBool,
}

impl std::fmt::Debug for dyn Transitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transitions")
    }
}

impl RoomIndex {
    /// An empty index; `max_rooms_per_conn` bounds joins per connection.
    pub fn new(max_rooms_per_conn: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_rooms_per_conn,
            transitions: OnceLock::new(),
            live: Default::default(),
            closing: AtomicBool::new(false),
        }
    }

    /// Sets the observer of first-in and last-out transitions (once; later calls are
    /// ignored). Rooms joined before it is set are not reported.
    pub fn observe(&self, transitions: Weak<dyn Transitions>) {
        let _ = self.transitions.set(transitions);
    }

    fn report(&self, key: &RoomKey, first_in: bool) {
        if let Some(t) = self.transitions.get().and_then(Weak::upgrade) {
            if first_in {
                t.first_in(key);
            } else {
                t.last_out(key);
            }
        }
    }

    fn report_tenant(&self, tenant: &str, first: bool) {
        if let Some(t) = self.transitions.get().and_then(Weak::upgrade) {
            if first {
                t.tenant_first(tenant);
            } else {
                t.tenant_last(tenant);
            }
        }
    }

    /// The entry of `tenant`, made (and reported) when it is new.
    fn tenant_entry<'a>(
        &self,
        tenants: &'a mut HashMap<Arc<str>, Tenant>,
        tenant: Arc<str>,
    ) -> &'a mut Tenant {
        match tenants.entry(tenant) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.report_tenant(e.key(), true);
                e.insert(Tenant::default())
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every update completes before the guard drops, so a poisoned lock is consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection to its tenant and user. It joins no room yet.
    pub fn register(&self, tenant: &str, user: &str, member: Member) {
        self.register_locked(&mut self.write(), tenant, user, None, member);
    }

    /// Adds a connection that lives in one namespace (a Socket.IO socket: one per namespace
    /// of a client). The namespace-aware collectors ([`collect_user_in`](Self::collect_user_in),
    /// [`collect_tenant_in`](Self::collect_tenant_in)) leave it out for other namespaces.
    pub fn register_in(&self, tenant: &str, user: &str, ns: &str, member: Member) {
        self.register_locked(&mut self.write(), tenant, user, Some(ns.into()), member);
    }

    fn register_locked(
        &self,
        inner: &mut Inner,
        tenant: &str,
        user: &str,
        ns: Option<Arc<str>>,
        member: Member,
    ) {
        let tenant: Arc<str> = match inner.tenants.get_key_value(tenant) {
            Some((k, _)) => k.clone(),
            None => tenant.into(),
        };
        let t = self.tenant_entry(&mut inner.tenants, tenant.clone());
        let user: Arc<str> = match t.users.get_key_value(user) {
            Some((k, _)) => k.clone(),
            None => user.into(),
        };
        t.users.entry(user.clone()).or_default().push(member.id);
        t.conns.insert(member.id, member.clone());
        inner.conns.insert(
            member.id,
            ConnEntry {
                tenant,
                user,
                ns,
                member,
                rooms: Vec::new(),
            },
        );
    }

    /// [`register`](Self::register) and [`join`](Self::join) of each room, under one lock: the
    /// connection becomes visible to publishers with all its rooms at once. Rooms past the
    /// per-connection bound are skipped; returns how many were joined.
    pub fn register_with_rooms(
        &self,
        tenant: &str,
        user: &str,
        member: Member,
        rooms: &[RoomKey],
    ) -> usize {
        let id = member.id;
        let mut inner = self.write();
        self.register_locked(&mut inner, tenant, user, None, member);
        rooms
            .iter()
            .filter(|key| self.join_locked(&mut inner, id, key) == Ok(true))
            .count()
    }

    /// Removes a connection from every room, its user and its tenant.
    pub fn unregister(&self, id: ConnId) {
        let mut inner = self.write();
        let Some(entry) = inner.conns.remove(&id) else {
            return;
        };
        for key in &entry.rooms {
            self.remove_member(&mut inner.tenants, key, id);
        }
        if let Some(t) = inner.tenants.get_mut(&entry.tenant) {
            t.conns.remove(&id);
            if let Some(ids) = t.users.get_mut(&entry.user) {
                ids.retain(|c| *c != id);
                if ids.is_empty() {
                    t.users.remove(&entry.user);
                }
            }
            if t.conns.is_empty() && t.rooms.is_empty() {
                inner.tenants.remove(&entry.tenant);
                self.report_tenant(&entry.tenant, false);
            }
        }
    }

    /// Puts a connection in a room. `Ok(false)` when it was already there. The room's tenant
    /// may differ from the connection's only when the caller has decided so (platform admins).
    pub fn join(&self, id: ConnId, key: &RoomKey) -> Result<bool, JoinError> {
        self.join_locked(&mut self.write(), id, key)
    }

    fn join_locked(&self, inner: &mut Inner, id: ConnId, key: &RoomKey) -> Result<bool, JoinError> {
        let entry = inner.conns.get_mut(&id).ok_or(JoinError::NotRegistered)?;
        if entry.rooms.contains(key) {
            return Ok(false);
        }
        if entry.rooms.len() >= self.max_rooms_per_conn {
            return Err(JoinError::TooManyRooms);
        }
        // Most connections are in one or a few rooms: grow by one, not by doubling.
        entry.rooms.reserve_exact(1);
        entry.rooms.push(key.clone());
        let member = entry.member.clone();
        let t = self.tenant_entry(&mut inner.tenants, key.tenant.clone());
        let rooms = t.rooms.entry(key.ns.clone()).or_default();
        let room = rooms.entry(key.room.clone()).or_default();
        if room.members.is_empty() {
            self.report(key, true);
        }
        room.members.insert(id, member);
        Ok(true)
    }

    /// Takes a connection out of a room; `false` when it was not in it.
    pub fn leave(&self, id: ConnId, key: &RoomKey) -> bool {
        let mut inner = self.write();
        let Some(entry) = inner.conns.get_mut(&id) else {
            return false;
        };
        let Some(pos) = entry.rooms.iter().position(|k| k == key) else {
            return false;
        };
        entry.rooms.swap_remove(pos);
        self.remove_member(&mut inner.tenants, key, id);
        true
    }

    fn remove_member(&self, tenants: &mut HashMap<Arc<str>, Tenant>, key: &RoomKey, id: ConnId) {
        let Some(t) = tenants.get_mut(&key.tenant) else {
            return;
        };
        if let Some(rooms) = t.rooms.get_mut(&key.ns) {
            if let Some(room) = rooms.get_mut(&key.room) {
                if room.members.remove(&id).is_some() && room.members.is_empty() {
                    rooms.remove(&key.room);
                    self.report(key, false);
                }
            }
            if rooms.is_empty() {
                t.rooms.remove(&key.ns);
            }
        }
        if t.conns.is_empty() && t.rooms.is_empty() {
            tenants.remove(&key.tenant);
            self.report_tenant(&key.tenant, false);
        }
    }
}

#[cfg(test)]
mod tests;
