//! `[[lifecycle.publish]]`: lifecycle events published to rooms of their tenant (seeds 002 and
//! 004 show a user's presence to the others), through the node like every publish. Templates
//! read the event's fields as the webhook has them: `{user}`, `{tenant}`, `{session}`,
//! `{transport}`, `{namespace}`, `{room}`, `{reason}`, `{node}`, and `{now}`.

use std::sync::Arc;
use std::time::SystemTime;

use roomcast_broker::{Payload, Publication, Target};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::Event;
use crate::config::{ConfigError, LifecycleKind, LifecyclePublish};
use crate::proto::MAX_NAME_BYTES;
use crate::sio::routing::template::{Context, Data, Scope, Text};

#[derive(Debug)]
struct Rule {
    kind: LifecycleKind,
    event: String,
    ns: Arc<str>,
    rooms: Vec<Text>,
    broadcast: bool,
    data: Option<Data>,
}

/// The compiled `lifecycle.publish` rules.
#[derive(Debug, Default)]
pub(super) struct Publishes {
    rules: Vec<Rule>,
}

impl Publishes {
    pub(super) fn compile(list: &[LifecyclePublish]) -> Result<Publishes, ConfigError> {
        let rules = list
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let key = format!("lifecycle.publish[{i}]");
                let kind = p.kind.ok_or_else(|| {
                    ConfigError::invalid(
                        format!("{key}.kind"),
                        "is required: connect, disconnect, user_online, user_offline, \
                         room_occupied or room_vacated",
                    )
                })?;
                if p.event.is_empty() || p.event.len() > MAX_NAME_BYTES {
                    return Err(ConfigError::invalid(
                        format!("{key}.event"),
                        format!("must be 1 to {MAX_NAME_BYTES} bytes"),
                    ));
                }
                if !p.namespace.starts_with('/') {
                    return Err(ConfigError::invalid(
                        format!("{key}.namespace"),
                        "must start with `/`",
                    ));
                }
                if p.broadcast != p.rooms.is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{key}.rooms"),
                        "give rooms, or broadcast = true (the whole tenant), one of them",
                    ));
                }
                let rooms = p
                    .rooms
                    .iter()
                    .enumerate()
                    .map(|(j, room)| {
                        Text::parse(room, Scope::CONNECT)
                            .map_err(|e| ConfigError::invalid(format!("{key}.rooms[{j}]"), e))
                    })
                    .collect::<Result<_, _>>()?;
                let data = p
                    .data
                    .as_ref()
                    .map(|d| Data::compile(d, &format!("{key}.data"), Scope::CONNECT))
                    .transpose()
                    .map_err(|(at, e)| ConfigError::invalid(at, e))?;
                Ok(Rule {
                    kind,
                    event: p.event.clone(),
                    ns: p.namespace.as_str().into(),
                    rooms,
                    broadcast: p.broadcast,
                    data,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Publishes { rules })
    }

    /// The publications of `event`, whose fields (as [`Event::to_json`] gives them) are
    /// `fields`: one per rule of its kind whose rooms render.
    pub(super) fn publications(
        &self,
        event: &Event,
        fields: &Map<String, Value>,
    ) -> Vec<Publication> {
        let mut out = Vec::new();
        for rule in self.rules.iter().filter(|r| r.kind == event.kind) {
            let ctx = Context {
                claims: fields,
                args: &[],
                socket_id: "",
                now: SystemTime::now(),
                error: None,
                result: None,
            };
            let target = if rule.broadcast {
                Target::TenantWide {
                    tenant: event.tenant.clone(),
                }
            } else {
                let rooms: Result<Vec<Arc<str>>, String> = rule
                    .rooms
                    .iter()
                    .map(|t| t.render_name(&ctx).map(Arc::from))
                    .collect();
                match rooms {
                    Ok(rooms) => Target::Tenant {
                        tenant: event.tenant.clone(),
                        rooms,
                        users: Vec::new(),
                    },
                    Err(e) => {
                        tracing::warn!(kind = event.kind.as_str(), error = %e, "lifecycle event not published");
                        continue;
                    }
                }
            };
            let data = match &rule.data {
                Some(template) => template.render(&ctx),
                None => Value::Object(fields.clone()),
            };
            let Ok(data) = RawValue::from_string(data.to_string()) else {
                continue;
            };
            out.push(Publication::new(
                &rule.ns,
                target,
                &rule.event,
                Payload::Json(data),
            ));
        }
        out
    }
}
