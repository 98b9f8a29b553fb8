//! MessagePack as `@socket.io/redis-emitter` writes it (with notepack.io), read into values
//! that borrow from the message, and arguments turned into the JSON that a Socket.IO server
//! would send for them: binary values become placeholders and attachments, dates (the
//! timestamp extension) ISO 8601 strings as `Date.toJSON` gives, non-finite floats `null`.

use bytes::Bytes;
use rmp::Marker;
use rmpv::decode::{read_value_ref_with_max_depth, Error as ReadError};
use rmpv::ValueRef;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{EmitterError, MAX_DEPTH, MAX_VALUES};

/// The reader's depth limit. It counts two steps per array or map and two for a leaf, and
/// the arguments sit three levels down (message, packet, data array): this lets through
/// every message whose arguments are within [`MAX_DEPTH`], which [`args`] checks exactly.
const READ_DEPTH: usize = 2 * (MAX_DEPTH + 3) + 2;

/// MessagePack's timestamp extension type.
const TIMESTAMP: i8 = -1;

/// The one value `message` holds, with nothing after it.
pub(crate) fn read(message: &[u8]) -> Result<ValueRef<'_>, EmitterError> {
    count_values(message)?;
    let mut rest = message;
    let value = read_value_ref_with_max_depth(&mut rest, READ_DEPTH).map_err(|e| match e {
        ReadError::DepthLimitExceeded => EmitterError::TooDeep,
        e => EmitterError::Malformed(format!("MessagePack: {e}")),
    })?;
    if !rest.is_empty() {
        return Err(EmitterError::Malformed(format!(
            "{} bytes after the MessagePack value",
            rest.len()
        )));
    }
    Ok(value)
}

/// Refuses a message of more than [`MAX_VALUES`] values, or with the marker MessagePack
/// reserves, before rmpv reads it: rmpv builds a tree of 32-byte values, so one-byte values
/// would take over 32 times the message's size. Counting walks the values' markers and
/// lengths without allocating; a message cut short is left for the reader to report.
fn count_values(message: &[u8]) -> Result<usize, EmitterError> {
    // Values announced by the markers read so far and not yet reached.
    let mut pending: u64 = 1;
    let mut values = 0usize;
    let mut at = 0usize;
    while pending > 0 {
        let Some(&byte) = message.get(at) else {
            break;
        };
        pending -= 1;
        values += 1;
        if values > MAX_VALUES {
            return Err(EmitterError::TooManyValues);
        }
        at += 1;
        let Some((skip, children)) = extent(Marker::from_u8(byte), &message[at..])? else {
            break;
        };
        at = at.saturating_add(usize::try_from(skip).unwrap_or(usize::MAX));
        pending += children;
    }
    Ok(values)
}

/// What follows a marker: the bytes up to the next marker and the number of values nested
/// in it; `None` when `rest` is too short to say.
fn extent(marker: Marker, rest: &[u8]) -> Result<Option<(u64, u64)>, EmitterError> {
    let len = |size: usize| {
        rest.get(..size)
            .map(|bytes| bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)))
    };
    let sized = |size: usize, extra: u64| len(size).map(|n| (size as u64 + extra + n, 0));
    Ok(match marker {
        Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::False | Marker::True => {
            Some((0, 0))
        }
        Marker::Reserved => {
            return Err(EmitterError::Malformed(
                "MessagePack: the reserved marker 0xc1".into(),
            ))
        }
        Marker::FixStr(n) => Some((u64::from(n), 0)),
        Marker::FixArray(n) => Some((0, u64::from(n))),
        Marker::FixMap(n) => Some((0, 2 * u64::from(n))),
        Marker::U8 | Marker::I8 => Some((1, 0)),
        Marker::U16 | Marker::I16 => Some((2, 0)),
        Marker::U32 | Marker::I32 | Marker::F32 => Some((4, 0)),
        Marker::U64 | Marker::I64 | Marker::F64 => Some((8, 0)),
        // The type byte, then the data.
        Marker::FixExt1 => Some((2, 0)),
        Marker::FixExt2 => Some((3, 0)),
        Marker::FixExt4 => Some((5, 0)),
        Marker::FixExt8 => Some((9, 0)),
        Marker::FixExt16 => Some((17, 0)),
        Marker::Str8 | Marker::Bin8 => sized(1, 0),
        Marker::Str16 | Marker::Bin16 => sized(2, 0),
        Marker::Str32 | Marker::Bin32 => sized(4, 0),
        Marker::Ext8 => sized(1, 1),
        Marker::Ext16 => sized(2, 1),
        Marker::Ext32 => sized(4, 1),
        Marker::Array16 => len(2).map(|n| (2, n)),
        Marker::Array32 => len(4).map(|n| (4, n)),
        Marker::Map16 => len(2).map(|n| (2, 2 * n)),
        Marker::Map32 => len(4).map(|n| (4, 2 * n)),
    })
}

