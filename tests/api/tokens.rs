//! Attacks on bearer tokens. Every forged, altered or stale token must get
//! 401 on `GET /auth/me`.
//!
//! Forged tokens are signed with the server's own `JWT_SECRET_KEY`, which is
//! more than a real attacker has, so a rejection shows that the header or
//! the claims were checked and not only the signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Duration;
use hmac::{Hmac, Mac};
use hyper_registry::clock::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

use crate::helpers::{problem_code, TestApp, JWT_SECRET, USER_PASSWORD};

/// How the forged token's third segment is produced.
#[derive(Clone, Copy, Debug)]
enum Signature {
    HmacSha256,
    HmacSha384,
    HmacSha512,
    /// An empty third segment, as `alg: none` tokens carry.
    Empty,
}

fn hmac_signature(signing_input: &str, key: &[u8], signature: Signature) -> Vec<u8> {
    match signature {
        Signature::HmacSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Signature::HmacSha384 => {
            let mut mac = Hmac::<Sha384>::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Signature::HmacSha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Signature::Empty => Vec::new(),
    }
}

/// Builds a compact JWS from `header` and `claims`, signed with `key`.
fn forge(header: &Value, claims: &Value, key: &[u8], signature: Signature) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = hmac_signature(&signing_input, key, signature);
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Decodes one base64url segment of a token as JSON.
fn decode_segment(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).expect("token segment");
    let bytes = URL_SAFE_NO_PAD.decode(segment).expect("base64url segment");
    serde_json::from_slice(&bytes).expect("JSON segment")
}

/// Returns the `kid` that the server puts in its own tokens.
fn server_kid(app: &TestApp) -> String {
    decode_segment(&app.admin_token, 0)["kid"]
        .as_str()
        .expect("issued tokens carry a kid")
        .to_string()
}

fn our_header(app: &TestApp) -> Value {
    json!({"alg": "HS256", "typ": "JWT", "kid": server_kid(app)})
}

/// Claims the server would accept for `subject` at the test clock's time.
fn valid_claims(app: &TestApp, subject: &str) -> Value {
    let now = app.clock.now().timestamp();
    json!({
        "sub": subject,
        "iss": "hyper-registry",
        "aud": "hyper-registry-api",
        "exp": now + 300,
        "iat": now,
        "nbf": now,
        "jti": format!("forged-{now}"),
        "typ": "access",
    })
}

async fn user_id_of(app: &TestApp, token: &str) -> String {
    let response = app.get("/auth/me", token).await;
    assert_eq!(response.status(), StatusCode::OK, "reading /auth/me for the id");
    let body: Value = response.json().await.expect("me body");
    body["id"].as_str().expect("id").to_string()
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/auth/me", token).await.status()
}

async fn set_disabled(app: &TestApp, user_id: &str, disabled: bool) {
    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{user_id}"),
            Some(&app.admin_token),
        )
        .json(&json!({"disabled": disabled}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "setting disabled={disabled} on {user_id}"
    );
}

#[tokio::test]
async fn forged_control_token_accepted() {
    // Arrange: a token built exactly like the server's, to prove that the
    // forging helper is right and the rejections below are meaningful.
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let token = forge(
        &our_header(&app),
        &valid_claims(&app, &admin_id),
        JWT_SECRET.as_bytes(),
        Signature::HmacSha256,
    );

    // Act
    let status = me_status(&app, &token).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "a correctly built HS256 token is accepted");
}

#[tokio::test]
async fn alg_none_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let claims = valid_claims(&app, &admin_id);
    let kid = server_kid(&app);

    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        for signature in [Signature::Empty, Signature::HmacSha256] {
            let token = forge(&header, &claims, JWT_SECRET.as_bytes(), signature);

            let status = me_status(&app, &token).await;

            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "alg {alg:?} with signature {signature:?} is rejected"
            );
        }
    }
}

#[tokio::test]
async fn foreign_algorithms_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let claims = valid_claims(&app, &admin_id);
    let kid = server_kid(&app);
    // RS256, ES256 and PS256 are signed with HMAC under our secret: the
    // key-confusion attack, where a verifier trusting `alg` would check an
    // HMAC against a public key.
    let cases = [
        ("HS384", Signature::HmacSha384),
        ("HS512", Signature::HmacSha512),
        ("RS256", Signature::HmacSha256),
        ("ES256", Signature::HmacSha256),
        ("PS256", Signature::HmacSha256),
    ];

    for (alg, signature) in cases {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let token = forge(&header, &claims, JWT_SECRET.as_bytes(), signature);

        let status = me_status(&app, &token).await;

        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "alg {alg} signed with {signature:?} is rejected"
        );
    }
}

#[tokio::test]
async fn missing_alg_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let header = json!({"typ": "JWT", "kid": server_kid(&app)});
    let token = forge(
        &header,
        &valid_claims(&app, &admin_id),
        JWT_SECRET.as_bytes(),
        Signature::HmacSha256,
    );

    let status = me_status(&app, &token).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "a header without alg is rejected");
}

