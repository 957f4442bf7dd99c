//! The availability ledger's tables (`migrations/0002_ledger.sql`, `0007_ledger_sketch.sql`):
//! minute buckets per series, added to by every replica, their time-to-first-byte sketch bins,
//! and breaker incidents.
//!
//! Every count of a [`Tally`] is its own BIGINT column, so a replica's delta is one additive
//! upsert (`ON CONFLICT (scope, name, minute_ms) DO UPDATE SET requests =
//! ledger_buckets.requests + excluded.requests, ...`) and replicas never read-modify-write each
//! other's rows. The time-to-first-byte sketch is one row per bin in `ledger_ttfb`, added to the
//! same way. The column list is derived from [`FailureClass::ALL`]; a test checks that the
//! migrations leave exactly those columns, so a new failure class needs a migration.

use super::{Db, Store, StoreError};
use crate::resilience::FailureClass;
use crate::telemetry::ledger::{Delta, Incident, Scope, Tally};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Rows per upsert statement (each row binds 3 + [`COLUMNS`] values; well under SQLite's and
/// Postgres' bind limits).
const CHUNK: usize = 200;

const COUNTS: [&str; 5] = [
    "requests",
    "failures",
    "fallbacks",
    "sessions",
    "sessions_good",
];

/// The count columns, in [`Tally`] order: the five counters, then failed attempts per class
/// (`class_{name}`).
pub(crate) static COLUMNS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut columns: Vec<String> = COUNTS.iter().map(|c| (*c).to_owned()).collect();
    columns.extend(
        FailureClass::ALL
            .iter()
            .map(|c| format!("class_{}", c.as_str())),
    );
    columns
});

static UPSERT_HEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO ledger_buckets (scope, name, minute_ms, {}) ",
        COLUMNS.join(", ")
    )
});

static UPSERT_TAIL: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{c} = ledger_buckets.{c} + excluded.{c}"))
        .collect();
    format!(
        " ON CONFLICT (scope, name, minute_ms) DO UPDATE SET {}",
        sets.join(", ")
    )
});

fn sums() -> String {
    COLUMNS
        .iter()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sums per series and bucket of `$3` ms over `[$1, $2)`.
static BUCKETED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT scope, name, (minute_ms / $3) * $3 AS bucket, {} FROM ledger_buckets \
         WHERE minute_ms >= $1 AND minute_ms < $2 GROUP BY scope, name, bucket \
         ORDER BY bucket, scope, name",
        sums()
    )
});

/// Sums per series over `[$1, $2)`.
static TOTALS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT scope, name, CAST(0 AS BIGINT) AS bucket, {} FROM ledger_buckets \
         WHERE minute_ms >= $1 AND minute_ms < $2 GROUP BY scope, name ORDER BY scope, name",
        sums()
    )
});

/// Rows per sketch-bin upsert statement (5 binds each).
const TTFB_CHUNK: usize = 500;

const TTFB_UPSERT_HEAD: &str = "INSERT INTO ledger_ttfb (scope, name, minute_ms, bin, samples) ";
const TTFB_UPSERT_TAIL: &str = " ON CONFLICT (scope, name, minute_ms, bin) DO UPDATE SET \
    samples = ledger_ttfb.samples + excluded.samples";

/// Sketch bins per series and bucket of `$3` ms over `[$1, $2)`.
const TTFB_BUCKETED: &str = "SELECT scope, name, (minute_ms / $3) * $3 AS bucket, bin, \
    CAST(SUM(samples) AS BIGINT) FROM ledger_ttfb WHERE minute_ms >= $1 AND minute_ms < $2 \
    GROUP BY scope, name, bucket, bin";

/// Sketch bins per series over `[$1, $2)`.
const TTFB_TOTALS: &str = "SELECT scope, name, CAST(0 AS BIGINT) AS bucket, bin, \
    CAST(SUM(samples) AS BIGINT) FROM ledger_ttfb WHERE minute_ms >= $1 AND minute_ms < $2 \
    GROUP BY scope, name, bin";

