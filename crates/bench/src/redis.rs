//! The Redis a cluster run shares, spoken to over RESP2 without a client library: the
//! generator needs four commands. `PING` tells that it answers, `INFO server` gives its version
//! and process id (its CPU time is then read from `/proc`, like the servers'), `SCAN` counts
//! the keys under a run's own prefix and, with `DEL`, removes them at the end. Never `FLUSHDB`:
//! the Redis is shared. The reply parser takes bytes, so it is tested on fixed examples.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time allowed for connecting and for each command.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Keys asked for per `SCAN` call.
const SCAN_COUNT: &str = "1000";

/// Where the Redis is: `redis://[host][:port][/db]`, without credentials or TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) db: u32,
}

impl RedisUrl {
    /// Parses `redis://[host][:port][/db]`; the host defaults to 127.0.0.1, the port to 6379
    /// and the database to 0.
    pub(crate) fn parse(url: &str) -> Result<RedisUrl> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| anyhow!("`{url}`: only redis:// URLs are taken"))?;
        if rest.contains('@') || rest.contains('?') {
            bail!("`{url}`: credentials and options are not taken");
        }
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse()
                    .with_context(|| format!("`{url}`: bad port `{port}`"))?,
            ),
            None => (authority, 6379),
        };
        let db = if db.is_empty() {
            0
        } else {
            db.parse()
                .with_context(|| format!("`{url}`: bad database `{db}`"))?
        };
        Ok(RedisUrl {
            host: if host.is_empty() { "127.0.0.1" } else { host }.to_string(),
            port,
            db,
        })
    }
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None`: the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A malformed reply.
#[derive(Debug, thiserror::Error)]
#[error("malformed Redis reply: {0}")]
pub(crate) struct ReplyError(&'static str);

/// Reads one reply from the start of `buf`: `Ok(None)` means that more bytes are needed,
/// `Ok(Some((reply, used)))` that the reply took the first `used` bytes.
pub(crate) fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], at: usize) -> Result<Option<(Reply, usize)>, ReplyError> {
    let Some(end) = buf
        .get(at..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"\r\n"))
    else {
        return Ok(None);
    };
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&buf[at + 1..at + end]).into_owned();
    let next = at + end + 2;
    let number = || line.parse::<i64>().map_err(|_| ReplyError("bad length"));
    Ok(Some(match kind {
        b'+' => (Reply::Simple(line), next),
        b'-' => (Reply::Error(line), next),
        b':' => (Reply::Integer(number()?), next),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Some((Reply::Bulk(None), next)));
            };
            let Some(data) = buf.get(next..next + len) else {
                return Ok(None);
            };
            if buf.get(next + len..next + len + 2).is_none() {
                return Ok(None);
            }
            (Reply::Bulk(Some(data.to_vec())), next + len + 2)
        }
        b'*' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Some((Reply::Array(None), next)));
            };
            let mut items = Vec::with_capacity(len.min(1024));
            let mut at = next;
            for _ in 0..len {
                let Some((item, used)) = parse_at(buf, at)? else {
                    return Ok(None);
                };
                items.push(item);
                at = used;
            }
            (Reply::Array(Some(items)), at)
        }
        _ => return Err(ReplyError("unknown type byte")),
    }))
}

/// A command as RESP2 bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `key:value` from the text of `INFO`.
fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// One connection to the Redis.
#[derive(Debug)]
pub(crate) struct Redis {
    stream: TcpStream,
    buf: BytesMut,
}

/// What `INFO server` says of the Redis.
#[derive(Debug, Clone)]
pub(crate) struct RedisInfo {
    pub(crate) version: String,
    /// Its process id, when it runs on this machine (it is then in `/proc`).
    pub(crate) pid: Option<u32>,
}

impl Redis {
    /// Connects, selects the URL's database and checks that the server answers `PING`.
    pub(crate) async fn connect(url: &RedisUrl) -> Result<Redis> {
        let addr = (url.host.as_str(), url.port);
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("no connection within {} s", TIMEOUT.as_secs()))??;
        let mut redis = Redis {
            stream,
            buf: BytesMut::with_capacity(4096),
        };
        if url.db != 0 {
            redis.command(&["SELECT", &url.db.to_string()]).await?;
        }
        match redis.command(&["PING"]).await? {
            Reply::Simple(pong) if pong == "PONG" => Ok(redis),
            other => bail!("PING answered {other:?}"),
        }
    }

    /// Sends one command and reads its reply; an error reply is an error.
    pub(crate) async fn command(&mut self, args: &[&str]) -> Result<Reply> {
        let name = args.first().copied().unwrap_or("");
        let exchange = async {
            self.stream.write_all(&encode(args)).await?;
            loop {
                if let Some((reply, used)) = parse_reply(&self.buf)? {
                    self.buf.advance(used);
                    return Ok::<_, anyhow::Error>(reply);
                }
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    bail!("the connection closed");
                }
            }
        };
        let reply = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow!("no answer within {} s", TIMEOUT.as_secs()))?
            .with_context(|| format!("Redis {name}"))?;
        match reply {
            Reply::Error(e) => bail!("Redis {name}: {e}"),
            reply => Ok(reply),
        }
    }

    /// The server's version and process id.
    pub(crate) async fn info(&mut self) -> Result<RedisInfo> {
        let info = self
            .command(&["INFO", "server"])
            .await?
            .text()
            .ok_or_else(|| anyhow!("INFO answered no text"))?;
        Ok(RedisInfo {
            version: info_field(&info, "redis_version")
                .unwrap_or("?")
                .to_string(),
            pid: info_field(&info, "process_id").and_then(|pid| pid.parse().ok()),
        })
    }

    /// Deletes every key whose name starts with `prefix`, and says how many there were.
    pub(crate) async fn delete_prefixed(&mut self, prefix: &str) -> Result<u64> {
        let pattern = prefix_pattern(prefix);
        let mut cursor = "0".to_string();
        let mut deleted = 0;
        loop {
            let (next, keys) = self.scan_page(&cursor, &pattern).await?;
            if !keys.is_empty() {
                let mut args = vec!["DEL"];
                args.extend(keys.iter().map(String::as_str));
                if let Reply::Integer(n) = self.command(&args).await? {
                    deleted += n.max(0) as u64;
                }
            }
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Counts the keys whose name starts with `prefix`.
    pub(crate) async fn count_prefixed(&mut self, prefix: &str) -> Result<u64> {
        let pattern = prefix_pattern(prefix);
        let mut cursor = "0".to_string();
        let mut count = 0;
        loop {
            let (next, keys) = self.scan_page(&cursor, &pattern).await?;
            count += keys.len() as u64;
            if next == "0" {
                return Ok(count);
            }
            cursor = next;
        }
    }

    /// One `SCAN` call: the next cursor (`"0"` at the end) and the keys of this page, which
    /// may be none.
    async fn scan_page(&mut self, cursor: &str, pattern: &str) -> Result<(String, Vec<String>)> {
        let reply = self
            .command(&["SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT])
            .await?;
        let Reply::Array(Some(parts)) = reply else {
            bail!("SCAN answered {reply:?}");
        };
        let (Some(next), Some(Reply::Array(Some(keys)))) =
            (parts.first().and_then(Reply::text), parts.get(1))
        else {
            bail!("SCAN answered {parts:?}");
        };
        Ok((next, keys.iter().filter_map(Reply::text).collect()))
    }
}

/// `SCAN`'s glob for the keys starting with `prefix`: its special characters escaped, then `*`.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_default_host_port_and_database() {
        let url = RedisUrl::parse("redis://127.0.0.1:6379/0").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("127.0.0.1", 6379, 0)
        );
        let url = RedisUrl::parse("redis://").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("127.0.0.1", 6379, 0)
        );
        let url = RedisUrl::parse("redis://localhost:6380/3").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("localhost", 6380, 3)
        );
        assert!(RedisUrl::parse("rediss://127.0.0.1").is_err());
        assert!(RedisUrl::parse("redis://user:pw@127.0.0.1").is_err());
    }

    #[test]
    fn replies_of_every_type() {
        assert_eq!(
            parse_reply(b"+PONG\r\n").unwrap(),
            Some((Reply::Simple("PONG".into()), 7))
        );
        assert_eq!(
            parse_reply(b"-ERR no\r\n").unwrap(),
            Some((Reply::Error("ERR no".into()), 9))
        );
        assert_eq!(
            parse_reply(b":42\r\n+x").unwrap(),
            Some((Reply::Integer(42), 5))
        );
        assert_eq!(
            parse_reply(b"$-1\r\n").unwrap(),
            Some((Reply::Bulk(None), 5))
        );
        let scan = b"*2\r\n$1\r\n0\r\n*2\r\n$3\r\nk:1\r\n$3\r\nk:2\r\n";
        assert_eq!(
            parse_reply(scan).unwrap(),
            Some((
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"0".to_vec())),
                    Reply::Array(Some(vec![
                        Reply::Bulk(Some(b"k:1".to_vec())),
                        Reply::Bulk(Some(b"k:2".to_vec())),
                    ])),
                ])),
                scan.len()
            ))
        );
    }

    #[test]
    fn partial_replies_need_more_bytes() {
        let whole = b"*2\r\n$3\r\nabc\r\n:7\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse_reply(&whole[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse_reply(whole).unwrap().is_some());
        assert!(parse_reply(b"!x\r\n").is_err());
    }

    #[test]
    fn commands_are_bulk_strings() {
        assert_eq!(
            encode(&["DEL", "a:b"]),
            b"*2\r\n$3\r\nDEL\r\n$3\r\na:b\r\n".to_vec()
        );
    }

    #[test]
    fn prefix_patterns_escape_glob_characters() {
        assert_eq!(prefix_pattern("rc-bench-1-ab:"), "rc-bench-1-ab:*");
        assert_eq!(prefix_pattern("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:*");
    }

    #[test]
    fn info_fields_are_read_by_key() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:2242\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "process_id"), Some("2242"));
        assert_eq!(info_field(info, "tcp_port"), None);
    }
}
