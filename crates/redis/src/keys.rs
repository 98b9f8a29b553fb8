//! [`Keys`]: the names of every key and channel a node uses. Names carry the tenant inside a
//! hash tag (`{...}`), so that a tenant's counters and channel live in one slot of a Redis
//! Cluster and one script can update and publish them together.

use roomcast_broker::RoomKey;

/// The platform channel's name after the prefix.
const PLATFORM: &str = ":platform:pub";

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// Writes `name` with `{`, `}`, `:` and `%` percent-encoded, so that a name can neither end a
/// hash tag nor run into the next part of a key.
fn push_escaped(out: &mut String, name: &str) {
    for c in name.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

impl Keys {
    /// Names under `prefix` (for example `roomcast`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn tenant_part(&self, tenant: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + tenant.len() + 8);
        out.push_str(&self.prefix);
        out.push_str(":{");
        push_escaped(&mut out, tenant);
        out.push('}');
        out
    }

    /// The key holding an idempotency key's claim and result: `<prefix>:once:{<key>}`.
    pub fn once_key(&self, key: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + key.len() + 10);
        out.push_str(&self.prefix);
        out.push_str(":once:{");
        push_escaped(&mut out, key);
        out.push('}');
        out
    }

    /// The channel of one tenant's publications: `<prefix>:{<tenant>}:pub`.
    pub fn tenant_channel(&self, tenant: &str) -> String {
        let mut out = self.tenant_part(tenant);
        out.push_str(":pub");
        out
    }

    /// Whether `channel` is one of [`tenant_channel`](Self::tenant_channel) or
    /// [`room_channel`](Self::room_channel).
    pub fn is_broker_channel(&self, channel: &str) -> bool {
        channel
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix(":{"))
            .is_some_and(|rest| rest.ends_with("}:pub"))
    }

    /// The hash tag of one room: `{<tenant>:<ns>:<room>}`, escaped, so that rooms spread over
    /// the slots of a Redis Cluster.
    fn room_part(&self, room: &RoomKey) -> String {
        let mut out = String::with_capacity(self.prefix.len() + room.room.len() + 16);
        out.push_str(&self.prefix);
        out.push_str(":{");
        push_escaped(&mut out, &room.tenant);
        out.push(':');
        push_escaped(&mut out, &room.ns);
        out.push(':');
        push_escaped(&mut out, &room.room);
        out.push('}');
        out
    }

    /// The channel of one room's publications (channels per room):
    /// `<prefix>:{<tenant>:<ns>:<room>}:pub`.
    pub fn room_channel(&self, room: &RoomKey) -> String {
        let mut out = self.room_part(room);
        out.push_str(":pub");
        out
    }

    /// A room's offset counter with channels per room, in its channel's slot.
    pub fn room_offset_key(&self, room: &RoomKey) -> String {
        let mut out = self.room_part(room);
        out.push_str(":off");
        out
    }

    /// The channel of platform-wide publications.
    pub fn platform_channel(&self) -> String {
        format!("{}{PLATFORM}", self.prefix)
    }

    /// Whether `channel` is [`platform_channel`](Self::platform_channel), without building it.
    pub fn is_platform_channel(&self, channel: &str) -> bool {
        channel.strip_prefix(self.prefix.as_str()) == Some(PLATFORM)
    }

    /// The offset counter of one room: `<prefix>:{<tenant>}:off:<ns>:<room>`.
    pub fn offset_key(&self, room: &RoomKey) -> String {
        let mut out = self.tenant_part(&room.tenant);
        out.push_str(":off:");
        push_escaped(&mut out, &room.ns);
        out.push(':');
        push_escaped(&mut out, &room.room);
        out
    }

    /// The recovery log of one tenant namespace, in its tenant's slot:
    /// `<prefix>:{<tenant>}:log:<ns>`.
    pub fn log_key(&self, tenant: &str, ns: &str) -> String {
        let mut out = self.tenant_part(tenant);
        out.push_str(":log:");
        push_escaped(&mut out, ns);
        out
    }

    /// A recoverable session: `<prefix>:sio:{<pid>}`.
    pub fn session_key(&self, pid: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + pid.len() + 8);
        out.push_str(&self.prefix);
        out.push_str(":sio:{");
        push_escaped(&mut out, pid);
        out.push('}');
        out
    }

    /// The sorted set of live nodes (score: when the entry expires, in ms since the epoch).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// A node's registry entry (its description, with the TTL).
    pub fn node(&self, node_id: &str) -> String {
        let mut out = format!("{}:node:", self.prefix);
        push_escaped(&mut out, node_id);
        out
    }

    /// The channel a node takes requests on.
    pub fn node_channel(&self, node_id: &str) -> String {
        let mut out = format!("{}:node:", self.prefix);
        push_escaped(&mut out, node_id);
        out.push_str(":req");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_their_hash_tag() {
        let keys = Keys::new("rc");
        assert_eq!(keys.tenant_channel("acme"), "rc:{acme}:pub");
        assert_eq!(keys.tenant_channel("a}b:{c"), "rc:{a%7Db%3A%7Bc}:pub");
        let room = RoomKey::new("acme", "/", "order:1");
        assert_eq!(keys.offset_key(&room), "rc:{acme}:off:/:order%3A1");
        assert!(keys.is_broker_channel("rc:{acme}:pub"));
        assert!(!keys.is_broker_channel("rc:platform:pub"));
        assert!(keys.is_platform_channel(&keys.platform_channel()));
        assert!(!keys.is_platform_channel("rc:{acme}:pub"));
        let room = RoomKey::new("a:b", "/", "c");
        assert_eq!(keys.room_channel(&room), "rc:{a%3Ab:/:c}:pub");
        assert!(keys.is_broker_channel(&keys.room_channel(&room)));
        assert_eq!(keys.room_offset_key(&room), "rc:{a%3Ab:/:c}:off");
        assert_eq!(keys.log_key("acme", "/chat"), "rc:{acme}:log:/chat");
        assert_eq!(keys.session_key("p}q"), "rc:sio:{p%7Dq}");
    }

    #[test]
    fn distinct_rooms_get_distinct_keys() {
        let keys = Keys::new("rc");
        let a = keys.offset_key(&RoomKey::new("t", "/a:", "b"));
        let b = keys.offset_key(&RoomKey::new("t", "/a", ":b"));
        assert_ne!(a, b);
    }
}
