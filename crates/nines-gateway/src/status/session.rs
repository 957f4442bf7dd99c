//! Sessions for the status page's private view (the whole page when `[status] public = false`;
//! the private view of a public page otherwise).
//!
//! A browser signs in once with a form (`GET /status/login` shows it; `/status` itself answers
//! it on a page without a public view; `POST /status/login`, the admin key as a form field) and
//! gets a session cookie: signed by nines (`auth::signing`, so every replica sharing the signing
//! secret accepts it), valid for [`SESSION_TTL`], bound to the admin key (rotating the key ends
//! every session), `HttpOnly` and `SameSite=Strict`. The admin key itself is never stored by
//! the browser nor sent again, unlike HTTP Basic, which resends it with every request and keeps
//! it until the browser closes. Scripts keep using `Authorization: Bearer <admin key>`.

use crate::access::is_admin;
use crate::auth::signing::Signer;
use crate::config::{Config, Secret};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The cookie's name.
pub const COOKIE: &str = "nines_status";

/// What a session cookie carries: when it ends, and which admin key it was made with.
#[derive(Serialize, Deserialize)]
struct Session {
    /// Unix seconds.
    exp: u64,
    /// A prefix of the admin key's hash: sessions end when the key changes.
    k: String,
}

fn key_tag(admin: &Secret) -> String {
    crate::auth::hash_key(admin.expose())
        .chars()
        .take(16)
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Whether the request shows the admin key (`Authorization: Bearer`, `x-api-key`) or carries a
/// live session cookie made with the current admin key.
pub fn admitted(config: &Config, signer: &Signer, headers: &HeaderMap) -> bool {
    let credential = crate::auth::credential(headers);
    if is_admin(&config.access, credential.as_ref()) {
        return true;
    }
    let Some(admin) = &config.access.auth.admin_key else {
        return false;
    };
    cookie(headers, COOKIE)
        .and_then(|token| signer.verify(token))
        .and_then(|payload| serde_json::from_slice::<Session>(&payload).ok())
        .is_some_and(|s| s.exp > unix_now() && s.k == key_tag(admin))
}

/// The value of one cookie of the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

#[derive(Deserialize)]
pub struct Login {
    key: String,
}

/// `POST /status/login`: the admin key from the form → a session cookie and back to the page;
/// anything else → the form again, 401.
pub async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<axum::Form<Login>, axum::extract::rejection::FormRejection>,
) -> Response {
    let runtime = state.runtime();
    let config = &runtime.config;
    let settings = &config.telemetry.status;
    if !settings.enabled || settings.public {
        return StatusCode::NOT_FOUND.into_response();
    }
    let given = form.ok().map(|f| Secret::new(f.0.key));
    let Some(admin) = config
        .access
        .auth
        .admin_key
        .as_ref()
        .filter(|_| is_admin(&config.access, given.as_ref()))
    else {
        tracing::debug!("status page: a sign-in with a wrong key");
        return login_page(Some("That is not the admin key."));
    };
    let session = Session {
        exp: unix_now() + SESSION_TTL.as_secs(),
        k: key_tag(admin),
    };
    let token = state
        .access
        .signer
        .sign(&serde_json::to_vec(&session).unwrap_or_default());
    // `Secure` when the client reached a TLS-terminating proxy in front of nines; without TLS
    // a browser would refuse to keep a Secure cookie.
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    see_status(Some(cookie))
}

/// `POST /status/logout`: the cookie removed.
pub async fn logout() -> Response {
    see_status(Some(format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    )))
}

/// 303 to `/status`, setting a cookie.
fn see_status(cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/status"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, value);
    }
    response
}

const LOGIN_STYLE: &str = "body{font:16px system-ui,sans-serif;max-width:22rem;margin:15vh auto;\
padding:0 1rem;color:#222}input{font:inherit;width:100%;box-sizing:border-box;padding:.5rem;\
margin:.5rem 0}button{font:inherit;padding:.5rem 1rem}.error{color:#b00020}";

/// `GET /status/login`: the sign-in form, for an admin of a public page.
pub async fn login_form() -> Response {
    form(
        StatusCode::OK,
        "Sign in with the admin key for the status page's private view.",
        None,
    )
}

/// The sign-in form, 401 (the page is not shown without a session). Nothing but the form and
/// its style is allowed to load or run.
pub fn login_page(error: Option<&str>) -> Response {
    form(
        StatusCode::UNAUTHORIZED,
        "This status page is private. Sign in with the admin key.",
        error,
    )
}

fn form(status: StatusCode, lead: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\">{e}</p>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign in: status</title><style>{LOGIN_STYLE}</style></head><body>\
         <h1>Status</h1><p>{lead}</p>{error}\
         <form method=\"post\" action=\"/status/login\">\
         <label for=\"key\">Admin key</label>\
         <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></body></html>"
    );
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{}'; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'",
        super::html::csp_hash(LOGIN_STYLE)
    );
    super::html::document(status, html, "no-store", &csp)
}

#[cfg(test)]
mod tests {
    use super::cookie;
    use http::{HeaderMap, HeaderValue, header};

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; nines_status=tok.en"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, "nines_status"), Some("tok.en"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
