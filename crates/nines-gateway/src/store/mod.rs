//! Persistence of organisations, users, virtual keys, usage records and the availability ledger
//! (`ledger`: minute buckets and incidents, written by `telemetry::persist`): SQLite in the data
//! directory by default ([`sqlite`]), Postgres when `store.database_url` says so ([`postgres`]).
//! Migrations are embedded and applied when the store opens.
//!
//! Both backends run the same SQL text (`$1`-style parameters work in both); [`Store`] holds one
//! pool or the other and each query is written once, expanded for both pool types by `on_pool!`.
//! Nothing on the request path waits on the store except a virtual key's first lookup (then
//! cached); usage records go through [`usage::UsageWriter`].

pub mod postgres;
pub mod sqlite;
pub mod usage;

use crate::auth::keys;
use crate::config::access::{Limits, StoreConfig};
use serde::Serialize;
use sqlx::Row;
use std::time::SystemTime;
pub use usage::{UsageRecord, UsageSink, UsageWriter};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

#[derive(Clone)]
enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store has; the body is compiled once
/// per backend, so one SQL text serves both.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

mod ledger;
pub use ledger::BucketRow;

/// A handle to the store; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub limits: Limits,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub limits: Limits,
    pub created_at: i64,
}

/// A virtual key as stored: never the key itself.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    pub id: String,
    #[serde(skip)]
    pub hash: String,
    /// `sk-nines-abcd…wxyz`.
    pub display: String,
    pub name: String,
    pub user_id: String,
    pub models: Option<Vec<String>>,
    pub limits: Limits,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A key with its user and organisation: what authentication needs.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub key: KeyRow,
    pub user: User,
    pub org: Org,
}

/// What creating a key needs.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub user: String,
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub limits: Limits,
}

fn limits_json(limits: &Limits) -> Result<String, StoreError> {
    limits.check().map_err(StoreError::Invalid)?;
    serde_json::to_string(limits).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn parse_limits(text: &str) -> Limits {
    serde_json::from_str(text).unwrap_or_default()
}

fn now_ms() -> i64 {
    crate::auth::unix_ms(SystemTime::now())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

macro_rules! org_of {
    ($r:expr) => {
        Org {
            id: $r.try_get("id")?,
            name: $r.try_get("name")?,
            limits: parse_limits(&$r.try_get::<String, _>("limits")?),
            created_at: $r.try_get("created_at")?,
        }
    };
}

macro_rules! user_of {
    ($r:expr, $p:literal) => {
        User {
            id: $r.try_get(concat!($p, "id"))?,
            org_id: $r.try_get(concat!($p, "org_id"))?,
            name: $r.try_get(concat!($p, "name"))?,
            limits: parse_limits(&$r.try_get::<String, _>(concat!($p, "limits"))?),
            created_at: $r.try_get(concat!($p, "created_at"))?,
        }
    };
}

macro_rules! key_of {
    ($r:expr) => {
        KeyRow {
            id: $r.try_get("id")?,
            hash: $r.try_get("hash")?,
            display: $r.try_get("display")?,
            name: $r.try_get("name")?,
            user_id: $r.try_get("user_id")?,
            models: $r
                .try_get::<Option<String>, _>("models")?
                .and_then(|m| serde_json::from_str(&m).ok()),
            limits: parse_limits(&$r.try_get::<String, _>("limits")?),
            created_at: $r.try_get("created_at")?,
            expires_at: $r.try_get("expires_at")?,
            revoked_at: $r.try_get("revoked_at")?,
        }
    };
}

const KEY_COLUMNS: &str =
    "id, hash, display, name, user_id, models, limits, created_at, expires_at, revoked_at";

/// The schema: the same SQL runs on SQLite and Postgres (one file per migration).
fn migrator() -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let migration = |version, name: &str, sql: &'static str| {
        Migration::new(
            version,
            name.to_owned().into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(sql),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(1, "access", include_str!("migrations/0001_access.sql")),
        migration(2, "ledger", include_str!("migrations/0002_ledger.sql")),
        migration(
            3,
            "usage_plan",
            include_str!("migrations/0003_usage_plan.sql"),
        ),
    ])
}

impl Store {
    /// Connects (creating a SQLite file and its directory if needed) and applies migrations.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let url = config.url.expose();
        let store = if url.starts_with("sqlite:") {
            Store {
                db: Db::Sqlite(sqlite::connect(url).await?),
            }
        } else {
            Store {
                db: Db::Postgres(postgres::connect(url).await?),
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(p) => migrator().run(p).await?,
            Db::Postgres(p) => migrator().run(p).await?,
        }
        Ok(())
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// One trivial query: is the store answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.db, p => { sqlx::query("SELECT 1").execute(p).await?; });
        Ok(())
    }

