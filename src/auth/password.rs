//! Password hashing with Argon2id and the password policy.
//!
//! Hashing is CPU-heavy by design, so the server runs [`hash_password`] and
//! [`verify_password`] through the async wrappers here, which use the
//! dedicated low-priority pool of [`super::hashing_pool`], never an async
//! worker.

use std::sync::OnceLock;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in characters. A cap keeps hashing from being
/// used to burn CPU; Argon2 itself has no 72-byte truncation.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Longest accepted password in bytes (multi-byte characters count fully).
pub const MAX_PASSWORD_BYTES: usize = 512;

/// Ten thousand of the most common passwords would be better; this short list
/// stops the ones that every credential-stuffing list starts with.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordPolicyError {
    #[error("the password is shorter than {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password is longer than {MAX_PASSWORD_CHARS} characters or {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password is one of the most common passwords")]
    Common,
    #[error(
        "the password contains a control character such as NUL, tab or newline; use printable characters and spaces"
    )]
    ControlCharacter,
    #[error("the password is only whitespace; it may contain spaces, but also needs other characters")]
    OnlyWhitespace,
}

/// Checks a new password against the policy: a length range, no control
/// characters, not only whitespace, and not on a list of common passwords.
/// There are no composition rules, and spaces are allowed anywhere
/// (NIST SP 800-63B, section 5.1.1).
///
/// # Errors
/// Returns the first rule the password breaks.
pub fn check_policy(password: &str) -> Result<(), PasswordPolicyError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordPolicyError::TooLong);
    }
    // Unicode category Cc (C0, DEL and C1): such characters cannot be typed
    // at a login prompt, and terminals and form fields may drop them.
    if password.chars().any(char::is_control) {
        return Err(PasswordPolicyError::ControlCharacter);
    }
    if password.chars().all(char::is_whitespace) {
        return Err(PasswordPolicyError::OnlyWhitespace);
    }
    let lowered = password.to_lowercase();
    if COMMON_PASSWORDS.lines().any(|common| common.trim() == lowered) {
        return Err(PasswordPolicyError::Common);
    }
    Ok(())
}

/// Whether a password presented at login is too long to be worth hashing.
pub fn exceeds_maximum(password: &str) -> bool {
    password.len() > MAX_PASSWORD_BYTES || password.chars().count() > MAX_PASSWORD_CHARS
}

fn hasher() -> Argon2<'static> {
    // OWASP's recommended Argon2id parameters: 19 MiB, two passes, one lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string. Blocking: see the module docs.
///
/// # Errors
/// Fails only if Argon2 rejects its parameters, which are fixed here.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Verifies a password against a PHC string in constant time. Blocking.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when a login names an
/// unknown user so that the response takes as long as for a known one.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = crate::crypto::random_token(32);
        hash_password(&random).unwrap_or_default()
    })
}

/// Hashes on the hashing pool.
///
/// # Errors
/// Fails when the hashing job panics or Argon2 fails.
pub async fn hash_password_async(password: String) -> anyhow::Result<String> {
    let hash = super::hashing_pool::run(move || hash_password(&password)).await??;
    Ok(hash)
}

/// Verifies on the hashing pool; `None` verifies against the dummy hash and
/// returns false, taking the same time as a real check.
pub async fn verify_password_async(password: String, phc: Option<String>) -> bool {
    let verified = super::hashing_pool::run(move || match phc {
        Some(phc) => verify_password(&password, &phc),
        None => {
            verify_password(&password, dummy_hash());
            false
        }
    });
    verified.await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_length_bounds() {
        assert_eq!(check_policy("short"), Err(PasswordPolicyError::TooShort));
        assert_eq!(check_policy(&"x".repeat(129)), Err(PasswordPolicyError::TooLong));
        assert!(check_policy("correct horse battery staple").is_ok());
    }

    #[test]
    fn policy_rejects_common_password() {
        assert_eq!(check_policy("Password123"), Err(PasswordPolicyError::Common));
    }

    #[test]
    fn policy_rejects_control_characters() {
        let cases = [
            "\0".repeat(8),
            "pass\0word-long".to_string(),
            "tab\tinside-password".to_string(),
            "newline-at-end-1\n".to_string(),
            "carriage\rreturn-1".to_string(),
            "delete\u{7f}char-1".to_string(),
            "c1-control\u{85}-char".to_string(),
        ];
        for password in cases {
            assert_eq!(
                check_policy(&password),
                Err(PasswordPolicyError::ControlCharacter),
                "{password:?}"
            );
        }
    }

    #[test]
    fn policy_rejects_only_whitespace() {
        let cases = [" ".repeat(8), " ".repeat(40), "\u{a0}".repeat(8), "\u{3000}".repeat(8)];
        for password in cases {
            assert_eq!(
                check_policy(&password),
                Err(PasswordPolicyError::OnlyWhitespace),
                "{password:?}"
            );
        }
    }

    #[test]
    fn policy_allows_spaces_inside() {
        assert!(check_policy("correct horse battery staple").is_ok());
        assert!(check_policy("  leading and trailing  ").is_ok());
        assert!(check_policy("       x").is_ok(), "seven spaces and one letter");
    }

    #[test]
    fn multibyte_length_counts_characters() {
        // Eight characters, 24 bytes.
        assert!(check_policy("пароль日本語").is_ok());
    }

    #[test]
    fn long_shared_prefix_not_truncated() {
        let prefix = "a".repeat(72);
        let hash = hash_password(&format!("{prefix}one")).unwrap();
        assert!(verify_password(&format!("{prefix}one"), &hash));
        assert!(!verify_password(&format!("{prefix}two"), &hash));
    }

    #[test]
    fn multibyte_password_round_trip() {
        let hash = hash_password("pässwörd-日本語-🔑").unwrap();
        assert!(verify_password("pässwörd-日本語-🔑", &hash));
        assert!(!verify_password("passwörd-日本語-🔑", &hash));
    }

    #[test]
    fn hash_is_argon2id() {
        assert!(hash_password("some long passphrase").unwrap().starts_with("$argon2id$"));
    }
}
