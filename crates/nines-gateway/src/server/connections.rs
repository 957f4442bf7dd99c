//! The open connections: each served on its own task with its timers (`watchdog`), capped in
//! number, and all of them asked to finish at once when the server closes.
//!
//! At the cap, like nginx reusing keep-alive connections when `worker_connections` run out, the
//! oldest idle connection (no request in flight) is closed to make room: a flood of sockets that
//! send nothing cannot lock a real client out. Only when every connection has a request in
//! flight is the new one answered 503 (`refuse`).
//!
//! Like hyper-util's `GracefulShutdown`, with one difference that matters during a restart: a
//! connection that has not delivered a request yet is not closed the moment shutdown begins. It
//! was accepted an instant before the listener closed and its client has most likely sent its
//! request already; closing it would fail that request. It gets [`FIRST_REQUEST_WAIT`] for the
//! request to arrive, is answered (with `connection: close`), and then closes; one whose request
//! head has not arrived by then is closed (a half-sent head must not hold the shutdown).

use super::FIRST_REQUEST_WAIT;
use super::refuse::{self, Throttled};
use super::watchdog::{self, Activity, Watched};
use crate::config::Connections as Limits;
use crate::state::AppState;
use crate::telemetry::metrics::{ConnectionEnd, ConnectionStats};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

pub(super) struct Connections {
    router: axum::Router,
    state: Arc<AppState>,
    /// Sends the shutdown; every connection task holds a receiver until it ends.
    shutdown: watch::Sender<bool>,
    /// Connections open now.
    open: Arc<AtomicUsize>,
    /// Evicted connections that have not closed yet (they still count in `open`).
    evicting: Arc<AtomicUsize>,
    /// Every connection's activity, oldest first (dead ones pruned as it goes).
    registry: Mutex<VecDeque<Weak<Activity>>>,
    /// The most connections the file-descriptor limit can hold.
    descriptor_cap: usize,
    refusals: Throttled,
    accept_failures: Throttled,
}

impl Connections {
    pub(super) fn new(state: Arc<AppState>, descriptor_cap: usize) -> Connections {
        Connections {
            router: crate::api::router(Arc::clone(&state)),
            state,
            shutdown: watch::Sender::new(false),
            open: Arc::new(AtomicUsize::new(0)),
            evicting: Arc::new(AtomicUsize::new(0)),
            registry: Mutex::new(VecDeque::new()),
            descriptor_cap,
            refusals: Throttled::default(),
            accept_failures: Throttled::default(),
        }
    }

    fn stats(&self) -> Option<&ConnectionStats> {
        self.state
            .telemetry
            .metrics
            .as_ref()
            .map(|m| m.connections())
    }

    /// The cap in force: `max_connections` of the running configuration, or what the
    /// descriptors can hold.
    pub(super) fn cap(&self, limits: &Limits) -> usize {
        limits.max_connections.min(self.descriptor_cap)
    }

