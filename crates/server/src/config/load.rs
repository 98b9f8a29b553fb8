//! Loading: TOML text, then `ROOMCAST_*` environment variables overlaid on the TOML table, then
//! serde. Before serde runs, every table is walked against the schema so that an unknown key or
//! a mistyped value is reported with its full path (`limits.nope`, `rooms.acl[2].publish`).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeOwned, Visitor};
use toml::{Table, Value};

use super::{
    AclRule, ApiConfig, AuthConfig, Config, ConfigError, HeartbeatConfig, LimitsConfig, LogConfig,
    RoomsConfig, ShutdownConfig, TenantKey,
};
use super::{EventRoute, NamespaceConfig, SocketIoConfig};

/// Prefix of every environment variable the loader reads (matched case-insensitively).
const PREFIX: &str = "ROOMCAST_";

/// Where an overlaid value came from, to name the variable in errors and to retry an
/// env value as a plain string when its TOML reading has the wrong type.
struct EnvOrigin {
    var: String,
    raw: Option<String>,
}

type Origins = HashMap<String, EnvOrigin>;

impl Config {
    /// Parses TOML text into a configuration. Missing keys take their defaults; unknown keys and
    /// mistyped values are errors naming the key. Does not call [`Config::validate`].
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let table = parse_toml(text, "config")?;
        from_table(table, &Origins::new())
    }

    /// Loads the configuration: the embedded defaults, then the file at `path` (when given), then
    /// the `ROOMCAST_*` variables among `env` (pass [`process_env`] or `std::env::vars()`).
    /// Does not call [`Config::validate`], so that `--dev` can still add its key.
    ///
    /// Variables (names are case-insensitive):
    /// - `ROOMCAST_<SECTION>__<KEY>` sets any key, `__` separating levels
    ///   (`ROOMCAST_LIMITS__MAX_CONNECTIONS=5000`); the value is read as a TOML value when it is
    ///   one (numbers, booleans, arrays, quoted strings) and as a plain string otherwise;
    /// - `ROOMCAST_LISTEN`, `ROOMCAST_JWT_SECRET`, `ROOMCAST_JWT_ALGORITHM`,
    ///   `ROOMCAST_JWT_PUBLIC_KEY_FILE` set `listen`, `auth.secret`, `auth.algorithm`,
    ///   `auth.public_key_file` (always as plain strings); where the generic form sets the same
    ///   key, the generic form wins;
    /// - `ROOMCAST_API_KEY`: comma-separated keys appended to `api.keys`.
    ///
    /// Other single-level names (`ROOMCAST_CONFIG`, ...) are left to the command line.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                parse_toml(&text, &path.display().to_string())?
            }
            None => Table::new(),
        };
        let mut origins = Origins::new();
        overlay_env(&mut table, env, &mut origins)?;
        from_table(table, &origins)
    }
}

/// The process environment's `ROOMCAST_*` variables, for [`Config::load`]. Unlike
/// `std::env::vars()` this does not panic on a non-UTF-8 variable: other variables are skipped,
/// and a `ROOMCAST_*` one is converted lossily (its value will then fail validation or auth).
pub fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(name, value)| {
        let name = name.into_string().ok()?;
        if !has_prefix(&name) {
            return None;
        }
        Some((name, value.to_string_lossy().into_owned()))
    })
}

fn has_prefix(name: &str) -> bool {
    name.len() >= PREFIX.len()
        && name.is_char_boundary(PREFIX.len())
        && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
}

fn parse_toml(text: &str, origin: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string().trim_end().to_string(),
    })
}

fn overlay_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    let mut generic = Vec::new();
    let mut aliases = Vec::new();
    let mut api_keys = Vec::new();
    for (name, value) in env {
        if !has_prefix(&name) {
            continue;
        }
        let rest = name[PREFIX.len()..].to_ascii_lowercase();
        match rest.as_str() {
            "listen" => aliases.push((name, vec!["listen"], value)),
            "jwt_secret" => aliases.push((name, vec!["auth", "secret"], value)),
            "jwt_algorithm" => aliases.push((name, vec!["auth", "algorithm"], value)),
            "jwt_public_key_file" => aliases.push((name, vec!["auth", "public_key_file"], value)),
            "api_key" => api_keys.push((name, value)),
            _ if rest.contains("__") => generic.push((name, rest, value)),
            // Single-level names that are not settings belong to the command line.
            _ => {}
        }
    }
    aliases.sort();
    for (var, path, raw) in aliases {
        set_path(
            table,
            &path,
            Value::String(raw.clone()),
            &var,
            Some(raw),
            origins,
        )?;
    }
    // The environment's order is unspecified; sorting makes overlaps resolve the same way
    // every time (a deeper path is applied after its parent).
    generic.sort();
    for (var, rest, raw) in generic {
        let path: Vec<&str> = rest.split("__").collect();
        if path.iter().any(|segment| segment.is_empty()) {
            return Err(ConfigError::Env {
                var,
                message: "empty key between `__` separators".into(),
            });
        }
        let value = parse_env_value(&raw);
        set_path(table, &path, value, &var, Some(raw), origins)?;
    }
    api_keys.sort();
    for (var, raw) in api_keys {
        let api = entry_table(table, "api", &var, origins)?;
        let keys = api
            .entry("keys")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(keys) = keys else {
            return Err(ConfigError::Invalid {
                key: "api.keys".into(),
                message: "must be an array of strings".into(),
                env: Some(var),
            });
        };
        keys.extend(
            raw.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| Value::String(k.to_string())),
        );
        origins
            .entry("api.keys".into())
            .or_insert(EnvOrigin { var, raw: None });
    }
    Ok(())
}

