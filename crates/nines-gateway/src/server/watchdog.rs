//! Per-connection timeouts: what a client that holds a connection without using it gets.
//!
//! hyper's own HTTP/1 `header_read_timeout` also runs while a keep-alive connection waits for
//! its next request, so it cannot be both a short slowloris guard and the long idle timeout a
//! load balancer needs (a backend that closes idle connections before the balancer does fails
//! the request the balancer sends at that instant). So nines keeps the two apart, like HAProxy's
//! `timeout http-request` and `timeout http-keep-alive`:
//!
//! - **header_read_timeout**: from accept until the first request's head is complete, and from
//!   the first byte of each later head until it is complete.
//! - **idle_timeout**: with no request in flight and nothing arriving, after the last response
//!   ended (HTTP/1 keep-alive and HTTP/2 alike; an HTTP/2 connection's control frames do not
//!   count as a request starting).
//! - No timer runs while a request is in flight: the body has its own (`body_read_timeout`, in
//!   `api`), and the response is bounded by the request's deadlines.
//!
//! [`Activity`] is what the connection's reader ([`Watched`]), its service (one
//! [`RequestGuard`] per request, held by the response body until it ends) and its task share.

use crate::telemetry::metrics::ConnectionEnd;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// No head is arriving.
const NONE: u64 = u64::MAX;

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4), enough of them to tell.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// What one connection is doing, as its timers need it. Times are milliseconds since accept.
pub(super) struct Activity {
    accepted: Instant,
    /// Requests handed to the service so far.
    requests: AtomicU64,
    /// Requests whose response has not ended.
    in_flight: AtomicU32,
    /// When the first byte of a request head arrived with nothing in flight; [`NONE`] otherwise.
    head_started: AtomicU64,
    /// When the last response ended (or the connection was accepted).
    idle_since: AtomicU64,
    /// HTTP/2: bytes arrive without a request starting (settings, pings, window updates).
    http2: AtomicBool,
    /// Whether the first read has been seen (to tell HTTP/2 by its preface).
    first_read: AtomicBool,
    /// Asked to close to make room for a new connection (the cap was reached).
    evicted: AtomicBool,
    /// Wakes the connection's task when its next deadline may have moved earlier, or it is
    /// evicted.
    changed: Notify,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            accepted: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            head_started: AtomicU64::new(NONE),
            idle_since: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            first_read: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    /// Whether a request has reached the service.
    pub(super) fn has_requested(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }

    /// A request reached the service: its head is complete.
    pub(super) fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NONE, Ordering::Release);
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        RequestGuard {
            activity: Arc::clone(self),
        }
    }

    /// Bytes arrived from the client.
    fn read(&self, bytes: &[u8]) {
        if !self.first_read.swap(true, Ordering::AcqRel)
            && bytes.starts_with(&H2_PREFACE[..bytes.len().min(H2_PREFACE.len())])
        {
            self.http2.store(true, Ordering::Release);
        }
        if self.http2.load(Ordering::Acquire) || self.in_flight.load(Ordering::Acquire) > 0 {
            return;
        }
        if self
            .head_started
            .compare_exchange(NONE, self.now_ms(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // The header timer may end before the idle timer the task sleeps on.
            self.changed.notify_one();
        }
    }

    /// When the connection is to be closed unless something happens first, and why; `None` while
    /// a request is in flight.
    pub(super) fn deadline(&self, limits: &Limits) -> Option<(Instant, ConnectionEnd)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Acquire);
        if head != NONE {
            return Some((self.at(head) + limits.header, ConnectionEnd::HeaderTimeout));
        }
        if !self.has_requested() && !self.http2.load(Ordering::Acquire) {
            // An HTTP/1 client that connected and has not sent a request yet.
            return Some((self.accepted + limits.header, ConnectionEnd::HeaderTimeout));
        }
        let idle = self.idle_since.load(Ordering::Acquire);
        Some((self.at(idle) + limits.idle, ConnectionEnd::Idle))
    }

    /// Asks an idle connection (no request in flight) to close, to make room for a new one;
    /// whether it was idle and not asked already.
    pub(super) fn evict_if_idle(&self) -> bool {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.evicted.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.changed.notify_one();
        true
    }

    pub(super) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Resolves when the deadline may have changed.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The two connection timers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub header: Duration,
    pub idle: Duration,
}

/// One request in flight on its connection; dropped when its response body ends (or the request
/// is abandoned).
pub(super) struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        a.idle_since.store(a.now_ms(), Ordering::Release);
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.changed.notify_one();
        }
    }
}

/// A response whose end (or abandonment) ends its request's time in flight.
pub(super) fn tracked(response: http::Response<Body>, guard: RequestGuard) -> http::Response<Body> {
    response.map(|body| {
        Body::new(Tracked {
            body,
            _guard: guard,
        })
    })
}

struct Tracked {
    body: Body,
    _guard: RequestGuard,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket, noting what arrives in its [`Activity`].
pub(super) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Watched<T> {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header: Duration::from_secs(30),
        idle: Duration::from_secs(75),
    };

    #[tokio::test(start_paused = true)]
    async fn timers_follow_what_the_connection_does() {
        let a = Activity::new();
        let accepted = Instant::now();
        // Connected, nothing sent: the head is awaited.
        assert_eq!(
            a.deadline(&LIMITS),
            Some((accepted + LIMITS.header, ConnectionEnd::HeaderTimeout))
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        a.read(b"GET / HT");
        let guard = a.request_started();
        assert_eq!(a.deadline(&LIMITS), None, "in flight: no timer");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(guard);
        let idle_from = Instant::now();
        assert_eq!(
            a.deadline(&LIMITS),
            Some((idle_from + LIMITS.idle, ConnectionEnd::Idle))
        );
        // The next head starts arriving: the header timer, from its first byte.
        tokio::time::advance(Duration::from_secs(10)).await;
        a.read(b"G");
        let head_from = Instant::now();
        assert_eq!(
            a.deadline(&LIMITS),
            Some((head_from + LIMITS.header, ConnectionEnd::HeaderTimeout))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        a.read(b"ET / HTTP/1.1\r\n");
        assert_eq!(
            a.deadline(&LIMITS),
            Some((head_from + LIMITS.header, ConnectionEnd::HeaderTimeout)),
            "later bytes of the same head do not restart it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_control_frames_are_not_a_request_starting() {
        let a = Activity::new();
        a.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let accepted = Instant::now();
        assert_eq!(
            a.deadline(&LIMITS),
            Some((accepted + LIMITS.idle, ConnectionEnd::Idle))
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        a.read(b"\x00\x00\x08\x06\x00"); // a PING
        assert_eq!(
            a.deadline(&LIMITS),
            Some((accepted + LIMITS.idle, ConnectionEnd::Idle))
        );
    }
}
