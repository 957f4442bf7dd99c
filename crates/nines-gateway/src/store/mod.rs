//! Persistence of organisations, users, virtual keys, usage (per-minute rollups, `rollup`, added
//! to by `accounting`; opt-in per-request records, `usage`) and the availability ledger
//! (`ledger`: minute buckets and incidents, written by [`ledger_writer`]): SQLite in the data
//! directory by default ([`sqlite`]), Postgres when `store.database_url` says so ([`postgres`]).
//! Migrations are embedded and applied when the store opens.
//!
//! Both backends run the same SQL text (`$1`-style parameters work in both); [`Store`] holds one
//! pool or the other and each query is written once, expanded for both pool types by `on_pool!`.
//! Nothing on the request path waits on the store except a virtual key's first lookup (then
//! cached); usage goes through [`accounting::Accounting`] and [`usage::UsageWriter`].

pub mod accounting;
pub mod ledger_writer;
mod pg_copy;
pub mod postgres;
pub mod spool;
pub mod sqlite;
pub mod usage;

use crate::config::access::{Limits, StoreConfig};
pub use accounting::Accounting;
pub use rollup::{GroupBy, RollupKey, RollupKeyRef, RollupSums, UsageGroup};
use serde::Serialize;
use sqlx::Row;
use std::sync::Arc;
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
mod notices;
pub use notices::{Notice, NoticeKind};
// After `on_pool!`, which its queries use.
pub mod rollup;
#[cfg(test)]
mod rollup_tests;
mod spooled;
#[cfg(test)]
mod test_db;

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

/// A random id with a readable prefix (`org_…`, `user_…`, `key_…`).
pub(crate) fn new_id(prefix: &str) -> String {
    use rand::Rng;
    let mut id = String::with_capacity(prefix.len() + 17);
    id.push_str(prefix);
    id.push('_');
    id.extend(
        rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(16)
            .map(|c| char::from(c).to_ascii_lowercase()),
    );
    id
}

fn now_ms() -> i64 {
    crate::clock::unix_ms(SystemTime::now())
}

