//! The templates of the routing table: `{...}` placeholders over the connection's claims, the
//! event's arguments, the socket id, the clock and a refusal's message, rendered into room names
//! ([`Text`]) and into JSON event data ([`Data`]). Parsed once at start; rendering never fails
//! for data (a missing value is `null` or `""`) and reports the missing placeholder for rooms.
//!
//! Placeholders (`{{` and `}}` are literal braces, as in the claim templates of `rooms`):
//! - `{args}` all arguments as an array, `{args.0}` the first, `{args.0.tenant_id}` a field of
//!   it, `{args.1.items.2}` an array element;
//! - `{socket.id}` the Socket.IO socket id;
//! - `{now}` the current time, RFC 3339 UTC with milliseconds (`2024-01-20T14:30:00.000Z`);
//! - `{error}` the refusal message, in error templates only;
//! - `{result}` the backend's answer, `{result.data}` a field of it, in `rpc` replies only;
//! - anything else is a claim of the token: `{sub}`, `{tenant_id}`, or a path into an object
//!   claim (`{org.id}`; a claim whose own name contains the dots wins).

use crate::acl::template::{lex, Token};
use crate::auth::ClaimSource;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// What a template may refer to, by where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scope {
    /// The event's arguments (`{args...}`): not at connect, not in error templates.
    pub(crate) args: bool,
    /// The refusal message (`{error}`): error templates only.
    pub(crate) error: bool,
    /// A backend's answer (`{result}`): the replies of `rpc` routes only.
    pub(crate) result: bool,
}

impl Scope {
    pub(crate) const EVENT: Scope = Scope {
        args: true,
        error: false,
        result: false,
    };
    pub(crate) const CONNECT: Scope = Scope {
        args: false,
        error: false,
        result: false,
    };
    pub(crate) const ERROR: Scope = Scope {
        args: false,
        error: true,
        result: false,
    };
    pub(crate) const RPC_REPLY: Scope = Scope {
        args: true,
        error: false,
        result: true,
    };
}

/// Everything a template can be rendered with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) claims: &'a dyn ClaimSource,
    pub(crate) args: &'a [Value],
    pub(crate) socket_id: &'a str,
    pub(crate) now: SystemTime,
    pub(crate) error: Option<&'a str>,
    /// The backend's answer, for the reply of an `rpc` route.
    pub(crate) result: Option<&'a Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Args,
    SocketId,
    Now,
    Error,
    Result,
    /// The whole placeholder text, tried as one claim name before it is read as a path.
    Claim(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    source: Source,
    /// Steps after the source: object keys, or array indexes written in decimal.
    path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Value(Placeholder),
}

/// A string template: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text {
    source: String,
    pieces: Vec<Piece>,
}

impl Text {
    /// Parses `source`; the error names the template and what is wrong with it.
    pub(crate) fn parse(source: &str, scope: Scope) -> Result<Text, String> {
        Ok(Text {
            source: source.to_string(),
            pieces: parse(source, scope)?,
        })
    }

    /// Renders a room name: every placeholder must give a non-empty string, a number or a
    /// boolean. Otherwise the error says which placeholder did not.
    pub(crate) fn render_name(&self, ctx: &Context<'_>) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Value(placeholder) => match resolve(placeholder, ctx).as_deref() {
                    Some(Value::String(s)) if !s.is_empty() => out.push_str(s),
                    Some(Value::Number(n)) => out.push_str(&n.to_string()),
                    Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
                    _ => {
                        return Err(format!(
                            "`{}` in `{}` is missing or not a string or number",
                            placeholder_text(placeholder),
                            self.source
                        ))
                    }
                },
            }
        }
        Ok(out)
    }

    /// Renders as [`render_text`](Self::render_text) does; `None` when that is empty.
    pub(crate) fn render_optional(&self, ctx: &Context<'_>) -> Option<String> {
        Some(self.render_text(ctx)).filter(|text| !text.is_empty())
    }

    /// Renders into text: strings as they are, numbers and booleans as their JSON text, arrays
    /// and objects as compact JSON, missing values and `null` as nothing.
    fn render_text(&self, ctx: &Context<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Value(placeholder) => match resolve(placeholder, ctx).as_deref() {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        out
    }

    /// The single placeholder, when the template is exactly one placeholder.
    fn exact(&self) -> Option<&Placeholder> {
        match self.pieces.as_slice() {
            [Piece::Value(placeholder)] => Some(placeholder),
            _ => None,
        }
    }

    fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }
}

