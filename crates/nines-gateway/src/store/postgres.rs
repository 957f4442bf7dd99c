//! The store for several replicas: Postgres at `store.database_url`. Same schema and SQL as
//! SQLite; the pool is small because the request path only touches it for a key's first lookup.

use super::StoreError;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

pub(super) async fn connect(url: &str) -> Result<sqlx::PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?)
}

pub(super) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "access".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("migrations/postgres/0001_access.sql")),
            false,
        ),
        Migration::new(
            2,
            "ledger".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("migrations/postgres/0002_ledger.sql")),
            false,
        ),
    ])
}
