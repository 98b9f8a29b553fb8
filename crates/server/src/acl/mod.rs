//! Which rooms a connection is in and may use: the auto-join templates rendered from its token's
//! claims, and the room ACL (`rooms.acl`) for client subscribe and publish. Tenant isolation is
//! not decided here: rooms are always looked up inside the connection's own tenant.

pub(crate) mod template;

use serde_json::{Map, Value};

use crate::auth::ClaimSource;
use crate::config::{AclRule, ConfigError, RoomsConfig};

pub use template::{RoomPattern, Template, TemplateError, MAX_RENDERED_ROOMS};

/// What a client asks to do with a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Receive the room's events.
    Subscribe,
    /// Send an event to the room.
    Publish,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: RoomPattern,
    /// `""` matches every namespace.
    namespace: String,
    subscribe: bool,
    publish: bool,
}

/// The room ACL: a room is allowed for an action when any rule granting that action matches
/// both the namespace and the room. Order does not matter, and nothing is denied explicitly.
/// The default ACL allows nothing.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

impl Acl {
    /// Builds the ACL from `rooms.acl`; errors name the rule's key (`rooms.acl[2].pattern: ...`).
    pub fn from_rules(rules: &[AclRule]) -> Result<Acl, ConfigError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let key = |field: &str| format!("rooms.acl[{i}].{field}");
                if rule.pattern.is_empty() {
                    return Err(ConfigError::invalid(key("pattern"), "must not be empty"));
                }
                let pattern = RoomPattern::parse(&rule.pattern)
                    .map_err(|e| ConfigError::invalid(key("pattern"), e.to_string()))?;
                if !rule.namespace.is_empty() && !rule.namespace.starts_with('/') {
                    return Err(ConfigError::invalid(
                        key("namespace"),
                        "must be \"\" (any namespace) or start with `/`",
                    ));
                }
                if !rule.subscribe && !rule.publish {
                    return Err(ConfigError::invalid(
                        format!("rooms.acl[{i}]"),
                        "grants neither subscribe nor publish",
                    ));
                }
                Ok(Rule {
                    pattern,
                    namespace: rule.namespace.clone(),
                    subscribe: rule.subscribe,
                    publish: rule.publish,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Acl { rules })
    }

