//! Alerts to a Slack-compatible webhook.
//!
//! Three conditions, each judged per subject:
//!
//! - `fallback_rate` (per route): the share of the route's requests over `fallback_window` served
//!   by other than the first deployment tried reaches `fallback_rate`, with at least
//!   `min_requests` requests in the window.
//! - `burn_rate` (per route): the route's error budget (against `[telemetry] slo`) burns at least
//!   `burn_rate` times the sustainable rate, both over `burn_window` (with at least
//!   `min_requests` requests) and over its last twelfth (at least 5 minutes, at most the window):
//!   the multiwindow rule of Google's SRE workbook, so the alert resolves minutes after the
//!   failures stop rather than a whole window later.
//! - `latency_objective` (per route and latency objective, `[[models]] slo = { ttft_p99 = "5s",
//!   … }`): the route's minute windows miss the objective at least `burn_rate` times faster than
//!   its `slo.windows` share allows, over `burn_window` (with at least `min_requests` successes)
//!   and over its last twelfth: the same multiwindow rule, on minutes instead of requests
//!   ([`super::objectives`]). Its subject is `route:objective` (`chat:ttft_p99`).
//! - `breaker` (per key slot): a breaker opened; resolved when it closes.
//!
//! A route's own `slo.availability` replaces `[telemetry] slo` in its burn-rate alert.
//!
//! Every `interval` (tokio time) the evaluator reads the ledger, and the breaker states it follows
//! from [`BreakerEvent`]s, and compares them with what it has announced: a condition that starts
//! gives one `firing` notice, one that ends gives one `resolved` notice, and nothing is sent in
//! between however many evaluations see it. Hysteresis: a rate alert fires at its threshold but
//! resolves only below [`RESOLVE_BELOW`] of it (or once its window holds no fallbacks / failures
//! at all); with too few requests to judge, it stays as it is. A breaker that reopens after a
//! failed half-open probe is the same alert until it closes; a breaker that opened and closed
//! again between two evaluations is not announced.
//!
//! Notices go through a bounded queue to one delivery task: one POST per notice, in order, with
//! a timeout, retried with doubling backoff on timeouts, connection errors, 5xx and 429. Requests
//! never wait for any of it. The webhook URL may carry a token, so it is never logged, put in an
//! error or counted under: failures name the alert and what went wrong, nothing else.

use super::ledger::{Ledger, Scope, WindowStats};
use super::objectives::{self, WindowShare};
use crate::config::Secret;
use crate::config::slo::{LatencyObjective, RouteSlo};
use crate::config::telemetry::Alerts as Settings;
use crate::resilience::events::{BreakerEvent, EventSink, Transition};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};

/// Notices waiting for delivery; when it is full, new notices are dropped (counted and logged).
pub const QUEUE: usize = 256;
/// A firing rate alert resolves only once its value is below this share of its threshold.
pub const RESOLVE_BELOW: f64 = 0.8;
/// The burn-rate alert's recent window is `burn_window / 12`, but at least this (and at most
/// `burn_window`).
pub const RECENT_MIN: Duration = Duration::from_secs(300);
/// No wait between delivery attempts is longer than this, whatever `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    FallbackRate,
    BurnRate,
    LatencyObjective,
    Breaker,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FallbackRate => "fallback_rate",
            Kind::BurnRate => "burn_rate",
            Kind::LatencyObjective => "latency_objective",
            Kind::Breaker => "breaker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    fn emoji(self) -> &'static str {
        match self {
            AlertState::Firing => ":red_circle:",
            AlertState::Resolved => ":large_green_circle:",
        }
    }
}

/// One announcement: a condition started or ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: Kind,
    pub state: AlertState,
    /// The route (rate alerts) or the key slot (breakers).
    pub subject: String,
    /// Unix ms: when it was judged (rate alerts) or when the breaker opened / closed.
    pub at_ms: u64,
    /// The webhook body: `{"text": …, "nines": {…}}`.
    pub payload: Value,
}

