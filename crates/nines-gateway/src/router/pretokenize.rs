//! o200k pre-tokenisation for ASCII text, by hand.
//!
//! Counting tokens is BPE over "pieces" that a regex cuts the text into first. The library's
//! regex (Unicode classes, emulated look-ahead) is most of the cost of counting a prompt, and
//! prompts are nearly always ASCII (English, code, JSON). For ASCII input this scanner cuts
//! exactly the same pieces as o200k's pattern — the property test below checks it against the
//! library on random text made of the characters that matter — and any non-ASCII text takes the
//! library's path unchanged.
//!
//! The pattern, with leftmost-first alternation (each branch tried in order at each position):
//!
//! ```text
//! A  [^\r\n\p{L}\p{N}]?[\p{Lu}…]*[\p{Ll}…]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! B  [^\r\n\p{L}\p{N}]?[\p{Lu}…]+[\p{Ll}…]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! C  \p{N}{1,3}
//! D   ?[^\s\p{L}\p{N}]+[\r\n/]*
//! E  \s*[\r\n]+
//! F  \s+$
//! G  \s+(?!\S)      (the library writes it as `\s+\s` minus the last character)
//! H  \s+
//! ```

/// Unicode `White_Space` within ASCII: tab, LF, VT, FF, CR, space.
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn is_newline(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// Neither whitespace, letter nor digit: what branch D's run is made of.
fn is_symbol(b: u8) -> bool {
    !is_space(b) && !b.is_ascii_alphanumeric()
}

/// May precede a word in branches A and B: anything but CR, LF, letters and digits.
fn is_word_prefix(b: u8) -> bool {
    !is_newline(b) && !b.is_ascii_alphanumeric()
}

/// Calls `piece` with each piece of an ASCII text, in order. The pieces cover the text.
pub fn split_ascii(text: &[u8], mut piece: impl FnMut(&[u8])) {
    let mut at = 0;
    while at < text.len() {
        let end = piece_end(text, at);
        piece(&text[at..end]);
        at = end;
    }
}

/// Where the piece starting at `at` ends (exclusive); always past `at`.
fn piece_end(t: &[u8], at: usize) -> usize {
    let c = t[at];
    // A and B: a word, possibly after one prefix character.
    let word_start = if c.is_ascii_alphabetic() {
        Some(at)
    } else if is_word_prefix(c) && t.get(at + 1).is_some_and(u8::is_ascii_alphabetic) {
        Some(at + 1)
    } else {
        None
    };
    if let Some(start) = word_start {
        return word_end(t, start);
    }
    // C: one to three digits.
    if c.is_ascii_digit() {
        let mut end = at + 1;
        while end < t.len() && end - at < 3 && t[end].is_ascii_digit() {
            end += 1;
        }
        return end;
    }
    // D: a symbol run, optionally after one space, then any CR, LF and '/'.
    let symbols_start = if is_symbol(c) {
        Some(at)
    } else if c == b' ' && t.get(at + 1).is_some_and(|&b| is_symbol(b)) {
        Some(at + 1)
    } else {
        None
    };
    if let Some(start) = symbols_start {
        let mut end = start;
        while end < t.len() && is_symbol(t[end]) {
            end += 1;
        }
        while end < t.len() && (is_newline(t[end]) || t[end] == b'/') {
            end += 1;
        }
        return end;
    }
    // Only whitespace is left: c is whitespace. W is the whole run from here.
    let mut run_end = at;
    while run_end < t.len() && is_space(t[run_end]) {
        run_end += 1;
    }
    // E: up to and including the run's last CR or LF.
    if let Some(last_newline) = (at..run_end).rev().find(|&i| is_newline(t[i])) {
        return last_newline + 1;
    }
    // F: the run reaches the end of the text.
    if run_end == t.len() {
        return run_end;
    }
    // G: all but the run's last character (which then prefixes the next word or symbols).
    if run_end - at >= 2 {
        return run_end - 1;
    }
    // H: the single whitespace character.
    run_end
}

/// A and B from the first letter at `start`: uppercase run, lowercase run, then a contraction.
fn word_end(t: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < t.len() && t[end].is_ascii_uppercase() {
        end += 1;
    }
    while end < t.len() && t[end].is_ascii_lowercase() {
        end += 1;
    }
    end + contraction_len(&t[end..])
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at the start of `rest`, or 0.
fn contraction_len(rest: &[u8]) -> usize {
    if rest.first() != Some(&b'\'') {
        return 0;
    }
    let lower = |i: usize| rest.get(i).map(u8::to_ascii_lowercase);
    match lower(1) {
        Some(b's' | b't' | b'm' | b'd') => 2,
        Some(b'r') if lower(2) == Some(b'e') => 3,
        Some(b'v') if lower(2) == Some(b'e') => 3,
        Some(b'l') if lower(2) == Some(b'l') => 3,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn ours(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        split_ascii(text.as_bytes(), |p| {
            out.push(String::from_utf8_lossy(p).into_owned())
        });
        out
    }

    fn library(text: &str) -> Vec<String> {
        bpe_openai::o200k_base()
            .split(text)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn known_texts_split_like_the_library() {
        for text in [
            "Hello world",
            "  leading and trailing  ",
            "HELLO world, HELLOworld helloWorld don't DON'T we'll I'M",
            "x = 1234567 + 89;\n\n    return y;\r\n",
            "{\"role\":\"user\",\"content\":\"hi\\nthere\"}",
            "a\t\tb \n c  \n\n  d!!\n/e ((f //g",
            " ",
            "\n",
            "'s 're 've 'll 'd 'm 't 'x",
        ] {
            assert_eq!(ours(text), library(text), "{text:?}");
        }
    }

    #[test]
    fn random_ascii_splits_like_the_library() {
        // The characters each branch treats differently, weighted towards letters and spaces.
        const ALPHABET: &[u8] =
            b"aaeeiosttrlvdmSTRLVDMAZ    \t\t\n\r\x0b\x0c\x01'''/\\\"(){}.,:;!?-_0123456789";
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.random_range(1..40);
            let text: String = (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            assert_eq!(ours(&text), library(&text), "{text:?}");
        }
    }
}
