//! OpenAI's o200k tokenizer, for counting only.
//!
//! A text is cut into pieces (o200k's pattern: `pretokenize.rs` by hand for ASCII text, the
//! pattern itself as a regex otherwise), and each piece is byte-pair merged as tiktoken does:
//! starting from single bytes, the adjacent pair of parts whose concatenation is the
//! lowest-ranked token is merged (the leftmost on a tie) until no adjacent pair is a token; the
//! piece's count is the number of parts left. A piece that is itself a token (most words) is one
//! lookup. Pairs wait in a heap, so a piece of n bytes costs O(n log n) lookups (tiktoken's own
//! loop is quadratic), and a span longer than the longest token (128 bytes) is never looked up.
//!
//! The vocabulary is `data/o200k_base.tiktoken` (OpenAI's file, MIT: see `data/README.md`),
//! packed by `build.rs` into 1.6 MB of length-prefixed token bytes in rank order. The lookup
//! table is built from it at the first count, in tens of milliseconds. (Until issue 19 this was
//! `bpe-openai`, whose prebuilt tables are 32 MB of the binary; its counts are the reference the
//! tests compare with.)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::LazyLock;

use foldhash::fast::FixedState;
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

/// The packed vocabulary: for each token in rank order, its length in one byte, then its bytes.
static PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.bin"));

/// The longest token, in bytes: no longer span needs a lookup.
const LONGEST_TOKEN: usize = 128;

/// Pieces longer than this (no prose has one: they are runs of one character class, such as
/// 64 KiB of spaces) are counted in chunks of this size, so a request's counting cost stays
/// linear in its size whatever the attacker sends. The merge within a piece is O(n log n), and
/// without the bound one 10 MB run of spaces would cost seconds of CPU. A chunk boundary loses
/// the merges across it: such a piece's count may exceed the exact one by a few tokens per chunk
/// (measured on 64 KiB pieces: +0 on spaces, +1 on random letters, +64 (1.6 %) on `=-` repeated),
/// an overestimate, the safe side for context-window routing and limits.
const MAX_EXACT_PIECE: usize = 4096;

/// o200k's pattern (as `bpe-openai` writes it): the first alternative is everything but the
/// whitespace runs; the second is `\s+(?!\S)` written as `\s+\s`, whose match is one character too
/// long (the look-ahead), which `split` gives back; the third is any other whitespace run.
const PATTERNS: [&str; 3] = [
    concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|\p{N}{1,3}",
        r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"|\s*[\r\n]+",
        r"|\s+$",
    ),
    r"\s+\s",
    r"\s+",
];

/// Which pattern's match ends with a look-ahead character.
const LOOKAHEAD_PATTERN: usize = 1;

static SHARED: LazyLock<O200k> = LazyLock::new(O200k::new);

/// The process's tokenizer, built at the first call.
pub fn shared() -> &'static O200k {
    &SHARED
}

/// The o200k vocabulary and pattern, ready to count.
pub struct O200k {
    /// Each token's bytes (pointing into `PACKED`) to its rank.
    ranks: HashMap<&'static [u8], u32, FixedState>,
    /// The ranks of two-byte tokens by `first << 8 | second` (NO_RANK: not a token): the first
    /// lookups of every merge, without hashing.
    two_byte_ranks: Box<[u32]>,
    /// The pattern for non-ASCII text; `None` only if it failed to build (never, in practice:
    /// the tests build it), in which case such text counts one token per byte, an upper bound.
    pattern: Option<Regex>,
}

impl O200k {
    /// Builds the lookup table and the pattern (what the first count waits for).
    pub fn new() -> O200k {
        let mut ranks = HashMap::with_capacity_and_hasher(200_000, FixedState::default());
        let mut rest = PACKED;
        while let Some((&len, after)) = rest.split_first() {
            let Some((token, after)) = after.split_at_checked(usize::from(len)) else {
                break;
            };
            ranks.insert(token, ranks.len() as u32);
            rest = after;
        }
        let mut two_byte_ranks = vec![NO_RANK; 1 << 16].into_boxed_slice();
        for (token, &rank) in &ranks {
            if let &[first, second] = *token {
                two_byte_ranks[usize::from(first) << 8 | usize::from(second)] = rank;
            }
        }
        let pattern = match Regex::new_many(&PATTERNS) {
            Ok(regex) => Some(regex),
            Err(error) => {
                tracing::error!(%error, "o200k pattern did not build: non-ASCII prompts are counted as one token per byte");
                None
            }
        };
        O200k {
            ranks,
            two_byte_ranks,
            pattern,
        }
    }

