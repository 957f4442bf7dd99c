//! The availability ledger: per model route and per deployment, requests and failures in minute
//! buckets, from which availability over rolling windows, the error budget left against the SLO
//! and the burn rate are read.
//!
//! Two kinds of series are kept apart on purpose. A **route** series counts what clients saw: one
//! entry per request, a failure only when the client got a 5xx or a broken stream (a failover the
//! client never noticed is a success). A **deployment** series counts what the upstream did: one
//! entry per attempt, a failure whenever the provider was unavailable (429, 5xx, timeout, ...). A
//! provider at 94% behind a route at 99.99% is the point of nines, and both numbers show.
//!
//! Requests that say nothing about availability are left out of both: the client's own mistakes
//! (4xx), nines' own rate limits, and clients that went away.
//!
//! Memory: minute buckets for the last 25 hours (the 1 h and 24 h windows, exact), hour buckets
//! for up to `retention` (the 30 d and 90 d windows, exact to the hour at their far edge). The
//! store keeps the minutes (`store::ledger_writer`); this is the replica's live view: the store's
//! history as of its start, plus its own traffic since.

pub mod sketch;

use super::RequestSummary;
use crate::clock::Clock;
use crate::config::telemetry::Telemetry as Settings;
use crate::resilience::FailureClass;
use crate::resilience::events::{BreakerEvent, Transition};
use serde::{Deserialize, Serialize};
use sketch::{DenseBins, Sketch};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;
/// Minute buckets are kept this long; older traffic lives in hour buckets.
const MINUTES_KEPT: u64 = 25 * 60;
/// Closed incidents kept in memory (the store keeps them all within retention).
const INCIDENTS_KEPT: usize = 1000;

const CLASSES: usize = FailureClass::ALL.len();

/// Which availability a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A model route: what clients saw (gateway availability).
    Route,
    /// A deployment: what the upstream did (provider availability).
    Deployment,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Route => "route",
            Scope::Deployment => "deployment",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "route" => Some(Scope::Route),
            "deployment" => Some(Scope::Deployment),
            _ => None,
        }
    }
}

/// Counts for one bucket (or any sum of buckets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub requests: u64,
    pub failures: u64,
    /// Route series: requests served by other than the first deployment tried.
    pub fallbacks: u64,
    /// Sessions that ended in this bucket, and those of them within budget without an error.
    pub sessions: u64,
    pub sessions_good: u64,
    /// Time to first byte of the successes ([`sketch`]: within 1 % at any percentile).
    pub ttfb: Sketch,
    /// Route series: the whole request's latency of the successes (same sketch), what latency
    /// objectives (`latency_p99`) are judged on. Defaulted when absent: spool lines written
    /// before it existed still replay.
    #[serde(default)]
    pub latency: Sketch,
    /// Failed attempts by class ([`FailureClass::index`]). Route series count every failed
    /// attempt behind the route, failed over or not: the error mix the route absorbed.
    pub classes: [u64; CLASSES],
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            requests: 0,
            failures: 0,
            fallbacks: 0,
            sessions: 0,
            sessions_good: 0,
            ttfb: Sketch::default(),
            latency: Sketch::default(),
            classes: [0; CLASSES],
        }
    }
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.fallbacks += other.fallbacks;
        self.sessions += other.sessions;
        self.sessions_good += other.sessions_good;
        self.ttfb.merge(&other.ttfb);
        self.latency.merge(&other.latency);
        for (a, b) in self.classes.iter_mut().zip(other.classes) {
            *a += b;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0
            && self.failures == 0
            && self.fallbacks == 0
            && self.sessions == 0
            && self.sessions_good == 0
            && self.ttfb.is_empty()
            && self.latency.is_empty()
            && self.classes.iter().all(|n| *n == 0)
    }

    /// Successes over requests; `None` without requests (no traffic is not downtime).
    pub fn availability(&self) -> Option<f64> {
        (self.requests > 0).then(|| (self.requests - self.failures) as f64 / self.requests as f64)
    }

    /// Failed attempts by class name, largest first, zeros left out.
    pub fn class_breakdown(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = FailureClass::ALL
            .iter()
            .zip(self.classes)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (c.as_str(), n))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }
}

