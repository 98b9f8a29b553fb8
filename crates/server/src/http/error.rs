//! The API's one error type: each variant is a refusal, and [`ApiError::status`] and
//! [`ApiError::code`] are the one table mapping it to the HTTP status and the `code` of the
//! JSON body `{"error":{"code","message"}}` (the message is the variant's `Display`).

use http::StatusCode;
use roomcast_engine::body::BodyError;

use crate::node::PublishError;
use crate::web::{error_response, Resp};

/// Why an HTTP request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A malformed request: bad JSON, a bad or missing field, a body that could not be read.
    #[error("{0}")]
    BadRequest(String),
    /// No known API key on an `/api/*` route.
    #[error("a valid API key is required")]
    NoApiKey,
    /// `api.metrics_key` is set and the request to `/metrics` does not carry it.
    #[error("metrics key required")]
    NoMetricsKey,
    /// The key may not act on what the request names (another tenant).
    #[error("{0}")]
    Forbidden(String),
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// The route exists, not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body did not arrive whole within `limits.body_timeout_ms`.
    #[error("request body not received in time")]
    Timeout,
    /// The body is larger than `api.max_body_bytes`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The bodies being read at once already hold `limits.max_body_buffer_bytes`.
    #[error("too many request bytes in flight; retry later")]
    Busy,
    /// The publish path could not take the publication (the broker failed).
    #[error("{0}")]
    Unavailable(String),
    /// What was asked for is not kept (history, where no room keeps any).
    #[error("{0}")]
    NotKept(String),
    /// What the request names does not exist (a notification not in that user's inbox).
    #[error("{0}")]
    Missing(String),
    /// Another request holds what this one needs (a publish with the same idempotency key,
    /// still under way).
    #[error("{0}")]
    Conflict(String),
}

impl ApiError {
    /// The HTTP status of the answer.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NoApiKey | ApiError::NoMetricsKey => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NotKept(_) | ApiError::Missing(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `code` of the JSON error body.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NoApiKey | ApiError::NoMetricsKey => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound | ApiError::Missing(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Timeout => "request_timeout",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Busy => "busy",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotKept(_) => "not_kept",
            ApiError::Conflict(_) => "conflict",
        }
    }

    /// A [`ApiError::BadRequest`] with `message`.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    /// The JSON answer.
    pub(crate) fn into_response(self) -> Resp {
        error_response(self.status(), self.code(), &self.to_string())
    }
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge => ApiError::PayloadTooLarge,
            BodyError::Timeout => ApiError::Timeout,
            BodyError::Busy => ApiError::Busy,
            // A broken body (`BodyError::Read`), or whatever else a later reader may report:
            // the engine's error is `#[non_exhaustive]`.
            _ => ApiError::bad("could not read body"),
        }
    }
}

impl From<roomcast_broker::BrokerError> for ApiError {
    fn from(err: roomcast_broker::BrokerError) -> Self {
        ApiError::Unavailable(err.to_string())
    }
}

impl From<PublishError> for ApiError {
    fn from(err: PublishError) -> Self {
        match err {
            PublishError::TooManyTargets(_) | PublishError::TooDeep => {
                ApiError::BadRequest(err.to_string())
            }
            PublishError::Broker(e) => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::client::Refusal> for ApiError {
    /// The inbox's refusals, as the API tells them; the others are no API call's (the
    /// connections' own), told as the server failing.
    fn from(refusal: crate::client::Refusal) -> Self {
        use crate::client::Refusal as R;
        let failed = |r: &R| match r.native() {
            crate::client::NativeAnswer::Reply(_, m) | crate::client::NativeAnswer::Close(_, m) => {
                ApiError::Unavailable(m.into_owned())
            }
        };
        match refusal {
            R::NotFound => ApiError::Missing("no such notification".into()),
            R::NoInbox => ApiError::NotKept("this server keeps no inbox".into()),
            R::InvalidRequest(m) | R::PublishRefused(m) => ApiError::BadRequest(m),
            R::Busy => ApiError::Unavailable("too many inbox operations running".into()),
            R::InboxUnavailable => ApiError::Unavailable("inbox unavailable".into()),
            r @ (R::Timeout
            | R::Unavailable
            | R::TokenMissing
            | R::AuthTimeout
            | R::TokenInvalid(_)
            | R::TokenExpired
            | R::ConnectionLimit(_)
            | R::ShuttingDown
            | R::SubscribeForbidden
            | R::TenantForbidden
            | R::PublishForbidden
            | R::TooManyRooms
            | R::PayloadTooLarge
            | R::RateLimited
            | R::RateLimitExceeded
            | R::RefreshInvalid(_)
            | R::RefreshOtherIdentity
            | R::SessionExpired
            | R::BackendRefused { .. }
            | R::BackendUnavailable
            | R::BackendTimeout
            | R::UnknownMethod
            | R::ProxyRefused { .. }
            | R::ProxyUnavailable) => failed(&r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_and_message_of_each_refusal() {
        let table = [
            (ApiError::bad("x"), 400, "bad_request", "x"),
            (
                ApiError::NoApiKey,
                401,
                "unauthorized",
                "a valid API key is required",
            ),
            (
                ApiError::NoMetricsKey,
                401,
                "unauthorized",
                "metrics key required",
            ),
            (ApiError::Forbidden("y".into()), 403, "forbidden", "y"),
            (ApiError::NotFound, 404, "not_found", "no such route"),
            (
                ApiError::MethodNotAllowed,
                405,
                "method_not_allowed",
                "method not allowed",
            ),
            (
                ApiError::Timeout,
                408,
                "request_timeout",
                "request body not received in time",
            ),
            (
                ApiError::PayloadTooLarge,
                413,
                "payload_too_large",
                "request body too large",
            ),
            (
                ApiError::Busy,
                503,
                "busy",
                "too many request bytes in flight; retry later",
            ),
            (ApiError::Unavailable("z".into()), 503, "unavailable", "z"),
            (ApiError::NotKept("k".into()), 404, "not_kept", "k"),
            (ApiError::Conflict("c".into()), 409, "conflict", "c"),
            (ApiError::Missing("m".into()), 404, "not_found", "m"),
        ];
        for (err, status, code, message) in table {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.to_string(), message, "{err:?}");
        }
    }

    #[test]
    fn body_errors_map_to_their_statuses() {
        let status = |e: BodyError| ApiError::from(e).status().as_u16();
        assert_eq!(status(BodyError::TooLarge), 413);
        assert_eq!(status(BodyError::Timeout), 408);
        assert_eq!(status(BodyError::Busy), 503);
        assert_eq!(status(BodyError::Read("eof".into())), 400);
    }
}