    /// Tokens in a text (invalid UTF-8 is counted as its lossy decoding).
    pub fn count(&self, text: &[u8]) -> usize {
        let mut merge = Merge::default();
        let mut total = 0;
        if text.is_ascii() {
            super::pretokenize::split_ascii(text, |piece| {
                total += self.count_bounded(piece, &mut merge)
            });
        } else {
            let text = String::from_utf8_lossy(text);
            let Some(pattern) = &self.pattern else {
                return text.len();
            };
            split_with(pattern, &text, |piece| {
                total += self.count_bounded(piece, &mut merge)
            });
        }
        total
    }

    /// Tokens in one piece: exact up to `MAX_EXACT_PIECE` bytes, in chunks beyond. Equal chunks
    /// are counted once: the long pieces attackers send are runs of one pattern (spaces, `=-`),
    /// and hashing a chunk costs a hundredth of merging it.
    fn count_bounded(&self, piece: &[u8], merge: &mut Merge) -> usize {
        if piece.len() <= MAX_EXACT_PIECE {
            return self.count_piece(piece, merge);
        }
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        piece
            .chunks(MAX_EXACT_PIECE)
            .map(|chunk| {
                *seen
                    .entry(chunk)
                    .or_insert_with(|| self.count_piece(chunk, merge))
            })
            .sum()
    }

    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        if bytes.len() > LONGEST_TOKEN {
            return None;
        }
        self.ranks.get(bytes).copied()
    }

    /// Rank of the token made of two adjacent parts, `None` if it is none.
    fn pair_rank(&self, piece: &[u8], left: usize, pair_end: usize) -> Option<u32> {
        if pair_end - left == 2 {
            let rank =
                self.two_byte_ranks[usize::from(piece[left]) << 8 | usize::from(piece[left + 1])];
            (rank != NO_RANK).then_some(rank)
        } else {
            self.rank(&piece[left..pair_end])
        }
    }

    /// Tokens in one piece: tiktoken's merge, with the candidate pairs in a heap.
    fn count_piece(&self, piece: &[u8], merge: &mut Merge) -> usize {
        let n = piece.len();
        if n <= 1 || self.rank(piece).is_some() {
            return n.min(1);
        }
        // Heap keys pack a rank and a position in a u64; no piece is near 4 GiB (request bodies
        // are far smaller), but if one were, one token per byte is an upper bound.
        if u32::try_from(n).is_err() {
            return n;
        }
        // Parts are identified by their first byte. `end[i]` is where the part starting at i ends
        // (0: i starts no part), `start[i]` where the part before the one at i starts, `pair[i]`
        // the rank of the token the part at i would make with the next one (NO_RANK: none).
        let Merge {
            end,
            start,
            pair,
            heap,
        } = merge;
        end.clear();
        end.extend(1..=n);
        start.clear();
        start.extend((0..n).map(|i| i.saturating_sub(1)));
        pair.clear();
        heap.clear();
        for i in 0..n - 1 {
            let rank = self.pair_rank(piece, i, i + 2).unwrap_or(NO_RANK);
            pair.push(rank);
            if rank != NO_RANK {
                heap.push(Reverse(key(rank, i)));
            }
        }
        pair.push(NO_RANK);
        let mut parts = n;
        // Smallest rank first, then leftmost. An entry is stale once its left part has merged
        // away or its pair has changed: a pair's rank changes whenever the pair does, since a
        // pair starting at the same byte but ending elsewhere is another token.
        while let Some(Reverse(entry)) = heap.pop() {
            let (rank, left) = ((entry >> 32) as u32, (entry & 0xffff_ffff) as usize);
            if end[left] == 0 || pair[left] != rank {
                continue;
            }
            let mid = end[left];
            let pair_end = end[mid];
            end[left] = pair_end;
            end[mid] = 0;
            pair[mid] = NO_RANK;
            parts -= 1;
            pair[left] = NO_RANK;
            if pair_end < n {
                start[pair_end] = left;
                if let Some(rank) = self.pair_rank(piece, left, end[pair_end]) {
                    pair[left] = rank;
                    heap.push(Reverse(key(rank, left)));
                }
            }
            if left > 0 {
                let before = start[left];
                pair[before] = NO_RANK;
                if let Some(rank) = self.pair_rank(piece, before, pair_end) {
                    pair[before] = rank;
                    heap.push(Reverse(key(rank, before)));
                }
            }
        }
        parts
    }
}

