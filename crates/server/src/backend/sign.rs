//! The signature of every request Roomcast posts to a backend: HMAC-SHA256, keyed with the
//! backend's secret, over `<timestamp>.<body>` (the exact body bytes), sent as
//! `X-Roomcast-Signature: sha256=<hex>` beside `X-Roomcast-Timestamp: <unix seconds>`. A
//! backend recomputes it, compares in constant time, and refuses a timestamp too far from its
//! clock (a replayed request is refused once it is old).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature, `sha256=<64 hex digits>`.
pub const SIGNATURE_HEADER: &str = "x-roomcast-signature";
/// The header carrying the signing time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-roomcast-timestamp";

/// A backend's shared secret: `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// The secret of the configured text.
    pub fn new(text: &str) -> Secret {
        Secret(text.as_bytes().into())
    }

    /// Its bytes, the HMAC key.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` keyed with `secret`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length: this never fails. Were it to, the empty signature
    // would be refused by the backend, never accepted.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_vector_computed_elsewhere() {
        // python3 -c "import hmac,hashlib; print(hmac.new(b'0123456789abcdef',
        //   b'1700000000.{\"a\":1}', hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"0123456789abcdef", 1_700_000_000, br#"{"a":1}"#),
            "sha256=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
    }

    #[test]
    fn the_timestamp_and_every_body_byte_are_signed() {
        let base = sign(b"k", 1, b"body");
        assert_ne!(base, sign(b"k", 2, b"body"));
        assert_ne!(base, sign(b"k", 1, b"body "));
        assert_ne!(base, sign(b"other", 1, b"body"));
    }
}
