//! Upstream providers: one pooled HTTP client per deployment, and the raw outcome of one call.
//!
//! A provider call returns an [`Outcome`] and never decides what it means: classification happens
//! once, in `resilience::class`. For streamed responses the call returns only after the first
//! complete SSE event arrived (the stream has proven itself), which is what lets the attempt loop
//! fail over before the commit point.

mod openai;

pub(crate) use openai::{describe, is_error_event};

use crate::config::{Deployment, KeySlotConfig};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderMap, StatusCode};
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::time::Instant;

/// The endpoint of a call, in OpenAI terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
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
}

/// The remaining body of a streamed response after the events already read.
pub type ByteStream = BoxStream<'static, Result<Bytes, reqwest::Error>>;

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
    client: reqwest::Client,
    urls: openai::Urls,
}

impl Upstream {
    pub fn new(deployment: Arc<Deployment>) -> Result<Self, String> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            // nines is the only retry loop: the client must never retry on its own.
            .retry(reqwest::retry::never())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(deployment.timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            .user_agent(concat!("nines/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build its HTTP client: {e}"))?;
        let urls = openai::Urls::new(&deployment.base_url)?;
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
        openai::probe(&self.client, &self.urls, key, timeout).await
    }

    /// Makes one call and reports what happened.
    pub async fn call(&self, call: Call<'_>) -> Outcome {
        openai::call(&self.client, &self.deployment, &self.urls, call).await
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
