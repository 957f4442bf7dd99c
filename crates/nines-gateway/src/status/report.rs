//! SLA reports: `GET /admin/reports/sla` and `nines report sla`, as JSON, CSV or Markdown.
//!
//! A report covers a window ending now (`30d`, `24h`, ...): per route what clients saw
//! (availability, requests, failures, failovers, time to first byte, the failure classes behind
//! it, the error budget against `telemetry.slo`, sessions), per deployment what the provider did,
//! the incidents (breaker-open periods) that overlap the window, and the notices operators posted
//! (`super::notices`) that were in force during it. With a store the counts are
//! the sum of the bucket rows every replica wrote ([`read_store`]), after this replica flushed its
//! own pending changes; without one, this process's ledger ([`read_ledger`]). The format is
//! documented in `docs/sla.md`.

use crate::config::slo::RouteSlo;
use crate::resilience::FailureClass;
use crate::store::ledger_writer::LedgerWriter;
use crate::store::{Notice, NoticeKind, Store, StoreError};
use crate::telemetry::Telemetry;
use crate::telemetry::ledger::sketch::Percentiles;
use crate::telemetry::ledger::{Incident, Ledger, MINUTE_MS, Scope, Tally, WindowStats};
use crate::telemetry::objectives::{self, WindowShare};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Incidents read from the store for one report at most.
const INCIDENTS_MAX: u32 = 10_000;

/// Parses a window (`30d`, `24h`, `90m`, `1w`): at least a minute, at most `retention` (older
/// data is gone).
pub fn parse_window(text: &str, retention: Duration) -> Result<Duration, String> {
    let window = humantime::parse_duration(text.trim())
        .map_err(|e| format!("window '{text}' is not a duration like 30d, 24h or 90m ({e})"))?;
    if window < Duration::from_secs(60) {
        return Err(format!(
            "window '{text}' is shorter than the ledger's minute"
        ));
    }
    if window > retention {
        return Err(format!(
            "window '{text}' is longer than the ledger keeps (telemetry.retention = {})",
            label(retention)
        ));
    }
    Ok(window)
}

/// `30d`, `36h`, `90m`, `45s`: the largest unit that divides the duration.
pub fn label(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Markdown,
}

impl Format {
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "md" | "markdown" => Ok(Format::Markdown),
            other => Err(format!("format '{other}' is not one of json, csv, md")),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Markdown => "text/markdown; charset=utf-8",
        }
    }

    pub fn render(self, report: &Report) -> String {
        match self {
            Format::Json => report.to_json(),
            Format::Csv => report.to_csv(),
            Format::Markdown => report.to_markdown(),
        }
    }
}

/// What a report is computed from: each series' counts over the window, and the incidents.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub series: Vec<(Scope, String, Tally)>,
    pub incidents: Vec<Incident>,
    /// Where each series' data begin (absent: unknown, taken as covering the window).
    pub first_data: BTreeMap<(Scope, String), u64>,
    /// Operators' notices (any; those in force during the window are reported).
    pub notices: Vec<Notice>,
    /// Each route's own objectives (routes without any are absent).
    pub objectives: BTreeMap<String, RouteSlo>,
    /// Per-minute tallies of the routes with latency objectives, over the window.
    pub minutes: BTreeMap<String, Vec<Tally>>,
}

/// Whether any route has latency objectives (then minute rows are read).
fn judges_latency(objectives: &BTreeMap<String, RouteSlo>) -> bool {
    objectives.values().any(|o| !o.latency.is_empty())
}

