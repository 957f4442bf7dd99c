//! The video job API end to end: the gateway on port 0 in front of Runway-dialect mocks, over
//! real HTTP, with exact upstream hit counts.

use crate::harness::error_of;
use nines_gateway::{AppState, Config, Runtime};
use nines_mock::{FaultScript, MockOptions, MockServer};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;

const TEXT: &str = "/v1/text_to_video";
const IMAGE: &str = "/v1/image_to_video";
const TASKS: &str = "/v1/tasks/{id}";
const SECRET: &str = "sk-upstream-secret-0001";

/// The gateway in front of `n` Runway mocks, deployments `w0..`, all in model `video`; plus a
/// chat-only model `chat` on an OpenAI-compatible deployment.
struct Videos {
    addr: SocketAddr,
    mocks: Vec<MockServer>,
    client: reqwest::Client,
    stop: Option<tokio::sync::watch::Sender<nines_gateway::Stop>>,
}

impl Drop for Videos {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(nines_gateway::Stop::Close);
        }
    }
}

impl Videos {
    async fn start(n: usize) -> Videos {
        let mut mocks = Vec::new();
        for i in 0..n {
            let options = MockOptions {
                name: format!("w{i}"),
                models: vec!["gen4_turbo".into()],
                fault: None,
            };
            mocks.push(
                MockServer::start("127.0.0.1:0".parse().unwrap(), options)
                    .await
                    .unwrap(),
            );
        }
        let mut text = String::from(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[resilience.probes]\nenabled = false\n",
        );
        for (i, mock) in mocks.iter().enumerate() {
            text.push_str(&format!(
                "\n[[deployments]]\nname = \"w{i}\"\nprovider = \"runway\"\nmodel = \"gen4_turbo\"\n\
                 base_url = \"http://{}\"\napi_keys = [\"env:TEST_KEY\"]\n\
                 timeouts = {{ first_byte = \"2s\", idle = \"2s\", total = \"10s\" }}\n",
                mock.addr()
            ));
        }
        text.push_str(&format!(
            "\n[[deployments]]\nname = \"c0\"\nprovider = \"openai-compatible\"\nmodel = \"up\"\n\
             base_url = \"{}\"\n",
            mocks[0].base_url()
        ));
        let names: Vec<String> = (0..n).map(|i| format!("\"w{i}\"")).collect();
        text.push_str(&format!(
            "\n[[models]]\nname = \"video\"\ndeployments = [{}]\n\n[[models]]\nname = \"chat\"\n\
             deployments = [\"c0\"]\n",
            names.join(", ")
        ));
        let config = Config::parse(Path::new("videos.toml"), &text, &|name| {
            (name == "TEST_KEY").then(|| SECRET.to_owned())
        })
        .unwrap();
        let state = AppState::new(Runtime::build(config).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::watch::channel(nines_gateway::Stop::Serving);
        tokio::spawn(nines_gateway::serve(listener, state, rx));
        Videos {
            addr,
            mocks,
            client: reqwest::Client::new(),
            stop: Some(tx),
        }
    }

    fn fault(&self, i: usize, script: Value) {
        let script: FaultScript = serde_json::from_value(script).unwrap();
        self.mocks[i].set_fault(Some(script));
    }

    async fn create(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("http://{}/v1/videos", self.addr))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, id: &str) -> reqwest::Response {
        self.client
            .get(format!("http://{}/v1/videos/{id}", self.addr))
            .send()
            .await
            .unwrap()
    }

    /// Creates a job that must be accepted; returns the job and the serving deployment and
    /// attempt count from the headers.
    async fn created(&self, body: &Value) -> (Value, String, String) {
        let response = self.create(body).await;
        assert_eq!(response.status(), 200);
        let (deployment, attempts) = served(&response);
        (response.json().await.unwrap(), deployment, attempts)
    }

    /// Polls until the job leaves `queued`/`running`; returns every state seen.
    async fn poll_to_end(&self, id: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        for _ in 0..10 {
            let response = self.get(id).await;
            assert_eq!(response.status(), 200);
            let job: Value = response.json().await.unwrap();
            let done = !matches!(job["status"].as_str(), Some("queued" | "running"));
            seen.push(job);
            if done {
                return seen;
            }
        }
        panic!("the job never ended: {seen:?}");
    }
}

fn served(response: &reqwest::Response) -> (String, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (header("x-nines-deployment"), header("x-nines-attempts"))
}

