//! Resilience owns failure and time before the commit point: the one classification of every
//! upstream outcome (`class`), the one attempt (`attempt`), the loop that walks a plan
//! (`attempt_loop`, hedging included), breakers and the rule of what moves them (`breaker`), the
//! retry budget, backoff and Retry-After (`budget`, `retry`), shared health (`health`) with learned first-byte deadlines (`first_byte`) with its
//! breaker transitions (`events`), probes (`probe`), and what breakers and probes agree on with
//! other replicas (`shared`). What happens after the commit point
//! lives in `crate::relay`.

pub mod attempt;
pub mod attempt_loop;
pub mod breaker;
pub mod budget;
pub mod class;
pub mod events;
pub mod first_byte;
pub mod health;
pub mod probe;
pub mod retry;
pub mod shared;
mod window;

pub use attempt::{AttemptRecord, OpenSlot};
pub use attempt_loop::{AttemptInput, Finished, Unavailable, run_plan};
pub use class::FailureClass;
pub use health::{Health, KeySlot};
