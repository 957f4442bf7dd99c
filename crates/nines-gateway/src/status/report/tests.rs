use super::*;
use crate::clock::Clock;
use crate::config::telemetry::Telemetry as Settings;
use crate::telemetry::ledger::DAY_MS;

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const MINUTE: u64 = 60_000;
const DAY: Duration = Duration::from_secs(86_400);

fn tally(requests: u64, failures: u64) -> Tally {
    Tally {
        requests,
        failures,
        ..Tally::default()
    }
}

fn incident(slot: &str, opened: u64, closed: Option<u64>, reason: &str) -> Incident {
    Incident {
        deployment: slot.split('#').next().unwrap_or(slot).into(),
        key_slot: slot.into(),
        opened_at_ms: opened,
        closed_at_ms: closed,
        reason: reason.into(),
        trips: 1,
    }
}

fn sample() -> Report {
    let mut route = Tally {
        fallbacks: 7,
        sessions: 4,
        sessions_good: 3,
        ..tally(2000, 1)
    };
    route.classes[FailureClass::Server.index()] = 6;
    route.classes[FailureClass::Timeout.index()] = 2;
    for _ in 0..99 {
        route.ttfb.record(Duration::from_millis(90));
    }
    route.ttfb.record(Duration::from_millis(2500));
    let mut provider = tally(2008, 8);
    provider.classes[FailureClass::Server.index()] = 6;
    provider.classes[FailureClass::Timeout.index()] = 2;
    let inputs = Inputs {
        series: vec![
            (Scope::Route, "chat".into(), route),
            (Scope::Deployment, "d0".into(), provider),
            (Scope::Deployment, "d1".into(), tally(0, 0)),
            (Scope::Route, "a|b".into(), tally(3, 3)),
        ],
        incidents: vec![
            incident(
                "d0#0",
                T0 - DAY_MS - 2 * MINUTE,
                Some(T0 - DAY_MS - MINUTE),
                "before",
            ),
            incident(
                "d0#0",
                T0 - 10 * MINUTE,
                Some(T0 - 5 * MINUTE),
                "5 consecutive failures",
            ),
            incident("d1#0", T0 - MINUTE, None, "said \"no\", twice"),
        ],
        ..Inputs::default()
    };
    Report::build(inputs, DAY, T0 - DAY_MS, T0, 0.999, Source::Store)
}

#[test]
fn routes_show_what_clients_saw_against_the_slo() {
    let r = sample();
    assert_eq!(r.window, "1d");
    assert_eq!(r.from, "2025-12-31T00:00:00Z");
    assert_eq!(r.to, "2026-01-01T00:00:00Z");
    // Sorted by name; a series without counts is left out.
    let names: Vec<&str> = r.routes.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(names, ["a|b", "chat"]);
    assert_eq!(r.deployments.len(), 1);
    let chat = &r.routes[1];
    assert_eq!(chat.availability, Some(0.9995));
    assert_eq!((chat.requests, chat.failures, chat.failovers), (2000, 1, 7));
    assert_eq!(
        chat.errors
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect::<Vec<_>>(),
        [("server", 6), ("timeout", 2)]
    );
    // 0.1% of 2000 requests: 2 failures allowed, 1 spent.
    let b = chat.error_budget;
    assert!((b.allowed_failures - 2.0).abs() < 1e-9);
    assert!((b.used.unwrap_or(0.0) - 0.5).abs() < 1e-9);
    assert!((b.left.unwrap_or(0.0) - 0.5).abs() < 1e-9);
    // 99 answers in 90 ms and one in 2.5 s: every percentile up to p99 is a 90 ms one.
    let p50 = chat.ttfb.p50_ms.unwrap_or_default();
    assert!((p50 - 90.0).abs() <= 0.9, "{p50}");
    assert_eq!((chat.ttfb.p95_ms, chat.ttfb.p99_ms), (Some(p50), Some(p50)));
    assert_eq!(chat.ttfb.samples, 100);
    assert_eq!(chat.sessions.good_share, Some(0.75));
    // Every request failed: the budget is overspent a thousand times.
    let ab = &r.routes[0];
    assert_eq!(ab.availability, Some(0.0));
    assert!(ab.error_budget.left.unwrap_or(0.0) < -998.0);
    assert_eq!(ab.sessions.good_share, None);
    assert_eq!(ab.ttfb.p50_ms, None);
}

