//! The sender task: drains ready batches into produce requests, one per broker, keeps up to
//! `max.in.flight.requests.per.connection` of them in flight per broker, and settles each batch
//! from the broker's answer: acknowledged, retried in order, or failed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::accumulator::{Batch, BatchAck};
use super::config::Acks;
use super::{transaction, Shared};
use crate::cluster::{millis_i32, BrokerMeta, HintOutcome, LeaderHint, Topics};
use crate::error::codes::{
    DUPLICATE_SEQUENCE_NUMBER, FENCED_LEADER_EPOCH, INVALID_PRODUCER_EPOCH, NOT_LEADER_OR_FOLLOWER,
    OUT_OF_ORDER_SEQUENCE_NUMBER, PRODUCER_FENCED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    UNKNOWN_PRODUCER_ID,
};
use crate::error::{Action, Error, KafkaCode};
use crate::record::restamp_producer;
use crate::wire::{by_topic, topic_name, ApiKey};

mod ahead;

/// How often the sender looks at the accumulator when nothing wakes it (delivery timeouts,
/// batches waiting for a leader).
const IDLE_TICK: Duration = Duration::from_millis(100);

/// Error code, base offset, log append time and error message of one partition.
type PartitionAnswer = (i16, i64, i64, Option<String>);

type InFlight = Pin<Box<dyn Future<Output = Answered> + Send>>;

/// A request's batches and what became of the request.
struct Answered {
    broker: i32,
    batches: Vec<Batch>,
    result: Result<Option<ProduceResponse>, Error>,
}

/// Marks the sender stopped however it ends (a panic included), so no delivery, `flush` or
/// `close` waits for it forever.
struct Stopped(Arc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        let shared = &self.0;
        shared.acc().fail_all(&Error::ProducerClosed);
        shared.sender_done.store(true, Ordering::Release);
        shared.stopped.notify_waiters();
    }
}

/// Runs until the producer is closed (or every handle dropped) and nothing is left to send.
pub(crate) async fn run(shared: Arc<Shared>) {
    let _stopped = Stopped(shared.clone());
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut per_broker: HashMap<i32, usize> = HashMap::new();
    let mut refresh: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    // The metadata whose partition counts the accumulator has seen.
    let mut seen: Option<Arc<crate::cluster::ClusterMetadata>> = None;
    let config = &shared.config;
    let max_in_flight = config.max_in_flight;
    loop {
        let now = Instant::now();
        shared.clock.resync();
        let closing = shared.closing.load(Ordering::Acquire);
        if let Some(fatal) = shared.fatal() {
            // Nothing more can be sent (as Java aborts incomplete batches on a fatal error):
            // every record waiting hears why at once, not at delivery.timeout.ms.
            let released = shared.acc().fail_unsent(&fatal);
            shared.release(released);
        }
        if let Some(e) = shared.txn.as_ref().and_then(|t| t.abortable()) {
            // As Java's Sender (`maybeAbortBatches`): a transaction that must be aborted sends
            // nothing more, and what waits fails now with the reason, not at the abort or at
            // delivery.timeout.ms (a caller may be waiting on it before it aborts).
            let error = Error::Transaction(format!("the transaction must be aborted: {e}"));
            let released = shared.acc().fail_unsent(&error);
            shared.release(released);
        }
        // A failed batch spent sequence numbers: once nothing is in flight, take a new epoch
        // (idempotent producers; a transactional one does this when it aborts).
        let bump = {
            let acc = shared.acc();
            acc.needs_epoch_bump && shared.txn.is_none() && acc.in_flight_batches == 0
        };
        if bump {
            bump_epoch(&shared).await;
        }
        let metadata = shared.client.metadata();
        // Partitions added to a topic are used from the first metadata that shows them, and
        // the producer's topics are looked up again every metadata.max.age.ms, as Java's
        // producer does.
        if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &metadata)) {
            let mut acc = shared.acc();
            let grown: Vec<(Arc<str>, i32)> = acc
                .topic_names()
                .filter_map(|topic| {
                    let known = metadata.topics.get(&**topic)?;
                    let count = known.partitions.len() as i32;
                    (known.error.is_none() && acc.partitions(topic).is_some_and(|n| n < count))
                        .then(|| (topic.clone(), count))
                })
                .collect();
            for (topic, count) in grown {
                tracing::info!(%topic, partitions = count, "the topic has new partitions");
                acc.set_partitions(&topic, count);
            }
            seen = Some(metadata.clone());
        }
        let stale = metadata.fetched_at.elapsed() > config.client.metadata_max_age;
        if stale && refresh.is_none() {
            let topics: Vec<String> = shared.acc().topic_names().map(|t| t.to_string()).collect();
            if !topics.is_empty() {
                refresh = Some(refresh_then_wait(&shared, topics, false));
            }
        }
        let report = {
            let mut acc = shared.acc();
            expire(&shared, &mut acc, now);
            let hold = acc.needs_epoch_bump;
            acc.drain(
                now,
                |topic, partition| metadata.leader(topic, partition).map(|b| b.id),
                |broker| max_in_flight.saturating_sub(*per_broker.get(&broker).unwrap_or(&0)),
                hold,
            )
        };
        let mut requests = report.requests;
        ahead::encode_in_parallel(&shared, &mut requests).await;
        for request in requests {
            *per_broker.entry(request.broker).or_default() += 1;
            in_flight.push(Box::pin(send_request(
                shared.clone(),
                request.broker,
                request.batches,
            )));
        }
        if !report.need_txn_add.is_empty() {
            if let Some(txn) = &shared.txn {
                txn.add_partitions(&shared, &report.need_txn_add).await;
                continue;
            }
        }
        if !report.need_metadata.is_empty() && refresh.is_none() {
            let topics: Vec<String> = report.need_metadata.iter().map(|t| t.to_string()).collect();
            refresh = Some(refresh_then_wait(&shared, topics, true));
        }
        let idle = shared.acc().is_idle();
        if closing && idle && in_flight.is_empty() {
            break;
        }
        let next = report
            .next_check
            .unwrap_or(now + IDLE_TICK)
            .min(now + IDLE_TICK);
        tokio::select! {
            Some(answered) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(n) = per_broker.get_mut(&answered.broker) {
                    *n = n.saturating_sub(1);
                }
                settle(&shared, answered);
            }
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(next.into()) => {}
            () = async { refresh.as_mut().expect("guarded").await }, if refresh.is_some() => {
                refresh = None;
            }
        }
    }
}

