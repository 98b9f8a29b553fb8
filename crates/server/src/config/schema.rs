//! The walk of a loaded TOML table against the schema, before serde runs: every table is
//! checked key by key, so that an unknown key or a mistyped value is reported with its full
//! path (`limits.nope`, `rooms.acl[2].publish`) and, when an environment variable set it, that
//! variable's name.

use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use toml::{Table, Value};

use super::env::Origins;
use super::{
    AclRule, ApiConfig, ApiRoute, AuthConfig, Config, ConfigError, HeartbeatConfig, LimitsConfig,
    LogConfig, RoomsConfig, ShutdownConfig, TenantKey,
};
use super::{AmqpSourceConfig, IngestConfig, IngestEmit, IngestRule};
use super::{BackendConfig, ConnectProxyConfig, MethodConfig, RpcConfig};
use super::{ClusterConfig, EmitterBinding, EventRoute, NamespaceConfig, SocketIoConfig};
use super::{HistoryConfig, HistoryRule};
use super::{InboxConfig, InboxLive};
use super::{LifecycleConfig, LifecyclePublish};

type CheckFn = fn(&mut Value, &str, &Origins) -> Result<(), ConfigError>;

/// Checks `table` against the schema, then deserializes it into a configuration.
pub(super) fn from_table(mut table: Table, origins: &Origins) -> Result<Config, ConfigError> {
    for (key, value) in table.iter_mut() {
        let path = key.clone();
        match key.as_str() {
            "listen" => check_value::<Config>(key, value, "", origins)?,
            "auth" => {
                if let Some(proxy) = value
                    .as_table_mut()
                    .and_then(|t| t.get_mut("connect_proxy"))
                {
                    check_table::<ConnectProxyConfig>(proxy, "auth.connect_proxy", origins)?;
                }
                check_table::<AuthConfig>(value, &path, origins)?;
            }
            "rpc" => {
                // Tables keyed by name: each entry is checked as its own table.
                for (field, check) in [
                    ("backends", check_table::<BackendConfig> as CheckFn),
                    ("methods", check_table::<MethodConfig> as CheckFn),
                ] {
                    let entries = value.as_table_mut().and_then(|t| t.get_mut(field));
                    if let Some(Value::Table(entries)) = entries {
                        for (name, entry) in entries.iter_mut() {
                            let key = if field == "methods" {
                                format!("{path}.{field}.\"{name}\"")
                            } else {
                                format!("{path}.{field}.{name}")
                            };
                            check(entry, &key, origins)?;
                        }
                    }
                }
                check_table::<RpcConfig>(value, &path, origins)?;
            }
            "api" => {
                check_array::<TenantKey>(value, "tenant_keys", &path, origins)?;
                check_array::<ApiRoute>(value, "routes", &path, origins)?;
                check_table::<ApiConfig>(value, &path, origins)?;
            }
            "rooms" => {
                check_array::<AclRule>(value, "acl", &path, origins)?;
                check_table::<RoomsConfig>(value, &path, origins)?;
            }
            "limits" => check_table::<LimitsConfig>(value, &path, origins)?,
            "heartbeat" => check_table::<HeartbeatConfig>(value, &path, origins)?,
            "shutdown" => check_table::<ShutdownConfig>(value, &path, origins)?,
            "log" => check_table::<LogConfig>(value, &path, origins)?,
            "socketio" => {
                // Two levels of arrays of tables: the namespaces, and the routes of each.
                let namespaces = value.as_table_mut().and_then(|t| t.get_mut("namespaces"));
                if let Some(Value::Array(items)) = namespaces {
                    for (i, item) in items.iter_mut().enumerate() {
                        let item_path = format!("{path}.namespaces[{i}]");
                        check_array::<EventRoute>(item, "events", &item_path, origins)?;
                        check_table::<NamespaceConfig>(item, &item_path, origins)?;
                    }
                }
                check_table::<SocketIoConfig>(value, &path, origins)?;
            }
            "cluster" => {
                check_array::<EmitterBinding>(value, "emitters", &path, origins)?;
                check_table::<ClusterConfig>(value, &path, origins)?;
            }
            "history" => {
                check_array::<HistoryRule>(value, "rooms", &path, origins)?;
                check_table::<HistoryConfig>(value, &path, origins)?;
            }
            "inbox" => {
                check_array::<InboxLive>(value, "live", &path, origins)?;
                check_table::<InboxConfig>(value, &path, origins)?;
            }
            "lifecycle" => {
                check_array::<LifecyclePublish>(value, "publish", &path, origins)?;
                check_table::<LifecycleConfig>(value, &path, origins)?;
            }
            "ingest" => {
                // Three levels of arrays of tables: the sources, their rules, their emits.
                let sources = value.as_table_mut().and_then(|t| t.get_mut("amqp"));
                if let Some(Value::Array(items)) = sources {
                    for (i, item) in items.iter_mut().enumerate() {
                        let item_path = format!("{path}.amqp[{i}]");
                        let rules = item.as_table_mut().and_then(|t| t.get_mut("rules"));
                        if let Some(Value::Array(rules)) = rules {
                            for (j, rule) in rules.iter_mut().enumerate() {
                                let rule_path = format!("{item_path}.rules[{j}]");
                                check_array::<IngestEmit>(rule, "emit", &rule_path, origins)?;
                                check_table::<IngestRule>(rule, &rule_path, origins)?;
                            }
                        }
                        check_table::<AmqpSourceConfig>(item, &item_path, origins)?;
                    }
                }
                check_table::<IngestConfig>(value, &path, origins)?;
            }
            _ => return Err(unknown(path, origins)),
        }
    }
    // Every key was checked above, so this only fails on a case the walk does not know.
    <Config as serde::Deserialize>::deserialize(Value::Table(table))
        .map_err(|e| ConfigError::invalid("config", clean(&e)))
}

