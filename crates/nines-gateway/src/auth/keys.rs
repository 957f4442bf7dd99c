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

/// What lists and logs show of a key: `sk-nines-abcd…wxyz` (8 of its 43 random characters).
pub fn display(key: &str) -> String {
    let rest = key.strip_prefix(PREFIX).unwrap_or(key);
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() < 12 {
        return format!("{PREFIX}…");
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{PREFIX}{head}…{tail}")
}

/// Creates a virtual key for a user (by id or `org/name`): the store keeps its hash and display
/// form; the key itself is returned to be shown once and is kept nowhere.
pub async fn create(store: &Store, new: &NewKey) -> Result<(KeyRow, String), StoreError> {
    let secret = generate();
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
}
