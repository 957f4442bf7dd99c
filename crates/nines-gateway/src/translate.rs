//! Translation glue for one request: the client's body in each upstream's dialect, and an
//! upstream's answer in the client's dialect. The wire formats themselves live in
//! `nines-protocol`; this module only picks which pure function applies.
//!
//! Same dialect on both sides (OpenAI SDK → OpenAI-compatible server, Anthropic SDK → Anthropic)
//! never translates: the client's bytes go through with only `model` spliced, so fields nines does
//! not know survive. Across dialects the body is parsed once into the unified model, lazily, on
//! the first deployment that needs it.
//!
//! A Responses request (`/v1/responses`) is native on a deployment with the `responses_api`
//! capability (its bytes go to the upstream's `/responses`), and translated for every other one:
//! into its chat dialect on the way up (an OpenAI-compatible server gets `/chat/completions`),
//! and its chat answer into a `response` object on the way back.

use crate::config::Deployment;
use crate::providers::{Endpoint, Outcome, Reply, ReplyBody, Transport};
use bytes::Bytes;
use nines_protocol::openai::{RequestError, splice_model};
use nines_protocol::unified::{
    Capabilities, ChatRequest, ChatResponse, ContentPart, DecodeError, Dialect, EmbeddingsRequest,
    EncodingFormat, Message, Role,
};
use nines_protocol::{anthropic, bedrock, gemini, openai, openai_responses, replicate};
use serde_json::{Map, Value};
use std::ops::Range;
use std::sync::OnceLock;

/// The parsed forms of the client's request.
enum Parsed {
    // Boxed: a chat request is several hundred bytes, an embeddings request a few dozen.
    Chat(Box<Result<ChatRequest, RequestError>>),
    Embeddings(Result<EmbeddingsRequest, RequestError>),
    /// A legacy completions request: only OpenAI-family upstreams serve it, as bytes.
    Untranslated,
}

/// One client request, ready to be encoded for any deployment.
pub struct RequestView {
    pub ingress: Dialect,
    pub endpoint: Endpoint,
    raw: Bytes,
    model_span: Range<usize>,
    parsed: OnceLock<Parsed>,
}

impl RequestView {
    pub fn new(ingress: Dialect, endpoint: Endpoint, raw: Bytes, model_span: Range<usize>) -> Self {
        RequestView {
            ingress,
            endpoint,
            raw,
            model_span,
            parsed: OnceLock::new(),
        }
    }

    /// The client's body as received, and where its `model` value sits.
    pub fn raw(&self) -> (Bytes, Range<usize>) {
        (self.raw.clone(), self.model_span.clone())
    }

    /// The same view with a request already parsed (the Anthropic ingress parses up front; a
    /// request it cannot translate is kept as that error, so only Anthropic deployments serve
    /// it).
    pub fn with_chat(self, chat: Result<ChatRequest, RequestError>) -> Self {
        let _ = self.parsed.set(Parsed::Chat(Box::new(chat)));
        self
    }

    /// What `deployment` will leave out of this request: the parameters it cannot take, when it
    /// is marked `drop_unsupported_params` (else nothing: routing skipped it instead).
    pub fn dropped_for(&self, deployment: &Deployment) -> Capabilities {
        // A Responses request served natively goes as the client's bytes: nothing is dropped.
        if !deployment.drop_unsupported_params
            || (self.endpoint == Endpoint::Responses && !self.needs_translation(deployment))
        {
            return Capabilities::NONE;
        }
        match self.chat() {
            Some(Ok(chat)) => chat
                .required_capabilities()
                .without(deployment.capabilities())
                .and(Capabilities::DROPPABLE),
            _ => Capabilities::NONE,
        }
    }

    /// The names of the parameters `deployment` leaves out (`x-nines-dropped-params`).
    pub fn dropped_params(&self, deployment: &Deployment) -> Vec<String> {
        let dropped = self.dropped_for(deployment);
        if dropped.is_empty() {
            // (before `chat()`, which would parse a pass-through request for nothing)
            return Vec::new();
        }
        match self.chat() {
            Some(Ok(chat)) => chat.without(dropped).1,
            _ => Vec::new(),
        }
    }

    /// Whether `deployment`'s answer is a JSON answer made through the forced tool
    /// (`unified::json_tool`), to be turned back into text.
    pub fn answers_through_json_tool(&self, deployment: &Deployment) -> bool {
        deployment.provider.dialect() == Dialect::Anthropic
            && self.needs_translation(deployment)
            && matches!(self.chat(), Some(Ok(chat)) if chat.wants_json())
            && !self
                .dropped_for(deployment)
                .contains(Capabilities::JSON_SCHEMA)
    }

