//! Claim templates (`user:{sub}`, `shop:{shop_ids}`) and room patterns (`order:*`,
//! `tenant:{tenants}`): parsing, rendering a template with a token's claims, and matching a room
//! name against either without expanding placeholders, in time polynomial in the room's length.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::auth::ClaimSource;

/// The most rooms one template renders to; the cartesian product of several array claims is
/// cut there.
pub const MAX_RENDERED_ROOMS: usize = 1024;

/// A template or pattern that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}`: {problem} at byte {position}")]
pub struct TemplateError {
    /// The text that failed to parse.
    pub template: String,
    /// What is wrong.
    pub problem: &'static str,
    /// Byte offset of the offending brace.
    pub position: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// A claim name; its values are matched literally, never as wildcards.
    Claim(String),
    /// `*` in a pattern: any run of characters, including none.
    Star,
}

/// A room name template: literal text with `{claim}` placeholders; `{{` and `}}` stand for
/// literal braces. Rendered against a token's claims by [`Template::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

impl Template {
    /// Parses a template; an unbalanced brace or an empty `{}` is an error naming the template.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Ok(Template {
            source: source.to_string(),
            segments: parse(source, false)?,
        })
    }

    /// The text the template was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The claim names the template refers to, in order.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        claim_names(&self.segments)
    }

    /// The rooms this template gives for `claims`: string, number and boolean claims insert their
    /// text; an array claim gives one room per element (several array placeholders give their
    /// cartesian product, deduplicated and cut at [`MAX_RENDERED_ROOMS`]); a missing, null or
    /// object claim, an empty string or an empty array gives no room at all.
    pub fn render<C: ClaimSource + ?Sized>(&self, claims: &C) -> Vec<String> {
        let mut rooms = vec![String::new()];
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => rooms.iter_mut().for_each(|room| room.push_str(text)),
                Segment::Claim(name) => {
                    let values = claim_values(claims.claim(name));
                    let mut next =
                        Vec::with_capacity((rooms.len() * values.len()).min(MAX_RENDERED_ROOMS));
                    'product: for room in &rooms {
                        for value in &values {
                            if next.len() == MAX_RENDERED_ROOMS {
                                break 'product;
                            }
                            next.push(format!("{room}{value}"));
                        }
                    }
                    rooms = next;
                }
                // Templates are parsed without wildcards.
                Segment::Star => {}
            }
            if rooms.is_empty() {
                break;
            }
        }
        let mut seen = HashSet::with_capacity(rooms.len());
        rooms.retain(|room| seen.insert(room.clone()));
        rooms
    }

    /// Whether `room` is one of the rooms [`Template::render`] gives for `claims` (without
    /// rendering them, so an array claim with many elements costs no allocation per element).
    pub fn matches<C: ClaimSource + ?Sized>(&self, room: &str, claims: &C) -> bool {
        matches(&self.segments, room, claims)
    }
}

impl FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse(s)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A room pattern of the ACL: a template in which `*` matches any run of characters (including
/// none). Claim values are matched literally: a `*` inside a claim value is not a wildcard.
/// There is no escape for a literal `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPattern {
    source: String,
    segments: Vec<Segment>,
}

impl RoomPattern {
    /// Parses a pattern; an unbalanced brace or an empty `{}` is an error naming the pattern.
    pub fn parse(source: &str) -> Result<RoomPattern, TemplateError> {
        Ok(RoomPattern {
            source: source.to_string(),
            segments: parse(source, true)?,
        })
    }

    /// The text the pattern was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The claim names the pattern refers to, in order.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        claim_names(&self.segments)
    }

    /// Whether the whole of `room` matches, with placeholders taken from `claims` (a placeholder
    /// whose claim gives no value matches nothing).
    pub fn matches<C: ClaimSource + ?Sized>(&self, room: &str, claims: &C) -> bool {
        matches(&self.segments, room, claims)
    }
}

impl FromStr for RoomPattern {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoomPattern::parse(s)
    }
}

impl fmt::Display for RoomPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn claim_names(segments: &[Segment]) -> impl Iterator<Item = &str> {
    segments.iter().filter_map(|s| match s {
        Segment::Claim(name) => Some(name.as_str()),
        _ => None,
    })
}

/// A piece of a brace template, as [`lex`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// Literal text (`{{` and `}}` already unescaped).
    Literal(String),
    /// A `{name}` placeholder, trimmed, and the byte position of its `{`.
    Placeholder(String, usize),
    /// A `*`, when wildcards are on.
    Star,
}

