//! The `nines` binary: command-line parsing and wiring, nothing else.

mod admin;
mod admin_http;
mod check;
mod demo;
mod health;
mod invocation;
mod loadtest;
mod report;
mod signals;
mod status;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: a request allocates many small short-lived buffers
/// across worker threads, where glibc's arenas spent ~9% of the gateway's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use nines_gateway::state::ConfigSource;
use nines_gateway::{AppState, Config, Runtime, Stop, config, server};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "nines", version, about = "A reliability-first LLM gateway")]
struct Cli {
    /// Log format: json (one object per line) or text.
    #[arg(long, global = true, env = "NINES_LOG_FORMAT", default_value = "json")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short, env = "NINES_CONFIG")]
        config: PathBuf,
        /// Override `server.listen` (e.g. 127.0.0.1:0 for any free port).
        #[arg(long, env = "NINES_LISTEN")]
        listen: Option<String>,
    },
    /// Validate a configuration and print the resolved routing table.
    Check {
        #[arg(long, short, env = "NINES_CONFIG")]
        config: PathBuf,
    },
    /// Run the chaos mock provider.
    Mock {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        #[arg(long, default_value = "mock")]
        name: String,
        /// Initial fault script as JSON (see nines-mock's FaultScript).
        #[arg(long)]
        fault: Option<String>,
        /// Capacity model as JSON (see nines-mock's Capacity), e.g.
        /// '{"max_concurrency": 8, "service_ms": 200, "token_ms": 20}'.
        #[arg(long)]
        capacity: Option<String>,
    },
    /// Manage virtual keys in the store (`[store]` of the config).
    Keys {
        /// The config whose `[store]` holds them (required).
        #[arg(long, short, env = "NINES_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::Keys,
    },
    /// Manage organisations in the store.
    Orgs {
        /// The config whose `[store]` holds them (required).
        #[arg(long, short, env = "NINES_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::Orgs,
    },
    /// Manage users in the store.
    Users {
        /// The config whose `[store]` holds them (required).
        #[arg(long, short, env = "NINES_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::Users,
    },
    /// The status page: operator notices (incident updates, maintenance) on a running gateway.
    Status {
        #[command(subcommand)]
        command: status::Status,
    },
    /// Availability reports from the ledger.
    Report {
        #[command(subcommand)]
        command: report::Report,
    },
    /// Load a route with a realistic mix and report latency, errors and overhead; with
    /// --find-capacity, find its sustainable rate and judge its headroom.
    Loadtest(Box<loadtest::Args>),
    /// GET a URL and exit 0 on a 2xx answer (a container health check without a shell).
    Health {
        #[arg(default_value = "http://127.0.0.1:8080/health/live")]
        url: String,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run the gateway with three built-in mock providers (one with scripted outages).
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Do not send the built-in client's trickle of requests.
        #[arg(long)]
        no_traffic: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Check { config } => {
            // `check` prints for humans and needs no runtime.
            return check::run(&config);
        }
        // Store management prints JSON for scripts; no log lines mixed in.
        Command::Keys { config, command } => {
            return admin::run(&config, admin::Action::Keys(command));
        }
        Command::Orgs { config, command } => {
            return admin::run(&config, admin::Action::Orgs(command));
        }
        Command::Users { config, command } => {
            return admin::run(&config, admin::Action::Users(command));
        }
        // The report goes to stdout as it is (JSON, CSV or Markdown); no log lines mixed in.
        Command::Report { command } => return report::run(command),
        Command::Status { command } => return status::run(command),
        // The load test's report goes to stdout, its progress bar to stderr; no log lines.
        Command::Loadtest(args) => return loadtest::run(*args),
        Command::Health { url, timeout } => return health::run(&url, timeout),
        command => command,
    };
    // The demo's own client would fill the screen with request lines: they are off there unless
    // NINES_LOG asks for them.
    let default_filter = match command {
        Command::Demo { .. } => "info,nines::request=warn",
        _ => "info",
    };
    // Held until `main` returns, after the runtime: dropping it writes out what is buffered.
    let _log = init_logging(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nines: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve { config, listen } => serve(config, listen).await,
            Command::Mock {
                listen,
                name,
                fault,
                capacity,
            } => mock(listen, name, fault, capacity).await,
            Command::Demo { listen, no_traffic } => demo::run(&listen, !no_traffic).await,
            Command::Check { .. }
            | Command::Keys { .. }
            | Command::Orgs { .. }
            | Command::Users { .. }
            | Command::Report { .. }
            | Command::Status { .. }
            | Command::Loadtest(_)
            | Command::Health { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("nines: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stdout through a writer thread. A worker hands its line to a queue (up to 128 000
/// lines) and goes on, so a slow reader of stdout (a pipe to a stalled log shipper, a full
/// terminal) no longer stops requests at the first full pipe buffer. The queue is not lossy: the
/// request log is the per-request record stream, so when it is full a worker waits, as every
/// worker did at once before.
fn init_logging(
    format: LogFormat,
    default_filter: &str,
) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NINES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("nines-log")
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.compact().init(),
    }
    guard
}

async fn serve(path: PathBuf, listen: Option<String>) -> Result<(), String> {
    let config = Config::load(&path, &config::process_env).map_err(|e| e.to_string())?;
    let addr = listen.unwrap_or_else(|| config.server.listen.clone());
    let (listener, origin) = server::listener::listen(&addr, config.server.reuse_port)?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    log_startup(&path, &config, origin);
    let watch_config = config.server.watch_config;
    let runtime = Runtime::build(config)?;
    // Opens the store (migrations) and the Redis limiter when the config has them.
    let state = AppState::open(runtime).await?;
    state.set_config_source(ConfigSource {
        path,
        env: Arc::new(config::process_env),
    });
    let _watch = if watch_config {
        Some(nines_gateway::state::watch::watch(&state)?)
    } else {
        None
    };
    let stop = signals::follow(Some(Arc::clone(&state)), Stop::Drain);
    tracing::info!(addr = %local, "listening");
    let stopped = nines_gateway::serve(listener, Arc::clone(&state), stop)
        .await
        .map_err(|e| format!("server error: {e}"))?;
    // Usage rollups, usage records still queued, and the ledger's changes since its last flush (live sessions
    // counted as they stand), go to the store before the process ends; trace spans are sent.
    // Stopped at once: only a moment for it.
    let within = if stopped.forced {
        std::time::Duration::from_secs(1)
    } else {
        std::time::Duration::from_secs(5)
    };
    let flushed = state.shutdown(within).await;
    tracing::info!(
        drained = stopped.in_flight_at_close,
        cut = stopped.cut,
        forced = stopped.forced,
        took_ms = stopped.took.as_millis() as u64,
        usage_records_unwritten = flushed.usage_pending,
        usage_rollup_requests_unwritten = flushed.rollups_pending,
        ledger_rows_flushed = flushed.ledger_rows,
        sessions_ended = flushed.sessions,
        "stopped"
    );
    Ok(())
}

/// What is starting: the version, the configuration and its size, where it listens, and a
/// warning when anyone may call it.
fn log_startup(path: &std::path::Path, config: &Config, origin: server::listener::Origin) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        config_hash = %config.hash,
        deployments = config.deployments.len(),
        models = config.models.len(),
        static_keys = config.access.auth.static_keys.len(),
        store = config.access.store.is_some(),
        socket = origin.as_str(),
        "starting"
    );
    if origin == server::listener::Origin::SharedPort
        && server::listener::queue_migrates() == Some(false)
    {
        tracing::warn!(
            "reuse_port: net.ipv4.tcp_migrate_req is 0, so connections waiting in this process's \
             accept queue when it stops are reset; set it to 1 for a lossless takeover"
        );
    }
    if !config.access.auth.enabled {
        tracing::warn!(
            "auth is off: any client that reaches this address may use every model (add an [auth] section)"
        );
    }
}

async fn mock(
    listen: String,
    name: String,
    fault: Option<String>,
    capacity: Option<String>,
) -> Result<(), String> {
    let addr = listen
        .parse()
        .map_err(|e| format!("--listen '{listen}': {e}"))?;
    let fault = match fault {
        Some(json) => Some(serde_json::from_str(&json).map_err(|e| format!("--fault: {e}"))?),
        None => None,
    };
    let capacity = match capacity {
        Some(json) => {
            let model: nines_mock::Capacity =
                serde_json::from_str(&json).map_err(|e| format!("--capacity: {e}"))?;
            model.validate().map_err(|e| format!("--capacity: {e}"))?;
            Some(model)
        }
        None => None,
    };
    let options = nines_mock::MockOptions {
        name,
        models: vec!["mock-model".into()],
        fault,
    };
    let server = nines_mock::MockServer::start(addr, options)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    server.set_capacity(capacity);
    tracing::info!(addr = %server.addr(), base_url = %server.base_url(), "mock listening");
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
}
