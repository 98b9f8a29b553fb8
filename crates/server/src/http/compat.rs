//! The routes of `[[api.routes]]`: another server's endpoints, each answered by one of the
//! API's operations (health, connections, user status, publish) with the request's path
//! parameters, query and JSON body rendered into the operation's arguments, and the answer
//! shaped by a JSON template. Compiled once at start; a route that does not compile is a
//! configuration error naming its key.
//!
//! Templates are the Socket.IO routes' (`crate::sio::routing::template`), read over the
//! request: `{params.userId}`, `{query.organizationId}`, `{body.data}`, `{now}`, and in
//! `response` the operation's answer, `{result}`.

use std::collections::HashSet;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::auth::ClaimSource;
use crate::config::{
    ApiRoute, Config, ConfigError, RouteAuth, RouteBroadcast, RouteOperation, MAX_ID_BYTES,
};
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::http::routes::{connections, ops, publish};
use crate::proto::MAX_NAME_BYTES;
use crate::sio::routing::template::{Context, Data, Scope, Text};
use crate::web::{json_response, Resp};

/// What request templates may read: no event arguments, no refusal, no answer yet.
const REQUEST: Scope = Scope {
    args: false,
    error: false,
    result: false,
};
/// What `response` may read: the request and the operation's answer.
const RESPONSE: Scope = Scope {
    args: false,
    error: false,
    result: true,
};

/// The compiled `[[api.routes]]`.
#[derive(Debug, Default)]
pub struct ApiRoutes {
    routes: Vec<Route>,
}

#[derive(Debug)]
struct Route {
    method: Method,
    segments: Vec<Segment>,
    auth: RouteAuth,
    tenant: Option<Text>,
    op: Op,
    response: Option<Data>,
    status: StatusCode,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug)]
enum Op {
    Health,
    Connections { namespace: String, rooms: Vec<Text> },
    UserStatus { user: Text },
    Publish(Publish),
}

/// A `publish` route's templates.
#[derive(Debug)]
struct Publish {
    namespace: String,
    event: Text,
    events: Vec<String>,
    rooms: Vec<Text>,
    users: Vec<Text>,
    broadcast: RouteBroadcast,
    data: Option<Data>,
}

/// The request as templates read it: `params`, `query` and `body`.
#[derive(Debug)]
struct Fields {
    params: Value,
    query: Value,
    body: Value,
}

impl ClaimSource for Fields {
    fn claim(&self, name: &str) -> Option<&Value> {
        match name {
            "params" => Some(&self.params),
            "query" => Some(&self.query),
            "body" => Some(&self.body),
            _ => None,
        }
    }
}

impl ApiRoutes {
    /// Compiles `config.api.routes`; the error names the key at fault.
    pub fn compile(config: &Config) -> Result<ApiRoutes, ConfigError> {
        let mut seen = HashSet::new();
        let mut routes = Vec::new();
        for (i, route) in config.api.routes.iter().enumerate() {
            let key = format!("api.routes[{i}]");
            let compiled = compile(route, &key, config)?;
            // Parameters match any segment: their names do not tell two routes apart.
            let shape: Vec<Option<String>> = compiled
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(text) => Some(text.clone()),
                    Segment::Param(_) => None,
                })
                .collect();
            if !seen.insert((compiled.method.clone(), shape)) {
                return Err(ConfigError::invalid(
                    format!("{key}.path"),
                    "another route has the same method and path",
                ));
            }
            routes.push(compiled);
        }
        Ok(ApiRoutes { routes })
    }

    /// Answers `req` if a route has its method and path; gives it back otherwise.
    pub(crate) async fn serve(
        &self,
        app: &App,
        req: Request<Incoming>,
    ) -> Result<Result<Resp, ApiError>, Request<Incoming>> {
        let path = req.uri().path();
        let found = self.routes.iter().find_map(|route| {
            (route.method == req.method())
                .then(|| route.params(path))
                .flatten()
                .map(|params| (route, params))
        });
        match found {
            Some((route, params)) => Ok(route.answer(app, req, params).await),
            None => Err(req),
        }
    }
}