fn values(t: &Tally) -> impl Iterator<Item = i64> + '_ {
    [
        t.requests,
        t.failures,
        t.fallbacks,
        t.sessions,
        t.sessions_good,
    ]
    .into_iter()
    .chain(t.classes)
    .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn tally_of(values: &[i64]) -> Tally {
    let v = |i: usize| values.get(i).map_or(0, |v| u64::try_from(*v).unwrap_or(0));
    let mut t = Tally {
        requests: v(0),
        failures: v(1),
        fallbacks: v(2),
        sessions: v(3),
        sessions_good: v(4),
        ..Tally::default()
    };
    for (i, slot) in t.classes.iter_mut().enumerate() {
        *slot = v(COUNTS.len() + i);
    }
    t
}

/// One series' counts over a bucket (a minute, an hour, or a whole range).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    pub scope: Scope,
    pub name: String,
    /// Unix ms of the bucket's start (0 for a whole-range sum).
    pub bucket_ms: u64,
    pub tally: Tally,
}

const INCIDENT_UPSERT: &str = "INSERT INTO ledger_incidents \
    (key_slot, opened_at_ms, deployment, closed_at_ms, reason, trips) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (key_slot, opened_at_ms) DO UPDATE SET \
    closed_at_ms = CASE \
        WHEN excluded.closed_at_ms IS NULL THEN ledger_incidents.closed_at_ms \
        WHEN ledger_incidents.closed_at_ms IS NULL \
            OR excluded.closed_at_ms > ledger_incidents.closed_at_ms THEN excluded.closed_at_ms \
        ELSE ledger_incidents.closed_at_ms END, \
    trips = CASE WHEN excluded.trips > ledger_incidents.trips THEN excluded.trips \
        ELSE ledger_incidents.trips END";

/// Adds `$deltas` to their rows inside the open transaction `$tx` (either backend): one
/// text for [`Store::add_ledger_deltas`] and the spool's replay.
macro_rules! write_ledger_deltas {
    ($tx:expr, $deltas:expr) => {{
        let tx = $tx;
        let deltas: &[Delta] = $deltas;
        for chunk in deltas.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(UPSERT_HEAD.as_str());
            q.push_values(chunk, |mut b, d| {
                b.push_bind(d.scope.as_str())
                    .push_bind(d.name.as_ref())
                    .push_bind(i64::try_from(d.minute_ms).unwrap_or(i64::MAX));
                for v in values(&d.tally) {
                    b.push_bind(v);
                }
            });
            q.push(UPSERT_TAIL.as_str());
            q.build().execute(&mut **tx).await?;
        }
        let bins: Vec<(&Delta, i32, u64)> = deltas
            .iter()
            .flat_map(|d| d.tally.ttfb.bins().iter().map(move |(b, n)| (d, *b, *n)))
            .collect();
        for chunk in bins.chunks(TTFB_CHUNK) {
            let mut q = sqlx::QueryBuilder::new(TTFB_UPSERT_HEAD);
            q.push_values(chunk, |mut b, (d, bin, n)| {
                b.push_bind(d.scope.as_str())
                    .push_bind(d.name.as_ref())
                    .push_bind(i64::try_from(d.minute_ms).unwrap_or(i64::MAX))
                    .push_bind(i64::from(*bin))
                    .push_bind(i64::try_from(*n).unwrap_or(i64::MAX));
            });
            q.push(TTFB_UPSERT_TAIL);
            q.build().execute(&mut **tx).await?;
        }
    }};
}

/// [`write_ledger_deltas`] inside a SQLite transaction (the spool's replay).
pub(super) async fn deltas_in_sqlite(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    deltas: &[Delta],
) -> Result<(), StoreError> {
    write_ledger_deltas!(tx, deltas);
    Ok(())
}

/// [`write_ledger_deltas`] inside a Postgres transaction (the spool's replay).
pub(super) async fn deltas_in_pg(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    deltas: &[Delta],
) -> Result<(), StoreError> {
    write_ledger_deltas!(tx, deltas);
    Ok(())
}

