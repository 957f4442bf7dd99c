//! What a spooled batch means to the store (`spool` knows only its kind tag): each line is
//! applied in one transaction together with the segment's progress row, so it is applied once.
//!
//! | kind     | records                         | applied as                          |
//! |----------|---------------------------------|-------------------------------------|
//! | `usage`  | [`UsageRecord`]s                | the usage writer's insert           |
//! | `ledger` | ledger [`Delta`]s               | the ledger writer's additive upsert |
//!
//! A line that does not parse, or of a kind this version does not know, is skipped (its
//! progress recorded, so it does not block the ones after it) and reported as unreadable.

use super::spool::Applied;
use super::{Db, Store, StoreError, UsageRecord};
use crate::telemetry::ledger::Delta;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The kind tags the writers spool under.
pub const USAGE: &str = "usage";
pub const LEDGER: &str = "ledger";

#[derive(Deserialize)]
struct Line<'a> {
    kind: &'a str,
    #[serde(borrow)]
    records: &'a RawValue,
}

enum Parsed {
    Usage(Vec<UsageRecord>),
    Ledger(Vec<Delta>),
    Unreadable(String),
}

impl Parsed {
    fn of(line: &[u8]) -> Parsed {
        let line: Line<'_> = match serde_json::from_slice(line) {
            Ok(l) => l,
            Err(e) => return Parsed::Unreadable(e.to_string()),
        };
        let records = line.records.get();
        let parsed = match line.kind {
            USAGE => serde_json::from_str(records).map(Parsed::Usage),
            LEDGER => serde_json::from_str(records).map(Parsed::Ledger),
            other => return Parsed::Unreadable(format!("unknown kind '{other}'")),
        };
        parsed.unwrap_or_else(|e| Parsed::Unreadable(e.to_string()))
    }
}

const PROGRESS: &str = "SELECT lines FROM spool_progress WHERE segment = $1";
const ADVANCE: &str = "INSERT INTO spool_progress (segment, lines) VALUES ($1, $2) \
                       ON CONFLICT (segment) DO UPDATE SET lines = excluded.lines";

impl Store {
    /// Applies line `line_no` (from 0) of spool segment `segment`, unless an earlier replay did.
    pub async fn apply_spooled(
        &self,
        segment: &str,
        line_no: i64,
        line: &[u8],
    ) -> Result<Applied, StoreError> {
        let parsed = Parsed::of(line);
        // One text for both backends; only the two writers differ.
        macro_rules! apply_in {
            ($pool:expr, $usage:path, $ledger:path) => {{
                let mut tx = $pool.begin().await?;
                let done: Option<i64> = sqlx::query_scalar(PROGRESS)
                    .bind(segment)
                    .fetch_optional(&mut *tx)
                    .await?;
                if done.is_some_and(|d| d > line_no) {
                    return Ok(Applied::AlreadyThere);
                }
                let applied = match &parsed {
                    Parsed::Usage(r) => {
                        $usage(&mut tx, r).await?;
                        Applied::Written(r.len())
                    }
                    Parsed::Ledger(d) => {
                        $ledger(&mut tx, d).await?;
                        Applied::Written(d.len())
                    }
                    Parsed::Unreadable(_) => Applied::Unreadable,
                };
                sqlx::query(ADVANCE)
                    .bind(segment)
                    .bind(line_no + 1)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                applied
            }};
        }
        let applied = match &self.db {
            Db::Sqlite(p) => apply_in!(p, super::usage_in_sqlite, super::ledger::deltas_in_sqlite),
            Db::Postgres(p) => apply_in!(p, super::usage_in_pg, super::ledger::deltas_in_pg),
        };
        if let Parsed::Unreadable(why) = parsed {
            tracing::warn!(segment, line = line_no, error = %why, "a spooled batch cannot be read and is skipped");
        }
        Ok(applied)
    }

    /// Forgets a segment's progress once its file is gone.
    pub async fn forget_spool_segment(&self, segment: &str) -> Result<(), StoreError> {
        on_pool!(&self.db, p => {
            sqlx::query("DELETE FROM spool_progress WHERE segment = $1")
                .bind(segment)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}