#[test]
fn incidents_in_the_window_with_durations_and_ongoing_ones() {
    let r = sample();
    // The one that closed before the window is out.
    assert_eq!(r.incidents.len(), 2);
    let first = &r.incidents[0];
    assert_eq!(first.key_slot, "d0#0");
    assert_eq!(first.duration_ms, 5 * MINUTE);
    assert!(!first.ongoing);
    assert_eq!(first.closed_at.as_deref(), Some("2025-12-31T23:55:00Z"));
    let open = &r.incidents[1];
    assert!(open.ongoing);
    assert_eq!(open.closed_at, None);
    assert_eq!(open.duration_ms, MINUTE);
}

#[test]
fn overlapping_incidents_of_a_slot_merge_and_separate_ones_do_not() {
    let merged = merge_incidents(vec![
        incident("a#0", 100, Some(200), "first"),
        incident("b#0", 150, Some(160), "other slot"),
        incident("a#0", 150, Some(250), "second replica"),
        incident("a#0", 250, Some(300), "touching"),
        incident("a#0", 400, Some(500), "later outage"),
        incident("a#0", 450, None, "still open"),
    ]);
    let view: Vec<(&str, u64, Option<u64>, u32, &str)> = merged
        .iter()
        .map(|i| {
            (
                i.key_slot.as_str(),
                i.opened_at_ms,
                i.closed_at_ms,
                i.trips,
                i.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("a#0", 100, Some(300), 3, "first"),
            ("b#0", 150, Some(160), 1, "other slot"),
            ("a#0", 400, None, 2, "later outage"),
        ]
    );
}

#[test]
fn rows_whose_data_begin_inside_the_window_say_since_when() {
    let from = T0 - 30 * DAY_MS;
    let mut inputs = Inputs {
        series: vec![
            (Scope::Route, "chat".into(), tally(10, 0)),
            (Scope::Deployment, "d0".into(), tally(10, 0)),
        ],
        ..Inputs::default()
    };
    inputs
        .first_data
        .insert((Scope::Route, "chat".into()), T0 - 60 * MINUTE);
    // Older than the window (or within its first hour): it covers the window.
    inputs
        .first_data
        .insert((Scope::Deployment, "d0".into()), from + 30 * MINUTE);
    let r = Report::build(inputs, 30 * DAY, from, T0, 0.999, Source::Memory);
    assert_eq!(r.routes[0].since.as_deref(), Some("2025-12-31T23:00:00Z"));
    assert_eq!(r.deployments[0].since, None);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["routes"][0]["since"], "2025-12-31T23:00:00Z");
    assert!(v["deployments"][0].get("since").is_none());
    assert!(
        r.to_markdown()
            .contains("| chat (since 2025-12-31T23:00:00Z) |")
    );
    assert!(
        r.to_csv()
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(",2025-12-31T23:00:00Z")
    );
}

