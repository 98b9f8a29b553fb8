//! The Socket.IO emitters a cluster takes messages from (`[[cluster.emitters]]`): Node's
//! `@socket.io/redis-emitter` and python-socketio's Redis managers publish on channels of
//! their own; every node reads them and acts on its own connections (an emitter's event is
//! delivered by each node to its members, once, as the Socket.IO Redis adapter does).
//!
//! A message whose tenant cannot be read, or that cannot be decoded (a pickled message from a
//! python-socketio before 5.14 included, never unpickled), is dropped with a log line and
//! counted in `roomcast_emitter_dropped_total{reason}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use roomcast_broker::{ConnId, RoomKey};
use roomcast_engine::rooms::Closing;
use roomcast_redis::emitter::{
    self, EmitterCommand, EmitterError, RoomChange, RoomPattern, Sockets, TenantRule,
};
use roomcast_redis::{ChannelListener, RedisBroker};

use crate::app::App;
use crate::config::{Config, EmitterBinding, EmitterKind};
use crate::metrics::ByReason;

/// What the emitter bindings did, for metrics.
#[derive(Debug, Default)]
pub struct EmitterCounters {
    /// Messages acted on (events delivered, joins, leaves, disconnects).
    pub handled: AtomicU64,
    /// Messages dropped, by reason.
    dropped: ByReason,
}

impl EmitterCounters {
    fn drop_for(&self, reason: &'static str) {
        self.dropped.add(reason);
    }

    /// Dropped messages by reason, sorted.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        self.dropped.list()
    }
}

/// One binding's reader.
#[derive(Debug)]
struct Listener {
    kind: EmitterKind,
    key: String,
    rule: TenantRule,
    /// Alias -> namespace, so an emitter naming an alias reaches the namespace's rooms.
    aliases: HashMap<String, String>,
    app: Weak<App>,
    counters: Arc<EmitterCounters>,
}

fn room_key(tenant: &Arc<str>, ns: &Arc<str>, room: &Arc<str>) -> RoomKey {
    RoomKey {
        tenant: tenant.clone(),
        ns: ns.clone(),
        room: room.clone(),
    }
}

/// The tenant rule of a binding (its pattern checked when the plan is built).
pub fn rule(binding: &EmitterBinding) -> Result<TenantRule, EmitterError> {
    if binding.tenant_from_room.is_empty() {
        Ok(TenantRule::Fixed(binding.tenant.as_str().into()))
    } else {
        RoomPattern::parse(&binding.tenant_from_room).map(TenantRule::FromRoom)
    }
}

/// The namespaces clients may connect to, aliases included, sorted; and alias -> namespace.
fn namespaces(config: &Config) -> (Vec<String>, HashMap<String, String>) {
    let mut aliases = HashMap::new();
    let mut namespaces = vec!["/".to_owned()];
    for ns in &config.socketio.namespaces {
        namespaces.push(ns.name.clone());
        for alias in &ns.aliases {
            aliases.insert(alias.clone(), ns.name.clone());
            namespaces.push(alias.clone());
        }
    }
    namespaces.sort();
    namespaces.dedup();
    (namespaces, aliases)
}

/// The reader of one binding's messages, acting on `app`'s connections; its messages are
/// given to [`ChannelListener::message`], from Redis or from another transport (AMQP).
pub(crate) fn listener(
    binding: &EmitterBinding,
    config: &Config,
    app: &Arc<App>,
    counters: &Arc<EmitterCounters>,
) -> Result<Arc<dyn ChannelListener>, EmitterError> {
    Ok(Arc::new(Listener {
        kind: binding.kind,
        key: binding.channel().to_owned(),
        rule: rule(binding)?,
        aliases: namespaces(config).1,
        app: Arc::downgrade(app),
        counters: counters.clone(),
    }))
}

/// Subscribes to every binding's channels; their messages act on `app`'s connections.
pub(super) async fn bind(
    broker: &RedisBroker,
    config: &Config,
    app: &Arc<App>,
    counters: &Arc<EmitterCounters>,
) -> anyhow::Result<()> {
    let namespaces = namespaces(config).0;
    for binding in config.cluster.iter().flat_map(|c| &c.emitters) {
        let listener = listener(binding, config, app, counters)?;
        let key = binding.channel();
        match binding.kind {
            EmitterKind::SocketIo => {
                let [broadcasts, _] = emitter::node_patterns(key, None);
                let prefix = format!("{key}#");
                broker
                    .listen_pattern(prefix, broadcasts, listener.clone())
                    .await?;
                // Requests are subscribed by name, one per namespace, so that the emitter's
                // `serverCount` (PUBSUB NUMSUB) counts this node.
                for ns in &namespaces {
                    let channel = format!("{key}-request#{ns}#");
                    broker.listen(channel, listener.clone()).await?;
                }
            }
            EmitterKind::PythonSocketio => {
                broker.listen(key.to_owned(), listener.clone()).await?;
            }
        }
    }
    Ok(())
}