    fn parsed(&self) -> &Parsed {
        self.parsed
            .get_or_init(|| match (self.endpoint, self.ingress) {
                (Endpoint::Embeddings, _) => {
                    Parsed::Embeddings(openai::parse_embeddings_request(&self.raw))
                }
                (Endpoint::Completions, _) => Parsed::Untranslated,
                (Endpoint::Responses, _) => {
                    Parsed::Chat(Box::new(openai_responses::parse_request(&self.raw)))
                }
                (Endpoint::ChatCompletions | Endpoint::CountTokens, Dialect::Anthropic) => {
                    Parsed::Chat(Box::new(anthropic::parse_request(&self.raw)))
                }
                (Endpoint::ChatCompletions | Endpoint::CountTokens, _) => {
                    Parsed::Chat(Box::new(openai::parse_chat_request(&self.raw)))
                }
            })
    }

    /// The unified chat request, parsed on first use.
    pub fn chat(&self) -> Option<Result<&ChatRequest, &RequestError>> {
        match self.parsed() {
            Parsed::Chat(r) => Some(r.as_ref().as_ref()),
            Parsed::Embeddings(_) | Parsed::Untranslated => None,
        }
    }

    /// Whether `deployment` needs the body translated.
    pub fn needs_translation(&self, deployment: &Deployment) -> bool {
        match self.endpoint {
            Endpoint::Responses => !deployment
                .capabilities()
                .contains(Capabilities::RESPONSES_API),
            _ => deployment.provider.dialect() != self.ingress,
        }
    }

    /// The endpoint to call on `deployment`: a Responses request it cannot serve natively goes
    /// to its chat endpoint, translated.
    pub fn endpoint_for(&self, deployment: &Deployment) -> Endpoint {
        match self.endpoint {
            Endpoint::Responses if self.needs_translation(deployment) => Endpoint::ChatCompletions,
            endpoint => endpoint,
        }
    }

    /// Whether the request can be expressed in `deployment`'s dialect at all.
    pub fn translatable_for(&self, deployment: &Deployment) -> Result<(), &RequestError> {
        if !self.needs_translation(deployment) {
            return Ok(());
        }
        match self.parsed() {
            Parsed::Chat(r) => r.as_ref().as_ref().map(|_| ()),
            Parsed::Embeddings(r) => r.as_ref().map(|_| ()),
            // Routing keeps only deployments of the client's dialect for these.
            Parsed::Untranslated => Ok(()),
        }
    }

    /// The body to send to `deployment`. Callers check [`Self::translatable_for`] first; a
    /// request that cannot be translated falls back to the client's bytes.
    pub fn body_for(&self, deployment: &Deployment) -> Bytes {
        let model = deployment.upstream_model.as_str();
        let dropped = self.dropped_for(deployment);
        if !self.needs_translation(deployment) && dropped.is_empty() {
            return Bytes::from(splice_model(&self.raw, self.model_span.clone(), model));
        }
        let dialect = deployment.provider.dialect();
        match self.parsed() {
            Parsed::Chat(parsed) => match parsed.as_ref() {
                Ok(chat) if !dropped.is_empty() => {
                    let (stripped, _) = chat.without(dropped);
                    encode_chat(&stripped, dialect, model, &self.raw)
                }
                Ok(chat) => encode_chat(chat, dialect, model, &self.raw),
                Err(_) => self.raw.clone(),
            },
            Parsed::Embeddings(Ok(e)) => Bytes::from(match dialect {
                Dialect::Gemini => gemini::batch_embed_contents_request(e, model),
                _ => openai::encode_embeddings_request(e, model),
            }),
            _ => self.raw.clone(),
        }
    }

    /// The request again, streamed, for a continuation of a broken stream on `deployment`:
    /// with `prefill`, the text the client already has as a final assistant message (which the
    /// deployment continues rather than answers); without, the original request afresh. Always
    /// a chat request (a Responses request's continuation too: it is decoded as chat chunks), for
    /// the deployment's chat endpoint.
    pub fn continuation_for(
        &self,
        deployment: &Deployment,
        prefill: Option<&str>,
    ) -> Result<Bytes, String> {
        let model = deployment.upstream_model.as_str();
        let dialect = deployment.provider.dialect();
        let dropped = self.dropped_for(deployment);
        if self.endpoint == Endpoint::ChatCompletions
            && self.ingress == Dialect::OpenAi
            && dialect == Dialect::OpenAi
            && dropped.is_empty()
        {
            // Untranslated, so fields the unified model does not know still reach the upstream.
            return match prefill {
                Some(partial) => {
                    continuation_body(&self.raw, self.model_span.clone(), model, partial)
                }
                None => Ok(Bytes::from(splice_model(
                    &self.raw,
                    self.model_span.clone(),
                    model,
                ))),
            };
        }
        let Some(Ok(chat)) = self.chat() else {
            return Err("the request cannot be translated for a continuation".into());
        };
        let (mut chat, _) = chat.without(dropped);
        chat.stream = true;
        if let Some(partial) = prefill {
            prefill_with(&mut chat.messages, partial);
        }
        let body = match dialect {
            Dialect::OpenAi => {
                let body = openai::encode_chat_request(&chat, model);
                return match prefill {
                    Some(_) => with_continue_flags(&body),
                    None => Ok(Bytes::from(body)),
                };
            }
            Dialect::Anthropic => {
                anthropic::encode_request(&chat, model, anthropic::DEFAULT_MAX_TOKENS)
            }
            Dialect::Gemini => gemini::encode_request(&chat),
            Dialect::Bedrock => bedrock::encode_request(&chat),
            other => return Err(format!("{} streams are not continued", other.as_str())),
        };
        Ok(Bytes::from(body))
    }

