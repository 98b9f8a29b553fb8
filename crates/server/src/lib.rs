//! The Roomcast server: configuration, authentication, the client core shared by the native
//! protocol session and the Socket.IO namespaces, the HTTP API and metrics, assembled by [`app`]
//! and started by the `roomcast` binary.

pub mod acl;
pub mod api_keys;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod native;
pub mod publish;
pub mod sio;

pub use app::{App, Server};
pub use config::Config;
