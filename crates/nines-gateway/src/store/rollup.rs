//! The usage rollup table (`migrations/0009_usage_rollups.sql`): per minute, organisation, user,
//! key, model, deployment and fallback, the requests, errors, tokens and cost. Rows are only ever
//! added to (`ON CONFLICT ... DO UPDATE SET x = usage_rollups.x + excluded.x`, the same text on
//! SQLite and Postgres), so replicas sharing a store each add their own sums and none overwrites
//! another's. Spend (budgets, `/admin/...` spend, `nines orgs|users|keys show`) and usage reports
//! read these rows, never the per-request detail.

use super::usage::Text;
use super::{Db, Store, StoreError};
use crate::config::access::Level;
use serde::Serialize;
use sqlx::Row;

/// Which row a request adds to. Absent ids are `""` (the table's key columns are NOT NULL, so
/// that two replicas' rows for "no key" conflict and add up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupKey {
    /// Unix ms of the minute's start.
    pub minute_ms: i64,
    pub org_id: Text,
    pub user_id: Text,
    pub key_id: Text,
    /// The model name the client sent.
    pub model: Text,
    /// The deployment that served; `""` when none did.
    pub deployment: Text,
    /// The fallback model that served; `""` when none did.
    pub fallback: Text,
}

/// A [`RollupKey`] of borrowed text: what the request path builds, so that adding to a row that
/// exists allocates nothing (the owned key is made only for a new row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupKeyRef<'a> {
    pub minute_ms: i64,
    pub org_id: &'a str,
    pub user_id: &'a str,
    pub key_id: &'a str,
    pub model: &'a str,
    pub deployment: &'a str,
    pub fallback: &'a str,
}

impl RollupKey {
    pub fn as_ref(&self) -> RollupKeyRef<'_> {
        RollupKeyRef {
            minute_ms: self.minute_ms,
            org_id: &self.org_id,
            user_id: &self.user_id,
            key_id: &self.key_id,
            model: &self.model,
            deployment: &self.deployment,
            fallback: &self.fallback,
        }
    }
}

/// Hashed for every request: the minute, the key, the model and the deployment by their text, the
/// organisation, user and fallback only by their lengths. A key belongs to one user and one
/// organisation, so their text would add work and no spread; keys that differ only there (or in
/// the fallback's text) share a hash and are told apart by `Eq`, as any collision is.
impl std::hash::Hash for RollupKeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_i64(self.minute_ms);
        let lengths = self
            .parts()
            .iter()
            .fold(0u64, |packed, s| packed.rotate_left(11) ^ s.len() as u64);
        state.write_u64(lengths);
        state.write(self.key_id.as_bytes());
        state.write(self.model.as_bytes());
        state.write(self.deployment.as_bytes());
    }
}

impl RollupKeyRef<'_> {
    pub fn to_owned(self) -> RollupKey {
        RollupKey {
            minute_ms: self.minute_ms,
            org_id: self.org_id.into(),
            user_id: self.user_id.into(),
            key_id: self.key_id.into(),
            model: self.model.into(),
            deployment: self.deployment.into(),
            fallback: self.fallback.into(),
        }
    }
}

/// A [`RollupKey`] as the in-memory rollups hold it (`accounting`): its six texts in one
/// allocation instead of six, the one the request's key is compared with. Hashes and compares
/// as its [`RollupKeyRef`], so a map of them is searched with one.
#[derive(Debug, PartialEq, Eq)]
pub struct PackedRollupKey {
    minute_ms: i64,
    /// Where each text ends in `text`: org, user, key, model, deployment, fallback.
    ends: [usize; 6],
    text: Box<str>,
}

impl PackedRollupKey {
    pub fn as_ref(&self) -> RollupKeyRef<'_> {
        let part = |i: usize| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            self.text.get(start..self.ends[i]).unwrap_or_default()
        };
        RollupKeyRef {
            minute_ms: self.minute_ms,
            org_id: part(0),
            user_id: part(1),
            key_id: part(2),
            model: part(3),
            deployment: part(4),
            fallback: part(5),
        }
    }

    /// The key as the store binds it.
    pub fn unpack(&self) -> RollupKey {
        self.as_ref().to_owned()
    }
}