/// Availability over one rolling window, against the SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub window: Duration,
    pub tally: Tally,
    pub availability: Option<f64>,
    /// Share of the window's error budget not yet spent (can go below 0 when overspent).
    pub error_budget_left: Option<f64>,
    /// How many times faster than sustainable the budget burns (1.0 spends it exactly over
    /// the window).
    pub burn_rate: Option<f64>,
    /// When the series' data begin, if that is inside the window (the window is longer than
    /// the data: figures cover only since then).
    pub since_ms: Option<u64>,
}

impl WindowStats {
    pub fn of(window: Duration, tally: Tally, slo: f64) -> WindowStats {
        let availability = tally.availability();
        let allowed = 1.0 - slo;
        let failure_rate = availability.map(|a| 1.0 - a);
        WindowStats {
            window,
            tally,
            availability,
            error_budget_left: failure_rate.map(|f| 1.0 - f / allowed),
            burn_rate: failure_rate.map(|f| f / allowed),
            since_ms: None,
        }
    }
}

/// `Some(first_ms)` when data that begin at `first_ms` do not cover a window starting at
/// `from_ms`. Data are bucketed (by the minute, by the hour past 25 h): a first bucket that
/// starts within one bucket of the window's start covers it.
pub fn since(first_ms: Option<u64>, from_ms: u64, window: Duration) -> Option<u64> {
    let slack = if window > Duration::from_secs(25 * 3600) {
        HOUR_MS
    } else {
        MINUTE_MS
    };
    first_ms.filter(|first| *first > from_ms.saturating_add(slack))
}

/// One day's counts for an uptime bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Day {
    /// Unix ms of the day's start (UTC).
    pub start_ms: u64,
    pub requests: u64,
    pub failures: u64,
}

/// A period during which a key slot's breaker was open (half-open included: traffic was still
/// held back), opened and closed by nines itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub deployment: String,
    pub key_slot: String,
    pub opened_at_ms: u64,
    /// `None` while it lasts.
    pub closed_at_ms: Option<u64>,
    /// Why it opened (the first trip).
    pub reason: String,
    /// Times it (re)opened before closing: failed probes extend an incident, they do not
    /// start a new one.
    pub trips: u32,
}

/// A bucket's change since the last flush, for the store (and the spool, while it is down).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub scope: Scope,
    pub name: Arc<str>,
    /// Unix ms of the minute's start.
    pub minute_ms: u64,
    pub tally: Tally,
}

#[derive(Debug, Default)]
struct Series {
    /// Minute index (unix ms / 60 000) → counts.
    minutes: BTreeMap<u64, Tally>,
    /// Hour index → counts, for traffic older than the minutes kept.
    hours: BTreeMap<u64, Tally>,
    /// Minute index → changes not yet written to the store.
    dirty: BTreeMap<u64, Tally>,
    /// The newest minute's counts, not yet in `minutes` and `dirty`: each request adds to this
    /// one bucket (adding to both maps cost twice that), and it is folded into them when another
    /// minute arrives or before anything reads ([`Ledger::settled`]).
    pending: Option<(u64, Pending)>,
}

/// The pending minute: its counts, with the two sketches' bins in dense runs until it is folded
/// (a request's bin is then one index, not a search).
#[derive(Debug, Default)]
struct Pending {
    /// Everything but what the runs below hold.
    tally: Tally,
    ttfb: DenseBins,
    latency: DenseBins,
}

