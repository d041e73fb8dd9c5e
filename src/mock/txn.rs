//! The embedded cluster's transaction coordinator: InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit and EndTxn, with Kafka's fencing rules (KIP-588 error
//! codes), for transactions v1 and v2 (KIP-890):
//! - a producer id that is not the transactional id's is INVALID_PRODUCER_ID_MAPPING; an epoch
//!   that is not the current one is PRODUCER_FENCED (Kafka's `TransactionCoordinator`);
//! - EndTxn follows Kafka's state rules: it ends an ongoing transaction; the same result again
//!   (a retry) answers NONE; anything else is INVALID_TXN_STATE;
//! - v2, when the cluster finalized `transaction.version` 2: Produce v12 adds its partition to
//!   the transaction and TxnOffsetCommit v5 its offsets (no AddPartitionsToTxn or
//!   AddOffsetsToTxn), and EndTxn v5 bumps the epoch, writes the markers with the bumped epoch
//!   (which fences late writes of the ended transaction) and returns it, or a new producer id
//!   at epoch 0 once the epoch is exhausted. A retried EndTxn with the epoch before the bump
//!   answers NONE with the bumped one (Kafka's `endTxnEpochBumped`, `retryOnOverflow`); an
//!   abort with nothing added (an empty transaction) bumps the epoch too (KAFKA-18464);
//! - a transaction open longer than the producer's `transaction.timeout.ms` is aborted by the
//!   coordinator, which bumps the epoch so the late producer is fenced (Kafka's
//!   `abortTimedOutTransactions`, which fences the producer epoch, and for a v2 transaction
//!   bumps it again as it ends it);
//! - TxnOffsetCommit checks the group member and generation as Kafka's
//!   `ClassicGroup.validateOffsetCommit(isTransactional = true)` does;
//! - offsets committed in an open transaction make OffsetFetch with `require_stable` answer
//!   UNSTABLE_OFFSET_COMMIT for those partitions until the transaction ends (KIP-447).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, InitProducerIdRequest, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};

use super::{consumer_group, State};
use crate::error::codes::{
    ILLEGAL_GENERATION, INVALID_PRODUCER_EPOCH, INVALID_PRODUCER_ID_MAPPING, INVALID_TXN_STATE,
    PRODUCER_FENCED, UNKNOWN_TOPIC_OR_PARTITION,
};

/// INVALID_TRANSACTION_TIMEOUT: a timeout above the broker's `transaction.max.timeout.ms`.
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
/// Kafka's default `transaction.max.timeout.ms` (15 minutes).
const MAX_TIMEOUT_MS: i32 = 900_000;

/// Where a transactional id's transaction stands (Kafka's `TransactionState`, without the
/// prepare states: the mock writes its markers at once).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// No transaction since the producer id was given.
    #[default]
    Empty,
    /// Partitions or offsets were added.
    Ongoing,
    /// The last transaction ended (committed or aborted).
    Complete { commit: bool },
}

/// The epoch from which Kafka gives a new producer id rather than bump
/// (`isProducerEpochExhausted`).
const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

/// A transaction the mock's coordinator knows.
#[derive(Debug, Default)]
pub(super) struct Transaction {
    pub(super) producer_id: i64,
    pub(super) epoch: i16,
    pub(super) partitions: BTreeSet<(String, i32)>,
    /// (group, topic, partition, offset) committed with the transaction.
    pub(super) offsets: Vec<(String, String, i32, i64)>,
    /// The producer's `transaction.timeout.ms`.
    pub(super) timeout: Duration,
    /// When the open transaction times out (set when it adds its first partition or offsets).
    pub(super) deadline: Option<Instant>,
    pub(super) status: Status,
    /// The transaction (ongoing or last ended) runs the v2 way (Kafka's
    /// `clientTransactionVersion`): set by how it began, and by the EndTxn that ends it.
    pub(super) v2: bool,
    /// The producer id an exhausted epoch replaced, for a retried EndTxn (-1 if none).
    pub(super) previous_producer_id: i64,
}

impl Transaction {
    fn new(producer_id: i64, timeout: Duration) -> Transaction {
        Transaction {
            producer_id,
            timeout,
            previous_producer_id: -1,
            ..Transaction::default()
        }
    }

    /// Partitions or offsets join the transaction: it is ongoing from the first of them, the
    /// v2 way if that one came by Produce v12 or TxnOffsetCommit v5.
    fn started(&mut self, now: Instant, v2: bool) {
        if self.status != Status::Ongoing {
            self.status = Status::Ongoing;
            self.v2 = v2;
        }
        self.deadline.get_or_insert(now + self.timeout);
    }
}

