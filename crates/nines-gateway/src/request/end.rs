//! The one end of every request (pingora's `logging` phase): whatever happened, it ends here,
//! once. The status, outcome and class it records are the ones the client received: an error's
//! own [`GatewayError::status`] and label, an answer's status, a stream's ending. From that one
//! ending it settles the admission (the token reservation returned, the cost charged), adds the
//! request to its minute's usage rollup, queues a usage record when `store.request_records` asks
//! for one, and hands the summary to telemetry (log line, metrics, ledger, sessions, trace).

use super::{GatewayError, Request};
use crate::access::{Usage, usage_of};
use crate::config::Price;
use crate::relay::ending::{StreamEnd, StreamReport};
use crate::resilience::AttemptRecord;
use crate::store::{RollupKeyRef, RollupSums, UsageRecord};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

/// How a request ended, as the client saw it.
struct Ending {
    status: u16,
    outcome: &'static str,
    /// The price of the deployment that served, when one did.
    served: Option<Price>,
    usage: Option<Usage>,
}

impl Request {
    /// Ends the request with the error the client is answered with, and hands the error back.
    pub fn fail<T>(mut self, error: GatewayError) -> Result<T, GatewayError> {
        if let GatewayError::Access(e) = &error {
            self.summary.limited_at = e.limited_at();
        }
        let attempts = error.attempt_records();
        if !attempts.is_empty() {
            self.summary.attempts = attempts.to_vec();
            // The last deployment tried names the failure.
            self.summary.deployment = attempts.last().map(|a| a.deployment.clone());
        }
        self.end(Ending {
            status: error.status().as_u16(),
            outcome: error.label(),
            served: None,
            usage: None,
        });
        Err(error)
    }

    /// Ends the request with an error of another layer's (a video job nobody knows), by its
    /// status and label.
    pub fn fail_as(mut self, status: http::StatusCode, label: &'static str) {
        self.end(Ending {
            status: status.as_u16(),
            outcome: label,
            served: None,
            usage: None,
        });
    }

    /// Ends a request answered with a whole body by a deployment at `price`.
    pub fn answered(mut self, status: http::StatusCode, price: Price, body: &[u8]) {
        let usage = if self.wants_usage() {
            usage_of(body)
        } else {
            None
        };
        self.end(Ending {
            status: status.as_u16(),
            outcome: if status.is_success() {
                "ok"
            } else {
                "upstream_status"
            },
            served: Some(price),
            usage,
        });
    }

    /// Ends a streamed request, served by a deployment at `price`, when its stream ended.
    pub fn streamed(mut self, price: Price, report: StreamReport) {
        let StreamReport {
            end,
            usage,
            resumed,
        } = report;
        self.summary
            .attempts
            .extend(resumed.attempts.iter().cloned());
        let (status, outcome) = match end {
            StreamEnd::Done | StreamEnd::FinishedWithoutDone if !resumed.breaks.is_empty() => {
                let continued_by: Vec<&str> = resumed
                    .attempts
                    .iter()
                    .filter(|a| a.class == crate::resilience::FailureClass::Ok)
                    .map(|a| a.deployment.as_str())
                    .collect();
                self.summary.detail = format!(
                    "resumed on {} after: {}",
                    continued_by.join(", "),
                    resumed.breaks.join("; ")
                );
                (200, "resumed")
            }
            StreamEnd::Done | StreamEnd::FinishedWithoutDone => (200, "ok"),
            StreamEnd::Broken(why) => {
                self.summary.detail = why;
                (200, "stream_broken")
            }
            // The gateway's own doing, not the client's nor the upstream's.
            StreamEnd::Interrupted(why) => {
                self.summary.detail = why;
                (200, "interrupted")
            }
            StreamEnd::ClientGone => (499, "client_gone"),
        };
        self.end(Ending {
            status,
            outcome,
            served: Some(price),
            usage: usage.map(|(input, output)| Usage { input, output }),
        });
    }

    /// Whether the answer's token counts are read: a key's budget, usage accounting or
    /// telemetry (metrics, traces) wants them.
    fn wants_usage(&self) -> bool {
        let keyed = self.identity.as_ref().is_some_and(|i| i.key.is_some());
        keyed
            || self.state.access.accounting.is_some()
            || self.state.access.usage.is_some()
            || self.state.telemetry.wants_usage()
    }

    fn end(&mut self, ending: Ending) {
        if self.ended {
            return;
        }
        self.ended = true;
        let now_ms = self.state.telemetry.clock.now_ms();
        let s = &mut self.summary;
        s.status = ending.status;
        s.outcome = ending.outcome.to_owned();
        s.latency = self.started.elapsed();
        s.finished_at_ms = now_ms;
        if let Some(admission) = self.admission.take() {
            let settled = admission.settle(ending.served, ending.usage);
            if ending.served.is_some() {
                s.tokens_in = Some(settled.usage.input);
                s.tokens_out = Some(settled.usage.output);
                s.usage_estimated = settled.estimated;
                s.cost = settled.cost;
            }
        }
        if let Some(identity) = &self.identity {
            let id = |s: &Option<crate::auth::Subject>| s.as_ref().map(|s| s.id.to_string());
            s.key_id = id(&identity.key);
            s.user_id = id(&identity.user);
            s.org_id = id(&identity.org);
        }
        self.account(ending.served.is_some());
        // Decided once (a sampled policy draws a number), and the text written only for a
        // request that gets a record or a log line: most requests need neither.
        let record = self.wants_usage_record();
        if record || crate::telemetry::request_logging() {
            self.describe();
        }
        if record {
            self.write_usage_record(ending.served.is_some());
        }
        self.state.telemetry.record(&self.summary);
    }

