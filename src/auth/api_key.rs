//! The API key format `hrk_<key id>_<secret><checksum>`.
//!
//! - `hrk_` lets secret scanners recognise a leaked key.
//! - The key id (12 lowercase alphanumerics) is a public handle for lists,
//!   audit events and revocation; it alone cannot authenticate.
//! - The secret is 32 alphanumerics from the OS CSPRNG (about 190 bits).
//! - The checksum (6 hex digits of SHA-256 over the rest) rejects a mistyped
//!   or truncated key before any lookup.
//!
//! Only HMAC-SHA-256 of the secret under a server-side pepper is stored: keys
//! have far more entropy than passwords, so a slow hash would only cost time
//! on every request, while the pepper keeps a stolen database from verifying keys.

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::crypto::{constant_time_eq, hmac_sha256, random_token};

const PREFIX: &str = "hrk_";
const ID_CHARS: usize = 12;
const SECRET_CHARS: usize = 32;
const CHECKSUM_CHARS: usize = 6;

/// A parsed key: its public id and its secret part.
pub struct ParsedKey {
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for ParsedKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ParsedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn checksum(id: &str, secret: &str) -> String {
    let digest = Sha256::digest(format!("{PREFIX}{id}_{secret}").as_bytes());
    hex::encode(&digest[..CHECKSUM_CHARS / 2])
}

fn random_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..ID_CHARS)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Generates a new key; returns the full key (shown once) and its parsed form.
pub fn generate() -> (String, ParsedKey) {
    let id = random_id();
    let secret = random_token(SECRET_CHARS);
    let key = format!("{PREFIX}{id}_{secret}{}", checksum(&id, &secret));
    (key, ParsedKey { id, secret })
}

/// Returns the visible part of a key for lists: prefix and id.
pub fn display_prefix(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// Parses a presented key and checks its checksum, with no lookup.
/// Returns `None` for anything that is not a well-formed key of ours.
pub fn parse(presented: &str) -> Option<ParsedKey> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, tail) = rest.split_once('_')?;
    let id_ok = id.len() == ID_CHARS && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !id_ok || tail.len() != SECRET_CHARS + CHECKSUM_CHARS || !tail.is_ascii() {
        return None;
    }
    let (secret, presented_checksum) = tail.split_at(SECRET_CHARS);
    if !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if !constant_time_eq(presented_checksum.as_bytes(), checksum(id, secret).as_bytes()) {
        return None;
    }
    Some(ParsedKey {
        id: id.to_string(),
        secret: secret.to_string(),
    })
}

impl ParsedKey {
    /// Computes the keyed hash stored for this key's secret.
    pub fn secret_hash(&self, pepper: &[u8]) -> Vec<u8> {
        hmac_sha256(pepper, self.secret.as_bytes()).to_vec()
    }

    /// Returns whether the secret matches a stored hash under any of the peppers.
    pub fn matches(&self, stored: &[u8], peppers: &[[u8; 32]]) -> bool {
        // Every pepper is tried, so the time does not depend on which matched.
        peppers.iter().fold(false, |found, pepper| {
            constant_time_eq(&self.secret_hash(pepper), stored) | found
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_parses() {
        let (key, generated) = generate();
        assert!(key.starts_with("hrk_"));
        let parsed = parse(&key).unwrap();
        assert_eq!(parsed.id, generated.id);
    }

    #[test]
    fn mistyped_key_fails_checksum() {
        let (key, _) = generate();
        let mut chars: Vec<char> = key.chars().collect();
        let position = 4 + ID_CHARS + 1 + 3;
        chars[position] = if chars[position] == 'a' { 'b' } else { 'a' };
        let mistyped: String = chars.into_iter().collect();
        assert!(parse(&mistyped).is_none());
    }

    #[test]
    fn truncated_and_foreign_keys_rejected() {
        let (key, _) = generate();
        for candidate in [
            &key[..key.len() - 1],
            "hrk_",
            "",
            "Bearer x",
            "hrk_abc_def",
            "sk_live_0000",
        ] {
            assert!(parse(candidate).is_none(), "{candidate}");
        }
    }

    #[test]
    fn hash_depends_on_pepper() {
        let (_, parsed) = generate();
        let stored = parsed.secret_hash(&[1u8; 32]);
        assert!(parsed.matches(&stored, &[[1u8; 32]]));
        assert!(parsed.matches(&stored, &[[2u8; 32], [1u8; 32]]));
        assert!(!parsed.matches(&stored, &[[2u8; 32]]));
    }
}