impl Notice {
    pub fn text(&self) -> &str {
        self.payload["text"].as_str().unwrap_or_default()
    }
}

/// Counters of the alerting machinery (no label names the webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertStats {
    /// Evaluations done.
    pub evaluations: u64,
    /// Notices produced (firing and resolved).
    pub notices: u64,
    /// Notices the webhook accepted (2xx).
    pub delivered: u64,
    /// Notices given up on after every attempt failed.
    pub failed: u64,
    /// Notices dropped because the delivery queue was full.
    pub dropped: u64,
    /// POSTs made, retries included.
    pub attempts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    evaluations: AtomicU64,
    notices: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    attempts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The alerting hub: settings, the delivery queue and counters. Evaluation and delivery run in
/// background tasks started by [`Alerts::start`].
#[derive(Debug)]
pub struct Alerts {
    settings: Settings,
    slo: f64,
    /// The routes' own objectives, as the running configuration says (`set_objectives`).
    objectives: Mutex<BTreeMap<String, RouteSlo>>,
    queue: mpsc::Sender<Notice>,
    /// The queue's receiving end until the delivery task takes it.
    pending: Mutex<Option<mpsc::Receiver<Notice>>>,
    counters: Arc<Counters>,
}

impl Alerts {
    pub fn new(settings: &Settings, slo: f64) -> Alerts {
        let (queue, rx) = mpsc::channel(QUEUE);
        Alerts {
            settings: settings.clone(),
            slo,
            objectives: Mutex::default(),
            queue,
            pending: Mutex::new(Some(rx)),
            counters: Arc::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The routes' own objectives (`config::slo::by_route`), at start and on every reload: the
    /// next evaluation judges against them.
    pub fn set_objectives(&self, objectives: BTreeMap<String, RouteSlo>) {
        *self.objectives.lock().unwrap_or_else(|p| p.into_inner()) = objectives;
    }

    fn objectives(&self) -> BTreeMap<String, RouteSlo> {
        self.objectives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stats(&self) -> AlertStats {
        let c = &self.counters;
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AlertStats {
            evaluations: read(&c.evaluations),
            notices: read(&c.notices),
            delivered: read(&c.delivered),
            failed: read(&c.failed),
            dropped: read(&c.dropped),
            attempts: read(&c.attempts),
        }
    }

    /// Starts delivery and periodic evaluation over `ledger`, following breaker transitions from
    /// `events` (when breaker alerts are on). Call once, inside a tokio runtime; later calls do
    /// nothing. The tasks end once this hub (or the ledger) is dropped.
    pub fn start(self: &Arc<Self>, ledger: &Arc<Ledger>, events: &EventSink) {
        let Some(rx) = self.take_queue() else {
            return;
        };
        match Webhook::new(&self.settings) {
            Ok(webhook) => {
                tokio::spawn(deliver(rx, webhook, Arc::clone(&self.counters)));
            }
            // Without a client every notice is counted as dropped (the queue is closed), and
            // the log lines of the notices themselves still appear.
            Err(e) => tracing::error!(error = %e, "alert delivery disabled"),
        }
        self.spawn_evaluator(ledger, events);
    }

    fn take_queue(&self) -> Option<mpsc::Receiver<Notice>> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Starts periodic evaluation only; notices stay in the queue (tests read it).
    fn spawn_evaluator(
        self: &Arc<Self>,
        ledger: &Arc<Ledger>,
        events: &EventSink,
    ) -> tokio::task::JoinHandle<()> {
        let events = self.settings.breaker.then(|| events.subscribe());
        tokio::spawn(evaluate_periodically(
            Arc::downgrade(self),
            Arc::downgrade(ledger),
            Evaluator::new(&self.settings, self.slo),
            self.settings.interval,
            events,
        ))
    }

    /// Logs a notice and queues it for delivery; never waits.
    fn enqueue(&self, notice: Notice) {
        bump(&self.counters.notices);
        match notice.state {
            AlertState::Firing => tracing::warn!(
                target: "nines::alerts",
                alert = notice.kind.as_str(),
                state = notice.state.as_str(),
                subject = %notice.subject,
                "{}",
                notice.text()
            ),
            AlertState::Resolved => tracing::info!(
                target: "nines::alerts",
                alert = notice.kind.as_str(),
                state = notice.state.as_str(),
                subject = %notice.subject,
                "{}",
                notice.text()
            ),
        }
        if let Err(e) = self.queue.try_send(notice) {
            bump(&self.counters.dropped);
            let (mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n)) = e;
            tracing::warn!(
                target: "nines::alerts",
                alert = n.kind.as_str(),
                state = n.state.as_str(),
                subject = %n.subject,
                "alert notice dropped: the delivery queue is full or closed"
            );
        }
    }
}

async fn next_event(
    events: &mut Option<broadcast::Receiver<BreakerEvent>>,
) -> Result<BreakerEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Feeds one receive result to the evaluator; `false` once the channel is closed.
fn follow(
    evaluator: &mut Evaluator,
    result: Result<BreakerEvent, broadcast::error::RecvError>,
) -> bool {
    use broadcast::error::RecvError;
    match result {
        Ok(event) => evaluator.on_breaker(&event),
        Err(RecvError::Lagged(n)) => tracing::warn!(
            target: "nines::alerts",
            missed = n,
            "alerts fell behind breaker events; breaker alerts may be stale until the next transition"
        ),
        Err(RecvError::Closed) => return false,
    }
    true
}

async fn evaluate_periodically(
    alerts: Weak<Alerts>,
    ledger: Weak<Ledger>,
    mut evaluator: Evaluator,
    interval: Duration,
    mut events: Option<broadcast::Receiver<BreakerEvent>>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (Some(alerts), Some(ledger)) = (alerts.upgrade(), ledger.upgrade()) else {
                    return;
                };
                // Transitions that already happened count in this evaluation.
                while let Some(rx) = events.as_mut() {
                    match rx.try_recv() {
                        Ok(event) => evaluator.on_breaker(&event),
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            follow(&mut evaluator, Err(broadcast::error::RecvError::Lagged(n)));
                        }
                        Err(broadcast::error::TryRecvError::Closed) => events = None,
                    }
                }
                evaluator.set_objectives(alerts.objectives());
                for notice in evaluator.evaluate(&ledger) {
                    alerts.enqueue(notice);
                }
                bump(&alerts.counters.evaluations);
            }
            result = next_event(&mut events) => {
                if !follow(&mut evaluator, result) {
                    events = None;
                }
            }
        }
    }
}

