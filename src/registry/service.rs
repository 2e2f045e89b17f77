//! Registry operations with their ownership rules. Route-level permissions
//! (`read`, `write`, …) are checked by the caller; the rules that depend on
//! the entry itself (own entry or `entries:manage`) are checked here.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::cache::{CachedEntry, EntryCache};
use super::entry::{EntryInput, EntryView, FieldError};
use super::merge_patch::merge_patch;
use crate::auth::Principal;
use crate::clock::Clock;
use crate::crypto::Cipher;
use crate::events::{ClusterEvent, EventBus};
use crate::storage::{EntryAnalytics, EntryCursor, EntryFilter, SharedStore, StorageError, StoredEntry};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("entry not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("an entry with this category and name already exists")]
    Conflict,
    #[error("the entry was changed by another request; read it again and retry")]
    Concurrent,
    #[error("the entry's current ETag does not match If-Match")]
    PreconditionFailed,
    #[error("invalid entry")]
    Invalid(Vec<FieldError>),
    #[error("stored sensitive data could not be decrypted")]
    Decrypt,
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for RegistryError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Conflict { .. } => RegistryError::Conflict,
            StorageError::StaleRevision => RegistryError::Concurrent,
            other => RegistryError::Storage(other),
        }
    }
}

pub type RegistryResult<T> = Result<T, RegistryError>;

/// One entry rendered for one caller: the JSON body and the revision that
/// its entity tag names.
pub struct EntryBody {
    pub json: bytes::Bytes,
    pub revision: i64,
}

/// One page of a keyset-paginated list.
pub struct ListPage {
    pub items: Vec<EntryView>,
    pub next: Option<EntryCursor>,
}

/// One page of ranked search results; `next_offset` continues it.
pub struct SearchPage {
    pub items: Vec<EntryView>,
    pub next_offset: Option<u32>,
}

/// The registry's service functions, shared by the HTTP API and the CLI.
#[derive(Clone)]
pub struct Registry {
    pub(super) store: SharedStore,
    pub(super) cipher: Arc<dyn Cipher>,
    pub(super) clock: Arc<dyn Clock>,
    cache: Arc<EntryCache>,
    events: Arc<std::sync::OnceLock<EventBus>>,
}

pub(crate) fn sensitive_context(id: Uuid) -> Vec<u8> {
    format!("entry:{id}:sensitive").into_bytes()
}

fn unrenderable(error: serde_json::Error) -> RegistryError {
    RegistryError::Storage(StorageError::Corrupt(format!(
        "entry cannot be rendered as JSON: {error}"
    )))
}

/// Returns whether `principal` may see the entry's `sensitive` field.
fn sees_sensitive(principal: &Principal, entry: &StoredEntry) -> bool {
    principal.user_id == entry.owner_id || principal.can("entries:manage")
}

fn check_if_match(if_match: Option<&str>, current: &EntryView) -> RegistryResult<()> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let etag = current.etag();
    let matches = header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag);
    if matches {
        Ok(())
    } else {
        Err(RegistryError::PreconditionFailed)
    }
}

/// Guard that evicts an entry (or every entry) from the entry caches when
/// dropped. [`Registry::evict_after`] explains when to take it.
pub(super) struct EvictOnDrop<'a> {
    registry: &'a Registry,
    event: ClusterEvent,
}

impl Drop for EvictOnDrop<'_> {
    fn drop(&mut self) {
        self.registry.apply_event(&self.event);
        self.registry.announce(self.event.clone());
    }
}

impl Registry {
    pub fn new(store: SharedStore, cipher: Arc<dyn Cipher>, clock: Arc<dyn Clock>) -> Self {
        Registry {
            store,
            cipher,
            clock,
            cache: Arc::default(),
            events: Arc::default(),
        }
    }

    /// Connects the registry to the other instances, so that their cached
    /// copies of an entry are evicted when it changes here.
    pub fn set_event_bus(&self, bus: EventBus) {
        let _ = self.events.set(bus);
    }