impl Route {
    /// The path parameters when `path` is this route's, percent-decoded.
    fn params(&self, path: &str) -> Option<Map<String, Value>> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut params = Map::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(text) if text == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    let value = percent_encoding::percent_decode_str(part)
                        .decode_utf8()
                        .ok()
                        .filter(|v| !v.is_empty())?;
                    params.insert(name.clone(), Value::String(value.into_owned()));
                }
            }
        }
        parts.next().is_none().then_some(params)
    }

    async fn answer(
        &self,
        app: &App,
        req: Request<Incoming>,
        params: Map<String, Value>,
    ) -> Result<Resp, ApiError> {
        let call = match self.auth {
            RouteAuth::ApiKey => Call::read(app, req).await?,
            RouteAuth::None => Call::read_open(app, req).await?,
        };
        let body = if call.body.is_empty() {
            Value::Null
        } else {
            call.json::<Value>()?
        };
        let fields = Fields {
            params: Value::Object(params),
            query: query_object(call.uri.query().unwrap_or_default()),
            body,
        };
        let now = SystemTime::now();
        let (tenant, ask) = self.ask(&fields, now)?;
        let tenant = call.tenant(tenant.as_deref())?.map(str::to_owned);
        let result = match (ask, tenant) {
            (Ask::Health, _) => {
                let (status, report) = ops::health_report(app);
                if status != StatusCode::OK {
                    return Ok(json_response(status, &report));
                }
                report
            }
            (_, None) => {
                return Err(ApiError::bad(
                    "this route names no tenant: call it with a tenant key, or give the route \
                     a tenant",
                ))
            }
            (Ask::Connections { namespace, rooms }, Some(tenant)) => {
                connections::tenant_summary(app, &tenant, namespace, rooms).await
            }
            (Ask::UserStatus { user }, Some(tenant)) => {
                connections::status_of(app, &tenant, &user).await
            }
            (Ask::Publish(mut body), Some(tenant)) => {
                body["tenant"] = tenant.into();
                let call = Call {
                    principal: call.principal,
                    uri: call.uri,
                    body: Bytes::from(body.to_string()),
                };
                let answer = publish::publish(app, call).await?;
                if !answer.status().is_success() {
                    return Ok(answer);
                }
                let bytes = answer.into_body().collect().await.map(|b| b.to_bytes());
                let bytes = bytes.unwrap_or_else(|never| match never {});
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            }
        };
        let body = match &self.response {
            Some(template) => template.render(&Context {
                claims: &fields,
                args: &[],
                socket_id: "",
                now,
                error: None,
                result: Some(&result),
            }),
            None => result,
        };
        Ok(json_response(self.status, &body))
    }

    /// The tenant the route names, and what its operation is asked, rendered from the request.
    fn ask(&self, fields: &Fields, now: SystemTime) -> Result<(Option<String>, Ask<'_>), ApiError> {
        let ctx = Context {
            claims: fields,
            args: &[],
            socket_id: "",
            now,
            error: None,
            result: None,
        };
        let tenant = self
            .tenant
            .as_ref()
            .map(|t| t.render_name(&ctx).map_err(ApiError::BadRequest))
            .transpose()?;
        let ask = match &self.op {
            Op::Health => Ask::Health,
            Op::Connections { namespace, rooms } => Ask::Connections {
                namespace,
                // A room whose request field is missing is left out: such fields are optional.
                rooms: rooms
                    .iter()
                    .filter_map(|r| r.render_name(&ctx).ok())
                    .collect(),
            },
            Op::UserStatus { user } => Ask::UserStatus {
                user: user.render_name(&ctx).map_err(ApiError::BadRequest)?,
            },
            Op::Publish(publish) => Ask::Publish(publish.body(&ctx)?),
        };
        Ok((tenant, ask))
    }
}

/// A route's operation with its arguments rendered.
enum Ask<'a> {
    Health,
    Connections {
        namespace: &'a str,
        rooms: Vec<String>,
    },
    UserStatus {
        user: String,
    },
    /// The body of a `POST /api/publish`, its tenant still to be set.
    Publish(Value),
}

