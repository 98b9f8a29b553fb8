//! The HTTP side of Engine.IO: the responses to polling requests, the error JSON of refused
//! requests, CORS headers and the preflight answer, and the copy of a handshake request's
//! head given to the application.

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, CONTENT_TYPE, ORIGIN, VARY,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use roomcast_engine::ws::HandshakeError;

use crate::config::Cors;
use crate::engineio::{Error, ErrorCode};

/// What every endpoint answers with.
pub(crate) type Resp = Response<Full<Bytes>>;

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "86400";

/// A polling `GET` answer: a payload (text, binary messages in base64).
pub(crate) fn payload(body: Bytes) -> Resp {
    with_type(StatusCode::OK, "text/plain; charset=UTF-8", body)
}

/// The answer to a successful polling `POST`. `text/html`, as the reference server, to keep
/// old browsers from offering a download.
pub(crate) fn post_ok() -> Resp {
    with_type(
        StatusCode::OK,
        "text/html",
        Bytes::from_static(crate::engineio::session::POST_OK),
    )
}

/// A refused request: the error's status and `{"code":N,"message":"..."}`.
pub(crate) fn error(err: Error) -> Resp {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    with_type(
        status,
        "application/json",
        Bytes::from_static(err.json_body().as_bytes()),
    )
}

/// A refused WebSocket upgrade: the handshake's status (400, or 426 for a version we do not
/// speak, with its headers) and the Engine.IO "Bad request" JSON.
pub(crate) fn upgrade_refused(err: &HandshakeError) -> Resp {
    let mut resp: Resp = err.reject_response();
    *resp.body_mut() = Full::new(Bytes::from_static(
        ErrorCode::BadRequest.json_body().as_bytes(),
    ));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The answer to an `OPTIONS` preflight: 204, with the CORS headers when the origin is
/// allowed (the browser refuses the real request otherwise).
pub(crate) fn preflight<B>(req: &Request<B>, cors: &Cors) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let headers = resp.headers_mut();
    if add_cors(req.headers(), cors, headers) {
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(asked) = req.headers().get(ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        headers.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
    }
    resp
}

/// Adds `Access-Control-Allow-Origin` (the request's origin, reflected) and the credentials
/// header when the request has an allowed `Origin`; returns whether it did. `Vary: Origin`
/// goes on every answer once CORS is configured, since the answer depends on it.
pub(crate) fn add_cors(request: &HeaderMap, cors: &Cors, out: &mut HeaderMap) -> bool {
    if cors.allowed_origins.is_empty() {
        return false;
    }
    out.append(VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = request.get(ORIGIN) else {
        return false;
    };
    let allowed = origin.to_str().is_ok_and(|o| cors.allows(o));
    if !allowed {
        return false;
    }
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if cors.credentials {
        out.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    true
}

/// A copy of a request's head (method, URI, version, headers) for the application: the
/// extensions (hyper's upgrade handle among them) stay with the request.
pub(crate) fn head_of<B>(req: &Request<B>) -> http::request::Parts {
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy.into_parts().0
}

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(resp: Resp) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            credentials,
        }
    }

    fn request(origin: Option<&str>) -> Request<()> {
        let mut builder = Request::builder()
            .method("OPTIONS")
            .uri("/socket.io/?EIO=4&transport=polling")
            .header(ACCESS_CONTROL_REQUEST_HEADERS, "content-type");
        if let Some(origin) = origin {
            builder = builder.header(ORIGIN, origin);
        }
        builder.body(()).unwrap()
    }

    #[tokio::test]
    async fn errors_are_engineio_json() {
        let resp = error(Error::UnknownSid);
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body(resp).await,
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(error(Error::PayloadTooLarge).status(), 413);
        let refused = upgrade_refused(&HandshakeError::BadVersion);
        assert_eq!(refused.status(), 426);
        assert_eq!(refused.headers()["sec-websocket-version"], "13");
        assert_eq!(body(refused).await, r#"{"code":3,"message":"Bad request"}"#);
    }

    #[test]
    fn no_cors_headers_unless_configured() {
        let mut out = HeaderMap::new();
        let req = request(Some("https://a.example"));
        assert!(!add_cors(req.headers(), &Cors::default(), &mut out));
        assert!(out.is_empty());
        let resp = preflight(&req, &Cors::default());
        assert_eq!(resp.status(), 204);
        assert!(resp.headers().is_empty());
    }

    #[test]
    fn allowed_origin_is_reflected() {
        let req = request(Some("https://a.example"));
        let resp = preflight(&req, &cors(&["https://a.example"], true));
        let h = resp.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.example");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST, OPTIONS");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
        assert_eq!(h[VARY], "Origin");

        let mut out = HeaderMap::new();
        assert!(add_cors(
            request(Some("https://z.example")).headers(),
            &cors(&["*"], false),
            &mut out
        ));
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://z.example");
        assert!(!out.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn other_origins_get_vary_only() {
        let mut out = HeaderMap::new();
        let allowed = cors(&["https://a.example"], false);
        assert!(!add_cors(
            request(Some("https://b.example")).headers(),
            &allowed,
            &mut out
        ));
        assert!(!add_cors(request(None).headers(), &allowed, &mut out));
        assert!(!out.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(out[VARY], "Origin");
    }

    #[test]
    fn head_copy_keeps_headers_and_query() {
        let req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket&token=abc")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        let head = head_of(&req);
        assert_eq!(
            head.uri.query(),
            Some("EIO=4&transport=websocket&token=abc")
        );
        assert_eq!(head.headers["authorization"], "Bearer t");
    }
}