/// Refreshes the metadata of `topics`, then waits `retry.backoff.ms` (the sender starts no
/// other refresh meanwhile). For leaders it `needs` (not a periodic refresh), a failure
/// retrying cannot fix stops the producer.
fn refresh_then_wait(
    shared: &Arc<Shared>,
    topics: Vec<String>,
    needs: bool,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let shared = shared.clone();
    Box::pin(async move {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = shared.client.refresh_metadata(Topics::Only(&names)).await {
            tracing::debug!(error = %e, needs, "metadata refresh for the producer failed");
            if needs && e.action() == Action::Fatal {
                // Every broker broke the protocol: retrying cannot find the leaders.
                shared.set_fatal(e);
                shared.wake.notify_one();
            }
        }
        tokio::time::sleep(shared.config.client.retry_backoff).await;
    })
}

/// Fails batches that have waited longer than `delivery.timeout.ms` without being sent.
fn expire(shared: &Shared, acc: &mut super::accumulator::Accumulator, now: Instant) {
    let (released, failed) = acc.expire(now, shared.config.delivery_timeout);
    shared.release(released);
    if failed > 0 {
        if let Some(txn) = &shared.txn {
            txn.batch_failed(&Error::Transaction(format!(
                "{failed} batches were not delivered within delivery.timeout.ms"
            )));
        }
    }
}

async fn bump_epoch(shared: &Shared) {
    let current = shared.acc().producer;
    let mut result =
        transaction::init_producer_id(&shared.client, None, current, &shared.config).await;
    if matches!(&result, Err(e) if e.action() == Action::Fatal) {
        // A broker that cannot bump this id's epoch (before KIP-360) gives a new id instead.
        result =
            transaction::init_producer_id(&shared.client, None, (-1, -1), &shared.config).await;
    }
    match result {
        Ok(id) => {
            tracing::info!(
                producer_id = id.0,
                epoch = id.1,
                "new producer epoch after a failed batch"
            );
            shared.acc().reset_sequences(id);
        }
        Err(e) if e.action() == Action::Fatal && !matches!(e, Error::Timeout { .. }) => {
            // Neither a new epoch nor a new id (the broker refuses, or breaks the protocol):
            // the producer cannot number its batches any more.
            shared.set_fatal(e);
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not take a new producer epoch; retrying");
            tokio::time::sleep(shared.config.client.retry_backoff).await;
        }
    }
}