/// Reads a template with `{placeholder}`s, `{{`/`}}` escapes and, when `wildcards`, `*`.
/// Errors give the problem and its byte position. Shared by the room templates here and the
/// Socket.IO routing templates.
pub(crate) fn lex(source: &str, wildcards: bool) -> Result<Vec<Token>, (&'static str, usize)> {
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut chars = source.char_indices().peekable();
    let flush = |literal: &mut String, tokens: &mut Vec<Token>| {
        if !literal.is_empty() {
            tokens.push(Token::Literal(std::mem::take(literal)));
        }
    };
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|&(_, next)| next == '{') => {
                chars.next();
                literal.push('{');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    match c {
                        '}' => {
                            closed = true;
                            break;
                        }
                        '{' => return Err(("`{` inside a placeholder", i)),
                        c => name.push(c),
                    }
                }
                if !closed {
                    return Err(("unclosed `{`", i));
                }
                flush(&mut literal, &mut tokens);
                tokens.push(Token::Placeholder(name.trim().to_string(), i));
            }
            '}' if chars.peek().is_some_and(|&(_, next)| next == '}') => {
                chars.next();
                literal.push('}');
            }
            '}' => return Err(("unmatched `}`", i)),
            '*' if wildcards => {
                flush(&mut literal, &mut tokens);
                tokens.push(Token::Star);
            }
            c => literal.push(c),
        }
    }
    flush(&mut literal, &mut tokens);
    Ok(tokens)
}

fn parse(source: &str, wildcards: bool) -> Result<Vec<Segment>, TemplateError> {
    let error = |problem, position| TemplateError {
        template: source.to_string(),
        problem,
        position,
    };
    let mut segments = Vec::new();
    for token in lex(source, wildcards).map_err(|(problem, at)| error(problem, at))? {
        match token {
            Token::Literal(text) => segments.push(Segment::Literal(text)),
            Token::Placeholder(name, at) => {
                if name.is_empty() {
                    return Err(error("empty placeholder", at));
                }
                segments.push(Segment::Claim(name));
            }
            // `**` means the same as `*`; one star keeps matching linear per segment.
            Token::Star => {
                if segments.last() != Some(&Segment::Star) {
                    segments.push(Segment::Star);
                }
            }
        }
    }
    Ok(segments)
}

/// The texts a claim contributes: scalars give one, arrays one per scalar element; empty strings,
/// null, objects and nested arrays give none (an empty value would put unrelated users in the
/// same room, e.g. every user whose `company_id` is "" into `company:`).
pub(crate) fn claim_values(value: Option<&Value>) -> Vec<Cow<'_, str>> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(value) => scalar_text(value).into_iter().collect(),
        None => Vec::new(),
    }
}

fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Whole-string match. Tracks the set of byte offsets of `room` reachable after each segment, so
/// the cost is O(segments x room length x claim values) whatever the number of stars; a
/// backtracking glob would be exponential in the stars, and room names come from clients.
fn matches<C: ClaimSource + ?Sized>(segments: &[Segment], room: &str, claims: &C) -> bool {
    let bytes = room.as_bytes();
    let n = bytes.len();
    let mut reachable = vec![false; n + 1];
    reachable[0] = true;
    let mut next = vec![false; n + 1];
    for segment in segments {
        next.iter_mut().for_each(|b| *b = false);
        match segment {
            Segment::Literal(text) => advance(&reachable, &mut next, bytes, text.as_bytes()),
            Segment::Claim(name) => {
                for value in claim_values(claims.claim(name)) {
                    advance(&reachable, &mut next, bytes, value.as_bytes());
                }
            }
            Segment::Star => {
                if let Some(first) = reachable.iter().position(|&b| b) {
                    for (offset, slot) in next.iter_mut().enumerate().skip(first) {
                        // Offsets reached by literals are char boundaries already; a star must
                        // not stop inside a character either.
                        *slot = room.is_char_boundary(offset);
                    }
                }
            }
        }
        std::mem::swap(&mut reachable, &mut next);
        if !reachable.contains(&true) {
            return false;
        }
    }
    reachable[n]
}

