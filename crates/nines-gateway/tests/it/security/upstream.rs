//! Finding 3: Replicate credentials followed any URL. A malicious (or spoofed) Replicate upstream
//! hands back `urls.get` and `urls.cancel` pointing at another host, or redirects a poll there;
//! that host must never see the provider key, nor any request carrying it. (Replicate is the one
//! provider kind whose answers carry URLs nines follows; Runway and Gemini jobs are polled at
//! paths nines builds from `base_url`.)

use crate::harness::Harness;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const BEARER: &str = "Bearer sk-upstream-secret-0001";

/// What a fake host received: `(method, path, authorization)`.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

fn record(seen: &Seen, method: &Method, uri: &Uri, headers: &HeaderMap) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.lock()
        .unwrap()
        .push((method.to_string(), uri.path().to_owned(), auth));
}

fn seen(seen: &Seen) -> Vec<(String, String, Option<String>)> {
    seen.lock().unwrap().clone()
}

/// The attacker's host: records everything.
async fn attacker() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let router = Router::new()
        .fallback(any(
            |State(seen): State<Seen>, method: Method, uri: Uri, headers: HeaderMap| async move {
                record(&seen, &method, &uri, &headers);
                axum::Json(json!({"id": "p1", "model": "m/m", "status": "processing"}))
            },
        ))
        .with_state(Arc::clone(&seen));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, seen)
}

/// A Replicate-shaped upstream whose predictions never finish and whose `urls` are `get` and
/// `cancel` (`{up}` is the upstream itself, `{attacker}` the attacker). `/v1/predictions/redirect`
/// redirects to the attacker.
async fn malicious_replicate(
    get_url: &str,
    cancel_url: &str,
    attacker: SocketAddr,
) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let fill = |u: &str| {
        u.replace("{up}", &up.to_string())
            .replace("{attacker}", &attacker.to_string())
    };
    let prediction = json!({
        "id": "p1", "model": "m/m", "status": "processing",
        "urls": {"get": fill(get_url), "cancel": fill(cancel_url)},
    });
    let seen = Seen::default();
    let answer = {
        let seen = Arc::clone(&seen);
        move |method: Method, uri: Uri, headers: HeaderMap| {
            record(&seen, &method, &uri, &headers);
            let prediction = prediction.clone();
            async move { (StatusCode::CREATED, axum::Json(prediction)).into_response() }
        }
    };
    let redirect = {
        let seen = Arc::clone(&seen);
        move |method: Method, uri: Uri, headers: HeaderMap| {
            record(&seen, &method, &uri, &headers);
            async move {
                let mut response: Response = StatusCode::TEMPORARY_REDIRECT.into_response();
                let to = format!("http://{attacker}/stolen");
                response
                    .headers_mut()
                    .insert("location", to.parse().unwrap());
                response
            }
        }
    };
    let router = Router::new()
        .route(
            "/v1/models/{owner}/{name}/predictions",
            post(answer.clone()),
        )
        .route("/v1/predictions/p1", get(answer.clone()))
        .route("/v1/predictions/p1/cancel", post(answer))
        .route("/v1/predictions/redirect", get(redirect));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (up, seen)
}

fn config(upstream: SocketAddr) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "r0"
provider = "replicate"
model = "m/m"
base_url = "http://{upstream}"
api_keys = ["env:TEST_KEY"]
timeouts = {{ first_byte = "2s", idle = "2s", total = "1500ms" }}

[[models]]
name = "chat"
deployments = ["r0"]
"#
    )
}

struct Run {
    status: u16,
    upstream: Seen,
    attacker: Seen,
}

/// One chat request through a malicious upstream handing back `get` and `cancel`.
async fn through(get_url: &str, cancel_url: &str) -> Run {
    let (attacker_addr, attacker) = attacker().await;
    let (up, upstream) = malicious_replicate(get_url, cancel_url, attacker_addr).await;
    let h = Harness::start(0, &config(up)).await;
    let response = h
        .client
        .post(h.url("/v1/chat/completions"))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    h.stop().await;
    Run {
        status,
        upstream,
        attacker,
    }
}

/// An absence cannot be awaited: what would have been sent (a fire-and-forget cancel) is given
/// this long. The control test shows a cancel that is sent arrives well within it.
const ABSENCE: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_poll_url_on_another_host_gets_no_key() {
    for get_url in [
        "http://{attacker}/v1/predictions/p1",
        // The upstream's address as userinfo: the host is still the attacker's.
        "http://{up}@{attacker}/v1/predictions/p1",
        // Same port, another name for the host: not the configured origin.
        "https://{up}/v1/predictions/p1",
    ] {
        let run = through(get_url, "http://{up}/v1/predictions/p1/cancel").await;
        assert_eq!(run.status, 502, "{get_url}");
        tokio::time::sleep(ABSENCE).await;
        assert_eq!(seen(&run.attacker), vec![], "{get_url}");
        // Only creates (each attempt's), with the key; no poll anywhere.
        let upstream = seen(&run.upstream);
        assert!(!upstream.is_empty());
        assert!(
            upstream.iter().all(|(m, path, auth)| m == "POST"
                && path.ends_with("/predictions")
                && auth.as_deref() == Some(BEARER)),
            "{upstream:?}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_with_the_key() {
    let run = through(
        "http://{up}/v1/predictions/redirect",
        "http://{up}/v1/predictions/p1/cancel",
    )
    .await;
    assert_ne!(run.status, 200);
    tokio::time::sleep(ABSENCE).await;
    assert_eq!(seen(&run.attacker), vec![]);
}

#[tokio::test]
async fn a_cancel_url_on_another_host_gets_no_key() {
    // Polled until the deadline (1.5 s), then cancelled: the cancel URL is the attacker's.
    let run = through(
        "http://{up}/v1/predictions/p1",
        "http://{attacker}/v1/predictions/p1/cancel",
    )
    .await;
    assert!(matches!(run.status, 502 | 504), "{}", run.status);
    tokio::time::sleep(ABSENCE).await;
    assert_eq!(seen(&run.attacker), vec![]);
    let upstream = seen(&run.upstream);
    assert!(
        upstream
            .iter()
            .all(|(_, _, auth)| auth.as_deref() == Some(BEARER))
    );
    assert!(
        upstream
            .iter()
            .all(|(_, path, _)| !path.ends_with("/cancel"))
    );
}

#[tokio::test]
async fn control_a_cancel_on_the_deployments_own_origin_is_sent_with_its_key() {
    let run = through(
        "http://{up}/v1/predictions/p1",
        "http://{up}/v1/predictions/p1/cancel",
    )
    .await;
    assert!(matches!(run.status, 502 | 504), "{}", run.status);
    let started = tokio::time::Instant::now();
    loop {
        let cancels: Vec<_> = seen(&run.upstream)
            .into_iter()
            .filter(|(method, path, _)| method == "POST" && path.ends_with("/cancel"))
            .collect();
        if let Some((_, _, auth)) = cancels.first() {
            assert_eq!(auth.as_deref(), Some(BEARER));
            break;
        }
        assert!(started.elapsed() < ABSENCE, "the cancel never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
