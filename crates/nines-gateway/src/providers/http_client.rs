//! The pooled upstream HTTP client of one deployment.
//!
//! Requests are built with reqwest's `RequestBuilder` (its API is what the dialect modules speak)
//! and sent through hyper's own pooled client. reqwest's sending path parses every request's URL
//! twice (its redirect layer and its `Response` each turn the `Uri` back into a `Url`, IDNA
//! included) and wraps each call in retry, redirect and timeout layers nines does not use: nines
//! is the only retry loop, follows no redirects and keeps its own deadlines. Sending through
//! hyper directly took that work (about 9% of the gateway's CPU per proxied request) off the hot
//! path. The client keeps what reqwest gave: keep-alive pooling, HTTP/2 by ALPN, rustls with the
//! platform's verifier, `TCP_NODELAY`, a connect timeout.

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// Why a call or a body read failed, as a chain of sources (never with credentials: the URL
/// carries none).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A response whose body is still to be read.
pub type Response = http::Response<Incoming>;

/// What went wrong before a response head arrived.
#[derive(Debug)]
pub enum SendError {
    /// The request could not be built (an invalid header value, say).
    Build(reqwest::Error),
    /// hyper's own error: connection set-up (`is_connect`) or the exchange itself.
    Http(hyper_util::client::legacy::Error),
}

/// A deployment's client: a request builder and the connection pool requests go through.
pub struct HttpClient {
    /// Builds requests; it sends only Replicate's fire-and-forget cancellations.
    builder: reqwest::Client,
    pool: Client<HttpsConnector<HttpConnector>, reqwest::Body>,
    user_agent: HeaderValue,
}

impl HttpClient {
    pub fn new(connect_timeout: Duration) -> Result<HttpClient, String> {
        super::install_crypto_provider();
        let builder = reqwest::Client::builder()
            // nines is the only retry loop: the client must never retry on its own.
            .retry(reqwest::retry::never())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("nines/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build its HTTP client: {e}"))?;
        let mut http = HttpConnector::new();
        // The scheme is checked by the TLS layer: http:// passes through, https:// gets rustls.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| format!("cannot set up TLS certificate verification: {e}"))?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let pool = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .http2_adaptive_window(true)
            .build(tls);
        Ok(HttpClient {
            builder,
            pool,
            user_agent: HeaderValue::from_static(concat!("nines/", env!("CARGO_PKG_VERSION"))),
        })
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.builder.post(url)
    }

    pub fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.builder.get(url)
    }

    /// Sends a request through the pool; resolves when the response head arrived.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, SendError> {
        let request = request.build().map_err(SendError::Build)?;
        let mut request =
            http::Request::<reqwest::Body>::try_from(request).map_err(SendError::Build)?;
        request
            .headers_mut()
            .entry(http::header::USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        self.pool.request(request).await.map_err(SendError::Http)
    }
}

/// The whole body.
pub async fn bytes(response: Response) -> Result<Bytes, BodyError> {
    Ok(response.into_body().collect().await?.to_bytes())
}

/// The body as a stream of chunks.
pub fn chunks(response: Response) -> super::ByteStream {
    use futures_util::StreamExt;
    http_body_util::BodyDataStream::new(response.into_body())
        .map(|chunk| chunk.map_err(BodyError::from))
        .boxed()
}
