//! `nines loadtest`: load a route the way its users will, before they do.
//!
//! A run sends a mix of requests (`mix`) shaped over time (`drive`: closed or open loop, with a
//! ramp), measures each (`exchange`), sums them up (`stats`), reads the gateway's own overhead
//! from `/metrics` (`scrape`) and reports (`render`). `--find-capacity` (`capacity`) steps the
//! rate up until a route misses its SLO and judges its headroom (`verdict`). The live view is
//! `progress`. The report goes to stdout, the progress bar to stderr.

mod capacity;
mod drive;
mod exchange;
mod mix;
mod progress;
mod render;
mod scrape;
mod stats;
mod verdict;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use drive::{Load, Shape, Target};
use mix::{Mix, Sizes};

/// How the report is printed.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of nines (or of any OpenAI-compatible server), e.g. http://127.0.0.1:8080.
    #[arg(long, env = "NINES_LOADTEST_URL")]
    url: String,
    /// The path requests are POSTed to, after --url.
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// The route (model name) to load; repeat it with --find-capacity to judge several.
    #[arg(long = "model", default_value = "chat-default")]
    models: Vec<String>,
    /// Bearer key sent with every request.
    #[arg(long, env = "NINES_LOADTEST_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Closed loop: this many clients, each sending its next request when its last one ended
    /// (the default, with 8).
    #[arg(long, conflicts_with = "rate")]
    concurrency: Option<u32>,
    /// Open loop: this many requests a second, whether or not earlier ones ended.
    #[arg(long)]
    rate: Option<f64>,
    /// How long requests are started for (in-flight ones are then waited for).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Grow from no load to full load over this long (clients join one by one; the rate grows
    /// linearly).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    ramp: Duration,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Open loop: at most this many requests open at once; one due beyond them is not sent and
    /// counts as an error.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: u32,
    /// Prompt sizes in tokens with weights: SIZE:WEIGHT,…
    #[arg(long, default_value = "100:50,500:35,2000:15")]
    prompt_tokens: String,
    /// Output sizes (max_tokens) with weights: SIZE:WEIGHT,…
    #[arg(long, default_value = "30:50,150:35,500:15")]
    output_tokens: String,
    /// Share of requests that stream (0 to 1).
    #[arg(long, default_value_t = 0.7)]
    stream_share: f64,
    /// Seed of the mix: the same seed sends the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send this JSON body (or @FILE) every time instead of the mix (e.g. to compare with oha).
    #[arg(long)]
    body: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Where nines' Prometheus metrics are (default: URL/metrics); `off` to not read them.
    #[arg(long)]
    metrics_url: Option<String>,
    /// The report's format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// No progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    no_progress: bool,

    /// Step the rate up until the route misses its SLO, and judge its headroom.
    #[arg(long)]
    find_capacity: bool,
    /// The SLO: p99 time to first token at most this.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    slo_ttft_p99: Duration,
    /// The SLO: at most this share of requests may fail (0.01 = 1%).
    #[arg(long, default_value_t = 0.0)]
    max_error_rate: f64,
    /// The first step's rate, requests a second.
    #[arg(long, default_value_t = 1.0)]
    start_rate: f64,
    /// Each step's rate is the last one's times this.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// No step above this rate.
    #[arg(long, default_value_t = 1000.0)]
    max_rate: f64,
    /// How long each step offers its rate.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Steps that halve the gap between the last rate that passed and the first that failed.
    #[arg(long, default_value_t = 2)]
    refine: u32,
    /// Replicas (deployments) behind each route; default: those seen in x-nines-deployment.
    #[arg(long)]
    replicas: Option<u32>,
    /// The expected peak: RATE for every route, or ROUTE=RATE (repeatable).
    #[arg(long)]
    peak: Vec<String>,
    /// Also write capacity.json, capacity.md and capacity.html into this directory.
    #[arg(long)]
    report_dir: Option<PathBuf>,
}

