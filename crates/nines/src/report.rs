//! `nines report usage`: requests, errors, tokens and cost per org, user, key, model or deployment
//! from the store's per-minute usage rollups (`--config`), as JSON.
//!
//! `nines report sla`: the SLA report, from a running gateway (`--url`, `--admin-key`: what
//! `GET /admin/reports/sla` answers) or straight from the store named by a config (`--config`;
//! no gateway needed). Either way the counts are the store's, summed over every replica. The
//! report goes to stdout as it is; errors to stderr with a non-zero exit.

use clap::{Args, Subcommand};
use nines_gateway::status::report::{self, Format, Report as SlaReport, Source};
use nines_gateway::store::Store;
use nines_gateway::{Config, config};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum Report {
    /// Availability, failovers, latency, error budget and incidents per route and deployment.
    Sla(SlaArgs),
    /// Requests, errors, tokens and cost from the store's usage rollups (JSON).
    Usage(UsageArgs),
}

#[derive(Args)]
pub struct UsageArgs {
    /// org, user, key, model or deployment.
    #[arg(long, default_value = "model")]
    by: String,
    /// day (this UTC day), month (this UTC month: what budgets count) or a duration back from
    /// now (24h, 7d).
    #[arg(long, default_value = "month")]
    window: String,
    /// Only this key's usage (its id).
    #[arg(long, conflicts_with_all = ["user", "org"])]
    key: Option<String>,
    /// Only this user's usage (its id).
    #[arg(long, conflicts_with = "org")]
    user: Option<String>,
    /// Only this organisation's usage (its id).
    #[arg(long)]
    org: Option<String>,
    /// The config whose [store] holds the rollups.
    #[arg(long, short, env = "NINES_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub struct SlaArgs {
    /// How far back from now: 30d, 7d, 24h, 90m (at most telemetry.retention).
    #[arg(long, default_value = "30d")]
    window: String,
    /// json, csv or md.
    #[arg(long, default_value = "json")]
    format: String,
    /// Ask this running gateway (http://HOST:PORT) instead of reading a store.
    #[arg(long)]
    url: Option<String>,
    /// The gateway's admin key (`auth.admin_key`), with --url.
    #[arg(long, env = "NINES_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Read the store named by this config's [store] (when --url is not given).
    #[arg(long, short, env = "NINES_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(command: Report) -> ExitCode {
    crate::admin_http::print_outcome(async move {
        match command {
            Report::Sla(args) => sla(args).await,
            Report::Usage(args) => usage(args).await,
        }
    })
}

async fn sla(args: SlaArgs) -> Result<String, String> {
    let format = Format::parse(&args.format)?;
    match (&args.url, &args.config) {
        (Some(url), _) => {
            // Checked here for a clear message; the gateway checks it against its retention.
            report::parse_window(&args.window, Duration::MAX)?;
            let key = args.admin_key.as_deref().ok_or(
                "--admin-key (or NINES_ADMIN_KEY) is required with --url: reports are an admin route",
            )?;
            fetch(url, key, &args.window, &args.format).await
        }
        (None, Some(path)) => from_store(path, &args.window, format).await,
        (None, None) => Err(
            "give --url http://HOST:PORT --admin-key KEY (a running gateway) or --config FILE (its store)"
                .into(),
        ),
    }
}

async fn fetch(url: &str, key: &str, window: &str, format: &str) -> Result<String, String> {
    let path = format!(
        "/admin/reports/sla?window={}&format={}",
        encode(window),
        encode(format)
    );
    crate::admin_http::call(url, key, reqwest::Method::GET, &path, None).await
}

async fn from_store(path: &Path, window: &str, format: Format) -> Result<String, String> {
    let config = Config::load(path, &config::process_env).map_err(|e| e.to_string())?;
    let window = report::parse_window(window, config.telemetry.retention)?;
    let Some(store_config) = &config.access.store else {
        return Err(format!(
            "{}: no [store] section: the availability ledger is kept in the store (or ask a running gateway with --url and --admin-key)",
            path.display()
        ));
    };
    let store = Store::open(store_config)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let to = report::system_now_ms();
    let from = to.saturating_sub(window.as_millis() as u64);
    let inputs = report::read_store(&store, from, to, config::slo::by_route(&config.models))
        .await
        .map_err(|e| format!("cannot read the ledger: {e}"))?;
    let report = SlaReport::build(
        inputs,
        window,
        from,
        to,
        config.telemetry.slo,
        Source::Store,
    );
    Ok(format.render(&report))
}

async fn usage(args: UsageArgs) -> Result<String, String> {
    use nines_gateway::config::access::Level;
    use nines_gateway::store::GroupBy;
    let by = GroupBy::parse(&args.by).ok_or_else(|| {
        format!(
            "--by must be org, user, key, model or deployment, not '{}'",
            args.by
        )
    })?;
    let since = nines_gateway::limits::window_start(&args.window, std::time::SystemTime::now())?;
    let filter = [
        (Level::Key, &args.key),
        (Level::User, &args.user),
        (Level::Org, &args.org),
    ]
    .into_iter()
    .find_map(|(level, id)| id.as_deref().map(|id| (level, id)));
    let path = args
        .config
        .ok_or("--config (or NINES_CONFIG) is required: its [store] holds the usage rollups")?;
    let config = Config::load(&path, &config::process_env).map_err(|e| e.to_string())?;
    let Some(store_config) = &config.access.store else {
        return Err(format!(
            "{}: no [store] section: usage is kept in the store",
            path.display()
        ));
    };
    let store = Store::open(store_config)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let report = store
        .usage_report(by, since, filter)
        .await
        .map_err(|e| format!("cannot read usage: {e}"))?;
    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
