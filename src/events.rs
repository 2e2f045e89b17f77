//! Changes that every instance must apply at once, carried over Redis
//! publish/subscribe: a revoked access token, changed roles, and evictions
//! from the per-instance caches of users, API keys and entries.
//!
//! Each cache keeps a row for at most one second, so a lost message costs
//! at most a second of staleness. Without Redis the messages have nowhere
//! to go; a single instance applies its own changes directly.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;

use crate::auth::Authenticator;
use crate::registry::Registry;

/// A change to apply on every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// An access token revoked before its expiry (logout).
    TokenRevoked { jti: String },
    /// A custom role was created, changed or deleted.
    RolesChanged,
    /// A user's roles, status, password or MFA changed.
    UserChanged { id: uuid::Uuid },
    /// An API key was revoked or rotated.
    KeyChanged { id: String },
    /// An entry was changed or deleted.
    EntryChanged { id: uuid::Uuid },
    /// Entries not known by id were changed (an import that updated).
    EntriesChanged,
}

impl ClusterEvent {
    /// True for evictions from the entry caches, which the registry applies.
    pub fn is_entry_eviction(&self) -> bool {
        matches!(self, ClusterEvent::EntryChanged { .. } | ClusterEvent::EntriesChanged)
    }

    fn encode(&self) -> String {
        match self {
            ClusterEvent::TokenRevoked { jti } => format!("token_revoked {jti}"),
            ClusterEvent::RolesChanged => "roles_changed".into(),
            ClusterEvent::UserChanged { id } => format!("user_changed {id}"),
            ClusterEvent::KeyChanged { id } => format!("key_changed {id}"),
            ClusterEvent::EntryChanged { id } => format!("entry_changed {id}"),
            ClusterEvent::EntriesChanged => "entries_changed".into(),
        }
    }

    fn decode(message: &str) -> Option<ClusterEvent> {
        match message.split_once(' ') {
            Some(("token_revoked", jti)) if !jti.is_empty() && jti.len() <= 64 => {
                Some(ClusterEvent::TokenRevoked { jti: jti.to_string() })
            }
            Some(("user_changed", id)) => uuid::Uuid::parse_str(id)
                .ok()
                .map(|id| ClusterEvent::UserChanged { id }),
            Some(("key_changed", id)) if !id.is_empty() && id.len() <= 64 => {
                Some(ClusterEvent::KeyChanged { id: id.to_string() })
            }
            Some(("entry_changed", id)) => uuid::Uuid::parse_str(id)
                .ok()
                .map(|id| ClusterEvent::EntryChanged { id }),
            None if message == "roles_changed" => Some(ClusterEvent::RolesChanged),
            None if message == "entries_changed" => Some(ClusterEvent::EntriesChanged),
            _ => None,
        }
    }
}

/// A Redis connection that is opened on first use and re-opened after a
/// failed start, so that an instance started during a Redis outage joins
/// the others once Redis is back. Once open, the connection manager
/// reconnects by itself.
pub struct RedisLink {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    last_attempt: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Maximum wait for a first connection before the caller falls back.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Minimum time between two attempts to open the first connection.
const CONNECT_RETRY: Duration = Duration::from_secs(1);

impl RedisLink {
    pub fn new(client: redis::Client) -> Self {
        RedisLink {
            client,
            connection: tokio::sync::Mutex::new(None),
            last_attempt: std::sync::Mutex::new(None),
        }
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Returns the connection, or `None` while Redis cannot be reached.
    pub async fn connection(&self) -> Option<ConnectionManager> {
        if let Some(connection) = self.connection.lock().await.as_ref() {
            return Some(connection.clone());
        }
        {
            let Ok(mut last) = self.last_attempt.lock() else {
                return None;
            };
            if last.is_some_and(|at| at.elapsed() < CONNECT_RETRY) {
                return None;
            }
            *last = Some(std::time::Instant::now());
        }
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, ConnectionManager::new(self.client.clone())).await;
        match opened {
            Ok(Ok(connection)) => {
                *self.connection.lock().await = Some(connection.clone());
                Some(connection)
            }
            Ok(Err(error)) => {
                tracing::debug!(error = %error, "could not connect to Redis");
                None
            }
            Err(_) => None,
        }
    }

