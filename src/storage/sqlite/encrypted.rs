//! SQLite statements for the rewrap of encrypted columns and the key check.
//! Table and column names come from [`EncryptedField::columns`], never from
//! input, so formatting them into the SQL is safe.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::{classify, uuid};
use crate::storage::time_format::encode;
use crate::storage::{EncryptedField, EncryptedValue, StorageResult};

pub(super) async fn list_values(
    pool: &SqlitePool,
    field: EncryptedField,
    after: Option<Uuid>,
    limit: u32,
) -> StorageResult<Vec<EncryptedValue>> {
    let (table, key, value) = field.columns();
    let sql = format!(
        "SELECT {key} AS row_id, {value} AS ciphertext FROM {table} \
         WHERE {value} IS NOT NULL AND {key} > ? ORDER BY {key} LIMIT ?"
    );
    // Every UUID's text sorts after the empty string.
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| {
            Ok(EncryptedValue {
                row_id: uuid(row.get("row_id"))?,
                ciphertext: row.get("ciphertext"),
            })
        })
        .collect()
}

pub(super) async fn replace_value(
    pool: &SqlitePool,
    field: EncryptedField,
    row_id: Uuid,
    previous: &[u8],
    next: &[u8],
) -> StorageResult<bool> {
    let (table, key, value) = field.columns();
    let sql = format!("UPDATE {table} SET {value} = ? WHERE {key} = ? AND {value} = ?");
    let result = sqlx::query(&sql)
        .bind(next)
        .bind(row_id.to_string())
        .bind(previous)
        .execute(pool)
        .await
        .map_err(classify)?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn find_key_check(pool: &SqlitePool) -> StorageResult<Option<Vec<u8>>> {
    sqlx::query_scalar("SELECT ciphertext FROM encryption_key_check WHERE id = 1")
        .fetch_optional(pool)
        .await
        .map_err(classify)
}

pub(super) async fn insert_key_check(pool: &SqlitePool, ciphertext: &[u8], now: DateTime<Utc>) -> StorageResult<bool> {
    let result = sqlx::query(
        "INSERT INTO encryption_key_check (id, ciphertext, updated_at) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(ciphertext)
    .bind(encode(now))
    .execute(pool)
    .await
    .map_err(classify)?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn replace_key_check(
    pool: &SqlitePool,
    previous: &[u8],
    next: &[u8],
    now: DateTime<Utc>,
) -> StorageResult<bool> {
    let result =
        sqlx::query("UPDATE encryption_key_check SET ciphertext = ?, updated_at = ? WHERE id = 1 AND ciphertext = ?")
            .bind(next)
            .bind(encode(now))
            .bind(previous)
            .execute(pool)
            .await
            .map_err(classify)?;
    Ok(result.rows_affected() == 1)
}