impl Pending {
    /// The minute's counts, whole; leaves the runs empty.
    fn settle(&mut self) -> &Tally {
        self.ttfb.drain_into(&mut self.tally.ttfb);
        self.latency.drain_into(&mut self.tally.latency);
        &self.tally
    }
}

#[derive(Debug, Default)]
struct State {
    /// Hour-aligned: traffic before it is in hour buckets, from it on in minute buckets.
    cutoff_ms: u64,
    /// Per scope (`Scope as usize`), by name: looked up by `&str`, so recording a request
    /// allocates nothing once its series exist (hashbrown's `entry_ref`, with its fast hasher:
    /// the names are the configuration's, not the client's).
    series: [hashbrown::HashMap<Arc<str>, Series>; 2],
    /// By key slot: the incident in progress.
    open: HashMap<String, Incident>,
    closed: Vec<Incident>,
    /// Closed incidents not yet written to the store, and opened ones (written as open).
    incident_log: Vec<Incident>,
    /// Key slots whose open incident was loaded from the store (left open by an earlier
    /// process or another replica) rather than opened by this process's breaker: the first
    /// success this process sees on the slot closes it.
    adopted: HashSet<String>,
}

#[derive(Debug)]
pub struct Ledger {
    state: Mutex<State>,
    clock: Clock,
    slo: f64,
    retention: Duration,
}

