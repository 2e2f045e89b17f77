//! Storage-level tests: one set of `Store` scenarios runs against SQLite always
//! and against PostgreSQL when `TEST_DATABASE_URL` names a server, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`. Every PostgreSQL test creates a
//! schema of its own, so tests run in parallel. A test drops its schema when
//! it passes and leaves the `t_…` schema behind for inspection when it fails.

use chrono::{DateTime, Duration, TimeZone, Utc};
use hyper_registry::rbac::{Permission, Role};
use hyper_registry::storage::{
    self, ApiKeyRecord, EntryCursor, EntryFilter, ImportOutcome, ImportPolicy, LimitedKeyInsert, MfaRecord,
    RefreshTokenRecord, SharedStore, StorageError, Store, StoredEntry, User, UserCursor,
};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tempfile::TempDir;
use uuid::Uuid;

use crate::helpers::{import_ndjson, TestApp, PYPI_SAMPLE};

const POSTGRES_URL_VARIABLE: &str = "TEST_DATABASE_URL";

// ---------------------------------------------------------------------------
// Backends

/// A store under test and what has to be removed after the test.
struct Backend {
    store: SharedStore,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The SQLite file lives in this directory, deleted on drop.
    Directory(#[allow(dead_code)] TempDir),
    /// The PostgreSQL schema `name`, dropped through `admin`.
    Schema { admin: PgPool, name: String },
}

/// A fresh, empty PostgreSQL schema and a URL whose connections use it.
struct PostgresSchema {
    admin: PgPool,
    name: String,
    url: String,
}

impl PostgresSchema {
    /// Creates `t_<random>` on the `TEST_DATABASE_URL` server, or returns
    /// `None` when the variable is unset.
    async fn create() -> Option<PostgresSchema> {
        let base_url = std::env::var(POSTGRES_URL_VARIABLE).ok()?;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base_url)
            .await
            .unwrap_or_else(|error| panic!("{POSTGRES_URL_VARIABLE} cannot be reached: {error}"));
        let name = format!("t_{}", Uuid::new_v4().simple());
        // Identifiers cannot be bound as parameters. `name` is built from a
        // UUID's hex digits here, never from outside input.
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&admin)
            .await
            .expect("test schema created");
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{separator}options=-csearch_path%3D{name}");
        Some(PostgresSchema { admin, name, url })
    }

    async fn drop_schema(admin: &PgPool, name: &str) {
        sqlx::query(&format!("DROP SCHEMA \"{name}\" CASCADE"))
            .execute(admin)
            .await
            .expect("test schema dropped");
    }
}

impl Backend {
    async fn sqlite() -> Backend {
        let directory = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", directory.path().join("store.db").display());
        let store = storage::connect(&url).await.expect("SQLite store opens");
        Backend {
            store,
            cleanup: Cleanup::Directory(directory),
        }
    }

    /// Opens a store in a fresh schema, or returns `None` without `TEST_DATABASE_URL`.
    async fn postgres() -> Option<Backend> {
        let schema = PostgresSchema::create().await?;
        let store = storage::connect(&schema.url).await.expect("PostgreSQL store opens");
        Some(Backend {
            store,
            cleanup: Cleanup::Schema {
                admin: schema.admin,
                name: schema.name,
            },
        })
    }

    async fn finish(self) {
        drop(self.store);
        if let Cleanup::Schema { admin, name } = self.cleanup {
            PostgresSchema::drop_schema(&admin, &name).await;
        }
    }
}

/// Generates one `#[tokio::test]` per scenario and backend, named
/// `storage::sqlite::<scenario>` and `storage::postgres::<scenario>`.
/// The PostgreSQL variants pass without running when `TEST_DATABASE_URL` is unset.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let backend = super::Backend::sqlite().await;
                    super::$scenario(&*backend.store).await;
                    backend.finish().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let Some(backend) = super::Backend::postgres().await else {
                        eprintln!("{} is unset: skipping the PostgreSQL run", super::POSTGRES_URL_VARIABLE);
                        return;
                    };
                    super::$scenario(&*backend.store).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

on_every_backend!(
    users_round_trip,
    users_list_pages_by_creation_then_id,
    roles_insert_update_delete,
    entries_round_trip,
    entries_update_checks_revision,
    entries_list_filters_and_cursor,
    search_ranks_and_filters,
    search_pypi_sample_http_client,
    search_ranks_at_most_the_candidate_limit,
    analytics_counts,
    import_skip_and_update,
    api_keys_lifecycle,
    api_keys_insert_within_limit,
    usernames_match_ignoring_case,
    refresh_tokens_and_mfa,
);

// ---------------------------------------------------------------------------
// Fixtures

/// 2026-12-04T10:00:00.123456Z plus `seconds`. Stores keep microseconds, so
/// fixtures use whole microseconds to compare equal after a round trip.
fn at(seconds: i64) -> DateTime<Utc> {
    let base = Utc
        .with_ymd_and_hms(2026, 12, 4, 10, 0, 0)
        .single()
        .expect("valid base time");
    base + Duration::microseconds(123_456) + Duration::seconds(seconds)
}

/// Returns the current time truncated to whole microseconds.
fn now_micros() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("current time in range")
}

fn user(username: &str, created_at: DateTime<Utc>) -> User {
    User {
        id: Uuid::new_v4(),
        username: username.to_string(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${username}"),
        roles: vec!["user".into()],
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        mfa_enabled: false,
        tokens_valid_after: created_at,
        created_at,
        updated_at: created_at,
    }
}

fn entry(category: &str, name: &str, created_at: DateTime<Utc>) -> StoredEntry {
    StoredEntry {
        id: Uuid::new_v4(),
        category: category.to_string(),
        name: name.to_string(),
        title: name.to_string(),
        description: format!("The {name} component"),
        status: "active".into(),
        version: None,
        tags: Vec::new(),
        metadata: json!({}),
        sensitive: None,
        owner_id: Uuid::nil(),
        revision: 1,
        created_at,
        updated_at: created_at,
    }
}

fn api_key(id: &str, user_id: Uuid, created_at: DateTime<Utc>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.to_string(),
        user_id,
        name: format!("key {id}"),
        secret_hash: vec![0xAB; 32],
        permissions: vec!["read".into(), "search".into()],
        rate_limit_per_minute: Some(120),
        created_at,
        expires_at: created_at + Duration::days(365),
        revoked_at: None,
        last_used_at: None,
    }
}

fn role(name: &str, permissions: &[&str], inherits: &[&str]) -> Role {
    Role {
        name: name.to_string(),
        description: Some(format!("the {name} role")),
        permissions: permissions
            .iter()
            .map(|permission| Permission::parse(permission).expect("known permission"))
            .collect(),
        inherits: inherits.iter().map(|role| role.to_string()).collect(),
        builtin: false,
    }
}

