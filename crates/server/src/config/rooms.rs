//! `[rooms]`: the rooms joined on connect and the ACL rules for client subscribe and publish.

use serde::{Deserialize, Serialize};

/// `[rooms]`: rooms joined on connect and the ACL for client subscribe and publish.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// Claim templates rendered on connect; each rendered room is joined (an array claim gives
    /// one room per element, a missing claim none). Default `["user:{sub}", "tenant:{tenant_id}"]`.
    pub auto_join: Vec<String>,
    /// Most rooms one connection may be in, auto-joined ones included. Default `256`.
    pub max_per_connection: usize,
    /// Rules for the rooms clients may subscribe or publish to. Default `[]`.
    pub acl: Vec<AclRule>,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            auto_join: vec!["user:{sub}".into(), "tenant:{tenant_id}".into()],
            max_per_connection: 256,
            acl: Vec::new(),
        }
    }
}

/// One entry of `rooms.acl`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclRule {
    /// Room pattern: literal text, `{claim}` placeholders matched literally against the
    /// connection's claims, and `*` matching any run of characters. Required.
    pub pattern: String,
    /// Whether matching rooms may be subscribed to. Default `true`.
    pub subscribe: bool,
    /// Whether clients may publish to matching rooms. Default `false`.
    pub publish: bool,
    /// Namespace the rule applies to (e.g. `"/dashboard"`); `""` (the default) means any.
    pub namespace: String,
}

impl Default for AclRule {
    fn default() -> Self {
        AclRule {
            pattern: String::new(),
            subscribe: true,
            publish: false,
            namespace: String::new(),
        }
    }
}
