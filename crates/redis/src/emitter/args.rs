//! An event's arguments as a [`Payload::Args`]: the JSON array whose
//! `{"_placeholder":true,"num":n}` objects stand for `attachments[n]`, with the checks both
//! decoders share (nesting depth, placeholders that point at an attachment).

use bytes::Bytes;
use roomcast_broker::Payload;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{EmitterError, MAX_DEPTH};

/// The size of a JSON text, read without recursion and without parsing, so it can run before
/// a parser that recurses or builds a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// The deepest nesting of arrays and objects.
    pub(crate) depth: usize,
    /// The values, counted from the punctuation that opens or separates them (an empty array
    /// or object counts one more than it holds).
    pub(crate) values: usize,
}

pub(crate) fn json_shape(text: &str) -> Shape {
    let mut shape = Shape {
        depth: 0,
        values: 1,
    };
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                shape.depth = shape.depth.max(depth);
                shape.values += 1;
            }
            b',' | b':' => shape.values += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    shape
}

/// The payload of `array`, a JSON array, and its attachments; refused when nested deeper
/// than [`MAX_DEPTH`] or when a placeholder points at no attachment (a Socket.IO client
/// drops the connection on such a packet).
pub(crate) fn payload(
    array: Box<RawValue>,
    attachments: Vec<Bytes>,
) -> Result<Payload, EmitterError> {
    if !array.get().starts_with('[') {
        return Err(EmitterError::Malformed(
            "the arguments are not an array".into(),
        ));
    }
    if json_shape(array.get()).depth > MAX_DEPTH {
        return Err(EmitterError::TooDeep);
    }
    // Without attachments the event goes out as a plain event, whose placeholder-like
    // objects no client reads as placeholders.
    if !attachments.is_empty() {
        let value: Value = serde_json::from_str(array.get())
            .map_err(|e| EmitterError::Malformed(format!("arguments: {e}")))?;
        check_placeholders(&value, attachments.len())?;
    }
    Ok(Payload::Args { array, attachments })
}

/// Every object with `"_placeholder": true` (Socket.IO's test) has a `num` below `count`.
fn check_placeholders(value: &Value, count: usize) -> Result<(), EmitterError> {
    match value {
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            match map.get("num").and_then(Value::as_u64) {
                Some(num) if num < count as u64 => Ok(()),
                _ => Err(EmitterError::Malformed(format!(
                    "a placeholder points at none of the {count} attachments"
                ))),
            }
        }
        Value::Object(map) => map.values().try_for_each(|v| check_placeholders(v, count)),
        Value::Array(items) => items.iter().try_for_each(|v| check_placeholders(v, count)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn shape_counts_outside_strings() {
        let shape = |text: &str| {
            let Shape { depth, values } = json_shape(text);
            (depth, values)
        };
        assert_eq!(shape("1"), (0, 1));
        assert_eq!(shape("[]"), (1, 2));
        assert_eq!(shape("[1, 2]"), (1, 3));
        assert_eq!(shape(r#"{"a": 1, "b": [true]}"#), (2, 6));
        assert_eq!(shape(r#"[{"a":[1]},[]]"#), (3, 7));
        assert_eq!(shape(r#"["[[[,:", "\"{{"]"#), (1, 3));
        assert_eq!(shape(r#"["\\", [2]]"#), (2, 4));
    }

    #[test]
    fn too_deep_arguments_are_refused() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(payload(raw(&ok), Vec::new()).is_ok());
        let deep = format!("[{ok}]");
        assert_eq!(
            payload(raw(&deep), Vec::new()).unwrap_err(),
            EmitterError::TooDeep
        );
    }

    #[test]
    fn placeholders_point_at_an_attachment() {
        let one = vec![Bytes::from_static(b"x")];
        let good = r#"[{"_placeholder":true,"num":0}]"#;
        assert!(payload(raw(good), one.clone()).is_ok());
        for bad in [
            r#"[{"_placeholder":true,"num":1}]"#,
            r#"[{"a":{"_placeholder":true}}]"#,
            r#"[[{"_placeholder":true,"num":-1}]]"#,
        ] {
            assert!(
                matches!(
                    payload(raw(bad), one.clone()),
                    Err(EmitterError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert!(
            payload(raw(r#"[{"_placeholder":true,"num":9}]"#), Vec::new()).is_ok(),
            "without attachments nothing is read as a placeholder"
        );
        assert!(matches!(
            payload(raw(r#"{"a":1}"#), Vec::new()),
            Err(EmitterError::Malformed(_))
        ));
    }
}
