//! [`ChatRequest`] → Gemini `generateContent` body.
//!
//! Turns of one role are merged (Gemini wants `user` and `model` to alternate, and all results of
//! one multi-call turn in one `user` content). Tool results are `functionResponse` parts whose
//! `response` must be an object: a result that is a JSON object is sent as is, anything else as
//! `{"result": …}`. A call id carrying a thought signature (see [`super::signature_of`]) gives
//! its `functionCall` part back its `thoughtSignature`. A reasoning effort or budget is
//! `thinkingConfig.thinkingBudget` (`unified::reasoning`'s table), `top_k` is `topK`. `user` and
//! `metadata` are hints with no Gemini equivalent and are not sent; `parallel_tool_calls: false`
//! and `extra` only reach this encoder on a request routing allowed here (`true` is Gemini's
//! own behaviour).

use crate::json::{self, RawArgs};
use crate::unified::{
    ChatRequest, ContentPart, ImageSource, Message, Reasoning, ResponseFormat, Role, ToolChoice,
};
use serde::Serialize;
use serde_json::Value;

/// Encodes a unified request as a `generateContent` / `streamGenerateContent` body. The model is
/// not part of the body; see [`super::generate_path`].
pub fn encode_request(request: &ChatRequest) -> Vec<u8> {
    let system: Vec<OutPart<'_>> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            ContentPart::Text(text) if !text.is_empty() => Some(OutPart::Text(text)),
            _ => None,
        })
        .collect();
    let tools = if request.tools.is_empty() {
        Vec::new()
    } else {
        vec![OutTools {
            function_declarations: request
                .tools
                .iter()
                .map(|t| OutFunctionDeclaration {
                    name: &t.name,
                    description: t.description.as_deref(),
                    parameters_json_schema: (!t.parameters.is_null()).then_some(&t.parameters),
                })
                .collect(),
        }]
    };
    let tool_config = match (&request.tool_choice, request.tools.is_empty()) {
        (Some(choice), false) => Some(OutToolConfig {
            function_calling_config: match choice {
                ToolChoice::Auto => OutCallingConfig::mode("AUTO"),
                ToolChoice::None => OutCallingConfig::mode("NONE"),
                ToolChoice::Required => OutCallingConfig::mode("ANY"),
                ToolChoice::Function(name) => OutCallingConfig {
                    mode: "ANY",
                    allowed_function_names: Some([name.as_str()]),
                },
            },
        }),
        _ => None,
    };
    let out = OutRequest {
        contents: contents(&request.messages),
        system_instruction: (!system.is_empty()).then_some(OutSystem { parts: system }),
        tools,
        tool_config,
        generation_config: generation_config(request),
    };
    json::to_vec(&out)
}

fn contents(messages: &[Message]) -> Vec<OutContent<'_>> {
    let mut out: Vec<OutContent<'_>> = Vec::with_capacity(messages.len());
    for (position, m) in messages.iter().enumerate() {
        let (role, parts): (&str, Vec<OutPart<'_>>) = match m.role {
            Role::System => continue,
            Role::User => ("user", m.content.iter().filter_map(out_part).collect()),
            Role::Assistant => {
                let mut parts: Vec<OutPart<'_>> = m.content.iter().filter_map(out_part).collect();
                parts.extend(m.tool_calls.iter().map(|call| {
                    let signature = super::signature_of(&call.id);
                    let call = OutFunctionCall {
                        name: &call.name,
                        args: RawArgs::new(&call.arguments),
                    };
                    OutPart::FunctionCall(call, signature)
                }));
                ("model", parts)
            }
            Role::Tool => {
                let name = function_name(&messages[..position], m);
                let text = m.joined_text();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(object @ Value::Object(_)) => object,
                    _ => serde_json::json!({ "result": text }),
                };
                let part = OutPart::FunctionResponse(OutFunctionResponse { name, response });
                ("user", vec![part])
            }
        };
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => out.push(OutContent { role, parts }),
        }
    }
    out
}

/// The function a tool result answers: the latest earlier call with its id, else the message's
/// own `name`, else the id itself (so the request is still well-formed).
fn function_name<'a>(earlier: &'a [Message], result: &'a Message) -> &'a str {
    let by_id = result.tool_call_id.as_deref().and_then(|id| {
        earlier
            .iter()
            .rev()
            .flat_map(|m| m.tool_calls.iter().rev())
            .find(|call| call.id == id)
            .map(|call| call.name.as_str())
    });
    by_id
        .or(result.name.as_deref())
        .or(result.tool_call_id.as_deref())
        .unwrap_or_default()
}

