//! The store for several replicas: Postgres at `store.database_url`. Same schema and SQL as
//! SQLite; the pool is small because the request path only touches it for a key's first lookup.

use super::StoreError;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

pub(super) async fn connect(url: &str) -> Result<sqlx::PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?)
}