/// An error that says the store could not be reached, as opposed to a refusal by a reachable
/// one (a wrong password, a missing database: mistakes to report at start, not to wait out).
fn unreachable(e: &sqlx::Error) -> bool {
    !matches!(e, sqlx::Error::Database(_) | sqlx::Error::Configuration(_))
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
        migration(
            4,
            "usage_append_only",
            include_str!("migrations/0004_usage_append_only.sql"),
        ),
        migration(5, "settings", include_str!("migrations/0005_settings.sql")),
        migration(
            6,
            "usage_fallback",
            include_str!("migrations/0006_usage_fallback.sql"),
        ),
        migration(
            7,
            "ledger_sketch",
            include_str!("migrations/0007_ledger_sketch.sql"),
        ),
        migration(8, "spool", include_str!("migrations/0008_spool.sql")),
        migration(
            9,
            "usage_rollups",
            include_str!("migrations/0009_usage_rollups.sql"),
        ),
        migration(
            10,
            "responses",
            include_str!("migrations/0010_responses.sql"),
        ),
        migration(
            11,
            "status_notices",
            include_str!("migrations/0011_status_notices.sql"),
        ),
        migration(
            12,
            "ledger_latency",
            include_str!("migrations/0012_ledger_latency.sql"),
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

    /// Like [`Store::open`], but a Postgres that cannot be reached now is no error: the store
    /// returned connects on use, and the second value is `false` until [`Store::migrate`]
    /// succeeds (call it again until then). A SQLite file is local: opened as by `open`.
    pub async fn open_or_later(config: &StoreConfig) -> Result<(Store, bool), StoreError> {
        let url = config.url.expose();
        if url.starts_with("sqlite:") {
            return Ok((Store::open(config).await?, true));
        }
        match postgres::connect(url).await {
            Ok(pool) => {
                let store = Store {
                    db: Db::Postgres(pool),
                };
                store.migrate().await?;
                Ok((store, true))
            }
            Err(StoreError::Db(e)) if unreachable(&e) => {
                tracing::warn!(error = %e, "the store is unreachable at start; serving without it until it answers");
                Ok((
                    Store {
                        db: Db::Postgres(postgres::connect_lazy(url)?),
                    },
                    false,
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Applies the migrations not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
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

    /// The value of a shared setting, `proposed` stored first if it has none: whichever replica
    /// asks first decides, and every replica then reads the same value.
    pub async fn setting_or(&self, name: &str, proposed: &str) -> Result<String, StoreError> {
        on_pool!(&self.db, p => {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(proposed)
                .execute(p)
                .await?;
        });
        let value = on_pool!(&self.db, p => sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(p)
            .await?
            .try_get::<String, _>(0)?);
        Ok(value)
    }

    /// One trivial query: is the store answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.db, p => { sqlx::query("SELECT 1").execute(p).await?; });
        Ok(())
    }

    // ---- Responses API conversations (`previous_response_id`)

    /// Keeps the conversation `items` (a JSON array of input items) that response `id` ends,
    /// readable by `owner` until `expires_at` (Unix seconds). Expired rows are removed on the way.
    pub async fn keep_conversation(
        &self,
        id: &str,
        owner: &str,
        items: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(&self.db, p => {
            sqlx::query("DELETE FROM responses WHERE expires_at <= $1")
                .bind(now)
                .execute(p)
                .await?;
            sqlx::query(
                "INSERT INTO responses (id, owner, items, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET owner = $2, items = $3, expires_at = $4",
            )
            .bind(id)
            .bind(owner)
            .bind(items)
            .bind(expires_at)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// The conversation response `id` ends, if `owner` kept it and it has not expired.
    pub async fn conversation(
        &self,
        id: &str,
        owner: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let items = on_pool!(&self.db, p => {
            let row = sqlx::query(
                "SELECT items FROM responses WHERE id = $1 AND owner = $2 AND expires_at > $3",
            )
            .bind(id)
            .bind(owner)
            .bind(now)
            .fetch_optional(p)
            .await?;
            row.map(|r| r.try_get::<String, _>(0)).transpose()?
        });
        Ok(items)
    }

    // ---- organisations

    pub async fn create_org(&self, name: &str, limits: &Limits) -> Result<Org, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("an organisation needs a name".into()));
        }
        let org = Org {
            id: new_id("org"),
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
            id: new_id("user"),
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

    /// Stores a new key for a user (by id or `org/name`), given its hash and display form
    /// (`auth::keys::create` makes the key; the store never sees it).
    pub async fn insert_key(
        &self,
        new: &NewKey,
        hash: String,
        display: String,
    ) -> Result<KeyRow, StoreError> {
        let user = self.get_user(&new.user).await?;
        let id = new_id("key");
        let row = KeyRow {
            hash,
            display,
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
            .execute(p).await.map(|_| ()))
            .map_err(|e| if is_unique_violation(&e) {
                // Only the hash is unique: the same key string was given before.
                StoreError::Conflict("this key already exists (a key string can be imported once)".into())
            } else {
                e.into()
            })?;
        Ok(row)
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

    // ---- usage (spend and reports: `rollup`)

    /// The newest usage records, optionally of one key, user or org.
    pub async fn recent_usage(
        &self,
        filter: Option<(crate::config::access::Level, &str)>,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let (key, user, org) = match filter {
            Some((crate::config::access::Level::Key, id)) => (Some(id), None, None),
            Some((crate::config::access::Level::User, id)) => (None, Some(id), None),
            Some((crate::config::access::Level::Org, id)) => (None, None, Some(id)),
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

    /// Writes a batch of usage records: on SQLite, one transaction of multi-row `INSERT`s whose
    /// values are bound by reference count (no copy of the text); on Postgres, one `COPY`
    /// stream (`pg_copy`).
    pub async fn insert_usage(&self, batch: &[UsageRecord]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        match &self.db {
            Db::Sqlite(p) => {
                let mut tx = p.begin().await?;
                usage_in_sqlite(&mut tx, batch).await?;
                tx.commit().await?;
            }
            // COPY is one statement: all or nothing without an explicit transaction.
            Db::Postgres(p) => usage_in_pg(&mut *p.acquire().await?, batch).await?,
        }
        Ok(())
    }
}

/// Usage records into SQLite inside `conn`'s transaction: statements whose row counts come from
/// a fixed ladder, so each statement is prepared once per connection and then found in sqlx's
/// cache: preparing a fresh statement of thousands of parameters for every batch size cost more
/// than the insert (measured). The largest rung also stays under SQLite's limit of 32766 bound
/// values per statement.
async fn usage_in_sqlite(
    conn: &mut sqlx::SqliteConnection,
    batch: &[UsageRecord],
) -> Result<(), StoreError> {
    let mut rest = batch;
    while !rest.is_empty() {
        let rows = SQLITE_ROWS_LADDER
            .iter()
            .copied()
            .find(|&n| n <= rest.len())
            .unwrap_or(1);
        let (now, later) = rest.split_at(rows);
        let mut q = sqlx::QueryBuilder::new(usage::INSERT_HEAD);
        push_sqlite_rows(&mut q, now);
        q.build().execute(&mut *conn).await?;
        rest = later;
    }
    Ok(())
}

/// Usage records into Postgres on `conn` as one `COPY` stream (`pg_copy`).
async fn usage_in_pg(
    conn: &mut sqlx::PgConnection,
    batch: &[UsageRecord],
) -> Result<(), StoreError> {
    let mut rows = String::with_capacity(batch.len() * 256);
    for r in batch {
        pg_copy::push_row(&mut rows, r);
    }
    let mut copy = conn.copy_in_raw(pg_copy::COPY_USAGE).await?;
    if let Err(e) = copy.send(rows.as_bytes()).await {
        // Hand the connection back in a usable state; the batch is retried whole.
        let _ = copy.abort("nines: sending usage rows failed").await;
        return Err(e.into());
    }
    copy.finish().await?;
    Ok(())
}

/// Rows per `INSERT` on SQLite, largest first (23 values a row: 11776 values at most).
const SQLITE_ROWS_LADDER: [usize; 5] = [512, 128, 32, 8, 1];

/// The `VALUES` of a multi-row `INSERT` of usage records. The text values are bound by reference
/// count (`Arc<str>` encodes without a copy), so handing a batch over costs no string copies.
fn push_sqlite_rows(q: &mut sqlx::QueryBuilder<sqlx::Sqlite>, rows: &[UsageRecord]) {
    q.push_values(rows, |mut b, r| {
        b.push_bind(Arc::clone(&r.id))
            .push_bind(Arc::clone(&r.request_id))
            .push_bind(r.key_id.clone())
            .push_bind(r.user_id.clone())
            .push_bind(r.org_id.clone())
            .push_bind(Arc::clone(&r.model))
            .push_bind(r.deployment.clone())
            .push_bind(Arc::clone(&r.endpoint))
            .push_bind(i64::from(r.stream))
            .push_bind(i64::from(r.attempts))
            .push_bind(i64::from(r.status))
            .push_bind(Arc::clone(&r.outcome))
            .push_bind(r.tokens_in.map(|t| t as i64))
            .push_bind(r.tokens_out.map(|t| t as i64))
            .push_bind(i64::from(r.usage_estimated))
            .push_bind(r.cost)
            .push_bind(r.ttfb_ms)
            .push_bind(r.latency_ms)
            .push_bind(r.started_at)
            .push_bind(r.finished_at)
            .push_bind(Arc::clone(&r.plan))
            .push_bind(Arc::clone(&r.attempt_trail))
            .push_bind(r.fallback.clone());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Postgres database of its own (`nines_{tag}_…`, migrated) when `DATABASE_URL` is set;
    /// `drop_scratch` removes it. `None` (said on stdout) without `DATABASE_URL`.
    pub(super) async fn postgres_scratch(tag: &str) -> Option<(Store, String)> {
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
        config.url = crate::config::Secret::new(format!("{base}/{name}"));
        Some((Store::open(&config).await.unwrap(), name))
    }

    /// Closes `store` and drops its scratch database.
    pub(super) async fn drop_scratch(store: Store, name: &str) {
        if let Db::Postgres(p) = &store.db {
            p.close().await;
        }
        let url = std::env::var("DATABASE_URL").unwrap_or_default();
        if let Ok(mut admin) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
                .execute(&mut admin)
                .await;
        }
    }

    pub(super) fn temp_store_config(tag: &str) -> (std::path::PathBuf, StoreConfig) {
        let dir = std::env::temp_dir().join(format!(
            "nines-store-{tag}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let config = StoreConfig::sqlite_in(&dir);
        (dir, config)
    }

    /// Text that every layer could get wrong: COPY's escapes, quotes, non-ASCII, and an empty
    /// string next to NULLs.
    pub(super) fn awkward(i: usize) -> UsageRecord {
        UsageRecord {
            id: format!("0190-{i}").into(),
            request_id: format!("req\t{i}\\n").into(),
            key_id: Some("key'1\n".into()),
            user_id: None,
            org_id: Some("orgé — 東京".into()),
            model: "gpt-4o\r\nmini \"x\"".into(),
            deployment: None,
            endpoint: "chat".into(),
            stream: i.is_multiple_of(2),
            attempts: 3,
            status: 502,
            outcome: "all_failed".into(),
            tokens_in: Some(1_000_000),
            tokens_out: None,
            usage_estimated: true,
            cost: 0.1 + 0.2,
            ttfb_ms: None,
            latency_ms: 1e-9,
            started_at: 1_700_000_000_000 + i as i64,
            finished_at: 1_700_000_000_005 + i as i64,
            plan: String::new().into(),
            attempt_trail: "a\\tb; c\td".into(),
            fallback: None,
        }
    }

    async fn round_trip(store: &Store) {
        let batch: Vec<UsageRecord> = (0..3).map(awkward).collect();
        store.insert_usage(&batch).await.unwrap();
        let mut read = store.recent_usage(None, 10).await.unwrap();
        read.reverse();
        assert_eq!(read, batch, "{} store", store.backend());
    }

    /// More rows than one SQLite statement may bind (23 values each, 32766 at most), in a size
    /// that takes every rung of the ladder.
    #[tokio::test]
    async fn a_batch_larger_than_one_statement_is_written_whole() {
        let (dir, config) = temp_store_config("large");
        let store = Store::open(&config).await.unwrap();
        let batch: Vec<UsageRecord> = (0..3 * 512 + 128 + 32 + 8 + 3).map(awkward).collect();
        store.insert_usage(&batch).await.unwrap();
        let read = store.recent_usage(None, 10_000).await.unwrap();
        assert_eq!(read.len(), batch.len());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn usage_records_read_back_exactly_from_sqlite() {
        let (dir, config) = temp_store_config("roundtrip");
        round_trip(&Store::open(&config).await.unwrap()).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The `COPY` text path against a real Postgres, in a database of its own.
    #[tokio::test]
    async fn usage_records_read_back_exactly_from_postgres() {
        let Some((store, name)) = postgres_scratch("copy").await else {
            return;
        };
        round_trip(&store).await;
        drop_scratch(store, &name).await;
    }

    /// A store written before migration 4 keeps its usage records through the table's rebuild,
    /// and takes new ones afterwards.
    #[tokio::test]
    async fn the_append_only_migration_keeps_existing_records() {
        let (dir, config) = temp_store_config("upgrade");
        let pool = sqlite::connect(config.url.expose()).await.unwrap();
        migrator().run_to(3, &pool).await.unwrap();
        // The columns as they were at migration 3.
        sqlx::query(
            "INSERT INTO usage_records (id, request_id, key_id, user_id, org_id, model, \
             deployment, endpoint, stream, attempts, status, outcome, tokens_in, tokens_out, \
             usage_estimated, cost, ttfb_ms, latency_ms, started_at, finished_at, plan, \
             attempt_trail) VALUES ('old-1', 'req-old', 'k', NULL, NULL, 'm', 'd', 'chat', 0, \
             1, 200, 'ok', 5, 7, 0, 0.5, 1.0, 2.0, 1000, 1002, 'plan', 'trail')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = Store::open(&config).await.unwrap();
        store.insert_usage(&[awkward(9)]).await.unwrap();
        let read = store.recent_usage(None, 10).await.unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].id.as_ref(), "old-1");
        assert_eq!((read[1].tokens_in, read[1].cost), (Some(5), 0.5));
        assert_eq!(&*read[1].attempt_trail, "trail");
        assert_eq!(read[0], awkward(9));
        assert_eq!(
            store
                .spend(crate::config::access::Level::Key, "k", 0)
                .await
                .unwrap(),
            0.5
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Minute rows as the fixed TTFB histogram wrote them (before migration 7): one at 25 ms,
    /// three at 100 ms, one over 30 s.
    const OLD_HISTOGRAM_ROW: &str = "INSERT INTO ledger_buckets (scope, name, minute_ms, \
        requests, failures, ttfb_le_25, ttfb_le_100, ttfb_over_30000) \
        VALUES ('route', 'chat', 60000, 5, 0, 1, 3, 1)";

    /// After migration 7 the old counts read as the upper bounds reports showed for them, to
    /// within the sketch's 1 %, and new traffic adds to the same minute.
    async fn old_histogram_reads_as_before(store: &Store) {
        use crate::telemetry::ledger::sketch::value_of;
        use crate::telemetry::ledger::{Delta, Tally};
        let rows = store.ledger_sums(0, 120_000, None).await.unwrap();
        assert_eq!(rows.len(), 1);
        let t = &rows[0].tally;
        assert_eq!((t.requests, t.ttfb.count()), (5, 5));
        let near = |v: f64, want: f64| (v - want).abs() <= want * 0.01;
        assert!(near(t.ttfb.percentile_ms(10.0).unwrap(), 25.0));
        assert!(near(t.ttfb.percentile_ms(50.0).unwrap(), 100.0));
        assert!(t.ttfb.percentile_ms(100.0).unwrap() > 30_000.0);
        let mut new = Tally {
            requests: 1,
            ..Tally::default()
        };
        new.ttfb.record(std::time::Duration::from_millis(100));
        store
            .add_ledger_deltas(&[Delta {
                scope: crate::telemetry::ledger::Scope::Route,
                name: "chat".into(),
                minute_ms: 60_000,
                tally: new,
            }])
            .await
            .unwrap();
        let rows = store.ledger_sums(0, 120_000, Some(60_000)).await.unwrap();
        let t = &rows[0].tally;
        assert_eq!((t.requests, t.ttfb.count()), (6, 6));
        let bin = crate::telemetry::ledger::sketch::bin_of(100.0);
        assert!(t.ttfb.bins().contains(&(bin, 4)), "{:?}", t.ttfb.bins());
        assert!(near(value_of(bin), 100.0));
    }

    #[tokio::test]
    async fn the_sketch_migration_keeps_the_old_ttfb_histogram_on_sqlite() {
        let (dir, config) = temp_store_config("sketch");
        let pool = sqlite::connect(config.url.expose()).await.unwrap();
        migrator().run_to(6, &pool).await.unwrap();
        sqlx::query(OLD_HISTOGRAM_ROW).execute(&pool).await.unwrap();
        pool.close().await;
        old_histogram_reads_as_before(&Store::open(&config).await.unwrap()).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_sketch_migration_keeps_the_old_ttfb_histogram_on_postgres() {
        let Some(db) = super::test_db::TestDb::postgres("sketch").await else {
            return;
        };
        let pool = sqlx::PgPool::connect(db.config.url.expose()).await.unwrap();
        migrator().run_to(6, &pool).await.unwrap();
        sqlx::query(OLD_HISTOGRAM_ROW).execute(&pool).await.unwrap();
        pool.close().await;
        let store = Store::open(&db.config).await.unwrap();
        old_histogram_reads_as_before(&store).await;
        if let Db::Postgres(p) = &store.db {
            p.close().await;
        }
        db.remove().await;
    }
}
