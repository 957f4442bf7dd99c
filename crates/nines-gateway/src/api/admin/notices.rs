//! `/admin/status/notices`: operator notices on the status page (`status::notices`), with the
//! admin key. They work without a store (kept in memory then) and are written to it when there
//! is one.
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/status/notices` | every notice of the last 7 days and those still in force, newest first |
//! | `POST /admin/status/notices` | `{kind: "incident"\|"maintenance", title, body?, models?, starts_at?, ends_at?}` (RFC 3339) → 201 with the notice |
//! | `POST /admin/status/notices/{id}/resolve` | resolve it → the notice |

use super::{AdminError, Reply, admin_key, json_reply, parse, render, to_value};
use crate::state::AppState;
use crate::status::notices::{NewNotice, NoticeError};
use crate::store::NoticeKind;
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted {
    kind: String,
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    models: Vec<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
}

impl From<NoticeError> for AdminError {
    fn from(e: NoticeError) -> Self {
        match e {
            NoticeError::Invalid(m) => AdminError::Invalid(m),
            NoticeError::NotFound(id) => AdminError::NotFound(format!("notice {id} not found")),
            NoticeError::Store(e) => AdminError::from(e),
        }
    }
}

pub(super) async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    render(
        async {
            admin_key(&state.runtime(), &headers)?;
            let all = state.notices.list();
            json_reply(
                StatusCode::OK,
                json!({"object": "list", "data": to_value(&all)}),
            )
        }
        .await,
    )
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(create_inner(&state, &headers, &body).await)
}

async fn create_inner(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Reply {
    let runtime = state.runtime();
    admin_key(&runtime, headers)?;
    let posted: Posted = parse(body)?;
    let kind = NoticeKind::parse(&posted.kind).ok_or_else(|| {
        AdminError::Invalid(format!(
            "kind must be 'incident' or 'maintenance', not '{}'",
            posted.kind
        ))
    })?;
    if let Some(unknown) = posted
        .models
        .iter()
        .find(|m| !runtime.config.models.iter().any(|c| &c.name == *m))
    {
        return Err(AdminError::Invalid(format!(
            "no model '{unknown}' is configured"
        )));
    }
    let new = NewNotice {
        kind,
        title: posted.title,
        body: posted.body,
        models: posted.models,
        starts_at_ms: time("starts_at", posted.starts_at.as_deref())?,
        ends_at_ms: time("ends_at", posted.ends_at.as_deref())?,
    };
    let notice = state
        .notices
        .add(new, state.telemetry.clock.now_ms())
        .await?;
    state.forget_status();
    json_reply(StatusCode::CREATED, to_value(&notice))
}

pub(super) async fn resolve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            admin_key(&state.runtime(), &headers)?;
            let notice = state
                .notices
                .resolve(&id, state.telemetry.clock.now_ms())
                .await?;
            state.forget_status();
            json_reply(StatusCode::OK, to_value(&notice))
        }
        .await,
    )
}

/// An RFC 3339 time as Unix ms.
fn time(field: &str, text: Option<&str>) -> Result<Option<u64>, AdminError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
        AdminError::Invalid(format!(
            "{field} must be an RFC 3339 time such as 2026-12-07T22:00:00Z: {e}"
        ))
    })?;
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AdminError::Invalid(format!("{field} is before 1970")))?
        .as_millis();
    Ok(Some(u64::try_from(ms).unwrap_or(u64::MAX)))
}
