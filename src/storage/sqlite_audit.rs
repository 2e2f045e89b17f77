//! SQLite side of [`AuditStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::audit::{severity_rank, AuditQuery, AuditStore, StoredAuditEvent, EVENTS_PER_STATEMENT};
use super::classify;
use super::sqlite::SqliteStore;
use super::time_format::encode;
use super::{StorageError, StorageResult};
use crate::audit::{AuditEvent, ChainedEvent, Severity, Status};

const COLUMNS: &str = "seq, event_id, timestamp, event_type, action, status, severity, user_id, api_key_id, \
    client_ip, method, path, http_status, request_id, description, client_cert_subject, prev_hash, hash";

#[async_trait]
impl AuditStore for SqliteStore {
    async fn insert_audit_events(&self, events: &[ChainedEvent]) -> StorageResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO audit_events (event_id, timestamp, event_type, action, status, severity, \
                 severity_rank, user_id, api_key_id, client_ip, method, path, http_status, request_id, description, \
                 client_cert_subject, prev_hash, hash) ",
            );
            insert.push_values(chunk, |mut row, chained| {
                let event = &chained.event;
                row.push_bind(&event.event_id)
                    .push_bind(&event.timestamp)
                    .push_bind(&event.event_type)
                    .push_bind(&event.action)
                    .push_bind(event.status.as_str())
                    .push_bind(event.severity.as_str())
                    .push_bind(severity_rank(event.severity))
                    .push_bind(&event.user_id)
                    .push_bind(&event.api_key_id)
                    .push_bind(&event.client_ip)
                    .push_bind(&event.method)
                    .push_bind(&event.path)
                    .push_bind(event.http_status.map(i64::from))
                    .push_bind(&event.request_id)
                    .push_bind(&event.description)
                    .push_bind(&event.client_cert_subject)
                    .push_bind(&chained.prev_hash)
                    .push_bind(&chained.hash);
            });
            insert.build().execute(&mut *transaction).await.map_err(classify)?;
        }
        transaction.commit().await.map_err(classify)
    }

    async fn query_audit_events(&self, query: &AuditQuery) -> StorageResult<Vec<StoredAuditEvent>> {
        let mut select = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1"));
        if let Some(severity) = query.min_severity {
            select.push(" AND severity_rank >= ").push_bind(severity_rank(severity));
        }
        if let Some(user_id) = &query.user_id {
            select.push(" AND user_id = ").push_bind(user_id.clone());
        }
        if let Some(action) = &query.action {
            select.push(" AND action = ").push_bind(action.clone());
        }
        if let Some(event_type) = &query.event_type {
            select.push(" AND event_type = ").push_bind(event_type.clone());
        }
        if let Some(status) = query.status {
            select.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(since) = query.since {
            select.push(" AND timestamp >= ").push_bind(encode(since));
        }
        if let Some(until) = query.until {
            select.push(" AND timestamp < ").push_bind(encode(until));
        }
        if let Some(before) = query.before_seq {
            select.push(" AND seq < ").push_bind(before);
        }
        select
            .push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = select.build().fetch_all(self.pool()).await.map_err(classify)?;
        rows.iter().map(stored_event).collect()
    }

    async fn purge_audit_events(&self, before: DateTime<Utc>) -> StorageResult<u64> {
        let result = sqlx::query("DELETE FROM audit_events WHERE timestamp < ?")
            .bind(encode(before))
            .execute(self.pool())
            .await
            .map_err(classify)?;
        Ok(result.rows_affected())
    }

    async fn get_setting(&self, key: &str) -> StorageResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM runtime_settings WHERE key = ?")
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(classify)
    }

    async fn put_setting(&self, key: &str, value: &str, now: DateTime<Utc>) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO runtime_settings (key, value, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(encode(now))
        .execute(self.pool())
        .await
        .map_err(classify)?;
        Ok(())
    }
}

fn stored_event(row: &SqliteRow) -> StorageResult<StoredAuditEvent> {
    let corrupt = |what: &str| StorageError::Corrupt(format!("audit event with an unknown {what}"));
    let status: String = row.get("status");
    let severity: String = row.get("severity");
    let http_status: Option<i64> = row.get("http_status");
    let event = AuditEvent {
        timestamp: row.get("timestamp"),
        event_id: row.get("event_id"),
        event_type: row.get("event_type"),
        action: row.get("action"),
        status: Status::parse(&status).ok_or_else(|| corrupt("status"))?,
        severity: Severity::parse(&severity).ok_or_else(|| corrupt("severity"))?,
        user_id: row.get("user_id"),
        api_key_id: row.get("api_key_id"),
        client_ip: row.get("client_ip"),
        method: row.get("method"),
        path: row.get("path"),
        http_status: http_status.and_then(|code| u16::try_from(code).ok()),
        request_id: row.get("request_id"),
        description: row.get("description"),
        client_cert_subject: row.get("client_cert_subject"),
    };
    Ok(StoredAuditEvent {
        seq: row.get("seq"),
        event: ChainedEvent {
            event,
            prev_hash: row.get("prev_hash"),
            hash: row.get("hash"),
        },
    })
}
