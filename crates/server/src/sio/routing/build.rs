//! Compiling `[socketio]` into a [`Router`]: names, aliases and events checked for clashes,
//! templates parsed in the scope where they are used, and every error naming its key
//! (`socketio.namespaces[1].events[0].room: ...`).

use std::collections::HashMap;

use crate::acl::{Acl, RoomPolicy, Template};
use crate::config::{ConfigError, EmitTemplate, EventRoute, NamespaceConfig, SocketIoConfig};
use crate::config::{InboxOp, RouteAction};
use crate::proto::MAX_NAME_BYTES;

use super::template::{Data, Scope, Text};
use super::{Emit, Kind, Namespace, Route, Router};

/// Events that Socket.IO keeps for itself: a client cannot emit them, nor a server send them.
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

pub(super) fn build(
    config: &SocketIoConfig,
    default_auto_join: &[String],
) -> Result<Router, ConfigError> {
    let default_auto_join = auto_join(default_auto_join, "rooms.auto_join")?;
    let mut router = Router {
        namespaces: Vec::new(),
        by_name: HashMap::new(),
    };
    if config.namespaces.is_empty() {
        router.by_name.insert("/".into(), 0);
        router.namespaces.push(Namespace {
            name: "/".into(),
            auto_join: default_auto_join,
            greeting: None,
            error: default_error(),
            routes: HashMap::new(),
        });
        return Ok(router);
    }
    for (i, ns) in config.namespaces.iter().enumerate() {
        let key = format!("socketio.namespaces[{i}]");
        let names = std::iter::once((format!("{key}.name"), &ns.name)).chain(
            ns.aliases
                .iter()
                .enumerate()
                .map(|(j, alias)| (format!("{key}.aliases[{j}]"), alias)),
        );
        for (name_key, name) in names {
            namespace_name(&name_key, name)?;
            if let Some(&other) = router.by_name.get(name) {
                return Err(ConfigError::invalid(
                    name_key,
                    format!("`{name}` is already served by socketio.namespaces[{other}]"),
                ));
            }
            router.by_name.insert(name.clone(), i);
        }
        router
            .namespaces
            .push(namespace(ns, &key, &default_auto_join)?);
    }
    Ok(router)
}

fn namespace(
    ns: &NamespaceConfig,
    key: &str,
    default_auto_join: &RoomPolicy,
) -> Result<Namespace, ConfigError> {
    let auto_join = match &ns.auto_join {
        Some(templates) => auto_join(templates, &format!("{key}.auto_join"))?,
        None => default_auto_join.clone(),
    };
    let greeting = ns
        .greeting
        .as_ref()
        .map(|g| emit(g, &format!("{key}.greeting"), Scope::CONNECT, true))
        .transpose()?;
    let error = match &ns.error {
        Some(e) => emit(e, &format!("{key}.error"), Scope::ERROR, true)?,
        None => default_error(),
    };
    let mut routes = HashMap::new();
    let mut first_at = HashMap::new();
    for (j, route) in ns.events.iter().enumerate() {
        let route_key = format!("{key}.events[{j}]");
        event_name(&format!("{route_key}.event"), &route.event)?;
        if let Some(first) = first_at.insert(route.event.as_str(), j) {
            return Err(ConfigError::invalid(
                format!("{route_key}.event"),
                format!(
                    "duplicate event `{}` (also {key}.events[{first}])",
                    route.event
                ),
            ));
        }
        routes.insert(route.event.clone(), compile_route(route, &route_key)?);
    }
    Ok(Namespace {
        name: ns.name.clone(),
        auto_join,
        greeting,
        error,
        routes,
    })
}

fn compile_route(route: &EventRoute, key: &str) -> Result<Route, ConfigError> {
    let field = |name: &str| format!("{key}.{name}");
    let Some(action) = route.action else {
        return Err(ConfigError::invalid(
            field("action"),
            "missing: one of \"join\", \"leave\", \"relay\", \"reply\", \"rpc\", \"inbox\"",
        ));
    };
    let only_relay = |name: &str, set: bool| {
        if set && action != RouteAction::Relay {
            Err(ConfigError::invalid(
                field(name),
                format!("only for action = \"relay\", not \"{}\"", action.as_str()),
            ))
        } else {
            Ok(())
        }
    };
    only_relay("relay", route.relay.is_some())?;
    let is_rpc = action == RouteAction::Rpc;
    for (name, set) in [
        ("backend", !route.backend.is_empty()),
        ("path", !route.path.is_empty()),
    ] {
        if set && !is_rpc {
            return Err(ConfigError::invalid(
                field(name),
                format!("only for action = \"rpc\", not \"{}\"", action.as_str()),
            ));
        }
    }
    if is_rpc {
        if route.backend.is_empty() {
            return Err(ConfigError::invalid(
                field("backend"),
                "required for action = \"rpc\"",
            ));
        }
        crate::config::check_path(&field("path"), &route.path)?;
    }
    let inbox = inbox_route(route, action, key)?;
    let tenant = if route.tenant.is_empty() {
        None
    } else if matches!(action, RouteAction::Join | RouteAction::Leave) {
        Some(
            Text::parse(&route.tenant, Scope::EVENT)
                .map_err(|e| ConfigError::invalid(field("tenant"), e))?,
        )
    } else {
        return Err(ConfigError::invalid(
            field("tenant"),
            format!(
                "only for action = \"join\" or \"leave\", not \"{}\"",
                action.as_str()
            ),
        ));
    };
    only_relay("volatile", route.volatile)?;
    let room = if matches!(
        action,
        RouteAction::Reply | RouteAction::Rpc | RouteAction::Inbox
    ) {
        if !route.room.is_empty() {
            return Err(ConfigError::invalid(
                field("room"),
                "only join, leave and relay routes use a room",
            ));
        }
        None
    } else {
        if route.room.is_empty() {
            return Err(ConfigError::invalid(
                field("room"),
                format!("required for action = \"{}\"", action.as_str()),
            ));
        }
        Some(
            Text::parse(&route.room, Scope::EVENT)
                .map_err(|e| ConfigError::invalid(field("room"), e))?,
        )
    };
    if action == RouteAction::Reply && route.reply.is_none() {
        return Err(ConfigError::invalid(
            field("reply"),
            "required for action = \"reply\"",
        ));
    }
    let reply_scope = if is_rpc || inbox.is_some() {
        Scope::RPC_REPLY
    } else {
        Scope::EVENT
    };
    let reply = route
        .reply
        .as_ref()
        .map(|r| emit(r, &field("reply"), reply_scope, false))
        .transpose()?;
    let error = route
        .error
        .as_ref()
        .map(|e| emit(e, &field("error"), Scope::ERROR, true))
        .transpose()?;
    let kind = match (action, room) {
        (RouteAction::Join, Some(room)) => Kind::Join(room, tenant),
        (RouteAction::Leave, Some(room)) => Kind::Leave(room, tenant),
        (RouteAction::Relay, Some(room)) => {
            let relay = route
                .relay
                .as_ref()
                .map(|r| emit(r, &field("relay"), Scope::EVENT, false))
                .transpose()?;
            let (event, data) = match relay {
                Some(Emit { event, data }) => ((!event.is_empty()).then_some(event), data),
                None => (None, None),
            };
            Kind::Relay {
                room,
                event,
                data,
                volatile: route.volatile,
            }
        }
        (RouteAction::Rpc, _) => Kind::Rpc {
            backend: route.backend.clone(),
            path: route.path.clone(),
        },
        (RouteAction::Inbox, _) => match inbox {
            Some((op, notification)) => Kind::Inbox { op, notification },
            None => Kind::Reply,
        },
        _ => Kind::Reply,
    };
    Ok(Route { kind, reply, error })
}