/// Sums the store's bucket rows (every replica's) whose minute starts in `[from_ms, to_ms]`; the
/// minute rows themselves for routes with latency objectives in `objectives`.
pub async fn read_store(
    store: &Store,
    from_ms: u64,
    to_ms: u64,
    objectives: BTreeMap<String, RouteSlo>,
) -> Result<Inputs, StoreError> {
    let series: Vec<(Scope, String, Tally)> = store
        .ledger_sums(from_ms, to_ms.saturating_add(1), None)
        .await?
        .into_iter()
        .map(|r| (r.scope, r.name, r.tally))
        .collect();
    let mut first_data = BTreeMap::new();
    for (scope, name, _) in &series {
        if let Some(first) = store.ledger_first_data(*scope, name).await? {
            first_data.insert((*scope, name.clone()), first);
        }
    }
    let incidents = store
        .ledger_incidents(from_ms, to_ms, INCIDENTS_MAX)
        .await?;
    let notices = store.notices_since(from_ms).await?;
    let mut minutes: BTreeMap<String, Vec<Tally>> = BTreeMap::new();
    if judges_latency(&objectives) {
        for row in store
            .ledger_sums(from_ms, to_ms.saturating_add(1), Some(MINUTE_MS))
            .await?
        {
            if row.scope == Scope::Route
                && objectives
                    .get(&row.name)
                    .is_some_and(|o| !o.latency.is_empty())
            {
                minutes.entry(row.name).or_default().push(row.tally);
            }
        }
    }
    Ok(Inputs {
        series,
        incidents,
        first_data,
        notices,
        objectives,
        minutes,
    })
}

/// This process's ledger over `[from_ms, to_ms]` (exact to the minute for the last 25 h, to
/// the hour before: latency objectives are judged on the minutes kept).
pub fn read_ledger(
    ledger: &Ledger,
    from_ms: u64,
    to_ms: u64,
    objectives: BTreeMap<String, RouteSlo>,
) -> Inputs {
    let series: Vec<(Scope, String, Tally)> = ledger
        .series()
        .into_iter()
        .map(|(scope, name)| {
            let tally = ledger.tally_between(scope, &name, from_ms, to_ms);
            (scope, name, tally)
        })
        .collect();
    let incidents = ledger
        .incidents(from_ms)
        .into_iter()
        .filter(|i| i.opened_at_ms <= to_ms)
        .collect();
    let first_data = series
        .iter()
        .filter_map(|(scope, name, _)| {
            let first = ledger.first_data_ms(*scope, name)?;
            Some(((*scope, name.clone()), first))
        })
        .collect();
    let minutes = objectives
        .iter()
        .filter(|(_, o)| !o.latency.is_empty())
        .map(|(name, _)| {
            let tallies = ledger
                .minutes_between(Scope::Route, name, from_ms, to_ms)
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            (name.clone(), tallies)
        })
        .collect();
    Inputs {
        series,
        incidents,
        first_data,
        notices: Vec::new(),
        objectives,
        minutes,
    }
}

