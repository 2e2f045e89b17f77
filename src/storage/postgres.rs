//! The PostgreSQL backend, chosen by a `postgres://` or `postgresql://`
//! `DATABASE_URL`: a connection pool, the SQL text for PostgreSQL and the
//! migrations in `migrations/postgres`. It behaves like the SQLite backend
//! (same records, same order, same errors) so that several instances can share
//! one database. Ranked search uses a generated `tsvector` column with a GIN
//! index where SQLite uses FTS5.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::*;
use crate::rbac::{Permission, Role};

mod encrypted;

const ENTRY_COLUMNS: &str = "e.id, e.category, e.name, e.title, e.description, e.status, e.version, \
    e.tags, e.metadata, e.sensitive, e.owner_id, e.revision, e.created_at, e.updated_at";

/// Saturation constant of the per-term search score `rank / (rank + K)`,
/// where `rank` is the `ts_rank_cd` of one term with the default weights
/// (name 1.0, title and tags 0.4, description 0.2). Saturating each term
/// makes an entry that matches every term outrank one that matches a single
/// term in many columns, as SQLite's BM25 does. The value was tuned on the
/// PyPI sample in `tests/data` so that "http client" lists HTTP client
/// libraries before packages that merely have "client" in their name.
const TERM_SATURATION: f64 = 0.1;

/// Rewrites the PostgreSQL URL forms that `DATABASE_URL` accepts to one that
/// sqlx reads, or returns `None` for any other scheme. The SQLAlchemy form
/// `postgresql+asyncpg://` names the same server as `postgres://`.
pub fn normalize_url(database_url: &str) -> Option<String> {
    if let Some(rest) = database_url.strip_prefix("postgresql+asyncpg://") {
        return Some(format!("postgres://{rest}"));
    }
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Some(database_url.to_string());
    }
    None
}

/// A pool of connections to one PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Connects to the database and applies the migrations.
    ///
    /// The URL may carry libpq-style parameters such as `sslmode` or
    /// `options=-csearch_path%3Dname`, which places the tables and the
    /// migration history in another schema.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the server cannot be reached or
    /// refuses the connection, [`StorageError::Database`] for an invalid URL
    /// or a failed migration.
    pub async fn connect(database_url: &str, pool_size: u32) -> StorageResult<Self> {
        let options = PgConnectOptions::from_str(database_url).map_err(classify_postgres)?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(classify_postgres)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|error| match error {
                MigrateError::Execute(cause) => classify_postgres(cause),
                other => StorageError::Database(other.into()),
            })?;
        Ok(PostgresStore { pool })
    }
}

/// Maps a sqlx error like [`classify`], and also maps to
/// [`StorageError::Unavailable`] the SQLSTATEs that PostgreSQL sends while a
/// connection is set up or torn down. These are class 08 (connection
/// exception), class 28 (authentication failed), 3D000 (no such database),
/// 53300 (too many connections) and 57P01 to 57P03 (server shutting down or
/// starting).
pub(super) fn classify_postgres(error: sqlx::Error) -> StorageError {
    let unavailable = match &error {
        sqlx::Error::Database(database_error) => database_error.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("28")
                || matches!(code.as_ref(), "3D000" | "53300" | "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    };
    if unavailable {
        StorageError::Unavailable(error)
    } else {
        classify(error)
    }
}

/// Reads one column, reporting a value of the wrong type as corrupt data.
fn column<'r, T>(row: &'r PgRow, name: &str) -> StorageResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name)
        .map_err(|error| StorageError::Corrupt(format!("column `{name}`: {error}")))
}

fn string_list(row: &PgRow, name: &str) -> StorageResult<Vec<String>> {
    Ok(column::<Json<Vec<String>>>(row, name)?.0)
}

fn user_from_row(row: &PgRow) -> StorageResult<User> {
    Ok(User {
        id: column(row, "id")?,
        username: column(row, "username")?,
        password_hash: column(row, "password_hash")?,
        roles: string_list(row, "roles")?,
        disabled: column(row, "disabled")?,
        failed_logins: u32::try_from(column::<i64>(row, "failed_logins")?).unwrap_or(u32::MAX),
        locked_until: column(row, "locked_until")?,
        mfa_enabled: column(row, "mfa_enabled")?,
        tokens_valid_after: column(row, "tokens_valid_after")?,
        created_at: column(row, "created_at")?,
        updated_at: column(row, "updated_at")?,
    })
}

