//! The store for several replicas: Postgres at `store.database_url`. Same schema and SQL as
//! SQLite; the pool is small because the request path only touches it for a key's first lookup.

use super::StoreError;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

fn options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(8)
        // Short: with the store down a write or lookup fails in this time instead of hanging (it
        // is then spooled or answered from the cache).
        .acquire_timeout(Duration::from_secs(3))
}

pub(super) async fn connect(url: &str) -> Result<sqlx::PgPool, StoreError> {
    Ok(options().connect(url).await?)
}

/// A pool that connects on first use (the store is down at start).
pub(super) fn connect_lazy(url: &str) -> Result<sqlx::PgPool, StoreError> {
    Ok(options().connect_lazy(url)?)
}
