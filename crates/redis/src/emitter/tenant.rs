//! [`TenantRule`]: how a message from an emitter, which knows nothing of tenants, gets one:
//! a fixed tenant, or the tenant named inside the rooms it targets ([`RoomPattern`]).

use std::sync::Arc;

use super::EmitterError;

/// The placeholder a [`RoomPattern`] holds once.
const PLACEHOLDER: &str = "{tenant}";

/// How a decoded message gets its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantRule {
    /// Every message belongs to this tenant; a broadcast to a whole namespace reaches every
    /// connection of the tenant.
    Fixed(Arc<str>),
    /// The tenant is read from the rooms a message names (see [`RoomPattern`]): the rooms that
    /// match must agree on one tenant, and rooms that do not match are rooms of that same
    /// tenant. A message that names no matching room, or two tenants, is refused with
    /// [`EmitterError::NoTenant`], and so is a broadcast to a whole namespace.
    FromRoom(RoomPattern),
}

/// A room name with the tenant inside: `<prefix>{tenant}<suffix>`, for example
/// `tenant:{tenant}` or `org-{tenant}/rooms`. A room matches when it starts with the prefix
/// and ends with the suffix with at least one character between them; those characters are
/// the tenant. Nothing else is special: `*` is a character like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPattern {
    prefix: String,
    suffix: String,
}

impl RoomPattern {
    /// Parses a pattern holding `{tenant}` exactly once.
    pub fn parse(pattern: &str) -> Result<Self, EmitterError> {
        let Some((prefix, suffix)) = pattern.split_once(PLACEHOLDER) else {
            return Err(EmitterError::Pattern(format!(
                "{pattern:?} does not hold {PLACEHOLDER}"
            )));
        };
        if suffix.contains(PLACEHOLDER) {
            return Err(EmitterError::Pattern(format!(
                "{pattern:?} holds {PLACEHOLDER} more than once"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The tenant `room` names, if it matches.
    pub fn tenant<'a>(&self, room: &'a str) -> Option<&'a str> {
        let tenant = room
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        (!tenant.is_empty()).then_some(tenant)
    }
}

impl TenantRule {
    /// The tenant of a message that names `rooms` (the rooms it targets, or for a request the
    /// rooms that select sockets and the rooms they join or leave).
    pub(crate) fn tenant<'a>(
        &self,
        rooms: impl IntoIterator<Item = &'a str>,
    ) -> Result<Arc<str>, EmitterError> {
        match self {
            TenantRule::Fixed(tenant) => Ok(tenant.clone()),
            TenantRule::FromRoom(pattern) => {
                let mut found: Option<&str> = None;
                for tenant in rooms.into_iter().filter_map(|room| pattern.tenant(room)) {
                    match found {
                        Some(seen) if seen != tenant => return Err(EmitterError::NoTenant),
                        _ => found = Some(tenant),
                    }
                }
                found.map(Arc::from).ok_or(EmitterError::NoTenant)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_room(pattern: &str) -> TenantRule {
        TenantRule::FromRoom(RoomPattern::parse(pattern).unwrap())
    }

    #[test]
    fn a_pattern_holds_the_placeholder_once() {
        assert!(matches!(
            RoomPattern::parse("tenant:"),
            Err(EmitterError::Pattern(_))
        ));
        assert!(matches!(
            RoomPattern::parse("{tenant}:{tenant}"),
            Err(EmitterError::Pattern(_))
        ));
        assert!(RoomPattern::parse("{tenant}").is_ok());
    }

    #[test]
    fn the_tenant_lies_between_prefix_and_suffix() {
        let p = RoomPattern::parse("org-{tenant}:*").unwrap();
        assert_eq!(p.tenant("org-acme:*"), Some("acme"));
        assert_eq!(p.tenant("org-acme:lobby"), None, "`*` is no wildcard");
        assert_eq!(p.tenant("org-:*"), None, "the tenant is not empty");
        assert_eq!(p.tenant("org-:"), None, "prefix and suffix do not overlap");
        let p = RoomPattern::parse("tenant:{tenant}").unwrap();
        assert_eq!(p.tenant("tenant:acme:vip"), Some("acme:vip"));
        assert_eq!(p.tenant("tenant:"), None);
        assert_eq!(p.tenant("lobby"), None);
        let p = RoomPattern::parse("{tenant}").unwrap();
        assert_eq!(p.tenant("acme"), Some("acme"));
        assert_eq!(p.tenant(""), None);
    }

    #[test]
    fn matching_rooms_agree_on_one_tenant() {
        let rule = from_room("tenant:{tenant}");
        assert_eq!(&*rule.tenant(["tenant:acme"]).unwrap(), "acme");
        assert_eq!(
            &*rule.tenant(["vip", "tenant:acme", "tenant:acme"]).unwrap(),
            "acme",
            "a room that does not match is a room of the tenant found"
        );
        assert_eq!(
            rule.tenant(["tenant:acme", "tenant:other"]),
            Err(EmitterError::NoTenant)
        );
        assert_eq!(rule.tenant(["vip"]), Err(EmitterError::NoTenant));
        assert_eq!(rule.tenant([]), Err(EmitterError::NoTenant));
    }

    #[test]
    fn a_fixed_tenant_needs_no_room() {
        let rule = TenantRule::Fixed("acme".into());
        assert_eq!(&*rule.tenant([]).unwrap(), "acme");
        assert_eq!(&*rule.tenant(["tenant:other"]).unwrap(), "acme");
    }
}
