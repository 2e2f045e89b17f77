//! Search queries: the `q` text of `GET /api/v1/registry/search`.
//!
//! `search_terms` must turn any text into at most 16 distinct words of
//! letters and digits. The SQLite store's FTS5 search over those words
//! must succeed with and without a filter, so no input may produce a MATCH
//! expression that SQLite rejects. The search runs against an in-memory
//! database built by the real migrations, with a few entries in it. The
//! endpoint's own length check (1 to 256 characters) is not applied here,
//! so longer texts are searched too. PostgreSQL binds each word into
//! `plainto_tsquery` and is not exercised.

#![no_main]

use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use hyper_registry::registry::search_terms;
use hyper_registry::storage::{self, EntryFilter, SharedStore, StoredEntry};
use libfuzzer_sys::fuzz_target;
use sqlx::{Connection, SqliteConnection};
use uuid::Uuid;

/// The value of `MAX_SEARCH_TERMS` in `src/registry/validate.rs`, which is private.
const MAX_SEARCH_TERMS: usize = 16;
const DATABASE_URL: &str = "sqlite:file:hyper-registry-fuzz-search?mode=memory";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: SharedStore,
    /// A connection that keeps the shared in-memory database open. SQLite
    /// drops the database when its last connection closes, and the pool
    /// closes idle and old connections.
    _keeper: SqliteConnection,
}

fn entry(name: &str, title: &str, description: &str, tags: &[&str]) -> StoredEntry {
    let created = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("valid date");
    StoredEntry {
        id: Uuid::new_v4(),
        category: "package".to_string(),
        name: name.to_string(),
        title: title.to_string(),
        description: description.to_string(),
        status: "active".to_string(),
        version: Some("1.0.0".to_string()),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        metadata: serde_json::json!({}),
        sensitive: None,
        owner_id: Uuid::nil(),
        revision: 1,
        created_at: created,
        updated_at: created,
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (store, keeper) = runtime.block_on(async {
            let keeper = SqliteConnection::connect(DATABASE_URL)
                .await
                .expect("open in-memory SQLite");
            let store = storage::connect(DATABASE_URL).await.expect("migrate in-memory SQLite");
            let entries = [
                entry(
                    "requests",
                    "HTTP for Humans",
                    "A simple HTTP client library.",
                    &["http", "client"],
                ),
                entry(
                    "cafe-tools",
                    "Café tools",
                    "Naïve résumé handling, 東京 and Ünïcödé.",
                    &["unicode"],
                ),
                entry(
                    "near-or-and",
                    "NEAR OR AND NOT",
                    "Words that are FTS5 operators: NEAR OR AND NOT.",
                    &["fts5"],
                ),
                entry(
                    "@scope/pkg",
                    "Scoped package",
                    "Quotes \" and stars * and (brackets).",
                    &[],
                ),
            ];
            for item in &entries {
                store.insert_entry(item).await.expect("insert sample entry");
            }
            (store, keeper)
        });
        Fixture {
            runtime,
            store,
            _keeper: keeper,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let query = String::from_utf8_lossy(data);
    let terms = search_terms(&query);

    assert!(terms.len() <= MAX_SEARCH_TERMS, "{} terms from {query:?}", terms.len());
    for (index, term) in terms.iter().enumerate() {
        assert!(!term.is_empty(), "empty term from {query:?}");
        assert!(!terms[..index].contains(term), "duplicate term {term:?} from {query:?}");
        assert!(
            term.chars().all(char::is_alphanumeric),
            "term {term:?} from {query:?} is not letters and digits"
        );
    }

    // Without a filter the store ranks matches from the index alone. With
    // one, it joins the entries table, which builds a different statement.
    let filters = [
        EntryFilter::default(),
        EntryFilter {
            status: Some("active".to_string()),
            tags: vec!["http".to_string()],
            ..EntryFilter::default()
        },
    ];
    let limit = 20;
    for filter in &filters {
        let search = fixture.store.search_entries(&terms, filter, 0, limit);
        match fixture.runtime.block_on(search) {
            Ok(rows) => {
                assert!(rows.len() <= limit as usize);
                for (_, score) in rows {
                    assert!(score.is_finite(), "score {score} for {query:?}");
                }
            }
            Err(error) => panic!("search for {query:?} (terms {terms:?}, {filter:?}) failed: {error}"),
        }
    }
});
