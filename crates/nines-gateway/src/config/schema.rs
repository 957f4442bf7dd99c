//! The configuration file as written: serde structs that reject unknown keys, with defaults.
//! Names that other entries refer to keep their source span so validation errors can name a line.

use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub deployments: Vec<RawDeployment>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub resilience: super::resilience::Resilience,
    #[serde(default)]
    pub auth: Option<super::access::RawAuth>,
    #[serde(default)]
    pub limits: super::access::RawLimits,
    #[serde(default)]
    pub store: Option<super::access::RawStore>,
    #[serde(default)]
    pub redis: Option<super::redis::RawRedis>,
    #[serde(default)]
    pub routing: super::routing::Routing,
    #[serde(default)]
    pub telemetry: super::telemetry::RawTelemetry,
    #[serde(default)]
    pub status: super::telemetry::Status,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Address to listen on; port 0 picks a free port (the chosen address is logged).
    pub listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after the listener closed on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// After a shutdown signal, how long readiness answers 503 while connections are still
    /// accepted, so load balancers move traffic away before anything is refused (0: no delay).
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Reload the configuration when its file changes (as well as on SIGHUP and
    /// `POST /admin/reload`).
    pub watch_config: bool,
    /// Bind with `SO_REUSEPORT`, so a new process can take over the address while the old one
    /// drains. Off by default: two unrelated processes silently sharing a port is an outage of
    /// its own.
    pub reuse_port: bool,
    /// How long a client may take to send a request's head (line and headers), from its first
    /// byte; a slower one is closed (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's whole body; a slower one is answered 408
    /// and closed.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long a connection with no request in flight is kept open (HTTP/1 keep-alive and
    /// HTTP/2 alike). Longer than a load balancer's own idle timeout (60 s on most), so it is the
    /// balancer that closes, never nines under a request the balancer just sent.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open client connections above which a new one is answered 503 at once (and closed);
    /// lowered at start to what the file-descriptor limit can hold.
    pub max_connections: usize,
    /// HTTP/2 streams (requests) one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// Largest request head (HTTP/1 request line and headers; HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 10 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            drain_delay: Duration::from_secs(5),
            watch_config: false,
            reuse_port: false,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            http2_max_concurrent_streams: 128,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Provider kinds; each has its own wire dialect and defaults.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    OpenaiCompatible,
    Nvidia,
    Anthropic,
    /// Google's Gemini API (Generative Language, `v1beta`); `x-goog-api-key` auth.
    Gemini,
    /// Replicate predictions; `model` is the official model's `owner/name`.
    Replicate,
    /// Runway video generation; serves only the video job API (`/v1/videos`).
    Runway,
}

/// What `provider = "…"` names: a provider kind, or a named OpenAI-compatible service
/// (`config/presets.rs`), which is an `openai-compatible` deployment with its defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderName {
    Kind(ProviderKind),
    Preset(&'static super::presets::Preset),
}

