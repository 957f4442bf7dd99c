//! `nines loadtest` against `nines serve` in front of capacity-limited mock replicas: the figures
//! a run reports (overhead from `/metrics`, attempts from `x-nines-attempts`), and the headroom
//! verdict of `--find-capacity`, which must flip when the replicas' capacity is halved.
//!
//! Not a performance test: the mocks' capacity is scripted (slots × service time), and the SLO
//! and the peak sit far from the rates the steps offer, so the verdicts do not depend on how
//! fast this machine is.

use crate::process::{Nines, command};
use crate::serve::tempdir;
use nines_mock::{Capacity, MockServer};
use serde_json::{Value, json};

async fn replica(name: &str, slots: u32) -> MockServer {
    let mock = crate::process::mock(name).await;
    mock.set_capacity(Some(capacity(slots)));
    mock
}

/// `slots` requests at once, 100 ms each: 10 × `slots` requests a second per replica.
fn capacity(slots: u32) -> Capacity {
    serde_json::from_value(json!({
        "max_concurrency": slots,
        "service_ms": 100,
        "fill_max_tokens": true,
    }))
    .unwrap()
}

/// `nines serve` with one route over both replicas, balanced by in-flight count.
async fn gateway(a: &MockServer, b: &MockServer) -> (Nines, String) {
    let dir = tempdir();
    let path = dir.join("nines.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "replica-a"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[deployments]]
name = "replica-b"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[models]]
name = "chat"
deployments = ["replica-a", "replica-b"]
strategy = "least-busy"
"#,
            a.base_url(),
            b.base_url()
        ),
    )
    .unwrap();
    let mut cmd = command(&["serve", "--config", path.to_str().unwrap()]);
    // No line per request: nothing reads the pipe during the run, and a full pipe would stall nines.
    cmd.env("NINES_LOG", "info,nines::request=off");
    let mut nines = Nines::spawn(cmd);
    let base = nines.base().await;
    (nines, base)
}

