//! What `GET /status.json` says, in two views of one snapshot.
//!
//! The **private** view ([`Status`]: an admin, signed in or with the admin key) is everything:
//! per configured model route and each of its deployments, the live state (from the breakers),
//! key slots, in-flight counts, availability over the standard windows and 90 daily bars (from
//! the ledger), time to first byte, and the breaker incidents of the last 7 days with their
//! reasons. The **public** view ([`super::public::PublicStatus`], what an anonymous visitor gets)
//! names models and their health only, the way a hosted status page does.
//!
//! Nothing secret is in either: deployments and key slots are named by their configured names
//! and aliases (`deployment#index`), never by base URL or key.
//!
//! A model's state is what its clients saw ([`route_state`]), not what its providers did: an
//! outage failover absorbed leaves it operational, with a quiet note ("1 of 3 providers
//! failing; all requests served").
//!
//! | thing | `down` (shown "Outage") | `degraded` | `operational` |
//! |---|---|---|---|
//! | deployment (private) | every key slot's breaker is open or half-open | some are | none is |
//! | route | none of its deployments (nor its fallback models') can serve, or fewer than half its requests over the last 5 minutes succeeded | its availability over the last 5 minutes is below its availability objective (`slo.availability`, else `telemetry.slo`), or it misses a latency objective over them ([`latency_objective_miss`]) | otherwise, whatever its deployments do |
//! | overall | every route is down | any route is not operational | every route is operational |
//!
//! A half-open slot counts as not serving: it admits one probe, and traffic is still held back
//! (the ledger's incidents see it the same way).
//!
//! Time to first byte everywhere (route and deployment, page, JSON, SLA report) is read from the
//! ledger's sketch ([`crate::telemetry::ledger::sketch`]) over the last hour: within 1 % of
//! the true sample at each percentile. A window longer than the series' data carries `since`.

use crate::config::ModelRoute;
use crate::config::slo::LatencyObjective;
use crate::resilience::breaker::Phase;
use crate::state::Runtime;
use crate::status::notices::Shown;
use crate::telemetry::ledger::sketch::Percentiles;
use crate::telemetry::ledger::{Ledger, Scope, Tally, WindowStats};
use crate::telemetry::objectives::{self, WindowShare};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

/// A route's state is judged on what clients saw over this window.
pub const RECENT: Duration = Duration::from_secs(5 * 60);
/// Below this share of requests served over [`RECENT`], a route is down (an outage), not
/// degraded: most clients are failing.
pub const OUTAGE_BELOW: f64 = 0.5;
/// Time to first byte is read over this window.
pub const TTFB_WINDOW: Duration = Duration::from_secs(3600);
/// Latency objectives' minute windows are counted over this window (the ledger keeps minute
/// detail for 25 hours).
pub const OBJECTIVE_WINDOW: Duration = Duration::from_secs(86_400);
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
    /// `private` (this shape) or `public` ([`super::public::PublicStatus`]).
    pub view: &'static str,
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
    /// What operators posted: incident updates and maintenance (`crate::status::notices`).
    pub notices: Shown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub name: String,
    pub state: State,
    /// Why the route is not operational, in terms of what clients saw (empty when it is).
    pub reasons: Vec<String>,
    /// A quieter word on providers failing behind the route ("1 of 3 providers failing; all
    /// requests served"), whatever its state.
    pub note: Option<String>,
    /// Which of its deployments are not serving ("deployment d0 is down"): private.
    pub deployment_reasons: Vec<String>,
    pub fallbacks: Vec<String>,
    /// What clients saw.
    pub availability: Windows,
    /// Availability over [`RECENT`], what the state is judged on.
    pub recent_availability: Option<f64>,
    pub days: Vec<DayBar>,
    /// Time to first byte clients saw over the last hour.
    pub ttfb_ms: Ttfb,
    /// The availability objective the route is judged on (its own `slo.availability`, else
    /// `telemetry.slo`).
    pub availability_objective: f64,
    /// Its latency objectives (`slo = { ttft_p99 = "5s", … }`), as judged now.
    pub objectives: Vec<ObjectiveStatus>,
    pub deployments: Vec<Deployment>,
}

