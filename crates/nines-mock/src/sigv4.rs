//! Checking an AWS Signature Version 4 as AWS does: parse the `Authorization` header, then sign
//! the request as received (method, path and query as sent, the headers it lists as signed, the
//! body) with the test credentials, at the time its `x-amz-date` says, and compare. The signing
//! itself is AWS's own implementation (`aws-sigv4`), so what passes here passes at AWS.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::http::{HeaderMap, Method, Uri};

use crate::clouds::{TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY};

/// How far a request's date may be from now (AWS allows five minutes).
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why a signature was refused: (AWS exception name, message). All are 403s.
pub(crate) type Refusal = (&'static str, String);

/// Checks the request's signature for `service`.
pub(crate) fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    service: &str,
) -> Result<(), Refusal> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or((
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".to_owned(),
        ))?;
    let parsed = parse(authorization).ok_or((
        "IncompleteSignatureException",
        "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.".to_owned(),
    ))?;
    let scope: Vec<&str> = parsed.credential.split('/').collect();
    let [key_id, date, region, scope_service, "aws4_request"] = scope[..] else {
        return Err((
            "IncompleteSignatureException",
            "Invalid credential scope.".to_owned(),
        ));
    };
    if key_id != TEST_AWS_ACCESS_KEY_ID {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".to_owned(),
        ));
    }
    if scope_service != service {
        return Err((
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{service}'."),
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or((
            "IncompleteSignatureException",
            "Missing x-amz-date.".to_owned(),
        ))?;
    let time = parse_amz_date(amz_date)
        .filter(|_| amz_date.starts_with(date))
        .ok_or((
            "IncompleteSignatureException",
            "Invalid x-amz-date.".to_owned(),
        ))?;
    let skew = SystemTime::now()
        .duration_since(time)
        .unwrap_or_else(|ahead| ahead.duration());
    if skew > MAX_SKEW {
        return Err(("InvalidSignatureException", "Signature expired.".to_owned()));
    }
    let signed: Vec<(&str, &str)> = parsed
        .signed_headers
        .split(';')
        .filter_map(|name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name, v))
        })
        .collect();
    let session_token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let identity: Identity = Credentials::new(
        TEST_AWS_ACCESS_KEY_ID,
        TEST_AWS_SECRET_ACCESS_KEY,
        session_token,
        None,
        "nines-mock",
    )
    .into();
    let expected = expected_signature(method, uri, &signed, body, &identity, region, service, time)
        .ok_or((
            "IncompleteSignatureException",
            "The request cannot be signed.".to_owned(),
        ))?;
    if expected == parsed.signature {
        Ok(())
    } else {
        Err((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details."
                .to_owned(),
        ))
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "each is one input of the signature"
)]
fn expected_signature(
    method: &Method,
    uri: &Uri,
    headers: &[(&str, &str)],
    body: &[u8],
    identity: &Identity,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Option<String> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = SignableRequest::new(
        method.as_str(),
        path,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .ok()?;
    let (_, signature) = sign(request, &params).ok()?.into_parts();
    Some(signature)
}

struct Authorization<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse(header: &str) -> Option<Authorization<'_>> {
    let rest = header.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => {}
        }
    }
    Some(Authorization {
        credential: credential?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// `20261207T051500Z` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse_to_unix_time() {
        let t = parse_amz_date("20261207T051500Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_620_500
        );
        assert!(parse_amz_date("2026-12-07").is_none());
    }
}
