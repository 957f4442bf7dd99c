//! Security regressions: each finding of the attacker's probe of the release build (issue 17),
//! replayed over real HTTP against the gateway as it is served.
//!
//! - `access`: video jobs obey the key's allowance, limits, budgets and usage records; job ids
//!   are signed and bound to their key; `/v1/models/{id}` obeys the allowance.
//! - `upstream`: a provider key goes only to its deployment's origin (a malicious Replicate
//!   upstream pointing `urls.get` / `urls.cancel` elsewhere, or redirecting, gets nothing).
//! - `leaks`: config errors without secret values, bounded request ids, readiness details for
//!   the admin key only, a status page without Basic auth.
//! - `connections`: timeouts, the connection cap, refused oversized bodies, slow clients.

mod access;
mod connections;
mod leaks;
mod upstream;
