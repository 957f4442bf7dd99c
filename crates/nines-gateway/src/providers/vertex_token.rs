//! OAuth access tokens for a Google service account (Vertex AI), by the JWT-bearer grant: a JWT
//! (`iss` the account, `scope` cloud-platform, `aud` the token URI, one hour) signed RS256 with
//! the account's private key is exchanged at the key file's `token_uri` for an access token.
//!
//! The token is cached and refreshed before it expires: a call needing one after
//! [`REFRESH_MARGIN`] before expiry (or half the lifetime of a short-lived one) fetches a new
//! one. One refresh at a time: callers wait on the same lock, and those that waited find the
//! fresh token instead of fetching again (single flight). A failed exchange is an outcome of the
//! attempt, classified like an auth failure of the key slot (a refused grant) or a server error.

use super::{Outcome, Transport, http_client};
use crate::config::Secret;
use crate::config::clouds::ServiceAccount;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout_at};

/// The scope Vertex AI needs.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long the signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;
/// A token is replaced this long before it expires.
pub(super) const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The longest token response kept.
const MAX_TOKEN_BODY: usize = 16 * 1024;
/// The most of a token response read at all (an HTML error page is kept in part, as above; an
/// endless body is refused as broken).
const MAX_TOKEN_READ: usize = 1 << 20;

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

pub(super) struct TokenSource {
    email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token_uri: reqwest::Url,
    /// Its own client: the deployment's extra `headers` are for Vertex, not the token endpoint.
    client: http_client::HttpClient,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    pub(super) fn new(
        account: &ServiceAccount,
        connect_timeout: Duration,
    ) -> Result<TokenSource, String> {
        let key =
            EncodingKey::from_rsa_pem(account.private_key.expose().as_bytes()).map_err(|_| {
                "the service account's private_key is not an RSA private key".to_owned()
            })?;
        let token_uri = reqwest::Url::parse(&account.token_uri)
            .map_err(|e| format!("the service account's token_uri: {e}"))?;
        Ok(TokenSource {
            email: account.client_email.clone(),
            key_id: account.private_key_id.clone(),
            key,
            token_uri,
            client: http_client::HttpClient::new(
                connect_timeout,
                http_client::Egress::from_env(),
                Vec::new(),
            )?,
            cached: Mutex::new(None),
        })
    }

    /// A valid access token, from the cache or fresh; `Err` is the attempt's outcome.
    pub(super) async fn token(&self, deadline: Instant) -> Result<Secret, Outcome> {
        let mut cached = match timeout_at(deadline, self.cached.lock()).await {
            Ok(guard) => guard,
            Err(_) => return Err(Outcome::Transport(Transport::Deadline)),
        };
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch(deadline).await?;
        let early = REFRESH_MARGIN.min(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(early),
        });
        Ok(token)
    }

    async fn fetch(&self, deadline: Instant) -> Result<(Secret, Duration), Outcome> {
        let assertion = self.assertion().map_err(|why| refused(&why))?;
        let form = format!(
            "grant_type={}&assertion={assertion}",
            nines_protocol::url::segment("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        let request = self
            .client
            .post(self.token_uri.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        let response = match timeout_at(deadline, self.client.send(request)).await {
            Err(_) => return Err(Outcome::Transport(Transport::Deadline)),
            Ok(Err(e)) => return Err(Outcome::Transport(super::transport::send_error(&e))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let body = match timeout_at(deadline, http_client::bytes(response, MAX_TOKEN_READ)).await {
            Err(_) => return Err(Outcome::Transport(Transport::Deadline)),
            Ok(Err(e)) => {
                return Err(Outcome::Transport(Transport::Broken(format!(
                    "token endpoint: {}",
                    super::describe(&*e)
                ))));
            }
            Ok(Ok(b)) => b,
        };
        let body = &body[..body.len().min(MAX_TOKEN_BODY)];
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(Outcome::Status {
                status,
                headers: http::HeaderMap::new(),
                body: google_error(status.as_u16(), "the token endpoint failed", "UNAVAILABLE"),
            });
        }
        if !status.is_success() {
            // `{"error":"invalid_grant","error_description":"..."}`: never a secret in it.
            let why = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .map(|v| {
                    format!(
                        "{} {}",
                        v["error"].as_str().unwrap_or_default(),
                        v["error_description"].as_str().unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            return Err(refused(&format!(
                "the token endpoint refused the service account (status {}): {}",
                status.as_u16(),
                why.trim()
            )));
        }
        #[derive(serde::Deserialize)]
        struct Granted {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let granted: Granted = serde_json::from_slice(body).map_err(|_| {
            Outcome::Transport(Transport::Malformed(
                "the token endpoint's answer has no access_token".into(),
            ))
        })?;
        Ok((
            Secret::new(granted.access_token),
            Duration::from_secs(granted.expires_in.unwrap_or(ASSERTION_LIFETIME)),
        ))
    }

    /// The signed JWT: RS256, `kid` the key id, one hour.
    fn assertion(&self) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let claims = Claims {
            iss: &self.email,
            scope: SCOPE,
            aud: self.token_uri.as_str(),
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("cannot sign the token request: {e}"))
    }
}

/// The key slot's credentials do not work: a 401, classified `upstream_auth` (another deployment
/// may serve; this one will not until its key file is fixed).
fn refused(why: &str) -> Outcome {
    Outcome::Status {
        status: http::StatusCode::UNAUTHORIZED,
        headers: http::HeaderMap::new(),
        body: google_error(401, why, "UNAUTHENTICATED"),
    }
}

fn google_error(code: u16, message: &str, status: &str) -> bytes::Bytes {
    bytes::Bytes::from(
        serde_json::json!({"error": {"code": code, "message": message, "status": status}})
            .to_string(),
    )
}
