//! The status page: `GET /status` (one HTML page, its CSS and JS embedded in the binary and inlined,
//! nothing fetched from elsewhere) and `GET /status.json` (what the page renders; see
//! [`snapshot`] for the shape and the meaning of each state).
//!
//! `[status] enabled = false` answers 404 to both. `public = false` asks for the admin key, as
//! `Authorization: Bearer …` or `x-api-key` (scripts), or a session cookie a browser gets by
//! signing in with a form (`super::session`); `/status` answers the form itself until then.
//!
//! The JSON is built at most once a second (`AppState::status_cache`) however many pages poll it, and building it
//! takes each breaker's and the ledger's lock briefly, never across an `.await`.

pub mod snapshot;

use crate::access::AccessError;
use crate::config::Config;
use crate::request::GatewayError;
use crate::state::AppState;
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

/// `GET /status`.
pub async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    if let Some(refused) = refusal(&state, &runtime.config, &headers, "/status") {
        return refused;
    }
    let page = assembled();
    let html = page.html.replace(
        "{{title}}",
        &escape_html(&runtime.config.telemetry.status.title),
    );
    super::html::document(StatusCode::OK, html, "no-cache", &page.csp)
}

/// `GET /status.json`.
pub async fn json(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    if let Some(refused) = refusal(&state, &runtime.config, &headers, "/status.json") {
        return refused;
    }
    let body = state.status_cache.get_or_build(CACHE_FOR, || {
        let ledger = state.telemetry.ledger.as_deref();
        let now_ms = state.telemetry.clock.now_ms();
        let status = snapshot::build(&runtime, ledger, now_ms);
        Bytes::from(serde_json::to_vec(&status).unwrap_or_default())
    });
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer instead of the page, if any: 404 when the page is off; when it is private and the
/// caller is not signed in, the sign-in form (for the page) or a 401 (for its JSON).
fn refusal(state: &AppState, config: &Config, headers: &HeaderMap, path: &str) -> Option<Response> {
    let settings = &config.telemetry.status;
    if !settings.enabled {
        return Some(
            GatewayError::RouteNotFound {
                method: "GET".into(),
                path: path.into(),
            }
            .into_response(),
        );
    }
    if settings.public || super::session::admitted(config, &state.access.signer, headers) {
        return None;
    }
    if path == "/status" {
        return Some(super::session::login_page(None));
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
    Some(refused)
}

/// The page with its CSS and JS inlined, and a Content-Security-Policy that allows exactly those
/// two (by hash) and fetches to this origin.
struct Assembled {
    html: String,
    csp: String,
}

fn assembled() -> &'static Assembled {
    static PAGE: OnceLock<Assembled> = OnceLock::new();
    PAGE.get_or_init(|| {
        let hash = super::html::csp_hash;
        Assembled {
            html: HTML.replace("{{css}}", CSS).replace("{{js}}", JS),
            csp: format!(
                "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
                 connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
                hash(JS),
                hash(CSS)
            ),
        }
    })
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
