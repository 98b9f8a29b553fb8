//! Calls to HTTP backends on a client's behalf: RPC ([`rpc`]: a Socket.IO event routed with
//! `action = "rpc"`, or a native `rpc` command, posted with the caller's identity and answered
//! with the backend's result) and the connect proxy ([`connect`]: a handshake posted for the
//! identity it grants). Every request is signed ([`sign`]) and bounded in time, in size and in
//! calls in flight; [`BackendMetrics`] counts how they went.
//!
//! Built once from `[rpc]` and `[auth.connect_proxy]` into [`Backends`], shared by the app.
//! The calls run on the connections' async lane (RPC) or before a session starts (connect), so
//! a slow or dead backend never stalls a connection's driver or any other client.

pub(crate) mod client;
pub mod connect;
mod metrics;
pub mod rpc;
pub mod sign;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::{Identity, SessionIdentity, Verifier};
use crate::client::Refusal;
use crate::config::Config;
pub use connect::{ConnectProxy, Handshake};
pub use metrics::BackendMetrics;
pub use rpc::{RpcBackend, RpcCall, RpcError};

/// The backends of one server.
#[derive(Debug)]
pub struct Backends {
    http: client::HttpClient,
    rpc: BTreeMap<String, Arc<RpcBackend>>,
    /// Native `rpc` methods: the backend and the path.
    methods: BTreeMap<String, (Arc<RpcBackend>, String)>,
    connect: Option<ConnectProxy>,
    /// Counts of the calls, for `GET /metrics`.
    pub metrics: Arc<BackendMetrics>,
}

impl Backends {
    /// The backends of a validated `config` (names that do not resolve are left out: the
    /// configuration's checks refuse them first).
    pub fn new(config: &Config) -> Backends {
        let rpc: BTreeMap<String, Arc<RpcBackend>> = config
            .rpc
            .backends
            .iter()
            .map(|(name, b)| (name.clone(), Arc::new(RpcBackend::new(name, b))))
            .collect();
        let methods = config
            .rpc
            .methods
            .iter()
            .filter_map(|(name, m)| {
                let backend = rpc.get(&m.backend)?.clone();
                Some((name.clone(), (backend, m.path.clone())))
            })
            .collect();
        let connect = config
            .auth
            .connect_proxy
            .as_ref()
            .and_then(|p| ConnectProxy::new(p, &config.auth, &config.socketio.cors_origins));
        Backends {
            http: client::http_client(),
            rpc,
            methods,
            connect,
            metrics: Arc::default(),
        }
    }

    /// Claims that some backend forwards, which a session must keep.
    pub fn forwarded_claims(config: &Config) -> impl Iterator<Item = &str> {
        config
            .rpc
            .backends
            .values()
            .flat_map(|b| b.claims.iter().map(String::as_str))
    }

    /// The connect proxy, when one is configured.
    pub fn connect_proxy(&self) -> Option<&ConnectProxy> {
        self.connect.as_ref()
    }

    /// Asks the connect proxy about a handshake whose body is `body` ([`ConnectProxy::body`]).
    pub async fn check_connect(
        &self,
        verifier: &Verifier,
        body: Result<Vec<u8>, Refusal>,
    ) -> Result<Identity, Refusal> {
        let body = body.inspect_err(|_| self.metrics.connect(metrics::Outcome::Refused))?;
        match &self.connect {
            Some(proxy) => proxy.check(&self.http, &self.metrics, verifier, body).await,
            None => Err(Refusal::ProxyUnavailable),
        }
    }

    /// Starts a call of `call` by `identity` to the backend `backend`, at `path`: `Err(Busy)`
    /// when the backend has `max_in_flight` calls running (nothing was sent); else the future
    /// of the result, or of the refusal to tell the client.
    pub fn start_call(
        &self,
        backend: &str,
        path: &str,
        identity: &SessionIdentity,
        call: RpcCall,
    ) -> Result<impl std::future::Future<Output = Result<serde_json::Value, Refusal>>, Refusal>
    {
        let backend = self.rpc.get(backend).ok_or(Refusal::BackendUnavailable)?;
        self.start(backend, path, identity, call)
    }

    /// As [`start_call`](Self::start_call), for a native `rpc` method: `Err(UnknownMethod)`
    /// when `[rpc.methods]` does not name it.
    pub fn start_method(
        &self,
        identity: &SessionIdentity,
        call: RpcCall,
    ) -> Result<impl std::future::Future<Output = Result<serde_json::Value, Refusal>>, Refusal>
    {
        let (backend, path) = self.methods.get(&call.name).ok_or(Refusal::UnknownMethod)?;
        self.start(backend, path, identity, call)
    }

    fn start(
        &self,
        backend: &Arc<RpcBackend>,
        path: &str,
        identity: &SessionIdentity,
        call: RpcCall,
    ) -> Result<impl std::future::Future<Output = Result<serde_json::Value, Refusal>>, Refusal>
    {
        let call = backend
            .start(&self.http, &self.metrics, path, identity, call)
            .ok_or(Refusal::Busy)?;
        Ok(async move { call.await.map_err(Refusal::from) })
    }
}

impl From<RpcError> for Refusal {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Refused { code, message } => Refusal::BackendRefused { code, message },
            RpcError::Unavailable => Refusal::BackendUnavailable,
            RpcError::Timeout => Refusal::BackendTimeout,
        }
    }
}
