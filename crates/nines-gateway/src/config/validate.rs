//! Raw → validated configuration. Every error names the file, line and key path.

use super::clouds::Cloud;
use super::schema::{ProviderKind, ProviderName, RawConfig, RawDeployment};
use super::{
    Config, ConfigError, Connections, Deployment, KeySlotConfig, ModelRoute, Secret, Server,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub(super) fn validate(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw = parse(path, text)?;
    let err = |span, key: String, msg: String| ConfigError::at(path, text, span, key, msg);

    raw.server
        .listen
        .parse::<std::net::SocketAddr>()
        .map_err(|e| {
            err(
                None,
                "server.listen".into(),
                format!("'{}' is not an address: {e}", raw.server.listen),
            )
        })?;
    if raw.server.max_body_bytes == 0 {
        return Err(err(
            None,
            "server.max_body_bytes".into(),
            "must be greater than 0".into(),
        ));
    }
    let s = &raw.server;
    for (name, zero) in [
        ("header_read_timeout", s.header_read_timeout.is_zero()),
        ("body_read_timeout", s.body_read_timeout.is_zero()),
        ("idle_timeout", s.idle_timeout.is_zero()),
        ("max_connections", s.max_connections == 0),
        (
            "http2_max_concurrent_streams",
            s.http2_max_concurrent_streams == 0,
        ),
    ] {
        if zero {
            return Err(err(
                None,
                format!("server.{name}"),
                "must be greater than 0".into(),
            ));
        }
    }
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB; a head that small is common.
    if s.max_header_bytes < 8192 {
        return Err(err(
            None,
            "server.max_header_bytes".into(),
            "must be at least 8192".into(),
        ));
    }

    let mut deployments = Vec::with_capacity(raw.deployments.len());
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, d) in raw.deployments.iter().enumerate() {
        let key = format!("deployments[{i}]");
        if d.name.get_ref().is_empty() {
            return Err(err(
                Some(d.name.span()),
                format!("{key}.name"),
                "must not be empty".into(),
            ));
        }
        if by_name.insert(d.name.get_ref().clone(), i).is_some() {
            return Err(err(
                Some(d.name.span()),
                format!("{key}.name"),
                format!("deployment '{}' is defined twice", d.name.get_ref()),
            ));
        }
        let config_dir = path.parent().unwrap_or(Path::new("."));
        deployments.push(Arc::new(deployment(d, &key, config_dir, env, &err)?));
    }

    let mut models = Vec::with_capacity(raw.models.len());
    let mut model_names: HashMap<String, ()> = HashMap::new();
    for (i, m) in raw.models.iter().enumerate() {
        let key = format!("models[{i}]");
        let name = m.name.get_ref();
        if name.is_empty() {
            return Err(err(
                Some(m.name.span()),
                format!("{key}.name"),
                "must not be empty".into(),
            ));
        }
        if model_names.insert(name.clone(), ()).is_some() {
            return Err(err(
                Some(m.name.span()),
                format!("{key}.name"),
                format!("model '{name}' is defined twice"),
            ));
        }
        if m.deployments.is_empty() {
            return Err(err(
                Some(m.name.span()),
                format!("{key}.deployments"),
                "a model needs at least one deployment".into(),
            ));
        }
        let mut indices = Vec::with_capacity(m.deployments.len());
        for (j, d) in m.deployments.iter().enumerate() {
            let index = by_name.get(d.get_ref()).copied().ok_or_else(|| {
                let known: Vec<&str> = raw
                    .deployments
                    .iter()
                    .map(|d| d.name.get_ref().as_str())
                    .collect();
                err(
                    Some(d.span()),
                    format!("{key}.deployments[{j}]"),
                    format!(
                        "no deployment is named '{}' (known: {})",
                        d.get_ref(),
                        known.join(", ")
                    ),
                )
            })?;
            indices.push(index);
        }
        if m.hedge.enabled && !(0.0..=100.0).contains(&m.hedge.max_percent) {
            return Err(err(
                Some(m.name.span()),
                format!("{key}.hedge.max_percent"),
                "must be within 0..=100".into(),
            ));
        }
        let slo = super::slo::validate(&m.slo)
            .map_err(|(k, msg)| err(Some(m.name.span()), format!("{key}.slo.{k}"), msg))?;
        models.push(ModelRoute {
            slo,
            name: name.clone(),
            deployments: indices,
            strategy: m.strategy,
            hedge: m.hedge,
            resume_streams: m.resume_streams,
            degrade: m.degrade,
            fallbacks: m.fallbacks.iter().map(|f| f.get_ref().clone()).collect(),
            context_fallbacks: m
                .context_fallbacks
                .iter()
                .map(|f| f.get_ref().clone())
                .collect(),
            region: m.region.clone(),
        });
    }
    // Fallbacks must name other configured models.
    for (i, m) in raw.models.iter().enumerate() {
        for (field, list) in [
            ("fallbacks", &m.fallbacks),
            ("context_fallbacks", &m.context_fallbacks),
        ] {
            for (j, f) in list.iter().enumerate() {
                let name = f.get_ref();
                if name == m.name.get_ref() || !model_names.contains_key(name) {
                    return Err(err(
                        Some(f.span()),
                        format!("models[{i}].{field}[{j}]"),
                        format!("'{name}' must name another configured model"),
                    ));
                }
            }
        }
    }

    super::resilience::check(&raw.resilience).map_err(|(key, msg)| err(None, key, msg))?;
    let access = super::access::validate(
        raw.auth.as_ref(),
        &raw.limits,
        raw.store.as_ref(),
        path,
        env,
        &err,
    )?;
    let redis = super::redis::validate(raw.redis.as_ref(), &raw.limits, path, env, &err)?;

    let telemetry = super::telemetry::validate(&raw.telemetry, &raw.status, env)
        .map_err(|(key, msg)| err(None, key, msg))?;
    if telemetry.status.enabled && !telemetry.status.public && access.auth.admin_key.is_none() {
        return Err(err(
            None,
            "status.public".into(),
            "a private status page is read with the admin key: set auth.admin_key (and a [store]) \
             or public = true"
                .into(),
        ));
    }

    Ok(Config {
        telemetry,
        resilience: raw.resilience,
        routing: raw.routing,
        source: path.to_path_buf(),
        hash: text_hash(text),
        access,
        redis,
        server: Server {
            listen: raw.server.listen,
            max_body_bytes: raw.server.max_body_bytes,
            shutdown_grace: raw.server.shutdown_grace,
            drain_delay: raw.server.drain_delay,
            watch_config: raw.server.watch_config,
            reuse_port: raw.server.reuse_port,
            connections: Connections {
                header_read_timeout: raw.server.header_read_timeout,
                body_read_timeout: raw.server.body_read_timeout,
                idle_timeout: raw.server.idle_timeout,
                max_connections: raw.server.max_connections,
                http2_max_concurrent_streams: raw.server.http2_max_concurrent_streams,
                max_header_bytes: raw.server.max_header_bytes,
            },
        },
        deployments,
        models,
    })
}

