//! nines: a reliability-first LLM gateway, as a library.
//!
//! See `docs/ARCHITECTURE.md` for the path of one request. The public face: build a [`Runtime`]
//! from a [`Config`], wrap it in [`AppState`], and [`serve`] it on a listener.

// Each module is a layer; a module imports only its own layer and lower ones. The order is the
// table in `tests/it/layers.rs` (which enforces it), explained in `docs/ARCHITECTURE.md`.
pub mod access;
pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod limits;
pub mod pipeline;
pub mod providers;
pub mod relay;
pub mod replicas;
pub mod request;
pub mod resilience;
pub mod router;
pub mod server;
pub mod state;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod tracecontext;
pub mod translate;
pub mod videos;

pub use config::Config;
pub use server::{Stop, Stopped, serve};
pub use state::{AppState, Runtime};
