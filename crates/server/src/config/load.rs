//! Loading: TOML text, then `ROOMCAST_*` environment variables overlaid on the TOML table
//! (see the `env` module), then the walk against the schema and serde (see the `schema`
//! module), so that an unknown key or a mistyped value is reported with its full path
//! (`limits.nope`, `rooms.acl[2].publish`).

use std::path::Path;

use toml::Table;

use super::env::{overlay_env, Origins};
use super::schema::from_table;
use super::{Config, ConfigError};

impl Config {
    /// Parses TOML text into a configuration. Missing keys take their defaults; unknown keys and
    /// mistyped values are errors naming the key. Does not validate the values (see
    /// [`Config::validate`]).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let table = parse_toml(text, "config")?;
        from_table(table, &Origins::new())
    }

    /// Loads the configuration: the embedded defaults, then the file at `path` (when given), then
    /// the `ROOMCAST_*` variables among `env` (pass [`process_env`](super::process_env) or `std::env::vars()`).
    /// Does not validate the values, so that `--dev` can still add its key.
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

fn parse_toml(text: &str, origin: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string().trim_end().to_string(),
    })
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
    fn syntax_errors_are_parse_errors() {
        let e = Config::from_toml_str("[limits\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
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
}
