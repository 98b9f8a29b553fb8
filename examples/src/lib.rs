//! Shared pieces of the example servers.

use tokio::net::TcpListener;

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
}

/// Binds the given addresses, or port 3000 on both loopbacks (`[::1]` only if the machine
/// has IPv6), and says so on stdout.
pub async fn bind(addrs: Vec<String>) -> std::io::Result<Vec<TcpListener>> {
    let explicit = !addrs.is_empty();
    let addrs = if explicit {
        addrs
    } else {
        vec!["127.0.0.1:3000".to_owned(), "[::1]:3000".to_owned()]
    };
    let mut listeners = Vec::new();
    for addr in addrs {
        match TcpListener::bind(&addr).await {
            Ok(listener) => {
                println!("listening on http://{}", listener.local_addr()?);
                listeners.push(listener);
            }
            Err(err) if !explicit && !listeners.is_empty() => {
                tracing::debug!(error = %err, addr, "optional address not bound");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(listeners)
}