impl<'a> RollupKeyRef<'a> {
    /// The texts in [`PackedRollupKey`]'s order.
    fn parts(&self) -> [&'a str; 6] {
        [
            self.org_id,
            self.user_id,
            self.key_id,
            self.model,
            self.deployment,
            self.fallback,
        ]
    }
}

impl From<RollupKeyRef<'_>> for PackedRollupKey {
    fn from(key: RollupKeyRef<'_>) -> PackedRollupKey {
        let parts = key.parts();
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0; 6];
        for (end, part) in ends.iter_mut().zip(parts) {
            text.push_str(part);
            *end = text.len();
        }
        PackedRollupKey {
            minute_ms: key.minute_ms,
            ends,
            text: text.into_boxed_str(),
        }
    }
}

impl std::hash::Hash for PackedRollupKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl hashbrown::Equivalent<PackedRollupKey> for RollupKeyRef<'_> {
    /// Each text by its length first, and compared only when not empty (a request without a
    /// key, user, organisation or fallback has four of six empty): each comparison of text is a
    /// call to `memcmp`, which perf found hot here, empty or not.
    fn equivalent(&self, key: &PackedRollupKey) -> bool {
        if self.minute_ms != key.minute_ms {
            return false;
        }
        let held = key.text.as_bytes();
        let mut start = 0;
        self.parts().iter().zip(key.ends).all(|(part, end)| {
            let same = end - start == part.len()
                && (part.is_empty() || held.get(start..end) == Some(part.as_bytes()));
            start = end;
            same
        })
    }
}

/// What the requests of one [`RollupKey`] add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RollupSums {
    pub requests: u64,
    /// Requests that ended with a status of 400 or more.
    pub errors: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// USD.
    pub cost: f64,
}

impl RollupSums {
    pub fn add(&mut self, other: &RollupSums) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.tokens_in = self.tokens_in.saturating_add(other.tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(other.tokens_out);
        self.cost += other.cost;
    }
}

/// One row of a usage report: a group's sums since the report's start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageGroup {
    /// The group's value (`""` for none: e.g. requests without a key).
    pub id: String,
    #[serde(flatten)]
    pub sums: RollupSums,
}

/// What a usage report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Org,
    User,
    Key,
    Model,
    Deployment,
}

impl GroupBy {
    pub const ALL: [GroupBy; 5] = [
        GroupBy::Org,
        GroupBy::User,
        GroupBy::Key,
        GroupBy::Model,
        GroupBy::Deployment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Org => "org",
            GroupBy::User => "user",
            GroupBy::Key => "key",
            GroupBy::Model => "model",
            GroupBy::Deployment => "deployment",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == s)
    }

    fn column(self) -> &'static str {
        match self {
            GroupBy::Org => "org_id",
            GroupBy::User => "user_id",
            GroupBy::Key => "key_id",
            GroupBy::Model => "model",
            GroupBy::Deployment => "deployment",
        }
    }
}

impl From<Level> for GroupBy {
    fn from(level: Level) -> GroupBy {
        match level {
            Level::Org => GroupBy::Org,
            Level::User => GroupBy::User,
            Level::Key => GroupBy::Key,
        }
    }
}

/// Rows per upsert statement: 12 values each, well under SQLite's 32766 and Postgres' 65535
/// bound values.
const CHUNK: usize = 500;

const UPSERT_HEAD: &str = "INSERT INTO usage_rollups (minute_ms, org_id, user_id, key_id, model, \
    deployment, fallback, requests, errors, tokens_in, tokens_out, cost) ";

