//! The embedded SQLite backend: one database file in WAL mode behind a
//! connection pool, with FTS5 for ranked search. It owns the SQL text for
//! SQLite; callers hand it validated records and get records back.
//!
//! Write transactions start with `BEGIN IMMEDIATE`: a deferred transaction
//! that reads first cannot wait for another writer when it then writes, and
//! would fail with SQLITE_BUSY instead of waiting out `busy_timeout`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::time_format::{decode, encode};
use super::*;
use crate::rbac::{Permission, Role};

mod encrypted;

const ENTRY_COLUMNS: &str = "e.id, e.category, e.name, e.title, e.description, e.status, e.version, \
    e.tags, e.metadata, e.sensitive, e.owner_id, e.revision, e.created_at, e.updated_at";

/// A pool of connections to one SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Opens (creating if needed) the database and applies the migrations.
    ///
    /// # Errors
    /// Fails when the file cannot be opened or a migration fails.
    pub async fn connect(database_url: &str) -> StorageResult<Self> {
        let options = SqliteConnectOptions::from_str(database_url)
            .map_err(classify)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(classify)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|error| StorageError::Database(error.into()))?;
        Ok(SqliteStore { pool })
    }

    /// Writes a consistent copy of the database to `path` with
    /// `VACUUM INTO`, which reads one snapshot while writers carry on.
    /// `path` must not exist or must be an empty file; an empty file keeps
    /// its owner and mode.
    ///
    /// # Errors
    /// Fails when SQLite cannot read the database or write the copy.
    pub async fn backup_into(&self, path: &std::path::Path) -> StorageResult<()> {
        sqlx::query("VACUUM INTO ?")
            .bind(path.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

fn json_list(text: &str) -> StorageResult<Vec<String>> {
    serde_json::from_str(text).map_err(|_| StorageError::Corrupt("bad JSON list".into()))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain lists and JSON values cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn uuid(text: &str) -> StorageResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| StorageError::Corrupt(format!("bad id `{text}`")))
}

fn optional_time(text: Option<String>) -> StorageResult<Option<DateTime<Utc>>> {
    text.as_deref().map(decode).transpose()
}

fn user_from_row(row: &SqliteRow) -> StorageResult<User> {
    Ok(User {
        id: uuid(row.get("id"))?,
        username: row.get("username"),
        password_hash: row.get("password_hash"),
        roles: json_list(row.get("roles"))?,
        disabled: row.get::<i64, _>("disabled") != 0,
        failed_logins: u32::try_from(row.get::<i64, _>("failed_logins")).unwrap_or(u32::MAX),
        locked_until: optional_time(row.get("locked_until"))?,
        mfa_enabled: row.get::<i64, _>("mfa_enabled") != 0,
        tokens_valid_after: decode(row.get("tokens_valid_after"))?,
        created_at: decode(row.get("created_at"))?,
        updated_at: decode(row.get("updated_at"))?,
    })
}

fn entry_from_row(row: &SqliteRow) -> StorageResult<StoredEntry> {
    let metadata: String = row.get("metadata");
    Ok(StoredEntry {
        id: uuid(row.get("id"))?,
        category: row.get("category"),
        name: row.get("name"),
        title: row.get("title"),
        description: row.get("description"),
        status: row.get("status"),
        version: row.get("version"),
        tags: json_list(row.get("tags"))?,
        metadata: serde_json::from_str(&metadata).map_err(|_| StorageError::Corrupt("bad metadata".into()))?,
        sensitive: row.get("sensitive"),
        owner_id: uuid(row.get("owner_id"))?,
        revision: row.get("revision"),
        created_at: decode(row.get("created_at"))?,
        updated_at: decode(row.get("updated_at"))?,
    })
}

fn api_key_from_row(row: &SqliteRow) -> StorageResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.get("id"),
        user_id: uuid(row.get("user_id"))?,
        name: row.get("name"),
        secret_hash: row.get("secret_hash"),
        permissions: json_list(row.get("permissions"))?,
        rate_limit_per_minute: row
            .get::<Option<i64>, _>("rate_limit_per_minute")
            .and_then(|v| u32::try_from(v).ok()),
        created_at: decode(row.get("created_at"))?,
        expires_at: decode(row.get("expires_at"))?,
        revoked_at: optional_time(row.get("revoked_at"))?,
        last_used_at: optional_time(row.get("last_used_at"))?,
    })
}

