//! `rpc`: what the RPC proxy adds to a backend call. A backend in this process (hyper, HTTP/1.1
//! keep-alive) answers every POST with a small JSON result. The same calls are made two ways,
//! one at a time on one connection: directly (a keep-alive HTTP client posting the body the
//! proxy would), and through Roomcast (a native client's `rpc` command, which the server signs
//! and posts to the backend, and answers with the result). The difference of the two latency
//! distributions is what the proxy costs a caller. Then `--clients` native clients call at
//! once, each waiting for its answer before the next, for the calls per second one node
//! carries and their p99.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{r3, save, welcomed_native};
use crate::server::{Launch, ServerProcess};
use crate::stats::Latency;
use crate::target::{random_text, Programs};
use crate::wire::TENANT;
use crate::wsconn::WsConn;

const SCENARIO: &str = "rpc";
const TARGET: &str = "roomcast-native";
/// The answer of the backend to every call.
const ANSWER: &str = r#"{"result":{"type":"tenants","data":{"count":3}}}"#;

/// Options of `roomcast-bench rpc`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    programs: Programs,
    /// Calls made one at a time, each way.
    #[arg(long, default_value_t = 5000)]
    calls: u64,
    /// Clients calling at once in the concurrent phase.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds of the concurrent phase.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Append the result as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let result = match measure(&args).await {
        Ok(result) => result,
        Err(e) => {
            eprintln!("rpc: {e:#}");
            json!({"scenario": SCENARIO, "target": TARGET, "error": format!("{e:#}")})
        }
    };
    save(args.results.as_deref(), &result)
}

/// A backend answering [`ANSWER`] to every request, on a port of its own.
async fn backend() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    // The body is read whole, as a backend would before answering.
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
                            .unwrap_or_default(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn measure(args: &Args) -> Result<Value> {
    let backend = backend().await?;
    let secret = random_text();
    let config = std::env::temp_dir().join(format!("rc-bench-rpc-{}.toml", &secret[..8]));
    std::fs::write(
        &config,
        format!(
            r#"
[rpc.backends.bench]
url = "http://{backend}"
secret = "{key}"
claims = ["room"]
[rpc.methods]
"data.refresh" = {{ backend = "bench", path = "/refresh" }}
"#,
            key = random_text(),
        ),
    )?;
    let launch = Launch {
        program: args.programs.roomcast(),
        args: vec!["--config".into(), config.display().to_string()],
        env: vec![
            ("ROOMCAST_LISTEN".into(), "127.0.0.1:0".into()),
            ("ROOMCAST_JWT_SECRET".into(), secret.clone()),
            ("ROOMCAST_API_KEY".into(), random_text()),
            ("ROOMCAST_LOG__LEVEL".into(), "warn".into()),
            // The calls of one client follow one another as fast as they are answered.
            (
                "ROOMCAST_LIMITS__MESSAGES_PER_SECOND".into(),
                "1000000".into(),
            ),
            ("ROOMCAST_LIMITS__MESSAGES_BURST".into(), "1000000".into()),
        ],
        ready: "roomcast listening on ".into(),
    };
    let server = ServerProcess::launch(&launch, Duration::from_secs(20)).await;
    let _ = std::fs::remove_file(&config);
    let server = server?;
    let outcome = phases(args, backend, &server, &secret).await;
    let report = server.output_report();
    let _ = server.kill().await;
    outcome.map_err(|e| anyhow!("{e:#}{report}"))
}

async fn phases(
    args: &Args,
    backend: SocketAddr,
    server: &ServerProcess,
    secret: &str,
) -> Result<Value> {
    // Directly: the body the proxy posts, on one keep-alive connection.
    let body = json!({"method": "data.refresh", "namespace": "/", "session": "1", "user": "0",
        "tenant": TENANT, "claims": {"room": "feed"}, "args": [{"type": "tenants"}]})
    .to_string();
    let stream = tokio::net::TcpStream::connect(backend).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut direct = Latency::histogram();
    for _ in 0..args.calls {
        let request = Request::post(format!("http://{backend}/refresh"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.clone())))?;
        sender.ready().await?;
        let started = Instant::now();
        let answer = sender.send_request(request).await?;
        let _ = answer.into_body().collect().await?;
        record(&mut direct, started);
    }

    // Through Roomcast, one client.
    let mut client = welcomed_native(server.addr(), secret, 0, "feed").await?;
    let mut proxied = Latency::histogram();
    for id in 0..args.calls {
        let started = Instant::now();
        call(&mut client, id).await?;
        record(&mut proxied, started);
    }
    let _ = client.close().await;

    // Concurrent clients, for the rate one node carries.
    let mut clients = Vec::with_capacity(args.clients);
    for n in 0..args.clients {
        clients.push(welcomed_native(server.addr(), secret, n + 1, "feed").await?);
    }
    let all = Arc::new(Mutex::new(Latency::histogram()));
    let until = Instant::now() + Duration::from_secs(args.secs);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for mut client in clients {
        let all = all.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = Latency::histogram();
            let mut id = 0;
            while Instant::now() < until {
                let began = Instant::now();
                call(&mut client, id).await?;
                record(&mut local, began);
                id += 1;
            }
            let _ = client.close().await;
            all.lock().await.add(&local).map_err(|e| anyhow!("{e}"))?;
            Ok::<u64, anyhow::Error>(id)
        }));
    }
    let mut calls = 0;
    for task in tasks {
        calls += task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let concurrent = all.lock().await.clone();
    let (direct, proxied) = (Latency::of(&direct), Latency::of(&proxied));
    let result = json!({
        "scenario": SCENARIO,
        "target": TARGET,
        "available": true,
        "calls": args.calls,
        "direct": direct.to_json(),
        "proxied": proxied.to_json(),
        "added_p50_ms": r3(proxied.p50 - direct.p50),
        "added_p99_ms": r3(proxied.p99 - direct.p99),
        "concurrent": {
            "clients": args.clients,
            "calls": calls,
            "calls_per_sec": r3(calls as f64 / elapsed),
            "latency": Latency::of(&concurrent).to_json(),
        },
    });
    eprintln!("rpc: {result}");
    Ok(result)
}

fn record(hist: &mut Histogram<u64>, started: Instant) {
    let _ = hist.record((started.elapsed().as_micros() as u64).max(1));
}

/// One `rpc` call, answered with the backend's result.
async fn call(ws: &mut WsConn, id: u64) -> Result<()> {
    let request = format!(
        r#"{{"type":"rpc","id":{id},"method":"data.refresh","data":{{"type":"tenants"}}}}"#
    );
    ws.send_text(&request).await?;
    let reply = ws.next_text().await?;
    if !reply.contains(r#""ok":true"#) || !reply.contains(r#""count":3"#) {
        bail!("rpc {id} answered {reply}");
    }
    Ok(())
}
