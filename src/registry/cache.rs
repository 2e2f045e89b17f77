//! Entries read by id, kept in memory for at most one second.
//!
//! `GET /api/v1/registry/entries/{id}` is a registry's most common request,
//! and on SQLite the row read through sqlx cost more than all the security
//! work of the request together (see docs/benchmarks.md). Every write made
//! through this process evicts the entry at once and, with Redis, announces
//! the eviction to the other instances. A write that no announcement reports (another instance
//! without Redis, a CLI command) is seen within the one-second lifetime.
//!
//! `sensitive` stays encrypted in memory and is decrypted per request for
//! the callers allowed to see it. Every other caller gets the same JSON
//! body, which is rendered once when the row is read.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::EntryView;
use crate::storage::StoredEntry;

/// How long a cached entry may be served before it is read again.
const TIME_TO_LIVE: Duration = Duration::from_secs(1);
/// Estimated bytes the cache may hold before expired entries are swept.
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Entries whose JSON body is larger than this are always read from the
/// database, so that a few large entries cannot push out many small ones.
const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// An entry as read from the database, with the JSON body served to the
/// callers who do not see its `sensitive` field.
#[derive(Debug)]
pub struct CachedEntry {
    pub stored: StoredEntry,
    pub public_body: Bytes,
}

impl CachedEntry {
    /// Renders the body once, so that cached reads skip the serialisation.
    ///
    /// # Errors
    /// When the entry cannot be serialised. Its strings and JSON values
    /// always can be, so this is not expected.
    pub fn render(stored: StoredEntry) -> serde_json::Result<Self> {
        let public_body = serde_json::to_vec(&EntryView::new(&stored, None))?.into();
        Ok(CachedEntry { stored, public_body })
    }
}

struct Cached {
    entry: Arc<CachedEntry>,
    fetched_at: Instant,
    bytes: usize,
}

#[derive(Default)]
struct Map {
    entries: HashMap<Uuid, Cached>,
    bytes: usize,
    /// Incremented by every eviction, so that a read which started before
    /// an eviction cannot store the row it read (possibly the old one).
    generation: u64,
}

/// Entries by id. Reads take a shared lock; misses, stores and evictions
/// take the exclusive one.
#[derive(Default)]
pub struct EntryCache {
    map: RwLock<Map>,
}

/// The state of the cache when a database read started, given to
/// [`EntryCache::put`]. It records the eviction count and the time that
/// the cached copy's lifetime counts from.
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket {
    generation: u64,
    started: Instant,
}

impl EntryCache {
    /// Returns the entry when it was read less than a second ago.
    pub fn get(&self, id: Uuid) -> Option<Arc<CachedEntry>> {
        let map = self.map.read().ok()?;
        let cached = map.entries.get(&id)?;
        (cached.fetched_at.elapsed() < TIME_TO_LIVE).then(|| cached.entry.clone())
    }

    /// Call before reading an entry from the database.
    pub fn ticket(&self) -> ReadTicket {
        ReadTicket {
            generation: self.map.read().map(|map| map.generation).unwrap_or(u64::MAX),
            started: Instant::now(),
        }
    }

    /// Stores an entry read from the database after `ticket` was taken,
    /// unless an eviction happened in between.
    pub fn put(&self, ticket: ReadTicket, entry: Arc<CachedEntry>) {
        if entry.public_body.len() > MAX_ENTRY_BYTES {
            return;
        }
        let bytes = estimated_size(&entry);
        let Ok(mut map) = self.map.write() else {
            return;
        };
        if map.generation != ticket.generation {
            return;
        }
        if map.bytes + bytes > MAX_BYTES {
            map.sweep_expired();
            if map.bytes + bytes > MAX_BYTES {
                map.entries.clear();
                map.bytes = 0;
            }
        }
        // The lifetime counts from the start of the read, so that a change
        // no eviction reports is served for at most one second after it.
        let cached = Cached {
            entry: entry.clone(),
            fetched_at: ticket.started,
            bytes,
        };
        if let Some(previous) = map.entries.insert(entry.stored.id, cached) {
            map.bytes -= previous.bytes;
        }
        map.bytes += bytes;
    }

    /// Evicts one entry; call after the entry was changed or deleted.
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut map) = self.map.write() {
            map.generation += 1;
            if let Some(previous) = map.entries.remove(&id) {
                map.bytes -= previous.bytes;
            }
        }
    }

    /// Evicts every entry; call after changes to entries not known by id.
    pub fn forget_all(&self) {
        if let Ok(mut map) = self.map.write() {
            map.generation += 1;
            map.entries.clear();
            map.bytes = 0;
        }
    }
}

