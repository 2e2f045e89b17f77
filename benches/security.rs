//! Per-request costs of the security layer, measured without HTTP: token
//! verification, API-key checks, permission checks, rate-limit decisions,
//! audit line rendering and field encryption.
//!
//! Run with `cargo bench --bench security`. The Redis rate-limiter group runs
//! only when `REDIS_URL` or `TEST_REDIS_URL` is set. Results and the machine
//! they were taken on are recorded in `docs/benchmarks.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokio::runtime::Runtime;
use uuid::Uuid;

use hyper_registry::audit::{render_line, AuditEvent, Severity, Status, GENESIS_HASH};
use hyper_registry::auth::api_key;
use hyper_registry::auth::jwt::{TokenSigner, TokenType};
use hyper_registry::auth::service::AuthSettings;
use hyper_registry::auth::Authenticator;
use hyper_registry::clock::{Clock, ManualClock};
use hyper_registry::config::SecretString;
use hyper_registry::crypto::{AesGcmCipher, Cipher};
use hyper_registry::events::RedisLink;
use hyper_registry::ratelimit::redis::RedisRateLimiter;
use hyper_registry::ratelimit::{Limit, LocalRateLimiter, RateLimiter};
use hyper_registry::rbac::{builtin_roles, resolve_permissions};
use hyper_registry::storage::{ApiKeyRecord, User};

const JWT_SECRET: &str = "benchmark-signing-secret-of-more-than-32-characters";
const ISSUER: &str = "hyper-registry";
const AUDIENCE: &str = "hyper-registry-api";
const PEPPER: [u8; 32] = [7u8; 32];

/// A limit high enough that no decision in a benchmark run is a rejection.
const NEVER_REJECT: Limit = Limit {
    per_minute: 100_000_000,
    burst: 100_000_000,
};

fn signer() -> TokenSigner {
    TokenSigner::new(&SecretString::new(JWT_SECRET), &[], ISSUER, AUDIENCE, 30)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread Tokio runtime starts")
}

fn jwt(c: &mut Criterion) {
    let signer = signer();
    let (token, _) = signer
        .issue(Uuid::new_v4(), TokenType::Access, Utc::now(), Duration::minutes(15))
        .expect("token issued");

    // A token's first use decodes it and checks its signature; later uses
    // find it among the verified tokens and check only the time claims.
    c.bench_function("jwt/verify_hs256_first_use", |b| {
        b.iter_batched(
            || {
                signer
                    .issue(Uuid::new_v4(), TokenType::Access, Utc::now(), Duration::minutes(15))
                    .expect("token issued")
                    .0
            },
            |fresh| {
                signer
                    .verify(black_box(&fresh), TokenType::Access, Utc::now())
                    .expect("token verifies")
            },
            BatchSize::SmallInput,
        );
    });
    c.bench_function("jwt/verify_hs256_again", |b| {
        b.iter(|| {
            signer
                .verify(black_box(&token), TokenType::Access, Utc::now())
                .expect("token verifies")
        });
    });
}

fn api_key_checks(c: &mut Criterion) {
    let (key, parsed) = api_key::generate();
    let stored = parsed.secret_hash(&PEPPER);
    let peppers = [PEPPER];

    c.bench_function("api_key/parse_checksum", |b| {
        b.iter(|| api_key::parse(black_box(&key)).expect("key parses"));
    });
    c.bench_function("api_key/parse_and_hmac_match", |b| {
        b.iter(|| {
            let parsed = api_key::parse(black_box(&key)).expect("key parses");
            assert!(parsed.matches(&stored, &peppers));
        });
    });
}

/// A SQLite-backed authenticator with one `user` account and one API key of
/// that account. Its clock does not advance, so every lookup after the first
/// is a cache hit.
struct AuthFixture {
    _directory: tempfile::TempDir,
    authenticator: Authenticator,
    access_token: String,
    api_key: String,
}

