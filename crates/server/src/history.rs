//! The rooms that keep history ([`HistoryRules`], compiled from `[history]`), as the broker
//! asks for them.

use std::time::Duration;

use std::sync::Arc;

use roomcast_broker::{History, HistoryLimits, HistoryPolicy, Position, Publication, RoomKey};

use crate::acl::RoomPattern;
use crate::config::{ConfigError, HistoryConfig};

/// `history.rooms`, compiled: the first rule matching a room gives its limits.
#[derive(Debug)]
pub struct HistoryRules {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    pattern: RoomPattern,
    /// `""`: any namespace.
    namespace: String,
    limits: HistoryLimits,
}

impl HistoryRules {
    /// The rules of `config`, `None` when it has none (no room keeps history).
    pub fn from_config(config: &HistoryConfig) -> Result<Option<HistoryRules>, ConfigError> {
        if config.rooms.is_empty() {
            return Ok(None);
        }
        let rules = config
            .rooms
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let pattern = RoomPattern::parse(&rule.pattern).map_err(|e| {
                    ConfigError::invalid(format!("history.rooms[{i}].pattern"), e.to_string())
                })?;
                Ok(Rule {
                    pattern,
                    namespace: rule.namespace.clone(),
                    limits: HistoryLimits {
                        max_events: rule.max_events,
                        max_age: Duration::from_millis(rule.max_age_ms),
                    },
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Some(HistoryRules { rules }))
    }
}

/// The events of `history` a request answers: the oldest `limit`, or with `reverse` the newest
/// `limit`, newest first.
pub fn pick(
    history: &History,
    limit: usize,
    reverse: bool,
) -> Box<dyn Iterator<Item = &(Position, Arc<Publication>)> + '_> {
    if reverse {
        Box::new(history.events.iter().rev().take(limit))
    } else {
        Box::new(history.events.iter().take(limit))
    }
}

impl HistoryPolicy for HistoryRules {
    fn limits(&self, room: &RoomKey) -> Option<HistoryLimits> {
        // Patterns hold no claims (checked with the configuration).
        let no_claims = serde_json::Map::new();
        self.rules
            .iter()
            .find(|r| {
                (r.namespace.is_empty() || *r.namespace == *room.ns)
                    && r.pattern.matches(&room.room, &no_claims)
            })
            .map(|r| r.limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HistoryRule;

    #[test]
    fn the_first_matching_rule_applies() {
        let config = HistoryConfig {
            rooms: vec![
                HistoryRule {
                    pattern: "order:*".into(),
                    namespace: "/shop".into(),
                    max_events: 5,
                    ..HistoryRule::default()
                },
                HistoryRule {
                    pattern: "order:*".into(),
                    max_events: 7,
                    ..HistoryRule::default()
                },
            ],
            ..HistoryConfig::default()
        };
        let rules = HistoryRules::from_config(&config).unwrap().unwrap();
        let limits = |ns: &str, room: &str| {
            rules
                .limits(&RoomKey::new("t", ns, room))
                .map(|l| l.max_events)
        };
        assert_eq!(limits("/shop", "order:1"), Some(5));
        assert_eq!(limits("/", "order:1"), Some(7));
        assert_eq!(limits("/", "chat:1"), None);
        assert!(HistoryRules::from_config(&HistoryConfig::default())
            .unwrap()
            .is_none());
    }
}
