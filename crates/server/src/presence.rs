//! Who is connected on this node, and ending connections here: the local answer of
//! `GET /api/connections`, `GET /api/users/{id}/status` and `POST /api/disconnect`, which a
//! cluster asks every node for and adds up.

use roomcast_engine::rooms::{Closing, ConnId, RoomIndex, RoomKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Most user ids listed per tenant.
pub const MAX_LISTED_USERS: usize = 1000;

/// A question about connections, asked of this node and, in a cluster, of every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Ask {
    /// Connection and user counts per tenant (of one tenant when named).
    Connections {
        /// The tenant, `None` for all.
        tenant: Option<String>,
        /// Rooms of each tenant listed, in `namespace`, whose members are counted too.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rooms: Vec<String>,
        /// The namespace of `rooms`, `/` when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
    /// The sessions of one user.
    UserStatus {
        /// The user's tenant.
        tenant: String,
        /// The user.
        user: String,
    },
    /// Ends a user's connections or one session.
    Disconnect {
        /// The only tenant the caller may reach (a tenant key's), `None` for a platform key.
        scope: Option<String>,
        /// What to end.
        target: Ending,
        /// Told to the clients.
        reason: String,
    },
}

/// What [`Ask::Disconnect`] ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Every connection of a user.
    User {
        /// The tenant.
        tenant: String,
        /// The user.
        user: String,
    },
    /// One session, by the id its welcome gave.
    Session(String),
}

/// This node's answer to `ask`.
pub fn answer(index: &RoomIndex, ask: &Ask) -> Value {
    match ask {
        Ask::Connections {
            tenant,
            rooms,
            namespace,
        } => {
            let ns = namespace.as_deref().unwrap_or("/");
            let tenants: Vec<Value> = index
                .tenant_counts()
                .into_iter()
                .filter(|c| tenant.as_ref().is_none_or(|t| *t == c.tenant))
                .map(|c| {
                    let mut entry = json!({
                        "tenant": c.tenant,
                        "connections": c.connections,
                        "users": c.users,
                        "user_ids": index.users(&c.tenant, MAX_LISTED_USERS),
                    });
                    if !rooms.is_empty() {
                        let sizes: serde_json::Map<String, Value> = rooms
                            .iter()
                            .map(|room| {
                                let key = RoomKey::new(&c.tenant, ns, room);
                                (room.clone(), index.room_size(&key).into())
                            })
                            .collect();
                        entry["rooms"] = sizes.into();
                    }
                    entry
                })
                .collect();
            json!({"tenants": tenants})
        }
        Ask::UserStatus { tenant, user } => {
            let sessions: Vec<String> = index
                .user_connections(tenant, user)
                .into_iter()
                .filter_map(|id| index.live_connection(id))
                .map(|live| live.control.session_id())
                .collect();
            json!({"sessions": sessions})
        }
        Ask::Disconnect {
            scope,
            target,
            reason,
        } => {
            let targets: Vec<ConnId> = match target {
                Ending::User { tenant, user } => index.user_connections(tenant, user),
                Ending::Session(session) => match u64::from_str_radix(session, 16) {
                    // Another tenant's session looks exactly like an unknown one to a
                    // tenant key.
                    Ok(id) => match index.member(ConnId(id)) {
                        Some((_, tenant, _)) if scope.as_ref().is_none_or(|s| *s == tenant) => {
                            vec![ConnId(id)]
                        }
                        _ => vec![],
                    },
                    Err(_) => vec![],
                },
            };
            // Each connection's own handle knows how its protocol says it (native:
            // `disconnect` 4004 with the reason; Socket.IO: DISCONNECT).
            let mut n = 0;
            for live in targets
                .into_iter()
                .filter_map(|id| index.live_connection(id))
            {
                live.control.close(Closing::Disconnect(reason));
                n += 1;
            }
            json!({"disconnected": n})
        }
    }
}

/// One tenant's counts while answers are added up.
#[derive(Default)]
struct Tally {
    connections: u64,
    users: u64,
    ids: Vec<String>,
    /// Whether a node's list of user ids was cut at its bound.
    cut: bool,
    /// The members of each room asked about.
    rooms: std::collections::BTreeMap<String, u64>,
}

/// Adds up the answers of several nodes to one `ask` (this node's first).
pub fn merge(ask: &Ask, answers: &[Value]) -> Value {
    match ask {
        Ask::Connections { rooms, .. } => {
            let mut tenants: std::collections::BTreeMap<String, Tally> = Default::default();
            for a in answers {
                for t in a["tenants"].as_array().into_iter().flatten() {
                    let Some(name) = t["tenant"].as_str() else {
                        continue;
                    };
                    let e = tenants.entry(name.to_owned()).or_default();
                    e.connections += t["connections"].as_u64().unwrap_or(0);
                    e.users += t["users"].as_u64().unwrap_or(0);
                    let ids: Vec<String> = t["user_ids"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect();
                    // A list cut at the bound cannot tell users apart across nodes.
                    e.cut |= (ids.len() as u64) < t["users"].as_u64().unwrap_or(0);
                    e.ids.extend(ids);
                    for room in rooms {
                        *e.rooms.entry(room.clone()).or_default() +=
                            t["rooms"][room.as_str()].as_u64().unwrap_or(0);
                    }
                }
            }
            let mut total = 0;
            let list: Vec<Value> = tenants
                .into_iter()
                .map(|(tenant, mut t)| {
                    total += t.connections;
                    t.ids.sort_unstable();
                    t.ids.dedup();
                    let users = if t.cut { t.users } else { t.ids.len() as u64 };
                    t.ids.truncate(MAX_LISTED_USERS);
                    let mut entry = json!({"tenant": tenant, "connections": t.connections, "users": users, "user_ids": t.ids});
                    if !rooms.is_empty() {
                        entry["rooms"] = json!(t.rooms);
                    }
                    entry
                })
                .collect();
            json!({"connections": total, "tenants": list})
        }
        Ask::UserStatus { .. } => {
            let sessions: Vec<Value> = answers
                .iter()
                .flat_map(|a| a["sessions"].as_array().cloned().unwrap_or_default())
                .collect();
            json!({"sessions": sessions})
        }
        Ask::Disconnect { .. } => {
            let n: u64 = answers
                .iter()
                .map(|a| a["disconnected"].as_u64().unwrap_or(0))
                .sum();
            json!({"disconnected": n})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_on_several_nodes_count_once() {
        let ask = Ask::Connections {
            tenant: None,
            rooms: vec![],
            namespace: None,
        };
        let a = json!({"tenants": [{"tenant": "acme", "connections": 2, "users": 2, "user_ids": ["1", "2"]}]});
        let b = json!({"tenants": [{"tenant": "acme", "connections": 1, "users": 1, "user_ids": ["2"]},
                                   {"tenant": "globex", "connections": 1, "users": 1, "user_ids": ["9"]}]});
        let merged = merge(&ask, &[a, b]);
        assert_eq!(merged["connections"], 4);
        assert_eq!(merged["tenants"][0]["users"], 2);
        assert_eq!(merged["tenants"][0]["connections"], 3);
        assert_eq!(merged["tenants"][1]["tenant"], "globex");
    }

    #[test]
    fn asks_travel_as_json() {
        let ask = Ask::Disconnect {
            scope: Some("acme".into()),
            target: Ending::Session("1f".into()),
            reason: "bye".into(),
        };
        let text = serde_json::to_string(&ask).unwrap();
        assert_eq!(serde_json::from_str::<Ask>(&text).unwrap(), ask);
    }
}
