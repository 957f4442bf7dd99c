//! Operator notices: incident updates and scheduled maintenance an operator posts (admin API
//! `POST /admin/status/notices`, `nines status notice add`), shown on the status page (both
//! views) and in the SLA report.
//!
//! The board keeps the notices of the last [`KEPT`] in memory, so the page (built at most once a
//! second) reads them without waiting on anything. With a store, every change is written through
//! first (a notice the store refused is not shown), and [`run`] reloads the board from the store
//! every [`REFRESH`], so replicas sharing a store show the same notices within seconds and a
//! restart keeps them. Without one, they live as long as the process.
//!
//! A notice is shown while it is unresolved and, for maintenance with a window, until its window
//! ends; afterwards it is listed as past for [`KEPT`].

use crate::store::{Notice, NoticeKind, Store, StoreError};
use std::sync::{RwLock, Weak};
use std::time::Duration;

/// Past notices are listed this long.
pub const KEPT: Duration = Duration::from_secs(7 * 86_400);
/// How often the board is reloaded from the store (other replicas' notices).
pub const REFRESH: Duration = Duration::from_secs(10);
/// Longest title and body accepted (characters).
pub const TITLE_MAX: usize = 200;
pub const BODY_MAX: usize = 5000;
/// Most notices listed at once (the newest).
const LISTED_MAX: usize = 100;

/// What an operator posts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotice {
    pub kind: NoticeKind,
    pub title: String,
    pub body: String,
    pub models: Vec<String>,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// The notice is not acceptable (the message says why).
    #[error("{0}")]
    Invalid(String),
    #[error("notice {0} not found")]
    NotFound(String),
    #[error("the store refused it: {0}")]
    Store(StoreError),
}

impl From<StoreError> for NoticeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                NoticeError::NotFound(what.trim_start_matches("notice ").to_owned())
            }
            e => NoticeError::Store(e),
        }
    }
}

/// Notices shown now and past ones, as the page and the report read them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Shown {
    /// In force: unresolved, and (maintenance) its window not over; oldest first.
    pub active: Vec<Notice>,
    /// Resolved or over within [`KEPT`], newest first.
    pub past: Vec<Notice>,
}

#[derive(Debug)]
pub struct NoticeBoard {
    notices: RwLock<Vec<Notice>>,
    store: Option<Store>,
}

impl NoticeBoard {
    pub fn new(store: Option<Store>) -> NoticeBoard {
        NoticeBoard {
            notices: RwLock::new(Vec::new()),
            store,
        }
    }

    /// Checks and posts a notice; with a store it is written there first.
    pub async fn add(&self, new: NewNotice, now_ms: u64) -> Result<Notice, NoticeError> {
        let notice = checked(new, now_ms)?;
        if let Some(store) = &self.store {
            store.insert_notice(&notice).await?;
        }
        let mut list = self.write();
        list.push(notice.clone());
        Ok(notice)
    }

    /// Resolves a notice (again: keeps the first resolution).
    pub async fn resolve(&self, id: &str, now_ms: u64) -> Result<Notice, NoticeError> {
        let resolved = match &self.store {
            Some(store) => Some(store.resolve_notice(id, now_ms).await?),
            None => None,
        };
        let mut list = self.write();
        let position = list.iter().position(|n| n.id == id);
        match (position, resolved) {
            (Some(i), Some(stored)) => {
                list[i] = stored.clone();
                Ok(stored)
            }
            (None, Some(stored)) => {
                list.push(stored.clone());
                Ok(stored)
            }
            (Some(i), None) => {
                let n = &mut list[i];
                n.resolved_at_ms.get_or_insert(now_ms);
                Ok(n.clone())
            }
            (None, None) => Err(NoticeError::NotFound(id.to_owned())),
        }
    }

    /// Every notice kept, newest first (at most 100).
    pub fn list(&self) -> Vec<Notice> {
        let mut all = self.read().clone();
        all.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        all.truncate(LISTED_MAX);
        all
    }

    /// What the page shows at `now_ms`.
    pub fn shown(&self, now_ms: u64) -> Shown {
        shown(&self.read(), now_ms)
    }