/// `items` as a JSON array with placeholders, and the attachments in placeholder order.
pub(crate) fn args(items: &[ValueRef<'_>]) -> Result<(Box<RawValue>, Vec<Bytes>), EmitterError> {
    let mut writer = JsonWriter::default();
    writer.array(items, 1)?;
    let text = String::from_utf8(writer.json)
        .map_err(|_| EmitterError::Malformed("arguments are not UTF-8".into()))?;
    let array = RawValue::from_string(text)
        .map_err(|e| EmitterError::Malformed(format!("arguments: {e}")))?;
    Ok((array, writer.attachments))
}

#[derive(Default)]
struct JsonWriter {
    json: Vec<u8>,
    attachments: Vec<Bytes>,
}

impl JsonWriter {
    fn put<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EmitterError> {
        serde_json::to_writer(&mut self.json, value)
            .map_err(|e| EmitterError::Malformed(format!("arguments: {e}")))
    }

    /// An array at nesting level `depth` (the argument array is level 1).
    fn array(&mut self, items: &[ValueRef<'_>], depth: usize) -> Result<(), EmitterError> {
        if depth > MAX_DEPTH {
            return Err(EmitterError::TooDeep);
        }
        self.json.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.json.push(b',');
            }
            self.value(item, depth)?;
        }
        self.json.push(b']');
        Ok(())
    }

    /// A value inside a container at level `depth`.
    fn value(&mut self, value: &ValueRef<'_>, depth: usize) -> Result<(), EmitterError> {
        match value {
            ValueRef::Nil => self.json.extend_from_slice(b"null"),
            ValueRef::Boolean(b) => self.put(b)?,
            ValueRef::Integer(n) => match (n.as_u64(), n.as_i64()) {
                (Some(n), _) => self.put(&n)?,
                (None, Some(n)) => self.put(&n)?,
                (None, None) => return Err(EmitterError::Malformed("an integer".into())),
            },
            // serde_json writes `null` for NaN and infinities, as JSON.stringify does.
            ValueRef::F32(f) => self.put(&f64::from(*f))?,
            ValueRef::F64(f) => self.put(f)?,
            ValueRef::String(s) => {
                let s = s
                    .as_str()
                    .ok_or_else(|| EmitterError::Malformed("a string is not UTF-8".into()))?;
                self.put(s)?;
            }
            ValueRef::Binary(bytes) => {
                self.json
                    .extend_from_slice(br#"{"_placeholder":true,"num":"#);
                self.put(&self.attachments.len())?;
                self.json.push(b'}');
                self.attachments.push(Bytes::copy_from_slice(bytes));
            }
            ValueRef::Array(items) => self.array(items, depth + 1)?,
            ValueRef::Map(entries) => {
                if depth + 1 > MAX_DEPTH {
                    return Err(EmitterError::TooDeep);
                }
                self.json.push(b'{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        self.json.push(b',');
                    }
                    let ValueRef::String(key) = key else {
                        return Err(EmitterError::Malformed("a map key is not a string".into()));
                    };
                    let key = key
                        .as_str()
                        .ok_or_else(|| EmitterError::Malformed("a key is not UTF-8".into()))?;
                    self.put(key)?;
                    self.json.push(b':');
                    self.value(value, depth + 1)?;
                }
                self.json.push(b'}');
            }
            ValueRef::Ext(TIMESTAMP, data) => match iso_date(data)? {
                Some(date) => self.put(&date)?,
                None => self.json.extend_from_slice(b"null"),
            },
            ValueRef::Ext(kind, _) => {
                return Err(EmitterError::Unsupported(format!(
                    "MessagePack extension type {kind}"
                )))
            }
        }
        Ok(())
    }
}