/// The first 16 hex characters of the text's SHA-256.
pub fn text_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(16);
    for b in &digest[..8] {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// TOML → raw structs; a type or unknown-key error carries serde's key path and toml's span.
fn parse(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError::at(path, text, e.span(), "", e.message().trim()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // `Spanned` fields add a private segment to serde's path.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        let message = inner.message().trim();
        let message = if super::error::is_secret_path(&key) {
            super::error::without_values(message)
        } else {
            message.to_owned()
        };
        ConfigError::at(
            path,
            text,
            inner.span(),
            if key == "." { String::new() } else { key },
            message,
        )
    })
}

type ErrAt<'a> = dyn Fn(Option<std::ops::Range<usize>>, String, String) -> ConfigError + 'a;

fn deployment(
    d: &RawDeployment,
    key: &str,
    config_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    err: &ErrAt<'_>,
) -> Result<Deployment, ConfigError> {
    let name = d.name.get_ref().clone();
    let (provider, preset) = match d.provider {
        ProviderName::Kind(kind) => (kind, None),
        ProviderName::Preset(preset) => (ProviderKind::OpenaiCompatible, Some(preset)),
    };
    let requires_key = preset.map_or(provider.requires_key(), |p| {
        p.auth == super::presets::PresetAuth::Bearer
    });
    let provider_name = preset.map_or(provider.as_str(), |p| p.name);
    let resolve = |value: &str| resolve_secret(value, env);
    let cloud = super::clouds::settings(d, provider, provider_name, config_dir, env, &resolve)
        .map_err(|(field, msg)| err(Some(d.name.span()), format!("{key}.{field}"), msg))?;
    let derived = match &cloud {
        Cloud::Bedrock(b) => Some(format!(
            "https://bedrock-runtime.{}.amazonaws.com",
            b.region
        )),
        Cloud::Vertex(v) if v.region == "global" => {
            Some("https://aiplatform.googleapis.com".to_owned())
        }
        Cloud::Vertex(v) => Some(format!("https://{}-aiplatform.googleapis.com", v.region)),
        _ => None,
    };
    let default_base_url = derived
        .as_deref()
        .or_else(|| preset.map_or(provider.default_base_url(), |p| Some(p.base_url)));
    let base_url = match (&d.base_url, default_base_url) {
        (Some(url), _) => {
            let value = url.get_ref().trim_end_matches('/');
            if !(value.starts_with("http://") || value.starts_with("https://")) {
                return Err(err(
                    Some(url.span()),
                    format!("{key}.base_url"),
                    format!(
                        "'{}' must start with http:// or https://",
                        super::shown_url(value)
                    ),
                ));
            }
            value.to_owned()
        }
        (None, Some(default)) => default.to_owned(),
        (None, None) => {
            return Err(err(
                Some(d.name.span()),
                format!("{key}.base_url"),
                format!("provider '{provider_name}' has no default base URL; set base_url",),
            ));
        }
    };
    if d.model.is_empty() {
        return Err(err(
            Some(d.name.span()),
            format!("{key}.model"),
            "must not be empty".into(),
        ));
    }
    let mut keys = Vec::with_capacity(d.api_keys.len().max(1));
    if let Some(token) = &d.azure_ad_token {
        let secret = resolve_secret(token.get_ref(), env)
            .map_err(|msg| err(Some(token.span()), format!("{key}.azure_ad_token"), msg))?;
        keys.push(KeySlotConfig {
            alias: format!("{name}#0"),
            secret: Some(secret),
        });
    }
    for (i, k) in d.api_keys.iter().enumerate() {
        let secret = resolve_secret(k.get_ref(), env)
            .map_err(|msg| err(Some(k.span()), format!("{key}.api_keys[{i}]"), msg))?;
        keys.push(KeySlotConfig {
            alias: format!("{name}#{i}"),
            secret: Some(secret),
        });
    }
    if keys.is_empty() {
        if requires_key {
            return Err(err(
                Some(d.name.span()),
                format!("{key}.api_keys"),
                format!(
                    "provider '{provider_name}' needs at least one API key (e.g. api_keys = [\"env:OPENAI_API_KEY\"])",
                ),
            ));
        }
        keys.push(KeySlotConfig {
            alias: format!("{name}#0"),
            secret: None,
        });
    }
    let weight = match &d.weight {
        Some(w) if !(w.get_ref().is_finite() && *w.get_ref() >= 0.0) => {
            return Err(err(
                Some(w.span()),
                format!("{key}.weight"),
                "must be a finite number ≥ 0".into(),
            ));
        }
        Some(w) => *w.get_ref(),
        None => 1.0,
    };
    if d.price.input < 0.0 || d.price.output < 0.0 {
        return Err(err(
            Some(d.name.span()),
            format!("{key}.price"),
            "prices must not be negative".into(),
        ));
    }
    if d.max_concurrency == Some(0) {
        return Err(err(
            Some(d.name.span()),
            format!("{key}.max_concurrency"),
            "must be at least 1".into(),
        ));
    }
    let t = d.timeouts;
    for (field, value) in [
        ("connect", t.connect),
        ("first_byte", t.first_byte),
        ("idle", t.idle),
        ("total", t.total),
    ] {
        if value.is_zero() {
            return Err(err(
                Some(d.name.span()),
                format!("{key}.timeouts.{field}"),
                "must be greater than 0".into(),
            ));
        }
    }
    let assistant_prefill = match &d.assistant_prefill {
        Some(p) if *p.get_ref() && provider == ProviderKind::Openai => {
            return Err(err(
                Some(p.span()),
                format!("{key}.assistant_prefill"),
                "OpenAI answers a final assistant message instead of continuing it; only \
                 servers that continue it (e.g. vLLM's continue_final_message) can set this"
                    .into(),
            ));
        }
        Some(p) => *p.get_ref(),
        None => false,
    };
    let headers = extra_headers(d, key, env, err)?;
    Ok(Deployment {
        name,
        provider,
        preset,
        upstream_model: d.model.clone(),
        base_url,
        keys,
        context_window: d.context_window,
        price: d.price,
        region: d.region.clone(),
        max_concurrency: d.max_concurrency,
        weight,
        timeouts: t,
        assistant_prefill,
        embedding_family: d.embedding_family.clone(),
        credential_hosts: d.credential_hosts.clone(),
        drop_unsupported_params: d.drop_unsupported_params,
        headers,
        cloud,
    })
}

