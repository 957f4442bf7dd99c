//! Hot reload: the configuration file read again, validated completely, and swapped in whole.
//!
//! An invalid file is refused with its file:line error and the running configuration keeps
//! serving. A valid one becomes a new [`Runtime`] that keeps what the old one learned about
//! deployments and key slots whose identity did not change (`Health::succeeding`: breakers,
//! latency estimates, in-flight counts); limit windows, ledger series and metric counters live
//! outside the runtime and carry over by themselves. Requests in flight finish on the snapshot
//! they started with (`request::Request` holds it). Settings that are read once at start (the
//! listen address, the store, the Redis limiter, the telemetry hub) take effect at the next
//! restart: the reload says so in its warnings.
//!
//! Triggers: SIGHUP (the binary), `POST /admin/reload`, and the file watch (`watch.rs`). One
//! reload runs at a time.

use super::{AppState, Runtime};
use crate::config::{Config, ConfigError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Resolves `env:NAME` secrets when the configuration is read.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the configuration is reloaded from.
#[derive(Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub env: Env,
}

/// A reload that took effect (or found nothing to change).
#[derive(Debug, Clone, PartialEq)]
pub struct Reloaded {
    /// The configuration's hash now.
    pub hash: String,
    /// False when the file's text was the same as the running configuration's.
    pub changed: bool,
    /// Settings that changed but take effect only at the next restart.
    pub restart_needed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is not a valid configuration (file, line and key path in the message).
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The configuration is valid but its runtime cannot be built (an unusable base URL).
    #[error("{0}")]
    Unusable(String),
    /// This process was not told which file its configuration came from.
    #[error("no configuration file to reload from (the gateway was built in code)")]
    NoSource,
}

impl ReloadError {
    /// Low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReloadError::Invalid(_) => "invalid",
            ReloadError::Unusable(_) => "unusable",
            ReloadError::NoSource => "no_source",
        }
    }
}

impl AppState {
    /// Says which file the configuration is reloaded from (once; later calls are ignored).
    pub fn set_config_source(&self, source: ConfigSource) {
        let _ = self.source.set(source);
    }

    /// The file the configuration is reloaded from, if one was given.
    pub fn config_path(&self) -> Option<&Path> {
        self.source.get().map(|s| s.path.as_path())
    }

    /// Reads the configuration file again and, when it is valid, swaps it in. Counted in
    /// `nines_config_reloads_total` and logged either way.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = self.try_reload();
        let label = match &result {
            Ok(r) if r.changed => "ok",
            Ok(_) => "unchanged",
            Err(e) => e.label(),
        };
        if let Some(metrics) = &self.telemetry.metrics {
            metrics.count_reload(label);
        }
        match &result {
            Ok(r) => tracing::info!(
                hash = %r.hash,
                changed = r.changed,
                restart_needed = %r.restart_needed.join(", "),
                "configuration reloaded"
            ),
            Err(e) => tracing::error!(
                result = label,
                error = %e,
                "configuration reload refused; the running configuration stays"
            ),
        }
        result
    }

    fn try_reload(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let source = self.source.get().ok_or(ReloadError::NoSource)?;
        let config = Config::load(&source.path, &|name: &str| (source.env)(name))?;
        let current = self.runtime();
        if config.hash == current.config.hash {
            return Ok(Reloaded {
                hash: config.hash,
                changed: false,
                restart_needed: Vec::new(),
            });
        }
        let restart_needed = restart_needed(&current.config, &config);
        for setting in &restart_needed {
            tracing::warn!(
                setting = %setting,
                "changed in the configuration file; takes effect at the next restart"
            );
        }
        let hash = config.hash.clone();
        let runtime = Runtime::succeeding(config, &current).map_err(ReloadError::Unusable)?;
        self.replace(runtime);
        Ok(Reloaded {
            hash,
            changed: true,
            restart_needed,
        })
    }
}

/// Settings read once at start that differ between `old` and `new`.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |name: &str, changed: bool| {
        if changed {
            out.push(name.to_owned());
        }
    };
    differs("server.listen", old.server.listen != new.server.listen);
    differs(
        "server.reuse_port",
        old.server.reuse_port != new.server.reuse_port,
    );
    differs(
        "server.watch_config",
        old.server.watch_config != new.server.watch_config,
    );
    differs("store", old.access.store != new.access.store);
    // Job ids are signed with it; the signer is built once with the store it may come from.
    differs(
        "auth.signing_secret",
        old.access.auth.signing_secret != new.access.auth.signing_secret,
    );
    differs("redis", old.redis != new.redis);
    let (a, b) = (&old.access.limits, &new.access.limits);
    differs(
        "limits.redis_timeout, on_redis_error, redis_prefix",
        a.redis_timeout != b.redis_timeout
            || a.on_redis_error != b.on_redis_error
            || a.redis_prefix != b.redis_prefix,
    );
    // The telemetry hub is built once; only the status page and turning metrics off follow a
    // reload.
    let hub = |t: &crate::config::telemetry::Telemetry| {
        let mut t = t.clone();
        t.status = Default::default();
        t.metrics = false;
        t
    };
    differs(
        "telemetry (ledger, sessions, otlp, alerts, retention, flush_interval, slo)",
        hub(&old.telemetry) != hub(&new.telemetry),
    );
    differs(
        "telemetry.metrics (turned on)",
        !old.telemetry.metrics && new.telemetry.metrics,
    );
    out
}
