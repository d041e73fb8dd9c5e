//! The embedded cluster's transaction coordinator: InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit and EndTxn, with Kafka's fencing rules (transactions v1,
//! KIP-588 error codes):
//! - a producer id that is not the transactional id's is INVALID_PRODUCER_ID_MAPPING; an epoch
//!   that is not the current one is PRODUCER_FENCED (Kafka's `TransactionCoordinator`);
//! - a transaction open longer than the producer's `transaction.timeout.ms` is aborted by the
//!   coordinator, which bumps the epoch so the late producer is fenced (Kafka's
//!   `abortTimedOutTransactions`, which fences the producer epoch);
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

use super::State;
use crate::error::codes::{
    ILLEGAL_GENERATION, INVALID_PRODUCER_EPOCH, INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
    UNKNOWN_TOPIC_OR_PARTITION,
};

/// INVALID_TRANSACTION_TIMEOUT: a timeout above the broker's `transaction.max.timeout.ms`.
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
/// Kafka's default `transaction.max.timeout.ms` (15 minutes).
const MAX_TIMEOUT_MS: i32 = 900_000;

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
}

impl Transaction {
    fn started(&mut self, now: Instant) {
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
        let txn = state.transactions.get_mut(&id).expect("listed");
        txn.epoch += 1;
        tracing::debug!(transactional_id = %id, epoch = txn.epoch, "mock: transaction timed out, aborted");
        abort_open(state, &id);
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
        let txn = Transaction {
            producer_id: state.next_producer_id,
            timeout,
            ..Transaction::default()
        };
        let answer = (0, txn.producer_id, txn.epoch);
        state.transactions.insert(txn_id, txn);
        return answer;
    }
    // A new session of a known id: bump the epoch (which fences the previous producer) and
    // abort what the previous one left open.
    let txn = state.transactions.get_mut(&txn_id).expect("checked");
    txn.epoch += 1;
    txn.timeout = timeout;
    let answer = (0, txn.producer_id, txn.epoch);
    abort_open(state, &txn_id);
    answer
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
                    txn.started(Instant::now());
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
            txn.started(Instant::now());
        }
    }
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub(super) fn offset_commit(
    state: &mut State,
    request: &TxnOffsetCommitRequest,
    error: Option<i16>,
) -> TxnOffsetCommitResponse {
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

pub(super) fn end_txn(state: &mut State, request: &EndTxnRequest) -> i16 {
    let txn_id = request.transactional_id.0.to_string();
    let code = check_txn(
        state,
        &txn_id,
        request.producer_id.0,
        request.producer_epoch,
    );
    if code != 0 {
        return code;
    }
    let txn = state.transactions.get_mut(&txn_id).expect("checked");
    let (producer_id, epoch) = (txn.producer_id, txn.epoch);
    let partitions = std::mem::take(&mut txn.partitions);
    let offsets = std::mem::take(&mut txn.offsets);
    txn.deadline = None;
    for (topic, partition) in partitions {
        if let Some(log) = state
            .topics
            .get_mut(&topic)
            .and_then(|l| l.get_mut(partition as usize))
        {
            log.end_transaction(producer_id, epoch, request.committed);
        }
    }
    if request.committed {
        for (group, topic, partition, offset) in offsets {
            state.offsets.insert((group, topic, partition), offset);
        }
    }
    0
}