/// What one evaluation read for one rate alert.
#[derive(Debug, Clone)]
struct Reading {
    /// The condition holds: announce it if it is not yet.
    fire: bool,
    /// The condition is over: resolve it if it was announced.
    clear: bool,
    /// Fields of the notice's `nines` object, and its text for either state.
    fields: Map<String, Value>,
    firing_text: String,
    resolved_text: String,
}

/// A key slot's breaker as its transitions have told it.
#[derive(Debug)]
struct Slot {
    deployment: String,
    open: bool,
    /// Why it first opened in this incident.
    reason: String,
    opened_at_ms: u64,
    closed_at_ms: u64,
    /// Times it opened in this incident (failed half-open probes reopen it).
    trips: u32,
}

/// The deduplicating state machine: what is announced, and the breakers followed. Pure apart from
/// reading the ledger, so it is tested by calling it.
#[derive(Debug)]
pub struct Evaluator {
    settings: Settings,
    slo: f64,
    objectives: BTreeMap<String, RouteSlo>,
    /// Announced and not yet resolved, with when each started (Unix ms).
    firing: BTreeMap<(Kind, String), u64>,
    slots: BTreeMap<String, Slot>,
}

impl Evaluator {
    pub fn new(settings: &Settings, slo: f64) -> Evaluator {
        Evaluator {
            settings: settings.clone(),
            slo,
            objectives: BTreeMap::new(),
            firing: BTreeMap::new(),
            slots: BTreeMap::new(),
        }
    }

