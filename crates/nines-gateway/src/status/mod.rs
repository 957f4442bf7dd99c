//! What nines shows of its own availability: the status page (`page`) and SLA reports (`report`),
//! both read from the availability ledger (`telemetry::ledger`) and the live health state.

mod html;
pub mod page;
pub mod report;
pub mod session;
