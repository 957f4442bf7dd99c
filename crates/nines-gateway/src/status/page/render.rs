//! The page's first paint, rendered on the server: the public `/status.json` (the very bytes the
//! script would fetch first) as the HTML `status.js` would build from it, with the same elements,
//! classes and `data-*` attributes. A browser without JavaScript, a crawler or `curl` sees the
//! current state; with JavaScript the script replaces these parts on its first refresh and keeps
//! them live. Times are shown in UTC here (the script shows the reader's local time).
//!
//! Everything that comes from data is escaped ([`escape`]): model names and notices are
//! configuration and operator input.

use super::super::html::escape;
use serde_json::Value;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// Resolved incidents listed (as the script does; more are counted, not listed).
const RESOLVED_SHOWN: usize = 10;
const WINDOWS: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("30d", "30 days"),
    ("90d", "90 days"),
];

/// The parts of the page filled in on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstPaint {
    /// `operational`, `degraded`, `down` (the banner's `data-overall`).
    pub overall: String,
    pub banner: String,
    pub updated: String,
    pub notices: String,
    pub routes: String,
    pub incidents: String,
    pub slo: String,
}

impl FirstPaint {
    /// `template` with its `{{…}}` slots filled in one pass (so data that happens to contain a
    /// slot's name is not filled again); `title` is the page's title, unescaped.
    pub fn fill(&self, template: &str, title: &str) -> String {
        let title = escape(title);
        let overall = escape(&self.overall);
        let mut out = String::with_capacity(template.len() + self.routes.len() + 4096);
        let mut rest = template;
        while let Some(at) = rest.find("{{") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(end) = after.find("}}") else {
                rest = &rest[at..];
                break;
            };
            let value = match &after[..end] {
                "title" => &title,
                "overall" => &overall,
                "banner" => &self.banner,
                "updated" => &self.updated,
                "notices" => &self.notices,
                "routes" => &self.routes,
                "incidents" => &self.incidents,
                "slo" => &self.slo,
                _ => {
                    out.push_str("{{");
                    rest = after;
                    continue;
                }
            };
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// The first paint of a public status (`/status.json`'s public shape).
pub fn first_paint(status: &Value) -> FirstPaint {
    let slo = status["slo"].as_f64().unwrap_or(0.999);
    let now = status["generated_at_ms"].as_u64().unwrap_or(0);
    let empty = Vec::new();
    let routes = status["routes"].as_array().unwrap_or(&empty);
    let mut routes_html = String::from("<div>");
    for r in routes {
        route(&mut routes_html, r, slo);
    }
    if routes.is_empty() {
        routes_html.push_str("<p class=\"empty\">No models are configured.</p>");
    }
    routes_html.push_str("</div>");
    FirstPaint {
        overall: text(&status["state"]).to_owned(),
        banner: escape(banner_text(status)),
        updated: escape(&format!(
            "Updated {} · rendered by the server",
            utc(now, true)
        )),
        notices: notices(&status["notices"]["active"], now, "active"),
        routes: routes_html,
        incidents: incidents(status, now),
        slo: escape(&format!(
            "Objective: {} of requests answered. Data as JSON: /status.json",
            pct(Some(slo))
        )),
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn banner_text(status: &Value) -> &'static str {
    match text(&status["state"]) {
        "operational" => "All systems operational",
        "down" => "Major outage",
        _ => {
            let any_down = status["routes"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["state"] == "down"));
            if any_down {
                "Partial outage"
            } else {
                "Degraded service"
            }
        }
    }
}

fn label(state: &str) -> &str {
    match state {
        "operational" => "Operational",
        "degraded" => "Degraded",
        "down" => "Outage",
        other => other,
    }
}

/// `name="value"` for each present attribute (JSON null leaves it out, as the script does).
fn attrs(out: &mut String, pairs: &[(&str, Option<String>)]) {
    for (name, value) in pairs {
        if let Some(value) = value {
            let _ = write!(out, " {name}=\"{}\"", escape(value));
        }
    }
}

/// A JSON value as the script's `String(value)` would write it; `None` for null.
fn attr(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() => js_number(f),
            _ => n.to_string(),
        }),
        other => Some(other.to_string()),
    }
}