/// A TOML value when the text is one (`5000`, `true`, `["a", "b"]`, `"x"`), else the text.
fn parse_env_value(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        // More than one key means the text smuggled in a newline and another key: not a value.
        Ok(mut t) if t.len() == 1 => t
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_string())),
        _ => Value::String(raw.to_string()),
    }
}

fn entry_table<'t>(
    table: &'t mut Table,
    key: &str,
    var: &str,
    origins: &mut Origins,
) -> Result<&'t mut Table, ConfigError> {
    if !table.contains_key(key) {
        origins.entry(key.to_string()).or_insert(EnvOrigin {
            var: var.to_string(),
            raw: None,
        });
    }
    match table
        .entry(key)
        .or_insert_with(|| Value::Table(Table::new()))
    {
        Value::Table(t) => Ok(t),
        _ => Err(ConfigError::Env {
            var: var.to_string(),
            message: format!("`{key}` is not a table"),
        }),
    }
}

fn set_path(
    table: &mut Table,
    path: &[&str],
    value: Value,
    var: &str,
    raw: Option<String>,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut current = table;
    let mut dotted = String::new();
    for parent in parents {
        if !dotted.is_empty() {
            dotted.push('.');
        }
        dotted.push_str(parent);
        if !current.contains_key(*parent) {
            origins.entry(dotted.clone()).or_insert(EnvOrigin {
                var: var.to_string(),
                raw: None,
            });
        }
        current = match current
            .entry(*parent)
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Env {
                    var: var.to_string(),
                    message: format!("`{dotted}` is not a table"),
                })
            }
        };
    }
    current.insert((*last).to_string(), value);
    origins.insert(
        path.join("."),
        EnvOrigin {
            var: var.to_string(),
            raw,
        },
    );
    Ok(())
}

