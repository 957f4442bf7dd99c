//! Prometheus metrics (`GET /metrics`). See `docs/metrics.md`.

use super::RequestSummary;
use crate::config::Config;

#[derive(Debug)]
pub struct Metrics {}

impl Metrics {
    pub fn new(_config: &Config) -> Metrics {
        Metrics {}
    }

    pub fn record(&self, _summary: &RequestSummary) {}
}