    /// Replaces the board with the store's notices (start-up and [`REFRESH`]).
    pub async fn reload(&self, now_ms: u64) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let since = now_ms.saturating_sub(KEPT.as_millis() as u64);
        let fresh = store.notices_since(since).await?;
        *self.write() = fresh;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Notice>> {
        self.notices.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Notice>> {
        self.notices.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reloads the board from the store now and every [`REFRESH`] while it lives.
pub async fn run(board: Weak<NoticeBoard>, clock: crate::clock::Clock) {
    loop {
        let Some(live) = board.upgrade() else {
            return;
        };
        if let Err(e) = live.reload(clock.now_ms()).await {
            tracing::warn!(error = %e, "status notices could not be read from the store");
        }
        drop(live);
        tokio::time::sleep(REFRESH).await;
    }
}

fn shown(all: &[Notice], now_ms: u64) -> Shown {
    let kept_from = now_ms.saturating_sub(KEPT.as_millis() as u64);
    let mut out = Shown::default();
    for n in all {
        match over_at(n, now_ms) {
            None => out.active.push(n.clone()),
            Some(at) if at >= kept_from => out.past.push(n.clone()),
            Some(_) => {}
        }
    }
    out.active.sort_by_key(|n| n.created_at_ms);
    out.past
        .sort_by_key(|n| std::cmp::Reverse(over_at(n, now_ms).unwrap_or(0)));
    out
}

/// When a notice stopped being in force: resolved, or its maintenance window ended.
pub fn over_at(n: &Notice, now_ms: u64) -> Option<u64> {
    let ended = n.ends_at_ms.filter(|end| *end <= now_ms);
    match (n.resolved_at_ms, ended) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn checked(new: NewNotice, now_ms: u64) -> Result<Notice, NoticeError> {
    let invalid = |m: &str| Err(NoticeError::Invalid(m.to_owned()));
    let title = new.title.trim().to_owned();
    if title.is_empty() {
        return invalid("a notice needs a title");
    }
    if title.chars().count() > TITLE_MAX {
        return invalid(&format!("the title is longer than {TITLE_MAX} characters"));
    }
    let body = new.body.trim().to_owned();
    if body.chars().count() > BODY_MAX {
        return invalid(&format!("the body is longer than {BODY_MAX} characters"));
    }
    if let (Some(start), Some(end)) = (new.starts_at_ms, new.ends_at_ms)
        && end <= start
    {
        return invalid("ends_at must be after starts_at");
    }
    if new.kind == NoticeKind::Incident && (new.starts_at_ms.is_some() || new.ends_at_ms.is_some())
    {
        return invalid("only maintenance has a window (starts_at, ends_at)");
    }
    Ok(Notice {
        id: crate::store::new_id("ntc"),
        kind: new.kind,
        title,
        body,
        models: new.models,
        created_at_ms: now_ms,
        starts_at_ms: new.starts_at_ms,
        ends_at_ms: new.ends_at_ms,
        resolved_at_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn new(kind: NoticeKind, title: &str) -> NewNotice {
        NewNotice {
            kind,
            title: title.to_owned(),
            body: String::new(),
            models: Vec::new(),
            starts_at_ms: None,
            ends_at_ms: None,
        }
    }

    #[tokio::test]
    async fn a_notice_is_shown_until_resolved_then_listed_as_past() {
        let board = NoticeBoard::new(None);
        let n = board
            .add(
                new(NoticeKind::Incident, " Investigating errors "),
                10 * MIN,
            )
            .await
            .unwrap();
        assert!(n.id.starts_with("ntc_"));
        assert_eq!(n.title, "Investigating errors");
        assert_eq!(board.shown(11 * MIN).active, std::slice::from_ref(&n));
        let resolved = board.resolve(&n.id, 20 * MIN).await.unwrap();
        assert_eq!(resolved.resolved_at_ms, Some(20 * MIN));
        let again = board.resolve(&n.id, 30 * MIN).await.unwrap();
        assert_eq!(
            again.resolved_at_ms,
            Some(20 * MIN),
            "the first resolution stays"
        );
        let shown = board.shown(21 * MIN);
        assert!(shown.active.is_empty());
        assert_eq!(shown.past.len(), 1);
        let week = KEPT.as_millis() as u64;
        assert!(board.shown(20 * MIN + week + 1).past.is_empty());
        assert!(matches!(
            board.resolve("ntc_nope", 0).await,
            Err(NoticeError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn maintenance_is_over_when_its_window_ends() {
        let board = NoticeBoard::new(None);
        let mut m = new(NoticeKind::Maintenance, "Database upgrade");
        m.starts_at_ms = Some(60 * MIN);
        m.ends_at_ms = Some(90 * MIN);
        board.add(m, 10 * MIN).await.unwrap();
        assert_eq!(board.shown(30 * MIN).active.len(), 1, "scheduled");
        assert_eq!(board.shown(70 * MIN).active.len(), 1, "in progress");
        let after = board.shown(91 * MIN);
        assert!(after.active.is_empty());
        assert_eq!(after.past.len(), 1);
    }

    #[tokio::test]
    async fn bad_notices_are_refused_with_the_reason() {
        let board = NoticeBoard::new(None);
        let cases = [
            (new(NoticeKind::Incident, "  "), "title"),
            (new(NoticeKind::Incident, &"x".repeat(201)), "title"),
            (
                NewNotice {
                    starts_at_ms: Some(5),
                    ..new(NoticeKind::Incident, "t")
                },
                "only maintenance",
            ),
            (
                NewNotice {
                    starts_at_ms: Some(5),
                    ends_at_ms: Some(5),
                    ..new(NoticeKind::Maintenance, "t")
                },
                "after starts_at",
            ),
        ];
        for (notice, why) in cases {
            let error = board.add(notice, 0).await.unwrap_err().to_string();
            assert!(error.contains(why), "{error}");
        }
        assert!(board.list().is_empty());
    }
}
