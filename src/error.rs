//! The public error, and the one place where Kafka error codes are classified.
//!
//! Every error answers "what now?" through [`Error::action`]: retry after a backoff, refresh
//! metadata first, reconnect, find the coordinator again, rejoin the group, or give up.
//!
//! # References
//! - Protocol guide, error codes: <https://kafka.apache.org/protocol#protocol_error_codes>.
//! - Java client `Errors.java` and its `RetriableException` / `InvalidMetadataException`
//!   hierarchy, which this classification follows.

use std::fmt;

use kafka_protocol::ResponseError;

use crate::config::ConfigError;
use crate::net::NetError;
use crate::wire::ProtocolError;

/// Kafka error codes spate handles by name, declared once. What each means for the caller
/// comes from [`KafkaCode::action`]; these names are for the places that treat one code apart
/// (a membership rule, a producer sequence rule, the embedded cluster's answers).
pub mod codes {
    /// UNKNOWN_SERVER_ERROR.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    /// OFFSET_OUT_OF_RANGE.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// CORRUPT_MESSAGE.
    pub const CORRUPT_MESSAGE: i16 = 2;
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// LEADER_NOT_AVAILABLE.
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    /// NOT_LEADER_OR_FOLLOWER.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// MESSAGE_TOO_LARGE.
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    /// COORDINATOR_LOAD_IN_PROGRESS.
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    /// COORDINATOR_NOT_AVAILABLE.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// NOT_COORDINATOR.
    pub const NOT_COORDINATOR: i16 = 16;
    /// ILLEGAL_GENERATION.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// INCONSISTENT_GROUP_PROTOCOL.
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    /// UNKNOWN_MEMBER_ID.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// REBALANCE_IN_PROGRESS.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// GROUP_AUTHORIZATION_FAILED.
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    /// UNSUPPORTED_SASL_MECHANISM.
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    /// ILLEGAL_SASL_STATE.
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    /// UNSUPPORTED_VERSION.
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// NOT_CONTROLLER.
    pub const NOT_CONTROLLER: i16 = 41;
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    /// DUPLICATE_SEQUENCE_NUMBER.
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    /// INVALID_PRODUCER_EPOCH.
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    /// INVALID_PRODUCER_ID_MAPPING.
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    /// SASL_AUTHENTICATION_FAILED.
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    /// UNKNOWN_PRODUCER_ID.
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    /// FETCH_SESSION_ID_NOT_FOUND.
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    /// INVALID_FETCH_SESSION_EPOCH.
    pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
    /// FENCED_LEADER_EPOCH.
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    /// UNKNOWN_LEADER_EPOCH.
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    /// MEMBER_ID_REQUIRED.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// FENCED_INSTANCE_ID.
    pub const FENCED_INSTANCE_ID: i16 = 82;
    /// UNSTABLE_OFFSET_COMMIT.
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    /// PRODUCER_FENCED.
    pub const PRODUCER_FENCED: i16 = 90;
    /// UNKNOWN_TOPIC_ID (KIP-516).
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    /// INCONSISTENT_TOPIC_ID (KIP-516).
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
    /// FETCH_SESSION_TOPIC_ID_ERROR (KIP-516).
    pub const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;
    /// REBOOTSTRAP_REQUIRED (KIP-1102): the client's metadata is stale; bootstrap again.
    pub const REBOOTSTRAP_REQUIRED: i16 = 129;
    /// TRANSACTION_ABORTABLE (KIP-890): the transaction cannot commit; abort it.
    pub const TRANSACTION_ABORTABLE: i16 = 120;
    /// INVALID_TXN_STATE.
    pub const INVALID_TXN_STATE: i16 = 48;
    /// INVALID_REQUEST.
    pub const INVALID_REQUEST: i16 = 42;
    /// INVALID_CONFIG.
    pub const INVALID_CONFIG: i16 = 40;
    /// GROUP_ID_NOT_FOUND.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// GROUP_SUBSCRIBED_TO_TOPIC: a group's offsets for a topic it consumes cannot be deleted.
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    /// NON_EMPTY_GROUP: a group with members cannot be deleted.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// GROUP_MAX_SIZE_REACHED.
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    /// FENCED_MEMBER_EPOCH (KIP-848): abandon every partition and join again.
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    /// UNRELEASED_INSTANCE_ID (KIP-848): another member still holds this `group.instance.id`.
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    /// UNSUPPORTED_ASSIGNOR (KIP-848): the coordinator has no such server-side assignor.
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    /// STALE_MEMBER_EPOCH (KIP-848): an offset request carried an older member epoch.
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    /// INVALID_RECORD_STATE (KIP-932): an acknowledgement for a record not held.
    pub const INVALID_RECORD_STATE: i16 = 121;
    /// SHARE_SESSION_NOT_FOUND (KIP-932).
    pub const SHARE_SESSION_NOT_FOUND: i16 = 122;
    /// INVALID_SHARE_SESSION_EPOCH (KIP-932).
    pub const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
    /// INVALID_REGULAR_EXPRESSION (KIP-848): the subscription's pattern does not compile.
    pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
    /// The topic name is not a legal one.
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    /// The topic exists already.
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    /// The number of partitions is not a legal one.
    pub const INVALID_PARTITIONS: i16 = 37;
    /// Replica assignments that do not fit the request.
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    /// The replication factor is larger than the brokers, or not a legal one.
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    /// The request breaks a broker policy (for example, a batch too large for the controller).
    pub const POLICY_VIOLATION: i16 = 44;
}

