//! The token counts a whole (non-streamed) answer reports in its `usage` object, read for every
//! answer while a budget, usage accounting or telemetry wants them.
//!
//! Only the `usage` object is read. The bytes `"usage"` cannot occur inside a JSON string (its
//! quotes would be escaped), and OpenAI and Anthropic put the top-level `usage` last, so the last
//! occurrence is it. That object is read by a hand-written scanner ([`scan`]) that knows the
//! four counts and skips everything else; anything it does not read plainly (an escape in a key,
//! a count that is not a plain integer, malformed JSON, a `"usage"` that is not a key) goes to
//! serde, first on the object, then on the whole body. Why by hand: serde's derive took ~1 700
//! instructions per answer for a ~100-byte object, a tenth of everything usage accounting and
//! telemetry add to a request. Finding the key and scanning the object take about 960
//! instructions on the mock's 355-byte answer (callgrind), of a request's ~140 000.

use super::Usage;
use serde::Deserialize;

/// The usage a non-streamed answer reports, if any.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    let key_at = last_usage_key(body)?;
    let rest = &body[key_at + KEY.len()..];
    if let Some(counts) = object_after_colon(rest).and_then(scan) {
        return counts.usage();
    }
    let value_at = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != b':')?;
    let mut values = serde_json::Deserializer::from_slice(&rest[value_at..]).into_iter::<Counts>();
    match values.next() {
        Some(Ok(counts)) => counts.usage(),
        _ => serde_json::from_slice::<Peek>(body).ok()?.usage?.usage(),
    }
}

const KEY: &[u8] = b"\"usage\"";

/// Where the last `"usage"` starts: memchr's reverse search for its `u`, then a comparison. The
/// key sits a few dozen bytes from the end of OpenAI's and Anthropic's answers, and few `u`s
/// follow it, so this reads little; memchr's reverse substring finder (two-way, with no
/// vectorised reverse path) took about 450 instructions on the mock's answer, this about 70.
fn last_usage_key(body: &[u8]) -> Option<usize> {
    let mut end = body.len();
    while let Some(u) = memchr::memrchr(b'u', &body[..end]) {
        if u >= 1 && body.get(u - 1..u - 1 + KEY.len()) == Some(KEY) {
            return Some(u - 1);
        }
        end = u;
    }
    None
}

/// The text from the `{` of the value after `: `, when the key is followed by a colon and an
/// object.
fn object_after_colon(rest: &[u8]) -> Option<&[u8]> {
    let at = skip_ws(rest, 0);
    (rest.get(at) == Some(&b':')).then_some(())?;
    let at = skip_ws(rest, at + 1);
    (rest.get(at) == Some(&b'{')).then(|| &rest[at..])
}

