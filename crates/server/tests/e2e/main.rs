//! End-to-end tests: the real `roomcast` binary, started on `127.0.0.1:0` with a temporary
//! configuration file, driven by real WebSocket clients (tokio-tungstenite) and HTTP calls.
//!
//! Each test starts its own server process, so tests are independent and run in parallel.
//! They assert behaviour (messages, codes, statuses), never durations.

// A failed expectation in a test is a panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod api_routes;
mod auth;
mod backends;
mod cluster;
mod harness;
mod history;
mod inbox;
mod ingest;
mod isolation;
mod lifecycle;
mod lifecycle_events;
mod limits;
mod operation;
mod parity;
mod publish;
mod resume;
mod rooms;
mod socketio;
