//! PostgreSQL side of [`AuditStore`].

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::audit::{severity_rank, AuditQuery, AuditStore, StoredAuditEvent, EVENTS_PER_STATEMENT};
use super::postgres::{classify_postgres, PostgresStore};
use super::{StorageError, StorageResult};
use crate::audit::{AuditEvent, ChainedEvent, Severity, Status};

const COLUMNS: &str = "seq, event_id, timestamp, event_type, action, status, severity, user_id, api_key_id, \
    client_ip, method, path, http_status, request_id, description, client_cert_subject, prev_hash, hash";

#[async_trait]
impl AuditStore for PostgresStore {
    async fn insert_audit_events(&self, events: &[ChainedEvent]) -> StorageResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut transaction = self.pool().begin().await.map_err(classify_postgres)?;
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            let mut timestamps = Vec::with_capacity(chunk.len());
            for chained in chunk {
                let parsed = DateTime::parse_from_rfc3339(&chained.event.timestamp)
                    .map_err(|_| StorageError::Corrupt("audit event with a bad timestamp".into()))?;
                timestamps.push(parsed.with_timezone(&Utc));
            }
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO audit_events (event_id, timestamp, event_type, action, status, severity, \
                 severity_rank, user_id, api_key_id, client_ip, method, path, http_status, request_id, description, \
                 client_cert_subject, prev_hash, hash) ",
            );
            insert.push_values(chunk.iter().zip(timestamps), |mut row, (chained, timestamp)| {
                let event = &chained.event;
                row.push_bind(&event.event_id)
                    .push_bind(timestamp)
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
                    .push_bind(event.http_status.map(i32::from))
                    .push_bind(&event.request_id)
                    .push_bind(&event.description)
                    .push_bind(&event.client_cert_subject)
                    .push_bind(&chained.prev_hash)
                    .push_bind(&chained.hash);
            });
            insert.push(" ON CONFLICT (event_id) DO NOTHING");
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(classify_postgres)?;
        }
        transaction.commit().await.map_err(classify_postgres)
    }

    async fn query_audit_events(&self, query: &AuditQuery) -> StorageResult<Vec<StoredAuditEvent>> {
        let mut select = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM audit_events WHERE TRUE"));
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
            select.push(" AND timestamp >= ").push_bind(since);
        }
        if let Some(until) = query.until {
            select.push(" AND timestamp < ").push_bind(until);
        }
        if let Some(before) = query.before_seq {
            select.push(" AND seq < ").push_bind(before);
        }
        select
            .push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = select.build().fetch_all(self.pool()).await.map_err(classify_postgres)?;
        rows.iter().map(stored_event).collect()
    }

    async fn purge_audit_events(&self, before: DateTime<Utc>) -> StorageResult<u64> {
        let result = sqlx::query("DELETE FROM audit_events WHERE timestamp < $1")
            .bind(before)
            .execute(self.pool())
            .await
            .map_err(classify_postgres)?;
        Ok(result.rows_affected())
    }

    async fn get_setting(&self, key: &str) -> StorageResult<Option<String>> {
        sqlx::query_scalar("SELECT value::text FROM runtime_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(classify_postgres)
    }

    async fn put_setting(&self, key: &str, value: &str, now: DateTime<Utc>) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO runtime_settings (key, value, updated_at) VALUES ($1, $2::jsonb, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(classify_postgres)?;
        Ok(())
    }
}

fn stored_event(row: &PgRow) -> StorageResult<StoredAuditEvent> {
    let corrupt = |what: &str| StorageError::Corrupt(format!("audit event with an unknown {what}"));
    let status: String = row.get("status");
    let severity: String = row.get("severity");
    let timestamp: DateTime<Utc> = row.get("timestamp");
    let http_status: Option<i32> = row.get("http_status");
    let event = AuditEvent {
        timestamp: timestamp.to_rfc3339_opts(SecondsFormat::Micros, true),
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
