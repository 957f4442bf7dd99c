//! Upstream providers: one pooled HTTP client per deployment, and the raw outcome of one call.
//!
//! A provider call returns an [`Outcome`] and never decides what it means: classification happens
//! once, in `resilience::class`. For streamed responses the call returns only after the first
//! complete SSE event arrived (the stream has proven itself), which is what lets the attempt loop
//! fail over before the commit point.

mod anthropic;
mod credential_scope;
mod gemini;
mod http_client;
mod openai;
mod replicate;
mod runway;
mod transport;

pub use credential_scope::CredentialScope;
pub use http_client::BodyError;
pub(crate) use http_client::HttpClient;
pub use replicate::{PREDICTION_ID, PREDICTION_MODEL};
pub use runway::is_task_id as is_runway_task_id;
pub(crate) use transport::describe;

use crate::config::{Deployment, KeySlotConfig, Timeouts};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderMap, StatusCode};
use nines_protocol::unified::Dialect;
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::time::Instant;

/// The endpoint of a call, in OpenAI terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    /// OpenAI's legacy text completions (`prompt` in, `choices[].text` out).
    Completions,
    /// Anthropic's `messages/count_tokens`.
    CountTokens,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Completions => "/completions",
            Endpoint::CountTokens => "/messages/count_tokens",
        }
    }

    /// What the call is, in words, for a refusal.
    pub fn describe(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Completions => "legacy completions",
            Endpoint::CountTokens => "token counting",
        }
    }

    /// Whether an upstream of `dialect` has this endpoint at all. Routing keeps only such
    /// deployments in a plan; a call that reaches another is refused without a network call.
    pub fn served_in(self, dialect: Dialect) -> bool {
        match self {
            Endpoint::ChatCompletions => dialect != Dialect::Runway,
            Endpoint::Embeddings => matches!(dialect, Dialect::OpenAi | Dialect::Gemini),
            Endpoint::Completions => dialect == Dialect::OpenAi,
            Endpoint::CountTokens => dialect == Dialect::Anthropic,
        }
    }
}

/// One upstream call to make.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    pub key: &'a KeySlotConfig,
    /// The body to send, already in the upstream's dialect.
    pub body: Bytes,
    pub stream: bool,
    pub request_id: &'a str,
    /// The whole request's deadline; a call never outlives it.
    pub deadline: Instant,
    /// The W3C `traceparent` the upstream request carries, if any.
    pub traceparent: Option<&'a http::HeaderValue>,
    /// The first-byte deadline learned for this deployment, when it is shorter than the
    /// configured one (`resilience::first_byte`).
    pub first_byte: Option<std::time::Duration>,
}

impl Call<'_> {
    /// Adds the call's `traceparent`, when it has one.
    fn traced(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.traceparent {
            Some(value) => request.header("traceparent", value.clone()),
            None => request,
        }
    }
}

/// The remaining body of a streamed response after the events already read.
pub type ByteStream = BoxStream<'static, Result<Bytes, BodyError>>;

/// A 2xx answer from upstream.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ReplyBody,
    /// Time from sending the request to the first body byte.
    pub ttfb: Duration,
}

pub enum ReplyBody {
    /// A complete, well-formed JSON document.
    Full(Bytes),
    /// A stream: `head` holds the bytes read so far (at least one complete SSE event); `rest`
    /// yields the remainder.
    Stream { head: Bytes, rest: ByteStream },
}

/// What became of one upstream call, before classification.
pub enum Outcome {
    Reply(Reply),
    /// A non-2xx status with its (bounded) body.
    Status {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// The provider answered 200 but sent an error event before any content.
    StreamError {
        data: String,
    },
    Transport(Transport),
}

/// Failures below HTTP semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Refused, DNS, TLS or other connection set-up failure.
    Connect(String),
    ConnectTimeout,
    /// No first byte within the first-byte timeout.
    FirstByteTimeout,
    /// A stream went silent for longer than the idle timeout before proving itself.
    IdleTimeout,
    /// The request's total deadline ran out.
    Deadline,
    /// The connection broke after it was set up (reset, closed early).
    Broken(String),
    /// The body is not what the dialect promises.
    Malformed(String),
}

impl Transport {
    /// A short description for attempt records and logs (never contains credentials).
    pub fn describe(&self) -> String {
        match self {
            Transport::Connect(why) => format!("connect failed: {why}"),
            Transport::ConnectTimeout => "connect timed out".into(),
            Transport::FirstByteTimeout => "no first byte within the first-byte timeout".into(),
            Transport::IdleTimeout => "stream idle past the idle timeout".into(),
            Transport::Deadline => "request deadline reached".into(),
            Transport::Broken(why) => format!("connection broke: {why}"),
            Transport::Malformed(why) => format!("malformed response: {why}"),
        }
    }
}