/// A number as JavaScript prints it (`1`, `0.5`, `12.34`).
fn js_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn trim_decimals(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `x` with `digits` decimals as JavaScript's `toFixed` writes it (a tie rounds up, where Rust's
/// formatting rounds it to even).
fn fixed(x: f64, digits: usize) -> String {
    let scale = 10f64.powi(digits as i32);
    format!("{:.digits$}", (x * scale).round() / scale)
}

/// The script's `pct`.
pub fn pct(x: Option<f64>) -> String {
    let Some(x) = x else {
        return "—".into();
    };
    let digits = if (0.9999..1.0).contains(&x) { 3 } else { 2 };
    format!("{}%", trim_decimals(fixed(x * 100.0, digits)))
}

/// The script's `ms`.
pub fn ms(x: Option<f64>) -> String {
    let Some(x) = x else {
        return "—".into();
    };
    if x >= 1000.0 {
        return format!("{} s", fixed(x / 1000.0, 2));
    }
    if x < 10.0 {
        let one = fixed(x, 1);
        format!("{} ms", one.strip_suffix(".0").unwrap_or(&one))
    } else {
        format!("{} ms", x.round() as i64)
    }
}

/// The script's `count`: thousands separated by commas.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `2026-12-07 04:30 UTC` (with seconds when `seconds`).
fn utc(ms: u64, seconds: bool) -> String {
    let t = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    let end = if seconds { 19 } else { 16 };
    format!("{} {} UTC", &t[..10], &t[11..end])
}

/// The script's `duration`.
fn duration(msec: u64) -> String {
    let s = (msec + 500) / 1000;
    if s < 60 {
        return format!("{s} s");
    }
    let m = s / 60;
    if m < 60 {
        return format!("{m} min {} s", s % 60);
    }
    let h = m / 60;
    if h < 48 {
        return format!("{h} h {} min", m % 60);
    }
    format!("{} d {} h", h / 24, h % 24)
}

fn bar_class(day: &Value, slo: f64) -> &'static str {
    if day["requests"].as_u64().unwrap_or(0) == 0 {
        return "bar none";
    }
    let budget = 1.0 - slo;
    let a = day["availability"].as_f64().unwrap_or(0.0);
    if a >= slo {
        "bar ok"
    } else if a >= 1.0 - 10.0 * budget {
        "bar minor"
    } else if a >= 1.0 - 50.0 * budget {
        "bar major"
    } else {
        "bar bad"
    }
}

fn pill(out: &mut String, state: &str, shown: &str) {
    out.push_str("<span class=\"pill\"");
    attrs(out, &[("data-state", Some(state.to_owned()))]);
    let _ = write!(out, ">{}</span>", escape(shown));
}

fn route(out: &mut String, r: &Value, slo: f64) {
    let name = text(&r["name"]);
    let state = text(&r["state"]);
    out.push_str("<article class=\"card\"");
    attrs(
        out,
        &[
            ("data-route", Some(name.to_owned())),
            ("data-state", Some(state.to_owned())),
        ],
    );
    let _ = write!(out, "><div class=\"card-head\"><h2>{}</h2>", escape(name));
    pill(out, state, label(state));
    out.push_str("</div>");
    if let Some(reasons) = r["reasons"].as_array().filter(|l| !l.is_empty()) {
        out.push_str("<ul class=\"reasons\">");
        for why in reasons {
            let _ = write!(out, "<li>{}</li>", escape(text(why)));
        }
        out.push_str("</ul>");
    }
    if let Some(note) = r["note"].as_str() {
        out.push_str("<p class=\"note\"");
        attrs(out, &[("data-note", Some(name.to_owned()))]);
        let _ = write!(out, ">{}</p>", escape(note));
    }
    figures(out, &r["availability"]);
    out.push_str("<div class=\"metrics route-metrics\">");
    ttfb(out, &r["ttfb_ms"], name);
    for o in r["objectives"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        objective(out, o);
    }
    out.push_str("</div>");
    if let Some(days) = r["days"].as_array().filter(|d| !d.is_empty()) {
        bars(out, name, days, slo);
        let _ = write!(
            out,
            "<div class=\"bar-legend\"><span class=\"wide\">{} days ago</span><span \
             class=\"narrow\">30 days ago</span><span>today</span></div>",
            days.len()
        );
    }
    out.push_str("</article>");
}

