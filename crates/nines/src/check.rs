//! `nines check`: validate a config file and print the resolved routing table.

use nines_gateway::config::{self, Config};
use nines_gateway::router::{Inputs, Placement, RoutingTable};
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path, &config::process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", render(&config));
    ExitCode::SUCCESS
}

/// The routing table as text: each model, its strategy, and its key slots in plan order.
pub fn render(config: &Config) -> String {
    use std::fmt::Write;
    let table = RoutingTable::build(config);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: ok ({} deployments, {} models)",
        config.source.display(),
        config.deployments.len(),
        config.models.len()
    );
    let _ = writeln!(out, "\ndeployments:");
    for d in &config.deployments {
        let aliases: Vec<&str> = d.keys.iter().map(|k| k.alias.as_str()).collect();
        let _ = writeln!(
            out,
            "  {:<20} {:<18} {:<24} {}  keys=[{}] window={} price=${}/${} per 1M region={}",
            d.name,
            d.provider_name(),
            d.upstream_model,
            d.base_url_shown(),
            aliases.join(", "),
            d.context_window
                .map(|w| w.to_string())
                .unwrap_or_else(|| "-".into()),
            d.price.input,
            d.price.output,
            d.region.as_deref().unwrap_or("-"),
        );
        // What the provider's name resolved to: its dialect, where requests go, how the key
        // travels (a named service's base URL is its documented one unless the file set another).
        let _ = writeln!(
            out,
            "  {:<20} resolved: {} ({} dialect), POST {}/…, key in {}",
            "",
            d.provider.as_str(),
            d.provider.dialect().as_str(),
            d.base_url_shown(),
            d.auth_shown(),
        );
    }
    render_probes(config, &mut out);
    let _ = writeln!(
        out,
        "\nmodels (name → plan order for a small request with no health history; per request, a\n\
         deployment is skipped when prompt + max output exceeds its context window, and key slots\n\
         with an open breaker, no provider headroom or no free capacity move to the end):"
    );
    for name in table.names() {
        let Some(route) = table.resolve(name) else {
            continue;
        };
        // A small request with no health history: shows the static order and the filters that
        // apply to every request (region, context windows are per request and shown as such).
        let inputs = Inputs {
            deployments: &config.deployments,
            health: None,
            estimate: None,
        };
        let plan = table.plan(route, &inputs);
        let kind = if route.derived {
            " (provider-prefixed)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {name}{kind} [strategy: {}]",
            route.strategy.as_str()
        );
        if !route.fallbacks.is_empty() || !route.context_fallbacks.is_empty() {
            let _ = writeln!(
                out,
                "     fallbacks: [{}]  context fallbacks: [{}]",
                route.fallbacks.join(", "),
                route.context_fallbacks.join(", ")
            );
        }
        for (i, slot) in plan.slots.iter().enumerate() {
            let d = &config.deployments[slot.deployment];
            let placement = match &slot.placement {
                Placement::Normal => String::new(),
                Placement::Region => " [preferred region]".to_owned(),
                Placement::Fallback { model } => format!(" [fallback via {model}]"),
                Placement::Demoted { why } => format!(" [demoted: {why}]"),
            };
            let window = d
                .context_window
                .map(|w| format!(", window {w}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {}. {} ({}{window})  — {}{placement}",
                i + 1,
                d.keys[slot.key].alias,
                d.name,
                slot.reason
            );
        }
    }
    out
}

/// What active probes ask and, for completion probes, what they cost: per probe (the most a
/// one-token completion is charged) and per hour at the healthy interval, for every key slot.
fn render_probes(config: &Config, out: &mut String) {
    use nines_gateway::config::resilience::ProbeKind;
    use nines_gateway::resilience::probe::completion_probe_cost;
    use std::fmt::Write;
    let probes = &config.resilience.probes;
    if !probes.enabled {
        let _ = writeln!(out, "\nprobes: off");
        return;
    }
    let every = probes.interval.as_secs_f64();
    let _ = writeln!(
        out,
        "\nprobes: {} every {} per key slot (one replica probes each deployment when [redis] is shared)",
        probes.kind.as_str(),
        humantime::format_duration(probes.interval),
    );
    if probes.kind == ProbeKind::Models {
        let _ = writeln!(out, "  models lists cost nothing");
        return;
    }
    let mut total = 0.0;
    for d in &config.deployments {
        let per_probe = completion_probe_cost(&d.price);
        let per_hour = per_probe * 3600.0 / every * d.keys.len() as f64;
        total += per_hour;
        let _ = writeln!(
            out,
            "  {:<20} ${per_probe:.8} per probe, ${per_hour:.6} per hour ({} key slot{})",
            d.name,
            d.keys.len(),
            if d.keys.len() == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(
        out,
        "  total ${total:.6} per hour, ${:.4} per day",
        total * 24.0
    );
}
