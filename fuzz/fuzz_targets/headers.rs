//! The header parsers: `Retry-After` / `retry-after-ms` (`resilience::retry::retry_after`), the
//! client's timeout (`x-nines-timeout`, `x-stainless-timeout`), its key (`Authorization: Bearer`,
//! `x-api-key`), its request id, `traceparent`, and the status page's signed session cookie.
//!
//! The input is split at `\n` into values. Each value is tried alone under every header name,
//! and all of them together (value i under name i). Properties: no panic; a parsed timeout is
//! positive; a credential is non-empty, trimmed and taken from one of the two headers; a parsed
//! `traceparent` formats back to the same ids; a signed token verifies to its payload, and no
//! cookie opens the status page without the signing secret (a session is made only by
//! `auth::signing`).
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use nines_gateway::api::request_id::acceptable;
use nines_gateway::auth::signing::Signer;
use nines_gateway::request::RequestMeta;
use nines_gateway::resilience::retry::retry_after;
use nines_gateway::status::session::admitted;
use nines_gateway::tracecontext::{parse_traceparent, traceparent};
use std::time::Duration;

const NAMES: [&str; 10] = [
    "retry-after",
    "retry-after-ms",
    "x-nines-timeout",
    "x-stainless-timeout",
    "authorization",
    "x-api-key",
    "x-request-id",
    "traceparent",
    "cookie",
    "x-session-id",
];

fuzz_target!(|data: &[u8]| {
    let signer = Signer::new(b"fuzzing-signing-secret");
    let mut all = HeaderMap::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            continue;
        };
        for name in NAMES {
            let mut one = HeaderMap::new();
            one.insert(HeaderName::from_static(name), value.clone());
            check(&one, &signer);
        }
        all.append(
            HeaderName::from_static(NAMES[i % NAMES.len()]),
            value.clone(),
        );
        let _ = acceptable(&value);
        if let Ok(text) = value.to_str() {
            if let Some((trace, span, flags)) = parse_traceparent(text) {
                let formatted = traceparent(trace, span, flags);
                let again = parse_traceparent(&formatted);
                assert_eq!(again, Some((trace, span, flags)), "{text} → {formatted}");
            }
        }
        let token = signer.sign(line);
        assert_eq!(signer.verify(&token).as_deref(), Some(line));
        let _ = signer.verify(&String::from_utf8_lossy(line));
    }
    check(&all, &signer);
});

fn check(headers: &HeaderMap, signer: &Signer) {
    let _: Option<Duration> = retry_after(headers);
    let meta = RequestMeta::read(headers, "x-session-id");
    if let Some(timeout) = meta.timeout {
        assert!(timeout > Duration::ZERO);
    }
    if let Some(key) = &meta.credential {
        let key = key.expose();
        assert!(!key.is_empty() && key.trim() == key);
        let carried = ["authorization", "x-api-key"].iter().any(|name| {
            headers
                .get_all(*name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains(key)))
        });
        assert!(carried, "a credential from nowhere");
    }
    if let Some(session) = &meta.session {
        assert!(session.chars().count() <= 128);
    }
    let shows_admin_key = headers
        .values()
        .any(|v| v.to_str().is_ok_and(|v| v.contains(nines_fuzz::ADMIN_KEY)));
    if !shows_admin_key {
        assert!(
            !admitted(nines_fuzz::config(), signer, headers),
            "the status page opened without the admin key"
        );
    }
}