/// A timestamp extension's body as JavaScript's `Date.prototype.toJSON` writes the `Date`
/// notepack.io decodes it into: milliseconds (truncated), `Z`, years past 9999 or before 0
/// as six digits with a sign; `None` (JSON `null`) outside the range of a `Date`.
fn iso_date(data: &[u8]) -> Result<Option<String>, EmitterError> {
    let bad = || EmitterError::Malformed("a timestamp extension".into());
    let (seconds, nanos): (i64, u32) = match data.len() {
        4 => (
            i64::from(u32::from_be_bytes(data.try_into().map_err(|_| bad())?)),
            0,
        ),
        8 => {
            let v = u64::from_be_bytes(data.try_into().map_err(|_| bad())?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => {
            let (ns, s) = data.split_at(4);
            (
                i64::from_be_bytes(s.try_into().map_err(|_| bad())?),
                u32::from_be_bytes(ns.try_into().map_err(|_| bad())?),
            )
        }
        _ => return Err(bad()),
    };
    if nanos >= 1_000_000_000 {
        return Err(bad());
    }
    // `new Date(s * 1e3 + ns / 1e6)`: the time value is truncated toward zero.
    let millis = (i128::from(seconds) * 1_000_000_000 + i128::from(nanos)) / 1_000_000;
    const DATE_LIMIT: i128 = 8_640_000_000_000_000;
    if !(-DATE_LIMIT..=DATE_LIMIT).contains(&millis) {
        return Ok(None);
    }
    let millis = millis as i64;
    let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, ms) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    Ok(Some(format!(
        "{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z"
    )))
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts96(seconds: i64, nanos: u32) -> Vec<u8> {
        let mut data = nanos.to_be_bytes().to_vec();
        data.extend_from_slice(&seconds.to_be_bytes());
        data
    }

    #[test]
    fn dates_read_as_javascript_writes_them() {
        let date = |data: &[u8]| iso_date(data).unwrap();
        assert_eq!(
            date(&0u32.to_be_bytes()).unwrap(),
            "1970-01-01T00:00:00.000Z"
        );
        // 2024-05-06T07:08:09.123Z as notepack.io writes it (timestamp 64).
        let v: u64 = (123_000_000u64 << 34) | 1_714_979_289;
        assert_eq!(date(&v.to_be_bytes()).unwrap(), "2024-05-06T07:08:09.123Z");
        assert_eq!(
            date(&ts96(-1, 500_000_000)).unwrap(),
            "1969-12-31T23:59:59.500Z"
        );
        // Truncated toward zero: -999.000001 ms is -999 ms.
        assert_eq!(
            date(&ts96(-1, 999_999)).unwrap(),
            "1969-12-31T23:59:59.001Z"
        );
        assert_eq!(
            date(&ts96(951_782_400, 0)).unwrap(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            date(&ts96(-62_198_755_200, 0)).unwrap(),
            "-000001-01-01T00:00:00.000Z"
        );
        assert_eq!(
            date(&ts96(253_402_300_800, 0)).unwrap(),
            "+010000-01-01T00:00:00.000Z"
        );
        assert_eq!(date(&ts96(8_640_000_000_001, 0)), None);
        assert!(iso_date(&ts96(0, 1_000_000_000)).is_err());
        assert!(iso_date(&[0; 5]).is_err());
    }

    #[test]
    fn binary_values_become_placeholders_in_order() {
        let items = [
            ValueRef::Binary(b"a"),
            ValueRef::Map(vec![(ValueRef::from("k"), ValueRef::Binary(b"bc"))]),
            ValueRef::F64(f64::NAN),
            ValueRef::from(-3),
        ];
        let (array, attachments) = args(&items).unwrap();
        assert_eq!(
            array.get(),
            r#"[{"_placeholder":true,"num":0},{"k":{"_placeholder":true,"num":1}},null,-3]"#
        );
        assert_eq!(attachments, [&b"a"[..], &b"bc"[..]]);
    }

    #[test]
    fn depth_is_counted_from_the_argument_array() {
        let mut value = ValueRef::from(1);
        for _ in 0..MAX_DEPTH - 1 {
            value = ValueRef::Array(vec![value]);
        }
        assert!(args(std::slice::from_ref(&value)).is_ok());
        let deeper = ValueRef::Map(vec![(ValueRef::from("k"), value)]);
        assert_eq!(args(&[deeper]).unwrap_err(), EmitterError::TooDeep);
    }

    #[test]
    fn one_value_and_nothing_after() {
        assert!(read(&[0x90]).is_ok());
        assert!(matches!(
            read(&[0x90, 0x90]),
            Err(EmitterError::Malformed(_))
        ));
        assert!(matches!(
            read(&[0x92, 0x01]),
            Err(EmitterError::Malformed(_))
        ));
        assert!(matches!(read(&[0xd9]), Err(EmitterError::Malformed(_))));
        // rmpv alone would read it as nil.
        assert!(matches!(
            read(&[0x91, 0xc1]),
            Err(EmitterError::Malformed(_))
        ));
        let deep = vec![0x91; READ_DEPTH];
        assert_eq!(read(&deep).unwrap_err(), EmitterError::TooDeep);
    }

    /// An array32 header for `n` values, then `n` nils.
    fn nils(n: usize) -> Vec<u8> {
        let mut message = vec![0xdd];
        message.extend_from_slice(&(n as u32).to_be_bytes());
        message.resize(message.len() + n, 0xc0);
        message
    }

    #[test]
    fn values_are_counted_before_reading() {
        // The array is a value too.
        assert!(read(&nils(MAX_VALUES - 1)).is_ok());
        assert_eq!(
            read(&nils(MAX_VALUES)).unwrap_err(),
            EmitterError::TooManyValues
        );
        // A header that promises more than the message holds is cut short, not too large.
        let short = [0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0];
        assert!(matches!(read(&short), Err(EmitterError::Malformed(_))));
        // Every kind of marker is stepped over: str, bin, ext, numbers, maps.
        let mixed = [
            0x96, 0xd9, 0x01, b'a', 0xc5, 0x00, 0x01, 0xff, 0xc7, 0x01, 0x05, 0x00, 0xcb, 0, 0, 0,
            0, 0, 0, 0, 0, 0xde, 0x00, 0x01, 0xa1, b'k', 0xd4, 0x01, 0x00, 0xdc, 0x00, 0x00,
        ];
        assert_eq!(count_values(&mixed).unwrap(), 9);
        assert!(read(&mixed).is_ok());
    }
}
