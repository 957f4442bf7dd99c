//! Named OpenAI-compatible providers: `provider = "groq"` instead of `provider =
//! "openai-compatible"` plus a base URL looked up by hand.
//!
//! A preset is only a default: the deployment speaks the OpenAI dialect exactly as an
//! `openai-compatible` one does (same pass-through, same bearer auth), its `base_url` defaults to
//! the service's documented one (a deployment's own `base_url` wins, for a proxy or another
//! region), and its name is what logs, metrics, `nines check` and provider-prefixed model names
//! (`groq/llama-3.1-8b-instant`) show. Adding a service is one row of [`PRESETS`].
//!
//! Where a service documents that it refuses part of OpenAI's surface for every model (Groq:
//! `n > 1` and logprobs), the preset narrows the deployment's capabilities, so routing skips it
//! for such a request instead of sending a request bound to fail.

use nines_protocol::unified::Capabilities;

/// How a preset's service authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetAuth {
    /// `Authorization: Bearer <key>`; a key is required.
    Bearer,
    /// A local server: no key needed, a configured one is sent as `Authorization: Bearer`.
    OptionalBearer,
}

impl PresetAuth {
    pub fn describe(self) -> &'static str {
        match self {
            PresetAuth::Bearer => "Authorization: Bearer",
            PresetAuth::OptionalBearer => "none (Authorization: Bearer when a key is set)",
        }
    }
}

/// One named OpenAI-compatible service or local server.
#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    /// The name written as `provider = "…"`.
    pub name: &'static str,
    /// The documented OpenAI-compatible base URL (the part before `/chat/completions`).
    pub base_url: &'static str,
    pub auth: PresetAuth,
    /// Parts of OpenAI's surface the service documents it refuses for every model.
    pub lacks: Capabilities,
    /// Whether it runs on the operator's own machine (`false`: a hosted service).
    pub local: bool,
}

const fn hosted(name: &'static str, base_url: &'static str) -> Preset {
    Preset {
        name,
        base_url,
        auth: PresetAuth::Bearer,
        lacks: Capabilities::NONE,
        local: false,
    }
}

const fn local(name: &'static str, base_url: &'static str) -> Preset {
    Preset {
        name,
        base_url,
        auth: PresetAuth::OptionalBearer,
        lacks: Capabilities::NONE,
        local: true,
    }
}

/// Every named provider, from each service's public documentation.
pub static PRESETS: [Preset; 25] = [
    Preset {
        // "n: only 1 is supported"; logprobs, top_logprobs and logit_bias are not supported.
        lacks: Capabilities::MULTIPLE_CHOICES.with(Capabilities::LOGPROBS),
        ..hosted("groq", "https://api.groq.com/openai/v1")
    },
    hosted("together", "https://api.together.xyz/v1"),
    hosted("fireworks", "https://api.fireworks.ai/inference/v1"),
    hosted("deepseek", "https://api.deepseek.com/v1"),
    hosted("mistral", "https://api.mistral.ai/v1"),
    hosted("xai", "https://api.x.ai/v1"),
    hosted("openrouter", "https://openrouter.ai/api/v1"),
    hosted("cerebras", "https://api.cerebras.ai/v1"),
    hosted("perplexity", "https://api.perplexity.ai"),
    hosted("deepinfra", "https://api.deepinfra.com/v1/openai"),
    hosted("sambanova", "https://api.sambanova.ai/v1"),
    hosted("nebius", "https://api.studio.nebius.com/v1"),
    hosted("hyperbolic", "https://api.hyperbolic.xyz/v1"),
    hosted("novita", "https://api.novita.ai/v3/openai"),
    hosted("lambda", "https://api.lambda.ai/v1"),
    hosted("huggingface", "https://router.huggingface.co/v1"),
    hosted("moonshot", "https://api.moonshot.ai/v1"),
    hosted(
        "dashscope",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
    ),
    hosted("featherless", "https://api.featherless.ai/v1"),
    hosted("github-models", "https://models.github.ai/inference"),
    local("ollama", "http://localhost:11434/v1"),
    local("vllm", "http://localhost:8000/v1"),
    local("lm-studio", "http://localhost:1234/v1"),
    local("llama-cpp", "http://localhost:8080/v1"),
    // TGI's container listens on 80; its documented `docker run` maps it to 8080.
    local("tgi", "http://localhost:8080/v1"),
];

/// The preset with this name.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Every preset name, for an error that lists what may be written.
pub fn names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_has_a_unique_name_and_a_base_url_without_a_trailing_slash() {
        let mut names: Vec<&str> = names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len(), "duplicate preset names");
        for p in &PRESETS {
            assert!(
                p.base_url.starts_with("https://")
                    || (p.local && p.base_url.starts_with("http://")),
                "{}: hosted services are reached over TLS",
                p.name
            );
            assert!(!p.base_url.ends_with('/'), "{}", p.name);
            assert!(
                super::super::ProviderKind::from_name(p.name).is_none(),
                "{} shadows a provider kind",
                p.name
            );
        }
        assert!(PRESETS.len() >= 21, "groq and at least 20 more");
    }
}
