//! The real binary: `serve`, `check`, `mock`, `demo`, started as processes on ephemeral ports.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly by design"
)]

mod check;
mod demo;
mod deploy;
mod examples;
mod keys;
mod loadtest;
mod process;
mod report;
mod sdk;
mod serve;
mod traces;
