//! The store going away under running gateways (real processes, real Postgres and Redis): the
//! gateway reaches Postgres through a TCP proxy this test opens and closes, so the shared
//! Postgres itself is never stopped.
//!
//! - usage records and ledger deltas written while the store is down survive a SIGTERM and a
//!   restart on the spool and reach the store exactly once;
//! - cached virtual keys keep working while the store is down, malformed keys never reach it,
//!   unknown well-formed keys get 503 at once;
//! - a revocation on one gateway reaches another within a second through Redis.

use crate::process::{Nines, client, command};
use crate::serve::tempdir;
use nines_mock::{MockOptions, MockServer};
use serde_json::{Value, json};
use sqlx::Connection;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to `upstream` that can refuse and cut connections, standing in for a store that
/// goes down and comes back.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// Bumped to cut every open connection.
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let accept_up = Arc::clone(&up);
        let accept_cut = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    // Down: the connection closes at once, as a refused one would fail.
                    drop(client);
                    continue;
                }
                let mut cut = accept_cut.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    fn open(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A fresh database on the Postgres at `url`: (its name, Postgres' `host:port`).
async fn fresh_database(url: &str, tag: &str) -> (String, String) {
    let name = format!("nines_{tag}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .expect("DATABASE_URL is set but Postgres is unreachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    let host = base
        .rsplit_once('@')
        .map_or(base.trim_start_matches("postgres://"), |(_, h)| h)
        .to_owned();
    (name, host)
}

fn proxied(url: &str, host: &str, port: u16, db: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    format!("{}/{db}", base.replace(host, &format!("127.0.0.1:{port}")))
}

/// One deployment on `mock` in model `chat`, probes off, then `rest` (auth, limits, store).
pub fn gateway_config(mock: &MockServer, rest: &str) -> String {
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

[resilience.probes]
enabled = false
{rest}
"#,
        mock.base_url()
    )
}

fn config(mock: &MockServer, database_url: &str, dir: &Path, extra: &str) -> String {
    gateway_config(
        mock,
        &format!(
            r#"
[telemetry]
flush_interval = "200ms"

[store]
database_url = "{database_url}"
spool_dir = "{}"
flush_interval = "50ms"
{extra}
"#,
            dir.join("spool").display(),
        ),
    )
}

pub async fn chat(base: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

async fn ready(base: &str, admin: Option<&str>) -> Value {
    let mut req = client().get(format!("{base}/health/ready"));
    if let Some(k) = admin {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(db: &str, sql: &str) -> i64 {
    let Ok(mut c) = sqlx::PgConnection::connect(db).await else {
        return -1;
    };
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut c)
        .await
        .unwrap_or(-1)
}

fn spool_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("spool"))
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0)
}

#[tokio::test]
async fn records_written_while_the_store_is_down_survive_a_restart_and_land_once() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        crate::skipped(
            "records_written_while_the_store_is_down_survive_a_restart_and_land_once",
            "DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)",
        );
        return;
    };
    let (db, host) = fresh_database(&url, "spool").await;
    let proxy = Proxy::start(host.clone()).await;
    let direct = {
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
        format!("{base}/{db}")
    };
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap();
    let dir = tempdir();
    let path = dir.join("nines.toml");
    std::fs::write(
        &path,
        config(
            &mock,
            &proxied(&url, &host, proxy.port, &db),
            &dir,
            // Every request gets a detail row (the default keeps only errors), so all 35 spool.
            "request_records = \"all\"",
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();

    // The store is down before the first start: nines starts anyway, says so, and serves.
    proxy.down();
    let mut first = Nines::spawn(command(&["serve", "--config", config]));
    let base = first.base().await;
    let health = ready(&base, None).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["store"]["status"], "down", "{health}");
    assert!(
        health["checks"]["store"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("spool")),
        "{health}"
    );
    for _ in 0..20 {
        assert_eq!(chat(&base, None).await.status(), 200);
    }
    eventually(
        "the first 20 records spooled",
        Duration::from_secs(20),
        || {
            let base = base.clone();
            async move { ready(&base, None).await["checks"]["usage_writer"]["spooled"] == 20 }
        },
    )
    .await;
    let (status, _) = first.terminate().await;
    assert!(status.success());
    assert!(spool_segments(&dir) >= 1, "the spool is on disk");

    // Started again, the store still down: more traffic, spooled after the first run's.
    let mut second = Nines::spawn(command(&["serve", "--config", config]));
    let base = second.base().await;
    for _ in 0..15 {
        assert_eq!(chat(&base, None).await.status(), 200);
    }
    eventually(
        "the next 15 records spooled",
        Duration::from_secs(20),
        || {
            let base = base.clone();
            async move { ready(&base, None).await["checks"]["usage_writer"]["spooled"] == 15 }
        },
    )
    .await;
    assert_eq!(
        count(&direct, "SELECT COUNT(*) FROM usage_records").await,
        -1,
        "not migrated yet"
    );

    // The store comes back: migrated, and every record lands.
    proxy.open();
    let usage = "SELECT COUNT(*) FROM usage_records";
    let distinct = "SELECT COUNT(DISTINCT id) FROM usage_records";
    let ledger =
        "SELECT COALESCE(SUM(requests), 0)::BIGINT FROM ledger_buckets WHERE scope = 'route'";
    eventually(
        "35 usage records and 35 ledger requests",
        Duration::from_secs(30),
        || {
            let direct = direct.clone();
            async move { count(&direct, usage).await == 35 && count(&direct, ledger).await == 35 }
        },
    )
    .await;
    eventually("the spool emptied", Duration::from_secs(10), || {
        let base = base.clone();
        async move { ready(&base, None).await["checks"]["spool"]["pending_batches"] == 0 }
    })
    .await;
    let (status, _) = second.terminate().await;
    assert!(status.success());
    // A third start finds nothing left to replay: still exactly once.
    let mut third = Nines::spawn(command(&["serve", "--config", config]));
    let base = third.base().await;
    let health = ready(&base, None).await;
    assert_eq!(health["checks"]["store"]["status"], "ok", "{health}");
    assert_eq!(health["checks"]["spool"]["pending_batches"], 0, "{health}");
    let _ = third.terminate().await;
    assert_eq!(count(&direct, usage).await, 35);
    assert_eq!(
        count(&direct, distinct).await,
        35,
        "no record written twice"
    );
    assert_eq!(
        count(&direct, ledger).await,
        35,
        "no ledger delta added twice"
    );
    assert_eq!(spool_segments(&dir), 0);
}

