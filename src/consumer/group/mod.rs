//! Consumer groups: the classic protocol with protocol type "consumer" (assignors, and the
//! membership state machine) and the KIP-848 protocol (`group.protocol=consumer`, the
//! coordinator assigns), each sans-IO with an async driver.

pub mod admin;
pub mod assignor;
pub(crate) mod driver;
pub mod membership;
pub mod modern;
pub(crate) mod modern_driver;
pub(crate) mod offsets;
pub mod protocol;
mod requests;
