//! The room index: which connections are in which rooms, keyed by (tenant, namespace, room).
//!
//! Every lookup starts at a tenant, so isolation is structural: a room named `order:42` in
//! tenant `a` and the same name in tenant `b` are different entries, and no call that takes a
//! tenant can reach another tenant's members. Fan-out collects recipients under a brief read
//! lock; the caller then encodes once and pushes the same bytes to each.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::queue::OutQueue;

/// A process-wide unique connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The next id of this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A connection as the index sees it: where to push its frames and which wire format it speaks.
#[derive(Debug, Clone)]
pub struct Member {
    /// The connection's id.
    pub id: ConnId,
    /// The wire format tag (native, Socket.IO, ...), chosen by the protocol layer; a broadcast
    /// encodes once per tag.
    pub kind: u8,
    /// The connection's outbound queue.
    pub queue: Arc<OutQueue>,
}

/// The key of a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKey {
    /// The tenant the room lives in.
    pub tenant: Arc<str>,
    /// The namespace (`/` by default).
    pub ns: Arc<str>,
    /// The room name.
    pub room: Arc<str>,
}

impl RoomKey {
    /// Builds a key from borrowed parts.
    pub fn new(tenant: &str, ns: &str, room: &str) -> Self {
        Self {
            tenant: tenant.into(),
            ns: ns.into(),
            room: room.into(),
        }
    }
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

/// A room's position at the time of a publish: the offset given to the event and the
/// stream epoch that offsets compare within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Per-room counter, starting at 1.
    pub offset: u64,
    /// Changes whenever the room's counter restarts (a new process, or the room emptied).
    pub epoch: Arc<str>,
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

#[derive(Debug)]
struct Room {
    members: HashMap<ConnId, Member>,
    next_offset: AtomicU64,
    epoch: Arc<str>,
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
    rooms_created: u64,
}

/// The room index of one node.
#[derive(Debug)]
pub struct RoomIndex {
    // A std lock: it is held to update or read the maps, never across an `.await`; fan-out
    // collects recipients under the read lock and pushes after releasing it.
    inner: RwLock<Inner>,
    epoch_prefix: String,
    max_rooms_per_conn: usize,
    // Publish order stripes (see `order_guard`). std mutexes: held for one synchronous
    // fan-out, never across an `.await`.
    order: Box<[Mutex<()>]>,
    order_hasher: RandomState,
}

/// Stripes of the publish order locks: rooms rarely share one.
const ORDER_STRIPES: usize = 64;

impl RoomIndex {
    /// An empty index. `epoch_prefix` distinguishes this process's epochs from earlier ones;
    /// `max_rooms_per_conn` bounds joins per connection.
    pub fn new(epoch_prefix: impl Into<String>, max_rooms_per_conn: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            epoch_prefix: epoch_prefix.into(),
            max_rooms_per_conn,
            order: (0..ORDER_STRIPES).map(|_| Mutex::new(())).collect(),
            order_hasher: RandomState::new(),
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
        Self::register_locked(&mut self.write(), tenant, user, None, member);
    }

    /// Adds a connection that lives in one namespace (a Socket.IO socket: one per namespace
    /// of a client). The namespace-aware collectors ([`collect_user_in`](Self::collect_user_in),
    /// [`collect_tenant_in`](Self::collect_tenant_in)) leave it out for other namespaces.
    pub fn register_in(&self, tenant: &str, user: &str, ns: &str, member: Member) {
        Self::register_locked(&mut self.write(), tenant, user, Some(ns.into()), member);
    }

    fn register_locked(
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
        let t = inner.tenants.entry(tenant.clone()).or_default();
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
        Self::register_locked(&mut inner, tenant, user, None, member);
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
            remove_member(&mut inner.tenants, key, id);
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
        let t = inner.tenants.entry(key.tenant.clone()).or_default();
        let rooms = t.rooms.entry(key.ns.clone()).or_default();
        let created = &mut inner.rooms_created;
        let room = rooms.entry(key.room.clone()).or_insert_with(|| {
            *created += 1;
            Room {
                members: HashMap::new(),
                next_offset: AtomicU64::new(1),
                epoch: format!("{}-{:x}", self.epoch_prefix, *created).into(),
            }
        });
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
        remove_member(&mut inner.tenants, key, id);
        true
    }