impl Map {
    fn sweep_expired(&mut self) {
        let mut freed = 0;
        self.entries.retain(|_, cached| {
            let keep = cached.fetched_at.elapsed() < TIME_TO_LIVE;
            if !keep {
                freed += cached.bytes;
            }
            keep
        });
        self.bytes -= freed;
    }
}

/// Approximate heap size of a cached entry: the body contains about as many
/// bytes as the row's text, tags and metadata, which are kept as well.
fn estimated_size(entry: &CachedEntry) -> usize {
    let sensitive = entry.stored.sensitive.as_ref().map_or(0, Vec::len);
    std::mem::size_of::<CachedEntry>() + 2 * entry.public_body.len() + sensitive
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn stored(name: &str) -> StoredEntry {
        StoredEntry {
            id: Uuid::now_v7(),
            category: "service".into(),
            name: name.into(),
            title: name.into(),
            description: String::new(),
            status: "active".into(),
            version: None,
            tags: vec!["a".into()],
            metadata: json!({}),
            sensitive: None,
            owner_id: Uuid::now_v7(),
            revision: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn cached(stored: StoredEntry) -> Arc<CachedEntry> {
        Arc::new(CachedEntry::render(stored).unwrap())
    }

    fn entry(name: &str) -> Arc<CachedEntry> {
        cached(stored(name))
    }

    #[test]
    fn stored_entry_is_served_until_forgotten() {
        let cache = EntryCache::default();
        let billing = entry("billing");
        let id = billing.stored.id;
        cache.put(cache.ticket(), billing);
        assert_eq!(
            cache.get(id).map(|found| found.stored.name.clone()),
            Some("billing".into())
        );

        cache.forget(id);
        assert!(cache.get(id).is_none());
    }

    #[test]
    fn public_body_leaves_out_sensitive() {
        let mut secret = stored("billing");
        secret.sensitive = Some(b"ciphertext".to_vec());
        let rendered = cached(secret);
        let body: serde_json::Value = serde_json::from_slice(&rendered.public_body).unwrap();
        assert_eq!(body["name"], "billing");
        assert!(body.get("sensitive").is_none(), "{body}");
    }

    #[test]
    fn read_before_eviction_not_stored() {
        let cache = EntryCache::default();
        let stale = entry("billing");
        let ticket = cache.ticket();
        cache.forget(stale.stored.id);
        cache.put(ticket, stale.clone());
        assert!(cache.get(stale.stored.id).is_none());
    }

    #[test]
    fn forget_all_evicts_every_entry_and_pending_reads() {
        let cache = EntryCache::default();
        let first = entry("first");
        let second = entry("second");
        cache.put(cache.ticket(), first.clone());
        let ticket = cache.ticket();
        cache.forget_all();
        cache.put(ticket, second.clone());
        assert!(cache.get(first.stored.id).is_none());
        assert!(cache.get(second.stored.id).is_none());
    }

    #[test]
    fn lifetime_counts_from_read_start() {
        let cache = EntryCache::default();
        let slow = entry("slow-read");
        let ticket = ReadTicket {
            started: Instant::now() - TIME_TO_LIVE,
            ..cache.ticket()
        };
        cache.put(ticket, slow.clone());
        assert!(cache.get(slow.stored.id).is_none());
    }

    #[test]
    fn large_entries_are_not_cached() {
        let cache = EntryCache::default();
        let mut large = stored("large");
        large.description = "x".repeat(MAX_ENTRY_BYTES);
        let large = cached(large);
        cache.put(cache.ticket(), large.clone());
        assert!(cache.get(large.stored.id).is_none());
    }

    #[test]
    fn byte_budget_is_kept() {
        let cache = EntryCache::default();
        let mut template = stored("filler");
        template.description = "x".repeat(MAX_ENTRY_BYTES / 2);
        for _ in 0..(8 * MAX_BYTES / MAX_ENTRY_BYTES) {
            let mut filler = template.clone();
            filler.id = Uuid::now_v7();
            cache.put(cache.ticket(), cached(filler));
        }
        let map = cache.map.read().unwrap();
        assert!(!map.entries.is_empty());
        assert!(map.bytes <= MAX_BYTES, "{} bytes cached", map.bytes);
        assert_eq!(
            map.bytes,
            map.entries.values().map(|cached| cached.bytes).sum::<usize>()
        );
    }
}
