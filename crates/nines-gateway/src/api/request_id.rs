//! The client's `x-request-id`, bounded. It is echoed, logged, stored with usage records and
//! sent upstream, so an unbounded or binary one would be a way to bloat all four (or, as
//! non-UTF-8, to arrive upstream empty). One that is not 1–128 visible ASCII characters, or that
//! is sent more than once, is dropped before the request-id layer runs, which then generates
//! one; the response says so in `x-nines-request-id-replaced`.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue};

/// The longest client request id kept.
pub const MAX_REQUEST_ID: usize = 128;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const REPLACED: HeaderName = HeaderName::from_static("x-nines-request-id-replaced");

/// Whether a client's request id is kept as it is.
pub fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(u8::is_ascii_graphic)
}

/// The middleware: drops an unacceptable id (the request-id layer inside generates one) and
/// marks the response.
pub async fn bound(mut request: Request, next: Next) -> Response {
    let mut given = request.headers().get_all(&REQUEST_ID).iter();
    let replaced = match (given.next(), given.next()) {
        (None, _) => false,
        (Some(only), None) => !acceptable(only),
        (Some(_), Some(_)) => true,
    };
    if replaced {
        request.headers_mut().remove(&REQUEST_ID);
    }
    let mut response = next.run(request).await;
    if replaced {
        response.headers_mut().insert(
            REPLACED,
            HeaderValue::from_static(
                "the x-request-id sent was not 1-128 visible ASCII characters",
            ),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::acceptable;
    use http::HeaderValue;

    #[test]
    fn ids_are_short_visible_ascii() {
        let ok = |s: &[u8]| HeaderValue::from_bytes(s).is_ok_and(|v| acceptable(&v));
        assert!(ok(b"req-123_abc.DEF:9"));
        assert!(ok("x".repeat(128).as_bytes()));
        assert!(!ok("x".repeat(129).as_bytes()));
        assert!(!ok(b"has space"));
        assert!(!ok(b"tab\there"));
        assert!(!ok(b""));
        assert!(!ok(&[0xe2, 0x82, 0xac]));
    }
}
