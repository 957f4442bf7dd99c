//! The public view of the status page: what an anonymous visitor gets from `/status` and
//! `/status.json` (`[status] public = true`). Models and their health only, as a hosted status
//! page shows components: state, client-visible reasons, the quiet note on providers failing
//! behind a model (counts, never names), availability windows, daily bars and time to first
//! byte.
//!
//! Never here: deployment names, key slots, breaker phases, in-flight counts and concurrency,
//! fallback chains, and breaker incidents with their internal reasons. These types are built
//! field by field from the private [`Status`], so a field added there stays private unless it is
//! added here too.
//!
//! Incidents: a breaker incident is public only when the clients of a model it affects saw
//! failures while it lasted (an outage failover absorbed is not an incident to them). It is
//! shown as the models affected and the period, merged with overlapping ones of the same models,
//! with the number of failed requests. A flapping deployment's episodes are already one incident
//! (`super::flaps`).

use super::snapshot::{
    DayBar, Incident, ObjectiveStatus, Route, State, Status, Ttfb, Windows, rfc3339,
};
use crate::status::notices::Shown;
use crate::telemetry::ledger::{Ledger, MINUTE_MS, Scope};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct PublicStatus {
    /// Always `public`.
    pub view: &'static str,
    pub title: String,
    pub generated_at: String,
    pub generated_at_ms: u64,
    pub slo: f64,
    pub ledger: bool,
    pub state: State,
    pub routes: Vec<PublicRoute>,
    pub incidents: PublicIncidents,
    /// Operators' notices: public by intent (their text is escaped wherever it is shown).
    pub notices: Shown,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicRoute {
    pub name: String,
    pub state: State,
    pub reasons: Vec<String>,
    pub note: Option<String>,
    pub availability: Windows,
    pub recent_availability: Option<f64>,
    pub days: Vec<DayBar>,
    pub ttfb_ms: Ttfb,
    pub availability_objective: f64,
    /// Latency objectives as judged now (public: they are what clients were promised).
    pub objectives: Vec<ObjectiveStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicIncidents {
    pub current: Vec<PublicIncident>,
    /// Resolved within the last 7 days, newest first.
    pub recent: Vec<PublicIncident>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicIncident {
    /// The models whose clients saw failures.
    pub models: Vec<String>,
    pub started_at: String,
    pub started_at_ms: u64,
    pub resolved_at: Option<String>,
    pub resolved_at_ms: Option<u64>,
    /// Until now while it lasts.
    pub duration_ms: u64,
    /// Requests to those models that failed while it lasted.
    pub failed_requests: u64,
    /// Spells it is made of: a provider flapping within `[status] incident_merge_window` is one
    /// incident with several episodes.
    pub episodes: u32,
}

/// The public projection of a snapshot; `ledger` decides which incidents clients saw.
pub fn of(status: &Status, ledger: Option<&Ledger>) -> PublicStatus {
    PublicStatus {
        view: "public",
        title: status.title.clone(),
        generated_at: status.generated_at.clone(),
        generated_at_ms: status.generated_at_ms,
        slo: status.slo,
        ledger: status.ledger,
        state: status.state,
        routes: status.routes.iter().map(route).collect(),
        incidents: incidents(status, ledger),
        notices: status.notices.clone(),
    }
}

fn route(r: &Route) -> PublicRoute {
    PublicRoute {
        name: r.name.clone(),
        state: r.state,
        reasons: r.reasons.clone(),
        note: r.note.clone(),
        availability: r.availability.clone(),
        recent_availability: r.recent_availability,
        days: r.days.clone(),
        ttfb_ms: r.ttfb_ms,
        availability_objective: r.availability_objective,
        objectives: r.objectives.clone(),
    }
}

fn incidents(status: &Status, ledger: Option<&Ledger>) -> PublicIncidents {
    let Some(ledger) = ledger else {
        return PublicIncidents {
            current: Vec::new(),
            recent: Vec::new(),
        };
    };
    let now = status.generated_at_ms;
    let all = status
        .incidents
        .current
        .iter()
        .chain(&status.incidents.recent);
    let mut seen: Vec<PublicIncident> =
        all.filter_map(|i| client_visible(i, ledger, now)).collect();
    seen.sort_by_key(|i| i.started_at_ms);
    // Overlapping periods of the same models are one incident (several key slots or
    // deployments tripping in one outage).
    let mut merged: Vec<PublicIncident> = Vec::with_capacity(seen.len());
    for i in seen {
        if let Some(last) = merged.last_mut()
            && last.models == i.models
            && last.resolved_at_ms.is_none_or(|end| i.started_at_ms <= end)
        {
            last.resolved_at_ms = match (last.resolved_at_ms, i.resolved_at_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            last.resolved_at = last.resolved_at_ms.map(rfc3339);
            last.duration_ms = last
                .resolved_at_ms
                .unwrap_or(now)
                .saturating_sub(last.started_at_ms);
            last.failed_requests = last.failed_requests.max(i.failed_requests);
            last.episodes = last.episodes.max(i.episodes);
            continue;
        }
        merged.push(i);
    }
    merged.reverse();
    let (current, recent) = merged.into_iter().partition(|i| i.resolved_at_ms.is_none());
    PublicIncidents { current, recent }
}

/// The incident as clients saw it: the models it affects whose route series counted failures
/// in the minutes it spans; `None` when no client saw one.
fn client_visible(i: &Incident, ledger: &Ledger, now: u64) -> Option<PublicIncident> {
    let end = i.closed_at_ms.unwrap_or(now);
    // Minute buckets: the minute it opened in through the minute it closed in.
    let from = i.opened_at_ms / MINUTE_MS * MINUTE_MS;
    let mut failed = 0;
    let models: Vec<String> = i
        .routes
        .iter()
        .filter(|route| {
            let t = ledger.tally_between(Scope::Route, route, from, end);
            failed += t.failures;
            t.failures > 0
        })
        .cloned()
        .collect();
    if models.is_empty() {
        return None;
    }
    Some(PublicIncident {
        models,
        started_at: i.opened_at.clone(),
        started_at_ms: i.opened_at_ms,
        resolved_at: i.closed_at.clone(),
        resolved_at_ms: i.closed_at_ms,
        duration_ms: i.duration_ms,
        failed_requests: failed,
        episodes: i.episodes,
    })
}
