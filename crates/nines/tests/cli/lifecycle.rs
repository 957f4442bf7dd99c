//! `nines serve` as an operator handles it: SIGHUP reloads, SIGTERM drains in order, a second
//! signal stops at once, a new process takes over a shared port, and a socket handed over by the
//! service manager is served. Real processes, real signals, real sockets.

use crate::process::{Nines, client, command, mock};
use crate::serve::tempdir;
use nines_mock::{FaultScript, MockServer};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Two deployments (one per mock); `chat` routes to `routes` (deployment names).
fn config(server: &str, m0: &MockServer, m1: &MockServer, routes: &str) -> String {
    format!(
        r#"
[server]
{server}

[resilience.probes]
enabled = false

[[deployments]]
name = "d0"
provider = "openai-compatible"
model = "m0"
base_url = "{}"

[[deployments]]
name = "d1"
provider = "openai-compatible"
model = "m1"
base_url = "{}"

[[models]]
name = "chat"
deployments = [{routes}]
"#,
        m0.base_url(),
        m1.base_url()
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn body(stream: bool) -> Value {
    json!({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

async fn served_by(base: &str) -> String {
    let r = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-nines-deployment"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn start(path: &Path) -> Nines {
    Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]))
}

#[tokio::test]
async fn sighup_reloads_and_an_invalid_file_keeps_the_running_config() {
    let (m0, m1) = (mock("m0").await, mock("m1").await);
    let dir = tempdir();
    let path = dir.join("nines.toml");
    let server = "listen = \"127.0.0.1:0\"\ndrain_delay = \"0s\"";
    write(&path, &config(server, &m0, &m1, "\"d0\""));
    let mut nines = start(&path);
    let starting = nines.wait_for("starting").await;
    assert_eq!(starting["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(starting["deployments"], 2);
    assert_eq!(starting["models"], 1);
    assert_eq!(starting["socket"], "bound");
    let hash = starting["config_hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 16);
    nines.line_containing("auth is off").await;
    let base = nines.base().await;
    assert_eq!(served_by(&base).await, "d0");

    // A valid change: `chat` moves to d1 on SIGHUP.
    write(&path, &config(server, &m0, &m1, "\"d1\""));
    nines.signal("HUP");
    let reloaded = nines.wait_for("configuration reloaded").await;
    assert_ne!(reloaded["hash"], json!(hash));
    assert_eq!(served_by(&base).await, "d1");
    let health: Value = client()
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["config_hash"], reloaded["hash"]);

    // An invalid file: refused with its file and line; d1 keeps serving.
    write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = -1\n",
    );
    nines.signal("HUP");
    let refused = nines
        .wait_for("configuration reload refused; the running configuration stays")
        .await;
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("nines.toml:3") && error.contains("max_body_bytes"),
        "{error}"
    );
    assert_eq!(served_by(&base).await, "d1");

    let (status, lines) = nines.terminate().await;
    assert!(status.success());
    assert!(
        lines.iter().any(|l| l.contains("\"message\":\"stopped\"")),
        "{lines:?}"
    );
}

/// A connection that sends a request's head and part of its body, then waits.
fn half_sent(base: &str) -> std::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: nines\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":",
    )
    .unwrap();
    tcp
}

