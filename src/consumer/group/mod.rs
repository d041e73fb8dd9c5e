//! Consumer groups, classic protocol with protocol type "consumer": assignors, and the
//! membership state machine (sans-IO).

pub mod assignor;
pub(crate) mod driver;
pub mod membership;
pub(crate) mod offsets;
pub mod protocol;
