//! A capacity search as one self-contained HTML page: per route the verdict, a latency-versus-
//! load chart (inline SVG: TTFT p50 and p99 against the offered rate, the SLO, the sustainable
//! rate, the peak and what one lost replica leaves) and the steps' table. No script, no external
//! asset: the page can be attached to a ticket and opened anywhere.

use std::fmt::Write;

use super::{CapacityReport, markdown, ms};
use crate::loadtest::capacity::RouteCapacity;
use crate::loadtest::verdict::Call;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 16.0;
const RIGHT: f64 = 16.0;

/// Text safe inside HTML elements and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn capacity_page(report: &CapacityReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nines capacity: {url}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1b1f23; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.15rem; margin-top: 2.2rem; }}
.verdict {{ padding: .7rem 1rem; border-radius: 6px; border-left: 6px solid; }}
.headroom {{ background: #e9f7ee; border-color: #1f8a4c; }}
.no_headroom {{ background: #fff6e0; border-color: #c98a00; }}
.over_capacity, .unknown {{ background: #fdecec; border-color: #c0392b; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 13px; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }}
td:last-child, th:last-child {{ text-align: left; }}
svg {{ max-width: 100%; height: auto; background: #fafbfc; border: 1px solid #e1e4e8; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #444; }}
.legend span {{ margin-right: 1.2rem; font-size: 13px; }}
</style></head><body>
<h1>Capacity and headroom: {url}</h1>
<p>SLO: p99 time to first token ≤ {slo}, error rate ≤ {err:.2}%. Open-loop steps of {step:.0} s. Mix: {mix}.</p>
"#,
        url = escape(&report.url),
        slo = ms(report.search.slo_ttft_p99.as_secs_f64() * 1000.0),
        err = report.search.max_error_rate * 100.0,
        step = report.search.step.as_secs_f64(),
        mix = escape(&report.mix),
    );
    for route in &report.routes {
        route_section(
            &mut out,
            route,
            report.search.slo_ttft_p99.as_secs_f64() * 1000.0,
        );
    }
    let _ = write!(
        out,
        "<details><summary>The same report as Markdown</summary><pre>{}</pre></details>\n</body></html>\n",
        escape(&markdown::capacity_markdown(report))
    );
    out
}

fn route_section(out: &mut String, route: &RouteCapacity, slo_ms: f64) {
    let v = &route.verdict;
    let class = match v.call {
        Call::Headroom => "headroom",
        Call::NoHeadroom => "no_headroom",
        Call::OverCapacity => "over_capacity",
        Call::Unknown => "unknown",
    };
    let _ = write!(
        out,
        "<h2>{}</h2>\n<p class=\"verdict {class}\" data-call=\"{class}\">{}</p>\n",
        escape(&route.route),
        escape(&v.text)
    );
    chart(out, route, slo_ms);
    let _ = writeln!(
        out,
        "<table><tr><th>offered req/s</th><th>achieved req/s</th><th>TTFT p50</th><th>TTFT p99</th><th>latency p99</th><th>errors</th><th>overhead mean</th><th>step</th></tr>"
    );
    for step in &route.steps {
        let s = &step.summary;
        let _ = writeln!(
            out,
            "<tr><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{}</td><td>{}</td></tr>",
            step.rate,
            s.goodput_per_second,
            ms(s.ttft.p50_ms),
            ms(s.ttft.p99_ms),
            ms(s.latency.p99_ms),
            s.error_rate * 100.0,
            step.overhead
                .as_ref()
                .map_or_else(|| "—".to_owned(), |o| ms(o.mean_ms)),
            escape(step.why.as_deref().unwrap_or("ok"))
        );
    }
    out.push_str("</table>\n");
}

/// The latency-versus-load chart.
fn chart(out: &mut String, route: &RouteCapacity, slo_ms: f64) {
    let v = &route.verdict;
    let max_rate = route
        .steps
        .iter()
        .map(|s| s.rate)
        .chain(v.peak_rps)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let max_ms = route
        .steps
        .iter()
        .map(|s| s.summary.ttft.p99_ms)
        .fold(slo_ms, f64::max)
        .min(slo_ms * 4.0)
        * 1.1;
    let x = |rate: f64| LEFT + (rate / max_rate) * (WIDTH - LEFT - RIGHT);
    let y = |ms: f64| HEIGHT - BOTTOM - (ms.min(max_ms) / max_ms) * (HEIGHT - BOTTOM - TOP);
    let _ = write!(
        out,
        r##"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="time to first token against offered load">
<line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" stroke="#888"/>
<text x="{mid}" y="{xl}" text-anchor="middle">offered load (req/s)</text>
<text x="14" y="{ym}" transform="rotate(-90 14 {ym})" text-anchor="middle">time to first token (ms)</text>
"##,
        b = HEIGHT - BOTTOM,
        r = WIDTH - RIGHT,
        mid = (LEFT + WIDTH - RIGHT) / 2.0,
        xl = HEIGHT - 6.0,
        ym = (HEIGHT - BOTTOM + TOP) / 2.0,
    );
    for i in 0..=4 {
        let rate = max_rate * f64::from(i) / 4.0;
        let latency = max_ms * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{rate:.0}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{latency:.0}</text>",
            x(rate),
            HEIGHT - BOTTOM + 14.0,
            LEFT - 6.0,
            y(latency) + 4.0
        );
    }
    // The SLO, the sustainable rate, the peak and what one lost replica leaves.
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c0392b\" stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#c0392b\">SLO {}</text>",
        WIDTH - RIGHT,
        y(slo_ms),
        y(slo_ms),
        WIDTH - RIGHT - 4.0,
        y(slo_ms) - 4.0,
        ms(slo_ms)
    );
    let marks = [
        (v.sustainable_rps, "#1f8a4c", "sustainable"),
        (v.one_lost_rps, "#c98a00", "one replica lost"),
        (v.peak_rps, "#1b1f23", "peak"),
    ];
    for (i, (rate, color, name)) in marks.iter().enumerate() {
        if let Some(rate) = rate {
            let _ = writeln!(
                out,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\" stroke=\"{color}\" stroke-dasharray=\"3 3\"/><text x=\"{2:.1}\" y=\"{3:.1}\" fill=\"{color}\">{name} {rate:.1}</text>",
                x(*rate),
                HEIGHT - BOTTOM,
                x(*rate) + 3.0,
                TOP + 12.0 + 12.0 * i as f64
            );
        }
    }
    for (series, color, pick) in [("p50", "#2f6fb0", 0_u8), ("p99", "#8e44ad", 1_u8)] {
        let points: Vec<String> = route
            .steps
            .iter()
            .filter(|s| s.summary.ttft.count > 0)
            .map(|s| {
                let value = if pick == 0 {
                    s.summary.ttft.p50_ms
                } else {
                    s.summary.ttft.p99_ms
                };
                format!("{:.1},{:.1}", x(s.rate), y(value))
            })
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\" data-series=\"{series}\"/>",
            points.join(" ")
        );
        for point in &points {
            if let Some((px, py)) = point.split_once(',') {
                let _ = write!(
                    out,
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{color}\"/>"
                );
            }
        }
        out.push('\n');
    }
    out.push_str("</svg>\n<p class=\"legend\"><span style=\"color:#2f6fb0\">━ TTFT p50</span><span style=\"color:#8e44ad\">━ TTFT p99</span><span style=\"color:#c0392b\">┅ SLO</span></p>\n");
}