#[tokio::test]
async fn future_nbf_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let mut claims = valid_claims(&app, &admin_id);
    // Two minutes ahead, well past the 30 s leeway.
    claims["nbf"] = json!(app.clock.now().timestamp() + 120);
    let token = forge(&our_header(&app), &claims, JWT_SECRET.as_bytes(), Signature::HmacSha256);

    let status = me_status(&app, &token).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "nbf 120 s in the future is rejected");
}

#[tokio::test]
async fn future_iat_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let mut claims = valid_claims(&app, &admin_id);
    claims["iat"] = json!(app.clock.now().timestamp() + 120);
    let token = forge(&our_header(&app), &claims, JWT_SECRET.as_bytes(), Signature::HmacSha256);

    let status = me_status(&app, &token).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "iat 120 s in the future is rejected");
}

#[tokio::test]
async fn missing_required_claims_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;

    for claim in ["exp", "nbf", "iat", "iss", "aud", "sub", "typ"] {
        let mut claims = valid_claims(&app, &admin_id);
        claims.as_object_mut().expect("claims object").remove(claim);
        let token = forge(&our_header(&app), &claims, JWT_SECRET.as_bytes(), Signature::HmacSha256);

        let status = me_status(&app, &token).await;

        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a token without `{claim}` is rejected"
        );
    }
}

#[tokio::test]
async fn wrong_issuer_or_audience_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let cases = [("iss", "another-issuer"), ("aud", "another-api")];

    for (claim, value) in cases {
        let mut claims = valid_claims(&app, &admin_id);
        claims[claim] = json!(value);
        let token = forge(&our_header(&app), &claims, JWT_SECRET.as_bytes(), Signature::HmacSha256);

        let status = me_status(&app, &token).await;

        assert_eq!(status, StatusCode::UNAUTHORIZED, "{claim} = {value:?} is rejected");
    }
}

#[tokio::test]
async fn refresh_token_type_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let mut claims = valid_claims(&app, &admin_id);
    claims["typ"] = json!("refresh");
    let token = forge(&our_header(&app), &claims, JWT_SECRET.as_bytes(), Signature::HmacSha256);

    let status = me_status(&app, &token).await;

    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a refresh token is not accepted as an access token"
    );
}

#[tokio::test]
async fn issued_refresh_token_rejected_as_access() {
    let app = TestApp::spawn().await;
    let login = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": crate::helpers::ADMIN_USERNAME, "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login sent");
    let body: Value = login.json().await.expect("login body");
    let refresh_token = body["refresh_token"]
        .as_str()
        .expect("refresh_token in the login response")
        .to_string();

    let status = me_status(&app, &refresh_token).await;

    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a refresh token from /auth/login is not accepted as a bearer token"
    );
}

#[tokio::test]
async fn header_key_material_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let claims = valid_claims(&app, &admin_id);
    let kid = server_kid(&app);
    let attacker_key = b"attacker-chosen-hmac-key-0123456789";
    // The jku and x5u addresses must never be fetched. Nothing listens on port 1 of loopback.
    let cases = [
        (
            "jwk with the attacker's key",
            json!({"alg": "HS256", "kid": kid, "jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(attacker_key)}}),
            attacker_key.as_slice(),
        ),
        (
            "jwk signed with our secret",
            json!({"alg": "HS256", "kid": kid, "jwk": {"kty": "oct", "k": "AAAA"}}),
            JWT_SECRET.as_bytes(),
        ),
        (
            "jku",
            json!({"alg": "HS256", "kid": kid, "jku": "http://127.0.0.1:1/jwks.json"}),
            JWT_SECRET.as_bytes(),
        ),
        (
            "x5u",
            json!({"alg": "HS256", "kid": kid, "x5u": "http://127.0.0.1:1/cert.pem"}),
            JWT_SECRET.as_bytes(),
        ),
    ];

    for (case, header, key) in cases {
        let token = forge(&header, &claims, key, Signature::HmacSha256);

        let status = me_status(&app, &token).await;

        assert_eq!(status, StatusCode::UNAUTHORIZED, "header with {case} is rejected");
    }
}

#[tokio::test]
async fn odd_kid_values_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let claims = valid_claims(&app, &admin_id);
    let kids = [
        "../../../../../../dev/null",
        "/dev/null",
        "/etc/passwd",
        "' OR '1'='1",
        "x' UNION SELECT 'secret' --",
        "1; DROP TABLE users; --",
        "",
    ];
    // A verifier that loads the key from a file or SQL named by `kid` would
    // get an empty key here. Our own secret checks that an unknown kid alone fails.
    let keys: [(&str, &[u8]); 2] = [("an empty key", b""), ("our secret", JWT_SECRET.as_bytes())];

    for kid in kids {
        for (key_name, key) in keys {
            let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
            let token = forge(&header, &claims, key, Signature::HmacSha256);

            let status = me_status(&app, &token).await;

            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "kid {kid:?} signed with {key_name} is rejected"
            );
        }
    }
}

#[tokio::test]
async fn missing_kid_rejected() {
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let token = forge(
        &header,
        &valid_claims(&app, &admin_id),
        JWT_SECRET.as_bytes(),
        Signature::HmacSha256,
    );

    let status = me_status(&app, &token).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "a header without kid is rejected");
}