impl Publish {
    /// The body of the `POST /api/publish` this route makes of a request.
    fn body(&self, ctx: &Context<'_>) -> Result<Value, ApiError> {
        let Publish {
            namespace,
            event,
            events,
            rooms,
            users,
            broadcast,
            data,
        } = self;
        let event = event.render_name(ctx).map_err(ApiError::BadRequest)?;
        if !events.is_empty() && !events.contains(&event) {
            return Err(ApiError::bad(format!(
                "event `{event}` is not one of {}",
                events.join(", ")
            )));
        }
        // A target whose request field is missing is left out: such fields are optional.
        let names = |list: &[Text]| -> Vec<String> {
            list.iter()
                .filter_map(|t| t.render_name(ctx).ok())
                .collect()
        };
        let (rooms, users) = (names(rooms), names(users));
        let whole = match broadcast {
            RouteBroadcast::Always => true,
            RouteBroadcast::WhenNoTarget => rooms.is_empty() && users.is_empty(),
            RouteBroadcast::Never => false,
        };
        if !whole && rooms.is_empty() && users.is_empty() {
            return Err(ApiError::bad(
                "the request names no room nor user this route publishes to",
            ));
        }
        let data = match data {
            Some(template) => template.render(ctx),
            None => ctx.claims.claim("body").cloned().unwrap_or(Value::Null),
        };
        let mut body = json!({
            "namespace": namespace,
            "event": event,
            "data": data,
        });
        if whole {
            body["broadcast"] = true.into();
        } else {
            body["rooms"] = rooms.into();
            body["users"] = users.into();
        }
        Ok(body)
    }
}

/// Every `name=value` pair of a query string, decoded; the first of a repeated name wins.
fn query_object(query: &str) -> Value {
    let mut map = Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        map.entry(name.into_owned())
            .or_insert_with(|| Value::String(value.into_owned()));
    }
    Value::Object(map)
}

