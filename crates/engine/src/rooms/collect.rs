//! The room index's read side: who is in a room, of a user, of a tenant, and the counts
//! the HTTP API reports. Every collector takes the read lock briefly and copies members out;
//! the caller encodes and pushes after it is released.

use std::sync::Arc;

use super::{ConnId, Inner, Member, RoomIndex, RoomKey, TenantCount};

impl RoomIndex {
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

    /// Collects a room's members into `out`.
    pub fn collect_members(&self, key: &RoomKey, out: &mut Vec<Member>) {
        self.collect_members_then(key, out, || ());
    }

    /// Collects a room's members into `out` and, when it has any, runs `then` before the
    /// index's lock is released: what `then` reads (a room's stream position) belongs to the
    /// same moment as the members, since first-in and last-out transitions happen under the
    /// write lock. `then` must not call into the index. `None` when the room has no members.
    pub fn collect_members_then<T>(
        &self,
        key: &RoomKey,
        out: &mut Vec<Member>,
        then: impl FnOnce() -> T,
    ) -> Option<T> {
        let inner = self.read();
        let room = inner
            .tenants
            .get(&key.tenant)
            .and_then(|t| t.rooms.get(&key.ns))
            .and_then(|rooms| rooms.get(&key.room))?;
        out.extend(room.members.values().cloned());
        Some(then())
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