/// Headers nines sets itself, which a deployment's `headers` may not replace.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
];

/// A deployment's `headers`, each value resolved (`env:NAME`) and marked sensitive. Errors name
/// the header, never its value.
fn extra_headers(
    d: &RawDeployment,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    err: &ErrAt<'_>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    let mut out = Vec::with_capacity(d.headers.len());
    for (name, value) in &d.headers {
        let at = |msg: String| err(Some(value.span()), format!("{key}.headers.{name}"), msg);
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| at(format!("'{name}' is not a valid header name")))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(at(format!("'{name}' is set by nines itself")));
        }
        let secret = resolve_secret(value.get_ref(), env).map_err(at)?;
        let mut value = http::HeaderValue::from_str(secret.expose())
            .map_err(|_| at("the value is not a valid header value".into()))?;
        value.set_sensitive(true);
        out.push((header, value));
    }
    Ok(out)
}

/// `env:NAME` reads the environment; anything else is the key itself.
fn resolve_secret(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, String> {
    match value.strip_prefix("env:") {
        Some("") => Err("'env:' needs a variable name".into()),
        Some(var) => match env(var) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v)),
            Some(_) => Err(format!("environment variable {var} is empty")),
            None => Err(format!("environment variable {var} is not set")),
        },
        None if value.is_empty() => Err("must not be empty".into()),
        None => Ok(Secret::new(value.to_owned())),
    }
}