/// A heap key: by rank, then by position.
fn key(rank: u32, position: usize) -> u64 {
    u64::from(rank) << 32 | position as u64
}

/// No token: in `two_byte_ranks` and `Merge::pair`.
const NO_RANK: u32 = u32::MAX;

impl Default for O200k {
    fn default() -> Self {
        O200k::new()
    }
}

/// Buffers for merging, reused across the pieces of a text.
#[derive(Default)]
struct Merge {
    end: Vec<usize>,
    start: Vec<usize>,
    pair: Vec<u32>,
    /// Candidate pairs: the merged token's rank, then the left part's first byte (`key`).
    heap: BinaryHeap<Reverse<u64>>,
}

/// Calls `piece` with each piece of `text` as the pattern cuts it (leftmost-first alternation,
/// each match anchored where the last one ended), as `bpe-openai`'s pre-tokeniser does.
fn split_with(pattern: &Regex, text: &str, mut piece: impl FnMut(&[u8])) {
    let mut at = 0;
    while at < text.len() {
        let Some(found) = pattern.find(Input::new(&text[at..]).anchored(Anchored::Yes)) else {
            break;
        };
        let mut end = at + found.end();
        if found.pattern().as_usize() == LOOKAHEAD_PATTERN {
            end -= text[at..end].chars().next_back().map_or(0, char::len_utf8);
        }
        if end <= at {
            break;
        }
        piece(&text.as_bytes()[at..end]);
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use sha2::{Digest, Sha256};

    fn reference(text: &str) -> usize {
        bpe_openai::o200k_base().count(text)
    }

    /// Every text both ways: through `count` and, for ASCII text, through the regex too.
    #[track_caller]
    fn assert_counts_like_reference(ours: &O200k, text: &str) {
        let expected = reference(text);
        // Exact, but for pieces past MAX_EXACT_PIECE: a few tokens over per chunk.
        let slack = 8 * (text.len() / MAX_EXACT_PIECE);
        let counted = ours.count(text.as_bytes());
        assert!(
            (expected..=expected + slack).contains(&counted),
            "{counted} against {expected}: {text:?}"
        );
        if text.is_ascii() {
            let mut merge = Merge::default();
            let mut via_regex = 0;
            split_with(ours.pattern.as_ref().unwrap(), text, |piece| {
                via_regex += ours.count_piece(piece, &mut merge)
            });
            assert_eq!(via_regex, expected, "regex path: {text:?}");
        }
    }

    #[test]
    fn the_vocabulary_is_openais_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/o200k_base.tiktoken");
        let digest = Sha256::digest(std::fs::read(path).unwrap());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
        );
        let ours = shared();
        assert_eq!(ours.ranks.len(), 199_998);
        assert_eq!(
            ours.ranks.keys().map(|token| token.len()).max(),
            Some(LONGEST_TOKEN)
        );
        assert!(ours.pattern.is_some());
        // Every byte is a token, so every part count is exact; and ranks are the reference's ids.
        for byte in 0..=255u8 {
            assert!(ours.rank(&[byte]).is_some(), "{byte}");
        }
        let library = &bpe_openai::o200k_base().bpe;
        for (token, &rank) in ours.ranks.iter().filter(|(_, rank)| **rank % 997 == 0) {
            assert_eq!(library.token_bytes(rank), *token);
        }
    }

    #[test]
    fn every_token_counts_as_one() {
        let ours = shared();
        let mut merge = Merge::default();
        for token in ours.ranks.keys() {
            assert_eq!(ours.count_piece(token, &mut merge), 1, "{token:?}");
        }
    }

    #[test]
    fn sample_texts_count_like_bpe_openai() {
        let ours = shared();
        let long_word = "supercalifragilisticexpialidocious".repeat(40);
        let samples = [
            String::new(),
            "Hello, world!".into(),
            "The quick brown fox jumps over the lazy dog while the committee reviews budgets.".into(),
            r#"[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise:\n\n- one\n- two\n\tthree"}]"#.into(),
            "fn main() {\n    let x: Vec<u8> = (0..=255).collect();\n    println!(\"{x:?}\");\n}\n".into(),
            "Ünïcödé façade naïve café résumé — “quotes” and ‘apostrophes’ don’t matter…".into(),
            "日本語のテキストです。東京都は日本の首都です。".into(),
            "中文文本：我们今天去公园散步，天气很好！".into(),
            "한국어 텍스트입니다. 안녕하세요!".into(),
            "Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю.".into(),
            "العربية: مرحبا بالعالم، كيف حالك؟".into(),
            "हिन्दी पाठ: नमस्ते दुनिया".into(),
            "Ελληνικά: Καλημέρα κόσμε".into(),
            "emoji 😀😃😄 👩‍👩‍👧‍👦 family, 👍🏽 thumbs, 🇫🇷🇯🇵 flags, ❤️ and 🏳️‍🌈".into(),
            "combining: e\u{301} a\u{308} n\u{303} Z\u{335}\u{321}\u{31b}a\u{334}l\u{336}g\u{337}o".into(),
            "zero\u{200b}width\u{feff}joiners\u{200d}and\u{00a0}nbsp\u{2003}em\u{3000}ideographic".into(),
            " ".repeat(10_000),
            format!("a{}b", " ".repeat(5_000)),
            format!("{}x", "\t \n".repeat(2_000)),
            "\n".repeat(3_000),
            format!("end with spaces{}", " ".repeat(777)),
            format!("{}\u{3000}中", " \u{3000}".repeat(500)),
            "1234567890".repeat(300),
            "!!!???...".repeat(400),
            "=".repeat(4_096),
            "a".repeat(5_000),
            long_word.clone(),
            long_word.to_uppercase(),
            format!("Ⅻ {long_word}é"),
            "don't DON'T we'll I'M they're you've she'd 's".into(),
            "😀".repeat(1_000),
            "ℌ𝔢𝔩𝔩𝔬 𝕨𝕠𝕣𝕝𝕕 ＦＵＬＬＷＩＤＴＨ ﬁ ligature".into(),
        ];
        for text in &samples {
            assert_counts_like_reference(ours, text);
        }
    }

    #[test]
    fn invalid_utf8_counts_its_lossy_decoding() {
        let ours = shared();
        let bytes = b"valid \xff\xfe then \xe2\x82 cut and \xf0\x9f\x98\x80 ok";
        assert_eq!(
            ours.count(bytes),
            reference(&String::from_utf8_lossy(bytes))
        );
    }

    #[test]
    fn random_texts_count_like_bpe_openai() {
        // Characters each branch of the pattern treats differently, across scripts and widths.
        let alphabet: Vec<char> = "aeiostrnlAEIOSTRNL  \t\t\n\r\u{b}\u{c}'''/\\\"(){}.,:;!?-_0123456789\
            éüßçÉÜ日本語中文한국어ЖжΩωأبת \u{a0}\u{3000}\u{2028}\u{85}\u{301}\u{308}😀👍🏽\u{200d}\u{fe0f}٣४Ⅻ½ǅʰ"
            .chars()
            .collect();
        let ours = shared();
        let mut rng = StdRng::seed_from_u64(19);
        for _ in 0..3_000 {
            let len = rng.random_range(1..60);
            let text: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            assert_counts_like_reference(ours, &text);
        }
    }

    #[test]
    fn random_token_sequences_count_like_bpe_openai() {
        // Concatenated tokens without separators: long pieces that merge across token edges.
        let ours = shared();
        let tokens: Vec<&[u8]> = {
            let mut tokens: Vec<(&&[u8], &u32)> = ours.ranks.iter().collect();
            tokens.sort_by_key(|(_, rank)| **rank);
            tokens.into_iter().map(|(token, _)| *token).collect()
        };
        let mut rng = StdRng::seed_from_u64(200);
        for _ in 0..300 {
            let mut bytes = Vec::new();
            while bytes.len() < rng.random_range(10..2_000) {
                bytes.extend_from_slice(tokens[rng.random_range(0..tokens.len())]);
            }
            let text = String::from_utf8_lossy(&bytes);
            assert_counts_like_reference(ours, &text);
            // And as one piece, past the pattern: the merge alone against the library's.
            let mut merge = Merge::default();
            assert_eq!(
                ours.count_piece(&bytes, &mut merge),
                bpe_openai::o200k_base().bpe.count(&bytes),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_huge_single_piece_is_counted_in_bounded_chunks_close_to_exact() {
        let ours = shared();
        for unit in [" ", "=-", "ab", "\u{4e2d}", "x=1;"] {
            let text = unit.repeat(64 * 1024 / unit.len());
            let exact = reference(&text);
            let counted = ours.count(text.as_bytes());
            let chunks = text.len().div_ceil(MAX_EXACT_PIECE);
            assert!(
                (exact..=exact + 8 * chunks).contains(&counted),
                "{unit:?}: {counted} against exact {exact} ({chunks} chunks)"
            );
        }
    }
}
