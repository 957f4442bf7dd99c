//! `/admin/...`: organisations, users, virtual keys, their limits, spend and usage. Every route
//! needs the admin key (`auth.admin_key`) as `Authorization: Bearer …` or `x-api-key`, and a
//! store. Errors are OpenAI-shaped like every other error.
//!
//! | route | does |
//! |---|---|
//! | `GET/POST /admin/orgs`, `GET/PATCH /admin/orgs/{id}` | list, create `{name, limits?}`, show (with spend), set `{limits}` |
//! | `GET/POST /admin/users`, `GET/PATCH /admin/users/{id}` | `?org=`; create `{org, name, limits?}`; show; set `{limits}` |
//! | `GET/POST /admin/keys`, `GET/PATCH/DELETE /admin/keys/{id}` | `?user=`; create `{user, name?, models?, expires_at?, expires_in?, limits?}` → the key, once; show; set `{limits?, models?}`; revoke |
//! | `POST /admin/keys/{id}/revoke` | revoke |
//! | `GET /admin/usage` | newest per-request records (those `store.request_records` keeps), `?key=` / `?user=` / `?org=`, `?limit=` (100) |
//! | `GET /admin/usage/summary` | every request's sums from the per-minute rollups: `?by=org\|user\|key\|model\|deployment` (model), `?window=day\|month\|7d` (month), `?key=` / `?user=` / `?org=` |
//! | `GET /admin/status` | limiter, store, usage writer and ledger persistence counters |
//! | `POST /admin/reload` | reload the configuration file (works without a store): 200 with the new hash, what changed and what needs a restart, or 400 with the file:line error (the running configuration stays) |
//! | `GET/POST /admin/status/notices`, `POST /admin/status/notices/{id}/resolve` | operator notices on the status page (`notices`; no store needed) |
//! | `GET /admin/reports/sla` | `?window=30d&format=json\|csv\|md`: the SLA report (`status::report`, `docs/sla.md`), summed over every replica's rows in the store |
//!
//! Ids are accepted where names are: an org by id or name, a user by id or `org/name`.
//! Spend is read from the usage rollups: `{"today": usd, "month": usd}` (UTC).

mod error;
mod notices;
mod routes;

pub use error::AdminError;

use crate::auth::Level;
use crate::config::access::Limits;
use crate::limits::{Limiters, Period};
use crate::state::{AppState, ReloadError, Runtime};
use crate::store::{NewKey, Store};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/orgs", get(list_orgs).post(create_org))
        .route("/orgs/{id}", get(show_org).patch(patch_org))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{*id}", get(show_user).patch(patch_user))
        .route("/keys", get(list_keys).post(create_key))
        .route(
            "/keys/{id}",
            get(show_key).patch(patch_key).delete(revoke_key),
        )
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/usage", get(usage))
        .route("/usage/summary", get(usage_summary))
        .route("/status", get(status))
        .route("/reload", post(reload))
        .route("/reports/sla", get(sla_report))
        .route("/routes", get(routes::routes))
        .route("/status/notices", get(notices::list).post(notices::create))
        .route("/status/notices/{id}/resolve", post(notices::resolve))
}

type Reply = Result<Response, AdminError>;

/// The store, once the caller has shown the admin key.
fn admin(state: &AppState, headers: &HeaderMap) -> Result<Store, AdminError> {
    admin_key(&state.runtime(), headers)?;
    state
        .access
        .store
        .clone()
        .ok_or_else(|| AdminError::Unavailable("no store is configured".into()))
}

