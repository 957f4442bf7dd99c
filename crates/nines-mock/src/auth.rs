//! Reading the credentials and version headers the dialects require.

use axum::http::{HeaderMap, header};

/// The value of header `name`, if present, valid text and not blank.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The token of an `Authorization: Bearer <token>` (or Replicate's older `Token <token>`)
/// header, if non-empty.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, header::AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    let scheme_ok = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    let token = token.trim();
    (scheme_ok && !token.is_empty()).then_some(token)
}
