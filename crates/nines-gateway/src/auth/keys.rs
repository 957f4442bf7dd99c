//! Virtual key material: generation, the hash kept at rest, and the non-secret display form.
//!
//! A key is `sk-nines-` followed by 43 random alphanumerics (≈256 bits from the thread-local
//! CSPRNG). Keys that random need no slow password hash: the store keeps `SHA-256(key)` in hex,
//! with a unique index, so a lookup is one indexed read and a leaked table reveals no key.

use crate::store::{KeyRow, NewKey, Store, StoreError};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Every virtual key starts with this.
pub const PREFIX: &str = "sk-nines-";
const RANDOM_CHARS: usize = 43;

/// A new key. Shown to its owner once; only its hash is stored.
pub fn generate() -> String {
    let mut key = String::with_capacity(PREFIX.len() + RANDOM_CHARS);
    key.push_str(PREFIX);
    key.extend(
        rand::rng()
            .sample_iter(&Alphanumeric)
            .take(RANDOM_CHARS)
            .map(char::from),
    );
    key
}

/// `SHA-256(key)` as lowercase hex: the only form of a key that is stored or compared.
pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// What lists and logs show of a key: `sk-nines-abcd…wxyz` (8 of its 43 random characters); of
/// an imported key, its first 6 and last 4 characters (`sk-lit…s6Df`).
pub fn display(key: &str) -> String {
    let Some(rest) = key.strip_prefix(PREFIX) else {
        let chars: Vec<char> = key.chars().collect();
        if chars.len() < MIN_LEN {
            return "…".to_owned();
        }
        let head: String = chars[..6].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        return format!("{head}…{tail}");
    };
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() < 12 {
        return format!("{PREFIX}…");
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{PREFIX}{head}…{tail}")
}

/// Length bounds of any virtual key, generated or chosen.
pub const MIN_LEN: usize = 20;
pub const MAX_LEN: usize = 256;
/// Estimated entropy a chosen key must have (a generated one has about 256 bits).
pub const MIN_BITS: f64 = 96.0;

/// Why a chosen key string cannot be a virtual key (the message never repeats the key).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyShapeError {
    #[error("a key must be {MIN_LEN} to {MAX_LEN} characters long")]
    Length,
    #[error("a key may only contain letters, digits and - _ . ~ + / =")]
    Characters,
    #[error(
        "the key is too easy to guess (estimated {bits:.0} bits of entropy, at least {MIN_BITS:.0} needed): use a longer random string"
    )]
    Weak { bits: f64 },
}

/// The characters a virtual key may hold: what token formats of other gateways and base64 use.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

/// Whether `key` can be a virtual key at all: its length and characters, and for a chosen key
/// enough entropy. Every key in the store passed this when it was created (generated keys always
/// do), so authentication asks the store only about credentials that pass it too.
///
/// The entropy is estimated, pessimistically, as the length times log2 of the alphabet the key
/// draws from (the character classes it uses), computed after removing a leading `prefix-`
/// (`sk-`, `sk-nines-`) and capped by the number of distinct characters, so `sk-aaaa…` or
/// `Password1Password1…` fail.
pub fn check_shape(key: &str) -> Result<(), KeyShapeError> {
    let len = key.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Err(KeyShapeError::Length);
    }
    if !key.chars().all(allowed) {
        return Err(KeyShapeError::Characters);
    }
    let bits = entropy_bits(key);
    if bits < MIN_BITS {
        return Err(KeyShapeError::Weak { bits });
    }
    Ok(())
}

fn entropy_bits(key: &str) -> f64 {
    // A readable prefix (letters and dashes up to the last `-` within the first 16 characters)
    // carries no secret.
    let body = key
        .char_indices()
        .take(16)
        .filter(|(_, c)| *c == '-')
        .last()
        .filter(|(i, _)| {
            key[..*i]
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '-')
        })
        .map_or(key, |(i, _)| &key[i + 1..]);
    let classes = [
        (body.chars().any(|c| c.is_ascii_lowercase()), 26.0),
        (body.chars().any(|c| c.is_ascii_uppercase()), 26.0),
        (body.chars().any(|c| c.is_ascii_digit()), 10.0),
        (body.chars().any(|c| !c.is_ascii_alphanumeric()), 7.0),
    ];
    let alphabet: f64 = classes.iter().filter(|(on, _)| *on).map(|(_, n)| n).sum();
    let distinct = body.chars().collect::<std::collections::HashSet<_>>().len() as f64;
    let per_char = alphabet.min(distinct).max(1.0).log2();
    // Repeats of a short pattern: count only the characters up to the first repeat of the
    // longest prefix that recurs (a cheap guard against `abcd1234abcd1234…`).
    let effective = body.len().min(distinct_run(body));
    effective as f64 * per_char
}

/// The length of `s` before it starts repeating a period of itself, or its length.
fn distinct_run(s: &str) -> usize {
    let b = s.as_bytes();
    (1..=b.len() / 2)
        .find(|&p| b.len().is_multiple_of(p) && b.chunks(p).all(|c| c == &b[..p]))
        .unwrap_or(b.len())
}

/// Creates a virtual key for a user (by id or `org/name`): the store keeps its hash and display
/// form; the key itself is returned to be shown once and is kept nowhere. With `chosen`, that
/// string is the key (imported from another gateway), after [`check_shape`].
pub async fn create(
    store: &Store,
    new: &NewKey,
    chosen: Option<&str>,
) -> Result<(KeyRow, String), StoreError> {
    let secret = match chosen {
        Some(key) => {
            check_shape(key).map_err(|e| StoreError::Invalid(e.to_string()))?;
            key.to_owned()
        }
        None => generate(),
    };
    let row = store
        .insert_key(new, hash(&secret), display(&secret))
        .await?;
    Ok((row, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hash_stably() {
        let a = generate();
        let b = generate();
        assert!(a.starts_with(PREFIX));
        assert_eq!(a.len(), PREFIX.len() + RANDOM_CHARS);
        assert_ne!(a, b);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 64);
        // The known SHA-256 of "abc".
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let shown = display(&a);
        assert!(shown.starts_with(PREFIX) && shown.contains('…'));
        assert!(!shown.contains(&a[PREFIX.len() + 4..a.len() - 4]));
    }

    #[test]
    fn generated_keys_always_have_the_shape_of_a_key() {
        for _ in 0..1000 {
            assert_eq!(check_shape(&generate()), Ok(()));
        }
    }

    #[test]
    fn chosen_keys_need_length_characters_and_entropy() {
        // Keys of other gateways: OpenAI-style, LiteLLM-style, base64.
        for good in [
            "sk-proj-4fJq9ZtWm2LxR8vKc1NbYh7Ge3DsPaU0",
            "sk-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
            "dGhpcyBpcyBhIHJhbmRvbSBrZXkgZm9yIHRlc3Rz+/=",
        ] {
            assert_eq!(check_shape(good), Ok(()), "{good}");
        }
        assert_eq!(check_shape("sk-short"), Err(KeyShapeError::Length));
        assert_eq!(check_shape(&"a".repeat(300)), Err(KeyShapeError::Length));
        assert_eq!(
            check_shape("sk-has spaces in it 0123456789"),
            Err(KeyShapeError::Characters)
        );
        for weak in [
            "sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abcd1234abcd1234abcd1234abcd1234",
            "sk-nines-00000000000000000000000000000000000000000",
            "passwordpassword1",
            "sk-my-team-key-2024",
        ] {
            assert!(
                matches!(
                    check_shape(weak),
                    Err(KeyShapeError::Weak { .. } | KeyShapeError::Length)
                ),
                "{weak}"
            );
        }
    }
}
