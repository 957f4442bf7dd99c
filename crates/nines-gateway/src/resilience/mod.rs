//! Resilience owns failure and time: the one classification of every upstream outcome, and the
//! attempt loop that walks a plan. Breakers, the retry budget, probes and hedging grow here.

pub mod attempt;
pub mod class;
pub mod stream;

pub use attempt::{AttemptRecord, Finished, run_plan};
pub use class::FailureClass;
