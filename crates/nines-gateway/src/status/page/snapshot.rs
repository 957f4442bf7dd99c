//! What `GET /status.json` says: per configured model route and each of its deployments, the live
//! state (from the breakers), availability over the standard windows and 90 daily bars (from the
//! ledger), time to first byte and in-flight counts, and the incidents of the last 7 days.
//!
//! Nothing secret is in it: deployments and key slots are named by their configured names and
//! aliases (`deployment#index`), never by base URL or key.
//!
//! The states:
//!
//! | thing | `down` | `degraded` | `operational` |
//! |---|---|---|---|
//! | deployment | every key slot's breaker is open or half-open | some are | none is |
//! | route | none of its deployments (nor its fallback models') can serve | one of its own deployments is down, or its availability over the last 5 minutes is below the SLO | otherwise |
//! | overall | every route is down | any route is not operational | every route is operational |
//!
//! A half-open slot counts as not serving: it admits one probe, and traffic is still held back
//! (the ledger's incidents see it the same way).

use crate::resilience::breaker::Phase;
use crate::state::Runtime;
use crate::telemetry::ledger::{Ledger, Scope, WindowStats};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

/// A route is degraded when what clients saw over this window is below the SLO.
pub const RECENT: Duration = Duration::from_secs(5 * 60);
/// Closed incidents are listed this long after they closed.
pub const INCIDENTS_SINCE: Duration = Duration::from_secs(7 * 86_400);
/// Uptime bars per route and deployment.
pub const DAYS: u32 = 90;
/// At most this many closed incidents are listed (newest first).
const RECENT_INCIDENTS_MAX: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Operational,
    Degraded,
    Down,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub title: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub generated_at_ms: u64,
    /// The availability objective (`telemetry.slo`).
    pub slo: f64,
    /// Whether availability is kept (`telemetry.ledger`); without it only live state is shown.
    pub ledger: bool,
    pub state: State,
    pub routes: Vec<Route>,
    pub incidents: Incidents,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub name: String,
    pub state: State,
    /// Why the route is not operational (empty when it is).
    pub reasons: Vec<String>,
    pub fallbacks: Vec<String>,
    /// What clients saw.
    pub availability: Windows,
    /// Availability over [`RECENT`], what the state is judged on.
    pub recent_availability: Option<f64>,
    pub days: Vec<DayBar>,
    /// Time to first byte clients saw over the last hour.
    pub ttfb_ms: Ttfb,
    pub deployments: Vec<Deployment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub name: String,
    pub state: State,
    pub key_slots: Vec<KeySlot>,
    pub in_flight: u32,
    pub max_concurrency: Option<u32>,
    pub ttfb_ms: Ttfb,
    /// What the upstream did (one entry per attempt).
    pub availability: Windows,
    pub days: Vec<DayBar>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeySlot {
    /// `deployment#index`.
    pub name: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
}

