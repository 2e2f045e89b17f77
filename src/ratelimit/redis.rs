//! The shared token bucket: one Lua script per decision, so that reading,
//! refilling and taking a token is a single atomic step in Redis and any
//! number of instances enforce one limit per client.
//!
//! When Redis cannot be reached the limiter falls back to per-instance
//! buckets, logs that once per outage, reports it through
//! [`RateLimiter::is_healthy`] (and so `/ready`), and returns to Redis by
//! itself once a call succeeds again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use std::sync::Arc;

use crate::events::RedisLink;

use super::{decision, Decision, Limit, LocalRateLimiter, RateLimiter};

/// Longest wait for Redis before a request falls back to the local bucket.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Refills the bucket for the time since its last use, takes a token if one
/// is there, and returns `{allowed, tokens left}`. Times are microseconds
/// from the caller's clock; a clock that runs behind never removes tokens.
const TOKEN_BUCKET_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
if now > updated then
  tokens = math.min(burst, tokens + (now - updated) * rate)
  updated = now
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(updated))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate / 1000000) + 60)
return {allowed, tostring(tokens)}
";

/// Buckets in Redis, with a per-instance fallback.
pub struct RedisRateLimiter {
    link: Arc<RedisLink>,
    key_prefix: String,
    script: redis::Script,
    fallback: LocalRateLimiter,
    degraded: AtomicBool,
}

impl RedisRateLimiter {
    pub fn new(link: Arc<RedisLink>, key_prefix: &str) -> Self {
        RedisRateLimiter {
            link,
            key_prefix: format!("{key_prefix}:ratelimit:"),
            script: redis::Script::new(TOKEN_BUCKET_SCRIPT),
            fallback: LocalRateLimiter::new(),
            degraded: AtomicBool::new(false),
        }
    }

    async fn check_shared(&self, key: &str, limit: Limit, now: DateTime<Utc>) -> Result<Decision, String> {
        let rate_per_micro = f64::from(limit.per_minute) / 60_000_000.0;
        let mut connection = self
            .link
            .connection()
            .await
            .ok_or_else(|| "not connected".to_string())?;
        let mut invocation = self.script.key(format!("{}{key}", self.key_prefix));
        invocation
            .arg(now.timestamp_micros())
            .arg(rate_per_micro)
            .arg(limit.burst);
        let call = invocation.invoke_async::<(i64, String)>(&mut connection);
        let (allowed, left) = tokio::time::timeout(REDIS_TIMEOUT, call)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|error| error.to_string())?;
        let left: f64 = left
            .parse()
            .map_err(|_| "unexpected reply from the rate-limit script".to_string())?;
        Ok(decision(allowed == 1, left, limit))
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, limit: Limit, now: DateTime<Utc>) -> Decision {
        match self.check_shared(key, limit, now).await {
            Ok(decision) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::warn!("Redis is reachable again; rate limits are shared across instances once more");
                }
                decision
            }
            Err(error) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %error, "Redis is unreachable; rate limiting falls back to per-instance buckets");
                }
                self.fallback.check_now(key, limit, now)
            }
        }
    }

    fn is_healthy(&self) -> bool {
        !self.degraded.load(Ordering::Relaxed)
    }
}
