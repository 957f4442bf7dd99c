//! The fault script: what misbehaviour to inject, and which requests get it.
//!
//! A script has two kinds of fields. *Gates* (`fail_percent`, `times`, the down window and the
//! cycle) decide whether a given request is faulted at all; every gate that is set must admit the
//! request. *Effects* (`status`, `hang`, the delays and the stream breakages) say what happens to a
//! faulted request. A script that sets no effect means "the provider is down": status 503.
//!
//! Gating is a pure function of (time since the script was set, request sequence number), so it
//! is deterministic and can be tested without a server or a clock.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// A scripted fault. Every field is optional; see the crate docs for the meaning of each.
///
/// Unknown fields are refused, so a typo in a test's script fails loudly instead of silently
/// injecting nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultScript {
    // ---- effects: what a faulted request gets ----
    /// Respond with this status and an error body shaped like the route's provider's instead of
    /// success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Raw body (sent as `application/json`) instead of the generated one; status 200 unless
    /// `status` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Value of the `retry-after` header on the fault response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// Value of the `retry-after-ms` header on the fault response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Accept the request and never answer (until the client disconnects or the server stops).
    #[serde(default, skip_serializing_if = "is_false")]
    pub hang: bool,
    /// Delay before the response head (and so the first byte) is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<u64>,
    /// Fixed extra latency before responding; adds to `first_byte_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Stream: delay between consecutive SSE events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_delay_ms: Option<u64>,
    /// Stream: write each event in pieces of this many bytes, each flushed on its own, so the
    /// client's reads end mid-line and mid-UTF-8 sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_writes: Option<u32>,
    /// Stream: send this many events, then go silent with the connection left open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after_chunks: Option<u32>,
    /// Stream: send this many events, then abort the connection mid-body. Non-streaming: abort
    /// without a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_after_chunks: Option<u32>,
    /// Stream: the event with this 0-based index is replaced by `data: {not json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed_chunk_at: Option<u32>,
    /// Stream (SSE dialects): before the event with this 0-based index, send one extra event,
    /// `data: {"padding":"xx…"}`, whose padding is `big_event_bytes` long, written in 64 KiB
    /// pieces as fast as the client reads them. Under a client's event limit it is a legal (if
    /// useless) event and the stream goes on; past it, a bounded client stops reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub big_event_at: Option<u32>,
    /// The length of `big_event_at`'s padding in bytes (default 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub big_event_bytes: Option<u64>,
    /// Stream: end without the `data: [DONE]` terminator.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_done: bool,
    /// Stream: at this 0-based event index send an in-band error event, then end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_event_at: Option<u32>,
    /// The reply is blocked by a safety filter: a success status with no content, flagged the
    /// way the dialect flags it (OpenAI `content_filter`, Anthropic `refusal`, Gemini `SAFETY`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub content_filter: bool,
    /// The provider refuses the prompt as longer than the model's context, with the dialect's
    /// own 400 (OpenAI `context_length_exceeded`, Anthropic "prompt is too long", ...).
    #[serde(default, skip_serializing_if = "is_false")]
    pub context_too_long: bool,
    /// Asynchronous jobs (Replicate predictions, Runway tasks) end in this state instead of
    /// succeeding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_status: Option<PredictionStatus>,

    // ---- gates: which requests are faulted ----
    /// Share (0..=100) of requests that are faulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_percent: Option<f64>,
    /// Without a seed, `fail_percent` is an evenly spread pattern (exactly that share, starting
    /// with the first request); with a seed, each request draws from an RNG seeded by
    /// (seed, sequence number), so the pattern is irregular but reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Fault only the first N requests that the other gates admit, then serve normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// The model list and model lookups (what a health probe asks) answer normally and draw
    /// nothing from the script: a provider whose `/models` is up while the model fails.
    #[serde(default, skip_serializing_if = "is_false")]
    pub spare_models: bool,
    /// Start of the down window, in ms after the script was set (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_from_ms: Option<u64>,
    /// End (exclusive) of the down window, in ms after the script was set (default: forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_to_ms: Option<u64>,
    /// Repeating outage: the length of one up/down cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_period_ms: Option<u64>,
    /// Repeating outage: the down part at the start of each cycle (default half the period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_down_ms: Option<u64>,
}

/// How a faulted asynchronous job ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    /// The job fails with a mock error.
    Failed,
    /// The job is canceled before producing output.
    #[serde(alias = "cancelled")]
    Canceled,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a fault script was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("status {0} is not an HTTP status code (100..=999)")]
    Status(u16),
    #[error("fail_percent {0} is outside 0..=100")]
    FailPercent(f64),
    #[error("cycle_period_ms must be greater than 0")]
    CyclePeriod,
    #[error("cycle_down_ms {down} is longer than cycle_period_ms {period}")]
    CycleDown { down: u64, period: u64 },
    #[error("down_from_ms {from} is not before down_to_ms {to}")]
    Window { from: u64, to: u64 },
    #[error("split_writes must be greater than 0")]
    SplitWrites,
}