/// The report over the window ending now: from the store when the ledger is kept there (after
/// writing this replica's pending changes, so its latest traffic is in), else from this
/// process's ledger (and `notices`, this process's notice board). `objectives` are the routes'
/// own (`config::slo::by_route`).
pub async fn generate(
    telemetry: &Telemetry,
    writer: Option<&LedgerWriter>,
    notices: Vec<Notice>,
    objectives: BTreeMap<String, RouteSlo>,
    window: Duration,
    slo: f64,
) -> Result<Report, String> {
    let to = telemetry.clock.now_ms();
    let from = to.saturating_sub(window.as_millis() as u64);
    match (writer, &telemetry.ledger) {
        (Some(writer), _) => {
            if let Err(e) = writer.flush().await {
                tracing::warn!(error = %e, "report: this replica's latest ledger changes could not be written first");
            }
            let inputs = read_store(writer.store(), from, to, objectives)
                .await
                .map_err(|e| format!("the store failed: {e}"))?;
            Ok(Report::build(inputs, window, from, to, slo, Source::Store))
        }
        (None, Some(ledger)) => Ok(Report::build(
            Inputs {
                notices,
                ..read_ledger(ledger, from, to, objectives)
            },
            window,
            from,
            to,
            slo,
            Source::Memory,
        )),
        (None, None) => Err(
            "no availability data: the ledger is off (telemetry.ledger = false) and there is no [store]"
                .into(),
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Summed over every replica's rows.
    Store,
    /// One process's ledger.
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `30d`.
    pub window: String,
    /// RFC 3339, UTC.
    pub from: String,
    pub to: String,
    pub from_ms: u64,
    pub to_ms: u64,
    pub slo: f64,
    pub source: Source,
    pub routes: Vec<RouteRow>,
    pub deployments: Vec<DeploymentRow>,
    pub incidents: Vec<IncidentRow>,
    /// Operators' notices in force during the window, oldest first.
    pub notices: Vec<NoticeRow>,
}

/// An operator's notice (its text is theirs: escaped in Markdown, quoted in CSV).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoticeRow {
    pub id: String,
    pub kind: NoticeKind,
    pub title: String,
    pub body: String,
    /// Empty: every model.
    pub models: Vec<String>,
    pub posted_at: String,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub resolved_at: Option<String>,
}

impl NoticeRow {
    fn of(n: Notice) -> NoticeRow {
        NoticeRow {
            posted_at: rfc3339(n.created_at_ms),
            starts_at: n.starts_at_ms.map(rfc3339),
            ends_at: n.ends_at_ms.map(rfc3339),
            resolved_at: n.resolved_at_ms.map(rfc3339),
            id: n.id,
            kind: n.kind,
            title: n.title,
            body: n.body,
            models: n.models,
        }
    }
}

/// Time to first byte percentiles: from the same sketch, in the same shape, as the status page
/// ([`Percentiles`]: ms, each within `relative_error` of the true sample at its rank).
pub type Ttfb = Percentiles;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ErrorBudget {
    pub slo: f64,
    /// Failures the SLO allows for this many requests: `(1 − slo) × requests`.
    pub allowed_failures: f64,
    pub failures: u64,
    /// Share of the budget spent, `failures / allowed_failures` (above 1: overspent; the
    /// window's burn rate); none without requests.
    pub used: Option<f64>,
    /// `1 − used`.
    pub left: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SessionCounts {
    /// Sessions that ended in the window.
    pub count: u64,
    /// Of them: no client-visible error, within the latency budget.
    pub good: u64,
    pub good_share: Option<f64>,
}

/// A model route: what clients saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteRow {
    pub route: String,
    /// When the route's data begin, if after the window's start: the figures cover only since
    /// then (RFC 3339; absent when the data cover the window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// `(requests − failures) / requests`; none without requests.
    pub availability: Option<f64>,
    pub requests: u64,
    /// Requests answered with a 5xx or a broken stream.
    pub failures: u64,
    /// Requests served by other than the first deployment tried.
    pub failovers: u64,
    pub ttfb: Ttfb,
    /// Failed upstream attempts behind the route, by failure class (absorbed or not).
    pub errors: BTreeMap<&'static str, u64>,
    pub error_budget: ErrorBudget,
    pub sessions: SessionCounts,
    /// Its latency objectives: the share of the window's minutes that met each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<ObjectiveRow>,
}

/// A latency objective over the report's window (`crate::telemetry::objectives`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectiveRow {
    /// `ttft_p99`, `latency_p50`, …
    pub objective: String,
    pub bound_ms: f64,
    /// Minutes with successes, those that met it, and the share.
    pub windows: WindowShare,
    /// The share the route means to meet (`slo.windows`).
    pub windows_objective: f64,
    /// The objective's percentile over the whole window (null without successes).
    pub window_ms: Option<f64>,
}

/// A deployment: what the provider did (one request per attempt).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentRow {
    pub deployment: String,
    /// As [`RouteRow::since`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub availability: Option<f64>,
    pub requests: u64,
    pub failures: u64,
    pub ttfb: Ttfb,
    pub errors: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRow {
    pub deployment: String,
    pub key_slot: String,
    pub opened_at: String,
    pub closed_at: Option<String>,
    pub opened_at_ms: u64,
    pub closed_at_ms: Option<u64>,
    /// Still open at the end of the window.
    pub ongoing: bool,
    /// Until it closed, or until the report's end while ongoing.
    pub duration_ms: u64,
    pub reason: String,
    pub trips: u32,
}

