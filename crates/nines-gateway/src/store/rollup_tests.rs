//! The usage rollups against real SQLite and Postgres: the migration from per-request rows keeps
//! spend, and two stores (two replicas) sharing one database add to the same rows.

use super::rollup::{GroupBy, RollupKey, RollupSums};
use super::test_db::TestDb;
use super::{Store, migrator};
use crate::config::access::Level;

/// Per-request rows as the table held them before migration 9: two keys of one org, a refusal,
/// a request without a key, and one row in another minute.
const OLD_RECORDS: &str = "INSERT INTO usage_records (id, request_id, key_id, user_id, org_id, \
    model, deployment, endpoint, stream, attempts, status, outcome, tokens_in, tokens_out, \
    usage_estimated, cost, ttfb_ms, latency_ms, started_at, finished_at, plan, attempt_trail, \
    fallback) VALUES \
    ('r1', 'q1', 'k1', 'u1', 'o1', 'chat', 'd0', 'chat', 0, 1, 200, 'ok', 10, 20, 0, 0.5, 1.0, 2.0, 60000, 60002, '', '', NULL), \
    ('r2', 'q2', 'k1', 'u1', 'o1', 'chat', 'd0', 'chat', 0, 1, 200, 'ok', 10, 20, 0, 0.25, 1.0, 2.0, 61000, 61002, '', '', NULL), \
    ('r3', 'q3', 'k2', 'u1', 'o1', 'chat', 'd1', 'chat', 1, 2, 200, 'ok', 5, 5, 1, 0.125, 1.0, 2.0, 125000, 125002, '', '', 'backup'), \
    ('r4', 'q4', 'k2', 'u1', 'o1', 'chat', NULL, 'chat', 0, 0, 429, 'limited', NULL, NULL, 0, 0.0, NULL, 2.0, 126000, 126002, '', '', NULL), \
    ('r5', 'q5', NULL, NULL, NULL, 'chat', 'd0', 'chat', 0, 1, 200, 'ok', 1, 1, 0, 0.0625, 1.0, 2.0, 127000, 127002, '', '', NULL)";

/// Spend per key as the store read it from the per-request rows before migration 9.
const OLD_SPEND_BY_KEY: &str = "SELECT key_id, COALESCE(SUM(cost), 0.0) FROM usage_records \
    WHERE started_at >= $1 AND key_id IS NOT NULL GROUP BY key_id ORDER BY key_id";

async fn spend_reads_the_same_after_the_migration(db: &TestDb) {
    let url = db.config.url.expose();
    let before: Vec<(String, f64)> = if url.starts_with("sqlite:") {
        let pool = super::sqlite::connect(url).await.unwrap();
        migrator().run_to(7, &pool).await.unwrap();
        sqlx::query(OLD_RECORDS).execute(&pool).await.unwrap();
        let rows = sqlx::query_as(OLD_SPEND_BY_KEY)
            .bind(0_i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        migrator().run_to(7, &pool).await.unwrap();
        sqlx::query(OLD_RECORDS).execute(&pool).await.unwrap();
        let rows = sqlx::query_as(OLD_SPEND_BY_KEY)
            .bind(0_i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows
    };
    assert_eq!(before, [("k1".to_owned(), 0.75), ("k2".to_owned(), 0.125)]);

    let store = Store::open(&db.config).await.unwrap();
    let mut after = store.spend_by(Level::Key, 0).await.unwrap();
    after.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(after, before, "{}", store.backend());
    assert_eq!(store.spend(Level::Org, "o1", 0).await.unwrap(), 0.875);
    // From the second minute on: the first minute's rows are not counted.
    assert_eq!(store.spend(Level::Key, "k1", 60_000).await.unwrap(), 0.75);
    assert_eq!(store.spend(Level::Key, "k1", 120_000).await.unwrap(), 0.0);
    let by_model = store.usage_report(GroupBy::Model, 0, None).await.unwrap();
    assert_eq!(by_model.total.requests, 5);
    assert_eq!(by_model.total.errors, 1);
    assert_eq!(by_model.total.tokens_in, 26);
    assert_eq!(by_model.total.cost, 0.9375);
    // The first minute's two requests of k1 became one row.
    let by_deployment = store
        .usage_report(GroupBy::Deployment, 0, Some((Level::Key, "k1")))
        .await
        .unwrap();
    assert_eq!(by_deployment.groups.len(), 1);
    assert_eq!(by_deployment.groups[0].sums.requests, 2);
}

fn row(minute_ms: i64, key: &str, cost: f64) -> (RollupKey, RollupSums) {
    (
        RollupKey {
            minute_ms,
            org_id: "o1".into(),
            user_id: "u1".into(),
            key_id: key.into(),
            model: "chat".into(),
            deployment: "d0".into(),
            fallback: "".into(),
        },
        RollupSums {
            requests: 3,
            errors: 1,
            tokens_in: 30,
            tokens_out: 60,
            cost,
        },
    )
}

/// Two stores on one database (two replicas) adding to the same minute row: the sums add up.
async fn replicas_add_to_the_same_rows(db: &TestDb) {
    let a = Store::open(&db.config).await.unwrap();
    let b = Store::open(&db.config).await.unwrap();
    let minute = 600_000;
    a.add_usage_rollups(&[row(minute, "k1", 1.5), row(minute, "k3", 0.5)])
        .await
        .unwrap();
    b.add_usage_rollups(&[row(minute, "k1", 2.5)])
        .await
        .unwrap();
    a.add_usage_rollups(&[row(minute, "k1", 1.0)])
        .await
        .unwrap();
    let report = b.usage_report(GroupBy::Key, minute, None).await.unwrap();
    let k1 = report.groups.iter().find(|g| g.id == "k1").unwrap();
    assert_eq!(
        k1.sums,
        RollupSums {
            requests: 9,
            errors: 3,
            tokens_in: 90,
            tokens_out: 180,
            cost: 5.0,
        }
    );
    assert_eq!(report.groups[0].id, "k1", "largest cost first");
    assert_eq!(b.spend(Level::User, "u1", minute).await.unwrap(), 5.5);
}

#[tokio::test]
async fn the_rollup_migration_keeps_spend_on_sqlite() {
    let db = TestDb::sqlite("migrate");
    spend_reads_the_same_after_the_migration(&db).await;
    replicas_add_to_the_same_rows(&db).await;
    db.remove().await;
}

#[tokio::test]
async fn the_rollup_migration_keeps_spend_on_postgres() {
    let Some(db) = TestDb::postgres("rollup").await else {
        return;
    };
    spend_reads_the_same_after_the_migration(&db).await;
    replicas_add_to_the_same_rows(&db).await;
    db.remove().await;
}
