//! The status page: `GET /status` (one HTML page, its CSS and JS embedded in the binary and inlined,
//! nothing fetched from elsewhere) and `GET /status.json` (what the page renders; see
//! [`snapshot`] for the shape and the meaning of each state).
//!
//! Two views ([`snapshot`]): an admin (the admin key as `Authorization: Bearer …` or `x-api-key`,
//! or a session cookie a browser gets by signing in with the form at `/status/login`,
//! `super::session`) gets the **private** one, with deployments, key slots, breakers, in-flight
//! counts and breaker incidents; anyone else the **public** one ([`public`]): models and their
//! health only. The page's script for the private view's extras is sent to admins only.
//!
//! `[status] enabled = false` answers 404 to both. `public = false` has no public view: it asks
//! for the admin key, and `/status` answers the sign-in form until then.
//!
//! Each view's JSON is built at most once a second (`AppState::status_cache`,
//! `public_status_cache`) however many pages poll it, and building it takes each breaker's and
//! the ledger's lock briefly, never across an `.await`.

mod flaps;
pub mod public;
mod render;
pub mod snapshot;

use crate::access::AccessError;
use crate::config::Config;
use crate::request::GatewayError;
use crate::state::{AppState, Runtime};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long one built `/status.json` is served.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

const HTML: &str = include_str!("page/assets/status.html");
const CSS: &str = include_str!("page/assets/status.css");
const JS: &str = include_str!("page/assets/status.js");
/// The private view's extras (deployments, key slots, breaker incidents): admins only.
const PRIVATE_JS: &str = include_str!("page/assets/status-private.js");

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Public,
    Private,
}

/// `GET /status`: the page with the current public state already in it ([`render`]), so it reads
/// without JavaScript; its script then keeps it live.
pub async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    let view = match view(&state, &runtime.config, &headers, "/status") {
        Ok(view) => view,
        Err(refused) => return *refused,
    };
    let page = assembled(view);
    let public: serde_json::Value =
        serde_json::from_slice(&public_json(&state, &runtime)).unwrap_or_default();
    let html =
        render::first_paint(&public).fill(&page.html, &runtime.config.telemetry.status.title);
    super::html::document(StatusCode::OK, html, "no-cache", &page.csp)
}

/// `GET /status.json`.
pub async fn json(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    let view = match view(&state, &runtime.config, &headers, "/status.json") {
        Ok(view) => view,
        Err(refused) => return *refused,
    };
    let body = match view {
        View::Private => state.status_cache.get_or_build(CACHE_FOR, || {
            let status = build(&state, &runtime);
            Bytes::from(serde_json::to_vec(&status).unwrap_or_default())
        }),
        View::Public => public_json(&state, &runtime),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The public `/status.json` body, built at most once per [`CACHE_FOR`]: what the page's first
/// paint renders and its script fetches.
fn public_json(state: &AppState, runtime: &Runtime) -> Bytes {
    state.public_status_cache.get_or_build(CACHE_FOR, || {
        let status = build(state, runtime);
        let ledger = state.telemetry.ledger.as_deref();
        Bytes::from(serde_json::to_vec(&public::of(&status, ledger)).unwrap_or_default())
    })
}

fn build(state: &AppState, runtime: &Runtime) -> snapshot::Status {
    let ledger = state.telemetry.ledger.as_deref();
    let now_ms = state.telemetry.clock.now_ms();
    snapshot::build(runtime, ledger, state.notices.shown(now_ms), now_ms)
}

/// The view the caller gets, or the answer instead of the page: 404 when the page is off; when
/// it is private and the caller is not signed in, the sign-in form (for the page) or a 401 (for
/// its JSON).
fn view(
    state: &AppState,
    config: &Config,
    headers: &HeaderMap,
    path: &str,
) -> Result<View, Box<Response>> {
    let settings = &config.telemetry.status;
    if !settings.enabled {
        return Err(Box::new(
            GatewayError::RouteNotFound {
                method: "GET".into(),
                path: path.into(),
            }
            .into_response(),
        ));
    }
    if super::session::admitted(config, &state.access.signer, headers) {
        return Ok(View::Private);
    }
    if settings.public {
        return Ok(View::Public);
    }
    if path == "/status" {
        return Err(Box::new(super::session::login_page(None)));
    }
    let mut refused = AccessError::Unauthorized {
        message: "This status page is private (status.public = false): sign in at /status, or \
                  send the admin key as 'Authorization: Bearer …'."
            .into(),
        code: "invalid_admin_key",
    }
    .into_response();
    refused.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"nines status\""),
    );
    Err(Box::new(refused))
}

/// The page with its CSS and JS inlined (the private view's script too, for admins), and a
/// Content-Security-Policy that allows exactly those (by hash) and fetches to this origin.
struct Assembled {
    html: String,
    csp: String,
}

fn assembled(view: View) -> &'static Assembled {
    static PUBLIC: OnceLock<Assembled> = OnceLock::new();
    static PRIVATE: OnceLock<Assembled> = OnceLock::new();
    let build = |private: bool| {
        let hash = super::html::csp_hash;
        let (extra, extra_hash) = if private {
            (
                format!("<script>{PRIVATE_JS}</script>"),
                format!(" 'sha256-{}'", hash(PRIVATE_JS)),
            )
        } else {
            (String::new(), String::new())
        };
        Assembled {
            html: HTML
                .replace("{{css}}", CSS)
                .replace("{{js}}", JS)
                .replace("{{private}}", &extra),
            csp: format!(
                "default-src 'none'; script-src 'sha256-{}'{extra_hash}; style-src 'sha256-{}'; \
                 connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
                hash(JS),
                hash(CSS)
            ),
        }
    };
    match view {
        View::Public => PUBLIC.get_or_init(|| build(false)),
        View::Private => PRIVATE.get_or_init(|| build(true)),
    }
}

#[cfg(test)]
mod tests;
