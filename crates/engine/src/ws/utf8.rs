//! Incremental UTF-8 validation of a text message that arrives in fragments. A code point may
//! be split across fragments; an invalid sequence fails as soon as the bytes received make it
//! impossible (Autobahn's fail-fast cases), not only when the message ends.
//!
//! Built on [`std::str::from_utf8`]: `Utf8Error::error_len() == None` tells an incomplete
//! trailing sequence (carried into the next fragment) from an invalid one.

use super::error::ProtocolError;

/// Validation state between fragments: the bytes of an unfinished code point (at most 3).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// Validates the next fragment. Errors as soon as no continuation could make it valid.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) -> Result<(), ProtocolError> {
        // First finish the code point left over from the previous fragment, byte by byte:
        // at most three bytes, and each one may already prove the sequence invalid.
        while self.pending_len > 0 {
            let Some((&byte, rest)) = chunk.split_first() else {
                return Ok(());
            };
            chunk = rest;
            let len = usize::from(self.pending_len);
            // A valid prefix of a code point is at most 3 bytes, so there is always room;
            // `get_mut` keeps that reasoning from ever turning into a panic.
            let Some(slot) = self.pending.get_mut(len) else {
                return Err(ProtocolError::InvalidUtf8);
            };
            *slot = byte;
            match std::str::from_utf8(&self.pending[..=len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(ProtocolError::InvalidUtf8),
                // Still a valid prefix: wait for the next byte.
                Err(_) => self.pending_len += 1,
            }
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(ProtocolError::InvalidUtf8),
                None => {
                    let tail = chunk.get(e.valid_up_to()..).unwrap_or_default();
                    // At most 3 bytes (see above), so both conversions succeed.
                    let (Some(slot), Ok(len)) =
                        (self.pending.get_mut(..tail.len()), u8::try_from(tail.len()))
                    else {
                        return Err(ProtocolError::InvalidUtf8);
                    };
                    slot.copy_from_slice(tail);
                    self.pending_len = len;
                    Ok(())
                }
            },
        }
    }

    /// Ends the message: an unfinished code point is an error. Resets the validator.
    pub(crate) fn finish(&mut self) -> Result<(), ProtocolError> {
        let incomplete = self.pending_len != 0;
        *self = Self::default();
        if incomplete {
            Err(ProtocolError::InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&[u8]]) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::default();
        for chunk in chunks {
            v.feed(chunk)?;
        }
        v.finish()
    }

    #[test]
    fn whole_and_ascii() {
        assert_eq!(check(&[b"Hello"]), Ok(()));
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(check(&[b"", b""]), Ok(()));
    }

    #[test]
    fn every_split_of_valid_text() {
        // 1-, 2-, 3- and 4-byte code points: "aé€𝄞".
        let text = "aé€𝄞z".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(
                    check(&[&text[..i], &text[i..j], &text[j..]]),
                    Ok(()),
                    "split {i} {j}"
                );
            }
        }
        // One byte per fragment.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(check(&bytes), Ok(()));
    }

    #[test]
    fn incomplete_at_end_fails() {
        assert_eq!(check(&[&[0xE2, 0x82]]), Err(ProtocolError::InvalidUtf8));
        assert_eq!(
            check(&[b"ok", &[0xF0], &[0x9D]]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn fails_fast_inside_a_fragment() {
        let mut v = Utf8Validator::default();
        // "κόσμε" then F4 90: 0x90 after 0xF4 is above U+10FFFF, known at the second byte.
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(
            v.feed(&[0xF4, 0x90, 0x80, 0x80]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn fails_fast_across_fragments() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"abc\xED"), Ok(()));
        // ED A0 starts a surrogate: invalid at the first byte of the next fragment.
        assert_eq!(v.feed(b"\xA0"), Err(ProtocolError::InvalidUtf8));

        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xF0]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Ok(()));
        assert_eq!(v.feed(&[0x41]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn invalid_lead_bytes_fail_immediately() {
        for byte in [0x80, 0xBF, 0xC0, 0xC1, 0xF5, 0xFF] {
            let mut v = Utf8Validator::default();
            assert_eq!(
                v.feed(&[byte]),
                Err(ProtocolError::InvalidUtf8),
                "{byte:#x}"
            );
        }
    }

    #[test]
    fn pending_then_more_text_in_same_fragment() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[b'x', 0xE2]), Ok(()));
        assert_eq!(v.feed(&[0x82, 0xAC, b'y', 0xC3]), Ok(()));
        assert_eq!(v.feed(&[0xA9]), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn finish_resets() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xE2]), Ok(()));
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
        assert_eq!(v.feed(b"fine"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