impl<'de> Deserialize<'de> for ProviderName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let as_kind = ProviderKind::parse(&name);
        match (as_kind, super::presets::find(&name)) {
            (Ok(kind), _) => Ok(ProviderName::Kind(kind)),
            (Err(_), Some(preset)) => Ok(ProviderName::Preset(preset)),
            // serde's own message names every kind; the named services follow it.
            (Err(unknown_kind), None) => Err(serde::de::Error::custom(format!(
                "{unknown_kind}, or a named OpenAI-compatible service: {}",
                super::presets::names().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

impl ProviderKind {
    /// The kind spelled `name` in config, or serde's error naming every kind.
    pub fn parse(name: &str) -> Result<ProviderKind, serde::de::value::Error> {
        ProviderKind::deserialize(serde::de::value::StrDeserializer::new(name))
    }

    /// The kind spelled `name` in config.
    pub fn from_name(name: &str) -> Option<ProviderKind> {
        ProviderKind::parse(name).ok()
    }

    /// The name used in config, metrics and provider-prefixed model names.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::OpenaiCompatible => "openai-compatible",
            ProviderKind::Nvidia => "nvidia",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Replicate => "replicate",
            ProviderKind::Runway => "runway",
        }
    }

    /// The wire format its API speaks.
    pub fn dialect(self) -> nines_protocol::unified::Dialect {
        use nines_protocol::unified::Dialect;
        match self {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Nvidia => {
                Dialect::OpenAi
            }
            ProviderKind::Anthropic => Dialect::Anthropic,
            ProviderKind::Gemini => Dialect::Gemini,
            ProviderKind::Replicate => Dialect::Replicate,
            ProviderKind::Runway => Dialect::Runway,
        }
    }

    /// What requests it can honour by default (a deployment may narrow or widen this).
    pub fn capabilities(self) -> nines_protocol::unified::Capabilities {
        match self {
            // OpenAI's own API (and NVIDIA's, which follows it) has no `top_k`.
            ProviderKind::Openai | ProviderKind::Nvidia => nines_protocol::openai::CAPABILITIES
                .without(nines_protocol::unified::Capabilities::TOP_K),
            // Self-hosted servers vary; vLLM and Ollama accept all of OpenAI's surface and
            // many accept a final assistant message as a prefill.
            ProviderKind::OpenaiCompatible => nines_protocol::openai::CAPABILITIES,
            ProviderKind::Anthropic => nines_protocol::anthropic::CAPABILITIES,
            ProviderKind::Gemini => nines_protocol::gemini::CAPABILITIES,
            ProviderKind::Replicate => nines_protocol::replicate::CAPABILITIES,
            // No chat or embeddings at all: video jobs only.
            ProviderKind::Runway => nines_protocol::unified::Capabilities::NONE,
        }
    }

    /// The base URL used when a deployment names none; `None` means it must be given.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Nvidia => Some("https://integrate.api.nvidia.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            // The next three are host roots: their request paths carry the API version
            // (`/v1beta/models/...`, `/v1/models/...`, `/v1/tasks/...`).
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
            ProviderKind::Replicate => Some("https://api.replicate.com"),
            ProviderKind::Runway => Some("https://api.dev.runwayml.com"),
            ProviderKind::OpenaiCompatible => None,
        }
    }

    /// The header an API key travels in, as `nines check` shows it.
    pub fn auth_header(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "x-api-key",
            ProviderKind::Gemini => "x-goog-api-key",
            ProviderKind::OpenaiCompatible => "Authorization: Bearer (when a key is set)",
            ProviderKind::Openai
            | ProviderKind::Nvidia
            | ProviderKind::Replicate
            | ProviderKind::Runway => "Authorization: Bearer",
        }
    }

    /// Whether the provider refuses requests without an API key (self-hosted servers often
    /// need none).
    pub fn requires_key(self) -> bool {
        !matches!(self, ProviderKind::OpenaiCompatible)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub name: Spanned<String>,
    pub provider: ProviderName,
    /// The upstream's own model id.
    pub model: String,
    #[serde(default)]
    pub base_url: Option<Spanned<String>>,
    /// Each key is its own key slot. `env:NAME` reads the environment; anything else is literal.
    #[serde(default)]
    pub api_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub context_window: Option<u64>,
    #[serde(default)]
    pub price: Price,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub weight: Option<Spanned<f64>>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// The upstream continues a final assistant message instead of answering it (vLLM's
    /// `continue_final_message`); what lets a broken stream be resumed here. Default false.
    #[serde(default)]
    pub assistant_prefill: Option<Spanned<bool>>,
    /// Embedding deployments of one family (same model, same dimensions) may fail over to each
    /// other; without it, the upstream model id is the family.
    #[serde(default)]
    pub embedding_family: Option<String>,
    /// Hosts (`host` or `host:port`) besides the base URL's that may receive this deployment's
    /// key when the upstream hands back a URL to follow (a Replicate prediction's `urls.get`).
    #[serde(default)]
    pub credential_hosts: Vec<String>,
    /// Request parameters this deployment cannot take (`seed`, penalties, `top_k`, reasoning,
    /// logprobs, `n`, a JSON response format, OpenAI-only fields) are removed and named in
    /// `x-nines-dropped-params`, instead of the deployment being skipped for such a request.
    /// Default false: nothing is ever dropped silently.
    #[serde(default)]
    pub drop_unsupported_params: bool,
}

/// USD per one million tokens.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTimeouts {
    /// TCP + TLS connect.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// From sending the request to the first byte of the response body.
    #[serde(with = "humantime_serde")]
    pub first_byte: Duration,
    /// Longest silence between two chunks of a streamed response.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// Whole request, all attempts included.
    #[serde(with = "humantime_serde")]
    pub total: Duration,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: Spanned<String>,
    pub deployments: Vec<Spanned<String>>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub hedge: super::resilience::Hedge,
    /// Continue a stream that broke after the commit point on a later deployment (prefilled
    /// where it can continue an answer, else replayed and spliced only if it matches), instead
    /// of ending it with an error event. On by default.
    #[serde(default = "yes")]
    pub resume_streams: bool,
    /// When a fallback model may serve: after this model's own candidates were tried and
    /// transient failures retried once (default), or as soon as its first pass fails.
    #[serde(default)]
    pub degrade: Degrade,
    /// Models tried, in order, after this model's own deployments are exhausted.
    #[serde(default)]
    pub fallbacks: Vec<Spanned<String>>,
    /// Models tried when the prompt does not fit any of this model's context windows.
    #[serde(default)]
    pub context_fallbacks: Vec<Spanned<String>>,
    /// Preferred region for this model (overrides `[routing] region`).
    #[serde(default)]
    pub region: Option<String>,
}

fn yes() -> bool {
    true
}

/// When a model's fallback models may serve its requests.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Degrade {
    /// Only once the model's own key slots were tried and transient failures (a 5xx, reset,
    /// overload, or a 429 with a short `Retry-After`) retried once on the same slot: a fallback
    /// model is a change of quality, a second deployment of the same model is not.
    #[default]
    AfterRetries,
    /// As soon as every own key slot failed once (latency-first routes).
    Immediately,
}

impl Degrade {
    pub fn as_str(self) -> &'static str {
        match self {
            Degrade::AfterRetries => "after-retries",
            Degrade::Immediately => "immediately",
        }
    }
}

/// How a model orders its deployments for each request.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The listed order.
    #[default]
    Priority,
    /// Lowest estimated cost of this request (its prompt and output tokens at each deployment's
    /// prices) first, ties in listed order.
    Cheapest,
    /// Random order drawn by each deployment's `weight` (default 1).
    Weighted,
    /// Lowest peak-EWMA time to first byte × (in flight + 1), with power-of-two-choices for the
    /// first place so the fastest deployment is not stampeded.
    LeastLatency,
    /// Fewest in flight relative to `max_concurrency`: headroom-aware balancing across replicas.
    LeastBusy,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Priority => "priority",
            Strategy::Cheapest => "cheapest",
            Strategy::Weighted => "weighted",
            Strategy::LeastLatency => "least-latency",
            Strategy::LeastBusy => "least-busy",
        }
    }
}