/// A JSON data template: a value whose strings are [`Text`] templates. A string that is exactly
/// one placeholder keeps the JSON type of what it renders (a number stays a number, an object
/// an object, a missing value is `null`); placeholders inside longer strings render as text.
/// Object keys are literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    Literal(Value),
    Exact(Box<Placeholder>),
    Text(Text),
    Array(Vec<Data>),
    Object(Vec<(String, Data)>),
}

impl Data {
    /// Compiles a JSON value. On error, returns the path below `key` of the offending string
    /// (`key.message`, `key[2]`) and what is wrong with it.
    pub(crate) fn compile(
        value: &Value,
        key: &str,
        scope: Scope,
    ) -> Result<Data, (String, String)> {
        Ok(match value {
            Value::String(s) => {
                let text = Text::parse(s, scope).map_err(|e| (key.to_string(), e))?;
                if let Some(placeholder) = text.exact() {
                    Data::Exact(Box::new(placeholder.clone()))
                } else if text.is_literal() {
                    Data::Literal(Value::String(text.render_literal()))
                } else {
                    Data::Text(text)
                }
            }
            Value::Array(items) => Data::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Data::compile(item, &format!("{key}[{i}]"), scope))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Data::Object(
                map.iter()
                    .map(|(name, item)| {
                        Data::compile(item, &format!("{key}.{name}"), scope)
                            .map(|data| (name.clone(), data))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            scalar => Data::Literal(scalar.clone()),
        })
    }

    /// Renders the value.
    pub(crate) fn render(&self, ctx: &Context<'_>) -> Value {
        match self {
            Data::Literal(value) => value.clone(),
            Data::Exact(placeholder) => resolve(placeholder, ctx)
                .map(Cow::into_owned)
                .unwrap_or(Value::Null),
            Data::Text(text) => Value::String(text.render_text(ctx)),
            Data::Array(items) => Value::Array(items.iter().map(|d| d.render(ctx)).collect()),
            Data::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(name, d)| (name.clone(), d.render(ctx)))
                    .collect(),
            ),
        }
    }
}

impl Text {
    fn render_literal(&self) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            if let Piece::Literal(text) = piece {
                out.push_str(text);
            }
        }
        out
    }
}

fn parse(source: &str, scope: Scope) -> Result<Vec<Piece>, String> {
    let error = |problem: &str, position: usize| {
        format!("template `{source}`: {problem} at byte {position}")
    };
    let tokens = lex(source, false).map_err(|(problem, at)| error(problem, at))?;
    let mut pieces = Vec::new();
    for token in tokens {
        match token {
            Token::Literal(text) => pieces.push(Piece::Literal(text)),
            Token::Placeholder(name, at) => {
                let placeholder =
                    placeholder(&name, scope).map_err(|problem| error(&problem, at))?;
                pieces.push(Piece::Value(placeholder));
            }
            // No wildcards in routing templates: `*` is literal text there.
            Token::Star => pieces.push(Piece::Literal("*".into())),
        }
    }
    Ok(pieces)
}

