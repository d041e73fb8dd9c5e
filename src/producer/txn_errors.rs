//! What each transaction API's error codes mean for the transaction, as the Java client's
//! `TransactionManager` handlers decide: retry the request, make the transaction abortable
//! (the application aborts and carries on), or make the producer fatal (it can only be
//! closed). Codes the one classification ([`crate::error::KafkaCode::action`]) calls
//! retriable are retried by [`crate::cluster::Client::with_retry`] before they get here.
//!
//! # References
//! - Java client `TransactionManager`: `AddPartitionsToTxnHandler`, `AddOffsetsToTxnHandler`,
//!   `TxnOffsetCommitHandler`, `EndTxnHandler`; `Sender.completeBatch`.
//! - KIP-98 (transactions), KIP-447 (group-generation fencing), KIP-588 (INVALID_PRODUCER_EPOCH
//!   on Produce is abortable; PRODUCER_FENCED is fatal), KIP-890 (TRANSACTION_ABORTABLE).

use crate::error::codes::{
    FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED, ILLEGAL_GENERATION, INVALID_PRODUCER_EPOCH,
    PRODUCER_FENCED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, TRANSACTION_ABORTABLE,
    UNKNOWN_MEMBER_ID,
};
use crate::error::{Action, Error, KafkaCode};

/// TOPIC_AUTHORIZATION_FAILED.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// OPERATION_NOT_ATTEMPTED: another partition of the same AddPartitionsToTxn failed.
const OPERATION_NOT_ATTEMPTED: i16 = 55;

/// The transaction API an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnApi {
    /// Produce (a batch of the transaction: the sender's own rules, which these mirror).
    #[cfg_attr(not(test), allow(dead_code))]
    Produce,
    /// AddPartitionsToTxn.
    AddPartitions,
    /// AddOffsetsToTxn.
    AddOffsets,
    /// TxnOffsetCommit.
    TxnOffsetCommit,
    /// EndTxn.
    EndTxn,
}

/// What an error does to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnOutcome {
    /// Send the request again (after a backoff, at the coordinator found again if it moved).
    Retry,
    /// The transaction cannot commit: abort it, then begin another.
    Abortable,
    /// The producer cannot go on (fenced, not authorized, a protocol violation): close it.
    Fatal,
}

/// How the Java client handles `code` from `api`.
pub(crate) fn classify(api: TxnApi, code: i16) -> TxnOutcome {
    use TxnOutcome::{Abortable, Fatal, Retry};
    match (api, code) {
        // Another producer with this transactional.id (or a newer epoch) took over.
        (_, PRODUCER_FENCED | TRANSACTIONAL_ID_AUTHORIZATION_FAILED) => Fatal,
        // KIP-588: on Produce it means this epoch's transaction is over (timed out, aborted by
        // the coordinator): abort, and the abort takes a new epoch.
        (TxnApi::Produce, INVALID_PRODUCER_EPOCH) => Abortable,
        (_, INVALID_PRODUCER_EPOCH) => Fatal,
        // KIP-890: the broker says so in as many words, from any transaction API or Produce
        // (Java's handlers: `TransactionAbortableException`, abortable).
        (_, TRANSACTION_ABORTABLE) => Abortable,
        // KIP-447: the consumer's generation moved on (a rebalance) or another member took its
        // instance id: the offsets cannot be committed in this transaction, so it must not
        // commit at all. Java raises CommitFailedException in the abortable state.
        (TxnApi::TxnOffsetCommit, ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID) => {
            Abortable
        }
        (TxnApi::TxnOffsetCommit | TxnApi::AddOffsets, GROUP_AUTHORIZATION_FAILED) => Abortable,
        (TxnApi::AddPartitions | TxnApi::Produce, TOPIC_AUTHORIZATION_FAILED) => Abortable,
        (TxnApi::AddPartitions, OPERATION_NOT_ATTEMPTED) => Abortable,
        _ => match KafkaCode(code).action() {
            Action::Retry | Action::FindCoordinator | Action::Reconnect => Retry,
            // A produce to a moved leader is retried by the sender; AddPartitionsToTxn for a
            // partition being created is retried (Java: UNKNOWN_TOPIC_OR_PARTITION).
            Action::RefreshMetadata => match api {
                TxnApi::EndTxn | TxnApi::AddOffsets => Fatal,
                _ => Retry,
            },
            // Java: "Unexpected error in ...Response": fatal for the transaction manager; on
            // Produce a batch that fails for good makes the transaction abortable.
            _ => match api {
                TxnApi::Produce => Abortable,
                _ => Fatal,
            },
        },
    }
}

