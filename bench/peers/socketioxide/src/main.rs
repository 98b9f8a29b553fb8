//! A minimal socketioxide server for Roomcast's benchmark (`bench/run.sh`): every connection
//! presents an HS256 token in its connect auth (`{"token": "..."}`), checked with the secret
//! from `BENCH_JWT_SECRET`, and joins the room named by the token's `room` claim.
//! `POST /api/publish` with Roomcast's body (`{"rooms": [...], "event": "...", "data": ...}`)
//! emits the event to those rooms. Binds 127.0.0.1 only, on the port given as the first
//! argument or in `PORT` (0 for any), and prints `socketioxide listening on HOST:PORT`.
//!
//! With `BENCH_REDIS_URL` set (`redis://HOST:PORT/DB`), it runs as one process of several
//! sharing that Redis through `socketioxide-redis`: a publish posted to any of them reaches the
//! subscribers of all. `BENCH_REDIS_KEY` is the prefix of the adapter's channels (default
//! `socket.io`), so that runs sharing a Redis do not hear each other.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use socketioxide_redis::drivers::redis::redis_client;
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

#[derive(Debug, Deserialize)]
struct Auth {
    token: String,
}

#[derive(Debug, Deserialize)]
struct Publish {
    rooms: Vec<String>,
    event: String,
    #[serde(default)]
    data: Value,
}

#[derive(Debug)]
struct InvalidToken;

impl std::fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid token")
    }
}

/// The claims of a token, without checking it.
fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// The claims of a valid, unexpired HS256 token.
fn verify(secret: &[u8], token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header["alg"] != "HS256" {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(token[..header_len(token)?].as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?)
        .ok()?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    match claims["exp"].as_u64() {
        Some(exp) if exp < now => None,
        _ => Some(claims),
    }
}

/// The length of `header.payload`, the signed part.
fn header_len(token: &str) -> Option<usize> {
    token.rfind('.')
}

fn room_of(claims: &Value) -> String {
    claims["room"].as_str().unwrap_or("bench").to_string()
}

async fn publish<A: Adapter>(
    State(io): State<SocketIo<A>>,
    Json(body): Json<Publish>,
) -> (StatusCode, &'static str) {
    match io.to(body.rooms).emit(&body.event, &body.data).await {
        Ok(()) => (StatusCode::OK, "{\"ok\":true}"),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "{\"ok\":false}"),
    }
}

/// Joins the connection to the room its token names. The connect middleware checked the token.
async fn on_connect<A: Adapter>(socket: SocketRef<A>, Data(auth): Data<Auth>) {
    if let Some(claims) = claims(&auth.token) {
        socket.join(room_of(&claims));
    }
}

async fn serve<A: Adapter>(
    port: u16,
    layer: SocketIoLayer<A>,
    io: SocketIo<A>,
) -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/api/publish", post(publish::<A>))
        .with_state(io)
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("socketioxide listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret: &'static [u8] = std::env::var("BENCH_JWT_SECRET")
        .map_err(|_| "BENCH_JWT_SECRET is not set")?
        .into_bytes()
        .leak();
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .unwrap_or_else(|| "0".into())
        .parse()?;
    let check = move |Data(auth): Data<Auth>| async move {
        verify(secret, &auth.token).map(drop).ok_or(InvalidToken)
    };

    let Ok(url) = std::env::var("BENCH_REDIS_URL") else {
        let (layer, io) = SocketIo::new_layer();
        io.ns("/", on_connect.with(check));
        return serve(port, layer, io).await;
    };
    // The adapter's drivers speak RESP3.
    let url = if url.contains("protocol=") {
        url
    } else {
        format!(
            "{url}{}protocol=resp3",
            if url.contains('?') { '&' } else { '?' }
        )
    };
    let key = std::env::var("BENCH_REDIS_KEY").unwrap_or_else(|_| "socket.io".into());
    let client = redis_client::Client::open(url)?;
    let config = RedisAdapterConfig::default().with_prefix(key);
    let adapter = RedisAdapterCtr::new_with_redis_config(&client, config).await?;
    let (layer, io) = SocketIo::builder()
        .with_adapter::<RedisAdapter<_>>(adapter)
        .build_layer();
    // Subscribed to the adapter's channels before the ready line.
    io.ns("/", on_connect.with(check)).await?;
    serve(port, layer, io).await
}