    // ---- organisations

    pub async fn create_org(&self, name: &str, limits: &Limits) -> Result<Org, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("an organisation needs a name".into()));
        }
        let org = Org {
            id: keys::new_id("org"),
            name: name.to_owned(),
            limits: limits.clone(),
            created_at: now_ms(),
        };
        let json = limits_json(limits)?;
        let result = on_pool!(&self.db, p => sqlx::query(
            "INSERT INTO orgs (id, name, limits, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&org.id).bind(&org.name).bind(&json).bind(org.created_at)
            .execute(p).await.map(|_| ()));
        match result {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "an organisation named '{name}' exists"
            ))),
            r => r.map(|()| org).map_err(Into::into),
        }
    }

    pub async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        on_pool!(&self.db, p => {
            let rows = sqlx::query("SELECT id, name, limits, created_at FROM orgs ORDER BY created_at, id")
                .fetch_all(p).await?;
            rows.iter().map(|r| Ok(org_of!(r))).collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// By id or by name.
    pub async fn get_org(&self, id_or_name: &str) -> Result<Org, StoreError> {
        let found = on_pool!(&self.db, p => {
            let row = sqlx::query(
                "SELECT id, name, limits, created_at FROM orgs WHERE id = $1 OR name = $1")
                .bind(id_or_name).fetch_optional(p).await?;
            row.map(|r| Ok::<_, sqlx::Error>(org_of!(r))).transpose()?
        });
        found.ok_or_else(|| StoreError::NotFound(format!("organisation '{id_or_name}'")))
    }

    pub async fn set_org_limits(&self, id: &str, limits: &Limits) -> Result<Org, StoreError> {
        let org = self.get_org(id).await?;
        let json = limits_json(limits)?;
        on_pool!(&self.db, p => sqlx::query("UPDATE orgs SET limits = $1 WHERE id = $2")
            .bind(&json).bind(&org.id).execute(p).await.map(|_| ()))?;
        self.get_org(&org.id).await
    }

    // ---- users

    /// `org` is an organisation's id or name.
    pub async fn create_user(
        &self,
        org: &str,
        name: &str,
        limits: &Limits,
    ) -> Result<User, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a user needs a name".into()));
        }
        let org = self.get_org(org).await?;
        let user = User {
            id: keys::new_id("user"),
            org_id: org.id,
            name: name.to_owned(),
            limits: limits.clone(),
            created_at: now_ms(),
        };
        let json = limits_json(limits)?;
        let result = on_pool!(&self.db, p => sqlx::query(
            "INSERT INTO users (id, org_id, name, limits, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&user.id).bind(&user.org_id).bind(&user.name).bind(&json).bind(user.created_at)
            .execute(p).await.map(|_| ()));
        match result {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "organisation '{}' has a user named '{name}'",
                org.name
            ))),
            r => r.map(|()| user).map_err(Into::into),
        }
    }

    /// All users, or one organisation's (by id or name).
    pub async fn list_users(&self, org: Option<&str>) -> Result<Vec<User>, StoreError> {
        let org_id = match org {
            Some(o) => Some(self.get_org(o).await?.id),
            None => None,
        };
        on_pool!(&self.db, p => {
            let rows = sqlx::query(
                "SELECT id, org_id, name, limits, created_at FROM users \
                 WHERE ($1 IS NULL OR org_id = $1) ORDER BY created_at, id")
                .bind(org_id.as_deref()).fetch_all(p).await?;
            rows.iter().map(|r| Ok(user_of!(r, ""))).collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// By id, or by `org/name`.
    pub async fn get_user(&self, id: &str) -> Result<User, StoreError> {
        let (org, name) = match id.split_once('/') {
            Some((org, name)) => (Some(self.get_org(org).await?.id), name),
            None => (None, id),
        };
        let found = on_pool!(&self.db, p => {
            let row = sqlx::query(
                "SELECT id, org_id, name, limits, created_at FROM users \
                 WHERE ($1 IS NULL AND id = $2) OR (org_id = $1 AND name = $2)")
                .bind(org.as_deref()).bind(name).fetch_optional(p).await?;
            row.map(|r| Ok::<_, sqlx::Error>(user_of!(r, ""))).transpose()?
        });
        found.ok_or_else(|| StoreError::NotFound(format!("user '{id}'")))
    }

    pub async fn set_user_limits(&self, id: &str, limits: &Limits) -> Result<User, StoreError> {
        let user = self.get_user(id).await?;
        let json = limits_json(limits)?;
        on_pool!(&self.db, p => sqlx::query("UPDATE users SET limits = $1 WHERE id = $2")
            .bind(&json).bind(&user.id).execute(p).await.map(|_| ()))?;
        self.get_user(&user.id).await
    }

    // ---- keys

    /// Creates a key for a user (by id or `org/name`); returns the row and the key itself, which
    /// is not kept anywhere.
    pub async fn create_key(&self, new: &NewKey) -> Result<(KeyRow, String), StoreError> {
        let user = self.get_user(&new.user).await?;
        let secret = keys::generate();
        let id = keys::new_id("key");
        let row = KeyRow {
            hash: keys::hash(&secret),
            display: keys::display(&secret),
            name: new.name.clone().unwrap_or_else(|| id.clone()),
            id,
            user_id: user.id,
            models: new.models.clone(),
            limits: new.limits.clone(),
            created_at: now_ms(),
            expires_at: new.expires_at,
            revoked_at: None,
        };
        let json = limits_json(&row.limits)?;
        let models = row
            .models
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()));
        on_pool!(&self.db, p => sqlx::query(
            "INSERT INTO api_keys (id, hash, display, name, user_id, models, limits, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&row.id).bind(&row.hash).bind(&row.display).bind(&row.name).bind(&row.user_id)
            .bind(models.as_deref()).bind(&json).bind(row.created_at).bind(row.expires_at)
            .execute(p).await.map(|_| ()))?;
        Ok((row, secret))
    }

    /// All keys, or one user's (by id or `org/name`).
    pub async fn list_keys(&self, user: Option<&str>) -> Result<Vec<KeyRow>, StoreError> {
        let user_id = match user {
            Some(u) => Some(self.get_user(u).await?.id),
            None => None,
        };
        on_pool!(&self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1 IS NULL OR user_id = $1) \
                 ORDER BY created_at, id")))
                .bind(user_id.as_deref()).fetch_all(p).await?;
            rows.iter().map(|r| Ok(key_of!(r))).collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    pub async fn get_key(&self, id: &str) -> Result<KeyRow, StoreError> {
        let found = on_pool!(&self.db, p => {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1")))
                .bind(id).fetch_optional(p).await?;
            row.map(|r| Ok::<_, sqlx::Error>(key_of!(r))).transpose()?
        });
        found.ok_or_else(|| StoreError::NotFound(format!("key '{id}'")))
    }

    /// Marks a key revoked (idempotent: the first revocation time stays).
    pub async fn revoke_key(&self, id: &str) -> Result<KeyRow, StoreError> {
        let done = on_pool!(&self.db, p => sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
            .bind(now_ms()).bind(id).execute(p).await?.rows_affected());
        if done == 0 {
            return Err(StoreError::NotFound(format!("key '{id}'")));
        }
        self.get_key(id).await
    }

    /// Replaces a key's limits and, when given, its model list (`Some(None)` clears it).
    pub async fn update_key(
        &self,
        id: &str,
        limits: Option<&Limits>,
        models: Option<Option<Vec<String>>>,
    ) -> Result<KeyRow, StoreError> {
        let key = self.get_key(id).await?;
        let json = limits_json(limits.unwrap_or(&key.limits))?;
        let models = models.unwrap_or(key.models);
        let models = models
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()));
        on_pool!(&self.db, p => sqlx::query(
            "UPDATE api_keys SET limits = $1, models = $2 WHERE id = $3")
            .bind(&json).bind(models.as_deref()).bind(id).execute(p).await.map(|_| ()))?;
        self.get_key(id).await
    }

    /// The key with this hash, its user and organisation.
    pub async fn find_key(&self, hash: &str) -> Result<Option<KeyGrant>, StoreError> {
        const SQL: &str = "SELECT k.id, k.hash, k.display, k.name, k.user_id, k.models, k.limits, \
             k.created_at, k.expires_at, k.revoked_at, \
             u.id AS u_id, u.org_id AS u_org_id, u.name AS u_name, u.limits AS u_limits, \
             u.created_at AS u_created_at, \
             o.id AS o_id, o.name AS o_name, o.limits AS o_limits, o.created_at AS o_created_at \
             FROM api_keys k JOIN users u ON u.id = k.user_id JOIN orgs o ON o.id = u.org_id \
             WHERE k.hash = $1";
        on_pool!(&self.db, p => {
            let Some(r) = sqlx::query(SQL).bind(hash).fetch_optional(p).await? else {
                return Ok(None);
            };
            Ok(Some(KeyGrant {
                key: key_of!(r),
                user: user_of!(r, "u_"),
                org: Org {
                    id: r.try_get("o_id")?,
                    name: r.try_get("o_name")?,
                    limits: parse_limits(&r.try_get::<String, _>("o_limits")?),
                    created_at: r.try_get("o_created_at")?,
                },
            }))
        })
    }

    // ---- usage

    /// Spend (USD) per subject of one level since `since_ms`: `key`, `user` or `org`.
    pub async fn spend_by(
        &self,
        level: crate::auth::Level,
        since_ms: i64,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        let sql = match level {
            crate::auth::Level::Key => {
                "SELECT key_id AS id, COALESCE(SUM(cost), 0.0) AS spent FROM usage_records \
                 WHERE started_at >= $1 AND key_id IS NOT NULL GROUP BY key_id"
            }
            crate::auth::Level::User => {
                "SELECT user_id AS id, COALESCE(SUM(cost), 0.0) AS spent FROM usage_records \
                 WHERE started_at >= $1 AND user_id IS NOT NULL GROUP BY user_id"
            }
            crate::auth::Level::Org => {
                "SELECT org_id AS id, COALESCE(SUM(cost), 0.0) AS spent FROM usage_records \
                 WHERE started_at >= $1 AND org_id IS NOT NULL GROUP BY org_id"
            }
        };
        on_pool!(&self.db, p => {
            let rows = sqlx::query(sql).bind(since_ms).fetch_all(p).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>("id")?, r.try_get::<f64, _>("spent")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// One subject's spend (USD) since `since_ms`.
    pub async fn spend(
        &self,
        level: crate::auth::Level,
        id: &str,
        since_ms: i64,
    ) -> Result<f64, StoreError> {
        Ok(self
            .spend_by(level, since_ms)
            .await?
            .into_iter()
            .find(|(i, _)| i == id)
            .map_or(0.0, |(_, s)| s))
    }

    /// The newest usage records, optionally of one key, user or org.
    pub async fn recent_usage(
        &self,
        filter: Option<(crate::auth::Level, &str)>,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let (key, user, org) = match filter {
            Some((crate::auth::Level::Key, id)) => (Some(id), None, None),
            Some((crate::auth::Level::User, id)) => (None, Some(id), None),
            Some((crate::auth::Level::Org, id)) => (None, None, Some(id)),
            None => (None, None, None),
        };
        on_pool!(&self.db, p => {
            let rows = sqlx::query(
                "SELECT * FROM usage_records WHERE ($1 IS NULL OR key_id = $1) \
                 AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR org_id = $3) \
                 ORDER BY started_at DESC, id LIMIT $4")
                .bind(key).bind(user).bind(org).bind(limit).fetch_all(p).await?;
            rows.iter().map(|r| Ok(usage::record_of!(r))).collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// Writes usage records in one statement.
    pub async fn insert_usage(&self, batch: &[UsageRecord]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        on_pool!(&self.db, p => {
            let mut q = sqlx::QueryBuilder::new(usage::INSERT_HEAD);
            q.push_values(batch, |mut b, r| {
                b.push_bind(&r.id)
                    .push_bind(&r.request_id)
                    .push_bind(r.key_id.as_deref())
                    .push_bind(r.user_id.as_deref())
                    .push_bind(r.org_id.as_deref())
                    .push_bind(&r.model)
                    .push_bind(r.deployment.as_deref())
                    .push_bind(&r.endpoint)
                    .push_bind(i64::from(r.stream))
                    .push_bind(r.attempts as i64)
                    .push_bind(i64::from(r.status))
                    .push_bind(&r.outcome)
                    .push_bind(r.tokens_in.map(|t| t as i64))
                    .push_bind(r.tokens_out.map(|t| t as i64))
                    .push_bind(i64::from(r.usage_estimated))
                    .push_bind(r.cost)
                    .push_bind(r.ttfb_ms)
                    .push_bind(r.latency_ms)
                    .push_bind(r.started_at)
                    .push_bind(r.finished_at)
                    .push_bind(&r.plan)
                    .push_bind(&r.attempt_trail);
            });
            q.build().execute(p).await?;
        });
        Ok(())
    }
}
