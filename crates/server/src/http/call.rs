//! An authenticated API call: the request's key resolved to a [`Principal`], its body read
//! under the configured bounds, and the helpers every handler shares to read the body as JSON
//! and to decide which tenant the call acts on.

use bytes::Bytes;
use http::{header, Uri};
use hyper::body::Incoming;
use hyper::Request;
use serde::Deserialize;

use crate::api_keys::{ApiKeys, Principal};
use crate::app::App;
use crate::http::error::ApiError;

/// An authenticated API call: the principal, the request's URI and its (size-limited) body.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) principal: Principal,
    pub(crate) uri: Uri,
    pub(crate) body: Bytes,
}

impl Call {
    /// Authenticates an API request, then reads its body.
    pub(crate) async fn read(app: &App, req: Request<Incoming>) -> Result<Call, ApiError> {
        let principal = principal(&app.keys, &req)?;
        let (parts, body) = req.into_parts();
        let body = read_body(app, body).await?;
        Ok(Call {
            principal,
            uri: parts.uri,
            body,
        })
    }

    /// Reads the body of a request to a route without authentication (`auth = "none"` in
    /// `[[api.routes]]`), which acts as the platform on the tenant its route names.
    pub(crate) async fn read_open(app: &App, req: Request<Incoming>) -> Result<Call, ApiError> {
        let (parts, body) = req.into_parts();
        Ok(Call {
            principal: Principal::Platform,
            uri: parts.uri,
            body: read_body(app, body).await?,
        })
    }

    /// The body as JSON.
    pub(crate) fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
    }

    /// The tenant the call acts on: a tenant key's own, or the one `named` (`None` for a
    /// platform key naming none; the handler decides whether that is allowed).
    pub(crate) fn tenant<'a>(
        &'a self,
        named: Option<&'a str>,
    ) -> Result<Option<&'a str>, ApiError> {
        resolve_tenant(&self.principal, named)
    }
}

/// The principal of a request's `Authorization: Bearer` API key.
fn principal(keys: &ApiKeys, req: &Request<Incoming>) -> Result<Principal, ApiError> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    keys.principal(auth).ok_or(ApiError::NoApiKey)
}

/// Reads an API request's body whole: at most `api.max_body_bytes`, within
/// `limits.body_timeout_ms`, and within the budget of body bytes being read
/// (`limits.max_body_buffer_bytes`); otherwise the refusal (413, 408, 503 or 400).
async fn read_body(app: &App, body: Incoming) -> Result<Bytes, ApiError> {
    let read = roomcast_engine::body::read(
        body,
        app.config.api.max_body_bytes,
        app.config.limits.body_timeout(),
        &app.bodies,
    )
    .await;
    Ok(read?)
}

/// The tenant a principal acts on: a tenant key's own, or the one named (which a tenant key
/// may only name if it is its own).
fn resolve_tenant<'a>(
    principal: &'a Principal,
    named: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    match (principal, named) {
        (Principal::Tenant(own), None) => Ok(Some(own)),
        (Principal::Tenant(own), Some(t)) if t == own => Ok(Some(own)),
        (Principal::Tenant(_), Some(_)) => Err(ApiError::Forbidden(
            "this key cannot reach that tenant".into(),
        )),
        (Principal::Platform, t) => Ok(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_key_reaches_only_its_tenant() {
        let acme = Principal::Tenant("acme".into());
        assert_eq!(resolve_tenant(&acme, None).ok(), Some(Some("acme")));
        assert_eq!(resolve_tenant(&acme, Some("acme")).ok(), Some(Some("acme")));
        let err = resolve_tenant(&acme, Some("globex")).err();
        assert_eq!(err.map(|e| e.status().as_u16()), Some(403));
    }

    #[test]
    fn a_platform_key_names_any_tenant_or_none() {
        let platform = Principal::Platform;
        assert_eq!(resolve_tenant(&platform, None).ok(), Some(None));
        assert_eq!(
            resolve_tenant(&platform, Some("globex")).ok(),
            Some(Some("globex"))
        );
    }
}
