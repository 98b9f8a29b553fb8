//! `[history]`: the rooms that keep their last events, for clients that resume and for
//! `GET /api/history`. Off unless `rooms` names some.

use serde::{Deserialize, Serialize};

/// `[history]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Which rooms keep history, and how much; the first rule matching a room applies.
    /// Default `[]`: no room keeps any.
    pub rooms: Vec<HistoryRule>,
    /// Most rooms keeping history on this node at once (rooms nobody is in included, until
    /// their last event is past its age); events of further rooms are not kept, and counted.
    /// Default `100000`.
    pub max_rooms: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            rooms: Vec::new(),
            max_rooms: 100_000,
        }
    }
}

/// One entry of `history.rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryRule {
    /// Room pattern: literal text and `*` matching any run of characters. Required.
    pub pattern: String,
    /// Namespace the rule applies to; `""` (the default) means any.
    pub namespace: String,
    /// The most events kept per room. Default `100`, at most `10000`.
    pub max_events: usize,
    /// How long an event is kept, in milliseconds. Default `300000` (5 minutes), at most a day.
    pub max_age_ms: u64,
}

impl Default for HistoryRule {
    fn default() -> Self {
        HistoryRule {
            pattern: String::new(),
            namespace: String::new(),
            max_events: 100,
            max_age_ms: 300_000,
        }
    }
}