    /// Returns a guard that evicts the entry `id` here and on every other
    /// instance when it is dropped. Take it before a write: it then evicts
    /// after the write whether it succeeds, fails or is cancelled (a client
    /// that disconnects), since a failure may come after the commit.
    pub(super) fn evict_after(&self, id: Uuid) -> EvictOnDrop<'_> {
        EvictOnDrop {
            registry: self,
            event: ClusterEvent::EntryChanged { id },
        }
    }

    /// Returns a guard like [`Registry::evict_after`] that evicts every
    /// cached entry, for writes to entries not known by id (an import that
    /// may update).
    pub(super) fn evict_all_after(&self) -> EvictOnDrop<'_> {
        EvictOnDrop {
            registry: self,
            event: ClusterEvent::EntriesChanged,
        }
    }

    /// Publishes an eviction without making the write wait for Redis: the
    /// other instances' copies expire within a second even if it is lost.
    fn announce(&self, event: ClusterEvent) {
        if let Some(bus) = self.events.get() {
            let bus = bus.clone();
            tokio::spawn(async move { bus.publish(&event).await });
        }
    }

    /// Applies an entry change announced by an instance (possibly this one).
    pub fn apply_event(&self, event: &ClusterEvent) {
        match event {
            ClusterEvent::EntryChanged { id } => self.cache.forget(*id),
            ClusterEvent::EntriesChanged => self.cache.forget_all(),
            _ => {}
        }
    }

    pub(super) fn encrypt_sensitive(&self, id: Uuid, input: &EntryInput) -> Option<Vec<u8>> {
        let sensitive = input.sensitive.as_ref()?;
        let plaintext = serde_json::to_vec(sensitive).unwrap_or_default();
        Some(self.cipher.encrypt(&plaintext, &sensitive_context(id)))
    }

    fn decrypt_sensitive(&self, entry: &StoredEntry) -> RegistryResult<Option<Value>> {
        let Some(ciphertext) = &entry.sensitive else {
            return Ok(None);
        };
        let plaintext = self
            .cipher
            .decrypt(ciphertext, &sensitive_context(entry.id))
            .map_err(|error| {
                tracing::error!(entry_id = %entry.id, error = %error, "sensitive field could not be decrypted");
                RegistryError::Decrypt
            })?;
        serde_json::from_slice(&plaintext)
            .map(Some)
            .map_err(|_| RegistryError::Decrypt)
    }

    /// Renders an entry for `principal`, with `sensitive` only where allowed.
    pub fn view(&self, principal: &Principal, entry: &StoredEntry) -> RegistryResult<EntryView> {
        let sensitive = if sees_sensitive(principal, entry) {
            self.decrypt_sensitive(entry)?
        } else {
            None
        };
        Ok(EntryView::new(entry, sensitive))
    }

    /// Creates a new, empty stored entry owned by `owner`.
    pub(super) fn blank_entry(&self, owner: Uuid) -> StoredEntry {
        let now = self.clock.now();
        StoredEntry {
            // Time-ordered ids (UUIDv7, 74 random bits) land at the end of
            // the primary-key index instead of at random pages, which keeps
            // the working set of large imports small. The creation time they
            // reveal is public anyway as `created_at`.
            id: Uuid::now_v7(),
            category: String::new(),
            name: String::new(),
            title: String::new(),
            description: String::new(),
            status: "active".into(),
            version: None,
            tags: Vec::new(),
            metadata: Value::Object(serde_json::Map::new()),
            sensitive: None,
            owner_id: owner,
            revision: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// Creates an entry owned by `principal`.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] for a bad body, [`RegistryError::Conflict`]
    /// when `(category, name)` exists.
    pub async fn create_entry(&self, principal: &Principal, body: Value) -> RegistryResult<EntryView> {
        let input = EntryInput::from_value(body).map_err(RegistryError::Invalid)?;
        let mut entry = self.blank_entry(principal.user_id);
        let sensitive = self.encrypt_sensitive(entry.id, &input);
        input.apply_to(&mut entry, sensitive);
        self.store.insert_entry(&entry).await?;
        Ok(EntryView::new(&entry, input.sensitive.map(Value::Object)))
    }

    async fn load(&self, id: Uuid) -> RegistryResult<StoredEntry> {
        self.store.find_entry(id).await?.ok_or(RegistryError::NotFound)
    }

    /// Reads one entry as its JSON body, from the entry cache when it was
    /// read within the last second (see [`EntryCache`]). Writes always read
    /// the database.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::Decrypt`] for a caller
    /// who sees `sensitive`, or a storage error.
    pub async fn get_entry(&self, principal: &Principal, id: Uuid) -> RegistryResult<EntryBody> {
        let cached = match self.cache.get(id) {
            Some(cached) => cached,
            None => {
                let ticket = self.cache.ticket();
                let cached = Arc::new(CachedEntry::render(self.load(id).await?).map_err(unrenderable)?);
                self.cache.put(ticket, cached.clone());
                cached
            }
        };

        let stored = &cached.stored;
        let json = if stored.sensitive.is_some() && sees_sensitive(principal, stored) {
            let view = EntryView::new(stored, self.decrypt_sensitive(stored)?);
            serde_json::to_vec(&view).map_err(unrenderable)?.into()
        } else {
            cached.public_body.clone()
        };
        Ok(EntryBody {
            json,
            revision: stored.revision,
        })
    }

    fn check_may_change(principal: &Principal, entry: &StoredEntry, own_permission: &str) -> RegistryResult<()> {
        let owns = entry.owner_id == principal.user_id && principal.can(own_permission);
        if owns || principal.can("entries:manage") {
            Ok(())
        } else {
            Err(RegistryError::Forbidden(
                "only the owner or a holder of entries:manage may change this entry",
            ))
        }
    }

    /// Replaces an entry's content (PUT).
    ///
    /// # Errors
    /// Not found, forbidden, invalid, conflict or failed precondition.
    pub async fn replace_entry(
        &self,
        principal: &Principal,
        id: Uuid,
        body: Value,
        if_match: Option<&str>,
    ) -> RegistryResult<EntryView> {
        let current = self.load(id).await?;
        Self::check_may_change(principal, &current, "write")?;
        check_if_match(if_match, &EntryView::new(&current, None))?;
        let input = EntryInput::from_value(body).map_err(RegistryError::Invalid)?;
        self.write_update(current, input).await
    }

    /// Applies a JSON merge patch (RFC 7396) to an entry (PATCH).
    ///
    /// # Errors
    /// Not found, forbidden, invalid, conflict or failed precondition.
    pub async fn patch_entry(
        &self,
        principal: &Principal,
        id: Uuid,
        patch: Value,
        if_match: Option<&str>,
    ) -> RegistryResult<EntryView> {
        let current = self.load(id).await?;
        Self::check_may_change(principal, &current, "write")?;
        check_if_match(if_match, &EntryView::new(&current, None))?;
        let Value::Object(patch_members) = &patch else {
            return Err(RegistryError::Invalid(vec![FieldError::new(
                "body",
                "a merge patch must be a JSON object",
            )]));
        };
        let server_set: Vec<FieldError> = super::SERVER_FIELDS
            .iter()
            .filter(|field| patch_members.contains_key(**field))
            .map(|field| FieldError::new(field, "is set by the server and cannot be sent"))
            .collect();
        if !server_set.is_empty() {
            return Err(RegistryError::Invalid(server_set));
        }

        // The patch applies to what the owner would see, sensitive included.
        let mut document = EntryView::new(&current, self.decrypt_sensitive(&current)?).to_import_line();
        merge_patch(&mut document, &patch);
        let input = EntryInput::from_value(document).map_err(RegistryError::Invalid)?;
        self.write_update(current, input).await
    }

    async fn write_update(&self, current: StoredEntry, input: EntryInput) -> RegistryResult<EntryView> {
        let mut updated = current.clone();
        let sensitive = self.encrypt_sensitive(current.id, &input);
        input.apply_to(&mut updated, sensitive);
        updated.revision = current.revision + 1;
        updated.updated_at = self.clock.now();
        let _evict = self.evict_after(updated.id);
        self.store.update_entry(&updated).await?;
        Ok(EntryView::new(&updated, input.sensitive.map(Value::Object)))
    }

    /// Deletes an entry.
    ///
    /// # Errors
    /// Not found, forbidden or failed precondition.
    pub async fn delete_entry(&self, principal: &Principal, id: Uuid, if_match: Option<&str>) -> RegistryResult<()> {
        let current = self.load(id).await?;
        Self::check_may_change(principal, &current, "delete")?;
        check_if_match(if_match, &EntryView::new(&current, None))?;
        let _evict = self.evict_after(id);
        if self.store.delete_entry(id).await? {
            Ok(())
        } else {
            Err(RegistryError::NotFound)
        }
    }

    /// Lists entries in creation order after `after`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_entries(
        &self,
        principal: &Principal,
        filter: &EntryFilter,
        after: Option<&EntryCursor>,
        limit: u32,
    ) -> RegistryResult<ListPage> {
        // One extra row shows whether another page follows.
        let mut rows = self.store.list_entries(filter, after, limit + 1).await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if has_more {
            rows.last().map(|last| EntryCursor {
                created_at: last.created_at,
                id: last.id,
            })
        } else {
            None
        };
        let items = rows
            .iter()
            .map(|row| self.view(principal, row))
            .collect::<RegistryResult<_>>()?;
        Ok(ListPage { items, next })
    }

    /// Ranked full-text search over name, title, description and tags.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn search_entries(
        &self,
        principal: &Principal,
        query: &str,
        filter: &EntryFilter,
        offset: u32,
        limit: u32,
    ) -> RegistryResult<SearchPage> {
        let terms = super::search_terms(query);
        let mut rows = self.store.search_entries(&terms, filter, offset, limit + 1).await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let items = rows
            .iter()
            .map(|(row, score)| {
                let mut view = self.view(principal, row)?;
                view.score = Some((score * 1000.0).round() / 1000.0);
                Ok(view)
            })
            .collect::<RegistryResult<_>>()?;
        Ok(SearchPage {
            items,
            next_offset: has_more.then_some(offset + limit),
        })
    }

    /// Counts by category, status, tag and day over the last `days` days.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn analytics(&self, days: u32) -> RegistryResult<EntryAnalytics> {
        Ok(self.store.entry_analytics(days).await?)
    }
}
