//! Several `nines serve` processes sharing one Redis: breaker state reaches every replica
//! within a second and a starting replica reads it; one replica probes a half-open slot; early
//! probes of an open slot are leased, one per interval across the replicas (each replica's own
//! without Redis); one replica probes each deployment (and another takes over when it dies);
//! limits are exact across
//! replicas on a three-master Redis Cluster and through Sentinel; with Redis gone each replica
//! falls back to its own breakers and says so.
//!
//! Redis runs as real `redis-server` processes on free local ports (`redis_servers.rs`); without
//! `redis-server` these tests say that they skipped.

use crate::process::{Nines, command, mock};
use crate::redis_servers::{RedisProcesses, missing_tools};
use crate::skipped;
use nines_mock::MockServer;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// The limited key (when a test sets an RPM limit) and an unlimited one for everything else.
pub(crate) const KEY: &str = "sk-replica-test-key-0001";
pub(crate) const FREE_KEY: &str = "sk-replica-test-key-0002";

/// What differs between the tests' configurations.
struct Setup<'a> {
    redis: &'a str,
    cluster: bool,
    prefix: &'a str,
    mock: &'a str,
    /// `[resilience.breaker]` and `[resilience.probes]` bodies.
    breaker: &'a str,
    probes: &'a str,
    /// The static key's RPM limit, if any (auth is on when set).
    rpm: Option<u64>,
}

fn config(s: &Setup<'_>) -> String {
    let auth = match s.rpm {
        // Limits refuse what they cannot account for (a Redis failure shows as a 503, never as
        // over-admission), with a generous deadline: test machines are busy.
        Some(rpm) => format!(
            "[limits]\non_redis_error = \"closed\"\nredis_timeout = \"1s\"\n\n[auth]\n[[auth.keys]]\nkey = \"{KEY}\"\nname = \"shared\"\nlimits = {{ rpm = {rpm} }}\n\
             [[auth.keys]]\nkey = \"{FREE_KEY}\"\nname = \"free\"\n"
        ),
        None => String::new(),
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[resilience.breaker]
{breaker}

[resilience.probes]
{probes}

[[deployments]]
name = "d"
provider = "openai-compatible"
model = "m"
base_url = "{mock}"
api_keys = ["sk-upstream"]

[[models]]
name = "chat"
deployments = ["d"]

[redis]
url = "{redis}"
cluster = {cluster}
prefix = "{prefix}"
probe_lease = "2s"

{auth}
"#,
        breaker = s.breaker,
        probes = s.probes,
        mock = s.mock,
        redis = s.redis,
        cluster = s.cluster,
        prefix = s.prefix,
    )
}

pub(crate) fn fault(mock: &MockServer, script: Value) {
    mock.set_fault(Some(serde_json::from_value(script).unwrap()));
}

pub(crate) fn prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("nines-test-{}-{nanos}", std::process::id())
}

pub(crate) struct Replica {
    pub(crate) nines: Nines,
    pub(crate) base: String,
}

