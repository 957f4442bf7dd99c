//! `nines demo`: the gateway with three in-process mock providers, no keys, no network. One
//! provider has scripted outages so the failover can be watched, on the responses' headers, on
//! the status page (`/status`) and in `nines report sla`.
//!
//! So that the page has something to show, a built-in client sends a trickle of requests (about
//! 2.5 a second, spread over the three models) unless `--no-traffic` is given. Breakers cool down
//! in 3 s (then 6 s) instead of 30 s, so the page follows each 8 s outage closely: the primary
//! shows as down while it is, and each outage becomes one incident. The routes stay available
//! throughout: every request the primary fails is answered by the secondary.
//!
//! The demo has an admin key (new each run, printed in the banner) and an in-memory store, so the
//! admin API and `nines report sla --url … --admin-key …` work against it.

use nines_gateway::{AppState, Config, Runtime};
use nines_mock::{MockOptions, MockServer};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The primary is down for 8 s out of every 20 s; requests keep being answered by the others.
const OUTAGE: &str = r#"{"cycle_period_ms": 20000, "cycle_down_ms": 8000, "status": 503}"#;

/// The built-in client sends one request this often, rotating through the models.
const TRAFFIC_EVERY: Duration = Duration::from_millis(400);

pub async fn run(listen: &str, traffic: bool) -> Result<(), String> {
    let loopback = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let outage = serde_json::from_str(OUTAGE).map_err(|e| format!("demo fault script: {e}"))?;
    let primary = start(loopback, "primary (scripted outages)", Some(outage)).await?;
    let secondary = start(loopback, "secondary", None).await?;
    let tertiary = start(loopback, "tertiary", None).await?;

    let admin_key = nines_gateway::auth::keys::generate();
    let text = demo_config(
        listen,
        &admin_key,
        &primary.base_url(),
        &secondary.base_url(),
        &tertiary.base_url(),
    );
    let config = Config::parse(Path::new("<demo>"), &text, &|_| None).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e} (try --listen 127.0.0.1:0)"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The in-memory store (keys, usage) the admin API needs.
    let state = AppState::open(Runtime::build(config)?).await?;
    tracing::info!(addr = %addr, "listening");
    println!(
        "{}",
        banner(
            &addr.to_string(),
            &admin_key,
            traffic,
            &crate::invocation::this_binary()
        )
    );
    let trickle = traffic.then(|| tokio::spawn(send_traffic(reachable(addr))));
    // A demo stops without a drain delay: nothing balances load onto it.
    let stop = crate::signals::follow(None, nines_gateway::Stop::Close);
    let result = nines_gateway::serve(listener, Arc::clone(&state), stop).await;
    if let Some(task) = trickle {
        task.abort();
    }
    state.access.drain(Duration::from_secs(2)).await;
    drop((primary, secondary, tertiary));
    result.map(|_| ()).map_err(|e| format!("server error: {e}"))
}

/// Where the built-in client connects: the listening address, loopback when it listens on all
/// interfaces.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(loopback, addr.port())
    } else {
        addr
    }
}

/// The built-in client: one request every [`TRAFFIC_EVERY`], rotating through the demo's models,
/// each sent without waiting for the one before (a slow answer does not thin the trickle). Runs
/// until aborted; its answers are not looked at (the status page shows them).
async fn send_traffic(addr: SocketAddr) {
    nines_gateway::providers::install_crypto_provider();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "demo traffic off: cannot build an HTTP client");
            return;
        }
    };
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Hello from the demo's own client"}]});
    let calls = [
        ("/v1/chat/completions", chat("chat-default")),
        ("/v1/chat/completions", chat("chat-cheap")),
        (
            "/v1/embeddings",
            json!({"model": "embed-default", "input": "status page"}),
        ),
    ];
    let mut tick = tokio::time::interval(TRAFFIC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for (path, body) in calls.iter().cycle() {
        tick.tick().await;
        let request = client.post(format!("http://{addr}{path}")).json(body);
        tokio::spawn(async move {
            if let Ok(response) = request.send().await {
                let _ = response.bytes().await;
            }
        });
    }
}