fn out_part(part: &ContentPart) -> Option<OutPart<'_>> {
    match part {
        ContentPart::Text(text) if text.is_empty() => None,
        ContentPart::Text(text) => Some(OutPart::Text(text)),
        ContentPart::Image {
            source: ImageSource::Base64 { media_type, data },
        } => Some(OutPart::InlineData(OutBlob {
            mime_type: media_type,
            data,
        })),
        ContentPart::Image {
            source: ImageSource::Url(url),
        } => Some(OutPart::FileData(OutFileData {
            mime_type: json::media_type_from_url(url),
            file_uri: url,
        })),
    }
}

fn generation_config(r: &ChatRequest) -> Option<OutGenerationConfig<'_>> {
    let (mime, schema) = match &r.response_format {
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => (Some("application/json"), Some(schema)),
        Some(ResponseFormat::Text) | None => (None, None),
    };
    let config = OutGenerationConfig {
        max_output_tokens: r.max_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        stop_sequences: &r.stop,
        candidate_count: (r.n > 1).then_some(r.n),
        response_mime_type: mime,
        response_json_schema: schema,
        seed: r.seed,
        presence_penalty: r.presence_penalty,
        frequency_penalty: r.frequency_penalty,
        response_logprobs: r.logprobs.then_some(true),
        logprobs: r.top_logprobs,
        top_k: r.top_k,
        // An explicit "off" is the model's default and not sent: Gemini's Pro models refuse a
        // budget of 0.
        thinking_config: r
            .reasoning
            .and_then(Reasoning::budget_tokens)
            .map(|thinking_budget| OutThinkingConfig { thinking_budget }),
    };
    let empty = config.max_output_tokens.is_none()
        && config.temperature.is_none()
        && config.top_p.is_none()
        && config.stop_sequences.is_empty()
        && config.candidate_count.is_none()
        && config.response_mime_type.is_none()
        && config.seed.is_none()
        && config.presence_penalty.is_none()
        && config.frequency_penalty.is_none()
        && config.response_logprobs.is_none()
        && config.logprobs.is_none()
        && config.top_k.is_none()
        && config.thinking_config.is_none();
    (!empty).then_some(config)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutRequest<'a> {
    contents: Vec<OutContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<OutSystem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTools<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<OutToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<OutGenerationConfig<'a>>,
}

#[derive(Serialize)]
struct OutContent<'a> {
    role: &'static str,
    parts: Vec<OutPart<'a>>,
}

#[derive(Serialize)]
struct OutSystem<'a> {
    parts: Vec<OutPart<'a>>,
}

/// One part: an object with exactly one of these keys (plus the call's `thoughtSignature`).
enum OutPart<'a> {
    Text(&'a str),
    InlineData(OutBlob<'a>),
    FileData(OutFileData<'a>),
    FunctionCall(OutFunctionCall<'a>, Option<&'a str>),
    FunctionResponse(OutFunctionResponse<'a>),
}

impl Serialize for OutPart<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            OutPart::Text(text) => map.serialize_entry("text", text)?,
            OutPart::InlineData(blob) => map.serialize_entry("inlineData", blob)?,
            OutPart::FileData(file) => map.serialize_entry("fileData", file)?,
            OutPart::FunctionCall(call, signature) => {
                map.serialize_entry("functionCall", call)?;
                if let Some(signature) = signature {
                    map.serialize_entry("thoughtSignature", signature)?;
                }
            }
            OutPart::FunctionResponse(response) => {
                map.serialize_entry("functionResponse", response)?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutBlob<'a> {
    mime_type: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutFileData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    mime_type: Option<&'static str>,
    file_uri: &'a str,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    name: &'a str,
    args: RawArgs<'a>,
}

#[derive(Serialize)]
struct OutFunctionResponse<'a> {
    name: &'a str,
    response: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutTools<'a> {
    function_declarations: Vec<OutFunctionDeclaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutFunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'a Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutToolConfig<'a> {
    function_calling_config: OutCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

impl OutCallingConfig<'_> {
    fn mode(mode: &'static str) -> Self {
        OutCallingConfig {
            mode,
            allowed_function_names: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutGenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<OutThinkingConfig>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutThinkingConfig {
    thinking_budget: u32,
}