/// The `usage` object of an OpenAI- or Anthropic-shaped body.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    usage: Option<Counts>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
struct Counts {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl Counts {
    fn usage(&self) -> Option<Usage> {
        let input = self.prompt_tokens.or(self.input_tokens);
        let output = self.completion_tokens.or(self.output_tokens);
        (input.is_some() || output.is_some()).then(|| Usage {
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
        })
    }
}

/// Reads an object that starts at `text[0]` (`{`): the four counts as plain integers, every
/// other member skipped. `None` for anything else, which serde then reads.
fn scan(text: &[u8]) -> Option<Counts> {
    let mut counts = Counts::default();
    let mut at = skip_ws(text, 1);
    if text.get(at) == Some(&b'}') {
        return Some(counts);
    }
    loop {
        (text.get(at) == Some(&b'"')).then_some(())?;
        let (slot, after_key) = match known_key(&text[at + 1..]) {
            Some((key, len)) => {
                let slot = match key {
                    Key::Prompt => &mut counts.prompt_tokens,
                    Key::Completion => &mut counts.completion_tokens,
                    Key::Input => &mut counts.input_tokens,
                    Key::Output => &mut counts.output_tokens,
                };
                (Some(slot), at + 1 + len)
            }
            None => {
                // Keys are short: a plain loop beats memchr's per-call dispatch. One pass
                // finds the closing quote and turns away an escaped key.
                let close = at
                    + 1
                    + text[at + 1..]
                        .iter()
                        .position(|b| matches!(b, b'"' | b'\\'))?;
                if text[close] != b'"' {
                    return None;
                }
                (None, close + 1)
            }
        };
        at = skip_ws(text, after_key);
        (text.get(at) == Some(&b':')).then_some(())?;
        at = skip_ws(text, at + 1);
        at = match slot {
            Some(slot) => {
                let (n, end) = integer(text, at)?;
                *slot = Some(n);
                end
            }
            None => skip_value(text, at)?,
        };
        at = skip_ws(text, at);
        match text.get(at)? {
            b',' => at = skip_ws(text, at + 1),
            b'}' => return Some(counts),
            _ => return None,
        }
    }
}

enum Key {
    Prompt,
    Completion,
    Input,
    Output,
}

/// One of the four counts' keys at the start of `text` (just past the opening quote), and its
/// length with the closing quote: told by its first byte and one comparison, not by a scan for
/// the quote and a comparison against each name.
fn known_key(text: &[u8]) -> Option<(Key, usize)> {
    let (key, name): (Key, &[u8]) = match text.first()? {
        b'p' => (Key::Prompt, b"prompt_tokens\""),
        b'c' => (Key::Completion, b"completion_tokens\""),
        b'i' => (Key::Input, b"input_tokens\""),
        b'o' => (Key::Output, b"output_tokens\""),
        _ => return None,
    };
    text.starts_with(name).then_some((key, name.len()))
}

/// A plain non-negative integer at `at` and where it ends; `None` for anything else (a null,
/// a fraction, an exponent, an overflow).
fn integer(text: &[u8], at: usize) -> Option<(u64, usize)> {
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || matches!(text.get(at + digits), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let mut n: u64 = 0;
    for d in &text[at..at + digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((n, at + digits))
}

/// Where the JSON value starting at `at` ends: strings by their closing quote (escapes
/// honoured), objects and arrays by depth, anything else up to the next delimiter. Loose on
/// purpose (it does not validate scalars): only the counts are read, and they strictly.
fn skip_value(text: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    loop {
        match *text.get(i)? {
            b'"' => i = string_end(text, i)?,
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            b',' | b'}' | b']' if depth == 0 => return (i > at).then_some(i),
            _ => i += 1,
        }
        if depth == 0 && i > at && !matches!(text.get(i), Some(b) if scalar_byte(*b)) {
            return Some(i);
        }
    }
}

/// Bytes a number, `true`, `false` or `null` is made of.
fn scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
}

/// Just past the closing quote of the string whose opening quote is at `at`.
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        let next = i + text[i..].iter().position(|b| matches!(b, b'"' | b'\\'))?;
        if text[next] == b'\\' {
            i = next + 2;
        } else {
            return Some(next + 1);
        }
    }
}

