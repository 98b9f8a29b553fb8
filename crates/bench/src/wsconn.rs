//! A subscriber's WebSocket connection over a tokio socket, written for a load generator that
//! must cost less than the servers it measures: reads take everything the socket has into one
//! large buffer per thread (a connection keeps only the part of a frame cut by a read), frames
//! are found from their headers alone, and text payloads are handed on as bytes, unvalidated
//! and uncopied. The frame format is in [`crate::wsframe`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::wsframe::{self, FrameError, Refusal};

/// Bytes one read may take: many frames of every server at once.
const READ_CHUNK: usize = 64 * 1024;
/// Reads of one connection in a row.
const MAX_READS: usize = 4;
/// The most bytes of an upgrade answer's head.
const MAX_HEAD: usize = 16 * 1024;

thread_local! {
    /// The read buffer of every connection polled on this thread: reads are synchronous
    /// (`try_read` after readiness), so one buffer per thread serves them all.
    static CHUNK: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Why a connection could not go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("upgrade refused with HTTP {0}: {1}")]
    Refused(u16, String),
    #[error("bad upgrade answer: {0}")]
    BadUpgrade(String),
    #[error("the server closed it with {0}")]
    Closed(String),
    #[error("the connection ended")]
    Ended,
}

/// What a read saw besides text messages.
#[derive(Debug, Default)]
struct Control {
    /// Payloads of pings to answer.
    pings: Vec<Vec<u8>>,
    /// A close frame's description.
    close: Option<String>,
}

/// An upgraded connection.
#[derive(Debug)]
pub(crate) struct WsConn {
    stream: TcpStream,
    /// Read and not yet used: part of one frame, between reads.
    input: Vec<u8>,
    /// A fragmented text message being put together (servers rarely fragment small events).
    fragments: Option<Vec<u8>>,
    /// Text messages read while connecting and not yet taken by [`WsConn::next_text`]: the
    /// read that brings a handshake's last answer may bring more. socketioxide sends its
    /// first Engine.IO ping as soon as the session opens, and under load it can come after
    /// the namespace's connect answer, in the same read; unanswered, the session is closed
    /// 20 s later. [`WsConn::read_some`] hands them on before reading again.
    texts: VecDeque<String>,
}

impl WsConn {
    /// Upgrades `stream` at `path` of `server`.
    pub(crate) async fn upgrade(
        mut stream: TcpStream,
        server: SocketAddr,
        path: &str,
    ) -> Result<WsConn, WsError> {
        let (request, key) = wsframe::upgrade_request(&server.to_string(), path, rand::random());
        stream.write_all(request.as_bytes()).await?;
        let mut input = Vec::with_capacity(1024);
        let end = loop {
            if let Some(end) = wsframe::head_end(&input) {
                break end;
            }
            if input.len() > MAX_HEAD {
                return Err(WsError::BadUpgrade("a head of more than 16 KiB".into()));
            }
            if stream.read_buf(&mut input).await? == 0 {
                return Err(WsError::Ended);
            }
        };
        match wsframe::check_upgrade(&input[..end], &input[end..], &key) {
            Ok(()) => {}
            Err(Refusal::Status(status, body)) => return Err(WsError::Refused(status, body)),
            Err(Refusal::Invalid(why)) => return Err(WsError::BadUpgrade(why)),
        }
        input.drain(..end);
        input.shrink_to(256);
        Ok(WsConn {
            stream,
            input,
            fragments: None,
            texts: VecDeque::new(),
        })
    }

    /// The next text message, while connecting: pings are answered, binary messages skipped.
    /// The messages one read brings after the first are kept for the next calls.
    pub(crate) async fn next_text(&mut self) -> Result<String, WsError> {
        loop {
            if let Some(text) = self.texts.pop_front() {
                return Ok(text);
            }
            let mut texts = VecDeque::new();
            let read = self
                .read_some(&mut |payload| {
                    texts.push_back(String::from_utf8_lossy(payload).into_owned());
                })
                .await;
            self.texts = texts;
            if let Err(e) = read {
                // The messages before a close are still the server's answer.
                if self.texts.is_empty() {
                    return Err(e);
                }
            }
        }
    }

