//! The unified model every dialect converts to and from.
//!
//! A request that arrives in one dialect and is served by an upstream speaking another goes
//! `dialect A → unified → dialect B`, and its answer goes back the same way. Keeping one model in
//! the middle makes N dialects cost N translations instead of N², and lets routing ask one question
//! of every request ([`ChatRequest::required_capabilities`]) whatever it arrived as.
//!
//! The model is OpenAI-shaped (the dialect most clients speak), with two deliberate choices:
//! content is always a list of parts (a plain string is one [`ContentPart::Text`]), and tool-call
//! arguments stay JSON *text*, as OpenAI streams them, so a stream can be relayed without parsing
//! partial JSON.
//!
//! Values here are plain owned data with no serde derive: the wire shapes live in the dialect
//! modules, and each of them decides how a field is spelled.

mod capabilities;
mod errors;
pub mod json_tool;
mod reasoning;

pub use capabilities::Capabilities;
pub use errors::{DecodeError, ErrorKind, ProviderError};
pub use reasoning::{Effort, Reasoning};

use serde_json::{Map, Value};

/// A wire format nines speaks on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
    Replicate,
    Runway,
    /// Amazon Bedrock's Converse API.
    Bedrock,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
            Dialect::Replicate => "replicate",
            Dialect::Runway => "runway",
            Dialect::Bedrock => "bedrock",
        }
    }
}

