//! The default store: one SQLite file (`nines.db` in the data directory), WAL journal so
//! readers never wait on the writer, `busy_timeout` so concurrent writers (the gateway and the
//! CLI) wait instead of failing.

use super::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

pub(super) async fn connect(url: &str) -> Result<sqlx::SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let file = options.get_filename();
    if let Some(dir) = file.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Invalid(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    // An in-memory database (tests, `sqlite::memory:`) is shared between a pool's connections in
    // SQLite's shared-cache mode, where a writer locks tables against the others and they fail
    // with SQLITE_LOCKED at once instead of waiting: one connection serialises them instead.
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    Ok(SqlitePoolOptions::new()
        .max_connections(if in_memory { 1 } else { 4 })
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?)
}