/// Checks the admin key alone against `runtime`'s configuration (for routes that work without a
/// store).
pub(super) fn admin_key(runtime: &Runtime, headers: &HeaderMap) -> Result<(), AdminError> {
    let config = &runtime.config.access;
    if config.auth.admin_key.is_none() {
        return Err(AdminError::Unauthorized {
            message: "The admin API is off: set auth.admin_key (and a [store]) to use it.".into(),
            code: "admin_api_disabled",
        });
    }
    if !crate::access::is_admin(config, crate::auth::credential(headers).as_ref()) {
        return Err(AdminError::Unauthorized {
            message: "The admin API needs the admin key as 'Authorization: Bearer …'.".into(),
            code: "invalid_admin_key",
        });
    }
    Ok(())
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError::Invalid(format!("invalid body: {e}")))
}

fn json_reply(status: StatusCode, value: Value) -> Reply {
    Ok((status, axum::Json(value)).into_response())
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn spend_of(store: &Store, level: Level, id: &str) -> Result<Value, AdminError> {
    let now = SystemTime::now();
    let today = store
        .spend(level, id, Period::day_of(now).start_ms())
        .await
        .map_err(AdminError::from)?;
    let month = store
        .spend(level, id, Period::month_of(now).start_ms())
        .await
        .map_err(AdminError::from)?;
    Ok(json!({"today": today, "month": month}))
}

/// `POST /admin/reload`: the configuration file read again and, when valid, swapped in.
async fn reload(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    render(
        async {
            admin_key(&state.runtime(), &headers)?;
            let reloading = Arc::clone(&state);
            // Reading and validating the file is blocking I/O.
            let reloaded = tokio::task::spawn_blocking(move || reloading.reload())
                .await
                .map_err(|e| AdminError::Unavailable(format!("the reload did not finish: {e}")))?;
            match reloaded {
                Ok(r) => json_reply(
                    StatusCode::OK,
                    json!({
                        "status": if r.changed { "reloaded" } else { "unchanged" },
                        "config_hash": r.hash,
                        "restart_needed": r.restart_needed,
                    }),
                ),
                Err(e @ ReloadError::NoSource) => Err(AdminError::Unavailable(e.to_string())),
                Err(e) => Err(AdminError::Invalid(e.to_string())),
            }
        }
        .await,
    )
}

/// The admin API's response boundary: a refusal is logged here, once, by its label.
fn render(result: Reply) -> Response {
    result.unwrap_or_else(|e| {
        tracing::info!(
            target: "nines::admin",
            status = e.status().as_u16(),
            outcome = e.label(),
            "admin request refused"
        );
        e.into_response()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    name: String,
    #[serde(default)]
    limits: Limits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLimits {
    limits: Limits,
}

async fn list_orgs(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let orgs = store.list_orgs().await.map_err(AdminError::from)?;
            json_reply(
                StatusCode::OK,
                json!({"object": "list", "data": to_value(&orgs)}),
            )
        }
        .await,
    )
}

async fn create_org(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let new: NewOrg = parse(&body)?;
            let org = store
                .create_org(&new.name, &new.limits)
                .await
                .map_err(AdminError::from)?;
            json_reply(StatusCode::CREATED, to_value(&org))
        }
        .await,
    )
}

async fn show_org(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let org = store.get_org(&id).await.map_err(AdminError::from)?;
            let mut v = to_value(&org);
            v["spend"] = spend_of(&store, Level::Org, &org.id).await?;
            json_reply(StatusCode::OK, v)
        }
        .await,
    )
}

async fn patch_org(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let set: SetLimits = parse(&body)?;
            let org = store
                .set_org_limits(&id, &set.limits)
                .await
                .map_err(AdminError::from)?;
            state.access.auth.invalidate();
            json_reply(StatusCode::OK, to_value(&org))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    org: String,
    name: String,
    #[serde(default)]
    limits: Limits,
}

async fn list_users(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let users = store
                .list_users(q.get("org").map(String::as_str))
                .await
                .map_err(AdminError::from)?;
            json_reply(
                StatusCode::OK,
                json!({"object": "list", "data": to_value(&users)}),
            )
        }
        .await,
    )
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let new: NewUser = parse(&body)?;
            let user = store
                .create_user(&new.org, &new.name, &new.limits)
                .await
                .map_err(AdminError::from)?;
            json_reply(StatusCode::CREATED, to_value(&user))
        }
        .await,
    )
}

