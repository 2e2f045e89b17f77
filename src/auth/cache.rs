//! The per-request lookups of authentication (the user row, the API key row)
//! kept in memory for at most one second.
//!
//! Every change made through this process evicts the entry at once and, with
//! Redis, announces the eviction to the other instances. A change that no
//! announcement reports (another instance without Redis, a CLI command) is
//! seen within the one-second lifetime.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::storage::{ApiKeyRecord, User};

/// How long a cached row may be used before it is read again.
const TIME_TO_LIVE_MILLISECONDS: i64 = 1000;
/// Entries kept at most per map; beyond it the map is cleared, which costs
/// one read per active principal.
const MAX_ENTRIES: usize = 100_000;

struct Cached<T> {
    value: T,
    fetched_at: DateTime<Utc>,
}

/// Users by id and API keys by key id.
#[derive(Default)]
pub struct PrincipalCache {
    users: RwLock<HashMap<Uuid, Cached<User>>>,
    keys: RwLock<HashMap<String, Cached<ApiKeyRecord>>>,
}

fn fresh<T: Clone>(entry: Option<&Cached<T>>, now: DateTime<Utc>) -> Option<T> {
    let entry = entry?;
    let age = now - entry.fetched_at;
    (age >= Duration::zero() && age < Duration::milliseconds(TIME_TO_LIVE_MILLISECONDS)).then(|| entry.value.clone())
}

fn store<K: std::hash::Hash + Eq, T>(map: &RwLock<HashMap<K, Cached<T>>>, key: K, value: T, now: DateTime<Utc>) {
    if let Ok(mut map) = map.write() {
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, Cached { value, fetched_at: now });
    }
}

impl PrincipalCache {
    pub fn user(&self, id: Uuid, now: DateTime<Utc>) -> Option<User> {
        self.users.read().ok().and_then(|map| fresh(map.get(&id), now))
    }

    pub fn put_user(&self, user: User, now: DateTime<Utc>) {
        store(&self.users, user.id, user, now);
    }

    pub fn forget_user(&self, id: Uuid) {
        if let Ok(mut map) = self.users.write() {
            map.remove(&id);
        }
    }

    pub fn key(&self, id: &str, now: DateTime<Utc>) -> Option<ApiKeyRecord> {
        self.keys.read().ok().and_then(|map| fresh(map.get(id), now))
    }

    pub fn put_key(&self, key: ApiKeyRecord, now: DateTime<Utc>) {
        store(&self.keys, key.id.clone(), key, now);
    }

    pub fn forget_key(&self, id: &str) {
        if let Ok(mut map) = self.keys.write() {
            map.remove(id);
        }
    }
}