/// Encodes the batches (first send: build and compress; after an epoch bump: re-stamp) and
/// sends one produce request.
async fn send_request(shared: Arc<Shared>, broker: i32, mut batches: Vec<Batch>) -> Answered {
    let config = &shared.config;
    let producer = shared.acc().producer;
    let transactional = shared.txn.is_some();
    let mut failed = Vec::new();
    let mut spare = Vec::new();
    for batch in &mut batches {
        match encode(batch, producer, transactional) {
            Ok(buffer) => spare.extend(buffer),
            Err(e) => failed.push((batch.id, e)),
        }
    }
    if !spare.is_empty() {
        let mut acc = shared.acc();
        for buffer in spare {
            acc.recycle(buffer);
        }
    }
    if !failed.is_empty() {
        // An encoding failure (a codec error) is not retriable: fail those batches alone, and
        // the transaction they belong to.
        if let (Some(txn), Some((_, e))) = (&shared.txn, failed.first()) {
            txn.batch_failed(e);
        }
        let mut acc = shared.acc();
        let mut released = 0;
        let mut kept = Vec::new();
        for batch in batches {
            match failed.iter().position(|(id, _)| *id == batch.id) {
                Some(i) => released += acc.failed(batch, failed[i].1.clone()),
                None => kept.push(batch),
            }
        }
        drop(acc);
        shared.release(released);
        batches = kept;
        if batches.is_empty() {
            return Answered {
                broker,
                batches,
                result: Ok(None),
            };
        }
    }
    let topics: Vec<TopicProduceData> = by_topic(batches.iter().map(|batch| {
        let data = PartitionProduceData::default()
            .with_index(batch.partition)
            .with_records(Some(batch.data.clone()));
        (&*batch.topic, data)
    }))
    .into_iter()
    .map(|(topic, data)| {
        TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(data)
    })
    .collect();
    let request = ProduceRequest::default()
        .with_transactional_id(
            shared
                .txn
                .as_ref()
                .map(|t| TransactionalId(StrBytes::from_string(t.id().to_owned()))),
        )
        .with_acks(config.acks.wire())
        .with_timeout_ms(millis_i32(config.client.request_timeout))
        .with_topic_data(topics);
    let result = async {
        let conn = shared.client.broker(broker).await?;
        let version = conn.version(ApiKey::Produce)?;
        // A transactional batch goes at v12+ only in a v2 transaction (KIP-890).
        let version = match &shared.txn {
            Some(txn) => txn.produce_version(version),
            None => version,
        };
        if config.acks == Acks::None {
            conn.send_only(&request, version).await?;
            Ok(None)
        } else {
            conn.request_at(&request, version).await.map(Some)
        }
    }
    .await;
    Answered {
        broker,
        batches,
        result,
    }
}

/// Builds (or re-stamps) the batch's bytes; the record buffer of a batch built now comes back
/// for reuse.
fn encode(
    batch: &mut Batch,
    producer: (i64, i16),
    transactional: bool,
) -> Result<Option<Vec<u8>>, Error> {
    let sequence = batch.sequence.unwrap_or(-1);
    let stamp = if batch.sequence.is_some() {
        producer
    } else {
        (-1, -1)
    };
    if let Some(builder) = batch.builder.take() {
        let mut builder = builder
            .producer(stamp.0, stamp.1, sequence)
            .transactional(transactional);
        batch.data = match builder.build_reusing() {
            Ok(data) => data,
            Err(source) => {
                batch.builder = Some(builder);
                return Err(Error::Records {
                    topic: batch.topic.to_string(),
                    partition: batch.partition,
                    source,
                });
            }
        };
        batch.stamped = (stamp.0, stamp.1, sequence);
        return Ok(Some(builder.into_buffer()));
    } else if batch.stamped != (stamp.0, stamp.1, sequence) {
        let mut data = BytesMut::from(&batch.data[..]);
        restamp_producer(&mut data, stamp.0, stamp.1, sequence)
            .map_err(|e| Error::Transaction(format!("cannot re-stamp a batch: {e}")))?;
        batch.data = data.freeze();
        batch.stamped = (stamp.0, stamp.1, sequence);
    }
    Ok(None)
}

