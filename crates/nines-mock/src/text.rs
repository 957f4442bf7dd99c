//! Deterministic content: reply words, token estimates and embedding vectors.
//!
//! Everything here is a pure function of its input, so tests (and benchmarks comparing direct
//! and proxied runs) can predict every byte the mock sends.

use serde_json::Value;

/// How much of the user's message the reply echoes.
const ECHO_CHARS: usize = 60;

/// Default embedding size: small, so test fixtures stay readable.
pub(crate) const DEFAULT_DIMENSIONS: usize = 8;
/// Largest embedding size the mock produces.
pub(crate) const MAX_DIMENSIONS: usize = 65_536;

/// The arguments of every mocked tool call, as JSON text.
pub(crate) const TOOL_ARGUMENTS: &str = r#"{"mock":true}"#;

/// Why a text reply ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The whole reply was produced.
    Complete,
    /// Cut at the token limit.
    Length,
    /// Cut just before this stop sequence.
    StopSequence(String),
}

/// The reply to a conversation whose last user message is `last_user`, as words.
pub(crate) fn reply_words(name: &str, last_user: &str) -> Vec<String> {
    let echoed: String = last_user.chars().take(ECHO_CHARS).collect();
    format!("Hello from {name}! You said: {echoed}")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `words` repeated until there are one more than `max` (at most 1 Mi words), so that the limit
/// cuts the reply as it cuts a model that writes on (the capacity model's `fill_max_tokens`).
pub(crate) fn fill_words(words: &[String], max: u64) -> Vec<String> {
    let wanted = usize::try_from(max.saturating_add(1))
        .unwrap_or(usize::MAX)
        .min(1 << 20);
    if words.is_empty() || words.len() >= wanted {
        return words.to_vec();
    }
    words.iter().cycle().take(wanted).cloned().collect()
}

/// `words` as generation would end them: cut before the earliest of `stops` that occurs in the
/// text, or at `max` tokens (one per word), whichever comes first.
pub(crate) fn end_reply(
    words: Vec<String>,
    stops: &[String],
    max: Option<u64>,
) -> (Vec<String>, Ending) {
    let max = max.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let text = words.join(" ");
    let earliest = stops
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| text.find(stop.as_str()).map(|at| (at, stop)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, stop)) = earliest {
        let cut: Vec<String> = text[..at].split_whitespace().map(str::to_owned).collect();
        if cut.len() <= max {
            return (cut, Ending::StopSequence(stop.clone()));
        }
    }
    if words.len() > max {
        let mut words = words;
        words.truncate(max);
        return (words, Ending::Length);
    }
    (words, Ending::Complete)
}

/// The stream pieces of `words`: each word with a trailing space but the last, so the pieces
/// concatenate to the text.
pub(crate) fn pieces(words: &[String]) -> Vec<String> {
    let last = words.len().saturating_sub(1);
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == last {
                w.clone()
            } else {
                format!("{w} ")
            }
        })
        .collect()
}

/// The stream pieces of any `text`, one word per piece with the whitespace after it attached
/// (whitespace before the first word stays with it), so the pieces concatenate to `text`
/// exactly. For text made of words joined by single spaces this is [`pieces`].
pub(crate) fn text_pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    let mut after_word_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            after_word_space |= in_word;
            in_word = false;
        } else {
            if after_word_space {
                out.push(text[start..i].to_owned());
                start = i;
                after_word_space = false;
            }
            in_word = true;
        }
    }
    if start < text.len() {
        out.push(text[start..].to_owned());
    }
    out
}

/// The text of the last user message, which every dialect's reply echoes (OpenAI and Anthropic
/// messages share the `role` / `content` shape).
pub(crate) fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default()
}

/// The text of a message's `content`: a string, or the text parts of an array (other parts,
/// such as images, carry no text and are skipped).
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The usual rough estimate: a token is about four characters.
pub(crate) fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// A deterministic unit vector for `text`: each component comes from a hash of (text, index),
/// then the vector is normalised, so equal inputs embed equally and cosine similarity works.
pub(crate) fn embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let base = fnv1a(text.as_bytes());
    let raw: Vec<f64> = (0..dimensions as u64)
        .map(|i| {
            let h = splitmix64(base ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // Top 53 bits → [0, 1), then spread to [-1, 1).
            (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    raw.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Standard base64 (with padding) of the little-endian f32 bytes, as OpenAI's
/// `encoding_format: "base64"` returns it.
pub(crate) fn base64_f32le(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_echoes_at_most_sixty_chars() {
        let long = "x".repeat(100);
        let words = reply_words("m1", &long);
        assert_eq!(words[..5], ["Hello", "from", "m1!", "You", "said:"]);
        assert_eq!(words[5].len(), 60);
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn replies_end_at_the_first_stop_or_the_limit() {
        let reply = words("Hello from m1! You said: hi");
        let stops = ["said".to_owned(), "m1".to_owned()];
        let (cut, ending) = end_reply(reply.clone(), &stops, None);
        assert_eq!(cut, words("Hello from"));
        assert_eq!(ending, Ending::StopSequence("m1".into()));
        // The limit comes first: two words are produced before the stop sequence.
        let (cut, ending) = end_reply(reply.clone(), &stops, Some(1));
        assert_eq!((cut, ending), (words("Hello"), Ending::Length));
        let (cut, ending) = end_reply(reply.clone(), &[String::new()], Some(100));
        assert_eq!((cut, ending), (reply.clone(), Ending::Complete));
        assert_eq!(pieces(&words("a b c")), ["a ", "b ", "c"]);
    }

    #[test]
    fn text_pieces_concatenate_to_the_text() {
        assert_eq!(text_pieces("a b c"), pieces(&words("a b c")));
        assert_eq!(text_pieces(" from m1! x"), [" from ", "m1! ", "x"]);
        assert_eq!(text_pieces("om  m1! "), ["om  ", "m1! "]);
        assert_eq!(text_pieces(" "), [" "]);
        assert!(text_pieces("").is_empty());
        for text in ["Hello from m1! You said: hi", "  x\ty  ", "é à"] {
            assert_eq!(text_pieces(text).concat(), text);
        }
    }

    #[test]
    fn content_text_keeps_only_text_parts() {
        let content = serde_json::json!([
            {"type": "text", "text": "hi"},
            {"type": "image_url", "image_url": {"url": "data:"}},
            {"type": "text", "text": "there"}
        ]);
        assert_eq!(content_text(Some(&content)), "hi there");
        assert_eq!(content_text(None), "");
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 16);
        assert_eq!(a, embedding("hello", 16));
        assert_ne!(a, embedding("world", 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn base64_matches_known_encodings() {
        assert_eq!(base64_f32le(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32le(&[]), "");
        assert_eq!(base64_f32le(&[0.0, 1.0]), "AAAAAAAAgD8=");
    }
}
