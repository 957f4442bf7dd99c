//! Telemetry: what nines records about its own traffic. One [`RequestSummary`] per request feeds
//! the request log line, Prometheus metrics, the availability ledger, sessions and trace export;
//! breaker transitions arrive as [`events::BreakerEvent`]s. Alerts are judged from the ledger and
//! the breaker events, not per request.
//!
//! The hub lives as long as the process (it is not rebuilt on a config reload), and nothing here
//! blocks a request: metric updates are atomics, the ledger and sessions take a short lock, and
//! everything that talks to a collector or a webhook runs in a background task. The store is not
//! known here: `store::ledger_writer` copies the ledger into it.

pub mod alerts;
pub mod ledger;
pub mod metrics;
pub mod objectives;
pub mod record;
pub mod sessions;
pub mod trace;

pub use record::{RequestSummary, request_logging};

use crate::clock::Clock;
use crate::config::Config;
use crate::resilience::events::{self, EventSink};
use std::sync::Arc;
use std::time::Duration;

/// Feeds breaker transitions to the ledger's incidents until the ledger is gone.
async fn follow_breakers(
    ledger: std::sync::Weak<ledger::Ledger>,
    mut events: tokio::sync::broadcast::Receiver<events::BreakerEvent>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(event) => match ledger.upgrade() {
                Some(ledger) => ledger.on_breaker(&event),
                None => return,
            },
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "incident tracking fell behind breaker events");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Rolls old minute buckets into hours once a minute.
async fn compact_periodically(ledger: std::sync::Weak<ledger::Ledger>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ledger.upgrade() {
            Some(ledger) => ledger.compact(),
            None => return,
        }
    }
}

/// The process's telemetry sinks.
#[derive(Debug)]
pub struct Telemetry {
    pub clock: Clock,
    pub events: EventSink,
    pub metrics: Option<metrics::Metrics>,
    pub ledger: Option<Arc<ledger::Ledger>>,
    pub sessions: Arc<sessions::Sessions>,
    pub tracer: Option<trace::Tracer>,
    pub alerts: Option<Arc<alerts::Alerts>>,
}

impl Telemetry {
    /// Builds the sinks the configuration asks for. Background work starts in [`Telemetry::start`].
    pub fn new(config: &Config) -> Arc<Telemetry> {
        Telemetry::with_clock(config, Clock::system())
    }

    pub fn with_clock(config: &Config, clock: Clock) -> Arc<Telemetry> {
        let t = &config.telemetry;
        let events = EventSink::new(clock);
        let ledger = t.ledger.then(|| Arc::new(ledger::Ledger::new(t, clock)));
        Arc::new(Telemetry {
            clock,
            metrics: t.metrics.then(|| metrics::Metrics::new(config, &events)),
            events,
            sessions: Arc::new(sessions::Sessions::new(&t.sessions, ledger.clone())),
            ledger,
            tracer: t.otlp.as_ref().and_then(trace::Tracer::new),
            alerts: t.alerts.as_ref().map(|a| {
                let alerts = alerts::Alerts::new(a, t.slo);
                alerts.set_objectives(crate::config::slo::by_route(&config.models));
                Arc::new(alerts)
            }),
        })
    }

    /// Starts the background tasks (session expiry, alert evaluation, breaker event consumers).
    /// Call once, inside a tokio runtime.
    pub fn start(self: &Arc<Self>) {
        if let Some(metrics) = &self.metrics {
            metrics.start(&self.events);
        }
        if let Some(ledger) = &self.ledger {
            tokio::spawn(follow_breakers(
                Arc::downgrade(ledger),
                self.events.subscribe(),
            ));
            tokio::spawn(compact_periodically(Arc::downgrade(ledger)));
            // Alerts read the ledger's windows (the configuration requires the ledger for them).
            if let Some(alerts) = &self.alerts {
                alerts.start(ledger, &self.events);
            }
        }
        tokio::spawn(sessions::expire_periodically(Arc::downgrade(
            &self.sessions,
        )));
        if let Some(tracer) = &self.tracer {
            tracer.start();
        }
    }

    /// At shutdown: ends live sessions (counting them into the ledger as they stand) and sends
    /// buffered trace spans, waiting at most `within`. Returns the sessions ended.
    pub async fn shutdown(&self, within: Duration) -> usize {
        let ended = self.sessions.end_all();
        if let Some(tracer) = &self.tracer
            && !tracer.flush(within).await
        {
            tracing::warn!("OTLP trace export: spans not flushed before shutdown");
        }
        ended.len()
    }

    /// Whether requests must be watched for their usage (tokens, cost) even when no key or store
    /// asks for it.
    pub fn wants_usage(&self) -> bool {
        self.metrics.is_some() || self.tracer.is_some()
    }

    /// Records one finished request everywhere it is wanted.
    pub fn record(&self, summary: &RequestSummary) {
        record::log_line(summary);
        if let Some(metrics) = &self.metrics {
            metrics.record(summary);
        }
        if let Some(ledger) = &self.ledger {
            ledger.record(summary);
        }
        self.sessions.record(summary);
        if let Some(tracer) = &self.tracer {
            tracer.export(summary);
        }
    }
}
