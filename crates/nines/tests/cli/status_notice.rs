//! `nines status notice add|list|resolve` against a running `nines serve` (with a store): the
//! notice reaches the page and the JSON, is resolved by id, and errors say what is wrong.

use crate::process::{Nines, client, command};
use crate::serve::tempdir;
use serde_json::Value;

const ADMIN: &str = "admin-key-for-notices";

/// Runs `nines status notice args…` against `url`; returns (success, stdout, stderr).
async fn notice(url: &str, key: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["status", "notice"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", url]);
    let mut cmd = command(&all);
    cmd.env_remove("NINES_ADMIN_KEY").env_remove("NINES_URL");
    if let Some(key) = key {
        cmd.env("NINES_ADMIN_KEY", key);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn status_notices_are_posted_listed_and_resolved_from_the_command_line() {
    let dir = tempdir();
    let path = dir.join("nines.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[resilience.probes]\nenabled = false\n\n\
             [[deployments]]\nname = \"d\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\n\
             base_url = \"http://127.0.0.1:9/v1\"\n\n[[models]]\nname = \"chat\"\n\
             deployments = [\"d\"]\n\n[auth]\nenabled = false\nadmin_key = \"{ADMIN}\"\n\n[store]\n"
        ),
    )
    .unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]));
    let base = nines.base().await;

    let (ok, stdout, stderr) = notice(
        &base,
        Some(ADMIN),
        &[
            "add",
            "--kind",
            "maintenance",
            "Upgrading <the> database",
            "--body",
            "Expect slower answers.",
            "--models",
            "chat",
            "--starts-at",
            "2099-03-01T22:00:00Z",
            "--ends-at",
            "2099-03-01T23:00:00Z",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    let posted: Value = serde_json::from_str(&stdout).unwrap();
    let id = posted["id"].as_str().unwrap().to_owned();
    assert_eq!(posted["kind"], "maintenance");
    assert_eq!(posted["models"], serde_json::json!(["chat"]));

    let http = client();
    let html = http
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Upgrading &lt;the&gt; database"), "{html}");

    let (ok, stdout, _) = notice(&base, Some(ADMIN), &["list"]).await;
    assert!(ok);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["data"][0]["id"], id.as_str());

    let (ok, stdout, stderr) = notice(&base, Some(ADMIN), &["resolve", &id]).await;
    assert!(ok, "{stderr}");
    let resolved: Value = serde_json::from_str(&stdout).unwrap();
    assert!(resolved["resolved_at_ms"].as_u64().is_some());
    let public: Value = http
        .get(format!("{base}/status.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["notices"]["active"], serde_json::json!([]));
    assert_eq!(public["notices"]["past"][0]["id"], id.as_str());

    // Errors: the gateway's reason, a missing key, a malformed id; each a non-zero exit.
    let (ok, _, stderr) = notice(&base, Some(ADMIN), &["add", "--kind", "outage", "x"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("400") && stderr.contains("kind must be"),
        "{stderr}"
    );
    let (ok, _, stderr) = notice(&base, None, &["list"]).await;
    assert!(!ok);
    assert!(stderr.contains("--admin-key"), "{stderr}");
    let (ok, _, stderr) = notice(&base, Some("wrong"), &["list"]).await;
    assert!(!ok);
    assert!(stderr.contains("401"), "{stderr}");
    let (ok, _, stderr) = notice(&base, Some(ADMIN), &["resolve", "../keys"]).await;
    assert!(!ok);
    assert!(stderr.contains("is not a notice id"), "{stderr}");
    let (ok, _, stderr) = notice(&base, Some(ADMIN), &["resolve", "ntc_nope"]).await;
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
    let (status, _) = nines.terminate().await;
    assert!(status.success());
}
