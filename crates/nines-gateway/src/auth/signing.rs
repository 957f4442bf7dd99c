//! Signed tokens: values nines hands out and must recognise later as its own (a video job id, a
//! status page session), HMAC-SHA-256 with a secret every replica shares.
//!
//! The secret is `[auth] signing_secret` when set; otherwise one generated once and kept in the
//! store (`settings`), so replicas sharing the store and restarts agree; without a store, one
//! generated per process (tokens then do not survive a restart).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks tokens.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Signer {
        Signer {
            key: secret.to_vec(),
        }
    }

    /// A signer with a fresh random secret (no shared one available).
    pub fn random() -> Signer {
        Signer::new(&random_secret().into_bytes())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// `payload.tag`, both URL-safe base64: the payload readable, the tag proving nines made it.
    pub fn sign(&self, payload: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The payload of a token this signer made; `None` for anything else (compared in constant
    /// time).
    pub fn verify(&self, token: &str) -> Option<Vec<u8>> {
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).ok()?;
        Some(payload)
    }
}

/// 32 random bytes as hex: a new shared secret.
pub fn random_secret() -> String {
    use rand::Rng;
    use std::fmt::Write;
    let bytes: [u8; 32] = rand::rng().random();
    let mut hex = String::with_capacity(64);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_with_its_secret_and_untouched() {
        let signer = Signer::new(b"one");
        let token = signer.sign(b"{\"task\":1}");
        assert_eq!(signer.verify(&token).as_deref(), Some(&b"{\"task\":1}"[..]));
        assert_eq!(Signer::new(b"two").verify(&token), None);
        let (payload, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(b"{\"task\":2}"));
        assert_eq!(signer.verify(&forged), None);
        assert_eq!(signer.verify(payload), None);
        assert_eq!(signer.verify("not.base64!"), None);
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_secret().len(), 64);
    }
}
