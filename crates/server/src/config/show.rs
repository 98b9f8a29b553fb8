//! The effective configuration as `roomcast check-config` prints it: TOML that loads back to
//! the same configuration, except that every secret reads [`HIDDEN`] (JWT and backend
//! secrets, API keys) and URLs lose their credentials (see [`redacted_url`](super::redacted_url)).

use super::{redacted_url, Config, ConfigError};

/// What a configured secret reads as once hidden. An unset secret stays `""`, so that the
/// output still tells which ones are set.
pub const HIDDEN: &str = "***";

impl Config {
    /// This configuration with every secret hidden: `auth.secret`, `api.keys`,
    /// `api.tenant_keys[].key`, `api.metrics_key`, the secrets of `[rpc.backends]`,
    /// `[auth.connect_proxy]` and `[lifecycle.webhook]` read [`HIDDEN`]; the URLs of
    /// `cluster.redis`, `inbox.database`, `ingest.amqp[].url` and of the backends lose their
    /// user and password.
    pub fn masked(&self) -> Config {
        let mut config = self.clone();
        // Every section is named, so that a new one is a decision about its secrets.
        let Config {
            listen: _,
            auth,
            api,
            rooms: _,
            limits: _,
            heartbeat: _,
            shutdown: _,
            log: _,
            socketio: _,
            cluster,
            history: _,
            ingest,
            lifecycle,
            rpc,
            inbox,
        } = &mut config;
        hide(&mut auth.secret);
        if let Some(proxy) = &mut auth.connect_proxy {
            hide(&mut proxy.secret);
            hide_url(&mut proxy.url);
        }
        api.keys.iter_mut().for_each(hide);
        for tenant_key in &mut api.tenant_keys {
            hide(&mut tenant_key.key);
        }
        hide(&mut api.metrics_key);
        if let Some(cluster) = cluster {
            hide_url(&mut cluster.redis);
        }
        for source in &mut ingest.amqp {
            hide_url(&mut source.url);
        }
        if let Some(webhook) = &mut lifecycle.webhook {
            hide(&mut webhook.secret);
            hide_url(&mut webhook.url);
        }
        for backend in rpc.backends.values_mut() {
            hide(&mut backend.secret);
            hide_url(&mut backend.url);
        }
        if let Some(inbox) = inbox {
            hide_url(&mut inbox.database);
        }
        config
    }

    /// [`masked`](Self::masked) as a TOML document, every key written out (defaults
    /// included).
    pub fn to_masked_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(&self.masked()).map_err(|e| ConfigError::invalid("config", e.to_string()))
    }
}

fn hide(secret: &mut String) {
    if !secret.is_empty() {
        HIDDEN.clone_into(secret);
    }
}

fn hide_url(url: &mut String) {
    *url = redacted_url(url);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with a value in every secret, each containing `s3cret`.
    const WITH_SECRETS: &str = r#"
        listen = "0.0.0.0:9000"
        [auth]
        secret = "jwt-s3cret-0123456789abcdef0123456789"
        issuer = "https://issuer.example"
        [auth.connect_proxy]
        url = "http://proxy:s3cret-proxy-url@127.0.0.1:1/connect"
        secret = "proxy-s3cret-0123456789"
        cookies = ["session_id"]
        [api]
        keys = ["platform-s3cret"]
        tenant_keys = [{ tenant = "acme", key = "acme-s3cret" }]
        metrics_key = "metrics-s3cret"
        [log]
        format = "json"
        [cluster]
        redis = "redis://user:s3cret-redis@redis.example:6379/1"
        node_id = "node-a"
        [[cluster.emitters]]
        tenant = "acme"
        [inbox]
        database = "postgres://roomcast:s3cret-pg@db.example/roomcast?sslmode=disable&password=s3cret-q"
        [[inbox.live]]
        namespace = "/"
        created = { event = "new", data = { id = "{id}", n = 1.5, tags = ["a", 2] } }
        [[ingest.amqp]]
        name = "orders"
        url = "amqp://app:s3cret-amqp@rabbit.example:5672/%2f"
        exchange = { name = "orders", type = "topic" }
        queue = { name = "roomcast.orders" }
        [[ingest.amqp.rules]]
        routing_key = "order.*"
        equals = { status = "shipped" }
        [[ingest.amqp.rules.emit]]
        event = "order:shipped"
        rooms = ["order:{orderId}"]
        [lifecycle.webhook]
        url = "http://127.0.0.1:1/hook"
        secret = "webhook-s3cret-0123456789"
        [[lifecycle.publish]]
        kind = "user_online"
        event = "user:online"
        broadcast = true
        [rpc.backends.odoo]
        url = "http://127.0.0.1:1/rpc"
        secret = "backend-s3cret-0123456789"
        [rpc.methods]
        "dashboard.state" = { backend = "odoo", path = "/state" }
        [[socketio.namespaces]]
        name = "/"
        [[socketio.namespaces.events]]
        event = "ping"
        action = "reply"
        reply = { event = "pong" }
    "#;

    #[test]
    fn no_secret_is_printed() {
        let config = Config::from_toml_str(WITH_SECRETS).unwrap();
        let text = config.to_masked_toml().unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("secret = \"***\""), "{text}");
        assert!(text.contains("redis://***@redis.example:6379/1"), "{text}");
        assert!(text.contains("password=***"), "{text}");
        // What is not secret stays readable.
        assert!(text.contains("tenant = \"acme\""), "{text}");
        assert!(text.contains("node_id = \"node-a\""), "{text}");
    }

    #[test]
    fn the_printed_toml_loads_back() {
        let config = Config::from_toml_str(WITH_SECRETS).unwrap();
        let text = config.to_masked_toml().unwrap();
        let loaded = Config::from_toml_str(&text).unwrap();
        assert_eq!(loaded, config.masked());
        // With the secrets put back, it is the configuration itself.
        let mut restored = loaded;
        restored.auth.secret.clone_from(&config.auth.secret);
        let (proxy, original) = (
            restored.auth.connect_proxy.as_mut().unwrap(),
            config.auth.connect_proxy.as_ref().unwrap(),
        );
        proxy.secret.clone_from(&original.secret);
        proxy.url.clone_from(&original.url);
        restored.api.keys.clone_from(&config.api.keys);
        restored.api.tenant_keys[0]
            .key
            .clone_from(&config.api.tenant_keys[0].key);
        restored.api.metrics_key.clone_from(&config.api.metrics_key);
        restored.cluster.as_mut().unwrap().redis = config.cluster.as_ref().unwrap().redis.clone();
        restored.inbox.as_mut().unwrap().database = config.inbox.as_ref().unwrap().database.clone();
        restored.ingest.amqp[0]
            .url
            .clone_from(&config.ingest.amqp[0].url);
        restored.lifecycle.webhook.as_mut().unwrap().secret =
            config.lifecycle.webhook.as_ref().unwrap().secret.clone();
        restored.rpc.backends.get_mut("odoo").unwrap().secret =
            config.rpc.backends["odoo"].secret.clone();
        assert_eq!(restored, config);
    }

    #[test]
    fn the_defaults_load_back_and_unset_secrets_stay_empty() {
        let config = Config::default();
        let text = config.to_masked_toml().unwrap();
        assert_eq!(Config::from_toml_str(&text).unwrap(), config);
        assert!(text.contains("secret = \"\""), "{text}");
        assert!(!text.contains(HIDDEN), "{text}");
    }
}