fn unknown(key: String, origins: &Origins) -> ConfigError {
    let env = origins.get(&key).map(|o| o.var.clone());
    ConfigError::UnknownKey { key, env }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Checks a table that deserializes into `T` key by key: unknown keys and values of the wrong
/// type are reported with their path. Every field of `T` has a default, so a table holding one
/// key deserializes on its own exactly when that key's value is right.
fn check_table<T: DeserializeOwned>(
    value: &mut Value,
    path: &str,
    origins: &Origins,
) -> Result<(), ConfigError> {
    let Value::Table(table) = value else {
        return Err(ConfigError::Invalid {
            key: path.to_string(),
            message: format!("expected a table, found {}", value.type_str()),
            env: origins.get(path).map(|o| o.var.clone()),
        });
    };
    let fields = fields_of::<T>();
    for (key, value) in table.iter_mut() {
        if !fields.contains(&key.as_str()) {
            return Err(unknown(join(path, key), origins));
        }
        check_value::<T>(key, value, path, origins)?;
    }
    Ok(())
}

fn check_value<T: DeserializeOwned>(
    key: &str,
    value: &mut Value,
    parent: &str,
    origins: &Origins,
) -> Result<(), ConfigError> {
    let Err(message) = deserialize_single::<T>(key, value.clone()) else {
        return Ok(());
    };
    let full = join(parent, key);
    let origin = origins.get(&full);
    // An env value that looked like TOML (`12345`) may be meant as a string (a secret).
    if let Some(raw) = origin.and_then(|o| o.raw.as_ref()) {
        let as_string = Value::String(raw.clone());
        if !value.is_str() && deserialize_single::<T>(key, as_string.clone()).is_ok() {
            *value = as_string;
            return Ok(());
        }
    }
    Err(ConfigError::Invalid {
        key: full,
        message,
        env: origin.map(|o| o.var.clone()),
    })
}

fn deserialize_single<T: DeserializeOwned>(key: &str, value: Value) -> Result<T, String> {
    let mut single = Table::new();
    single.insert(key.to_string(), value);
    T::deserialize(Value::Table(single)).map_err(|e| clean(&e))
}

/// Checks each element of the array at `table[key]` as a `T` table, naming `path.key[i]`.
fn check_array<T: DeserializeOwned>(
    value: &mut Value,
    key: &str,
    path: &str,
    origins: &Origins,
) -> Result<(), ConfigError> {
    let Some(Value::Array(items)) = value.as_table_mut().and_then(|t| t.get_mut(key)) else {
        return Ok(()); // absent, or not an array: check_table reports the type
    };
    for (i, item) in items.iter_mut().enumerate() {
        check_table::<T>(item, &format!("{path}.{key}[{i}]"), origins)?;
    }
    Ok(())
}

/// serde's message, without the `in `key`` line that toml adds (the key is named already).
fn clean(e: &impl fmt::Display) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_key_note(line))
        .collect();
    lines.join("; ")
}

fn is_key_note(line: &str) -> bool {
    line.starts_with("in `") && line.ends_with('`')
}

/// The field names of a derived struct, read from what it passes to `deserialize_struct`.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(ProbeError::Fields(fields)) => fields,
        _ => &[],
    }
}

struct FieldProbe;

#[derive(Debug)]
enum ProbeError {
    Fields(&'static [&'static str]),
    Other,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<M: fmt::Display>(_msg: M) -> Self {
        ProbeError::Other
    }
}

impl<'de> de::Deserializer<'de> for FieldProbe {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Other)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        assert_eq!(err("nope = 1"), "nope: unknown key");
        assert_eq!(err("[limits]\nnope = 1"), "limits.nope: unknown key");
        assert_eq!(
            err("[[rooms.acl]]\npattern = \"a\"\n[[rooms.acl]]\npatern = \"b\""),
            "rooms.acl[1].patern: unknown key"
        );
        assert_eq!(
            err("[api]\ntenant_keys = [{ tenant = \"a\", key = \"k\", scope = 1 }]"),
            "api.tenant_keys[0].scope: unknown key"
        );
    }

    #[test]
    fn wrong_types_are_named_with_their_path() {
        let e = err("[limits]\nmax_connections = \"many\"");
        assert!(e.starts_with("limits.max_connections: invalid type"), "{e}");
        let e = err("[auth]\nalgorithm = \"none\"");
        assert!(
            e.starts_with("auth.algorithm: unknown variant `none`"),
            "{e}"
        );
        let e = err("listen = \"localhost\"");
        assert!(e.starts_with("listen: "), "{e}");
        let e = err("limits = 3");
        assert!(e.starts_with("limits: expected a table"), "{e}");
        let e = err("[[rooms.acl]]\npattern = \"a\"\npublish = \"yes\"");
        assert!(e.starts_with("rooms.acl[0].publish: invalid type"), "{e}");
        let e = err("[limits]\nmax_connections = -1");
        assert!(e.starts_with("limits.max_connections: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn field_probe_lists_struct_fields() {
        assert_eq!(
            fields_of::<HeartbeatConfig>(),
            ["interval_ms", "timeout_ms"]
        );
        assert!(fields_of::<Config>().contains(&"listen"));
    }
}
