//! What the cloud-hosted provider kinds need beyond a base URL and API keys: Azure OpenAI's
//! `api-version` and Entra ID token, Bedrock's AWS region and credentials, Vertex AI's project,
//! region and service account; and the extra `headers` any deployment may send. Secrets are read
//! here, once per load, from the file's values (`env:NAME` allowed) or the standard environment
//! variables, and are never shown.

use super::Secret;
use super::schema::{ProviderKind, RawDeployment};
use std::path::Path;

/// The API version an Azure deployment uses when the file names none: the latest GA version of
/// the Azure OpenAI data-plane API with chat completions and embeddings.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// The Vertex AI region used when a deployment names none.
pub const VERTEX_DEFAULT_REGION: &str = "us-central1";

/// Provider-specific settings of one deployment.
#[derive(Debug, Clone)]
pub enum Cloud {
    /// The kind needs nothing beyond base URL and keys.
    Plain,
    Azure(Azure),
    Bedrock(Bedrock),
    Vertex(Vertex),
}

#[derive(Debug, Clone)]
pub struct Azure {
    pub api_version: String,
    /// The key slots hold a Microsoft Entra ID token, sent as `Authorization: Bearer`, instead of
    /// API keys sent as `api-key`.
    pub entra_token: bool,
}

#[derive(Debug, Clone)]
pub struct Bedrock {
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Vertex {
    pub project: String,
    pub region: String,
    pub service_account: ServiceAccount,
}

/// The parts of a Google service-account key file that sign a token request.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    /// PEM (PKCS#8) RSA private key.
    pub private_key: Secret,
    pub token_uri: String,
}

