//! The pooled upstream HTTP client of one deployment.
//!
//! Requests are built with reqwest's `RequestBuilder` (its API is what the dialect modules speak)
//! and sent through hyper's own pooled client. reqwest's sending path parses every request's URL
//! twice (its redirect layer and its `Response` each turn the `Uri` back into a `Url`, IDNA
//! included) and wraps each call in retry, redirect and timeout layers nines does not use: nines
//! is the only retry loop, follows no redirects and keeps its own deadlines. Sending through
//! hyper directly took that work (about 15% of the gateway's CPU per proxied request) off the hot
//! path. The client keeps what reqwest gave: keep-alive pooling, HTTP/2 by ALPN, rustls with the
//! platform's verifier, `TCP_NODELAY`, a connect timeout.
//!
//! One thing hyper's pool does not do is go through an egress proxy. When the environment names
//! one (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, upper or lower case), requests are sent by
//! reqwest itself, which honours those and `NO_PROXY`, as the gateway always did.

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// Why a call or a body read failed, as a chain of sources (never with credentials: the URL
/// carries none).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// What nines calls itself upstream, whichever way a request is sent.
const USER_AGENT: &str = concat!("nines/", env!("CARGO_PKG_VERSION"));

/// A response whose body is still to be read.
pub type Response = http::Response<BoxBody<Bytes, BodyError>>;

/// What went wrong before a response head arrived.
#[derive(Debug)]
pub enum SendError {
    /// The request could not be built (an invalid header value, say).
    Build(reqwest::Error),
    /// hyper's own error: connection set-up (`is_connect`) or the exchange itself.
    Http(hyper_util::client::legacy::Error),
    /// reqwest's error, for requests sent through a proxy.
    Proxied(reqwest::Error),
}

/// Where a deployment's requests go.
pub enum Egress {
    /// Straight to the upstream, through hyper's pool.
    Direct,
    /// Through the proxies the environment names (reqwest reads them).
    EnvironmentProxy,
    /// Through this proxy (tests: they cannot safely change the process environment).
    #[cfg(test)]
    Proxy(Box<reqwest::Proxy>),
}

impl Egress {
    /// `EnvironmentProxy` when a proxy variable is set, else `Direct`.
    pub fn from_env() -> Egress {
        const VARS: [&str; 6] = [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ];
        if VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
        {
            Egress::EnvironmentProxy
        } else {
            Egress::Direct
        }
    }
}

/// A deployment's client: a request builder and the connection pool requests go through.
pub struct HttpClient {
    /// Builds every request; sends those that go through a proxy, and Replicate's
    /// fire-and-forget cancellations.
    builder: reqwest::Client,
    /// `None` when requests go through a proxy.
    pool: Option<Client<HttpsConnector<HttpConnector>, reqwest::Body>>,
    user_agent: HeaderValue,
    /// The deployment's `headers`, set on every request (replacing any of the same name).
    extra_headers: http::HeaderMap,
}

impl HttpClient {
    pub fn new(
        connect_timeout: Duration,
        egress: Egress,
        extra_headers: Vec<(http::HeaderName, HeaderValue)>,
    ) -> Result<HttpClient, String> {
        super::install_crypto_provider();
        let builder = reqwest::Client::builder()
            // nines is the only retry loop: the client must never retry on its own.
            .retry(reqwest::retry::never())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .user_agent(USER_AGENT);
        let (builder, direct) = match egress {
            Egress::Direct => (builder.no_proxy(), true),
            Egress::EnvironmentProxy => (builder, false),
            #[cfg(test)]
            Egress::Proxy(proxy) => (builder.proxy(*proxy), false),
        };
        let builder = builder
            .build()
            .map_err(|e| format!("cannot build its HTTP client: {e}"))?;
        let pool = if direct {
            Some(pool(connect_timeout)?)
        } else {
            None
        };
        Ok(HttpClient {
            builder,
            pool,
            user_agent: HeaderValue::from_static(USER_AGENT),
            extra_headers: extra_headers.into_iter().collect(),
        })
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.builder.post(url)
    }

