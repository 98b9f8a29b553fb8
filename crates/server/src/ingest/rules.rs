//! The rules of an AMQP source, compiled: which messages they match (routing key pattern,
//! payload fields present or equal to a value) and the publishes a message becomes (event,
//! tenant, namespace, rooms and users rendered from its fields, data). Sans-IO: a message in,
//! publications or the reason it is malformed out.
//!
//! Templates are the Socket.IO routes' (`crate::sio::routing`), read over the payload instead
//! of a token's claims: `{customerId}`, `{order.id}` (a field of an object), `{items.0.sku}`,
//! plus `{routing_key}` (when the payload has no such field) and `{now}`.

use std::sync::Arc;
use std::time::SystemTime;

use roomcast_broker::{Payload, Publication, Target};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::auth::ClaimSource;
use crate::config::{AmqpSourceConfig, ConfigError, IngestEmit, IngestRule, MAX_ID_BYTES};
use crate::proto::MAX_NAME_BYTES;
use crate::sio::routing::template::{walk, Context, Data, Scope, Text};

/// Why a message cannot be published. Each is rejected to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// No rule matches the routing key and the payload.
    #[error("no rule matches routing key `{0}`")]
    NoRule(String),
    /// The tenant could not be rendered (a missing field), or is not a valid tenant name.
    #[error("no tenant: {0}")]
    NoTenant(String),
    /// A room or user could not be rendered, or is too long.
    #[error("{0}")]
    MissingField(String),
}

impl Malformed {
    /// The `reason` label of the metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Malformed::NotJson(_) => "not_json",
            Malformed::NoRule(_) => "no_rule",
            Malformed::NoTenant(_) => "no_tenant",
            Malformed::MissingField(_) => "missing_field",
        }
    }
}

/// A source's rules, in order: the first that matches a message applies.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    key: Vec<String>,
    has: Vec<Vec<String>>,
    equals: Vec<(Vec<String>, Value)>,
    emits: Vec<Emit>,
}

#[derive(Debug)]
struct Emit {
    event: String,
    tenant: Text,
    ns: Arc<str>,
    rooms: Vec<Text>,
    users: Vec<Text>,
    broadcast: bool,
    data: Option<Data>,
}

/// The payload's fields, with `routing_key` beside them, as templates read them.
#[derive(Debug)]
struct Fields<'a> {
    payload: Option<&'a Map<String, Value>>,
    routing_key: Value,
}

impl ClaimSource for Fields<'_> {
    fn claim(&self, name: &str) -> Option<&Value> {
        match self.payload.and_then(|p| p.get(name)) {
            Some(value) => Some(value),
            None if name == "routing_key" => Some(&self.routing_key),
            None => None,
        }
    }
}

impl Rules {
    /// Compiles `source`'s rules (`key` is the source's, `ingest.amqp[i]`); the error names the
    /// key at fault.
    pub fn compile(source: &AmqpSourceConfig, key: &str) -> Result<Rules, ConfigError> {
        if source.rules.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.rules"),
                "give at least one rule: a message no rule matches is rejected",
            ));
        }
        let rules = source
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| compile_rule(source, rule, &format!("{key}.rules[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Rules { rules })
    }

    /// The publications of one message, in the order of its rule's emits.
    pub fn map(
        &self,
        routing_key: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<Publication>, Malformed> {
        let payload: Value =
            serde_json::from_slice(body).map_err(|e| Malformed::NotJson(e.to_string()))?;
        let fields = Fields {
            payload: payload.as_object(),
            routing_key: Value::String(routing_key.to_owned()),
        };
        let words: Vec<&str> = routing_key.split('.').collect();
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.matches(&words, &payload))
            .ok_or_else(|| Malformed::NoRule(routing_key.to_owned()))?;
        let ctx = Context {
            claims: &fields,
            args: &[],
            socket_id: "",
            now,
            error: None,
            result: None,
        };
        rule.emits
            .iter()
            .map(|emit| emit.publication(&ctx, body))
            .collect()
    }
}

impl Rule {
    fn matches(&self, words: &[&str], payload: &Value) -> bool {
        topic_matches(&self.key, words)
            && self
                .has
                .iter()
                .all(|path| walk(payload, path).is_some_and(|v| !v.is_null()))
            && self
                .equals
                .iter()
                .all(|(path, value)| walk(payload, path) == Some(value))
    }
}