#[tokio::test]
async fn sigterm_drains_in_order_and_cuts_what_outlives_the_grace() {
    let (m0, m1) = (mock("m0").await, mock("m1").await);
    // Streams from m0 take ~0.4 s per event: longer than the drain delay and the grace together.
    m0.set_fault(Some(
        serde_json::from_value::<FaultScript>(json!({"chunk_delay_ms": 400})).unwrap(),
    ));
    let dir = tempdir();
    let path = dir.join("nines.toml");
    let server = "listen = \"127.0.0.1:0\"\ndrain_delay = \"1s\"\nshutdown_grace = \"1500ms\"";
    write(&path, &config(server, &m0, &m1, "\"d0\""));
    let mut nines = start(&path);
    let base = nines.base().await;
    let http = client();

    let stream = {
        let request = http
            .post(format!("{base}/v1/chat/completions"))
            .json(&body(true))
            .send();
        tokio::spawn(async move { request.await.unwrap().text().await.unwrap() })
    };
    let mut stalled = half_sent(&base);
    // A client that sends half a request head and stops: it must not hold the shutdown either.
    let mut slow_head = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    slow_head.write_all(b"POST /v1/chat/comp").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    nines.signal("TERM");
    nines
        .wait_for("shutting down: readiness is 503; still accepting during the drain delay")
        .await;
    // Draining: not ready, but still accepting and serving, asking clients to go elsewhere next.
    let ready = http
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "draining");
    let fresh = client()
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200, "answered while draining");
    assert_eq!(fresh.headers()["connection"], "close");
    assert!(signalled.elapsed() < Duration::from_secs(1));

    // The listener closes after the drain delay: new connections are refused.
    let addr = base.trim_start_matches("http://").to_owned();
    let refused_at = loop {
        if std::net::TcpStream::connect(&addr).is_err() {
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(3),
            "still accepting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refused_at >= Duration::from_millis(900), "{refused_at:?}");

    // The half-sent request does not hold the shutdown: it is answered 503 when the listener
    // closes.
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = stalled.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("shutting_down"), "{answer}");

    // The half-sent head is closed about a second after the listener closed.
    slow_head
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut nothing = Vec::new();
    let closed = slow_head.read_to_end(&mut nothing);
    assert!(
        closed.is_ok() && nothing.is_empty(),
        "{closed:?} {nothing:?}"
    );
    assert!(
        signalled.elapsed() < Duration::from_millis(2500),
        "{:?}",
        signalled.elapsed()
    );

    // The stream outlives the grace: it ends with the error event, never [DONE].
    let text = stream.await.unwrap();
    assert!(text.contains("stream_interrupted"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");

    let (status, lines) = nines.exited(Duration::from_secs(10)).await;
    assert!(status.success());
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
    let interrupted = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "request" && v["outcome"] == "interrupted")
        .unwrap_or_else(|| panic!("no interrupted request line: {lines:?}"));
    assert_eq!(interrupted["status"], 200);
    let stopped = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "stopped")
        .unwrap_or_else(|| panic!("no final line: {lines:?}"));
    assert_eq!(stopped["cut"], 1, "{stopped}");
    assert_eq!(stopped["forced"], false);
}

#[tokio::test]
async fn a_second_signal_stops_at_once() {
    let (m0, m1) = (mock("m0").await, mock("m1").await);
    m0.set_fault(Some(
        serde_json::from_value::<FaultScript>(json!({"chunk_delay_ms": 1000})).unwrap(),
    ));
    let dir = tempdir();
    let path = dir.join("nines.toml");
    let server = "listen = \"127.0.0.1:0\"\ndrain_delay = \"30s\"\nshutdown_grace = \"30s\"";
    write(&path, &config(server, &m0, &m1, "\"d0\""));
    let mut nines = start(&path);
    let base = nines.base().await;
    let stream = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body(true))
        .send();
    let _stream = tokio::spawn(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    nines.signal("INT");
    nines.line_containing("stopping in order").await;
    nines.signal("INT");
    let (_, lines) = nines.exited(Duration::from_secs(5)).await;
    assert!(signalled.elapsed() < Duration::from_secs(3));
    let stopped = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "stopped")
        .unwrap_or_else(|| panic!("no final line: {lines:?}"));
    assert_eq!(stopped["forced"], true);
}