async fn show_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let user = store.get_user(&id).await.map_err(AdminError::from)?;
            let mut v = to_value(&user);
            v["spend"] = spend_of(&store, Level::User, &user.id).await?;
            json_reply(StatusCode::OK, v)
        }
        .await,
    )
}

async fn patch_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let set: SetLimits = parse(&body)?;
            let user = store
                .set_user_limits(&id, &set.limits)
                .await
                .map_err(AdminError::from)?;
            state.access.auth.invalidate();
            json_reply(StatusCode::OK, to_value(&user))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    user: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    /// Unix seconds.
    #[serde(default)]
    expires_at: Option<i64>,
    /// A duration from now (`"30d"`, `"1h"`, `"500ms"`).
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    limits: Limits,
    /// A chosen key string (imported from another gateway) instead of a generated one.
    #[serde(default)]
    key: Option<String>,
}

/// `expires_at` (Unix seconds) or `expires_in` (a duration from now) as Unix milliseconds.
pub fn expiry(expires_at: Option<i64>, expires_in: Option<&str>) -> Result<Option<i64>, String> {
    match (expires_at, expires_in) {
        (Some(_), Some(_)) => Err("give expires_at or expires_in, not both".into()),
        (Some(at), None) => Ok(Some(at.saturating_mul(1000))),
        (None, Some(d)) => {
            let d = humantime::parse_duration(d).map_err(|e| format!("expires_in: {e}"))?;
            let now = crate::clock::unix_ms(SystemTime::now());
            Ok(Some(now.saturating_add(d.as_millis() as i64)))
        }
        (None, None) => Ok(None),
    }
}

async fn list_keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let keys = store
                .list_keys(q.get("user").map(String::as_str))
                .await
                .map_err(AdminError::from)?;
            json_reply(
                StatusCode::OK,
                json!({"object": "list", "data": to_value(&keys)}),
            )
        }
        .await,
    )
}

async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let req: CreateKey = parse(&body)?;
            let expires_at =
                expiry(req.expires_at, req.expires_in.as_deref()).map_err(AdminError::Invalid)?;
            let new = NewKey {
                user: req.user,
                name: req.name,
                models: req.models,
                expires_at,
                limits: req.limits,
            };
            let (row, secret) = crate::auth::keys::create(&store, &new, req.key.as_deref())
                .await
                .map_err(AdminError::from)?;
            // A replica may remember this key as unknown (a client tried it before the import).
            state.access.auth.invalidate();
            let mut v = to_value(&row);
            // Shown this once (a generated key); only its hash is kept. A chosen key is not
            // echoed: the caller has it.
            if req.key.is_none() {
                v["key"] = Value::String(secret);
            }
            json_reply(StatusCode::CREATED, v)
        }
        .await,
    )
}

async fn show_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let key = store.get_key(&id).await.map_err(AdminError::from)?;
            let mut v = to_value(&key);
            v["spend"] = spend_of(&store, Level::Key, &key.id).await?;
            json_reply(StatusCode::OK, v)
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchKey {
    #[serde(default)]
    limits: Option<Limits>,
    /// `null` clears the restriction; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    models: Option<Option<Vec<String>>>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Vec<String>>>, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Some)
}

async fn patch_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let patch: PatchKey = parse(&body)?;
            let key = store
                .update_key(&id, patch.limits.as_ref(), patch.models)
                .await
                .map_err(AdminError::from)?;
            state.access.auth.invalidate();
            json_reply(StatusCode::OK, to_value(&key))
        }
        .await,
    )
}

async fn revoke_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let key = store.revoke_key(&id).await.map_err(AdminError::from)?;
            state.access.auth.invalidate();
            json_reply(StatusCode::OK, to_value(&key))
        }
        .await,
    )
}

