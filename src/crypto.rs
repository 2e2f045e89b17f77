//! Randomness and encryption at rest.
//!
//! [`Cipher`] is the seam for encryption: the AES-256-GCM implementation here
//! can be replaced by a KMS-backed one without touching callers. Every
//! ciphertext starts with the id of the key that made it, so old keys can keep
//! decrypting after a rotation.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

/// Returns `length` random alphanumeric characters from the OS CSPRNG.
pub fn random_token(length: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

/// Returns `N` random bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// HMAC-SHA-256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares two byte strings in constant time (for equal lengths).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was made with an unknown key `{0}`")]
    UnknownKey(String),
    #[error("decryption failed: wrong key, or the value or its context was altered")]
    Decrypt,
}

/// Authenticated encryption of small values, bound to a context (`aad`) such as
/// a row id and field name, so a ciphertext copied to another row fails to decrypt.
pub trait Cipher: Send + Sync {
    fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8>;
    /// # Errors
    /// Fails for a malformed value, an unknown key or a failed authentication.
    fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Returns whether `ciphertext` was made with the current key, so that a
    /// rewrap can skip it.
    fn uses_current_key(&self, ciphertext: &[u8]) -> bool;
    /// Returns the public id of the current key, in hex, for messages.
    fn current_key_id(&self) -> String;
}

/// Returns the public id of the key that made `ciphertext`, in hex, or
/// `None` when the value is too short to carry one.
pub fn ciphertext_key_id(ciphertext: &[u8]) -> Option<String> {
    ciphertext.get(..KEY_ID_BYTES).map(hex::encode)
}

const KEY_ID_BYTES: usize = 8;
const NONCE_BYTES: usize = 12;

/// AES-256-GCM with random 96-bit nonces. Layout: key id (8 bytes), nonce
/// (12 bytes), ciphertext and tag.
pub struct AesGcmCipher {
    current: (Vec<u8>, Aes256Gcm),
    previous: Vec<(Vec<u8>, Aes256Gcm)>,
}

/// Derives a short public id for a key: a truncated HMAC, which reveals nothing of it.
pub fn key_id(key: &[u8; 32]) -> Vec<u8> {
    hmac_sha256(key, b"hyper-registry key id")[..KEY_ID_BYTES].to_vec()
}

impl AesGcmCipher {
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        let make = |key: &[u8; 32]| (key_id(key), Aes256Gcm::new(key.into()));
        AesGcmCipher {
            current: make(current),
            previous: previous.iter().map(make).collect(),
        }
    }
}

impl Cipher for AesGcmCipher {
    fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce_bytes = random_bytes::<NONCE_BYTES>();
        let (id, cipher) = &self.current;
        // Encryption only fails for inputs beyond 64 GiB, far above MAX_BODY_BYTES.
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), Payload { msg: plaintext, aad })
            .unwrap_or_default();
        let mut out = Vec::with_capacity(KEY_ID_BYTES + NONCE_BYTES + sealed.len());
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        out
    }

    fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if ciphertext.len() < KEY_ID_BYTES + NONCE_BYTES + 16 {
            return Err(CryptoError::Malformed);
        }
        let (id, rest) = ciphertext.split_at(KEY_ID_BYTES);
        let (nonce, sealed) = rest.split_at(NONCE_BYTES);
        let cipher = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|(candidate, _)| candidate.as_slice() == id)
            .map(|(_, cipher)| cipher)
            .ok_or_else(|| CryptoError::UnknownKey(hex::encode(id)))?;
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Decrypt)
    }

    fn uses_current_key(&self, ciphertext: &[u8]) -> bool {
        ciphertext.get(..KEY_ID_BYTES) == Some(self.current.0.as_slice())
    }

    fn current_key_id(&self) -> String {
        hex::encode(&self.current.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_gcm_round_trip() {
        let cipher = AesGcmCipher::new(&[7u8; 32], &[]);
        let sealed = cipher.encrypt(b"deploy-token", b"entry:1:sensitive");
        assert_eq!(cipher.decrypt(&sealed, b"entry:1:sensitive").unwrap(), b"deploy-token");
    }

    #[test]
    fn ciphertext_bound_to_context() {
        let cipher = AesGcmCipher::new(&[7u8; 32], &[]);
        let sealed = cipher.encrypt(b"deploy-token", b"entry:1:sensitive");
        assert_eq!(cipher.decrypt(&sealed, b"entry:2:sensitive"), Err(CryptoError::Decrypt));
    }

    #[test]
    fn previous_key_still_decrypts() {
        let old = AesGcmCipher::new(&[1u8; 32], &[]);
        let sealed = old.encrypt(b"value", b"ctx");
        let rotated = AesGcmCipher::new(&[2u8; 32], &[[1u8; 32]]);
        assert_eq!(rotated.decrypt(&sealed, b"ctx").unwrap(), b"value");
        let without_old = AesGcmCipher::new(&[2u8; 32], &[]);
        assert!(matches!(
            without_old.decrypt(&sealed, b"ctx"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn current_key_recognised() {
        let old = AesGcmCipher::new(&[1u8; 32], &[]);
        let rotated = AesGcmCipher::new(&[2u8; 32], &[[1u8; 32]]);
        let sealed_old = old.encrypt(b"value", b"ctx");
        let sealed_new = rotated.encrypt(b"value", b"ctx");
        assert!(!rotated.uses_current_key(&sealed_old));
        assert!(rotated.uses_current_key(&sealed_new));
        assert!(!rotated.uses_current_key(b"short"));
        assert_eq!(ciphertext_key_id(&sealed_new), Some(rotated.current_key_id()));
    }

    #[test]
    fn tampered_ciphertext_rejected() {
        let cipher = AesGcmCipher::new(&[7u8; 32], &[]);
        let mut sealed = cipher.encrypt(b"value", b"ctx");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(cipher.decrypt(&sealed, b"ctx"), Err(CryptoError::Decrypt));
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(32), random_token(32));
        assert_eq!(random_token(40).len(), 40);
    }
}
