//! The `ROOMCAST_*` environment variables, overlaid on the TOML table before it is checked:
//! generic `ROOMCAST_<SECTION>__<KEY>` names, the short aliases and `ROOMCAST_API_KEY`. Each
//! value set remembers the variable it came from, so that errors can name it.

use std::collections::HashMap;

use toml::{Table, Value};

use super::ConfigError;

/// Prefix of every environment variable the loader reads (matched case-insensitively).
const PREFIX: &str = "ROOMCAST_";

/// Where an overlaid value came from, to name the variable in errors and to retry an
/// env value as a plain string when its TOML reading has the wrong type.
pub(super) struct EnvOrigin {
    pub(super) var: String,
    pub(super) raw: Option<String>,
}

/// The origin of each overlaid value, by dotted key path.
pub(super) type Origins = HashMap<String, EnvOrigin>;

/// The process environment's `ROOMCAST_*` variables, for
/// [`Config::load`](super::Config::load). Unlike `std::env::vars()` this does not panic on a
/// non-UTF-8 variable: other variables are skipped, and a `ROOMCAST_*` one is converted lossily
/// (its value will then fail validation or auth).
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

/// Applies the `ROOMCAST_*` variables among `env` to `table`, recording where each value came
/// from in `origins`.
pub(super) fn overlay_env(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, JwtAlgorithm};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
}