fn assert_same_user(actual: &User, expected: &User) {
    assert_eq!(actual.id, expected.id, "id");
    assert_eq!(actual.username, expected.username, "username");
    assert_eq!(actual.password_hash, expected.password_hash, "password_hash");
    assert_eq!(actual.roles, expected.roles, "roles");
    assert_eq!(actual.disabled, expected.disabled, "disabled");
    assert_eq!(actual.failed_logins, expected.failed_logins, "failed_logins");
    assert_eq!(actual.locked_until, expected.locked_until, "locked_until");
    assert_eq!(actual.mfa_enabled, expected.mfa_enabled, "mfa_enabled");
    assert_eq!(
        actual.tokens_valid_after, expected.tokens_valid_after,
        "tokens_valid_after"
    );
    assert_eq!(actual.created_at, expected.created_at, "created_at");
    assert_eq!(actual.updated_at, expected.updated_at, "updated_at");
}

fn assert_same_entry(actual: &StoredEntry, expected: &StoredEntry) {
    assert_eq!(actual.id, expected.id, "id of {}", expected.name);
    assert_eq!(actual.category, expected.category, "category of {}", expected.name);
    assert_eq!(actual.name, expected.name, "name");
    assert_eq!(actual.title, expected.title, "title of {}", expected.name);
    assert_eq!(
        actual.description, expected.description,
        "description of {}",
        expected.name
    );
    assert_eq!(actual.status, expected.status, "status of {}", expected.name);
    assert_eq!(actual.version, expected.version, "version of {}", expected.name);
    assert_eq!(actual.tags, expected.tags, "tags of {}", expected.name);
    assert_eq!(actual.metadata, expected.metadata, "metadata of {}", expected.name);
    assert_eq!(actual.sensitive, expected.sensitive, "sensitive of {}", expected.name);
    assert_eq!(actual.owner_id, expected.owner_id, "owner_id of {}", expected.name);
    assert_eq!(actual.revision, expected.revision, "revision of {}", expected.name);
    assert_eq!(
        actual.created_at, expected.created_at,
        "created_at of {}",
        expected.name
    );
    assert_eq!(
        actual.updated_at, expected.updated_at,
        "updated_at of {}",
        expected.name
    );
}

fn assert_same_key(actual: &ApiKeyRecord, expected: &ApiKeyRecord) {
    assert_eq!(actual.id, expected.id, "id");
    assert_eq!(actual.user_id, expected.user_id, "user_id of {}", expected.id);
    assert_eq!(actual.name, expected.name, "name of {}", expected.id);
    assert_eq!(
        actual.secret_hash, expected.secret_hash,
        "secret_hash of {}",
        expected.id
    );
    assert_eq!(
        actual.permissions, expected.permissions,
        "permissions of {}",
        expected.id
    );
    assert_eq!(
        actual.rate_limit_per_minute, expected.rate_limit_per_minute,
        "rate limit of {}",
        expected.id
    );
    assert_eq!(actual.created_at, expected.created_at, "created_at of {}", expected.id);
    assert_eq!(actual.expires_at, expected.expires_at, "expires_at of {}", expected.id);
    assert_eq!(actual.revoked_at, expected.revoked_at, "revoked_at of {}", expected.id);
    assert_eq!(
        actual.last_used_at, expected.last_used_at,
        "last_used_at of {}",
        expected.id
    );
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StorageError>, expected_constraint: &str) {
    match result {
        Err(StorageError::Conflict { constraint }) => assert_eq!(constraint, expected_constraint, "constraint"),
        other => panic!("expected a conflict on {expected_constraint}, got {other:?}"),
    }
}

fn names(entries: &[StoredEntry]) -> Vec<String> {
    entries.iter().map(|entry| entry.name.clone()).collect()
}

/// Follows the keyset cursor through every page of `limit` entries.
async fn list_every_page(store: &dyn Store, filter: &EntryFilter, limit: u32) -> Vec<StoredEntry> {
    let mut all = Vec::new();
    let mut cursor: Option<EntryCursor> = None;
    loop {
        let page = store
            .list_entries(filter, cursor.as_ref(), limit)
            .await
            .expect("list_entries");
        assert!(page.len() <= limit as usize, "page longer than the limit");
        let Some(last) = page.last() else {
            return all;
        };
        cursor = Some(EntryCursor {
            created_at: last.created_at,
            id: last.id,
        });
        all.extend(page);
    }
}

/// Entries sorted the way listings must return them: creation time, then id.
fn in_list_order(entries: &[&StoredEntry]) -> Vec<String> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|entry| (entry.created_at, entry.id));
    sorted.iter().map(|entry| entry.name.clone()).collect()
}

// ---------------------------------------------------------------------------
// Scenarios

async fn users_round_trip(store: &dyn Store) {
    store.ping().await.expect("ping");
    assert_eq!(store.count_users().await.expect("count"), 0, "a new store has no users");

    let mut alice = user("alice@example.com", at(0));
    store.insert_user(&alice).await.expect("insert alice");
    assert_eq!(store.count_users().await.expect("count"), 1, "one user after insert");

    let found = store.find_user(alice.id).await.expect("find").expect("alice by id");
    assert_same_user(&found, &alice);
    let by_name = store
        .find_user_by_username("alice@example.com")
        .await
        .expect("find by username")
        .expect("alice by username");
    assert_same_user(&by_name, &alice);
    assert!(
        store.find_user(Uuid::new_v4()).await.expect("find").is_none(),
        "unknown id"
    );
    assert!(
        store.find_user_by_username("bob").await.expect("find").is_none(),
        "unknown username"
    );

    let duplicate = user("alice@example.com", at(1));
    assert_conflict(store.insert_user(&duplicate).await, "users_username");

    alice.password_hash = "$argon2id$changed".into();
    alice.roles = vec!["admin".into(), "viewer".into()];
    alice.disabled = true;
    alice.failed_logins = 3;
    alice.locked_until = Some(at(900));
    alice.mfa_enabled = true;
    alice.tokens_valid_after = at(500);
    alice.updated_at = at(600);
    store.update_user(&alice).await.expect("update alice");
    let updated = store
        .find_user(alice.id)
        .await
        .expect("find")
        .expect("alice after update");
    assert_same_user(&updated, &alice);

    alice.locked_until = None;
    alice.failed_logins = 0;
    store.update_user(&alice).await.expect("unlock alice");
    let unlocked = store
        .find_user(alice.id)
        .await
        .expect("find")
        .expect("alice after unlock");
    assert_eq!(unlocked.locked_until, None, "locked_until cleared");
    assert_eq!(unlocked.failed_logins, 0, "failed_logins reset");
}

