//! The embedded cluster's transaction coordinator: InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit and EndTxn.

use std::collections::BTreeSet;

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
    INVALID_PRODUCER_EPOCH, INVALID_PRODUCER_ID_MAPPING, UNKNOWN_TOPIC_OR_PARTITION,
};

/// A transaction the mock's coordinator knows.
#[derive(Debug, Default)]
pub(super) struct Transaction {
    pub(super) producer_id: i64,
    pub(super) epoch: i16,
    pub(super) partitions: BTreeSet<(String, i32)>,
    /// (group, topic, partition, offset) committed with the transaction.
    pub(super) offsets: Vec<(String, String, i32, i64)>,
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
    if !state.transactions.contains_key(&txn_id) {
        state.next_producer_id += 1;
        let txn = Transaction {
            producer_id: state.next_producer_id,
            ..Transaction::default()
        };
        state.transactions.insert(txn_id.clone(), txn);
        let txn = &state.transactions[&txn_id];
        return (0, txn.producer_id, txn.epoch);
    }
    // A new session of a known id: abort what the previous one left open, bump the epoch
    // (which fences the previous producer).
    let txn = state.transactions.get_mut(&txn_id).expect("checked");
    let (producer_id, epoch) = (txn.producer_id, txn.epoch);
    let open: Vec<(String, i32)> = std::mem::take(&mut txn.partitions).into_iter().collect();
    txn.offsets.clear();
    txn.epoch += 1;
    let new_epoch = txn.epoch;
    for (topic, partition) in open {
        if let Some(log) = state
            .topics
            .get_mut(&topic)
            .and_then(|l| l.get_mut(partition as usize))
        {
            log.end_transaction(producer_id, epoch, false);
        }
    }
    (0, producer_id, new_epoch)
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
    state: &State,
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
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub(super) fn offset_commit(
    state: &mut State,
    request: &TxnOffsetCommitRequest,
    error: Option<i16>,
) -> TxnOffsetCommitResponse {
    let code = error.unwrap_or_else(|| {
        check_txn(
            state,
            &request.transactional_id.0,
            request.producer_id.0,
            request.producer_epoch,
        )
    });
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

/// INVALID_PRODUCER_EPOCH for a fenced producer, INVALID_PRODUCER_ID_MAPPING for an unknown
/// one, else 0.
fn check_txn(state: &State, txn_id: &str, producer_id: i64, epoch: i16) -> i16 {
    match state.transactions.get(txn_id) {
        None => INVALID_PRODUCER_ID_MAPPING,
        Some(t) if t.producer_id != producer_id => INVALID_PRODUCER_ID_MAPPING,
        Some(t) if t.epoch != epoch => INVALID_PRODUCER_EPOCH,
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