/// `big_event_bytes` when unset: far past any sane event limit (nines holds at most 8 MiB of one
/// event), so a client that buffers without bound is plain to see.
const DEFAULT_BIG_EVENT_BYTES: u64 = 64 * 1024 * 1024;

/// Status used when a faulted request has no other effect to suffer.
const DOWN_STATUS: u16 = 503;

impl FaultScript {
    /// A script that answers every request with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// Refuse scripts whose numbers cannot mean anything, before they are installed.
    pub fn validate(&self) -> Result<(), FaultError> {
        if let Some(s) = self.status
            && !(100..=999).contains(&s)
        {
            return Err(FaultError::Status(s));
        }
        if let Some(p) = self.fail_percent
            && !(0.0..=100.0).contains(&p)
        {
            return Err(FaultError::FailPercent(p));
        }
        match (self.cycle_period_ms, self.cycle_down_ms) {
            (Some(0), _) => return Err(FaultError::CyclePeriod),
            (Some(period), Some(down)) if down > period => {
                return Err(FaultError::CycleDown { down, period });
            }
            _ => {}
        }
        if let (Some(from), Some(to)) = (self.down_from_ms, self.down_to_ms)
            && from >= to
        {
            return Err(FaultError::Window { from, to });
        }
        if self.split_writes == Some(0) {
            return Err(FaultError::SplitWrites);
        }
        Ok(())
    }

    /// The status a faulted request answers with, if it answers with an error at all.
    ///
    /// A script with no effect field is an outage, so it answers 503.
    pub(crate) fn effective_status(&self) -> Option<u16> {
        match self.status {
            Some(s) => Some(s),
            None if !self.has_effect() => Some(DOWN_STATUS),
            None => None,
        }
    }

    fn has_effect(&self) -> bool {
        self.status.is_some()
            || self.body.is_some()
            || self.hang
            || self.first_byte_ms.is_some()
            || self.latency_ms.is_some()
            || self.chunk_delay_ms.is_some()
            || self.split_writes.is_some()
            || self.stall_after_chunks.is_some()
            || self.reset_after_chunks.is_some()
            || self.malformed_chunk_at.is_some()
            || self.big_event_at.is_some()
            || self.no_done
            || self.error_event_at.is_some()
            || self.content_filter
            || self.context_too_long
            || self.prediction_status.is_some()
    }

    /// The padding of `big_event_at`'s event, in bytes.
    pub(crate) fn big_event_bytes(&self) -> u64 {
        self.big_event_bytes.unwrap_or(DEFAULT_BIG_EVENT_BYTES)
    }

    /// Delay before the response head: `first_byte_ms` plus `latency_ms`.
    pub(crate) fn head_delay(&self) -> Duration {
        let ms = self
            .first_byte_ms
            .unwrap_or(0)
            .saturating_add(self.latency_ms.unwrap_or(0));
        Duration::from_millis(ms)
    }

    /// Whether the time and share gates admit request number `seq` (0-based, counted since the
    /// script was set) arriving `elapsed` after the script was set.
    ///
    /// `times` is not decided here: it counts injected faults, which needs shared state (see
    /// `state::ActiveFault`).
    pub(crate) fn gates_admit(&self, elapsed: Duration, seq: u64) -> bool {
        self.in_window(elapsed) && self.in_cycle_down(elapsed) && self.share_admits(seq)
    }

    fn in_window(&self, elapsed: Duration) -> bool {
        if self.down_from_ms.is_none() && self.down_to_ms.is_none() {
            return true;
        }
        let ms = millis(elapsed);
        let from = self.down_from_ms.unwrap_or(0);
        let to = self.down_to_ms.unwrap_or(u64::MAX);
        from <= ms && ms < to
    }

    fn in_cycle_down(&self, elapsed: Duration) -> bool {
        let Some(period) = self.cycle_period_ms.filter(|p| *p > 0) else {
            return true;
        };
        let down = self.cycle_down_ms.unwrap_or(period / 2);
        millis(elapsed) % period < down
    }

    fn share_admits(&self, seq: u64) -> bool {
        let Some(percent) = self.fail_percent else {
            return true;
        };
        match self.seed {
            Some(seed) => {
                // Re-seed per request so the decision depends only on (seed, seq), not on the
                // order concurrent requests happened to take an RNG lock.
                let mut rng = StdRng::seed_from_u64(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                rng.random::<f64>() * 100.0 < percent
            }
            None => {
                // Evenly spread: request `seq` is faulted when the running quota ceil(n·p)
                // steps up, so any run of requests gets exactly the share, first one faulted.
                let basis_points = (percent.clamp(0.0, 100.0) * 100.0).round() as u64;
                let quota = |n: u64| n.saturating_mul(basis_points).div_ceil(10_000);
                quota(seq + 1) > quota(seq)
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
