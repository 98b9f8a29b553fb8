//! The inbox's live events (`[[inbox.live]]`): what a user's connections to each configured
//! namespace receive when a notification is created, read, dismissed, or all are read. Each
//! is a publication to the user (or, for a tenant-wide notification, the tenant) through the
//! node, so it reaches every node of a cluster; a change made by a client leaves out that
//! client's own connection, which had the answer.

use std::sync::Arc;
use std::time::SystemTime;

use roomcast_broker::{ConnId, Payload, Publication, Target};
use roomcast_inbox::{Notification, Owner, Recipients};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::json::notification_json;
use crate::config::{ConfigError, EmitTemplate, InboxLive};
use crate::proto::MAX_NAME_BYTES;
use crate::sio::routing::template::{Context, Data, Scope};

/// What happened; its discriminant is its place in [`Moment::ALL`] and in a namespace's
/// events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Moment {
    Created = 0,
    Read = 1,
    Dismissed = 2,
    AllRead = 3,
}

impl Moment {
    const ALL: [Moment; 4] = [
        Moment::Created,
        Moment::Read,
        Moment::Dismissed,
        Moment::AllRead,
    ];

    fn key(self) -> &'static str {
        match self {
            Moment::Created => "created",
            Moment::Read => "read",
            Moment::Dismissed => "dismissed",
            Moment::AllRead => "all_read",
        }
    }

    fn default_event(self) -> &'static str {
        match self {
            Moment::Created => "new_notification",
            Moment::Read => "notification_read",
            Moment::Dismissed => "notification_dismissed",
            Moment::AllRead => "all_notifications_read",
        }
    }

    fn template(self, live: &InboxLive) -> Option<&EmitTemplate> {
        match self {
            Moment::Created => live.created.as_ref(),
            Moment::Read => live.read.as_ref(),
            Moment::Dismissed => live.dismissed.as_ref(),
            Moment::AllRead => live.all_read.as_ref(),
        }
    }
}

/// The fields a live event's template reads.
#[derive(Debug)]
pub(super) struct Fields(Map<String, Value>);

impl Fields {
    /// A read or dismissed notification: `{id}`, `{notification_id}`, `{user}`, `{tenant}`.
    pub(super) fn marked(owner: &Owner, id: i64) -> Fields {
        Fields::with_owner(owner, [("id", json!(id)), ("notification_id", json!(id))])
    }

    /// Every notification read: `{count}`, `{user}`, `{tenant}`.
    pub(super) fn all_read(owner: &Owner, count: u64) -> Fields {
        Fields::with_owner(owner, [("count", json!(count))])
    }

    fn with_owner<const N: usize>(owner: &Owner, fields: [(&str, Value); N]) -> Fields {
        let mut map: Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        map.insert("user".into(), json!(owner.user));
        map.insert("tenant".into(), json!(owner.tenant));
        Fields(map)
    }
}

/// One event of one namespace: its name and data template (`None`: the default data).
#[derive(Debug)]
struct Event {
    name: String,
    data: Option<Data>,
}

#[derive(Debug)]
struct Namespace {
    ns: Arc<str>,
    /// One per [`Moment`], in [`Moment::ALL`]'s order; `None` when turned off (`event = ""`).
    events: [Option<Event>; 4],
}

/// The compiled `inbox.live`.
#[derive(Debug)]
pub(super) struct Live {
    namespaces: Vec<Namespace>,
}