impl ChannelListener for Listener {
    fn message(&self, channel: &str, payload: &[u8]) {
        let decoded = match self.kind {
            EmitterKind::SocketIo => emitter::decode_node(&self.key, channel, payload, &self.rule),
            EmitterKind::PythonSocketio => emitter::decode_python(payload, &self.rule),
        };
        let command = match decoded {
            Ok(command) => command,
            Err(e) => {
                let reason = match e {
                    EmitterError::Pickled => "pickled",
                    EmitterError::NoTenant => "no_tenant",
                    EmitterError::Unsupported(_) => "unsupported",
                    _ => "malformed",
                };
                self.counters.drop_for(reason);
                tracing::warn!(%channel, error = %e, "emitter message dropped");
                return;
            }
        };
        let Some(app) = self.app.upgrade() else {
            return;
        };
        if self.apply(&app, command) {
            self.counters.handled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Listener {
    fn ns(&self, ns: &str) -> Arc<str> {
        self.aliases.get(ns).map_or(ns, String::as_str).into()
    }

    /// Acts on one command on this node's connections; false when it was not acted on.
    fn apply(&self, app: &App, command: EmitterCommand) -> bool {
        match command {
            EmitterCommand::Publish {
                mut publication,
                skip_sids,
            } => {
                publication.ns = self.ns(&publication.ns);
                // The sessions to leave out (python-socketio's `skip_sid`, one or a list) that
                // are on this node.
                let mut skip = Vec::new();
                if let Some(tenant) = publication.target.tenant() {
                    let tenant: Arc<str> = tenant.into();
                    for sid in skip_sids {
                        let sockets = Sockets::Sid(sid);
                        skip.extend(self.select(app, &tenant, &publication.ns, &sockets));
                    }
                }
                // Every node reads the emitter's channel: each delivers to its own members.
                app.node
                    .hub()
                    .deliver_skipping(&publication, &mut |_| None, &skip);
                true
            }
            EmitterCommand::Rooms {
                change,
                tenant,
                ns,
                sockets,
                rooms,
            } => {
                let ns = self.ns(&ns);
                for id in self.select(app, &tenant, &ns, &sockets) {
                    for room in &rooms {
                        let key = room_key(&tenant, &ns, room);
                        match change {
                            RoomChange::Join => {
                                let _ = app.index.join(id, &key);
                            }
                            RoomChange::Leave => {
                                app.index.leave(id, &key);
                            }
                        }
                    }
                }
                true
            }
            EmitterCommand::Disconnect {
                tenant,
                ns,
                sockets,
                ..
            } => {
                let ns = self.ns(&ns);
                for id in self.select(app, &tenant, &ns, &sockets) {
                    if let Some(live) = app.index.live_connection(id) {
                        live.control
                            .close(Closing::Disconnect("disconnected by the server"));
                    }
                }
                true
            }
            EmitterCommand::Ignored(what) => {
                tracing::debug!(what, "emitter message ignored");
                false
            }
            _ => {
                self.counters.drop_for("unsupported");
                false
            }
        }
    }

    /// The connections of this node a command names: the members of its rooms but those of
    /// its except rooms, or one session (a Roomcast session id; other ids name nobody here).
    fn select(
        &self,
        app: &App,
        tenant: &Arc<str>,
        ns: &Arc<str>,
        sockets: &Sockets,
    ) -> Vec<ConnId> {
        let collect = |rooms: &[Arc<str>]| {
            let mut members = Vec::new();
            for room in rooms {
                app.index
                    .collect_members_then(&room_key(tenant, ns, room), &mut members, || ());
            }
            let mut ids: Vec<ConnId> = members.into_iter().map(|m| m.id).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        match sockets {
            // No room named: every socket of the tenant in the namespace.
            Sockets::InRooms { rooms, except } if rooms.is_empty() => {
                let excluded = collect(except);
                let mut members = Vec::new();
                app.index.collect_tenant_in(tenant, ns, &mut members);
                members
                    .into_iter()
                    .map(|m| m.id)
                    .filter(|id| excluded.binary_search(id).is_err())
                    .collect()
            }
            Sockets::InRooms { rooms, except } => {
                let excluded = collect(except);
                collect(rooms)
                    .into_iter()
                    .filter(|id| excluded.binary_search(id).is_err())
                    .collect()
            }
            // A Socket.IO socket's id (what the emitter's own server would know), else a
            // session id as the HTTP API gives them.
            Sockets::Sid(sid) => app
                .socketio()
                .and_then(|sio| sio.socket_by_sid(sid, ns))
                .or_else(|| u64::from_str_radix(sid, 16).ok().map(ConnId))
                .filter(|id| app.index.member(*id).is_some_and(|(_, t, _)| t == **tenant))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }
}
