//! OpenAI message pieces shared by requests and responses: content (a string or a list of
//! parts), tool calls and usage, in both directions.

use super::RequestError;
use crate::json;
use crate::unified::{ContentPart, ImageSource, Message, Role, ToolCall, Usage};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// `content`: a string or an array of parts (`null` is handled by the surrounding `Option`).
#[derive(Debug)]
pub(super) enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

impl<'de> Deserialize<'de> for WireContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = WireContent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E>(self, v: &str) -> Result<WireContent, E> {
                Ok(WireContent::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<WireContent, E> {
                Ok(WireContent::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireContent, A::Error> {
                let mut parts = Vec::new();
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(WireContent::Parts(parts))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WirePart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image_url: Option<WireImageUrl>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireImageUrl {
    Object { url: String },
    Bare(String),
}

impl WireContent {
    /// The unified parts. An empty string is no parts at all.
    pub(super) fn into_parts(self) -> Result<Vec<ContentPart>, RequestError> {
        match self {
            WireContent::Text(text) if text.is_empty() => Ok(Vec::new()),
            WireContent::Text(text) => Ok(vec![ContentPart::Text(text)]),
            WireContent::Parts(parts) => parts.into_iter().map(WirePart::into_part).collect(),
        }
    }
}

impl WirePart {
    fn into_part(self) -> Result<ContentPart, RequestError> {
        match self.kind.as_str() {
            "text" | "input_text" | "output_text" => {
                Ok(ContentPart::Text(self.text.unwrap_or_default()))
            }
            "refusal" => Ok(ContentPart::Text(self.refusal.unwrap_or_default())),
            "image_url" => {
                let url = match self.image_url {
                    Some(WireImageUrl::Object { url } | WireImageUrl::Bare(url)) => url,
                    None => {
                        return Err(RequestError::Invalid {
                            param: Some("messages"),
                            message: "an image_url content part needs an 'image_url'".into(),
                        });
                    }
                };
                Ok(ContentPart::Image {
                    source: image_source(url),
                })
            }
            other => Err(RequestError::Unsupported(format!(
                "content parts of type '{other}' cannot be translated to another dialect"
            ))),
        }
    }
}

/// A URL as an image source: `data:` URLs are split into media type and base64 data.
pub(super) fn image_source(url: String) -> ImageSource {
    match json::parse_data_url(&url) {
        Some((media_type, data)) => ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        },
        None => ImageSource::Url(url),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireToolCall {
    #[serde(default)]
    id: String,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

impl WireToolCall {
    pub(super) fn into_unified(self) -> ToolCall {
        ToolCall {
            id: self.id,
            name: self.function.name,
            arguments: self.function.arguments,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, Copy, PartialEq)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) prompt_tokens: u64,
    #[serde(default)]
    pub(super) completion_tokens: u64,
    #[serde(default)]
    pub(super) total_tokens: u64,
    #[serde(default)]
    pub(super) prompt_tokens_details: Option<WirePromptDetails>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, Copy, PartialEq)]
pub(super) struct WirePromptDetails {
    #[serde(default)]
    pub(super) cached_tokens: Option<u64>,
}

impl WireUsage {
    pub(super) fn into_unified(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cache_read_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
        }
    }

    pub(super) fn from_unified(usage: &Usage) -> Self {
        WireUsage {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: usage.total_tokens(),
            prompt_tokens_details: Some(WirePromptDetails {
                cached_tokens: Some(usage.cache_read_tokens),
            }),
        }
    }
}

/// Serialises a unified message as an OpenAI chat message.
pub(super) struct OutMessage<'a>(pub(super) &'a Message);

impl Serialize for OutMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = serializer.serialize_map(None)?;
        // A tool result without a call id can only be a legacy `function` message.
        let role = match m.role {
            Role::Tool if m.tool_call_id.is_none() => "function",
            role => role.as_str(),
        };
        map.serialize_entry("role", role)?;
        map.serialize_entry("content", &OutContent(m))?;
        if let Some(name) = &m.name {
            map.serialize_entry("name", name)?;
        }
        if !m.tool_calls.is_empty() {
            map.serialize_entry("tool_calls", &OutToolCalls(&m.tool_calls))?;
        }
        if let Some(id) = &m.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        map.end()
    }
}

/// `content`: `null` for an empty assistant turn, a string for one text part, parts otherwise.
pub(super) struct OutContent<'a>(pub(super) &'a Message);

impl Serialize for OutContent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        match m.content.as_slice() {
            [] if m.role == Role::Assistant => serializer.serialize_none(),
            [] => serializer.serialize_str(""),
            [ContentPart::Text(text)] => serializer.serialize_str(text),
            parts => serializer.collect_seq(parts.iter().map(OutPart)),
        }
    }
}

struct OutPart<'a>(&'a ContentPart);

impl Serialize for OutPart<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        match self.0 {
            ContentPart::Text(text) => {
                map.serialize_entry("type", "text")?;
                map.serialize_entry("text", text)?;
            }
            ContentPart::Image { source } => {
                map.serialize_entry("type", "image_url")?;
                let url = match source {
                    ImageSource::Url(url) => url.clone(),
                    ImageSource::Base64 { media_type, data } => json::data_url(media_type, data),
                };
                map.serialize_entry("image_url", &OutUrl { url: &url })?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct OutUrl<'a> {
    url: &'a str,
}

pub(super) struct OutToolCalls<'a>(pub(super) &'a [ToolCall]);

impl Serialize for OutToolCalls<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|call| OutToolCall {
            id: &call.id,
            kind: "function",
            function: OutFunction {
                name: &call.name,
                arguments: &call.arguments,
            },
        }))
    }
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}