    /// The routes' own objectives to judge from now on.
    pub fn set_objectives(&mut self, objectives: BTreeMap<String, RouteSlo>) {
        self.objectives = objectives;
    }

    /// The conditions announced and not yet resolved, as (alert, subject).
    pub fn firing(&self) -> Vec<(Kind, String)> {
        self.firing.keys().cloned().collect()
    }

    /// Follows one breaker transition (judged at the next evaluation).
    pub fn on_breaker(&mut self, event: &BreakerEvent) {
        if !self.settings.breaker {
            return;
        }
        let announced = self
            .firing
            .contains_key(&(Kind::Breaker, event.key_slot.clone()));
        match &event.transition {
            Transition::Opened { reason, .. } => {
                let slot = self
                    .slots
                    .entry(event.key_slot.clone())
                    .or_insert_with(|| Slot {
                        deployment: event.deployment.clone(),
                        open: false,
                        reason: String::new(),
                        opened_at_ms: event.at_ms,
                        closed_at_ms: event.at_ms,
                        trips: 0,
                    });
                if !slot.open && !announced {
                    // A new incident, not the reopening of one still announced.
                    slot.reason = reason.clone();
                    slot.opened_at_ms = event.at_ms;
                    slot.trips = 0;
                }
                slot.open = true;
                slot.trips += 1;
            }
            // Still held back: not an alert of its own, and not the end of one.
            Transition::HalfOpen => {}
            Transition::Closed => {
                if let Some(slot) = self.slots.get_mut(&event.key_slot) {
                    slot.open = false;
                    slot.closed_at_ms = event.at_ms;
                }
            }
        }
    }

    /// Judges every condition now; returns the notices to send (none for conditions whose state
    /// has not changed since they were announced).
    pub fn evaluate(&mut self, ledger: &Ledger) -> Vec<Notice> {
        let now_ms = ledger.clock().now_ms();
        let mut out = Vec::new();
        let mut routes: BTreeSet<String> = ledger
            .series()
            .into_iter()
            .filter(|(scope, _)| *scope == Scope::Route)
            .map(|(_, name)| name)
            .collect();
        // A route whose series is gone (no traffic left anywhere) still resolves.
        routes.extend(
            self.firing
                .keys()
                .filter(|(kind, _)| matches!(kind, Kind::FallbackRate | Kind::BurnRate))
                .map(|(_, name)| name.clone()),
        );
        for route in &routes {
            let reading = self.fallback_reading(ledger, route);
            self.apply(Kind::FallbackRate, route, reading, now_ms, &mut out);
            let reading = self.burn_reading(ledger, route);
            self.apply(Kind::BurnRate, route, reading, now_ms, &mut out);
        }
        self.judge_latency(ledger, now_ms, &mut out);
        self.judge_breakers(&mut out);
        out
    }

    /// Every configured latency objective; one announced for an objective no longer configured
    /// resolves.
    fn judge_latency(&mut self, ledger: &Ledger, now_ms: u64, out: &mut Vec<Notice>) {
        let mut judged: BTreeSet<String> = BTreeSet::new();
        let configured: Vec<(String, LatencyObjective, f64)> = self
            .objectives
            .iter()
            .flat_map(|(route, slo)| {
                slo.latency
                    .iter()
                    .map(move |o| (route.clone(), *o, slo.windows))
            })
            .collect();
        for (route, objective, windows) in configured {
            let subject = format!("{route}:{}", objective.key());
            let reading = self.latency_reading(ledger, &route, &objective, windows);
            self.apply(Kind::LatencyObjective, &subject, reading, now_ms, out);
            judged.insert(subject);
        }
        let gone: Vec<String> = self
            .firing
            .keys()
            .filter(|(kind, subject)| *kind == Kind::LatencyObjective && !judged.contains(subject))
            .map(|(_, subject)| subject.clone())
            .collect();
        for subject in gone {
            let resolved_text = format!(
                "{} nines: resolved: latency objective {subject} is no longer configured",
                AlertState::Resolved.emoji()
            );
            let reading = Reading {
                fire: false,
                clear: true,
                fields: Map::new(),
                firing_text: String::new(),
                resolved_text,
            };
            self.apply(Kind::LatencyObjective, &subject, reading, now_ms, out);
        }
    }

