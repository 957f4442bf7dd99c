//! Prompt-size estimates for context-window fit and price estimates.
//!
//! Counting is only done when it can change a decision: a prompt whose upper bound (one token per
//! two bytes of the `messages` JSON, which no tokenizer in use exceeds on natural text, plus output)
//! fits the smallest window in the plan is never counted. Otherwise the `messages` JSON is counted
//! with OpenAI's o200k BPE (`o200k.rs`: a 2,000-token prompt in tens of µs) — exact
//! for OpenAI-family models up to the few tokens of JSON punctuation it includes — and for other
//! providers' tokenizers the count is inflated by a calibrated 25% margin, so a prompt is never
//! sent where it would not fit.

/// o200k tokens in a text (the table is built at the first call: tens of milliseconds).
pub fn count_o200k(text: &[u8]) -> usize {
    super::o200k::shared().count(text)
}

/// The response header that marks a token count the gateway made itself (`count_tokens` with no
/// Anthropic deployment to ask), and its value: an estimate, and with which tokenizer.
pub const ESTIMATE_HEADER: &str = "x-nines-token-count";
pub const ESTIMATE_VALUE: &str = "estimate; tokenizer=o200k";

/// Tokens every message adds besides its content (role and separators, OpenAI's chat format).
const PER_MESSAGE: u64 = 3;
/// Tokens assumed for one image: the most Anthropic charges for one (about 1.15 megapixels at
/// 750 pixels a token); its size is not known without decoding it.
const PER_IMAGE: u64 = 1_600;

/// The prompt tokens of a chat request, estimated with o200k: every text part, tool call and
/// tool definition counted, plus a fixed overhead per message and per image. Exact for OpenAI
/// models up to the format's few tokens; other tokenizers differ by some percent.
pub fn count_chat(chat: &nines_protocol::unified::ChatRequest) -> u64 {
    use nines_protocol::unified::ContentPart;
    let count = |text: &str| count_o200k(text.as_bytes()) as u64;
    let mut tokens = PER_MESSAGE;
    for message in &chat.messages {
        tokens += PER_MESSAGE;
        for part in &message.content {
            tokens += match part {
                ContentPart::Text(text) => count(text),
                ContentPart::Image { .. } => PER_IMAGE,
            };
        }
        for call in &message.tool_calls {
            tokens += count(&call.name) + count(&call.arguments);
        }
    }
    for tool in &chat.tools {
        tokens += count(&tool.name)
            + tool.description.as_deref().map_or(0, count)
            + count(&tool.parameters.to_string());
    }
    tokens
}

/// Tokens other tokenizers may produce beyond o200k's count, as a factor.
const OTHER_TOKENIZER_MARGIN: f64 = 1.25;

/// What routing knows of a request's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Prompt tokens as an OpenAI tokenizer counts them (an upper bound when not counted).
    pub prompt_tokens: u64,
    /// The most output tokens the request may produce (`max_tokens`, or a default).
    pub output_tokens: u64,
    /// Whether `prompt_tokens` was counted rather than bounded.
    pub counted: bool,
}

/// Output assumed for pricing when the client sets no `max_tokens`.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 256;

impl Estimate {
    /// Estimates from the raw `messages` JSON. `smallest_window` is the smallest context window
    /// among the candidates: if even the upper bound fits it, nothing is counted.
    pub fn of(
        messages_json: &[u8],
        max_output: Option<u64>,
        smallest_window: Option<u64>,
    ) -> Estimate {
        let output_tokens = max_output.unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
        let upper = (messages_json.len() as u64).div_ceil(2);
        let must_count = smallest_window.is_some_and(|w| upper + output_tokens > w);
        if !must_count {
            return Estimate {
                prompt_tokens: upper,
                output_tokens,
                counted: false,
            };
        }
        let counted = count_o200k(messages_json) as u64;
        Estimate {
            prompt_tokens: counted,
            output_tokens,
            counted: true,
        }
    }

    /// Tokens the request needs at a deployment, given whether it uses an OpenAI tokenizer.
    pub fn needed(&self, openai_tokenizer: bool) -> u64 {
        let prompt = if self.counted && !openai_tokenizer {
            (self.prompt_tokens as f64 * OTHER_TOKENIZER_MARGIN).ceil() as u64
        } else {
            self.prompt_tokens
        };
        prompt + self.output_tokens
    }

    /// A typical-size estimate for pricing (bytes/4 when not counted).
    pub fn typical_prompt(&self) -> u64 {
        if self.counted {
            self.prompt_tokens
        } else {
            self.prompt_tokens / 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_prompts_are_not_counted() {
        let e = Estimate::of(br#"[{"role":"user","content":"hi"}]"#, Some(10), Some(8000));
        assert!(!e.counted);
        assert_eq!(e.output_tokens, 10);
    }

    #[test]
    fn large_prompts_are_counted_with_the_real_tokenizer() {
        let text = "hello world ".repeat(3000);
        let json = format!(r#"[{{"role":"user","content":"{text}"}}]"#);
        let e = Estimate::of(json.as_bytes(), Some(100), Some(8000));
        assert!(e.counted);
        // "hello world " is 2 tokens in o200k: ~6000 tokens plus JSON punctuation.
        assert!(
            (6000..6100).contains(&e.prompt_tokens),
            "{}",
            e.prompt_tokens
        );
        assert_eq!(e.needed(true), e.prompt_tokens + 100);
        assert!(e.needed(false) > e.needed(true));
    }
}
