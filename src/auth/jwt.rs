//! HS256 access tokens (RFC 7519) with the algorithm pinned (RFC 8725).
//!
//! Verification never takes key material or an algorithm from the token: the
//! header's `kid` only selects among our own configured keys, and any header
//! that offers a key (`jwk`, `jku`, `x5u`, `x5c`) is rejected outright.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::SecretString;
use crate::crypto::hmac_sha256;

/// What a token may be used for; a refresh token is never an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// The claims of every token we issue. All are required on verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "typ")]
    pub token_type: TokenType,
    /// The refresh-token family (one sign-in) this access token belongs to.
    #[serde(rename = "fam", default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Any reason a presented token is not acceptable. The precise reason goes
    /// to the debug log only, so callers cannot probe the verifier.
    #[error("invalid token")]
    Invalid(&'static str),
    #[error("token expired")]
    Expired,
}

struct SigningKey {
    id: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl SigningKey {
    fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose().as_bytes();
        SigningKey {
            id: hex::encode(&hmac_sha256(bytes, b"hyper-registry jwt kid")[..8]),
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        }
    }
}

/// Issues and verifies tokens with the current key, accepting previous keys
/// for verification during a rotation.
pub struct TokenSigner {
    current: SigningKey,
    previous: Vec<SigningKey>,
    issuer: String,
    audience: String,
    leeway_seconds: u64,
    /// Validation rules, built once because they contain sets of claim
    /// names that would otherwise be allocated on every request.
    validation: Validation,
    /// Claims of tokens whose header, signature, issuer and audience were
    /// checked, by SHA-256 of the whole token. Decoding is most of the cost
    /// of an authenticated request, and a client sends the same token until
    /// it expires. The signing keys never change while the process runs, so
    /// a verified token stays verified. The time claims and the token type
    /// are still checked on every use, and the caller checks revocation.
    verified: RwLock<HashMap<[u8; 32], Claims>>,
}

/// Verified tokens remembered at most; beyond it the map is cleared.
const MAX_VERIFIED: usize = 10_000;

impl TokenSigner {
    pub fn new(
        current: &SecretString,
        previous: &[SecretString],
        issuer: &str,
        audience: &str,
        leeway_seconds: u32,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        // Time claims are checked in `verify` against the injected clock instead.
        validation.validate_nbf = false;
        validation.validate_exp = false;
        TokenSigner {
            current: SigningKey::new(current),
            previous: previous.iter().map(SigningKey::new).collect(),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            leeway_seconds: u64::from(leeway_seconds),
            validation,
            verified: RwLock::default(),
        }
    }

    /// Issues an access token that belongs to the sign-in `family_id`.
    ///
    /// # Errors
    /// Fails only if serialisation fails, which the fixed claim types rule out.
    pub fn issue_in_family(
        &self,
        subject: Uuid,
        family_id: &str,
        now: DateTime<Utc>,
        lifetime: chrono::Duration,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        self.sign(subject, TokenType::Access, Some(family_id.to_string()), now, lifetime)
    }

    /// Issues a token for `subject`, valid from `now` for `lifetime`.
    ///
    /// # Errors
    /// Fails only if serialisation fails, which the fixed claim types rule out.
    pub fn issue(
        &self,
        subject: Uuid,
        token_type: TokenType,
        now: DateTime<Utc>,
        lifetime: chrono::Duration,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        self.sign(subject, token_type, None, now, lifetime)
    }