impl Ledger {
    pub fn new(settings: &Settings, clock: Clock) -> Ledger {
        Ledger {
            state: Mutex::new(State {
                cutoff_ms: cutoff(clock.now_ms()),
                ..State::default()
            }),
            clock,
            slo: settings.slo,
            retention: settings.retention,
        }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn slo(&self) -> f64 {
        self.slo
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state with every series' pending minute folded in: what readers take.
    fn settled(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.lock();
        for series in state.series.iter_mut().flat_map(|m| m.values_mut()) {
            series.fold();
        }
        state
    }

    /// Counts one finished request: once on its route, once per attempt on each deployment.
    ///
    /// This runs for every request, so it builds nothing: what the request adds is computed
    /// before the lock (a sketch bin is a number) and added in place to each series' pending
    /// minute (`Series::pending`). Once a series and its minute exist, recording allocates
    /// nothing.
    pub fn record(&self, s: &RequestSummary) {
        let at = s.finished_at_ms.max(s.started_at_ms);
        let route = s.routed.then(|| RouteEntry::of(s)).flatten();
        let last = s.attempts.len().saturating_sub(1);
        let mut state = self.lock();
        if let Some(entry) = &route {
            state.count(Scope::Route, &s.model, at, |t| entry.apply(t, s));
        }
        for (i, a) in s.attempts.iter().enumerate() {
            // A stream that broke after the serving attempt answered is that deployment's
            // failure too.
            let broke = i == last && s.outcome == "stream_broken";
            let failed = a.class.is_upstream_failure() || (a.class == FailureClass::Ok && broke);
            if a.class != FailureClass::Ok && !failed {
                continue;
            }
            let ttfb_bin = (a.class == FailureClass::Ok
                && !failed
                && s.deployment.as_deref() == Some(a.deployment.as_str()))
            .then_some(s.upstream_ttfb)
            .flatten()
            .map(sketch::bin_of_duration);
            let class = (a.class != FailureClass::Ok).then(|| a.class.index());
            state.count(Scope::Deployment, &a.deployment, at, |p| {
                p.tally.requests += 1;
                p.tally.failures += u64::from(failed);
                if let Some(bin) = ttfb_bin {
                    p.ttfb.add(bin);
                }
                if let Some(class) = class {
                    p.tally.classes[class] += 1;
                }
            });
        }
        if !state.adopted.is_empty() {
            for a in &s.attempts {
                if a.class == FailureClass::Ok && state.adopted.remove(&a.key_alias) {
                    close(&mut state, &a.key_alias, at);
                }
            }
        }
    }

    /// Adds counts at a time (sessions, tests, and the store's history on start-up with
    /// `dirty = false`).
    pub fn add(&self, scope: Scope, name: &str, at_ms: u64, tally: &Tally, dirty: bool) {
        let mut state = self.lock();
        if dirty {
            state.count(scope, name, at_ms, |p| p.tally.add(tally));
        } else {
            state.bucket(scope, name, at_ms).add(tally);
        }
    }

    /// Where minute buckets start (hour-aligned, about 25 h ago): history older than this is
    /// kept, and can be loaded, in hour buckets.
    pub fn minutes_from(&self) -> u64 {
        self.lock().cutoff_ms
    }

    /// Moves the minute/hour boundary up to now − 25 h (rolling older minutes into hours) and
    /// drops what is past retention. Run periodically; cheap when nothing is due.
    pub fn compact(&self) {
        let now = self.clock.now_ms();
        let new_cutoff = cutoff(now);
        let keep_hours_from = now.saturating_sub(self.retention.as_millis() as u64) / HOUR_MS;
        let mut state = self.settled();
        if new_cutoff > state.cutoff_ms {
            state.cutoff_ms = new_cutoff;
            let first_kept = new_cutoff / MINUTE_MS;
            for series in state.series.iter_mut().flat_map(|m| m.values_mut()) {
                let recent = series.minutes.split_off(&first_kept);
                let old = std::mem::replace(&mut series.minutes, recent);
                for (minute, t) in old {
                    series
                        .hours
                        .entry(minute * MINUTE_MS / HOUR_MS)
                        .or_default()
                        .add(&t);
                }
            }
        }
        for map in &mut state.series {
            for series in map.values_mut() {
                series.hours = series.hours.split_off(&keep_hours_from);
                // Changes past retention would only be pruned from the store again.
                series.dirty = series.dirty.split_off(&(keep_hours_from * 60));
            }
            map.retain(|_, s| !(s.minutes.is_empty() && s.hours.is_empty() && s.dirty.is_empty()));
        }
    }

    /// Takes the changes made since the last call, for the store (which adds them up, so
    /// replicas sharing a store each write only their own traffic).
    pub fn drain_dirty(&self) -> Vec<Delta> {
        let mut state = self.settled();
        let mut out: Vec<Delta> = Vec::new();
        for scope in [Scope::Route, Scope::Deployment] {
            for (name, series) in &mut state.series[scope as usize] {
                for (minute, tally) in std::mem::take(&mut series.dirty) {
                    out.push(Delta {
                        scope,
                        name: Arc::clone(name),
                        minute_ms: minute * MINUTE_MS,
                        tally,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.minute_ms, a.scope, &a.name).cmp(&(b.minute_ms, b.scope, &b.name)));
        out
    }

    /// Puts back deltas the store could not take, so the next flush retries them.
    pub fn restore_dirty(&self, deltas: Vec<Delta>) {
        let mut state = self.lock();
        for d in deltas {
            state.series[d.scope as usize]
                .entry(d.name)
                .or_default()
                .dirty
                .entry(d.minute_ms / MINUTE_MS)
                .or_default()
                .add(&d.tally);
        }
    }

    /// The series seen so far, in a stable order.
    pub fn series(&self) -> Vec<(Scope, String)> {
        let state = self.lock();
        let mut out: Vec<_> = [Scope::Route, Scope::Deployment]
            .into_iter()
            .flat_map(|scope| {
                state.series[scope as usize]
                    .keys()
                    .map(move |n| (scope, n.to_string()))
            })
            .collect();
        out.sort();
        out
    }

    /// Counts over the rolling window ending now.
    pub fn tally(&self, scope: Scope, name: &str, window: Duration) -> Tally {
        let now = self.clock.now_ms();
        let from = now.saturating_sub(window.as_millis() as u64);
        self.tally_between(scope, name, from, now)
    }

    /// Counts in `[from_ms, to_ms]`, minute buckets where kept, hour buckets before.
    pub fn tally_between(&self, scope: Scope, name: &str, from_ms: u64, to_ms: u64) -> Tally {
        let state = self.settled();
        let mut total = Tally::default();
        let Some(series) = state.series[scope as usize].get(name) else {
            return total;
        };
        if to_ms < from_ms {
            return total;
        }
        // A bucket counts when its start is inside the window: the far edge is exact to the
        // minute within the last 25 hours and to the hour before.
        let first_minute = from_ms.max(state.cutoff_ms).div_ceil(MINUTE_MS);
        let last_minute = to_ms / MINUTE_MS;
        if first_minute <= last_minute {
            for (_, t) in series.minutes.range(first_minute..=last_minute) {
                total.add(t);
            }
        }
        let first_hour = from_ms.div_ceil(HOUR_MS);
        let end_hour = (state.cutoff_ms / HOUR_MS).min(to_ms / HOUR_MS + 1);
        if first_hour < end_hour {
            for (_, t) in series.hours.range(first_hour..end_hour) {
                total.add(t);
            }
        }
        total
    }

    /// The minute buckets with data whose start is in `[from_ms, to_ms]`, oldest first (minute
    /// detail is kept for the last 25 hours; older traffic has none).
    pub fn minutes_between(
        &self,
        scope: Scope,
        name: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Vec<(u64, Tally)> {
        let state = self.settled();
        let Some(series) = state.series[scope as usize].get(name) else {
            return Vec::new();
        };
        let first = from_ms.max(state.cutoff_ms).div_ceil(MINUTE_MS);
        let last = to_ms / MINUTE_MS;
        if first > last {
            return Vec::new();
        }
        series
            .minutes
            .range(first..=last)
            .map(|(m, t)| (m * MINUTE_MS, t.clone()))
            .collect()
    }

    /// Availability, budget and burn rate over the rolling window ending now.
    pub fn window(&self, scope: Scope, name: &str, window: Duration) -> WindowStats {
        let mut stats = WindowStats::of(window, self.tally(scope, name, window), self.slo);
        let from = self
            .clock
            .now_ms()
            .saturating_sub(window.as_millis() as u64);
        stats.since_ms = since(self.first_data_ms(scope, name), from, window);
        stats
    }

    /// The start of the series' oldest bucket kept (hour-aligned when older than 25 h); `None`
    /// before its first data.
    pub fn first_data_ms(&self, scope: Scope, name: &str) -> Option<u64> {
        let state = self.settled();
        let series = state.series[scope as usize].get(name)?;
        let hour = series.hours.keys().next().map(|h| h * HOUR_MS);
        let minute = series.minutes.keys().next().map(|m| m * MINUTE_MS);
        match (hour, minute) {
            (Some(h), Some(m)) => Some(h.min(m)),
            (h, m) => h.or(m),
        }
    }

    /// The standard windows: 1 h, 24 h, 30 d, 90 d.
    pub fn windows(&self, scope: Scope, name: &str) -> [WindowStats; 4] {
        STANDARD_WINDOWS.map(|w| self.window(scope, name, w))
    }

    /// One entry per UTC day for the last `days` days, oldest first, today last.
    pub fn daily(&self, scope: Scope, name: &str, days: u32) -> Vec<Day> {
        let now = self.clock.now_ms();
        let today = now / DAY_MS * DAY_MS;
        (0..u64::from(days))
            .rev()
            .map(|back| {
                let start = today.saturating_sub(back * DAY_MS);
                let t = self.tally_between(scope, name, start, start + DAY_MS - 1);
                Day {
                    start_ms: start,
                    requests: t.requests,
                    failures: t.failures,
                }
            })
            .collect()
    }

    /// Follows a breaker transition: an open starts (or extends) the key slot's incident, a
    /// close ends it.
    pub fn on_breaker(&self, event: &BreakerEvent) {
        let mut state = self.lock();
        match &event.transition {
            Transition::Opened { reason, .. } => {
                // This process's breaker now tracks the slot: only its close ends the incident.
                state.adopted.remove(&event.key_slot);
                let incident =
                    state
                        .open
                        .entry(event.key_slot.clone())
                        .or_insert_with(|| Incident {
                            deployment: event.deployment.clone(),
                            key_slot: event.key_slot.clone(),
                            opened_at_ms: event.at_ms,
                            closed_at_ms: None,
                            reason: reason.clone(),
                            trips: 0,
                        });
                incident.trips += 1;
                let copy = incident.clone();
                if copy.trips == 1 {
                    state.incident_log.push(copy);
                }
            }
            Transition::HalfOpen => {}
            Transition::Closed => close(&mut state, &event.key_slot, event.at_ms),
        }
    }

    /// Incidents in progress, then those closed at or after `since_ms`, newest first.
    pub fn incidents(&self, since_ms: u64) -> Vec<Incident> {
        let state = self.lock();
        let mut out: Vec<Incident> = state.open.values().cloned().collect();
        out.sort_by_key(|i| std::cmp::Reverse(i.opened_at_ms));
        let mut closed: Vec<Incident> = state
            .closed
            .iter()
            .filter(|i| i.closed_at_ms.unwrap_or(u64::MAX) >= since_ms)
            .cloned()
            .collect();
        closed.sort_by_key(|i| std::cmp::Reverse(i.opened_at_ms));
        out.extend(closed);
        out
    }

    /// Incidents opened or closed since the last call, for the store (an incident is written
    /// when it opens and again when it closes; the store keys it by slot and opening time).
    pub fn drain_incidents(&self) -> Vec<Incident> {
        std::mem::take(&mut self.lock().incident_log)
    }

    /// Puts back incidents the store could not take, ahead of newer ones, so the next flush
    /// retries them in order.
    pub fn restore_incidents(&self, mut incidents: Vec<Incident>) {
        let mut state = self.lock();
        incidents.append(&mut state.incident_log);
        state.incident_log = incidents;
    }

    /// Loads incidents from the store (start-up). An open one is adopted: this process's
    /// breakers start closed and will not report its end, so the first success on its key slot
    /// closes it (a trip extends it as usual).
    pub fn load_incidents(&self, incidents: Vec<Incident>) {
        let mut state = self.lock();
        for i in incidents {
            match i.closed_at_ms {
                None => {
                    if !state.open.contains_key(&i.key_slot) {
                        state.adopted.insert(i.key_slot.clone());
                        state.open.insert(i.key_slot.clone(), i);
                    }
                }
                Some(_) => state.closed.push(i),
            }
        }
        state.closed.sort_by_key(|i| i.opened_at_ms);
        if state.closed.len() > INCIDENTS_KEPT {
            let excess = state.closed.len() - INCIDENTS_KEPT;
            state.closed.drain(..excess);
        }
    }
}

/// 1 h, 24 h, 30 d, 90 d.
pub const STANDARD_WINDOWS: [Duration; 4] = [
    Duration::from_secs(3600),
    Duration::from_secs(86_400),
    Duration::from_secs(30 * 86_400),
    Duration::from_secs(90 * 86_400),
];

/// The minute/hour boundary for a time: the hour at or before `now − 25 h`.
fn cutoff(now_ms: u64) -> u64 {
    now_ms.saturating_sub(MINUTES_KEPT * MINUTE_MS) / HOUR_MS * HOUR_MS
}

/// Ends the key slot's incident, if one is open.
fn close(state: &mut State, key_slot: &str, at_ms: u64) {
    if let Some(mut incident) = state.open.remove(key_slot) {
        incident.closed_at_ms = Some(at_ms.max(incident.opened_at_ms));
        state.incident_log.push(incident.clone());
        state.closed.push(incident);
        if state.closed.len() > INCIDENTS_KEPT {
            let excess = state.closed.len() - INCIDENTS_KEPT;
            state.closed.drain(..excess);
        }
    }
}

/// What one request adds to its route's bucket, worked out before the ledger's lock is taken.
struct RouteEntry {
    failed: bool,
    fell_back: bool,
    ttfb_bin: Option<i32>,
    latency_bin: Option<i32>,
}

impl RouteEntry {
    /// `None` for a request that says nothing about availability (the client's own mistake,
    /// nines' own limits, a client that went away).
    fn of(s: &RequestSummary) -> Option<RouteEntry> {
        let failed = s.client_visible_failure();
        (s.served || failed).then(|| RouteEntry {
            failed,
            fell_back: s.fell_back(),
            ttfb_bin: s.ttfb.filter(|_| !failed).map(sketch::bin_of_duration),
            latency_bin: (!failed && s.served).then(|| sketch::bin_of_duration(s.latency)),
        })
    }

    fn apply(&self, p: &mut Pending, s: &RequestSummary) {
        let t = &mut p.tally;
        t.requests += 1;
        t.failures += u64::from(self.failed);
        t.fallbacks += u64::from(self.fell_back);
        for class in s.failed_classes() {
            t.classes[class.index()] += 1;
        }
        if let Some(bin) = self.ttfb_bin {
            p.ttfb.add(bin);
        }
        if let Some(bin) = self.latency_bin {
            p.latency.add(bin);
        }
    }
}

impl State {
    /// The series of a name, made on first use (looked up by `&str`: no allocation after).
    fn series_mut(&mut self, scope: Scope, name: &str) -> &mut Series {
        self.series[scope as usize].entry_ref(name).or_default()
    }

    /// The bucket a time falls in.
    fn bucket(&mut self, scope: Scope, name: &str, at_ms: u64) -> &mut Tally {
        let before_cutoff = at_ms < self.cutoff_ms;
        self.series_mut(scope, name).bucket(at_ms, before_cutoff)
    }

    /// Applies a change to the bucket of `at_ms` and to the minute's unflushed changes.
    fn count(&mut self, scope: Scope, name: &str, at_ms: u64, apply: impl Fn(&mut Pending)) {
        let before_cutoff = at_ms < self.cutoff_ms;
        let series = self.series_mut(scope, name);
        if before_cutoff {
            // Older than the minutes kept (rare: history, a clock step): built apart, then added
            // to its hour and to the changes for the store.
            let mut change = Pending::default();
            apply(&mut change);
            let change = change.settle();
            series.bucket(at_ms, true).add(change);
            series
                .dirty
                .entry(at_ms / MINUTE_MS)
                .or_default()
                .add(change);
        } else {
            apply(series.pending(at_ms / MINUTE_MS));
        }
    }
}

impl Series {
    /// The pending bucket of `minute`, after folding in another minute's.
    fn pending(&mut self, minute: u64) -> &mut Pending {
        if self.pending.as_ref().is_some_and(|(m, _)| *m != minute) {
            self.fold();
        }
        &mut self
            .pending
            .get_or_insert_with(|| (minute, Pending::default()))
            .1
    }

    /// Adds the pending minute to the minutes kept and to the changes for the store.
    fn fold(&mut self) {
        if let Some((minute, mut pending)) = self.pending.take() {
            let tally = pending.settle();
            self.minutes.entry(minute).or_default().add(tally);
            self.dirty.entry(minute).or_default().add(tally);
        }
    }

    /// The bucket a time falls in: its minute, or its hour when older than the minutes kept
    /// (history loaded from the store).
    fn bucket(&mut self, at_ms: u64, before_cutoff: bool) -> &mut Tally {
        if before_cutoff {
            self.hours.entry(at_ms / HOUR_MS).or_default()
        } else {
            self.minutes.entry(at_ms / MINUTE_MS).or_default()
        }
    }
}

#[cfg(test)]
mod tests;