fn skip_ws(text: &[u8], mut at: usize) -> usize {
    while text.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::{Usage, scan, usage_of};

    fn usage(input: u64, output: u64) -> Option<Usage> {
        Some(Usage { input, output })
    }

    #[test]
    fn usage_is_read_from_openai_and_anthropic_bodies() {
        let openai = br#"{"id":"x","choices":[{"message":{"content":"the \"usage\": {\"prompt_tokens\": 99}"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        assert_eq!(usage_of(openai), usage(12, 5));
        let anthropic = br#"{"type":"message","content":[{"type":"text","text":"hi"}],"usage" : {"input_tokens":3,"output_tokens":4}}"#;
        assert_eq!(usage_of(anthropic), usage(3, 4));
        // `usage` first, then a later value that says "usage": the fallback full parse finds it.
        let odd = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"kind":"usage"}"#;
        assert_eq!(usage_of(odd), usage(1, 2));
        assert_eq!(usage_of(br#"{"usage":null}"#), None);
        assert_eq!(usage_of(br#"{"usage":{}}"#), None);
        assert_eq!(usage_of(br#"{"id":"no usage here"}"#), None);
        assert_eq!(usage_of(b"not json"), None);
        assert_eq!(usage_of(b"\"usage\""), None);
    }

    #[test]
    fn the_key_is_found_in_the_tail_across_its_edge_and_before_it() {
        let object = br#""usage":{"prompt_tokens":7,"completion_tokens":8}"#;
        for pad in [0, 10, 4096 - object.len() - 2, 4096 - 3, 4096, 20_000] {
            let mut body = b"{".to_vec();
            body.extend_from_slice(object);
            body.extend_from_slice(br#","x":""#);
            body.extend(std::iter::repeat_n(b'a', pad));
            body.extend_from_slice(br#""}"#);
            assert_eq!(usage_of(&body), usage(7, 8), "pad {pad}");
        }
        assert_eq!(usage_of(&vec![b' '; 10_000]), None);
    }

    #[test]
    fn nested_details_strings_and_spacing_are_skipped() {
        let openai = br#"{"usage": {
            "prompt_tokens" : 1200,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0, "list": [1, {"a": "}"}]},
            "completion_tokens": 34,
            "completion_tokens_details": {"reasoning_tokens": 12, "note": "a \"quoted\" }, ]"},
            "total_tokens": 1234, "ratio": -1.5e3, "flag": true, "none": null
        }}"#;
        assert_eq!(usage_of(openai), usage(1200, 34));
        let anthropic = br#"{"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":0},"output_tokens":7,"service_tier":"standard","server_tool_use":null}}"#;
        assert_eq!(usage_of(anthropic), usage(10, 7));
    }

    #[test]
    fn what_the_scanner_does_not_read_plainly_goes_to_serde_and_agrees() {
        // A count as a float or with an exponent, an escaped key, trailing garbage: the scanner
        // declines, serde decides (and rejects what is not a u64).
        for body in [
            &br#"{"usage":{"prompt_tokens":1.0,"completion_tokens":2}}"#[..],
            br#"{"usage":{"prompt_tokens":1e2,"completion_tokens":2}}"#,
            br#"{"usage":{"prompt_\u0074okens":3,"completion_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":3,"completion_tokens":2 x}}"#,
            br#"{"usage":{"prompt_tokens":99999999999999999999999,"completion_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":-3,"completion_tokens":2}}"#,
        ] {
            let text = &body[memchr::memmem::find(body, b"{\"p").unwrap()..];
            assert_eq!(scan(text), None, "{}", String::from_utf8_lossy(body));
            let by_serde = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| {
                    let u = v.get("usage")?;
                    Some(Usage {
                        input: u.get("prompt_tokens")?.as_u64()?,
                        output: u.get("completion_tokens")?.as_u64()?,
                    })
                });
            assert_eq!(
                usage_of(body),
                by_serde,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_scanner_agrees_with_serde_on_every_prefix_of_an_answer() {
        // Cut short anywhere (a truncated answer), the scanner never reads counts serde would not.
        let body =
            br#"{"id":"x","usage":{"prompt_tokens":12,"x":{"y":[1,"]"]},"completion_tokens":5}}"#;
        for end in 0..body.len() {
            let cut = &body[..end];
            if let Some(at) = memchr::memmem::find(cut, b":{\"p") {
                let scanned = scan(&cut[at + 1..]);
                let parsed = serde_json::from_slice::<super::Counts>(&cut[at + 1..]).ok();
                assert!(
                    scanned.is_none() || scanned == parsed,
                    "{end}: {scanned:?} vs {parsed:?}"
                );
            }
        }
        assert_eq!(usage_of(body), usage(12, 5));
    }
}
