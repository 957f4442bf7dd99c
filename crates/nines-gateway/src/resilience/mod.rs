//! Resilience owns failure and time: the one classification of every upstream outcome, the
//! attempt loop that walks a plan, breakers, the retry budget, backoff, probes and hedging.

pub mod attempt;
pub mod breaker;
pub mod budget;
mod bursts;
pub mod class;
pub mod health;
pub mod probe;
pub mod resume;
pub mod retry;
pub mod stream;
pub mod translated;
mod window;

pub use attempt::{AttemptRecord, Finished, Unavailable, run_plan};
pub use class::FailureClass;
pub use health::Health;
