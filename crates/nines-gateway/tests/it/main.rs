//! Black-box tests: the gateway served on an ephemeral port, in front of chaos mocks on
//! ephemeral ports, driven over real HTTP. One binary with modules keeps link time low.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly by design"
)]

mod access;
mod bad_input;
mod conformance;
mod dialects;
mod failover;
mod harness;
mod openai_proxy;
mod providers_native;
mod resilience;
mod resume;
mod routing;
mod sla;
mod streaming;
mod videos;