pub const ADMIN: &str = "admin-secret-for-outage-tests";

/// An admin API call that must succeed; its JSON answer.
pub async fn admin(base: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let res = client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// An org, a user and a key through the admin API; returns the key.
async fn virtual_key(base: &str, org: &str) -> String {
    use reqwest::Method;
    admin(base, Method::POST, "/admin/orgs", json!({"name": org})).await;
    let u = admin(
        base,
        Method::POST,
        "/admin/users",
        json!({"org": org, "name": "alice"}),
    )
    .await;
    let k = admin(base, Method::POST, "/admin/keys", json!({"user": u["id"]})).await;
    k["key"].as_str().unwrap().to_owned()
}

/// One counter of `/metrics`.
async fn metric(base: &str, name: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn keys_the_gateway_knows_keep_working_while_the_store_is_down() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        crate::skipped(
            "keys_the_gateway_knows_keep_working_while_the_store_is_down",
            "DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)",
        );
        return;
    };
    let (db, host) = fresh_database(&url, "auth").await;
    let proxy = Proxy::start(host.clone()).await;
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap();
    let dir = tempdir();
    let path = dir.join("nines.toml");
    let auth = format!(
        "\n[auth]\nadmin_key = \"{ADMIN}\"\ncache_ttl = \"200ms\"\n\
         [[auth.keys]]\nkey = \"static-key-for-outage-tests-0001\"\nname = \"ops\"\n"
    );
    std::fs::write(
        &path,
        config(&mock, &proxied(&url, &host, proxy.port, &db), &dir, &auth),
    )
    .unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]));
    let base = nines.base().await;
    let key = virtual_key(&base, "acme").await;
    assert_eq!(chat(&base, Some(&key)).await.status(), 200);

    // Store up: credentials that cannot be virtual keys never reach it; an unknown
    // well-formed key is asked once, then remembered.
    let lookups = metric(&base, "nines_auth_store_lookups_total").await;
    for _ in 0..50 {
        assert_eq!(chat(&base, Some("not-a-key")).await.status(), 401);
    }
    let unknown = "sk-nines-Zq8w3Rt5Yu7Io9Pa1Sd3Fg5Hj7Kl9Zx1Cv3Bn5Mq7We9Rt";
    for _ in 0..50 {
        assert_eq!(chat(&base, Some(unknown)).await.status(), 401);
    }
    assert_eq!(
        metric(&base, "nines_auth_store_lookups_total").await,
        lookups + 1.0,
        "50 malformed keys cost no lookup, 50 unknown ones one"
    );

    // Store down, the cached grant past its cache_ttl: it keeps working (stale), counted.
    proxy.down();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(chat(&base, Some(&key)).await.status(), 200);
    assert_eq!(
        chat(&base, Some("static-key-for-outage-tests-0001"))
            .await
            .status(),
        200
    );
    assert!(metric(&base, "nines_auth_stale_grants_total").await >= 1.0);
    assert_eq!(metric(&base, "nines_auth_store_up").await, 0.0);
    let health = ready(&base, Some(ADMIN)).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["checks"]["auth"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("stale") || n.contains("past their cache_ttl")),
        "{health}"
    );
    // Keys it does not know: malformed → 401, well-formed → 503; each at once, not after a
    // lookup timeout.
    let never_seen = "sk-nines-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3Ab4Cd5";
    for _ in 0..20 {
        let started = tokio::time::Instant::now();
        assert_eq!(chat(&base, Some("not-a-key")).await.status(), 401);
        let r = chat(&base, Some(never_seen)).await;
        assert_eq!(r.status(), 503);
        assert_eq!(chat(&base, Some(&key)).await.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "three answers took {:?}",
            started.elapsed()
        );
    }

    // The store back: lookups resume.
    proxy.open();
    eventually(
        "the store answers lookups again",
        Duration::from_secs(10),
        || {
            let base = base.clone();
            async move { chat(&base, Some(never_seen)).await.status() == 401 }
        },
    )
    .await;
    assert_eq!(metric(&base, "nines_auth_store_up").await, 1.0);
    let _ = nines.terminate().await;
}
