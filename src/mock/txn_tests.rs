//! The mock's transaction coordinator against Kafka's rules for transactions v2 (KIP-890), as
//! `TransactionCoordinator.endTransaction` and `TransactionMetadata` decide them; the clients
//! (librdkafka for v1, spate for both) are checked in `tests/transactions_mock.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{EndTxnRequest, InitProducerIdRequest, ProducerId, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::record::{Compression, RecordBatchBuilder};

const ID: &str = "t";

fn state(transaction_version: i16) -> State {
    let mut state = State::new(vec![(0, 0)]);
    state.transaction_version = transaction_version;
    state.create_topic("out", 1);
    state
}

fn init(state: &mut State) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(ID))))
        .with_transaction_timeout_ms(60_000);
    let (code, id, epoch) = init_producer_id(state, &request);
    assert_eq!(code, 0);
    (id, epoch)
}

fn end(state: &mut State, (id, epoch): (i64, i16), commit: bool, version: i16) -> (i16, i64, i16) {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str(ID)))
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    end_txn(state, &request, version)
}

/// A transactional batch of one record, as a producer at (id, epoch) writes it.
fn batch((id, epoch): (i64, i16), sequence: i32) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None)
        .producer(id, epoch, sequence)
        .transactional(true);
    b.append(0, None, Some(b"v"), &[]).unwrap();
    b.build().unwrap()
}

/// Produce v12 in a v2 cluster: the partition joins the transaction with its batch, which the
/// log then takes.
fn produce(state: &mut State, producer: (i64, i16), sequence: i32) -> i16 {
    let code = add_by_produce(state, ID, producer.0, producer.1, "out", 0);
    if code != 0 {
        return code;
    }
    let in_txn = |_| true;
    match state.topics.get_mut("out").unwrap()[0].append(batch(producer, sequence), 1 << 20, in_txn)
    {
        Ok((_, code)) => code,
        Err(code) => code,
    }
}

/// Every v2 EndTxn bumps the epoch, writes the markers with the bumped one, and a late write
/// of the ended transaction (its old epoch) is fenced by the partition.
#[test]
fn v2_end_bumps_the_epoch_and_fences_the_transaction_it_ended() {
    let mut state = state(2);
    let first = init(&mut state);
    assert_eq!(produce(&mut state, first, 0), 0);
    let (code, id, epoch) = end(&mut state, first, true, 5);
    assert_eq!((code, id, epoch), (0, first.0, first.1 + 1));
    let marker = state.topics["out"][0].batches.last().unwrap().bytes.clone();
    let marker = crate::record::RecordBatches::new(marker)
        .next()
        .unwrap()
        .unwrap();
    assert!(marker.header().is_control());
    assert_eq!(marker.header().producer_epoch, first.1 + 1);
    // The zombie of the first transaction: refused on the partition and by the coordinator.
    assert_eq!(produce(&mut state, first, 1), INVALID_PRODUCER_EPOCH);
    // The next transaction runs at the new epoch, sequences from 0.
    assert_eq!(produce(&mut state, (id, epoch), 0), 0);
    assert_eq!(end(&mut state, (id, epoch), false, 5), (0, id, epoch + 1));
}

/// A retried EndTxn (its answer was lost) carries the epoch before the bump: the same result
/// answers NONE with the bumped epoch; the other result is INVALID_TXN_STATE; an epoch two
/// behind is fenced (Kafka's `endTxnEpochBumped`).
#[test]
fn v2_retried_end_gets_the_bumped_epoch() {
    let mut state = state(2);
    let first = init(&mut state);
    assert_eq!(produce(&mut state, first, 0), 0);
    let ended = end(&mut state, first, true, 5);
    assert_eq!(ended.0, 0);
    assert_eq!(end(&mut state, first, true, 5), ended);
    assert_eq!(end(&mut state, first, false, 5).0, INVALID_TXN_STATE);
    let second = (ended.1, ended.2);
    assert_eq!(produce(&mut state, second, 0), 0);
    let ended = end(&mut state, second, false, 5);
    assert_eq!(ended.0, 0);
    assert_eq!(end(&mut state, first, false, 5).0, PRODUCER_FENCED);
}