fn placeholder(name: &str, scope: Scope) -> Result<Placeholder, String> {
    if name.is_empty() {
        return Err("empty placeholder".into());
    }
    let mut steps = name.split('.').map(str::trim);
    let root = steps.next().unwrap_or_default();
    let path: Vec<String> = steps.map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!("empty step in `{{{name}}}`"));
    }
    let only = |source: Source, what: &str| {
        if path.is_empty() {
            Ok(Placeholder {
                source,
                path: Vec::new(),
            })
        } else {
            Err(format!("`{{{root}}}` is {what} and has no fields"))
        }
    };
    match root {
        "args" => {
            if !scope.args {
                return Err(if scope.error {
                    "error templates cannot use the event's arguments (`{args}`)".into()
                } else {
                    "there are no event arguments at connect (`{args}`)".into()
                });
            }
            if path.first().is_some_and(|i| i.parse::<usize>().is_err()) {
                return Err(format!(
                    "`{{{name}}}`: `args` is followed by an argument index, e.g. `{{args.0.id}}`"
                ));
            }
            Ok(Placeholder {
                source: Source::Args,
                path,
            })
        }
        "socket" => match path.as_slice() {
            [id] if id == "id" => Ok(Placeholder {
                source: Source::SocketId,
                path: Vec::new(),
            }),
            _ => Err(format!(
                "`{{{name}}}`: the socket offers only `{{socket.id}}`"
            )),
        },
        "now" => only(Source::Now, "the current time"),
        "result" if scope.result => Ok(Placeholder {
            source: Source::Result,
            path,
        }),
        "result" => Err("only the replies of `rpc` routes may use `{result}`".into()),
        "error" if scope.error => only(Source::Error, "the refusal message"),
        "error" => Err("only error templates may use `{error}`".into()),
        _ => Ok(Placeholder {
            source: Source::Claim(name.to_string()),
            path: name.split('.').map(|s| s.trim().to_string()).collect(),
        }),
    }
}

fn placeholder_text(placeholder: &Placeholder) -> String {
    let root = match &placeholder.source {
        Source::Args => "args",
        Source::SocketId => "socket.id",
        Source::Now => "now",
        Source::Error => "error",
        Source::Result => "result",
        Source::Claim(name) => return format!("{{{name}}}"),
    };
    let mut text = format!("{{{root}");
    for step in &placeholder.path {
        text.push('.');
        text.push_str(step);
    }
    text.push('}');
    text
}

fn resolve<'a>(placeholder: &Placeholder, ctx: &Context<'a>) -> Option<Cow<'a, Value>> {
    match &placeholder.source {
        Source::Args => match placeholder.path.split_first() {
            None => Some(Cow::Owned(Value::Array(ctx.args.to_vec()))),
            Some((index, rest)) => {
                let arg = ctx.args.get(index.parse::<usize>().ok()?)?;
                walk(arg, rest).map(Cow::Borrowed)
            }
        },
        Source::SocketId => Some(Cow::Owned(Value::String(ctx.socket_id.to_string()))),
        Source::Now => Some(Cow::Owned(Value::String(rfc3339_millis(ctx.now)))),
        Source::Error => ctx.error.map(|e| Cow::Owned(Value::String(e.to_string()))),
        Source::Result => walk(ctx.result?, &placeholder.path).map(Cow::Borrowed),
        Source::Claim(name) => {
            if let Some(value) = ctx.claims.claim(name) {
                return Some(Cow::Borrowed(value));
            }
            let (first, rest) = placeholder.path.split_first()?;
            if rest.is_empty() {
                return None;
            }
            walk(ctx.claims.claim(first)?, rest).map(Cow::Borrowed)
        }
    }
}

