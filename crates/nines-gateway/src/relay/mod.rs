//! After the commit point: relaying a streamed answer to the client, and keeping it honest.
//!
//! Once the first byte went to the client, failover is no longer free; what is left is relaying
//! the rest without buffering, ending a stream that broke with an error the client's SDK raises
//! (never a truncated answer presented as whole), and, where the model asks for it, continuing
//! a broken stream elsewhere. Everything before the commit point is `crate::resilience`'s.
//!
//! - `passthrough`: OpenAI-family streams to OpenAI clients, forwarded event by event as bytes;
//!   unless `resume_streams = false`, continued on a later deployment when they break (`resume`,
//!   which prefills or replays, and `splice`, which makes a continuation of any dialect fit).
//! - `translated`: streams across dialects (or of non-OpenAI dialects), decoded into unified
//!   events and re-encoded in the client's dialect (`codec`); resumed the same way.
//! - `responses`: Responses API streams from deployments that serve it natively, forwarded as
//!   bytes event by event under the Responses grammar (named events, a terminal
//!   `response.completed`, no `[DONE]`); not resumed.
//! - `bursts`: one client write per burst of upstream events.
//! - `segment`: what a relay reads (one upstream stream and its key slot).
//! - `ending`: what a relay reports, once, when the client's stream ends, and what the client
//!   gets when a stream breaks.

mod bursts;
pub mod codec;
pub mod ending;
pub mod passthrough;
pub mod responses;
pub mod resume;
pub mod segment;
pub mod splice;
pub mod translated;
