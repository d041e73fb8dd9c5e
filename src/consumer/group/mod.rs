//! Consumer groups, classic protocol with protocol type "consumer": assignors, and the
//! membership state machine (sans-IO).

pub mod assignor;
pub mod membership;
