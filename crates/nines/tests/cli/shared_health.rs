//! Several `nines serve` processes sharing one Redis: breaker state reaches every replica
//! within a second and a starting replica reads it; one replica probes a half-open slot; one
//! replica probes each deployment (and another takes over when it dies); limits are exact across
//! replicas on a three-master Redis Cluster and through Sentinel; with Redis gone each replica
//! falls back to its own breakers and says so.
//!
//! Redis runs as real `redis-server` processes on free local ports (`redis_servers.rs`); without
//! `redis-server` these tests say that they skipped.

use crate::process::{Nines, command};
use crate::redis_servers::{RedisProcesses, missing_tools};
use crate::skipped;
use nines_mock::{MockOptions, MockServer};
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

pub(crate) async fn mock() -> MockServer {
    MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            name: "m".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
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
    let mock = mock().await;
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
    let applied = b.nines.logged("breaker state from another replica applied");
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
    let mock = mock().await;
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
    let mut holders = 0;
    for r in &mut replicas {
        holders += r
            .nines
            .logged("breaker half-open: this replica holds the probe lease")
            .len();
        assert!(
            r.nines
                .logged("breaker half-open: admitting one probe")
                .is_empty(),
            "no replica went half-open on its own"
        );
    }
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
    let mock = mock().await;
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
    let holders: Vec<usize> = (0..3).filter(|&i| probes_d(&mut replicas[i])).collect();
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
        new_holders += usize::from(probes_d(r));
    }
    assert_eq!(new_holders, 1);
}

/// Whether the replica's last word on its prober leases includes deployment `d`.
fn probes_d(replica: &mut Replica) -> bool {
    replica
        .nines
        .logged("this replica probes these deployments")
        .last()
        .is_some_and(|v| v["deployments"].as_str().unwrap_or("").contains("\"d\""))
}

/// Sends `n` requests spread over `replicas`, all at once; the number admitted (not 429).
pub(crate) async fn admitted(replicas: &[Replica], n: usize) -> usize {
    let mut tasks = Vec::new();
    for i in 0..n {
        let base = replicas[i % replicas.len()].base.clone();
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
    let mock = mock().await;
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
    let ok = admitted(&replicas, 30).await;
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
        let applied = r.nines.logged("breaker state from another replica applied");
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
    let mock = mock().await;
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
    let ok = admitted(&replicas, 20).await;
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
    let mock = mock().await;
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
