//! The real binary: `serve`, `check`, `mock`, `demo`, started as processes on ephemeral ports.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly by design"
)]

mod budget;
mod check;
mod demo;
mod deploy;
mod examples;
mod front_door;
mod keys;
mod lifecycle;
mod loadtest;
mod process;
mod redis_servers;
mod redis_shapes;
mod replicas;
mod report;
mod sdk;
mod serve;
mod shared_health;
mod status_notice;
mod stdout;
mod store_outage;
mod traces;

/// Says that `test` skipped and why, where a reader sees it: written to the terminal directly,
/// past the test harness's output capture (which hides `eprintln!` of passing tests). Under `CI`
/// a skip would hide a missing install step, so it fails instead.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why} (CI is set: .ci/run installs what the tests need)"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
