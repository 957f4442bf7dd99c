//! Test harness: N chaos mocks plus the gateway built from a config template in which `{mockN}`
//! stands for the N-th mock's base URL (`http://addr/v1`) and `{mockN_root}` for its host root
//! (`http://addr`).

use nines_gateway::{AppState, Config, Runtime};
use nines_mock::{FaultScript, MockOptions, MockServer};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Harness {
    pub addr: SocketAddr,
    pub mocks: Vec<MockServer>,
    pub client: reqwest::Client,
    pub state: std::sync::Arc<AppState>,
    stop: Option<tokio::sync::watch::Sender<nines_gateway::Stop>>,
    server: Option<JoinHandle<std::io::Result<nines_gateway::Stopped>>>,
}

impl Harness {
    /// Starts `mocks` mock providers named mock0.. and the gateway on `template`.
    pub async fn start(mocks: usize, template: &str) -> Harness {
        let names: Vec<String> = (0..mocks).map(|i| format!("mock{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Harness::start_named(&names, template).await
    }

    /// Starts one mock per name (a mock's name appears in its replies, so equal names give
    /// equal replies) and the gateway on `template`, where `{mockN}` is the N-th mock.
    pub async fn start_named(names: &[&str], template: &str) -> Harness {
        let servers = mocks_named(names).await;
        let text = fill(template, &servers);
        let config = Config::parse(Path::new("test.toml"), &text, &test_env).unwrap();
        let state = AppState::new(Runtime::build(config).unwrap());
        Harness::serve(servers, state).await
    }

    /// Like [`Harness::start`], with the configuration read from `file` (written from
    /// `template`), so it can be reloaded ([`Harness::rewrite`], `POST /admin/reload`, a watch).
    pub async fn start_reloadable(mocks: usize, template: &str, file: &Path) -> Harness {
        let names: Vec<String> = (0..mocks).map(|i| format!("mock{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let servers = mocks_named(&names).await;
        std::fs::write(file, fill(template, &servers)).unwrap();
        let config = Config::load(file, &test_env).unwrap();
        let state = AppState::new(Runtime::build(config).unwrap());
        state.set_config_source(nines_gateway::state::ConfigSource {
            path: file.to_path_buf(),
            env: std::sync::Arc::new(test_env),
        });
        Harness::serve(servers, state).await
    }

    /// `template` with this harness's mocks filled in.
    pub fn fill(&self, template: &str) -> String {
        fill(template, &self.mocks)
    }

    async fn serve(servers: Vec<MockServer>, state: std::sync::Arc<AppState>) -> Harness {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener = tokio::net::TcpListener::bind(loopback).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::watch::channel(nines_gateway::Stop::Serving);
        let server = tokio::spawn(nines_gateway::serve(
            listener,
            std::sync::Arc::clone(&state),
            rx,
        ));
        Harness {
            addr,
            mocks: servers,
            client: reqwest::Client::new(),
            state,
            stop: Some(tx),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn mock(&self, i: usize) -> &MockServer {
        &self.mocks[i]
    }

    pub fn fault(&self, i: usize, script: Value) {
        let script: FaultScript = serde_json::from_value(script).unwrap();
        self.mocks[i].set_fault(Some(script));
    }

    pub fn chat_hits(&self, i: usize) -> u64 {
        self.mocks[i].hits("/v1/chat/completions")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `GET path` (with `bearer` as the key, if given), answered 200 with JSON.
    pub async fn get_json(&self, path: &str, bearer: Option<&str>) -> Value {
        let mut request = self.client.get(self.url(path));
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post_json("/v1/chat/completions", body).await
    }

    /// Graceful stop; returns the server's result.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(nines_gateway::Stop::Close);
        }
        if let Some(h) = self.server.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// The secrets test configurations name.
pub fn test_env(name: &str) -> Option<String> {
    match name {
        "TEST_KEY" => Some("sk-upstream-secret-0001".into()),
        "TEST_KEY_2" => Some("sk-upstream-secret-0002".into()),
        // The credentials nines-mock's Bedrock routes check signatures against (test only).
        "TEST_AWS_ACCESS_KEY_ID" => Some(nines_mock::clouds::TEST_AWS_ACCESS_KEY_ID.into()),
        "TEST_AWS_SECRET_ACCESS_KEY" => Some(nines_mock::clouds::TEST_AWS_SECRET_ACCESS_KEY.into()),
        _ => None,
    }
}

/// One mock per name, on ephemeral ports.
async fn mocks_named(names: &[&str]) -> Vec<MockServer> {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut servers = Vec::new();
    for name in names {
        let options = MockOptions {
            name: (*name).to_owned(),
            models: vec!["mock-model".into()],
            fault: None,
        };
        servers.push(MockServer::start(loopback, options).await.unwrap());
    }
    servers
}

/// `template` with each `{mockN}` (base URL) and `{mockN_root}` (host root) filled in.
fn fill(template: &str, servers: &[MockServer]) -> String {
    let mut text = template.to_owned();
    for (i, m) in servers.iter().enumerate() {
        text = text.replace(&format!("{{mock{i}}}"), &m.base_url());
        // Gemini and Replicate base URLs are host roots: their paths carry the version.
        text = text.replace(
            &format!("{{mock{i}_root}}"),
            &format!("http://{}", m.addr()),
        );
        let account = format!("{{mock{i}_service_account}}");
        if text.contains(&account) {
            let path = service_account_file(m, None);
            text = text.replace(&account, &path.display().to_string());
        }
        let foreign = format!("{{mock{i}_foreign_service_account}}");
        if text.contains(&foreign) {
            let other = "someone-else@nines-test-project.iam.gserviceaccount.com";
            let path = service_account_file(m, Some(other));
            text = text.replace(&foreign, &path.display().to_string());
        }
    }
    text
}

/// The test service account's key file (`nines-mock/fixtures/test-only/`) with its `token_uri`
/// at `mock`'s token endpoint (and, with `email`, claiming to be another account, which the
/// token endpoint refuses), written to a file of its own.
fn service_account_file(mock: &MockServer, email: Option<&str>) -> std::path::PathBuf {
    let mut file: Value =
        serde_json::from_str(nines_mock::clouds::TEST_SERVICE_ACCOUNT_FILE).unwrap();
    file["token_uri"] = Value::String(format!("http://{}/token", mock.addr()));
    if let Some(email) = email {
        file["client_email"] = Value::String(email.to_owned());
    }
    let path = std::env::temp_dir().join(format!(
        "nines-test-service-account-{}-{}.json",
        mock.addr().port(),
        if email.is_some() { "foreign" } else { "own" }
    ));
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

/// One deployment per mock, all in one priority model `chat`, plus `embed`.
pub fn chain(n: usize) -> String {
    // Probes off unless a test turns them on, so upstream hit counts are the requests' alone.
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n\n[resilience.probes]\nenabled = false\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[[deployments]]\nname = \"d{i}\"\nprovider = \"openai-compatible\"\nmodel = \"up-model-{i}\"\nbase_url = \"{{mock{i}}}\"\napi_keys = [\"env:TEST_KEY\"]\ncontext_window = {}\ntimeouts = {{ first_byte = \"2s\", idle = \"2s\", total = \"10s\" }}\n",
            8000 * (i + 1)
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("\"d{i}\"")).collect();
    text.push_str(&format!(
        "\n[[models]]\nname = \"chat\"\ndeployments = [{}]\n",
        names.join(", ")
    ));
    text.push_str(&format!(
        "\n[[models]]\nname = \"embed\"\ndeployments = [{}]\n",
        names.join(", ")
    ));
    text
}

pub fn hello(model: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
}

/// Reads a whole SSE body and returns the `data:` payloads in order.
pub async fn sse_data(response: reqwest::Response) -> Vec<String> {
    let text = response.text().await.unwrap();
    let mut decoder = nines_protocol::sse::SseDecoder::new();
    let mut events = Vec::new();
    decoder.feed(text.as_bytes(), &mut events).unwrap();
    decoder.finish(&mut events);
    events.into_iter().map(|e| e.data).collect()
}

/// The OpenAI error object of an error response.
pub async fn error_of(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.unwrap();
    let error = body.get("error").cloned().unwrap_or(Value::Null);
    assert!(
        error.get("message").and_then(Value::as_str).is_some(),
        "not OpenAI-shaped: {body}"
    );
    assert!(
        error.get("type").and_then(Value::as_str).is_some(),
        "not OpenAI-shaped: {body}"
    );
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "not OpenAI-shaped: {body}"
    );
    error
}

/// Polls `cond` every 10 ms until it holds; fails after `within`. For waiting on background
/// effects (probes, breakers) without guessing a fixed sleep.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Harness {
    /// Like [`Harness::start`], but the gateway's state is built by `build` from the runtime:
    /// `AppState::open` (store, Redis as configured), or a state with a test's own access layer.
    pub async fn start_with<F, Fut>(mocks: usize, template: &str, build: F) -> Harness
    where
        F: FnOnce(Runtime) -> Fut,
        Fut: std::future::Future<Output = std::sync::Arc<AppState>>,
    {
        let names: Vec<String> = (0..mocks).map(|i| format!("mock{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let servers = mocks_named(&names).await;
        let text = fill(template, &servers);
        let config = Config::parse(Path::new("test.toml"), &text, &test_env).unwrap();
        let state = build(Runtime::build(config).unwrap()).await;
        Harness::serve(servers, state).await
    }

    /// [`Harness::start_with`] with `AppState::open`: what `nines serve` does.
    pub async fn start_opened(mocks: usize, template: &str) -> Harness {
        Harness::start_with(mocks, template, |runtime| async move {
            AppState::open(runtime).await.unwrap()
        })
        .await
    }
}

/// A Postgres database of one test's own, so runs never see each other's rows.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin: sqlx::PgConnection,
}

impl TestDatabase {
    /// Drops the database (its connections too).
    pub async fn remove(mut self) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut self.admin)
        .await;
    }
}

/// A [`TestDatabase`] on the server `DATABASE_URL` names; `None`, after saying the test
/// skipped, when it is not set.
pub async fn fresh_postgres_database() -> Option<TestDatabase> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("skipped: DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)");
        return None;
    };
    let name = format!("nines_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = match <sqlx::PgConnection as sqlx::Connection>::connect(&url).await {
        Ok(c) => c,
        Err(e) => panic!("DATABASE_URL is set but Postgres is unreachable: {e}"),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some(TestDatabase {
        url: format!("{base}/{name}"),
        name,
        admin,
    })
}