    fn latency_reading(
        &self,
        ledger: &Ledger,
        route: &str,
        objective: &LatencyObjective,
        windows: f64,
    ) -> Reading {
        let s = &self.settings;
        let now = ledger.clock().now_ms();
        let recent_window = recent_window(s.burn_window);
        let minutes = |w: Duration| {
            ledger.minutes_between(
                Scope::Route,
                route,
                now.saturating_sub(w.as_millis() as u64),
                now,
            )
        };
        let long_minutes = minutes(s.burn_window);
        let long = WindowShare::of(long_minutes.iter().map(|(_, t)| t), objective);
        let recent = WindowShare::of(minutes(recent_window).iter().map(|(_, t)| t), objective);
        let successes: u64 = long_minutes
            .iter()
            .map(|(_, t)| objectives::sketch(t, objective.metric).count())
            .sum();
        let judged = successes >= s.min_requests;
        let threshold = s.burn_rate;
        let (long_burn, recent_burn) = (long.burn_rate(windows), recent.burn_rate(windows));
        let burning = |b: Option<f64>| b.is_some_and(|b| at_least(b, threshold));
        let cool = |b: Option<f64>| b.is_some_and(|b| below(b, threshold * RESOLVE_BELOW));
        let window = window_text(s.burn_window);
        let recent_text = window_text(recent_window);
        let key = objective.key();
        let bound = objectives::shown_ms(objectives::bound_ms(objective));
        let missed = long.judged - long.met;
        Reading {
            fire: judged && burning(long_burn) && burning(recent_burn),
            clear: missed == 0 || (judged && cool(long_burn)) || cool(recent_burn),
            fields: fields([
                ("route", json!(route)),
                ("objective", json!(key)),
                ("bound_ms", json!(objectives::bound_ms(objective))),
                ("value", json!(long_burn)),
                ("threshold", json!(threshold)),
                ("window", json!(window)),
                ("minutes", json!(long.judged)),
                ("minutes_missed", json!(missed)),
                ("recent_value", json!(recent_burn)),
                ("recent_window", json!(recent_text)),
                ("windows_objective", json!(windows)),
            ]),
            firing_text: format!(
                "{} nines: route {route} is missing its latency objective {key} ≤ {bound}: {missed} \
                 of {} minutes over {window} missed it (burn rate {} over {window}, {} over the \
                 last {recent_text}; threshold {}, objective {} of minutes)",
                AlertState::Firing.emoji(),
                long.judged,
                times(long_burn),
                times(recent_burn),
                times(Some(threshold)),
                percent(windows)
            ),
            resolved_text: format!(
                "{} nines: resolved: route {route} latency objective {key} ≤ {bound}: burn rate {} \
                 over {window}, {} over the last {recent_text} (threshold {})",
                AlertState::Resolved.emoji(),
                times(long_burn),
                times(recent_burn),
                times(Some(threshold))
            ),
        }
    }