fn from_table(mut table: Table, origins: &Origins) -> Result<Config, ConfigError> {
    for (key, value) in table.iter_mut() {
        let path = key.clone();
        match key.as_str() {
            "listen" => check_value::<Config>(key, value, "", origins)?,
            "auth" => check_table::<AuthConfig>(value, &path, origins)?,
            "api" => {
                check_array::<TenantKey>(value, "tenant_keys", &path, origins)?;
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
    use crate::config::JwtAlgorithm;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_text_gives_defaults() {
        assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
    }

    #[test]
    fn keys_override_defaults() {
        let c = Config::from_toml_str(
            r#"
            listen = "0.0.0.0:9000"
            [auth]
            algorithm = "HS512"
            secret = "s"
            [limits]
            max_connections = 5
            [[rooms.acl]]
            pattern = "order:*"
            [api]
            tenant_keys = [{ tenant = "acme", key = "k" }]
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.auth.algorithm, JwtAlgorithm::HS512);
        assert_eq!(c.limits.max_connections, 5);
        assert_eq!(c.limits.queue_messages, 1024);
        assert_eq!(c.rooms.acl[0].pattern, "order:*");
        assert!(c.rooms.acl[0].subscribe && !c.rooms.acl[0].publish);
        assert_eq!(c.api.tenant_keys[0].tenant, "acme");
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
    fn syntax_errors_are_parse_errors() {
        let e = Config::from_toml_str("[limits\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }

    #[test]
    fn env_overlays_generic_keys_case_insensitively() {
        let c = Config::load(
            None,
            env(&[
                ("ROOMCAST_LIMITS__MAX_CONNECTIONS", "5000"),
                ("roomcast_heartbeat__interval_ms", "1000"),
                ("ROOMCAST_AUTH__REQUIRE_EXP", "false"),
                (
                    "ROOMCAST_ROOMS__AUTO_JOIN",
                    r#"["user:{sub}", "org:{org}"]"#,
                ),
                ("ROOMCAST_AUTH__ISSUER", "https://issuer.example"),
                ("ROOMCAST_AUTH__SECRET", "12345"),
                ("PATH", "/usr/bin"),
                ("ROOMCAST_CONFIG", "/etc/roomcast.toml"),
            ]),
        )
        .unwrap();
        assert_eq!(c.limits.max_connections, 5000);
        assert_eq!(c.heartbeat.interval_ms, 1000);
        assert!(!c.auth.require_exp);
        assert_eq!(c.rooms.auto_join, ["user:{sub}", "org:{org}"]);
        assert_eq!(c.auth.issuer, "https://issuer.example");
        // Read as TOML it is an integer; the field wants a string, so the text is kept.
        assert_eq!(c.auth.secret, "12345");
    }

    #[test]
    fn env_aliases_and_api_keys() {
        let c = Config::load(
            None,
            env(&[
                ("ROOMCAST_LISTEN", "0.0.0.0:80"),
                ("ROOMCAST_JWT_SECRET", "true"),
                ("ROOMCAST_JWT_ALGORITHM", "HS384"),
                ("ROOMCAST_API_KEY", "k1, k2,,"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:80");
        assert_eq!(c.auth.secret, "true");
        assert_eq!(c.auth.algorithm, JwtAlgorithm::HS384);
        assert_eq!(c.api.keys, ["k1", "k2"]);

        let c = Config::load(
            None,
            env(&[
                ("ROOMCAST_JWT_ALGORITHM", "ES256"),
                ("ROOMCAST_JWT_PUBLIC_KEY_FILE", "/keys/pub.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(c.auth.algorithm, JwtAlgorithm::ES256);
        assert_eq!(c.auth.public_key_file, "/keys/pub.pem");
    }

    #[test]
    fn env_is_applied_over_the_file() {
        let dir = std::env::temp_dir().join(format!("roomcast-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("roomcast.toml");
        std::fs::write(
            &file,
            "[api]\nkeys = [\"from-file\"]\n[limits]\nmax_connections = 7\nqueue_messages = 9\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("ROOMCAST_LIMITS__MAX_CONNECTIONS", "8"),
                ("ROOMCAST_API_KEY", "from-env"),
            ]),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.limits.max_connections, 8);
        assert_eq!(c.limits.queue_messages, 9);
        assert_eq!(c.api.keys, ["from-file", "from-env"]);
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e =
            Config::load(Some(Path::new("/nonexistent/roomcast.toml")), Vec::new()).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/roomcast.toml"));
    }

    #[test]
    fn unknown_env_keys_are_errors_naming_key_and_variable() {
        let e = Config::load(None, env(&[("ROOMCAST_LIMITS__NOPE", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "limits.nope: unknown key (set by ROOMCAST_LIMITS__NOPE)"
        );
        let e = Config::load(None, env(&[("ROOMCAST_NOPE__X", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "nope: unknown key (set by ROOMCAST_NOPE__X)");
        let e = Config::load(None, env(&[("ROOMCAST_LIMITS__MAX_CONNECTIONS", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("limits.max_connections: invalid type"), "{e}");
        assert!(
            e.ends_with("(set by ROOMCAST_LIMITS__MAX_CONNECTIONS)"),
            "{e}"
        );
        let e = Config::load(None, env(&[("ROOMCAST_LISTEN__PORT", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "listen: invalid type: map, expected socket address (set by ROOMCAST_LISTEN__PORT)"
        );
        let vars = env(&[
            ("ROOMCAST_LISTEN", "0.0.0.0:1"),
            ("ROOMCAST_LISTEN__PORT", "1"),
        ]);
        let e = Config::load(None, vars).unwrap_err();
        assert!(matches!(e, ConfigError::Env { .. }), "{e}");
        let vars = env(&[
            ("ROOMCAST_JWT_SECRET", "short"),
            ("ROOMCAST_AUTH__SECRET", "generic"),
        ]);
        assert_eq!(Config::load(None, vars).unwrap().auth.secret, "generic");
        let e = Config::load(None, env(&[("ROOMCAST_LIMITS____X", "1")])).unwrap_err();
        assert!(matches!(e, ConfigError::Env { .. }), "{e}");
    }

    #[test]
    fn env_values_are_toml_when_they_parse() {
        assert_eq!(parse_env_value("5000"), Value::Integer(5000));
        assert_eq!(parse_env_value("true"), Value::Boolean(true));
        assert_eq!(
            parse_env_value("\"quoted\""),
            Value::String("quoted".into())
        );
        assert_eq!(
            parse_env_value("127.0.0.1:80"),
            Value::String("127.0.0.1:80".into())
        );
        assert_eq!(parse_env_value("a = b"), Value::String("a = b".into()));
        assert_eq!(
            parse_env_value("1\ny = 1"),
            Value::String("1\ny = 1".into())
        );
        assert_eq!(
            parse_env_value("[1, 2]"),
            Value::Array(vec![1.into(), 2.into()])
        );
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
