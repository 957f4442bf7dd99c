//! The open connections: each served on its own task, and all of them asked to finish at once
//! when the server closes.
//!
//! Like hyper-util's `GracefulShutdown`, with one difference that matters during a restart: a
//! connection that has not delivered a request yet is not closed the moment shutdown begins. It
//! was accepted an instant before the listener closed and its client has most likely sent its
//! request already; closing it would fail that request. It gets [`FIRST_REQUEST_WAIT`] for the
//! request to arrive, is answered (with `connection: close`), and then closes; one whose request
//! head has not arrived by then is closed (a half-sent head must not hold the shutdown).

use super::FIRST_REQUEST_WAIT;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

pub(super) struct Connections {
    router: axum::Router,
    builder: auto::Builder<TokioExecutor>,
    /// Sends the shutdown; every connection task holds a receiver until it ends.
    shutdown: watch::Sender<bool>,
}

impl Connections {
    pub(super) fn new(router: axum::Router) -> Connections {
        Connections {
            router,
            builder: auto::Builder::new(TokioExecutor::new()),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Serves one accepted connection on a task of its own.
    pub(super) fn serve(&self, tcp: TcpStream) {
        // Streams are written in small frames; with Nagle on, each frame after the first waits
        // for the client's delayed ACK (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let first_request = Arc::new(FirstRequest::default());
        let seen = Arc::clone(&first_request);
        let router = TowerToHyperService::new(self.router.clone());
        let service = hyper::service::service_fn(move |request| {
            seen.arrived();
            hyper::service::Service::call(&router, request)
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(tcp), service)
            .into_owned();
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                ended = conn.as_mut() => return log_end(ended),
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
            if !first_request.has_arrived() {
                tokio::select! {
                    ended = conn.as_mut() => return log_end(ended),
                    () = first_request.wait() => {}
                    () = tokio::time::sleep(FIRST_REQUEST_WAIT) => {}
                }
                // Still no complete request head: a client that sends nothing, or one so slow it
                // would hold the shutdown. Closed.
                if !first_request.has_arrived() {
                    return;
                }
            }
            conn.as_mut().graceful_shutdown();
            log_end(conn.await);
            // `shutdown` (the receiver) drops here: one connection fewer to wait for.
        });
    }

    /// Asks every connection to finish (idle ones close; busy ones finish their request) and
    /// waits until all have.
    pub(super) async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.shutdown.closed().await;
    }
}

fn log_end(ended: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Whether a connection's first request has reached the service, and a way to wait for it.
#[derive(Default)]
struct FirstRequest {
    arrived: AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    fn arrived(&self) {
        if !self.arrived.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    fn has_arrived(&self) -> bool {
        self.arrived.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        let notified = self.notify.notified();
        if !self.has_arrived() {
            notified.await;
        }
    }
}
