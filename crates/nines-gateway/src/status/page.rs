//! The status page: `GET /status` (one HTML page, its CSS and JS embedded in the binary and inlined,
//! nothing fetched from elsewhere) and `GET /status.json` (what the page renders; see
//! [`snapshot`] for the shape and the meaning of each state).
//!
//! `[status] enabled = false` answers 404 to both. `public = false` asks for the admin key, as
//! `Authorization: Bearer …`, `x-api-key`, or HTTP Basic with the key as the password (so a
//! browser can open the page: it prompts once and sends the credential with the page's own
//! fetches).
//!
//! The JSON is built at most once a second (`AppState::status_cache`) however many pages poll it, and building it
//! takes each breaker's and the ledger's lock briefly, never across an `.await`.

pub mod snapshot;

use crate::access::AccessError;
use crate::config::{Config, Secret};
use crate::request::GatewayError;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
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
    if let Some(refused) = refusal(&runtime.config, &headers, "/status") {
        return refused;
    }
    let page = assembled();
    let html = page.html.replace(
        "{{title}}",
        &escape_html(&runtime.config.telemetry.status.title),
    );
    let mut response = html.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(csp) = HeaderValue::from_str(&page.csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// `GET /status.json`.
pub async fn json(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    if let Some(refused) = refusal(&runtime.config, &headers, "/status.json") {
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

/// The answer instead of the page, if any: 404 when the page is off; 401 (with a Basic challenge,
/// so a browser asks) when it is private and the caller did not show the admin key.
fn refusal(config: &Config, headers: &HeaderMap, path: &str) -> Option<Response> {
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
    if settings.public {
        return None;
    }
    let credential = crate::auth::credential(headers).or_else(|| basic_password(headers));
    if crate::access::is_admin(&config.access, credential.as_ref()) {
        return None;
    }
    let mut refused = AccessError::Unauthorized {
        message: "This status page is private (status.public = false): it needs the admin key, \
                  as 'Authorization: Bearer …' or as the password of HTTP Basic."
            .into(),
        code: "invalid_admin_key",
    }
    .into_response();
    refused.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"nines status\", charset=\"UTF-8\""),
    );
    Some(refused)
}

/// The password of an `Authorization: Basic` header (the user name is ignored).
fn basic_password(headers: &HeaderMap) -> Option<Secret> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (_, password) = decoded.split_once(':')?;
    (!password.is_empty()).then(|| Secret::new(password.to_owned()))
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
        let hash = |text: &str| base64_encode(&Sha256::digest(text.as_bytes()));
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

/// Standard alphabet; decoding takes padding or none (browsers pad, hand-made headers may not).
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8]) -> String {
    base64::Engine::encode(&BASE64, bytes)
}

/// Standard base64, padding optional; `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::Engine::decode(&BASE64, text).ok()
}

#[cfg(test)]
mod tests;
