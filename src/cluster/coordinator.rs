//! Finding a group's or a transaction's coordinator (FindCoordinator).
//!
//! # References
//! - KIP-98 (transaction coordinator), KIP-699 (batched FindCoordinator, v4).

use std::collections::HashMap;

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;

use super::{Client, Topics};
use crate::error::{Error, KafkaCode};
use crate::net::Connection;
use crate::wire::ApiKey;

/// What a coordinator coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoordinatorType {
    /// A consumer group (`key` is the group id).
    Group,
    /// A transactional producer (`key` is the transactional id).
    Transaction,
}

impl Client {
    /// The id of the broker that coordinates `key`. Errors are classified as usual:
    /// COORDINATOR_NOT_AVAILABLE and NOT_COORDINATOR ask to look again, so callers run this
    /// inside [`with_retry`](Client::with_retry).
    pub async fn find_coordinator(&self, kind: CoordinatorType, key: &str) -> Result<i32, Error> {
        let conn = self.any_broker().await?;
        let version = conn.version(ApiKey::FindCoordinator)?;
        let mut request = FindCoordinatorRequest::default().with_key_type(match kind {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        });
        if version >= 4 {
            request.coordinator_keys = vec![StrBytes::from_string(key.to_owned())];
        } else {
            request.key = StrBytes::from_string(key.to_owned());
        }
        let response = conn.request_at(&request, version).await?;
        let (code, message, node) = match response.coordinators.first() {
            Some(c) if version >= 4 => (
                c.error_code,
                c.error_message.as_ref().map(|m| m.to_string()),
                c.node_id.0,
            ),
            _ => (
                response.error_code,
                response.error_message.as_ref().map(|m| m.to_string()),
                response.node_id.0,
            ),
        };
        let context = || format!("find the {kind:?} coordinator of `{key}`").to_lowercase();
        KafkaCode::check(code).map_err(|code| Error::kafka(code, context(), message))?;
        if node < 0 {
            return Err(Error::kafka(
                KafkaCode(crate::error::codes::COORDINATOR_NOT_AVAILABLE),
                context(),
                None,
            ));
        }
        Ok(node)
    }

    /// A connection to the coordinator of `key`: the one found last time, or found now
    /// (FindCoordinator), refreshing metadata if the broker is new. A coordinator that moved
    /// (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE) or whose connection failed is forgotten by
    /// [`with_retry`](Client::with_retry), and found again on the next attempt.
    pub async fn coordinator(&self, kind: CoordinatorType, key: &str) -> Result<Connection, Error> {
        let id = self.coordinator_id(kind, key).await?;
        let conn = self.broker(id).await;
        if conn.is_err() {
            self.forget_coordinator(kind, key);
        }
        conn
    }

    /// The coordinator of `key` and a connection of its own to it, outside the pool: for a
    /// group member's JoinGroup and SyncGroup, which the coordinator holds until the rebalance
    /// completes, and a broker answers a connection's requests in order (Kafka mutes a
    /// connection until its request is answered), so on a shared connection they would hold
    /// up fetches and commits (Java's coordinator has its own connection too).
    pub(crate) async fn dedicated_coordinator(
        &self,
        kind: CoordinatorType,
        key: &str,
    ) -> Result<(i32, Connection), Error> {
        let id = self.coordinator_id(kind, key).await?;
        match self.dedicated(id).await {
            Ok(conn) => Ok((id, conn)),
            Err(e) => {
                self.forget_coordinator(kind, key);
                Err(e)
            }
        }
    }

    /// The id of the coordinator of `key`: the one found last time, or found now.
    async fn coordinator_id(&self, kind: CoordinatorType, key: &str) -> Result<i32, Error> {
        let cache_key = (kind, key.to_owned());
        let cached = self.coordinators().get(&cache_key).copied();
        match cached {
            Some(id) if self.metadata().brokers.contains_key(&id) => Ok(id),
            _ => {
                let id = self.find_coordinator(kind, key).await?;
                if !self.metadata().brokers.contains_key(&id) {
                    self.refresh_metadata(Topics::None).await?;
                }
                self.coordinators().insert(cache_key, id);
                Ok(id)
            }
        }
    }

    fn forget_coordinator(&self, kind: CoordinatorType, key: &str) {
        self.coordinators().remove(&(kind, key.to_owned()));
    }

    /// Forgets every coordinator found: the next [`coordinator`](Client::coordinator) call
    /// asks again.
    pub fn forget_coordinators(&self) {
        self.coordinators().clear();
    }

    fn coordinators(&self) -> std::sync::MutexGuard<'_, HashMap<(CoordinatorType, String), i32>> {
        self.inner
            .coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// A consumer's group membership, for committing its offsets inside a transaction (KIP-447):
/// the group coordinator refuses the commit if the member has been fenced by a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation the member is in (-1 if not known: no fencing by generation).
    pub generation_id: i32,
    /// The member id ("" if not known).
    pub member_id: String,
    /// The static member id, if any.
    pub group_instance_id: Option<String>,
}

impl GroupMetadata {
    /// Metadata for a group without member fencing (a consumer using assigned partitions).
    pub fn new(group_id: &str) -> Self {
        GroupMetadata {
            group_id: group_id.to_owned(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}