/// A deployment with its pooled client.
pub struct Upstream {
    pub deployment: Arc<Deployment>,
    client: HttpClient,
    urls: Urls,
}

/// Each dialect's endpoints, parsed once per deployment.
enum Urls {
    OpenAi(openai::Urls),
    Anthropic(anthropic::Urls),
    Gemini(gemini::Urls),
    Replicate(replicate::Urls),
    Runway(runway::Urls),
}

/// `base` + `path` as a URL (`base` has no trailing slash).
fn join(base: &str, path: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|e| format!("base_url '{}': {e}", crate::config::shown_url(base)))
}

impl Upstream {
    pub fn new(deployment: Arc<Deployment>) -> Result<Self, String> {
        let client = HttpClient::new(deployment.timeouts.connect, http_client::Egress::from_env())?;
        let urls = match deployment.provider.dialect() {
            Dialect::OpenAi => Urls::OpenAi(openai::Urls::new(&deployment.base_url)?),
            Dialect::Anthropic => Urls::Anthropic(anthropic::Urls::new(&deployment.base_url)?),
            Dialect::Gemini => Urls::Gemini(gemini::Urls::new(
                &deployment.base_url,
                &deployment.upstream_model,
            )?),
            Dialect::Replicate => Urls::Replicate(replicate::Urls::new(
                &deployment.base_url,
                &deployment.upstream_model,
                CredentialScope::of(&deployment),
            )?),
            Dialect::Runway => Urls::Runway(runway::Urls::new(&deployment.base_url)?),
        };
        Ok(Upstream {
            deployment,
            client,
            urls,
        })
    }

    /// The cheapest possible call that proves the key slot works (a models list).
    pub async fn probe(&self, key: usize, timeout: Duration) -> Outcome {
        let Some(key) = self.deployment.keys.get(key) else {
            return Outcome::Transport(Transport::Connect("no such key slot".into()));
        };
        let request = match &self.urls {
            Urls::OpenAi(urls) => openai::probe(&self.client, urls, key),
            Urls::Anthropic(urls) => anthropic::probe(&self.client, urls, key),
            Urls::Gemini(urls) => gemini::probe(&self.client, urls, key),
            Urls::Replicate(urls) => replicate::probe(&self.client, urls, key),
            Urls::Runway(urls) => runway::probe(&self.client, urls, key),
        };
        transport::probe(&self.client, request, timeout).await
    }

    /// Makes one call and reports what happened.
    pub async fn call(&self, call: Call<'_>) -> Outcome {
        let timeouts = Timeouts {
            first_byte: call
                .first_byte
                .unwrap_or(self.deployment.timeouts.first_byte),
            ..self.deployment.timeouts
        };
        if !call.endpoint.served_in(self.deployment.provider.dialect()) {
            return unserved(&call, self.deployment.provider_name());
        }
        let request = match &self.urls {
            Urls::OpenAi(urls) => openai::request(&self.client, urls, &call),
            Urls::Anthropic(urls) => anthropic::request(&self.client, urls, &call),
            Urls::Gemini(urls) => gemini::request(&self.client, urls, &call),
            // A prediction is several requests (create, then wait or stream).
            Urls::Replicate(urls) => {
                return replicate::call(&self.client, urls, &timeouts, &call).await;
            }
            Urls::Runway(_) => return unserved(&call, self.deployment.provider_name()),
        };
        transport::exchange(&self.client, request, &timeouts, call.stream, call.deadline).await
    }
}

/// A call for an endpoint the deployment's dialect does not have (chat or embeddings to Runway,
/// legacy completions to Anthropic, …): refused without a network call, as a client error (the
/// request cannot succeed on this deployment, and it says nothing about the deployment's health).
/// Routing filters such deployments out first; this is the backstop.
fn unserved(call: &Call<'_>, provider: &str) -> Outcome {
    let what = call.endpoint.describe();
    let message = if provider == "runway" {
        format!("runway deployments serve only video jobs (POST /v1/videos), not {what}")
    } else {
        format!("{provider} deployments do not serve {what}")
    };
    refused(message, Some("unsupported_endpoint"))
}

/// A request that cannot succeed here, refused without a network call: a 400 in OpenAI's shape
/// (classified `client`: neutral for the key slot's health).
fn refused(message: String, code: Option<&str>) -> Outcome {
    let body =
        nines_protocol::ErrorBody::new(message, "invalid_request_error", Some("model"), code);
    Outcome::Status {
        status: StatusCode::BAD_REQUEST,
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_json()),
    }
}

/// reqwest is built without a default rustls crypto provider so that exactly one (ring) is
/// compiled in; it must be installed before the first client is built. Idempotent.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means a provider is already installed, which is equally fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
