//! A run's report for a terminal.

use std::fmt::Write;

use super::{RunReport, ms};
use crate::loadtest::stats::Percentiles;

fn row(out: &mut String, name: &str, p: &Percentiles) {
    if p.count == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "  {name:<22} p50 {:>10}  p90 {:>10}  p99 {:>10}  max {:>10}  (n={})",
        ms(p.p50_ms),
        ms(p.p90_ms),
        ms(p.p99_ms),
        ms(p.max_ms),
        p.count
    );
}

pub fn run_text(report: &RunReport) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(out, "nines loadtest → {}", report.url);
    let _ = writeln!(out, "  load: {}", report.load);
    let _ = writeln!(out, "  mix:  {}", report.mix);
    let _ = writeln!(
        out,
        "\n  requests {} in {:.1} s: {} ok, {} failed ({:.2}%), {} streamed",
        s.requests,
        s.seconds,
        s.succeeded,
        s.failed,
        s.error_rate * 100.0,
        s.streamed
    );
    let _ = writeln!(
        out,
        "  throughput {:.1} req/s ({:.1} ok/s), output {:.0} tokens/s{}",
        s.requests_per_second,
        s.goodput_per_second,
        s.output_tokens_per_second,
        s.stream_tokens_per_second_p50
            .map(|r| format!(", {r:.0} tokens/s per stream (p50)"))
            .unwrap_or_default()
    );
    row(&mut out, "latency (last byte)", &s.latency);
    row(&mut out, "time to first token", &s.ttft);
    row(&mut out, "first byte (streams)", &s.ttfb_streams);
    if !s.errors.is_empty() {
        let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(out, "  errors   {}", errors.join(", "));
    }
    if !s.attempts.is_empty() {
        let attempts: Vec<String> = s
            .attempts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            out,
            "  attempts {} (x-nines-attempts; {:.1}% needed more than one)",
            attempts.join(", "),
            s.retried_share().unwrap_or(0.0) * 100.0
        );
    }
    if !s.deployments.is_empty() {
        let total: usize = s.deployments.values().sum();
        let shares: Vec<String> = s
            .deployments
            .iter()
            .map(|(k, v)| format!("{k} {:.0}%", 100.0 * *v as f64 / total.max(1) as f64))
            .collect();
        let _ = writeln!(out, "  served by {}", shares.join(", "));
    }
    match &report.overhead {
        Some(o) => {
            let _ = writeln!(
                out,
                "  gateway overhead (nines_overhead_seconds, {} requests): mean {}, p50 ≈ {}, p99 ≈ {}",
                o.requests,
                ms(o.mean_ms),
                ms(o.p50_ms),
                ms(o.p99_ms)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  gateway overhead: not reported (the target's /metrics has no nines_overhead_seconds)"
            );
        }
    }
    out
}
