//! Opaque pagination cursors: base64url of a small JSON payload plus an HMAC,
//! so a tampered cursor, or one taken from another listing, is rejected.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use crate::crypto::{constant_time_eq, hmac_sha256};

const TAG_BYTES: usize = 16;
/// Longest cursor accepted; real ones are far shorter.
const MAX_CURSOR_CHARS: usize = 1024;

/// Encodes `position` for the listing named `kind`.
pub fn encode<T: Serialize>(key: &[u8; 32], kind: &str, position: &T) -> String {
    let payload = serde_json::to_vec(position).unwrap_or_default();
    let tag = tag(key, kind, &payload);
    let mut bytes = payload;
    bytes.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a cursor made by [`encode`] for the same `kind`.
///
/// # Errors
/// [`ApiError::InvalidCursor`] for anything else.
pub fn decode<T: DeserializeOwned>(key: &[u8; 32], kind: &str, cursor: &str) -> Result<T, ApiError> {
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(ApiError::InvalidCursor);
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ApiError::InvalidCursor)?;
    if bytes.len() <= TAG_BYTES {
        return Err(ApiError::InvalidCursor);
    }
    let (payload, presented) = bytes.split_at(bytes.len() - TAG_BYTES);
    if !constant_time_eq(presented, &tag(key, kind, payload)) {
        return Err(ApiError::InvalidCursor);
    }
    serde_json::from_slice(payload).map_err(|_| ApiError::InvalidCursor)
}

fn tag(key: &[u8; 32], kind: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = kind.as_bytes().to_vec();
    message.push(0);
    message.extend_from_slice(payload);
    hmac_sha256(key, &message)[..TAG_BYTES].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9u8; 32];

    #[test]
    fn cursor_round_trip() {
        let cursor = encode(&KEY, "entries", &42u32);
        assert_eq!(decode::<u32>(&KEY, "entries", &cursor).unwrap(), 42);
    }

    #[test]
    fn foreign_cursor_rejected() {
        let cursor = encode(&KEY, "search", &42u32);
        assert!(decode::<u32>(&KEY, "entries", &cursor).is_err());
        assert!(decode::<u32>(&[1u8; 32], "search", &cursor).is_err());
    }

    #[test]
    fn tampered_cursor_rejected() {
        let cursor = encode(&KEY, "entries", &42u32);
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        bytes[0] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        for candidate in [tampered.as_str(), "", "' UNION SELECT 1 --", "!!!!", "AAAA"] {
            assert!(decode::<u32>(&KEY, "entries", candidate).is_err(), "{candidate}");
        }
    }
}