    fn apply(
        &mut self,
        kind: Kind,
        route: &str,
        reading: Reading,
        now_ms: u64,
        out: &mut Vec<Notice>,
    ) {
        let key = (kind, route.to_owned());
        let (state, text, since) = match self.firing.get(&key).copied() {
            None if reading.fire => {
                self.firing.insert(key, now_ms);
                (AlertState::Firing, reading.firing_text, None)
            }
            Some(since) if reading.clear => {
                self.firing.remove(&key);
                let text = format!(
                    "{}, after {}",
                    reading.resolved_text,
                    elapsed(since, now_ms)
                );
                (AlertState::Resolved, text, Some(since))
            }
            _ => return,
        };
        let mut fields = Map::new();
        fields.insert("route".into(), json!(route));
        fields.extend(reading.fields);
        out.push(notice(kind, state, route, now_ms, since, text, fields));
    }

    fn fallback_reading(&self, ledger: &Ledger, route: &str) -> Reading {
        let s = &self.settings;
        let t = ledger.tally(Scope::Route, route, s.fallback_window);
        let judged = t.requests >= s.min_requests;
        let rate = (t.requests > 0).then(|| t.fallbacks as f64 / t.requests as f64);
        let value = rate.unwrap_or(0.0);
        let window = window_text(s.fallback_window);
        let threshold = percent(s.fallback_rate);
        let rate_text = rate.map_or_else(|| "no requests".to_owned(), percent);
        Reading {
            fire: judged && at_least(value, s.fallback_rate),
            clear: t.fallbacks == 0 || (judged && below(value, s.fallback_rate * RESOLVE_BELOW)),
            fields: fields([
                ("value", json!(rate)),
                ("threshold", json!(s.fallback_rate)),
                ("window", json!(window)),
                ("requests", json!(t.requests)),
                ("fallbacks", json!(t.fallbacks)),
            ]),
            firing_text: format!(
                "{} nines: route {route} fallback rate {rate_text} over {window} (threshold \
                 {threshold}): {} of {} requests served by a fallback",
                AlertState::Firing.emoji(),
                t.fallbacks,
                t.requests
            ),
            resolved_text: format!(
                "{} nines: resolved: route {route} fallback rate {rate_text} over {window} \
                 (threshold {threshold})",
                AlertState::Resolved.emoji()
            ),
        }
    }

    fn burn_reading(&self, ledger: &Ledger, route: &str) -> Reading {
        let s = &self.settings;
        // The route's own availability objective, else the global one.
        let slo = self
            .objectives
            .get(route)
            .and_then(|o| o.availability)
            .unwrap_or(self.slo);
        let stats = |w: Duration| WindowStats::of(w, ledger.tally(Scope::Route, route, w), slo);
        let long = stats(s.burn_window);
        let recent_window = recent_window(s.burn_window);
        let recent = stats(recent_window);
        let threshold = s.burn_rate;
        let burning = |w: &WindowStats| w.burn_rate.is_some_and(|b| at_least(b, threshold));
        let cool = |w: &WindowStats| {
            w.burn_rate
                .is_some_and(|b| below(b, threshold * RESOLVE_BELOW))
        };
        let judged = long.tally.requests >= s.min_requests;
        let window = window_text(s.burn_window);
        let recent_text = window_text(recent_window);
        let slo_text = trimmed(slo * 100.0, 3);
        Reading {
            // `recent.burn_rate` is `None` without requests: no evidence of burning now.
            fire: judged && burning(&long) && burning(&recent),
            clear: long.tally.failures == 0 || (judged && cool(&long)) || cool(&recent),
            fields: fields([
                ("value", json!(long.burn_rate)),
                ("threshold", json!(threshold)),
                ("window", json!(window)),
                ("requests", json!(long.tally.requests)),
                ("failures", json!(long.tally.failures)),
                ("recent_value", json!(recent.burn_rate)),
                ("recent_window", json!(recent_text)),
                ("slo", json!(slo)),
            ]),
            firing_text: format!(
                "{} nines: route {route} is burning its error budget at {} over {window} and {} \
                 over the last {recent_text} (threshold {}, SLO {slo_text}%): {} of {} requests failed",
                AlertState::Firing.emoji(),
                times(long.burn_rate),
                times(recent.burn_rate),
                times(Some(threshold)),
                long.tally.failures,
                long.tally.requests
            ),
            resolved_text: format!(
                "{} nines: resolved: route {route} error budget burn rate {} over {window}, {} \
                 over the last {recent_text} (threshold {})",
                AlertState::Resolved.emoji(),
                times(long.burn_rate),
                times(recent.burn_rate),
                times(Some(threshold))
            ),
        }
    }