/// What a caller should do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Try the same request again after a backoff.
    Retry,
    /// The client's picture of the cluster is stale: refresh metadata, then retry.
    RefreshMetadata,
    /// The connection failed: retry on a new connection (the broker pool reconnects with backoff).
    Reconnect,
    /// The group or transaction coordinator moved: find it again, then retry.
    FindCoordinator,
    /// The group member's generation is gone: rejoin the group.
    Rejoin,
    /// The fetch session is unknown or out of step: start a new one.
    ResetFetchSession,
    /// Retrying cannot help.
    Fatal,
}

/// A Kafka error code as a broker sends it (`0` is success and never appears here).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    /// `Ok(())` for code 0, the code otherwise.
    pub fn check(code: i16) -> Result<(), KafkaCode> {
        if code == 0 {
            Ok(())
        } else {
            Err(KafkaCode(code))
        }
    }

    fn known(self) -> Option<ResponseError> {
        ResponseError::try_from_code(self.0).filter(|e| !matches!(e, ResponseError::Unknown(_)))
    }

    /// The protocol's name for the code (`"NotLeaderOrFollower"`), or `"Unknown"`.
    pub fn name(self) -> String {
        match self.known() {
            Some(e) => format!("{e:?}"),
            None => "Unknown".to_owned(),
        }
    }

    /// What to do about this code. The single classification every layer uses.
    pub fn action(self) -> Action {
        use ResponseError as E;
        let Some(e) = self.known() else {
            return Action::Fatal;
        };
        match e {
            // The Java client's InvalidMetadataException family: the leader, the partition set
            // or the controller moved.
            E::UnknownTopicOrPartition
            | E::LeaderNotAvailable
            | E::NotLeaderOrFollower
            | E::ReplicaNotAvailable
            | E::BrokerNotAvailable
            | E::NotController
            | E::KafkaStorageError
            | E::ListenerNotFound
            | E::FencedLeaderEpoch
            | E::UnknownLeaderEpoch
            | E::PreferredLeaderNotAvailable
            | E::EligibleLeadersNotAvailable
            | E::UnknownTopicId
            | E::InconsistentTopicId
            | E::OffsetNotAvailable => Action::RefreshMetadata,
            E::CoordinatorNotAvailable | E::NotCoordinator => Action::FindCoordinator,
            E::IllegalGeneration
            | E::UnknownMemberId
            | E::RebalanceInProgress
            | E::MemberIdRequired
            | E::FencedMemberEpoch
            | E::StaleMemberEpoch => Action::Rejoin,
            E::FetchSessionIdNotFound
            | E::InvalidFetchSessionEpoch
            | E::FetchSessionTopicIdError
            | E::ShareSessionNotFound
            | E::InvalidShareSessionEpoch => Action::ResetFetchSession,
            E::CorruptMessage
            | E::RequestTimedOut
            | E::NetworkException
            | E::CoordinatorLoadInProgress
            | E::NotEnoughReplicas
            | E::NotEnoughReplicasAfterAppend
            | E::ConcurrentTransactions
            | E::UnstableOffsetCommit
            | E::ThrottlingQuotaExceeded
            | E::ElectionNotNeeded
            | E::ShareSessionLimitReached => Action::Retry,
            _ => Action::Fatal,
        }
    }

    /// The protocol's description of the code.
    pub fn description(self) -> String {
        match self.known() {
            Some(e) => e.to_string(),
            None => format!("unknown error code {}", self.0),
        }
    }
}