    fn sign(
        &self,
        subject: Uuid,
        token_type: TokenType,
        family_id: Option<String>,
        now: DateTime<Utc>,
        lifetime: chrono::Duration,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: subject.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: (now + lifetime).timestamp(),
            jti: Uuid::new_v4().to_string(),
            token_type,
            family_id,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.current.encoding)?;
        Ok((token, claims))
    }

    /// Verifies a token of the expected type at time `now`.
    ///
    /// # Errors
    /// [`TokenError::Expired`] past `exp` plus leeway, [`TokenError::Invalid`]
    /// for everything else.
    pub fn verify(&self, token: &str, expected: TokenType, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self.verified.read().ok().and_then(|map| map.get(&digest).cloned());
        let claims = match remembered {
            Some(claims) => claims,
            None => {
                let claims = self.decode(token)?;
                if let Ok(mut map) = self.verified.write() {
                    if map.len() >= MAX_VERIFIED {
                        map.clear();
                    }
                    map.insert(digest, claims.clone());
                }
                claims
            }
        };

        let leeway = i64::try_from(self.leeway_seconds).unwrap_or(60);
        let now = now.timestamp();
        // Saturating, because a signed token may carry any i64 here.
        if claims.exp.saturating_add(leeway) <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.saturating_sub(leeway) > now {
            return Err(TokenError::Invalid("not yet valid"));
        }
        if claims.iat.saturating_sub(leeway) > now {
            return Err(TokenError::Invalid("issued in the future"));
        }
        if claims.token_type != expected {
            return Err(TokenError::Invalid("wrong token type"));
        }
        Ok(claims)
    }

    /// Checks the header, the signature, the issuer and the audience, and
    /// returns the claims.
    fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        // decode_header fails for any `alg` outside jsonwebtoken's list, which
        // has no `none`, and for a missing `alg`.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid("malformed header"))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid("algorithm is not HS256"));
        }
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some() {
            return Err(TokenError::Invalid("header offers key material"));
        }
        let kid = header.kid.ok_or(TokenError::Invalid("missing kid"))?;
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|key| key.id == kid)
            .ok_or(TokenError::Invalid("unknown kid"))?;

        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid("signature or claims rejected"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn signer() -> TokenSigner {
        TokenSigner::new(
            &SecretString::new(SECRET),
            &[],
            "hyper-registry",
            "hyper-registry-api",
            30,
        )
    }

    fn issue(signer: &TokenSigner, token_type: TokenType) -> String {
        signer
            .issue(Uuid::new_v4(), token_type, Utc::now(), chrono::Duration::minutes(5))
            .unwrap()
            .0
    }

    /// Re-signs `header` and `claims` (JSON text) with HMAC-SHA-256 under our secret.
    fn forge(header: &str, claims: &str) -> String {
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = hmac_sha256(SECRET.as_bytes(), signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn valid_claims() -> String {
        let now = Utc::now().timestamp();
        format!(
            r#"{{"sub":"{}","iss":"hyper-registry","aud":"hyper-registry-api","exp":{},"iat":{now},"nbf":{now},"jti":"x","typ":"access"}}"#,
            Uuid::new_v4(),
            now + 300
        )
    }

    fn kid() -> String {
        signer().current.id.clone()
    }

    #[test]
    fn issued_token_verifies() {
        let signer = signer();
        let token = issue(&signer, TokenType::Access);
        assert!(signer.verify(&token, TokenType::Access, Utc::now()).is_ok());
    }

    #[test]
    fn forged_helper_accepted_when_header_is_ours() {
        let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, kid());
        assert!(signer()
            .verify(&forge(&header, &valid_claims()), TokenType::Access, Utc::now())
            .is_ok());
    }

    #[test]
    fn foreign_algorithms_rejected() {
        for alg in [
            "none", "None", "NONE", "nOnE", "HS384", "HS512", "RS256", "ES256", "PS256",
        ] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#, kid());
            let result = signer().verify(&forge(&header, &valid_claims()), TokenType::Access, Utc::now());
            assert!(result.is_err(), "alg {alg} must be rejected");
        }
    }

    #[test]
    fn missing_alg_rejected() {
        let header = format!(r#"{{"typ":"JWT","kid":"{}"}}"#, kid());
        assert!(signer()
            .verify(&forge(&header, &valid_claims()), TokenType::Access, Utc::now())
            .is_err());
    }

    #[test]
    fn header_key_material_rejected() {
        let headers = [
            format!(r#"{{"alg":"HS256","kid":"{}","jku":"http://127.0.0.1:1/keys"}}"#, kid()),
            format!(
                r#"{{"alg":"HS256","kid":"{}","jwk":{{"kty":"oct","k":"AAAA"}}}}"#,
                kid()
            ),
        ];
        for header in headers {
            assert!(
                signer()
                    .verify(&forge(&header, &valid_claims()), TokenType::Access, Utc::now())
                    .is_err(),
                "{header}"
            );
        }
    }

    #[test]
    fn odd_kid_values_rejected() {
        for kid in ["../../etc/passwd", "' OR 1=1 --", "", "/dev/null"] {
            let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, kid.replace('"', "\\\""));
            assert!(
                signer()
                    .verify(&forge(&header, &valid_claims()), TokenType::Access, Utc::now())
                    .is_err(),
                "kid {kid}"
            );
        }
    }

    #[test]
    fn missing_exp_rejected() {
        let now = Utc::now().timestamp();
        let claims = format!(
            r#"{{"sub":"s","iss":"hyper-registry","aud":"hyper-registry-api","iat":{now},"nbf":{now},"jti":"x","typ":"access"}}"#
        );
        let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, kid());
        assert!(signer()
            .verify(&forge(&header, &claims), TokenType::Access, Utc::now())
            .is_err());
    }

    #[test]
    fn future_nbf_rejected() {
        let now = Utc::now().timestamp();
        let claims = format!(
            r#"{{"sub":"s","iss":"hyper-registry","aud":"hyper-registry-api","exp":{},"iat":{now},"nbf":{},"jti":"x","typ":"access"}}"#,
            now + 3600,
            now + 600
        );
        let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, kid());
        assert!(signer()
            .verify(&forge(&header, &claims), TokenType::Access, Utc::now())
            .is_err());
    }

    #[test]
    fn extreme_time_claims_do_not_overflow() {
        let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, kid());
        let now = Utc::now().timestamp();
        let claims = |exp: i64, iat: i64| {
            format!(
                r#"{{"sub":"s","iss":"hyper-registry","aud":"hyper-registry-api","exp":{exp},"iat":{iat},"nbf":{now},"jti":"x","typ":"access"}}"#
            )
        };
        let verify = |claims: String| signer().verify(&forge(&header, &claims), TokenType::Access, Utc::now());

        assert!(verify(claims(i64::MAX, now)).is_ok());
        assert!(verify(claims(now + 300, i64::MIN)).is_ok());
        // jsonwebtoken reads `exp` as u64, so a negative one is invalid.
        assert!(verify(claims(i64::MIN, now)).is_err());
        assert_eq!(
            verify(claims(now + 300, i64::MAX)).unwrap_err(),
            TokenError::Invalid("issued in the future")
        );
    }

    #[test]
    fn expired_token_rejected_after_leeway() {
        let signer = signer();
        let token = issue(&signer, TokenType::Access);
        let later = Utc::now() + chrono::Duration::minutes(5) + chrono::Duration::seconds(31);
        assert_eq!(
            signer.verify(&token, TokenType::Access, later).unwrap_err(),
            TokenError::Expired
        );
        let within_leeway = Utc::now() + chrono::Duration::minutes(5) + chrono::Duration::seconds(10);
        assert!(signer.verify(&token, TokenType::Access, within_leeway).is_ok());
    }

    #[test]
    fn refresh_token_not_access_token() {
        let signer = signer();
        let token = issue(&signer, TokenType::Refresh);
        assert!(signer.verify(&token, TokenType::Access, Utc::now()).is_err());
    }

    #[test]
    fn wrong_audience_rejected() {
        let other = TokenSigner::new(&SecretString::new(SECRET), &[], "hyper-registry", "another-api", 30);
        let token = issue(&other, TokenType::Access);
        assert!(signer().verify(&token, TokenType::Access, Utc::now()).is_err());
    }

    #[test]
    fn previous_key_verifies_during_rotation() {
        let old = signer();
        let token = issue(&old, TokenType::Access);
        let rotated = TokenSigner::new(
            &SecretString::new("a-brand-new-secret-of-at-least-32-chars"),
            &[SecretString::new(SECRET)],
            "hyper-registry",
            "hyper-registry-api",
            30,
        );
        assert!(rotated.verify(&token, TokenType::Access, Utc::now()).is_ok());
        let new_token = issue(&rotated, TokenType::Access);
        assert!(old.verify(&new_token, TokenType::Access, Utc::now()).is_err());
    }
}
