//! `nines serve` as a process: config from a file, secrets from the environment, graceful stop.

use crate::process::{Nines, command, mock};
use serde_json::{Value, json};

const SECRET: &str = "sk-live-very-secret-key-000111";

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("nines.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn config_for(mock: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "broken"
provider = "openai-compatible"
model = "m"
base_url = "{mock}"
api_keys = ["env:NINES_TEST_SECRET"]

[[deployments]]
name = "good"
provider = "openai-compatible"
model = "m"
base_url = "{mock}"
api_keys = ["env:NINES_TEST_SECRET"]

[[models]]
name = "chat"
deployments = ["broken", "good"]
"#
    )
}

#[tokio::test]
async fn serves_fails_over_keeps_secrets_out_of_logs_and_stops_gracefully() {
    let mock = mock("m").await;
    // The first attempt fails with a 401 whose body echoes the key, as some providers do.
    let fault = json!({"status": 401, "times": 1, "body": format!("{{\"error\":{{\"message\":\"Incorrect API key provided: {SECRET}\"}}}}")});
    mock.set_fault(Some(serde_json::from_value(fault).unwrap()));
    let dir = tempdir();
    let path = write_config(&dir, &config_for(&mock.base_url()));
    let mut cmd = command(&["serve", "--config", path.to_str().unwrap()]);
    cmd.env("NINES_TEST_SECRET", SECRET);
    let mut nines = Nines::spawn(cmd);
    let base = nines.base().await;

    let client = crate::process::client();
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "good");
    let text = response.text().await.unwrap();
    assert!(!text.contains(SECRET));
    assert_eq!(mock.hits("/v1/chat/completions"), 2);

    // Everything fails: the error body names attempts but never the key.
    mock.set_fault(Some(serde_json::from_value(json!({"status": 401, "body": format!("{{\"error\":{{\"message\":\"bad key {SECRET}\"}}}}")})).unwrap()));
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("class=upstream_auth"), "{message}");

    let (status, lines) = nines.terminate().await;
    assert!(status.success(), "exit {status:?}");
    assert!(
        lines.iter().any(|l| l.contains("\"message\":\"request\"")),
        "one log line per request"
    );
    for line in &lines {
        assert!(!line.contains(SECRET), "secret in log line: {line}");
    }
    // The upstream did receive the key (so the test would notice if it were never used).
    let auth_seen = mock.requests().iter().any(|r| {
        r.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v.contains(SECRET))
    });
    assert!(auth_seen);
}

#[tokio::test]
async fn missing_secret_is_a_clear_startup_error() {
    let dir = tempdir();
    let path = write_config(&dir, &config_for("http://127.0.0.1:9/v1"));
    let mut cmd = command(&["serve", "--config", path.to_str().unwrap()]);
    cmd.env_remove("NINES_TEST_SECRET");
    let output = cmd.output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NINES_TEST_SECRET is not set"), "{stderr}");
    assert!(
        stderr.contains("nines.toml:10:"),
        "names file and line: {stderr}"
    );
    assert!(stderr.contains("deployments[0].api_keys[0]"), "{stderr}");
}

#[tokio::test]
async fn mock_subcommand_serves_openai() {
    let mut nines = Nines::spawn(command(&[
        "mock",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "cli-mock",
    ]));
    let line = nines.wait_for("mock listening").await;
    let base = line["base_url"].as_str().unwrap().to_owned();
    let reply: Value = crate::process::client()
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("cli-mock")
    );
    let (status, _) = nines.terminate().await;
    assert!(status.success());
}

pub fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "nines-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
