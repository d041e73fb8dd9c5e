//! Finding a group's or a transaction's coordinator (FindCoordinator).
//!
//! # References
//! - KIP-98 (transaction coordinator), KIP-699 (batched FindCoordinator, v4).

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;

use super::{Client, Topics};
use crate::error::{Error, KafkaCode};
use crate::net::Connection;
use crate::wire::ApiKey;

/// What a coordinator coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            return Err(Error::kafka(KafkaCode(15), context(), None));
        }
        Ok(node)
    }

    /// A connection to the coordinator of `key`, refreshing metadata if the broker is new.
    pub async fn coordinator(&self, kind: CoordinatorType, key: &str) -> Result<Connection, Error> {
        let id = self.find_coordinator(kind, key).await?;
        if !self.metadata().brokers.contains_key(&id) {
            self.refresh_metadata(Topics::None).await?;
        }
        self.broker(id).await
    }
}
