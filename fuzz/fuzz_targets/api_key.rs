//! API key parsing: `api_key::parse` accepts exactly the strings that a
//! separate implementation of the key format accepts, an accepted key
//! re-formats to the same string, and damaging a valid key's checksum,
//! length or tail always rejects it.

#![no_main]

use hyper_registry::auth::api_key;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const ID_CHARS: usize = 12;
const SECRET_CHARS: usize = 32;
const CHECKSUM_CHARS: usize = 6;
const KEY_CHARS: usize = "hrk_".len() + ID_CHARS + 1 + SECRET_CHARS + CHECKSUM_CHARS;

/// Formats a key as `hrk_<id>_<secret><checksum>`, where the checksum is
/// the first three bytes of SHA-256 over the rest, in lowercase hex.
fn format_key(id: &str, secret: &str) -> String {
    let body = format!("hrk_{id}_{secret}");
    let digest = Sha256::digest(body.as_bytes());
    format!("{body}{}", hex::encode(&digest[..CHECKSUM_CHARS / 2]))
}

/// Returns the id and secret of `text` when it is a well-formed key.
fn reference_parse(text: &str) -> Option<(&str, &str)> {
    if text.len() != KEY_CHARS || !text.is_ascii() {
        return None;
    }
    let id = text.strip_prefix("hrk_")?.get(..ID_CHARS)?;
    let separator = &text[4 + ID_CHARS..4 + ID_CHARS + 1];
    let secret = &text[4 + ID_CHARS + 1..4 + ID_CHARS + 1 + SECRET_CHARS];
    let id_ok = id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let secret_ok = secret.bytes().all(|b| b.is_ascii_alphanumeric());
    if separator != "_" || !id_ok || !secret_ok || format_key(id, secret) != text {
        return None;
    }
    Some((id, secret))
}

/// Compares `api_key::parse` with the reference on one presented string.
fn check_presented(text: &str) {
    let parsed = api_key::parse(text);
    let expected = reference_parse(text);
    match (&parsed, expected) {
        (Some(key), Some((id, secret))) => {
            assert_eq!(key.id, id, "parsed id of {text:?}");
            assert_eq!(format_key(&key.id, secret), text, "re-formatted key");
            assert!(text.starts_with(&api_key::display_prefix(&key.id)));
            let pepper = [5u8; 32];
            assert!(key.matches(&key.secret_hash(&pepper), &[pepper]));
        }
        (None, None) => {}
        _ => panic!(
            "parse and the reference disagree on {text:?}: parse accepted {}, reference accepted {}",
            parsed.is_some(),
            expected.is_some()
        ),
    }
}

/// Maps bytes onto `alphabet`, padding with its first character to `length`.
fn chars_from(bytes: &[u8], alphabet: &[u8], length: usize) -> String {
    (0..length)
        .map(|index| {
            let byte = bytes.get(index).copied().unwrap_or(0);
            char::from(alphabet[usize::from(byte) % alphabet.len()])
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // The input as a presented key.
    check_presented(&String::from_utf8_lossy(data));

    // A well-formed key built from the input: it parses, and no damage to
    // its checksum, length or tail goes unnoticed.
    let id = chars_from(data, b"abcdefghijklmnopqrstuvwxyz0123456789", ID_CHARS);
    let secret_bytes = data.get(ID_CHARS..).unwrap_or_default();
    let secret = chars_from(
        secret_bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        SECRET_CHARS,
    );
    let key = format_key(&id, &secret);
    let parsed = api_key::parse(&key).unwrap_or_else(|| panic!("well-formed key {key:?} rejected"));
    assert_eq!(parsed.id, id);

    for position in KEY_CHARS - CHECKSUM_CHARS..KEY_CHARS {
        let mut damaged = key.clone().into_bytes();
        damaged[position] = if damaged[position] == b'0' { b'1' } else { b'0' };
        let damaged = String::from_utf8(damaged).unwrap_or_default();
        assert!(
            api_key::parse(&damaged).is_none(),
            "damaged checksum {damaged:?} accepted"
        );
    }
    for length in 0..KEY_CHARS {
        assert!(
            api_key::parse(&key[..length]).is_none(),
            "truncated key {length} accepted"
        );
    }
    let extra = data.last().map_or('x', |byte| char::from(*byte));
    assert!(
        api_key::parse(&format!("{key}{extra}")).is_none(),
        "key with a tail accepted"
    );
    assert!(
        api_key::parse(&format!(" {key}")).is_none(),
        "key with leading space accepted"
    );
});
