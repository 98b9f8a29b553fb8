//! The server side of the RFC 6455 opening handshake (section 4.2): checking an HTTP/1.1
//! upgrade request, computing `Sec-WebSocket-Accept`, and building the 101 or error response.
//! No subprotocol or extension is ever negotiated, so frames must have RSV bits clear.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 section 1.3, appended to the client's key.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request was refused; [`status`](HandshakeError::status) gives the HTTP
/// status and [`reject_response`](HandshakeError::reject_response) a complete response.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The method is not GET.
    #[error("WebSocket upgrade must use GET")]
    NotGet,
    /// The request is not HTTP/1.1 (HTTP/2 would need RFC 8441's extended CONNECT).
    #[error("WebSocket upgrade must use HTTP/1.1")]
    NotHttp11,
    /// No `Upgrade` header with the `websocket` token.
    #[error("missing `Upgrade: websocket`")]
    MissingUpgrade,
    /// No `Connection` header with the `upgrade` token.
    #[error("missing `Connection: upgrade`")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or other than 13.
    #[error("unsupported WebSocket version (only 13 is supported)")]
    BadVersion,
    /// No `Sec-WebSocket-Key` header.
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    /// `Sec-WebSocket-Key` repeated, or not the base64 encoding of 16 bytes.
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")]
    BadKey,
}

impl HandshakeError {
    /// 426 Upgrade Required for a version we do not speak (RFC 6455 section 4.2.2), 400 Bad
    /// Request for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadVersion => StatusCode::UPGRADE_REQUIRED,
            Self::NotGet
            | Self::NotHttp11
            | Self::MissingUpgrade
            | Self::MissingConnectionUpgrade
            | Self::MissingKey
            | Self::BadKey => StatusCode::BAD_REQUEST,
        }
    }

    /// The refusal to send: [`status`](Self::status), and for a 426 the headers RFC 6455 and
    /// RFC 9110 ask for (`Sec-WebSocket-Version: 13`, `Upgrade: websocket`). Empty body.
    pub fn reject_response<B: Default>(&self) -> Response<B> {
        let mut res = Response::new(B::default());
        *res.status_mut() = self.status();
        if self.status() == StatusCode::UPGRADE_REQUIRED {
            let headers = res.headers_mut();
            headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        }
        res
    }
}

/// Checks an upgrade request and returns the `Sec-WebSocket-Accept` value to answer with.
///
/// Requires: method GET; HTTP/1.1; an `Upgrade` token `websocket` and a `Connection` token
/// `upgrade` (both comma lists, possibly repeated headers, compared case-insensitively);
/// `Sec-WebSocket-Version: 13`; exactly one `Sec-WebSocket-Key` that is the base64 encoding
/// of 16 bytes. `Origin` is the application's business and is not looked at.
pub fn check_request<B>(req: &Request<B>) -> Result<HeaderValue, HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if req.version() != Version::HTTP_11 {
        return Err(HandshakeError::NotHttp11);
    }
    let headers = req.headers();
    if !has_token(headers, &UPGRADE, b"websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, &CONNECTION, b"upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let mut versions = headers.get_all(SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == b"13" => {}
        _ => return Err(HandshakeError::BadVersion),
    }
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.as_bytes().trim_ascii(),
        (None, _) => return Err(HandshakeError::MissingKey),
        (Some(_), Some(_)) => return Err(HandshakeError::BadKey),
    };
    // 16 bytes are 24 base64 characters with "==" padding; checking the length first keeps
    // the decode within a fixed buffer.
    if key.len() != 24 {
        return Err(HandshakeError::BadKey);
    }
    let mut nonce = [0u8; 18];
    match STANDARD.decode_slice(key, &mut nonce) {
        Ok(16) => {}
        _ => return Err(HandshakeError::BadKey),
    }
    // The accept value is base64, always a valid header value; mapping the impossible error
    // keeps a panic out of the request path.
    HeaderValue::try_from(accept_key(key)).map_err(|_| HandshakeError::BadKey)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    STANDARD.encode(sha.finalize())
}

/// The 101 Switching Protocols response carrying `accept`, with an empty body.
pub fn response<B: Default>(accept: HeaderValue) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    res
}