/// A field's value where it is wrong: (key path suffix, message).
pub type FieldError = (&'static str, String);

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
type Resolve<'a> = &'a dyn Fn(&str) -> Result<Secret, String>;

/// The provider-specific settings of `d`, and fields set for a kind that does not use them.
/// `kind` is the deployment's provider kind (a named OpenAI-compatible service is
/// `openai-compatible`), `name` what config calls it.
pub fn settings(
    d: &RawDeployment,
    kind: ProviderKind,
    name: &str,
    config_dir: &Path,
    env: Env<'_>,
    resolve: Resolve<'_>,
) -> Result<Cloud, FieldError> {
    misplaced(d, kind, name)?;
    match kind {
        ProviderKind::Azure => Ok(Cloud::Azure(Azure {
            api_version: match &d.api_version {
                Some(v) if v.trim().is_empty() => {
                    return Err(("api_version", "must not be empty".into()));
                }
                Some(v) => v.trim().to_owned(),
                None => AZURE_DEFAULT_API_VERSION.to_owned(),
            },
            entra_token: d.azure_ad_token.is_some(),
        })),
        ProviderKind::Bedrock => bedrock(d, env, resolve).map(Cloud::Bedrock),
        ProviderKind::Vertex => vertex(d, config_dir, env).map(Cloud::Vertex),
        _ => Ok(Cloud::Plain),
    }
}

/// A field that only another kind reads is a mistake worth naming, not a silent no-op.
fn misplaced(d: &RawDeployment, kind: ProviderKind, name: &str) -> Result<(), FieldError> {
    let fields: [(&'static str, bool, ProviderKind); 7] = [
        ("api_version", d.api_version.is_some(), ProviderKind::Azure),
        (
            "azure_ad_token",
            d.azure_ad_token.is_some(),
            ProviderKind::Azure,
        ),
        (
            "aws_access_key_id",
            d.aws_access_key_id.is_some(),
            ProviderKind::Bedrock,
        ),
        (
            "aws_secret_access_key",
            d.aws_secret_access_key.is_some(),
            ProviderKind::Bedrock,
        ),
        (
            "aws_session_token",
            d.aws_session_token.is_some(),
            ProviderKind::Bedrock,
        ),
        ("project", d.project.is_some(), ProviderKind::Vertex),
        (
            "credentials_file",
            d.credentials_file.is_some(),
            ProviderKind::Vertex,
        ),
    ];
    for (field, set, owner) in fields {
        if set && kind != owner {
            return Err((
                field,
                format!(
                    "only provider '{}' reads {field}; this deployment is '{name}'",
                    owner.as_str(),
                ),
            ));
        }
    }
    if kind == ProviderKind::Azure && d.azure_ad_token.is_some() && !d.api_keys.is_empty() {
        return Err((
            "azure_ad_token",
            "set either api_keys (sent as api-key) or azure_ad_token (sent as a bearer token), \
             not both"
                .into(),
        ));
    }
    if matches!(kind, ProviderKind::Bedrock | ProviderKind::Vertex) && !d.api_keys.is_empty() {
        return Err((
            "api_keys",
            format!(
                "provider '{}' signs its requests with its own credentials; it takes no api_keys",
                kind.as_str()
            ),
        ));
    }
    Ok(())
}

fn bedrock(d: &RawDeployment, env: Env<'_>, resolve: Resolve<'_>) -> Result<Bedrock, FieldError> {
    let region = d
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .filter(|r| !r.trim().is_empty())
        .ok_or((
            "region",
            "provider 'bedrock' needs an AWS region: set region, or AWS_REGION".to_owned(),
        ))?;
    // A field of the file wins; else the variable the AWS SDKs read.
    let read = |field: &'static str,
                value: &Option<toml::Spanned<String>>,
                variable: &str|
     -> Result<Option<Secret>, FieldError> {
        match value {
            Some(v) => resolve(v.get_ref()).map(Some).map_err(|m| (field, m)),
            None => Ok(env(variable).filter(|v| !v.is_empty()).map(Secret::new)),
        }
    };
    let access_key_id = read(
        "aws_access_key_id",
        &d.aws_access_key_id,
        "AWS_ACCESS_KEY_ID",
    )?;
    let secret_access_key = read(
        "aws_secret_access_key",
        &d.aws_secret_access_key,
        "AWS_SECRET_ACCESS_KEY",
    )?;
    let session_token = read(
        "aws_session_token",
        &d.aws_session_token,
        "AWS_SESSION_TOKEN",
    )?;
    let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret_access_key) else {
        return Err((
            "aws_access_key_id",
            "provider 'bedrock' needs AWS credentials: set aws_access_key_id and \
             aws_secret_access_key (e.g. \"env:AWS_ACCESS_KEY_ID\"), or the AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY environment variables"
                .to_owned(),
        ));
    };
    Ok(Bedrock {
        region: region.trim().to_owned(),
        access_key_id,
        secret_access_key,
        session_token,
    })
}

fn vertex(d: &RawDeployment, config_dir: &Path, env: Env<'_>) -> Result<Vertex, FieldError> {
    let path = match &d.credentials_file {
        Some(p) => p.get_ref().clone(),
        None => env("GOOGLE_APPLICATION_CREDENTIALS").ok_or((
            "credentials_file",
            "provider 'vertex' needs a service-account key file: set credentials_file, or \
             GOOGLE_APPLICATION_CREDENTIALS"
                .to_owned(),
        ))?,
    };
    let path = config_dir.join(path);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        (
            "credentials_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let file = parse_service_account(&text)
        .map_err(|m| ("credentials_file", format!("{}: {m}", path.display())))?;
    let project = d
        .project
        .clone()
        .or(file.project_id)
        .filter(|p| !p.trim().is_empty())
        .ok_or((
            "project",
            "provider 'vertex' needs a Google Cloud project: set project (the key file names none)"
                .to_owned(),
        ))?;
    Ok(Vertex {
        project,
        region: d
            .region
            .clone()
            .unwrap_or_else(|| VERTEX_DEFAULT_REGION.to_owned()),
        service_account: file.account,
    })
}

struct KeyFile {
    project_id: Option<String>,
    account: ServiceAccount,
}

/// A service-account key file (`"type": "service_account"`). Messages never quote the file.
fn parse_service_account(text: &str) -> Result<KeyFile, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "type")]
        kind: Option<String>,
        project_id: Option<String>,
        private_key_id: Option<String>,
        private_key: Option<String>,
        client_email: Option<String>,
        token_uri: Option<String>,
    }
    let raw: Raw = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a service-account key file (JSON error at line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    if raw.kind.as_deref() != Some("service_account") {
        return Err("not a service-account key file (\"type\" is not \"service_account\")".into());
    }
    let (Some(private_key), Some(client_email)) = (raw.private_key, raw.client_email) else {
        return Err("the key file lacks private_key or client_email".into());
    };
    if !private_key.contains("PRIVATE KEY-----") {
        return Err("private_key is not a PEM private key".into());
    }
    let token_uri = raw
        .token_uri
        .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned());
    if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
        return Err("token_uri must be an http(s) URL".into());
    }
    Ok(KeyFile {
        project_id: raw.project_id,
        account: ServiceAccount {
            client_email,
            private_key_id: raw.private_key_id,
            private_key: Secret::new(private_key),
            token_uri,
        },
    })
}

#[cfg(test)]
mod tests;