    fn judge_breakers(&mut self, out: &mut Vec<Notice>) {
        let keys: Vec<String> = self.slots.keys().cloned().collect();
        for key_slot in keys {
            let Some(slot) = self.slots.get(&key_slot) else {
                continue;
            };
            let firing_key = (Kind::Breaker, key_slot.clone());
            let announced = self.firing.get(&firing_key).copied();
            let mut fields = fields([
                ("key_slot", json!(key_slot)),
                ("deployment", json!(slot.deployment)),
                ("reason", json!(slot.reason)),
                ("trips", json!(slot.trips)),
            ]);
            let name = format!("breaker {key_slot} (deployment {})", slot.deployment);
            match (slot.open, announced) {
                (true, None) => {
                    let mut text = format!(
                        "{} nines: {name} opened: {}",
                        AlertState::Firing.emoji(),
                        slot.reason
                    );
                    if slot.trips > 1 {
                        text.push_str(&format!(" (opened {} times)", slot.trips));
                    }
                    self.firing.insert(firing_key, slot.opened_at_ms);
                    out.push(notice(
                        Kind::Breaker,
                        AlertState::Firing,
                        &key_slot,
                        slot.opened_at_ms,
                        None,
                        text,
                        std::mem::take(&mut fields),
                    ));
                }
                (false, Some(since)) => {
                    let times = if slot.trips == 1 { "time" } else { "times" };
                    let text = format!(
                        "{} nines: {name} closed after {} (opened {} {times}; first: {})",
                        AlertState::Resolved.emoji(),
                        elapsed(since, slot.closed_at_ms),
                        slot.trips,
                        slot.reason
                    );
                    self.firing.remove(&firing_key);
                    out.push(notice(
                        Kind::Breaker,
                        AlertState::Resolved,
                        &key_slot,
                        slot.closed_at_ms,
                        Some(since),
                        text,
                        std::mem::take(&mut fields),
                    ));
                }
                _ => {}
            }
            if !slot.open {
                self.slots.remove(&key_slot);
            }
        }
    }
}

/// Rates are quotients of counts and thresholds products of settings: compare with a relative
/// tolerance, so that 12 failures of 20 sit exactly at a 60% bound instead of just under it.
const TOLERANCE: f64 = 1e-9;

fn at_least(value: f64, bound: f64) -> bool {
    value >= bound - bound.abs() * TOLERANCE
}

