//! Room names as emitters write them: strings, or integers (`io.to(42)`), which Socket.IO
//! servers look up as their decimal text and which Roomcast names that way.

use std::fmt;
use std::sync::Arc;

use serde::de::{Deserializer, Error, Visitor};
use serde::Deserialize;

/// A room name in a JSON message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomName(pub(crate) Arc<str>);

impl<'de> Deserialize<'de> for RoomName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl Visitor<'_> for NameVisitor {
            type Value = RoomName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a room name (a string or an integer)")
            }

            fn visit_str<E: Error>(self, v: &str) -> Result<RoomName, E> {
                Ok(RoomName(v.into()))
            }

            fn visit_i64<E: Error>(self, v: i64) -> Result<RoomName, E> {
                Ok(RoomName(v.to_string().into()))
            }

            fn visit_u64<E: Error>(self, v: u64) -> Result<RoomName, E> {
                Ok(RoomName(v.to_string().into()))
            }
        }

        deserializer.deserialize_any(NameVisitor)
    }
}

/// The names of a list.
pub(crate) fn names(rooms: Vec<RoomName>) -> Vec<Arc<str>> {
    rooms.into_iter().map(|RoomName(name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_integers_name_rooms() {
        let rooms: Vec<RoomName> = serde_json::from_str(r#"["a", 42, -1]"#).unwrap();
        assert_eq!(names(rooms), [Arc::from("a"), "42".into(), "-1".into()]);
        assert!(serde_json::from_str::<RoomName>("1.5").is_err());
        assert!(serde_json::from_str::<RoomName>("null").is_err());
        assert!(serde_json::from_str::<RoomName>("[]").is_err());
    }
}