    /// Returns whether Redis replies to a PING now.
    pub async fn ping(&self) -> bool {
        let Some(mut connection) = self.connection().await else {
            return false;
        };
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        matches!(tokio::time::timeout(CONNECT_TIMEOUT, ping).await, Ok(Ok(_)))
    }
}

/// Publishes events to the other instances.
#[derive(Clone)]
pub struct EventBus {
    link: Arc<RedisLink>,
    channel: String,
}

/// Maximum wait for a publish before it is abandoned and logged.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);

impl EventBus {
    pub fn new(link: Arc<RedisLink>, key_prefix: &str) -> Self {
        EventBus {
            link,
            channel: format!("{key_prefix}:events"),
        }
    }

    /// Sends `event` to every instance, this one included.
    pub async fn publish(&self, event: &ClusterEvent) {
        let Some(mut connection) = self.link.connection().await else {
            if event.is_entry_eviction() {
                // One per entry write during an outage; the other
                // instances' copies expire within a second anyway.
                tracing::debug!(event = ?event, "Redis is unreachable; other instances see this change when their cached copy expires");
            } else {
                tracing::warn!(event = ?event, "Redis is unreachable; other instances learn of this change when they reconnect");
            }
            return;
        };
        let mut command = redis::cmd("PUBLISH");
        command.arg(&self.channel).arg(event.encode());
        let publish = command.query_async::<i64>(&mut connection);
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %error, event = ?event, "could not publish a change to other instances")
            }
            Err(_) => tracing::warn!(event = ?event, "publishing a change to other instances timed out"),
        }
    }

    /// Applies events from every instance until the process stops,
    /// reconnecting after a lost connection.
    pub async fn subscribe(client: redis::Client, channel: String, auth: Arc<Authenticator>, registry: Registry) {
        let mut logged_outage = false;
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if let Err(error) = pubsub.subscribe(&channel).await {
                        tracing::warn!(error = %error, "could not subscribe to instance events");
                    } else {
                        if logged_outage {
                            tracing::warn!("subscribed to instance events again");
                            logged_outage = false;
                        }
                        // Anything missed while disconnected is picked up from
                        // the database.
                        registry.apply_event(&ClusterEvent::EntriesChanged);
                        if let Err(error) = auth.reload_shared_state().await {
                            tracing::warn!(error = %error, "could not reload revocations and roles");
                        }
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            let Ok(payload) = message.get_payload::<String>() else {
                                continue;
                            };
                            match ClusterEvent::decode(&payload) {
                                Some(event) if event.is_entry_eviction() => registry.apply_event(&event),
                                Some(event) => auth.apply_event(&event).await,
                                None => {}
                            }
                        }
                    }
                }
                Err(error) => {
                    if !logged_outage {
                        tracing::warn!(error = %error, "lost the instance event subscription; retrying");
                        logged_outage = true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        for event in [
            ClusterEvent::TokenRevoked { jti: "abc-123".into() },
            ClusterEvent::RolesChanged,
            ClusterEvent::UserChanged {
                id: uuid::Uuid::now_v7(),
            },
            ClusterEvent::KeyChanged { id: "k1".into() },
            ClusterEvent::EntryChanged {
                id: uuid::Uuid::now_v7(),
            },
            ClusterEvent::EntriesChanged,
        ] {
            assert_eq!(ClusterEvent::decode(&event.encode()), Some(event));
        }
    }

    #[test]
    fn foreign_messages_ignored() {
        for message in [
            "",
            "token_revoked ",
            "drop_tables",
            "roles_changed now",
            "entry_changed 42",
            "entries_changed x",
        ] {
            assert_eq!(ClusterEvent::decode(message), None, "{message:?}");
        }
    }
}