    /// The rooms a connection is in.
    pub fn rooms_of(&self, id: ConnId) -> Vec<RoomKey> {
        self.read()
            .conns
            .get(&id)
            .map(|e| e.rooms.clone())
            .unwrap_or_default()
    }

    /// Whether a connection is in a room.
    pub fn is_member(&self, id: ConnId, key: &RoomKey) -> bool {
        self.read()
            .conns
            .get(&id)
            .is_some_and(|e| e.rooms.contains(key))
    }

    /// Members of a room.
    pub fn room_size(&self, key: &RoomKey) -> usize {
        self.read()
            .tenants
            .get(&key.tenant)
            .and_then(|t| t.rooms.get(&key.ns))
            .and_then(|r| r.get(&key.room))
            .map_or(0, |r| r.members.len())
    }

    /// Connections in the whole index.
    pub fn connection_count(&self) -> usize {
        self.read().conns.len()
    }

    /// Connections of one tenant.
    pub fn tenant_connection_count(&self, tenant: &str) -> usize {
        self.read().tenants.get(tenant).map_or(0, |t| t.conns.len())
    }

    /// Connection ids of one user of one tenant.
    pub fn user_connections(&self, tenant: &str, user: &str) -> Vec<ConnId> {
        self.read()
            .tenants
            .get(tenant)
            .and_then(|t| t.users.get(user))
            .cloned()
            .unwrap_or_default()
    }

    /// Distinct users of one tenant (all tenants when `None`), sorted, at most `limit`.
    pub fn users(&self, tenant: &str, limit: usize) -> Vec<String> {
        let inner = self.read();
        let mut users: Vec<String> = inner
            .tenants
            .get(tenant)
            .map(|t| t.users.keys().map(|u| u.to_string()).collect())
            .unwrap_or_default();
        users.sort_unstable();
        users.truncate(limit);
        users
    }

    /// Counts per tenant, sorted by tenant name.
    pub fn tenant_counts(&self) -> Vec<TenantCount> {
        let inner = self.read();
        let mut counts: Vec<TenantCount> = inner
            .tenants
            .iter()
            .filter(|(_, t)| !t.conns.is_empty())
            .map(|(name, t)| TenantCount {
                tenant: name.to_string(),
                connections: t.conns.len(),
                users: t.users.len(),
            })
            .collect();
        counts.sort_unstable_by(|a, b| a.tenant.cmp(&b.tenant));
        counts
    }

    /// The member with this id, with its tenant and user.
    pub fn member(&self, id: ConnId) -> Option<(Member, String, String)> {
        self.read()
            .conns
            .get(&id)
            .map(|e| (e.member.clone(), e.tenant.to_string(), e.user.to_string()))
    }

    /// Orders publishes to one room: held from [`collect_room`](Self::collect_room) to the last
    /// push, it makes racing publishers reach every queue in offset order.
    pub fn order_guard(&self, key: &RoomKey) -> MutexGuard<'_, ()> {
        let stripe = (self.order_hasher.hash_one(key) % ORDER_STRIPES as u64) as usize;
        // The guarded value is `()`: a poisoned stripe is as good as a healthy one.
        self.order[stripe].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Collects a room's members into `out` and gives the event its position, or `None`
    /// when the room has no members.
    pub fn collect_room(&self, key: &RoomKey, out: &mut Vec<Member>) -> Option<Position> {
        let inner = self.read();
        let room = inner
            .tenants
            .get(&key.tenant)?
            .rooms
            .get(&key.ns)?
            .get(&key.room)?;
        out.extend(room.members.values().cloned());
        Some(Position {
            offset: room.next_offset.fetch_add(1, Ordering::Relaxed),
            epoch: room.epoch.clone(),
        })
    }

    /// Collects a room's members into `out` without giving an event a position: for relays
    /// and volatile messages that are not part of the room's stream.
    pub fn collect_members(&self, key: &RoomKey, out: &mut Vec<Member>) {
        let inner = self.read();
        let room = inner
            .tenants
            .get(&key.tenant)
            .and_then(|t| t.rooms.get(&key.ns))
            .and_then(|rooms| rooms.get(&key.room));
        if let Some(room) = room {
            out.extend(room.members.values().cloned());
        }
    }

    /// The namespace a connection was registered in with [`register_in`](Self::register_in).
    pub fn namespace_of(&self, id: ConnId) -> Option<Arc<str>> {
        self.read().conns.get(&id).and_then(|e| e.ns.clone())
    }

