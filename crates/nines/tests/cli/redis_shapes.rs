//! Gateway replicas on the less plain shapes of the shared Redis: TLS whose certificates are
//! verified against a CA of the config's (and refused when they do not verify), mutual TLS on one
//! server, through Sentinel and on a cluster, `nines check` on bad TLS files, and a Sentinel
//! failover that both replicas follow to the promoted master.
//!
//! Redis runs as real `redis-server` processes (`redis_servers.rs`), certificates are made with
//! `openssl`; without either these tests say that they skipped.

use crate::process::mock;
use crate::process::{Nines, client, command};
use crate::redis_servers::{RedisProcesses, TlsFiles, make_pki, missing_tools};
use crate::shared_health::{
    FREE_KEY, KEY, Replica, admitted, bucket_allows, fault, prefix, replica, until_phase,
};
use crate::skipped;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

const ADMIN: &str = "sk-admin-redis-shapes-8Jq3Vn6Tz1Lw4Rb9";
/// A second limited key, whose bucket nothing touched before the failover.
const LATER_KEY: &str = "sk-replica-test-key-0003";

/// A gateway sharing the Redis at `url` (`redis_keys`: more lines of `[redis]`): `KEY` and
/// `LATER_KEY` limited to `rpm`, `FREE_KEY` unlimited, the limits failing open (so readiness
/// says `degraded`, not `not_ready`, while Redis is away), breakers opening after two failures,
/// key changes shared through the same Redis.
fn gateway(mock: &str, url: &str, redis_keys: &str, prefix: &str, rpm: u64) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[resilience.breaker]
consecutive_failures = 2
cooldown = "300s"

[resilience.probes]
enabled = false

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
url = "{url}"
prefix = "{prefix}"
probe_lease = "2s"
{redis_keys}

[limits]
on_redis_error = "open"
redis_timeout = "1s"

[auth]
admin_key = "{ADMIN}"

# SQLite beside the config file: the admin key (which reads readiness's checks) needs a store.
[store]

[[auth.keys]]
key = "{KEY}"
name = "shared"
limits = {{ rpm = {rpm} }}

[[auth.keys]]
key = "{LATER_KEY}"
name = "later"
limits = {{ rpm = {rpm} }}

[[auth.keys]]
key = "{FREE_KEY}"
name = "free"
"#
    )
}

/// `[redis]` lines naming the CA and, when `client_cert`, the client certificate.
fn tls_keys(files: &TlsFiles, client_cert: bool) -> String {
    let mut keys = format!("tls_ca_file = \"{}\"\n", files.ca.display());
    if client_cert {
        keys += &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            files.client_cert.display(),
            files.client_key.display()
        );
    }
    keys
}

/// Starts a gateway on `text` without waiting for Redis (it may never be reachable).
async fn start(text: &str) -> Replica {
    let path = crate::serve::tempdir().join("nines.toml");
    std::fs::write(&path, text).unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]));
    let base = nines.base().await;
    Replica { nines, base }
}