    /// Whether `store.request_records` selects this request for a usage record (one that
    /// reached admission).
    fn wants_usage_record(&self) -> bool {
        match (&self.state.access.usage, &self.identity) {
            (Some(writer), Some(_)) => writer.wants(self.summary.status),
            _ => false,
        }
    }

    /// Writes the plan and the attempt trail (resumed streams' attempts included) as text.
    fn describe(&mut self) {
        if let Some(plan) = &self.plan {
            self.summary.plan = plan.describe(&self.runtime.config.deployments);
        }
        self.summary.trail = trail(&self.summary.attempts);
    }

    /// Adds a request that reached admission to its minute's usage rollup (never waits).
    fn account(&self, served: bool) {
        let (Some(accounting), Some(identity)) = (&self.state.access.accounting, &self.identity)
        else {
            return;
        };
        let s = &self.summary;
        let started_ms = crate::clock::unix_ms(self.started_wall);
        accounting.add(
            RollupKeyRef {
                minute_ms: started_ms - started_ms.rem_euclid(60_000),
                org_id: identity.org.as_ref().map_or("", |s| &*s.id),
                user_id: identity.user.as_ref().map_or("", |s| &*s.id),
                key_id: identity.key.as_ref().map_or("", |s| &*s.id),
                model: &self.model,
                deployment: s.deployment.as_deref().filter(|_| served).unwrap_or(""),
                fallback: s.fallback.as_deref().filter(|_| served).unwrap_or(""),
            },
            RollupSums {
                requests: 1,
                errors: u64::from(s.status >= 400),
                tokens_in: s.tokens_in.unwrap_or(0),
                tokens_out: s.tokens_out.unwrap_or(0),
                cost: s.cost,
            },
        );
    }

    /// Queues the usage record (never waits) of a request that reached admission; asked only
    /// when [`Request::wants_usage_record`] said yes.
    fn write_usage_record(&self, served: bool) {
        let (Some(writer), Some(identity)) = (&self.state.access.usage, &self.identity) else {
            return;
        };
        let s = &self.summary;
        // The record shares the subject's id instead of copying it.
        let id = |s: &Option<crate::auth::Subject>| s.as_ref().map(|s| Arc::clone(&s.id));
        // A failure is recorded by the class of its last attempt when upstreams were tried.
        let outcome = match s.attempts.last() {
            Some(last) if !served => last.class.as_str(),
            _ => s.outcome.as_str(),
        };
        writer.record(UsageRecord {
            // Time-ordered (v7), so the batch appends in the order of the time index.
            id: uuid::Uuid::now_v7()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .into(),
            request_id: s.request_id.as_str().into(),
            key_id: id(&identity.key),
            user_id: id(&identity.user),
            org_id: id(&identity.org),
            model: self.model.as_str().into(),
            deployment: s.deployment.as_deref().filter(|_| served).map(Into::into),
            endpoint: s.endpoint.into(),
            stream: s.stream,
            attempts: u32::try_from(s.attempts.len()).unwrap_or(u32::MAX),
            status: s.status,
            outcome: outcome.into(),
            tokens_in: s.tokens_in,
            tokens_out: s.tokens_out,
            usage_estimated: s.usage_estimated,
            cost: s.cost,
            ttfb_ms: s.ttfb.map(|d| d.as_secs_f64() * 1000.0),
            latency_ms: s.latency.as_secs_f64() * 1000.0,
            started_at: crate::clock::unix_ms(self.started_wall),
            finished_at: crate::clock::unix_ms(SystemTime::now()),
            plan: s.plan.as_str().into(),
            attempt_trail: s.trail.as_str().into(),
            fallback: s.fallback.as_deref().filter(|_| served).map(Into::into),
        });
    }
}

impl Drop for Request {
    /// Dropped before it ended: the client went away while the request was in flight.
    fn drop(&mut self) {
        self.end(Ending {
            status: 499,
            outcome: "client_gone",
            served: None,
            usage: None,
        });
    }
}

/// `d0#0 server 500 12ms; d1#0 rate_limited 429 3ms retry-after=86400s; d2#0 ok 200 9ms`: the
/// attempts as the usage record and the log line keep them, each with the provider's own
/// `Retry-After` when it sent one.
fn trail(attempts: &[AttemptRecord]) -> String {
    // Written into one buffer: this runs for every request while the store or request log is
    // on, and one string per attempt plus the join cost as much again.
    let mut out = String::with_capacity(32 * attempts.len());
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{} {} ", a.key_alias, a.class.as_str());
        match a.status {
            Some(s) => {
                let _ = write!(out, "{s}");
            }
            None => out.push('-'),
        }
        let _ = write!(out, " {}ms", a.elapsed.as_millis());
        if let Some(wait) = a.retry_after {
            let _ = write!(out, " retry-after={}s", wait.as_secs_f64());
        }
    }
    out
}
