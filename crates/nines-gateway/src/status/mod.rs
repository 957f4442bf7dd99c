//! What nines shows of its own availability: the status page (`page`) and SLA reports (`report`),
//! both read from the availability ledger (`telemetry::ledger`) and the live health state, with
//! the notices operators post (`notices`).

mod html;
pub mod notices;
pub mod page;
pub mod report;
pub mod session;