/// Whether any `name` header holds `token` in its comma-separated list (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn request() -> http::request::Builder {
        Request::builder()
            .method(Method::GET)
            .uri("/ws")
            .version(Version::HTTP_11)
            .header("Host", "server.example.com")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Key", RFC_KEY)
            .header("Sec-WebSocket-Version", "13")
    }

    fn check(builder: http::request::Builder) -> Result<HeaderValue, HandshakeError> {
        match builder.body(()) {
            Ok(req) => check_request(&req),
            Err(e) => panic!("test request does not build: {e}"),
        }
    }

    /// The RFC request with `name` replaced by `values` (none: header removed).
    fn with(name: &str, values: &[&str]) -> Result<HeaderValue, HandshakeError> {
        let mut req = match request().body(()) {
            Ok(req) => req,
            Err(e) => panic!("{e}"),
        };
        req.headers_mut().remove(name);
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    req.headers_mut().append(name, v);
                }
            }
        }
        check_request(&req)
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(accept_key(RFC_KEY.as_bytes()), RFC_ACCEPT);
    }

    #[test]
    fn accepts_rfc_request() {
        assert_eq!(check(request()), Ok(HeaderValue::from_static(RFC_ACCEPT)));
    }

    #[test]
    fn accepts_token_lists_and_case() {
        assert!(with("Connection", &["keep-alive, Upgrade"]).is_ok());
        assert!(with("Connection", &["keep-alive", "upgrade"]).is_ok());
        assert!(with("Connection", &["UPGRADE"]).is_ok());
        assert!(with("Upgrade", &["WebSocket"]).is_ok());
        assert!(with("Upgrade", &["foo/2, websocket"]).is_ok());
        assert!(with("Sec-WebSocket-Version", &[" 13 "]).is_ok());
    }

    #[test]
    fn rejects_method_and_version() {
        assert_eq!(
            check(request().method(Method::POST)),
            Err(HandshakeError::NotGet)
        );
        assert_eq!(
            check(request().version(Version::HTTP_10)),
            Err(HandshakeError::NotHttp11)
        );
        assert_eq!(
            check(request().version(Version::HTTP_2)),
            Err(HandshakeError::NotHttp11)
        );
    }

    #[test]
    fn rejects_missing_upgrade() {
        assert_eq!(with("Upgrade", &[]), Err(HandshakeError::MissingUpgrade));
        assert_eq!(
            with("Upgrade", &["h2c"]),
            Err(HandshakeError::MissingUpgrade)
        );
        assert_eq!(
            with("Upgrade", &["websockets"]),
            Err(HandshakeError::MissingUpgrade)
        );
    }

    #[test]
    fn rejects_missing_connection_upgrade() {
        assert_eq!(
            with("Connection", &[]),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
        assert_eq!(
            with("Connection", &["keep-alive"]),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
        assert_eq!(
            with("Connection", &["upgrades"]),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
    }

    #[test]
    fn rejects_bad_version() {
        assert_eq!(
            with("Sec-WebSocket-Version", &[]),
            Err(HandshakeError::BadVersion)
        );
        assert_eq!(
            with("Sec-WebSocket-Version", &["8"]),
            Err(HandshakeError::BadVersion)
        );
        assert_eq!(
            with("Sec-WebSocket-Version", &["13", "8"]),
            Err(HandshakeError::BadVersion)
        );
    }

    #[test]
    fn rejects_bad_keys() {
        assert_eq!(
            with("Sec-WebSocket-Key", &[]),
            Err(HandshakeError::MissingKey)
        );
        // 15 bytes, 17 bytes, not base64, bad padding, repeated.
        for key in [
            "AAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "!!!!!!!!!!!!!!!!!!!!!!==",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=",
        ] {
            assert_eq!(
                with("Sec-WebSocket-Key", &[key]),
                Err(HandshakeError::BadKey),
                "{key}"
            );
        }
        assert_eq!(
            with("Sec-WebSocket-Key", &[RFC_KEY, RFC_KEY]),
            Err(HandshakeError::BadKey)
        );
    }

    #[test]
    fn switching_protocols_response() {
        let res: Response<()> = response(HeaderValue::from_static(RFC_ACCEPT));
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(res.headers()[UPGRADE], "websocket");
        assert_eq!(res.headers()[CONNECTION], "Upgrade");
        assert_eq!(res.headers()[SEC_WEBSOCKET_ACCEPT], RFC_ACCEPT);
    }

    #[test]
    fn statuses_and_reject_responses() {
        let cases = [
            (HandshakeError::NotGet, 400),
            (HandshakeError::NotHttp11, 400),
            (HandshakeError::MissingUpgrade, 400),
            (HandshakeError::MissingConnectionUpgrade, 400),
            (HandshakeError::BadVersion, 426),
            (HandshakeError::MissingKey, 400),
            (HandshakeError::BadKey, 400),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            let res: Response<()> = err.reject_response();
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(
                res.headers().contains_key(SEC_WEBSOCKET_VERSION),
                status == 426
            );
        }
        let res: Response<()> = HandshakeError::BadVersion.reject_response();
        assert_eq!(res.headers()[SEC_WEBSOCKET_VERSION], "13");
    }
}
