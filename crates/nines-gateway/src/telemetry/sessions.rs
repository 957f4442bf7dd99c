//! Sessions: requests sharing a session header, judged against a latency budget.

use super::RequestSummary;
use super::clock::Clock;
use crate::config::telemetry::Sessions as Settings;

#[derive(Debug)]
pub struct Sessions {}

impl Sessions {
    pub fn new(_settings: &Settings, _clock: Clock) -> Sessions {
        Sessions {}
    }

    pub fn record(&self, _summary: &RequestSummary) {}
}
