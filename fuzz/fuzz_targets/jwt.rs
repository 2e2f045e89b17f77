//! JWT verification with a fixed key and clock.
//!
//! Each input is verified as a token string, as it arrives in an
//! `Authorization` header. When it contains a newline, it is also read as
//! header JSON and claims JSON, which the target signs with the server's
//! key so that the claim checks behind the signature are reached too. Whatever verifies must
//! carry our HMAC, name our key id, offer no key material in its header,
//! match issuer, audience and token type, and be valid at the fixed time.

#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use hyper_registry::auth::jwt::{TokenError, TokenSigner, TokenType};
use hyper_registry::config::SecretString;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde::Deserialize;
use sha2::Sha256;

/// The secret that signed the seeds in `corpus/jwt`. Its key id is
/// `aad7f34857ad6431`.
const SECRET: &str = "fuzzing-secret-0123456789abcdef-0123456789";
const ISSUER: &str = "hyper-registry";
const AUDIENCE: &str = "hyper-registry-api";
const LEEWAY_SECONDS: u32 = 30;
/// The fixed verification time: 2027-01-15T08:00:00Z.
const NOW: i64 = 1_800_000_000;

/// The header fields that verification must have checked.
#[derive(Deserialize)]
struct HeaderFields {
    alg: String,
    kid: Option<String>,
    jwk: Option<IgnoredAny>,
    jku: Option<IgnoredAny>,
    x5u: Option<IgnoredAny>,
    x5c: Option<IgnoredAny>,
}

fn signer() -> &'static TokenSigner {
    static SIGNER: OnceLock<TokenSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TokenSigner::new(&SecretString::new(SECRET), &[], ISSUER, AUDIENCE, LEEWAY_SECONDS))
}

fn hmac_sha256(message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Computes the key id that `TokenSigner` derives from `SECRET`.
fn our_kid() -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"hyper-registry jwt kid");
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// Signs header and claims bytes as HS256 under `SECRET`.
fn sign(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Asserts that `token` carries our signature and a header we would accept.
fn assert_signed_by_us(token: &str) {
    let (signing_input, signature) = token.rsplit_once('.').expect("a verified token has a signature part");
    assert_eq!(
        signature,
        URL_SAFE_NO_PAD.encode(hmac_sha256(signing_input.as_bytes())),
        "verified token {token:?} does not carry our signature"
    );
    let header_part = signing_input.split('.').next().unwrap_or_default();
    let header_bytes = URL_SAFE_NO_PAD
        .decode(header_part)
        .expect("verified header is base64url");
    // Read like jsonwebtoken reads it: other fields are skipped unparsed.
    let header: HeaderFields = serde_json::from_slice(&header_bytes).expect("verified header is JSON");
    assert_eq!(header.alg, "HS256", "verified token {token:?}");
    assert_eq!(
        header.kid.as_deref(),
        Some(our_kid().as_str()),
        "verified token {token:?}"
    );
    let offers_key = header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some();
    assert!(!offers_key, "verified token {token:?} offers key material");
}

fn check_token(token: &str) {
    let now: DateTime<Utc> = DateTime::from_timestamp(NOW, 0).expect("NOW is a valid time");
    let leeway = i128::from(LEEWAY_SECONDS);
    let now_seconds = i128::from(NOW);
    for expected in [TokenType::Access, TokenType::Refresh] {
        match signer().verify(token, expected, now) {
            Ok(claims) => {
                assert_signed_by_us(token);
                assert_eq!(claims.iss, ISSUER);
                assert_eq!(claims.aud, AUDIENCE);
                assert_eq!(claims.token_type, expected);
                // The time checks again in i128, which cannot overflow.
                assert!(i128::from(claims.exp) + leeway > now_seconds, "expired token accepted");
                assert!(i128::from(claims.nbf) - leeway <= now_seconds, "future nbf accepted");
                assert!(i128::from(claims.iat) - leeway <= now_seconds, "future iat accepted");
            }
            Err(TokenError::Expired) => {
                // Expiry is judged only after the signature and claims pass.
                assert_signed_by_us(token);
            }
            Err(TokenError::Invalid(_)) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_token(&String::from_utf8_lossy(data));

    if let Some(newline) = data.iter().position(|&byte| byte == b'\n') {
        let (header, claims) = (&data[..newline], &data[newline + 1..]);
        check_token(&sign(header, claims));
    }
});