async fn users_list_pages_by_creation_then_id(store: &dyn Store) {
    let users = [
        user("u1", at(0)),
        user("u2", at(0)),
        user("u3", at(0)),
        user("u4", at(10)),
        user("u5", at(-10)),
    ];
    for user in &users {
        store.insert_user(user).await.expect("insert user");
    }
    let mut expected: Vec<&User> = users.iter().collect();
    expected.sort_by_key(|user| (user.created_at, user.id));
    let expected: Vec<Uuid> = expected.iter().map(|user| user.id).collect();

    let mut listed = Vec::new();
    let mut cursor: Option<UserCursor> = None;
    loop {
        let page = store.list_users(cursor.as_ref(), 2).await.expect("list_users");
        assert!(page.len() <= 2, "page longer than the limit");
        let Some(last) = page.last() else {
            break;
        };
        cursor = Some(UserCursor {
            created_at: last.created_at,
            id: last.id,
        });
        listed.extend(page.iter().map(|user| user.id));
    }
    assert_eq!(listed, expected, "pages follow (created_at, id)");

    let all = store.list_users(None, 100).await.expect("list_users");
    assert_eq!(all.len(), users.len(), "one page holds everyone");
}

async fn roles_insert_update_delete(store: &dyn Store) {
    assert!(
        store.list_roles().await.expect("list").is_empty(),
        "no custom roles at first"
    );

    let auditor = role("auditor", &["audit:read", "read"], &["viewer"]);
    let analyst = role("analyst", &["analytics:read"], &[]);
    store.insert_role(&auditor, at(0)).await.expect("insert auditor");
    store.insert_role(&analyst, at(1)).await.expect("insert analyst");
    assert_conflict(store.insert_role(&auditor, at(2)).await, "roles_name");

    let roles = store.list_roles().await.expect("list");
    let listed: Vec<&str> = roles.iter().map(|role| role.name.as_str()).collect();
    assert_eq!(listed, ["analyst", "auditor"], "roles sorted by name");
    let stored_auditor = &roles[1];
    assert_eq!(stored_auditor.description, auditor.description, "description");
    assert_eq!(stored_auditor.permissions, auditor.permissions, "permissions");
    assert_eq!(stored_auditor.inherits, auditor.inherits, "inherits");
    assert!(!stored_auditor.builtin, "custom roles are not built in");

    let mut changed = role("auditor", &["audit:read"], &[]);
    changed.description = None;
    assert!(
        store.update_role(&changed, at(3)).await.expect("update"),
        "auditor exists"
    );
    let missing = role("ghost", &["read"], &[]);
    assert!(
        !store.update_role(&missing, at(3)).await.expect("update"),
        "ghost does not exist"
    );
    let roles = store.list_roles().await.expect("list");
    assert_eq!(roles[1].permissions, changed.permissions, "permissions replaced");
    assert_eq!(roles[1].inherits, Vec::<String>::new(), "inherits replaced");
    assert_eq!(roles[1].description, None, "description cleared");

    assert!(store.delete_role("analyst").await.expect("delete"), "analyst existed");
    assert!(!store.delete_role("analyst").await.expect("delete"), "analyst is gone");
    let remaining: Vec<String> = store
        .list_roles()
        .await
        .expect("list")
        .into_iter()
        .map(|role| role.name)
        .collect();
    assert_eq!(remaining, ["auditor"], "one role left");
}

async fn entries_round_trip(store: &dyn Store) {
    let mut full = entry("python-package", "requests", at(0));
    full.title = "Requests: HTTP for Humans".into();
    full.description = "Python HTTP for Humans.\nLine two, with 'quotes' and \"double quotes\".".into();
    full.status = "deprecated".into();
    full.version = Some("2.32.3".into());
    full.tags = vec!["python".into(), "http".into(), "a-tag".into()];
    full.metadata = json!({"ecosystem": "pypi", "rank": 6, "ratio": 0.25, "nested": {"list": [1, "two", null, true]}, "unicode": "日本語 ✓"});
    full.sensitive = Some(vec![0, 1, 2, 254, 255]);
    full.owner_id = Uuid::new_v4();
    full.revision = 3;
    full.updated_at = at(60);
    store.insert_entry(&full).await.expect("insert entry");

    let found = store.find_entry(full.id).await.expect("find").expect("entry by id");
    assert_same_entry(&found, &full);
    assert!(
        store.find_entry(Uuid::new_v4()).await.expect("find").is_none(),
        "unknown id"
    );

    let mut same_name = entry("python-package", "requests", at(1));
    same_name.title = "another".into();
    assert_conflict(store.insert_entry(&same_name).await, "entries_category_name");
    let other_category = entry("npm-package", "requests", at(1));
    store
        .insert_entry(&other_category)
        .await
        .expect("the same name in another category");
}

async fn entries_update_checks_revision(store: &dyn Store) {
    let mut first = entry("service", "billing", at(0));
    first.tags = vec!["payments".into()];
    let second = entry("service", "ledger", at(1));
    store.insert_entry(&first).await.expect("insert billing");
    store.insert_entry(&second).await.expect("insert ledger");

    let mut changed = first.clone();
    changed.title = "Billing service".into();
    changed.tags = vec!["finance".into(), "core".into()];
    changed.metadata = json!({"team": "payments"});
    changed.sensitive = Some(b"ciphertext".to_vec());
    changed.version = Some("1.1".into());
    changed.revision = 2;
    changed.updated_at = at(100);
    store.update_entry(&changed).await.expect("update at revision 2");
    let found = store.find_entry(first.id).await.expect("find").expect("billing");
    assert_same_entry(&found, &changed);

    let by_old_tag = EntryFilter {
        tags: vec!["payments".into()],
        ..EntryFilter::default()
    };
    assert!(
        store
            .list_entries(&by_old_tag, None, 10)
            .await
            .expect("list")
            .is_empty(),
        "the old tag was replaced"
    );
    let by_new_tag = EntryFilter {
        tags: vec!["finance".into()],
        ..EntryFilter::default()
    };
    assert_eq!(
        names(&store.list_entries(&by_new_tag, None, 10).await.expect("list")),
        ["billing"],
        "the new tag is indexed"
    );

    let mut stale = first.clone();
    stale.title = "lost update".into();
    stale.revision = 2;
    assert!(
        matches!(store.update_entry(&stale).await, Err(StorageError::StaleRevision)),
        "a second write at revision 2 is stale"
    );
    let mut missing = entry("service", "missing", at(0));
    missing.revision = 2;
    assert!(
        matches!(store.update_entry(&missing).await, Err(StorageError::StaleRevision)),
        "an unknown id cannot be updated"
    );
    let unchanged = store.find_entry(first.id).await.expect("find").expect("billing");
    assert_eq!(unchanged.title, "Billing service", "a stale write changes nothing");

    let mut renamed = changed.clone();
    renamed.name = "ledger".into();
    renamed.revision = 3;
    assert_conflict(store.update_entry(&renamed).await, "entries_category_name");

    assert!(store.delete_entry(first.id).await.expect("delete"), "billing existed");
    assert!(!store.delete_entry(first.id).await.expect("delete"), "billing is gone");
    assert!(
        store.find_entry(first.id).await.expect("find").is_none(),
        "no billing after delete"
    );
    assert!(
        store
            .list_entries(&by_new_tag, None, 10)
            .await
            .expect("list")
            .is_empty(),
        "tags go with the entry"
    );
    let analytics = store.entry_analytics(3650).await.expect("analytics");
    assert!(
        analytics.top_tags.is_empty(),
        "no tag counts left: {:?}",
        analytics.top_tags
    );
}

