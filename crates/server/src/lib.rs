//! The Roomcast server: configuration, authentication, the client core shared by the native
//! protocol session and the Socket.IO namespaces ([`client`]), the HTTP API and metrics, the
//! publish path ([`node`]). A [`Config`] is compiled into a [`Plan`] ([`plan`]), from which
//! [`app`] assembles the shared state and [`serve`] runs the server that the `roomcast` binary
//! starts, saying what it serves ([`startup`]); [`token`] mints the test tokens of
//! `roomcast token`.

pub mod acl;
pub mod api_keys;
pub mod app;
pub mod auth;
pub mod backend;
pub mod client;
pub mod cluster;
pub mod config;
pub mod history;
pub mod http;
pub mod inbox;
pub mod ingest;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod native;
pub mod node;
pub mod plan;
pub mod presence;
pub mod proto;
pub mod serve;
pub mod sio;
pub mod startup;
pub mod token;
mod web;

pub use app::{App, AppParts};
pub use config::Config;
pub use plan::{Plan, PlanError};
pub use serve::Server;