#[tokio::test]
async fn tampered_payload_rejected() {
    // Arrange: a viewer's real token with its payload swapped for one naming
    // the administrator, keeping the viewer's signature.
    let app = TestApp::spawn().await;
    let admin_id = user_id_of(&app, &app.admin_token).await;
    let (_, viewer_token) = app.create_user("tamper-viewer", &["viewer"]).await;
    let mut claims = decode_segment(&viewer_token, 1);
    claims["sub"] = json!(admin_id);
    let parts: Vec<&str> = viewer_token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );

    // Act
    let status = me_status(&app, &tampered).await;

    // Assert
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a payload changed after signing is rejected"
    );
}

#[tokio::test]
async fn altered_signature_rejected() {
    let app = TestApp::spawn().await;
    let (header, rest) = app.admin_token.split_once('.').expect("token has segments");
    let (payload, signature) = rest.split_once('.').expect("token has a signature");
    let mut signature_bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url signature");
    signature_bytes[0] ^= 0x01;
    let altered = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(signature_bytes));

    let status = me_status(&app, &altered).await;

    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token with one signature bit flipped is rejected"
    );
}

#[tokio::test]
async fn token_expires_after_leeway() {
    // Arrange: tokens live 60 minutes and the leeway is 30 seconds.
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();

    // Act and assert: still valid inside the leeway, rejected past it.
    app.clock.advance(Duration::minutes(60) + Duration::seconds(10));
    let within_leeway = me_status(&app, &token).await;
    assert_eq!(
        within_leeway,
        StatusCode::OK,
        "60 min 10 s after issue the token is inside the leeway"
    );

    app.clock.advance(Duration::seconds(21));
    let response = app.get("/auth/me", &token).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "60 min 31 s after issue the token has expired"
    );
    let code = problem_code(response).await;
    assert_eq!(code, "token_expired", "an expired token gets code token_expired");
}

#[tokio::test]
async fn disabled_user_token_rejected() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.create_user("soon-disabled", &["viewer"]).await;
    assert_eq!(
        me_status(&app, &token).await,
        StatusCode::OK,
        "the token works before the account is disabled"
    );

    set_disabled(&app, &user_id, true).await;
    let while_disabled = me_status(&app, &token).await;
    set_disabled(&app, &user_id, false).await;
    let after_enabling = me_status(&app, &token).await;

    assert_eq!(
        while_disabled,
        StatusCode::UNAUTHORIZED,
        "a disabled user's token is rejected at once"
    );
    assert_eq!(
        after_enabling,
        StatusCode::UNAUTHORIZED,
        "a token issued before disabling stays invalid after enabling"
    );
}

#[tokio::test]
async fn reenabled_user_new_token_accepted() {
    // Arrange: disable, let a second pass, enable again.
    let app = TestApp::spawn().await;
    let (user_id, _) = app.create_user("reenabled", &["viewer"]).await;
    set_disabled(&app, &user_id, true).await;
    app.clock.advance(Duration::seconds(1));
    set_disabled(&app, &user_id, false).await;

    // Act
    let fresh_token = app.login("reenabled", USER_PASSWORD).await;
    let status = me_status(&app, &fresh_token).await;

    // Assert
    assert_eq!(
        status,
        StatusCode::OK,
        "a token issued after the account is enabled again is accepted"
    );
}

#[tokio::test]
async fn reenabled_same_second_token_accepted() {
    // Arrange: disable and enable again without the clock moving, as an
    // operator script would within one second.
    let app = TestApp::spawn().await;
    let (user_id, _) = app.create_user("reenabled-fast", &["viewer"]).await;
    set_disabled(&app, &user_id, true).await;
    set_disabled(&app, &user_id, false).await;

    // Act
    let fresh_token = app.login("reenabled-fast", USER_PASSWORD).await;
    let status = me_status(&app, &fresh_token).await;

    // Assert
    assert_eq!(
        status,
        StatusCode::OK,
        "a token issued after the account is enabled again is accepted"
    );
}

#[tokio::test]
async fn missing_credentials_get_bearer_challenge() {
    let app = TestApp::spawn().await;

    let response = app
        .request(Method::GET, "/auth/me", None)
        .send()
        .await
        .expect("request sent");

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no credentials gives 401");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        challenge.starts_with("Bearer"),
        "the 401 carries WWW-Authenticate: Bearer, got {challenge:?}"
    );
}

#[tokio::test]
async fn rejected_token_gets_bearer_challenge() {
    let app = TestApp::spawn().await;
    let cases = [
        ("a garbage bearer token", "Bearer not-a-token"),
        ("an empty bearer token", "Bearer "),
        ("the Basic scheme", "Basic YWRtaW46cGFzc3dvcmQ="),
    ];

    for (case, authorization) in cases {
        let response = app
            .client
            .get(app.url("/auth/me"))
            .header("authorization", authorization)
            .send()
            .await
            .expect("request sent");

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case} gives 401");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            challenge.starts_with("Bearer"),
            "{case}: the 401 carries WWW-Authenticate: Bearer, got {challenge:?}"
        );
    }
}