    /// How the client wants embeddings encoded (the OpenAI SDK asks for base64 by default).
    fn encoding_format(&self) -> EncodingFormat {
        match self.parsed() {
            Parsed::Embeddings(Ok(e)) => e.encoding_format,
            _ => EncodingFormat::Float,
        }
    }

    /// An upstream's outcome as the client needs it: a whole answer from another dialect is
    /// translated into the client's. An answer whose body is not what its dialect promises is no
    /// answer: it becomes a malformed outcome, classified before the commit point, so the
    /// attempt loop fails over as it does for any garbled answer.
    pub fn accept(&self, deployment: &Deployment, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Reply(Reply {
                status,
                headers,
                body: ReplyBody::Full(bytes),
                ttfb,
            }) if self.needs_translation(deployment) => {
                let upstream = deployment.provider.dialect();
                let json_tool = self.answers_through_json_tool(deployment);
                match self.translate_full(upstream, &bytes, &deployment.upstream_model, json_tool) {
                    Ok(body) => Outcome::Reply(Reply {
                        status,
                        headers,
                        body: ReplyBody::Full(body),
                        ttfb,
                    }),
                    Err(e) => Outcome::Transport(Transport::Malformed(format!(
                        "not a {} answer: {e}",
                        upstream.as_str()
                    ))),
                }
            }
            other => other,
        }
    }

    /// An upstream's complete answer in the client's dialect. `Err` means the upstream's body is
    /// not what its dialect promises (a malformed answer).
    /// `json_tool`: the answer is a JSON answer made through the forced tool, returned as text.
    pub fn translate_full(
        &self,
        upstream: Dialect,
        body: &[u8],
        served_model: &str,
        json_tool: bool,
    ) -> Result<Bytes, DecodeError> {
        if upstream == self.ingress && self.endpoint != Endpoint::Responses {
            return Ok(Bytes::copy_from_slice(body));
        }
        if self.endpoint == Endpoint::Embeddings {
            let mut response = match upstream {
                Dialect::Gemini => gemini::decode_embeddings_response(body)?,
                _ => openai::decode_embeddings_response(body)?,
            };
            if response.model.is_empty() {
                response.model = served_model.to_owned();
            }
            return Ok(Bytes::from(openai::encode_embeddings_response(
                &response,
                self.encoding_format(),
            )));
        }
        let mut response: ChatResponse = match upstream {
            Dialect::OpenAi => openai::decode_chat_response(body)?,
            Dialect::Anthropic => anthropic::decode_response(body)?,
            Dialect::Gemini => gemini::decode_response(body)?,
            Dialect::Bedrock => bedrock::decode_response(body)?,
            Dialect::Replicate => match replicate::decode_prediction(body)?.outcome() {
                replicate::PredictionOutcome::Succeeded(r) => r,
                other => {
                    return Err(DecodeError::new(
                        "replicate",
                        "prediction",
                        format!("not a finished prediction: {other:?}"),
                    ));
                }
            },
            Dialect::Runway => {
                return Err(DecodeError::new(
                    "runway",
                    "chat",
                    "runway serves video jobs only",
                ));
            }
        };
        if json_tool {
            nines_protocol::unified::json_tool::unwrap_response(&mut response);
        }
        if response.model.is_empty() {
            response.model = served_model.to_owned();
        }
        if self.endpoint == Endpoint::Responses {
            response.id = new_response_id();
        }
        if response.created == 0 {
            response.created = crate::clock::unix_secs();
        }
        // Converse names no answer: the client's dialect still wants an id.
        if response.id.is_empty() {
            response.id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
        }
        Ok(Bytes::from(match (self.endpoint, self.ingress) {
            (Endpoint::Responses, _) => openai_responses::encode_response(&response),
            (_, Dialect::Anthropic) => anthropic::encode_response(&response),
            _ => openai::encode_chat_response(&response),
        }))
    }
}

