//! The registry's public values: a node's description, one node's answer to a request, and
//! the trait through which a node answers requests from the others.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

use roomcast_broker::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a node says about itself in the registry, stored as JSON under its entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id, unique in the cluster (`cluster.node_id`).
    pub id: String,
    /// When the node started, in ms since the Unix epoch.
    pub started_at_ms: u64,
    /// The node's HTTP address, as other nodes or an operator reach it.
    pub address: String,
    /// The node's software version.
    pub version: String,
}

impl NodeInfo {
    /// A node starting now.
    pub fn new(
        id: impl Into<String>,
        address: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            started_at_ms: now_ms(),
            address: address.into(),
            version: version.into(),
        }
    }
}

/// One node's answer to [`Registry::ask_all`](super::Registry::ask_all).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAnswer {
    /// The node's id.
    pub node: String,
    /// What its handler answered, or why there is no answer: `"timed out"` when it did not
    /// answer in time, otherwise the error's text.
    pub answer: Result<Value, String>,
}

/// The text of a [`NodeAnswer`] that did not come in time.
pub const TIMED_OUT: &str = "timed out";

/// Answers the requests that other nodes send to this one.
///
/// Each request runs on its own task, under the registry's deadline (`cluster.timeout_ms`)
/// and with a bounded number at once; a handler that takes longer is dropped and the asking
/// node sees [`TIMED_OUT`].
pub trait RequestHandler: Send + Sync + Debug {
    /// Answers one request's body.
    fn handle(&self, body: Value) -> BoxFuture<'static, Value>;
}

/// Now, in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_info_is_plain_json() -> Result<(), serde_json::Error> {
        let info = NodeInfo {
            id: "a".into(),
            started_at_ms: 5,
            address: "10.0.0.1:8080".into(),
            version: "0.1.0".into(),
        };
        let json = serde_json::to_value(&info)?;
        assert_eq!(
            json,
            serde_json::json!({"id": "a", "started_at_ms": 5, "address": "10.0.0.1:8080", "version": "0.1.0"})
        );
        assert_eq!(serde_json::from_value::<NodeInfo>(json)?, info);
        Ok(())
    }
}
