//! [`TcpProxy`]: a TCP relay in front of a service the tests share (the machine's PostgreSQL),
//! which a test can take down and bring back: while down, its connections are cut and new ones
//! are closed at once, as a dead database host looks to its clients. The shared service itself
//! is never touched.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay to `upstream`, stopped when dropped.
pub(crate) struct TcpProxy {
    addr: SocketAddr,
    down: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let addr = listener.local_addr().expect("a bound address");
        let (down, watch) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if *watch.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        TcpProxy { addr, down, task }
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection and refuses new ones (`true`), or relays again (`false`).
    pub(crate) fn set_down(&self, down: bool) {
        let _ = self.down.send(down);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.set_down(true);
        self.task.abort();
    }
}