fn entry_from_row(row: &PgRow) -> StorageResult<StoredEntry> {
    Ok(StoredEntry {
        id: column(row, "id")?,
        category: column(row, "category")?,
        name: column(row, "name")?,
        title: column(row, "title")?,
        description: column(row, "description")?,
        status: column(row, "status")?,
        version: column(row, "version")?,
        tags: string_list(row, "tags")?,
        metadata: column(row, "metadata")?,
        sensitive: column(row, "sensitive")?,
        owner_id: column(row, "owner_id")?,
        revision: column(row, "revision")?,
        created_at: column(row, "created_at")?,
        updated_at: column(row, "updated_at")?,
    })
}

fn api_key_from_row(row: &PgRow) -> StorageResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: column(row, "id")?,
        user_id: column(row, "user_id")?,
        name: column(row, "name")?,
        secret_hash: column(row, "secret_hash")?,
        permissions: string_list(row, "permissions")?,
        rate_limit_per_minute: column::<Option<i64>>(row, "rate_limit_per_minute")?
            .and_then(|value| u32::try_from(value).ok()),
        created_at: column(row, "created_at")?,
        expires_at: column(row, "expires_at")?,
        revoked_at: column(row, "revoked_at")?,
        last_used_at: column(row, "last_used_at")?,
    })
}

fn role_from_row(row: &PgRow) -> StorageResult<Role> {
    let permissions = string_list(row, "permissions")?
        .iter()
        .map(|name| Permission::parse(name).map_err(|error| StorageError::Corrupt(error.to_string())))
        .collect::<StorageResult<Vec<_>>>()?;
    Ok(Role {
        name: column(row, "name")?,
        description: column(row, "description")?,
        permissions,
        inherits: string_list(row, "inherits")?,
        builtin: false,
    })
}

fn permission_names(role: &Role) -> Vec<&str> {
    role.permissions.iter().map(Permission::as_str).collect()
}

/// Appends the `AND …` clauses of a filter, every value bound.
fn push_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &EntryFilter) {
    if let Some(category) = &filter.category {
        query.push(" AND e.category = ").push_bind(category.clone());
    }
    if let Some(status) = &filter.status {
        query.push(" AND e.status = ").push_bind(status.clone());
    }
    if let Some(owner) = filter.owner_id {
        query.push(" AND e.owner_id = ").push_bind(owner);
    }
    for tag in &filter.tags {
        query
            .push(" AND EXISTS (SELECT 1 FROM entry_tags t WHERE t.entry_id = e.id AND t.tag = ")
            .push_bind(tag.clone())
            .push(")");
    }
}

async fn insert_api_key_row(connection: &mut PgConnection, key: &ApiKeyRecord) -> StorageResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, secret_hash, permissions, rate_limit_per_minute, \
         created_at, expires_at, revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&key.id)
    .bind(key.user_id)
    .bind(&key.name)
    .bind(&key.secret_hash)
    .bind(Json(&key.permissions))
    .bind(key.rate_limit_per_minute.map(i64::from))
    .bind(key.created_at)
    .bind(key.expires_at)
    .bind(key.revoked_at)
    .bind(key.last_used_at)
    .execute(connection)
    .await
    .map_err(classify_postgres)?;
    Ok(())
}