async fn entries_list_filters_and_cursor(store: &dyn Store) {
    let alice = Uuid::new_v4();
    let bob = Uuid::new_v4();
    let fixtures = [
        ("service", "a1", "active", alice, &["x", "y"][..], 0),
        ("service", "a2", "deprecated", alice, &["x"][..], 0),
        ("service", "a3", "active", bob, &[][..], 0),
        ("library", "b1", "active", bob, &["y"][..], -5),
        ("library", "b2", "archived", alice, &["x", "y", "z"][..], 5),
        ("library", "b3", "active", alice, &["z"][..], 5),
        ("dataset", "c1", "active", bob, &["x", "y"][..], 20),
        ("dataset", "c2", "active", bob, &["x"][..], -20),
    ];
    let mut entries = Vec::new();
    for (category, name, status, owner, tags, seconds) in fixtures {
        let mut item = entry(category, name, at(seconds));
        item.status = status.into();
        item.owner_id = owner;
        item.tags = tags.iter().map(|tag| tag.to_string()).collect();
        store.insert_entry(&item).await.expect("insert entry");
        entries.push(item);
    }

    let filters = [
        ("no filter", EntryFilter::default()),
        (
            "category",
            EntryFilter {
                category: Some("library".into()),
                ..EntryFilter::default()
            },
        ),
        (
            "status",
            EntryFilter {
                status: Some("active".into()),
                ..EntryFilter::default()
            },
        ),
        (
            "owner",
            EntryFilter {
                owner_id: Some(alice),
                ..EntryFilter::default()
            },
        ),
        (
            "one tag",
            EntryFilter {
                tags: vec!["x".into()],
                ..EntryFilter::default()
            },
        ),
        (
            "two tags",
            EntryFilter {
                tags: vec!["x".into(), "y".into()],
                ..EntryFilter::default()
            },
        ),
        (
            "everything",
            EntryFilter {
                category: Some("service".into()),
                status: Some("active".into()),
                tags: vec!["y".into()],
                owner_id: Some(alice),
            },
        ),
        (
            "no match",
            EntryFilter {
                category: Some("model".into()),
                ..EntryFilter::default()
            },
        ),
    ];
    for (label, filter) in filters {
        let matching: Vec<&StoredEntry> = entries
            .iter()
            .filter(|item| filter.category.iter().all(|category| &item.category == category))
            .filter(|item| filter.status.iter().all(|status| &item.status == status))
            .filter(|item| filter.owner_id.iter().all(|owner| item.owner_id == *owner))
            .filter(|item| filter.tags.iter().all(|tag| item.tags.contains(tag)))
            .collect();
        let expected = in_list_order(&matching);
        for limit in [1, 3, 100] {
            let listed = names(&list_every_page(store, &filter, limit).await);
            assert_eq!(listed, expected, "filter `{label}` with pages of {limit}");
        }
    }
}

