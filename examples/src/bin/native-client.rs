//! A minimal native protocol client: connects with a token, optionally subscribes to rooms,
//! and prints every message the server sends.
//!
//! `cargo run -p roomcast-examples --bin native-client -- ws://127.0.0.1:8080/ws <token> [room...]`

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(token)) = (args.next(), args.next()) else {
        eprintln!("usage: native-client <ws-url> <token> [room...]");
        std::process::exit(2);
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    ws.send(Message::text(
        serde_json::json!({"type": "auth", "token": token}).to_string(),
    ))
    .await?;
    for (id, room) in args.enumerate() {
        let msg = serde_json::json!({"type": "subscribe", "id": id + 1, "room": room});
        ws.send(Message::text(msg.to_string())).await?;
    }
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(text) => println!("{text}"),
            Message::Close(frame) => {
                println!("closed: {frame:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