/// A latency objective of a route, as judged now (`crate::telemetry::objectives`).
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveStatus {
    /// `ttft_p99`, `latency_p50`, …
    pub objective: String,
    pub bound_ms: f64,
    /// The percentile over [`RECENT`] (null without successes).
    pub recent_ms: Option<f64>,
    /// Whether the route meets it over [`RECENT`] (null: not judged).
    pub met: Option<bool>,
    /// Minute windows over [`OBJECTIVE_WINDOW`]: judged, met, and the share met.
    pub windows: WindowShare,
    /// The share of minute windows the route means to meet (`slo.windows`).
    pub windows_objective: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub name: String,
    pub state: State,
    pub key_slots: Vec<KeySlot>,
    pub in_flight: u32,
    pub max_concurrency: Option<u32>,
    /// The upstream's time to first byte over the last hour.
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// When the series' data begin, if inside the window: the figures cover only since then
    /// (RFC 3339; null when the data cover the window).
    pub since: Option<String>,
    pub since_ms: Option<u64>,
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

/// Time to first byte over [`TTFB_WINDOW`] (the ledger's sketch; all null without data or
/// without a ledger).
pub type Ttfb = Percentiles;

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
    /// The first episode's key slot.
    pub key_slot: String,
    /// Every key slot whose breaker opened in it.
    pub key_slots: Vec<String>,
    /// Configured models served by the deployment.
    pub routes: Vec<String>,
    pub opened_at: String,
    pub opened_at_ms: u64,
    pub closed_at: Option<String>,
    pub closed_at_ms: Option<u64>,
    /// Until now for an incident still open.
    pub duration_ms: u64,
    pub reason: String,
    /// Times the breakers (re)opened during the incident.
    pub trips: u32,
    /// Breaker-open periods merged into it ([`super::flaps`]: a flapping deployment).
    pub episodes: u32,
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

/// What a route's state is decided from.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Its own deployments' `(name, state)`.
    pub own: &'a [(&'a str, State)],
    /// Its fallback models' states.
    pub fallback: &'a [State],
    /// What clients saw over [`RECENT`].
    pub recent: &'a Tally,
    /// A latency objective missed over [`RECENT`] ([`latency_objective_miss`]).
    pub latency_miss: Option<&'a str>,
}

/// A route's health: its state and why, in what clients saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub state: State,
    /// Client-visible reasons (public).
    pub reasons: Vec<String>,
    /// The quiet note on providers failing behind it (public: counts, no names).
    pub note: Option<String>,
    /// Its deployments not serving, by name (private).
    pub deployment_reasons: Vec<String>,
}

/// Why a route misses its latency objectives over [`RECENT`] (one reason for all it misses), or
/// `None` when it meets them all (or had no successes to judge).
pub fn latency_objective_miss(objectives: &[LatencyObjective], recent: &Tally) -> Option<String> {
    let over = format!("the last {} minutes", RECENT.as_secs() / 60);
    let misses: Vec<String> = objectives
        .iter()
        .filter_map(|o| objectives::miss(recent, o, &over))
        .collect();
    (!misses.is_empty()).then(|| misses.join("; "))
}

/// A route's latency objectives as judged now: over [`RECENT`] and per minute over
/// [`OBJECTIVE_WINDOW`].
fn objective_statuses(
    ledger: Option<&Ledger>,
    route: &ModelRoute,
    recent: &Tally,
    now_ms: u64,
) -> Vec<ObjectiveStatus> {
    let minutes = match ledger {
        Some(l) if !route.slo.latency.is_empty() => l.minutes_between(
            Scope::Route,
            &route.name,
            now_ms.saturating_sub(OBJECTIVE_WINDOW.as_millis() as u64),
            now_ms,
        ),
        _ => Vec::new(),
    };
    route
        .slo
        .latency
        .iter()
        .map(|o| ObjectiveStatus {
            objective: o.key(),
            bound_ms: objectives::bound_ms(o),
            recent_ms: objectives::reading_ms(recent, o),
            met: objectives::meets(recent, o),
            windows: WindowShare::of(minutes.iter().map(|(_, t)| t), o),
            windows_objective: route.slo.windows,
        })
        .collect()
}

