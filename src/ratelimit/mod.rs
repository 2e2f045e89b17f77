//! Token-bucket rate limiting per client.
//!
//! A bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens
//! a second; each request takes one. [`LocalRateLimiter`] keeps buckets in
//! this process; [`redis::RedisRateLimiter`] keeps them in Redis, so that
//! every instance draws from one bucket per client.

pub mod redis;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// The limits that apply to one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

/// The outcome of taking one token, with what the response headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `X-RateLimit-Limit`: the per-minute rate.
    pub limit: u32,
    /// `X-RateLimit-Remaining`: whole requests left now, never negative.
    pub remaining: u32,
    /// `X-RateLimit-Reset`: seconds until the bucket is full again.
    pub reset_seconds: u64,
    /// `Retry-After` when rejected: seconds until one token is back.
    pub retry_after_seconds: u64,
}

#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one token from the bucket named `key`.
    async fn check(&self, key: &str, limit: Limit, now: DateTime<Utc>) -> Decision;

    /// Returns whether the limiter works as configured; a shared limiter that fell
    /// back to per-instance buckets reports `false`.
    fn is_healthy(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_micros: i64,
    /// The limit of the last decision, so that pruning judges each bucket by
    /// its own limit (keys may override the default).
    limit: Limit,
}

/// Independent parts of the bucket map, so that concurrent decisions for
/// different clients rarely wait for the same lock.
const SHARDS: usize = 16;

/// Bucket count per shard above which full, idle buckets are dropped.
const PRUNE_THRESHOLD: usize = 100_000 / SHARDS;

#[derive(Default)]
struct Shard {
    buckets: HashMap<String, Bucket>,
    /// Size at which the next prune runs. It doubles when a prune frees too
    /// little, so that many busy clients do not cause a scan per request.
    prune_at: usize,
}

/// Buckets kept in memory, one per key.
pub struct LocalRateLimiter {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
}

impl Default for LocalRateLimiter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        prune_at: PRUNE_THRESHOLD,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }
}

impl LocalRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }
}

fn refill(bucket: Bucket, limit: Limit, now_micros: i64) -> f64 {
    let rate_per_micro = f64::from(limit.per_minute) / 60_000_000.0;
    let elapsed = (now_micros - bucket.updated_micros).max(0) as f64;
    (bucket.tokens + elapsed * rate_per_micro).min(f64::from(limit.burst))
}

/// Decides one request against a bucket holding `tokens`; shared by every
/// implementation so that local and shared limiting round the same way.
pub fn take_token(tokens: f64, limit: Limit) -> (f64, Decision) {
    let allowed = tokens >= 1.0;
    let left = if allowed { tokens - 1.0 } else { tokens };
    (left, decision(allowed, left, limit))
}

/// Builds the headers' view of a bucket with `left` tokens after the decision.
pub fn decision(allowed: bool, left: f64, limit: Limit) -> Decision {
    let rate_per_second = f64::from(limit.per_minute) / 60.0;
    let seconds_until = |target: f64| ((target - left).max(0.0) / rate_per_second).ceil() as u64;
    Decision {
        allowed,
        limit: limit.per_minute,
        remaining: left.floor().max(0.0) as u32,
        reset_seconds: seconds_until(f64::from(limit.burst)),
        retry_after_seconds: if allowed { 0 } else { seconds_until(1.0).max(1) },
    }
}

#[async_trait::async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, key: &str, limit: Limit, now: DateTime<Utc>) -> Decision {
        self.check_now(key, limit, now)
    }
}

impl LocalRateLimiter {
    /// Decides synchronously; also the shared limiter's fallback.
    pub fn check_now(&self, key: &str, limit: Limit, now: DateTime<Utc>) -> Decision {
        let now_micros = now.timestamp_micros();
        let shard_index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        let mut shard = match self.shards[shard_index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };

        // The common case, a known client, neither allocates nor prunes.
        let tokens = match shard.buckets.get(key) {
            Some(bucket) => refill(*bucket, limit, now_micros),
            None => {
                shard.prune_if_large(now_micros);
                f64::from(limit.burst)
            }
        };
        let (left, decision) = take_token(tokens, limit);
        let bucket = Bucket {
            tokens: left,
            updated_micros: now_micros,
            limit,
        };
        match shard.buckets.get_mut(key) {
            Some(existing) => *existing = bucket,
            None => {
                shard.buckets.insert(key.to_string(), bucket);
            }
        }
        decision
    }
}

impl Shard {
    /// Drops buckets that have refilled completely, since a new bucket for
    /// the same client would start full anyway.
    fn prune_if_large(&mut self, now_micros: i64) {
        if self.buckets.len() < self.prune_at {
            return;
        }
        self.buckets
            .retain(|_, bucket| refill(*bucket, bucket.limit, now_micros) < f64::from(bucket.limit.burst));
        self.prune_at = (self.buckets.len() * 2).max(PRUNE_THRESHOLD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        per_minute: 60,
        burst: 3,
    };

    #[test]
    fn burst_then_reject() {
        let limiter = LocalRateLimiter::new();
        let now = Utc::now();
        let remaining: Vec<u32> = (0..3).map(|_| limiter.check_now("k", LIMIT, now).remaining).collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let rejected = limiter.check_now("k", LIMIT, now);
        assert!(!rejected.allowed);
        assert_eq!(rejected.remaining, 0);
        assert_eq!(rejected.retry_after_seconds, 1);
    }

    #[test]
    fn refills_at_rate() {
        let limiter = LocalRateLimiter::new();
        let now = Utc::now();
        for _ in 0..3 {
            limiter.check_now("k", LIMIT, now);
        }
        assert!(!limiter.check_now("k", LIMIT, now).allowed);
        assert!(
            limiter
                .check_now("k", LIMIT, now + chrono::Duration::seconds(1))
                .allowed
        );
    }

    #[test]
    fn reset_is_seconds_until_full() {
        let limiter = LocalRateLimiter::new();
        let now = Utc::now();
        let decision = limiter.check_now("k", LIMIT, now);
        assert_eq!(decision.reset_seconds, 1);
        limiter.check_now("k", LIMIT, now);
        assert_eq!(limiter.check_now("k", LIMIT, now).reset_seconds, 3);
    }

    fn bucket_count(limiter: &LocalRateLimiter) -> usize {
        limiter
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap().buckets.len())
            .sum()
    }

    #[test]
    fn pruning_keeps_partly_used_buckets() {
        let limiter = LocalRateLimiter::new();
        let now = Utc::now();
        let slow = Limit {
            per_minute: 1,
            burst: 1,
        };
        assert!(limiter.check_now("slow", slow, now).allowed);
        for n in 0..200_000 {
            limiter.check_now(&format!("early-{n}"), LIMIT, now);
        }

        // LIMIT refills within 3 s, the slow bucket only after 60 s.
        let later = now + chrono::Duration::seconds(30);
        for n in 0..200_000 {
            limiter.check_now(&format!("late-{n}"), LIMIT, later);
        }

        assert!(bucket_count(&limiter) < 300_000, "refilled early buckets were dropped");
        assert!(
            !limiter.check_now("slow", slow, later).allowed,
            "the used bucket was kept"
        );
    }

    #[test]
    fn keys_have_separate_buckets() {
        let limiter = LocalRateLimiter::new();
        let now = Utc::now();
        for _ in 0..3 {
            limiter.check_now("a", LIMIT, now);
        }
        assert!(limiter.check_now("b", LIMIT, now).allowed);
    }
}
