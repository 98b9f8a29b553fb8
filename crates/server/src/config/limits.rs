//! `[limits]` and `[heartbeat]`: bounds on connections, inbound rates, sizes and outbound
//! queues, and the pings that keep a connection alive.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[limits]`: bounds on connections, inbound rates, sizes and outbound queues.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most concurrent connections on this node. Default `100000`.
    pub max_connections: usize,
    /// Most concurrent connections per tenant; `0` (the default) means unlimited.
    pub max_connections_per_tenant: usize,
    /// Most concurrent connections per user; `0` (the default) means unlimited.
    pub max_connections_per_user: usize,
    /// Inbound messages per second per connection (token bucket refill). Default `50`.
    pub messages_per_second: u32,
    /// Token bucket size: inbound messages allowed in a burst. Default `100`.
    pub messages_burst: u32,
    /// Protocol violations (bad requests, rate overruns) before the connection is closed with
    /// 4006. Default `10`.
    pub max_violations: u32,
    /// Largest inbound message, after reassembling fragments, in bytes. Default `65536`.
    pub max_message_bytes: usize,
    /// Largest inbound WebSocket frame, in bytes. Default `65536`.
    pub max_frame_bytes: usize,
    /// Largest `data` of a client `publish`, in bytes (at most `max_message_bytes`); a larger
    /// one is refused with `payload_too_large`. Default `32768`.
    pub max_publish_bytes: usize,
    /// Most rooms plus users one publish may target (API, client or ingestion); a larger one
    /// is refused. Default `1000`.
    pub max_publish_targets: usize,
    /// Requests of one connection that may wait at once on the async command lane (a publish
    /// through a cluster's broker, backend calls); more are answered `busy`. Default `16`.
    pub commands_per_connection: usize,
    /// Requests that may wait at once over all connections of this node. Default `10000`.
    pub commands_in_flight: usize,
    /// How long a waiting request may take before it is answered `timeout`, in milliseconds.
    /// Default `10000`.
    pub command_timeout_ms: u64,
    /// Outbound queue bound per connection, in messages. Default `1024`.
    pub queue_messages: usize,
    /// Outbound queue bound per connection, in bytes. Default `4194304` (4 MiB).
    pub queue_bytes: usize,
    /// Deadline for receiving a whole request body (API calls, Socket.IO polling `POST`s),
    /// in milliseconds; past it the request is answered 408. Default `10000`.
    pub body_timeout_ms: u64,
    /// Bytes of request bodies being read at once, all requests together; a request whose body
    /// does not fit is answered 503 at once (a body announcing its length is refused before it
    /// is read). At least `api.max_body_bytes` and `socketio.max_payload`. Default `67108864`
    /// (64 MiB).
    pub max_body_buffer_bytes: usize,
}

impl LimitsConfig {
    /// `body_timeout_ms` as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// `command_timeout_ms` as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            max_connections_per_tenant: 0,
            max_connections_per_user: 0,
            messages_per_second: 50,
            messages_burst: 100,
            max_violations: 10,
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 64 * 1024,
            max_publish_bytes: 32 * 1024,
            max_publish_targets: 1000,
            commands_per_connection: 16,
            commands_in_flight: 10_000,
            command_timeout_ms: 10_000,
            queue_messages: 1024,
            queue_bytes: 4 * 1024 * 1024,
            body_timeout_ms: 10_000,
            max_body_buffer_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[heartbeat]`: server pings and the silence after which a connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// Interval between server pings, in milliseconds. Default `25000`.
    pub interval_ms: u64,
    /// A connection silent for this long is closed, in milliseconds. Default `60000`.
    pub timeout_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval_ms: 25_000,
            timeout_ms: 60_000,
        }
    }
}

impl HeartbeatConfig {
    /// `interval_ms` as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}