/// The value at `path` (object keys, array indexes in decimal) inside `value`.
pub(crate) fn walk<'a>(mut value: &'a Value, path: &[String]) -> Option<&'a Value> {
    for step in path {
        value = match value {
            Value::Object(map) => map.get(step)?,
            Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// `time` as JavaScript's `Date.prototype.toISOString` writes it: `2024-01-20T14:30:00.000Z`.
/// Times before 1970 are written as the epoch.
pub(crate) fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Year, month, day of the proleptic Gregorian calendar, `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use serde_json::{json, Map};

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    struct Fixture {
        claims: Map<String, Value>,
        args: Vec<Value>,
    }

    impl Fixture {
        fn ctx(&self) -> Context<'_> {
            Context {
                claims: &self.claims,
                args: &self.args,
                socket_id: "sid-1",
                now: UNIX_EPOCH + Duration::from_millis(1_705_761_000_123),
                error: Some("room not allowed"),
                result: None,
            }
        }
    }

    fn fixture() -> Fixture {
        Fixture {
            claims: map(json!({
                "sub": "7", "tenant_id": 42, "org": {"id": "o1"}, "a.b": "dotted", "shops": [1, 2]
            })),
            args: vec![
                json!({"tenant_id": 1, "name": "", "items": [10, 20]}),
                json!("room-x"),
            ],
        }
    }

    const ALL: Scope = Scope {
        args: true,
        error: true,
        result: true,
    };

    fn data(value: Value) -> Value {
        let f = fixture();
        Data::compile(&value, "data", ALL).unwrap().render(&f.ctx())
    }

    #[test]
    fn exact_placeholders_keep_their_json_type() {
        assert_eq!(data(json!("{args.0.tenant_id}")), json!(1));
        assert_eq!(data(json!("{tenant_id}")), json!(42));
        assert_eq!(data(json!("{org}")), json!({"id": "o1"}));
        assert_eq!(data(json!("{shops}")), json!([1, 2]));
        assert_eq!(data(json!("{args.0.items.1}")), json!(20));
        assert_eq!(data(json!("{args.1}")), json!("room-x"));
        assert_eq!(data(json!("{args}")).as_array().map(Vec::len), Some(2));
        assert_eq!(data(json!("{ sub }")), json!("7"));
        assert_eq!(data(json!("{missing}")), Value::Null);
        assert_eq!(data(json!("{args.5.x}")), Value::Null);
        assert_eq!(data(json!("{socket.id}")), json!("sid-1"));
        assert_eq!(data(json!("{error}")), json!("room not allowed"));
        assert_eq!(data(json!("{now}")), json!("2024-01-20T14:30:00.123Z"));
    }

    #[test]
    fn placeholders_inside_text_render_as_text() {
        assert_eq!(
            data(json!("Subscribed to tenant {args.0.tenant_id} updates")),
            json!("Subscribed to tenant 1 updates")
        );
        assert_eq!(data(json!("[{missing}]")), json!("[]"));
        assert_eq!(
            data(json!("o={org} s={shops}")),
            json!("o={\"id\":\"o1\"} s=[1,2]")
        );
        assert_eq!(data(json!("{org.id}/{a.b}")), json!("o1/dotted"));
        assert_eq!(data(json!("{{literal}}")), json!("{literal}"));
    }

    #[test]
    fn nested_data_and_literals() {
        assert_eq!(
            data(json!({"tenant_id": "{args.0.tenant_id}", "ok": true, "list": ["{sub}", 3]})),
            json!({"tenant_id": 1, "ok": true, "list": ["7", 3]})
        );
    }

    #[test]
    fn room_names_need_a_value_for_every_placeholder() {
        let f = fixture();
        let name = |t: &str| Text::parse(t, ALL).unwrap().render_name(&f.ctx());
        assert_eq!(name("tenant:{args.0.tenant_id}").unwrap(), "tenant:1");
        assert_eq!(name("custom:{args.1}").unwrap(), "custom:room-x");
        assert_eq!(name("user:{sub}").unwrap(), "user:7");
        for bad in [
            "t:{args.0.name}",
            "t:{args.0.items}",
            "t:{args.2}",
            "t:{org}",
            "t:{nope}",
        ] {
            let e = name(bad).unwrap_err();
            assert!(e.contains("is missing or not a string or number"), "{e}");
        }
    }

    #[test]
    fn scope_and_syntax_errors() {
        let err = |t: &str, scope| Text::parse(t, scope).unwrap_err();
        assert!(err("{args.0}", Scope::CONNECT).contains("no event arguments at connect"));
        assert!(err("{args.0}", Scope::ERROR).contains("error templates cannot"));
        assert!(err("{error}", Scope::EVENT).contains("only error templates"));
        assert!(err("{args.x}", ALL).contains("argument index"));
        assert!(err("{socket.ip}", ALL).contains("only `{socket.id}`"));
        assert!(err("{now.ms}", ALL).contains("has no fields"));
        assert!(err("{a..b}", ALL).contains("empty step"));
        assert!(err("x{", ALL).contains("unclosed `{`"));
        assert!(err("x}", ALL).contains("unmatched `}`"));
        assert!(err("{}", ALL).contains("empty placeholder"));
        assert!(err("{a{b}}", ALL).contains("`{` inside a placeholder"));
        let (key, e) = Data::compile(&json!({"m": ["ok", "{oops"]}), "k", ALL).unwrap_err();
        assert_eq!(key, "k.m[1]");
        assert!(e.starts_with("template `{oops`"), "{e}");
    }

    #[test]
    fn timestamps_match_javascript_iso_strings() {
        let at = |ms: u64| rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_729_771_199_999), "2024-10-24T11:59:59.999Z");
        assert_eq!(at(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