/// Appends the `AND …` clauses of a filter, every value bound.
fn push_filter(query: &mut QueryBuilder<'_, Sqlite>, filter: &EntryFilter) {
    if let Some(category) = &filter.category {
        query.push(" AND e.category = ").push_bind(category.clone());
    }
    if let Some(status) = &filter.status {
        query.push(" AND e.status = ").push_bind(status.clone());
    }
    if let Some(owner) = filter.owner_id {
        query.push(" AND e.owner_id = ").push_bind(owner.to_string());
    }
    for tag in &filter.tags {
        query
            .push(" AND EXISTS (SELECT 1 FROM entry_tags t WHERE t.entry_id = e.id AND t.tag = ")
            .push_bind(tag.clone())
            .push(")");
    }
}

async fn insert_api_key_row(connection: &mut SqliteConnection, key: &ApiKeyRecord) -> StorageResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, secret_hash, permissions, rate_limit_per_minute, \
         created_at, expires_at, revoked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.id)
    .bind(key.user_id.to_string())
    .bind(&key.name)
    .bind(&key.secret_hash)
    .bind(to_json(&key.permissions))
    .bind(key.rate_limit_per_minute.map(i64::from))
    .bind(encode(key.created_at))
    .bind(encode(key.expires_at))
    .bind(key.revoked_at.map(encode))
    .bind(key.last_used_at.map(encode))
    .execute(connection)
    .await
    .map_err(classify)?;
    Ok(())
}

