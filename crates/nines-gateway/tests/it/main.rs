//! Black-box tests: the gateway served on an ephemeral port, in front of chaos mocks on
//! ephemeral ports, driven over real HTTP. One binary with modules keeps link time low.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly by design"
)]

mod access;
mod alerts;
mod bad_input;
mod big_events;
mod clouds;
mod conformance;
mod degrade;
mod dialects;
mod endpoints;
mod failover;
mod harness;
mod layers;
mod metrics;
mod named_providers;
mod objectives;
mod openai_proxy;
mod probes;
mod providers_native;
mod reload;
mod request_path;
mod resilience;
mod responses;
mod resume;
mod routing;
mod security;
mod sla;
mod status_notices;
mod status_page;
mod streaming;
mod tenants;
mod traces;
mod translation;
mod videos;