async fn search_ranks_and_filters(store: &dyn Store) {
    let owner = Uuid::new_v4();
    let fixtures = [
        (
            "python-package",
            "httpx",
            "The next generation HTTP client.",
            &["python"][..],
        ),
        (
            "python-package",
            "websocket-client",
            "WebSocket client for Python",
            &["python"][..],
        ),
        ("python-package", "requests", "Python HTTP for Humans.", &["python"][..]),
        (
            "python-package",
            "zope.interface",
            "Interfaces for Python",
            &["python"][..],
        ),
        ("python-package", "pillow", "Python Imaging Library", &["graphics"][..]),
        (
            "python-package",
            "wsproto",
            "Sans-IO websocket protocol implementation",
            &[][..],
        ),
        (
            "npm-package",
            "axios",
            "Promise based HTTP client for the browser",
            &["javascript"][..],
        ),
    ];
    let mut ids = std::collections::HashMap::new();
    for (index, (category, name, description, tags)) in fixtures.into_iter().enumerate() {
        let mut item = entry(category, name, at(i64::try_from(index).expect("small index")));
        item.description = description.into();
        item.tags = tags.iter().map(|tag| tag.to_string()).collect();
        if name == "axios" {
            item.owner_id = owner;
            item.status = "deprecated".into();
        }
        store.insert_entry(&item).await.expect("insert entry");
        ids.insert(name, item.id);
    }
    let terms = |words: &[&str]| -> Vec<String> { words.iter().map(|word| word.to_string()).collect() };
    let search = |words: Vec<String>, filter: EntryFilter, offset: u32, limit: u32| async move {
        store
            .search_entries(&words, &filter, offset, limit)
            .await
            .expect("search_entries")
    };

    let hits = search(terms(&["http", "client"]), EntryFilter::default(), 0, 20).await;
    let hit_names: Vec<&str> = hits.iter().map(|(item, _)| item.name.as_str()).collect();
    let mut sorted = hit_names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["axios", "httpx", "requests", "websocket-client"],
        "entries with either word match, no others"
    );
    for (item, score) in &hits {
        assert!(*score > 0.0, "{} has a positive score, got {score}", item.name);
    }
    for pair in hits.windows(2) {
        assert!(
            pair[0].1 >= pair[1].1,
            "scores never increase: {} {} then {} {}",
            pair[0].0.name,
            pair[0].1,
            pair[1].0.name,
            pair[1].1
        );
    }
    let rank_of = |name: &str| hit_names.iter().position(|hit| *hit == name);
    assert!(
        rank_of("httpx") < rank_of("requests"),
        "both words outrank one: {hit_names:?}"
    );
    assert!(
        rank_of("axios") < rank_of("requests"),
        "both words outrank one: {hit_names:?}"
    );

    let websocket = search(terms(&["websocket"]), EntryFilter::default(), 0, 20).await;
    let websocket_names: Vec<&str> = websocket.iter().map(|(item, _)| item.name.as_str()).collect();
    assert_eq!(
        websocket_names,
        ["websocket-client", "wsproto"],
        "a name match outranks a description match"
    );

    let interface = search(terms(&["interface"]), EntryFilter::default(), 0, 20).await;
    assert_eq!(interface.len(), 1, "a dotted name is split into words");
    assert_eq!(interface[0].0.id, ids["zope.interface"], "zope.interface found");

    let by_tag = search(terms(&["graphics"]), EntryFilter::default(), 0, 20).await;
    assert_eq!(by_tag.len(), 1, "tags are searchable");
    assert_eq!(by_tag[0].0.name, "pillow", "pillow found by its tag");

    let uppercase_text = search(terms(&["humans"]), EntryFilter::default(), 0, 20).await;
    assert_eq!(uppercase_text.len(), 1, "matching ignores case");

    assert!(
        search(terms(&["nonexistentword"]), EntryFilter::default(), 0, 20)
            .await
            .is_empty(),
        "an unknown word matches nothing"
    );
    assert!(
        search(Vec::new(), EntryFilter::default(), 0, 20).await.is_empty(),
        "no terms, no hits"
    );

    let filter_cases = [
        (
            "category",
            EntryFilter {
                category: Some("npm-package".into()),
                ..EntryFilter::default()
            },
            vec!["axios"],
        ),
        (
            "status",
            EntryFilter {
                status: Some("active".into()),
                ..EntryFilter::default()
            },
            vec!["httpx", "requests", "websocket-client"],
        ),
        (
            "owner",
            EntryFilter {
                owner_id: Some(owner),
                ..EntryFilter::default()
            },
            vec!["axios"],
        ),
        (
            "tag",
            EntryFilter {
                tags: vec!["python".into()],
                ..EntryFilter::default()
            },
            vec!["httpx", "requests", "websocket-client"],
        ),
    ];
    for (label, filter, expected) in filter_cases {
        let hits = search(terms(&["http", "client"]), filter, 0, 20).await;
        let mut hit_names: Vec<&str> = hits.iter().map(|(item, _)| item.name.as_str()).collect();
        hit_names.sort_unstable();
        assert_eq!(hit_names, expected, "search filtered by {label}");
    }

    let everything = search(terms(&["http", "client", "python"]), EntryFilter::default(), 0, 20).await;
    assert!(everything.len() >= 5, "OR semantics: {} hits", everything.len());
    let mut paged = Vec::new();
    for offset in 0..everything.len() {
        let page = search(
            terms(&["http", "client", "python"]),
            EntryFilter::default(),
            u32::try_from(offset).expect("small offset"),
            1,
        )
        .await;
        assert_eq!(page.len(), 1, "one hit at offset {offset}");
        paged.push(page[0].0.id);
    }
    let all_ids: Vec<Uuid> = everything.iter().map(|(item, _)| item.id).collect();
    assert_eq!(paged, all_ids, "offset and limit walk the same ranking");
    let past_end = search(
        terms(&["http", "client", "python"]),
        EntryFilter::default(),
        u32::try_from(everything.len()).expect("small count"),
        5,
    )
    .await;
    assert!(past_end.is_empty(), "an offset past the end returns nothing");
}

/// Converts the import-format sample into stored entries, as the import path does.
fn pypi_sample_entries() -> Vec<StoredEntry> {
    PYPI_SAMPLE
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            let value: Value = serde_json::from_str(line).expect("sample line is JSON");
            let text = |field: &str| value[field].as_str().unwrap_or_default().to_string();
            let mut item = entry(
                &text("category"),
                &text("name"),
                at(i64::try_from(index).expect("small index")),
            );
            item.title = text("title");
            item.description = text("description");
            item.status = text("status");
            item.version = value["version"].as_str().map(str::to_string);
            item.tags = value["tags"]
                .as_array()
                .map(|tags| tags.iter().filter_map(|tag| tag.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            item.metadata = value["metadata"].clone();
            item
        })
        .collect()
}

async fn search_pypi_sample_http_client(store: &dyn Store) {
    let sample = pypi_sample_entries();
    let outcomes = store
        .import_entries(&sample, ImportPolicy::Skip)
        .await
        .expect("import sample");
    assert!(
        outcomes.iter().all(|outcome| *outcome == ImportOutcome::Created),
        "every sample entry is new"
    );

    let terms = vec!["http".to_string(), "client".to_string()];
    let hits = store
        .search_entries(&terms, &EntryFilter::default(), 0, 10)
        .await
        .expect("search");
    let top: Vec<&str> = hits.iter().map(|(item, _)| item.name.as_str()).collect();
    assert_eq!(top.len(), 10, "ten hits requested");
    assert!(top[..5].contains(&"httpx"), "httpx in the top five: {top:?}");
    for name in ["httplib2", "aiohttp"] {
        assert!(top.contains(&name), "{name} in the top ten: {top:?}");
    }
}

/// Checks that a word in more entries than `SEARCH_CANDIDATES` pages through
/// that many only. Filters apply before the limit, so a filtered search
/// still finds matches that come after the first candidates.
async fn search_ranks_at_most_the_candidate_limit(store: &dyn Store) {
    let limit = storage::SEARCH_CANDIDATES as usize;
    let mut batch: Vec<StoredEntry> = (0..limit + 5)
        .map(|n| {
            let mut item = entry("service", &format!("common-{n}"), at(0));
            item.description = "A common component".into();
            item
        })
        .collect();
    for (n, item) in batch.iter_mut().skip(limit).enumerate() {
        item.category = "rare".into();
        item.name = format!("rare-{n}");
    }
    for chunk in batch.chunks(1000) {
        store.import_entries(chunk, ImportPolicy::Skip).await.expect("import");
    }
    let common = vec!["common".to_string()];

    let last_page = store
        .search_entries(&common, &EntryFilter::default(), SEARCH_OFFSET_NEAR_END, 100)
        .await
        .expect("search");
    assert_eq!(
        last_page.len(),
        limit - SEARCH_OFFSET_NEAR_END as usize,
        "pages end at the candidate limit"
    );

    let rare = EntryFilter {
        category: Some("rare".into()),
        ..EntryFilter::default()
    };
    let filtered = store.search_entries(&common, &rare, 0, 100).await.expect("search");
    assert_eq!(filtered.len(), 5, "the filter applies before the candidate limit");
}

const SEARCH_OFFSET_NEAR_END: u32 = storage::SEARCH_CANDIDATES - 30;