    /// Whether a connection with `claims` may do `action` on `room` in `namespace`.
    pub fn allows<C: ClaimSource + ?Sized>(
        &self,
        action: Action,
        namespace: &str,
        room: &str,
        claims: &C,
    ) -> bool {
        self.rules.iter().any(|rule| {
            let granted = match action {
                Action::Subscribe => rule.subscribe,
                Action::Publish => rule.publish,
            };
            granted
                && (rule.namespace.is_empty() || rule.namespace == namespace)
                && rule.pattern.matches(room, claims)
        })
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (nothing is allowed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The room policy of a deployment: the rooms a connection joins on connect, and what it may
/// subscribe or publish to. Auto-joined rooms count as subscribable by their owner in every
/// namespace (so a client that left `user:7` may join it again); everything else goes through
/// the [`Acl`].
#[derive(Debug, Clone, Default)]
pub struct RoomPolicy {
    auto_join: Vec<Template>,
    acl: Acl,
}

impl RoomPolicy {
    /// A policy from parsed parts.
    pub fn new(auto_join: Vec<Template>, acl: Acl) -> RoomPolicy {
        RoomPolicy { auto_join, acl }
    }

    /// Builds the policy from `[rooms]`; errors name the key (`rooms.auto_join[1]: ...`,
    /// `rooms.acl[2].pattern: ...`).
    pub fn from_config(rooms: &RoomsConfig) -> Result<RoomPolicy, ConfigError> {
        let auto_join = rooms
            .auto_join
            .iter()
            .enumerate()
            .map(|(i, source)| {
                let key = format!("rooms.auto_join[{i}]");
                if source.is_empty() {
                    return Err(ConfigError::invalid(key, "must not be empty"));
                }
                Template::parse(source).map_err(|e| ConfigError::invalid(key, e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(RoomPolicy {
            auto_join,
            acl: Acl::from_rules(&rooms.acl)?,
        })
    }

    /// Keeps only the claims that the policy's templates and patterns refer to: what a live
    /// connection needs to decide later subscribes and publishes, and nothing more (memory per
    /// connection is a budget).
    pub fn retain_used_claims(&self, claims: &mut Map<String, Value>) {
        let used = |name: &str| {
            self.auto_join
                .iter()
                .flat_map(Template::claims)
                .chain(self.acl.rules.iter().flat_map(|r| r.pattern.claims()))
                .any(|c| c == name || c.split('.').next() == Some(name))
        };
        claims.retain(|name, _| used(name));
    }

    /// The auto-join templates.
    pub fn auto_join(&self) -> &[Template] {
        &self.auto_join
    }

    /// The ACL.
    pub fn acl(&self) -> &Acl {
        &self.acl
    }

    /// The rooms to join on connect: every template rendered with `claims`, in template order,
    /// without duplicates, at most [`MAX_RENDERED_ROOMS`] in all. The caller applies
    /// `rooms.max_per_connection`.
    pub fn auto_rooms<C: ClaimSource + ?Sized>(&self, claims: &C) -> Vec<String> {
        let mut rooms: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for template in &self.auto_join {
            for room in template.render(claims) {
                if rooms.len() == MAX_RENDERED_ROOMS {
                    return rooms;
                }
                if seen.insert(room.clone()) {
                    rooms.push(room);
                }
            }
        }
        rooms
    }

    /// Whether `room` is one of the connection's auto-joined rooms.
    pub fn is_auto_room<C: ClaimSource + ?Sized>(&self, room: &str, claims: &C) -> bool {
        self.auto_join.iter().any(|t| t.matches(room, claims))
    }

    /// Whether the connection may subscribe to `room` in `namespace`: one of its auto-joined
    /// rooms, or allowed by the ACL.
    pub fn may_subscribe<C: ClaimSource + ?Sized>(
        &self,
        namespace: &str,
        room: &str,
        claims: &C,
    ) -> bool {
        self.is_auto_room(room, claims)
            || self.acl.allows(Action::Subscribe, namespace, room, claims)
    }

    /// Whether the connection may publish to `room` in `namespace`: only when the ACL allows it
    /// (owning an auto-joined room does not grant publishing to it).
    pub fn may_publish<C: ClaimSource + ?Sized>(
        &self,
        namespace: &str,
        room: &str,
        claims: &C,
    ) -> bool {
        self.acl.allows(Action::Publish, namespace, room, claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Claims;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn rule(pattern: &str, subscribe: bool, publish: bool, namespace: &str) -> AclRule {
        AclRule {
            pattern: pattern.into(),
            subscribe,
            publish,
            namespace: namespace.into(),
        }
    }

    fn policy(auto_join: &[&str], acl: Vec<AclRule>) -> RoomPolicy {
        let rooms = RoomsConfig {
            auto_join: auto_join.iter().map(|s| s.to_string()).collect(),
            acl,
            ..RoomsConfig::default()
        };
        RoomPolicy::from_config(&rooms).unwrap()
    }

    #[test]
    fn only_claims_the_policy_uses_are_kept() {
        let p = policy(
            &["user:{sub}"],
            vec![rule("tenant:{tenants}", true, false, "")],
        );
        let mut c = claims(json!({
            "sub": "7", "tenants": ["a"], "exp": 1, "iat": 1, "email": "x@y", "tenant_id": "t"
        }));
        let all = c.clone();
        p.retain_used_claims(&mut c);
        let mut kept: Vec<&String> = c.keys().collect();
        kept.sort();
        assert_eq!(kept, ["sub", "tenants"]);
        // Decisions are unchanged, with the kept claims in either form.
        let compact = Claims::from(c.clone());
        assert_eq!(compact.len(), 2);
        for kept in [&c as &dyn ClaimSource, &compact] {
            for room in ["tenant:a", "user:7", "tenant:b", "user:8", "tenant:t"] {
                assert_eq!(
                    p.may_subscribe("/", room, kept),
                    p.may_subscribe("/", room, &all),
                    "{room}"
                );
            }
            assert!(p.may_subscribe("/", "tenant:a", kept));
            assert!(p.may_subscribe("/", "user:7", kept));
            assert_eq!(p.auto_rooms(kept), ["user:7"]);
        }
    }

    #[test]
    fn acl_grants_per_action_and_namespace() {
        let acl = Acl::from_rules(&[
            rule("order:*", true, false, ""),
            rule("chat:*", true, true, "/chat"),
            rule("tenant:{tenants}", true, false, "/"),
        ])
        .unwrap();
        let map = claims(json!({"tenants": ["a", "b"]}));
        let compact = Claims::from(map.clone());
        for c in [&map as &dyn ClaimSource, &compact] {
            assert!(acl.allows(Action::Subscribe, "/", "order:42", c));
            assert!(acl.allows(Action::Subscribe, "/dashboard", "order:42", c));
            assert!(!acl.allows(Action::Publish, "/", "order:42", c));
            assert!(!acl.allows(Action::Subscribe, "/", "xorder:1", c));
            assert!(acl.allows(Action::Publish, "/chat", "chat:lobby", c));
            assert!(!acl.allows(Action::Publish, "/", "chat:lobby", c));
            assert!(acl.allows(Action::Subscribe, "/", "tenant:a", c));
            assert!(acl.allows(Action::Subscribe, "/", "tenant:b", c));
            assert!(!acl.allows(Action::Subscribe, "/", "tenant:c", c));
            assert!(!acl.allows(Action::Subscribe, "/other", "tenant:a", c));
        }
        assert!(!acl.allows(Action::Subscribe, "/", "tenant:a", &Map::new()));
        assert!(!acl.allows(Action::Subscribe, "/", "tenant:a", &Claims::default()));
        assert_eq!(acl.len(), 3);
    }

    #[test]
    fn any_matching_rule_allows_regardless_of_order() {
        let acl =
            Acl::from_rules(&[rule("a:*", true, false, ""), rule("a:1", false, true, "")]).unwrap();
        assert!(acl.allows(Action::Publish, "/", "a:1", &Map::new()));
        assert!(!acl.allows(Action::Publish, "/", "a:2", &Map::new()));
        assert!(acl.allows(Action::Subscribe, "/", "a:1", &Map::new()));
    }

    #[test]
    fn empty_acl_allows_nothing() {
        let acl = Acl::default();
        assert!(acl.is_empty());
        assert!(!acl.allows(Action::Subscribe, "/", "anything", &Map::new()));
        assert!(!acl.allows(Action::Subscribe, "/", "anything", &Claims::default()));
    }

    #[test]
    fn rule_errors_name_their_key() {
        let bad = |rules: Vec<AclRule>| Acl::from_rules(&rules).unwrap_err().to_string();
        let ok = rule("a", true, false, "");
        let e = bad(vec![
            ok.clone(),
            ok.clone(),
            rule("order:{id", true, false, ""),
        ]);
        assert!(
            e.starts_with("rooms.acl[2].pattern: template `order:{id`"),
            "{e}"
        );
        assert_eq!(
            bad(vec![rule("", true, false, "")]),
            "rooms.acl[0].pattern: must not be empty"
        );
        let e = bad(vec![ok.clone(), rule("a", true, false, "chat")]);
        assert!(e.starts_with("rooms.acl[1].namespace: "), "{e}");
        assert_eq!(
            bad(vec![rule("a", false, false, "")]),
            "rooms.acl[0]: grants neither subscribe nor publish"
        );
        let rooms = RoomsConfig {
            auto_join: vec!["ok".into(), "user:{sub".into()],
            ..RoomsConfig::default()
        };
        let e = RoomPolicy::from_config(&rooms).unwrap_err().to_string();
        assert!(
            e.starts_with("rooms.auto_join[1]: template `user:{sub`"),
            "{e}"
        );
    }

    #[test]
    fn auto_rooms_render_in_order_without_duplicates() {
        let p = policy(
            &[
                "user:{sub}",
                "tenant:{tenant_id}",
                "shop:{shop_ids}",
                "role:{roles}",
                "user:{sub}",
            ],
            vec![],
        );
        let c =
            claims(json!({"sub": 7, "tenant_id": "acme", "shop_ids": [1, 2, 1], "roles": "admin"}));
        assert_eq!(
            p.auto_rooms(&c),
            ["user:7", "tenant:acme", "shop:1", "shop:2", "role:admin"]
        );
        assert_eq!(
            p.auto_rooms(&Claims::from(c)),
            ["user:7", "tenant:acme", "shop:1", "shop:2", "role:admin"]
        );
        let c = claims(json!({"sub": "u"}));
        assert_eq!(p.auto_rooms(&c), ["user:u"]);
        assert!(p.auto_rooms(&Claims::default()).is_empty());
        assert_eq!(
            RoomPolicy::from_config(&RoomsConfig::default())
                .unwrap()
                .auto_join()
                .len(),
            2
        );
    }

    #[test]
    fn owners_may_subscribe_to_auto_rooms_but_not_publish() {
        let p = policy(
            &["user:{sub}", "shop:{shop_ids}"],
            vec![rule("order:*", true, false, "")],
        );
        let map = claims(json!({"sub": "7", "shop_ids": [3]}));
        let compact = Claims::from(map.clone());
        for c in [&map as &dyn ClaimSource, &compact] {
            assert!(p.is_auto_room("user:7", c) && !p.is_auto_room("order:1", c));
            assert!(p.may_subscribe("/", "user:7", c));
            assert!(p.may_subscribe("/notifications", "shop:3", c));
            assert!(!p.may_subscribe("/", "user:8", c));
            assert!(!p.may_subscribe("/", "shop:4", c));
            assert!(p.may_subscribe("/", "order:1", c));
            assert!(!p.may_publish("/", "user:7", c));
            assert!(!p.may_publish("/", "order:1", c));
        }
        let p = policy(&["user:{sub}"], vec![rule("user:{sub}", false, true, "")]);
        for c in [&map as &dyn ClaimSource, &compact] {
            assert!(p.may_publish("/", "user:7", c));
            assert!(!p.may_publish("/", "user:8", c));
        }
    }
}
