//! Producer ids and transactions: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit and EndTxn, and the state a transactional producer moves through.
//!
//! ```text
//! Uninitialized ─init─▶ Ready ─begin─▶ InTransaction ─commit/abort─▶ Ready
//!                                          │ a batch failed
//!                                          ▼
//!                                      Abortable ─abort─▶ Ready
//! fenced (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH) from any state ─▶ Fatal
//! ```
//!
//! # Transactions v2 (KIP-890)
//! When the transaction coordinator reports `transaction.version` 2 finalized (ApiVersions
//! v3+) and speaks Produce v12, TxnOffsetCommit v5 and EndTxn v5, a transaction runs the v2
//! way, decided when it begins (as Java's `TransactionManager` latches it at
//! `beginTransaction`): no AddPartitionsToTxn (Produce v12 adds the partition on the broker),
//! no AddOffsetsToTxn (TxnOffsetCommit v5 does), and EndTxn v5 returns a new epoch (or a new
//! producer id when the epoch is exhausted) that the next transaction uses, with sequences
//! from 0. The markers carry the bumped epoch, so a late write of the ended transaction is
//! fenced by the broker. Otherwise transactions run the v1 way, at Produce v11, TxnOffsetCommit
//! v4 and EndTxn v4 at most.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::txn_errors::{outcome_of, TxnApi, TxnOutcome};
use super::{Producer, ProducerConfig, Shared};
use crate::cluster::{millis_i32, Client, CoordinatorType, GroupMetadata};
use crate::error::codes::{
    INVALID_PRODUCER_EPOCH, PRODUCER_FENCED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
};
use crate::error::{Error, KafkaCode};
use crate::net::Connection;
use crate::wire::{by_topic, topic_name, ApiKey};

/// One consumed position to commit: the offset of the next record to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// Optional metadata string.
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
enum State {
    Uninitialized,
    Ready,
    InTransaction,
    Abortable(Error),
    Fatal(Error),
}

/// A transactional producer's state.
pub(crate) struct Txn {
    id: String,
    state: Mutex<State>,
    /// Partitions or offsets were added: the coordinator has a transaction to end.
    started: Mutex<bool>,
    /// The transaction in progress runs the v2 way (KIP-890).
    v2: AtomicBool,
    /// The coordinator offered transactions v2 when last asked (at init and at each end).
    offered_v2: AtomicBool,
}

/// Whether the transaction coordinator on `conn` offers transactions v2 (KIP-890): the
/// cluster finalized `transaction.version` 2 and the broker speaks Produce v12 and
/// TxnOffsetCommit v5 (Java's `TransactionManager` asks the same), and EndTxn v5.
fn offers_v2(conn: &Connection) -> bool {
    let Some(versions) = conn.versions() else {
        return false;
    };
    versions
        .finalized_feature("transaction.version")
        .is_some_and(|level| level >= 2)
        && [
            (ApiKey::Produce, 12),
            (ApiKey::TxnOffsetCommit, 5),
            (ApiKey::EndTxn, 5),
        ]
        .iter()
        .all(|(api, v)| versions.version(*api).is_ok_and(|ours| ours >= *v))
}

impl Txn {
    pub fn new(id: String) -> Txn {
        Txn {
            id,
            state: Mutex::new(State::Uninitialized),
            started: Mutex::new(false),
            v2: AtomicBool::new(false),
            offered_v2: AtomicBool::new(false),
        }
    }

    /// Whether the transaction in progress runs the v2 way (KIP-890).
    pub fn v2(&self) -> bool {
        self.v2.load(Ordering::Acquire)
    }