async fn analytics_counts(store: &dyn Store) {
    let now = now_micros();
    let fixtures = [
        ("service", "active", &["alpha", "beta"][..], Duration::hours(1)),
        ("service", "active", &["beta"][..], Duration::days(1)),
        ("library", "deprecated", &["beta", "gamma"][..], Duration::days(1)),
        ("library", "archived", &["gamma"][..], Duration::days(40)),
        ("dataset", "active", &[][..], Duration::days(2)),
    ];
    for (index, (category, status, tags, age)) in fixtures.into_iter().enumerate() {
        let mut item = entry(category, &format!("item{index}"), now - age);
        item.status = status.into();
        item.tags = tags.iter().map(|tag| tag.to_string()).collect();
        store.insert_entry(&item).await.expect("insert entry");
    }
    let mut many_tags = entry("model", "tagged", now - Duration::days(100));
    many_tags.tags = (0..12).map(|i| format!("t{i:02}")).collect();
    store.insert_entry(&many_tags).await.expect("insert tagged");

    let analytics = store.entry_analytics(30).await.expect("analytics");
    assert_eq!(analytics.total, 6, "total counts every entry");
    let pairs = |items: &[(&str, i64)]| -> Vec<(String, i64)> {
        items.iter().map(|(key, count)| (key.to_string(), *count)).collect()
    };
    assert_eq!(
        analytics.by_category,
        pairs(&[("dataset", 1), ("library", 2), ("model", 1), ("service", 2)]),
        "by_category sorted by name"
    );
    assert_eq!(
        analytics.by_status,
        pairs(&[("active", 4), ("archived", 1), ("deprecated", 1)]),
        "by_status sorted by name"
    );
    assert_eq!(analytics.top_tags.len(), 10, "at most ten tags");
    assert_eq!(
        analytics.top_tags[..4],
        pairs(&[("beta", 3), ("gamma", 2), ("alpha", 1), ("t00", 1)])[..],
        "tags by count, then name"
    );

    let day = |age: Duration| (now - age).format("%Y-%m-%d").to_string();
    let mut expected_days: Vec<(String, i64)> = Vec::new();
    for age in [
        Duration::hours(1),
        Duration::days(1),
        Duration::days(1),
        Duration::days(2),
    ] {
        match expected_days.iter_mut().find(|(date, _)| *date == day(age)) {
            Some((_, count)) => *count += 1,
            None => expected_days.push((day(age), 1)),
        }
    }
    expected_days.sort();
    assert_eq!(
        analytics.created_per_day, expected_days,
        "entries of the last 30 days, per UTC day"
    );
}

async fn import_skip_and_update(store: &dyn Store) {
    let alice = Uuid::new_v4();
    let bob = Uuid::new_v4();
    let mut existing = entry("service", "billing", at(0));
    existing.owner_id = alice;
    existing.tags = vec!["old".into()];
    store.insert_entry(&existing).await.expect("insert billing");

    let incoming = |name: &str, owner: Uuid, title: &str| {
        let mut item = entry("service", name, at(100));
        item.owner_id = owner;
        item.title = title.into();
        item.tags = vec!["new".into()];
        item
    };

    let batch = [
        incoming("ledger", bob, "Ledger"),
        incoming("billing", bob, "Billing by bob"),
        incoming("ledger", bob, "Ledger again"),
    ];
    let outcomes = store.import_entries(&batch, ImportPolicy::Skip).await.expect("import");
    assert_eq!(
        outcomes,
        [
            ImportOutcome::Created,
            ImportOutcome::SkippedExisting,
            ImportOutcome::SkippedExisting
        ],
        "skip policy"
    );
    let ledger = store
        .find_entry(batch[0].id)
        .await
        .expect("find")
        .expect("ledger created");
    assert_same_entry(&ledger, &batch[0]);
    let billing = store.find_entry(existing.id).await.expect("find").expect("billing");
    assert_same_entry(&billing, &existing);

    let not_owner = ImportPolicy::Update {
        importer: bob,
        may_update_any: false,
    };
    let outcomes = store
        .import_entries(&[incoming("billing", bob, "Billing by bob")], not_owner)
        .await
        .expect("import");
    assert_eq!(
        outcomes,
        [ImportOutcome::SkippedNotOwner],
        "bob may not change alice's entry"
    );
    let billing = store.find_entry(existing.id).await.expect("find").expect("billing");
    assert_same_entry(&billing, &existing);

    let owner_update = ImportPolicy::Update {
        importer: alice,
        may_update_any: false,
    };
    let replacement = incoming("billing", alice, "Billing v2");
    let outcomes = store
        .import_entries(
            &[replacement.clone(), incoming("invoices", alice, "Invoices")],
            owner_update,
        )
        .await
        .expect("import");
    assert_eq!(
        outcomes,
        [ImportOutcome::Updated, ImportOutcome::Created],
        "owner update"
    );
    let billing = store.find_entry(existing.id).await.expect("find").expect("billing");
    let expected = StoredEntry {
        id: existing.id,
        owner_id: alice,
        revision: existing.revision + 1,
        created_at: existing.created_at,
        ..replacement
    };
    assert_same_entry(&billing, &expected);
    let by_old_tag = EntryFilter {
        tags: vec!["old".into()],
        ..EntryFilter::default()
    };
    assert!(
        store
            .list_entries(&by_old_tag, None, 10)
            .await
            .expect("list")
            .is_empty(),
        "an updating import replaces tags"
    );

    let manager_update = ImportPolicy::Update {
        importer: bob,
        may_update_any: true,
    };
    let outcomes = store
        .import_entries(&[incoming("billing", bob, "Billing v3")], manager_update)
        .await
        .expect("import");
    assert_eq!(
        outcomes,
        [ImportOutcome::Updated],
        "entries:manage may update any entry"
    );
    let billing = store.find_entry(existing.id).await.expect("find").expect("billing");
    assert_eq!(billing.title, "Billing v3", "title replaced");
    assert_eq!(billing.owner_id, alice, "the owner stays");
    assert_eq!(billing.revision, existing.revision + 2, "revision counts both updates");

    let total = store.entry_analytics(1).await.expect("analytics").total;
    assert_eq!(total, 3, "billing, ledger and invoices");
}

