//! `[[api.routes]]`: extra HTTP routes, each answered by one of the API's operations, for
//! backends and dashboards written against another server's endpoints (`GET /connected-users`,
//! `POST /api/websocket/broadcast`). The server's `http::compat` compiles and serves them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API operation a route is answered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteOperation {
    /// `GET /health`'s report.
    Health,
    /// `GET /api/connections` for one tenant: connections, users, user ids, and the members
    /// of the rooms the route names.
    Connections,
    /// `GET /api/users/{id}/status` for the route's `user`.
    UserStatus,
    /// `POST /api/publish` of the event, targets and data the route renders.
    Publish,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAuth {
    /// `Authorization: Bearer <api key>`, as the API's own routes; a tenant key reaches its
    /// own tenant only.
    #[default]
    ApiKey,
    /// Anyone who reaches the port: for endpoints that had no authentication and whose callers
    /// cannot send a key. Needs a fixed `tenant`.
    None,
}

/// When a `publish` route goes to the whole tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteBroadcast {
    /// Never: a request whose rooms and users all render empty is refused (400).
    #[default]
    Never,
    /// Always: `rooms` and `users` are not given.
    Always,
    /// When every room and user of the route lacks its request field (the request named no
    /// target).
    WhenNoTarget,
}

/// One entry of `[[api.routes]]`. Templates read the request: `{params.<name>}` (a `{name}`
/// segment of `path`), `{query.<name>}`, `{body.<field>}` (a JSON body), `{now}`; `response`
/// also reads `{result}`, the operation's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiRoute {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`. Default `"GET"`.
    pub method: String,
    /// The path, with `{name}` segments: `"/user-status/{userId}"`. Required.
    pub path: String,
    /// What answers it. Required.
    pub operation: Option<RouteOperation>,
    /// Who may call it. Default `"api_key"`.
    pub auth: RouteAuth,
    /// The tenant it acts on: a name, or a template. Default `""`: the API key's tenant.
    /// Required, and fixed, with `auth = "none"`.
    pub tenant: String,
    /// `connections` and `publish`: the Socket.IO namespace. Default `"/"`.
    pub namespace: String,
    /// `user_status`: the user, a template (`"{params.userId}"`).
    pub user: String,
    /// `publish`: the rooms; `connections`: the rooms whose members are counted. Templates; one
    /// whose request field is missing is left out.
    pub rooms: Vec<String>,
    /// `publish`: the users. Templates, as `rooms`.
    pub users: Vec<String>,
    /// `publish`: when it goes to the whole tenant. Default `"never"`.
    pub broadcast: RouteBroadcast,
    /// `publish`: the event, a template (`"{body.type}"`).
    pub event: String,
    /// `publish`: the event names a request may render; empty allows any.
    pub events: Vec<String>,
    /// `publish`: the event's data, a JSON template. Default: the request's body.
    pub data: Option<Value>,
    /// The answer's body, a JSON template over the request and `{result}`. Default: the
    /// operation's answer as the API gives it.
    pub response: Option<Value>,
    /// The answer's status when the operation succeeds. Default `200`. The operation's refusals
    /// are answered as the API answers them.
    pub status: u16,
}

impl Default for ApiRoute {
    fn default() -> Self {
        ApiRoute {
            method: "GET".into(),
            path: String::new(),
            operation: None,
            auth: RouteAuth::default(),
            tenant: String::new(),
            namespace: "/".into(),
            user: String::new(),
            rooms: Vec::new(),
            users: Vec::new(),
            broadcast: RouteBroadcast::default(),
            event: String::new(),
            events: Vec::new(),
            data: None,
            response: None,
            status: 200,
        }
    }
}