fn figures(out: &mut String, windows: &Value) {
    out.push_str("<div class=\"figures\">");
    for (key, long) in WINDOWS {
        let w = &windows[key];
        let requests = w["requests"].as_u64().unwrap_or(0);
        let mut title = if requests > 0 {
            format!(
                "{} requests, {} failed",
                count(requests),
                count(w["failures"].as_u64().unwrap_or(0))
            )
        } else {
            "no traffic".to_owned()
        };
        let since_ms = w["since_ms"].as_u64();
        let shown = match since_ms {
            Some(since) => format!("since {}", utc(since, false)),
            None => long.to_owned(),
        };
        if since_ms.is_some() {
            let _ = write!(title, " (data since {})", text(&w["since"]));
        }
        out.push_str("<div class=\"figure\"");
        attrs(
            out,
            &[
                ("data-window", Some(key.to_owned())),
                ("data-availability", attr(&w["availability"])),
                ("data-since", attr(&w["since"])),
                ("title", Some(title)),
            ],
        );
        let _ = write!(
            out,
            "><div class=\"value\">{}</div><div class=\"label\">{}</div></div>",
            escape(&pct(w["availability"].as_f64())),
            escape(&shown)
        );
    }
    out.push_str("</div>");
}

fn ttfb(out: &mut String, t: &Value, route: &str) {
    let error = t["relative_error"].as_f64().unwrap_or(0.01) * 100.0;
    out.push_str("<span");
    attrs(
        out,
        &[
            ("data-route-ttfb", Some(route.to_owned())),
            ("class", Some("metric".to_owned())),
            ("data-ttfb-p50", attr(&t["p50_ms"])),
            ("data-ttfb-p95", attr(&t["p95_ms"])),
            ("data-ttfb-p99", attr(&t["p99_ms"])),
            (
                "title",
                Some(format!(
                    "time to first byte over the last hour, within {}% ({} answers)",
                    js_number(error),
                    count(t["samples"].as_u64().unwrap_or(0))
                )),
            ),
        ],
    );
    let _ = write!(
        out,
        ">TTFB p50 <b>{}</b> · p95 <b>{}</b></span>",
        escape(&ms(t["p50_ms"].as_f64())),
        escape(&ms(t["p95_ms"].as_f64()))
    );
}

/// `ttft_p99` → `TTFT p99`, `latency_p50` → `Latency p50`.
fn objective_label(key: &str) -> String {
    match key.split_once('_') {
        Some(("ttft", p)) => format!("TTFT {p}"),
        Some(("latency", p)) => format!("Latency {p}"),
        _ => key.to_owned(),
    }
}

/// A latency objective: its bound, and the share of minute windows that met it (the script's
/// `objective`).
fn objective(out: &mut String, o: &Value) {
    let key = text(&o["objective"]);
    let windows = &o["windows"];
    let met = match o["met"].as_bool() {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    };
    out.push_str("<span");
    attrs(
        out,
        &[
            ("class", Some("metric objective".to_owned())),
            ("data-objective", Some(key.to_owned())),
            ("data-objective-met", Some(met.to_owned())),
            ("data-objective-share", attr(&windows["share"])),
            (
                "title",
                Some(format!(
                    "{} of {} minutes with answers over the last 24 hours met it (objective: {}); \
                     last 5 minutes: {}",
                    count(windows["met"].as_u64().unwrap_or(0)),
                    count(windows["judged"].as_u64().unwrap_or(0)),
                    pct(o["windows_objective"].as_f64()),
                    ms(o["recent_ms"].as_f64())
                )),
            ),
        ],
    );
    let _ = write!(
        out,
        ">{} ≤ {}: <b>{}</b> of minutes</span>",
        escape(&objective_label(key)),
        escape(&ms(o["bound_ms"].as_f64())),
        escape(&pct(windows["share"].as_f64()))
    );
}