impl fmt::Debug for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.0, self.description())
    }
}

/// Every error the client layers return.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A connection failed (connect, I/O, timeout, a peer that broke the protocol).
    #[error(transparent)]
    Net(#[from] NetError),
    /// A message could not be encoded or decoded, or no version is shared with the broker.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The broker answered with an error code.
    #[error("{context}: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        /// The code.
        code: KafkaCode,
        /// What was being done ("create topic orders").
        context: String,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// No bootstrap server or broker could be reached.
    #[error("no broker reachable (tried {tried}); last error: {last}")]
    NoBrokerAvailable {
        /// The addresses tried.
        tried: String,
        /// The last failure.
        last: Box<Error>,
    },
    /// The cluster metadata does not know this topic, partition or broker.
    #[error("{0}")]
    UnknownInMetadata(String),
    /// An operation ran out of time, retries included.
    #[error("{what} did not complete within {after_ms} ms; last error: {last}")]
    Timeout {
        /// The operation.
        what: String,
        /// The time it had.
        after_ms: u64,
        /// The last failure before time ran out.
        last: Box<Error>,
    },
    /// A record is larger than the producer may send (`max.request.size`, `buffer.memory`).
    #[error("record of {size} bytes is larger than {setting} ({limit} bytes)")]
    RecordTooLarge {
        /// The record's encoded size.
        size: usize,
        /// The setting that caps it.
        setting: &'static str,
        /// Its value.
        limit: usize,
    },
    /// [`Producer::try_send`](crate::producer::Producer::try_send) would have had to wait;
    /// nothing was buffered. Try again later.
    #[error("the record cannot be taken without waiting: {reason}")]
    WouldBlock {
        /// Why: `buffer.memory` is full, or the topic's partitions are not known yet.
        reason: &'static str,
    },
    /// The producer was closed; nothing more can be sent through it.
    #[error("the producer is closed")]
    ProducerClosed,
    /// Another producer with the same `transactional.id` (or a newer epoch of this one) has
    /// taken over: this producer can only be closed.
    #[error("producer fenced{}: {code}", transactional_id.as_deref().map(|t| format!(" (transactional.id {t})")).unwrap_or_default())]
    ProducerFenced {
        /// The transactional id, if any.
        transactional_id: Option<String>,
        /// PRODUCER_FENCED, INVALID_PRODUCER_EPOCH or TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
        code: KafkaCode,
    },
    /// The consumer was closed.
    #[error("the consumer is closed")]
    ConsumerClosed,
    /// Another consumer joined the group with this member's `group.instance.id` (static
    /// membership, KIP-345): this one is fenced and can only be closed. Two processes are
    /// configured with the same instance id.
    #[error("group {group_id}: another member took group.instance.id {group_instance_id}")]
    FencedInstanceId {
        /// The group.
        group_id: String,
        /// The instance id both use.
        group_instance_id: String,
    },
    /// A record batch is corrupt (CRC mismatch, truncated, a decompression bomb, …; the
    /// consumer does not move past it), or one could not be built for sending.
    #[error("{topic}-{partition}: {source}")]
    Records {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What is wrong with the batch.
        source: crate::record::RecordError,
    },
    /// The log of a partition was truncated below the consumer's position (an unclean
    /// election; KIP-320) and `auto.offset.reset` is `none`: the records from
    /// `divergent_offset` on are not the ones it read. The partition is not fetched until the
    /// application seeks (to `divergent_offset` to read what replaced them).
    #[error("{topic}-{partition}: log truncation detected at offset {offset}: the log diverges from offset {divergent_offset} (leader epoch {divergent_epoch})")]
    LogTruncation {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The consumer's fetch position.
        offset: i64,
        /// The first offset that diverged.
        divergent_offset: i64,
        /// The last leader epoch both logs share.
        divergent_epoch: i32,
    },
    /// A call that does not fit the client's state (subscribing a consumer twice, …).
    #[error("{0}")]
    InvalidState(String),
    /// A background task of the client stopped unexpectedly (it panicked): a bug in spate,
    /// reported rather than hidden.
    #[error("the {task} task failed: {reason}")]
    TaskFailed {
        /// Which task.
        task: &'static str,
        /// What the runtime said.
        reason: String,
    },
    /// Data could not be converted, encoded or decoded (Arrow, the Schema Registry's wire
    /// format, Avro).
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    /// A transaction call in a state that does not allow it (commit with none begun, a send
    /// after a failed batch until the transaction is aborted, …).
    #[error("transaction: {0}")]
    Transaction(String),
}

