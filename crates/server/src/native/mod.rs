//! The native protocol v1 (see `protocol/README.md`): message codec, session logic and the
//! `/ws` upgrade.

pub mod proto;
mod rate;
pub mod session;
mod upgrade;

pub use upgrade::upgrade;