impl Live {
    pub(super) fn compile(list: &[InboxLive]) -> Result<Live, ConfigError> {
        let namespaces = list
            .iter()
            .enumerate()
            .map(|(i, live)| {
                let key = format!("inbox.live[{i}]");
                let mut events = [None, None, None, None];
                for (slot, moment) in events.iter_mut().zip(Moment::ALL) {
                    *slot = event(moment, moment.template(live), &key)?;
                }
                Ok(Namespace {
                    ns: live.namespace.as_str().into(),
                    events,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Live { namespaces })
    }

    /// The events of `moment` to `owner`'s connections, but `except`.
    pub(super) fn to_user(
        &self,
        moment: Moment,
        owner: &Owner,
        except: Option<ConnId>,
        fields: &Fields,
    ) -> Vec<Publication> {
        let tenant: Arc<str> = owner.tenant.as_str().into();
        let target = Target::Tenant {
            tenant,
            rooms: Vec::new(),
            users: vec![owner.user.as_str().into()],
        };
        let mut out = self.each(moment, fields, &target);
        for p in &mut out {
            p.exclude = except;
        }
        out
    }

    /// The events of newly `stored` notifications, for `to` in `tenant`: one per notification
    /// and namespace (each user's has its own id), to its user or, tenant-wide, the tenant.
    pub(super) fn created(
        &self,
        tenant: &str,
        to: &Recipients,
        stored: &[Notification],
    ) -> Vec<Publication> {
        let tenant: Arc<str> = tenant.into();
        let mut out = Vec::new();
        for n in stored {
            let mut fields = match notification_json(n) {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            fields.insert("tenant".into(), json!(&*tenant));
            fields.insert("user".into(), json!(n.user));
            let fields = Fields(fields);
            let target = match (to, &n.user) {
                (Recipients::Tenant, _) | (_, None) => Target::TenantWide {
                    tenant: tenant.clone(),
                },
                (_, Some(user)) => Target::Tenant {
                    tenant: tenant.clone(),
                    rooms: Vec::new(),
                    users: vec![user.as_str().into()],
                },
            };
            out.extend(self.each(Moment::Created, &fields, &target));
        }
        out
    }

    /// One publication to `target` per namespace with an event for `moment`.
    fn each(&self, moment: Moment, fields: &Fields, target: &Target) -> Vec<Publication> {
        let index = moment as usize;
        let mut out = Vec::new();
        for ns in &self.namespaces {
            let Some(event) = &ns.events[index] else {
                continue;
            };
            let data = match &event.data {
                Some(template) => template.render(&Context {
                    claims: &fields.0,
                    args: &[],
                    socket_id: "",
                    now: SystemTime::now(),
                    error: None,
                    result: None,
                }),
                None => default_data(moment, &fields.0),
            };
            let Ok(raw) = RawValue::from_string(data.to_string()) else {
                continue;
            };
            out.push(Publication::new(
                &ns.ns,
                target.clone(),
                &event.name,
                Payload::Json(raw),
            ));
        }
        out
    }
}

/// The data of an event without a template: the notification (created), `{notification_id}`
/// (read, dismissed), `{count}` (all read).
fn default_data(moment: Moment, fields: &Map<String, Value>) -> Value {
    match moment {
        Moment::Created => {
            let mut n = fields.clone();
            n.remove("tenant");
            n.remove("user");
            Value::Object(n)
        }
        Moment::Read | Moment::Dismissed => {
            json!({ "notification_id": fields.get("id").cloned().unwrap_or(Value::Null) })
        }
        Moment::AllRead => json!({ "count": fields.get("count").cloned().unwrap_or(Value::Null) }),
    }
}

/// The compiled event of `moment`: the configured one, the default, or none (`event = ""`).
fn event(
    moment: Moment,
    template: Option<&EmitTemplate>,
    key: &str,
) -> Result<Option<Event>, ConfigError> {
    let key = format!("{key}.{}", moment.key());
    let Some(template) = template else {
        return Ok(Some(Event {
            name: moment.default_event().into(),
            data: None,
        }));
    };
    if template.event.is_empty() {
        return Ok(None);
    }
    if template.event.len() > MAX_NAME_BYTES || template.event.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            format!("{key}.event"),
            format!("must be 1 to {MAX_NAME_BYTES} bytes, without control characters"),
        ));
    }
    let data = template
        .data
        .as_ref()
        .map(|d| Data::compile(d, &format!("{key}.data"), Scope::CONNECT))
        .transpose()
        .map_err(|(at, e)| ConfigError::invalid(at, e))?;
    Ok(Some(Event {
        name: template.event.clone(),
        data,
    }))
}