async fn insert_entry_row(connection: &mut SqliteConnection, entry: &StoredEntry) -> StorageResult<()> {
    sqlx::query(
        "INSERT INTO entries (id, category, name, title, description, status, version, tags, metadata, \
         sensitive, owner_id, revision, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.id.to_string())
    .bind(&entry.category)
    .bind(&entry.name)
    .bind(&entry.title)
    .bind(&entry.description)
    .bind(&entry.status)
    .bind(&entry.version)
    .bind(to_json(&entry.tags))
    .bind(to_json(&entry.metadata))
    .bind(&entry.sensitive)
    .bind(entry.owner_id.to_string())
    .bind(entry.revision)
    .bind(encode(entry.created_at))
    .bind(encode(entry.updated_at))
    .execute(&mut *connection)
    .await
    .map_err(classify)?;
    replace_tags(connection, entry).await
}

async fn replace_tags(connection: &mut SqliteConnection, entry: &StoredEntry) -> StorageResult<()> {
    sqlx::query("DELETE FROM entry_tags WHERE entry_id = ?")
        .bind(entry.id.to_string())
        .execute(&mut *connection)
        .await
        .map_err(classify)?;
    for tag in &entry.tags {
        sqlx::query("INSERT OR IGNORE INTO entry_tags (entry_id, tag) VALUES (?, ?)")
            .bind(entry.id.to_string())
            .bind(tag)
            .execute(&mut *connection)
            .await
            .map_err(classify)?;
    }
    Ok(())
}

/// Overwrites the content of the row with `entry.id`, checking the revision.
async fn update_entry_row(connection: &mut SqliteConnection, entry: &StoredEntry) -> StorageResult<()> {
    let result = sqlx::query(
        "UPDATE entries SET category = ?, name = ?, title = ?, description = ?, status = ?, version = ?, \
         tags = ?, metadata = ?, sensitive = ?, revision = ?, updated_at = ? WHERE id = ? AND revision = ?",
    )
    .bind(&entry.category)
    .bind(&entry.name)
    .bind(&entry.title)
    .bind(&entry.description)
    .bind(&entry.status)
    .bind(&entry.version)
    .bind(to_json(&entry.tags))
    .bind(to_json(&entry.metadata))
    .bind(&entry.sensitive)
    .bind(entry.revision)
    .bind(encode(entry.updated_at))
    .bind(entry.id.to_string())
    .bind(entry.revision - 1)
    .execute(&mut *connection)
    .await
    .map_err(classify)?;
    if result.rows_affected() == 0 {
        return Err(StorageError::StaleRevision);
    }
    replace_tags(connection, entry).await
}

async fn import_one(
    connection: &mut SqliteConnection,
    entry: &StoredEntry,
    policy: ImportPolicy,
) -> StorageResult<ImportOutcome> {
    let existing =
        sqlx::query("SELECT id, owner_id, revision, created_at FROM entries WHERE category = ? AND name = ?")
            .bind(&entry.category)
            .bind(&entry.name)
            .fetch_optional(&mut *connection)
            .await
            .map_err(classify)?;
    let Some(existing) = existing else {
        insert_entry_row(connection, entry).await?;
        return Ok(ImportOutcome::Created);
    };

    let ImportPolicy::Update {
        importer,
        may_update_any,
    } = policy
    else {
        return Ok(ImportOutcome::SkippedExisting);
    };
    let owner_id = uuid(existing.get("owner_id"))?;
    if owner_id != importer && !may_update_any {
        return Ok(ImportOutcome::SkippedNotOwner);
    }
    let updated = StoredEntry {
        id: uuid(existing.get("id"))?,
        owner_id,
        revision: existing.get::<i64, _>("revision") + 1,
        created_at: decode(existing.get("created_at"))?,
        ..entry.clone()
    };
    update_entry_row(connection, &updated).await?;
    Ok(ImportOutcome::Updated)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StorageResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(classify)?;
        Ok(())
    }

    async fn count_users(&self) -> StorageResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn insert_user(&self, user: &User) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, roles, disabled, failed_logins, locked_until, \
             mfa_enabled, tokens_valid_after, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(user.id.to_string())
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(to_json(&user.roles))
        .bind(user.disabled)
        .bind(i64::from(user.failed_logins))
        .bind(user.locked_until.map(encode))
        .bind(user.mfa_enabled)
        .bind(encode(user.tokens_valid_after))
        .bind(encode(user.created_at))
        .bind(encode(user.updated_at))
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn find_user(&self, id: Uuid) -> StorageResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_username(&self, username: &str) -> StorageResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn username_taken_ignoring_case(&self, username: &str) -> StorageResult<bool> {
        // SQLite's lower() folds ASCII letters only.
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower(?))")
            .bind(username)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn list_users(&self, after: Option<&UserCursor>, limit: u32) -> StorageResult<Vec<User>> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM users WHERE 1 = 1");
        if let Some(cursor) = after {
            let created = encode(cursor.created_at);
            query
                .push(" AND (created_at > ")
                .push_bind(created.clone())
                .push(" OR (created_at = ")
                .push_bind(created)
                .push(" AND id > ")
                .push_bind(cursor.id.to_string())
                .push("))");
        }
        query
            .push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.pool).await.map_err(classify)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn record_failed_login(
        &self,
        user_id: Uuid,
        max_attempts: u32,
        lock_until: DateTime<Utc>,
    ) -> StorageResult<Option<DateTime<Utc>>> {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        let count: i64 = sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ? RETURNING failed_logins",
        )
        .bind(user_id.to_string())
        .fetch_one(&mut *transaction)
        .await
        .map_err(classify)?;
        let locked = count >= i64::from(max_attempts);
        if locked {
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = ? WHERE id = ?")
                .bind(encode(lock_until))
                .bind(user_id.to_string())
                .execute(&mut *transaction)
                .await
                .map_err(classify)?;
        }
        transaction.commit().await.map_err(classify)?;
        Ok(locked.then_some(lock_until))
    }

    async fn set_password(
        &self,
        user_id: Uuid,
        password_hash: &str,
        tokens_valid_after: DateTime<Utc>,
    ) -> StorageResult<()> {
        sqlx::query("UPDATE users SET password_hash = ?, tokens_valid_after = ?, updated_at = ? WHERE id = ?")
            .bind(password_hash)
            .bind(encode(tokens_valid_after))
            .bind(encode(Utc::now()))
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_mfa_enabled(&self, user_id: Uuid, enabled: bool) -> StorageResult<()> {
        sqlx::query("UPDATE users SET mfa_enabled = ?, updated_at = ? WHERE id = ?")
            .bind(enabled)
            .bind(encode(Utc::now()))
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn clear_failed_logins(&self, user_id: Uuid) -> StorageResult<()> {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?")
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn update_user(&self, user: &User) -> StorageResult<()> {
        sqlx::query(
            "UPDATE users SET password_hash = ?, roles = ?, disabled = ?, failed_logins = ?, locked_until = ?, \
             mfa_enabled = ?, tokens_valid_after = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&user.password_hash)
        .bind(to_json(&user.roles))
        .bind(user.disabled)
        .bind(i64::from(user.failed_logins))
        .bind(user.locked_until.map(encode))
        .bind(user.mfa_enabled)
        .bind(encode(user.tokens_valid_after))
        .bind(encode(user.updated_at))
        .bind(user.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn list_roles(&self) -> StorageResult<Vec<Role>> {
        let rows = sqlx::query("SELECT name, description, permissions, inherits FROM roles ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let permissions = json_list(row.get("permissions"))?
                    .iter()
                    .map(|p| Permission::parse(p).map_err(|e| StorageError::Corrupt(e.to_string())))
                    .collect::<StorageResult<Vec<_>>>()?;
                Ok(Role {
                    name: row.get("name"),
                    description: row.get("description"),
                    permissions,
                    inherits: json_list(row.get("inherits"))?,
                    builtin: false,
                })
            })
            .collect()
    }

    async fn insert_role(&self, role: &Role, now: DateTime<Utc>) -> StorageResult<()> {
        let permissions: Vec<&str> = role.permissions.iter().map(Permission::as_str).collect();
        sqlx::query(
            "INSERT INTO roles (name, description, permissions, inherits, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&role.name)
        .bind(&role.description)
        .bind(to_json(&permissions))
        .bind(to_json(&role.inherits))
        .bind(encode(now))
        .bind(encode(now))
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn update_role(&self, role: &Role, now: DateTime<Utc>) -> StorageResult<bool> {
        let permissions: Vec<&str> = role.permissions.iter().map(Permission::as_str).collect();
        let result = sqlx::query(
            "UPDATE roles SET description = ?, permissions = ?, inherits = ?, updated_at = ? WHERE name = ?",
        )
        .bind(&role.description)
        .bind(to_json(&permissions))
        .bind(to_json(&role.inherits))
        .bind(encode(now))
        .bind(&role.name)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(result.rows_affected() > 0)
    }

    async fn delete_role(&self, name: &str) -> StorageResult<bool> {
        let result = sqlx::query("DELETE FROM roles WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(result.rows_affected() > 0)
    }

    async fn insert_entry(&self, entry: &StoredEntry) -> StorageResult<()> {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        insert_entry_row(&mut transaction, entry).await?;
        transaction.commit().await.map_err(classify)
    }

    async fn find_entry(&self, id: Uuid) -> StorageResult<Option<StoredEntry>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries e WHERE e.id = ?");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn update_entry(&self, entry: &StoredEntry) -> StorageResult<()> {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        update_entry_row(&mut transaction, entry).await?;
        transaction.commit().await.map_err(classify)
    }

    async fn delete_entry(&self, id: Uuid) -> StorageResult<bool> {
        let result = sqlx::query("DELETE FROM entries WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(result.rows_affected() > 0)
    }

    async fn list_entries(
        &self,
        filter: &EntryFilter,
        after: Option<&EntryCursor>,
        limit: u32,
    ) -> StorageResult<Vec<StoredEntry>> {
        let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {ENTRY_COLUMNS} FROM entries e WHERE 1 = 1"));
        push_filter(&mut query, filter);
        if let Some(cursor) = after {
            let created = encode(cursor.created_at);
            query
                .push(" AND (e.created_at > ")
                .push_bind(created.clone())
                .push(" OR (e.created_at = ")
                .push_bind(created)
                .push(" AND e.id > ")
                .push_bind(cursor.id.to_string())
                .push("))");
        }
        query
            .push(" ORDER BY e.created_at, e.id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.pool).await.map_err(classify)?;
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
        // Each term becomes an FTS5 string literal, so no query syntax from the
        // client reaches the MATCH expression; OR lets partial matches rank lower.
        let expression = terms
            .iter()
            .map(|term| format!("\"{}\"", term.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" OR ");

        // The innermost query picks and scores at most SEARCH_CANDIDATES
        // matches, reading entry rows only when a filter needs them. The
        // middle one sorts those and keeps the requested page, and only the
        // page's rows are read in full: joining every candidate before the
        // sort took half the time of a search over a million entries.
        // Equal scores are ordered by rowid, which is stable.
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {ENTRY_COLUMNS}, c.rank FROM (SELECT rid, rank FROM (SELECT entries_fts.rowid AS rid, \
             bm25(entries_fts, 10.0, 5.0, 1.0, 3.0) AS rank FROM entries_fts"
        ));
        if !filter.is_empty() {
            query.push(" JOIN entries e ON e.rowid = entries_fts.rowid");
        }
        query.push(" WHERE entries_fts MATCH ").push_bind(expression);
        push_filter(&mut query, filter);
        query
            .push(format!(" LIMIT {SEARCH_CANDIDATES}) ORDER BY rank, rid LIMIT "))
            .push_bind(i64::from(limit))
            .push(" OFFSET ")
            .push_bind(i64::from(offset))
            .push(") c JOIN entries e ON e.rowid = c.rid ORDER BY c.rank, c.rid");
        let rows = query.build().fetch_all(&self.pool).await.map_err(classify)?;
        rows.iter()
            .map(|row| Ok((entry_from_row(row)?, -row.get::<f64, _>("rank"))))
            .collect()
    }

    async fn entry_analytics(&self, days: u32) -> StorageResult<EntryAnalytics> {
        let pairs = |rows: Vec<SqliteRow>| -> Vec<(String, i64)> {
            rows.iter()
                .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1)))
                .collect()
        };

        let total = sqlx::query_scalar("SELECT COUNT(*) FROM entries")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let by_category = sqlx::query("SELECT category, COUNT(*) FROM entries GROUP BY category ORDER BY category")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let by_status = sqlx::query("SELECT status, COUNT(*) FROM entries GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let top_tags =
            sqlx::query("SELECT tag, COUNT(*) AS n FROM entry_tags GROUP BY tag ORDER BY n DESC, tag LIMIT 10")
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;

        let since = encode(Utc::now() - chrono::Duration::days(i64::from(days)));
        let created_per_day = sqlx::query(
            "SELECT substr(created_at, 1, 10) AS day, COUNT(*) FROM entries WHERE created_at >= ? GROUP BY day ORDER BY day",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;

        Ok(EntryAnalytics {
            total,
            by_category: pairs(by_category),
            by_status: pairs(by_status),
            top_tags: pairs(top_tags),
            created_per_day: pairs(created_per_day),
        })
    }

    async fn refresh_entry_statistics(&self) -> StorageResult<()> {
        // analysis_limit samples each index instead of reading it whole, so
        // this takes milliseconds even on a million entries.
        let mut connection = self.pool.acquire().await.map_err(classify)?;
        for statement in ["PRAGMA analysis_limit = 1000", "ANALYZE entries", "ANALYZE entry_tags"] {
            sqlx::query(statement)
                .execute(&mut *connection)
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    async fn import_entries(&self, batch: &[StoredEntry], policy: ImportPolicy) -> StorageResult<Vec<ImportOutcome>> {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        let inserted = super::bulk_import::insert_new_sqlite(&mut transaction, batch).await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for entry in batch {
            let outcome = if inserted.contains(&entry.id) {
                ImportOutcome::Created
            } else {
                import_one(&mut transaction, entry, policy).await?
            };
            outcomes.push(outcome);
        }
        transaction.commit().await.map_err(classify)?;
        Ok(outcomes)
    }

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, generation, created_at, expires_at, \
             spent_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.token_hash)
        .bind(&token.family_id)
        .bind(token.user_id.to_string())
        .bind(token.generation)
        .bind(encode(token.created_at))
        .bind(encode(token.expires_at))
        .bind(token.spent_at.map(encode))
        .bind(token.revoked_at.map(encode))
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn find_refresh_token(&self, token_hash: &[u8]) -> StorageResult<Option<RefreshTokenRecord>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(RefreshTokenRecord {
            token_hash: row.get("token_hash"),
            family_id: row.get("family_id"),
            user_id: uuid(row.get("user_id"))?,
            generation: row.get("generation"),
            created_at: decode(row.get("created_at"))?,
            expires_at: decode(row.get("expires_at"))?,
            spent_at: optional_time(row.get("spent_at"))?,
            revoked_at: optional_time(row.get("revoked_at"))?,
        }))
    }

    async fn spend_refresh_token(&self, token_hash: &[u8], at: DateTime<Utc>) -> StorageResult<bool> {
        let result = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = ? WHERE token_hash = ? AND spent_at IS NULL AND revoked_at IS NULL",
        )
        .bind(encode(at))
        .bind(token_hash)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(result.rows_affected() == 1)
    }

    async fn revoke_refresh_family(&self, family_id: &str, at: DateTime<Utc>) -> StorageResult<()> {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
            .bind(encode(at))
            .bind(family_id)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn revoke_user_refresh_tokens(
        &self,
        user_id: Uuid,
        keep_family: Option<&str>,
        at: DateTime<Utc>,
    ) -> StorageResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL \
             AND family_id IS NOT ?",
        )
        .bind(encode(at))
        .bind(user_id.to_string())
        .bind(keep_family)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn insert_revoked_token(&self, jti: &str, expires_at: DateTime<Utc>) -> StorageResult<()> {
        sqlx::query("INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)")
            .bind(jti)
            .bind(encode(expires_at))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn list_revoked_tokens(&self, now: DateTime<Utc>) -> StorageResult<Vec<String>> {
        sqlx::query_scalar("SELECT jti FROM revoked_tokens WHERE expires_at > ?")
            .bind(encode(now))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    async fn find_mfa(&self, user_id: Uuid) -> StorageResult<Option<MfaRecord>> {
        let row = sqlx::query("SELECT * FROM user_mfa WHERE user_id = ?")
            .bind(user_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(MfaRecord {
            user_id,
            secret: row.get("secret"),
            pending_secret: row.get("pending_secret"),
            recovery_codes: json_list(row.get("recovery_codes"))?,
            last_step: row.get("last_step"),
        }))
    }

    async fn save_mfa(&self, record: &MfaRecord) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO user_mfa (user_id, secret, pending_secret, recovery_codes, last_step) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, pending_secret = excluded.pending_secret, \
             recovery_codes = excluded.recovery_codes, last_step = excluded.last_step",
        )
        .bind(record.user_id.to_string())
        .bind(&record.secret)
        .bind(&record.pending_secret)
        .bind(to_json(&record.recovery_codes))
        .bind(record.last_step)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn consume_mfa(&self, previous: &MfaRecord, next: &MfaRecord) -> StorageResult<bool> {
        let result = sqlx::query(
            "UPDATE user_mfa SET recovery_codes = ?, last_step = ? \
             WHERE user_id = ? AND recovery_codes = ? AND last_step = ?",
        )
        .bind(to_json(&next.recovery_codes))
        .bind(next.last_step)
        .bind(previous.user_id.to_string())
        .bind(to_json(&previous.recovery_codes))
        .bind(previous.last_step)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_mfa(&self, user_id: Uuid) -> StorageResult<()> {
        sqlx::query("DELETE FROM user_mfa WHERE user_id = ?")
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StorageResult<()> {
        let mut connection = self.pool.acquire().await.map_err(classify)?;
        insert_api_key_row(&mut connection, key).await
    }

    async fn insert_api_key_within_limit(
        &self,
        key: &ApiKeyRecord,
        replaces: Option<(&str, DateTime<Utc>)>,
        max_live: u32,
        now: DateTime<Utc>,
    ) -> StorageResult<LimitedKeyInsert> {
        // BEGIN IMMEDIATE takes the write lock before the count, so two
        // concurrent inserts cannot both see room for one more key.
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        if let Some((old_id, revoked_at)) = replaces {
            let revoked = sqlx::query(
                "UPDATE api_keys SET revoked_at = ? \
                 WHERE id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?",
            )
            .bind(encode(revoked_at))
            .bind(old_id)
            .bind(key.user_id.to_string())
            .bind(encode(now))
            .execute(&mut *transaction)
            .await
            .map_err(classify)?;
            if revoked.rows_affected() != 1 {
                return Ok(LimitedKeyInsert::ReplacedKeyNotLive);
            }
        }
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys \
             WHERE user_id = ? AND (revoked_at IS NULL OR revoked_at > ?) AND expires_at > ?",
        )
        .bind(key.user_id.to_string())
        .bind(encode(now))
        .bind(encode(now))
        .fetch_one(&mut *transaction)
        .await
        .map_err(classify)?;
        if live >= i64::from(max_live) {
            return Ok(LimitedKeyInsert::LimitReached);
        }
        insert_api_key_row(&mut transaction, key).await?;
        transaction.commit().await.map_err(classify)?;
        Ok(LimitedKeyInsert::Inserted)
    }

    async fn find_api_key(&self, id: &str) -> StorageResult<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn list_api_keys(&self, user_id: Option<Uuid>) -> StorageResult<Vec<ApiKeyRecord>> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM api_keys WHERE 1 = 1");
        if let Some(user_id) = user_id {
            query.push(" AND user_id = ").push_bind(user_id.to_string());
        }
        query.push(" ORDER BY created_at, id");
        let rows = query.build().fetch_all(&self.pool).await.map_err(classify)?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> StorageResult<bool> {
        // An earlier revocation is kept. A later one (a rotation's grace
        // period) is brought forward.
        sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND (revoked_at IS NULL OR revoked_at > ?)")
            .bind(encode(at))
            .bind(id)
            .bind(encode(at))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(self.find_api_key(id).await?.is_some())
    }

    async fn record_api_key_use(&self, uses: &[(String, DateTime<Utc>)]) -> StorageResult<()> {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            )
            .bind(encode(*at))
            .bind(id)
            .bind(encode(*at))
            .execute(&mut *transaction)
            .await
            .map_err(classify)?;
        }
        transaction.commit().await.map_err(classify)
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
