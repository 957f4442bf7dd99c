//! Google's OAuth token endpoint for service accounts (`POST /token`, the key file's
//! `token_uri`): the JWT-bearer grant. The assertion must be an RS256 JWT signed by the test
//! service account's key (`fixtures/test-only/`), issued by that account, for this endpoint
//! (`aud`), with the cloud-platform scope, not expired. The answer is an access token the Vertex
//! routes accept until it expires ([`MockState::issue_token`]); a bad assertion is Google's 400
//! `invalid_grant`.

use std::collections::HashMap;

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;

use crate::clouds::{TEST_SERVICE_ACCOUNT_EMAIL, TEST_SERVICE_ACCOUNT_PUBLIC_KEY};
use crate::effects::{self, ErrorShape};
use crate::state::MockState;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

const ERROR_SHAPE: ErrorShape = ErrorShape {
    fault_body: |status| json!({"error": "mock_fault", "error_description": format!("mock fault: status {status}")}),
    invalid_request: |message| grant_error("invalid_request", message),
};

#[derive(Deserialize)]
struct Claims {
    scope: String,
}

pub(crate) async fn token(
    State(state): State<MockState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(response) = effects::gate_header(&state, &headers, ERROR_SHAPE, false).await {
        return response;
    }
    if form.get("grant_type").map(String::as_str) != Some(GRANT_TYPE) {
        return grant_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return grant_error("invalid_request", "Missing required parameter: assertion");
    };
    let Ok(key) = DecodingKey::from_rsa_pem(TEST_SERVICE_ACCOUNT_PUBLIC_KEY.as_bytes()) else {
        return grant_error("internal_failure", "the test public key does not parse");
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!("http://{host}/token")]);
    validation.set_issuer(&[TEST_SERVICE_ACCOUNT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return grant_error("invalid_grant", &format!("Invalid JWT: {e}")),
    };
    if !claims.scope.split(' ').any(|s| s == SCOPE) {
        return grant_error(
            "invalid_scope",
            "The assertion does not ask for cloud-platform.",
        );
    }
    let (token, lifetime) = state.issue_token();
    Json(json!({
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

fn grant_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}
