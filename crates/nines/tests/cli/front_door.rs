//! The front door at the common 1,024 file-descriptor limit: `nines serve` under `prlimit`,
//! 1,100 attacker sockets that connect and send nothing, and a normal client that must still get
//! an answer (served, or a fast 503 it can retry), with the condition in the log and a metric.
//! At the cap (480 here: two descriptors per connection after a reserve), the oldest idle socket
//! is closed to make room, so the client is normally served.

use crate::process::{Nines, client};
use crate::serve::tempdir;
use nines_mock::{MockOptions, MockServer};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::process::Command;

const TEST: &str =
    "front_door::at_a_1024_descriptor_limit_1100_idle_sockets_do_not_silence_the_gateway";

#[tokio::test]
async fn at_a_1024_descriptor_limit_1100_idle_sockets_do_not_silence_the_gateway() {
    let Ok(prlimit) = which("prlimit") else {
        return crate::skipped(TEST, "no prlimit (Debian: util-linux)");
    };
    // This process holds the attackers' ends: it needs more than 1,100 descriptors itself.
    let own = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if own < 1400 {
        return crate::skipped(
            TEST,
            &format!("this process may open only {own} descriptors"),
        );
    }
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap();
    let dir = tempdir();
    let path = dir.join("nines.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndrain_delay = \"0s\"\n\n[resilience.probes]\nenabled = false\n\n\
             [[deployments]]\nname = \"d0\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\nbase_url = \"{}\"\n\n\
             [[models]]\nname = \"chat\"\ndeployments = [\"d0\"]\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(prlimit);
    cmd.args(["--nofile=1024:1024", "--", env!("CARGO_BIN_EXE_nines")])
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut nines = Nines::spawn(cmd);
    let base = nines.base().await;
    // It says at start that 1,024 descriptors cannot hold the default 10,000 connections.
    let capped = nines
        .line_containing("file-descriptor limit cannot hold")
        .await;
    assert!(capped.contains("\"cap\":480"), "{capped}");
    let addr = base.trim_start_matches("http://").to_owned();

    let mut attackers = Vec::with_capacity(1100);
    for _ in 0..1100 {
        match TcpStream::connect(&addr).await {
            Ok(tcp) => attackers.push(tcp),
            // The kernel's queue can be full for a moment while nines answers the excess.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    assert!(
        attackers.len() >= 1000,
        "only {} attacker sockets",
        attackers.len()
    );

    // A normal client still gets an answer, and a fast one (a guard, not a timing).
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client()
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send(),
    )
    .await
    .expect("no answer with 1,100 idle sockets open")
    .expect("the request failed");
    let status = response.status().as_u16();
    assert!(matches!(status, 200 | 503), "{status}");
    if status == 503 {
        assert_eq!(response.headers()["retry-after"], "1");
    }
    // The condition is in the log…
    nines.line_containing("connection limit reached").await;

    // …and in a metric, read once the attackers are gone.
    drop(attackers);
    let mut metrics = String::new();
    for _ in 0..200 {
        if let Ok(r) = client().get(format!("{base}/metrics")).send().await
            && r.status() == 200
        {
            metrics = r.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let count = |reason: &str| {
        let prefix = format!("nines_connections_closed_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {reason} sample in\n{metrics}"))
    };
    // 1,100 sockets and a client against a cap of 480: the rest made room by closing the oldest
    // idle sockets (or, with none idle, were answered 503).
    let (evicted, refused) = (count("evicted_at_limit"), count("refused_at_limit"));
    assert!(
        evicted + refused >= 600.0,
        "evicted {evicted}, refused {refused}"
    );
    assert!(metrics.contains("nines_connections_limit 480"), "{metrics}");
    // Served again.
    let served = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    nines.signal("TERM");
    let (exit, _) = nines.exited(Duration::from_secs(20)).await;
    assert!(exit.success(), "{exit}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([std::path::PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