fn header<'a>(request: &'a nines_mock::RecordedRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn a_job_is_created_then_polled_until_it_succeeds() {
    let g = Videos::start(2).await;
    let (job, deployment, attempts) = g
        .created(&json!({"model": "video", "prompt": "a cat on a skateboard"}))
        .await;
    assert_eq!((deployment.as_str(), attempts.as_str()), ("w0", "1"));
    assert_eq!(job["object"], "video.job");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["model"], "video");
    let id = job["id"].as_str().unwrap();
    assert!(id.starts_with("vid_"), "{id}");
    assert!(job["created"].as_u64().unwrap() > 1_700_000_000);

    let recorded = g.mocks[0].requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].route, TEXT);
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(header(&recorded[0], "authorization"), Some(bearer.as_str()));
    assert_eq!(header(&recorded[0], "x-runway-version"), Some("2024-11-06"));
    let sent: Value = serde_json::from_str(&recorded[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"model": "gen4_turbo", "promptText": "a cat on a skateboard", "ratio": "1280:720", "duration": 5})
    );

    let seen = g.poll_to_end(id).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["status"], "running");
    assert_eq!(seen[0]["progress"], 0.5);
    let done = &seen[1];
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["progress"], 1.0);
    assert_eq!(done["id"], id);
    assert_eq!(done["model"], "video");
    assert_eq!(done["created"], job["created"]);
    let url = done["output_url"].as_str().unwrap();
    assert!(
        url.starts_with("https://mock.runway.invalid/videos/") && url.ends_with(".mp4"),
        "{url}"
    );
    let poll = g.get(id).await;
    assert_eq!(served(&poll), ("w0".to_owned(), "1".to_owned()));

    assert_eq!(g.mocks[0].hits(TEXT), 1);
    assert_eq!(g.mocks[0].hits(TASKS), 3);
    assert_eq!(g.mocks[0].total_hits(), 4);
    assert_eq!(g.mocks[1].total_hits(), 0);
    let polled = &g.mocks[0].requests()[1];
    assert_eq!(header(polled, "authorization"), Some(bearer.as_str()));
    assert_eq!(header(polled, "x-runway-version"), Some("2024-11-06"));
}

#[tokio::test]
async fn an_image_makes_it_image_to_video() {
    let g = Videos::start(1).await;
    let (job, _, _) = g
        .created(&json!({
            "model": "video",
            "prompt": "it moves",
            "image_url": "https://example.com/cat.png",
            "duration": 10,
            "ratio": "720:1280"
        }))
        .await;
    assert_eq!(job["status"], "queued");
    assert_eq!(g.mocks[0].hits(IMAGE), 1);
    assert_eq!(g.mocks[0].hits(TEXT), 0);
    let sent: Value = serde_json::from_str(&g.mocks[0].requests()[0].body).unwrap();
    assert_eq!(sent["promptImage"], "https://example.com/cat.png");
    assert_eq!(sent["duration"], 10);
    assert_eq!(sent["ratio"], "720:1280");
}

#[tokio::test]
async fn creation_fails_over_on_server_errors_and_rate_limits() {
    for status in [500, 429] {
        let g = Videos::start(2).await;
        g.fault(0, json!({"status": status}));
        let (job, deployment, attempts) = g
            .created(&json!({"model": "video", "prompt": "a cat"}))
            .await;
        assert_eq!(
            (deployment.as_str(), attempts.as_str()),
            ("w1", "2"),
            "{status}"
        );
        assert_eq!(g.mocks[0].hits(TEXT), 1, "{status}");
        assert_eq!(g.mocks[1].hits(TEXT), 1, "{status}");

        // The id names the deployment that took the task: polls go there, and only there.
        let seen = g.poll_to_end(job["id"].as_str().unwrap()).await;
        assert_eq!(seen.last().unwrap()["status"], "succeeded");
        assert_eq!(g.mocks[1].hits(TASKS), 2, "{status}");
        assert_eq!(g.mocks[0].total_hits(), 1, "{status}");
        assert_eq!(g.mocks[1].total_hits(), 3, "{status}");
    }
}

#[tokio::test]
async fn when_every_deployment_fails_the_answer_is_502_with_each_attempt() {
    let g = Videos::start(2).await;
    g.fault(0, json!({"status": 500}));
    g.fault(1, json!({"status": 503}));
    let response = g
        .create(&json!({"model": "video", "prompt": "a cat"}))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(served(&response).1, "2");
    let error = error_of(response).await;
    assert_eq!(error["code"], "all_attempts_failed");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("deployment=w0") && message.contains("deployment=w1"),
        "{message}"
    );
    assert!(!message.contains(SECRET));
    assert_eq!(g.mocks[0].hits(TEXT), 1);
    assert_eq!(g.mocks[1].hits(TEXT), 1);
}