fn compile(route: &ApiRoute, key: &str, config: &Config) -> Result<Route, ConfigError> {
    let at = |field: &str| format!("{key}.{field}");
    let invalid = |field: &str, message: String| ConfigError::invalid(at(field), message);
    let text = |value: &str, field: String| {
        Text::parse(value, REQUEST).map_err(|e| ConfigError::invalid(field, e))
    };
    let method = match route.method.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => {
            return Err(invalid(
                "method",
                "must be GET, POST, PUT, PATCH or DELETE".into(),
            ))
        }
    };
    let segments = segments(&route.path).map_err(|e| invalid("path", e))?;
    let sample: String = segments
        .iter()
        .map(|s| match s {
            Segment::Literal(text) => format!("/{text}"),
            Segment::Param(_) => "/x".into(),
        })
        .collect();
    // The server's own paths, `GET /health` aside: a route there answers in its place, its
    // report under the route's `{result}`.
    let socketio = &config.socketio;
    let engine = socketio.enabled
        && std::iter::once(socketio.engine_path())
            .chain(socketio.extra_engine_paths())
            .any(|path| format!("{sample}/").starts_with(&path));
    if (super::own_path(&sample) && sample != "/health") || engine {
        return Err(invalid(
            "path",
            format!("`{}` is one of the server's own routes", route.path),
        ));
    }
    let Some(operation) = route.operation else {
        return Err(invalid(
            "operation",
            "is required: health, connections, user_status or publish".into(),
        ));
    };
    let tenant = if route.tenant.is_empty() {
        None
    } else {
        Some(text(&route.tenant, at("tenant"))?)
    };
    if route.auth == RouteAuth::None {
        let fixed =
            tenant.is_some() && !route.tenant.contains('{') && route.tenant.len() <= MAX_ID_BYTES;
        if !fixed && operation != RouteOperation::Health {
            return Err(invalid(
                "tenant",
                "auth = \"none\" needs a fixed tenant name: without a key, the route may only \
                 reach the tenant it names"
                    .into(),
            ));
        }
    }
    let namespace = route.namespace.clone();
    if !namespace.starts_with('/') || namespace.len() > MAX_NAME_BYTES {
        return Err(invalid("namespace", "must start with `/`".into()));
    }
    let texts = |list: &[String], field: &str| {
        list.iter()
            .enumerate()
            .map(|(i, t)| text(t, format!("{key}.{field}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    let unused = |field: &str, set: bool| {
        if set {
            Err(invalid(
                field,
                format!("is not read by the `{operation:?}` operation").to_lowercase(),
            ))
        } else {
            Ok(())
        }
    };
    let op = match operation {
        RouteOperation::Health => Op::Health,
        RouteOperation::Connections => {
            unused("user", !route.user.is_empty())?;
            unused("event", !route.event.is_empty())?;
            Op::Connections {
                namespace,
                rooms: texts(&route.rooms, "rooms")?,
            }
        }
        RouteOperation::UserStatus => {
            if route.user.is_empty() {
                return Err(invalid(
                    "user",
                    "is required: the user, e.g. \"{params.userId}\"".into(),
                ));
            }
            Op::UserStatus {
                user: text(&route.user, at("user"))?,
            }
        }
        RouteOperation::Publish => {
            if route.event.is_empty() {
                return Err(invalid(
                    "event",
                    "is required: a name, or a template such as \"{body.type}\"".into(),
                ));
            }
            let targets = !(route.rooms.is_empty() && route.users.is_empty());
            match route.broadcast {
                RouteBroadcast::Always if targets => {
                    return Err(invalid(
                        "broadcast",
                        "\"always\" goes to the whole tenant: give no rooms nor users".into(),
                    ))
                }
                RouteBroadcast::Never | RouteBroadcast::WhenNoTarget if !targets => {
                    return Err(invalid(
                        "rooms",
                        "give rooms, users, or broadcast = \"always\"".into(),
                    ))
                }
                _ => {}
            }
            Op::Publish(Publish {
                namespace,
                event: text(&route.event, at("event"))?,
                events: route.events.clone(),
                rooms: texts(&route.rooms, "rooms")?,
                users: texts(&route.users, "users")?,
                broadcast: route.broadcast,
                data: route
                    .data
                    .as_ref()
                    .map(|d| Data::compile(d, &at("data"), REQUEST))
                    .transpose()
                    .map_err(|(field, e)| ConfigError::invalid(field, e))?,
            })
        }
    };
    let status = StatusCode::from_u16(route.status)
        .ok()
        .filter(StatusCode::is_success)
        .ok_or_else(|| invalid("status", "must be a 2xx status".into()))?;
    Ok(Route {
        method,
        segments,
        auth: route.auth,
        tenant,
        op,
        response: route
            .response
            .as_ref()
            .map(|d| Data::compile(d, &at("response"), RESPONSE))
            .transpose()
            .map_err(|(field, e)| ConfigError::invalid(field, e))?,
        status,
    })
}

/// The segments of a route's path: `/user-status/{userId}` is a literal and a parameter.
fn segments(path: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with `/`".into());
    };
    if rest.is_empty() {
        return Err("`/` is the server's own".into());
    }
    let mut names = HashSet::new();
    rest.split('/')
        .map(|part| {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!(
                        "`{part}`: a parameter is `{{name}}`, letters, digits and _"
                    ));
                }
                if !names.insert(name) {
                    return Err(format!("parameter `{name}` appears twice"));
                }
                Ok(Segment::Param(name.to_owned()))
            } else if part.is_empty() || part.contains(['{', '}', '?', '#', '%']) {
                Err(format!(
                    "segment `{part}`: give non-empty segments without {{, }}, ?, # or %"
                ))
            } else {
                Ok(Segment::Literal(part.to_owned()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(text: &str) -> Result<ApiRoutes, String> {
        let config = Config::from_toml_str(text).map_err(|e| e.to_string())?;
        ApiRoutes::compile(&config).map_err(|e| e.to_string())
    }

    fn refused(text: &str) -> String {
        routes(text)
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"))
    }

    #[test]
    fn paths_give_their_parameters_decoded() {
        let compiled = routes(
            "[[api.routes]]\npath = \"/user-status/{userId}\"\noperation = \"user_status\"\n\
             user = \"{params.userId}\"",
        )
        .unwrap();
        let route = &compiled.routes[0];
        let params = route.params("/user-status/a%20b").unwrap();
        assert_eq!(params["userId"], "a b");
        assert!(route.params("/user-status/").is_none());
        assert!(route.params("/user-status").is_none());
        assert!(route.params("/user-status/1/2").is_none());
        assert!(route.params("/user-statu/1").is_none());
        assert!(route.params("/user-status/%FF").is_none());
    }

    #[test]
    fn queries_are_decoded_first_value_first() {
        let query = query_object("organizationId=o%201&tenantId=t+1&organizationId=o2&flag");
        assert_eq!(
            query,
            json!({"organizationId": "o 1", "tenantId": "t 1", "flag": ""})
        );
    }

    #[test]
    fn routes_that_cannot_work_are_refused_naming_their_key() {
        for (text, key) in [
            (
                "path = \"/api/publish\"\nmethod = \"POST\"\noperation = \"health\"",
                "api.routes[0].path",
            ),
            (
                "path = \"/api/users/{id}/status\"\noperation = \"health\"",
                "api.routes[0].path",
            ),
            (
                "path = \"/socket.io/x\"\noperation = \"health\"",
                "api.routes[0].path",
            ),
            ("path = \"/\"\noperation = \"health\"", "api.routes[0].path"),
            ("path = \"a\"\noperation = \"health\"", "api.routes[0].path"),
            (
                "path = \"/a//b\"\noperation = \"health\"",
                "api.routes[0].path",
            ),
            (
                "path = \"/a/{x}/{x}\"\noperation = \"health\"",
                "api.routes[0].path",
            ),
            (
                "path = \"/a/{x-y}\"\noperation = \"health\"",
                "api.routes[0].path",
            ),
            ("path = \"/x\"", "api.routes[0].operation"),
            (
                "path = \"/x\"\nmethod = \"TRACE\"\noperation = \"health\"",
                "api.routes[0].method",
            ),
            (
                "path = \"/who\"\noperation = \"connections\"\nauth = \"none\"",
                "api.routes[0].tenant",
            ),
            (
                "path = \"/who\"\noperation = \"connections\"\nauth = \"none\"\n\
                 tenant = \"{query.t}\"",
                "api.routes[0].tenant",
            ),
            (
                "path = \"/u/{id}\"\noperation = \"user_status\"",
                "api.routes[0].user",
            ),
            (
                "path = \"/send\"\nmethod = \"POST\"\noperation = \"publish\"",
                "api.routes[0].event",
            ),
            (
                "path = \"/send\"\nmethod = \"POST\"\noperation = \"publish\"\nevent = \"x\"",
                "api.routes[0].rooms",
            ),
            (
                "path = \"/send\"\nmethod = \"POST\"\noperation = \"publish\"\nevent = \"x\"\n\
                 rooms = [\"a\"]\nbroadcast = \"always\"",
                "api.routes[0].broadcast",
            ),
            (
                "path = \"/send\"\nmethod = \"POST\"\noperation = \"publish\"\nevent = \"x\"\n\
                 rooms = [\"{nope\"]",
                "api.routes[0].rooms[0]",
            ),
            (
                "path = \"/send\"\nmethod = \"POST\"\noperation = \"publish\"\n\
                 event = \"{result}\"\nrooms = [\"a\"]",
                "api.routes[0].event",
            ),
            (
                "path = \"/x\"\noperation = \"health\"\nstatus = 404",
                "api.routes[0].status",
            ),
            (
                "path = \"/who\"\noperation = \"connections\"\nuser = \"{params.x}\"",
                "api.routes[0].user",
            ),
        ] {
            let message = refused(&format!("[[api.routes]]\n{text}"));
            assert!(message.starts_with(key), "{text}: {message}");
        }
        let twice = "[[api.routes]]\npath = \"/u/{a}\"\noperation = \"health\"\n\
                     [[api.routes]]\npath = \"/u/{b}\"\noperation = \"health\"";
        assert!(refused(twice).starts_with("api.routes[1].path"));
        // The same path with another method is another route; GET /health may be taken.
        routes(
            "[[api.routes]]\npath = \"/u/{a}\"\noperation = \"health\"\n\
             [[api.routes]]\npath = \"/u/{b}\"\nmethod = \"POST\"\noperation = \"health\"\n\
             [[api.routes]]\npath = \"/health\"\noperation = \"health\"\nauth = \"none\"",
        )
        .unwrap();
    }
}
