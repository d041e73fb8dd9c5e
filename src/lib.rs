//! spate: a pure-Rust Kafka wire-protocol engine.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod record;
pub mod wire;