fn below(value: f64, bound: f64) -> bool {
    value < bound - bound.abs() * TOLERANCE
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn notice(
    kind: Kind,
    state: AlertState,
    subject: &str,
    at_ms: u64,
    since_ms: Option<u64>,
    text: String,
    fields: Map<String, Value>,
) -> Notice {
    let mut nines = Map::new();
    nines.insert("alert".into(), json!(kind.as_str()));
    nines.insert("state".into(), json!(state.as_str()));
    nines.extend(fields);
    nines.insert("at".into(), json!(rfc3339(at_ms)));
    if let Some(since) = since_ms {
        nines.insert("since".into(), json!(rfc3339(since)));
    }
    Notice {
        kind,
        state,
        subject: subject.to_owned(),
        at_ms,
        payload: json!({"text": text, "nines": nines}),
    }
}

/// The burn-rate alert's short window: a twelfth of the long one, at least [`RECENT_MIN`], at
/// most the long one.
pub fn recent_window(burn_window: Duration) -> Duration {
    (burn_window / 12).max(RECENT_MIN).min(burn_window)
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn window_text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn elapsed(from_ms: u64, to_ms: u64) -> String {
    window_text(Duration::from_millis(to_ms.saturating_sub(from_ms)))
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn times(rate: Option<f64>) -> String {
    rate.map_or_else(|| "n/a (no requests)".to_owned(), |r| format!("{r:.1}×"))
}

/// `x` with at most `decimals` decimals, trailing zeros dropped (`99.9`, `99.95`, `99`).
fn trimmed(x: f64, decimals: usize) -> String {
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// The POSTing end: one client, the URL kept secret.
#[derive(Debug)]
struct Webhook {
    client: reqwest::Client,
    url: Secret,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

impl Webhook {
    fn new(settings: &Settings) -> Result<Webhook, String> {
        crate::providers::install_crypto_provider();
        let client = reqwest::Client::builder()
            // The retries are ours, counted and backed off.
            .retry(reqwest::retry::never())
            // A redirect would send the body (and maybe the token) somewhere unconfigured.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout)
            .user_agent(concat!("nines/", env!("CARGO_PKG_VERSION")))
            .build()
            // reqwest's error text may name the URL; say only what failed.
            .map_err(|_| "the webhook HTTP client could not be built".to_owned())?;
        Ok(Webhook {
            client,
            url: settings.webhook_url.clone(),
            timeout: settings.timeout,
            retries: settings.retries,
            backoff: settings.retry_backoff,
        })
    }

    /// Delivers one notice, retrying as configured. `Err` carries the attempts made and the last
    /// failure, described without the URL.
    async fn post(&self, notice: &Notice, counters: &Counters) -> Result<u32, (u32, String)> {
        let body = bytes::Bytes::from(notice.payload.to_string());
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            bump(&counters.attempts);
            let sent = self
                .client
                .post(self.url.expose())
                .timeout(self.timeout)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let (error, retryable, retry_after) = match sent {
                Ok(response) if response.status().is_success() => {
                    // Read the (small) body so the connection is reused.
                    let _ = response.bytes().await;
                    return Ok(attempt);
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = crate::resilience::retry::retry_after(response.headers());
                    let retryable = status.is_server_error()
                        || status == http::StatusCode::TOO_MANY_REQUESTS
                        || status == http::StatusCode::REQUEST_TIMEOUT;
                    (
                        format!("status {}", status.as_u16()),
                        retryable,
                        retry_after,
                    )
                }
                Err(e) => (describe(&e).to_owned(), true, None),
            };
            if !retryable || attempt > self.retries {
                return Err((attempt, error));
            }
            let doubling = self
                .backoff
                .saturating_mul(2u32.saturating_pow((attempt - 1).min(16)));
            let wait = doubling.max(retry_after.unwrap_or_default());
            tracing::debug!(
                target: "nines::alerts",
                alert = notice.kind.as_str(),
                subject = %notice.subject,
                attempt,
                error = %error,
                wait_ms = wait.min(MAX_RETRY_WAIT).as_millis() as u64,
                "alert webhook delivery failed; retrying"
            );
            tokio::time::sleep(wait.min(MAX_RETRY_WAIT)).await;
        }
    }
}

/// A transport failure in words that cannot contain the URL (reqwest's own text does).
fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response could not be read"
    } else if e.is_redirect() {
        "redirected (redirects are not followed)"
    } else {
        "the request failed"
    }
}

async fn deliver(mut rx: mpsc::Receiver<Notice>, webhook: Webhook, counters: Arc<Counters>) {
    while let Some(notice) = rx.recv().await {
        match webhook.post(&notice, &counters).await {
            Ok(_) => bump(&counters.delivered),
            Err((attempts, error)) => {
                bump(&counters.failed);
                tracing::warn!(
                    target: "nines::alerts",
                    alert = notice.kind.as_str(),
                    state = notice.state.as_str(),
                    subject = %notice.subject,
                    attempts,
                    error = %error,
                    "alert webhook delivery failed; notice given up"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