/// Readiness with its checks (the admin key sees them).
async fn readiness(base: &str) -> Value {
    client()
        .get(format!("{base}/health/ready"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits (at most 10 s) until `base` says its shared Redis is away: breakers `local`, the
/// Redis limiter `down`, the gateway `degraded`; returns that readiness.
async fn until_unreachable(base: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = readiness(base).await;
        if ready["checks"]["shared_health"]["status"] == "local" {
            assert_eq!(ready["status"], "degraded", "{ready}");
            assert_eq!(ready["checks"]["limits"]["status"], "down", "{ready}");
            return ready;
        }
        assert!(Instant::now() < deadline, "never unreachable: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request with `key` to `replica`; its status.
async fn chat_with(replica: &Replica, key: &str) -> u16 {
    client()
        .post(format!("{}/v1/chat/completions", replica.base))
        .bearer_auth(key)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Requests with `key`, `n` at once spread over `replicas`: admitted exactly as one bucket of
/// `rpm` allows.
async fn exactly_limited(replicas: &[Replica], key: &str, rpm: u64, n: usize) {
    let started = Instant::now();
    let ok = admitted(replicas, key, n).await;
    let most = bucket_allows(rpm, started.elapsed());
    assert!(
        ok >= rpm as usize && ok <= most,
        "{key}: admitted {ok} of {n} with rpm {rpm} (at most {most} by now)"
    );
}

/// The one "redis unreachable" line `replica` logged (the link says why once per outage), which
/// names a refused certificate.
async fn said_once_why(replica: &mut Replica, why: &[&str]) -> String {
    let lines = replica.nines.logged("redis unreachable").await;
    assert_eq!(lines.len(), 1, "said once: {lines:?}");
    let error = lines[0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        why.iter().any(|w| error.contains(w)),
        "the reason ({error}) names one of {why:?}"
    );
    error
}

/// `rediss://` with `tls_ca_file` and no `#insecure`: the server's certificate (signed by the
/// test CA, for IP:127.0.0.1) verifies, and two replicas share its limits exactly.
#[tokio::test]
async fn limits_are_shared_through_tls_verified_with_a_ca_file() {
    const TEST: &str = "limits_are_shared_through_tls_verified_with_a_ca_file";
    if let Some(why) = missing_tools() {
        return skipped(TEST, &why);
    }
    let Some(tls) = RedisProcesses::tls() else {
        return skipped(TEST, "openssl is not installed");
    };
    let mock = mock("m").await;
    let rpm = 6;
    let text = gateway(
        &mock.base_url(),
        &format!("rediss://127.0.0.1:{}", tls.ports[0]),
        &tls_keys(&tls.tls_files(), false),
        &prefix(),
        rpm,
    );
    let replicas = [replica(&text).await, replica(&text).await];
    assert_eq!(readiness(&replicas[0].base).await["status"], "ready");
    exactly_limited(&replicas, KEY, rpm, 20).await;
}

/// Certificates are really verified: without the CA (the system's roots do not know it) and with
/// the CA but a host name the certificate is not for (127.0.0.2), the gateway serves but reports
/// the shared Redis unreachable, and its log says why once.
#[tokio::test]
async fn a_redis_certificate_that_does_not_verify_is_refused() {
    const TEST: &str = "a_redis_certificate_that_does_not_verify_is_refused";
    if let Some(why) = missing_tools() {
        return skipped(TEST, &why);
    }
    let Some(tls) = RedisProcesses::tls() else {
        return skipped(TEST, "openssl is not installed");
    };
    let mock = mock("m").await;
    let port = tls.ports[0];
    let unknown_ca = gateway(
        &mock.base_url(),
        &format!("rediss://127.0.0.1:{port}"),
        "",
        &prefix(),
        6,
    );
    let wrong_name = gateway(
        &mock.base_url(),
        &format!("rediss://127.0.0.2:{port}"),
        &tls_keys(&tls.tls_files(), false),
        &prefix(),
        6,
    );
    for (text, why) in [
        (unknown_ca, &["UnknownIssuer"][..]),
        (wrong_name, &["not valid for name"][..]),
    ] {
        let mut r = start(&text).await;
        let ready = until_unreachable(&r.base).await;
        // Still serving: the breakers decide alone, the limiter fails open.
        assert_eq!(chat_with(&r, FREE_KEY).await, 200);
        assert_eq!(chat_with(&r, KEY).await, 200);
        assert!(r.metrics().await.contains("nines_redis_up 0"));
        // A few more pings (each readiness check pings) add no line.
        for _ in 0..3 {
            readiness(&r.base).await;
        }
        let error = said_once_why(&mut r, why).await;
        assert!(
            ready["checks"]["limits"]["error"]
                .as_str()
                .is_some_and(|e| why.iter().any(|w| e.contains(w))),
            "{ready}"
        );
        println!("refused ({why:?}): {error}");
    }
}

/// Mutual TLS: a Redis that demands client certificates (`--tls-auth-clients yes`) serves the
/// replica with `tls_cert_file`/`tls_key_file` (a certificate its CA signed) and refuses the one
/// without.
#[tokio::test]
async fn mutual_tls_admits_only_the_replica_with_a_client_certificate() {
    const TEST: &str = "mutual_tls_admits_only_the_replica_with_a_client_certificate";
    if let Some(why) = missing_tools() {
        return skipped(TEST, &why);
    }
    let Some(tls) = RedisProcesses::mutual_tls() else {
        return skipped(TEST, "openssl is not installed");
    };
    let mock = mock("m").await;
    let url = format!("rediss://127.0.0.1:{}", tls.ports[0]);
    let prefix = prefix();
    let rpm = 4;
    let with_cert = gateway(
        &mock.base_url(),
        &url,
        &tls_keys(&tls.tls_files(), true),
        &prefix,
        rpm,
    );
    let without = gateway(
        &mock.base_url(),
        &url,
        &tls_keys(&tls.tls_files(), false),
        &prefix,
        rpm,
    );
    let mut admitted_replicas = [replica(&with_cert).await, replica(&with_cert).await];
    assert_eq!(
        readiness(&admitted_replicas[0].base).await["status"],
        "ready"
    );
    exactly_limited(&admitted_replicas, KEY, rpm, 12).await;
    // The private key never reaches the log (nor does the config's Debug form).
    let key = std::fs::read_to_string(&tls.tls_files().client_key).unwrap();
    let body = key.lines().nth(1).unwrap();
    for r in &mut admitted_replicas {
        r.nines.logged("").await;
        assert!(!r.nines.seen.iter().any(|l| l.contains(body)));
    }

    let mut refused = start(&without).await;
    until_unreachable(&refused.base).await;
    let error = said_once_why(&mut refused, &["CertificateRequired", "certificate"]).await;
    println!("refused without a client certificate: {error}");
}

/// `nines check` names a bad TLS file's key: unreadable, not PEM, a certificate without its key,
/// a key that is not the certificate's, TLS files with a `redis://` URL.
#[tokio::test]
async fn nines_check_names_a_bad_redis_tls_file() {
    const TEST: &str = "nines_check_names_a_bad_redis_tls_file";
    let dir = crate::serve::tempdir();
    if !make_pki(&dir) {
        return skipped(TEST, "openssl is not installed");
    }
    std::fs::write(dir.join("garbage.pem"), "not a certificate").unwrap();
    let file = |name: &str| dir.join(name).display().to_string();
    let cases = [
        (
            "rediss://r:6380",
            format!("tls_ca_file = \"{}\"", file("missing.pem")),
            "redis.tls_ca_file: cannot read",
        ),
        (
            "rediss://r:6380",
            format!("tls_ca_file = \"{}\"", file("garbage.pem")),
            "redis.tls_ca_file: ",
        ),
        (
            "rediss://r:6380",
            format!("tls_cert_file = \"{}\"", file("client.pem")),
            "redis.tls_key_file: tls_cert_file is set",
        ),
        (
            "rediss://r:6380",
            format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
                file("client.pem"),
                file("server.key")
            ),
            "redis.tls_key_file: ",
        ),
        (
            "redis://r:6379",
            format!("tls_ca_file = \"{}\"", file("ca.pem")),
            "redis.tls_ca_file: applies to a TLS url only",
        ),
    ];
    for (url, keys, wanted) in cases {
        let path = dir.join("nines.toml");
        std::fs::write(
            &path,
            format!(
                "[[deployments]]\nname = \"d\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\n\
                 base_url = \"http://127.0.0.1:1\"\n\n[redis]\nurl = \"{url}\"\n{keys}\n"
            ),
        )
        .unwrap();
        let out = command(&["check", "--config", path.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{keys}: accepted");
        assert!(stderr.contains(wanted), "{keys}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // The good pair passes.
    let path = dir.join("nines.toml");
    std::fs::write(
        &path,
        format!(
            "[[deployments]]\nname = \"d\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\n\
             base_url = \"http://127.0.0.1:1\"\n\n[redis]\nurl = \"rediss://r:6380\"\n{}",
            tls_keys(
                &TlsFiles {
                    ca: dir.join("ca.pem"),
                    client_cert: dir.join("client.pem"),
                    client_key: dir.join("client.key"),
                },
                true
            )
        ),
    )
    .unwrap();
    let out = command(&["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A master, its replica and one Sentinel; two gateways on the `redis+sentinel://` URL share
/// limits exactly. The master is killed: while no master answers both say so (`degraded`,
/// breakers `local`); the Sentinel promotes the replica and both gateways follow it (the time
/// from the kill is printed); limits are exact again on the new master and a breaker opened on
/// one replica reaches the other.
#[tokio::test]
async fn a_sentinel_failover_moves_both_replicas_to_the_new_master() {
    const TEST: &str = "a_sentinel_failover_moves_both_replicas_to_the_new_master";
    if let Some(why) = missing_tools() {
        return skipped(TEST, &why);
    }
    let mut redis = RedisProcesses::sentinel_with_replica();
    let (old_master, promoted) = (redis.ports[0], redis.ports[1]);
    let mock = mock("m").await;
    let rpm = 6;
    let text = gateway(
        &mock.base_url(),
        &format!("redis+sentinel://127.0.0.1:{}/mymaster", redis.ports[2]),
        "",
        &prefix(),
        rpm,
    );
    let mut replicas = [replica(&text).await, replica(&text).await];
    exactly_limited(&replicas, KEY, rpm, 20).await;

    let killed = Instant::now();
    redis.kill(0);
    for r in &replicas {
        until_unreachable(&r.base).await;
    }
    let noticed = killed.elapsed();
    // Back: shared again (the subscription and pings reach the promoted master) and ready.
    for r in &replicas {
        let deadline = killed + Duration::from_secs(15);
        loop {
            let ready = readiness(&r.base).await;
            if ready["status"] == "ready" && ready["checks"]["shared_health"]["status"] == "shared"
            {
                break;
            }
            assert!(Instant::now() < deadline, "never back: {ready}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let followed = killed.elapsed();
    assert_eq!(redis.sentinel_master_port(), Some(promoted));
    for r in &mut replicas {
        let connected = r.nines.logged("redis connected").await;
        let last = connected.last().expect("a connected line");
        assert_eq!(
            last["master"],
            format!("127.0.0.1:{promoted}"),
            "{connected:?} (the old master was {old_master})"
        );
    }
    println!(
        "failover: both replicas saw no master after {noticed:?} and followed the promoted one \
         {followed:?} after the kill"
    );

    // Limits on the new master: a bucket nothing touched before is exact across both.
    exactly_limited(&replicas, LATER_KEY, rpm, 20).await;
    // Breakers too: A opens, B learns it through the new master within a second.
    fault(&mock, json!({"status": 500}));
    let mut failed = 0;
    while !replicas[0].phase_is("open").await {
        assert!(replicas[0].chat().await.status().is_server_error());
        failed += 1;
        assert!(failed < 10, "A never opened");
    }
    until_phase(&replicas[1], "open", Duration::from_secs(10)).await;
    let applied = replicas[1]
        .nines
        .logged("breaker state from another replica applied")
        .await;
    let lag = applied.last().expect("applied")["lag_ms"].as_u64().unwrap();
    assert!(lag < 1000, "{applied:?}");
    println!("after the failover a breaker opened on A reached B in {lag} ms");
    let hits = mock.hits("/v1/chat/completions");
    assert_eq!(replicas[1].chat().await.status(), 503);
    assert_eq!(
        mock.hits("/v1/chat/completions"),
        hits,
        "B sent nothing upstream"
    );
}

/// `rediss+sentinel://`: the sentinel and the master it names speak only TLS and demand client
/// certificates; the replicas verify both against `tls_ca_file`, show them `tls_cert_file`, and
/// share the master's limits exactly.
#[tokio::test]
async fn limits_are_shared_through_a_tls_sentinel_with_client_certificates() {
    const TEST: &str = "limits_are_shared_through_a_tls_sentinel_with_client_certificates";
    if let Some(why) = missing_tools() {
        return skipped(TEST, &why);
    }
    let Some(sentinel) = RedisProcesses::tls_sentinel() else {
        return skipped(TEST, "openssl is not installed");
    };
    let mock = mock("m").await;
    let rpm = 6;
    let text = gateway(
        &mock.base_url(),
        &format!("rediss+sentinel://127.0.0.1:{}/mymaster", sentinel.ports[1]),
        &tls_keys(&sentinel.tls_files(), true),
        &prefix(),
        rpm,
    );
    let mut replicas = [replica(&text).await, replica(&text).await];
    assert_eq!(readiness(&replicas[0].base).await["status"], "ready");
    exactly_limited(&replicas, KEY, rpm, 20).await;
    let connected = replicas[0].nines.logged("redis connected").await;
    assert_eq!(
        connected[0]["master"],
        format!("127.0.0.1:{}", sentinel.ports[0]),
        "{connected:?}"
    );
    // Without the client certificate the sentinel refuses: never connected.
    let without = gateway(
        &mock.base_url(),
        &format!("rediss+sentinel://127.0.0.1:{}/mymaster", sentinel.ports[1]),
        &tls_keys(&sentinel.tls_files(), false),
        &prefix(),
        rpm,
    );
    let mut refused = start(&without).await;
    until_unreachable(&refused.base).await;
    let why = refused
        .nines
        .line_containing("redis unreachable; retrying every second")
        .await;
    assert!(why.contains("CertificateRequired"), "{why}");
}

/// A three-master Redis Cluster speaking only TLS (between its nodes too) and demanding client
/// certificates: the replicas, seeded with one node, verify every node against `tls_ca_file`,
/// show `tls_cert_file`, and share limits exactly and breaker state.
#[tokio::test]
async fn limits_and_breakers_are_shared_through_a_tls_cluster() {
    const TEST: &str = "limits_and_breakers_are_shared_through_a_tls_cluster";
    if let Some(why) = missing_tools() {
        return skipped(TEST, &why);
    }
    let Some(cluster) = RedisProcesses::tls_cluster() else {
        return skipped(TEST, "openssl is not installed");
    };
    let mock = mock("m").await;
    let rpm = 6;
    let text = gateway(
        &mock.base_url(),
        &format!("rediss://127.0.0.1:{}", cluster.ports[0]),
        &format!("cluster = true\n{}", tls_keys(&cluster.tls_files(), true)),
        &prefix(),
        rpm,
    );
    let replicas = [replica(&text).await, replica(&text).await];
    assert_eq!(readiness(&replicas[0].base).await["status"], "ready");
    exactly_limited(&replicas, KEY, rpm, 20).await;
    fault(&mock, json!({"status": 500}));
    let mut failed = 0;
    while !replicas[0].phase_is("open").await {
        assert!(replicas[0].chat().await.status().is_server_error());
        failed += 1;
        assert!(failed < 10, "A never opened");
    }
    until_phase(&replicas[1], "open", Duration::from_secs(10)).await;
}
