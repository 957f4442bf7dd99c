//! Two `nines serve` processes sharing one Postgres store and one Redis: a daily budget holds
//! across both (spend reserved in Redis at admission, settled at the end), every request is in
//! the shared usage rollups after both stop (SIGTERM flushes them), and `nines report usage`
//! reads the same spend back.

use crate::process::{Nines, client, command};
use crate::skipped;
use nines_mock::{MockOptions, MockServer};
use serde_json::{Value, json};
use std::time::Duration;

/// USD per request at the test's price: what the mock's answer to `body()` reports.
const PRICE_PER_MILLION: f64 = 10_000.0;
const BUDGET: f64 = 2.0;
const CLIENTS_PER_REPLICA: usize = 4;
const REQUESTS_PER_CLIENT: usize = 12;

fn body() -> Value {
    json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 16,
    })
}

fn config(mock: &str, database_url: &str, redis_url: &str, prefix: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
drain_delay = "0s"

[resilience.probes]
enabled = false

[[deployments]]
name = "d"
provider = "openai-compatible"
model = "m"
base_url = "{mock}"
price = {{ input = {PRICE_PER_MILLION}, output = {PRICE_PER_MILLION} }}

[[models]]
name = "chat"
deployments = ["d"]

[auth]
[[auth.keys]]
key = "sk-budget-shared-0001"
name = "budgeted"
limits = {{ daily_budget = {BUDGET} }}

[store]
database_url = "{database_url}"
flush_interval = "50ms"

[limits]
redis_url = "{redis_url}"
redis_prefix = "{prefix}"
redis_timeout = "2s"
on_redis_error = "closed"
"#
    )
}

/// A database of its own on the server at `url`; returns its URL.
async fn create_database(url: &str, name: &str) -> String {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap_or_else(|e| panic!("DATABASE_URL is set but Postgres is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    format!("{base}/{name}")
}

async fn drop_database(url: &str, name: &str) {
    if let Ok(mut admin) = <sqlx::PgConnection as sqlx::Connection>::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}

#[tokio::test]
async fn a_budget_holds_across_two_gateway_processes_sharing_postgres_and_redis() {
    const TEST: &str = "a_budget_holds_across_two_gateway_processes_sharing_postgres_and_redis";
    let (Ok(pg), Ok(redis)) = (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL")) else {
        skipped(TEST, "DATABASE_URL and REDIS_URL are both needed");
        return;
    };
    // Answers take a while, so requests are in flight on both replicas at once.
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            name: "budget-mock".into(),
            fault: Some(serde_json::from_value(json!({"latency_ms": 40})).unwrap()),
            ..MockOptions::default()
        },
    )
    .await
    .unwrap();
    let suffix = format!("{}_{}", std::process::id(), rand_suffix());
    let name = format!("nines_budget_{suffix}");
    let database_url = create_database(&pg, &name).await;
    let dir = crate::serve::tempdir();
    let path = dir.join("nines.toml");
    let prefix = format!("nines-budget-{suffix}");
    std::fs::write(
        &path,
        config(&mock.base_url(), &database_url, &redis, &prefix),
    )
    .unwrap();
    let config_path = path.to_str().unwrap().to_owned();

    let mut replicas = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..2 {
        let mut nines = Nines::spawn(command(&["serve", "--config", &config_path]));
        bases.push(nines.base().await);
        replicas.push(nines);
    }
    let http = client();
    let mut clients = Vec::new();
    for base in &bases {
        for _ in 0..CLIENTS_PER_REPLICA {
            let (http, url) = (http.clone(), format!("{base}/v1/chat/completions"));
            clients.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..REQUESTS_PER_CLIENT {
                    let r = http
                        .post(&url)
                        .bearer_auth("sk-budget-shared-0001")
                        .json(&body())
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let limit = r
                        .headers()
                        .get("x-nines-limit")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let reply: Value = r.json().await.unwrap();
                    answers.push((status, limit, reply));
                }
                answers
            }));
        }
    }
    let mut served_cost = 0.0;
    let mut most = 0.0_f64;
    let (mut served, mut refused) = (0, 0);
    for c in clients {
        for (status, limit, reply) in c.await.unwrap() {
            match status {
                200 => {
                    let tokens = reply["usage"]["prompt_tokens"].as_u64().unwrap()
                        + reply["usage"]["completion_tokens"].as_u64().unwrap();
                    let cost = tokens as f64 * PRICE_PER_MILLION / 1e6;
                    served_cost += cost;
                    most = most.max(cost);
                    served += 1;
                }
                429 => {
                    assert_eq!(limit.as_deref(), Some("key:daily_budget"), "{reply}");
                    refused += 1;
                }
                s => panic!("unexpected status {s}: {reply}"),
            }
        }
    }
    let sent = 2 * CLIENTS_PER_REPLICA * REQUESTS_PER_CLIENT;
    assert_eq!(served + refused, sent);
    assert!(
        refused > 0,
        "the budget was never reached: spent {served_cost}"
    );
    // Reservations count requests in flight on either replica: at most the one request admitted
    // just under the budget goes past it.
    assert!(
        served_cost <= BUDGET + most + 1e-9,
        "spent {served_cost} of a budget of {BUDGET} (one request costs at most {most})"
    );

    // SIGTERM: each replica writes its rollups before it exits; nothing is lost.
    for nines in replicas {
        nines.signal("TERM");
        let (status, lines) = nines.exited(Duration::from_secs(20)).await;
        assert!(status.success(), "{lines:?}");
        let stopped = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "stopped")
            .expect("a stopped line");
        assert_eq!(stopped["usage_rollup_requests_unwritten"], 0, "{stopped}");
    }
    let out = command(&[
        "report",
        "usage",
        "--by",
        "key",
        "--window",
        "day",
        "--config",
        &config_path,
    ])
    .output()
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "static:budgeted")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(key["requests"], sent, "{report}");
    assert_eq!(key["errors"], refused, "{report}");
    let stored = key["cost"].as_f64().unwrap();
    assert!(
        (stored - served_cost).abs() < 1e-6,
        "{stored} vs {served_cost}"
    );
    drop_database(&pg, &name).await;
    let _ = std::fs::remove_dir_all(dir);
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
}