fn advance(reachable: &[bool], next: &mut [bool], room: &[u8], text: &[u8]) {
    for (offset, _) in reachable.iter().enumerate().filter(|(_, &r)| r) {
        if room
            .get(offset..)
            .is_some_and(|rest| rest.starts_with(text))
        {
            next[offset + text.len()] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Claims;
    use serde_json::{json, Map};

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// Renders with the full claim map and with its compact form, which must agree.
    fn render(template: &str, c: Value) -> Vec<String> {
        let t = Template::parse(template).unwrap();
        let map = claims(c);
        let rooms = t.render(&map);
        assert_eq!(t.render(&Claims::from(map)), rooms, "{template}");
        rooms
    }

    /// Matches with the full claim map and with its compact form, which must agree.
    fn pattern_matches(pattern: &str, room: &str, c: Value) -> bool {
        let p = RoomPattern::parse(pattern).unwrap();
        let map = claims(c);
        let matched = p.matches(room, &map);
        assert_eq!(
            p.matches(room, &Claims::from(map)),
            matched,
            "{pattern} {room}"
        );
        matched
    }

    #[test]
    fn scalar_claims_render_their_text() {
        let c = json!({"sub": "7", "tenant_id": 42, "admin": true, "score": 1.5});
        assert_eq!(render("user:{sub}", c.clone()), ["user:7"]);
        assert_eq!(render("tenant:{tenant_id}", c.clone()), ["tenant:42"]);
        assert_eq!(render("flag:{admin}", c.clone()), ["flag:true"]);
        assert_eq!(render("s:{score}", c.clone()), ["s:1.5"]);
        assert_eq!(render("{sub}", c.clone()), ["7"]);
        assert_eq!(render("lobby", c), ["lobby"]);
    }

    #[test]
    fn arrays_expand_and_products_are_capped() {
        let c = json!({"shop_ids": [3, "4", 3, null, {"x": 1}, ""], "roles": ["a", "b"]});
        assert_eq!(render("shop:{shop_ids}", c.clone()), ["shop:3", "shop:4"]);
        assert_eq!(
            render("{roles}/{shop_ids}", c),
            ["a/3", "a/4", "b/3", "b/4"]
        );
        let many: Vec<u32> = (0..100).collect();
        let rooms = render("{a}:{b}", json!({"a": many, "b": many}));
        assert_eq!(rooms.len(), MAX_RENDERED_ROOMS);
        assert_eq!(rooms[0], "0:0");
    }

    #[test]
    fn missing_null_object_empty_claims_give_no_room() {
        for c in [
            json!({}),
            json!({"x": null}),
            json!({"x": {"a": 1}}),
            json!({"x": ""}),
            json!({"x": []}),
        ] {
            assert!(render("r:{x}", c.clone()).is_empty(), "{c}");
            assert!(render("r:{x}:{y}", c).is_empty());
        }
        assert!(render("{x}-{y}", json!({"x": "a"})).is_empty());
    }

    #[test]
    fn braces_escape_and_unbalanced_braces_are_errors() {
        assert_eq!(render("a{{b}}{x}", json!({"x": 1})), ["a{b}1"]);
        assert_eq!(render("{ x }", json!({"x": 1})), ["1"]);
        for (bad, problem) in [
            ("shop:{shop_ids", "unclosed `{`"),
            ("shop:}", "unmatched `}`"),
            ("a{}", "empty placeholder"),
            ("a{b{c}}", "`{` inside a placeholder"),
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert_eq!(e.problem, problem, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert!(RoomPattern::parse("order:{id").is_err());
    }

    #[test]
    fn template_star_is_literal_and_claims_are_listed() {
        let t = Template::parse("x:*:{a}:{b}").unwrap();
        assert_eq!(t.claims().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(t.render(&claims(json!({"a": 1, "b": 2}))), ["x:*:1:2"]);
        assert_eq!(t.to_string(), "x:*:{a}:{b}");
    }

    #[test]
    fn template_matching_agrees_with_rendering() {
        let t = Template::parse("shop:{shop_ids}").unwrap();
        let map = claims(json!({"shop_ids": [3, 4]}));
        let compact = Claims::from(map.clone());
        for c in [&map as &dyn ClaimSource, &compact] {
            assert!(t.matches("shop:3", c) && t.matches("shop:4", c));
            assert!(!t.matches("shop:5", c) && !t.matches("shop:34", c) && !t.matches("shop:", c));
        }
    }

    #[test]
    fn star_matches_any_run_including_empty() {
        assert!(pattern_matches("order:*", "order:42", json!({})));
        assert!(pattern_matches("order:*", "order:", json!({})));
        assert!(!pattern_matches("order:*", "xorder:1", json!({})));
        assert!(!pattern_matches("order:*", "order", json!({})));
        assert!(pattern_matches("*", "", json!({})));
        assert!(pattern_matches("a*b*c", "abc", json!({})));
        assert!(pattern_matches("a*b*c", "aXbYbZc", json!({})));
        assert!(!pattern_matches("a*b*c", "aXbYcZ", json!({})));
        assert!(pattern_matches("*:é*", "x:é€", json!({})));
        assert!(pattern_matches("a**b", "ab", json!({})));
        assert!(pattern_matches("chat:lobby", "chat:lobby", json!({})));
        assert!(!pattern_matches("chat:lobby", "chat:lobby2", json!({})));
    }

    #[test]
    fn claim_placeholders_match_literally() {
        let c = json!({"tenants": ["a", "b"], "wild": "*", "sub": 7});
        assert!(pattern_matches("tenant:{tenants}", "tenant:a", c.clone()));
        assert!(pattern_matches("tenant:{tenants}", "tenant:b", c.clone()));
        assert!(!pattern_matches("tenant:{tenants}", "tenant:c", c.clone()));
        assert!(!pattern_matches("tenant:{tenants}", "tenant:ab", c.clone()));
        assert!(!pattern_matches("tenant:{tenants}", "tenant:", c.clone()));
        // A claim value is never a wildcard.
        assert!(pattern_matches("x:{wild}", "x:*", c.clone()));
        assert!(!pattern_matches("x:{wild}", "x:anything", c.clone()));
        assert!(pattern_matches("chat:{sub}:*", "chat:7:room", c.clone()));
        assert!(!pattern_matches("chat:{sub}:*", "chat:8:room", c.clone()));
        assert!(!pattern_matches("chat:{missing}:*", "chat::room", c));
    }

    #[test]
    fn many_stars_against_a_long_room_stay_fast() {
        let pattern = RoomPattern::parse("*a*a*a*a*a*a*a*a*a*a*b").unwrap();
        let room = "a".repeat(4096);
        assert!(!pattern.matches(&room, &Map::new()));
    }
}
