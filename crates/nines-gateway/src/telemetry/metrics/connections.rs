//! Client connections: how many are open, the cap, and why the gateway closed or refused any.
//! The server (`server/`) counts into it; the exposition reads it.

use super::{family, sample};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why the gateway ended or refused a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// Answered 503 at accept: `max_connections` were open, each with a request in flight.
    RefusedAtLimit,
    /// Closed while idle to make room for a new connection at `max_connections`.
    EvictedAtLimit,
    /// `accept` failed (out of file descriptors, mostly).
    AcceptFailed,
    /// The request head did not arrive within `header_read_timeout`.
    HeaderTimeout,
    /// The request body did not arrive within `body_read_timeout`.
    BodyTimeout,
    /// No request for `idle_timeout`.
    Idle,
}

impl ConnectionEnd {
    const ALL: [ConnectionEnd; 6] = [
        ConnectionEnd::RefusedAtLimit,
        ConnectionEnd::EvictedAtLimit,
        ConnectionEnd::AcceptFailed,
        ConnectionEnd::HeaderTimeout,
        ConnectionEnd::BodyTimeout,
        ConnectionEnd::Idle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionEnd::RefusedAtLimit => "refused_at_limit",
            ConnectionEnd::EvictedAtLimit => "evicted_at_limit",
            ConnectionEnd::AcceptFailed => "accept_failed",
            ConnectionEnd::HeaderTimeout => "header_timeout",
            ConnectionEnd::BodyTimeout => "body_timeout",
            ConnectionEnd::Idle => "idle_timeout",
        }
    }
}

/// Counters of the client connections.
#[derive(Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    limit: AtomicU64,
    ends: [AtomicU64; ConnectionEnd::ALL.len()],
}

impl ConnectionStats {
    pub fn opened(&self) -> u64 {
        self.open.fetch_add(1, Relaxed) + 1
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    pub fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }

    /// The cap in force (`max_connections`, or less when the descriptor limit is lower).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit as u64, Relaxed);
    }

    /// Counts one; returns the count so far of that kind.
    pub fn ended(&self, why: ConnectionEnd) -> u64 {
        self.ends[why as usize].fetch_add(1, Relaxed) + 1
    }

    pub fn count(&self, why: ConnectionEnd) -> u64 {
        self.ends[why as usize].load(Relaxed)
    }

    pub(super) fn render(&self, w: &mut String) {
        family(
            w,
            "nines_connections_open",
            "gauge",
            "Client connections open now.",
        );
        sample(w, "nines_connections_open", &[], self.open() as f64);
        family(
            w,
            "nines_connections_limit",
            "gauge",
            "The open-connection cap in force: server.max_connections, or less when the file-descriptor limit cannot hold that many.",
        );
        sample(
            w,
            "nines_connections_limit",
            &[],
            self.limit.load(Relaxed) as f64,
        );
        family(
            w,
            "nines_connections_closed_total",
            "counter",
            "Client connections the gateway refused or closed, by reason: evicted_at_limit (idle, closed to make room for a new one at the cap), refused_at_limit (answered 503 at accept: every open connection had a request in flight), accept_failed (out of file descriptors), header_timeout, body_timeout, idle_timeout.",
        );
        for why in ConnectionEnd::ALL {
            sample(
                w,
                "nines_connections_closed_total",
                &[("reason", why.as_str())],
                self.count(why) as f64,
            );
        }
    }
}
