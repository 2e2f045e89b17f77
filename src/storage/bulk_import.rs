//! The fast path of an import batch, with the same shape on both backends.
//! One multi-row `INSERT … ON CONFLICT (category, name) DO NOTHING RETURNING
//! id` covers the whole batch and one multi-row insert the new rows' tags,
//! instead of a lookup, an insert and a tag insert per line. Rows that
//! already existed come back as "not inserted" and take the per-row path
//! (skip or update).

use std::collections::HashSet;

use sqlx::{PgConnection, Postgres, QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::time_format::encode;
use super::{StorageError, StorageResult, StoredEntry};

/// Rows per statement: 14 parameters each stays far below both databases'
/// limits on bound parameters (32,766 in SQLite, 65,535 in PostgreSQL).
const ROWS_PER_STATEMENT: usize = 500;
/// Tag pairs per statement.
const TAGS_PER_STATEMENT: usize = 5000;

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain lists and JSON values cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Inserts the entries that do not exist yet; returns the ids inserted.
pub(super) async fn insert_new_sqlite(
    connection: &mut SqliteConnection,
    batch: &[StoredEntry],
) -> StorageResult<HashSet<Uuid>> {
    let mut inserted = HashSet::with_capacity(batch.len());
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO entries (id, category, name, title, description, status, version, tags, metadata, \
             sensitive, owner_id, revision, created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut row, entry| {
            row.push_bind(entry.id.to_string())
                .push_bind(&entry.category)
                .push_bind(&entry.name)
                .push_bind(&entry.title)
                .push_bind(&entry.description)
                .push_bind(&entry.status)
                .push_bind(&entry.version)
                .push_bind(to_json(&entry.tags))
                .push_bind(to_json(&entry.metadata))
                .push_bind(&entry.sensitive)
                .push_bind(entry.owner_id.to_string())
                .push_bind(entry.revision)
                .push_bind(encode(entry.created_at))
                .push_bind(encode(entry.updated_at));
        });
        insert.push(" ON CONFLICT (category, name) DO NOTHING RETURNING id");
        let rows = insert
            .build()
            .fetch_all(&mut *connection)
            .await
            .map_err(super::classify)?;
        for row in rows {
            let id: String = row.get("id");
            inserted.insert(Uuid::parse_str(&id).map_err(|_| StorageError::Corrupt(format!("bad uuid `{id}`")))?);
        }
    }

    let tags: Vec<(String, &String)> = batch
        .iter()
        .filter(|entry| inserted.contains(&entry.id))
        .flat_map(|entry| entry.tags.iter().map(move |tag| (entry.id.to_string(), tag)))
        .collect();
    for chunk in tags.chunks(TAGS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT OR IGNORE INTO entry_tags (entry_id, tag) ");
        insert.push_values(chunk, |mut row, (id, tag)| {
            row.push_bind(id.as_str()).push_bind(tag.as_str());
        });
        insert
            .build()
            .execute(&mut *connection)
            .await
            .map_err(super::classify)?;
    }
    Ok(inserted)
}

/// As [`insert_new_sqlite`], for PostgreSQL.
pub(super) async fn insert_new_postgres(
    connection: &mut PgConnection,
    batch: &[StoredEntry],
    classify: fn(sqlx::Error) -> StorageError,
) -> StorageResult<HashSet<Uuid>> {
    use sqlx::types::Json;

    let mut inserted = HashSet::with_capacity(batch.len());
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO entries (id, category, name, title, description, status, version, tags, metadata, \
             sensitive, owner_id, revision, created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut row, entry| {
            row.push_bind(entry.id)
                .push_bind(&entry.category)
                .push_bind(&entry.name)
                .push_bind(&entry.title)
                .push_bind(&entry.description)
                .push_bind(&entry.status)
                .push_bind(&entry.version)
                .push_bind(Json(&entry.tags))
                .push_bind(Json(&entry.metadata))
                .push_bind(&entry.sensitive)
                .push_bind(entry.owner_id)
                .push_bind(entry.revision)
                .push_bind(entry.created_at)
                .push_bind(entry.updated_at);
        });
        insert.push(" ON CONFLICT (category, name) DO NOTHING RETURNING id");
        let rows = insert.build().fetch_all(&mut *connection).await.map_err(classify)?;
        inserted.extend(rows.iter().map(|row| row.get::<Uuid, _>("id")));
    }

    let (ids, tags): (Vec<Uuid>, Vec<String>) = batch
        .iter()
        .filter(|entry| inserted.contains(&entry.id))
        .flat_map(|entry| entry.tags.iter().map(move |tag| (entry.id, tag.clone())))
        .unzip();
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO entry_tags (entry_id, tag) SELECT * FROM unnest($1::uuid[], $2::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ids)
        .bind(tags)
        .execute(&mut *connection)
        .await
        .map_err(classify)?;
    }
    Ok(inserted)
}