async fn start(
    addr: std::net::SocketAddr,
    name: &str,
    fault: Option<nines_mock::FaultScript>,
) -> Result<MockServer, String> {
    let options = MockOptions {
        name: name.to_owned(),
        models: vec!["mock-model".into()],
        fault,
    };
    MockServer::start(addr, options)
        .await
        .map_err(|e| format!("cannot start mock provider '{name}': {e}"))
}

fn demo_config(
    listen: &str,
    admin_key: &str,
    primary: &str,
    secondary: &str,
    tertiary: &str,
) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
shutdown_grace = "5s"

# No client key needed; the admin key protects /admin/... (and `nines report sla`).
[auth]
enabled = false
admin_key = "{admin_key}"

[store]
database_url = "sqlite::memory:"

# Short cooldowns so the status page follows the 8 s outages closely.
[resilience.breaker]
cooldown = "3s"
max_cooldown = "6s"

[status]
title = "nines demo status"

[[deployments]]
name = "primary"
provider = "openai-compatible"
model = "mock-model"
base_url = "{primary}"
context_window = 128000
price = {{ input = 0.15, output = 0.60 }}
timeouts = {{ first_byte = "5s", total = "20s" }}

[[deployments]]
name = "secondary"
provider = "openai-compatible"
model = "mock-model"
base_url = "{secondary}"
context_window = 128000
price = {{ input = 0.50, output = 1.50 }}
timeouts = {{ first_byte = "5s", total = "20s" }}

[[deployments]]
name = "tertiary"
provider = "openai-compatible"
model = "mock-model"
base_url = "{tertiary}"
context_window = 200000
price = {{ input = 1.0, output = 5.0 }}
timeouts = {{ first_byte = "5s", total = "20s" }}

[[models]]
name = "chat-default"
deployments = ["primary", "secondary", "tertiary"]
strategy = "priority"
# What the page judges each minute: time to first token at the median and p99.
slo = {{ ttft_p50 = "500ms", ttft_p99 = "5s" }}

[[models]]
name = "chat-cheap"
deployments = ["primary", "secondary", "tertiary"]
strategy = "cheapest"

[[models]]
name = "embed-default"
deployments = ["primary", "secondary"]
"#
    )
}

/// `nines` is how the banner's commands call this binary: `nines` itself when the one found on
/// `PATH` is this binary, else its path (as under `cargo run`, where `nines` is not installed).
fn banner(addr: &str, admin_key: &str, traffic: bool, nines: &str) -> String {
    let traffic = if traffic {
        "A built-in client sends about 2.5 requests a second so the page has traffic to show\n\
         (--no-traffic turns it off)."
    } else {
        "The built-in client is off (--no-traffic): the page shows the requests you send."
    };
    format!(
        r#"
nines demo is running at http://{addr}  (three mock providers; "primary" is down 8 s of every 20 s)

Status page:  http://{addr}/status    (data: http://{addr}/status.json)
              the private view (providers, key slots, breakers): sign in at http://{addr}/status/login
SLA report:   {nines} report sla --url http://{addr} --admin-key {admin_key}
Load test:    {nines} loadtest --url http://{addr} --model chat-default --duration 10s
Admin key:    {admin_key}    (new each run; the admin API is at http://{addr}/admin/...)
{traffic}

  curl http://{addr}/v1/chat/completions \
    -H 'content-type: application/json' \
    -d '{{"model":"chat-default","messages":[{{"role":"user","content":"Hello!"}}]}}' -i

  # OpenAI SDK (Python):
  from openai import OpenAI
  client = OpenAI(base_url="http://{addr}/v1", api_key="unused")
  print(client.chat.completions.create(model="chat-default",
        messages=[{{"role": "user", "content": "Hello!"}}]).choices[0].message.content)

Watch the x-nines-deployment and x-nines-attempts headers change during an outage.
Models: GET http://{addr}/v1/models   Health: GET http://{addr}/health   Stop: Ctrl-C
"#
    )
}
