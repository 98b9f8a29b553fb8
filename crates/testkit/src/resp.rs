//! A minimal RESP client over a blocking socket, enough to ask a server `PING` or `INFO`
//! before any real client connects. Every read and write has a deadline.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The largest bulk reply read; `INFO` answers a few kilobytes.
const MAX_BULK: usize = 1 << 20;

/// A reply, as far as these checks need one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`, `+PONG`.
    Simple(String),
    /// `-ERR ...`, `-LOADING ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$n` followed by n bytes, or `$-1`.
    Bulk(Option<String>),
}

/// Sends one command to `addr` and reads its reply, all within `timeout`.
pub(crate) fn command(addr: SocketAddr, args: &[&str], timeout: Duration) -> io::Result<Reply> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{}\r\n", arg.len(), arg));
    }
    (&stream).write_all(out.as_bytes())?;
    let mut reader = BufReader::new(&stream);
    read_reply(&mut reader)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (tag, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| invalid("empty reply"))?;
    match tag {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest
            .parse()
            .map(Reply::Integer)
            .map_err(|_| invalid("bad integer")),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| invalid("bad bulk length"))?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Reply::Bulk(None));
            };
            if len > MAX_BULK {
                return Err(invalid("bulk reply too long"));
            }
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            String::from_utf8(body)
                .map(|s| Reply::Bulk(Some(s)))
                .map_err(|_| invalid("bulk reply not UTF-8"))
        }
        _ => Err(invalid("unexpected reply type")),
    }
}

/// Whether the server at `addr` answers `PING` with `PONG` within `timeout`.
pub(crate) fn ping(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(command(addr, &["PING"], timeout), Ok(Reply::Simple(s)) if s == "PONG")
}

/// The process id a server reports in `INFO server`, once it is ready to serve.
pub(crate) fn process_id(addr: SocketAddr, timeout: Duration) -> Option<u32> {
    let Ok(Reply::Bulk(Some(info))) = command(addr, &["INFO", "server"], timeout) else {
        return None;
    };
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut BufReader::new(bytes))
    }

    #[test]
    fn reads_each_reply_type() {
        assert_eq!(parse(b"+PONG\r\n").ok(), Some(Reply::Simple("PONG".into())));
        assert_eq!(
            parse(b"-LOADING busy\r\n").ok(),
            Some(Reply::Error("LOADING busy".into()))
        );
        assert_eq!(parse(b":42\r\n").ok(), Some(Reply::Integer(42)));
        assert_eq!(
            parse(b"$5\r\nhello\r\n").ok(),
            Some(Reply::Bulk(Some("hello".into())))
        );
        assert_eq!(parse(b"$-1\r\n").ok(), Some(Reply::Bulk(None)));
    }

    #[test]
    fn refuses_truncated_and_unknown_replies() {
        assert!(parse(b"").is_err());
        assert!(parse(b"$5\r\nhel").is_err());
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
    }
}