const UPSERT_TAIL: &str = " ON CONFLICT (minute_ms, org_id, user_id, key_id, model, deployment, \
    fallback) DO UPDATE SET requests = usage_rollups.requests + excluded.requests, \
    errors = usage_rollups.errors + excluded.errors, \
    tokens_in = usage_rollups.tokens_in + excluded.tokens_in, \
    tokens_out = usage_rollups.tokens_out + excluded.tokens_out, \
    cost = usage_rollups.cost + excluded.cost";

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Adds each row's sums to its minute row (creating it), all or nothing: one transaction.
    /// `rows` must not name one key twice (Postgres refuses to update a row twice in one
    /// statement); the aggregator that calls this holds one entry per key.
    pub async fn add_usage_rollups(
        &self,
        rows: &[(RollupKey, RollupSums)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            for chunk in rows.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new(UPSERT_HEAD);
                q.push_values(chunk, |mut b, (k, s)| {
                    b.push_bind(k.minute_ms)
                        .push_bind(k.org_id.as_ref())
                        .push_bind(k.user_id.as_ref())
                        .push_bind(k.key_id.as_ref())
                        .push_bind(k.model.as_ref())
                        .push_bind(k.deployment.as_ref())
                        .push_bind(k.fallback.as_ref())
                        .push_bind(count(s.requests))
                        .push_bind(count(s.errors))
                        .push_bind(count(s.tokens_in))
                        .push_bind(count(s.tokens_out))
                        .push_bind(s.cost);
                });
                q.push(UPSERT_TAIL);
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Sums per group since `since_ms` (inclusive, on a minute boundary to be exact), optionally
    /// of one key, user or org, largest cost first.
    pub async fn usage_by(
        &self,
        by: GroupBy,
        since_ms: i64,
        filter: Option<(Level, &str)>,
    ) -> Result<Vec<UsageGroup>, StoreError> {
        let (filter_column, filter_value) = match filter {
            Some((level, id)) => (GroupBy::from(level).column(), Some(id)),
            None => ("key_id", None),
        };
        let column = by.column();
        // Both names come from `GroupBy::column`, never from input.
        let sql = format!(
            "SELECT {column} AS id, CAST(SUM(requests) AS BIGINT) AS requests, \
             CAST(SUM(errors) AS BIGINT) AS errors, CAST(SUM(tokens_in) AS BIGINT) AS tokens_in, \
             CAST(SUM(tokens_out) AS BIGINT) AS tokens_out, COALESCE(SUM(cost), 0.0) AS cost \
             FROM usage_rollups WHERE minute_ms >= $1 AND ($2 IS NULL OR {filter_column} = $2) \
             GROUP BY {column} ORDER BY cost DESC, id"
        );
        let as_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        on_pool!(&self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(since_ms)
                .bind(filter_value)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(UsageGroup {
                        id: r.try_get("id")?,
                        sums: RollupSums {
                            requests: as_u64(r.try_get("requests")?),
                            errors: as_u64(r.try_get("errors")?),
                            tokens_in: as_u64(r.try_get("tokens_in")?),
                            tokens_out: as_u64(r.try_get("tokens_out")?),
                            cost: r.try_get("cost")?,
                        },
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// Spend (USD) per subject of one level since `since_ms`: `key`, `user` or `org`.
    pub async fn spend_by(
        &self,
        level: Level,
        since_ms: i64,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        Ok(self
            .usage_by(GroupBy::from(level), since_ms, None)
            .await?
            .into_iter()
            .filter(|g| !g.id.is_empty())
            .map(|g| (g.id, g.sums.cost))
            .collect())
    }

    /// One subject's spend (USD) since `since_ms`.
    pub async fn spend(&self, level: Level, id: &str, since_ms: i64) -> Result<f64, StoreError> {
        Ok(self
            .usage_by(GroupBy::from(level), since_ms, Some((level, id)))
            .await?
            .first()
            .map_or(0.0, |g| g.sums.cost))
    }
}

/// A usage report over rollups: what `GET /admin/usage/summary` and `nines usage` print.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    pub by: &'static str,
    /// Unix ms the report starts at (a minute boundary).
    pub since_ms: i64,
    pub groups: Vec<UsageGroup>,
    pub total: RollupSums,
}

impl Store {
    /// Sums per group since `since_ms`, and their total.
    pub async fn usage_report(
        &self,
        by: GroupBy,
        since_ms: i64,
        filter: Option<(Level, &str)>,
    ) -> Result<UsageReport, StoreError> {
        let groups = self.usage_by(by, since_ms, filter).await?;
        let mut total = RollupSums::default();
        for g in &groups {
            total.add(&g.sums);
        }
        Ok(UsageReport {
            by: by.as_str(),
            since_ms,
            groups,
            total,
        })
    }
}