/// Settles a request's batches from its answer.
fn settle(shared: &Shared, answered: Answered) {
    let now = Instant::now();
    let Answered {
        broker,
        batches,
        result,
    } = answered;
    // Topics whose leaders should be looked up again.
    let mut refresh: Vec<String> = Vec::new();
    let mut released = 0;
    // KIP-951: partitions whose new leader the broker named; they go there at once.
    let moved = match &result {
        Ok(Some(response)) => apply_leader_hints(shared, response),
        _ => HintOutcome::default(),
    };
    let mut acc = shared.acc();
    match result {
        Ok(None) => {
            // acks=0: written is all we will ever know.
            for batch in batches {
                released += succeeded(
                    shared,
                    &mut acc,
                    batch,
                    BatchAck {
                        base_offset: -1,
                        log_append_time: -1,
                    },
                );
            }
        }
        Ok(Some(response)) => {
            crate::telemetry::throttled(shared.client.stats(), response.throttle_time_ms);
            let mut answers: HashMap<(&str, i32), PartitionAnswer> = HashMap::new();
            for topic in &response.responses {
                for p in &topic.partition_responses {
                    answers.insert(
                        (topic.name.0.as_str(), p.index),
                        (
                            p.error_code,
                            p.base_offset,
                            p.log_append_time_ms,
                            p.error_message.as_ref().map(|m| m.to_string()),
                        ),
                    );
                }
            }
            for batch in batches {
                let answer = answers.get(&(&*batch.topic, batch.partition)).cloned();
                let (code, base_offset, log_append_time, message) = match answer {
                    Some(a) => a,
                    None => {
                        // The broker did not answer for this partition: try again.
                        let error = Error::kafka(
                            KafkaCode(crate::error::codes::UNKNOWN_SERVER_ERROR),
                            format!(
                                "produce to {}-{} on broker {broker}: no answer for the partition",
                                batch.topic, batch.partition
                            ),
                            None,
                        );
                        released += retry_or_fail(shared, &mut acc, batch, error, true, Some(now));
                        continue;
                    }
                };
                let ack = BatchAck {
                    base_offset,
                    log_append_time,
                };
                match code {
                    0 => released += succeeded(shared, &mut acc, batch, ack),
                    // The broker already has this batch: a retry of one whose answer was lost.
                    DUPLICATE_SEQUENCE_NUMBER => {
                        released += succeeded(shared, &mut acc, batch, ack)
                    }
                    _ => {
                        let error = Error::kafka(
                            KafkaCode(code),
                            format!("produce to {}-{}", batch.topic, batch.partition),
                            message,
                        );
                        // The broker named the partition's leader: no metadata round trip;
                        // at once if it just moved, after the backoff otherwise.
                        if moved.covers(&batch.topic, batch.partition) {
                            let at = (!moved.moved(&batch.topic, batch.partition)).then_some(now);
                            released += retry_or_fail(shared, &mut acc, batch, error, true, at);
                            continue;
                        }
                        let retriable = match code {
                            // An earlier batch is being retried, or failed and a new epoch
                            // will renumber this one: either way it can go again.
                            OUT_OF_ORDER_SEQUENCE_NUMBER => {
                                acc.has_earlier_unacked(&batch) || acc.needs_epoch_bump
                            }
                            UNKNOWN_PRODUCER_ID if shared.txn.is_none() => {
                                // The broker forgot this producer (its state expired): a new
                                // epoch restarts the sequences, then the batch goes again.
                                acc.needs_epoch_bump = true;
                                true
                            }
                            // KIP-588: this epoch's transaction is over (the coordinator
                            // aborted it): the transaction is abortable, and the abort takes a
                            // new epoch. An idempotent producer takes one and retries.
                            INVALID_PRODUCER_EPOCH => {
                                acc.needs_epoch_bump = true;
                                shared.txn.is_none()
                            }
                            PRODUCER_FENCED | TRANSACTIONAL_ID_AUTHORIZATION_FAILED => {
                                let fenced = Error::ProducerFenced {
                                    transactional_id: shared.config.transactional_id.clone(),
                                    code: KafkaCode(code),
                                };
                                shared.set_fatal(fenced.clone());
                                released += acc.failed(batch, fenced);
                                continue;
                            }
                            _ => {
                                let action = KafkaCode(code).action();
                                if action == Action::RefreshMetadata
                                    && !refresh.iter().any(|t| **t == *batch.topic)
                                {
                                    refresh.push(batch.topic.to_string());
                                }
                                matches!(
                                    action,
                                    Action::Retry | Action::RefreshMetadata | Action::Reconnect
                                )
                            }
                        };
                        released +=
                            retry_or_fail(shared, &mut acc, batch, error, retriable, Some(now));
                    }
                }
            }
        }
        Err(error) => {
            let action = error.action();
            let retriable = matches!(
                action,
                Action::Retry | Action::RefreshMetadata | Action::Reconnect
            );
            tracing::debug!(broker, error = %error, batches = batches.len(), "produce request failed");
            for batch in batches {
                if matches!(action, Action::RefreshMetadata | Action::Reconnect)
                    && !refresh.iter().any(|t| **t == *batch.topic)
                {
                    refresh.push(batch.topic.to_string());
                }
                released +=
                    retry_or_fail(shared, &mut acc, batch, error.clone(), retriable, Some(now));
            }
        }
    }
    drop(acc);
    shared.release(released);
    if !refresh.is_empty() {
        let client = shared.client.clone();
        tokio::spawn(async move {
            let topics: Vec<&str> = refresh.iter().map(String::as_str).collect();
            if let Err(e) = client.refresh_metadata(Topics::Only(&topics)).await {
                tracing::debug!(error = %e, "metadata refresh after a produce error failed");
            }
        });
    }
}

