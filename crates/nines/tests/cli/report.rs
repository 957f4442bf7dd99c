//! `nines report sla`: asking a running `nines serve` (`--url`), reading its store directly
//! (`--config`, after the gateway flushed its ledger on SIGTERM), and the errors.

use crate::process::{Nines, client, command, mock};
use crate::serve::tempdir;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-for-reports";

/// Runs `nines args…`; returns (success, stdout, stderr).
async fn run(args: &[&str]) -> (bool, String, String) {
    let mut cmd = command(args);
    cmd.env_remove("NINES_CONFIG").env_remove("NINES_ADMIN_KEY");
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn report(args: &[&str]) -> Value {
    let mut all = vec!["report", "sla"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = run(&all).await;
    assert!(ok, "nines {all:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn report_sla_asks_a_running_gateway_or_reads_its_store() {
    let broken = mock("broken").await;
    let good = mock("good").await;
    broken.set_fault(Some(
        serde_json::from_value(json!({"status": 500})).unwrap(),
    ));
    let dir = tempdir();
    let path = dir.join("nines.toml");
    // A flush interval of an hour: only a report (it flushes first) and the shutdown write.
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "broken"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[deployments]]
name = "good"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[models]]
name = "chat"
deployments = ["broken", "good"]

[auth]
enabled = false
admin_key = "{ADMIN}"

[store]

[telemetry]
flush_interval = "1h"
"#,
            broken.base_url(),
            good.base_url()
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", config]));
    let base = nines.base().await;
    let http = client();
    let chat = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let send = || async {
        let r = http
            .post(format!("{base}/v1/chat/completions"))
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-nines-deployment"], "good");
    };
    for _ in 0..3 {
        send().await;
    }

    let v = report(&["--url", &base, "--admin-key", ADMIN, "--window", "1h"]).await;
    assert_eq!(v["window"], "1h");
    let route = &v["routes"][0];
    assert_eq!(route["route"], "chat");
    assert_eq!(
        (&route["requests"], &route["failures"], &route["failovers"]),
        (&json!(3), &json!(0), &json!(3))
    );
    assert_eq!(route["availability"], 1.0);
    assert_eq!(v["deployments"][0]["deployment"], "broken");
    assert_eq!(v["deployments"][0]["availability"], 0.0);
    assert_eq!(v["deployments"][0]["errors"], json!({"server": 3}));
    assert_eq!(v["deployments"][1]["deployment"], "good");
    assert_eq!(v["deployments"][1]["requests"], 3);

    let (ok, csv, stderr) = run(&[
        "report",
        "sla",
        "--url",
        &base,
        "--admin-key",
        ADMIN,
        "--format",
        "csv",
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(csv.starts_with("kind,name,availability,"), "{csv}");
    assert!(csv.contains("\r\nroute,chat,1.000000,3,0,3,"), "{csv}");
    let (ok, md, _) = run(&[
        "report",
        "sla",
        "--url",
        &base,
        "--admin-key",
        ADMIN,
        "--format",
        "md",
    ])
    .await;
    assert!(ok);
    // Seconds of data in a 30-day window: the row says since when.
    assert!(
        md.contains("| chat (since 20") && md.contains("Z) | 100.000% | 3 | 0 | 3 |"),
        "{md}"
    );

    // The wrong key: the gateway's refusal, said plainly.
    let (ok, _, stderr) = run(&["report", "sla", "--url", &base, "--admin-key", "nope"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("401") && stderr.contains("admin key"),
        "{stderr}"
    );

    // Two more requests, then SIGTERM: the shutdown writes them to the store.
    send().await;
    send().await;
    let (status, _) = nines.terminate().await;
    assert!(status.success());
    let v = report(&["--config", config, "--window", "1h"]).await;
    assert_eq!(v["source"], "store");
    assert_eq!(v["routes"][0]["requests"], 5);
    assert_eq!(v["routes"][0]["failovers"], 5);
    assert_eq!(v["deployments"][0]["failures"], 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn report_sla_errors_say_what_is_wrong() {
    // Nothing listens on port 9 (discard) on the loopback.
    let (ok, stdout, stderr) = run(&[
        "report",
        "sla",
        "--url",
        "http://127.0.0.1:9",
        "--admin-key",
        "k",
    ])
    .await;
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("cannot reach the gateway at http://127.0.0.1:9"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["report", "sla", "--url", "http://127.0.0.1:9"]).await;
    assert!(!ok);
    assert!(stderr.contains("--admin-key"), "{stderr}");
    let (ok, _, stderr) = run(&[
        "report",
        "sla",
        "--url",
        "http://x",
        "--admin-key",
        "k",
        "--window",
        "soon",
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("window 'soon' is not a duration"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["report", "sla", "--format", "xml", "--url", "http://x"]).await;
    assert!(!ok);
    assert!(stderr.contains("format 'xml'"), "{stderr}");
    let (ok, _, stderr) = run(&["report", "sla"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("--url") && stderr.contains("--config"),
        "{stderr}"
    );

    // A config without a store has no ledger history to read.
    let dir = tempdir();
    let path = dir.join("nines.toml");
    std::fs::write(
        &path,
        r#"
[[deployments]]
name = "d"
provider = "openai-compatible"
model = "m"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "chat"
deployments = ["d"]
"#,
    )
    .unwrap();
    let (ok, _, stderr) = run(&["report", "sla", "--config", path.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(stderr.contains("no [store] section"), "{stderr}");
    let (ok, _, stderr) = run(&[
        "report",
        "sla",
        "--config",
        path.to_str().unwrap(),
        "--window",
        "1000d",
    ])
    .await;
    assert!(!ok);
    assert!(stderr.contains("telemetry.retention"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