impl Store {
    /// Adds deltas to their buckets (creating them), all or nothing: one transaction.
    pub async fn add_ledger_deltas(&self, deltas: &[Delta]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            write_ledger_deltas!(&mut tx, deltas);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Counts per series in `[from_ms, to_ms)`, summed into buckets of `bucket_ms` (a minute:
    /// the rows as stored), or over the whole range when `bucket_ms` is `None`, each with its
    /// time-to-first-byte sketch.
    pub async fn ledger_sums(
        &self,
        from_ms: u64,
        to_ms: u64,
        bucket_ms: Option<u64>,
    ) -> Result<Vec<BucketRow>, StoreError> {
        let mut rows = self.ledger_counts(from_ms, to_ms, bucket_ms).await?;
        let bins = self.ledger_ttfb_bins(from_ms, to_ms, bucket_ms).await?;
        let mut at: HashMap<(Scope, String, u64), usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.scope, r.name.clone(), r.bucket_ms), i))
            .collect();
        for (scope, name, bucket_ms, bin, count) in bins {
            let key = (scope, name, bucket_ms);
            let i = match at.get(&key) {
                Some(i) => *i,
                None => {
                    // Bins without counts (cannot happen through the ledger; kept anyway).
                    rows.push(BucketRow {
                        scope: key.0,
                        name: key.1.clone(),
                        bucket_ms,
                        tally: Tally::default(),
                    });
                    at.insert(key, rows.len() - 1);
                    rows.len() - 1
                }
            };
            rows[i].tally.ttfb.add_to_bin(bin, count);
        }
        Ok(rows)
    }

    /// `(scope, name, bucket, bin, count)` over `[from_ms, to_ms)`.
    async fn ledger_ttfb_bins(
        &self,
        from_ms: u64,
        to_ms: u64,
        bucket_ms: Option<u64>,
    ) -> Result<Vec<(Scope, String, u64, i32, u64)>, StoreError> {
        let sql = if bucket_ms.is_some() {
            TTFB_BUCKETED
        } else {
            TTFB_TOTALS
        };
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        on_pool!(&self.db, p => {
            let mut q = sqlx::query(sql).bind(ms(from_ms)).bind(ms(to_ms));
            if let Some(b) = bucket_ms {
                q = q.bind(ms(b.max(1)));
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let scope: String = r.try_get(0)?;
                let Some(scope) = Scope::parse(&scope) else { continue };
                let bin = i32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0);
                let count = u64::try_from(r.try_get::<Option<i64>, _>(4)?.unwrap_or(0)).unwrap_or(0);
                out.push((
                    scope,
                    r.try_get(1)?,
                    u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                    bin,
                    count,
                ));
            }
            Ok(out)
        })
    }

    async fn ledger_counts(
        &self,
        from_ms: u64,
        to_ms: u64,
        bucket_ms: Option<u64>,
    ) -> Result<Vec<BucketRow>, StoreError> {
        let sql: &'static str = match bucket_ms {
            Some(_) => BUCKETED.as_str(),
            None => TOTALS.as_str(),
        };
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        on_pool!(&self.db, p => {
            let mut q = sqlx::query(sql).bind(ms(from_ms)).bind(ms(to_ms));
            if let Some(b) = bucket_ms {
                q = q.bind(ms(b.max(1)));
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            let mut counts = vec![0i64; COLUMNS.len()];
            for r in &rows {
                let scope: String = r.try_get(0)?;
                let Some(scope) = Scope::parse(&scope) else { continue };
                for (i, slot) in counts.iter_mut().enumerate() {
                    *slot = r.try_get::<Option<i64>, _>(3 + i)?.unwrap_or(0);
                }
                out.push(BucketRow {
                    scope,
                    name: r.try_get(1)?,
                    bucket_ms: u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                    tally: tally_of(&counts),
                });
            }
            Ok(out)
        })
    }

    /// The start of a series' first minute row: where its data begin.
    pub async fn ledger_first_data(
        &self,
        scope: Scope,
        name: &str,
    ) -> Result<Option<u64>, StoreError> {
        on_pool!(&self.db, p => {
            let row = sqlx::query(
                "SELECT MIN(minute_ms) FROM ledger_buckets WHERE scope = $1 AND name = $2")
                .bind(scope.as_str()).bind(name)
                .fetch_one(p).await?;
            Ok(row.try_get::<Option<i64>, _>(0)?.and_then(|v| u64::try_from(v).ok()))
        })
    }

    /// Writes an incident as it is now: a new row when it opened, the closing time (the later
    /// one, when several replicas close it) and the larger trip count otherwise.
    pub async fn upsert_incident(&self, i: &Incident) -> Result<(), StoreError> {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        on_pool!(&self.db, p => sqlx::query(INCIDENT_UPSERT)
            .bind(&i.key_slot)
            .bind(ms(i.opened_at_ms))
            .bind(&i.deployment)
            .bind(i.closed_at_ms.map(ms))
            .bind(&i.reason)
            .bind(i64::from(i.trips))
            .execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Incidents that were open at some time in `[from_ms, to_ms]`, newest first, at most
    /// `limit`.
    pub async fn ledger_incidents(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        on_pool!(&self.db, p => {
            let rows = sqlx::query(
                "SELECT key_slot, opened_at_ms, deployment, closed_at_ms, reason, trips \
                 FROM ledger_incidents \
                 WHERE opened_at_ms <= $2 AND (closed_at_ms IS NULL OR closed_at_ms >= $1) \
                 ORDER BY opened_at_ms DESC, key_slot LIMIT $3")
                .bind(ms(from_ms)).bind(ms(to_ms)).bind(i64::from(limit))
                .fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(Incident {
                        key_slot: r.try_get("key_slot")?,
                        opened_at_ms: u64::try_from(r.try_get::<i64, _>("opened_at_ms")?)
                            .unwrap_or(0),
                        deployment: r.try_get("deployment")?,
                        closed_at_ms: r
                            .try_get::<Option<i64>, _>("closed_at_ms")?
                            .map(|v| u64::try_from(v).unwrap_or(0)),
                        reason: r.try_get("reason")?,
                        trips: u32::try_from(r.try_get::<i64, _>("trips")?).unwrap_or(u32::MAX),
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// Deletes buckets older than `before_ms` and incidents that ended (or, still open, began)
    /// before it. Returns the rows deleted: (buckets, incidents).
    pub async fn prune_ledger(&self, before_ms: u64) -> Result<(u64, u64), StoreError> {
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        on_pool!(&self.db, p => {
            let buckets = sqlx::query("DELETE FROM ledger_buckets WHERE minute_ms < $1")
                .bind(before).execute(p).await?.rows_affected();
            sqlx::query("DELETE FROM ledger_ttfb WHERE minute_ms < $1")
                .bind(before).execute(p).await?;
            let incidents = sqlx::query(
                "DELETE FROM ledger_incidents WHERE COALESCE(closed_at_ms, opened_at_ms) < $1")
                .bind(before).execute(p).await?.rows_affected();
            Ok((buckets, incidents))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_leave_exactly_the_count_columns() {
        let sql = include_str!("migrations/0002_ledger.sql");
        let table = sql
            .split("CREATE TABLE ledger_buckets (")
            .nth(1)
            .and_then(|rest| rest.split(");").next())
            .unwrap_or_default();
        let sketch = include_str!("migrations/0007_ledger_sketch.sql");
        let dropped: Vec<&str> = sketch
            .lines()
            .filter_map(|l| l.strip_prefix("ALTER TABLE ledger_buckets DROP COLUMN "))
            .map(|c| c.trim_end_matches(';'))
            .collect();
        let declared: Vec<&str> = table
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("BIGINT NOT NULL DEFAULT 0"))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| !dropped.contains(c))
            .collect();
        assert_eq!(declared, *COLUMNS);
    }

    #[test]
    fn the_histogram_moves_into_the_bins_of_its_bounds() {
        use crate::telemetry::ledger::sketch::bin_of;
        let sketch = include_str!("migrations/0007_ledger_sketch.sql");
        let moved: Vec<(String, i32)> = sketch
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SELECT scope, name, minute_ms, "))
            .filter_map(|rest| {
                let mut words = rest.split([',', ' ']).filter(|w| !w.is_empty());
                let bin = words.next()?.parse().ok()?;
                Some((words.next()?.to_owned(), bin))
            })
            .collect();
        assert_eq!(moved.len(), 16);
        for (column, bin) in moved {
            if let Some(bound) = column.strip_prefix("ttfb_le_") {
                let bound: f64 = bound.parse().unwrap();
                assert_eq!(bin, bin_of(bound), "{column}");
            } else {
                assert_eq!(column, "ttfb_over_30000");
                assert_eq!(bin, bin_of(30_000.0) + 1);
            }
        }
    }

    #[test]
    fn tallies_map_to_columns_and_back() {
        let mut t = Tally {
            requests: 1,
            failures: 2,
            fallbacks: 3,
            sessions: 4,
            sessions_good: 5,
            ..Tally::default()
        };
        for (i, v) in t.classes.iter_mut().enumerate() {
            *v = 200 + i as u64;
        }
        let v: Vec<i64> = values(&t).collect();
        assert_eq!(v.len(), COLUMNS.len());
        assert_eq!(tally_of(&v), t);
    }
}