#[tokio::test]
async fn a_refused_request_is_relayed_without_failover() {
    let g = Videos::start(2).await;
    let long = "x".repeat(50);
    g.fault(0, json!({"context_too_long": true}));
    let response = g.create(&json!({"model": "video", "prompt": long})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(served(&response).1, "1");
    let error = error_of(response).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("promptText is too long"),
        "{error}"
    );
    assert_eq!(g.mocks[0].hits(TEXT), 1);
    assert_eq!(g.mocks[1].total_hits(), 0);
}

#[tokio::test]
async fn a_failed_task_reports_failed_with_its_error() {
    let g = Videos::start(1).await;
    g.fault(0, json!({"prediction_status": "failed", "times": 1}));
    let (job, _, _) = g
        .created(&json!({"model": "video", "prompt": "a cat"}))
        .await;
    let seen = g.poll_to_end(job["id"].as_str().unwrap()).await;
    let end = seen.last().unwrap();
    assert_eq!(end["status"], "failed", "{seen:?}");
    assert_eq!(end["error"]["message"], "mock task failed");
    assert_eq!(end["error"]["code"], "INTERNAL");
    assert!(end.get("output_url").is_none());
    assert_eq!(g.mocks[0].hits(TEXT), 1);
    assert_eq!(g.mocks[0].hits(TASKS), 2);
}

#[tokio::test]
async fn unknown_and_garbled_ids_are_404() {
    let g = Videos::start(1).await;
    // A job on a task the provider does not know (deleted, or expired).
    let (job, _, _) = g
        .created(&json!({"model": "video", "prompt": "a cat"}))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(g.mocks[0].requests().len(), 1);
    g.mocks[0].reset(); // forgets the task
    let response = g.get(&id).await;
    assert_eq!(response.status(), 404);
    assert_eq!(served(&response), ("w0".to_owned(), "1".to_owned()));
    let error = error_of(response).await;
    assert_eq!(error["code"], "video_job_not_found");
    assert_eq!(g.mocks[0].hits(TASKS), 1);

    for garbled in [
        "nonsense",
        "vid_",
        "vid_%21%21",
        "vid_eyJub3QiOiJhbiBpZCJ9",
        &id[..id.len() - 3],
        &id.replacen("vid_", "vid_A", 1),
    ] {
        let response = g.get(garbled).await;
        assert_eq!(response.status(), 404, "{garbled}");
        assert_eq!(served(&response).1, "0", "{garbled}");
        let error = error_of(response).await;
        assert_eq!(error["code"], "video_job_not_found", "{garbled}");
    }
    assert_eq!(g.mocks[0].total_hits(), 1, "garbled ids reach no upstream");
}

#[tokio::test]
async fn bad_requests_unknown_models_and_models_without_runway() {
    let g = Videos::start(1).await;
    let response = g.create(&json!({"model": "nope", "prompt": "a cat"})).await;
    assert_eq!(response.status(), 404);
    assert_eq!(served(&response).1, "0");
    assert_eq!(error_of(response).await["code"], "model_not_found");

    let response = g.create(&json!({"model": "chat", "prompt": "a cat"})).await;
    assert_eq!(response.status(), 400);
    let error = error_of(response).await;
    assert_eq!(error["param"], "model");
    assert!(
        error["message"].as_str().unwrap().contains("runway"),
        "{error}"
    );

    let response = g.create(&json!({"model": "video"})).await;
    assert_eq!(response.status(), 400);
    let error = error_of(response).await;
    assert!(
        error["message"].as_str().unwrap().contains("prompt"),
        "{error}"
    );
    let response = g
        .create(&json!({"model": "video", "prompt": "a cat", "seconds": 5}))
        .await;
    assert_eq!(response.status(), 400, "unknown fields are refused");
    assert_eq!(g.mocks[0].total_hits(), 0);

    // Chat to a Runway-only model name is refused without an upstream call.
    let response = g
        .client
        .post(format!("http://{}/v1/chat/completions", g.addr))
        .json(
            &json!({"model": "runway/gen4_turbo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(g.mocks[0].total_hits(), 0);
}
