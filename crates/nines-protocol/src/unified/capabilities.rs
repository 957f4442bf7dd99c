//! What an upstream can do, as a small bit set.
//!
//! Routing filters deployments by capability before it tries them: sending `n = 3` to Anthropic or
//! an image to a text-only model cannot succeed anywhere it is retried, so such a candidate is
//! skipped with a reason naming the gap instead of being attempted.

use std::fmt;

/// A set of capabilities. Combine with [`Capabilities::with`] or `|`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u32);

/// Each capability with its name, in the order [`Capabilities::missing`] reports them. The
/// request parameters among them are named after the parameter, so a refusal names what the
/// client sent.
const NAMED: [(Capabilities, &str); 19] = [
    (Capabilities::STREAMING, "streaming"),
    (Capabilities::TOOLS, "tools"),
    (Capabilities::VISION, "vision"),
    (Capabilities::JSON_SCHEMA, "json_schema"),
    (Capabilities::MULTIPLE_CHOICES, "multiple_choices"),
    (Capabilities::LOGPROBS, "logprobs"),
    (Capabilities::ASSISTANT_PREFILL, "assistant_prefill"),
    (Capabilities::EMBEDDINGS, "embeddings"),
    (Capabilities::SEED, "seed"),
    (Capabilities::PENALTIES, "penalties"),
    (Capabilities::TOP_K, "top_k"),
    (Capabilities::REASONING, "reasoning"),
    (
        Capabilities::REASONING_WITH_FORCED_TOOL,
        "reasoning_with_forced_tool",
    ),
    (
        Capabilities::REASONING_WITH_SAMPLING,
        "reasoning_with_sampling",
    ),
    (Capabilities::OPENAI_PARAMS, "openai_only_params"),
    (Capabilities::RESPONSES_API, "responses_api"),
    (Capabilities::IMAGE_URLS, "image_urls"),
    (Capabilities::TOOL_CHOICE_NONE, "tool_choice_none"),
    (Capabilities::SERIAL_TOOL_CALLS, "parallel_tool_calls"),
];

impl Capabilities {
    pub const NONE: Capabilities = Capabilities(0);
    /// Server-sent-event streaming of chat answers.
    pub const STREAMING: Capabilities = Capabilities(1);
    /// Function calling.
    pub const TOOLS: Capabilities = Capabilities(1 << 1);
    /// Image inputs.
    pub const VISION: Capabilities = Capabilities(1 << 2);
    /// Structured output: `json_object` or `json_schema` response formats.
    pub const JSON_SCHEMA: Capabilities = Capabilities(1 << 3);
    /// More than one choice per request (`n > 1`).
    pub const MULTIPLE_CHOICES: Capabilities = Capabilities(1 << 4);
    /// Token log-probabilities.
    pub const LOGPROBS: Capabilities = Capabilities(1 << 5);
    /// Continuing a conversation whose last message is the assistant's.
    pub const ASSISTANT_PREFILL: Capabilities = Capabilities(1 << 6);
    /// The embeddings endpoint.
    pub const EMBEDDINGS: Capabilities = Capabilities(1 << 7);
    /// Deterministic sampling (`seed`).
    pub const SEED: Capabilities = Capabilities(1 << 8);
    /// `presence_penalty` / `frequency_penalty` other than 0.
    pub const PENALTIES: Capabilities = Capabilities(1 << 9);
    /// Top-k sampling.
    pub const TOP_K: Capabilities = Capabilities(1 << 10);
    /// A reasoning effort or thinking budget.
    pub const REASONING: Capabilities = Capabilities(1 << 11);
    /// Reasoning together with a forced tool call (`tool_choice` required or a named function,
    /// or a JSON response made through a forced tool): Anthropic refuses thinking then.
    pub const REASONING_WITH_FORCED_TOOL: Capabilities = Capabilities(1 << 12);
    /// Reasoning together with a `temperature` other than 1, `top_k`, or a `top_p` under 0.95:
    /// Anthropic refuses thinking then.
    pub const REASONING_WITH_SAMPLING: Capabilities = Capabilities(1 << 13);
    /// OpenAI parameters the unified model does not carry (`logit_bias`, `verbosity`, …; kept
    /// in `ChatRequest::extra`): only OpenAI-family upstreams take them.
    pub const OPENAI_PARAMS: Capabilities = Capabilities(1 << 14);
    /// OpenAI's Responses API served natively, with the built-in tools OpenAI runs itself (web
    /// search, file search, code interpreter). Without it a Responses request is translated into
    /// the deployment's chat dialect, and one that needs a built-in tool cannot go there.
    pub const RESPONSES_API: Capabilities = Capabilities(1 << 15);
    /// Images given by URL, which the upstream fetches itself (Bedrock's Converse fetches
    /// nothing: it takes inline bytes only).
    pub const IMAGE_URLS: Capabilities = Capabilities(1 << 16);
    /// `tool_choice: none` while the conversation already holds tool calls. Without tool calls
    /// in the history, "none" is served anywhere by leaving the tools out; with them, an upstream
    /// must take the tools (to read the history) and still be told not to call one, which
    /// Converse cannot be told.
    pub const TOOL_CHOICE_NONE: Capabilities = Capabilities(1 << 17);
    /// At most one tool call per turn (`parallel_tool_calls: false`, Anthropic's
    /// `disable_parallel_tool_use`): Gemini and Converse have no such switch.
    pub const SERIAL_TOOL_CALLS: Capabilities = Capabilities(1 << 18);
    /// Every named capability (and no bit without a name, so `ALL` round-trips through names).
    pub const ALL: Capabilities = Capabilities((1 << NAMED.len()) - 1);
    /// The request parameters a deployment marked `drop_unsupported_params` may have removed
    /// (and named in `x-nines-dropped-params`) rather than be skipped for. Content (tools,
    /// images, a prefill) and the shape of the call (streaming) are never dropped.
    pub const DROPPABLE: Capabilities = Capabilities(
        Capabilities::SEED.0
            | Capabilities::PENALTIES.0
            | Capabilities::TOP_K.0
            | Capabilities::REASONING.0
            | Capabilities::LOGPROBS.0
            | Capabilities::MULTIPLE_CHOICES.0
            | Capabilities::JSON_SCHEMA.0
            | Capabilities::SERIAL_TOOL_CALLS.0
            | Capabilities::OPENAI_PARAMS.0,
    );

    /// This set plus `other`.
    #[must_use]
    pub const fn with(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// What this set and `other` share.
    #[must_use]
    pub const fn and(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0)
    }

    /// This set minus `other`.
    #[must_use]
    pub const fn without(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & !other.0)
    }

    /// Whether every capability in `other` is in this set.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the capabilities in `required` that this set lacks; empty when it can serve.
    pub fn missing(&self, required: Capabilities) -> Vec<&'static str> {
        Capabilities(required.0 & !self.0).names().collect()
    }

    /// The names of the capabilities in this set.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NAMED
            .into_iter()
            .filter(move |(cap, _)| self.contains(*cap))
            .map(|(_, name)| name)
    }

    /// The capability with this name (as used in configuration), if any.
    pub fn from_name(name: &str) -> Option<Capabilities> {
        NAMED.iter().find(|(_, n)| *n == name).map(|(cap, _)| *cap)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        self.with(rhs)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}