impl Emit {
    fn publication(&self, ctx: &Context<'_>, body: &[u8]) -> Result<Publication, Malformed> {
        let tenant = self.tenant.render_name(ctx).map_err(Malformed::NoTenant)?;
        if tenant.len() > MAX_ID_BYTES {
            return Err(Malformed::NoTenant(format!(
                "`{tenant}` is longer than {MAX_ID_BYTES} bytes"
            )));
        }
        let names = |templates: &[Text], what: &str| -> Result<Vec<Arc<str>>, Malformed> {
            templates
                .iter()
                .map(|t| {
                    let name = t.render_name(ctx).map_err(Malformed::MissingField)?;
                    if name.len() > MAX_NAME_BYTES {
                        return Err(Malformed::MissingField(format!(
                            "{what} `{name}` is longer than {MAX_NAME_BYTES} bytes"
                        )));
                    }
                    Ok(name.into())
                })
                .collect()
        };
        let target = if self.broadcast {
            Target::TenantWide {
                tenant: tenant.into(),
            }
        } else {
            Target::Tenant {
                tenant: tenant.into(),
                rooms: names(&self.rooms, "room")?,
                users: names(&self.users, "user")?,
            }
        };
        let data = match &self.data {
            Some(template) => RawValue::from_string(template.render(ctx).to_string()),
            None => serde_json::from_slice::<&RawValue>(body).map(ToOwned::to_owned),
        }
        .map_err(|e| Malformed::NotJson(e.to_string()))?;
        let mut publication = Publication::new(&self.ns, target, &self.event, Payload::Json(data));
        // Acknowledged once every node has it: never to this node's members alone.
        publication.whole_cluster = true;
        Ok(publication)
    }
}

fn compile_rule(
    source: &AmqpSourceConfig,
    rule: &IngestRule,
    key: &str,
) -> Result<Rule, ConfigError> {
    let pattern: Vec<String> = rule.routing_key.split('.').map(str::to_owned).collect();
    if pattern.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            format!("{key}.routing_key"),
            "words are separated by single dots, e.g. \"order.*\" or \"#\"",
        ));
    }
    if rule.emit.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.emit"),
            "give at least one emit",
        ));
    }
    let path = |field: &str| field.split('.').map(str::to_owned).collect::<Vec<_>>();
    Ok(Rule {
        key: pattern,
        has: rule.has.iter().map(|f| path(f)).collect(),
        equals: rule
            .equals
            .iter()
            .map(|(f, v)| (path(f), v.clone()))
            .collect(),
        emits: rule
            .emit
            .iter()
            .enumerate()
            .map(|(i, emit)| compile_emit(source, emit, &format!("{key}.emit[{i}]")))
            .collect::<Result<_, _>>()?,
    })
}

fn compile_emit(
    source: &AmqpSourceConfig,
    emit: &IngestEmit,
    key: &str,
) -> Result<Emit, ConfigError> {
    let text = |value: &str, at: String| {
        Text::parse(value, Scope::CONNECT).map_err(|e| ConfigError::invalid(at, e))
    };
    if emit.event.is_empty() || emit.event.len() > MAX_NAME_BYTES {
        return Err(ConfigError::invalid(
            format!("{key}.event"),
            format!("must be 1 to {MAX_NAME_BYTES} bytes"),
        ));
    }
    let tenant = emit.tenant.as_deref().unwrap_or(&source.tenant);
    if tenant.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.tenant"),
            "is required: set it here or the source's `tenant` (a template such as \
             \"{companyId}\", or a fixed name)",
        ));
    }
    let ns = emit.namespace.as_deref().unwrap_or(&source.namespace);
    if !ns.starts_with('/') || ns.len() > MAX_NAME_BYTES {
        return Err(ConfigError::invalid(
            format!("{key}.namespace"),
            "must start with `/`",
        ));
    }
    if emit.broadcast && !(emit.rooms.is_empty() && emit.users.is_empty()) {
        return Err(ConfigError::invalid(
            format!("{key}.broadcast"),
            "goes to the whole tenant: give no rooms nor users with it",
        ));
    }
    if !emit.broadcast && emit.rooms.is_empty() && emit.users.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.rooms"),
            "give rooms, users, or broadcast = true",
        ));
    }
    let texts = |list: &[String], what: &str| {
        list.iter()
            .enumerate()
            .map(|(i, t)| text(t, format!("{key}.{what}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Emit {
        event: emit.event.clone(),
        tenant: text(tenant, format!("{key}.tenant"))?,
        ns: ns.into(),
        rooms: texts(&emit.rooms, "rooms")?,
        users: texts(&emit.users, "users")?,
        broadcast: emit.broadcast,
        data: emit
            .data
            .as_ref()
            .map(|d| Data::compile(d, &format!("{key}.data"), Scope::CONNECT))
            .transpose()
            .map_err(|(at, e)| ConfigError::invalid(at, e))?,
    })
}

/// AMQP topic matching: `*` is one word, `#` zero or more. In time proportional to the
/// pattern's length times the key's (routing keys come from publishers).
fn topic_matches(pattern: &[String], words: &[&str]) -> bool {
    // matches[j]: whether pattern[i..] matches words[j..], for the current i, from the end.
    let mut matches = vec![false; words.len() + 1];
    matches[words.len()] = true;
    for step in pattern.iter().rev() {
        let mut next = vec![false; words.len() + 1];
        for j in (0..=words.len()).rev() {
            next[j] = if step == "#" {
                matches[j] || (j < words.len() && next[j + 1])
            } else {
                j < words.len() && (step == "*" || step == words[j]) && matches[j + 1]
            };
        }
        matches = next;
    }
    matches[0]
}
