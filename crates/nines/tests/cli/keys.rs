//! `nines orgs|users|keys` against the config's SQLite store, then `nines serve` accepting the
//! key it printed and refusing it once revoked.

use crate::process::{Nines, client, command};
use crate::serve::tempdir;
use nines_mock::{MockOptions, MockServer};
use serde_json::{Value, json};

async fn run(args: &[&str]) -> Value {
    let out = command(args).output().await.unwrap();
    assert!(
        out.status.success(),
        "nines {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn keys_created_with_the_cli_work_until_revoked() {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap();
    let dir = tempdir();
    let path = dir.join("nines.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "d"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[models]]
name = "chat"
deployments = ["d"]

[auth]
cache_ttl = "100ms"

[store]
"#,
            mock.base_url()
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    run(&["orgs", "create", "acme", "--rpm", "100", "--config", config]).await;
    let user = run(&[
        "users", "create", "--org", "acme", "alice", "--config", config,
    ])
    .await;
    assert_eq!(user["name"], "alice");
    let key = run(&[
        "keys",
        "create",
        "--user",
        "acme/alice",
        "--models",
        "chat",
        "--tpm",
        "50000",
        "--config",
        config,
    ])
    .await;
    let secret = key["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-nines-"));
    let listed = run(&["keys", "list", "--config", config]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret));
    // The SQLite file lives in the data directory next to the config.
    assert!(dir.join("data").join("nines.db").exists());

    let mut nines = Nines::spawn(command(&["serve", "--config", config]));
    let base = nines.base().await;
    let http = client();
    let chat = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "100");
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    run(&[
        "keys",
        "revoke",
        key["id"].as_str().unwrap(),
        "--config",
        config,
    ])
    .await;
    // The running gateway sees it once its cache entry is older than auth.cache_ttl.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A key kept from another gateway: imported from stdin, it works as it is; a weak one is
    // refused with the rule it breaks, and the key itself is never printed.
    let legacy = "sk-legacy-Jh4Kq8Wm2Zr6Xt1Bv9Nc3Lp7Ds5Fg0";
    let imported = run_with_stdin(
        &[
            "keys",
            "import",
            "--user",
            "acme/alice",
            "--name",
            "legacy",
            "--config",
            config,
        ],
        legacy,
    )
    .await;
    let (status, stdout, stderr) = imported;
    assert!(status, "{stderr}");
    assert!(!stdout.contains(legacy) && !stderr.contains(legacy));
    let row: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(row["name"], "legacy");
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(legacy)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _, stderr) = run_with_stdin(
        &["keys", "import", "--user", "acme/alice", "--config", config],
        "sk-legacy-password1234",
    )
    .await;
    assert!(!status);
    assert!(stderr.contains("too easy to guess"), "{stderr}");
    assert!(!stderr.contains("password1234"), "{stderr}");

    let (status, _) = nines.terminate().await;
    assert!(status.success());
    assert_eq!(mock.hits("/v1/chat/completions"), 2);
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `nines args…` with `input` on stdin: (success, stdout, stderr).
async fn run_with_stdin(args: &[&str], input: &str) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut cmd = command(args);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{input}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