/// What an error returned by a transaction call (after its retries) does to the transaction.
/// Time running out is not the producer's end: the transaction is aborted and another begun.
pub(crate) fn outcome_of(api: TxnApi, error: &Error) -> TxnOutcome {
    match error {
        Error::ProducerFenced { .. } => TxnOutcome::Fatal,
        Error::Timeout { .. } => TxnOutcome::Abortable,
        e => match e.code() {
            Some(code) => classify(api, code.0),
            // A lost connection retried until the API timeout ends as a Timeout; anything else
            // without a code (a protocol violation) cannot be fixed by aborting.
            None if e.action() == Action::Fatal => TxnOutcome::Fatal,
            None => TxnOutcome::Abortable,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::TxnApi::*;
    use super::TxnOutcome::*;
    use super::*;

    const CONCURRENT_TRANSACTIONS: i16 = 51;
    const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    const NOT_COORDINATOR: i16 = 16;
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    const REQUEST_TIMED_OUT: i16 = 7;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    use crate::error::codes::INVALID_TXN_STATE;
    const UNKNOWN_SERVER_ERROR: i16 = -1;

    /// Java's TxnOffsetCommitHandler: coordinator errors and timeouts retry; UNKNOWN_MEMBER_ID,
    /// ILLEGAL_GENERATION ("CommitFailedException") and FENCED_INSTANCE_ID are abortable;
    /// GROUP_AUTHORIZATION_FAILED abortable; TRANSACTIONAL_ID_AUTHORIZATION_FAILED and
    /// INVALID_PRODUCER_EPOCH fatal; anything unexpected fatal.
    #[test]
    fn txn_offset_commit_errors_as_java_handles_them() {
        for code in [
            COORDINATOR_NOT_AVAILABLE,
            NOT_COORDINATOR,
            REQUEST_TIMED_OUT,
            COORDINATOR_LOAD_IN_PROGRESS,
            UNKNOWN_TOPIC_OR_PARTITION,
        ] {
            assert_eq!(classify(TxnOffsetCommit, code), Retry, "{code}");
        }
        for code in [
            ILLEGAL_GENERATION,
            UNKNOWN_MEMBER_ID,
            FENCED_INSTANCE_ID,
            GROUP_AUTHORIZATION_FAILED,
        ] {
            assert_eq!(classify(TxnOffsetCommit, code), Abortable, "{code}");
        }
        for code in [
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            INVALID_PRODUCER_EPOCH,
            PRODUCER_FENCED,
            UNKNOWN_SERVER_ERROR,
        ] {
            assert_eq!(classify(TxnOffsetCommit, code), Fatal, "{code}");
        }
    }

    /// Java's AddOffsetsToTxnHandler: coordinator errors, CONCURRENT_TRANSACTIONS and loading
    /// retry; GROUP_AUTHORIZATION_FAILED abortable; fencing, INVALID_TXN_STATE and the
    /// unexpected are fatal.
    #[test]
    fn add_offsets_errors_as_java_handles_them() {
        for code in [
            NOT_COORDINATOR,
            COORDINATOR_NOT_AVAILABLE,
            CONCURRENT_TRANSACTIONS,
            COORDINATOR_LOAD_IN_PROGRESS,
        ] {
            assert_eq!(classify(AddOffsets, code), Retry, "{code}");
        }
        assert_eq!(classify(AddOffsets, GROUP_AUTHORIZATION_FAILED), Abortable);
        for code in [
            INVALID_PRODUCER_EPOCH,
            PRODUCER_FENCED,
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            INVALID_TXN_STATE,
            UNKNOWN_SERVER_ERROR,
        ] {
            assert_eq!(classify(AddOffsets, code), Fatal, "{code}");
        }
    }

    /// Java's AddPartitionsToTxnHandler: UNKNOWN_TOPIC_OR_PARTITION, CONCURRENT_TRANSACTIONS
    /// and coordinator errors retry; TOPIC_AUTHORIZATION_FAILED and OPERATION_NOT_ATTEMPTED
    /// abortable; fencing and INVALID_TXN_STATE fatal.
    #[test]
    fn add_partitions_errors_as_java_handles_them() {
        for code in [
            UNKNOWN_TOPIC_OR_PARTITION,
            CONCURRENT_TRANSACTIONS,
            NOT_COORDINATOR,
            COORDINATOR_LOAD_IN_PROGRESS,
        ] {
            assert_eq!(classify(AddPartitions, code), Retry, "{code}");
        }
        for code in [TOPIC_AUTHORIZATION_FAILED, OPERATION_NOT_ATTEMPTED] {
            assert_eq!(classify(AddPartitions, code), Abortable, "{code}");
        }
        for code in [INVALID_PRODUCER_EPOCH, PRODUCER_FENCED, INVALID_TXN_STATE] {
            assert_eq!(classify(AddPartitions, code), Fatal, "{code}");
        }
    }

    /// Java's EndTxnHandler: coordinator errors, loading and CONCURRENT_TRANSACTIONS retry;
    /// fencing, INVALID_TXN_STATE and anything unhandled fatal: an EndTxn error is never taken
    /// as success.
    #[test]
    fn end_txn_errors_as_java_handles_them() {
        for code in [
            NOT_COORDINATOR,
            COORDINATOR_NOT_AVAILABLE,
            COORDINATOR_LOAD_IN_PROGRESS,
            CONCURRENT_TRANSACTIONS,
        ] {
            assert_eq!(classify(EndTxn, code), Retry, "{code}");
        }
        for code in [
            INVALID_PRODUCER_EPOCH,
            PRODUCER_FENCED,
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            INVALID_TXN_STATE,
            UNKNOWN_SERVER_ERROR,
        ] {
            assert_eq!(classify(EndTxn, code), Fatal, "{code}");
        }
    }

    /// Sender.completeBatch with KIP-588: INVALID_PRODUCER_EPOCH is abortable (the abort
    /// bumps the epoch), PRODUCER_FENCED fatal; a batch that fails for good (a record too
    /// large, a corrupt batch) fails its transaction, which must be aborted.
    #[test]
    fn produce_errors_in_a_transaction() {
        assert_eq!(classify(Produce, INVALID_PRODUCER_EPOCH), Abortable);
        assert_eq!(classify(Produce, PRODUCER_FENCED), Fatal);
        assert_eq!(
            classify(Produce, TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            Fatal
        );
        assert_eq!(classify(Produce, 10), Abortable); // MESSAGE_TOO_LARGE
        assert_eq!(classify(Produce, 2), Retry); // CORRUPT_MESSAGE: retriable in Kafka
        assert_eq!(classify(Produce, 6), Retry); // NOT_LEADER_OR_FOLLOWER
    }

    /// KIP-890: TRANSACTION_ABORTABLE from any transaction API or from Produce leaves a
    /// transaction to abort, never a fatal producer (Java: `TransactionAbortableException`).
    #[test]
    fn transaction_abortable_is_abortable_everywhere() {
        for api in [AddPartitions, AddOffsets, TxnOffsetCommit, EndTxn, Produce] {
            assert_eq!(classify(api, TRANSACTION_ABORTABLE), Abortable, "{api:?}");
        }
    }

    #[test]
    fn errors_without_a_code() {
        let timeout = Error::Timeout {
            what: "EndTxn".into(),
            after_ms: 1,
            last: Box::new(Error::kafka(KafkaCode(NOT_COORDINATOR), "x", None)),
        };
        assert_eq!(outcome_of(EndTxn, &timeout), Abortable);
        let fenced = Error::ProducerFenced {
            transactional_id: None,
            code: KafkaCode(PRODUCER_FENCED),
        };
        assert_eq!(outcome_of(EndTxn, &fenced), Fatal);
        let generation = Error::kafka(KafkaCode(ILLEGAL_GENERATION), "commit", None);
        assert_eq!(outcome_of(TxnOffsetCommit, &generation), Abortable);
    }
}
