//! What to consume: the broker's URL, the exchange, the queue and its bindings.

use std::time::Duration;

/// The kind of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeKind {
    /// Routing keys matched against binding patterns (`order.*`, `#`).
    Topic,
    /// Routing keys equal to a binding key.
    Direct,
    /// Every message to every bound queue.
    Fanout,
    /// Header values matched against the binding's arguments.
    Headers,
}

impl ExchangeKind {
    /// Parses the name used in configuration: `topic`, `direct`, `fanout` or `headers`.
    pub fn parse(name: &str) -> Option<ExchangeKind> {
        Some(match name {
            "topic" => ExchangeKind::Topic,
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }

    pub(crate) fn lapin(self) -> lapin::ExchangeKind {
        match self {
            ExchangeKind::Topic => lapin::ExchangeKind::Topic,
            ExchangeKind::Direct => lapin::ExchangeKind::Direct,
            ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
            ExchangeKind::Headers => lapin::ExchangeKind::Headers,
        }
    }
}

/// One queue to consume, and what it is declared with.
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    /// A name for logs and metrics; also the connection's name on the broker.
    pub name: String,
    /// `amqp://user:password@host:port/vhost` (the default vhost `/` is `%2f`), or `amqps://`.
    pub url: String,
    /// The exchange the queue is bound to.
    pub exchange: String,
    /// Its kind.
    pub exchange_kind: ExchangeKind,
    /// Whether the exchange survives a broker restart.
    pub exchange_durable: bool,
    /// The queue; `None`: an exclusive queue named by the broker, deleted with the connection.
    pub queue: Option<String>,
    /// Whether the named queue survives a broker restart.
    pub queue_durable: bool,
    /// Messages the broker sends ahead of their acknowledgement.
    pub prefetch: u16,
    /// Binding keys (routing key patterns on a topic exchange); none: one binding with `#`.
    pub bindings: Vec<String>,
    /// The dead-letter exchange (fanout) and queue of rejected messages, both of this name;
    /// `None`: rejected messages are dropped by the broker.
    pub dead_letter: Option<String>,
    /// Deadline of the connection and of each declaration.
    pub timeout: Duration,
    /// First and longest wait between reconnections.
    pub backoff: (Duration, Duration),
}

impl std::fmt::Debug for Source {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("url", &redact(&self.url))
            .field("exchange", &self.exchange)
            .field("queue", &self.queue)
            .field("bindings", &self.bindings)
            .field("dead_letter", &self.dead_letter)
            .finish_non_exhaustive()
    }
}

/// Why a source cannot be consumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The broker refused or failed an operation.
    #[error("{what}: {source}")]
    Broker {
        /// What was being done.
        what: &'static str,
        /// The broker's error.
        source: lapin::Error,
    },
    /// An operation took longer than the source's timeout.
    #[error("{0}: no answer within the timeout")]
    Timeout(&'static str),
    /// The consumer's stream ended (the channel or the connection closed).
    #[error("the delivery stream ended")]
    Ended,
}

/// Checks that `url` is an AMQP URL (`amqp://` or `amqps://`, host, port, vhost); the error
/// says what is wrong with it.
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<lapin::uri::AMQPUri>().map(|_| ())
}

/// `url` with its password replaced by `***`, for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(check_url("amqps://host").is_ok());
        assert!(check_url("http://host").is_err());
        assert!(check_url("nonsense").is_err());
    }

    #[test]
    fn exchange_kinds_parse() {
        assert_eq!(ExchangeKind::parse("topic"), Some(ExchangeKind::Topic));
        assert_eq!(ExchangeKind::parse("fanout"), Some(ExchangeKind::Fanout));
        assert_eq!(ExchangeKind::parse("Topic"), None);
    }
}