async fn api_keys_lifecycle(store: &dyn Store) {
    let alice = user("alice", at(0));
    let bob = user("bob", at(0));
    store.insert_user(&alice).await.expect("insert alice");
    store.insert_user(&bob).await.expect("insert bob");

    let mut unlimited = api_key("k3", alice.id, at(10));
    unlimited.rate_limit_per_minute = None;
    unlimited.permissions = Vec::new();
    let keys = [
        api_key("k2", alice.id, at(5)),
        api_key("k1", alice.id, at(5)),
        unlimited,
        api_key("k0", bob.id, at(7)),
    ];
    for key in &keys {
        store.insert_api_key(key).await.expect("insert key");
    }
    assert_conflict(store.insert_api_key(&keys[0]).await, "unique");

    let found = store.find_api_key("k3").await.expect("find").expect("k3");
    assert_same_key(&found, &keys[2]);
    assert!(
        store.find_api_key("missing").await.expect("find").is_none(),
        "unknown key"
    );

    let listed: Vec<String> = store
        .list_api_keys(None)
        .await
        .expect("list")
        .into_iter()
        .map(|key| key.id)
        .collect();
    assert_eq!(listed, ["k1", "k2", "k0", "k3"], "all keys by (created_at, id)");
    let alices: Vec<String> = store
        .list_api_keys(Some(alice.id))
        .await
        .expect("list")
        .into_iter()
        .map(|key| key.id)
        .collect();
    assert_eq!(alices, ["k1", "k2", "k3"], "alice's keys only");

    let revoked_at = |id: &'static str| async move {
        store
            .find_api_key(id)
            .await
            .expect("find")
            .expect("key exists")
            .revoked_at
    };
    assert!(store.revoke_api_key("k1", at(50)).await.expect("revoke"), "k1 exists");
    assert_eq!(revoked_at("k1").await, Some(at(50)), "revoked");
    assert!(store.revoke_api_key("k1", at(90)).await.expect("revoke"), "k1 exists");
    assert_eq!(
        revoked_at("k1").await,
        Some(at(50)),
        "a later revocation leaves the earlier one"
    );
    assert!(store.revoke_api_key("k1", at(20)).await.expect("revoke"), "k1 exists");
    assert_eq!(
        revoked_at("k1").await,
        Some(at(20)),
        "an earlier revocation brings it forward"
    );
    assert!(
        !store.revoke_api_key("missing", at(20)).await.expect("revoke"),
        "unknown key"
    );

    let last_used = |id: &'static str| async move {
        store
            .find_api_key(id)
            .await
            .expect("find")
            .expect("key exists")
            .last_used_at
    };
    store
        .record_api_key_use(&[
            ("k2".into(), at(30)),
            ("k2".into(), at(70)),
            ("k2".into(), at(40)),
            ("k3".into(), at(35)),
            ("missing".into(), at(35)),
        ])
        .await
        .expect("record use");
    assert_eq!(last_used("k2").await, Some(at(70)), "the latest use of a batch wins");
    assert_eq!(last_used("k3").await, Some(at(35)), "k3 used");
    assert_eq!(last_used("k0").await, None, "k0 never used");
    store
        .record_api_key_use(&[("k2".into(), at(60))])
        .await
        .expect("record use");
    assert_eq!(last_used("k2").await, Some(at(70)), "last_used_at never moves back");
    store.record_api_key_use(&[]).await.expect("an empty batch");
}

async fn refresh_tokens_and_mfa(store: &dyn Store) {
    let alice = user("alice", at(0));
    store.insert_user(&alice).await.expect("insert alice");
    let token = |hash: u8, family: &str, generation: i64| RefreshTokenRecord {
        token_hash: vec![hash; 32],
        family_id: family.to_string(),
        user_id: alice.id,
        generation,
        created_at: at(generation),
        expires_at: at(3600),
        spent_at: None,
        revoked_at: None,
    };
    for record in [token(1, "f1", 1), token(2, "f1", 2), token(3, "f2", 1)] {
        store.insert_refresh_token(&record).await.expect("insert refresh token");
    }
    let found = store
        .find_refresh_token(&[1; 32])
        .await
        .expect("find")
        .expect("token 1");
    assert_eq!(found.family_id, "f1", "family");
    assert_eq!(found.user_id, alice.id, "user");
    assert_eq!(found.generation, 1, "generation");
    assert_eq!(found.expires_at, at(3600), "expires_at");
    assert!(
        store.find_refresh_token(&[9; 32]).await.expect("find").is_none(),
        "unknown token"
    );

    assert!(
        store.spend_refresh_token(&[1; 32], at(10)).await.expect("spend"),
        "first spend wins"
    );
    assert!(
        !store.spend_refresh_token(&[1; 32], at(11)).await.expect("spend"),
        "second spend loses"
    );
    let spent = store
        .find_refresh_token(&[1; 32])
        .await
        .expect("find")
        .expect("token 1");
    assert_eq!(spent.spent_at, Some(at(10)), "spent_at recorded");

    store
        .revoke_user_refresh_tokens(alice.id, Some("f2"), at(20))
        .await
        .expect("revoke all but f2");
    let revoked = |hash: u8| async move {
        store
            .find_refresh_token(&[hash; 32])
            .await
            .expect("find")
            .expect("token exists")
            .revoked_at
    };
    assert_eq!(revoked(2).await, Some(at(20)), "f1 revoked");
    assert_eq!(revoked(3).await, None, "f2 kept");
    assert!(
        !store.spend_refresh_token(&[2; 32], at(21)).await.expect("spend"),
        "a revoked token cannot be spent"
    );
    store.revoke_refresh_family("f2", at(30)).await.expect("revoke f2");
    assert_eq!(revoked(3).await, Some(at(30)), "f2 revoked");
    store
        .revoke_user_refresh_tokens(alice.id, None, at(40))
        .await
        .expect("revoke everything");
    assert_eq!(revoked(2).await, Some(at(20)), "an earlier revocation stays");

    store
        .insert_revoked_token("jti-1", at(100))
        .await
        .expect("revoke jti-1");
    store
        .insert_revoked_token("jti-1", at(100))
        .await
        .expect("revoking twice is harmless");
    store.insert_revoked_token("jti-2", at(10)).await.expect("revoke jti-2");
    let live = store.list_revoked_tokens(at(50)).await.expect("list");
    assert_eq!(live, ["jti-1"], "expired revocations are left out");

    assert!(
        store.find_mfa(alice.id).await.expect("find").is_none(),
        "no MFA state yet"
    );
    let mut mfa = MfaRecord {
        user_id: alice.id,
        secret: None,
        pending_secret: Some(vec![7; 40]),
        recovery_codes: Vec::new(),
        last_step: 0,
    };
    store.save_mfa(&mfa).await.expect("save pending");
    mfa.secret = mfa.pending_secret.take();
    mfa.recovery_codes = vec!["aa11".into(), "bb22".into()];
    mfa.last_step = 58_000_123;
    store.save_mfa(&mfa).await.expect("save confirmed");
    let found = store.find_mfa(alice.id).await.expect("find").expect("MFA state");
    assert_eq!(found.secret, mfa.secret, "secret");
    assert_eq!(found.pending_secret, None, "pending secret cleared");
    assert_eq!(found.recovery_codes, mfa.recovery_codes, "recovery codes");
    assert_eq!(found.last_step, mfa.last_step, "last step");
    store.delete_mfa(alice.id).await.expect("delete");
    assert!(
        store.find_mfa(alice.id).await.expect("find").is_none(),
        "MFA state deleted"
    );
}