/// The standard windows (`None` availability: no traffic in the window).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Windows {
    #[serde(rename = "1h")]
    pub hour: Window,
    #[serde(rename = "24h")]
    pub day: Window,
    #[serde(rename = "30d")]
    pub month: Window,
    #[serde(rename = "90d")]
    pub quarter: Window,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Window {
    pub availability: Option<f64>,
    pub requests: u64,
    pub failures: u64,
    pub error_budget_left: Option<f64>,
    pub burn_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayBar {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub start_ms: u64,
    pub requests: u64,
    pub failures: u64,
    pub availability: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Ttfb {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    /// `live` (the last 128 answers' exact times), `1h` (the ledger's histogram over the last
    /// hour, bucket upper bounds) or `none`.
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incidents {
    /// Breakers open now, newest first.
    pub current: Vec<Incident>,
    /// Closed within [`INCIDENTS_SINCE`], newest first, at most 50.
    pub recent: Vec<Incident>,
    /// How many closed within [`INCIDENTS_SINCE`] (more than listed when over 50).
    pub recent_total: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub deployment: String,
    pub key_slot: String,
    /// Configured models served by the deployment.
    pub routes: Vec<String>,
    pub opened_at: String,
    pub opened_at_ms: u64,
    pub closed_at: Option<String>,
    pub closed_at_ms: Option<u64>,
    /// Until now for an incident still open.
    pub duration_ms: u64,
    pub reason: String,
    /// Times the breaker (re)opened during the incident.
    pub trips: u32,
}

/// A deployment's state from its key slots' breaker phases.
pub fn deployment_state(phases: &[Phase]) -> State {
    let held_back = phases
        .iter()
        .filter(|p| !matches!(p, Phase::Closed))
        .count();
    if phases.is_empty() || held_back == 0 {
        State::Operational
    } else if held_back == phases.len() {
        State::Down
    } else {
        State::Degraded
    }
}

/// A route's state: `own` are its deployments' `(name, state)`, `fallback` those of its fallback
/// models, `recent` its availability over [`RECENT`].
pub fn route_state(
    own: &[(&str, State)],
    fallback: &[State],
    recent: Option<f64>,
    slo: f64,
) -> (State, Vec<String>) {
    let can_serve = own
        .iter()
        .map(|(_, s)| s)
        .chain(fallback)
        .any(|s| *s != State::Down);
    if !can_serve {
        return (State::Down, vec!["no deployment can serve it".to_owned()]);
    }
    let mut reasons: Vec<String> = own
        .iter()
        .filter(|(_, s)| *s == State::Down)
        .map(|(name, _)| format!("deployment {name} is down"))
        .collect();
    if let Some(a) = recent
        && a < slo
    {
        reasons.push(format!(
            "{} of requests succeeded over the last {} minutes, below the {} objective",
            percent(a),
            RECENT.as_secs() / 60,
            percent(slo)
        ));
    }
    let state = if reasons.is_empty() {
        State::Operational
    } else {
        State::Degraded
    };
    (state, reasons)
}

/// The worst case across routes, as the banner shows it.
pub fn overall_state(routes: &[State]) -> State {
    if routes.is_empty() || routes.iter().all(|s| *s == State::Operational) {
        State::Operational
    } else if routes.iter().all(|s| *s == State::Down) {
        State::Down
    } else {
        State::Degraded
    }
}

fn percent(x: f64) -> String {
    let text = format!("{:.3}", x * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Builds the status from the live runtime and the ledger (if kept).
pub fn build(runtime: &Runtime, ledger: Option<&Ledger>, now_ms: u64) -> Status {
    let config = &runtime.config;
    let slo = ledger.map_or(config.telemetry.slo, Ledger::slo);

    let deployments: Vec<Deployment> = config
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let breakers = runtime
                .health
                .breakers
                .get(i)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let phases: Vec<Phase> = breakers.iter().map(|b| b.phase()).collect();
            let health = runtime.health.deployments.get(i);
            let live = health.map(|h| (h.ttfb_percentile(50.0), h.ttfb_percentile(95.0)));
            let ttfb = match live {
                Some((Some(p50), Some(p95))) => Ttfb {
                    p50: Some(ms(p50)),
                    p95: Some(ms(p95)),
                    source: "live",
                },
                _ => ledger_ttfb(ledger, Scope::Deployment, &d.name),
            };
            Deployment {
                name: d.name.clone(),
                state: deployment_state(&phases),
                key_slots: breakers
                    .iter()
                    .zip(&phases)
                    .map(|(b, p)| KeySlot {
                        name: b.alias().to_owned(),
                        breaker: p.as_str(),
                    })
                    .collect(),
                in_flight: health.map_or(0, |h| h.in_flight()),
                max_concurrency: health.and_then(|h| h.capacity()),
                ttfb_ms: ttfb,
                availability: windows(ledger, Scope::Deployment, &d.name),
                days: days(ledger, Scope::Deployment, &d.name),
            }
        })
        .collect();

    // A fallback model serves while any of its deployments does.
    let serves: HashMap<&str, State> = config
        .models
        .iter()
        .map(|m| {
            let all_down = m
                .deployments
                .iter()
                .all(|&i| deployments[i].state == State::Down);
            let state = if all_down {
                State::Down
            } else {
                State::Operational
            };
            (m.name.as_str(), state)
        })
        .collect();

    let routes: Vec<Route> = config
        .models
        .iter()
        .map(|m| {
            let own: Vec<(&str, State)> = m
                .deployments
                .iter()
                .map(|&i| (deployments[i].name.as_str(), deployments[i].state))
                .collect();
            let fallback: Vec<State> = m
                .fallbacks
                .iter()
                .filter_map(|f| serves.get(f.as_str()).copied())
                .collect();
            let recent = ledger.and_then(|l| l.window(Scope::Route, &m.name, RECENT).availability);
            let (state, reasons) = route_state(&own, &fallback, recent, slo);
            Route {
                name: m.name.clone(),
                state,
                reasons,
                fallbacks: m.fallbacks.clone(),
                availability: windows(ledger, Scope::Route, &m.name),
                recent_availability: recent,
                days: days(ledger, Scope::Route, &m.name),
                ttfb_ms: ledger_ttfb(ledger, Scope::Route, &m.name),
                deployments: m
                    .deployments
                    .iter()
                    .map(|&i| deployments[i].clone())
                    .collect(),
            }
        })
        .collect();

    let route_states: Vec<State> = routes.iter().map(|r| r.state).collect();
    Status {
        title: config.telemetry.status.title.clone(),
        generated_at: rfc3339(now_ms),
        generated_at_ms: now_ms,
        slo,
        ledger: ledger.is_some(),
        state: overall_state(&route_states),
        routes,
        incidents: incidents(runtime, ledger, now_ms),
    }
}

fn incidents(runtime: &Runtime, ledger: Option<&Ledger>, now_ms: u64) -> Incidents {
    let Some(ledger) = ledger else {
        return Incidents {
            current: Vec::new(),
            recent: Vec::new(),
            recent_total: 0,
        };
    };
    let config = &runtime.config;
    let routes_of = |deployment: &str| -> Vec<String> {
        config
            .models
            .iter()
            .filter(|m| {
                m.deployments
                    .iter()
                    .any(|&i| config.deployments[i].name == deployment)
            })
            .map(|m| m.name.clone())
            .collect()
    };
    let since = now_ms.saturating_sub(INCIDENTS_SINCE.as_millis() as u64);
    let mut current = Vec::new();
    let mut recent = Vec::new();
    let mut recent_total = 0;
    for i in ledger.incidents(since) {
        if i.closed_at_ms.is_some() {
            recent_total += 1;
            if recent.len() >= RECENT_INCIDENTS_MAX {
                continue;
            }
        }
        let view = Incident {
            routes: routes_of(&i.deployment),
            opened_at: rfc3339(i.opened_at_ms),
            closed_at: i.closed_at_ms.map(rfc3339),
            duration_ms: i
                .closed_at_ms
                .unwrap_or(now_ms)
                .saturating_sub(i.opened_at_ms),
            deployment: i.deployment,
            key_slot: i.key_slot,
            opened_at_ms: i.opened_at_ms,
            closed_at_ms: i.closed_at_ms,
            reason: i.reason,
            trips: i.trips,
        };
        if view.closed_at_ms.is_none() {
            current.push(view);
        } else {
            recent.push(view);
        }
    }
    Incidents {
        current,
        recent,
        recent_total,
    }
}

fn windows(ledger: Option<&Ledger>, scope: Scope, name: &str) -> Windows {
    let Some(ledger) = ledger else {
        return Windows::default();
    };
    let [hour, day, month, quarter] = ledger.windows(scope, name).map(|w| window(&w));
    Windows {
        hour,
        day,
        month,
        quarter,
    }
}

fn window(w: &WindowStats) -> Window {
    Window {
        availability: w.availability,
        requests: w.tally.requests,
        failures: w.tally.failures,
        error_budget_left: w.error_budget_left,
        burn_rate: w.burn_rate,
    }
}

fn days(ledger: Option<&Ledger>, scope: Scope, name: &str) -> Vec<DayBar> {
    let Some(ledger) = ledger else {
        return Vec::new();
    };
    ledger
        .daily(scope, name, DAYS)
        .into_iter()
        .map(|d| DayBar {
            date: rfc3339(d.start_ms)[..10].to_owned(),
            start_ms: d.start_ms,
            requests: d.requests,
            failures: d.failures,
            availability: (d.requests > 0)
                .then(|| (d.requests - d.failures) as f64 / d.requests as f64),
        })
        .collect()
}

fn ledger_ttfb(ledger: Option<&Ledger>, scope: Scope, name: &str) -> Ttfb {
    let tally = ledger.map(|l| l.tally(scope, name, Duration::from_secs(3600)));
    match tally.map(|t| (t.ttfb_percentile(50.0), t.ttfb_percentile(95.0))) {
        Some((Some(p50), Some(p95))) => Ttfb {
            p50: Some(ms(p50)),
            p95: Some(ms(p95)),
            source: "1h",
        },
        _ => Ttfb {
            p50: None,
            p95: None,
            source: "none",
        },
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Unix ms as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
