//! A store of its own for one test: a SQLite file in a temporary directory, or a fresh database on
//! the Postgres server of DATABASE_URL (the test says it skipped when that is not set).

use crate::config::Secret;
use crate::config::access::StoreConfig;

/// A database of its own for one test, and how to remove it.
pub(super) struct TestDb {
    pub config: StoreConfig,
    /// Postgres: the server URL and the database's name, dropped at the end.
    postgres: Option<(String, String)>,
    dir: Option<std::path::PathBuf>,
}

impl TestDb {
    pub fn sqlite(tag: &str) -> TestDb {
        let dir = std::env::temp_dir().join(format!(
            "nines-store-{tag}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        TestDb {
            config: StoreConfig::sqlite_in(&dir),
            postgres: None,
            dir: Some(dir),
        }
    }

    /// `None` (and a line saying so) when DATABASE_URL is not set.
    pub async fn postgres(tag: &str) -> Option<TestDb> {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            println!(
                "skipped: DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            return None;
        };
        let name = format!("nines_{tag}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("DATABASE_URL is set but Postgres is unreachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
        let mut config = StoreConfig::sqlite_in(std::path::Path::new("unused"));
        config.url = Secret::new(format!("{base}/{name}"));
        Some(TestDb {
            config,
            postgres: Some((url, name)),
            dir: None,
        })
    }

    pub async fn remove(self) {
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((url, name)) = self.postgres {
            let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }
}