/// Runs the load test; the exit code is 1 on bad input, 2 when `--find-capacity` with a peak
/// finds a route without headroom.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nines loadtest: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("nines loadtest: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: Args) -> Result<ExitCode, String> {
    check(&args)?;
    let base = args.url.trim_end_matches('/');
    let url = format!("{base}{}", args.path);
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("--url {url}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("--url {url}: only http and https are supported"));
    }
    let metrics_url = match args.metrics_url.as_deref() {
        Some("off") => None,
        Some(other) => Some(other.to_owned()),
        None => Some(format!("{base}/metrics")),
    };
    nines_gateway::providers::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(args.timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let target = Arc::new(Target {
        client,
        url,
        key: args.api_key.clone(),
    });
    let mix = build_mix(&args)?;
    let progress = !args.no_progress && std::io::stderr().is_terminal();
    if args.find_capacity {
        find_capacity(&args, target, metrics_url, mix, progress).await
    } else {
        one_run(&args, target, metrics_url, mix, progress).await
    }
}

fn check(args: &Args) -> Result<(), String> {
    let share = args.stream_share;
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("--stream-share {share}: a share goes from 0 to 1"));
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(format!("--rate {rate}: a rate is above 0"));
    }
    if args.concurrency == Some(0) {
        return Err("--concurrency 0: at least one client".into());
    }
    if args.duration.is_zero() || args.step.is_zero() {
        return Err("--duration and --step must be longer than 0".into());
    }
    if !(args.start_rate.is_finite() && args.start_rate > 0.0) {
        return Err(format!(
            "--start-rate {}: a rate is above 0",
            args.start_rate
        ));
    }
    if !(args.factor.is_finite() && args.factor > 1.0) {
        return Err(format!(
            "--factor {}: each step must rise (above 1)",
            args.factor
        ));
    }
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        return Err(format!(
            "--max-error-rate {}: a share goes from 0 to 1",
            args.max_error_rate
        ));
    }
    if args.replicas == Some(0) {
        return Err("--replicas 0: a route has at least one".into());
    }
    Ok(())
}

fn build_mix(args: &Args) -> Result<Arc<Mix>, String> {
    if let Some(body) = &args.body {
        let bytes = match body.strip_prefix('@') {
            Some(path) => std::fs::read(path).map_err(|e| format!("--body @{path}: {e}"))?,
            None => body.as_bytes().to_vec(),
        };
        return Mix::fixed(bytes).map(Arc::new);
    }
    Ok(Arc::new(Mix::Drawn {
        model: args.models.first().cloned().unwrap_or_default(),
        prompt_tokens: Sizes::parse(&args.prompt_tokens)
            .map_err(|e| format!("--prompt-tokens {e}"))?,
        output_tokens: Sizes::parse(&args.output_tokens)
            .map_err(|e| format!("--output-tokens {e}"))?,
        stream_share: args.stream_share,
        seed: args.seed,
    }))
}

