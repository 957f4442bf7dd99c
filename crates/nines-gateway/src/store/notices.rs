//! Operator notices on the status page (`migrations/0011_status_notices.sql`): incident updates
//! and scheduled maintenance. The status page keeps its own copy (`status::notices`); the store
//! makes them survive a restart and reach every replica sharing it.

use super::{Db, Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// What a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// An operator's word on an incident ("we are investigating …").
    Incident,
    /// Planned work, usually with a window (`starts_at`..`ends_at`).
    Maintenance,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Incident => "incident",
            NoticeKind::Maintenance => "maintenance",
        }
    }

    pub fn parse(text: &str) -> Option<NoticeKind> {
        match text {
            "incident" => Some(NoticeKind::Incident),
            "maintenance" => Some(NoticeKind::Maintenance),
            _ => None,
        }
    }
}

/// One notice. Its text is an operator's input: pages escape it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// `ntc_…`.
    pub id: String,
    pub kind: NoticeKind,
    pub title: String,
    pub body: String,
    /// The models it concerns (empty: all).
    pub models: Vec<String>,
    /// Unix ms.
    pub created_at_ms: u64,
    /// The maintenance window, if it has one.
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    /// When an operator resolved it (`None`: still shown).
    pub resolved_at_ms: Option<u64>,
}

const INSERT: &str = "INSERT INTO status_notices (id, kind, title, body, models, created_at, \
    starts_at, ends_at, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const BY_ID: &str = "SELECT id, kind, title, body, models, created_at, starts_at, ends_at, \
    resolved_at FROM status_notices WHERE id = $1";
const SINCE: &str = "SELECT id, kind, title, body, models, created_at, starts_at, ends_at, \
    resolved_at FROM status_notices WHERE (resolved_at IS NULL AND (ends_at IS NULL OR \
    ends_at >= $1)) OR resolved_at >= $1 ORDER BY created_at, id";

fn ms(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// A row of `status_notices` as a [`Notice`] (a macro: the row type differs per backend).
macro_rules! notice_from_row {
    ($r:expr) => {{
        let kind: String = $r.try_get("kind")?;
        let models: String = $r.try_get("models")?;
        let at = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
        Notice {
            id: $r.try_get("id")?,
            kind: NoticeKind::parse(&kind)
                .ok_or_else(|| StoreError::Invalid(format!("unknown notice kind '{kind}'")))?,
            title: $r.try_get("title")?,
            body: $r.try_get("body")?,
            models: serde_json::from_str(&models).unwrap_or_default(),
            created_at_ms: at(Some($r.try_get("created_at")?)).unwrap_or(0),
            starts_at_ms: at($r.try_get("starts_at")?),
            ends_at_ms: at($r.try_get("ends_at")?),
            resolved_at_ms: at($r.try_get("resolved_at")?),
        }
    }};
}

impl Store {
    pub async fn insert_notice(&self, n: &Notice) -> Result<(), StoreError> {
        let models = serde_json::to_string(&n.models).unwrap_or_else(|_| "[]".into());
        on_pool!(&self.db, p => {
            sqlx::query(INSERT)
                .bind(&n.id)
                .bind(n.kind.as_str())
                .bind(&n.title)
                .bind(&n.body)
                .bind(&models)
                .bind(ms(Some(n.created_at_ms)).unwrap_or(0))
                .bind(ms(n.starts_at_ms))
                .bind(ms(n.ends_at_ms))
                .bind(ms(n.resolved_at_ms))
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Resolves a notice at `at_ms` (a second resolve keeps the first time); the notice as it
    /// now is.
    pub async fn resolve_notice(&self, id: &str, at_ms: u64) -> Result<Notice, StoreError> {
        on_pool!(&self.db, p => {
            sqlx::query(
                "UPDATE status_notices SET resolved_at = $2 WHERE id = $1 AND resolved_at IS NULL",
            )
            .bind(id)
            .bind(ms(Some(at_ms)))
            .execute(p)
            .await?;
        });
        let notice = on_pool!(&self.db, p => {
            match sqlx::query(BY_ID).bind(id).fetch_optional(p).await? {
                Some(r) => notice_from_row!(r),
                None => return Err(StoreError::NotFound(format!("notice {id}"))),
            }
        });
        Ok(notice)
    }

    /// Notices still in force, and those resolved (or whose window ended) at or after
    /// `since_ms`, oldest first.
    pub async fn notices_since(&self, since_ms: u64) -> Result<Vec<Notice>, StoreError> {
        let since = ms(Some(since_ms)).unwrap_or(0);
        let notices = on_pool!(&self.db, p => {
            let mut out = Vec::new();
            for r in sqlx::query(SINCE).bind(since).fetch_all(p).await? {
                out.push(notice_from_row!(r));
            }
            out
        });
        Ok(notices)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{drop_scratch, postgres_scratch, temp_store_config};
    use super::*;

    fn notice(id: &str, created: u64) -> Notice {
        Notice {
            id: id.into(),
            kind: NoticeKind::Maintenance,
            title: "Upgrade <db> & 'cache'".into(),
            body: "line one\nline two".into(),
            models: vec!["chat".into(), "embed".into()],
            created_at_ms: created,
            starts_at_ms: Some(created + 1000),
            ends_at_ms: Some(created + 2000),
            resolved_at_ms: None,
        }
    }

    /// Written, read back exactly, resolved once, and listed while in force or recently over.
    async fn round_trip(store: &Store) {
        let a = notice("ntc_a", 10_000);
        let mut b = notice("ntc_b", 20_000);
        b.kind = NoticeKind::Incident;
        b.starts_at_ms = None;
        b.ends_at_ms = None;
        b.models = Vec::new();
        store.insert_notice(&a).await.unwrap();
        store.insert_notice(&b).await.unwrap();
        assert_eq!(
            store.notices_since(0).await.unwrap(),
            [a.clone(), b.clone()]
        );
        let resolved = store.resolve_notice("ntc_b", 30_000).await.unwrap();
        assert_eq!(resolved.resolved_at_ms, Some(30_000));
        let again = store.resolve_notice("ntc_b", 40_000).await.unwrap();
        assert_eq!(again.resolved_at_ms, Some(30_000));
        // `a`'s window ended at 12 000, `b` was resolved at 30 000.
        assert_eq!(store.notices_since(25_000).await.unwrap(), [again]);
        assert!(store.notices_since(31_000).await.unwrap().is_empty());
        assert!(matches!(
            store.resolve_notice("ntc_none", 1).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn notices_round_trip_on_sqlite() {
        let (dir, config) = temp_store_config("notices");
        round_trip(&Store::open(&config).await.unwrap()).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn notices_round_trip_on_postgres() {
        let Some((store, name)) = postgres_scratch("notices").await else {
            return;
        };
        round_trip(&store).await;
        drop_scratch(store, &name).await;
    }
}