impl Error {
    /// A broker error code with context.
    pub fn kafka(code: KafkaCode, context: impl Into<String>, message: Option<String>) -> Self {
        Error::Kafka {
            code,
            context: context.into(),
            message,
        }
    }

    /// The Kafka error code, if the broker sent one.
    pub fn code(&self) -> Option<KafkaCode> {
        match self {
            Error::Kafka { code, .. } | Error::ProducerFenced { code, .. } => Some(*code),
            Error::Timeout { last, .. } | Error::NoBrokerAvailable { last, .. } => last.code(),
            _ => None,
        }
    }

    /// What to do next.
    pub fn action(&self) -> Action {
        match self {
            Error::Kafka { code, .. } => code.action(),
            Error::Net(e) => e.action(),
            // Every broker failed: as fatal as the failure it reports (the worst one seen).
            Error::NoBrokerAvailable { last, .. } => match last.action() {
                Action::Fatal => Action::Fatal,
                _ => Action::Reconnect,
            },
            Error::UnknownInMetadata(_) => Action::RefreshMetadata,
            Error::WouldBlock { .. } => Action::Retry,
            Error::Format(crate::formats::FormatError::RegistryUnreachable(_)) => Action::Retry,
            Error::Config(_)
            | Error::Protocol(_)
            | Error::Timeout { .. }
            | Error::RecordTooLarge { .. }
            | Error::ProducerClosed
            | Error::ConsumerClosed
            | Error::FencedInstanceId { .. }
            | Error::InvalidState(_)
            | Error::LogTruncation { .. }
            | Error::TaskFailed { .. }
            | Error::Records { .. }
            | Error::ProducerFenced { .. }
            | Error::Format(_)
            | Error::Transaction(_) => Action::Fatal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_as_the_java_client_does() {
        assert_eq!(KafkaCode(6).action(), Action::RefreshMetadata); // NOT_LEADER_OR_FOLLOWER
        assert_eq!(KafkaCode(3).action(), Action::RefreshMetadata); // UNKNOWN_TOPIC_OR_PARTITION
        assert_eq!(KafkaCode(41).action(), Action::RefreshMetadata); // NOT_CONTROLLER
        assert_eq!(KafkaCode(7).action(), Action::Retry); // REQUEST_TIMED_OUT
        assert_eq!(KafkaCode(14).action(), Action::Retry); // COORDINATOR_LOAD_IN_PROGRESS
        assert_eq!(KafkaCode(16).action(), Action::FindCoordinator); // NOT_COORDINATOR
        assert_eq!(KafkaCode(27).action(), Action::Rejoin); // REBALANCE_IN_PROGRESS
        assert_eq!(KafkaCode(70).action(), Action::ResetFetchSession);
        assert_eq!(KafkaCode(36).action(), Action::Fatal); // TOPIC_ALREADY_EXISTS
        assert_eq!(KafkaCode(90).action(), Action::Fatal); // PRODUCER_FENCED
        assert_eq!(KafkaCode(-1).action(), Action::Fatal); // UNKNOWN_SERVER_ERROR
        assert_eq!(KafkaCode(9999).action(), Action::Fatal);
    }

    #[test]
    fn every_retriable_code_of_the_protocol_is_classified_as_recoverable() {
        // kafka-protocol marks the codes the Java client treats as retriable; none of them may
        // end up Fatal here (that would stop a producer or consumer for a transient error).
        for code in -1..200i16 {
            let k = KafkaCode(code);
            if let Some(e) = k.known() {
                if e.is_retriable() {
                    assert_ne!(k.action(), Action::Fatal, "{k:?} is retriable");
                }
            }
        }
    }

    #[test]
    fn names_and_messages() {
        assert_eq!(KafkaCode(36).name(), "TopicAlreadyExists");
        assert_eq!(KafkaCode(9999).name(), "Unknown");
        let e = Error::kafka(KafkaCode(36), "create topic t", Some("exists".into()));
        assert_eq!(e.code(), Some(KafkaCode(36)));
        let text = e.to_string();
        assert!(
            text.starts_with("create topic t: TopicAlreadyExists (36)"),
            "{text}"
        );
        assert!(text.ends_with("(exists)"), "{text}");
    }
}
