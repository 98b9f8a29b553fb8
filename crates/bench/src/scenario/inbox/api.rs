//! One keep-alive HTTP/1.1 connection to the server's API, with its platform key: requests
//! one at a time, each answer read whole.

use std::net::SocketAddr;

use anyhow::Result;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

pub(super) struct Api {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    bearer: String,
}

impl Api {
    /// Opens a connection to `addr`, whose requests carry the key `key`.
    pub(super) async fn connect(addr: SocketAddr, key: &str) -> Result<Api> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Api {
            sender,
            host: addr.to_string(),
            bearer: format!("Bearer {key}"),
        })
    }

    /// `POST path` with the JSON `body`: the status and the body of the answer.
    pub(super) async fn post(&mut self, path: &str, body: String) -> Result<(StatusCode, Bytes)> {
        self.send(Method::POST, path, Bytes::from(body)).await
    }

    /// `GET path`: the status and the body of the answer.
    pub(super) async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes)> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host.as_str())
            .header(header::AUTHORIZATION, self.bearer.as_str());
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// The start of an answer's body, for an error message.
pub(super) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}