async fn one_run(
    args: &Args,
    target: Arc<Target>,
    metrics_url: Option<String>,
    mix: Arc<Mix>,
    progress: bool,
) -> Result<ExitCode, String> {
    let shape = match args.rate {
        Some(rate) => Shape::Open {
            rate,
            max_in_flight: args.max_in_flight,
        },
        None => Shape::Closed {
            concurrency: args.concurrency.unwrap_or(8),
        },
    };
    let load = Load {
        shape,
        duration: args.duration,
        ramp: args.ramp.min(args.duration),
        max_requests: args.requests,
    };
    let before = match &metrics_url {
        Some(url) => scrape::read(&target.client, url).await,
        None => None,
    };
    let bar = progress::Progress::start(
        mix.model().unwrap_or("load").to_owned(),
        args.duration,
        progress,
    );
    let (samples, wall) = drive::run(Arc::clone(&target), Arc::clone(&mix), load, bar.live()).await;
    bar.finish();
    let overhead = match (&metrics_url, before) {
        (Some(url), Some(before)) => scrape::read(&target.client, url)
            .await
            .and_then(|after| after.since(&before).overhead()),
        _ => None,
    };
    let report = render::RunReport {
        url: target.url.clone(),
        mix: mix.describe(),
        load: describe_load(&load),
        summary: stats::Summary::of(&samples, wall),
        overhead,
    };
    let text = match args.format {
        Format::Text => render::run_text(&report),
        Format::Markdown => render::run_markdown(&report),
        Format::Json => json(&report)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn describe_load(load: &Load) -> String {
    let shape = match load.shape {
        Shape::Closed { concurrency } => format!("closed loop, {concurrency} clients"),
        Shape::Open { rate, .. } => format!("open loop, {rate} req/s"),
    };
    let ramp = if load.ramp.is_zero() {
        String::new()
    } else {
        format!(", ramp {}", humantime::format_duration(load.ramp))
    };
    let cap = load
        .max_requests
        .map(|n| format!(", at most {n} requests"))
        .unwrap_or_default();
    format!(
        "{shape} for {}{ramp}{cap}",
        humantime::format_duration(load.duration)
    )
}

async fn find_capacity(
    args: &Args,
    target: Arc<Target>,
    metrics_url: Option<String>,
    mix: Arc<Mix>,
    progress: bool,
) -> Result<ExitCode, String> {
    let search = capacity::Search {
        slo_ttft_p99: args.slo_ttft_p99,
        max_error_rate: args.max_error_rate,
        start_rate: args.start_rate,
        factor: args.factor,
        max_rate: args.max_rate,
        step: args.step,
        refine: args.refine,
        max_in_flight: args.max_in_flight,
    };
    let peaks = parse_peaks(&args.peak)?;
    let routes: Vec<String> = match mix.model() {
        Some(_) => args.models.clone(),
        None => vec![String::new()],
    };
    let mut results = Vec::new();
    for route in &routes {
        let route_mix = Arc::new(mix.for_model(route));
        let peak = peaks
            .iter()
            .find(|(name, _)| name.as_deref() == Some(route.as_str()))
            .or_else(|| peaks.iter().find(|(name, _)| name.is_none()))
            .map(|(_, rate)| *rate);
        results.push(
            capacity::find(
                Arc::clone(&target),
                metrics_url.as_deref(),
                route_mix,
                &search,
                args.replicas,
                peak,
                progress,
            )
            .await,
        );
    }
    let report = render::CapacityReport {
        url: target.url.clone(),
        mix: mix.describe(),
        search,
        routes: results,
    };
    if let Some(dir) = &args.report_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("--report-dir {}: {e}", dir.display()))?;
        for (name, text) in [
            ("capacity.json", json(&report)?),
            ("capacity.md", render::capacity_markdown(&report)),
            ("capacity.html", render::capacity_page(&report)),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    let text = match args.format {
        Format::Json => json(&report)?,
        Format::Text | Format::Markdown => render::capacity_markdown(&report),
    };
    print!("{text}");
    let short = report.routes.iter().any(|r| {
        matches!(
            r.verdict.call,
            verdict::Call::NoHeadroom | verdict::Call::OverCapacity
        )
    });
    Ok(if short {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--peak` values: `RATE` (every route) or `ROUTE=RATE`.
fn parse_peaks(values: &[String]) -> Result<Vec<(Option<String>, f64)>, String> {
    values
        .iter()
        .map(|value| {
            let (route, rate) = match value.rsplit_once('=') {
                Some((route, rate)) => (Some(route.to_owned()), rate),
                None => (None, value.as_str()),
            };
            let rate: f64 = rate
                .trim()
                .parse()
                .map_err(|_| format!("--peak {value}: RATE or ROUTE=RATE, in requests a second"))?;
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("--peak {value}: a rate is above 0"));
            }
            Ok((route, rate))
        })
        .collect()
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| format!("cannot write the report as JSON: {e}"))
}