/// An `inbox` route's op and, for `read` and `dismiss`, its notification id template; checks
/// that other routes use neither key.
fn inbox_route(
    route: &EventRoute,
    action: RouteAction,
    key: &str,
) -> Result<Option<(InboxOp, Option<Text>)>, ConfigError> {
    let field = |name: &str| format!("{key}.{name}");
    if action != RouteAction::Inbox {
        for (name, set) in [
            ("op", route.op.is_some()),
            ("notification", !route.notification.is_empty()),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    field(name),
                    format!("only for action = \"inbox\", not \"{}\"", action.as_str()),
                ));
            }
        }
        return Ok(None);
    }
    let Some(op) = route.op else {
        return Err(ConfigError::invalid(
            field("op"),
            "required for action = \"inbox\": counts, list, read, dismiss or read_all",
        ));
    };
    let notification = match op {
        InboxOp::Read | InboxOp::Dismiss => {
            let source = if route.notification.is_empty() {
                "{args.0.notification_id}"
            } else {
                &route.notification
            };
            Some(
                Text::parse(source, Scope::EVENT)
                    .map_err(|e| ConfigError::invalid(field("notification"), e))?,
            )
        }
        _ if !route.notification.is_empty() => {
            return Err(ConfigError::invalid(
                field("notification"),
                "only for op = \"read\" or \"dismiss\"",
            ))
        }
        _ => None,
    };
    Ok(Some((op, notification)))
}

fn emit(
    template: &EmitTemplate,
    key: &str,
    scope: Scope,
    event_required: bool,
) -> Result<Emit, ConfigError> {
    let event_key = format!("{key}.event");
    if template.event.is_empty() {
        if event_required {
            return Err(ConfigError::invalid(event_key, "must not be empty"));
        }
    } else {
        event_name(&event_key, &template.event)?;
    }
    let data = template
        .data
        .as_ref()
        .map(|data| Data::compile(data, &format!("{key}.data"), scope))
        .transpose()
        .map_err(|(key, message)| ConfigError::invalid(key, message))?;
    Ok(Emit {
        event: template.event.clone(),
        data,
    })
}

fn default_error() -> Emit {
    let data = serde_json::json!({ "message": "{error}" });
    Emit {
        event: "error".into(),
        // A fixed, valid template.
        data: Data::compile(&data, "", Scope::ERROR).ok(),
    }
}

fn auto_join(templates: &[String], key: &str) -> Result<RoomPolicy, ConfigError> {
    let templates = templates
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let key = format!("{key}[{i}]");
            if source.is_empty() {
                return Err(ConfigError::invalid(key, "must not be empty"));
            }
            Template::parse(source).map_err(|e| ConfigError::invalid(key, e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(RoomPolicy::new(templates, Acl::default()))
}

fn namespace_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let bad = |message: &str| Err(ConfigError::invalid(key, message));
    if !name.starts_with('/') {
        return bad("must start with `/`, e.g. \"/\" or \"/notifications\"");
    }
    if name.len() > MAX_NAME_BYTES {
        return bad(&format!("longer than {MAX_NAME_BYTES} bytes"));
    }
    // A packet's namespace ends at the first `,`; `?` began a query in older clients.
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, ',' | '?' | '#'))
    {
        return bad("must not contain spaces, control characters, `,`, `?` or `#`");
    }
    Ok(())
}

fn event_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ConfigError::invalid(
            key,
            format!("longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ConfigError::invalid(key, "contains control characters"));
    }
    if RESERVED_EVENTS.contains(&name) {
        return Err(ConfigError::invalid(
            key,
            format!("`{name}` is reserved by Socket.IO and cannot be emitted"),
        ));
    }
    Ok(())
}
