//! What the benchmark examples share: a chaos mock on 127.0.0.1, and a gateway serving a
//! configuration there.

use nines_gateway::{AppState, Config, Runtime};
use nines_mock::MockServer;
use std::sync::Arc;

/// The handle that keeps a gateway serving; dropping it stops it.
pub type Stop = tokio::sync::watch::Sender<nines_gateway::Stop>;

pub async fn mock(name: &str) -> MockServer {
    MockServer::local(name).await.unwrap()
}

/// The configuration `text`, parsed (no environment).
pub fn config(text: &str) -> Runtime {
    let config = Config::parse(std::path::Path::new("bench.toml"), text, &|_| None).unwrap();
    Runtime::build(config).unwrap()
}

/// Serves `state` on a free port: its base URL, and the handle that keeps it serving.
pub async fn serve(state: Arc<AppState>) -> (String, Stop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(nines_gateway::Stop::Serving);
    tokio::spawn(nines_gateway::serve(listener, state, rx));
    (format!("http://{addr}"), tx)
}
