//! Encryption of secrets at rest in Kafka (OAuth token sets in the state
//! topic): AES-256-GCM with a key the operator supplies. The record key is
//! bound in as associated data, so a ciphertext copied under another
//! instance's key does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Format marker, so a future scheme can be told apart.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A 256-bit key. No `Debug` that could print it.
#[derive(Clone)]
pub struct SealingKey(Key<Aes256Gcm>);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(***)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the encryption key must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error("ciphertext is malformed or was encrypted with another key")]
    Decrypt,
}

impl SealingKey {
    /// # Errors
    /// Not base64, or not 32 bytes once decoded. The message never echoes
    /// the input.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadKey)?;
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let key = Key::<Aes256Gcm>::try_from(bytes.as_slice()).map_err(|_| CryptoError::BadKey)?;
        Ok(Self(key))
    }

    /// `VERSION ‖ nonce ‖ ciphertext+tag`, with a random nonce.
    pub fn seal(&self, associated: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let cipher = Aes256Gcm::new(&self.0);
        let nonce = Nonce::from(nonce_bytes);
        // A record without ciphertext would be stored as the token set:
        // rather stop here.
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: associated,
                },
            )
            .expect("AES-GCM encryption fails only for inputs beyond 64 GiB");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        out
    }

    /// # Errors
    /// Wrong key, wrong associated data, or tampered bytes.
    pub fn open(&self, associated: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Decrypt)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Decrypt)?;
        Aes256Gcm::new(&self.0)
            .decrypt(
                &nonce,
                Payload {
                    msg: body,
                    aad: associated,
                },
            )
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn seals_and_opens_bound_to_the_record_key() {
        let k = SealingKey::from_base64(KEY).unwrap();
        let sealed = k.seal(b"token/shop", b"refresh-token-value");
        assert!(!sealed.windows(7).any(|w| w == b"refresh"), "not in clear");
        assert_eq!(
            k.open(b"token/shop", &sealed).unwrap(),
            b"refresh-token-value"
        );
        assert_eq!(k.open(b"token/other", &sealed), Err(CryptoError::Decrypt));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(k.open(b"token/shop", &tampered), Err(CryptoError::Decrypt));
        let other =
            SealingKey::from_base64("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=").unwrap();
        assert_eq!(
            other.open(b"token/shop", &sealed),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(format!("{k:?}"), "SealingKey(***)");
    }

    #[test]
    fn bad_keys_are_refused_without_echo() {
        for bad in ["", "not base64!", "c2hvcnQ="] {
            let e = SealingKey::from_base64(bad).unwrap_err();
            assert_eq!(e, CryptoError::BadKey);
        }
    }
}
