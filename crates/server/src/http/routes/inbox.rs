//! The inbox API (`[inbox]`): a backend creates notifications for users or for a whole
//! tenant, and reads and changes any user's inbox. A tenant key reaches its own tenant's
//! inboxes only; a platform key names the tenant (`tenant` in the create body, `?tenant=`
//! elsewhere).
//!
//! - `POST /api/inbox/notifications`: create; `201 {"ids": [...], "count": n}`;
//! - `GET /api/inbox/users/{user}/notifications?read=&dismissed=&type=&priority=&cursor=&limit=`:
//!   a page, newest first, `{"notifications": [...], "next_cursor": id|null}`;
//! - `GET /api/inbox/users/{user}/counts`: `{"total", "unread", "urgent"}`;
//! - `POST /api/inbox/users/{user}/notifications/{id}/read` (and `/dismiss`):
//!   `{"notification_id", "success", "changed"}`, 404 when not in that user's inbox;
//! - `POST /api/inbox/users/{user}/read-all`: `{"count"}`;
//! - `DELETE /api/inbox/notifications/{id}`: `{"deleted": true}`, 404 when the tenant has none.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::inbox::{parse_new, Inbox, ListOptions, Owner};
use crate::web::{json_response, query_param, Resp};

/// An inbox route, as its method and path name it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Create,
    Delete(i64),
    List(String),
    Counts(String),
    Mark {
        user: String,
        id: i64,
        dismiss: bool,
    },
    ReadAll(String),
}

impl Route {
    /// The route at `path` for `method`: `None` for a path that is not the inbox's; `Err` for
    /// one of its paths with another method.
    pub(crate) fn of(method: &Method, path: &str) -> Option<Result<Route, ApiError>> {
        let rest = path.strip_prefix("/api/inbox/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let route = match parts.as_slice() {
            ["notifications"] => (Method::POST, Route::Create),
            ["notifications", id] => (Method::DELETE, Route::Delete(id.parse().ok()?)),
            ["users", user, "notifications"] => (Method::GET, Route::List(decode(user))),
            ["users", user, "counts"] => (Method::GET, Route::Counts(decode(user))),
            ["users", user, "read-all"] => (Method::POST, Route::ReadAll(decode(user))),
            ["users", user, "notifications", id, action @ ("read" | "dismiss")] => (
                Method::POST,
                Route::Mark {
                    user: decode(user),
                    id: id.parse().ok()?,
                    dismiss: *action == "dismiss",
                },
            ),
            _ => return None,
        };
        Some(if route.0 == *method {
            Ok(route.1)
        } else {
            Err(ApiError::MethodNotAllowed)
        })
    }
}

/// The user id of a path segment, percent-decoded (checked by [`user`]).
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// A user id from the path: 1 to `MAX_ID_BYTES` bytes.
fn user(user: String) -> Result<String, ApiError> {
    let max = crate::config::MAX_ID_BYTES;
    if user.is_empty() || user.len() > max {
        return Err(ApiError::bad(format!("user ids are 1 to {max} bytes")));
    }
    Ok(user)
}

/// Answers an inbox route.
pub(crate) async fn handle(app: &App, route: Route, call: Call) -> Result<Resp, ApiError> {
    let inbox = app.inbox().ok_or_else(|| {
        ApiError::NotKept("this server keeps no inbox: add an [inbox] section".into())
    })?;
    let named = query_param(&call.uri, "tenant");
    let tenant = || match call.tenant(named.as_deref()) {
        Ok(Some(tenant)) => Ok(tenant),
        Ok(None) => Err(ApiError::bad(
            "tenant query parameter is required with a platform key",
        )),
        Err(e) => Err(e),
    };
    let owner = |id: String| {
        let user = user(id)?;
        tenant().map(|tenant| Owner {
            tenant: tenant.to_owned(),
            user,
        })
    };
    let answer = match route {
        Route::Create => return create(inbox, &call).await,
        Route::Delete(id) => {
            if !inbox.delete(tenant()?, id).await? {
                return Err(ApiError::Missing("no such notification".into()));
            }
            json!({ "deleted": true })
        }
        Route::List(user) => {
            let config = app.config.inbox.as_ref();
            let options = ListOptions::parse(
                &query_object(&call),
                config.map_or(50, |c| c.page_size),
                config.map_or(200, |c| c.max_page_size),
            )?;
            inbox.list(&owner(user)?, &options).await?
        }
        Route::Counts(user) => inbox.counts(&owner(user)?).await?,
        Route::Mark { user, id, dismiss } => inbox.mark_by_api(owner(user)?, id, dismiss).await?,
        Route::ReadAll(user) => inbox.read_all_by_api(owner(user)?).await?,
    };
    Ok(json_response(StatusCode::OK, &answer))
}

async fn create(inbox: &Arc<Inbox>, call: &Call) -> Result<Resp, ApiError> {
    let create = parse_new(&call.body).map_err(ApiError::BadRequest)?;
    let Some(tenant) = call.tenant(create.tenant.as_deref())? else {
        return Err(ApiError::bad("tenant is required with a platform key"));
    };
    let ids = inbox.create(tenant, create.to, create.new).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "ids": ids, "count": ids.len() }),
    ))
}

/// The list options of the query string, as an object of strings.
fn query_object(call: &Call) -> Value {
    let mut map = Map::new();
    for name in ["read", "dismissed", "type", "priority", "cursor", "limit"] {
        if let Some(value) = query_param(&call.uri, name) {
            map.insert(name.to_owned(), Value::String(value));
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let of = |m: Method, p: &str| Route::of(&m, p).map(|r| r.map_err(|e| e.status().as_u16()));
        assert_eq!(
            of(Method::POST, "/api/inbox/notifications"),
            Some(Ok(Route::Create))
        );
        assert_eq!(of(Method::GET, "/api/inbox/notifications"), Some(Err(405)));
        assert_eq!(
            of(Method::DELETE, "/api/inbox/notifications/9"),
            Some(Ok(Route::Delete(9)))
        );
        assert_eq!(of(Method::DELETE, "/api/inbox/notifications/x"), None);
        assert_eq!(
            of(Method::GET, "/api/inbox/users/a%20b/notifications"),
            Some(Ok(Route::List("a b".into())))
        );
        assert_eq!(
            of(Method::POST, "/api/inbox/users/7/notifications/12/dismiss"),
            Some(Ok(Route::Mark {
                user: "7".into(),
                id: 12,
                dismiss: true
            }))
        );
        assert_eq!(
            of(Method::GET, "/api/inbox/users//counts"),
            Some(Ok(Route::Counts(String::new())))
        );
        assert_eq!(
            of(Method::POST, "/api/inbox/users/7/read-all"),
            Some(Ok(Route::ReadAll("7".into())))
        );
        assert_eq!(of(Method::GET, "/api/publish"), None);
    }
}