/// A unified chat request as `dialect`'s body for `model` (Runway, which has no chat, gets the
/// client's bytes and refuses them itself).
fn encode_chat(chat: &ChatRequest, dialect: Dialect, model: &str, raw: &Bytes) -> Bytes {
    Bytes::from(match dialect {
        Dialect::OpenAi => openai::encode_chat_request(chat, model),
        Dialect::Anthropic => anthropic::encode_request(chat, model, anthropic::DEFAULT_MAX_TOKENS),
        Dialect::Gemini => gemini::encode_request(chat),
        Dialect::Bedrock => bedrock::encode_request(chat),
        Dialect::Replicate => replicate::encode_create_request(chat),
        Dialect::Runway => raw.to_vec(),
    })
}

/// A fresh id for a translated Responses answer. Not derived from the upstream's id: ids from
/// different providers (or a provider's restarts) may meet, and a kept conversation is found by
/// its response's id (`previous_response_id`).
pub fn new_response_id() -> String {
    format!("resp_{}", uuid::Uuid::new_v4().simple())
}

/// The client's request as a continuation of `partial` on a deployment serving `upstream_model`:
/// `model` spliced, `partial` appended as the final assistant message (or to it, when the client
/// already ended with one), vLLM's continuation flags set, `stream: true`.
pub fn continuation_body(
    body: &[u8],
    model_span: Range<usize>,
    upstream_model: &str,
    partial: &str,
) -> Result<Bytes, String> {
    let spliced = nines_protocol::openai::splice_model(body, model_span, upstream_model);
    let mut request: Map<String, Value> = serde_json::from_slice(&spliced)
        .map_err(|e| format!("the request cannot be rebuilt as a continuation: {e}"))?;
    let messages = request
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .ok_or("the request has no messages to continue")?;
    let prefilled = messages.last_mut().and_then(|last| {
        (last.get("role").and_then(Value::as_str) == Some("assistant"))
            .then(|| last.get_mut("content"))
            .flatten()
            .and_then(|content| match content {
                Value::String(text) => Some(text),
                _ => None,
            })
    });
    match prefilled {
        Some(text) => text.push_str(partial),
        None => messages.push(serde_json::json!({"role": "assistant", "content": partial})),
    }
    request.insert("continue_final_message".into(), Value::Bool(true));
    request.insert("add_generation_prompt".into(), Value::Bool(false));
    request.insert("stream".into(), Value::Bool(true));
    serde_json::to_vec(&request)
        .map(Bytes::from)
        .map_err(|e| format!("the request cannot be rebuilt as a continuation: {e}"))
}

/// `partial` as the final assistant message: appended to the client's own final assistant text,
/// or as a new message.
fn prefill_with(messages: &mut Vec<Message>, partial: &str) {
    if let Some(last) = messages.last_mut()
        && last.role == Role::Assistant
        && last.tool_calls.is_empty()
        && let Some(ContentPart::Text(text)) = last.content.last_mut()
    {
        text.push_str(partial);
        return;
    }
    messages.push(Message::text(Role::Assistant, partial));
}

/// An OpenAI request body with vLLM's continuation flags set.
fn with_continue_flags(body: &[u8]) -> Result<Bytes, String> {
    let mut request: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the request cannot be rebuilt as a continuation: {e}"))?;
    request.insert("continue_final_message".into(), Value::Bool(true));
    request.insert("add_generation_prompt".into(), Value::Bool(false));
    serde_json::to_vec(&request)
        .map(Bytes::from)
        .map_err(|e| format!("the request cannot be rebuilt as a continuation: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_continuation_body_prefills_the_partial_answer() {
        let body = br#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.5,"vendor_field":{"a":1}}"#;
        let span = 9..15;
        assert_eq!(&body[span.clone()], br#""chat""#);
        let out = continuation_body(body, span.clone(), "up-1", "Hello fr").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "up-1");
        assert_eq!(
            v["messages"],
            json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello fr"}])
        );
        assert_eq!(v["continue_final_message"], true);
        assert_eq!(v["add_generation_prompt"], false);
        assert_eq!(v["stream"], true);
        assert_eq!(v["temperature"], 0.5);
        assert_eq!(v["vendor_field"], json!({"a": 1}), "unknown fields survive");

        // A client's own prefill is extended, not followed by a second assistant message.
        let body = br#"{"model":"chat","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Sure: "}]}"#;
        let out = continuation_body(body, span, "up-1", "one").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "content": "Sure: one"})
        );
        assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    }
}