/// Aborts the transactions open longer than their timeout and fences their producers.
pub(super) fn expire(state: &mut State, now: Instant) {
    let expired: Vec<String> = state
        .transactions
        .iter()
        .filter(|(_, t)| t.deadline.is_some_and(|d| d <= now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        // The fence bumps the epoch; in a v2 cluster ending the transaction bumps it once more
        // (Kafka ends a timed-out transaction with the cluster's transaction version).
        let v2 = state.transaction_version >= 2;
        let txn = state.transactions.get_mut(&id).expect("listed");
        txn.epoch = txn.epoch.saturating_add(if v2 { 2 } else { 1 });
        txn.v2 = v2;
        tracing::debug!(transactional_id = %id, epoch = txn.epoch, "mock: transaction timed out, aborted");
        abort_open(state, &id);
        state.transactions.get_mut(&id).expect("listed").status =
            Status::Complete { commit: false };
    }
}

/// Aborts what the transaction left open, marking it with the transaction's current epoch
/// (so a bumped epoch fences the old producer on the partitions too, as Kafka's markers do).
fn abort_open(state: &mut State, txn_id: &str) {
    let txn = state.transactions.get_mut(txn_id).expect("known");
    let (producer_id, epoch) = (txn.producer_id, txn.epoch);
    let open: Vec<(String, i32)> = std::mem::take(&mut txn.partitions).into_iter().collect();
    txn.offsets.clear();
    txn.deadline = None;
    for (topic, partition) in open {
        if let Some(log) = state
            .topics
            .get_mut(&topic)
            .and_then(|l| l.get_mut(partition as usize))
        {
            log.end_transaction(producer_id, epoch, false);
        }
    }
}

/// Whether an open transaction holds an offset for this group and partition (KIP-447's
/// pending offsets, which OffsetFetch with `require_stable` waits for).
pub(super) fn offset_pending(state: &State, group: &str, topic: &str, partition: i32) -> bool {
    state.transactions.values().any(|t| {
        t.offsets
            .iter()
            .any(|(g, tp, p, _)| g == group && tp == topic && *p == partition)
    })
}

pub(super) fn init_producer_id(
    state: &mut State,
    request: &InitProducerIdRequest,
) -> (i16, i64, i16) {
    let Some(txn_id) = request.transactional_id.as_ref().map(|t| t.0.to_string()) else {
        // Idempotent only: a fresh id at epoch 0 (which also restarts sequences).
        state.next_producer_id += 1;
        return (0, state.next_producer_id, 0);
    };
    let timeout_ms = request.transaction_timeout_ms;
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return (INVALID_TRANSACTION_TIMEOUT, -1, -1);
    }
    let timeout = Duration::from_millis(timeout_ms as u64);
    if !state.transactions.contains_key(&txn_id) {
        state.next_producer_id += 1;
        let txn = Transaction::new(state.next_producer_id, timeout);
        let answer = (0, txn.producer_id, txn.epoch);
        state.transactions.insert(txn_id, txn);
        return answer;
    }
    // A new session of a known id: bump the epoch (which fences the previous producer) and
    // abort what the previous one left open.
    let txn = state.transactions.get_mut(&txn_id).expect("checked");
    txn.epoch += 1;
    txn.timeout = timeout;
    abort_open(state, &txn_id);
    let txn = state.transactions.get_mut(&txn_id).expect("checked");
    if txn.epoch >= EPOCH_EXHAUSTED {
        // Kafka rotates the producer id rather than run out of epochs.
        state.next_producer_id += 1;
        txn.previous_producer_id = txn.producer_id;
        txn.producer_id = state.next_producer_id;
        txn.epoch = 0;
    }
    txn.status = Status::Empty;
    (0, txn.producer_id, txn.epoch)
}