    /// Collects the connections of one user of one tenant that reach namespace `ns`: those
    /// registered without a namespace, and those registered in `ns`.
    pub fn collect_user_in(&self, tenant: &str, user: &str, ns: &str, out: &mut Vec<Member>) {
        let inner = self.read();
        if let Some(ids) = inner.tenants.get(tenant).and_then(|t| t.users.get(user)) {
            out.extend(ids.iter().filter_map(|id| reaching(&inner, *id, ns)));
        }
    }

    /// Collects the connections of one tenant that reach namespace `ns` (see
    /// [`collect_user_in`](Self::collect_user_in)).
    pub fn collect_tenant_in(&self, tenant: &str, ns: &str, out: &mut Vec<Member>) {
        let inner = self.read();
        if let Some(t) = inner.tenants.get(tenant) {
            out.extend(t.conns.keys().filter_map(|id| reaching(&inner, *id, ns)));
        }
    }

    /// Collects every connection of one user of one tenant.
    pub fn collect_user(&self, tenant: &str, user: &str, out: &mut Vec<Member>) {
        let inner = self.read();
        if let Some(t) = inner.tenants.get(tenant) {
            if let Some(ids) = t.users.get(user) {
                out.extend(ids.iter().filter_map(|id| t.conns.get(id)).cloned());
            }
        }
    }

    /// Collects every connection of one tenant.
    pub fn collect_tenant(&self, tenant: &str, out: &mut Vec<Member>) {
        if let Some(t) = self.read().tenants.get(tenant) {
            out.extend(t.conns.values().cloned());
        }
    }