/// The partitions a Produce answer moved to a leader it named (KIP-951: with
/// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH, v10+ answers carry the leader and its
/// endpoint), applied to the client's metadata.
fn apply_leader_hints(shared: &Shared, response: &ProduceResponse) -> HintOutcome {
    let hints: Vec<LeaderHint> = response
        .responses
        .iter()
        .flat_map(|t| {
            t.partition_responses
                .iter()
                .filter(|p| matches!(p.error_code, NOT_LEADER_OR_FOLLOWER | FENCED_LEADER_EPOCH))
                .map(move |p| LeaderHint {
                    topic: t.name.0.to_string(),
                    partition: p.index,
                    leader: p.current_leader.leader_id.0,
                    leader_epoch: p.current_leader.leader_epoch,
                })
        })
        .collect();
    if hints.is_empty() {
        return HintOutcome::default();
    }
    let endpoints: Vec<BrokerMeta> = response
        .node_endpoints
        .iter()
        .map(|e| BrokerMeta {
            id: e.node_id.0,
            host: e.host.to_string(),
            port: e.port,
            rack: e.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    shared.client.apply_leader_hints(&hints, &endpoints)
}

/// A batch the broker accepted: counted in the client's statistics, then completed.
fn succeeded(
    shared: &Shared,
    acc: &mut super::accumulator::Accumulator,
    batch: Batch,
    ack: BatchAck,
) -> usize {
    crate::telemetry::produced(
        shared.client.stats(),
        (&batch.topic, batch.partition),
        batch.records as u64,
        (batch.data.len() as u64, batch.uncompressed as u64),
    );
    acc.succeeded(batch, ack)
}

/// Puts a failed batch back to be sent again, or fails it for good. `now` is `None` when the
/// batch's partition just moved to a leader the broker named: it goes again at once, without a
/// backoff (as the Java client's sender does when the leader changed).
fn retry_or_fail(
    shared: &Shared,
    acc: &mut super::accumulator::Accumulator,
    batch: Batch,
    error: Error,
    retriable: bool,
    now: Option<Instant>,
) -> usize {
    let config = &shared.config;
    let backoff = match now {
        Some(_) => config
            .client
            .retry_backoff
            .saturating_mul(1 << batch.attempts.min(10))
            .min(config.client.retry_backoff_max),
        None => Duration::ZERO,
    };
    let now = now.unwrap_or_else(Instant::now);
    let deadline = batch.created + config.delivery_timeout;
    if retriable && batch.attempts < config.retries && now + backoff < deadline {
        tracing::debug!(
            topic = %batch.topic,
            partition = batch.partition,
            attempt = batch.attempts + 1,
            error = %error,
            "retrying batch"
        );
        crate::telemetry::retried(shared.client.stats(), &batch.topic, batch.partition);
        acc.retry(batch, error, now + backoff);
        return 0;
    }
    let error = if retriable {
        Error::Timeout {
            what: format!(
                "delivery of {} records to {}-{}",
                batch.records, batch.topic, batch.partition
            ),
            after_ms: config.delivery_timeout.as_millis() as u64,
            last: Box::new(error),
        }
    } else {
        error
    };
    if let Some(txn) = &shared.txn {
        txn.batch_failed(&error);
    }
    acc.failed(batch, error)
}