pub(super) fn add_partitions(
    state: &mut State,
    request: &AddPartitionsToTxnRequest,
    error: Option<i16>,
) -> AddPartitionsToTxnResponse {
    let code = error.unwrap_or_else(|| {
        check_txn(
            state,
            &request.v3_and_below_transactional_id.0,
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
        )
    });
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let known = state.topics.get(t.name.0.as_str()).map_or(0, Vec::len) as i32;
            let results = t
                .partitions
                .iter()
                .map(|p| {
                    let code = match code {
                        0 if *p >= known => UNKNOWN_TOPIC_OR_PARTITION,
                        c => c,
                    };
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code)
                })
                .collect::<Vec<_>>();
            (t, results)
        })
        .collect::<Vec<_>>();
    if let Some(txn) = state
        .transactions
        .get_mut(request.v3_and_below_transactional_id.0.as_str())
    {
        for (t, results) in &results {
            for r in results {
                if r.partition_error_code == 0 {
                    txn.started(Instant::now(), false);
                    txn.partitions
                        .insert((t.name.0.to_string(), r.partition_index));
                }
            }
        }
    }
    let results = results
        .into_iter()
        .map(|(t, results)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

pub(super) fn add_offsets(
    state: &mut State,
    request: &AddOffsetsToTxnRequest,
    error: Option<i16>,
) -> AddOffsetsToTxnResponse {
    let code = error.unwrap_or_else(|| {
        check_txn(
            state,
            &request.transactional_id.0,
            request.producer_id.0,
            request.producer_epoch,
        )
    });
    if code == 0 {
        if let Some(txn) = state
            .transactions
            .get_mut(request.transactional_id.0.as_str())
        {
            txn.started(Instant::now(), false);
        }
    }
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// TxnOffsetCommit; at v5 in a v2 cluster it also adds the offsets to the transaction.
pub(super) fn offset_commit(
    state: &mut State,
    request: &TxnOffsetCommitRequest,
    version: i16,
    error: Option<i16>,
) -> TxnOffsetCommitResponse {
    let implicit_add = version >= 5 && state.transaction_version >= 2;
    let code = error
        .unwrap_or_else(|| {
            // The group coordinator knows the producer only through the offsets log, whose
            // producer state refuses a stale epoch as INVALID_PRODUCER_EPOCH.
            match check_txn(
                state,
                &request.transactional_id.0,
                request.producer_id.0,
                request.producer_epoch,
            ) {
                PRODUCER_FENCED => INVALID_PRODUCER_EPOCH,
                code => code,
            }
        })
        .or_else_zero(|| check_member(state, request));
    if code == 0 {
        let txn = state
            .transactions
            .get_mut(request.transactional_id.0.as_str())
            .expect("checked");
        if implicit_add {
            txn.started(Instant::now(), true);
        }
        for t in &request.topics {
            for p in &t.partitions {
                txn.offsets.push((
                    request.group_id.0.to_string(),
                    t.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                ));
            }
        }
    }
    let topics = request
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// `0` or the first error code.
trait OrElseZero {
    fn or_else_zero(self, next: impl FnOnce() -> i16) -> i16;
}

impl OrElseZero for i16 {
    fn or_else_zero(self, next: impl FnOnce() -> i16) -> i16 {
        if self == 0 {
            next()
        } else {
            self
        }
    }
}

/// TxnOffsetCommit's member check, as Kafka's `ClassicGroup.validateOffsetCommit` with
/// `isTransactional`: a commit that names a generation, a member or an instance must come from
/// a known member (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) of the current generation
/// (ILLEGAL_GENERATION); one that names none of them (a producer that only stores offsets) is
/// accepted. A rebalance in progress does not refuse it.
fn check_member(state: &mut State, request: &TxnOffsetCommitRequest) -> i16 {
    let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
    let member = request.member_id.as_str();
    if request.generation_id < 0 && member.is_empty() && instance.is_none() {
        return 0;
    }
    // A KIP-848 group: the member epoch must be the member's (STALE_MEMBER_EPOCH).
    let group_id = request.group_id.0.as_str();
    let epoch = request.generation_id;
    if let Some(code) = consumer_group::validate_commit(state, group_id, member, epoch, 0, true) {
        return code;
    }
    let Some(group) = state.groups.get_mut(request.group_id.0.as_str()) else {
        return ILLEGAL_GENERATION;
    };
    group.tick(Instant::now());
    group.check(member, instance, Some(request.generation_id))
}

/// PRODUCER_FENCED for an epoch that is not the current one, INVALID_PRODUCER_ID_MAPPING for
/// an unknown producer, else 0 (Kafka's transaction coordinator, v1 transactions).
fn check_txn(state: &State, txn_id: &str, producer_id: i64, epoch: i16) -> i16 {
    match state.transactions.get(txn_id) {
        None => INVALID_PRODUCER_ID_MAPPING,
        Some(t) if t.producer_id != producer_id => INVALID_PRODUCER_ID_MAPPING,
        Some(t) if t.epoch != epoch => PRODUCER_FENCED,
        Some(_) => 0,
    }
}

/// Adds a partition to the transaction for a Produce v12 batch (v2: the broker does what
/// AddPartitionsToTxn did). The batch's producer must be the transaction's, at its epoch: an
/// older epoch is INVALID_PRODUCER_EPOCH, as the partition's producer state answers it.
pub(super) fn add_by_produce(
    state: &mut State,
    txn_id: &str,
    producer_id: i64,
    epoch: i16,
    topic: &str,
    partition: i32,
) -> i16 {
    let Some(txn) = state.transactions.get_mut(txn_id) else {
        return INVALID_PRODUCER_ID_MAPPING;
    };
    if txn.producer_id != producer_id {
        return INVALID_PRODUCER_ID_MAPPING;
    }
    if txn.epoch != epoch {
        return INVALID_PRODUCER_EPOCH;
    }
    txn.started(Instant::now(), true);
    txn.partitions.insert((topic.to_owned(), partition));
    0
}

/// EndTxn: (error code, producer id, epoch) as Kafka's `TransactionCoordinator.endTransaction`
/// answers them. `version` is the request's: v5 in a v2 cluster ends the transaction the v2
/// way (the epoch bumps).
pub(super) fn end_txn(state: &mut State, request: &EndTxnRequest, version: i16) -> (i16, i64, i16) {
    let client_v2 = version >= 5 && state.transaction_version >= 2;
    let txn_id = request.transactional_id.0.to_string();
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    let Some(txn) = state.transactions.get_mut(&txn_id) else {
        return (INVALID_PRODUCER_ID_MAPPING, -1, -1);
    };
    // A v2 retry: the epoch (or producer id) this EndTxn ended already moved on.
    let retry_on_overflow = txn.v2
        && txn.previous_producer_id == producer_id
        && epoch == EPOCH_EXHAUSTED
        && txn.epoch == 0;
    let retry = retry_on_overflow || (txn.v2 && i32::from(txn.epoch) == i32::from(epoch) + 1);
    let valid_epoch = match txn.status {
        Status::Complete { .. } if txn.v2 => retry || (client_v2 && epoch == txn.epoch),
        _ => epoch == txn.epoch,
    };
    if txn.producer_id != producer_id && !retry_on_overflow {
        return (INVALID_PRODUCER_ID_MAPPING, -1, -1);
    }
    if !valid_epoch {
        return (PRODUCER_FENCED, -1, -1);
    }
    let retry = retry && matches!(txn.status, Status::Complete { .. });
    match (txn.status, request.committed) {
        (Status::Ongoing, _) => {}
        // The same end again: a retry of an EndTxn whose answer was lost.
        (Status::Complete { commit }, committed) if retry || !client_v2 => {
            if commit != committed {
                return (INVALID_TXN_STATE, -1, -1);
            }
            return (0, txn.producer_id, txn.epoch);
        }
        // v2: an abort with nothing added ends an empty transaction (the client cannot know
        // whether its first batch reached the broker), bumping the epoch all the same.
        (Status::Empty | Status::Complete { .. }, false) if client_v2 => {}
        _ => return (INVALID_TXN_STATE, -1, -1),
    }
    let marker_producer = txn.producer_id;
    let rotate = client_v2 && txn.epoch >= EPOCH_EXHAUSTED;
    if client_v2 {
        txn.epoch += 1;
    }
    txn.v2 = client_v2;
    let marker_epoch = txn.epoch;
    let partitions = std::mem::take(&mut txn.partitions);
    let offsets = std::mem::take(&mut txn.offsets);
    txn.deadline = None;
    txn.status = Status::Complete {
        commit: request.committed,
    };
    if rotate {
        state.next_producer_id += 1;
        let txn = state.transactions.get_mut(&txn_id).expect("known");
        txn.previous_producer_id = marker_producer;
        txn.producer_id = state.next_producer_id;
        txn.epoch = 0;
    }
    for (topic, partition) in partitions {
        if let Some(log) = state
            .topics
            .get_mut(&topic)
            .and_then(|l| l.get_mut(partition as usize))
        {
            log.end_transaction(marker_producer, marker_epoch, request.committed);
        }
    }
    if request.committed {
        for (group, topic, partition, offset) in offsets {
            state.offsets.insert((group, topic, partition), offset);
        }
    }
    let txn = &state.transactions[&txn_id];
    (0, txn.producer_id, txn.epoch)
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;
