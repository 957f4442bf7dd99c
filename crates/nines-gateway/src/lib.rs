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
pub mod request;
pub mod resilience;
pub mod router;
pub mod state;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod tracecontext;
pub mod translate;
pub mod videos;

pub use config::Config;
pub use state::{AppState, Runtime};

use axum::serve::ListenerExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish for
/// at most `grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let app = api::router(state);
    // Streams are written in small frames; with Nagle on, each frame after the first waits for
    // the client's delayed ACK (~40 ms). Every accepted socket gets TCP_NODELAY.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut stopped = rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = server => result,
        _ = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace = %humantime::format_duration(grace), "shutdown grace period over; dropping in-flight requests");
            Ok(())
        }
    }
}