/// Starts a gateway on `text` and waits until it shares breaker state through Redis.
pub(crate) async fn replica(text: &str) -> Replica {
    let dir = crate::serve::tempdir();
    let path = dir.join("nines.toml");
    std::fs::write(&path, text).unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]));
    let base = nines.base().await;
    let replica = Replica { nines, base };
    let deadline = Instant::now() + Duration::from_secs(20);
    // `/metrics` rather than readiness: readiness shows its checks only to the admin key.
    while !replica
        .metrics()
        .await
        .lines()
        .any(|l| l == "nines_redis_up 1")
    {
        assert!(
            Instant::now() < deadline,
            "not shared: {}",
            replica.ready().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica
}

impl Replica {
    pub(crate) async fn ready(&self) -> Value {
        crate::process::client()
            .get(format!("{}/health/ready", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub(crate) async fn metrics(&self) -> String {
        crate::process::client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A request with the unlimited key.
    pub(crate) async fn chat(&self) -> reqwest::Response {
        crate::process::client()
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(FREE_KEY)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn phase_is(&self, phase: &str) -> bool {
        let wanted =
            format!("nines_breaker_state{{deployment=\"d\",key_slot=\"d#0\",state=\"{phase}\"}} 1");
        self.metrics().await.lines().any(|l| l == wanted)
    }
}

/// Waits until `replica`'s breaker is in `phase`; returns how long that took.
pub(crate) async fn until_phase(replica: &Replica, phase: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while !replica.phase_is(phase).await {
        assert!(
            started.elapsed() < within,
            "{} not {phase} within {within:?}",
            replica.base
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// Replica A sees the failures and opens; B learns it within a second without sending a
/// request upstream; C, started afterwards, reads the open state at start. Each applied the
/// transition once, with its lag logged.
#[tokio::test]
async fn an_open_breaker_reaches_every_replica_within_a_second() {
    if let Some(why) = missing_tools() {
        return skipped(
            "an_open_breaker_reaches_every_replica_within_a_second",
            &why,
        );
    }
    let redis = RedisProcesses::single();
    let mock = mock("m").await;
    let prefix = prefix();
    let text = config(&Setup {
        redis: &redis.url(),
        cluster: false,
        prefix: &prefix,
        mock: &mock.base_url(),
        breaker: "consecutive_failures = 2\ncooldown = \"300s\"",
        probes: "enabled = false",
        rpm: None,
    });
    let a = replica(&text).await;
    let mut b = replica(&text).await;
    fault(&mock, json!({"status": 500}));
    for _ in 0..2 {
        assert!(a.chat().await.status().is_server_error());
    }
    assert!(a.phase_is("open").await, "two failures opened A's breaker");
    // Polling B's /metrics is as slow as a busy test machine; the lag B measured itself (the
    // transition's time on A to its application on B) is the figure that must stay under 1 s.
    until_phase(&b, "open", Duration::from_secs(10)).await;
    let applied = b
        .nines
        .logged("breaker state from another replica applied")
        .await;
    assert_eq!(applied[0]["transition"], "opened", "{applied:?}");
    assert!(applied[0]["lag_ms"].as_u64().unwrap() < 1000, "{applied:?}");

    // B fails fast without paying its own failures upstream.
    let hits = mock.hits("/v1/chat/completions");
    assert_eq!(b.chat().await.status(), 503);
    assert_eq!(
        mock.hits("/v1/chat/completions"),
        hits,
        "B sent nothing upstream"
    );

    // C starts after the fact and reads the state instead of starting blind.
    let c = replica(&text).await;
    assert!(c.phase_is("open").await, "C starts with the slot open");
    assert_eq!(c.chat().await.status(), 503);
    assert_eq!(mock.hits("/v1/chat/completions"), hits);

    // No echo: A applied nothing back, and published only its own transition.
    let mut a = a;
    assert!(
        a.nines
            .logged("breaker state from another replica applied")
            .await
            .is_empty()
    );
    let metrics = a.metrics().await;
    assert!(
        metrics.contains("nines_breaker_shared_transitions_total{direction=\"published\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("nines_redis_up 1"));
}

/// After the cooldown exactly one replica holds the half-open probe lease: of three concurrent
/// requests (one per replica) one probes upstream, the others fail fast; the probe's success
/// closes the breaker everywhere.
#[tokio::test]
async fn one_replica_at_a_time_probes_a_half_open_slot() {
    if let Some(why) = missing_tools() {
        return skipped("one_replica_at_a_time_probes_a_half_open_slot", &why);
    }
    let redis = RedisProcesses::single();
    let mock = mock("m").await;
    let prefix = prefix();
    let text = config(&Setup {
        redis: &redis.url(),
        cluster: false,
        prefix: &prefix,
        mock: &mock.base_url(),
        breaker: "consecutive_failures = 2\ncooldown = \"3s\"\nmax_cooldown = \"3s\"\nslow_start = \"0s\"",
        probes: "enabled = false",
        rpm: None,
    });
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&text).await);
    }
    fault(&mock, json!({"status": 500}));
    for _ in 0..2 {
        replicas[0].chat().await;
    }
    for r in &replicas {
        let started = Instant::now();
        while r.phase_is("closed").await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} opened",
                r.base
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The model answers again, slowly: the probe stays in flight while the others ask.
    fault(&mock, json!({"latency_ms": 1000}));
    for r in &replicas {
        until_phase(r, "half_open", Duration::from_secs(10)).await;
    }
    // One replica took the lease (leases are looked at every 100 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = mock.hits("/v1/chat/completions");
    let answers = futures_util_join(&replicas).await;
    // The two without the lease fail at once, without an attempt (there is no other slot).
    let ok = answers.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert_eq!(
        mock.hits("/v1/chat/completions"),
        hits + 1,
        "one probe upstream"
    );
    let holders: usize = logged_by_each(
        &mut replicas,
        "breaker half-open: this replica holds the probe lease",
    )
    .await
    .iter()
    .sum();
    assert!(
        logged_by_each(&mut replicas, "breaker half-open: admitting one probe")
            .await
            .iter()
            .all(|n| *n == 0),
        "no replica went half-open on its own"
    );
    assert!(holders >= 1, "the probe went through a lease");
    for r in &replicas {
        until_phase(r, "closed", Duration::from_secs(10)).await;
        assert_eq!(r.chat().await.status(), 200);
    }
}

/// One request per replica, all at once; their statuses.
async fn futures_util_join(replicas: &[Replica]) -> Vec<u16> {
    let mut tasks = Vec::new();
    for r in replicas {
        let base = r.base.clone();
        tasks.push(tokio::spawn(async move {
            crate::process::client()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(KEY)
                .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Three replicas, one deployment probed every 100 ms: one replica probes it (the models list
/// is asked about ten times a second, not thirty); when that replica dies, another takes over
/// within the lease (2 s).
#[tokio::test]
async fn one_replica_probes_each_deployment_and_another_takes_over() {
    if let Some(why) = missing_tools() {
        return skipped(
            "one_replica_probes_each_deployment_and_another_takes_over",
            &why,
        );
    }
    let redis = RedisProcesses::single();
    let mock = mock("m").await;
    let prefix = prefix();
    let text = config(&Setup {
        redis: &redis.url(),
        cluster: false,
        prefix: &prefix,
        mock: &mock.base_url(),
        breaker: "",
        probes: "interval = \"100ms\"",
        rpm: None,
    });
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&text).await);
    }
    // Leases settle within a renewal.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = mock.hits("/v1/models");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probed = mock.hits("/v1/models") - before;
    assert!(
        (5..=25).contains(&probed),
        "one prober at 100 ms asks ~20 times in 2 s, three would ask ~60: {probed}"
    );
    let mut holders: Vec<usize> = Vec::new();
    for (i, r) in replicas.iter_mut().enumerate() {
        if probes_d(r).await {
            holders.push(i);
        }
    }
    assert_eq!(holders.len(), 1, "exactly one prober: {holders:?}");

    // The prober dies without a word; another replica takes its lease over.
    let dead = replicas.remove(holders[0]);
    dead.nines.signal("KILL");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = mock.hits("/v1/models");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probed = mock.hits("/v1/models") - before;
    assert!((5..=25).contains(&probed), "a new prober: {probed}");
    let mut new_holders = 0;
    for r in &mut replicas {
        new_holders += usize::from(probes_d(r).await);
    }
    assert_eq!(new_holders, 1);
}

/// Whether the replica's last word on its prober leases includes deployment `d`.
async fn probes_d(replica: &mut Replica) -> bool {
    replica
        .nines
        .logged("this replica probes these deployments")
        .await
        .last()
        .is_some_and(|v| v["deployments"].as_str().unwrap_or("").contains("\"d\""))
}

/// Sends `n` requests with `key` spread over `replicas`, all at once; the number admitted (not
/// 429).
pub(crate) async fn admitted(replicas: &[Replica], key: &str, n: usize) -> usize {
    let mut tasks = Vec::new();
    for i in 0..n {
        let base = replicas[i % replicas.len()].base.clone();
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move {
            crate::process::client()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!(status == 200 || status == 429, "{status}");
        ok += usize::from(status == 200);
    }
    ok
}

/// A token bucket of `rpm` refills one request every `60/rpm` s: the most that may be admitted
/// by `elapsed`.
pub(crate) fn bucket_allows(rpm: u64, elapsed: Duration) -> usize {
    (rpm as f64 + elapsed.as_secs_f64() * rpm as f64 / 60.0).floor() as usize
}

/// On a three-master Redis Cluster: an RPM limit holds exactly across three replicas, every key
/// lives on one node (one hash tag), and breaker state still reaches every replica.
#[tokio::test]
async fn limits_and_breakers_hold_on_a_redis_cluster() {
    if let Some(why) = missing_tools() {
        return skipped("limits_and_breakers_hold_on_a_redis_cluster", &why);
    }
    let cluster = RedisProcesses::cluster();
    let mock = mock("m").await;
    let prefix = prefix();
    // The seed is a node that does not hold the prefix's slot: only a cluster client, following
    // MOVED, can work through it.
    let seed = cluster.node_not_owning(&format!("{{{prefix}}}"));
    let rpm = 10;
    let text = config(&Setup {
        redis: &seed,
        cluster: true,
        prefix: &prefix,
        mock: &mock.base_url(),
        breaker: "consecutive_failures = 2\ncooldown = \"300s\"",
        probes: "enabled = false",
        rpm: Some(rpm),
    });
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&text).await);
    }
    assert_eq!(replicas[0].ready().await["status"], "ready");

    let started = Instant::now();
    let ok = admitted(&replicas, KEY, 30).await;
    let allowed = bucket_allows(rpm, started.elapsed());
    assert!(
        ok >= rpm as usize && ok <= allowed,
        "admitted {ok} of 30 with rpm {rpm} (at most {allowed} by now)"
    );

    // Every key of this prefix is on one node: one hash tag, one slot.
    let keys: Vec<String> = cluster
        .keys()
        .into_iter()
        .filter(|k| k.contains(&prefix))
        .collect();
    assert!(!keys.is_empty());
    let per_node: Vec<usize> = cluster
        .ports
        .iter()
        .map(|&p| {
            let output = std::process::Command::new("redis-cli")
                .args([
                    "-p",
                    &p.to_string(),
                    "--scan",
                    "--pattern",
                    &format!("*{prefix}*"),
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).lines().count()
        })
        .collect();
    assert_eq!(
        per_node.iter().filter(|&&n| n > 0).count(),
        1,
        "keys spread over nodes: {per_node:?}"
    );

    // Breakers through the cluster: A opens, B and C learn it within a second.
    fault(&mock, json!({"status": 500}));
    let mut failed = 0;
    while !replicas[0].phase_is("open").await {
        let status = replicas[0].chat().await.status();
        assert!(status.is_server_error(), "{status}");
        failed += 1;
        assert!(failed < 10);
    }
    for r in &mut replicas[1..] {
        until_phase(r, "open", Duration::from_secs(10)).await;
        let applied = r
            .nines
            .logged("breaker state from another replica applied")
            .await;
        assert!(applied[0]["lag_ms"].as_u64().unwrap() < 1000, "{applied:?}");
    }
}

/// Through Sentinel: the replicas find the master by name and share its limits exactly.
#[tokio::test]
async fn limits_are_shared_through_a_sentinel_url() {
    if let Some(why) = missing_tools() {
        return skipped("limits_are_shared_through_a_sentinel_url", &why);
    }
    let sentinel = RedisProcesses::sentinel();
    exact_limits_through(&format!(
        "redis+sentinel://127.0.0.1:{}/mymaster",
        sentinel.ports[1]
    ))
    .await;
}

/// Through `rediss://`: the replicas speak TLS to Redis (a self-signed certificate, accepted
/// with `#insecure`) and share its limits exactly.
#[tokio::test]
async fn limits_are_shared_through_rediss() {
    if let Some(why) = missing_tools() {
        return skipped("limits_are_shared_through_rediss", &why);
    }
    let Some(tls) = RedisProcesses::tls() else {
        return skipped(
            "limits_are_shared_through_rediss",
            "openssl is not installed",
        );
    };
    exact_limits_through(&format!("rediss://127.0.0.1:{}/#insecure", tls.ports[0])).await;
}

/// Two replicas on the Redis at `url`: a key's RPM limit holds exactly across them.
async fn exact_limits_through(url: &str) {
    let mock = mock("m").await;
    let prefix = prefix();
    let rpm = 6;
    let text = config(&Setup {
        redis: url,
        cluster: false,
        prefix: &prefix,
        mock: &mock.base_url(),
        breaker: "",
        probes: "enabled = false",
        rpm: Some(rpm),
    });
    let replicas = vec![replica(&text).await, replica(&text).await];
    let started = Instant::now();
    let ok = admitted(&replicas, KEY, 20).await;
    assert!(
        ok >= rpm as usize && ok <= bucket_allows(rpm, started.elapsed()),
        "admitted {ok} with rpm {rpm}"
    );
}

/// Redis goes away: each replica says so (readiness `degraded`, `nines_redis_up 0`) and its
/// breakers decide alone — A opens on its own failures, B still tries upstream. Redis comes back:
/// they share again.
#[tokio::test]
async fn without_redis_each_replica_decides_alone_and_says_so() {
    if let Some(why) = missing_tools() {
        return skipped("without_redis_each_replica_decides_alone_and_says_so", &why);
    }
    let mut redis = RedisProcesses::single();
    let mock = mock("m").await;
    let prefix = prefix();
    let text = config(&Setup {
        redis: &redis.url(),
        cluster: false,
        prefix: &prefix,
        mock: &mock.base_url(),
        breaker: "consecutive_failures = 2\ncooldown = \"300s\"",
        probes: "enabled = false",
        rpm: None,
    });
    let a = replica(&text).await;
    let b = replica(&text).await;
    redis.kill(0);
    for r in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ready = r.ready().await;
            if ready["checks"]["shared_health"]["status"] == "local" {
                assert_eq!(ready["status"], "degraded", "{ready}");
                break;
            }
            assert!(Instant::now() < deadline, "{ready}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(r.metrics().await.contains("nines_redis_up 0"));
    }
    fault(&mock, json!({"status": 500}));
    for _ in 0..2 {
        a.chat().await;
    }
    assert!(a.phase_is("open").await, "A's own breaker still opens");
    let hits = mock.hits("/v1/chat/completions");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.phase_is("closed").await, "B cannot know");
    b.chat().await;
    assert!(
        mock.hits("/v1/chat/completions") > hits,
        "B tried upstream itself"
    );

    redis.restart_single();
    for r in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.ready().await["checks"]["shared_health"]["status"] != "shared" {
            assert!(Instant::now() < deadline, "shared again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What a replica logs when one request probes an open slot early.
const EARLY_PROBE: &str = "breaker open: every slot is, so one request probes it early";

/// The configuration of the early-probe tests: one deployment, opened by one failure for five
/// minutes, probed early once a second; no active probes.
fn early_probe_config(redis: &str, prefix: &str, mock: &MockServer) -> String {
    config(&Setup {
        redis,
        cluster: false,
        prefix,
        mock: &mock.base_url(),
        breaker: "consecutive_failures = 1\ncooldown = \"300s\"\nmax_cooldown = \"300s\"\nearly_probe_interval = \"1s\"",
        probes: "enabled = false",
        rpm: None,
    })
}

/// Two request loops per replica, each sending one request at a time (paced to one per 25 ms)
/// until `stop`; every answer's status and the slowest answer.
fn load(
    replicas: &[Replica],
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<u16>, Duration)> {
    let mut tasks = Vec::new();
    for r in replicas.iter().chain(replicas) {
        let base = r.base.clone();
        let stop = std::sync::Arc::clone(stop);
        tasks.push(tokio::spawn(async move {
            let client = crate::process::client();
            let mut pace = tokio::time::interval(Duration::from_millis(25));
            let (mut statuses, mut slowest) = (Vec::new(), Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                pace.tick().await;
                let sent = Instant::now();
                let status = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(FREE_KEY)
                    .json(
                        &json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                slowest = slowest.max(sent.elapsed());
                statuses.push(status);
            }
            (statuses, slowest)
        }));
    }
    tokio::spawn(async move {
        let (mut statuses, mut slowest) = (Vec::new(), Duration::ZERO);
        for t in tasks {
            let (s, d) = t.await.unwrap();
            statuses.extend(s);
            slowest = slowest.max(d);
        }
        (statuses, slowest)
    })
}

/// Runs [`load`] for `period`; the statuses and the slowest answer.
async fn load_for(replicas: &[Replica], period: Duration) -> (Vec<u16>, Duration) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(replicas, &stop);
    tokio::time::sleep(period).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    running.await.unwrap()
}

/// How many `wanted` lines each of `replicas` has logged so far.
async fn logged_by_each(replicas: &mut [Replica], wanted: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for r in replicas {
        counts.push(r.nines.logged(wanted).await.len());
    }
    counts
}

/// Three replicas see one slot open (its provider down, 503); requests keep coming to all three.
/// Early probes are leased in Redis, so at most one per `early_probe_interval` reaches the
/// provider across the cluster (three replicas alone would send three); every other request
/// answers at once. When the provider is back, the next early probe, whichever replica sends it,
/// closes the breaker on all three within about a second.
#[tokio::test]
async fn early_probes_are_leased_one_per_interval_across_replicas() {
    if let Some(why) = missing_tools() {
        return skipped(
            "early_probes_are_leased_one_per_interval_across_replicas",
            &why,
        );
    }
    let redis = RedisProcesses::single();
    let mock = mock("m").await;
    let prefix = prefix();
    let text = early_probe_config(&redis.url(), &prefix, &mock);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&text).await);
    }
    fault(&mock, json!({"status": 503}));
    assert!(replicas[0].chat().await.status().is_server_error());
    for r in &replicas {
        until_phase(r, "open", Duration::from_secs(10)).await;
    }
    assert_eq!(logged_by_each(&mut replicas, EARLY_PROBE).await, [0, 0, 0]);

    let hits = mock.hits("/v1/chat/completions");
    let started = Instant::now();
    let (statuses, slowest) = load_for(&replicas, Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    let probes = mock.hits("/v1/chat/completions") - hits;
    let per_replica = logged_by_each(&mut replicas, EARLY_PROBE).await;
    // One per interval, plus one for the edges of the measured period.
    let allowed = elapsed.as_secs_f64().ceil() as u64 + 1;
    let alone = 3 * elapsed.as_secs_f64().floor() as u64;
    eprintln!(
        "early probes in {elapsed:?} of {} requests: {probes} upstream across three replicas \
         ({per_replica:?} by replica; at most {allowed} allowed); three replicas probing alone \
         would send about {alone}; slowest answer {slowest:?}",
        statuses.len()
    );
    assert!(
        (2..=allowed).contains(&probes),
        "{probes} early probes in {elapsed:?}"
    );
    assert_eq!(
        per_replica.iter().sum::<usize>() as u64,
        probes,
        "every upstream call was a logged early probe"
    );
    assert!(
        statuses.iter().all(|s| *s == 502 || *s == 503),
        "{statuses:?}"
    );
    // Requests waiting for a lease or a probe's outcome get their answer, not the deadline.
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");

    // The provider is back: the next early probe closes the breaker, and every replica learns it.
    mock.set_fault(None);
    let recovered = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(&replicas, &stop);
    for r in &replicas {
        until_phase(r, "closed", Duration::from_secs(5)).await;
    }
    let closed_in = recovered.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Release);
    running.await.unwrap();
    eprintln!("closed on all three replicas {closed_in:?} after the provider came back");
    assert!(closed_in < Duration::from_secs(2), "{closed_in:?}");
    let closers: usize = logged_by_each(&mut replicas, "breaker closed: an early probe succeeded")
        .await
        .iter()
        .sum();
    assert_eq!(closers, 1, "one early probe closed it");
    for r in &replicas {
        assert_eq!(r.chat().await.status(), 200);
    }
}

/// Redis unreachable: no early-probe lease can be had, so each replica probes its own open slot
/// early, once per interval each, as a replica without Redis does.
#[tokio::test]
async fn without_redis_each_replica_probes_early_on_its_own() {
    if let Some(why) = missing_tools() {
        return skipped("without_redis_each_replica_probes_early_on_its_own", &why);
    }
    let mut redis = RedisProcesses::single();
    let mock = mock("m").await;
    let prefix = prefix();
    let text = early_probe_config(&redis.url(), &prefix, &mock);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&text).await);
    }
    redis.kill(0);
    for r in &replicas {
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.ready().await["checks"]["shared_health"]["status"] != "local" {
            assert!(Instant::now() < deadline, "{} still shared", r.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    fault(&mock, json!({"status": 503}));
    // Nothing is shared: each replica opens its own breaker on its own failure.
    for r in &replicas {
        assert!(r.chat().await.status().is_server_error());
        assert!(r.phase_is("open").await, "{} opened", r.base);
    }
    let hits = mock.hits("/v1/chat/completions");
    let started = Instant::now();
    let (statuses, slowest) = load_for(&replicas, Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    let probes = mock.hits("/v1/chat/completions") - hits;
    let per_replica = logged_by_each(&mut replicas, EARLY_PROBE).await;
    eprintln!(
        "without redis, early probes in {elapsed:?}: {probes} upstream ({per_replica:?} by \
         replica); slowest answer {slowest:?}"
    );
    assert!(
        per_replica.iter().all(|&n| n >= 2),
        "each replica probes alone: {per_replica:?}"
    );
    assert_eq!(per_replica.iter().sum::<usize>() as u64, probes);
    assert!(
        probes > elapsed.as_secs_f64().ceil() as u64 + 1,
        "more than one per interval across the three: {probes}"
    );
    assert!(
        statuses.iter().all(|s| *s == 502 || *s == 503),
        "{statuses:?}"
    );
}