/// KAFKA-18464: in v2 an abort with nothing added (the client cannot know whether its batch
/// reached a broker) ends an empty transaction and bumps the epoch; a commit of nothing is
/// INVALID_TXN_STATE. In v1 (EndTxn v4) an abort of nothing is INVALID_TXN_STATE.
#[test]
fn v2_abort_of_an_empty_transaction_bumps_the_epoch() {
    let mut state = state(2);
    let first = init(&mut state);
    assert_eq!(end(&mut state, first, true, 5).0, INVALID_TXN_STATE);
    assert_eq!(end(&mut state, first, false, 5), (0, first.0, first.1 + 1));
    let second = (first.0, first.1 + 1);
    // Again, right after: the epoch moved on, so this is a new empty abort, not a retry.
    assert_eq!(end(&mut state, second, false, 5), (0, first.0, first.1 + 2));
    let mut v1 = self::state(1);
    let first = init(&mut v1);
    assert_eq!(end(&mut v1, first, false, 4).0, INVALID_TXN_STATE);
}

/// With the epoch exhausted, a v2 end gives a new producer id at epoch 0; the markers carry the
/// old id at the last epoch; a retry with the old id and epoch gets the new id (Kafka's
/// `retryOnOverflow`).
#[test]
fn v2_exhausted_epoch_rotates_the_producer_id() {
    let mut state = state(2);
    let first = init(&mut state);
    state.transactions.get_mut(ID).unwrap().epoch = EPOCH_EXHAUSTED;
    let old = (first.0, EPOCH_EXHAUSTED);
    assert_eq!(produce(&mut state, old, 0), 0);
    let (code, id, epoch) = end(&mut state, old, true, 5);
    assert_eq!(code, 0);
    assert_ne!(id, first.0);
    assert_eq!(epoch, 0);
    let marker = state.topics["out"][0].batches.last().unwrap().bytes.clone();
    let marker = crate::record::RecordBatches::new(marker)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        (marker.header().producer_id, marker.header().producer_epoch),
        (first.0, i16::MAX)
    );
    assert_eq!(end(&mut state, old, true, 5), (0, id, 0));
    assert_eq!(produce(&mut state, (id, 0), 0), 0);
}

/// v1 (EndTxn v4, or a cluster without `transaction.version` 2): the epoch stays; a second
/// commit is a retry answered NONE; nothing is added without AddPartitionsToTxn.
#[test]
fn v1_end_keeps_the_epoch() {
    for (level, version) in [(1, 5), (2, 4)] {
        let mut state = state(level);
        let first = init(&mut state);
        state
            .transactions
            .get_mut(ID)
            .unwrap()
            .started(Instant::now(), false);
        assert_eq!(end(&mut state, first, true, version), (0, first.0, first.1));
        assert_eq!(end(&mut state, first, true, version), (0, first.0, first.1));
        assert_eq!(end(&mut state, first, false, version).0, INVALID_TXN_STATE);
    }
}

/// A timed-out v2 transaction is fenced and then ended with another bump, so the late
/// producer's EndTxn is not mistaken for a retry (Kafka's `abortTimedOutTransactions`).
#[test]
fn v2_timed_out_transaction_fences_its_producer() {
    let mut state = state(2);
    let first = init(&mut state);
    state.transactions.get_mut(ID).unwrap().timeout = Duration::from_millis(1);
    assert_eq!(produce(&mut state, first, 0), 0);
    expire(&mut state, Instant::now() + Duration::from_secs(1));
    assert_eq!(end(&mut state, first, true, 5).0, PRODUCER_FENCED);
    assert_eq!(end(&mut state, first, false, 5).0, PRODUCER_FENCED);
    assert_eq!(produce(&mut state, first, 1), INVALID_PRODUCER_EPOCH);
}
