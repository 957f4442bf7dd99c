//! Configuration: the TOML schema, its validation into a [`Config`], and errors that name the
//! file, line and key path of what is wrong.

pub mod access;
pub mod clouds;
mod error;
pub mod presets;
pub mod redis;
pub mod redis_tls;
pub mod redis_url;
pub mod resilience;
pub mod routing;
pub mod schema;
pub mod slo;
pub mod telemetry;
mod validate;

pub use error::ConfigError;
pub use schema::{Degrade, Price, ProviderKind, ProviderName, Strategy};
pub use validate::text_hash;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A validated configuration: every reference resolved, every secret read.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    /// SHA-256 of the configuration text (hex, first 16 characters): which file is loaded, on
    /// `/health` and `/metrics`; equal text, equal hash.
    pub hash: String,
    pub server: Server,
    pub deployments: Vec<Arc<Deployment>>,
    pub models: Vec<ModelRoute>,
    pub resilience: resilience::Resilience,
    /// `[auth]`, `[limits]`, `[store]`.
    pub access: access::Access,
    /// The shared Redis (`[redis]`, or its alias `limits.redis_url`): limits, breaker state and
    /// leases live there when set.
    pub redis: Option<redis::RedisConfig>,
    pub routing: routing::Routing,
    /// `[telemetry]` and `[status]`.
    pub telemetry: telemetry::Telemetry,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: String,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub drain_delay: Duration,
    pub watch_config: bool,
    pub reuse_port: bool,
    pub connections: Connections,
}

/// What one client connection may take (`[server]`; see `RawServer` for each).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Connections {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
    pub max_header_bytes: usize,
}

/// One concrete upstream.
#[derive(Debug)]
pub struct Deployment {
    pub name: String,
    pub provider: ProviderKind,
    /// The named service `provider = "…"` chose (an `openai-compatible` deployment then).
    pub preset: Option<&'static presets::Preset>,
    pub upstream_model: String,
    /// Without a trailing slash.
    pub base_url: String,
    pub keys: Vec<KeySlotConfig>,
    pub context_window: Option<u64>,
    pub price: Price,
    pub region: Option<String>,
    pub max_concurrency: Option<u32>,
    pub weight: f64,
    pub timeouts: Timeouts,
    /// Continues a final assistant message (the partial text of a broken stream) when asked.
    pub assistant_prefill: bool,
    /// Embedding deployments with the same family (and so the same vectors) are interchangeable;
    /// defaults to the upstream model id.
    pub embedding_family: Option<String>,
    /// Hosts besides the base URL's that may receive the key (`credential_hosts`).
    pub credential_hosts: Vec<String>,
    /// Parameters it cannot take are removed (and named to the client) rather than the
    /// deployment skipped.
    pub drop_unsupported_params: bool,
    /// Extra headers for every request (`headers`); values are marked sensitive, so `Debug`
    /// shows none of them.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// What the cloud-hosted kinds (Azure, Bedrock, Vertex) need besides keys.
    pub cloud: clouds::Cloud,
}

impl Deployment {
    /// What this deployment can honour: its provider's defaults, plus prefill when declared.
    pub fn capabilities(&self) -> nines_protocol::unified::Capabilities {
        use nines_protocol::unified::Capabilities;
        let caps = self.provider.capabilities();
        let caps = self.preset.map_or(caps, |p| caps.without(p.lacks));
        if self.assistant_prefill {
            caps.with(Capabilities::ASSISTANT_PREFILL)
        } else {
            caps
        }
    }

    /// Whether an OpenAI-dialect request sent here as it is must still be checked against its
    /// capabilities: a named service documents a gap, or parameters are to be dropped.
    pub fn checks_native_requests(&self) -> bool {
        self.drop_unsupported_params || self.preset.is_some_and(|p| !p.lacks.is_empty())
    }

    /// Whether this deployment continues a final assistant message instead of answering it
    /// (what lets a broken stream be continued here rather than replayed): Anthropic's
    /// Messages API always does; OpenAI-compatible servers do when marked `assistant_prefill`.
    pub fn can_prefill(&self) -> bool {
        match self.provider.dialect() {
            nines_protocol::unified::Dialect::Anthropic => true,
            nines_protocol::unified::Dialect::OpenAi => self.assistant_prefill,
            _ => false,
        }
    }

    /// The provider as configured and shown (logs, metrics, `nines check`, provider-prefixed model
    /// names): the named service, else the kind.
    pub fn provider_name(&self) -> &'static str {
        self.preset.map_or(self.provider.as_str(), |p| p.name)
    }

    /// How the API key is sent, as `nines check` shows it.
    pub fn auth_shown(&self) -> &'static str {
        self.preset
            .map_or(self.provider.auth_header(), |p| p.auth.describe())
    }

    /// The base URL as it may be shown: without `user:password@`.
    pub fn base_url_shown(&self) -> String {
        shown_url(&self.base_url)
    }

    pub fn embedding_family(&self) -> &str {
        self.embedding_family
            .as_deref()
            .unwrap_or(&self.upstream_model)
    }
}

pub type Timeouts = schema::RawTimeouts;

/// One API key of one deployment. The alias (`deployment#index`) is what logs and errors show.
#[derive(Debug, Clone)]
pub struct KeySlotConfig {
    pub alias: String,
    pub secret: Option<Secret>,
}

/// An upstream credential. `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The only way to read the value: call sites that do are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A name a client may send, with the deployments that serve it.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub name: String,
    /// Indices into [`Config::deployments`], in listed order.
    pub deployments: Vec<usize>,
    pub strategy: Strategy,
    pub hedge: resilience::Hedge,
    /// Resume streams that break after the commit point on a later deployment.
    pub resume_streams: bool,
    /// When fallback models may serve.
    pub degrade: Degrade,
    /// Model names tried after this model's deployments (general failure).
    pub fallbacks: Vec<String>,
    /// Model names tried when the prompt fits none of this model's windows.
    pub context_fallbacks: Vec<String>,
    pub region: Option<String>,
    /// The route's own objectives (`slo = {…}`): availability, latency.
    pub slo: slo::RouteSlo,
}

impl Config {
    /// Reads, parses and validates a file. Secrets are resolved with `env`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        Self::parse(path, &text, env)
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        validate::validate(path, text, env)
    }
}

/// A URL as it may be shown in logs, errors and `nines check`: without its userinfo
/// (`https://user:password@host/` → `https://host/`).
pub fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Reads secrets from the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests;