#[test]
fn csv_is_one_row_per_series_then_an_incident_block() {
    let csv = sample().to_csv();
    let (series, incidents) = csv.split_once("\r\n\r\n").unwrap();
    let rows: Vec<&str> = series.split("\r\n").collect();
    assert_eq!(rows.len(), 4, "{csv}");
    let header: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(
        &header[..6],
        [
            "kind",
            "name",
            "availability",
            "requests",
            "failures",
            "failovers"
        ]
    );
    assert_eq!(header.len(), 16 + 12 + 1);
    assert_eq!(header.last(), Some(&"since"));
    assert!(header.contains(&"errors_server") && !header.contains(&"errors_ok"));
    for row in &rows[1..] {
        assert_eq!(row.split(',').count(), header.len(), "{row}");
    }
    let chat: Vec<&str> = rows[2].split(',').collect();
    let cell = |name: &str| chat[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(cell("kind"), "route");
    assert_eq!(cell("availability"), "0.999500");
    assert_eq!(cell("failovers"), "7");
    assert_eq!(cell("allowed_failures"), "2.000");
    assert_eq!(cell("budget_left"), "0.500000");
    assert_eq!(cell("sessions_good_share"), "0.750000");
    assert_eq!(cell("errors_server"), "6");
    let d0: Vec<&str> = rows[3].split(',').collect();
    assert_eq!(&d0[..6], ["deployment", "d0", "0.996016", "2008", "8", ""]);

    let lines: Vec<&str> = incidents.trim_end().split("\r\n").collect();
    assert_eq!(
        lines[0],
        "incident_deployment,key_slot,opened_at,closed_at,duration_s,ongoing,reason,trips"
    );
    assert_eq!(
        lines[1],
        "d0,d0#0,2025-12-31T23:50:00Z,2025-12-31T23:55:00Z,300.000,false,5 consecutive failures,1"
    );
    // A reason with a comma and quotes is quoted, quotes doubled.
    assert_eq!(
        lines[2],
        "d1,d1#0,2025-12-31T23:59:00Z,,60.000,true,\"said \"\"no\"\", twice\",1"
    );
}

#[test]
fn markdown_has_a_table_per_section() {
    let md = sample().to_markdown();
    assert!(md.starts_with("# SLA report: last 1d\n"), "{md}");
    assert!(md.contains("SLO 99.900%"));
    assert!(md.contains("## Routes (what clients saw)"));
    assert!(md.contains("| chat | 99.950% | 2000 | 1 | 7 |"), "{md}");
    assert!(md.contains("| a\\|b | 0.000% | 3 | 3 | 0 |"), "{md}");
    assert!(md.contains("server 6, timeout 2"));
    assert!(md.contains("| d0 | 99.602% | 2008 | 8 |"));
    assert!(md.contains("| d0 | d0#0 | 2025-12-31T23:50:00Z | 2025-12-31T23:55:00Z | 5m |"));
    assert!(md.contains("| d1 | d1#0 | 2025-12-31T23:59:00Z | ongoing | 1m so far |"));
    let empty = Report::build(
        Inputs::default(),
        DAY,
        T0 - DAY_MS,
        T0,
        0.999,
        Source::Memory,
    );
    let md = empty.to_markdown();
    assert!(md.contains("No traffic in this window."));
    assert!(md.contains("No incidents in this window."));
    assert!(md.contains("source: this process's memory"));
}

#[test]
fn json_carries_every_field() {
    let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
    assert_eq!(v["source"], "store");
    assert_eq!(v["slo"], 0.999);
    assert_eq!(v["routes"][1]["route"], "chat");
    assert_eq!(v["routes"][1]["errors"]["server"], 6);
    let allowed = v["routes"][1]["error_budget"]["allowed_failures"].as_f64();
    assert!(allowed.is_some_and(|a| (a - 2.0).abs() < 1e-9));
    assert_eq!(v["routes"][1]["sessions"]["count"], 4);
    let p99 = v["routes"][1]["ttfb"]["p99_ms"]
        .as_f64()
        .unwrap_or_default();
    assert!((p99 - 90.0).abs() <= 0.9, "{p99}");
    assert_eq!(v["routes"][1]["ttfb"]["relative_error"], 0.01);
    let availability = v["deployments"][0]["availability"].as_f64();
    assert!(availability.is_some_and(|a| (a - 2000.0 / 2008.0).abs() < 1e-12));
    assert_eq!(v["incidents"][1]["ongoing"], true);
    assert_eq!(v["incidents"][1]["closed_at"], serde_json::Value::Null);
}

#[test]
fn windows_and_formats_are_checked() {
    let retention = Duration::from_secs(100 * 86_400);
    assert_eq!(parse_window("30d", retention), Ok(30 * DAY));
    assert_eq!(
        parse_window("36h", retention),
        Ok(Duration::from_secs(36 * 3600))
    );
    assert_eq!(label(Duration::from_secs(36 * 3600)), "36h");
    assert_eq!(label(Duration::from_secs(90 * 60)), "90m");
    assert!(
        parse_window("soon", retention)
            .unwrap_err()
            .contains("not a duration")
    );
    assert!(
        parse_window("10s", retention)
            .unwrap_err()
            .contains("minute")
    );
    assert!(
        parse_window("200d", retention)
            .unwrap_err()
            .contains("telemetry.retention = 100d")
    );
    assert_eq!(Format::parse("md"), Ok(Format::Markdown));
    assert_eq!(Format::Csv.content_type(), "text/csv; charset=utf-8");
    assert!(Format::parse("xml").unwrap_err().contains("json, csv, md"));
}

#[tokio::test(start_paused = true)]
async fn without_a_store_the_report_reads_this_process_ledger() {
    let ledger = Ledger::new(&Settings::default(), Clock::at(T0));
    ledger.add(Scope::Route, "chat", T0, &tally(4, 1), false);
    ledger.add(Scope::Route, "chat", T0 - 3 * DAY_MS, &tally(100, 0), false);
    tokio::time::advance(Duration::from_secs(60)).await;
    let now = ledger.clock().now_ms();
    let inputs = read_ledger(&ledger, now - DAY_MS, now, BTreeMap::new());
    let r = Report::build(inputs, DAY, now - DAY_MS, now, 0.999, Source::Memory);
    assert_eq!(r.routes.len(), 1);
    assert_eq!((r.routes[0].requests, r.routes[0].failures), (4, 1));
}

fn notice(id: &str, created: u64, resolved: Option<u64>, title: &str) -> crate::store::Notice {
    crate::store::Notice {
        id: id.into(),
        kind: crate::store::NoticeKind::Incident,
        title: title.into(),
        body: String::new(),
        models: vec!["chat".into()],
        created_at_ms: created,
        starts_at_ms: None,
        ends_at_ms: None,
        resolved_at_ms: resolved,
    }
}

#[test]
fn notices_in_force_during_the_window_are_reported_with_their_text_escaped() {
    let mut maintenance = notice("ntc_m", T0 - 2 * DAY_MS, None, "DB upgrade");
    maintenance.kind = crate::store::NoticeKind::Maintenance;
    maintenance.starts_at_ms = Some(T0 - 2 * DAY_MS);
    // Its window ended before this report's.
    maintenance.ends_at_ms = Some(T0 - DAY_MS - MINUTE);
    let inputs = Inputs {
        notices: vec![
            notice("ntc_old", T0 - 3 * DAY_MS, Some(T0 - 2 * DAY_MS), "old"),
            maintenance,
            notice("ntc_late", T0 + MINUTE, None, "after the window"),
            notice(
                "ntc_now",
                T0 - 2 * DAY_MS,
                Some(T0 - 10 * MINUTE),
                "<b>Errors</b> | on chat",
            ),
            notice("ntc_open", T0 - 5 * MINUTE, None, "Investigating"),
        ],
        ..Inputs::default()
    };
    let r = Report::build(inputs, DAY, T0 - DAY_MS, T0, 0.999, Source::Memory);
    let ids: Vec<&str> = r.notices.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["ntc_now", "ntc_open"]);
    assert_eq!(
        r.notices[0].resolved_at.as_deref(),
        Some("2025-12-31T23:50:00Z")
    );
    let md = r.to_markdown();
    assert!(md.contains("## Notices (posted by operators)"), "{md}");
    assert!(md.contains("&lt;b&gt;Errors&lt;/b&gt; \\| on chat"), "{md}");
    assert!(!md.contains("<b>"), "{md}");
    let csv = r.to_csv();
    assert!(csv.contains("notice_id,kind,title,body,models"), "{csv}");
    assert!(
        csv.contains("ntc_open,incident,Investigating,,chat,2025-12-31T23:55:00Z"),
        "{csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["notices"][1]["title"], "Investigating");
}