    pub fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.builder.get(url)
    }

    /// Sends a request; resolves when the response head arrived.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, SendError> {
        let request = if self.extra_headers.is_empty() {
            request
        } else {
            request.headers(self.extra_headers.clone())
        };
        let Some(pool) = &self.pool else {
            let response = request.send().await.map_err(SendError::Proxied)?;
            return Ok(http::Response::<reqwest::Body>::from(response)
                .map(|body| body.map_err(BodyError::from).boxed()));
        };
        let request = request.build().map_err(SendError::Build)?;
        let mut request =
            http::Request::<reqwest::Body>::try_from(request).map_err(SendError::Build)?;
        request
            .headers_mut()
            .entry(http::header::USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        let response = pool.request(request).await.map_err(SendError::Http)?;
        Ok(response.map(|body| body.map_err(BodyError::from).boxed()))
    }
}

/// hyper's pool with rustls (the platform's verifier; HTTP/2 when the server offers it by ALPN).
fn pool(
    connect_timeout: Duration,
) -> Result<Client<HttpsConnector<HttpConnector>, reqwest::Body>, String> {
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
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .http2_adaptive_window(true)
        .build(tls))
}

/// The whole body, refused with [`TooLong`] once it passes `limit` bytes: an upstream cannot make
/// the gateway hold whatever it sends. (Read frame by frame rather than through
/// `http_body_util::Limited`, whose boxed error bound makes the handlers' futures fail the
/// compiler's `Send` check.)
pub async fn bytes(response: Response, limit: usize) -> Result<Bytes, BodyError> {
    let mut body = response.into_body();
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > limit {
                return Err(Box::new(TooLong { limit }));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// A body longer than a reader's limit.
#[derive(Debug, thiserror::Error)]
#[error("the body is longer than {limit} bytes")]
pub struct TooLong {
    pub limit: usize,
}

/// The body as a stream of chunks.
pub fn chunks(response: Response) -> super::ByteStream {
    use futures_util::StreamExt;
    http_body_util::BodyDataStream::new(response.into_body()).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A server that answers every request with the request line's target and a user agent,
    /// so a test sees whether it was addressed as an origin (`/path`) or as a proxy
    /// (`http://host/path`).
    async fn echo_server() -> (String, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let log = Arc::clone(&log);
            async move {
                let agent = request
                    .headers()
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                log.lock().unwrap().push(request.uri().to_string());
                format!("{} {agent}", request.uri())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn direct_requests_go_through_the_pool_to_the_origin() {
        let (base, seen) = echo_server().await;
        let client = HttpClient::new(Duration::from_secs(2), Egress::Direct, Vec::new()).unwrap();
        assert!(client.pool.is_some());
        let response = client
            .send(client.get(format!("{base}/v1/models")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = bytes(response, 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("/v1/models nines/"), "{text}");
        assert_eq!(seen.lock().unwrap().as_slice(), ["/v1/models"]);
    }

    #[tokio::test]
    async fn with_a_proxy_requests_are_addressed_to_it() {
        let (proxy, seen) = echo_server().await;
        let client = HttpClient::new(
            Duration::from_secs(2),
            Egress::Proxy(Box::new(reqwest::Proxy::http(&proxy).unwrap())),
            Vec::new(),
        )
        .unwrap();
        assert!(client.pool.is_none());
        // The upstream's name need not resolve: the proxy is the one that would reach it.
        let response = client
            .send(client.get("http://upstream.invalid/v1/models"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let chunks: Vec<Bytes> = {
            use futures_util::StreamExt;
            self::chunks(response)
                .map(|c| c.unwrap())
                .collect::<Vec<_>>()
                .await
        };
        let text = String::from_utf8_lossy(&chunks.concat()).into_owned();
        assert!(
            text.starts_with("http://upstream.invalid/v1/models nines/"),
            "{text}"
        );
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["http://upstream.invalid/v1/models"]
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = HttpClient::new(Duration::from_secs(2), Egress::Direct, Vec::new()).unwrap();
        match client.send(client.get(format!("http://{addr}/"))).await {
            Err(SendError::Http(e)) => assert!(e.is_connect(), "{e:?}"),
            other => panic!(
                "expected a connect error, got {:?}",
                other.map(|r| r.status())
            ),
        }
    }
}
