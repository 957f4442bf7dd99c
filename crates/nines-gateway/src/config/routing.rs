//! `[routing]`: gateway-wide routing settings.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// This gateway's region: deployments in it are tried before others (a model's own `region`
    /// overrides it).
    pub region: Option<String>,
    /// When every candidate is at its `max_concurrency`, a request waits this long for a slot,
    /// then gets 429 with `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// At most this many requests wait for capacity at once; beyond, 429 at once.
    pub max_queue: usize,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            region: None,
            queue_timeout: Duration::from_secs(5),
            max_queue: 1024,
        }
    }
}