fn bars(out: &mut String, owner: &str, days: &[Value], slo: f64) {
    out.push_str("<div class=\"bars\"");
    attrs(
        out,
        &[
            ("data-uptime", Some(owner.to_owned())),
            ("role", Some("img".to_owned())),
            (
                "aria-label",
                Some(format!(
                    "Daily availability of {owner} over the last {} days",
                    days.len()
                )),
            ),
        ],
    );
    out.push('>');
    for d in days {
        let date = text(&d["date"]);
        let requests = d["requests"].as_u64().unwrap_or(0);
        let title = if requests > 0 {
            format!(
                "{date}: {} requests, {} failed, {}",
                count(requests),
                count(d["failures"].as_u64().unwrap_or(0)),
                pct(d["availability"].as_f64())
            )
        } else {
            format!("{date}: no traffic")
        };
        out.push_str("<span");
        attrs(
            out,
            &[
                ("class", Some(bar_class(d, slo).to_owned())),
                ("data-day", Some(date.to_owned())),
                ("data-requests", attr(&d["requests"])),
                ("data-failures", attr(&d["failures"])),
                ("data-availability", attr(&d["availability"])),
                ("title", Some(title)),
            ],
        );
        out.push_str("></span>");
    }
    out.push_str("</div>");
}

fn incidents(status: &Value, now: u64) -> String {
    let empty = Vec::new();
    let current = status["incidents"]["current"].as_array().unwrap_or(&empty);
    let recent = status["incidents"]["recent"].as_array().unwrap_or(&empty);
    let mut out = String::from("<div>");
    let shown = current.iter().chain(recent.iter().take(RESOLVED_SHOWN));
    let mut any = false;
    for i in shown {
        any = true;
        incident(&mut out, i, now);
    }
    let more = recent.len().saturating_sub(RESOLVED_SHOWN);
    if more > 0 {
        let _ = write!(
            out,
            "<p class=\"empty\">and {more} more resolved in the last 7 days (see status.json)</p>"
        );
    }
    if !any {
        let text = if status["ledger"].as_bool() == Some(true) {
            "No incidents in the last 7 days."
        } else {
            "Incidents are not kept (telemetry.ledger = false)."
        };
        let _ = write!(
            out,
            "<p class=\"empty\" data-incidents-empty=\"\">{text}</p>"
        );
    }
    out.push_str(&notices(&status["notices"]["past"], now, "past"));
    out.push_str("</div>");
    out
}

fn incident(out: &mut String, i: &Value, now: u64) {
    let open = i["resolved_at_ms"].is_null();
    let started = i["started_at_ms"].as_u64().unwrap_or(0);
    let models: Vec<&str> = i["models"]
        .as_array()
        .map(|m| m.iter().map(text).collect())
        .unwrap_or_default();
    let mut detail = vec![if open {
        format!(
            "since {} ({})",
            utc(started, true),
            duration(now.saturating_sub(started))
        )
    } else {
        format!(
            "{}, lasted {}",
            utc(started, true),
            duration(i["duration_ms"].as_u64().unwrap_or(0))
        )
    }];
    let failed = i["failed_requests"].as_u64().unwrap_or(0);
    detail.push(format!(
        "{} failed request{}",
        count(failed),
        if failed == 1 { "" } else { "s" }
    ));
    let episodes = i["episodes"].as_u64().unwrap_or(1);
    if episodes > 1 {
        detail.push(format!("{episodes} episodes"));
    }
    out.push_str("<div class=\"incident\"");
    attrs(
        out,
        &[
            ("data-incident", Some(models.join(","))),
            (
                "data-incident-state",
                Some(if open { "open" } else { "closed" }.to_owned()),
            ),
        ],
    );
    out.push_str("><div class=\"what\">");
    if open {
        pill(out, "down", "Ongoing");
    } else {
        pill(out, "closed", "Resolved");
    }
    let _ = write!(
        out,
        "<strong>{}</strong><span>elevated errors</span></div><p class=\"detail\">{}</p></div>",
        escape(&models.join(", ")),
        escape(&detail.join(" · "))
    );
}

/// Notices (`active` or `past`), as the script's `notice` builds them.
fn notices(list: &Value, now: u64, which: &str) -> String {
    let mut out = String::new();
    for n in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        notice(&mut out, n, now, which);
    }
    out
}