/// A free port on loopback (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_new_process_takes_over_a_shared_port_without_a_refused_connection() {
    let (m0, m1) = (mock("m0").await, mock("m1").await);
    let dir = tempdir();
    let path: PathBuf = dir.join("nines.toml");
    let port = free_port();
    let server = format!(
        "listen = \"127.0.0.1:{port}\"\nreuse_port = true\ndrain_delay = \"500ms\"\nshutdown_grace = \"5s\""
    );
    write(&path, &config(&server, &m0, &m1, "\"d0\", \"d1\""));
    let base = format!("http://127.0.0.1:{port}");

    let mut a = start(&path);
    a.base().await;
    // A client that opens a fresh connection for every request, as long as the test runs.
    let (ok, failed, running) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(true)),
    );
    let load = {
        let (ok, failed, running) = (Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&running));
        client();
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let url = format!("{base}/v1/chat/completions");
        tokio::spawn(async move {
            let mut errors = Vec::new();
            while running.load(Ordering::Relaxed) {
                match fresh.post(&url).json(&body(false)).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("status {}", r.status()));
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{e:?}"));
                    }
                }
            }
            errors
        })
    };
    // Two rolling restarts: start the new process, wait until it listens, stop the old one.
    for _ in 0..2 {
        let mut b = start(&path);
        b.base().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.signal("TERM");
        let (status, _) = a.exited(Duration::from_secs(10)).await;
        eprintln!("A exited {:?}", std::time::SystemTime::now());
        assert!(status.success());
        a = b;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    let errors = load.await.unwrap();
    let _ = a.terminate().await;
    println!(
        "shared port: {} served, {} failed across 2 restarts (upstream answered {})",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        m0.hits("/v1/chat/completions") + m1.hits("/v1/chat/completions")
    );
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "too few requests to mean anything"
    );
    // With the kernel migrating a closing listener's queue, nothing is lost. Without it, a
    // connection that lands in the old listener's queue in the instant it closes is reset (a
    // connection error the client may retry; never a wrong answer): at most one per restart.
    let migrates = nines_gateway::server::listener::queue_migrates() == Some(true);
    let allowed = if migrates { 0 } else { 2 };
    assert!(
        failed.load(Ordering::Relaxed) <= allowed,
        "net.ipv4.tcp_migrate_req = {}: {errors:?}",
        u8::from(migrates)
    );
    assert!(
        errors.iter().all(|e| e.contains("ConnectionReset")),
        "only resets of connections still in the kernel's queue: {errors:?}"
    );
}

#[tokio::test]
async fn a_socket_handed_over_by_the_service_manager_is_served() {
    let Some(activate) = [
        "/usr/bin/systemd-socket-activate",
        "/bin/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists()) else {
        crate::skipped(
            "a_socket_handed_over_by_the_service_manager_is_served",
            "systemd-socket-activate is not installed (Debian package systemd)",
        );
        return;
    };
    let (m0, m1) = (mock("m0").await, mock("m1").await);
    let dir = tempdir();
    let path = dir.join("nines.toml");
    let port = free_port();
    // The address in the file is not used: the socket comes from LISTEN_FDS.
    write(
        &path,
        &config(
            "listen = \"127.0.0.1:9\"\ndrain_delay = \"0s\"",
            &m0,
            &m1,
            "\"d0\"",
        ),
    );
    let mut cmd = tokio::process::Command::new(activate);
    cmd.args([
        "-l",
        &format!("127.0.0.1:{port}"),
        env!("CARGO_BIN_EXE_nines"),
        "serve",
        "--config",
        path.to_str().unwrap(),
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut nines = Nines::spawn(cmd);
    // The socket exists before nines does (systemd-socket-activate binds it, then starts nines
    // on the first connection): this request waits in its backlog and is served once nines
    // has started.
    let addr = format!("127.0.0.1:{port}");
    let bound = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            bound.elapsed() < Duration::from_secs(5),
            "the socket was never bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let base = format!("http://{addr}");
    assert_eq!(served_by(&base).await, "d0");
    let starting = nines.wait_for("starting").await;
    assert_eq!(starting["socket"], "inherited (socket activation)");
    let _ = nines.terminate().await;
}
