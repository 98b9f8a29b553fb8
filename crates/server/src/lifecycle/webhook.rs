//! `[lifecycle.webhook]`: lifecycle events posted to a backend in batches,
//! `{"node": "...", "events": [{"kind": "connect", "at": "...", "tenant": "acme", ...}]}`,
//! signed as RPC calls are (`X-Roomcast-Signature`, over `<timestamp>.<body>`).
//!
//! Events wait in a bounded queue (`queue_max`; past it, new ones are dropped and counted) for
//! one task, which gathers up to `batch_max` of them, or what came within `flush_ms` of the
//! first, and posts them. A post that fails (no answer within `timeout_ms`, not a 2xx) is tried
//! again after a backoff doubling from `retry_min_ms` to `retry_max_ms`, `max_attempts` times
//! in all, then the batch is given up and counted. Batches go one at a time, in order: a
//! receiver sees events in the order they were made, and at least once while it answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backend::client::{self, HttpClient, Target};
use crate::backend::sign::Secret;
use crate::config::{ConfigError, LifecycleKind, WebhookConfig};

/// The largest answer read from the receiver (its body is not looked at).
const MAX_ANSWER_BYTES: usize = 65_536;
/// Below this a secret is refused, as for RPC backends.
const MIN_SECRET_BYTES: usize = 16;

/// What the webhook did, for `GET /metrics`.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Events the receiver took (a 2xx answer to their post).
    pub delivered: AtomicU64,
    /// Posts that failed (each attempt).
    pub failed_posts: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped_full: AtomicU64,
    /// Events of batches given up after `max_attempts` posts.
    pub dropped_given_up: AtomicU64,
}

/// The configured webhook.
#[derive(Debug)]
pub struct Webhook {
    uri: http::Uri,
    secret: Secret,
    kinds: Vec<LifecycleKind>,
    batch_max: usize,
    flush: Duration,
    timeout: Duration,
    max_attempts: u32,
    retry: (Duration, Duration),
    tx: mpsc::Sender<Value>,
    rx: Mutex<Option<mpsc::Receiver<Value>>>,
    node: std::sync::OnceLock<String>,
    /// Counts.
    pub counters: WebhookCounters,
}

impl Webhook {
    /// Checks and compiles `[lifecycle.webhook]`; errors name the key.
    pub(super) fn compile(config: &WebhookConfig) -> Result<Webhook, ConfigError> {
        let key = |k: &str| format!("lifecycle.webhook.{k}");
        let uri: http::Uri = config
            .url
            .parse()
            .ok()
            .filter(|u: &http::Uri| u.scheme_str() == Some("http") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::invalid(
                    key("url"),
                    "must be an http:// URL, e.g. \"http://app:8080/hooks\"",
                )
            })?;
        if config.secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::invalid(
                key("secret"),
                format!("must be at least {MIN_SECRET_BYTES} bytes: the signature is the receiver's only proof"),
            ));
        }
        for (name, value, min, max) in [
            ("batch_max", config.batch_max as u64, 1, 10_000),
            ("flush_ms", config.flush_ms, 1, 60_000),
            ("queue_max", config.queue_max as u64, 1, 10_000_000),
            ("timeout_ms", config.timeout_ms, 1, 600_000),
            ("max_attempts", u64::from(config.max_attempts), 1, 100),
            ("retry_min_ms", config.retry_min_ms, 1, 600_000),
            (
                "retry_max_ms",
                config.retry_max_ms,
                config.retry_min_ms.max(1),
                3_600_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::invalid(
                    key(name),
                    format!("must be {min} to {max}"),
                ));
            }
        }
        let (tx, rx) = mpsc::channel(config.queue_max);
        let ms = Duration::from_millis;
        Ok(Webhook {
            uri,
            secret: Secret::new(&config.secret),
            kinds: config.kinds.clone(),
            batch_max: config.batch_max,
            flush: ms(config.flush_ms),
            timeout: ms(config.timeout_ms),
            max_attempts: config.max_attempts,
            retry: (ms(config.retry_min_ms), ms(config.retry_max_ms)),
            tx,
            rx: Mutex::new(Some(rx)),
            node: std::sync::OnceLock::new(),
            counters: WebhookCounters::default(),
        })
    }

    /// Queues an event of `kind`, `json` as [`Event::to_json`](super::Event::to_json) gives it, when its kind is
    /// posted; drops and counts it when the queue is full.
    pub(super) fn push(&self, kind: LifecycleKind, json: &Value) {
        if !self.kinds.contains(&kind) {
            return;
        }
        if self.tx.try_send(json.clone()).is_err() {
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts the posting task (once), for the node `node`.
    pub(super) fn start(self: &std::sync::Arc<Self>, node: &str) {
        let _ = self.node.set(node.to_owned());
        let Some(rx) = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        tokio::spawn(self.clone().run(rx, client::http_client()));
    }

    async fn run(self: std::sync::Arc<Self>, mut rx: mpsc::Receiver<Value>, http: HttpClient) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let until = Instant::now() + self.flush;
            while batch.len() < self.batch_max {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(event) => batch.push(event),
                        None => break,
                    },
                    () = tokio::time::sleep_until(until) => break,
                }
            }
            self.deliver(&http, batch).await;
        }
    }

    /// Posts one batch, trying again as configured.
    async fn deliver(&self, http: &HttpClient, batch: Vec<Value>) {
        let count = batch.len() as u64;
        let body = json!({
            "node": self.node.get().map_or("", String::as_str),
            "events": batch,
        })
        .to_string()
        .into_bytes();
        let mut wait = self.retry.0;
        for attempt in 1..=self.max_attempts {
            let target = Target {
                uri: self.uri.clone(),
                secret: &self.secret,
                timeout: self.timeout,
                max_answer_bytes: MAX_ANSWER_BYTES,
            };
            match client::post(http, target, body.clone()).await {
                Ok(answer) if answer.status.is_success() => {
                    self.counters.delivered.fetch_add(count, Ordering::Relaxed);
                    return;
                }
                Ok(answer) => {
                    tracing::debug!(status = %answer.status, attempt, "webhook post refused");
                }
                Err(e) => tracing::debug!(error = %e, attempt, "webhook post failed"),
            }
            self.counters.failed_posts.fetch_add(1, Ordering::Relaxed);
            if attempt < self.max_attempts {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(self.retry.1);
            }
        }
        tracing::warn!(
            events = count,
            attempts = self.max_attempts,
            "webhook batch given up"
        );
        self.counters
            .dropped_given_up
            .fetch_add(count, Ordering::Relaxed);
    }
}