/// `?key=`, `?user=` or `?org=`: whose usage.
fn subject_filter(q: &HashMap<String, String>) -> Option<(Level, &str)> {
    [
        ("key", Level::Key),
        ("user", Level::User),
        ("org", Level::Org),
    ]
    .into_iter()
    .find_map(|(name, level)| q.get(name).map(|id| (level, id.as_str())))
}

async fn usage_summary(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let by = match q.get("by") {
                Some(b) => crate::store::GroupBy::parse(b).ok_or_else(|| {
                    AdminError::Invalid("by must be org, user, key, model or deployment".into())
                })?,
                None => crate::store::GroupBy::Model,
            };
            let window = q.get("window").map_or("month", String::as_str);
            let since = crate::limits::window_start(window, SystemTime::now())
                .map_err(AdminError::Invalid)?;
            let report = store
                .usage_report(by, since, subject_filter(&q))
                .await
                .map_err(AdminError::from)?;
            json_reply(StatusCode::OK, to_value(&report))
        }
        .await,
    )
}

async fn usage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            let filter = subject_filter(&q);
            let limit = match q.get("limit") {
                Some(l) => l
                    .parse::<i64>()
                    .ok()
                    .filter(|l| (1..=10_000).contains(l))
                    .ok_or_else(|| AdminError::Invalid("limit must be 1..=10000".into()))?,
                None => 100,
            };
            let records = store
                .recent_usage(filter, limit)
                .await
                .map_err(AdminError::from)?;
            json_reply(
                StatusCode::OK,
                json!({"object": "list", "data": to_value(&records)}),
            )
        }
        .await,
    )
}

async fn status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    render(
        async {
            let store = admin(&state, &headers)?;
            json_reply(
                StatusCode::OK,
                json!({
                    "store": {"backend": store.backend()},
                    "usage": state.access.usage.as_ref().map(|u| u.stats.snapshot()),
                    "usage_rollups": state.access.accounting.as_ref().map(|a| a.stats.snapshot()),
                    "ledger": state.ledger_writer.as_ref().map(|w| w.snapshot()),
                    "limiter": limiter_status(&state.access.limiter),
                }),
            )
        }
        .await,
    )
}

/// `GET /admin/reports/sla?window=30d&format=json|csv|md`.
async fn sla_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    use crate::status::report;
    render(
        async {
            let runtime = state.runtime();
            admin_key(&runtime, &headers)?;
            let telemetry = &runtime.config.telemetry;
            let window = report::parse_window(
                q.get("window").map_or("30d", String::as_str),
                telemetry.retention,
            )
            .map_err(AdminError::Invalid)?;
            let format = report::Format::parse(q.get("format").map_or("json", String::as_str))
                .map_err(AdminError::Invalid)?;
            let report = report::generate(
                &state.telemetry,
                state.ledger_writer.as_deref(),
                state.notices.list(),
                crate::config::slo::by_route(&runtime.config.models),
                window,
                telemetry.slo,
            )
            .await
            .map_err(AdminError::Unavailable)?;
            Ok((
                [(http::header::CONTENT_TYPE, format.content_type())],
                format.render(&report),
            )
                .into_response())
        }
        .await,
    )
}

/// The limiter's backend and, for Redis, its failure counters.
pub(super) fn limiter_status(limiter: &Limiters) -> Value {
    match limiter {
        Limiters::Memory(_) => json!({"backend": "memory"}),
        Limiters::Redis(r) => json!({
            "backend": "redis",
            "on_redis_error": match r.fail_mode() {
                crate::limits::FailMode::Open => "open",
                crate::limits::FailMode::Closed => "closed",
            },
            "failures": r.stats.failures.load(Ordering::Relaxed),
            "failed_open": r.stats.failed_open.load(Ordering::Relaxed),
            "failed_closed": r.stats.failed_closed.load(Ordering::Relaxed),
        }),
    }
}