/// A chat request in the unified model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)` asks for at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage`: end the stream with a usage chunk.
    pub include_usage: bool,
    /// Number of choices (OpenAI `n`); 1 unless the client asked for more.
    pub n: u32,
    pub response_format: Option<ResponseFormat>,
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    /// The end user, for upstream abuse tracking (Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// OpenAI's `metadata` object (stored completions); other dialects drop it.
    pub metadata: Option<Value>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Top-k sampling (Anthropic, Gemini, most open-model servers; not OpenAI's own API).
    pub top_k: Option<u32>,
    /// OpenAI's `reasoning_effort`, Anthropic's `thinking`.
    pub reasoning: Option<Reasoning>,
    /// Top-level fields of an OpenAI request that the unified model does not know, kept so an
    /// OpenAI-dialect encoder can send them on. Other dialects' encoders ignore them.
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request with the given model and messages and every option at its default.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: None,
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Vec::new(),
            stream: false,
            include_usage: false,
            n: 1,
            response_format: None,
            logprobs: false,
            top_logprobs: None,
            user: None,
            metadata: None,
            seed: None,
            presence_penalty: None,
            frequency_penalty: None,
            top_k: None,
            reasoning: None,
            extra: Map::new(),
        }
    }

    /// Whether reasoning is asked for.
    pub fn reasons(&self) -> bool {
        self.reasoning.is_some_and(Reasoning::is_on)
    }

    /// Whether an earlier turn of the conversation holds tool calls.
    pub fn history_has_tool_calls(&self) -> bool {
        self.messages.iter().any(|m| !m.tool_calls.is_empty())
    }

    /// Whether the answer must be JSON (`json_object` or `json_schema`).
    pub fn wants_json(&self) -> bool {
        matches!(
            self.response_format,
            Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
        )
    }

    /// This request without the parameters behind `dropped` (see [`Capabilities::DROPPABLE`]),
    /// and the names of the parameters removed, as the client spelled them in OpenAI's dialect
    /// (Anthropic's `thinking` is named `reasoning`).
    pub fn without(&self, dropped: Capabilities) -> (ChatRequest, Vec<String>) {
        let mut out = self.clone();
        let mut names: Vec<String> = Vec::new();
        if dropped.contains(Capabilities::OPENAI_PARAMS) {
            let (hints, params): (Map<String, Value>, Map<String, Value>) =
                std::mem::take(&mut out.extra)
                    .into_iter()
                    .partition(|(key, _)| OPENAI_HINTS.contains(&key.as_str()));
            // (the same split as `openai_only_params`, by value)
            names.extend(params.into_iter().map(|(key, _)| key));
            out.extra = hints;
        }
        let mut drop = |cap: Capabilities, name: &'static str, present: bool| {
            let hit = dropped.contains(cap) && present;
            if hit {
                names.push(name.to_owned());
            }
            hit
        };
        if drop(Capabilities::SEED, "seed", out.seed.is_some()) {
            out.seed = None;
        }
        if drop(
            Capabilities::PENALTIES,
            "presence_penalty",
            nonzero(out.presence_penalty),
        ) {
            out.presence_penalty = None;
        }
        if drop(
            Capabilities::PENALTIES,
            "frequency_penalty",
            nonzero(out.frequency_penalty),
        ) {
            out.frequency_penalty = None;
        }
        if drop(Capabilities::TOP_K, "top_k", out.top_k.is_some()) {
            out.top_k = None;
        }
        if drop(Capabilities::REASONING, "reasoning", out.reasons()) {
            out.reasoning = None;
        }
        if drop(Capabilities::LOGPROBS, "logprobs", out.logprobs) {
            out.logprobs = false;
        }
        if drop(
            Capabilities::LOGPROBS,
            "top_logprobs",
            out.top_logprobs.is_some(),
        ) {
            out.top_logprobs = None;
        }
        if drop(Capabilities::MULTIPLE_CHOICES, "n", out.n > 1) {
            out.n = 1;
        }
        if drop(
            Capabilities::JSON_SCHEMA,
            "response_format",
            out.wants_json(),
        ) {
            out.response_format = None;
        }
        if drop(
            Capabilities::SERIAL_TOOL_CALLS,
            "parallel_tool_calls",
            !out.tools.is_empty() && out.parallel_tool_calls == Some(false),
        ) {
            out.parallel_tool_calls = None;
        }
        (out, names)
    }

    /// What an upstream must support to serve this request. Routing compares it with each
    /// deployment's [`Capabilities`] and names the gap with [`Capabilities::missing`].
    pub fn required_capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::NONE;
        if self.stream {
            caps = caps.with(Capabilities::STREAMING);
        }
        if !self.tools.is_empty() {
            caps = caps.with(Capabilities::TOOLS);
        }
        for part in self.messages.iter().flat_map(|m| &m.content) {
            if let ContentPart::Image { source } = part {
                caps = caps.with(Capabilities::VISION);
                if matches!(source, ImageSource::Url(_)) {
                    caps = caps.with(Capabilities::IMAGE_URLS);
                }
            }
        }
        if !self.tools.is_empty()
            && self.tool_choice == Some(ToolChoice::None)
            && self.history_has_tool_calls()
        {
            caps = caps.with(Capabilities::TOOL_CHOICE_NONE);
        }
        if !self.tools.is_empty() && self.parallel_tool_calls == Some(false) {
            caps = caps.with(Capabilities::SERIAL_TOOL_CALLS);
        }
        if self.wants_json() {
            caps = caps.with(Capabilities::JSON_SCHEMA);
        }
        if self.seed.is_some() {
            caps = caps.with(Capabilities::SEED);
        }
        // An explicit 0 is the default, which every upstream honours by having no penalty.
        if nonzero(self.presence_penalty) || nonzero(self.frequency_penalty) {
            caps = caps.with(Capabilities::PENALTIES);
        }
        if self.top_k.is_some() {
            caps = caps.with(Capabilities::TOP_K);
        }
        if openai_only_params(&self.extra).next().is_some() {
            caps = caps.with(Capabilities::OPENAI_PARAMS);
        }
        if self.reasons() {
            caps = caps.with(Capabilities::REASONING);
            let forced = self.wants_json()
                || matches!(
                    self.tool_choice,
                    Some(ToolChoice::Required | ToolChoice::Function(_))
                );
            if forced {
                caps = caps.with(Capabilities::REASONING_WITH_FORCED_TOOL);
            }
            let sampled = self.temperature.is_some_and(|t| t != 1.0)
                || self.top_k.is_some()
                || self.top_p.is_some_and(|p| p < 0.95);
            if sampled {
                caps = caps.with(Capabilities::REASONING_WITH_SAMPLING);
            }
        }
        if self.n > 1 {
            caps = caps.with(Capabilities::MULTIPLE_CHOICES);
        }
        if self.logprobs || self.top_logprobs.is_some() {
            caps = caps.with(Capabilities::LOGPROBS);
        }
        if self
            .messages
            .last()
            .is_some_and(|m| m.role == Role::Assistant)
        {
            caps = caps.with(Capabilities::ASSISTANT_PREFILL);
        }
        caps
    }
}

/// OpenAI request fields that change how a request is handled, never what is answered (storage,
/// billing tier, cache routing, abuse tracking, latency prediction): another dialect's upstream
/// may go without them.
pub const OPENAI_HINTS: [&str; 5] = [
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "prediction",
];