async fn insert_entry_row(connection: &mut PgConnection, entry: &StoredEntry) -> StorageResult<()> {
    sqlx::query(
        "INSERT INTO entries (id, category, name, title, description, status, version, tags, metadata, \
         sensitive, owner_id, revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(entry.id)
    .bind(&entry.category)
    .bind(&entry.name)
    .bind(&entry.title)
    .bind(&entry.description)
    .bind(&entry.status)
    .bind(&entry.version)
    .bind(Json(&entry.tags))
    .bind(Json(&entry.metadata))
    .bind(&entry.sensitive)
    .bind(entry.owner_id)
    .bind(entry.revision)
    .bind(entry.created_at)
    .bind(entry.updated_at)
    .execute(&mut *connection)
    .await
    .map_err(classify_postgres)?;
    replace_tags(connection, entry).await
}

async fn replace_tags(connection: &mut PgConnection, entry: &StoredEntry) -> StorageResult<()> {
    sqlx::query("DELETE FROM entry_tags WHERE entry_id = $1")
        .bind(entry.id)
        .execute(&mut *connection)
        .await
        .map_err(classify_postgres)?;
    sqlx::query(
        "INSERT INTO entry_tags (entry_id, tag) SELECT $1, tag FROM unnest($2::text[]) AS tag \
         ON CONFLICT DO NOTHING",
    )
    .bind(entry.id)
    .bind(&entry.tags)
    .execute(&mut *connection)
    .await
    .map_err(classify_postgres)?;
    Ok(())
}

/// Overwrites the content of the row with `entry.id`, checking the revision.
async fn update_entry_row(connection: &mut PgConnection, entry: &StoredEntry) -> StorageResult<()> {
    let result = sqlx::query(
        "UPDATE entries SET category = $1, name = $2, title = $3, description = $4, status = $5, \
         version = $6, tags = $7, metadata = $8, sensitive = $9, revision = $10, updated_at = $11 \
         WHERE id = $12 AND revision = $13",
    )
    .bind(&entry.category)
    .bind(&entry.name)
    .bind(&entry.title)
    .bind(&entry.description)
    .bind(&entry.status)
    .bind(&entry.version)
    .bind(Json(&entry.tags))
    .bind(Json(&entry.metadata))
    .bind(&entry.sensitive)
    .bind(entry.revision)
    .bind(entry.updated_at)
    .bind(entry.id)
    .bind(entry.revision - 1)
    .execute(&mut *connection)
    .await
    .map_err(classify_postgres)?;
    if result.rows_affected() == 0 {
        return Err(StorageError::StaleRevision);
    }
    replace_tags(connection, entry).await
}

/// Locks and returns the entry with `entry`'s `(category, name)`, if any.
async fn find_for_import(connection: &mut PgConnection, entry: &StoredEntry) -> StorageResult<Option<PgRow>> {
    sqlx::query("SELECT id, owner_id, revision, created_at FROM entries WHERE category = $1 AND name = $2 FOR UPDATE")
        .bind(&entry.category)
        .bind(&entry.name)
        .fetch_optional(&mut *connection)
        .await
        .map_err(classify_postgres)
}

async fn import_one(
    connection: &mut PgConnection,
    entry: &StoredEntry,
    policy: ImportPolicy,
) -> StorageResult<ImportOutcome> {
    let mut existing = find_for_import(connection, entry).await?;
    if existing.is_none() {
        // ON CONFLICT keeps a concurrent import of the same name from failing
        // this whole batch: the row it committed is then updated or skipped.
        let inserted = sqlx::query(
            "INSERT INTO entries (id, category, name, title, description, status, version, tags, metadata, \
             sensitive, owner_id, revision, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (category, name) DO NOTHING",
        )
        .bind(entry.id)
        .bind(&entry.category)
        .bind(&entry.name)
        .bind(&entry.title)
        .bind(&entry.description)
        .bind(&entry.status)
        .bind(&entry.version)
        .bind(Json(&entry.tags))
        .bind(Json(&entry.metadata))
        .bind(&entry.sensitive)
        .bind(entry.owner_id)
        .bind(entry.revision)
        .bind(entry.created_at)
        .bind(entry.updated_at)
        .execute(&mut *connection)
        .await
        .map_err(classify_postgres)?;
        if inserted.rows_affected() == 1 {
            replace_tags(connection, entry).await?;
            return Ok(ImportOutcome::Created);
        }
        existing = find_for_import(connection, entry).await?;
    }
    let Some(existing) = existing else {
        // The conflicting row was deleted again between the two statements.
        return Err(StorageError::Conflict {
            constraint: "entries_category_name",
        });
    };

    let ImportPolicy::Update {
        importer,
        may_update_any,
    } = policy
    else {
        return Ok(ImportOutcome::SkippedExisting);
    };
    let owner_id: Uuid = column(&existing, "owner_id")?;
    if owner_id != importer && !may_update_any {
        return Ok(ImportOutcome::SkippedNotOwner);
    }
    let updated = StoredEntry {
        id: column(&existing, "id")?,
        owner_id,
        revision: column::<i64>(&existing, "revision")? + 1,
        created_at: column(&existing, "created_at")?,
        ..entry.clone()
    };
    update_entry_row(connection, &updated).await?;
    Ok(ImportOutcome::Updated)
}

/// Builds the search statement: entries matching any term, ranked by the
/// sum of saturated per-term `ts_rank_cd` scores (see [`TERM_SATURATION`]).
///
/// The candidates are scored from the rows the match already read, and only
/// the requested page is read again for its full columns: reading all
/// candidates twice cost a fifth of the query on a million entries. Each
/// term's rank is a column of the candidate subquery, computed once per row.
/// A correlated subquery over the terms cost more than the match itself.
///
/// NOTE: unlike SQLite's `remove_diacritics 2` tokenizer, the 'simple'
/// configuration keeps accents, so "cafe" does not find "café" here.
fn search_query<'a>(terms: &[String], filter: &EntryFilter, offset: u32, limit: u32) -> QueryBuilder<'a, Postgres> {
    let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {ENTRY_COLUMNS}, page.score FROM (SELECT id, "));
    for index in 0..terms.len() {
        if index > 0 {
            query.push(" + ");
        }
        query
            .push(format!("rank{index} / (rank{index} + "))
            .push_bind(TERM_SATURATION)
            .push(")");
    }

    // One plainto_tsquery per term, joined with the tsquery OR operator, so
    // that the GIN index on search_vector serves the match. The candidate
    // subquery stops at SEARCH_CANDIDATES matches before any sorting.
    query.push(" AS score FROM (SELECT e.id");
    for (index, term) in terms.iter().enumerate() {
        query
            .push(", ts_rank_cd(e.search_vector, plainto_tsquery('simple', ")
            .push_bind(term.clone())
            .push(format!("))::float8 AS rank{index}"));
    }
    query.push(" FROM entries e WHERE e.search_vector @@ (");
    for (index, term) in terms.iter().enumerate() {
        if index > 0 {
            query.push(" || ");
        }
        query
            .push("plainto_tsquery('simple', ")
            .push_bind(term.clone())
            .push(")");
    }
    query.push(")");
    push_filter(&mut query, filter);
    query
        .push(format!(
            " LIMIT {SEARCH_CANDIDATES}) AS candidates ORDER BY score DESC, id LIMIT "
        ))
        .push_bind(i64::from(limit))
        .push(" OFFSET ")
        .push_bind(i64::from(offset))
        .push(") AS page JOIN entries e ON e.id = page.id ORDER BY page.score DESC, e.id");
    query
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StorageResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(())
    }

    async fn count_users(&self) -> StorageResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(classify_postgres)
    }

    async fn insert_user(&self, user: &User) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, roles, disabled, failed_logins, locked_until, \
             mfa_enabled, tokens_valid_after, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(user.id)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(Json(&user.roles))
        .bind(user.disabled)
        .bind(i64::from(user.failed_logins))
        .bind(user.locked_until)
        .bind(user.mfa_enabled)
        .bind(user.tokens_valid_after)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(())
    }

    async fn find_user(&self, id: Uuid) -> StorageResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify_postgres)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_username(&self, username: &str) -> StorageResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify_postgres)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn username_taken_ignoring_case(&self, username: &str) -> StorageResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower($1))")
            .bind(username)
            .fetch_one(&self.pool)
            .await
            .map_err(classify_postgres)
    }

    async fn list_users(&self, after: Option<&UserCursor>, limit: u32) -> StorageResult<Vec<User>> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT * FROM users WHERE TRUE");
        if let Some(cursor) = after {
            query
                .push(" AND (created_at, id) > (")
                .push_bind(cursor.created_at)
                .push(", ")
                .push_bind(cursor.id)
                .push(")");
        }
        query
            .push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.pool).await.map_err(classify_postgres)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn record_failed_login(
        &self,
        user_id: Uuid,
        max_attempts: u32,
        lock_until: DateTime<Utc>,
    ) -> StorageResult<Option<DateTime<Utc>>> {
        // One statement: the row lock makes concurrent failures count one by one.
        let locked: Option<bool> = sqlx::query_scalar(
            "UPDATE users SET \
               failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END, \
               locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END \
             WHERE id = $1 RETURNING failed_logins = 0",
        )
        .bind(user_id)
        .bind(i64::from(max_attempts))
        .bind(lock_until)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(locked.unwrap_or(false).then_some(lock_until))
    }

    async fn set_password(
        &self,
        user_id: Uuid,
        password_hash: &str,
        tokens_valid_after: DateTime<Utc>,
    ) -> StorageResult<()> {
        sqlx::query("UPDATE users SET password_hash = $1, tokens_valid_after = $2, updated_at = now() WHERE id = $3")
            .bind(password_hash)
            .bind(tokens_valid_after)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(())
    }

    async fn set_mfa_enabled(&self, user_id: Uuid, enabled: bool) -> StorageResult<()> {
        sqlx::query("UPDATE users SET mfa_enabled = $1, updated_at = now() WHERE id = $2")
            .bind(enabled)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(())
    }

    async fn clear_failed_logins(&self, user_id: Uuid) -> StorageResult<()> {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(())
    }

    async fn update_user(&self, user: &User) -> StorageResult<()> {
        sqlx::query(
            "UPDATE users SET password_hash = $1, roles = $2, disabled = $3, failed_logins = $4, \
             locked_until = $5, mfa_enabled = $6, tokens_valid_after = $7, updated_at = $8 WHERE id = $9",
        )
        .bind(&user.password_hash)
        .bind(Json(&user.roles))
        .bind(user.disabled)
        .bind(i64::from(user.failed_logins))
        .bind(user.locked_until)
        .bind(user.mfa_enabled)
        .bind(user.tokens_valid_after)
        .bind(user.updated_at)
        .bind(user.id)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(())
    }

    async fn list_roles(&self) -> StorageResult<Vec<Role>> {
        let rows = sqlx::query("SELECT name, description, permissions, inherits FROM roles ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(classify_postgres)?;
        rows.iter().map(role_from_row).collect()
    }

    async fn insert_role(&self, role: &Role, now: DateTime<Utc>) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO roles (name, description, permissions, inherits, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&role.name)
        .bind(&role.description)
        .bind(Json(permission_names(role)))
        .bind(Json(&role.inherits))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(())
    }

    async fn update_role(&self, role: &Role, now: DateTime<Utc>) -> StorageResult<bool> {
        let result = sqlx::query(
            "UPDATE roles SET description = $1, permissions = $2, inherits = $3, updated_at = $4 WHERE name = $5",
        )
        .bind(&role.description)
        .bind(Json(permission_names(role)))
        .bind(Json(&role.inherits))
        .bind(now)
        .bind(&role.name)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(result.rows_affected() > 0)
    }

    async fn delete_role(&self, name: &str) -> StorageResult<bool> {
        let result = sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(result.rows_affected() > 0)
    }

    async fn insert_entry(&self, entry: &StoredEntry) -> StorageResult<()> {
        let mut transaction = self.pool.begin().await.map_err(classify_postgres)?;
        insert_entry_row(&mut transaction, entry).await?;
        transaction.commit().await.map_err(classify_postgres)
    }

    async fn find_entry(&self, id: Uuid) -> StorageResult<Option<StoredEntry>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries e WHERE e.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify_postgres)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn update_entry(&self, entry: &StoredEntry) -> StorageResult<()> {
        let mut transaction = self.pool.begin().await.map_err(classify_postgres)?;
        update_entry_row(&mut transaction, entry).await?;
        transaction.commit().await.map_err(classify_postgres)
    }

    async fn delete_entry(&self, id: Uuid) -> StorageResult<bool> {
        let result = sqlx::query("DELETE FROM entries WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(result.rows_affected() > 0)
    }

    async fn list_entries(
        &self,
        filter: &EntryFilter,
        after: Option<&EntryCursor>,
        limit: u32,
    ) -> StorageResult<Vec<StoredEntry>> {
        let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {ENTRY_COLUMNS} FROM entries e WHERE TRUE"));
        push_filter(&mut query, filter);
        if let Some(cursor) = after {
            query
                .push(" AND (e.created_at, e.id) > (")
                .push_bind(cursor.created_at)
                .push(", ")
                .push_bind(cursor.id)
                .push(")");
        }
        query
            .push(" ORDER BY e.created_at, e.id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.pool).await.map_err(classify_postgres)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn search_entries(
        &self,
        terms: &[String],
        filter: &EntryFilter,
        offset: u32,
        limit: u32,
    ) -> StorageResult<Vec<(StoredEntry, f64)>> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // Planned for each search with the terms' values, because a common
        // word is read fastest by a sequential scan that stops at the
        // candidate limit and a rare one through the GIN index. A cached
        // generic plan used the index for both, and the bitmap of every
        // match of a common word cost more than the rest of the search.
        let rows = search_query(terms, filter, offset, limit)
            .build()
            .persistent(false)
            .fetch_all(&self.pool)
            .await
            .map_err(classify_postgres)?;
        rows.iter()
            .map(|row| Ok((entry_from_row(row)?, column::<f64>(row, "score")?)))
            .collect()
    }

    async fn entry_analytics(&self, days: u32) -> StorageResult<EntryAnalytics> {
        let pairs = |rows: Vec<PgRow>| -> StorageResult<Vec<(String, i64)>> {
            rows.iter()
                .map(|row| Ok((column::<String>(row, "key")?, column::<i64>(row, "count")?)))
                .collect()
        };

        let total = sqlx::query_scalar("SELECT COUNT(*) FROM entries")
            .fetch_one(&self.pool)
            .await
            .map_err(classify_postgres)?;

        let by_category =
            sqlx::query("SELECT category AS key, COUNT(*) AS count FROM entries GROUP BY category ORDER BY category")
                .fetch_all(&self.pool)
                .await
                .map_err(classify_postgres)?;
        let by_status =
            sqlx::query("SELECT status AS key, COUNT(*) AS count FROM entries GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(classify_postgres)?;

        let top_tags = sqlx::query(
            "SELECT tag AS key, COUNT(*) AS count FROM entry_tags GROUP BY tag ORDER BY count DESC, tag LIMIT 10",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify_postgres)?;

        let since = Utc::now() - chrono::Duration::days(i64::from(days));
        let created_per_day = sqlx::query(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS key, COUNT(*) AS count \
             FROM entries WHERE created_at >= $1 GROUP BY key ORDER BY key",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(classify_postgres)?;

        Ok(EntryAnalytics {
            total,
            by_category: pairs(by_category)?,
            by_status: pairs(by_status)?,
            top_tags: pairs(top_tags)?,
            created_per_day: pairs(created_per_day)?,
        })
    }

    async fn refresh_entry_statistics(&self) -> StorageResult<()> {
        sqlx::query("ANALYZE entries, entry_tags")
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(())
    }

    async fn import_entries(&self, batch: &[StoredEntry], policy: ImportPolicy) -> StorageResult<Vec<ImportOutcome>> {
        let mut transaction = self.pool.begin().await.map_err(classify_postgres)?;
        let inserted = super::bulk_import::insert_new_postgres(&mut transaction, batch, classify_postgres).await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for entry in batch {
            let outcome = if inserted.contains(&entry.id) {
                ImportOutcome::Created
            } else {
                import_one(&mut transaction, entry, policy).await?
            };
            outcomes.push(outcome);
        }
        transaction.commit().await.map_err(classify_postgres)?;
        Ok(outcomes)
    }

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, generation, created_at, expires_at, \
             spent_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.token_hash)
        .bind(&token.family_id)
        .bind(token.user_id)
        .bind(token.generation)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.spent_at)
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(())
    }

    async fn find_refresh_token(&self, token_hash: &[u8]) -> StorageResult<Option<RefreshTokenRecord>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify_postgres)?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(RefreshTokenRecord {
            token_hash: column(&row, "token_hash")?,
            family_id: column(&row, "family_id")?,
            user_id: column(&row, "user_id")?,
            generation: column(&row, "generation")?,
            created_at: column(&row, "created_at")?,
            expires_at: column(&row, "expires_at")?,
            spent_at: column(&row, "spent_at")?,
            revoked_at: column(&row, "revoked_at")?,
        }))
    }

    async fn spend_refresh_token(&self, token_hash: &[u8], at: DateTime<Utc>) -> StorageResult<bool> {
        // The row lock taken by UPDATE makes a concurrent second spend wait,
        // re-check `spent_at` and match nothing.
        let result = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = $1 \
             WHERE token_hash = $2 AND spent_at IS NULL AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(token_hash)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(result.rows_affected() == 1)
    }

    async fn revoke_refresh_family(&self, family_id: &str, at: DateTime<Utc>) -> StorageResult<()> {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(family_id)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(())
    }

    async fn revoke_user_refresh_tokens(
        &self,
        user_id: Uuid,
        keep_family: Option<&str>,
        at: DateTime<Utc>,
    ) -> StorageResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
             AND family_id IS DISTINCT FROM $3",
        )
        .bind(at)
        .bind(user_id)
        .bind(keep_family)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(())
    }

    async fn insert_revoked_token(&self, jti: &str, expires_at: DateTime<Utc>) -> StorageResult<()> {
        sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(jti)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(())
    }

    async fn list_revoked_tokens(&self, now: DateTime<Utc>) -> StorageResult<Vec<String>> {
        sqlx::query_scalar("SELECT jti FROM revoked_tokens WHERE expires_at > $1")
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(classify_postgres)
    }

    async fn find_mfa(&self, user_id: Uuid) -> StorageResult<Option<MfaRecord>> {
        let row = sqlx::query("SELECT * FROM user_mfa WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify_postgres)?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(MfaRecord {
            user_id,
            secret: column(&row, "secret")?,
            pending_secret: column(&row, "pending_secret")?,
            recovery_codes: string_list(&row, "recovery_codes")?,
            last_step: column(&row, "last_step")?,
        }))
    }

    async fn save_mfa(&self, record: &MfaRecord) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO user_mfa (user_id, secret, pending_secret, recovery_codes, last_step) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, pending_secret = excluded.pending_secret, \
             recovery_codes = excluded.recovery_codes, last_step = excluded.last_step",
        )
        .bind(record.user_id)
        .bind(&record.secret)
        .bind(&record.pending_secret)
        .bind(Json(&record.recovery_codes))
        .bind(record.last_step)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(())
    }

    async fn consume_mfa(&self, previous: &MfaRecord, next: &MfaRecord) -> StorageResult<bool> {
        let result = sqlx::query(
            "UPDATE user_mfa SET recovery_codes = $1, last_step = $2 \
             WHERE user_id = $3 AND recovery_codes = $4 AND last_step = $5",
        )
        .bind(Json(&next.recovery_codes))
        .bind(next.last_step)
        .bind(previous.user_id)
        .bind(Json(&previous.recovery_codes))
        .bind(previous.last_step)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_mfa(&self, user_id: Uuid) -> StorageResult<()> {
        sqlx::query("DELETE FROM user_mfa WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        Ok(())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StorageResult<()> {
        let mut connection = self.pool.acquire().await.map_err(classify_postgres)?;
        insert_api_key_row(&mut connection, key).await
    }

    async fn insert_api_key_within_limit(
        &self,
        key: &ApiKeyRecord,
        replaces: Option<(&str, DateTime<Utc>)>,
        max_live: u32,
        now: DateTime<Utc>,
    ) -> StorageResult<LimitedKeyInsert> {
        let mut transaction = self.pool.begin().await.map_err(classify_postgres)?;
        // Locking the owner's row makes concurrent inserts for one owner
        // wait for each other, so each count includes the keys committed before
        // it. NO KEY UPDATE still lets foreign-key checks (a new entry of the
        // same owner) share the row.
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(key.user_id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(classify_postgres)?;
        if let Some((old_id, revoked_at)) = replaces {
            let revoked = sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 \
                 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL AND expires_at > $4",
            )
            .bind(revoked_at)
            .bind(old_id)
            .bind(key.user_id)
            .bind(now)
            .execute(&mut *transaction)
            .await
            .map_err(classify_postgres)?;
            if revoked.rows_affected() != 1 {
                return Ok(LimitedKeyInsert::ReplacedKeyNotLive);
            }
        }
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys \
             WHERE user_id = $1 AND (revoked_at IS NULL OR revoked_at > $2) AND expires_at > $2",
        )
        .bind(key.user_id)
        .bind(now)
        .fetch_one(&mut *transaction)
        .await
        .map_err(classify_postgres)?;
        if live >= i64::from(max_live) {
            return Ok(LimitedKeyInsert::LimitReached);
        }
        insert_api_key_row(&mut transaction, key).await?;
        transaction.commit().await.map_err(classify_postgres)?;
        Ok(LimitedKeyInsert::Inserted)
    }

    async fn find_api_key(&self, id: &str) -> StorageResult<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify_postgres)?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn list_api_keys(&self, user_id: Option<Uuid>) -> StorageResult<Vec<ApiKeyRecord>> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT * FROM api_keys WHERE TRUE");
        if let Some(user_id) = user_id {
            query.push(" AND user_id = ").push_bind(user_id);
        }
        query.push(" ORDER BY created_at, id");
        let rows = query.build().fetch_all(&self.pool).await.map_err(classify_postgres)?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> StorageResult<bool> {
        // An earlier revocation is kept. A later one (the end of a rotation's
        // grace period) is brought forward.
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND (revoked_at IS NULL OR revoked_at > $1)")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(classify_postgres)?;
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(classify_postgres)
    }

    async fn record_api_key_use(&self, uses: &[(String, DateTime<Utc>)]) -> StorageResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let (ids, times): (Vec<String>, Vec<DateTime<Utc>>) = uses.iter().cloned().unzip();
        // One statement updates every key. Grouping first keeps the latest
        // use when a key appears more than once in the batch, because UPDATE
        // … FROM with several matching rows would apply an arbitrary one.
        sqlx::query(
            "UPDATE api_keys k SET last_used_at = latest.at \
             FROM (SELECT id, MAX(at) AS at FROM unnest($1::text[], $2::timestamptz[]) AS u (id, at) GROUP BY id) \
             AS latest \
             WHERE k.id = latest.id AND (k.last_used_at IS NULL OR k.last_used_at < latest.at)",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await
        .map_err(classify_postgres)?;
        Ok(())
    }

    async fn list_encrypted_values(
        &self,
        field: EncryptedField,
        after: Option<Uuid>,
        limit: u32,
    ) -> StorageResult<Vec<EncryptedValue>> {
        encrypted::list_values(&self.pool, field, after, limit).await
    }

    async fn replace_encrypted_value(
        &self,
        field: EncryptedField,
        row_id: Uuid,
        previous: &[u8],
        next: &[u8],
    ) -> StorageResult<bool> {
        encrypted::replace_value(&self.pool, field, row_id, previous, next).await
    }

    async fn find_key_check(&self) -> StorageResult<Option<Vec<u8>>> {
        encrypted::find_key_check(&self.pool).await
    }

    async fn insert_key_check(&self, ciphertext: &[u8], now: DateTime<Utc>) -> StorageResult<bool> {
        encrypted::insert_key_check(&self.pool, ciphertext, now).await
    }

    async fn replace_key_check(&self, previous: &[u8], next: &[u8], now: DateTime<Utc>) -> StorageResult<bool> {
        encrypted::replace_key_check(&self.pool, previous, next, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_url_accepts_postgres_forms() {
        let cases = [
            ("postgres://u@localhost/db", Some("postgres://u@localhost/db")),
            ("postgresql://u@localhost/db", Some("postgresql://u@localhost/db")),
            (
                "postgresql+asyncpg://u:p@db:5432/app",
                Some("postgres://u:p@db:5432/app"),
            ),
            ("sqlite://data/hyper_registry.db", None),
            ("mysql://u@localhost/db", None),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_url(input).as_deref(), expected, "{input}");
        }
    }
}
