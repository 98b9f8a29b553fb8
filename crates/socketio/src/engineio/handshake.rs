//! The Engine.IO handshake: the checks on a request's method and query (`EIO=4`, `transport`,
//! `sid`), the session id generator, and the JSON of the open packet. What the query does not
//! decide (whether a `sid` names a live session, the origin) is the caller's.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use rand::RngCore;

use super::error::Error;

/// The length of a session id.
pub const SID_LEN: usize = 20;

/// The base64url alphabet: session ids travel in query strings unescaped.
const SID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// An Engine.IO transport.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP long-polling: `GET` receives, `POST` sends.
    Polling,
    /// One WebSocket connection, one packet per frame.
    WebSocket,
}

impl Transport {
    /// The name used in the `transport` query parameter and in `upgrades`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::WebSocket => "websocket",
        }
    }
}

/// A session id: 20 characters of base64url, 120 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; SID_LEN]);

impl Sid {
    /// A new id drawn from `rng`, which must be a cryptographically secure generator: the id
    /// is the only credential of a polling request.
    pub fn generate<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        let mut raw = [0u8; SID_LEN];
        rng.fill_bytes(&mut raw);
        // 6 uniform bits per character.
        Self(raw.map(|b| SID_ALPHABET[usize::from(b & 63)]))
    }

    /// A new id from the thread-local generator (a CSPRNG seeded by the OS).
    pub fn random() -> Self {
        Self::generate(&mut rand::rng())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only alphabet bytes are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for Sid {
    type Err = Error;

    /// Parses an id in our format; anything else cannot name one of our sessions.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bytes: [u8; SID_LEN] = s.as_bytes().try_into().map_err(|_| Error::UnknownSid)?;
        if bytes.iter().all(|b| SID_ALPHABET.contains(b)) {
            Ok(Self(bytes))
        } else {
            Err(Error::UnknownSid)
        }
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

/// What a valid Engine.IO request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The transport of this request.
    pub transport: Transport,
    /// The session, or `None` for a handshake that opens one.
    pub sid: Option<Sid>,
}

/// Checks an Engine.IO request's method and query string (without the `?`).
///
/// In order: `transport` must be `polling` or `websocket`; `EIO` must be `4` (on every request,
/// as the protocol makes it mandatory, where the reference server checks it on handshakes
/// only); a handshake must be a `GET`; with a `sid`, polling takes `GET` and `POST` and
/// WebSocket `GET`. Other parameters (`t`, the cache buster) are ignored; any of the three
/// given twice is a [`Error::BadQuery`].
pub fn check_request(method: &Method, query: &str) -> Result<Request, Error> {
    let (mut eio, mut transport, mut sid) = (None, None, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "EIO" => &mut eio,
            "transport" => &mut transport,
            "sid" => &mut sid,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(Error::BadQuery);
        }
    }
    let transport = match transport.as_deref() {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return Err(Error::UnknownTransport),
    };
    if eio.as_deref() != Some("4") {
        return Err(Error::UnsupportedProtocolVersion);
    }
    let Some(sid) = sid else {
        return if method == Method::GET {
            Ok(Request {
                transport,
                sid: None,
            })
        } else {
            Err(Error::BadHandshakeMethod)
        };
    };
    let sid = sid.parse::<Sid>()?;
    let allowed = match transport {
        Transport::Polling => method == Method::GET || method == Method::POST,
        Transport::WebSocket => method == Method::GET,
    };
    if !allowed {
        return Err(Error::BadMethod);
    }
    Ok(Request {
        transport,
        sid: Some(sid),
    })
}

/// The data of the open packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenData {
    /// The new session's id.
    pub sid: Sid,
    /// The transports the client may upgrade to: `[WebSocket]` from polling, else empty.
    pub upgrades: Vec<Transport>,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long the server waits for a pong.
    pub ping_timeout: Duration,
    /// The largest polling payload, in bytes, either side may send.
    pub max_payload: usize,
}