// ---------------------------------------------------------------------------
// Connecting

#[tokio::test]
async fn postgres_connection_refused_is_unavailable() {
    // Nothing listens on port 1 of the loopback interface.
    let result = storage::connect("postgres://postgres@127.0.0.1:1/test").await;
    assert!(
        matches!(result, Err(StorageError::Unavailable(_))),
        "expected Unavailable, got {:?}",
        result.err()
    );
}

#[tokio::test]
async fn connect_rejects_unknown_scheme() {
    let result = storage::connect("mysql://root@127.0.0.1/registry").await;
    assert!(
        matches!(result, Err(StorageError::Database(_))),
        "expected a configuration error, got {:?}",
        result.err()
    );
}

#[tokio::test]
async fn postgres_url_forms_connect() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    let rest = schema
        .url
        .split_once("://")
        .map(|(_, rest)| rest.to_string())
        .expect("URL with a scheme");
    for scheme in ["postgres", "postgresql", "postgresql+asyncpg"] {
        let store = storage::connect(&format!("{scheme}://{rest}"))
            .await
            .unwrap_or_else(|error| panic!("{scheme}:// URL connects: {error:?}"));
        store.ping().await.expect("ping");
        assert_eq!(
            store.count_users().await.expect("count"),
            0,
            "{scheme}: migrated, empty store"
        );
    }
    PostgresSchema::drop_schema(&schema.admin, &schema.name).await;
}

/// The whole server on PostgreSQL: the sample imported over HTTP is found
/// by a search, as with SQLite in `search.rs`.
#[tokio::test]
async fn postgres_app_imports_and_searches() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    let app = TestApp::spawn_with(&[("DATABASE_URL", schema.url.as_str())]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    let response = import_ndjson(&app, &token, "", PYPI_SAMPLE).await;
    assert_eq!(response.status(), 200, "sample import");
    let report: Value = response.json().await.expect("import report");
    assert_eq!(report["created"], json!(300), "sample fully imported: {report}");

    let response = app
        .get("/api/v1/registry/search?q=http%20client&limit=10", &token)
        .await;
    assert_eq!(response.status(), 200, "search");
    let page: Value = response.json().await.expect("search body");
    let top: Vec<&str> = page["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|item| item["name"].as_str().expect("name"))
        .collect();
    assert!(top.contains(&"httpx"), "httpx in the top ten: {top:?}");

    app.stop().await;
    PostgresSchema::drop_schema(&schema.admin, &schema.name).await;
}

async fn api_keys_insert_within_limit(store: &dyn Store) {
    let alice = user("alice", at(0));
    let bob = user("bob", at(0));
    store.insert_user(&alice).await.expect("insert alice");
    store.insert_user(&bob).await.expect("insert bob");
    let now = at(100);
    let mut expired = api_key("expired", alice.id, at(0));
    expired.expires_at = now;
    let mut revoked = api_key("revoked", alice.id, at(0));
    revoked.revoked_at = Some(now);
    let mut in_grace = api_key("in-grace", alice.id, at(0));
    in_grace.revoked_at = Some(now + Duration::hours(1));
    for key in [&expired, &revoked, &in_grace] {
        store.insert_api_key(key).await.expect("insert key");
    }

    let second = store
        .insert_api_key_within_limit(&api_key("second", alice.id, now), None, 2, now)
        .await
        .expect("insert");
    assert_eq!(
        second,
        LimitedKeyInsert::Inserted,
        "expired and revoked keys do not count"
    );
    let third = store
        .insert_api_key_within_limit(&api_key("third", alice.id, now), None, 2, now)
        .await
        .expect("insert");
    assert_eq!(
        third,
        LimitedKeyInsert::LimitReached,
        "a key in its grace period counts"
    );
    assert!(
        store.find_api_key("third").await.expect("find").is_none(),
        "nothing stored"
    );
    let for_bob = store
        .insert_api_key_within_limit(&api_key("bobs", bob.id, now), None, 1, now)
        .await
        .expect("insert");
    assert_eq!(for_bob, LimitedKeyInsert::Inserted, "the count is per owner");

    let with_grace = store
        .insert_api_key_within_limit(
            &api_key("replacement", alice.id, now),
            Some(("second", now + Duration::hours(1))),
            2,
            now,
        )
        .await
        .expect("rotate");
    assert_eq!(
        with_grace,
        LimitedKeyInsert::LimitReached,
        "the old key counts in its grace"
    );
    let second_after = store.find_api_key("second").await.expect("find").expect("second");
    assert_eq!(second_after.revoked_at, None, "a refused rotation revokes nothing");

    let without_grace = store
        .insert_api_key_within_limit(&api_key("replacement", alice.id, now), Some(("second", now)), 2, now)
        .await
        .expect("rotate");
    assert_eq!(
        without_grace,
        LimitedKeyInsert::Inserted,
        "a key stopping now makes room"
    );
    let second_after = store.find_api_key("second").await.expect("find").expect("second");
    assert_eq!(second_after.revoked_at, Some(now), "the old key is revoked");

    for (old_id, label) in [
        ("second", "already rotated"),
        ("expired", "expired"),
        ("bobs", "another owner's"),
    ] {
        let outcome = store
            .insert_api_key_within_limit(&api_key("never", alice.id, now), Some((old_id, now)), 10, now)
            .await
            .expect("rotate");
        assert_eq!(outcome, LimitedKeyInsert::ReplacedKeyNotLive, "{label} key");
    }
    assert!(
        store.find_api_key("never").await.expect("find").is_none(),
        "nothing stored"
    );
    let bobs = store.find_api_key("bobs").await.expect("find").expect("bobs");
    assert_eq!(bobs.revoked_at, None, "another owner's key is left alone");
}

async fn usernames_match_ignoring_case(store: &dyn Store) {
    store.insert_user(&user("Carol", at(0))).await.expect("insert Carol");

    for candidate in ["carol", "CAROL", "Carol"] {
        let taken = store.username_taken_ignoring_case(candidate).await.expect("lookup");
        assert!(taken, "{candidate}");
    }
    for candidate in ["carol2", "caro", "c\u{430}rol"] {
        let taken = store.username_taken_ignoring_case(candidate).await.expect("lookup");
        assert!(!taken, "{candidate:?}");
    }
}