    /// The highest Produce version a transactional batch may use on a broker speaking up to
    /// `version`: v12+ only in a v2 transaction (Java's `ProduceRequest.Builder`).
    pub fn produce_version(&self, version: i16) -> i16 {
        if self.v2() {
            version
        } else {
            version.min(11)
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_started(&self, started: bool) {
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = started;
    }

    fn started(&self) -> bool {
        *self.started.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn check_can_send(&self) -> Result<(), Error> {
        match &*self.state() {
            State::InTransaction => Ok(()),
            State::Abortable(e) => Err(Error::Transaction(format!(
                "the transaction must be aborted: {e}"
            ))),
            State::Fatal(e) => Err(e.clone()),
            State::Uninitialized => Err(Error::Transaction(
                "call init_transactions before sending".into(),
            )),
            State::Ready => Err(Error::Transaction(
                "call begin_transaction before sending".into(),
            )),
        }
    }

    /// Why the transaction must be aborted, if it must.
    pub fn abortable(&self) -> Option<Error> {
        match &*self.state() {
            State::Abortable(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// A batch of the transaction failed: only an abort can follow.
    pub fn batch_failed(&self, error: &Error) {
        let mut state = self.state();
        if matches!(*state, State::InTransaction) {
            *state = if matches!(error, Error::ProducerFenced { .. }) {
                State::Fatal(error.clone())
            } else {
                State::Abortable(error.clone())
            };
        }
    }

    /// What a failed transaction call leaves, as Java's TransactionManager decides
    /// ([`txn_errors`](super::txn_errors)): fatal errors (fencing) end the producer, abortable
    /// ones leave a transaction that only an abort can end. Returns the error to report.
    fn fail_with(&self, shared: &Shared, api: TxnApi, error: Error) -> Error {
        match outcome_of(api, &error) {
            TxnOutcome::Fatal => {
                let fatal = match error.code() {
                    Some(
                        code @ KafkaCode(
                            INVALID_PRODUCER_EPOCH
                            | PRODUCER_FENCED
                            | TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        ),
                    ) => Error::ProducerFenced {
                        transactional_id: Some(self.id.clone()),
                        code,
                    },
                    _ => error,
                };
                *self.state() = State::Fatal(fatal.clone());
                shared.set_fatal(fatal.clone());
                fatal
            }
            TxnOutcome::Abortable | TxnOutcome::Retry => {
                let mut state = self.state();
                if matches!(*state, State::InTransaction) {
                    *state = State::Abortable(error.clone());
                }
                error
            }
        }
    }

    /// InitProducerId failed: fencing is fatal; anything else leaves the state as it was (the
    /// call can be made again).
    fn fenced_at_init(&self, shared: &Shared, error: Error) -> Error {
        match error.code() {
            Some(KafkaCode(PRODUCER_FENCED | TRANSACTIONAL_ID_AUTHORIZATION_FAILED)) => {
                self.fail_with(shared, TxnApi::EndTxn, error)
            }
            _ => error,
        }
    }

    /// Adds partitions to the transaction before their first batch (called by the sender). In a
    /// v2 transaction the broker adds a partition with its first batch: nothing is sent.
    pub async fn add_partitions(&self, shared: &Shared, partitions: &[(std::sync::Arc<str>, i32)]) {
        if self.v2() {
            self.set_started(true);
            let mut acc = shared.acc();
            for (topic, partition) in partitions {
                acc.added_to_txn(topic, *partition);
            }
            return;
        }
        let (producer_id, epoch) = shared.acc().producer;
        let topics: Vec<AddPartitionsToTxnTopic> =
            by_topic(partitions.iter().map(|(t, p)| (&**t, *p)))
                .into_iter()
                .map(|(topic, partitions)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(partitions)
                })
                .collect();
        let client = &shared.client;
        let result = client
            .with_retry("AddPartitionsToTxn", &[], || async {
                let conn = client
                    .coordinator(CoordinatorType::Transaction, &self.id)
                    .await?;
                // v4+ is the broker-to-broker batched form.
                let version = conn.version(ApiKey::AddPartitionsToTxn)?.min(3);
                let request = AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(txn_id(&self.id))
                    .with_v3_and_below_producer_id(ProducerId(producer_id))
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(topics.clone());
                let response = conn.request_at(&request, version).await?;
                KafkaCode::check(response.error_code).map_err(|code| {
                    Error::kafka(code, "add partitions to the transaction", None)
                })?;
                for topic in &response.results_by_topic_v3_and_below {
                    for p in &topic.results_by_partition {
                        KafkaCode::check(p.partition_error_code).map_err(|code| {
                            Error::kafka(
                                code,
                                format!(
                                    "add {}-{} to the transaction",
                                    topic.name.0.as_str(),
                                    p.partition_index
                                ),
                                None,
                            )
                        })?;
                    }
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                self.set_started(true);
                let mut acc = shared.acc();
                for (topic, partition) in partitions {
                    acc.added_to_txn(topic, *partition);
                }
            }
            Err(e) => {
                let e = self.fail_with(shared, TxnApi::AddPartitions, e);
                tracing::warn!(error = %e, "could not add partitions to the transaction");
                self.batch_failed(&e);
                // The batches of those partitions cannot go: fail them now.
                let released = shared.acc().fail_unsent(&Error::Transaction(format!(
                    "partitions could not be added to the transaction: {e}"
                )));
                shared.release(released);
            }
        }
    }
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_owned()))
}

/// Takes a producer id, or bumps the epoch of `current` (KIP-360, InitProducerId v3+) so that
/// sequences can start again. Transactional when `txn` is given (sent to its coordinator).
pub(crate) async fn init_producer_id(
    client: &Client,
    txn: Option<&Txn>,
    current: (i64, i16),
    config: &ProducerConfig,
) -> Result<(i64, i16), Error> {
    client
        .with_retry("InitProducerId", &[], || async {
            let conn = match txn {
                Some(t) => {
                    client
                        .coordinator(CoordinatorType::Transaction, &t.id)
                        .await?
                }
                None => client.any_broker().await?,
            };
            let version = conn.version(ApiKey::InitProducerId)?;
            let mut request = InitProducerIdRequest::default()
                .with_transactional_id(txn.map(|t| txn_id(&t.id)))
                .with_transaction_timeout_ms(millis_i32(config.transaction_timeout))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            if version >= 3 && current.0 >= 0 {
                request.producer_id = ProducerId(current.0);
                request.producer_epoch = current.1;
            }
            let response = conn.request_at(&request, version).await?;
            KafkaCode::check(response.error_code)
                .map_err(|code| Error::kafka(code, "InitProducerId", None))?;
            if let Some(t) = txn {
                t.offered_v2.store(offers_v2(&conn), Ordering::Release);
            }
            Ok((response.producer_id.0, response.producer_epoch))
        })
        .await
}

impl Producer {
    fn txn(&self) -> Result<&Txn, Error> {
        self.handle
            .shared
            .txn
            .as_ref()
            .ok_or_else(|| Error::Transaction("the producer has no transactional.id".into()))
    }

    /// Registers the transactional id with its coordinator, fencing any older producer with the
    /// same id and finishing (committing or aborting) what it left open. Call once, first.
    pub async fn init_transactions(&self) -> Result<(), Error> {
        let txn = self.txn()?;
        let shared = &*self.handle.shared;
        if !matches!(*txn.state(), State::Uninitialized) {
            return Err(Error::Transaction(
                "init_transactions was already called".into(),
            ));
        }
        let id = init_producer_id(&shared.client, Some(txn), (-1, -1), &shared.config)
            .await
            .map_err(|e| txn.fenced_at_init(shared, e))?;
        shared.acc().reset_sequences(id);
        *txn.state() = State::Ready;
        tracing::debug!(transactional_id = %txn.id, producer_id = id.0, epoch = id.1, "transactions initialised");
        Ok(())
    }

    /// Starts a transaction: records sent from now on are committed or aborted together.
    pub fn begin_transaction(&self) -> Result<(), Error> {
        let txn = self.txn()?;
        let mut state = txn.state();
        match &*state {
            State::Ready => {
                *state = State::InTransaction;
                txn.v2
                    .store(txn.offered_v2.load(Ordering::Acquire), Ordering::Release);
                Ok(())
            }
            State::Fatal(e) => Err(e.clone()),
            other => Err(Error::Transaction(format!(
                "begin_transaction in state {}",
                state_name(other)
            ))),
        }
    }

    /// Commits consumed offsets as part of the transaction (consume-transform-produce): they
    /// become visible exactly when the transaction's records do.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[OffsetToCommit],
        group: &GroupMetadata,
    ) -> Result<(), Error> {
        let txn = self.txn()?;
        txn.check_can_send()?;
        let shared = &*self.handle.shared;
        let client = &shared.client;
        let (producer_id, epoch) = shared.acc().producer;
        let group_id = GroupId(StrBytes::from_string(group.group_id.clone()));
        let v2 = txn.v2();
        // v2: TxnOffsetCommit v5 adds the offsets to the transaction itself.
        if !v2 {
            self.add_offsets(txn, &group_id).await?;
        }
        txn.set_started(true);
        let topics: Vec<TxnOffsetCommitRequestTopic> = by_topic(offsets.iter().map(|o| {
            let p = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(o.partition)
                .with_committed_offset(o.offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(o.metadata.clone().map(StrBytes::from_string));
            (o.topic.as_str(), p)
        }))
        .into_iter()
        .map(|(topic, partitions)| {
            TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
        client
            .with_retry("TxnOffsetCommit", &[], || async {
                let conn = client
                    .coordinator(CoordinatorType::Group, &group.group_id)
                    .await?;
                let request = TxnOffsetCommitRequest::default()
                    .with_transactional_id(txn_id(&txn.id))
                    .with_group_id(group_id.clone())
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch)
                    .with_generation_id(group.generation_id)
                    .with_member_id(StrBytes::from_string(group.member_id.clone()))
                    .with_group_instance_id(
                        group.group_instance_id.clone().map(StrBytes::from_string),
                    )
                    .with_topics(topics.clone());
                let version = conn.version(ApiKey::TxnOffsetCommit)?;
                let version = if v2 { version } else { version.min(4) };
                let response = conn.request_at(&request, version).await?;
                for t in &response.topics {
                    for p in &t.partitions {
                        KafkaCode::check(p.error_code).map_err(|code| {
                            Error::kafka(
                                code,
                                format!(
                                    "commit the offset of {}-{} in the transaction",
                                    t.name.0.as_str(),
                                    p.partition_index
                                ),
                                None,
                            )
                        })?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| txn.fail_with(shared, TxnApi::TxnOffsetCommit, e))
    }

    /// AddOffsetsToTxn (transactions v1): the group's offsets partition joins the transaction.
    async fn add_offsets(&self, txn: &Txn, group_id: &GroupId) -> Result<(), Error> {
        let shared = &*self.handle.shared;
        let client = &shared.client;
        let (producer_id, epoch) = shared.acc().producer;
        client
            .with_retry("AddOffsetsToTxn", &[], || async {
                let conn = client
                    .coordinator(CoordinatorType::Transaction, &txn.id)
                    .await?;
                let request = AddOffsetsToTxnRequest::default()
                    .with_transactional_id(txn_id(&txn.id))
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch)
                    .with_group_id(group_id.clone());
                let response = conn.request(&request).await?;
                KafkaCode::check(response.error_code)
                    .map_err(|code| Error::kafka(code, "add offsets to the transaction", None))
            })
            .await
            .map_err(|e| txn.fail_with(shared, TxnApi::AddOffsets, e))
    }

    /// Sends what is buffered, then commits the transaction. If a record of the transaction
    /// failed, nothing is committed: the error says why, and the transaction must be aborted.
    pub async fn commit_transaction(&self) -> Result<(), Error> {
        let txn = self.txn()?;
        txn.check_can_send()?;
        self.flush().await?;
        txn.check_can_send()?;
        self.end_transaction(true).await
    }

    /// Aborts the transaction: records not yet sent are dropped (their deliveries fail), the
    /// ones written are marked aborted, and read_committed consumers never see them.
    pub async fn abort_transaction(&self) -> Result<(), Error> {
        let txn = self.txn()?;
        match &*txn.state() {
            State::InTransaction | State::Abortable(_) => {}
            State::Fatal(e) => return Err(e.clone()),
            other => {
                return Err(Error::Transaction(format!(
                    "abort_transaction in state {}",
                    state_name(other)
                )))
            }
        }
        let shared = &*self.handle.shared;
        let released = shared
            .acc()
            .fail_unsent(&Error::Transaction("the transaction was aborted".into()));
        shared.release(released);
        // Wait for what is in flight: the coordinator must not see EndTxn before those writes.
        self.flush().await?;
        self.end_transaction(false).await?;
        if shared.acc().needs_epoch_bump {
            // Failed batches spent sequence numbers: a new epoch starts them again (KIP-360).
            let current = shared.acc().producer;
            let id = init_producer_id(&shared.client, Some(txn), current, &shared.config)
                .await
                .map_err(|e| txn.fenced_at_init(shared, e))?;
            shared.acc().reset_sequences(id);
        }
        Ok(())
    }

    async fn end_transaction(&self, commit: bool) -> Result<(), Error> {
        let txn = self.txn()?;
        let shared = &*self.handle.shared;
        if txn.started() {
            let client = &shared.client;
            let (producer_id, epoch) = shared.acc().producer;
            let v2 = txn.v2();
            let bumped = client
                .with_retry("EndTxn", &[], || async {
                    let conn = client
                        .coordinator(CoordinatorType::Transaction, &txn.id)
                        .await?;
                    let request = EndTxnRequest::default()
                        .with_transactional_id(txn_id(&txn.id))
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(epoch)
                        .with_committed(commit);
                    let version = conn.version(ApiKey::EndTxn)?;
                    let version = if v2 { version } else { version.min(4) };
                    let response = conn.request_at(&request, version).await?;
                    txn.offered_v2.store(offers_v2(&conn), Ordering::Release);
                    KafkaCode::check(response.error_code).map_err(|code| {
                        Error::kafka(
                            code,
                            if commit {
                                "commit the transaction"
                            } else {
                                "abort the transaction"
                            },
                            None,
                        )
                    })?;
                    // v5+: the coordinator bumped the epoch (or, with the epoch exhausted,
                    // gave a new producer id at epoch 0) for the next transaction.
                    Ok((version >= 5 && response.producer_id.0 >= 0)
                        .then_some((response.producer_id.0, response.producer_epoch)))
                })
                .await
                .map_err(|e| txn.fail_with(shared, TxnApi::EndTxn, e))?;
            if let Some(next) = bumped {
                // Sequences start again at 0 with the new epoch (nothing of this transaction
                // is buffered or in flight: it was flushed or failed before EndTxn).
                shared.acc().reset_sequences(next);
                tracing::debug!(transactional_id = %txn.id, producer_id = next.0, epoch = next.1, "epoch bumped by EndTxn");
            }
        }
        txn.set_started(false);
        shared.acc().end_txn();
        *txn.state() = State::Ready;
        tracing::debug!(transactional_id = %txn.id, commit, "transaction ended");
        crate::telemetry::transaction(shared.client.stats(), commit);
        Ok(())
    }
}

fn state_name(state: &State) -> &'static str {
    match state {
        State::Uninitialized => "uninitialized (call init_transactions)",
        State::Ready => "ready (no transaction begun)",
        State::InTransaction => "in a transaction",
        State::Abortable(_) => "failed (abort the transaction)",
        State::Fatal(_) => "fatal",
    }
}