impl OpenData {
    /// The JSON object, with exactly the five keys of the protocol, in its order.
    pub fn to_json(&self) -> Bytes {
        let upgrades: Vec<String> = self
            .upgrades
            .iter()
            .map(|t| format!("\"{}\"", t.as_str()))
            .collect();
        // Written by hand: nothing here needs escaping (the sid is base64url, transport names
        // are fixed), so serialization cannot fail and allocates once.
        Bytes::from(format!(
            r#"{{"sid":"{}","upgrades":[{}],"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            self.sid,
            upgrades.join(","),
            millis(self.ping_interval),
            millis(self.ping_timeout),
            self.max_payload,
        ))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const SID: &str = "lv_VI97HAXpY6yYWAAAC";

    fn check(method: Method, query: &str) -> Result<Request, Error> {
        check_request(&method, query)
    }

    #[test]
    fn open_json_matches_the_protocol_example() {
        let data = OpenData {
            sid: SID.parse().unwrap(),
            upgrades: vec![Transport::WebSocket],
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
        };
        assert_eq!(
            data.to_json(),
            r#"{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let ws_only = OpenData {
            upgrades: vec![],
            ..data
        };
        let value: serde_json::Value = serde_json::from_slice(&ws_only.to_json()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"sid": SID, "upgrades": [], "pingInterval": 25000,
                "pingTimeout": 20000, "maxPayload": 1000000})
        );
    }

    #[test]
    fn sids_are_random_base64url() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = Sid::generate(&mut rng);
        let b = Sid::generate(&mut rng);
        assert_ne!(a, b);
        assert_ne!(Sid::random(), Sid::random());
        for sid in [a, b] {
            assert_eq!(sid.as_str().len(), SID_LEN);
            assert_eq!(sid.as_str().parse::<Sid>(), Ok(sid));
        }
        assert_eq!(format!("{:?}", a), format!("Sid({a})"));
    }

    #[test]
    fn sid_parse_rejects_other_formats() {
        assert_eq!("short".parse::<Sid>(), Err(Error::UnknownSid));
        assert_eq!(
            "lv_VI97HAXpY6yYWAAA=".parse::<Sid>(),
            Err(Error::UnknownSid)
        );
        assert_eq!(
            "lv_VI97HAXpY6yYWAAACX".parse::<Sid>(),
            Err(Error::UnknownSid)
        );
    }

    #[test]
    fn handshakes() {
        let polling = check(Method::GET, "EIO=4&transport=polling&t=N8hyd6w");
        assert_eq!(
            polling,
            Ok(Request {
                transport: Transport::Polling,
                sid: None
            })
        );
        let ws = check(Method::GET, "transport=websocket&EIO=4");
        assert_eq!(ws.map(|r| r.transport), Ok(Transport::WebSocket));
        let with_sid = check(Method::POST, &format!("EIO=4&transport=polling&sid={SID}"));
        assert_eq!(with_sid.map(|r| r.sid), Ok(Some(SID.parse().unwrap())));
    }

    #[test]
    fn refusals_follow_the_test_suite() {
        let cases = [
            (
                Method::GET,
                "transport=polling",
                Error::UnsupportedProtocolVersion,
            ),
            (
                Method::GET,
                "EIO=abc&transport=polling",
                Error::UnsupportedProtocolVersion,
            ),
            (
                Method::GET,
                "EIO=3&transport=polling",
                Error::UnsupportedProtocolVersion,
            ),
            (Method::GET, "EIO=4", Error::UnknownTransport),
            (Method::GET, "EIO=4&transport=abc", Error::UnknownTransport),
            (
                Method::GET,
                "EIO=4&transport=webtransport",
                Error::UnknownTransport,
            ),
            (
                Method::POST,
                "EIO=4&transport=polling",
                Error::BadHandshakeMethod,
            ),
            (
                Method::PUT,
                "EIO=4&transport=polling",
                Error::BadHandshakeMethod,
            ),
            (
                Method::GET,
                "EIO=4&transport=polling&sid=nope",
                Error::UnknownSid,
            ),
            (
                Method::GET,
                "EIO=4&EIO=4&transport=polling",
                Error::BadQuery,
            ),
            (
                Method::PUT,
                &format!("EIO=4&transport=polling&sid={SID}"),
                Error::BadMethod,
            ),
            (
                Method::POST,
                &format!("EIO=4&transport=websocket&sid={SID}"),
                Error::BadMethod,
            ),
        ];
        for (method, query, err) in cases {
            assert_eq!(check(method, query), Err(err), "{query}");
            assert_eq!(err.http_status(), 400);
        }
    }
}