/// A route's state from what clients saw: down when nothing can serve it or most recent
/// requests failed; degraded when recent availability is below the SLO or a latency objective
/// is missed; operational otherwise, even with deployments down (then with a note).
pub fn route_state(seen: &Seen<'_>, slo: f64) -> Health {
    let failing = seen
        .own
        .iter()
        .filter(|(_, s)| *s != State::Operational)
        .count();
    let recent = seen.recent.availability();
    let note = (failing > 0).then(|| {
        let providers = format!(
            "{failing} of {} provider{} failing",
            seen.own.len(),
            if seen.own.len() == 1 { "" } else { "s" }
        );
        match recent {
            Some(a) if a >= 1.0 => format!("{providers}; all requests served"),
            Some(a) => format!("{providers}; {} of requests served", percent(a)),
            None => providers,
        }
    });
    let deployment_reasons = seen
        .own
        .iter()
        .filter(|(_, s)| *s != State::Operational)
        .map(|(name, s)| {
            let how = if *s == State::Down {
                "down"
            } else {
                "degraded"
            };
            format!("deployment {name} is {how}")
        })
        .collect();
    let can_serve = seen
        .own
        .iter()
        .map(|(_, s)| s)
        .chain(seen.fallback)
        .any(|s| *s != State::Down);
    let mut reasons = Vec::new();
    let mut state = State::Operational;
    if !can_serve {
        state = State::Down;
        reasons.push("no provider can serve it".to_owned());
    }
    if let Some(a) = recent
        && a < slo
    {
        state = state.max(if a < OUTAGE_BELOW {
            State::Down
        } else {
            State::Degraded
        });
        reasons.push(format!(
            "{} of requests succeeded over the last {} minutes, below the {} objective",
            percent(a),
            RECENT.as_secs() / 60,
            percent(slo)
        ));
    }
    if let Some(miss) = seen.latency_miss {
        state = state.max(State::Degraded);
        reasons.push(miss.to_owned());
    }
    Health {
        state,
        reasons,
        note,
        deployment_reasons,
    }
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

pub fn percent(x: f64) -> String {
    let text = format!("{:.3}", x * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Builds the status from the live runtime and the ledger (if kept).
pub fn build(runtime: &Runtime, ledger: Option<&Ledger>, notices: Shown, now_ms: u64) -> Status {
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
            let ttfb = ledger_ttfb(ledger, Scope::Deployment, &d.name);
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
            let recent = ledger
                .map(|l| l.tally(Scope::Route, &m.name, RECENT))
                .unwrap_or_default();
            let latency_miss = latency_objective_miss(&m.slo.latency, &recent);
            let availability_objective = m.slo.availability.unwrap_or(slo);
            let health = route_state(
                &Seen {
                    own: &own,
                    fallback: &fallback,
                    recent: &recent,
                    latency_miss: latency_miss.as_deref(),
                },
                availability_objective,
            );
            Route {
                name: m.name.clone(),
                state: health.state,
                reasons: health.reasons,
                note: health.note,
                deployment_reasons: health.deployment_reasons,
                fallbacks: m.fallbacks.clone(),
                availability: windows(ledger, Scope::Route, &m.name),
                recent_availability: recent.availability(),
                days: days(ledger, Scope::Route, &m.name),
                ttfb_ms: ledger_ttfb(ledger, Scope::Route, &m.name),
                availability_objective,
                objectives: objective_statuses(ledger, m, &recent, now_ms),
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
        view: "private",
        title: config.telemetry.status.title.clone(),
        generated_at: rfc3339(now_ms),
        generated_at_ms: now_ms,
        slo,
        ledger: ledger.is_some(),
        state: overall_state(&route_states),
        routes,
        incidents: incidents(runtime, ledger, now_ms),
        notices,
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
    let merge_window = config.telemetry.status.incident_merge_window;
    let views = super::flaps::merge(ledger.incidents(since), merge_window)
        .into_iter()
        .map(|run| {
            let i = run.incident;
            Incident {
                routes: routes_of(&i.deployment),
                opened_at: rfc3339(i.opened_at_ms),
                closed_at: i.closed_at_ms.map(rfc3339),
                duration_ms: i
                    .closed_at_ms
                    .unwrap_or(now_ms)
                    .saturating_sub(i.opened_at_ms),
                deployment: i.deployment,
                key_slot: i.key_slot,
                key_slots: run.key_slots,
                opened_at_ms: i.opened_at_ms,
                closed_at_ms: i.closed_at_ms,
                reason: i.reason,
                trips: i.trips,
                episodes: run.episodes,
            }
        });
    let (current, mut recent): (Vec<Incident>, Vec<Incident>) =
        views.partition(|i| i.closed_at_ms.is_none());
    let recent_total = recent.len();
    recent.truncate(RECENT_INCIDENTS_MAX);
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
        since: w.since_ms.map(rfc3339),
        since_ms: w.since_ms,
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
    ledger
        .map(|l| l.tally(scope, name, TTFB_WINDOW))
        .unwrap_or_default()
        .ttfb
        .percentiles()
}

/// Unix ms as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