async fn auth_fixture() -> AuthFixture {
    let directory = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", directory.path().join("bench.db").display());
    let store = hyper_registry::storage::connect(&url)
        .await
        .expect("SQLite store opens");
    let now = Utc::now();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));

    let user = User {
        id: Uuid::new_v4(),
        username: "bench-user".to_string(),
        password_hash: hyper_registry::auth::password::dummy_hash().to_string(),
        roles: vec!["user".to_string()],
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        mfa_enabled: false,
        tokens_valid_after: now - Duration::minutes(1),
        created_at: now,
        updated_at: now,
    };
    store.insert_user(&user).await.expect("user inserted");

    let (api_key, parsed) = api_key::generate();
    let record = ApiKeyRecord {
        id: parsed.id.clone(),
        user_id: user.id,
        name: "bench-key".to_string(),
        secret_hash: parsed.secret_hash(&PEPPER),
        permissions: vec!["read".to_string(), "search".to_string()],
        rate_limit_per_minute: None,
        created_at: now,
        expires_at: now + Duration::days(30),
        revoked_at: None,
        last_used_at: None,
    };
    store.insert_api_key(&record).await.expect("API key inserted");

    let signer = signer();
    let (access_token, _) = signer
        .issue_in_family(user.id, "bench-family", now, Duration::minutes(15))
        .expect("token issued");
    let settings = AuthSettings {
        access_token_minutes: 15,
        refresh_token_days: 7,
        mfa_required_roles: Vec::new(),
        max_failed_attempts: 5,
        lockout_minutes: 15,
        max_api_keys_per_user: 20,
    };
    let cipher: Arc<dyn Cipher> = Arc::new(AesGcmCipher::new(&[9u8; 32], &[]));
    let authenticator = Authenticator::new(store, signer, vec![PEPPER], clock, settings, cipher)
        .await
        .expect("authenticator builds");

    AuthFixture {
        _directory: directory,
        authenticator,
        access_token,
        api_key,
    }
}

/// Times `iterations` awaited calls inside one `block_on`, so that entering
/// the runtime is not part of each measured call.
fn time_async<F, Fut>(runtime: &Runtime, iterations: u64, mut call: F) -> StdDuration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iterations {
            call().await;
        }
        start.elapsed()
    })
}

fn authenticator(c: &mut Criterion) {
    let runtime = runtime();
    let fixture = runtime.block_on(auth_fixture());
    let auth = &fixture.authenticator;

    c.bench_function("authenticator/bearer_cached_user", |b| {
        b.iter_custom(|iterations| {
            time_async(&runtime, iterations, || async {
                let principal = auth.authenticate_bearer(&fixture.access_token).await;
                assert!(principal.expect("token accepted").can("read"));
            })
        });
    });
    c.bench_function("authenticator/api_key_cached_lookup", |b| {
        b.iter_custom(|iterations| {
            time_async(&runtime, iterations, || async {
                let principal = auth.authenticate_api_key(&fixture.api_key).await;
                assert!(principal.expect("key accepted").can("read"));
            })
        });
    });
}

fn permissions(c: &mut Criterion) {
    let roles = builtin_roles()
        .into_iter()
        .map(|role| (role.name.clone(), role))
        .collect();
    let user = resolve_permissions(&["user".to_string()], &roles);
    let admin = resolve_permissions(&["admin".to_string()], &roles);

    c.bench_function("rbac/allows_user_read", |b| {
        b.iter(|| assert!(user.allows(black_box("read"))));
    });
    c.bench_function("rbac/allows_user_denied", |b| {
        b.iter(|| assert!(!user.allows(black_box("users:admin"))));
    });
    c.bench_function("rbac/allows_admin_wildcard", |b| {
        b.iter(|| assert!(admin.allows(black_box("audit:read"))));
    });
}