fn notice(out: &mut String, n: &Value, now: u64, which: &str) {
    let kind = text(&n["kind"]);
    let maintenance = kind == "maintenance";
    let starts = n["starts_at_ms"].as_u64();
    let ends = n["ends_at_ms"].as_u64();
    let mut detail = Vec::new();
    if let Some(models) = n["models"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<&str> = models.iter().map(text).collect();
        detail.push(format!("affects {}", names.join(", ")));
    }
    match (starts, ends) {
        (Some(s), Some(e)) => detail.push(format!("{} to {}", utc(s, false), utc(e, false))),
        (Some(s), None) => detail.push(format!("from {}", utc(s, false))),
        (None, Some(e)) => detail.push(format!("until {}", utc(e, false))),
        (None, None) => {}
    }
    detail.push(format!(
        "posted {}",
        utc(n["created_at_ms"].as_u64().unwrap_or(0), false)
    ));
    if let Some(at) = n["resolved_at_ms"].as_u64() {
        detail.push(format!("resolved {}", utc(at, false)));
    }
    let (pill_state, pill_text) = match (which, maintenance) {
        ("past", _) => ("closed", "Resolved"),
        (_, true) if starts.is_some_and(|s| s > now) => ("maintenance", "Scheduled"),
        (_, true) => ("maintenance", "Maintenance"),
        (_, false) => ("degraded", "Update"),
    };
    out.push_str("<div class=\"notice\"");
    attrs(
        out,
        &[
            ("data-notice", attr(&n["id"])),
            ("data-notice-kind", Some(kind.to_owned())),
            ("data-notice-state", Some(which.to_owned())),
        ],
    );
    out.push_str("><div class=\"what\">");
    pill(out, pill_state, pill_text);
    let _ = write!(out, "<strong>{}</strong></div>", escape(text(&n["title"])));
    let body = text(&n["body"]);
    if !body.is_empty() {
        let _ = write!(out, "<p class=\"body\">{}</p>", escape(body));
    }
    let _ = write!(
        out,
        "<p class=\"detail\">{}</p></div>",
        escape(&detail.join(" · "))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_read_as_the_script_writes_them() {
        assert_eq!(pct(Some(1.0)), "100%");
        assert_eq!(pct(Some(0.99995)), "99.995%");
        assert_eq!(pct(Some(0.5)), "50%");
        assert_eq!(pct(None), "—");
        assert_eq!(ms(Some(0.25)), "0.3 ms");
        assert_eq!(ms(Some(3.0)), "3 ms");
        assert_eq!(ms(Some(250.4)), "250 ms");
        assert_eq!(ms(Some(1500.0)), "1.50 s");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(js_number(1.0), "1");
        assert_eq!(js_number(0.25), "0.25");
        assert_eq!(utc(0, true), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn slots_are_filled_once() {
        let paint = FirstPaint {
            overall: "degraded".into(),
            banner: "{{title}}".into(),
            updated: String::new(),
            notices: String::new(),
            routes: "R".into(),
            incidents: String::new(),
            slo: String::new(),
        };
        let html = paint.fill(
            "<t>{{title}}</t><b data-o=\"{{overall}}\">{{banner}}</b>{{routes}}{{x}}",
            "A <b>",
        );
        assert_eq!(
            html,
            "<t>A &lt;b&gt;</t><b data-o=\"degraded\">{{title}}</b>R{{x}}"
        );
    }

    #[test]
    fn operator_text_is_escaped() {
        let status = json!({
            "state": "operational", "slo": 0.999, "generated_at_ms": 0, "ledger": true,
            "routes": [], "incidents": {"current": [], "recent": []},
            "notices": {"active": [{
                "id": "ntc_1", "kind": "incident", "title": "<script>alert(1)</script>",
                "body": "a & b \"c\"", "models": ["<m>"], "created_at_ms": 0,
                "starts_at_ms": null, "ends_at_ms": null, "resolved_at_ms": null
            }], "past": []}
        });
        let paint = first_paint(&status);
        assert!(!paint.notices.contains("<script>"), "{}", paint.notices);
        assert!(
            paint
                .notices
                .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
        );
        assert!(paint.notices.contains("a &amp; b &quot;c&quot;"));
        assert!(paint.notices.contains("affects &lt;m&gt;"));
    }
}