fn objective_rows(o: &RouteSlo, minutes: &[Tally], whole: &Tally) -> Vec<ObjectiveRow> {
    o.latency
        .iter()
        .map(|l| ObjectiveRow {
            objective: l.key(),
            bound_ms: objectives::bound_ms(l),
            windows: WindowShare::of(minutes, l),
            windows_objective: o.windows,
            window_ms: objectives::reading_ms(whole, l),
        })
        .collect()
}

fn errors_of(t: &Tally) -> BTreeMap<&'static str, u64> {
    t.class_breakdown().into_iter().collect()
}

/// RFC 3339 (seconds, UTC) of a Unix ms time.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Unix ms now, by the system clock (the CLI's reports).
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Incidents of one key slot that overlap (several replicas' breakers tripping in the same
/// outage, each writing its own row) become one: the earliest opening, the latest close (open
/// if any is), trips summed, the first one's reason.
pub fn merge_incidents(mut incidents: Vec<Incident>) -> Vec<Incident> {
    incidents.sort_by(|a, b| {
        (a.key_slot.as_str(), a.opened_at_ms).cmp(&(b.key_slot.as_str(), b.opened_at_ms))
    });
    let mut out: Vec<Incident> = Vec::with_capacity(incidents.len());
    for i in incidents {
        if let Some(last) = out.last_mut()
            && last.key_slot == i.key_slot
            && last
                .closed_at_ms
                .is_none_or(|closed| i.opened_at_ms <= closed)
        {
            last.closed_at_ms = match (last.closed_at_ms, i.closed_at_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            last.trips = last.trips.saturating_add(i.trips);
            continue;
        }
        out.push(i);
    }
    out.sort_by(|a, b| {
        (a.opened_at_ms, a.key_slot.as_str()).cmp(&(b.opened_at_ms, b.key_slot.as_str()))
    });
    out
}

impl Report {
    pub fn build(
        inputs: Inputs,
        window: Duration,
        from_ms: u64,
        to_ms: u64,
        slo: f64,
        source: Source,
    ) -> Report {
        let mut routes = Vec::new();
        let mut deployments = Vec::new();
        for (scope, name, t) in inputs.series {
            if t.is_empty() {
                continue;
            }
            let own = inputs.objectives.get(&name);
            let slo = own.and_then(|o| o.availability).unwrap_or(slo);
            let stats = WindowStats::of(window, t.clone(), slo);
            let first = inputs.first_data.get(&(scope, name.clone())).copied();
            let since = crate::telemetry::ledger::since(first, from_ms, window).map(rfc3339);
            match scope {
                Scope::Route => {
                    let allowed = (1.0 - slo) * t.requests as f64;
                    routes.push(RouteRow {
                        since,
                        availability: stats.availability,
                        requests: t.requests,
                        failures: t.failures,
                        failovers: t.fallbacks,
                        ttfb: t.ttfb.percentiles(),
                        errors: errors_of(&t),
                        error_budget: ErrorBudget {
                            slo,
                            allowed_failures: allowed,
                            failures: t.failures,
                            used: stats.burn_rate,
                            left: stats.error_budget_left,
                        },
                        sessions: SessionCounts {
                            count: t.sessions,
                            good: t.sessions_good,
                            good_share: (t.sessions > 0)
                                .then(|| t.sessions_good as f64 / t.sessions as f64),
                        },
                        objectives: own.map_or_else(Vec::new, |o| {
                            let minutes = inputs.minutes.get(&name).map_or(&[][..], Vec::as_slice);
                            objective_rows(o, minutes, &t)
                        }),
                        route: name,
                    });
                }
                Scope::Deployment => deployments.push(DeploymentRow {
                    deployment: name,
                    since,
                    availability: stats.availability,
                    requests: t.requests,
                    failures: t.failures,
                    ttfb: t.ttfb.percentiles(),
                    errors: errors_of(&t),
                }),
            }
        }
        routes.sort_by(|a, b| a.route.cmp(&b.route));
        deployments.sort_by(|a, b| a.deployment.cmp(&b.deployment));
        let incidents = merge_incidents(inputs.incidents)
            .into_iter()
            .filter(|i| i.opened_at_ms <= to_ms && i.closed_at_ms.is_none_or(|c| c >= from_ms))
            .map(|i| {
                let ongoing = i.closed_at_ms.is_none_or(|c| c > to_ms);
                let end = i.closed_at_ms.unwrap_or(to_ms);
                IncidentRow {
                    opened_at: rfc3339(i.opened_at_ms),
                    closed_at: i.closed_at_ms.map(rfc3339),
                    duration_ms: end.saturating_sub(i.opened_at_ms),
                    ongoing,
                    deployment: i.deployment,
                    key_slot: i.key_slot,
                    opened_at_ms: i.opened_at_ms,
                    closed_at_ms: i.closed_at_ms,
                    reason: i.reason,
                    trips: i.trips,
                }
            })
            .collect();
        let mut notices: Vec<Notice> = inputs
            .notices
            .into_iter()
            .filter(|n| {
                n.created_at_ms <= to_ms
                    && super::notices::over_at(n, to_ms).is_none_or(|over| over >= from_ms)
            })
            .collect();
        notices.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Report {
            window: label(window),
            from: rfc3339(from_ms),
            to: rfc3339(to_ms),
            from_ms,
            to_ms,
            slo,
            source,
            routes,
            deployments,
            incidents,
            notices: notices.into_iter().map(NoticeRow::of).collect(),
        }
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }

    /// Two CSV blocks separated by an empty line: one row per route and deployment, then one
    /// row per incident. RFC 4180 quoting; shares as fractions; empty cells where a value does
    /// not apply or is unknown.
    pub fn to_csv(&self) -> String {
        let classes = report_classes();
        let mut out = String::new();
        let mut header: Vec<String> = [
            "kind",
            "name",
            "availability",
            "requests",
            "failures",
            "failovers",
            "ttfb_p50_ms",
            "ttfb_p95_ms",
            "ttfb_p99_ms",
            "slo",
            "allowed_failures",
            "budget_used",
            "budget_left",
            "sessions",
            "sessions_good",
            "sessions_good_share",
        ]
        .map(String::from)
        .into();
        header.extend(classes.iter().map(|c| format!("errors_{}", c.as_str())));
        header.push("since".to_owned());
        csv_row(&mut out, &header);
        let share = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        let ms = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for r in &self.routes {
            let mut row = vec![
                "route".to_owned(),
                r.route.clone(),
                share(r.availability),
                r.requests.to_string(),
                r.failures.to_string(),
                r.failovers.to_string(),
                ms(r.ttfb.p50_ms),
                ms(r.ttfb.p95_ms),
                ms(r.ttfb.p99_ms),
                r.error_budget.slo.to_string(),
                format!("{:.3}", r.error_budget.allowed_failures),
                share(r.error_budget.used),
                share(r.error_budget.left),
                r.sessions.count.to_string(),
                r.sessions.good.to_string(),
                share(r.sessions.good_share),
            ];
            row.extend(classes.iter().map(|c| count(&r.errors, *c)));
            row.push(r.since.clone().unwrap_or_default());
            csv_row(&mut out, &row);
        }
        for d in &self.deployments {
            let mut row = vec![
                "deployment".to_owned(),
                d.deployment.clone(),
                share(d.availability),
                d.requests.to_string(),
                d.failures.to_string(),
                String::new(),
                ms(d.ttfb.p50_ms),
                ms(d.ttfb.p95_ms),
                ms(d.ttfb.p99_ms),
            ];
            row.extend(std::iter::repeat_n(String::new(), 7));
            row.extend(classes.iter().map(|c| count(&d.errors, *c)));
            row.push(d.since.clone().unwrap_or_default());
            csv_row(&mut out, &row);
        }
        out.push_str("\r\n");
        csv_row(
            &mut out,
            &[
                "incident_deployment",
                "key_slot",
                "opened_at",
                "closed_at",
                "duration_s",
                "ongoing",
                "reason",
                "trips",
            ]
            .map(String::from),
        );
        for i in &self.incidents {
            csv_row(
                &mut out,
                &[
                    i.deployment.clone(),
                    i.key_slot.clone(),
                    i.opened_at.clone(),
                    i.closed_at.clone().unwrap_or_default(),
                    format!("{:.3}", i.duration_ms as f64 / 1000.0),
                    i.ongoing.to_string(),
                    i.reason.clone(),
                    i.trips.to_string(),
                ],
            );
        }
        out.push_str("\r\n");
        csv_row(
            &mut out,
            &[
                "objective_route",
                "objective",
                "bound_ms",
                "minutes_judged",
                "minutes_met",
                "share_met",
                "share_objective",
                "window_ms",
            ]
            .map(String::from),
        );
        for r in &self.routes {
            for o in &r.objectives {
                csv_row(
                    &mut out,
                    &[
                        r.route.clone(),
                        o.objective.clone(),
                        o.bound_ms.to_string(),
                        o.windows.judged.to_string(),
                        o.windows.met.to_string(),
                        share(o.windows.share),
                        o.windows_objective.to_string(),
                        ms(o.window_ms),
                    ],
                );
            }
        }
        out.push_str("\r\n");
        csv_row(
            &mut out,
            &[
                "notice_id",
                "kind",
                "title",
                "body",
                "models",
                "posted_at",
                "starts_at",
                "ends_at",
                "resolved_at",
            ]
            .map(String::from),
        );
        for n in &self.notices {
            csv_row(
                &mut out,
                &[
                    n.id.clone(),
                    n.kind.as_str().to_owned(),
                    n.title.clone(),
                    n.body.clone(),
                    n.models.join(" "),
                    n.posted_at.clone(),
                    n.starts_at.clone().unwrap_or_default(),
                    n.ends_at.clone().unwrap_or_default(),
                    n.resolved_at.clone().unwrap_or_default(),
                ],
            );
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let pct = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{:.3}%", v * 100.0));
        let ttfb = |t: &Ttfb| match (t.p50_ms, t.p95_ms, t.p99_ms) {
            (Some(a), Some(b), Some(c)) => format!("{a} / {b} / {c} ms"),
            _ => "–".to_owned(),
        };
        let named = |name: &str, since: &Option<String>| match since {
            Some(since) => format!("{} (since {since})", md_cell(name)),
            None => md_cell(name),
        };
        let errors = |e: &BTreeMap<&'static str, u64>| {
            if e.is_empty() {
                return "–".to_owned();
            }
            let mut v: Vec<_> = e.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            v.iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "# SLA report: last {}\n", self.window);
        let _ = writeln!(
            out,
            "{} to {} · SLO {} · source: {}\n",
            self.from,
            self.to,
            pct(Some(self.slo)),
            match self.source {
                Source::Store => "the store (every replica)",
                Source::Memory => "this process's memory",
            }
        );
        let _ = writeln!(out, "## Routes (what clients saw)\n");
        if self.routes.is_empty() {
            let _ = writeln!(out, "No traffic in this window.\n");
        } else {
            let _ = writeln!(
                out,
                "| route | availability | requests | failures | failovers | TTFB p50 / p95 / p99 | upstream errors absorbed | error budget left | sessions (good) |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---:|---:|");
            for r in &self.routes {
                let budget = format!(
                    "{} ({} of {:.3} allowed failures)",
                    pct(r.error_budget.left),
                    r.error_budget.failures,
                    r.error_budget.allowed_failures
                );
                let sessions = match r.sessions.good_share {
                    Some(s) => format!("{} ({})", r.sessions.count, pct(Some(s))),
                    None => "0".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    named(&r.route, &r.since),
                    pct(r.availability),
                    r.requests,
                    r.failures,
                    r.failovers,
                    ttfb(&r.ttfb),
                    errors(&r.errors),
                    budget,
                    sessions
                );
            }
            out.push('\n');
        }
        if self.routes.iter().any(|r| !r.objectives.is_empty()) {
            let _ = writeln!(out, "## Latency objectives (per minute window)\n");
            let _ = writeln!(
                out,
                "| route | objective | minutes met | share met (objective) | over the window |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|");
            for r in &self.routes {
                for o in &r.objectives {
                    let _ = writeln!(
                        out,
                        "| {} | {} ≤ {} | {} of {} | {} ({}) | {} |",
                        md_cell(&r.route),
                        o.objective,
                        objectives::shown_ms(o.bound_ms),
                        o.windows.met,
                        o.windows.judged,
                        pct(o.windows.share),
                        pct(Some(o.windows_objective)),
                        o.window_ms.map_or("–".to_owned(), objectives::shown_ms)
                    );
                }
            }
            out.push('\n');
        }
        let _ = writeln!(out, "## Deployments (what the providers did)\n");
        if self.deployments.is_empty() {
            let _ = writeln!(out, "No upstream attempts in this window.\n");
        } else {
            let _ = writeln!(
                out,
                "| deployment | provider availability | attempts | failures | TTFB p50 / p95 / p99 | errors |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
            for d in &self.deployments {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    named(&d.deployment, &d.since),
                    pct(d.availability),
                    d.requests,
                    d.failures,
                    ttfb(&d.ttfb),
                    errors(&d.errors)
                );
            }
            out.push('\n');
        }
        let _ = writeln!(out, "## Incidents (breaker open)\n");
        if self.incidents.is_empty() {
            let _ = writeln!(out, "No incidents in this window.");
        } else {
            let _ = writeln!(
                out,
                "| deployment | key slot | opened | closed | duration | reason | trips |"
            );
            let _ = writeln!(out, "|---|---|---|---|---:|---|---:|");
            for i in &self.incidents {
                // Milliseconds matter for short incidents only.
                let duration = if i.duration_ms < 10_000 {
                    Duration::from_millis(i.duration_ms)
                } else {
                    Duration::from_secs(i.duration_ms.div_ceil(1000))
                };
                let duration = humantime::format_duration(duration);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {}{} | {} | {} |",
                    md_cell(&i.deployment),
                    md_cell(&i.key_slot),
                    i.opened_at,
                    i.closed_at.as_deref().unwrap_or("ongoing"),
                    duration,
                    if i.ongoing { " so far" } else { "" },
                    md_cell(&i.reason),
                    i.trips
                );
            }
        }
        let _ = writeln!(out, "\n## Notices (posted by operators)\n");
        if self.notices.is_empty() {
            let _ = writeln!(out, "No notices in this window.");
        } else {
            let _ = writeln!(
                out,
                "| kind | title | models | window | posted | resolved |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for n in &self.notices {
                let window = match (&n.starts_at, &n.ends_at) {
                    (None, None) => "–".to_owned(),
                    (a, b) => format!(
                        "{} to {}",
                        a.as_deref().unwrap_or("…"),
                        b.as_deref().unwrap_or("…")
                    ),
                };
                let title = if n.body.is_empty() {
                    md_text(&n.title)
                } else {
                    format!("{}: {}", md_text(&n.title), md_text(&n.body))
                };
                let models = if n.models.is_empty() {
                    "all".to_owned()
                } else {
                    md_text(&n.models.join(", "))
                };
                let _ = writeln!(
                    out,
                    "| {} | {title} | {models} | {window} | {} | {} |",
                    n.kind.as_str(),
                    n.posted_at,
                    n.resolved_at.as_deref().unwrap_or("–")
                );
            }
        }
        out
    }
}

/// The classes with a CSV column: every failure class but `ok`.
fn report_classes() -> Vec<FailureClass> {
    FailureClass::ALL
        .into_iter()
        .filter(|c| *c != FailureClass::Ok)
        .collect()
}

fn count(errors: &BTreeMap<&'static str, u64>, class: FailureClass) -> String {
    errors.get(class.as_str()).copied().unwrap_or(0).to_string()
}

fn csv_row(out: &mut String, cells: &[String]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(cell);
        }
    }
    out.push_str("\r\n");
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Operator text in a Markdown cell: HTML escaped too (Markdown renderers pass HTML through).
fn md_text(text: &str) -> String {
    md_cell(&super::html::escape(text))
}

#[cfg(test)]
mod tests;