/// Runs `nines loadtest args…`; returns (exit code, stdout, stderr).
async fn loadtest(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["loadtest"];
    all.extend_from_slice(args);
    let out = command(&all).output().await.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reports_latency_tokens_attempts_and_the_gateways_overhead() {
    let (a, b) = (replica("a", 4).await, replica("b", 4).await);
    // Every third request replica-a gets fails: nines fails over, the client never sees it.
    a.set_fault(Some(
        serde_json::from_value(json!({"status": 503, "fail_percent": 34})).unwrap(),
    ));
    let (nines, base) = gateway(&a, &b).await;
    let (code, stdout, stderr) = loadtest(&[
        "--url",
        &base,
        "--model",
        "chat",
        "--concurrency",
        "4",
        "--duration",
        "2s",
        "--prompt-tokens",
        "50:1,200:1",
        "--output-tokens",
        "8:1,16:1",
        "--stream-share",
        "0.5",
        "--format",
        "json",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let s = &report["summary"];
    let requests = s["requests"].as_u64().unwrap();
    assert!(requests >= 8, "{s:#}");
    assert_eq!(s["failed"], 0, "failovers are not errors: {s:#}");
    assert!(s["streamed"].as_u64().unwrap() > 0 && s["streamed"].as_u64().unwrap() < requests);
    // fill_max_tokens: each answer is as long as its max_tokens (8 or 16).
    let tokens = s["output_tokens"].as_u64().unwrap();
    assert!(tokens >= 8 * requests && tokens <= 16 * requests, "{s:#}");
    // Each request waits at least one 100 ms service time.
    assert!(s["ttft"]["p50_ms"].as_f64().unwrap() >= 100.0, "{s:#}");
    assert!(
        s["attempts"]["2"].as_u64().unwrap_or(0) > 0,
        "x-nines-attempts: {s:#}"
    );
    assert!(s["deployments"]["replica-b"].as_u64().unwrap() > 0);
    // The gateway's own overhead from /metrics covers this run's requests.
    let overhead = &report["overhead"];
    assert_eq!(overhead["requests"].as_u64(), Some(requests), "{report:#}");
    assert!(overhead["mean_ms"].as_f64().unwrap() < 100.0, "{overhead}");

    // The text report names the same figures.
    let (code, text, _) = loadtest(&[
        "--url",
        &base,
        "--model",
        "chat",
        "--rate",
        "10",
        "--duration",
        "1s",
        "--ramp",
        "500ms",
    ])
    .await;
    assert_eq!(code, Some(0));
    assert!(text.contains("open loop, 10 req/s"), "{text}");
    assert!(text.contains("time to first token"), "{text}");
    assert!(
        text.contains("gateway overhead (nines_overhead_seconds"),
        "{text}"
    );
    drop(nines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_headroom_verdict_flips_when_capacity_is_halved() {
    // Two replicas of 2 slots × 100 ms: 20 req/s each, 40 together. The steps offer 7, 14, 28
    // and 56 req/s; the SLO (p99 TTFT 500 ms) holds at 28 and breaks at 56, where the queue grows
    // by 16 requests a second. One replica lost leaves 14 ≥ the 10 req/s peak.
    let (a, b) = (replica("a", 2).await, replica("b", 2).await);
    let (nines, base) = gateway(&a, &b).await;
    let dir = tempdir();
    let find = |dir: String| {
        let base = base.clone();
        async move {
            loadtest(&[
                "--url",
                &base,
                "--model",
                "chat",
                "--find-capacity",
                "--slo-ttft-p99",
                "500ms",
                "--start-rate",
                "7",
                "--factor",
                "2",
                "--max-rate",
                "60",
                "--step",
                "2s",
                "--refine",
                "0",
                "--peak",
                "10",
                "--prompt-tokens",
                "50",
                "--output-tokens",
                "10",
                "--stream-share",
                "0.5",
                "--format",
                "json",
                "--report-dir",
                &dir,
            ])
            .await
        }
    };
    let full = dir.join("full");
    let (code, stdout, stderr) = find(full.to_str().unwrap().to_owned()).await;
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    let route = &report["routes"][0];
    let verdict = &route["verdict"];
    assert_eq!(verdict["call"], "headroom", "{route:#}");
    assert_eq!(code, Some(0));
    assert_eq!(route["sustainable_rps"], 28.0, "{route:#}");
    assert_eq!(verdict["replicas"], 2);
    assert_eq!(verdict["replicas_needed"], 2);
    assert!(
        verdict["text"]
            .as_str()
            .unwrap()
            .contains("2+ with headroom"),
        "{verdict}"
    );

    // Halve each replica's capacity: 10 req/s each. 28 req/s now queues 8 a second (p99 TTFT
    // near 900 ms), so 14 is the sustainable rate and one replica lost leaves 7 < 10.
    a.set_capacity(Some(capacity(1)));
    b.set_capacity(Some(capacity(1)));
    let half = dir.join("half");
    let (code, stdout, stderr) = find(half.to_str().unwrap().to_owned()).await;
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    let route = &report["routes"][0];
    assert_eq!(route["verdict"]["call"], "no_headroom", "{route:#}");
    assert_eq!(code, Some(2), "no headroom is exit status 2");
    assert_eq!(route["sustainable_rps"], 14.0, "{route:#}");
    assert_eq!(route["verdict"]["replicas_needed"], 3);

    // The reports on disk: JSON, Markdown, and a self-contained page with the chart.
    let page = std::fs::read_to_string(half.join("capacity.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("data-call=\"no_headroom\""));
    assert!(
        !page.contains("http://") || !page.contains("<script"),
        "no scripts, no external assets"
    );
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    let md = std::fs::read_to_string(half.join("capacity.md")).unwrap();
    assert!(md.contains("NO HEADROOM"), "{md}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("capacity.json")).unwrap())
            .unwrap();
    assert_eq!(json["routes"][0]["verdict"]["call"], "headroom");
    drop(nines);
}

#[tokio::test]
async fn bad_input_is_a_clear_error() {
    for (args, expected) in [
        (
            vec!["--url", "http://127.0.0.1:9", "--stream-share", "2"],
            "--stream-share 2",
        ),
        (
            vec!["--url", "http://127.0.0.1:9", "--rate", "0"],
            "--rate 0",
        ),
        (vec!["--url", "ftp://127.0.0.1:9"], "only http and https"),
        (
            vec!["--url", "http://127.0.0.1:9", "--body", "{nope"],
            "--body is not JSON",
        ),
        (
            vec!["--url", "http://127.0.0.1:9", "--prompt-tokens", "x"],
            "--prompt-tokens",
        ),
        (
            vec![
                "--url",
                "http://127.0.0.1:9",
                "--find-capacity",
                "--peak",
                "fast",
            ],
            "--peak fast",
        ),
    ] {
        let (code, _, stderr) = loadtest(&args).await;
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Nothing listening: every request fails as `connect`, and the run still ends and reports.
    let (code, stdout, _) = loadtest(&[
        "--url",
        "http://127.0.0.1:9",
        "--duration",
        "300ms",
        "--concurrency",
        "1",
        "--format",
        "json",
    ])
    .await;
    assert_eq!(code, Some(0));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        report["summary"]["errors"]["connect"].as_u64().unwrap() > 0,
        "{report:#}"
    );
}

#[tokio::test]
async fn health_checks_a_url() {
    let mock = replica("h", 1).await;
    let ok = command(&["health", &format!("http://{}/v1/models", mock.addr())])
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = command(&["health", &format!("http://{}/nope", mock.addr())])
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("status 404"));
    let down = command(&["health", "http://127.0.0.1:9/health/live"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));
}
