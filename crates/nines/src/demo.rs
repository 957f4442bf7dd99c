//! `nines demo`: the gateway with three in-process mock providers, no keys, no network. One
//! provider has scripted outages so the failover can be watched.

use nines_gateway::{AppState, Config, Runtime};
use nines_mock::{MockOptions, MockServer};
use std::path::Path;
use tokio::net::TcpListener;

/// The primary is down for 8 s out of every 20 s; requests keep being answered by the others.
const OUTAGE: &str = r#"{"cycle_period_ms": 20000, "cycle_down_ms": 8000, "status": 503}"#;

pub async fn run(listen: &str) -> Result<(), String> {
    let loopback = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let outage = serde_json::from_str(OUTAGE).map_err(|e| format!("demo fault script: {e}"))?;
    let primary = start(loopback, "primary (scripted outages)", Some(outage)).await?;
    let secondary = start(loopback, "secondary", None).await?;
    let tertiary = start(loopback, "tertiary", None).await?;

    let text = demo_config(
        listen,
        &primary.base_url(),
        &secondary.base_url(),
        &tertiary.base_url(),
    );
    let config = Config::parse(Path::new("<demo>"), &text, &|_| None).map_err(|e| e.to_string())?;
    let grace = config.server.shutdown_grace;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e} (try --listen 127.0.0.1:0)"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(addr = %addr, "listening");
    println!("{}", banner(&addr.to_string()));
    let state = AppState::new(Runtime::build(config)?);
    let result = nines_gateway::serve(listener, state, crate::shutdown_signal(), grace).await;
    drop((primary, secondary, tertiary));
    result.map_err(|e| format!("server error: {e}"))
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

fn demo_config(listen: &str, primary: &str, secondary: &str, tertiary: &str) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
shutdown_grace = "5s"

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

fn banner(addr: &str) -> String {
    format!(
        r#"
nines demo is running at http://{addr}  (three mock providers; "primary" is down 8 s of every 20 s)

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
