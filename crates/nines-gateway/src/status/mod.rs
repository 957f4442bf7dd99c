//! What nines shows of its own availability: the status page (`page`) and SLA reports (`report`),
//! both read from the availability ledger (`telemetry::ledger`) and the live health state, with
//! the notices operators post (`notices`, kept in `state::notices`: the shared state holds the
//! board).

mod html;
pub use crate::state::notices;
pub mod page;
pub mod report;
pub mod session;