/// The OpenAI parameters of `extra` another dialect cannot take (all but [`OPENAI_HINTS`]).
pub fn openai_only_params(extra: &Map<String, Value>) -> impl Iterator<Item = &str> {
    extra
        .keys()
        .map(String::as_str)
        .filter(|k| !OPENAI_HINTS.contains(k))
}

/// Whether a penalty does anything (absent and 0 do not).
fn nonzero(penalty: Option<f64>) -> bool {
    penalty.is_some_and(|p| p != 0.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentPart>,
    /// Calls the assistant made in this turn (assistant messages only).
    pub tool_calls: Vec<ToolCall>,
    /// The call this message answers (tool messages only).
    pub tool_call_id: Option<String>,
    /// OpenAI's participant name; for legacy `function` messages, the function's name.
    pub name: Option<String>,
}

impl Message {
    /// A message holding one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![ContentPart::Text(text.into())],
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A tool result answering `call_id`.
    pub fn tool_result(call_id: impl Into<String>, text: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(call_id.into()),
            ..Message::text(Role::Tool, text)
        }
    }

    /// The text parts joined, images skipped.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let ContentPart::Text(text) = part {
                out.push_str(text);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    Text(String),
    Image { source: ImageSource },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// A fetchable `http(s)` URL. `data:` URLs are always parsed into [`ImageSource::Base64`].
    Url(String),
    Base64 {
        media_type: String,
        data: String,
    },
}

/// A function call made by the assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text (normally an object), exactly as the model produced them.
    pub arguments: String,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
    /// OpenAI structured-outputs strictness; other dialects drop it.
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must not call a tool.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
    },
}

/// A complete (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Unix seconds. Dialects that do not report it decode as 0; the gateway fills in its clock.
    pub created: u64,
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    pub finish_reason: Option<FinishReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    /// OpenAI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

/// Token counts of one request.
///
/// `input_tokens` counts *every* prompt token, cached or not (OpenAI's and Gemini's convention);
/// the cache fields are subsets of it. Anthropic reports the three disjointly, and its codec adds
/// and subtracts accordingly, so a price computed from this struct is the same for every dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens read from a provider cache (billed cheaper).
    pub cache_read_tokens: u64,
    /// Prompt tokens written to a provider cache (Anthropic bills these dearer).
    pub cache_write_tokens: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// One event of a streamed answer, in dialect-neutral form.
///
/// Order within a stream: `Start` once first; then any interleaving of deltas; a `Finish` per
/// choice; at most one `Usage`; then `Done`. An `Error` ends the stream without `Done`. A stream
/// that ends (EOF) without `Done` or `Error` was cut off.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Start {
        id: String,
        model: String,
    },
    TextDelta {
        choice: u32,
        text: String,
    },
    /// A new tool call; `index` counts tool calls within the choice from 0.
    ToolCallStart {
        choice: u32,
        index: u32,
        id: String,
        name: String,
    },
    /// More argument JSON text for the tool call with this `index`.
    ToolCallDelta {
        choice: u32,
        index: u32,
        arguments: String,
    },
    Finish {
        choice: u32,
        reason: FinishReason,
    },
    Usage(Usage),
    /// An error reported in-band by the upstream. `kind` is an [`ErrorKind::as_str`] value.
    Error {
        message: String,
        kind: String,
    },
    Done,
}

/// How OpenAI returns embedding vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Little-endian `f32` bytes, base64-encoded (the OpenAI Python SDK's default).
    Base64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Vec<String>,
    pub dimensions: Option<u32>,
    pub encoding_format: EncodingFormat,
    /// Unknown OpenAI fields (`user`, ...), kept for OpenAI-dialect upstreams.
    pub extra: Map<String, Value>,
}

impl EmbeddingsRequest {
    pub fn required_capabilities(&self) -> Capabilities {
        Capabilities::EMBEDDINGS
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsResponse {
    pub model: String,
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    pub usage: Option<Usage>,
}

impl EmbeddingsResponse {
    /// Whether every value is a finite number. JSON has neither NaN nor infinity, so a vector
    /// holding one (base64 bytes that are no float, a number beyond `f32`'s range) cannot be
    /// written for a client: the decoders refuse such an answer as malformed.
    pub fn is_finite(&self) -> bool {
        self.vectors.iter().flatten().all(|v| v.is_finite())
    }
}

/// Why a decoder refuses an embeddings answer that is not [finite](EmbeddingsResponse::is_finite).
pub(crate) const NOT_FINITE: &str =
    "an embedding holds a value that is not a finite f32 (NaN, infinity, or out of range)";