    /// Serves one accepted connection on a task of its own, or refuses it over the cap.
    pub(super) fn serve(&self, tcp: TcpStream) {
        let limits = self.state.runtime().config.server.connections;
        let cap = self.cap(&limits);
        if let Some(stats) = self.stats() {
            stats.set_limit(cap);
        }
        let staying = self
            .open
            .load(Ordering::Acquire)
            .saturating_sub(self.evicting.load(Ordering::Acquire));
        if staying >= cap {
            let evicted = self.evict_one();
            let why = if evicted {
                ConnectionEnd::EvictedAtLimit
            } else {
                ConnectionEnd::RefusedAtLimit
            };
            let total = self.stats().map(|s| s.ended(why));
            if let Some(since) = self.refusals.due() {
                tracing::warn!(
                    open = self.open.load(Ordering::Acquire),
                    cap,
                    since_last_line = since,
                    total = total,
                    answer = why.as_str(),
                    "connection limit reached: idle connections are closed to make room, and \
                     with none idle new ones are answered 503 (server.max_connections, or the \
                     file-descriptor limit)"
                );
            }
            if !evicted {
                refuse::refuse(tcp);
                return;
            }
        }
        // Streams are written in small frames; with Nagle on, each frame after the first waits
        // for the client's delayed ACK (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let activity = Activity::new();
        self.register(&activity);
        let open = OpenConnection::new(
            self,
            Arc::clone(&activity),
            self.stats().is_some().then(|| Arc::clone(&self.state)),
        );
        let service = {
            let activity = Arc::clone(&activity);
            let router = TowerToHyperService::new(self.router.clone());
            hyper::service::service_fn(move |request| {
                let guard = activity.request_started();
                let response = hyper::service::Service::call(&router, request);
                async move {
                    Ok::<_, std::convert::Infallible>(watchdog::tracked(response.await?, guard))
                }
            })
        };
        let io = TokioIo::new(Watched::new(tcp, Arc::clone(&activity)));
        let conn = builder(&limits).serve_connection(io, service).into_owned();
        let timers = watchdog::Limits {
            header: limits.header_read_timeout,
            idle: limits.idle_timeout,
        };
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            let open = open;
            tokio::pin!(conn);
            loop {
                if activity.is_evicted() {
                    // Idle (it was when asked); an HTTP/2 client gets a GOAWAY.
                    conn.as_mut().graceful_shutdown();
                    return log_end(conn.await);
                }
                let deadline = activity.deadline(&timers);
                tokio::select! {
                    ended = conn.as_mut() => return log_end(ended),
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    () = activity.changed() => continue,
                    () = sleep_until(deadline.map(|(at, _)| at)) => {}
                }
                // Asleep until the deadline it had then: act only if it still holds.
                let Some((at, why)) = activity.deadline(&timers) else {
                    continue;
                };
                if Instant::now() < at {
                    continue;
                }
                open.count(why);
                if why == ConnectionEnd::HeaderTimeout {
                    // A head that never completes: nothing to answer, nothing to finish.
                    tracing::debug!(
                        "closing a connection whose request head did not arrive in time"
                    );
                    return;
                }
                // Idle: HTTP/1 closes at once, HTTP/2 says GOAWAY first; a request that
                // raced in is finished.
                conn.as_mut().graceful_shutdown();
                return log_end(conn.await);
            }
            if !activity.has_requested() {
                tokio::select! {
                    ended = conn.as_mut() => return log_end(ended),
                    () = activity.changed() => {}
                    () = tokio::time::sleep(FIRST_REQUEST_WAIT) => {}
                }
                // Still no complete request head: a client that sends nothing, or one so slow it
                // would hold the shutdown. Closed.
                if !activity.has_requested() {
                    return;
                }
            }
            conn.as_mut().graceful_shutdown();
            log_end(conn.await);
            // `shutdown` (the receiver) drops here: one connection fewer to wait for.
        });
    }

    /// Remembers a new connection for eviction, pruning the ones that have ended.
    fn register(&self, activity: &Arc<Activity>) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.push_back(Arc::downgrade(activity));
        // Amortised: a full pass only when dead entries may outnumber live ones.
        if registry.len() > 2 * self.open.load(Ordering::Acquire) + 64 {
            registry.retain(|weak| weak.strong_count() > 0);
        }
    }

    /// Asks the oldest idle connection to close; whether there was one.
    fn evict_one(&self) -> bool {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        while registry
            .front()
            .is_some_and(|weak| weak.strong_count() == 0)
        {
            registry.pop_front();
        }
        let found = registry
            .iter()
            .enumerate()
            .find(|(_, weak)| weak.upgrade().is_some_and(|a| a.evict_if_idle()))
            .map(|(i, _)| i);
        match found {
            Some(i) => {
                registry.remove(i);
                self.evicting.fetch_add(1, Ordering::AcqRel);
                true
            }
            None => false,
        }
    }

    /// `accept` failed: counted, logged (throttled); the caller pauses before the next.
    pub(super) fn accept_failed(&self, error: &std::io::Error) {
        let total = self.stats().map(|s| s.ended(ConnectionEnd::AcceptFailed));
        if let Some(since) = self.accept_failures.due() {
            tracing::warn!(
                error = %error,
                failures = since,
                failures_total = total,
                open = self.open.load(Ordering::Acquire),
                "accept failed (out of file descriptors? see server.max_connections and the \
                 process's descriptor limit)"
            );
        }
    }

    /// Asks every connection to finish (idle ones close; busy ones finish their request) and
    /// waits until all have.
    pub(super) async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.shutdown.closed().await;
    }
}

/// The HTTP/1 and HTTP/2 settings of one connection, from the running configuration (so a
/// reload applies to the next connection).
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The watchdog keeps the header and idle timers (hyper's would run during keep-alive).
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// One open connection, counted until its task ends.
struct OpenConnection {
    open: Arc<AtomicUsize>,
    evicting: Arc<AtomicUsize>,
    activity: Arc<Activity>,
    /// For the metrics, when they are on.
    state: Option<Arc<AppState>>,
}

impl OpenConnection {
    fn new(
        connections: &Connections,
        activity: Arc<Activity>,
        state: Option<Arc<AppState>>,
    ) -> OpenConnection {
        connections.open.fetch_add(1, Ordering::AcqRel);
        if let Some(stats) = stats_of(state.as_deref()) {
            stats.opened();
        }
        OpenConnection {
            open: Arc::clone(&connections.open),
            evicting: Arc::clone(&connections.evicting),
            activity,
            state,
        }
    }

    fn count(&self, why: ConnectionEnd) {
        if let Some(stats) = stats_of(self.state.as_deref()) {
            stats.ended(why);
        }
    }
}

fn stats_of(state: Option<&AppState>) -> Option<&ConnectionStats> {
    state?.telemetry.metrics.as_ref().map(|m| m.connections())
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.activity.is_evicted() {
            self.evicting.fetch_sub(1, Ordering::AcqRel);
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(stats) = stats_of(self.state.as_deref()) {
            stats.closed();
        }
    }
}

/// Waits for `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_end(ended: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