    /// Waits for the socket to be readable, reads everything it has, hands every complete
    /// text message to `on_text` in order, and answers pings. Cancel-safe: nothing is read
    /// but in the poll that hands it on. Texts kept from [`WsConn::next_text`] come first,
    /// without a read.
    pub(crate) async fn read_some(
        &mut self,
        on_text: &mut impl FnMut(&[u8]),
    ) -> Result<(), WsError> {
        if !self.texts.is_empty() {
            for text in self.texts.drain(..) {
                on_text(text.as_bytes());
            }
            return Ok(());
        }
        let mut control = Control::default();
        // The upgrade's read may have taken the first frames with the answer's head.
        if self.input.is_empty() || self.pending(on_text, &mut control)? == 0 {
            std::future::poll_fn(|cx| {
                CHUNK.with_borrow_mut(|chunk| self.poll_drain(cx, chunk, on_text, &mut control))
            })
            .await?;
        }
        for ping in control.pings {
            self.send(wsframe::OP_PONG, &ping).await?;
        }
        match control.close {
            Some(close) => Err(WsError::Closed(close)),
            None => Ok(()),
        }
    }

    /// Reads until a read leaves the buffer short (the socket had nothing more: tokio then
    /// knows it is drained without another read), or [`MAX_READS`] times, so that others get
    /// their turn. Pending only when nothing was read.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut [u8],
        on_text: &mut impl FnMut(&[u8]),
        control: &mut Control,
    ) -> Poll<Result<(), WsError>> {
        for i in 0..MAX_READS {
            let mut buf = ReadBuf::new(chunk);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending if i == 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) => {}
            }
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Err(WsError::Ended));
            }
            let handed = if self.input.is_empty() {
                frames(&chunk[..n], &mut self.fragments, on_text, control).map(|used| {
                    self.input.extend_from_slice(&chunk[used..n]);
                })
            } else {
                self.input.extend_from_slice(&chunk[..n]);
                self.pending(on_text, control).map(drop)
            };
            if let Err(e) = handed {
                return Poll::Ready(Err(e.into()));
            }
            if control.close.is_some() || n < chunk.len() {
                break;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Hands on the complete frames in `input`; how many bytes they took.
    fn pending(
        &mut self,
        on_text: &mut impl FnMut(&[u8]),
        control: &mut Control,
    ) -> Result<usize, FrameError> {
        let input = std::mem::take(&mut self.input);
        let used = frames(&input, &mut self.fragments, on_text, control);
        self.input = input;
        let used = used?;
        self.input.drain(..used);
        Ok(used)
    }

    /// Sends one masked frame.
    pub(crate) async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let frame = wsframe::encode(opcode, payload, rand::random());
        self.stream.write_all(&frame).await
    }

    /// Sends a text message.
    pub(crate) async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(wsframe::OP_TEXT, text.as_bytes()).await
    }

    /// The close handshake: sends a close (1000) and reads up to the server's close or the
    /// end of the stream.
    pub(crate) async fn close(&mut self) -> Result<(), WsError> {
        self.send(wsframe::OP_CLOSE, &1000u16.to_be_bytes()).await?;
        loop {
            match self.read_some(&mut |_| {}).await {
                Ok(()) => {}
                Err(WsError::Closed(_) | WsError::Ended) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Hands on the complete frames at the start of `buf`; how many bytes they took.
fn frames(
    buf: &[u8],
    fragments: &mut Option<Vec<u8>>,
    on_text: &mut impl FnMut(&[u8]),
    control: &mut Control,
) -> Result<usize, FrameError> {
    let mut at = 0;
    while let Some(frame) = wsframe::decode(&buf[at..])? {
        let payload = &buf[at + frame.start..at + frame.end];
        at += frame.end;
        match frame.opcode {
            wsframe::OP_TEXT if frame.fin => on_text(payload),
            wsframe::OP_TEXT => *fragments = Some(payload.to_vec()),
            wsframe::OP_CONTINUATION => {
                if let Some(message) = fragments.as_mut() {
                    message.extend_from_slice(payload);
                    if frame.fin {
                        if let Some(message) = fragments.take() {
                            on_text(&message);
                        }
                    }
                }
            }
            wsframe::OP_PING => control.pings.push(payload.to_vec()),
            wsframe::OP_CLOSE => {
                control.close = Some(wsframe::describe_close(payload));
                break;
            }
            // The benchmark's servers send text; binary messages are not theirs to send.
            wsframe::OP_BINARY | wsframe::OP_PONG => {}
            // Reserved opcodes: no server of the benchmark uses them.
            _ => {}
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &[u8]) -> (usize, Vec<Vec<u8>>, Control) {
        let mut texts = Vec::new();
        let mut control = Control::default();
        let mut fragments = None;
        let used = frames(
            buf,
            &mut fragments,
            &mut |t| texts.push(t.to_vec()),
            &mut control,
        )
        .unwrap();
        (used, texts, control)
    }

    #[test]
    fn frames_of_one_read_are_handed_on_and_a_cut_one_kept() {
        let buf = [
            &[0x81, 2, b'h', b'i'][..],
            &[0x89, 1, b'p'],
            &[0x01, 1, b'a', 0x80, 1, b'b'],
            &[0x81, 5, b'c', b'u'],
        ]
        .concat();
        let (used, texts, control) = collect(&buf);
        assert_eq!(used, buf.len() - 4);
        assert_eq!(texts, [b"hi".to_vec(), b"ab".to_vec()]);
        assert_eq!(control.pings, [b"p".to_vec()]);
        assert!(control.close.is_none());
    }

    /// A server that answers the upgrade and sends `frames` in the same write, then keeps
    /// the connection open.
    async fn server_sending(frames: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        use base64::Engine as _;
        use sha1::Digest as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while wsframe::head_end(&head).is_none() {
                assert_ne!(stream.read_buf(&mut head).await.unwrap(), 0);
            }
            let text = String::from_utf8(head).unwrap();
            let key = text
                .lines()
                .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let mut sha = sha1::Sha1::new();
            sha.update(key.as_bytes());
            sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            answer.extend_from_slice(&frames);
            stream.write_all(&answer).await.unwrap();
            // Held open: a read that waited for more would wait for ever.
            std::future::pending::<()>().await;
        });
        (addr, task)
    }

    #[tokio::test]
    async fn texts_that_came_with_the_handshake_answer_are_read_next() {
        // The namespace's connect answer and an Engine.IO ping in one read: the ping must
        // reach the reader, or the server closes the session when its pong is overdue.
        let frames = [&[0x81, 2, b'4', b'0'][..], &[0x81, 1, b'2']].concat();
        let (addr, server) = server_sending(frames).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut ws = WsConn::upgrade(stream, addr, "/").await.unwrap();
        assert_eq!(ws.next_text().await.unwrap(), "40");
        let mut texts = Vec::new();
        let mut on_text = |t: &[u8]| texts.push(t.to_vec());
        let read = ws.read_some(&mut on_text);
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("the kept text is handed on without a read")
            .unwrap();
        assert_eq!(texts, [b"2".to_vec()]);
        server.abort();
    }

    #[test]
    fn a_close_stops_the_reading() {
        let buf = [&[0x88, 2, 0x03, 0xe8][..], &[0x81, 1, b'x']].concat();
        let (used, texts, control) = collect(&buf);
        assert_eq!(used, 4);
        assert!(texts.is_empty());
        assert_eq!(control.close.as_deref(), Some("close code 1000 \"\""));
    }
}
