//! Reports as Markdown: a run's figures, and a capacity search's steps and verdicts.

use std::fmt::Write;

use super::{CapacityReport, RunReport, ms};

pub fn run_markdown(report: &RunReport) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(out, "## nines loadtest: {}\n", report.url);
    let _ = writeln!(out, "- load: {}\n- mix: {}\n", report.load, report.mix);
    let _ = writeln!(out, "| figure | value |\n|---|---|");
    let _ = writeln!(out, "| requests | {} ({} failed) |", s.requests, s.failed);
    let _ = writeln!(out, "| throughput | {:.1} req/s |", s.requests_per_second);
    let _ = writeln!(
        out,
        "| output tokens/s | {:.0} |",
        s.output_tokens_per_second
    );
    for (name, p) in [("latency", &s.latency), ("TTFT", &s.ttft)] {
        let _ = writeln!(
            out,
            "| {name} p50 / p90 / p99 | {} / {} / {} |",
            ms(p.p50_ms),
            ms(p.p90_ms),
            ms(p.p99_ms)
        );
    }
    for (class, n) in &s.errors {
        let _ = writeln!(out, "| errors: {class} | {n} |");
    }
    if let Some(o) = &report.overhead {
        let _ = writeln!(
            out,
            "| gateway overhead mean / p99 | {} / ≈{} |",
            ms(o.mean_ms),
            ms(o.p99_ms)
        );
    }
    out
}

pub fn capacity_markdown(report: &CapacityReport) -> String {
    let mut out = String::new();
    let search = &report.search;
    let _ = writeln!(out, "# Capacity and headroom: {}\n", report.url);
    let _ = writeln!(
        out,
        "SLO: p99 time to first token ≤ {}, error rate ≤ {:.2}%. Steps of {:.0} s, open loop. Mix: {}.\n",
        ms(search.slo_ttft_p99.as_secs_f64() * 1000.0),
        search.max_error_rate * 100.0,
        search.step.as_secs_f64(),
        report.mix
    );
    for route in &report.routes {
        let v = &route.verdict;
        let _ = writeln!(out, "## {}\n", route.route);
        let _ = writeln!(out, "**{}**\n", v.text);
        let _ = writeln!(out, "| | |\n|---|---|");
        let rate = |r: Option<f64>| r.map_or_else(|| "—".to_owned(), |r| format!("{r:.1} req/s"));
        let _ = writeln!(
            out,
            "| sustainable rate | {} |",
            rate(route.sustainable_rps)
        );
        let _ = writeln!(
            out,
            "| first rate over the SLO | {} |",
            rate(route.first_failing_rps)
        );
        let _ = writeln!(
            out,
            "| replicas | {} ({}) |",
            v.replicas, route.replicas_from
        );
        let _ = writeln!(out, "| per replica | {} |", rate(v.per_replica_rps));
        let _ = writeln!(out, "| expected peak | {} |", rate(v.peak_rps));
        let _ = writeln!(
            out,
            "| left with one replica lost | {} |",
            rate(v.one_lost_rps)
        );
        if let Some(h) = v.headroom {
            let _ = writeln!(out, "| headroom at peak, one lost | {:+.0}% |", h * 100.0);
        }
        if let Some(n) = v.replicas_needed {
            let _ = writeln!(out, "| replicas needed | {n} ({n}+ with headroom) |");
        }
        let _ = writeln!(
            out,
            "\n| offered req/s | achieved req/s | TTFT p50 | TTFT p99 | latency p99 | errors | overhead mean | served by | step |\n|---:|---:|---:|---:|---:|---:|---:|---|---|"
        );
        for step in &route.steps {
            let s = &step.summary;
            let served: Vec<String> = s
                .deployments
                .iter()
                .map(|(d, n)| format!("{d} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "| {:.1} | {:.1} | {} | {} | {} | {:.2}% | {} | {} | {} |",
                step.rate,
                s.goodput_per_second,
                ms(s.ttft.p50_ms),
                ms(s.ttft.p99_ms),
                ms(s.latency.p99_ms),
                s.error_rate * 100.0,
                step.overhead
                    .as_ref()
                    .map_or_else(|| "—".to_owned(), |o| ms(o.mean_ms)),
                served.join(", "),
                step.why.as_deref().unwrap_or("ok")
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "The sustainable rate is the highest offered rate whose step met the SLO; the real limit lies between it and the first rate over the SLO. Replicas are taken as alike: each carries the sustainable rate ÷ replicas (\"served by\" shows how the requests were shared)."
    );
    out
}