fn local_rate_limiter(c: &mut Criterion) {
    let limiter = LocalRateLimiter::new();
    // The measured bucket is one of 10,000 live buckets, as on a busy instance.
    for index in 0..10_000 {
        limiter.check_now(&format!("user:{index}"), NEVER_REJECT, Utc::now());
    }

    c.bench_function("ratelimit/local_decision", |b| {
        b.iter(|| {
            assert!(
                limiter
                    .check_now(black_box("user:42"), NEVER_REJECT, Utc::now())
                    .allowed
            )
        });
    });
}

fn redis_url() -> Option<String> {
    std::env::var("REDIS_URL")
        .ok()
        .or_else(|| std::env::var("TEST_REDIS_URL").ok())
        .filter(|url| !url.is_empty())
}

fn redis_rate_limiter(c: &mut Criterion) {
    let Some(url) = redis_url() else {
        println!("ratelimit/redis_decision skipped: set REDIS_URL or TEST_REDIS_URL to run it");
        return;
    };
    let runtime = runtime();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a valid Redis URL");
    let link = Arc::new(RedisLink::new(client));
    let prefix = format!("bench-{}", Uuid::new_v4().simple());
    let limiter = RedisRateLimiter::new(link.clone(), &prefix);

    // The limiter silently falls back to local buckets when Redis fails, so
    // a benchmark that does not check health would time the wrong thing.
    let first = runtime.block_on(limiter.check("user:bench", NEVER_REJECT, Utc::now()));
    assert!(first.allowed);
    assert!(limiter.is_healthy(), "Redis at {url} is not reachable");

    c.bench_function("ratelimit/redis_decision", |b| {
        b.iter_custom(|iterations| {
            time_async(&runtime, iterations, || async {
                let decision = limiter.check("user:bench", NEVER_REJECT, Utc::now()).await;
                assert!(decision.allowed);
            })
        });
    });
    assert!(
        limiter.is_healthy(),
        "Redis failed during the run; the figures include local fallbacks"
    );

    runtime.block_on(async {
        if let Some(mut connection) = link.connection().await {
            let key = format!("{prefix}:ratelimit:user:bench");
            let _: Result<(), _> = redis::cmd("DEL").arg(key).query_async(&mut connection).await;
        }
    });
}

fn access_event() -> AuditEvent {
    let mut event = AuditEvent::new(
        Utc::now(),
        "access",
        "GET /api/v1/registry/entries/{id}",
        Status::Success,
        Severity::Info,
    )
    .user(Some(Uuid::new_v4().to_string()), None);
    event.client_ip = Some("127.0.0.1".to_string());
    event.method = Some("GET".to_string());
    event.path = Some(format!("/api/v1/registry/entries/{}", Uuid::new_v4()));
    event.http_status = Some(200);
    event.request_id = Some(Uuid::new_v4().to_string());
    event.description = "entry read".to_string();
    event
}

fn audit(c: &mut Criterion) {
    let event = access_event();
    let (_, previous) = render_line(&event, GENESIS_HASH);

    c.bench_function("audit/render_line_chained", |b| {
        b.iter(|| render_line(black_box(&event), black_box(&previous)));
    });
    c.bench_function("audit/build_and_render_event", |b| {
        b.iter(|| render_line(&access_event(), black_box(&previous)));
    });
}

fn encryption(c: &mut Criterion) {
    let cipher = AesGcmCipher::new(&[3u8; 32], &[]);
    let plaintext = vec![0x5au8; 1024];
    let aad = b"users:0f0e0d0c:totp_secret";
    let sealed = cipher.encrypt(&plaintext, aad);

    let mut group = c.benchmark_group("aes256gcm_1kib");
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("encrypt", |b| {
        b.iter(|| cipher.encrypt(black_box(&plaintext), aad));
    });
    group.bench_function("decrypt", |b| {
        b.iter_batched(
            || sealed.clone(),
            |sealed| cipher.decrypt(&sealed, aad).expect("value decrypts"),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(StdDuration::from_secs(1))
        .measurement_time(StdDuration::from_secs(3));
    targets = jwt, api_key_checks, authenticator, permissions, local_rate_limiter,
        redis_rate_limiter, audit, encryption
}
criterion_main!(benches);