    /// Collects every connection of every tenant (platform-wide broadcast).
    pub fn collect_all(&self, out: &mut Vec<Member>) {
        out.extend(self.read().conns.values().map(|e| e.member.clone()));
    }
}

/// The member `id` if it reaches namespace `ns`.
fn reaching(inner: &Inner, id: ConnId, ns: &str) -> Option<Member> {
    let entry = inner.conns.get(&id)?;
    match &entry.ns {
        Some(own) if **own != *ns => None,
        _ => Some(entry.member.clone()),
    }
}

fn remove_member(tenants: &mut HashMap<Arc<str>, Tenant>, key: &RoomKey, id: ConnId) {
    let Some(t) = tenants.get_mut(&key.tenant) else {
        return;
    };
    if let Some(rooms) = t.rooms.get_mut(&key.ns) {
        if let Some(room) = rooms.get_mut(&key.room) {
            room.members.remove(&id);
            if room.members.is_empty() {
                rooms.remove(&key.room);
            }
        }
        if rooms.is_empty() {
            t.rooms.remove(&key.ns);
        }
    }
    if t.conns.is_empty() && t.rooms.is_empty() {
        tenants.remove(&key.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueLimits;

    fn member(kind: u8) -> Member {
        Member {
            id: ConnId::next(),
            kind,
            queue: Arc::new(OutQueue::new(QueueLimits::default())),
        }
    }

    fn ids(members: &[Member]) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = members.iter().map(|m| m.id).collect();
        v.sort();
        v
    }

    #[test]
    fn same_room_name_in_two_tenants_is_two_rooms() {
        let idx = RoomIndex::new("e", 10);
        let (a, b) = (member(0), member(0));
        idx.register("a", "1", a.clone());
        idx.register("b", "1", b.clone());
        idx.join(a.id, &RoomKey::new("a", "/", "order:1")).unwrap();
        idx.join(b.id, &RoomKey::new("b", "/", "order:1")).unwrap();
        let mut out = Vec::new();
        idx.collect_room(&RoomKey::new("a", "/", "order:1"), &mut out);
        assert_eq!(ids(&out), vec![a.id]);
        out.clear();
        idx.collect_tenant("b", &mut out);
        assert_eq!(ids(&out), vec![b.id]);
        out.clear();
        idx.collect_user("a", "1", &mut out);
        assert_eq!(ids(&out), vec![a.id]);
    }

    #[test]
    fn namespaces_are_separate() {
        let idx = RoomIndex::new("e", 10);
        let a = member(0);
        idx.register("t", "1", a.clone());
        idx.join(a.id, &RoomKey::new("t", "/chat", "r")).unwrap();
        assert_eq!(idx.room_size(&RoomKey::new("t", "/", "r")), 0);
        assert_eq!(idx.room_size(&RoomKey::new("t", "/chat", "r")), 1);
    }

    #[test]
    fn join_leave_and_unregister() {
        let idx = RoomIndex::new("e", 2);
        let a = member(0);
        idx.register("t", "u", a.clone());
        let k1 = RoomKey::new("t", "/", "r1");
        let k2 = RoomKey::new("t", "/", "r2");
        assert_eq!(idx.join(a.id, &k1), Ok(true));
        assert_eq!(idx.join(a.id, &k1), Ok(false));
        assert_eq!(idx.join(a.id, &k2), Ok(true));
        assert_eq!(
            idx.join(a.id, &RoomKey::new("t", "/", "r3")),
            Err(JoinError::TooManyRooms)
        );
        assert!(idx.leave(a.id, &k1));
        assert!(!idx.leave(a.id, &k1));
        assert_eq!(idx.rooms_of(a.id), vec![k2.clone()]);
        idx.unregister(a.id);
        assert_eq!(idx.room_size(&k2), 0);
        assert_eq!(idx.connection_count(), 0);
        assert!(idx.tenant_counts().is_empty());
        assert_eq!(idx.join(a.id, &k1), Err(JoinError::NotRegistered));
    }

    #[test]
    fn offsets_count_per_room_and_epoch_changes_when_room_is_recreated() {
        let idx = RoomIndex::new("e", 10);
        let a = member(0);
        idx.register("t", "u", a.clone());
        let k = RoomKey::new("t", "/", "r");
        idx.join(a.id, &k).unwrap();
        let mut out = Vec::new();
        let p1 = idx.collect_room(&k, &mut out).unwrap();
        let p2 = idx.collect_room(&k, &mut out).unwrap();
        assert_eq!((p1.offset, p2.offset), (1, 2));
        assert_eq!(p1.epoch, p2.epoch);
        idx.leave(a.id, &k);
        assert!(idx.collect_room(&k, &mut out).is_none());
        idx.join(a.id, &k).unwrap();
        let p3 = idx.collect_room(&k, &mut out).unwrap();
        assert_eq!(p3.offset, 1);
        assert_ne!(p3.epoch, p1.epoch);
    }

    #[test]
    fn namespaced_members_reach_their_namespace_only() {
        let idx = RoomIndex::new("e", 10);
        let (native, chat, admin) = (member(0), member(1), member(1));
        idx.register("t", "u", native.clone());
        idx.register_in("t", "u", "/chat", chat.clone());
        idx.register_in("t", "u", "/admin", admin.clone());
        assert_eq!(idx.namespace_of(chat.id).as_deref(), Some("/chat"));
        assert_eq!(idx.namespace_of(native.id), None);
        let mut out = Vec::new();
        idx.collect_user_in("t", "u", "/chat", &mut out);
        assert_eq!(ids(&out), ids(&[native.clone(), chat.clone()]));
        out.clear();
        idx.collect_tenant_in("t", "/admin", &mut out);
        assert_eq!(ids(&out), ids(&[native.clone(), admin.clone()]));
        out.clear();
        idx.collect_tenant_in("other", "/admin", &mut out);
        assert!(out.is_empty());
        idx.unregister(chat.id);
        assert_eq!(idx.namespace_of(chat.id), None);
    }

    #[test]
    fn collect_members_gives_no_position() {
        let idx = RoomIndex::new("e", 10);
        let a = member(0);
        idx.register("t", "u", a.clone());
        let k = RoomKey::new("t", "/", "r");
        idx.join(a.id, &k).unwrap();
        let mut out = Vec::new();
        idx.collect_members(&k, &mut out);
        idx.collect_members(&RoomKey::new("t", "/", "none"), &mut out);
        assert_eq!(ids(&out), vec![a.id]);
        assert_eq!(idx.collect_room(&k, &mut out).map(|p| p.offset), Some(1));
    }

    #[test]
    fn counts_per_tenant_and_user() {
        let idx = RoomIndex::new("e", 10);
        for (t, u) in [("a", "1"), ("a", "1"), ("a", "2"), ("b", "9")] {
            idx.register(t, u, member(0));
        }
        let counts = idx.tenant_counts();
        assert_eq!(counts.len(), 2);
        assert_eq!((counts[0].connections, counts[0].users), (3, 2));
        assert_eq!(idx.user_connections("a", "1").len(), 2);
        assert_eq!(idx.users("a", 10), vec!["1".to_string(), "2".to_string()]);
        assert!(idx.user_connections("b", "1").is_empty());
    }
}
