//! Socket.IO v5, the packet layer over Engine.IO messages: the packet codec with its payload
//! checks, and binary packets (placeholders and attachments) in both directions.

pub mod binary;
pub mod error;
pub mod packet;

pub use binary::{deconstruct, to_engineio, Attachments, Reassembler, ReassemblyLimits};
pub use error::Error;
pub use packet::{decode, BinaryData, Packet, RawJson, MAIN_NAMESPACE};
