//! PostgreSQL statements for the rewrap of encrypted columns and the key
//! check. Table and column names come from [`EncryptedField::columns`],
//! never from input, so formatting them into the SQL is safe.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{classify_postgres, column};
use crate::storage::{EncryptedField, EncryptedValue, StorageResult};

pub(super) async fn list_values(
    pool: &PgPool,
    field: EncryptedField,
    after: Option<Uuid>,
    limit: u32,
) -> StorageResult<Vec<EncryptedValue>> {
    let (table, key, value) = field.columns();
    let sql = format!(
        "SELECT {key} AS row_id, {value} AS ciphertext FROM {table} \
         WHERE {value} IS NOT NULL AND ($1::uuid IS NULL OR {key} > $1) ORDER BY {key} LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(classify_postgres)?;
    rows.iter()
        .map(|row| {
            Ok(EncryptedValue {
                row_id: column(row, "row_id")?,
                ciphertext: column(row, "ciphertext")?,
            })
        })
        .collect()
}

pub(super) async fn replace_value(
    pool: &PgPool,
    field: EncryptedField,
    row_id: Uuid,
    previous: &[u8],
    next: &[u8],
) -> StorageResult<bool> {
    let (table, key, value) = field.columns();
    let sql = format!("UPDATE {table} SET {value} = $1 WHERE {key} = $2 AND {value} = $3");
    let result = sqlx::query(&sql)
        .bind(next)
        .bind(row_id)
        .bind(previous)
        .execute(pool)
        .await
        .map_err(classify_postgres)?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn find_key_check(pool: &PgPool) -> StorageResult<Option<Vec<u8>>> {
    sqlx::query_scalar("SELECT ciphertext FROM encryption_key_check WHERE id = 1")
        .fetch_optional(pool)
        .await
        .map_err(classify_postgres)
}

pub(super) async fn insert_key_check(pool: &PgPool, ciphertext: &[u8], now: DateTime<Utc>) -> StorageResult<bool> {
    let result = sqlx::query(
        "INSERT INTO encryption_key_check (id, ciphertext, updated_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(ciphertext)
    .bind(now)
    .execute(pool)
    .await
    .map_err(classify_postgres)?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn replace_key_check(
    pool: &PgPool,
    previous: &[u8],
    next: &[u8],
    now: DateTime<Utc>,
) -> StorageResult<bool> {
    let result = sqlx::query(
        "UPDATE encryption_key_check SET ciphertext = $1, updated_at = $2 WHERE id = 1 AND ciphertext = $3",
    )
    .bind(next)
    .bind(now)
    .bind(previous)
    .execute(pool)
    .await
    .map_err(classify_postgres)?;
    Ok(result.rows_affected() == 1)
}
