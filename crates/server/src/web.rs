//! Small HTTP helpers shared by the API, the native `/ws` upgrade and the Socket.IO
//! namespaces: JSON answers and query parameters. A leaf: it imports nothing else of the
//! crate, so that every protocol can answer over HTTP without depending on the API.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode, Uri};
use http_body_util::Full;
use hyper::Response;
use serde_json::json;

/// A whole, buffered HTTP answer.
pub(crate) type Resp = Response<Full<Bytes>>;

/// A JSON error body: `{"error":{"code","message"}}`.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// A JSON answer with `status`.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Resp {
    json_text_response(status, body.to_string())
}

/// A JSON answer with `status` whose body is already JSON text (for answers on hot paths,
/// written without building a `Value`).
pub(crate) fn json_text_response(status: StatusCode, body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The first value of a query parameter, percent-decoded.
///
/// Read on every WebSocket upgrade (the token): names and values without `%` or `+` are
/// taken as they are, and the decoder runs only when one of them needs it.
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    let encoded = |s: &str| memchr::memchr2(b'%', b'+', s.as_bytes()).is_some();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if encoded(key) {
            // It may decode to `name`: the decoder decides from here on.
            break;
        }
        if key == name {
            if encoded(value) {
                break;
            }
            return Some(value.to_owned());
        }
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_decodes_the_first_value() {
        let uri: Uri = "/ws?token=a%20b&token=c&x".parse().unwrap();
        assert_eq!(query_param(&uri, "token").as_deref(), Some("a b"));
        assert_eq!(query_param(&uri, "x").as_deref(), Some(""));
        assert_eq!(query_param(&uri, "y"), None);
        assert_eq!(query_param(&Uri::from_static("/ws"), "token"), None);
        // Plain values are taken as they are, encoded ones decoded, names too.
        let uri: Uri = "/ws?a=1&&token=e.y.J&b".parse().unwrap();
        assert_eq!(query_param(&uri, "token").as_deref(), Some("e.y.J"));
        assert_eq!(query_param(&uri, "b").as_deref(), Some(""));
        assert_eq!(query_param(&uri, "c"), None);
        let uri: Uri = "/ws?to%6Ben=a&token=b".parse().unwrap();
        assert_eq!(query_param(&uri, "token").as_deref(), Some("a"));
        let uri: Uri = "/ws?x=1&token=a+b%2B".parse().unwrap();
        assert_eq!(query_param(&uri, "token").as_deref(), Some("a b+"));
    }

    #[test]
    fn error_response_is_json() {
        let resp = error_response(StatusCode::NOT_FOUND, "not_found", "no such route");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/json"))
        );
    }
}
