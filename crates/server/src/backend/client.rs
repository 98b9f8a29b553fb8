//! The HTTP client of the backends: one POST of a signed JSON body, bounded in time (connect,
//! send and the whole answer) and in the size of the answer read. Plain `http://` only:
//! backends are expected on a private network or behind a local sidecar, and no TLS client is
//! built in (a `https://` URL is refused when the configuration is checked).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::sign::{sign, Secret, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Idle connections kept per backend host, for calls to reuse.
const IDLE_PER_HOST: usize = 32;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The pooled client every backend call goes through.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client with a bounded idle pool.
pub(crate) fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .build(connector)
}

/// What a backend answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

/// Why a backend gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PostError {
    /// No whole answer within the timeout.
    #[error("no answer in time")]
    Timeout,
    /// The connection failed (refused, reset, not HTTP).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The answer's body is larger than allowed.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

/// Where and how to post.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub(crate) uri: Uri,
    pub(crate) secret: &'a Secret,
    pub(crate) timeout: Duration,
    pub(crate) max_answer_bytes: usize,
}

/// Posts `body` (JSON) to `target`, signed, and reads the answer within the timeout.
pub(crate) async fn post(
    client: &HttpClient,
    target: Target<'_>,
    body: Vec<u8>,
) -> Result<Answer, PostError> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = sign(target.secret.bytes(), timestamp, &body);
    let request = Request::post(target.uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp)
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| PostError::Unreachable(e.to_string()))?;
    let max = target.max_answer_bytes;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| PostError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    PostError::TooLarge(max)
                } else {
                    PostError::Unreachable(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(target.timeout, exchange)
        .await
        .unwrap_or(Err(PostError::Timeout))
}

/// The error and its causes, one line: hyper's own message says only "client error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `base` with `path` appended (`path` empty or starting with `/`, as checked at start).
pub(crate) fn join(base: &str, path: &str) -> Result<Uri, PostError> {
    let joined = format!("{}{}", base.trim_end_matches('/'), path);
    let text = if path.is_empty() { base } else { &joined };
    text.parse()
        .map_err(|_| PostError::Unreachable(format!("bad URL `{text}`")))
}
