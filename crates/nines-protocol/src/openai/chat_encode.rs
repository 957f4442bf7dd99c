//! Encoding [`ChatRequest`] as an OpenAI chat-completions body (for OpenAI-family upstreams
//! serving a client of another dialect), without building an intermediate JSON tree.

use super::wire::OutMessage;
use crate::json;
use crate::unified::{ChatRequest, Message, Reasoning, ResponseFormat, Tool, ToolChoice};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

/// Encodes a unified request as an OpenAI chat-completions body for `model`.
///
/// `max_tokens` is sent as `max_tokens` (every OpenAI-compatible server understands it; OpenAI's
/// reasoning models want `max_completion_tokens`, which a same-dialect request keeps verbatim
/// because it never goes through this function). Fields in [`ChatRequest::extra`] are appended.
pub fn encode_chat_request(request: &ChatRequest, model: &str) -> Vec<u8> {
    json::to_vec(&OutRequest { request, model })
}

struct OutRequest<'a> {
    request: &'a ChatRequest,
    model: &'a str,
}

impl Serialize for OutRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("messages", &Messages(&r.messages))?;
        if !r.tools.is_empty() {
            map.serialize_entry("tools", &Tools(&r.tools))?;
        }
        if let Some(choice) = &r.tool_choice {
            map.serialize_entry("tool_choice", &OutToolChoice(choice))?;
        }
        if let Some(parallel) = r.parallel_tool_calls {
            map.serialize_entry("parallel_tool_calls", &parallel)?;
        }
        if let Some(max) = r.max_tokens {
            map.serialize_entry("max_tokens", &max)?;
        }
        if let Some(t) = r.temperature {
            map.serialize_entry("temperature", &t)?;
        }
        if let Some(p) = r.top_p {
            map.serialize_entry("top_p", &p)?;
        }
        if !r.stop.is_empty() {
            map.serialize_entry("stop", &r.stop)?;
        }
        if r.stream {
            map.serialize_entry("stream", &true)?;
        }
        if r.include_usage {
            map.serialize_entry(
                "stream_options",
                &IncludeUsage {
                    include_usage: true,
                },
            )?;
        }
        if r.n != 1 {
            map.serialize_entry("n", &r.n)?;
        }
        if let Some(format) = &r.response_format {
            map.serialize_entry("response_format", &OutResponseFormat(format))?;
        }
        if r.logprobs {
            map.serialize_entry("logprobs", &true)?;
        }
        if let Some(top) = r.top_logprobs {
            map.serialize_entry("top_logprobs", &top)?;
        }
        if let Some(user) = &r.user {
            map.serialize_entry("user", user)?;
        }
        if let Some(metadata) = &r.metadata {
            map.serialize_entry("metadata", metadata)?;
        }
        if let Some(seed) = r.seed {
            map.serialize_entry("seed", &seed)?;
        }
        if let Some(p) = r.presence_penalty {
            map.serialize_entry("presence_penalty", &p)?;
        }
        if let Some(p) = r.frequency_penalty {
            map.serialize_entry("frequency_penalty", &p)?;
        }
        // Not OpenAI's own parameter: routing sends it only where it is served (vLLM, Ollama,
        // …; `Capabilities::TOP_K`).
        if let Some(k) = r.top_k {
            map.serialize_entry("top_k", &k)?;
        }
        // An explicit "off" is the default for the other dialects' clients and is not sent:
        // OpenAI's "none" exists on few models.
        if let Some(effort) = r.reasoning.and_then(Reasoning::effort) {
            map.serialize_entry("reasoning_effort", effort.as_str())?;
        }
        for (key, value) in &r.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct IncludeUsage {
    include_usage: bool,
}

struct Messages<'a>(&'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(OutMessage))
    }
}

struct Tools<'a>(&'a [Tool]);

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|tool| OutTool {
            kind: "function",
            function: OutFunctionDef {
                name: &tool.name,
                description: tool.description.as_deref(),
                parameters: (!tool.parameters.is_null()).then_some(&tool.parameters),
                strict: tool.strict,
            },
        }))
    }
}

#[derive(Serialize)]
struct OutTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunctionDef<'a>,
}

#[derive(Serialize)]
struct OutFunctionDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

struct OutToolChoice<'a>(&'a ToolChoice);

impl Serialize for OutToolChoice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ToolChoice::Auto => serializer.serialize_str("auto"),
            ToolChoice::None => serializer.serialize_str("none"),
            ToolChoice::Required => serializer.serialize_str("required"),
            ToolChoice::Function(name) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", "function")?;
                map.serialize_entry("function", &NameOnly { name })?;
                map.end()
            }
        }
    }
}

#[derive(Serialize)]
struct NameOnly<'a> {
    name: &'a str,
}

struct OutResponseFormat<'a>(&'a ResponseFormat);

impl Serialize for OutResponseFormat<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        match self.0 {
            ResponseFormat::Text => map.serialize_entry("type", "text")?,
            ResponseFormat::JsonObject => map.serialize_entry("type", "json_object")?,
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                map.serialize_entry("type", "json_schema")?;
                map.serialize_entry(
                    "json_schema",
                    &OutJsonSchema {
                        name,
                        schema,
                        strict: *strict,
                    },
                )?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct OutJsonSchema<'a> {
    name: &'a str,
    schema: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}
