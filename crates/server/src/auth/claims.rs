//! The claims a connection keeps for its lifetime, in a compact form: [`Claims`], and the
//! [`ClaimSource`] lookup that room templates and the ACL read claims through, whether from a
//! token's full claim map or from that compact form.

use serde_json::{Map, Value};

/// Where claim templates and the room ACL look claims up by name. Implemented for a token's full
/// claim map (while a connection authenticates) and for [`Claims`] (what it keeps afterwards).
pub trait ClaimSource: std::fmt::Debug {
    /// The claim called `name`, if the token has it.
    fn claim(&self, name: &str) -> Option<&Value>;
}

impl ClaimSource for Map<String, Value> {
    fn claim(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

impl ClaimSource for Claims {
    fn claim(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// Claims kept by a live connection: an exactly sized slice of (name, value) pairs, sorted by
/// name. A claim map is a B-tree whose first node is a fixed allocation of about 630 bytes
/// however few entries it holds; a connection usually keeps one or two claims after
/// [`RoomPolicy::retain_used_claims`](crate::acl::RoomPolicy::retain_used_claims), which this
/// stores in a few dozen bytes. No claims allocate nothing. The default is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    entries: Box<[(Box<str>, Value)]>,
}

impl Claims {
    /// The claim called `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .binary_search_by(|(key, _)| (**key).cmp(name))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// The number of claims.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no claims.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The claims, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(name, value)| (&**name, value))
    }

    /// The claims as a claim map again, for code that takes one.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect()
    }
}

impl From<Map<String, Value>> for Claims {
    /// Takes the claims of `map`. Array values are trimmed to their length along the way: a
    /// JSON array is read by pushing, which leaves it up to twice as large as it needs to be.
    fn from(map: Map<String, Value>) -> Claims {
        let mut entries: Box<[(Box<str>, Value)]> = map
            .into_iter()
            .map(|(name, mut value)| {
                shrink(&mut value);
                (name.into_boxed_str(), value)
            })
            .collect();
        // A map iterates in name order unless serde_json's `preserve_order` is enabled somewhere
        // in the build; lookups rely on the order, so it is not assumed.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Claims { entries }
    }
}

fn shrink(value: &mut Value) {
    match value {
        Value::String(s) => s.shrink_to_fit(),
        Value::Array(items) => {
            items.iter_mut().for_each(shrink);
            items.shrink_to_fit();
        }
        Value::Object(map) => map.values_mut().for_each(shrink),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn looks_claims_up_by_name() {
        let c = Claims::from(map(json!({
            "sub": "7", "tenants": ["a", "b"], "org": {"id": "o1"}, "a.b": 1, "n": null
        })));
        assert_eq!(c.len(), 5);
        assert_eq!(c.get("sub"), Some(&json!("7")));
        assert_eq!(c.get("tenants"), Some(&json!(["a", "b"])));
        assert_eq!(c.get("org"), Some(&json!({"id": "o1"})));
        assert_eq!(c.get("a.b"), Some(&json!(1)));
        assert_eq!(c.get("n"), Some(&Value::Null));
        for absent in ["", "su", "subs", "SUB", "a", "org.id", "zzz"] {
            assert_eq!(c.get(absent), None, "{absent}");
        }
    }

    #[test]
    fn built_from_a_map_it_agrees_with_the_map() {
        let m = map(json!({
            "zeta": 1, "sub": 7, "exp": 99, "tenant_id": "acme", "roles": ["x"], "b": true
        }));
        let c = Claims::from(m.clone());
        assert_eq!(c.to_map(), m);
        let names: Vec<&str> = c.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["b", "exp", "roles", "sub", "tenant_id", "zeta"]);
        for name in m.keys().map(String::as_str).chain(["missing", "tenant"]) {
            assert_eq!(c.claim(name), m.claim(name), "{name}");
        }
    }

    #[test]
    fn arrays_are_trimmed_to_their_length() {
        let mut items = Vec::with_capacity(16);
        items.push(json!("a"));
        let mut inner = Vec::with_capacity(8);
        inner.push(json!(1));
        let mut m = Map::new();
        m.insert("tenants".into(), Value::Array(items));
        m.insert("org".into(), json!({"ids": Value::Array(inner)}));
        let c = Claims::from(m);
        let Some(Value::Array(items)) = c.get("tenants") else {
            panic!("tenants is not an array");
        };
        assert_eq!((items.len(), items.capacity()), (1, 1));
        let Some(Value::Array(inner)) = c.get("org").and_then(|org| org.get("ids")) else {
            panic!("org.ids is not an array");
        };
        assert_eq!((inner.len(), inner.capacity()), (1, 1));
        assert_eq!(c.get("tenants"), Some(&json!(["a"])));
    }

    #[test]
    fn empty_claims_find_nothing() {
        for c in [Claims::default(), Claims::from(Map::new())] {
            assert!(c.is_empty());
            assert_eq!(c.len(), 0);
            assert_eq!(c.get("sub"), None);
            assert_eq!(c.get(""), None);
            assert!(c.to_map().is_empty());
            assert_eq!(c, Claims::default());
        }
    }
}
