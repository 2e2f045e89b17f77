//! TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps) and recovery codes.
//!
//! A code is accepted for the current step and one step either side, and
//! only for a step newer than the last one accepted, so a code works once.

use totp_rs::{Algorithm, Secret, TOTP};

use crate::crypto::{constant_time_eq, hmac_sha256, random_bytes, random_token};

const DIGITS: usize = 6;
const STEP_SECONDS: u64 = 30;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// Generates a new 160-bit TOTP secret.
pub fn new_secret() -> Vec<u8> {
    random_bytes::<20>().to_vec()
}

fn totp(secret: &[u8]) -> Option<TOTP> {
    TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP_SECONDS, secret.to_vec()).ok()
}

/// Encodes the secret in base32, as authenticator apps expect it.
pub fn encode_secret(secret: &[u8]) -> String {
    Secret::Raw(secret.to_vec()).to_encoded().to_string()
}

/// Builds the `otpauth://` URI that authenticator apps import (usually as a QR code).
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let encode = |text: &str| {
        form_urlencoded::byte_serialize(text.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        encode(issuer),
        encode(account),
        encode_secret(secret),
        encode(issuer)
    )
}

/// Checks `code` at `unix_seconds`; returns the matching step if it is newer
/// than `last_step`.
pub fn verify_code(secret: &[u8], code: &str, unix_seconds: i64, last_step: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret)?;
    let current = unix_seconds.div_euclid(STEP_SECONDS as i64);
    let mut matched = None;
    // Every candidate step is computed, so timing does not reveal which matched.
    for step in [current - 1, current, current + 1] {
        let at = u64::try_from(step * STEP_SECONDS as i64).unwrap_or(0);
        if constant_time_eq(totp.generate(at).as_bytes(), code.as_bytes()) && step > last_step {
            matched = Some(step);
        }
    }
    matched
}

/// Generates the recovery codes shown once at enrolment.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = random_token(10).to_lowercase();
            format!("{}-{}", &raw[..5], &raw[5..])
        })
        .collect()
}

/// Hashes a recovery code for storage: a keyed hash, hex-encoded.
pub fn hash_recovery_code(pepper: &[u8; 32], code: &str) -> String {
    let normalized: String = code
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .collect();
    hex::encode(hmac_sha256(pepper, normalized.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vector() {
        // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s, 8 digits
        // "94287082"; the 6-digit code is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(verify_code(secret, "287082", 59, -1), Some(1));
    }

    #[test]
    fn code_accepted_once() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = totp(&secret).unwrap().generate(now as u64);
        let step = verify_code(&secret, &code, now, -1).unwrap();
        assert_eq!(verify_code(&secret, &code, now, step), None);
    }

    #[test]
    fn one_step_drift_allowed() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let previous = totp(&secret).unwrap().generate((now - 30) as u64);
        assert!(verify_code(&secret, &previous, now, -1).is_some());
        let too_old = totp(&secret).unwrap().generate((now - 90) as u64);
        assert_eq!(verify_code(&secret, &too_old, now, -1), None);
    }

    #[test]
    fn malformed_codes_rejected() {
        let secret = new_secret();
        for code in ["", "12345", "1234567", "abcdef", "12 456"] {
            assert_eq!(verify_code(&secret, code, 1_800_000_000, -1), None, "{code:?}");
        }
    }

    #[test]
    fn recovery_code_hash_ignores_format() {
        let pepper = [3u8; 32];
        assert_eq!(
            hash_recovery_code(&pepper, "abcde-fghij"),
            hash_recovery_code(&pepper, " ABCDEFGHIJ ")
        );
        assert_eq!(new_recovery_codes().len(), RECOVERY_CODES);
    }

    #[test]
    fn otpauth_uri_names_parameters() {
        let uri = otpauth_uri(&[1u8; 20], "hyper-registry", "alice@example.com");
        assert!(
            uri.starts_with("otpauth://totp/hyper-registry:alice%40example.com?secret="),
            "{uri}"
        );
        assert!(uri.contains("&digits=6&period=30"), "{uri}");
    }
}
